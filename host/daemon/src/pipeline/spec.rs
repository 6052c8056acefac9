//! Pipeline specs: the TOML/JSON a user writes, parsed with errors that name
//! the bad field, then validated as a whole.
//!
//! ```toml
//! name = "text"
//! timeout_ms = 10000
//!
//! [[steps]]
//! stage = "normalize"
//! batch = { max_size = 32, max_wait_ms = 5 }
//! replicas = { min = 1, max = 4, target_in_flight = 2, idle_timeout_s = 60 }
//!
//! [[steps]]
//! stage = "count"
//! retries = { attempts = 2, backoff_ms = 20 }
//!
//! [[triggers]]
//! route = "/text"
//! ```
//!
//! Steps run in order; each step's `inputs` names the step it reads from
//! (default: the previous one). Only chains are accepted today, but the field
//! is there so a DAG with fan-out/fan-in can follow without a new format.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// A whole pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Unique name; the API path segment.
    pub name: String,
    /// Deadline of one request through every step, in ms (default 30 000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The steps, in execution order.
    pub steps: Vec<StepSpec>,
    /// HTTP endpoints that run this pipeline.
    #[serde(default)]
    pub triggers: Vec<TriggerSpec>,
    /// In a cluster, how many nodes run this pipeline's replicas (default:
    /// every node it fits). The cluster picks them by resources and
    /// rendezvous hashing; other nodes forward its requests to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
}

/// One step: a stage plus how to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Step name (default: the stage name); unique within the pipeline.
    #[serde(default)]
    pub name: Option<String>,
    /// The stage to run.
    pub stage: String,
    /// A specific stage version (default: the latest at apply time).
    #[serde(default)]
    pub version: Option<u32>,
    /// Merged over the stage version's deploy-time config, passed to `init`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// What one replica reserves from the node (or from its placement
    /// group's bundle) while it is part of the step's replica target.
    #[serde(default)]
    pub resources: Resources,
    /// Run the step's replicas inside a placement group's bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// How many instances may serve this step.
    #[serde(default)]
    pub replicas: Replicas,
    /// Dynamic batching: gather items from concurrent requests into one call.
    #[serde(default)]
    pub batch: Option<Batch>,
    /// Deadline of one call of this step, in ms (default: the pipeline's).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Retries of `retryable` errors and traps.
    #[serde(default)]
    pub retries: Retries,
    /// Steps whose output feeds this one (default: the previous step).
    #[serde(default)]
    pub inputs: Option<Vec<String>>,
}

/// Resources one replica reserves. Nothing by default: Wasm instances are
/// cheap and share the node's cores, so a step asks for what it really
/// needs (a GPU, a core of its own, a licence).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// CPU cores (fractions allowed).
    pub cpu: f64,
    /// GPUs.
    pub gpu: u32,
    /// Memory in MiB.
    pub memory_mib: Option<u64>,
    /// Custom resources the node declares (`--resource NAME=AMOUNT`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, f64>,
}

impl Resources {
    /// The amounts one replica reserves.
    pub fn demand(&self) -> crate::resources::Amounts {
        crate::resources::Amounts {
            cpu: self.cpu,
            gpu: f64::from(self.gpu),
            memory_mib: self.memory_mib.unwrap_or(0) as f64,
            custom: self.custom.clone(),
        }
    }
}

/// Where a step's replicas reserve their resources: a bundle of a placement
/// group instead of the node's free pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// The placement group's name.
    pub group: String,
    /// Which of its bundles (default 0).
    #[serde(default)]
    pub bundle: usize,
}

/// Replica bounds and the autoscaling target (Ray Serve's model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Replicas {
    /// Instances kept warm; 0 allows scale to zero.
    pub min: u32,
    /// Most instances at once.
    pub max: u32,
    /// Requests in flight per replica before another replica is added.
    pub target_in_flight: u32,
    /// Idle seconds before a replica above `min` is removed.
    pub idle_timeout_s: u64,
}

impl Default for Replicas {
    fn default() -> Self {
        Self {
            min: 1,
            max: 4,
            target_in_flight: 2,
            idle_timeout_s: 300,
        }
    }
}

/// Dynamic batching settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Most items in one `process` call.
    pub max_size: usize,
    /// Longest wait for a batch to fill, in ms.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retries {
    /// Extra attempts after the first (0 = no retry).
    pub attempts: u32,
    /// First backoff in ms; doubles per attempt.
    pub backoff_ms: u64,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            attempts: 0,
            backoff_ms: 100,
        }
    }
}

/// An HTTP endpoint of the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// HTTP method (default POST).
    #[serde(default = "default_method")]
    pub method: String,
    /// Path, e.g. `/embed`; must not shadow `/v1/...`, `/healthz`, `/metrics`.
    pub route: String,
    /// Content type given to the request item (default: the request's header).
    #[serde(default)]
    pub request_content_type: Option<String>,
    /// Content type of the response (default: the output item's).
    #[serde(default)]
    pub response_content_type: Option<String>,
    /// Answer with server-sent events (partials, progress, result).
    #[serde(default)]
    pub stream: bool,
}

fn default_timeout_ms() -> u64 {
    30_000
}
fn default_max_wait_ms() -> u64 {
    5
}
fn default_method() -> String {
    "POST".into()
}

/// A spec that failed to parse or validate: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Path of the bad field, e.g. `steps[1].batch.max_size` (`.` for the whole spec).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

fn path_of(path: &serde_path_to_error::Path) -> String {
    let p = path.to_string();
    if p.is_empty() || p == "." {
        ".".into()
    } else {
        p
    }
}

impl PipelineSpec {
    /// Parses TOML, naming the field at fault.
    pub fn from_toml(text: &str) -> Result<Self, SpecError> {
        let de = toml::Deserializer::parse(text).map_err(|e| err(".", e.to_string()))?;
        serde_path_to_error::deserialize(de)
            .map_err(|e| err(path_of(e.path()), e.inner().message().to_string()))
    }

    /// Parses JSON, naming the field at fault.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SpecError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut de)
            .map_err(|e| err(path_of(e.path()), e.inner().to_string()))
    }

    /// The name of step `i` (its `name`, else its stage).
    pub fn step_name(&self, i: usize) -> &str {
        let s = &self.steps[i];
        s.name.as_deref().unwrap_or(&s.stage)
    }

    /// Checks everything that does not need the registry: names, bounds,
    /// routes, the chain shape.
    pub fn validate(&self) -> Result<(), SpecError> {
        weft_store::validate_name_of("pipeline name", &self.name)
            .map_err(|e| err("name", e.to_string()))?;
        if self.timeout_ms == 0 {
            return Err(err("timeout_ms", "must be at least 1"));
        }
        if self.nodes == Some(0) {
            return Err(err(
                "nodes",
                "must be at least 1 (leave it out to run on every node that fits)",
            ));
        }
        if self.nodes.is_some() && self.steps.iter().any(|s| s.placement.is_some()) {
            return Err(err(
                "nodes",
                "a pipeline with steps in a placement group runs where the group's bundles are: leave `nodes` out",
            ));
        }
        if self.steps.is_empty() {
            return Err(err(
                "steps",
                "a pipeline needs at least one step: add a [[steps]] table with `stage = \"...\"`",
            ));
        }
        let mut names = HashSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            let at = |f: &str| format!("steps[{i}].{f}");
            weft_store::validate_name(&step.stage).map_err(|e| err(at("stage"), e.to_string()))?;
            let name = self.step_name(i);
            if !names.insert(name.to_string()) {
                return Err(err(
                    at("name"),
                    format!("step name `{name}` is used twice; give one of them a distinct `name`"),
                ));
            }
            let r = &step.replicas;
            if r.max == 0 || r.max > 256 {
                return Err(err(at("replicas.max"), "must be between 1 and 256"));
            }
            if r.min > r.max {
                return Err(err(
                    at("replicas.min"),
                    format!("{} is above replicas.max ({})", r.min, r.max),
                ));
            }
            if r.target_in_flight == 0 {
                return Err(err(at("replicas.target_in_flight"), "must be at least 1"));
            }
            if let Some(b) = &step.batch {
                if b.max_size == 0 || b.max_size > 4096 {
                    return Err(err(at("batch.max_size"), "must be between 1 and 4096"));
                }
                if b.max_wait_ms > 10_000 {
                    return Err(err(at("batch.max_wait_ms"), "must be at most 10000 (10 s)"));
                }
            }
            if step.timeout_ms == Some(0) {
                return Err(err(at("timeout_ms"), "must be at least 1"));
            }
            if step.retries.attempts > 10 {
                return Err(err(at("retries.attempts"), "must be at most 10"));
            }
            if let Err(e) = step.resources.demand().check("resources") {
                let (field, why) = e.split_once(": ").unwrap_or((&e, ""));
                return Err(err(at(field), why.to_string()));
            }
            if let Some(inputs) = &step.inputs {
                let expected: Vec<String> = if i == 0 {
                    vec![]
                } else {
                    vec![self.step_name(i - 1).to_string()]
                };
                if *inputs != expected {
                    return Err(err(
                        at("inputs"),
                        format!(
                            "only chains are supported yet: step {i} must read from {}",
                            if i == 0 {
                                "the request (leave `inputs` out)".to_string()
                            } else {
                                format!("`{}` (the previous step)", expected[0])
                            }
                        ),
                    ));
                }
            }
        }
        let mut routes = HashSet::new();
        for (i, t) in self.triggers.iter().enumerate() {
            let at = |f: &str| format!("triggers[{i}].{f}");
            if !matches!(t.method.as_str(), "GET" | "POST" | "PUT") {
                return Err(err(
                    at("method"),
                    format!("`{}`: use GET, POST or PUT", t.method),
                ));
            }
            validate_route(&t.route).map_err(|m| err(at("route"), m))?;
            if !routes.insert((t.method.clone(), t.route.clone())) {
                return Err(err(
                    at("route"),
                    format!("{} {} is declared twice", t.method, t.route),
                ));
            }
        }
        Ok(())
    }
}

/// A trigger route: an absolute path of plain segments that does not shadow
/// the daemon's own API.
fn validate_route(route: &str) -> Result<(), String> {
    if !route.starts_with('/') || route.len() < 2 {
        return Err(format!(
            "`{route}` must be an absolute path such as `/embed`"
        ));
    }
    let reserved = ["/v1", "/healthz", "/metrics"];
    if reserved
        .iter()
        .any(|r| route == *r || route.starts_with(&format!("{r}/")))
    {
        return Err(format!(
            "`{route}` is reserved for the daemon's API; pick another path"
        ));
    }
    let ok = route[1..].split('/').all(|seg| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{route}`: use segments of letters, digits, `-`, `_`, `.`, `~` without empty segments"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
name = "text"
[[steps]]
stage = "normalize"
batch = { max_size = 8 }
[[steps]]
stage = "count"
inputs = ["normalize"]
[[triggers]]
route = "/text"
"#;

    #[test]
    fn toml_with_defaults() {
        let spec = PipelineSpec::from_toml(TEXT).unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.timeout_ms, 30_000);
        assert_eq!(spec.steps[0].batch.as_ref().unwrap().max_wait_ms, 5);
        assert_eq!(spec.steps[1].replicas, Replicas::default());
        assert_eq!(spec.triggers[0].method, "POST");
        let json = serde_json::to_vec(&spec).unwrap();
        assert_eq!(PipelineSpec::from_json(&json).unwrap(), spec);
    }

    #[test]
    fn parse_errors_name_the_field() {
        let bad = TEXT.replace("max_size = 8", "max_size = \"eight\"");
        let e = PipelineSpec::from_toml(&bad).unwrap_err();
        assert_eq!(e.field, "steps[0].batch.max_size", "{e}");
        let e = PipelineSpec::from_toml(
            &TEXT.replace("stage = \"count\"", "stage = \"count\"\nreplica = 3"),
        )
        .unwrap_err();
        assert_eq!(e.field, "steps[1].replica", "{e}");
        assert!(e.message.contains("replica"), "{e}");
        let e = PipelineSpec::from_json(br#"{"name":"x","steps":[{"stage":"a","timeout_ms":-1}]}"#)
            .unwrap_err();
        assert_eq!(e.field, "steps[0].timeout_ms", "{e}");
        let e = PipelineSpec::from_toml("name = ").unwrap_err();
        assert_eq!(e.field, ".");
    }

    #[test]
    fn nodes_is_at_least_one_and_not_with_placement_groups() {
        let one = |extra: &str, step: &str| {
            PipelineSpec::from_toml(&format!(
                "name = \"p\"\n{extra}\n[[steps]]\nstage = \"s\"\n{step}\n"
            ))
            .unwrap()
            .validate()
        };
        one("nodes = 2", "").unwrap();
        assert_eq!(one("nodes = 0", "").unwrap_err().field, "nodes");
        let e = one("nodes = 1", "placement = { group = \"g\", bundle = 0 }").unwrap_err();
        assert!(e.message.contains("placement group"), "{e}");
    }

    proptest::proptest! {
        /// Parsing never panics, whatever the input; every failure names a field.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            if let Err(e) = PipelineSpec::from_toml(&text) {
                proptest::prop_assert!(!e.field.is_empty());
            }
            if let Err(e) = PipelineSpec::from_json(text.as_bytes()) {
                proptest::prop_assert!(!e.field.is_empty());
            }
        }

        /// Valid specs survive JSON, the form the store keeps.
        #[test]
        fn specs_round_trip_through_json(max_size in 1usize..4096, wait in 0u64..10_000, max in 1u32..256) {
            let text = TEXT
                .replace("max_size = 8", &format!("max_size = {max_size}, max_wait_ms = {wait}"))
                .replace("inputs = [\"normalize\"]", &format!("inputs = [\"normalize\"]\nreplicas = {{ min = 0, max = {max} }}"));
            let spec = PipelineSpec::from_toml(&text).unwrap();
            spec.validate().unwrap();
            let back = PipelineSpec::from_json(&serde_json::to_vec(&spec).unwrap()).unwrap();
            proptest::prop_assert_eq!(back, spec);
        }
    }

    #[test]
    fn validation_errors_point_at_the_field() {
        let cases = [
            (TEXT.replace("name = \"text\"", "name = \"Text!\""), "name"),
            (
                TEXT.replace("max_size = 8", "max_size = 0"),
                "steps[0].batch.max_size",
            ),
            (
                TEXT.replace("inputs = [\"normalize\"]", "inputs = [\"elsewhere\"]"),
                "steps[1].inputs",
            ),
            (
                TEXT.replace("stage = \"count\"", "stage = \"normalize\""),
                "steps[1].name",
            ),
            (
                TEXT.replace("route = \"/text\"", "route = \"/v1/stages\""),
                "triggers[0].route",
            ),
            (
                TEXT.replace("route = \"/text\"", "route = \"text\""),
                "triggers[0].route",
            ),
            (
                TEXT.replace("route = \"/text\"", "route = \"/a//b\""),
                "triggers[0].route",
            ),
            (
                TEXT.replace("route = \"/text\"", "route = \"/t\"\nmethod = \"DELETE\""),
                "triggers[0].method",
            ),
            (
                TEXT.replace(
                    "stage = \"count\"",
                    "stage = \"count\"\nreplicas = { min = 5, max = 2 }",
                ),
                "steps[1].replicas.min",
            ),
        ];
        for (text, field) in cases {
            let e = PipelineSpec::from_toml(&text)
                .and_then(|s| s.validate().map(|_| s))
                .unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        let e = PipelineSpec::from_toml("name = \"x\"\nsteps = []")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "steps");
    }
}
