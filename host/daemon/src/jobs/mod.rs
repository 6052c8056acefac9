//! Jobs: batch runs of a pipeline over a dataset, and asynchronous
//! invocations of a pipeline. One job model serves both: a record in redb,
//! an append-only event log, a task that runs it, and resumption after a
//! restart.
//!
//! Life of a job: `queued` (waiting for the pipeline's job concurrency
//! limit) → `running` → `succeeded` | `failed` | `cancelled`. A daemon that
//! stops (cleanly or by `kill -9`) leaves running jobs `running` in the
//! store; the next start resumes them — a batch job from its first
//! uncommitted block, an invoke job from the start (its stages find their
//! checkpoints in `state`).

mod adopt;
mod batch;
pub(crate) mod distributed;
mod invoke;
mod retention;
pub mod spec;

pub(crate) use batch::{
    FetchObject, rows_at_once as batch_rows_at_once, run_rows as run_block_rows,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_store::{JobRecord, JobState, Store};

use crate::api::render_item;
use crate::pipeline::Pipelines;
use crate::{ApiError, blocking};
pub use spec::{BatchSpec, InvokeSpec, JobSpec, Origin};

/// Limits and retention of jobs.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Default bytes of blocks in flight per batch job.
    pub max_in_flight_bytes: u64,
    /// Jobs of one pipeline that run at once; more wait as `queued`.
    pub per_pipeline: usize,
    /// How long finished jobs are kept before they are deleted.
    pub ttl: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            max_in_flight_bytes: default_memory_budget(),
            per_pipeline: 4,
            ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// An eighth of the machine's memory, between 64 MiB and 2 GiB.
fn default_memory_budget() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(4 << 30, |kib| kib * 1024);
    (total / 8).clamp(64 << 20, 2 << 30)
}

/// A job running in this process.
#[derive(Debug)]
struct Live {
    cancel: CancellationToken,
    events: broadcast::Sender<(u64, String)>,
    /// Serialises append + broadcast so subscribers see events in order.
    order: Mutex<()>,
    started: Instant,
    done_at_start: u64,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    pipelines: Arc<Pipelines>,
    config: JobsConfig,
    live: Mutex<HashMap<u64, Arc<Live>>>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    tasks: TaskTracker,
    stop: CancellationToken,
    /// The cluster's block work queue (cluster mode; set when the node
    /// joins).
    queue: std::sync::OnceLock<Arc<crate::cluster::BlockQueue>>,
    /// Batch jobs of this node running across the cluster.
    distributed: Mutex<HashMap<u64, Arc<distributed::Running>>>,
    /// The cluster's work table (cluster mode; set when the node joins):
    /// invoke jobs are listed there so another node can take them over.
    work: std::sync::OnceLock<Arc<crate::cluster::WorkTable>>,
}

/// The jobs of this node.
#[derive(Debug, Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// 404 for an unknown job id.
pub fn no_job(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "job_not_found",
        format!("no job with id `{id}`"),
    )
    .hint("`weft job list` (GET /v1/jobs) shows the jobs this node keeps; finished jobs are deleted after the retention time")
}

impl Jobs {
    /// The job table of a node.
    pub fn new(store: Store, pipelines: Arc<Pipelines>, config: JobsConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                pipelines,
                config,
                live: Mutex::default(),
                limits: Mutex::default(),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
                queue: std::sync::OnceLock::new(),
                distributed: Mutex::default(),
                work: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Resumes every job a previous run left unfinished and starts the
    /// retention sweeper.
    pub async fn start(&self) -> Result<(), ApiError> {
        let store = self.inner.store.clone();
        let mut jobs = blocking(move || store.list_jobs()).await?;
        jobs.retain(|j| !j.state.is_terminal());
        // Those that were running go on first, each taking back its slot
        // before a queued job can (oldest first within each: the sort is
        // stable).
        jobs.sort_by_key(|j| j.state != JobState::Running);
        for rec in jobs {
            let spec = serde_json::from_str::<JobSpec>(&rec.spec_json);
            if let Ok(JobSpec::Invoke(i)) = &spec
                && let Some(why) = self.moved_away(&rec, i).await
            {
                tracing::info!(job = rec.id, "not resuming job: {why}");
                self.finish(rec.id, JobState::Moved, None, Some(why)).await;
                continue;
            }
            match spec {
                Ok(spec) => {
                    tracing::info!(job = rec.id, "resuming job");
                    let slot = (rec.state == JobState::Running)
                        .then(|| self.limit(spec.pipeline()).try_acquire_owned().ok())
                        .flatten();
                    self.spawn(rec, spec, true, slot);
                }
                Err(e) => {
                    let message = format!("cannot resume: stored spec unreadable: {e}");
                    self.finish(rec.id, JobState::Failed, None, Some(message))
                        .await;
                }
            }
        }
        let this = self.clone();
        self.inner.tasks.spawn(async move { this.sweep().await });
        Ok(())
    }

    /// Stops running jobs (they stay `running` in the store and resume on
    /// the next start) and waits for their tasks.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Validates and stores a job, starts it, and returns its record.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobRecord, ApiError> {
        if self.inner.pipelines.get(spec.pipeline()).is_none() {
            return Err(ApiError::bad_request(
                "invalid_job",
                format!("`pipeline`: no pipeline named `{}`", spec.pipeline()),
            )
            .hint(
                "create it with `weft pipeline apply FILE`; `weft pipeline list` shows what exists",
            ));
        }
        let (blocks, items) = match &spec {
            JobSpec::Batch(b) => {
                let store = self.inner.store.clone();
                let name = b.dataset.clone();
                let dataset = blocking(move || store.dataset(&name)).await?;
                let dataset = dataset.ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_job",
                        format!("`dataset`: no dataset named `{}`", b.dataset),
                    )
                    .hint("create it with `weft dataset create NAME FILE`; `weft dataset list` shows what exists")
                })?;
                if let Some(dir) = &b.output.dir {
                    batch::check_output_dir(dir)?;
                }
                if b.distribute == Some(true) && self.inner.queue.get().is_none() {
                    return Err(ApiError::bad_request(
                        "invalid_job",
                        "`distribute`: this node is not in a cluster",
                    )
                    .hint(
                        "start the daemon with `--cluster nats://...`, or leave `distribute` out",
                    ));
                }
                (dataset.blocks.len() as u32, dataset.rows)
            }
            JobSpec::Invoke(_) => (0, 1),
        };
        let json = serde_json::to_string(&spec).expect("a job spec serializes");
        let store = self.inner.store.clone();
        let kind = spec.kind();
        let rec = blocking(move || store.create_job(kind, &json, blocks, items)).await?;
        if let JobSpec::Invoke(i) = &spec {
            self.register(&rec, i).await;
        }
        self.spawn(rec.clone(), spec, false, None);
        Ok(rec)
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<JobRecord, ApiError> {
        let n: u64 = id.parse().map_err(|_| no_job(id))?;
        let store = self.inner.store.clone();
        blocking(move || store.job(n))
            .await?
            .ok_or_else(|| no_job(id))
    }

    /// Every job this node keeps, oldest first.
    pub async fn list(&self) -> Result<Vec<JobRecord>, ApiError> {
        let store = self.inner.store.clone();
        blocking(move || store.list_jobs()).await
    }

    /// Cancels a queued or running job. 409 when it has already finished.
    pub async fn cancel(&self, id: &str) -> Result<JobRecord, ApiError> {
        let n: u64 = id.parse().map_err(|_| no_job(id))?;
        // Checked and changed in one transaction: a job that ends while it
        // is cancelled is either cancelled or answered 409 with how it
        // ended, never reported cancelled while its record says otherwise.
        let Some(rec) = self.finish(n, JobState::Cancelled, None, None).await else {
            let rec = self.get(id).await?;
            return Err(if rec.state.is_terminal() {
                finished(&rec, "cancelled")
            } else {
                ApiError::internal(format!(
                    "job {n} could not be cancelled: the store refused the change (the daemon's \
                     log says why)"
                ))
            });
        };
        if let Some(live) = self.live(rec.id) {
            live.cancel.cancel();
        }
        Ok(rec)
    }

    /// Live events of a running job (`None` once it is not running here).
    pub fn subscribe(&self, id: u64) -> Option<broadcast::Receiver<(u64, String)>> {
        self.live(id).map(|l| l.events.subscribe())
    }

    /// The store (for reading outputs and events).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Items per second since this process started the job, and the
    /// seconds left at that rate.
    pub fn rate(&self, rec: &JobRecord) -> (Option<f64>, Option<f64>) {
        let Some(live) = self.live(rec.id) else {
            return (None, None);
        };
        let secs = live.started.elapsed().as_secs_f64();
        let done = rec.items_done.saturating_sub(live.done_at_start);
        if secs < 0.05 || done == 0 {
            return (None, None);
        }
        let rate = done as f64 / secs;
        let left = rec.items_total.saturating_sub(rec.items_done) as f64 / rate;
        (Some(rate), Some(left))
    }

    /// Running jobs per state, for `/metrics`.
    pub fn running(&self) -> usize {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn live(&self, id: u64) -> Option<Arc<Live>> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// The slots of `pipeline`'s jobs (`jobs.per_pipeline` of them).
    fn limit(&self, pipeline: &str) -> Arc<Semaphore> {
        self.inner
            .limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(pipeline.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.inner.config.per_pipeline.max(1))))
            .clone()
    }

    /// Starts the task that runs `rec`: `resumed` after a restart (or taken
    /// over from another node), with its pipeline's `slot` when it holds
    /// one already, else once it gets one.
    fn spawn(
        &self,
        rec: JobRecord,
        spec: JobSpec,
        resumed: bool,
        slot: Option<OwnedSemaphorePermit>,
    ) {
        let (events, _) = broadcast::channel(256);
        let live = Arc::new(Live {
            cancel: CancellationToken::new(),
            events,
            order: Mutex::new(()),
            started: Instant::now(),
            done_at_start: rec.items_done,
        });
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.id, live.clone());
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            let id = rec.id;
            let stop = this.inner.stop.clone();
            let cancel = live.cancel.clone();
            tokio::select! {
                biased;
                _ = stop.cancelled() => {}
                _ = cancel.cancelled() => {}
                () = this.run(rec, spec, &live, resumed, slot) => {}
            }
            this.inner
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    async fn run(
        &self,
        rec: JobRecord,
        spec: JobSpec,
        live: &Arc<Live>,
        resumed: bool,
        slot: Option<OwnedSemaphorePermit>,
    ) {
        let id = rec.id;
        if resumed {
            // A batch job goes on from its committed blocks; an invoke job
            // runs its pipeline again (its stages from their checkpoints).
            let event = match spec {
                JobSpec::Batch(_) => json!({"type": "resumed", "blocks_done": rec.blocks_done}),
                JobSpec::Invoke(_) => json!({"type": "resumed", "from": "checkpoints"}),
            };
            self.event(id, event).await;
        }
        // Wait for the pipeline's job concurrency limit.
        let _slot = match slot {
            Some(slot) => slot,
            None => self
                .limit(spec.pipeline())
                .acquire_owned()
                .await
                .expect("never closed"),
        };
        // The slot may be one a job stopping with the daemon let go of: a
        // queued job must not be recorded running then, or it would resume
        // as one, ahead of its turn (checked in the transaction).
        let (store, stop) = (self.inner.store.clone(), self.inner.stop.clone());
        let running = blocking(move || -> Result<_, ApiError> {
            Ok(store.update_job(id, |j| {
                if j.state == JobState::Queued && !stop.is_cancelled() {
                    j.state = JobState::Running;
                    true
                } else {
                    false
                }
            })?)
        })
        .await;
        let started = match running {
            Ok(Some(j)) if j.state == JobState::Running => j.started_unix_ms,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(job = id, "cannot start job: {}", e.message);
                return;
            }
        };
        self.event(id, json!({"type": "state", "state": "running"}))
            .await;
        let outcome = match spec {
            JobSpec::Batch(b) => batch::run(self, &rec, &b, live).await.map(|()| None),
            JobSpec::Invoke(i) => self.run_invoke(id, &i, started).await.map(Some),
        };
        match outcome {
            Ok(result) => {
                self.finish(id, JobState::Succeeded, result, None).await;
            }
            Err(message) => {
                self.finish(id, JobState::Failed, None, Some(message)).await;
            }
        }
    }

    /// Moves a job to a terminal state unless it is in one already, and
    /// records the state event. Returns the record when it changed.
    async fn finish(
        &self,
        id: u64,
        state: JobState,
        result: Option<String>,
        error: Option<String>,
    ) -> Option<JobRecord> {
        let store = self.inner.store.clone();
        let (r, e) = (result.clone(), error.clone());
        let rec = blocking(move || -> Result<_, ApiError> {
            let mut changed = false;
            let rec = store.update_job(id, |j| {
                if j.state.is_terminal() {
                    return false;
                }
                j.state = state;
                j.result_json = r;
                j.error = e;
                changed = true;
                true
            })?;
            Ok(rec.filter(|_| changed))
        })
        .await
        .inspect_err(|e| {
            tracing::error!(
                job = id,
                to = state.as_str(),
                "cannot record job state: {}",
                e.message
            );
        })
        .ok()
        .flatten()?;
        if rec.kind == "invoke" && state != JobState::Moved {
            self.unregister(&rec).await;
        }
        // A distributed batch job's tasks still queued are of no use now.
        if let Some(queue) = self.inner.queue.get()
            && rec.kind == "batch"
        {
            queue.purge(id);
        }
        let result: Value = result
            .and_then(|r| serde_json::from_str(&r).ok())
            .unwrap_or(Value::Null);
        self.event(
            id,
            json!({"type": "state", "state": state.as_str(), "result": result, "error": error}),
        )
        .await;
        Some(rec)
    }

    /// Commits block `index` of job `id` and records its `block` event (with
    /// `node`, for a cluster worker's block) in the same store transaction,
    /// then sends the event to live watchers. `None`: the block was
    /// committed already, or the job has ended.
    async fn commit_block(
        &self,
        id: u64,
        index: u32,
        commit: weft_store::BlockCommit,
        node: Option<String>,
    ) -> Result<Option<JobRecord>, ApiError> {
        let store = self.inner.store.clone();
        let live = self.live(id);
        blocking(move || -> Result<_, ApiError> {
            let _order = live
                .as_ref()
                .map(|l| l.order.lock().unwrap_or_else(|p| p.into_inner()));
            let event = |rec: &JobRecord| {
                let mut event = batch::block_event(index, rec);
                if let Some(node) = node {
                    event["node"] = serde_json::json!(node);
                }
                Some(event.to_string())
            };
            let Some((rec, logged)) = store.commit_block_logged(id, index, &commit, event)? else {
                return Ok(None);
            };
            if let (Some(l), Some(logged)) = (&live, logged) {
                let _ = l.events.send(logged);
            }
            Ok(Some(rec))
        })
        .await
    }

    /// Appends an event to the job's log and sends it to live subscribers.
    async fn event(&self, id: u64, event: Value) {
        let store = self.inner.store.clone();
        let live = self.live(id);
        let text = event.to_string();
        let result = blocking(move || -> Result<_, ApiError> {
            let _order = live
                .as_ref()
                .map(|l| l.order.lock().unwrap_or_else(|p| p.into_inner()));
            let seq = store.append_job_event(id, &text)?;
            if let Some(l) = &live {
                let _ = l.events.send((seq, text));
            }
            Ok(())
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(job = id, "cannot record job event: {}", e.message);
        }
    }
}

/// 409 for an operation on a job that has finished.
fn finished(rec: &JobRecord, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "job_finished",
        format!(
            "job {} has already ended ({}); it cannot be {what}",
            rec.id,
            rec.state.as_str()
        ),
    )
    .hint("submit a new job")
}

/// A job as the API shows it.
pub fn job_json(jobs: &Jobs, rec: &JobRecord) -> Value {
    let spec: Value = serde_json::from_str(&rec.spec_json).unwrap_or(Value::Null);
    let (rate, eta) = jobs.rate(rec);
    let mut v = json!({
        "id": rec.id.to_string(),
        "kind": rec.kind,
        "state": rec.state.as_str(),
        "pipeline": spec["pipeline"],
        "spec": spec,
        "created_unix_ms": rec.created_unix_ms,
        "started_unix_ms": rec.started_unix_ms,
        "finished_unix_ms": rec.finished_unix_ms,
        "error": rec.error,
    });
    if rec.kind == "batch" {
        v["dataset"] = spec["dataset"].clone();
        v["progress"] = json!({
            "blocks_done": rec.blocks_done,
            "blocks_total": rec.blocks_total,
            "items_done": rec.items_done,
            "items_total": rec.items_total,
            "items_failed": rec.items_failed,
            "rows_out": rec.rows_out,
            "fraction": if rec.items_total == 0 { 1.0 } else { rec.items_done as f64 / rec.items_total as f64 },
            "items_per_s": rate,
            "eta_s": eta,
        });
        v["links"] = json!({
            "output": format!("/v1/jobs/{}/output", rec.id),
            "errors": format!("/v1/jobs/{}/errors", rec.id),
            "events": format!("/v1/jobs/{}/events", rec.id),
        });
    } else {
        v["progress"] = match &rec.progress {
            Some((done, total, message)) => {
                json!({"done": done, "total": total, "message": message})
            }
            None => Value::Null,
        };
        v["result"] = rec
            .result_json
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or(Value::Null);
        v["links"] = json!({"events": format!("/v1/jobs/{}/events", rec.id)});
    }
    v
}
