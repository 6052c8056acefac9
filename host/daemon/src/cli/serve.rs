//! `weft serve`: the daemon's options, and running it until a signal.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::{Daemon, ServeConfig};

/// `weft serve` options; defaults match [`ServeConfig::new`].
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070", env = "WEFT_LISTEN")]
    pub listen: SocketAddr,
    /// Where the node keeps its data (created if missing).
    #[arg(long, default_value = "weft-data", env = "WEFT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Per-call deadline in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub deadline_ms: u64,
    /// Memory limit per instance in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory_mib: usize,
    /// Most instances of one stage at once.
    #[arg(long, default_value_t = 8)]
    pub max_instances: usize,
    /// How long a call waits for a free instance, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub acquire_timeout_ms: u64,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 64)]
    pub max_body_mib: usize,
    /// Default memory budget of a batch job in MiB (blocks in flight);
    /// default: an eighth of RAM, between 64 MiB and 2 GiB.
    #[arg(long)]
    pub job_memory_mib: Option<u64>,
    /// Jobs of one pipeline that run at once (more wait, queued).
    #[arg(long, default_value_t = 4)]
    pub jobs_per_pipeline: usize,
    /// Hours a finished job (its record, events and output) is kept.
    #[arg(long, default_value_t = 168.0, value_parser = parse_hours)]
    pub job_ttl_hours: f64,
    /// Page cache of the store in MiB.
    #[arg(long, default_value_t = 64)]
    pub store_cache_mib: usize,
    /// Largest model upload in MiB.
    #[arg(long, default_value_t = 2048)]
    pub max_model_mib: usize,
    /// Most rows one merged `wasi:nn` compute carries, or decoder calls one
    /// joined pass carries (1 turns cross-instance batching off).
    #[arg(long, default_value_t = 32)]
    pub nn_max_batch: usize,
    /// Microseconds the first `wasi:nn` compute of a batch waits for others
    /// (decoder passes wait only for the last pass's callers, up to a
    /// quarter of its time).
    #[arg(long, default_value_t = 1000)]
    pub nn_max_wait_us: u64,
    /// Most tokens of one caller's prompt a joined decoder pass takes while
    /// other generations are in it (chunked prefill; 0: prompts run whole).
    #[arg(long, default_value_t = 128)]
    pub nn_prefill_chunk: usize,
    /// Where models from the registry run: `cpu`, or `gpu` (the node's GPU
    /// through wgpu when it has one, else the CPU; ONNX matrix products with
    /// weight operands run there).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu"])]
    pub nn_device: String,
    /// Join a cluster: the NATS server (JetStream enabled) the nodes share,
    /// e.g. nats://127.0.0.1:4222. Without it the node runs alone.
    #[arg(long, value_name = "URL", env = "WEFT_CLUSTER")]
    pub cluster: Option<String>,
    /// This node's name in the cluster (default: host name and listen port).
    #[arg(long, requires = "cluster", env = "WEFT_NODE_NAME")]
    pub node_name: Option<String>,
    /// The HTTP address peers reach this node at (default: --listen; set it
    /// when listening on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT", requires = "cluster")]
    pub advertise: Option<String>,
    /// How often the node heartbeats into the cluster, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// A node not heard from for this long is dead, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub node_ttl_ms: u64,
    /// Batch blocks of distributed jobs: how long a block task may go
    /// unacknowledged (a running block is acked as in progress every third
    /// of it) before another node gets it, in milliseconds. The first node
    /// to create the work queue sets it for the whole cluster.
    #[arg(long, default_value_t = 5_000)]
    pub block_ack_wait_ms: u64,
    /// Batch blocks of distributed jobs this node runs at once.
    #[arg(long, default_value_t = 2)]
    pub block_workers: usize,
    /// How long an object in the cluster's shared object store may go
    /// unnamed (the bytes of a deleted or replaced stage or model) before
    /// it is deleted, and how often each node looks, in seconds.
    #[arg(long, default_value_t = 600.0)]
    pub object_grace_s: f64,
    /// Cores this node offers to replicas (default: the machine's).
    #[arg(long, value_parser = crate::resources::parse_amount)]
    pub cpus: Option<f64>,
    /// GPUs this node offers (default: the hardware GPUs wgpu finds;
    /// software adapters such as llvmpipe do not count).
    #[arg(long, value_parser = crate::resources::parse_amount)]
    pub gpus: Option<f64>,
    /// Memory in MiB this node offers to replicas (default: the machine's).
    #[arg(long, value_parser = crate::resources::parse_amount)]
    pub node_memory_mib: Option<f64>,
    /// A custom resource the node offers, NAME=AMOUNT (repeatable).
    #[arg(long = "resource", value_parser = crate::resources::parse_custom)]
    pub resources: Vec<(String, f64)>,
}

/// `--job-ttl-hours`: 0 to a million (`inf` panicked at start-up, and the
/// sweeper's arithmetic is in milliseconds).
fn parse_hours(s: &str) -> Result<f64, String> {
    match crate::resources::parse_amount(s)? {
        h if h <= 1e6 => Ok(h),
        _ => Err(format!("`{s}` hours is too long (at most 1000000)")),
    }
}

pub(super) async fn serve(args: ServeArgs, token: Option<String>) -> anyhow::Result<()> {
    let mut config = ServeConfig::new(args.data_dir);
    config.listen = args.listen;
    config.token = token;
    config.max_body = args.max_body_mib << 20;
    config.runtime.deadline = Duration::from_millis(args.deadline_ms);
    config.runtime.memory_limit = args.memory_mib << 20;
    config.runtime.max_instances_per_stage = args.max_instances;
    config.runtime.acquire_timeout = Duration::from_millis(args.acquire_timeout_ms);
    if let Some(mib) = args.job_memory_mib {
        config.jobs.max_in_flight_bytes = mib.max(1) << 20;
    }
    config.jobs.per_pipeline = args.jobs_per_pipeline.max(1);
    config.store_cache = args.store_cache_mib.max(1) << 20;
    config.max_model = args.max_model_mib.max(1) << 20;
    config.nn_batch.max_batch = args.nn_max_batch.max(1);
    config.nn_batch.max_wait = Duration::from_micros(args.nn_max_wait_us);
    config.nn_batch.prefill_chunk = args.nn_prefill_chunk;
    config.capacity = crate::resources::CapacityConfig {
        cpus: args.cpus,
        gpus: args.gpus,
        memory_mib: args.node_memory_mib,
        custom: args.resources.iter().cloned().collect(),
    };
    config.nn_batch.registry_target = match args.nn_device.as_str() {
        "gpu" => weft_runtime::ExecutionTarget::Gpu,
        _ => weft_runtime::ExecutionTarget::Cpu,
    };
    config.jobs.ttl = Duration::from_secs_f64(args.job_ttl_hours * 3600.0);
    if let Some(url) = args.cluster {
        let mut cluster = crate::cluster::ClusterConfig::new(url);
        cluster.node_name = args.node_name;
        cluster.advertise = args.advertise;
        cluster.heartbeat = Duration::from_millis(args.heartbeat_ms.max(10));
        cluster.node_ttl = Duration::from_millis(args.node_ttl_ms.max(args.heartbeat_ms * 2));
        cluster.block_ack_wait = Duration::from_millis(args.block_ack_wait_ms.max(100));
        cluster.block_workers = args.block_workers.max(1);
        cluster.object_grace = Duration::from_secs_f64(args.object_grace_s.max(0.1));
        config.cluster = Some(cluster);
    }
    // Listened for before anything starts: a SIGTERM just after the address
    // is printed must not kill the process, and one while the node starts
    // (a store repair, models loading) stops it there.
    let mut stop = std::pin::pin!(stop_signal());
    let daemon = tokio::select! {
        daemon = Daemon::start(config) => daemon?,
        () = &mut stop => {
            tracing::info!("stopped while starting");
            return Ok(());
        }
    };
    out!("weft listening on http://{}", daemon.addr())?;
    daemon.run_until(stop).await
}

/// Ctrl-C (SIGINT), or SIGTERM (what systemd, Docker and Kubernetes send
/// to stop a service): either shuts the daemon down cleanly. Without
/// SIGTERM the process died at once, and the next start repaired the store.
/// On Unix the handlers are installed when this is called, not when the
/// future is first polled.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::interrupt())
            .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
            .inspect_err(|e| {
                tracing::warn!("cannot listen for SIGTERM ({e}): only Ctrl-C stops cleanly")
            })
            .ok()
    };
    async move {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = signals {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
