//! Batch jobs across a cluster: the owner's side.
//!
//! The node a batch job was submitted to owns it: the job record, its
//! events, the dataset and the committed output live in that node's redb.
//! With `--cluster` and more than one node alive (or `"distribute": true`
//! in the spec), the owner does not run the blocks itself: it publishes one
//! [`BlockTask`] per uncommitted block to the cluster's work queue
//! (`crate::cluster::blocks`), and every node's workers, the owner's
//! included, take them. A worker fetches the block's rows from the owner
//! (`GET /v1/jobs/{id}/blocks/{index}`, [`Jobs::block_input`]), runs them
//! and posts the result back (`POST` on the same path,
//! [`Jobs::commit_remote_block`]); the owner commits it with
//! `Store::commit_block`, which records a block once, so a block run twice
//! (a worker that died after the owner committed, a redelivery) changes
//! nothing the second time. The output is the same as a local run's: blocks
//! are read back in block order, whichever node ran them.
//!
//! The owner's job task waits until every block is committed, checks the
//! failure budget as blocks arrive, and republishes tasks that went missing
//! from the queue (NATS lost its store). A restarted owner resumes the job
//! by publishing tasks for the blocks still uncommitted; duplicates of
//! tasks still queued are dropped by JetStream (same message id within two
//! minutes) or, later, skipped by the worker (the owner answers 409).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;
use weft_store::{BlockCommit, DatasetBlock, DatasetRecord, JobRecord};

use super::batch::over_budget;
use super::{BatchSpec, Jobs};
use crate::cluster::BlockQueue;
use crate::datasets::Format;
use crate::{ApiError, blocking};

/// One block of a distributed batch job: what a worker needs to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlockTask {
    /// The node that owns the job.
    pub owner: String,
    /// Its HTTP address when it published the task (workers prefer the
    /// address in the membership table: a restarted node may have moved).
    pub owner_addr: String,
    /// The job's id on the owner.
    pub job: u64,
    /// When the job was created (with `job`, unique even if the owner's
    /// data directory was replaced).
    pub job_created_unix_ms: u64,
    /// Block index.
    pub block: u32,
    /// The block's object id (blake3 of its bytes).
    pub object: String,
    /// Number of the block's first row in the dataset.
    pub first_row: u64,
    /// Rows in the block.
    pub rows: u32,
    /// Bytes of the block.
    pub bytes: u64,
    /// Dataset format (`jsonl`, `csv`, `lines`, `objects`).
    pub format: String,
    /// The pipeline the rows go through.
    pub pipeline: String,
}

impl BlockTask {
    /// The JetStream message id (deduplication of republished tasks).
    pub fn id(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.owner, self.job, self.job_created_unix_ms, self.block
        )
    }
}

/// The body of `POST /v1/jobs/{id}/blocks/{index}`: a block's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CommitBody {
    /// The node that ran the block.
    pub node: String,
    /// The block's object id, as in the task (checked by the owner).
    pub object: String,
    /// Input rows.
    pub rows_in: u32,
    /// Output rows.
    pub rows_out: u32,
    /// Failed input rows.
    pub failed: u32,
    /// Output rows, JSON lines.
    pub output: String,
    /// Error rows, JSON lines.
    #[serde(default)]
    pub errors: String,
}

impl CommitBody {
    /// The body for `commit`, run on `node`.
    pub fn new(node: &str, object: &str, commit: BlockCommit) -> Self {
        // Rows are JSON lines written by serde_json: always UTF-8.
        let text = |b: Vec<u8>| {
            String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
        };
        Self {
            node: node.to_string(),
            object: object.to_string(),
            rows_in: commit.rows_in,
            rows_out: commit.rows_out,
            failed: commit.failed,
            output: text(commit.output),
            errors: text(commit.errors),
        }
    }

    /// The commit it carries.
    pub fn commit(self) -> BlockCommit {
        BlockCommit {
            rows_in: self.rows_in,
            rows_out: self.rows_out,
            failed: self.failed,
            output: self.output.into_bytes(),
            errors: self.errors.into_bytes(),
        }
    }
}

/// Why the owner does not hand out or take a block.
#[derive(Debug)]
pub(crate) enum BlockRefusal {
    /// The job has ended, or is not known: drop the task (410).
    Gone(String),
    /// The block is committed already: drop the task (409).
    Committed,
    /// The task does not match the job (another dataset): drop it (422).
    Mismatch(String),
    /// Not now (the job is not running on its owner yet): retry (503).
    NotReady(String),
    /// Something failed (the owner unreachable, a store error): retry.
    Failed(String),
}

impl BlockRefusal {
    /// The refusal an HTTP answer of the owner means.
    pub fn from_status(status: u16, message: String) -> Self {
        match status {
            409 => Self::Committed,
            404 | 410 => Self::Gone(message),
            422 => Self::Mismatch(message),
            503 => Self::NotReady(message),
            _ => Self::Failed(message),
        }
    }
}

impl From<BlockRefusal> for ApiError {
    fn from(r: BlockRefusal) -> Self {
        match r {
            BlockRefusal::Gone(m) => ApiError::new(StatusCode::GONE, "job_finished", m)
                .hint("the job has ended; its remaining block tasks are dropped"),
            BlockRefusal::Committed => ApiError::new(
                StatusCode::CONFLICT,
                "block_committed",
                "this block is committed already",
            ),
            BlockRefusal::Mismatch(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "block_mismatch", m)
            }
            BlockRefusal::NotReady(m) => {
                let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "job_not_running", m)
                    .hint("the job resumes when its node has started; retry");
                e.retry_after = Some(1);
                e
            }
            BlockRefusal::Failed(m) => ApiError::internal(m),
        }
    }
}

/// A distributed job running on this node (its owner).
#[derive(Debug)]
pub(super) struct Running {
    /// Block object ids, by index.
    objects: Vec<String>,
    /// Committed blocks, by index.
    done: Mutex<Vec<bool>>,
    /// Woken on every commit.
    notify: Notify,
}

impl Running {
    fn remaining(&self) -> usize {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|d| !**d)
            .count()
    }

    fn is_done(&self, index: u32) -> bool {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(index as usize)
            .copied()
            .unwrap_or(false)
    }

    fn mark(&self, index: u32) {
        if let Some(d) = self
            .done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(index as usize)
        {
            *d = true;
        }
    }
}

/// Removes the job from the table of running distributed jobs when its
/// task ends (finished, failed, cancelled or stopped).
struct Registered<'a>(&'a Jobs, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.distributed().remove(&self.1);
    }
}

/// The work queue when `spec` should run across the cluster: in cluster
/// mode, when the spec asks (`"distribute": true`) or, by default, when
/// more than one node is alive as the job starts.
pub(super) async fn queue_for(jobs: &Jobs, spec: &BatchSpec) -> Option<Arc<BlockQueue>> {
    let queue = jobs.inner.queue.get()?.clone();
    match spec.distribute {
        Some(false) => None,
        Some(true) => Some(queue),
        None => (queue.nodes_alive().await > 1).then_some(queue),
    }
}

/// Runs `todo` (block index, block, first row) through the cluster's work
/// queue; returns once every block of the job is committed.
pub(super) async fn run(
    jobs: &Jobs,
    rec: &JobRecord,
    spec: &BatchSpec,
    dataset: &DatasetRecord,
    todo: Vec<(u32, DatasetBlock, u64)>,
    format: Format,
    queue: &Arc<BlockQueue>,
) -> Result<(), String> {
    let id = rec.id;
    let mut done = vec![true; dataset.blocks.len()];
    for (index, _, _) in &todo {
        done[*index as usize] = false;
    }
    let running = Arc::new(Running {
        objects: dataset.blocks.iter().map(|b| b.object.clone()).collect(),
        done: Mutex::new(done),
        notify: Notify::new(),
    });
    jobs.distributed().insert(id, running.clone());
    let _registered = Registered(jobs, id);
    let tasks: HashMap<u32, BlockTask> = todo
        .into_iter()
        .map(|(index, block, first_row)| {
            let task = BlockTask {
                owner: queue.node().to_string(),
                owner_addr: queue.http_addr().to_string(),
                job: id,
                job_created_unix_ms: rec.created_unix_ms,
                block: index,
                object: block.object,
                first_row,
                rows: block.rows,
                bytes: block.bytes,
                format: format.as_str().to_string(),
                pipeline: spec.pipeline.clone(),
            };
            (index, task)
        })
        .collect();
    let mut first: Vec<BlockTask> = tasks.values().cloned().collect();
    first.sort_by_key(|t| t.block);
    jobs.event(
        id,
        json!({"type": "distributed", "blocks": first.len(), "owner": queue.node()}),
    )
    .await;
    publish(queue, &first).await;
    drop(first);

    // Every so often, check that the queue still holds a task for every
    // block not yet committed (NATS may have lost its store).
    let check_every = queue
        .ack_wait()
        .clamp(Duration::from_secs(2), Duration::from_secs(30));
    let mut checked = Instant::now();
    loop {
        if running.remaining() == 0 {
            return Ok(());
        }
        tokio::select! {
            () = running.notify.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let store = jobs.inner.store.clone();
        let rec = blocking(move || store.job(id))
            .await
            .map_err(|e| e.message)?
            .ok_or("job deleted while running")?;
        over_budget(&rec, spec)?;
        if checked.elapsed() >= check_every {
            checked = Instant::now();
            // Counted before the blocks left: a task leaves the queue only
            // after its block was committed here.
            match queue.queued(id).await {
                Ok(queued) if (queued as usize) < running.remaining() => {
                    let missing: Vec<BlockTask> = {
                        let done = running.done.lock().unwrap_or_else(|p| p.into_inner());
                        let mut v: Vec<BlockTask> = tasks
                            .values()
                            .filter(|t| !done[t.block as usize])
                            .cloned()
                            .collect();
                        v.sort_by_key(|t| t.block);
                        v
                    };
                    tracing::warn!(
                        job = id,
                        queued,
                        remaining = missing.len(),
                        "cluster: block tasks missing from the queue; publishing them again"
                    );
                    publish(queue, &missing).await;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(job = id, "cluster: counting queued blocks: {e:#}"),
            }
        }
    }
}

/// Publishes `tasks`, retrying (with back-off) until NATS takes them all;
/// the job's stop or cancel ends it.
async fn publish(queue: &BlockQueue, tasks: &[BlockTask]) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match queue.publish(tasks).await {
            Ok(()) => return,
            Err(e) => {
                if !warned {
                    tracing::warn!(
                        "cluster: cannot queue block tasks (is NATS up?), retrying: {e:#}"
                    );
                    warned = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

impl Jobs {
    /// Hands the cluster's block work queue to the jobs (cluster mode).
    pub(crate) fn set_block_queue(&self, queue: Arc<BlockQueue>) {
        let _ = self.inner.queue.set(queue);
    }

    /// The cluster's block work queue (cluster mode only).
    pub(crate) fn block_queue(&self) -> Option<&Arc<BlockQueue>> {
        self.inner.queue.get()
    }

    fn distributed(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Running>>> {
        self.inner
            .distributed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn running_distributed(&self, id: u64) -> Option<Arc<Running>> {
        self.distributed().get(&id).cloned()
    }

    /// Why a job that is not running distributed here takes no blocks.
    async fn not_running(&self, id: u64) -> BlockRefusal {
        let store = self.inner.store.clone();
        match blocking(move || store.job(id)).await {
            Ok(Some(rec)) if rec.state.is_terminal() => {
                BlockRefusal::Gone(format!("job {id} has {}", rec.state.as_str()))
            }
            Ok(Some(_)) => BlockRefusal::NotReady(format!(
                "job {id} is not running across the cluster on this node (yet)"
            )),
            Ok(None) => BlockRefusal::Gone(format!("no job {id} on this node")),
            Err(e) => BlockRefusal::Failed(e.message),
        }
    }

    /// The rows of block `index` of distributed job `id` (owned here), for
    /// a worker to run.
    pub(crate) async fn block_input(&self, id: u64, index: u32) -> Result<Vec<u8>, BlockRefusal> {
        let Some(running) = self.running_distributed(id) else {
            return Err(self.not_running(id).await);
        };
        let Some(object) = running.objects.get(index as usize).cloned() else {
            return Err(BlockRefusal::Mismatch(format!(
                "job {id} has {} blocks, not {}",
                running.objects.len(),
                index + 1
            )));
        };
        if running.is_done(index) {
            return Err(BlockRefusal::Committed);
        }
        let store = self.inner.store.clone();
        let lookup = object.clone();
        blocking(move || store.get_object(&lookup))
            .await
            .map_err(|e| BlockRefusal::Failed(e.message))?
            .ok_or_else(|| {
                BlockRefusal::Failed(format!("dataset block object {object} is missing"))
            })
    }

    /// Commits block `index` of distributed job `id` (owned here), run on
    /// `node`. `Ok(false)` when it was committed already (nothing changes).
    pub(crate) async fn commit_remote_block(
        &self,
        id: u64,
        index: u32,
        object: &str,
        node: &str,
        commit: BlockCommit,
    ) -> Result<bool, BlockRefusal> {
        let Some(running) = self.running_distributed(id) else {
            return Err(self.not_running(id).await);
        };
        if running.objects.get(index as usize).map(String::as_str) != Some(object) {
            return Err(BlockRefusal::Mismatch(format!(
                "block {index} of job {id} is not object {object}"
            )));
        }
        if running.is_done(index) {
            return Ok(false);
        }
        let committed = self
            .commit_block(id, index, commit, Some(node.to_string()))
            .await
            .map_err(|e| BlockRefusal::Failed(e.message))?;
        if committed.is_none() {
            // Committed already, or the job ended meanwhile.
            return match self.not_running(id).await {
                BlockRefusal::Gone(m) => Err(BlockRefusal::Gone(m)),
                _ => {
                    running.mark(index);
                    Ok(false)
                }
            };
        }
        running.mark(index);
        running.notify.notify_one();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_travels_as_json_unchanged() {
        let commit = BlockCommit {
            rows_in: 3,
            rows_out: 2,
            failed: 1,
            output: b"{\"a\":\"\xc3\xa9\"}\n\"x\"\n".to_vec(),
            errors: b"{\"row\":7}\n".to_vec(),
        };
        let body = CommitBody::new("b", "obj", commit.clone());
        let text = serde_json::to_string(&body).unwrap();
        let back: CommitBody = serde_json::from_str(&text).unwrap();
        assert_eq!((back.node.as_str(), back.object.as_str()), ("b", "obj"));
        let back = back.commit();
        assert_eq!(
            (back.rows_in, back.rows_out, back.failed),
            (commit.rows_in, commit.rows_out, commit.failed)
        );
        assert_eq!(back.output, commit.output);
        assert_eq!(back.errors, commit.errors);
    }

    #[test]
    fn owner_answers_map_to_what_a_worker_does() {
        let r = |s| BlockRefusal::from_status(s, String::new());
        assert!(matches!(r(409), BlockRefusal::Committed));
        assert!(matches!(r(410), BlockRefusal::Gone(_)));
        assert!(matches!(r(422), BlockRefusal::Mismatch(_)));
        assert!(matches!(r(503), BlockRefusal::NotReady(_)));
        assert!(matches!(r(500), BlockRefusal::Failed(_)));
        // And back: each refusal is the status a worker reads.
        for (refusal, status) in [
            (BlockRefusal::Committed, 409),
            (BlockRefusal::Gone(String::new()), 410),
            (BlockRefusal::Mismatch(String::new()), 422),
            (BlockRefusal::NotReady(String::new()), 503),
        ] {
            assert_eq!(ApiError::from(refusal).status.as_u16(), status);
        }
    }

    #[test]
    fn task_ids_differ_per_block_and_per_job_instance() {
        let task = BlockTask {
            owner: "a".into(),
            owner_addr: "127.0.0.1:1".into(),
            job: 3,
            job_created_unix_ms: 10,
            block: 0,
            object: "o".into(),
            first_row: 0,
            rows: 1,
            bytes: 1,
            format: "jsonl".into(),
            pipeline: "p".into(),
        };
        let other_block = BlockTask {
            block: 1,
            ..task.clone()
        };
        let recreated_job = BlockTask {
            job_created_unix_ms: 11,
            ..task.clone()
        };
        assert_ne!(task.id(), other_block.id());
        assert_ne!(task.id(), recreated_job.id());
        assert_eq!(task.id(), task.clone().id());
    }
}
