//! Pipelines: specs, their running form, and the live table of pipelines and
//! trigger routes.

pub mod spec;
mod step;
mod table;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use weft_runtime::{Item, StageEvent};

pub use spec::{PipelineSpec, SpecError};
pub use step::{Step, StepFailure};
pub use table::Pipelines;

/// A pipeline ready to run: its spec and one running [`Step`] per step.
#[derive(Debug)]
pub struct RunningPipeline {
    /// The spec it was built from.
    pub spec: PipelineSpec,
    /// Registry version of the spec.
    pub version: u32,
    /// Steps in order.
    pub steps: Vec<Step>,
}

/// A failed pipeline run: which step, and why.
#[derive(Debug, Clone)]
pub struct RunFailure {
    /// The pipeline.
    pub pipeline: String,
    /// The step that failed.
    pub step: String,
    /// What happened.
    pub failure: StepFailure,
}

impl RunningPipeline {
    /// Runs `item` through every step; each step's outputs are the next
    /// step's input batch. `emit` events of unbatched steps go to `sink`.
    pub async fn run(
        &self,
        item: Item,
        sink: Option<mpsc::Sender<StageEvent>>,
    ) -> Result<Vec<Item>, RunFailure> {
        let deadline = Instant::now() + Duration::from_millis(self.spec.timeout_ms);
        self.run_until(item, sink, deadline).await
    }

    /// [`RunningPipeline::run`] with the caller's deadline instead of the
    /// pipeline's `timeout_ms` (async jobs may run for hours; each step's
    /// own `timeout_ms` still applies).
    pub async fn run_until(
        &self,
        item: Item,
        sink: Option<mpsc::Sender<StageEvent>>,
        deadline: Instant,
    ) -> Result<Vec<Item>, RunFailure> {
        let mut items = vec![item];
        for step in &self.steps {
            if items.is_empty() {
                break;
            }
            let events = if step.spec.batch.is_none() {
                sink.clone()
            } else {
                None
            };
            items = step
                .run(items, events, deadline)
                .await
                .map_err(|failure| RunFailure {
                    pipeline: self.spec.name.clone(),
                    step: step.name.clone(),
                    failure,
                })?;
        }
        Ok(items)
    }
}

/// Shared handle to a running pipeline; in-flight requests keep the version
/// they started on alive while a new one takes over.
pub type PipelineHandle = Arc<RunningPipeline>;
