//! Where a pipeline with `nodes = N` runs: on N of the live, undrained
//! nodes that fit it, chosen by rendezvous hashing.
//!
//! Every node computes the same choice from the same inputs — the
//! membership table (who is alive, draining, running what, with how much
//! free) and the pipeline's name — so there is no leader and nothing to
//! store: each node starts the pipeline when it is among the chosen and
//! stops it when it is not. A node that fits scores `hash(pipeline, node)`;
//! the N highest win, so a node joining or leaving moves only the
//! pipelines it wins or held (rendezvous hashing). A node that runs the
//! pipeline always fits (its own reservation is not held against it). A
//! node stops its replicas only once every chosen node runs the pipeline,
//! so there is no moment with fewer replicas than asked (make before
//! break). Views of the membership differ by up to a heartbeat between
//! nodes, so a change may briefly run the pipeline on one node too many.
//! Requests at nodes that do not run it are forwarded to one that does.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use super::{Live, membership};
use crate::api::AppState;
use crate::pipeline::PipelineSpec;
use crate::resources::Amounts;

/// The pipelines with `nodes` this node knows of, by name.
pub(super) type Scheduled = std::sync::Mutex<HashMap<String, PipelineSpec>>;

/// Remembers `spec` for scheduling (`None`: the pipeline was deleted).
pub(super) fn track(live: &Live, name: &str, spec: Option<PipelineSpec>) {
    let mut map = live.scheduled.lock().unwrap_or_else(|p| p.into_inner());
    match spec {
        Some(spec) if spec.nodes.is_some() => {
            map.insert(name.to_string(), spec);
        }
        _ => {
            map.remove(name);
        }
    }
}

/// FNV-1a of the pipeline and node names: the same on every node and
/// every build.
fn score(pipeline: &str, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pipeline.bytes().chain([0]).chain(node.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short keys: finish with a murmur step.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// What the pipeline's replica floors reserve on a node.
fn demand(spec: &PipelineSpec) -> Amounts {
    let mut total = Amounts::default();
    for step in &spec.steps {
        let floor = step.replicas.min.clamp(1, step.replicas.max.max(1));
        for _ in 0..floor {
            total.add_all(&step.resources.demand());
        }
    }
    total
}

/// A node as the scheduler sees it.
#[derive(Debug, Clone)]
pub(crate) struct Seat {
    pub name: String,
    pub running: bool,
    pub free: Amounts,
}

/// The nodes that should run `spec`: the `nodes` highest-scoring seats
/// that fit it.
pub(crate) fn choose(spec: &PipelineSpec, seats: &[Seat]) -> Vec<String> {
    let need = demand(spec);
    let mut fit: Vec<&Seat> = seats
        .iter()
        .filter(|s| s.running || need.fits_in(&s.free))
        .collect();
    fit.sort_by_key(|s| std::cmp::Reverse(score(&spec.name, &s.name)));
    fit.iter()
        .take(spec.nodes.unwrap_or(u32::MAX) as usize)
        .map(|s| s.name.clone())
        .collect()
}

/// Every heartbeat, once the node has heard its peers for a TTL: starts
/// and stops this node's share of the scheduled pipelines.
pub(super) async fn scheduler(live: Arc<Live>, state: Weak<AppState>) {
    let mut rounds = super::Rounds::new(&live);
    while rounds.next(&live).await {
        let Some(st) = state.upgrade() else { return };
        let specs: Vec<PipelineSpec> = live
            .scheduled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for spec in specs {
            schedule_one(&live, &st, spec).await;
        }
    }
}

async fn schedule_one(live: &Live, st: &AppState, spec: PipelineSpec) {
    let ttl = live.config.node_ttl;
    let here = st.pipelines.get(&spec.name);
    let mut seats = Vec::new();
    if !st.cluster.draining() {
        seats.push(Seat {
            name: live.node.clone(),
            running: here.is_some(),
            free: st.placement.node().usage().free,
        });
    }
    for (info, age) in membership::peers(live) {
        if info.name != live.node && age <= ttl && !info.draining {
            seats.push(Seat {
                running: info.pipelines.contains(&spec.name),
                name: info.name,
                free: info.capacity.free,
            });
        }
    }
    let chosen = choose(&spec, &seats);
    if chosen.contains(&live.node) {
        if here.as_ref().is_none_or(|p| p.spec != spec) {
            match st.pipelines.apply(spec.clone()).await {
                Ok(_) => {
                    tracing::info!(pipeline = %spec.name, "cluster: scheduled here; started")
                }
                Err(e) => {
                    tracing::debug!(pipeline = %spec.name, "cluster: scheduled here but not started (retrying): {}", e.message)
                }
            }
        }
    } else if here.is_some() {
        let covered = chosen
            .iter()
            .all(|n| seats.iter().any(|s| &s.name == n && s.running));
        if covered {
            match st.pipelines.delete(&spec.name).await {
                Ok(_) => tracing::info!(
                    pipeline = %spec.name,
                    nodes = ?chosen,
                    "cluster: scheduled on other nodes; stopped here"
                ),
                Err(e) => {
                    tracing::warn!(pipeline = %spec.name, "cluster: not stopped: {}", e.message)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(nodes: u32, cpu: f64) -> PipelineSpec {
        let toml = format!(
            "name = \"p\"\nnodes = {nodes}\n[[steps]]\nstage = \"s\"\nresources = {{ cpu = {cpu} }}\n"
        );
        PipelineSpec::from_toml(&toml).unwrap()
    }

    fn seats(free: &[f64]) -> Vec<Seat> {
        free.iter()
            .enumerate()
            .map(|(i, &cpu)| Seat {
                name: format!("n{i}"),
                running: false,
                free: Amounts {
                    cpu,
                    ..Default::default()
                },
            })
            .collect()
    }

    #[test]
    fn choice_is_stable_fits_and_moves_little() {
        let all = seats(&[4.0; 5]);
        let two = choose(&spec(2, 1.0), &all);
        assert_eq!(two.len(), 2);
        assert_eq!(choose(&spec(2, 1.0), &all), two, "deterministic");
        // A node that is not chosen leaving changes nothing.
        let rest: Vec<Seat> = all
            .iter()
            .filter(|s| !two.contains(&s.name) && s.name != all[0].name)
            .chain(all.iter().filter(|s| two.contains(&s.name)))
            .cloned()
            .collect();
        let mut again = choose(&spec(2, 1.0), &rest);
        again.sort();
        let mut want = two.clone();
        want.sort();
        assert_eq!(again, want);
        // A chosen node leaving: the other stays chosen.
        let without: Vec<Seat> = all.iter().filter(|s| s.name != two[0]).cloned().collect();
        let after = choose(&spec(2, 1.0), &without);
        assert!(after.contains(&two[1]), "{after:?} keeps {}", two[1]);
        // Nodes without room are skipped, unless they run it already.
        let mut tight = seats(&[0.5, 0.5, 2.0]);
        assert_eq!(choose(&spec(2, 1.0), &tight), ["n2"]);
        tight[0].running = true;
        let mut got = choose(&spec(2, 1.0), &tight);
        got.sort();
        assert_eq!(got, ["n0", "n2"]);
    }
}
