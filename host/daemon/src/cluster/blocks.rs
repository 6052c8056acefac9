//! Batch blocks across the cluster: the JetStream work queue and the
//! workers every node runs.
//!
//! The stream `WEFT_BLOCKS` (work-queue retention, subjects
//! `weft.blocks.<owner>.<job>`) holds one small task per block still to do
//! ([`BlockTask`]). One durable pull consumer, `block-workers`, is shared by
//! every node: a message goes to one worker at a time, stays in the stream
//! until that worker acks it, and is delivered again (to whichever node
//! pulls next) when it is not acked within the ack wait. The owner side
//! (publishing, committing) is `crate::jobs::distributed`.
//!
//! A worker takes one task per free slot (`--block-workers`, default 2),
//! fetches the block's rows from the owner, runs them through the pipeline
//! (the same code as a local job) and sends the result to the owner, which
//! commits it once. Only then does the worker ack. While a block runs the
//! worker sends in-progress acks, so a long block is not redelivered; a
//! worker that dies stops sending them, and after the ack wait another node
//! gets the block.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use weft_store::BlockCommit;

use super::{Live, membership};
use crate::api::AppState;
use crate::jobs::distributed::{BlockRefusal, BlockTask, CommitBody};
use crate::jobs::{FetchObject, batch_rows_at_once, run_block_rows};

/// The work-queue stream.
pub(crate) const STREAM: &str = "WEFT_BLOCKS";
/// Its subjects: `weft.blocks.<owner node>.<job id>`.
const SUBJECTS: &str = "weft.blocks.>";
/// The durable pull consumer every node's workers share.
pub(crate) const CONSUMER: &str = "block-workers";

/// The subject of a job's tasks.
pub(crate) fn subject(owner: &str, job: u64) -> String {
    format!("weft.blocks.{owner}.{job}")
}

/// What became of one task.
enum Outcome {
    /// Done with it (committed, or nothing left to do): ack.
    Ack,
    /// Not now: give it back, to be delivered again after `Duration`.
    Retry(Duration, String),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
struct Stats {
    /// Blocks run here whose result the owner committed.
    processed: AtomicU64,
    /// Blocks run here whose result was already committed (redelivered
    /// while the first run's answer was on its way).
    duplicates: AtomicU64,
    /// Tasks dropped without running: job ended, block already committed.
    skipped: AtomicU64,
    /// Tasks given back (owner unreachable, pipeline not here yet).
    retried: AtomicU64,
    /// Tasks received that had been delivered before.
    redelivered: AtomicU64,
    /// Blocks running here now.
    in_flight: AtomicU64,
}

/// This node's side of the block work queue.
pub(crate) struct BlockQueue {
    live: Arc<Live>,
    state: Weak<AppState>,
    http_addr: String,
    token: Option<String>,
    http: reqwest::Client,
    consumer: tokio::sync::Mutex<Option<PullConsumer>>,
    /// The consumer's ack wait in ms, as JetStream has it (the first node
    /// to create the consumer set it; in-progress acks follow it).
    ack_wait_ms: AtomicU64,
    stats: Stats,
}

impl std::fmt::Debug for BlockQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockQueue")
            .field("node", &self.live.node)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The stream and the consumer, created when missing (by the first node;
/// later nodes use them as they are, so the first node's ack wait holds).
async fn ensure(js: &jetstream::Context, ack_wait: Duration) -> anyhow::Result<PullConsumer> {
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            description: Some("weft batch blocks to run, one message per block".into()),
            subjects: vec![SUBJECTS.into()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            storage: jetstream::stream::StorageType::File,
            num_replicas: 1,
            // Republishing a job's tasks (owner restart) within this window
            // does not queue the same block twice.
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating stream {STREAM}"))?;
    stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.into()),
                description: Some("every weft node's block workers".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait,
                // Redelivered for as long as it takes (a block is only done
                // once its owner committed it).
                max_deliver: -1,
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("creating consumer {CONSUMER} on {STREAM}"))
}

/// The ack wait JetStream applies to `consumer`, in ms.
fn ack_wait_ms(consumer: &PullConsumer) -> u64 {
    (consumer.cached_info().config.ack_wait.as_millis() as u64).max(100)
}

/// Sets up the stream and consumer, hands the queue to the node's jobs and
/// starts the workers. Called by [`super::Cluster::start`].
pub(super) async fn start(
    live: &Arc<Live>,
    state: Weak<AppState>,
    http_addr: String,
) -> anyhow::Result<()> {
    let consumer = ensure(&live.js, live.config.block_ack_wait).await?;
    let Some(st) = state.upgrade() else {
        return Ok(());
    };
    let queue = Arc::new(BlockQueue {
        live: live.clone(),
        state: state.clone(),
        http_addr,
        token: st.config.token.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
        ack_wait_ms: AtomicU64::new(ack_wait_ms(&consumer)),
        consumer: tokio::sync::Mutex::new(Some(consumer)),
        stats: Stats::default(),
    });
    st.jobs.set_block_queue(queue.clone());
    live.tasks.spawn(work(queue));
    Ok(())
}

impl BlockQueue {
    /// This node's name.
    pub(crate) fn node(&self) -> &str {
        &self.live.node
    }

    /// Where peers reach this node.
    pub(crate) fn http_addr(&self) -> &str {
        &self.http_addr
    }

    /// The consumer's ack wait.
    pub(crate) fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.ack_wait_ms.load(Ordering::Relaxed))
    }

    /// Nodes alive now, this one included. Right after the node joined,
    /// waits (up to a second) for the membership table to fill.
    pub(crate) async fn nodes_alive(&self) -> usize {
        let ttl = self.live.config.node_ttl;
        let count = || {
            let peers = membership::peers(&self.live);
            let me = peers.iter().any(|(i, _)| i.name == self.live.node);
            let alive = peers
                .iter()
                .filter(|(i, age)| *age <= ttl && i.name != self.live.node)
                .count();
            (me, alive + 1)
        };
        for _ in 0..50 {
            let (me, n) = count();
            if me {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        count().1
    }

    /// The consumer, looked up (or created) again after an error dropped it.
    async fn consumer(&self) -> anyhow::Result<PullConsumer> {
        let mut slot = self.consumer.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = ensure(&self.live.js, self.live.config.block_ack_wait).await?;
        self.ack_wait_ms.store(ack_wait_ms(&c), Ordering::Relaxed);
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn forget_consumer(&self) {
        *self.consumer.lock().await = None;
    }

    /// Queues `tasks` and waits until JetStream has stored every one. A
    /// task with the same id published within two minutes is stored once.
    pub(crate) async fn publish(&self, tasks: &[BlockTask]) -> anyhow::Result<()> {
        let sent = async {
            for chunk in tasks.chunks(256) {
                let mut acks = Vec::with_capacity(chunk.len());
                for task in chunk {
                    let payload = serde_json::to_vec(task)?;
                    let message = jetstream::message::PublishMessage::build()
                        .payload(payload.into())
                        .message_id(task.id());
                    let subject = subject(&task.owner, task.job);
                    acks.push(self.live.js.send_publish(subject, message).await?);
                }
                for ack in acks {
                    ack.await.context("JetStream did not store a block task")?;
                }
            }
            anyhow::Ok(())
        };
        let sent = sent.await;
        if sent.is_err() {
            // No stream (NATS lost its store)? Make it again for the next
            // try.
            self.forget_consumer().await;
            let _ = self.consumer().await;
        }
        sent
    }

    /// Tasks of `job` (owned by this node) in the stream: queued or being
    /// worked on, not yet acked.
    pub(crate) async fn queued(&self, job: u64) -> anyhow::Result<u64> {
        let stream = match self.live.js.get_stream(STREAM).await {
            Ok(s) => s,
            Err(e) => {
                // Gone (NATS lost its store): made again, it holds nothing.
                self.forget_consumer().await;
                self.consumer()
                    .await
                    .with_context(|| format!("looking up stream {STREAM}: {e}"))?;
                return Ok(0);
            }
        };
        let subject = subject(&self.live.node, job);
        let mut subjects = stream.info_with_subjects(&subject).await?;
        let mut n = 0;
        while let Some(entry) = subjects.next().await {
            let (s, count) = entry?;
            if s == subject {
                n += count as u64;
            }
        }
        Ok(n)
    }

    /// Drops every task of `job` (owned by this node) still queued: the job
    /// has ended. Best effort, in the background.
    pub(crate) fn purge(self: &Arc<Self>, job: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            let subject = subject(&this.live.node, job);
            let purge = async {
                let stream = this.live.js.get_stream(STREAM).await?;
                stream.purge().filter(&subject).await?;
                anyhow::Ok(())
            };
            if let Err(e) = tokio::time::timeout(Duration::from_secs(5), purge)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")))
            {
                tracing::debug!(job, "cluster: purging the job's block tasks: {e:#}");
            }
        });
    }

    /// `http://ADDR` of the owner of `task`: from the membership table when
    /// the node is known (its address may have changed since it published),
    /// else the address in the task. `Err` when the owner is known dead.
    fn owner_url(&self, task: &BlockTask) -> Result<String, String> {
        let ttl = self.live.config.node_ttl;
        let peers = membership::peers(&self.live);
        match peers.iter().find(|(i, _)| i.name == task.owner) {
            Some((_, age)) if *age > ttl => Err(format!(
                "owner {} not heard from for {} ms",
                task.owner,
                age.as_millis()
            )),
            Some((info, _)) => Ok(format!("http://{}", info.http_addr)),
            None => Ok(format!("http://{}", task.owner_addr)),
        }
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Runs one task: fetch the rows, run them, hand the result to the owner.
    async fn handle(&self, task: &BlockTask) -> Outcome {
        let Some(state) = self.state.upgrade() else {
            return Outcome::Retry(Duration::ZERO, "node stopping".into());
        };
        let retry_soon = Duration::from_secs(1);
        let local = task.owner == self.live.node;
        let base = if local {
            None
        } else {
            match self.owner_url(task) {
                Ok(u) => Some(u),
                Err(why) => return Outcome::Retry(self.live.config.node_ttl.max(retry_soon), why),
            }
        };
        // Replication of the pipeline may still be on its way to this node.
        let Some(rows_at_once) = batch_rows_at_once(&state.jobs, &task.pipeline) else {
            return Outcome::Retry(
                retry_soon,
                format!("pipeline `{}` is not on this node (yet)", task.pipeline),
            );
        };
        let Ok(format) = task.format.parse::<crate::datasets::Format>() else {
            tracing::warn!(job = task.job, format = %task.format, "cluster: block task of an unknown format dropped");
            return Outcome::Ack;
        };
        let input = match &base {
            None => state.jobs.block_input(task.job, task.block).await,
            Some(base) => self.fetch_block(base, task).await,
        };
        let data = match input {
            Ok(d) => d,
            Err(refusal) => return self.refused(task, refusal),
        };
        if weft_store::object_id(&data) != task.object {
            tracing::warn!(
                job = task.job,
                block = task.block,
                "cluster: block bytes do not match the task; dropped"
            );
            return Outcome::Ack;
        }
        let fetch = base.clone().map(|b| self.object_fetcher(b));
        let commit = run_block_rows(
            &state.jobs,
            &task.pipeline,
            format,
            &data,
            task.first_row,
            &rows_at_once,
            fetch,
        )
        .await;
        drop(data);
        let answer = match &base {
            None => {
                state
                    .jobs
                    .commit_remote_block(
                        task.job,
                        task.block,
                        &task.object,
                        &self.live.node,
                        commit,
                    )
                    .await
            }
            Some(base) => self.send_commit(base, task, commit).await,
        };
        match answer {
            Ok(true) => {
                self.stats.processed.fetch_add(1, Ordering::Relaxed);
                Outcome::Ack
            }
            Ok(false) => {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                Outcome::Ack
            }
            Err(refusal) => self.refused(task, refusal),
        }
    }

    fn refused(&self, task: &BlockTask, refusal: BlockRefusal) -> Outcome {
        match refusal {
            BlockRefusal::Gone(_) | BlockRefusal::Committed => {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                Outcome::Ack
            }
            BlockRefusal::Mismatch(why) => {
                tracing::warn!(
                    job = task.job,
                    block = task.block,
                    "cluster: block task dropped: {why}"
                );
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                Outcome::Ack
            }
            BlockRefusal::NotReady(why) | BlockRefusal::Failed(why) => {
                Outcome::Retry(Duration::from_secs(1), why)
            }
        }
    }

    /// `GET {owner}/v1/jobs/{id}/blocks/{index}`: the block's rows.
    async fn fetch_block(&self, base: &str, task: &BlockTask) -> Result<Vec<u8>, BlockRefusal> {
        let url = format!("{base}/v1/jobs/{}/blocks/{}", task.job, task.block);
        let r = self
            .authorized(self.http.get(&url))
            .send()
            .await
            .map_err(|e| BlockRefusal::Failed(format!("GET {url}: {e}")))?;
        let status = r.status().as_u16();
        if status == 200 {
            return r
                .bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| BlockRefusal::Failed(format!("GET {url}: {e}")));
        }
        let text = r.text().await.unwrap_or_default();
        Err(BlockRefusal::from_status(
            status,
            format!("GET {url}: {status} {text}"),
        ))
    }

    /// Objects the rows name (`objects` datasets), from the owner.
    fn object_fetcher(&self, base: String) -> FetchObject {
        let http = self.http.clone();
        Arc::new(move |id: String| {
            let (http, url) = (http.clone(), format!("{base}/v1/objects/{id}"));
            Box::pin(async move {
                let r = http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                match r.status().as_u16() {
                    200 => {
                        let b = r.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
                        if weft_store::object_id(&b) != id {
                            return Err(format!("GET {url}: the bytes do not match the id"));
                        }
                        Ok(Some(b.to_vec()))
                    }
                    404 => Ok(None),
                    s => Err(format!("GET {url}: {s}")),
                }
            })
        })
    }

    /// `POST {owner}/v1/jobs/{id}/blocks/{index}` with the result, retried
    /// (with back-off, for about the ack wait) while the owner is
    /// unreachable or not ready. `Ok(committed)`.
    async fn send_commit(
        &self,
        base: &str,
        task: &BlockTask,
        commit: BlockCommit,
    ) -> Result<bool, BlockRefusal> {
        let url = format!("{base}/v1/jobs/{}/blocks/{}", task.job, task.block);
        let body = CommitBody::new(&self.live.node, &task.object, commit);
        let body = serde_json::to_vec(&body).expect("a commit serializes");
        let until = tokio::time::Instant::now() + self.ack_wait().max(Duration::from_secs(5));
        let mut backoff = Duration::from_millis(100);
        loop {
            let sent = self
                .authorized(self.http.post(&url))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let refusal = match sent {
                Ok(r) if r.status().is_success() => {
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    return Ok(v["committed"].as_bool().unwrap_or(false));
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    BlockRefusal::from_status(status, format!("POST {url}: {status} {text}"))
                }
                Err(e) => BlockRefusal::Failed(format!("POST {url}: {e}")),
            };
            match refusal {
                BlockRefusal::NotReady(_) | BlockRefusal::Failed(_)
                    if tokio::time::Instant::now() + backoff < until =>
                {
                    tracing::debug!(
                        job = task.job,
                        block = task.block,
                        "cluster: commit not taken yet: {refusal:?}"
                    );
                    if !self.live.pause(backoff).await {
                        return Err(refusal);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                other => return Err(other),
            }
        }
    }

    /// Prometheus lines for `/metrics`.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        let s = &self.stats;
        let node = &self.live.node;
        for (name, kind, help, v) in [
            (
                "weft_cluster_blocks_processed_total",
                "counter",
                "Batch blocks this node ran for a distributed job and whose result the job's owner committed.",
                &s.processed,
            ),
            (
                "weft_cluster_blocks_duplicate_total",
                "counter",
                "Batch blocks this node ran whose result had already been committed (a redelivery).",
                &s.duplicates,
            ),
            (
                "weft_cluster_blocks_skipped_total",
                "counter",
                "Block tasks this node dropped without running (job ended, block already committed).",
                &s.skipped,
            ),
            (
                "weft_cluster_blocks_retried_total",
                "counter",
                "Block tasks this node gave back to the queue (owner unreachable, pipeline not here yet, node stopping).",
                &s.retried,
            ),
            (
                "weft_cluster_blocks_redelivered_total",
                "counter",
                "Block tasks this node received that had been delivered before.",
                &s.redelivered,
            ),
            (
                "weft_cluster_blocks_in_flight",
                "gauge",
                "Batch blocks running on this node for distributed jobs.",
                &s.in_flight,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{node=\"{node}\"}} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
    }
}

/// Takes tasks while a slot is free, until the cluster stops.
async fn work(queue: Arc<BlockQueue>) {
    let live = queue.live.clone();
    let slots = Arc::new(Semaphore::new(live.config.block_workers.max(1)));
    loop {
        let permit = tokio::select! {
            _ = live.stop.cancelled() => return,
            p = slots.clone().acquire_owned() => p.expect("never closed"),
        };
        // A draining node takes no new blocks (it finishes those it has).
        if queue.state.upgrade().is_some_and(|s| s.cluster.draining()) {
            drop(permit);
            if !live.pause(Duration::from_millis(250)).await {
                return;
            }
            continue;
        }
        let asked = std::time::Instant::now();
        let next = async {
            let consumer = queue.consumer().await?;
            let mut batch = consumer
                .batch()
                .max_messages(1)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!("pulling a block task: {e}"))?;
            match batch.next().await {
                Some(Ok(m)) => Ok(Some(m)),
                Some(Err(e)) => Err(anyhow::anyhow!("pulling a block task: {e}")),
                None => Ok(None),
            }
        };
        let next = tokio::select! {
            _ = live.stop.cancelled() => return,
            n = next => n,
        };
        match next {
            Ok(Some(message)) => {
                let queue = queue.clone();
                live.tasks.spawn(async move {
                    process(&queue, message).await;
                    drop(permit);
                });
            }
            // Nothing to do; a pull that ended early (the server answered at
            // once) must not spin.
            Ok(None) if asked.elapsed() < Duration::from_millis(500) => {
                if !live.pause(Duration::from_millis(250)).await {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!("cluster: {e:#}");
                // The stream or consumer may be gone (NATS lost its store):
                // look them up (or make them) again.
                queue.forget_consumer().await;
                if !live.pause(Duration::from_millis(250)).await {
                    return;
                }
            }
        }
    }
}

/// Runs one delivered task and acks it, or gives it back.
async fn process(queue: &BlockQueue, message: jetstream::Message) {
    let live = &queue.live;
    if message.info().is_ok_and(|i| i.delivered > 1) {
        queue.stats.redelivered.fetch_add(1, Ordering::Relaxed);
    }
    let (message, acker) = message.split();
    let task: BlockTask = match serde_json::from_slice(&message.payload) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("cluster: unreadable block task dropped: {e}");
            let _ = acker.ack_with(AckKind::Term).await;
            return;
        }
    };
    queue.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let every = (queue.ack_wait() / 3).max(Duration::from_millis(50));
    let progress = async {
        loop {
            tokio::time::sleep(every).await;
            let _ = acker.ack_with(AckKind::Progress).await;
        }
    };
    let outcome = tokio::select! {
        o = queue.handle(&task) => o,
        () = progress => unreachable!("the progress loop never ends"),
        // Stopping (a clean shutdown): give the block back at once.
        _ = live.stop.cancelled() => Outcome::Retry(Duration::ZERO, "node stopping".into()),
    };
    queue.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    match outcome {
        Outcome::Ack => {
            if let Err(e) = acker.double_ack().await {
                // The task comes back after the ack wait; the owner has the
                // block already, so the next worker just drops it.
                tracing::debug!(
                    job = task.job,
                    block = task.block,
                    "cluster: ack failed: {e}"
                );
            }
        }
        Outcome::Retry(delay, why) => {
            queue.stats.retried.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                job = task.job,
                block = task.block,
                "cluster: block task given back: {why}"
            );
            let delay = (!delay.is_zero()).then_some(delay);
            let _ = acker.ack_with(AckKind::Nak(delay)).await;
        }
    }
}
