//! The live pipelines of a node and their trigger routes. Applying or
//! deleting a pipeline changes routing at once; requests already running keep
//! the version they started on.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::http::StatusCode;
use tokio_util::task::TaskTracker;
use weft_runtime::Runtime;
use weft_store::{PipelineRecord, Store};

use super::spec::{PipelineSpec, SpecError};
use super::{PipelineHandle, RunningPipeline, Step};
use crate::ApiError;
use crate::not_running::NotRunning;
use crate::placement::PlacementGroups;
use crate::resources::ReplicaGrant;

/// Every running pipeline, and which pipeline answers which trigger.
#[derive(Debug)]
pub struct Pipelines {
    runtime: Arc<Runtime>,
    store: Store,
    running: RwLock<HashMap<String, PipelineHandle>>,
    routes: RwLock<HashMap<(String, String), String>>,
    /// Pipelines in the store that could not start after a restart, with
    /// the trigger routes (method, path) they would serve.
    broken: NotRunning<Vec<(String, String)>>,
    /// Every step task, so shutdown can wait for them (they hold the store).
    tasks: TaskTracker,
    /// The node's resources and placement groups replicas reserve from.
    placement: Arc<PlacementGroups>,
}

fn spec_error(e: SpecError) -> ApiError {
    ApiError::bad_request("invalid_spec", e.to_string())
        .hint(format!("fix `{}` in the pipeline spec", e.field))
}

impl Pipelines {
    /// An empty table.
    pub fn new(runtime: Arc<Runtime>, store: Store, placement: Arc<PlacementGroups>) -> Self {
        Self {
            runtime,
            store,
            placement,
            running: RwLock::default(),
            routes: RwLock::default(),
            broken: NotRunning::default(),
            tasks: TaskTracker::new(),
        }
    }

    /// Stops every pipeline and waits until their tasks have exited.
    pub async fn shutdown(&self) {
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let running: Vec<_> = self
            .running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        drop(running);
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Starts every stored pipeline (daemon start-up). A pipeline whose stages
    /// are gone is reported by [`Pipelines::broken`] instead of failing start-up.
    pub async fn load_all(&self) -> Result<(), ApiError> {
        let store = self.store.clone();
        let records = crate::blocking(move || store.list_pipelines()).await?;
        for rec in records {
            self.start_stored(rec).await;
        }
        Ok(())
    }

    /// Starts a stored pipeline, logging how long it took; one that cannot
    /// start is kept as broken (why, and its routes), not an error.
    async fn start_stored(&self, rec: PipelineRecord) {
        let started = std::time::Instant::now();
        let spec = PipelineSpec::from_json(rec.spec_json.as_bytes());
        let routes = spec.as_ref().map_or_else(
            |_| Vec::new(),
            |s| {
                s.triggers
                    .iter()
                    .map(|t| (t.method.clone(), t.route.clone()))
                    .collect()
            },
        );
        let result = match spec {
            Ok(spec) => self.build(spec, rec.version).await,
            Err(e) => Err(spec_error(e)),
        };
        match result {
            Ok(running) => {
                self.install(running);
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(pipeline = %rec.name, version = rec.version, ms, "pipeline started");
            }
            Err(e) => {
                tracing::warn!(pipeline = %rec.name, "pipeline not started: {}", e.message);
                self.broken.insert(rec.name, routes, e.message);
            }
        }
    }

    /// Tries again to start the stored pipelines that could not start: a
    /// stage or model they were missing may have been uploaded since
    /// (called after each upload). Those that still cannot start stay
    /// broken, with the new reason.
    pub async fn retry_broken(&self) {
        self.broken
            .retry(|name, _| async move {
                let store = self.store.clone();
                let lookup = name.clone();
                if let Ok(Some(rec)) = crate::blocking(move || store.pipeline(&lookup)).await
                    // Not applied again, or deleted, while it was read.
                    && self.broken.why(&name).is_some()
                {
                    self.start_stored(rec).await;
                }
            })
            .await;
    }

    /// Whether a stored pipeline could not start (and waits for a retry).
    pub fn any_broken(&self) -> bool {
        !self.broken.is_empty()
    }

    /// The stored pipeline that could not start and would serve `method
    /// path`, with the reason.
    pub fn broken_route(&self, method: &str, path: &str) -> Option<(String, String)> {
        self.broken
            .find(|routes| routes.iter().any(|(m, r)| m == method && r == path))
    }

    /// Validates, builds, stores and installs `spec`. Returns the running
    /// pipeline and whether it is a new version.
    pub async fn apply(&self, spec: PipelineSpec) -> Result<(PipelineHandle, bool), ApiError> {
        spec.validate().map_err(spec_error)?;
        self.check_routes(&spec)?;
        let json = serde_json::to_string(&spec).expect("a spec serializes");
        let store = self.store.clone();
        let name = spec.name.clone();
        // The version being replaced hands its reservations over: it
        // finishes its requests without them.
        let old = self.get(&spec.name);
        let previous = old.as_ref().map(|p| p.version);
        if let Some(old) = &old {
            old.steps.iter().for_each(|s| s.grant.retire());
        }
        // Build first (stages must exist), then commit, then route: a
        // rejected spec leaves nothing behind.
        let mut running = match self.build(spec, 0).await {
            Ok(running) => running,
            Err(e) => {
                if let Some(old) = &old {
                    Self::reinstate(old);
                }
                return Err(e);
            }
        };
        let rec: PipelineRecord =
            match crate::blocking(move || store.put_pipeline(&name, &json)).await {
                Ok(rec) => rec,
                Err(e) => {
                    // Not stored: the running version goes on, reserved.
                    if let Some(old) = &old {
                        Self::keep(old, running);
                    }
                    return Err(e);
                }
            };
        let unchanged = previous == Some(rec.version);
        if let (true, Some(old)) = (unchanged, old) {
            let versions =
                |steps: &[Step]| -> Vec<u32> { steps.iter().map(|s| s.pool.version()).collect() };
            if versions(&old.steps) == versions(&running.steps) {
                // Nothing to change: the running version stays.
                Self::keep(&old, running);
                return Ok((old, false));
            }
            // The same spec over a newer deployment of a stage it runs
            // the latest of: the new build takes over.
        }
        running.version = rec.version;
        let handle = self.install(running);
        Ok((handle, !unchanged))
    }

    /// Keeps `old` running, with its reservations, instead of the `built`
    /// replacement (whose go back first: its workers hold its grants
    /// until they exit).
    fn keep(old: &RunningPipeline, built: RunningPipeline) {
        built.steps.iter().for_each(|s| s.grant.retire());
        drop(built);
        Self::reinstate(old);
    }

    /// Hands a pipeline that was to be replaced its reservations back.
    fn reinstate(p: &RunningPipeline) {
        for s in &p.steps {
            let target = s
                .stats
                .target_replicas
                .load(std::sync::atomic::Ordering::Relaxed);
            s.grant.reinstate(target);
        }
    }

    /// Stops and forgets a pipeline; `false` when it did not exist.
    pub async fn delete(&self, name: &str) -> Result<bool, ApiError> {
        let store = self.store.clone();
        let owned = name.to_string();
        let existed = crate::blocking(move || store.delete_pipeline(&owned)).await?;
        self.running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, p| p != name);
        self.broken.remove(name);
        Ok(existed)
    }

    /// A running pipeline.
    pub fn get(&self, name: &str) -> Option<PipelineHandle> {
        self.running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every running pipeline, by name.
    pub fn all(&self) -> Vec<PipelineHandle> {
        let mut v: Vec<_> = self
            .running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        v
    }

    /// Stored pipelines that failed to start, with the reason.
    pub fn broken(&self) -> Vec<(String, String)> {
        self.broken
            .list(|name, _, why| (name.to_string(), why.to_string()))
    }

    /// Why stored pipeline `name` could not start, if it could not.
    pub fn broken_why(&self, name: &str) -> Option<String> {
        self.broken.why(name)
    }

    /// The pipeline behind trigger `method path`, if any.
    pub fn route(&self, method: &str, path: &str) -> Option<PipelineHandle> {
        let name = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(method.to_string(), path.to_string()))
            .cloned()?;
        self.get(&name)
    }

    /// The methods pipelines serve `path` with (sorted).
    pub fn methods_of(&self, path: &str) -> Vec<String> {
        let mut methods: Vec<String> = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|(_, p)| p == path)
            .map(|(m, _)| m.clone())
            .collect();
        methods.sort();
        methods
    }

    /// Refuses triggers another pipeline already serves (409).
    fn check_routes(&self, spec: &PipelineSpec) -> Result<(), ApiError> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        for (i, t) in spec.triggers.iter().enumerate() {
            if let Some(owner) = routes.get(&(t.method.clone(), t.route.clone()))
                && owner != &spec.name
            {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "route_taken",
                    format!(
                        "triggers[{i}]: {} {} is already served by pipeline `{owner}`",
                        t.method, t.route
                    ),
                )
                .hint("pick another route, or change or delete the other pipeline first"));
            }
        }
        Ok(())
    }

    /// Resolves each step's stage version, merges its config and starts it.
    async fn build(&self, spec: PipelineSpec, version: u32) -> Result<RunningPipeline, ApiError> {
        let mut steps = Vec::with_capacity(spec.steps.len());
        for (i, step) in spec.steps.iter().enumerate() {
            let (runtime, store, s) = (self.runtime.clone(), self.store.clone(), step.clone());
            let pool = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
                let missing = |what: String| {
                    ApiError::bad_request("invalid_spec", format!("steps[{i}].stage: {what}")).hint(
                        "deploy the stage first (`weft stage deploy NAME FILE`), or fix the name",
                    )
                };
                let rec = store
                    .stage(&s.stage)?
                    .ok_or_else(|| missing(format!("no stage named `{}`", s.stage)))?;
                let mut v = match s.version {
                    Some(n) => rec.version(n).cloned().ok_or_else(|| {
                        missing(format!("stage `{}` has no version {n}", s.stage))
                    })?,
                    None => rec.latest().clone(),
                };
                for (k, val) in &s.config {
                    v.meta.config.retain(|(key, _)| key != k);
                    v.meta.config.push((k.clone(), val.clone()));
                }
                Ok(runtime.pool_sized(&s.stage, &v, s.replicas.max as usize)?)
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
            // Start one replica now so a config the stage refuses is a 400
            // at apply time, not a 500 on every request (with `min = 0` the
            // reaper removes it again once idle).
            if let Err(e) = pool.prewarm(1).await {
                let message = match &e {
                    weft_runtime::InvokeError::InitFailed { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                return Err(ApiError::bad_request(
                    "invalid_spec",
                    format!(
                        "steps[{i}].config: stage `{}` did not start: {message}",
                        step.stage
                    ),
                )
                .hint("fix the step's config (merged over the stage's deploy-time config)"));
            }
            let grant = self.reserve(&spec, i)?;
            steps.push(Step::start(
                spec.step_name(i).to_string(),
                step.clone(),
                pool,
                grant,
                &self.tasks,
            ));
        }
        Ok(RunningPipeline {
            spec,
            version,
            steps,
        })
    }

    /// Reserves step `i`'s floor of replicas from the node or its placement
    /// group's bundle: 409 naming what is short when they do not fit.
    fn reserve(&self, spec: &PipelineSpec, i: usize) -> Result<Arc<ReplicaGrant>, ApiError> {
        let step = &spec.steps[i];
        let name = spec.step_name(i);
        let ledger = match &step.placement {
            None => self.placement.node().clone(),
            Some(p) => {
                let group = self.placement.get(&p.group).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_spec",
                        format!(
                            "steps[{i}].placement.group: no placement group named `{}`",
                            p.group
                        ),
                    )
                    .hint(
                        "create it first: POST /v1/placement-groups (weft placement-group create)",
                    )
                })?;
                group.bundle(p.bundle).cloned().ok_or_else(|| {
                    if let Some(node) = group
                        .spec
                        .nodes
                        .as_ref()
                        .and_then(|n| n.get(p.bundle))
                    {
                        return ApiError::bad_request(
                            "invalid_spec",
                            format!(
                                "steps[{i}].placement: bundle {} of placement group `{}` is on node `{node}`",
                                p.bundle, p.group
                            ),
                        )
                        .hint("apply the pipeline on that node: it replicates to the others, which forward its requests there");
                    }
                    ApiError::bad_request(
                        "invalid_spec",
                        format!(
                            "steps[{i}].placement.bundle: placement group `{}` has bundles 0..{}, not {}",
                            p.group,
                            group.spec.bundles.len(),
                            p.bundle
                        ),
                    )
                    .hint("pick a bundle index the group has")
                })?
            }
        };
        let demand = step.resources.demand();
        let short = |what: String, short: crate::resources::Shortfall| {
            ApiError::new(
                StatusCode::CONFLICT,
                "insufficient_resources",
                format!("steps[{i}] (`{name}`): {what} {short}"),
            )
            .hint("ask for less in `resources`, lower `replicas.min`, free resources (delete pipelines or placement groups), or give the node more (--cpus, --gpus, --memory-mib, --resource)")
        };
        ledger
            .could_fit(&demand)
            .map_err(|s| short("one replica".into(), s))?;
        let grant = Arc::new(ReplicaGrant::new(ledger, demand));
        let floor = (step.replicas.min as usize).clamp(1, step.replicas.max.max(1) as usize);
        grant
            .ensure_all(floor)
            .map_err(|s| short(format!("{floor} replica(s) (replicas.min)"), s))?;
        Ok(grant)
    }

    /// Whether a running pipeline has a step in placement group `group`.
    pub fn using_group(&self, group: &str) -> Option<String> {
        self.all().into_iter().find_map(|p| {
            p.spec
                .steps
                .iter()
                .any(|s| s.placement.as_ref().is_some_and(|pl| pl.group == group))
                .then(|| p.spec.name.clone())
        })
    }

    fn install(&self, running: RunningPipeline) -> PipelineHandle {
        let name = running.spec.name.clone();
        let triggers: Vec<_> = running
            .spec
            .triggers
            .iter()
            .map(|t| (t.method.clone(), t.route.clone()))
            .collect();
        let handle = Arc::new(running);
        self.running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), handle.clone());
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        routes.retain(|_, p| p != &name);
        for key in triggers {
            routes.insert(key, name.clone());
        }
        self.broken.remove(&name);
        handle
    }
}
