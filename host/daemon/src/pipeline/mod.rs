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
        self.run_steps(vec![item], sink, deadline).await
    }

    /// The most items [`RunningPipeline::run_items`] may take at once: the
    /// smallest `batch.max_size` of the steps, when every step is batched
    /// (a batched step returns one output per input, so each output can be
    /// traced to its input). `None` when a step is not batched.
    pub fn whole_batch(&self) -> Option<usize> {
        self.steps
            .iter()
            .map(|s| s.spec.batch.as_ref().map(|b| b.max_size))
            .min()
            .flatten()
    }

    /// Runs several items through every step as one request, so a batched
    /// step gets them in one call. With every step batched (see
    /// [`RunningPipeline::whole_batch`]), output `i` comes from input `i`.
    pub async fn run_items(&self, items: Vec<Item>) -> Result<Vec<Item>, RunFailure> {
        let deadline = Instant::now() + Duration::from_millis(self.spec.timeout_ms);
        self.run_steps(items, None, deadline).await
    }

    async fn run_steps(
        &self,
        mut items: Vec<Item>,
        sink: Option<mpsc::Sender<StageEvent>>,
        deadline: Instant,
    ) -> Result<Vec<Item>, RunFailure> {
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
