//! Running an invoke job: its pipeline on one item, patient where a
//! request is not, its stage events kept as the job's.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use weft_runtime::StageEvent;

use super::spec::{self, InvokeSpec};
use super::{Jobs, render_item};
use crate::pipeline::StepFailure;
use crate::{ApiError, blocking};

impl Jobs {
    /// Runs an invoke job, which first started at `started` (ms since the
    /// epoch); `emit` events become job events and progress.
    pub(super) async fn run_invoke(
        &self,
        id: u64,
        spec: &InvokeSpec,
        started: Option<u64>,
    ) -> Result<String, String> {
        let pipeline = self
            .inner
            .pipelines
            .get(&spec.pipeline)
            .ok_or_else(|| format!("pipeline `{}` was deleted", spec.pipeline))?;
        let timeout = Duration::from_secs(
            spec.timeout_s
                .unwrap_or(spec::DEFAULT_JOB_TIMEOUT_S)
                .min(spec::MAX_JOB_TIMEOUT_S),
        );
        // From its first start: a job resumed after a restart (or a crash
        // loop) has what is left of its time, not all of it again.
        let ran = started.map_or(0, |ms| super::now_ms().saturating_sub(ms));
        let deadline = Instant::now() + timeout.saturating_sub(Duration::from_millis(ran));
        let mut item = spec.item();
        // A stable key per job: stages key their checkpoints by it.
        item.key.get_or_insert_with(|| self.item_key(id, spec));
        let mut pipeline = pipeline;
        let mut backoff = Duration::from_millis(5);
        let result = loop {
            let result = {
                let (tx, mut rx) = mpsc::channel::<StageEvent>(64);
                let run = pipeline.run_until(item.clone(), Some(tx), deadline);
                tokio::pin!(run);
                let result = loop {
                    tokio::select! {
                        result = &mut run => break result,
                        Some(event) = rx.recv() => self.stage_event(id, event).await,
                    }
                };
                while let Ok(event) = rx.try_recv() {
                    self.stage_event(id, event).await;
                }
                result
            };
            // A job is patient where a request is not: a full queue or a
            // pipeline being replaced is waited out.
            match &result {
                Err(f)
                    if matches!(f.failure, StepFailure::Overloaded | StepFailure::Stopped)
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    pipeline = self
                        .inner
                        .pipelines
                        .get(&spec.pipeline)
                        .ok_or_else(|| format!("pipeline `{}` was deleted", spec.pipeline))?;
                }
                _ => break result,
            }
        };
        match result {
            Ok(items) => Ok(Value::Array(items.iter().map(render_item).collect()).to_string()),
            // Its own deadline, not a request's: say which setting it was.
            Err(failure)
                if matches!(failure.failure, StepFailure::Timeout)
                    && Instant::now() >= deadline =>
            {
                Err(format!(
                    "the job's timeout_s ({} s) passed before its pipeline finished; \
                     submit it again with a larger `timeout_s` (at most 30 days)",
                    timeout.as_secs()
                ))
            }
            Err(failure) => Err(crate::api::run_error(failure).message),
        }
    }

    async fn stage_event(&self, id: u64, event: StageEvent) {
        match event {
            StageEvent::Partial(item) => {
                self.event(id, json!({"type": "partial", "item": render_item(&item)}))
                    .await;
            }
            StageEvent::Progress {
                done,
                total,
                message,
            } => {
                let store = self.inner.store.clone();
                let m = message.clone();
                let _ = blocking(move || -> Result<_, ApiError> {
                    Ok(store.update_job(id, |j| {
                        j.progress = Some((done, total, m));
                        !j.state.is_terminal()
                    })?)
                })
                .await;
                self.event(
                    id,
                    json!({"type": "progress", "done": done, "total": total, "message": message}),
                )
                .await;
            }
        }
    }
}
