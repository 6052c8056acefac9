//! Placement groups (Ray's): bundles of resources reserved together, all or
//! none, that pipeline steps then run inside (`placement = { group, bundle
//! }` in a step's spec). On one node, `pack`, `spread` and `strict_pack`
//! place every bundle here; `strict_spread` needs a node per bundle, so a
//! group of more than one bundle is refused unless the node is in a
//! cluster. In a cluster the receiving node plans which node holds each
//! bundle (`cluster/placement.rs`) and each node reserves its share: the
//! spec's `nodes` says where every bundle is. Groups (each node's share)
//! are kept in the store and reserved again at start-up.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_store::{PlacementGroupRecord, Store};

use crate::ApiError;
use crate::resources::{Amounts, Ledger, Reservation};

/// How bundles are spread over nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// As few nodes as possible (best effort).
    Pack,
    /// As many nodes as possible (best effort).
    Spread,
    /// All bundles on one node, or the group is refused.
    StrictPack,
    /// Every bundle on a different node, or the group is refused.
    StrictSpread,
}

/// What `POST /v1/placement-groups` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// The group's name.
    pub name: String,
    /// The bundles, each reserved whole on one node.
    pub bundles: Vec<Amounts>,
    /// How bundles are placed (default `pack`).
    #[serde(default = "default_strategy")]
    pub strategy: Strategy,
    /// In a cluster, the node holding each bundle (set by the node that
    /// placed the group; not for users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
}

fn default_strategy() -> Strategy {
    Strategy::Pack
}

/// The most bundles one group may have.
const MAX_BUNDLES: usize = 64;

/// A placed group: each bundle's reservation on the node and the ledger its
/// steps reserve from.
#[derive(Debug)]
pub struct Group {
    /// Its spec.
    pub spec: GroupSpec,
    /// When it was created, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// Per bundle, its reservation here; `None` for a bundle on another
    /// node.
    bundles: Vec<Option<(Arc<Ledger>, Reservation)>>,
}

impl Group {
    /// The ledger of bundle `index`, when this node holds it.
    pub fn bundle(&self, index: usize) -> Option<&Arc<Ledger>> {
        self.bundles.get(index)?.as_ref().map(|(l, _)| l)
    }

    /// The group as the API shows it.
    pub fn to_json(&self) -> Value {
        let mut v = plan_json(&self.spec);
        for (i, held) in self.bundles.iter().enumerate() {
            if let Some((ledger, _)) = held {
                let usage = ledger.usage();
                v["bundles"][i]["reserved"] = json!(usage.reserved);
                v["bundles"][i]["free"] = json!(usage.free);
            }
        }
        v["created_unix_ms"] = json!(self.created_unix_ms);
        v
    }
}

/// A group as its spec says: each bundle's resources and node (`local`
/// on a single node).
pub fn plan_json(spec: &GroupSpec) -> Value {
    let bundles: Vec<Value> = spec
        .bundles
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let node = spec
                .nodes
                .as_ref()
                .and_then(|n| n.get(i).cloned())
                .unwrap_or_else(|| "local".into());
            json!({"index": i, "node": node, "resources": b})
        })
        .collect();
    json!({
        "name": spec.name,
        "strategy": spec.strategy,
        "state": "created",
        "bundles": bundles,
    })
}

/// 409 for a group name in use.
pub fn exists(name: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "placement_group_exists",
        format!("placement group `{name}` already exists"),
    )
    .hint("delete it first, or pick another name")
}

/// Checks a spec's bundles; `strict_spread` of several bundles needs a
/// cluster (`in_cluster`).
pub fn check(spec: &GroupSpec, in_cluster: bool) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_spec", m);
    if spec.bundles.is_empty() || spec.bundles.len() > MAX_BUNDLES {
        return Err(bad(format!(
            "bundles: give 1 to {MAX_BUNDLES} bundles, got {}",
            spec.bundles.len()
        ))
        .hint(r#"e.g. "bundles": [{"cpu": 1, "gpu": 1}, {"cpu": 1, "gpu": 1}]"#));
    }
    for (i, b) in spec.bundles.iter().enumerate() {
        b.check(&format!("bundles[{i}]")).map_err(bad)?;
        if b.is_zero() {
            return Err(bad(format!("bundles[{i}]: asks for nothing"))
                .hint("give each bundle at least one resource, e.g. {\"cpu\": 1}"));
        }
    }
    if let Some(nodes) = &spec.nodes
        && nodes.len() != spec.bundles.len()
    {
        return Err(bad(format!(
            "nodes: {} names for {} bundles",
            nodes.len(),
            spec.bundles.len()
        )));
    }
    if !in_cluster && spec.strategy == Strategy::StrictSpread && spec.bundles.len() > 1 {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "placement_infeasible",
            format!(
                "strategy strict_spread puts each of the {} bundles on a different node, \
                 and this node is not in a cluster",
                spec.bundles.len()
            ),
        )
        .hint("use spread (best effort) or pack, or run weft with --cluster"));
    }
    Ok(())
}

/// The node's resource ledger and its placement groups.
#[derive(Debug)]
pub struct PlacementGroups {
    /// This node's name in a cluster (`None` on a single node).
    me: Option<String>,
    node: Arc<Ledger>,
    store: Store,
    groups: RwLock<BTreeMap<String, Arc<Group>>>,
}

impl PlacementGroups {
    /// A node with `capacity` and no groups yet; `me` is its name in a
    /// cluster.
    pub fn new(store: Store, capacity: Amounts, me: Option<String>) -> Self {
        Self {
            me,
            node: Ledger::new("the node", capacity),
            store,
            groups: RwLock::default(),
        }
    }

    /// The node's ledger.
    pub fn node(&self) -> &Arc<Ledger> {
        &self.node
    }

    /// A group by name.
    pub fn get(&self, name: &str) -> Option<Arc<Group>> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every group, by name.
    pub fn all(&self) -> Vec<Arc<Group>> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Checks `spec` and reserves every bundle this node holds, or none.
    fn place(&self, spec: GroupSpec, created_unix_ms: u64) -> Result<Group, ApiError> {
        check(&spec, self.me.is_some())?;
        let here = |i: usize| match (&spec.nodes, &self.me) {
            (Some(nodes), Some(me)) => nodes.get(i) == Some(me),
            (Some(_), None) => false,
            (None, _) => true,
        };
        let mut bundles = Vec::with_capacity(spec.bundles.len());
        for (i, b) in spec.bundles.iter().enumerate() {
            if !here(i) {
                bundles.push(None);
                continue;
            }
            // Dropping `bundles` on failure returns what was reserved.
            let reservation = self.node.reserve(b).map_err(|short| {
                ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "insufficient_resources",
                    format!(
                        "placement group `{}`: bundle {i} {short}; nothing was reserved",
                        spec.name
                    ),
                )
                .hint("ask for less, remove other groups or pipelines, or give the node more (--cpus, --gpus, --memory-mib, --resource)")
            })?;
            let ledger = Ledger::new(
                format!("placement group `{}` bundle {i}", spec.name),
                b.clone(),
            );
            bundles.push(Some((ledger, reservation)));
        }
        Ok(Group {
            spec,
            created_unix_ms,
            bundles,
        })
    }

    /// Creates a group: all bundles reserved and the group stored, or an
    /// error and nothing changed.
    pub async fn create(&self, spec: GroupSpec) -> Result<Arc<Group>, ApiError> {
        if self.get(&spec.name).is_some() {
            return Err(exists(&spec.name));
        }
        let rec = PlacementGroupRecord::new(
            &spec.name,
            serde_json::to_string(&spec).expect("a spec serializes"),
        );
        let group = Arc::new(self.place(spec, rec.created_unix_ms)?);
        let store = self.store.clone();
        crate::blocking(move || store.put_placement_group(&rec)).await?;
        self.groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group.spec.name.clone(), group.clone());
        Ok(group)
    }

    /// Removes a group and returns its reservations; `false` when there was
    /// none. The caller checks no pipeline runs in it.
    pub async fn delete(&self, name: &str) -> Result<bool, ApiError> {
        let store = self.store.clone();
        let owned = name.to_string();
        let stored = crate::blocking(move || store.delete_placement_group(&owned)).await?;
        let live = self
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .is_some();
        Ok(stored || live)
    }

    /// Places every stored group again (start-up). A group that no longer
    /// fits (the node got smaller) is left out with a warning.
    pub async fn load_all(&self) -> Result<(), ApiError> {
        let store = self.store.clone();
        let records = crate::blocking(move || store.list_placement_groups()).await?;
        for rec in records {
            let placed = serde_json::from_str::<GroupSpec>(&rec.spec)
                .map_err(|e| ApiError::internal(e.to_string()))
                .and_then(|spec| self.place(spec, rec.created_unix_ms));
            match placed {
                Ok(group) => {
                    self.groups
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(rec.name, Arc::new(group));
                }
                Err(e) => {
                    tracing::warn!(group = %rec.name, "placement group not placed: {}", e.message)
                }
            }
        }
        Ok(())
    }
}
