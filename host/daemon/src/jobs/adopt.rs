//! Invoke jobs in a cluster: listed in the work table while they run, so
//! that when their node dies another node takes them over and resumes them
//! from their last checkpoint (see `cluster/work.rs`).

use std::sync::Arc;

use serde_json::json;
use weft_store::JobRecord;

use super::{InvokeSpec, JobSpec, Jobs, Origin};
use crate::cluster::{Work, WorkEntry, WorkTable, job_key};
use crate::{ApiError, blocking};

impl Jobs {
    /// Joins the cluster's work table (cluster mode).
    pub(crate) fn join(&self, table: Arc<WorkTable>) {
        let _ = self.inner.work.set(table);
    }

    /// The item key of invoke job `id`: `job-ID` on a single node; in a
    /// cluster `job-NODE-ID` of the node it was submitted to, unique across
    /// the cluster and the same on the node that takes it over.
    pub(super) fn item_key(&self, id: u64, spec: &InvokeSpec) -> String {
        match (&spec.origin, self.inner.work.get()) {
            (Some(o), _) => format!("job-{}-{}", o.node, o.id),
            (None, Some(t)) => format!("job-{}-{id}", t.node()),
            (None, None) => format!("job-{id}"),
        }
    }

    /// The job's key in the work table: where it was submitted.
    fn work_key(table: &WorkTable, rec: &JobRecord, spec: &InvokeSpec) -> String {
        match &spec.origin {
            Some(o) => job_key(&o.node, o.id),
            None => job_key(table.node(), rec.id),
        }
    }

    fn entry(table: &WorkTable, rec: &JobRecord, spec: &InvokeSpec) -> WorkEntry {
        WorkEntry {
            owner: table.node().to_string(),
            what: Work::Job {
                id: rec.id,
                spec: serde_json::to_value(spec).expect("a job spec serializes"),
                finished_unix_ms: None,
            },
        }
    }

    /// Lists a new invoke job in the work table. A failure (NATS away) is
    /// logged: the job runs here, but cannot move if this node dies.
    pub(super) async fn register(&self, rec: &JobRecord, spec: &InvokeSpec) {
        let Some(table) = self.inner.work.get() else {
            return;
        };
        let key = Self::work_key(table, rec, spec);
        if let Err(e) = table.put(&key, &Self::entry(table, rec, spec)).await {
            tracing::warn!(
                job = rec.id,
                "cluster: job not listed in the work table: {e:#}"
            );
        }
    }

    /// Takes a finished job out of the work table: its own job is deleted;
    /// one taken over stays, marked finished, for its origin node to see.
    pub(super) async fn unregister(&self, rec: &JobRecord) {
        let Some(table) = self.inner.work.get() else {
            return;
        };
        let Ok(JobSpec::Invoke(spec)) = serde_json::from_str::<JobSpec>(&rec.spec_json) else {
            return;
        };
        let key = Self::work_key(table, rec, &spec);
        let done = async {
            if spec.origin.is_some() {
                let mut entry = Self::entry(table, rec, &spec);
                if let Work::Job {
                    finished_unix_ms, ..
                } = &mut entry.what
                {
                    *finished_unix_ms = Some(crate::cluster::now_ms());
                }
                table.put(&key, &entry).await
            } else {
                table.remove_own(&key).await
            }
        };
        if let Err(e) = done.await {
            tracing::warn!(job = rec.id, "cluster: work table not updated: {e:#}");
        }
    }

    /// Why a job this node left running must not resume here: another node
    /// took it over while this one was away. `None` resumes it (also when
    /// the table cannot be read: running it twice beats losing it).
    pub(super) async fn moved_away(&self, rec: &JobRecord, spec: &InvokeSpec) -> Option<String> {
        let table = self.inner.work.get()?;
        let key = Self::work_key(table, rec, spec);
        match table.get(&key).await {
            Ok(Some((entry, _))) if entry.owner != table.node() => {
                let (id, finished) = match &entry.what {
                    Work::Job {
                        id,
                        finished_unix_ms,
                        ..
                    } => (*id, finished_unix_ms.is_some()),
                    Work::Actor { .. } => (0, false),
                };
                if finished && let Err(e) = table.remove_any(&key).await {
                    tracing::debug!(key, "cluster: finished work entry not removed: {e:#}");
                }
                Some(format!(
                    "node `{}` took this job over as job {id} while this node was away{}; \
                     ask it (GET /v1/jobs/{id} there) for the result",
                    entry.owner,
                    if finished { " and has finished it" } else { "" }
                ))
            }
            Ok(Some(_)) => None,
            Ok(None) => {
                // Submitted while NATS was away, or the entry was lost: list
                // it now.
                self.register(rec, spec).await;
                None
            }
            Err(e) => {
                tracing::warn!(
                    job = rec.id,
                    "cluster: work table unreadable, resuming here: {e:#}"
                );
                None
            }
        }
    }

    /// Takes over the job at `key` of the work table, whose owner is dead:
    /// claims it (one node wins), pulls the state its stages checkpointed,
    /// and resumes it here. Does nothing when this node does not run the
    /// job's pipeline.
    pub(crate) async fn adopt(
        &self,
        table: &WorkTable,
        key: &str,
        revision: u64,
        entry: WorkEntry,
    ) -> Result<(), ApiError> {
        let Work::Job {
            id: old_id, spec, ..
        } = &entry.what
        else {
            return Ok(());
        };
        let mut spec: InvokeSpec = serde_json::from_value(spec.clone())
            .map_err(|e| ApiError::internal(format!("work entry {key}: bad spec: {e}")))?;
        let Some(pipeline) = self.inner.pipelines.get(&spec.pipeline) else {
            return Ok(());
        };
        spec.origin.get_or_insert_with(|| Origin {
            node: entry.owner.clone(),
            id: *old_id,
        });
        let job_spec = JobSpec::Invoke(spec.clone());
        let text = serde_json::to_string(&job_spec).expect("a job spec serializes");
        let store = self.inner.store.clone();
        let rec = blocking(move || store.create_job("invoke", &text, 0, 1)).await?;
        let claimed = table
            .claim(key, revision, &Self::entry(table, &rec, &spec))
            .await;
        if !matches!(claimed, Ok(true)) {
            let store = self.inner.store.clone();
            let id = rec.id;
            let _ = blocking(move || store.delete_job(id)).await;
            return claimed
                .map(|_| ())
                .map_err(|e| ApiError::internal(format!("claiming {key}: {e:#}")));
        }
        for step in &pipeline.steps {
            if let Err(e) = table
                .pull_state(&self.inner.store, &step.spec.stage, false)
                .await
            {
                tracing::warn!(key, stage = %step.spec.stage, "cluster: state not pulled: {e:#}");
            }
        }
        tracing::info!(
            key,
            from = %entry.owner,
            job = rec.id,
            "cluster: took over a job of a dead node"
        );
        self.event(
            rec.id,
            json!({"type": "adopted", "from_node": entry.owner, "from_job": old_id.to_string(), "origin": spec.origin}),
        )
        .await;
        self.spawn(rec, job_spec, true, None);
        Ok(())
    }
}
