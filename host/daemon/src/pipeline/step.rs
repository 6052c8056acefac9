//! One step of a running pipeline: a bounded queue, worker tasks that batch
//! what they take from it, retries, and a reaper that scales idle replicas
//! down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weft_runtime::{InvokeError, Item, StageEvent, StagePool};

use super::spec::StepSpec;
use crate::resources::ReplicaGrant;

/// Why a step did not produce output for a request.
#[derive(Debug, Clone)]
pub enum StepFailure {
    /// The step's queue is full: the caller should back off (503).
    Overloaded,
    /// The request's deadline (or the step's timeout) passed (504).
    Timeout,
    /// The stage failed.
    Invoke(InvokeError),
    /// The step was stopped (its pipeline replaced or deleted) before it
    /// answered; running the request again reaches the new version.
    Stopped,
    /// A batched stage broke the one-output-per-input contract.
    BatchShape {
        /// Items sent.
        sent: usize,
        /// Items returned.
        got: usize,
    },
}

/// Work for a step: the items of one request.
struct Job {
    items: Vec<Item>,
    sink: Option<mpsc::Sender<StageEvent>>,
    deadline: Instant,
    reply: oneshot::Sender<Result<Vec<Item>, StepFailure>>,
}

/// Live counters of a step, for status pages and metrics.
#[derive(Debug, Default)]
pub struct StepStats {
    /// Requests waiting in the queue.
    pub queued: AtomicUsize,
    /// Calls running now.
    pub in_flight: AtomicUsize,
    /// Calls made (a batch counts once).
    pub calls: AtomicU64,
    /// Items processed.
    pub items: AtomicU64,
    /// Requests refused because the queue was full.
    pub rejected: AtomicU64,
    /// Retries made.
    pub retries: AtomicU64,
    /// Requests inside running calls.
    pub running: AtomicUsize,
    /// Replicas the autoscaler wants now: `ceil(ongoing / target_in_flight)`
    /// within `[max(min, 1), max]`; only that many workers take requests.
    pub target_replicas: AtomicUsize,
    /// Time spent in calls, microseconds (its rate over replicas is the
    /// step's utilisation).
    pub busy_us: AtomicU64,
    /// Call latencies in microseconds, newest last (bounded), for p50/p99.
    latencies: std::sync::Mutex<std::collections::VecDeque<u64>>,
}

/// How many latencies a step remembers for its percentiles.
const LATENCY_WINDOW: usize = 1024;

impl StepStats {
    fn record(&self, elapsed: Duration) {
        self.busy_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        let mut l = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() == LATENCY_WINDOW {
            l.pop_front();
        }
        l.push_back(elapsed.as_micros() as u64);
    }

    /// The `q` quantile (0..=1) of recent call latencies, in microseconds.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let mut v: Vec<u64> = self
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        Some(v[i])
    }
}

/// A running step.
#[derive(Debug)]
pub struct Step {
    /// The step name.
    pub name: String,
    /// Its spec.
    pub spec: StepSpec,
    /// The instance pool (its bound is `replicas.max`).
    pub pool: Arc<StagePool>,
    /// Live counters.
    pub stats: Arc<StepStats>,
    tx: mpsc::Sender<Job>,
    stop: CancellationToken,
    /// Wakes idle workers when the target replica count rises.
    scale: Arc<Notify>,
    /// One reservation per replica in the target.
    pub grant: Arc<ReplicaGrant>,
}

impl Drop for Step {
    fn drop(&mut self) {
        // Workers finish the jobs they hold, then exit.
        self.stop.cancel();
    }
}

impl Step {
    /// Starts the step's workers and reaper as tasks of `tasks`.
    /// `grant` already holds the reservations of the step's floor.
    pub fn start(
        name: String,
        spec: StepSpec,
        pool: Arc<StagePool>,
        grant: Arc<ReplicaGrant>,
        tasks: &TaskTracker,
    ) -> Self {
        let max = spec.replicas.max as usize;
        let batch_size = spec.batch.as_ref().map_or(1, |b| b.max_size);
        let capacity = (max * spec.replicas.target_in_flight as usize).max(batch_size * 2);
        let (tx, rx) = mpsc::channel(capacity);
        let rx = Arc::new(Mutex::new(Queue { rx, held: None }));
        let stats = Arc::new(StepStats::default());
        stats.target_replicas.store(floor(&spec), Ordering::Relaxed);
        let stop = CancellationToken::new();
        let scale = Arc::new(Notify::new());
        for index in 0..max {
            tasks.spawn(worker(
                index,
                rx.clone(),
                pool.clone(),
                spec.clone(),
                stats.clone(),
                stop.clone(),
                scale.clone(),
            ));
        }
        tasks.spawn(reaper(
            pool.clone(),
            spec.clone(),
            stats.clone(),
            stop.clone(),
            scale.clone(),
            grant.clone(),
        ));
        Self {
            name,
            spec,
            pool,
            stats,
            tx,
            stop,
            scale,
            grant,
        }
    }

    /// Runs `items` through this step before `deadline`.
    pub async fn run(
        &self,
        items: Vec<Item>,
        sink: Option<mpsc::Sender<StageEvent>>,
        deadline: Instant,
    ) -> Result<Vec<Item>, StepFailure> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            items,
            sink,
            deadline,
            reply,
        };
        // Count before sending: a worker may take the job (and decrement)
        // before `try_send` even returns.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(job).is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(StepFailure::Overloaded);
        }
        // Scale up at once when the load asks for it (Ray Serve's
        // `target_ongoing_requests` with no upscale delay).
        // As many as the node's (or the group's) resources allow.
        let want = self.grant.ensure(desired(&self.spec, &self.stats));
        if self
            .stats
            .target_replicas
            .fetch_max(want, Ordering::Relaxed)
            < want
        {
            self.scale.notify_waiters();
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(StepFailure::Stopped),
            Err(_) => Err(StepFailure::Timeout),
        }
    }
}

/// The fewest replicas a step runs with: `min`, but at least one worker
/// (with `min = 0` its instance still goes away when idle).
fn floor(spec: &StepSpec) -> usize {
    (spec.replicas.min as usize).clamp(1, spec.replicas.max as usize)
}

/// Replicas for the current load: requests waiting or running, divided by
/// `target_in_flight`, within `[floor, max]`.
fn desired(spec: &StepSpec, stats: &StepStats) -> usize {
    let ongoing = stats.queued.load(Ordering::Relaxed) + stats.running.load(Ordering::Relaxed);
    ongoing
        .div_ceil(spec.replicas.target_in_flight.max(1) as usize)
        .clamp(floor(spec), spec.replicas.max as usize)
}

/// Worker `index` takes jobs (up to a batch) while it is within the step's
/// target replica count, runs them, and answers each caller.
async fn worker(
    index: usize,
    rx: Arc<Mutex<Queue>>,
    pool: Arc<StagePool>,
    spec: StepSpec,
    stats: Arc<StepStats>,
    stop: CancellationToken,
    scale: Arc<Notify>,
) {
    loop {
        loop {
            let notified = scale.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if index < stats.target_replicas.load(Ordering::Relaxed) {
                break;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = notified => {}
            }
        }
        let jobs = tokio::select! {
            _ = stop.cancelled() => return,
            jobs = take_batch(&rx, &spec) => match jobs {
                Some(jobs) => jobs,
                None => return,
            },
        };
        stats.queued.fetch_sub(jobs.len(), Ordering::Relaxed);
        // A caller that gave up (deadline, disconnect) is skipped.
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
        if jobs.is_empty() {
            continue;
        }
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let requests = jobs.len();
        stats.running.fetch_add(requests, Ordering::Relaxed);
        let started = Instant::now();
        if spec.batch.is_some() {
            run_batch(jobs, &pool, &spec, &stats).await;
        } else {
            for mut job in jobs {
                let n = job.items.len() as u64;
                stats.items.fetch_add(n, Ordering::Relaxed);
                let work = call(&pool, &spec, &stats, job.items, job.sink, job.deadline);
                tokio::select! {
                    result = work => {
                        let _ = job.reply.send(result);
                    }
                    // The caller went away (client disconnected, deadline):
                    // dropping the call discards its instance and stops the guest.
                    _ = job.reply.closed() => {}
                }
            }
        }
        stats.record(started.elapsed());
        stats.calls.fetch_add(1, Ordering::Relaxed);
        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        stats.running.fetch_sub(requests, Ordering::Relaxed);
    }
}

/// A step's queue, shared by its workers.
struct Queue {
    rx: mpsc::Receiver<Job>,
    /// A job taken while filling a batch it did not fit in: the next batch
    /// starts with it.
    held: Option<Job>,
}

/// The first job, then (for batched steps) more until `max_size` items or
/// `max_wait_ms` have passed. A job that would take the batch past
/// `max_size` waits for the next one (a job larger than `max_size` on its
/// own is a batch by itself).
async fn take_batch(queue: &Mutex<Queue>, spec: &StepSpec) -> Option<Vec<Job>> {
    let mut queue = queue.lock().await;
    let Queue { rx, held } = &mut *queue;
    let first = match held.take() {
        Some(job) => job,
        None => rx.recv().await?,
    };
    let Some(batch) = &spec.batch else {
        return Some(vec![first]);
    };
    let until = Instant::now() + Duration::from_millis(batch.max_wait_ms);
    let mut size = first.items.len();
    let mut jobs = vec![first];
    while size < batch.max_size {
        match tokio::time::timeout_at(until.into(), rx.recv()).await {
            Ok(Some(job)) if size + job.items.len() > batch.max_size => {
                *held = Some(job);
                break;
            }
            Ok(Some(job)) => {
                size += job.items.len();
                jobs.push(job);
            }
            _ => break,
        }
    }
    Some(jobs)
}

/// One call for several requests: concatenated in, split back by count.
async fn run_batch(jobs: Vec<Job>, pool: &StagePool, spec: &StepSpec, stats: &StepStats) {
    let deadline = jobs.iter().map(|j| j.deadline).min().expect("non-empty");
    let counts: Vec<usize> = jobs.iter().map(|j| j.items.len()).collect();
    let sent: usize = counts.iter().sum();
    let mut items = Vec::with_capacity(sent);
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        items.extend(job.items);
        replies.push(job.reply);
    }
    stats.items.fetch_add(sent as u64, Ordering::Relaxed);
    // Kept so a failed batch can be split up (only when there is something
    // to split).
    let kept = if replies.len() > 1 {
        items.clone()
    } else {
        Vec::new()
    };
    match call(pool, spec, stats, items, None, deadline).await {
        Ok(out) if out.len() == sent => {
            let mut out = out.into_iter();
            for (reply, n) in replies.into_iter().zip(counts) {
                let _ = reply.send(Ok(out.by_ref().take(n).collect()));
            }
        }
        Ok(out) => {
            for reply in replies {
                let _ = reply.send(Err(StepFailure::BatchShape {
                    sent,
                    got: out.len(),
                }));
            }
        }
        Err(failure @ StepFailure::Invoke(_)) if replies.len() > 1 => {
            // One bad request must not fail the others it was batched with:
            // run each request's items on their own, so only the culprit
            // gets the error.
            stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                stage = pool.name(),
                "batch of {} requests failed ({failure:?}); retrying them one by one",
                replies.len()
            );
            let mut at = 0;
            for (reply, n) in replies.into_iter().zip(counts) {
                let own: Vec<Item> = kept[at..at + n].to_vec();
                at += n;
                if reply.is_closed() {
                    continue;
                }
                let result = call(pool, spec, stats, own, None, deadline).await;
                let _ = reply.send(result);
            }
        }
        Err(failure) => {
            // Timeouts and overload hit every caller of the batch alike.
            for reply in replies {
                let _ = reply.send(Err(failure.clone()));
            }
        }
    }
}

/// Calls the stage, retrying `retryable` errors and traps with exponential
/// backoff, never past the deadline or the step's timeout.
async fn call(
    pool: &StagePool,
    spec: &StepSpec,
    stats: &StepStats,
    items: Vec<Item>,
    sink: Option<mpsc::Sender<StageEvent>>,
    deadline: Instant,
) -> Result<Vec<Item>, StepFailure> {
    let step_timeout = spec.timeout_ms.map(Duration::from_millis);
    let attempts = spec.retries.attempts;
    let mut items = Some(items);
    for attempt in 0..=attempts {
        let mut budget = deadline.saturating_duration_since(Instant::now());
        if let Some(t) = step_timeout {
            budget = budget.min(t);
        }
        if budget.is_zero() {
            return Err(StepFailure::Timeout);
        }
        // Keep a copy only when another attempt may need it.
        let batch = if attempt < attempts {
            items.clone().expect("items kept for retries")
        } else {
            items.take().expect("items for the last attempt")
        };
        // Dropping the call on timeout discards its instance: the guest stops.
        // The guest's own interrupt comes a second after the budget, so the
        // timeout below (which names the step) is what normally fires.
        let guest_deadline = Instant::now()
            .checked_add(budget + Duration::from_secs(1))
            .unwrap_or(deadline);
        let result = tokio::time::timeout(
            budget,
            pool.invoke_until(batch, sink.clone(), Some(guest_deadline)),
        )
        .await;
        match result {
            Err(_) => return Err(StepFailure::Timeout),
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(e @ (InvokeError::Retryable { .. } | InvokeError::Trap { .. })))
                if attempt < attempts =>
            {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(stage = pool.name(), attempt, "retrying after: {e}");
                let backoff = Duration::from_millis(spec.retries.backoff_ms << attempt.min(16));
                tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
            }
            Ok(Err(e)) => return Err(StepFailure::Invoke(e)),
        }
    }
    Err(StepFailure::Timeout)
}

/// Every second: keep `replicas.min` alive (refilling after traps and
/// timeouts) and drop idle replicas above it once they have been idle for
/// `idle_timeout_s` (scale to zero when min = 0).
async fn reaper(
    pool: Arc<StagePool>,
    spec: StepSpec,
    stats: Arc<StepStats>,
    stop: CancellationToken,
    scale: Arc<Notify>,
    grant: Arc<ReplicaGrant>,
) {
    let min = spec.replicas.min as usize;
    let idle_for = Duration::from_secs(spec.replicas.idle_timeout_s);
    // Since when the load has wanted fewer replicas than the target.
    let mut below_since: Option<Instant> = None;
    if min > 0
        && let Err(e) = pool.prewarm(min).await
    {
        tracing::warn!(
            stage = pool.name(),
            "could not pre-warm {min} replicas: {e}"
        );
    }
    let mut tick =
        tokio::time::interval(Duration::from_secs(1).min(idle_for.max(Duration::from_millis(100))));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                // Traps and timeouts discard instances: refill up to `min`.
                if pool.stats().live < min
                    && let Err(e) = pool.prewarm(min).await
                {
                    tracing::warn!(stage = pool.name(), "could not keep {min} replicas warm: {e}");
                }
                // Scale the target down once the load has wanted fewer
                // replicas for `idle_timeout_s` (Ray's downscale delay);
                // up again at once if it wants more.
                let want = desired(&spec, &stats);
                let target = stats.target_replicas.load(Ordering::Relaxed);
                if want > target {
                    let want = grant.ensure(want);
                    stats.target_replicas.fetch_max(want, Ordering::Relaxed);
                    scale.notify_waiters();
                    below_since = None;
                } else if want < target {
                    let since = *below_since.get_or_insert_with(Instant::now);
                    // Only if no enqueue raised the target meanwhile.
                    if since.elapsed() >= idle_for
                        && stats
                            .target_replicas
                            .compare_exchange(target, want, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        // The target now, in case a request raised it again.
                        grant.release_to(stats.target_replicas.load(Ordering::Relaxed));
                        tracing::info!(stage = pool.name(), from = target, to = want, "target replicas lowered");
                        below_since = None;
                    }
                } else {
                    below_since = None;
                }
                let dropped = pool.shrink_idle(min, idle_for);
                if dropped > 0 {
                    tracing::info!(stage = pool.name(), dropped, "scaled down idle replicas");
                }
            }
        }
    }
}
