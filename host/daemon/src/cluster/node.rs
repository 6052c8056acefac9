//! What a node tells the cluster about itself in every heartbeat: its
//! address, capacity (the resource ledger), load, drain state, placement
//! groups and the pipelines and routes it runs.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::AppState;

/// What a node offers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// CPU cores.
    pub cpu: f64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// GPUs.
    #[serde(default)]
    pub gpu: f64,
    /// Custom resources.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub custom: std::collections::BTreeMap<String, f64>,
    /// What replicas and placement groups have not reserved.
    #[serde(default)]
    pub free: crate::resources::Amounts,
}

/// How busy a node is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Calls running or queued: direct stage invokes and pipeline steps.
    pub in_flight: u64,
    /// Live Wasm instances (stage pools and pipeline step replicas).
    pub replicas: u64,
    /// Batch and async jobs running (or waiting for their pipeline).
    pub jobs_running: u64,
}

/// What a node heartbeats into `weft_nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node name (the KV key).
    pub name: String,
    /// Where peers reach its HTTP API (`host:port`).
    pub http_addr: String,
    /// When the daemon started, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// The daemon's version.
    pub version: String,
    /// What it offers.
    pub capacity: Capacity,
    /// How busy it is.
    pub load: Load,
    /// Whether it is being drained (its requests go to peers).
    #[serde(default)]
    pub draining: bool,
    /// Its placement groups: `{name, strategy, bundles}`.
    #[serde(default)]
    pub placement_groups: Vec<Value>,
    /// The pipelines running on it, so peers can forward to it.
    #[serde(default)]
    pub pipelines: Vec<String>,
    /// Their trigger routes, `(method, route)`.
    #[serde(default)]
    pub routes: Vec<(String, String)>,
}

/// The node's capacity as the cluster sees it: the resource ledger's
/// capacity (cores, memory, GPUs, custom resources; see `--cpus` and
/// friends) and what is free of it now.
pub fn local_capacity(state: &AppState) -> Capacity {
    let usage = state.placement.node().usage();
    Capacity {
        cpu: usage.capacity.cpu,
        memory_mib: usage.capacity.memory_mib as u64,
        gpu: usage.capacity.gpu,
        custom: usage.capacity.custom,
        free: usage.free,
    }
}

/// The node's load: calls in flight, live instances, running jobs.
pub fn local_load(state: &AppState) -> Load {
    let mut load = Load {
        jobs_running: state.jobs.running() as u64,
        ..Load::default()
    };
    for (_, s) in state.stages.stats() {
        load.replicas += s.live as u64;
        load.in_flight += s.live.saturating_sub(s.idle) as u64;
    }
    for p in state.pipelines.all() {
        for s in &p.steps {
            load.replicas += s.pool.stats().live as u64;
            load.in_flight += s.stats.queued.load(Ordering::Relaxed) as u64
                + s.stats.in_flight.load(Ordering::Relaxed) as u64;
        }
    }
    load
}

/// The heartbeat of node `name` now.
pub(super) fn node_info(
    name: &str,
    http_addr: &str,
    started_unix_ms: u64,
    draining: bool,
    state: &AppState,
) -> NodeInfo {
    let pipelines = state.pipelines.all();
    NodeInfo {
        name: name.to_string(),
        http_addr: http_addr.to_string(),
        started_unix_ms,
        version: env!("CARGO_PKG_VERSION").to_string(),
        capacity: local_capacity(state),
        load: local_load(state),
        draining,
        placement_groups: state
            .placement
            .all()
            .iter()
            .map(|g| {
                json!({
                    "name": g.spec.name,
                    "strategy": g.spec.strategy,
                    "bundles": g.spec.bundles.len(),
                })
            })
            .collect(),
        pipelines: pipelines.iter().map(|p| p.spec.name.clone()).collect(),
        routes: pipelines
            .iter()
            .flat_map(|p| p.spec.triggers.iter())
            .map(|t| (t.method.clone(), t.route.clone()))
            .collect(),
    }
}

/// A node as `GET /v1/cluster` lists it.
pub(super) fn node_json(info: &NodeInfo, alive: bool, age_ms: u64, this: bool) -> Value {
    json!({
        "name": info.name,
        "http_addr": info.http_addr,
        "alive": alive,
        "age_ms": age_ms,
        "self": this,
        "version": info.version,
        "started_unix_ms": info.started_unix_ms,
        "capacity": info.capacity,
        "load": info.load,
        "draining": info.draining,
        "placement_groups": info.placement_groups,
    })
}
