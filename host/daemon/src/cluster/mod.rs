//! Cluster mode (`weft serve --cluster nats://HOST:PORT`): nodes that share
//! one NATS server with JetStream.
//!
//! - **Membership** ([`membership`]): every node puts its [`NodeInfo`]
//!   (address, capacity, load) into the KV bucket `weft_nodes` under its
//!   name every heartbeat; the bucket's `max_age` is the node TTL, and a node
//!   not heard from for longer than the TTL is reported dead. A graceful
//!   shutdown deletes the node's key.
//! - **Registry replication** ([`registry`]): a stage, model or pipeline
//!   uploaded (or deleted) on any node is written to the KV bucket
//!   `weft_registry` under `KIND.NAME`, its bytes to the object store
//!   `weft_objects` under their blake3 object id; every node watches the
//!   bucket and imports what it lacks through the same code paths as an
//!   upload.
//!
//! Without `--cluster` none of this runs: [`Cluster`] answers for the one
//! node and never touches the network. `docs/cluster.md` has the design.

mod blocks;
mod collect;
mod drain;
mod membership;
mod node;
mod pending;
mod placement;
mod registry;
mod schedule;
mod work;

pub use drain::FORWARDED;
use node::node_json;
pub use node::{Capacity, Load, NodeInfo, local_capacity, local_load};

pub(crate) use blocks::BlockQueue;
pub use work::WorkTable;
pub(crate) use work::{Work, WorkEntry, actor_key, job_key};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::AppState;

pub(crate) use registry::{Change, Kind};

/// How a node joins a cluster (`weft serve --cluster ...`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222` (JetStream enabled).
    pub url: String,
    /// This node's name in the cluster; default: host name and listen port
    /// (`myhost-7070`).
    pub node_name: Option<String>,
    /// The HTTP address peers reach this node at; default: the bound listen
    /// address (set it when listening on `0.0.0.0`).
    pub advertise: Option<String>,
    /// How often the node writes its heartbeat. Default 1 s.
    pub heartbeat: Duration,
    /// A node not heard from for this long is dead (also the `max_age` of
    /// the membership bucket). Default 5 s.
    pub node_ttl: Duration,
    /// How long a batch block task may go without an ack (or an
    /// in-progress ack, sent every third of it while a block runs) before
    /// JetStream gives it to another node: the blocks of a worker that died
    /// are re-queued after this long. Default 5 s.
    pub block_ack_wait: Duration,
    /// Batch blocks this node runs at once for distributed jobs. Default 2.
    pub block_workers: usize,
    /// How long an object in the shared object store may go unnamed by any
    /// registry or state entry before a node deletes it (a deleted or
    /// replaced stage's or model's bytes), and how often each node looks.
    /// Default 10 min.
    pub object_grace: Duration,
}

impl ClusterConfig {
    /// Defaults for joining the NATS server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            node_name: None,
            advertise: None,
            heartbeat: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
            block_ack_wait: Duration::from_secs(5),
            block_workers: 2,
            object_grace: Duration::from_secs(600),
        }
    }
}

/// The default node name: host name and listen port, e.g. `myhost-7070`.
fn default_node_name(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{port}")
}

/// Node names become KV keys and subjects: 1–63 of `A-Z a-z 0-9 - _`.
fn validate_node_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    anyhow::ensure!(
        ok,
        "node name `{name}`: use 1-63 characters of letters, digits, '-' and '_'"
    );
    Ok(())
}

/// `url` without credentials (`nats://user:pass@host` → `nats://***@host`),
/// for logs and `/v1/cluster`.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let sep = if scheme.is_empty() { "" } else { "://" };
            format!("{scheme}{sep}***{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This node's view of the cluster, and its connection to it.
#[derive(Debug)]
pub struct Cluster {
    config: Option<ClusterConfig>,
    node: String,
    http_addr: String,
    started_unix_ms: u64,
    live: OnceLock<Arc<Live>>,
    /// Set by `weft node drain`: requests go to peers (see [`drain`]).
    draining: Arc<AtomicBool>,
    /// Forwards requests to peers (keeps connections open).
    http: reqwest::Client,
}

/// The JetStream buckets the cluster uses.
#[derive(Clone)]
struct Buckets {
    nodes: jetstream::kv::Store,
    registry: jetstream::kv::Store,
    objects: jetstream::object_store::ObjectStore,
    work: jetstream::kv::Store,
    state: jetstream::kv::Store,
}

/// Bucket names.
const NODES_BUCKET: &str = "weft_nodes";
const REGISTRY_BUCKET: &str = "weft_registry";
const OBJECTS_BUCKET: &str = "weft_objects";
const WORK_BUCKET: &str = "weft_work";
const STATE_BUCKET: &str = "weft_state";

/// A connected cluster node: the NATS client and the shared state of the
/// background tasks.
struct Live {
    config: ClusterConfig,
    node: String,
    /// Unique per process: `node@started_unix_ms`, the origin of registry
    /// events this process publishes.
    instance: String,
    js: jetstream::Context,
    client: async_nats::Client,
    buckets: tokio::sync::Mutex<Option<Buckets>>,
    /// Peers as last heard from (including this node's own echo).
    nodes: Mutex<HashMap<String, membership::Seen>>,
    /// Bumped on every (re)connection: watchers re-subscribe.
    connected: tokio::sync::watch::Sender<u64>,
    /// Registry events waiting to be published, in order.
    outbox: Mutex<Option<mpsc::UnboundedSender<registry::Event>>>,
    /// This process's registry changes not yet seen back from the bucket
    /// (see [`registry`]).
    pending: pending::Pending,
    /// Pipelines with `nodes`: the scheduler decides where they run.
    scheduled: schedule::Scheduled,
    /// Stops every task.
    stop: CancellationToken,
    /// Stops only the heartbeat (tests: a node that hangs).
    heartbeat_stop: CancellationToken,
    /// Set when the node must not delete its key on shutdown.
    no_leave: AtomicBool,
    tasks: TaskTracker,
    outbox_task: TaskTracker,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("node", &self.node)
            .field("url", &redact(&self.config.url))
            .finish_non_exhaustive()
    }
}

impl Live {
    /// The buckets, created (or looked up) on first use and again after an
    /// error made [`Live::forget_buckets`] drop them (a NATS server that lost
    /// its store has none).
    async fn buckets(&self) -> anyhow::Result<Buckets> {
        let mut slot = self.buckets.lock().await;
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let b = ensure_buckets(&self.js, self.config.node_ttl).await?;
        *slot = Some(b.clone());
        Ok(b)
    }

    async fn forget_buckets(&self) {
        *self.buckets.lock().await = None;
    }

    /// Sleeps `d` unless the cluster stops first; `false` when stopping.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

/// The heartbeat-paced rounds of a task that acts on the membership table
/// (taking over dead nodes' work, scheduling): the first once the node has
/// been in the cluster for a TTL, long enough to have heard every live peer.
struct Rounds {
    tick: tokio::time::Interval,
    joined: Instant,
}

impl Rounds {
    fn new(live: &Live) -> Self {
        let mut tick = tokio::time::interval(live.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            tick,
            joined: Instant::now(),
        }
    }

    /// Waits for the next round; `false` when the cluster stops.
    async fn next(&mut self, live: &Live) -> bool {
        loop {
            tokio::select! {
                _ = live.stop.cancelled() => return false,
                _ = self.tick.tick() => {}
            }
            if self.joined.elapsed() >= live.config.node_ttl {
                return true;
            }
        }
    }
}

/// A KV bucket, created when missing. The stream is made here with the
/// settings `create_key_value` would use: async-nats 0.51's
/// `create_key_value` first asks for the account's info, whose answer
/// from nats-server 2.9 (Debian's) it cannot parse.
async fn kv(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    max_value_size: i32,
) -> anyhow::Result<jetstream::kv::Store> {
    if let Ok(kv) = js.get_key_value(bucket).await {
        return Ok(kv);
    }
    let config = jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        max_message_size: max_value_size,
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    // Another node may create it at the same moment: then it exists.
    let created = js.get_or_create_stream(config).await;
    js.get_key_value(bucket)
        .await
        .with_context(|| match created {
            Err(e) => format!("creating KV bucket {bucket}: {e}"),
            Ok(_) => format!("opening KV bucket {bucket}"),
        })
}

async fn ensure_buckets(js: &jetstream::Context, ttl: Duration) -> anyhow::Result<Buckets> {
    let nodes = kv(
        js,
        NODES_BUCKET,
        "weft cluster membership: one heartbeat per node",
        ttl,
        64 << 10,
    )
    .await?;
    let registry = kv(
        js,
        REGISTRY_BUCKET,
        "weft registry: the latest stage, model and pipeline per name",
        Duration::ZERO,
        1 << 20,
    )
    .await?;
    let objects = match js.get_object_store(OBJECTS_BUCKET).await {
        Ok(os) => os,
        Err(_) => js
            .create_object_store(jetstream::object_store::Config {
                bucket: OBJECTS_BUCKET.into(),
                description: Some("weft objects by blake3 id".into()),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating object store {OBJECTS_BUCKET}"))?,
    };
    let work = kv(
        js,
        WORK_BUCKET,
        "weft work that moves to another node when its own dies: invoke jobs and actors",
        Duration::ZERO,
        1 << 20,
    )
    .await?;
    let state = kv(
        js,
        STATE_BUCKET,
        "weft stage and actor state, copied from every node",
        Duration::ZERO,
        (work::INLINE + 4096) as i32,
    )
    .await?;
    Ok(Buckets {
        nodes,
        registry,
        objects,
        work,
        state,
    })
}

impl Cluster {
    /// The cluster handle of a node listening on `addr`: inert until
    /// [`Cluster::start`], and for good when `config` is `None`.
    pub fn new(config: Option<ClusterConfig>, addr: SocketAddr) -> anyhow::Result<Self> {
        let node = match config.as_ref().and_then(|c| c.node_name.clone()) {
            Some(n) => n,
            None => default_node_name(addr.port()),
        };
        if config.is_some() {
            validate_node_name(&node)?;
        }
        let http_addr = config
            .as_ref()
            .and_then(|c| c.advertise.clone())
            .unwrap_or_else(|| addr.to_string());
        Ok(Self {
            config,
            node,
            http_addr,
            started_unix_ms: now_ms(),
            live: OnceLock::new(),
            draining: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
        })
    }

    /// Whether the node runs in cluster mode.
    pub fn enabled(&self) -> bool {
        self.config.is_some()
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Connects to NATS, makes sure the buckets exist, and starts the
    /// heartbeat, the membership and registry watchers and the publisher.
    /// Fails when NATS cannot be reached or has no JetStream; a no-op
    /// without `--cluster`.
    pub async fn start(&self, state: Weak<AppState>) -> anyhow::Result<()> {
        let Some(config) = self.config.clone() else {
            return Ok(());
        };
        let (connected, _) = tokio::sync::watch::channel(0u64);
        let events = connected.clone();
        let node = self.node.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("weft {node}"))
            .connection_timeout(Duration::from_secs(3))
            // Come back quickly after a NATS restart: 0, 100, 200 … ms, then
            // every second.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(1000))
            })
            .event_callback(move |event| {
                let events = events.clone();
                let node = node.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(node, "cluster: connected to NATS");
                            events.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(node, "cluster: disconnected from NATS, reconnecting");
                        }
                        other => tracing::debug!(node, "cluster: NATS event: {other}"),
                    }
                }
            })
            .connect(config.url.as_str())
            .await
            .with_context(|| {
                format!(
                    "cannot reach NATS at {} (start one with `nats-server -js`, see docs/cluster.md)",
                    redact(&config.url)
                )
            })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(3));
        let buckets = ensure_buckets(&js, config.node_ttl).await.with_context(|| {
            format!(
                "setting up the cluster's JetStream buckets on {} (is JetStream enabled: `nats-server -js`?)",
                redact(&config.url)
            )
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let live = Arc::new(Live {
            instance: format!("{}@{}", self.node, self.started_unix_ms),
            node: self.node.clone(),
            config,
            js,
            client,
            buckets: tokio::sync::Mutex::new(Some(buckets)),
            nodes: Mutex::new(HashMap::new()),
            connected,
            outbox: Mutex::new(Some(tx)),
            pending: pending::Pending::default(),
            scheduled: Default::default(),
            stop: CancellationToken::new(),
            heartbeat_stop: CancellationToken::new(),
            no_leave: AtomicBool::new(false),
            tasks: TaskTracker::new(),
            outbox_task: TaskTracker::new(),
        });
        // Batch blocks: the work queue, and this node's workers.
        blocks::start(&live, state.clone(), self.http_addr.clone())
            .await
            .context("setting up the batch block work queue")?;
        // The first heartbeat before returning: peers see the node as soon
        // as it serves.
        if let Some(st) = state.upgrade() {
            membership::beat(&live, &self.info(&st)).await;
        }
        live.tasks.spawn(membership::heartbeat(
            live.clone(),
            state.clone(),
            self.info_fn(),
        ));
        live.tasks.spawn(membership::watch(live.clone()));
        live.tasks
            .spawn(registry::watch(live.clone(), state.clone()));
        // Work that outlives its node: state copied to the cluster, jobs
        // and actors in the work table, and the task taking over the work
        // of dead nodes.
        if let Some(st) = state.upgrade() {
            st.runtime
                .set_state_mirror(Arc::new(work::Mirror::new(live.clone())));
            let table = Arc::new(WorkTable::new(live.clone()));
            st.jobs.join(table.clone());
            st.actors.join(table);
        }
        live.tasks.spawn(work::adopter(live.clone(), state.clone()));
        live.tasks.spawn(collect::collector(live.clone()));
        // Pipelines that run on some nodes only (`nodes = N`).
        if let Some(st) = state.upgrade() {
            for p in st.pipelines.all() {
                schedule::track(&live, &p.spec.name, Some(p.spec.clone()));
            }
        }
        live.tasks
            .spawn(schedule::scheduler(live.clone(), state.clone()));
        live.outbox_task
            .spawn(registry::publisher(live.clone(), state, rx));
        live.tasks.close();
        live.outbox_task.close();
        let _ = self.live.set(live);
        tracing::info!(node = %self.node, http_addr = %self.http_addr, "joined the cluster");
        Ok(())
    }

    /// A function computing this node's heartbeat (owned, for the task).
    fn info_fn(&self) -> impl Fn(&AppState) -> NodeInfo + Send + Sync + 'static {
        let (name, http_addr, started, draining) = (
            self.node.clone(),
            self.http_addr.clone(),
            self.started_unix_ms,
            self.draining.clone(),
        );
        move |state| {
            node::node_info(
                &name,
                &http_addr,
                started,
                draining.load(Ordering::Relaxed),
                state,
            )
        }
    }

    /// This node's heartbeat now.
    pub fn info(&self, state: &AppState) -> NodeInfo {
        (self.info_fn())(state)
    }

    /// Leaves the cluster: publishes what is still queued (for up to 2 s),
    /// stops the tasks and deletes this node's key so peers drop it at once.
    pub async fn leave(&self) {
        let Some(live) = self.live.get() else {
            return;
        };
        // Closing the queue lets the publisher finish what is queued, then end.
        live.outbox.lock().unwrap_or_else(|p| p.into_inner()).take();
        if tokio::time::timeout(Duration::from_secs(2), live.outbox_task.wait())
            .await
            .is_err()
        {
            tracing::warn!("cluster: leaving with registry changes not yet published");
        }
        live.stop.cancel();
        live.tasks.wait().await;
        if !live.no_leave.load(Ordering::Relaxed) {
            let delete = async {
                let b = live.buckets().await?;
                b.nodes.delete(&live.node).await?;
                anyhow::Ok(())
            };
            match tokio::time::timeout(Duration::from_secs(2), delete).await {
                Ok(Ok(())) => tracing::info!(node = %live.node, "left the cluster"),
                Ok(Err(e)) => tracing::warn!("cluster: could not remove this node's key: {e:#}"),
                Err(_) => tracing::warn!("cluster: timed out removing this node's key"),
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), live.client.flush()).await;
    }

    /// Test hook: stop heartbeating without leaving, as a hung node would.
    #[doc(hidden)]
    pub fn stop_heartbeats(&self) {
        if let Some(live) = self.live.get() {
            live.no_leave.store(true, Ordering::Relaxed);
            live.heartbeat_stop.cancel();
        }
    }

    /// Starts a registry change on this node, before it is written: until
    /// it is published (and comes back from the bucket), other nodes'
    /// changes to the name wait. Dropped unpublished, nothing is sent.
    pub(crate) fn begin(&self, kind: Kind, name: &str) -> pending::Local {
        pending::Local::begin(self.live.get().cloned(), kind, name)
    }

    /// `GET /v1/cluster`: this node and every peer it has heard from.
    pub fn status(&self, state: &AppState) -> Value {
        let me = self.info(state);
        let mut nodes = vec![node_json(&me, true, 0, true)];
        let Some(live) = self.live.get() else {
            return json!({
                "enabled": false,
                "node": self.node,
                "nodes": nodes,
            });
        };
        let ttl = live.config.node_ttl;
        let mut peers = membership::peers(live);
        peers.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        for (info, age) in peers.iter().filter(|(i, _)| i.name != self.node) {
            nodes.push(node_json(info, *age <= ttl, age.as_millis() as u64, false));
        }
        json!({
            "enabled": true,
            "node": self.node,
            "nats": redact(&live.config.url),
            "connected": matches!(live.client.connection_state(), async_nats::connection::State::Connected),
            "heartbeat_ms": live.config.heartbeat.as_millis() as u64,
            "node_ttl_ms": ttl.as_millis() as u64,
            "nodes": nodes,
        })
    }
}

/// When a heartbeat was heard, corrected for how old it already was (an
/// entry replayed to a watcher that just subscribed).
fn heard_at(created_unix_ms: u64, ttl: Duration) -> Instant {
    let lag = Duration::from_millis(now_ms().saturating_sub(created_unix_ms)).min(ttl * 2);
    Instant::now().checked_sub(lag).unwrap_or_else(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert!(default_node_name(7070).ends_with("-7070"));
        validate_node_name(&default_node_name(7070)).unwrap();
        for good in ["a", "node-1", "N_2"] {
            validate_node_name(good).unwrap();
        }
        for bad in ["", "a.b", "a b", "x>", &"x".repeat(64)] {
            assert!(validate_node_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_stay_out_of_logs() {
        assert_eq!(redact("nats://u:p@host:4222"), "nats://***@host:4222");
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("tok@host"), "***@host");
    }

    #[test]
    fn heard_at_accounts_for_the_entry_age() {
        let ttl = Duration::from_secs(5);
        let fresh = heard_at(now_ms(), ttl);
        assert!(fresh.elapsed() < Duration::from_millis(100));
        let old = heard_at(now_ms() - 3000, ttl);
        assert!(old.elapsed() >= Duration::from_millis(2900));
        // A clock ahead of ours: never in the future.
        let _ = heard_at(now_ms() + 60_000, ttl);
        // Bounded: a very old entry counts as twice the TTL old.
        assert!(heard_at(0, ttl).elapsed() <= ttl * 2 + Duration::from_secs(1));
    }
}
