//! Placement groups across the nodes of a cluster.
//!
//! The node that receives `POST /v1/placement-groups` plans where each
//! bundle goes from what every live, undrained node last heartbeated as
//! free (and its own ledger), by the group's strategy, then reserves each
//! node's share on that node (its own directly, peers' through their API,
//! with the plan in the spec's `nodes`). Each node's ledger has the last
//! word: when any share does not fit after all (a heartbeat was stale, or
//! another group got there first), the shares already made are deleted
//! again and the request fails with nothing reserved anywhere.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode, Uri};
use serde_json::Value;

use super::{Cluster, membership};
use crate::ApiError;
use crate::api::AppState;
use crate::placement::{GroupSpec, Strategy};
use crate::resources::Amounts;

/// A node that may take bundles: its name and what it has free.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub name: String,
    pub free: Amounts,
}

fn infeasible(spec: &GroupSpec, why: String) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "placement_infeasible",
        format!(
            "placement group `{}` ({} bundles, {}): {why}; nothing was reserved",
            spec.name,
            spec.bundles.len(),
            serde_json::to_value(spec.strategy)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        ),
    )
    .hint("ask for less, use a looser strategy (pack, spread), free resources, or add nodes")
}

/// Which node each bundle goes to (by index), or why none works. Candidates
/// come first-preferred (this node first).
pub(crate) fn plan(spec: &GroupSpec, candidates: &[Candidate]) -> Result<Vec<String>, ApiError> {
    let mut free: Vec<Amounts> = candidates.iter().map(|c| c.free.clone()).collect();
    let n = spec.bundles.len();
    let mut total = Amounts::default();
    for b in &spec.bundles {
        total.add_all(b);
    }
    let one_node = || candidates.iter().position(|c| total.fits_in(&c.free));
    // Largest bundles first: they are the hardest to place.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let size = |i: usize| spec.bundles[i].cpu + spec.bundles[i].gpu * 1000.0;
        size(b).total_cmp(&size(a))
    });
    let mut out = vec![String::new(); n];
    match spec.strategy {
        Strategy::StrictPack => {
            let i = one_node().ok_or_else(|| {
                infeasible(spec, "no single node has room for all the bundles".into())
            })?;
            return Ok(vec![candidates[i].name.clone(); n]);
        }
        Strategy::Pack => {
            if let Some(i) = one_node() {
                return Ok(vec![candidates[i].name.clone(); n]);
            }
            for &b in &order {
                let i = (0..free.len())
                    .find(|&i| spec.bundles[b].fits_in(&free[i]))
                    .ok_or_else(|| {
                        infeasible(spec, format!("bundle {b} fits on no node's free resources"))
                    })?;
                free[i].subtract(&spec.bundles[b]);
                out[b] = candidates[i].name.clone();
            }
        }
        Strategy::Spread | Strategy::StrictSpread => {
            let strict = spec.strategy == Strategy::StrictSpread;
            if strict && n > candidates.len() {
                return Err(infeasible(
                    spec,
                    format!("it needs {n} nodes and {} are live", candidates.len()),
                ));
            }
            let mut used: Vec<usize> = vec![0; free.len()];
            for &b in &order {
                // The least used node that fits; ties to the most free CPU.
                let pick = (0..free.len())
                    .filter(|&i| spec.bundles[b].fits_in(&free[i]) && (!strict || used[i] == 0))
                    .min_by(|&x, &y| {
                        used[x]
                            .cmp(&used[y])
                            .then(free[y].cpu.total_cmp(&free[x].cpu))
                    })
                    .ok_or_else(|| {
                        infeasible(
                            spec,
                            if strict {
                                format!("bundle {b} fits on no node not already holding a bundle")
                            } else {
                                format!("bundle {b} fits on no node's free resources")
                            },
                        )
                    })?;
                free[pick].subtract(&spec.bundles[b]);
                used[pick] += 1;
                out[b] = candidates[pick].name.clone();
            }
        }
    }
    Ok(out)
}

impl Cluster {
    /// Live, undrained nodes with what they have free; this node first.
    fn candidates(&self, state: &AppState) -> Vec<(Candidate, Option<String>)> {
        let mut out = vec![(
            Candidate {
                name: self.node.clone(),
                free: state.placement.node().usage().free,
            },
            None,
        )];
        if let Some(live) = self.live.get() {
            let mut peers = membership::peers(live);
            peers.sort_by(|a, b| a.0.name.cmp(&b.0.name));
            for (info, age) in peers {
                if info.name != self.node && age <= live.config.node_ttl && !info.draining {
                    out.push((
                        Candidate {
                            name: info.name.clone(),
                            free: info.capacity.free.clone(),
                        },
                        Some(info.http_addr),
                    ));
                }
            }
        }
        out
    }

    /// Creates a placement group across the cluster (see the module doc):
    /// the JSON of the group with each bundle's node, or an error and
    /// nothing reserved.
    pub async fn create_group(&self, state: &AppState, spec: GroupSpec) -> Result<Value, ApiError> {
        if !self.enabled() || spec.nodes.is_some() {
            return Ok(state.placement.create(spec).await?.to_json());
        }
        crate::placement::check(&spec, true)?;
        if state.placement.get(&spec.name).is_some()
            || self
                .peer_groups()
                .iter()
                .any(|(_, g)| g["name"] == spec.name.as_str())
        {
            return Err(crate::placement::exists(&spec.name));
        }
        let candidates = self.candidates(state);
        let plain: Vec<Candidate> = candidates.iter().map(|(c, _)| c.clone()).collect();
        let nodes = plan(&spec, &plain)?;
        let mut spec = spec;
        spec.nodes = Some(nodes.clone());
        // This node's share first (its ledger is current), then the peers'.
        let mut targets: Vec<&String> = nodes.iter().collect::<BTreeSet<_>>().into_iter().collect();
        targets.sort_by_key(|n| **n != self.node);
        let mut done: Vec<Option<String>> = Vec::new();
        let mut failure = None;
        for node in targets {
            let addr = candidates
                .iter()
                .find(|(c, _)| &c.name == node)
                .and_then(|(_, a)| a.clone());
            let made = match &addr {
                None => state.placement.create(spec.clone()).await.map(|_| ()),
                Some(addr) => self.group_call(addr, Method::POST, "", &spec).await,
            };
            match made {
                Ok(()) => done.push(addr),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(mut e) = failure {
            for addr in done {
                let undone = match &addr {
                    None => state.placement.delete(&spec.name).await.map(|_| ()),
                    Some(addr) => {
                        self.group_call(addr, Method::DELETE, &format!("/{}", spec.name), &())
                            .await
                    }
                };
                if let Err(u) = undone {
                    tracing::warn!(group = %spec.name, "placement group share not rolled back: {}", u.message);
                }
            }
            if !e.message.contains("nothing was reserved") {
                e.message.push_str("; nothing was reserved");
            }
            return Err(e);
        }
        match state.placement.get(&spec.name) {
            Some(g) => Ok(g.to_json()),
            None => Ok(crate::placement::plan_json(&spec)),
        }
    }

    /// Deletes the shares of group `name` on every peer that has one: the
    /// nodes of its plan (`nodes`, when this node held a share) and those
    /// whose heartbeats list it. `Ok(true)` when some peer was asked.
    pub async fn delete_group_elsewhere(
        &self,
        name: &str,
        nodes: Option<&[String]>,
    ) -> Result<bool, ApiError> {
        let mut addrs: BTreeSet<String> = self
            .peer_groups()
            .into_iter()
            .filter(|(_, g)| g["name"] == name)
            .map(|(addr, _)| addr)
            .collect();
        for node in nodes.unwrap_or_default() {
            if node != &self.node
                && let Some(addr) = self.peer_addr(node)
            {
                addrs.insert(addr);
            }
        }
        for addr in &addrs {
            self.group_call(addr, Method::DELETE, &format!("/{name}"), &())
                .await?;
        }
        Ok(!addrs.is_empty())
    }

    /// `(address, group JSON)` of every group live peers heartbeat.
    fn peer_groups(&self) -> Vec<(String, Value)> {
        let Some(live) = self.live.get() else {
            return Vec::new();
        };
        membership::peers(live)
            .into_iter()
            .filter(|(i, age)| i.name != self.node && *age <= live.config.node_ttl)
            .flat_map(|(i, _)| {
                let addr = i.http_addr.clone();
                i.placement_groups
                    .into_iter()
                    .map(move |g| (addr.clone(), g))
            })
            .collect()
    }

    /// `METHOD /v1/placement-groups{suffix}` on a peer, marked forwarded
    /// (the peer acts on its own share only); its error as ours.
    async fn group_call(
        &self,
        addr: &str,
        method: Method,
        suffix: &str,
        body: &impl serde::Serialize,
    ) -> Result<(), ApiError> {
        let uri: Uri = format!("/v1/placement-groups{suffix}")
            .parse()
            .map_err(|e| ApiError::internal(format!("{e}")))?;
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().expect("valid"));
        let body = serde_json::to_vec(body).expect("serializes");
        let answer = self
            .forward(addr, &method, &uri, &headers, body.into())
            .await?;
        let status = answer.status();
        if status.is_success() || (method == Method::DELETE && status == StatusCode::NOT_FOUND) {
            return Ok(());
        }
        let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let code = match v["error"]["code"].as_str() {
            Some("insufficient_resources") => "insufficient_resources",
            Some("placement_group_exists") => "placement_group_exists",
            Some("placement_infeasible") => "placement_infeasible",
            _ => "placement_failed",
        };
        Err(ApiError::new(
            status,
            code,
            format!(
                "node at {addr}: {}",
                v["error"]["message"].as_str().unwrap_or("no answer")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(n: f64) -> Amounts {
        Amounts {
            cpu: n,
            ..Default::default()
        }
    }

    fn spec(strategy: Strategy, bundles: &[f64]) -> GroupSpec {
        GroupSpec {
            name: "g".into(),
            bundles: bundles.iter().map(|&c| cpus(c)).collect(),
            strategy,
            nodes: None,
        }
    }

    fn nodes(free: &[f64]) -> Vec<Candidate> {
        free.iter()
            .enumerate()
            .map(|(i, &c)| Candidate {
                name: format!("n{}", i + 1),
                free: cpus(c),
            })
            .collect()
    }

    #[test]
    fn strategies_place_bundles_as_ray_does() {
        let three = nodes(&[4.0, 4.0, 4.0]);
        assert_eq!(
            plan(&spec(Strategy::Pack, &[1.0, 1.0, 1.0]), &three).unwrap(),
            ["n1", "n1", "n1"]
        );
        assert_eq!(
            plan(&spec(Strategy::Pack, &[3.0, 3.0]), &three).unwrap(),
            ["n1", "n2"],
            "pack spills over when one node is not enough"
        );
        assert_eq!(
            plan(&spec(Strategy::StrictPack, &[2.0, 2.0]), &three).unwrap(),
            ["n1", "n1"]
        );
        let err = plan(&spec(Strategy::StrictPack, &[3.0, 3.0]), &three).unwrap_err();
        assert_eq!(err.status, StatusCode::CONFLICT);
        assert!(err.message.contains("no single node"), "{}", err.message);
        let spread = plan(&spec(Strategy::Spread, &[1.0, 1.0, 1.0]), &three).unwrap();
        assert_eq!(
            spread.iter().collect::<BTreeSet<_>>().len(),
            3,
            "{spread:?}"
        );
        let strict = plan(&spec(Strategy::StrictSpread, &[1.0, 1.0, 1.0]), &three).unwrap();
        assert_eq!(strict.iter().collect::<BTreeSet<_>>().len(), 3);
        // Four bundles on three nodes: spread doubles up, strict refuses.
        assert!(plan(&spec(Strategy::Spread, &[1.0; 4]), &three).is_ok());
        let err = plan(&spec(Strategy::StrictSpread, &[1.0; 4]), &three).unwrap_err();
        assert!(err.message.contains("needs 4 nodes"), "{}", err.message);
        // Room in total but not per node.
        let err = plan(
            &spec(Strategy::StrictSpread, &[3.0, 3.0]),
            &nodes(&[4.0, 2.0]),
        )
        .unwrap_err();
        assert!(
            err.message.contains("nothing was reserved"),
            "{}",
            err.message
        );
    }
}
