//! Membership: the heartbeat this node writes into `weft_nodes`, and the
//! watcher that keeps the table of peers.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::time::MissedTickBehavior;

use super::{Live, NodeInfo, heard_at};
use crate::api::AppState;

/// A peer as last heard from.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    info: NodeInfo,
    heard: Instant,
}

/// Peers with the time since their last heartbeat; forgets those silent for
/// ten TTLs (they are reported dead until then).
pub(super) fn peers(live: &Live) -> Vec<(NodeInfo, Duration)> {
    let forget = live.config.node_ttl * 10;
    let mut nodes = live.nodes.lock().unwrap_or_else(|p| p.into_inner());
    nodes.retain(|_, s| s.heard.elapsed() <= forget);
    nodes
        .values()
        .map(|s| (s.info.clone(), s.heard.elapsed()))
        .collect()
}

/// Writes one heartbeat; `false` (logged by the caller) when it failed.
pub(super) async fn beat(live: &Live, info: &NodeInfo) -> bool {
    let put = async {
        let b = live.buckets().await?;
        let value = serde_json::to_vec(info)?;
        b.nodes.put(&live.node, value.into()).await?;
        anyhow::Ok(())
    };
    let limit = live.config.heartbeat.max(Duration::from_secs(1));
    match tokio::time::timeout(limit, put).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!("cluster: heartbeat failed: {e:#}");
            // The server may have lost its store (and the bucket with it):
            // look the buckets up again next time.
            live.forget_buckets().await;
            false
        }
        Err(_) => {
            tracing::debug!("cluster: heartbeat timed out");
            false
        }
    }
}

/// Heartbeats every `config.heartbeat` until the cluster (or just the
/// heartbeat) stops.
pub(super) async fn heartbeat(
    live: Arc<Live>,
    state: Weak<AppState>,
    info: impl Fn(&AppState) -> NodeInfo,
) {
    let mut tick = tokio::time::interval(live.config.heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = live.stop.cancelled() => return,
            _ = live.heartbeat_stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(st) = state.upgrade() else { return };
        let now = info(&st);
        drop(st);
        let ok = beat(&live, &now).await;
        if ok && failing {
            tracing::info!(node = %live.node, "cluster: heartbeats resumed");
        } else if !ok && !failing {
            tracing::warn!(node = %live.node, "cluster: heartbeats failing (is NATS up?); retrying");
        }
        failing = !ok;
    }
}

/// Follows `weft_nodes`: a put is a heartbeat, a delete a node that left.
/// Re-subscribes after every reconnection and after any error.
pub(super) async fn watch(live: Arc<Live>) {
    let mut connected = live.connected.subscribe();
    loop {
        connected.borrow_and_update();
        let watch = async {
            let b = live.buckets().await?;
            anyhow::Ok(b.nodes.watch_with_history(">").await?)
        };
        let mut entries = match watch.await {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!("cluster: watching nodes: {e:#}");
                live.forget_buckets().await;
                if !live.pause(Duration::from_millis(250)).await {
                    return;
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = live.stop.cancelled() => return,
                _ = connected.changed() => break,
                entry = entries.next() => match entry {
                    Some(Ok(entry)) => apply(&live, entry),
                    Some(Err(e)) => {
                        tracing::debug!("cluster: node watch: {e}");
                        break;
                    }
                    None => break,
                },
            }
        }
        if !live.pause(Duration::from_millis(100)).await {
            return;
        }
    }
}

fn apply(live: &Live, entry: async_nats::jetstream::kv::Entry) {
    use async_nats::jetstream::kv::Operation;
    let mut nodes = live.nodes.lock().unwrap_or_else(|p| p.into_inner());
    match entry.operation {
        Operation::Put => match serde_json::from_slice::<NodeInfo>(&entry.value) {
            Ok(info) => {
                let created = (entry.created.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
                let heard = heard_at(created, live.config.node_ttl);
                let newer = nodes.get(&entry.key).is_none_or(|s| s.heard <= heard);
                if newer {
                    nodes.insert(entry.key, Seen { info, heard });
                }
            }
            Err(e) => tracing::debug!(key = %entry.key, "cluster: unreadable heartbeat: {e}"),
        },
        Operation::Delete | Operation::Purge => {
            if nodes.remove(&entry.key).is_some() {
                tracing::info!(node = %entry.key, "cluster: node left");
            }
        }
    }
}
