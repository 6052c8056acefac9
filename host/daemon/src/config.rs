//! Daemon configuration: what `weft serve` takes, with the defaults a single
//! node runs on out of the box.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use weft_runtime::{BatchConfig, RuntimeConfig};

use crate::jobs::JobsConfig;

/// Everything `weft serve` needs. [`ServeConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on. Default `127.0.0.1:7070`; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Directory holding `weft.redb`. Created if missing.
    pub data_dir: PathBuf,
    /// When set, non-GET routes require `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Largest request body accepted (uploads, invoke payloads). Default 64 MiB.
    pub max_body: usize,
    /// How stages run: deadline, memory limit, pool sizes.
    pub runtime: RuntimeConfig,
    /// Batch and async jobs: memory budget, concurrency, retention.
    pub jobs: JobsConfig,
    /// Page cache of the store (redb). Default 64 MiB.
    pub store_cache: usize,
    /// Largest model upload. Default 2 GiB.
    pub max_model: usize,
    /// How concurrent `wasi:nn` computes on one graph are merged.
    pub nn_batch: BatchConfig,
    /// Join a cluster through NATS JetStream (`--cluster`); `None`: one node.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// The node's capacity: detected, or set by flags.
    pub capacity: crate::resources::CapacityConfig,
}

impl ServeConfig {
    /// The defaults, storing data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            data_dir: data_dir.into(),
            token: None,
            max_body: 64 << 20,
            runtime: RuntimeConfig::default(),
            jobs: JobsConfig::default(),
            store_cache: weft_store::DEFAULT_CACHE_BYTES,
            max_model: 2 << 30,
            nn_batch: BatchConfig::default(),
            cluster: None,
            capacity: crate::resources::CapacityConfig::default(),
        }
    }

    /// Shorthand for tests: an ephemeral loopback port.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        let mut c = Self::new(data_dir);
        c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c
    }

    /// Sets the per-call deadline.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.runtime.deadline = d;
        self
    }
}
