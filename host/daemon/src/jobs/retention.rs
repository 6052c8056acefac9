//! Deleting jobs: one on request, and those past their retention time, in
//! the background; each with its events, block records, freed output and
//! its stages' checkpoints on this node.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use weft_store::{JobRecord, JobState};

use super::{JobSpec, Jobs, no_job, now_ms};
use crate::{ApiError, blocking};

impl Jobs {
    /// Deletes a finished job: its events and block records, its output
    /// (freed), and its stages' checkpoints on this node, in one
    /// transaction. 409 while it runs.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        let n: u64 = id.parse().map_err(|_| no_job(id))?;
        let store = self.inner.store.clone();
        let read = blocking(move || Ok::<_, ApiError>(store.job(n))).await?;
        let rec = match read {
            // A record this release cannot read never ran here: nothing to
            // stop, and no checkpoints it could name.
            Err(e) if e.is_unreadable() => {
                let store = self.inner.store.clone();
                blocking(move || store.delete_jobs(&[n], &[])).await?;
                return Ok(());
            }
            read => read?.ok_or_else(|| no_job(id))?,
        };
        if !rec.state.is_terminal() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_running",
                format!("job {} is {}", rec.id, rec.state.as_str()),
            )
            .hint("cancel it first (`weft job cancel ID`)"));
        }
        // A job just cancelled may still be stopping: its task ends first,
        // so that no checkpoint it writes outlives the deletion.
        let until = Instant::now() + Duration::from_secs(5);
        while self.live(rec.id).is_some() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let store = self.inner.store.clone();
        let checkpoints = self.checkpoints(std::slice::from_ref(&rec));
        blocking(move || store.delete_jobs(&[rec.id], &checkpoints)).await?;
        Ok(())
    }

    /// The state keys the stages of these jobs keep their checkpoints
    /// under (`weft_sdk::checkpoint::key` of the item an invoke job runs):
    /// of no use once the job is deleted, and as large as a model's weights
    /// for a fine-tuning job cancelled or failed. Not those of a job that
    /// moved to another node: if it moves back, it runs here again under
    /// the same key.
    fn checkpoints(&self, jobs: &[JobRecord]) -> Vec<String> {
        let keys = jobs.iter().filter(|rec| rec.state != JobState::Moved);
        keys.filter_map(
            |rec| match serde_json::from_str::<JobSpec>(&rec.spec_json) {
                Ok(JobSpec::Invoke(i)) => Some(format!("checkpoint/{}", self.item_key(rec.id, &i))),
                _ => None,
            },
        )
        .collect()
    }

    /// Deletes finished jobs older than the retention time, periodically.
    pub(super) async fn sweep(&self) {
        let ttl = self.inner.config.ttl;
        let every = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = self.inner.stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let store = self.inner.store.clone();
            let cutoff = now_ms().saturating_sub(ttl.as_millis() as u64);
            let swept = async {
                let list = store.clone();
                let expired: Vec<JobRecord> = blocking(move || list.list_jobs())
                    .await?
                    .into_iter()
                    .filter(|j| {
                        j.state.is_terminal() && j.finished_unix_ms.is_some_and(|t| t <= cutoff)
                    })
                    .collect();
                let checkpoints = self.checkpoints(&expired);
                let ids: Vec<u64> = expired.iter().map(|j| j.id).collect();
                blocking(move || store.delete_jobs(&ids, &checkpoints)).await
            }
            .await;
            match swept {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "deleted finished jobs past their retention"),
                Err(e) => tracing::warn!("job retention sweep failed: {}", e.message),
            }
        }
    }
}
