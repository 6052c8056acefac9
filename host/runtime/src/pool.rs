//! A bounded pool of instances of one stage version.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

use crate::bindings::{Stage, StagePre};
use crate::engine::Runtime;
use crate::host::{HostState, StageEvent};
use crate::stderr::StderrTail;
use crate::{InvokeError, Item, StageError};

/// Counters of one pool, for metrics and status pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Instances alive (idle or busy).
    pub live: usize,
    /// Instances waiting for work.
    pub idle: usize,
    /// Instances created since the pool was made.
    pub created: u64,
    /// Calls that trapped (each discarded its instance).
    pub traps: u64,
}

/// One instance: its own store (memory, tables, host state) and bindings.
struct Instance {
    store: wasmtime::Store<HostState>,
    stage: Stage,
    live: Arc<AtomicUsize>,
    /// When it last went back to the pool (for scaling down idle replicas).
    idle_since: Instant,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Instances of one stage version, created from one `InstancePre`.
///
/// At most `max_instances_per_stage` exist; each is `init`-ed once with the
/// version's config and then reused while healthy. A call that traps, runs
/// past its deadline, or returns `fatal` discards its instance (its store is
/// never reused); other calls are unaffected. A call whose future is dropped
/// (the client went away) also discards the instance it held.
pub struct StagePool {
    runtime: Arc<Runtime>,
    name: Arc<str>,
    /// The namespace of the instances' `state` (the stage name, or `@actor`).
    state_ns: Arc<str>,
    version: u32,
    config: Vec<(String, String)>,
    env: Vec<(String, String)>,
    pre: StagePre<HostState>,
    idle: Mutex<Vec<Instance>>,
    max: usize,
    permits: Semaphore,
    live: Arc<AtomicUsize>,
    created: AtomicU64,
    traps: AtomicU64,
}

impl std::fmt::Debug for StagePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagePool")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl StagePool {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        name: &str,
        version: &weft_store::StageVersion,
        pre: StagePre<HostState>,
        max: usize,
    ) -> Self {
        let max = max.max(1);
        Self {
            name: name.into(),
            state_ns: name.into(),
            version: version.version,
            config: version.meta.config.clone(),
            env: version.meta.env.clone(),
            pre,
            idle: Mutex::new(Vec::new()),
            max,
            permits: Semaphore::new(max),
            live: Arc::new(AtomicUsize::new(0)),
            created: AtomicU64::new(0),
            traps: AtomicU64::new(0),
            runtime,
        }
    }

    /// The stage name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stage version this pool runs.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            live: self.live.load(Ordering::Relaxed),
            idle: self.idle.lock().map(|v| v.len()).unwrap_or(0),
            created: self.created.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
        }
    }

    /// The most instances this pool keeps.
    pub fn max_instances(&self) -> usize {
        self.max
    }

    /// Creates and `init`s instances until `n` (at most the bound) are alive,
    /// so the first calls do not pay for instantiation.
    pub async fn prewarm(&self, n: usize) -> Result<(), InvokeError> {
        let n = n.min(self.max);
        while self.stats().live < n {
            let Ok(_permit) = self.permits.try_acquire() else {
                return Ok(()); // busy instances exist: they return to the pool
            };
            let inst = self.create().await?;
            self.release(inst);
        }
        Ok(())
    }

    /// Drops idle instances beyond `keep` that have been idle for at least
    /// `idle_for`; returns how many were dropped.
    pub fn shrink_idle(&self, keep: usize, idle_for: std::time::Duration) -> usize {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Most recently used last: drop from the front (the oldest idle).
        idle.sort_by_key(|i| i.idle_since);
        let mut dropped = 0;
        while idle.len() > keep && idle[0].idle_since.elapsed() >= idle_for {
            idle.remove(0);
            dropped += 1;
        }
        dropped
    }

    /// Makes the instances read and write `state` under `ns` instead of the
    /// stage's name (named actors).
    pub(crate) fn set_state_namespace(&mut self, ns: &str) {
        self.state_ns = ns.into();
    }

    /// Runs `process(batch)` on a pooled instance. `emit` calls made during
    /// the call go to `sink` (dropped when `None`).
    pub async fn invoke(
        &self,
        batch: Vec<Item>,
        sink: Option<mpsc::Sender<StageEvent>>,
    ) -> Result<Vec<Item>, InvokeError> {
        self.invoke_until(batch, sink, None).await
    }

    /// [`StagePool::invoke`] with the guest interrupted at `deadline`
    /// instead of after the runtime's per-call deadline (a pipeline request
    /// or a job brings its own, which may be hours away).
    pub async fn invoke_until(
        &self,
        batch: Vec<Item>,
        sink: Option<mpsc::Sender<StageEvent>>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Item>, InvokeError> {
        let acquire = self.permits.acquire();
        let _permit = tokio::time::timeout(self.runtime.config.acquire_timeout, acquire)
            .await
            .map_err(|_| InvokeError::Busy {
                stage: self.name.to_string(),
                max: self.max,
            })?
            .expect("the pool semaphore is never closed");

        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut inst = match pooled {
            Some(inst) => inst,
            None => self.create().await?,
        };
        inst.store.data_mut().sink = sink;
        self.arm_deadline(&mut inst);
        if let Some(deadline) = deadline {
            inst.store.data_mut().deadline = deadline;
        }
        let result = inst.stage.call_process(&mut inst.store, &batch).await;
        inst.store.data_mut().sink = None;

        let stage = self.name.to_string();
        match result {
            Ok(Ok(items)) => {
                self.release(inst);
                Ok(items)
            }
            Ok(Err(StageError::BadInput(message))) => {
                self.release(inst);
                Err(InvokeError::BadInput { stage, message })
            }
            Ok(Err(StageError::Retryable(message))) => {
                self.release(inst);
                Err(InvokeError::Retryable { stage, message })
            }
            Ok(Err(StageError::Fatal(message))) => Err(InvokeError::Fatal { stage, message }),
            Err(err) => {
                self.traps.fetch_add(1, Ordering::Relaxed);
                Err(self.classify(err, &inst))
            }
        }
    }

    fn release(&self, mut inst: Instance) {
        inst.idle_since = Instant::now();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(inst);
    }

    /// Instantiates from the `InstancePre` and runs `init` under the deadline.
    async fn create(&self) -> Result<Instance, InvokeError> {
        let stderr = StderrTail::default();
        let mut wasi = WasiCtxBuilder::new();
        // No preopened dirs, no sockets, no inherited env: only what the
        // deployment granted.
        wasi.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (k, v) in &self.env {
            wasi.env(k, v);
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.runtime.config.memory_limit)
            .trap_on_grow_failure(true)
            .build();
        let host = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            stage: self.name.clone(),
            state_ns: self.state_ns.clone(),
            store: self.runtime.store.clone(),
            mirror: self.runtime.mirror.clone(),
            nn: self.runtime.nn.clone(),
            stderr,
            sink: None,
            deadline: Instant::now() + self.runtime.config.deadline,
        };
        let mut store = wasmtime::Store::new(&self.runtime.engine, host);
        store.limiter(|h| &mut h.limits);
        // Every epoch tick the guest yields to the executor (so a spinning
        // guest never starves other requests on its thread) until its
        // deadline has passed; then it is interrupted with a trap. tokio's
        // `yield_now` defers the wake-up until the scheduler has polled its
        // I/O and timer drivers; a plain self-wake (`UpdateDeadline::Yield`)
        // let busy guests delay socket reads by hundreds of milliseconds.
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store.set_epoch_deadline(1);

        let stage =
            self.pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| InvokeError::Host {
                    stage: self.name.to_string(),
                    message: format!("instantiating: {e}"),
                })?;
        self.live.fetch_add(1, Ordering::Relaxed);
        self.created.fetch_add(1, Ordering::Relaxed);
        let inst = Instance {
            store,
            stage,
            live: self.live.clone(),
            idle_since: Instant::now(),
        };
        self.init(inst).await
    }

    /// Starts the clock of one call.
    fn arm_deadline(&self, inst: &mut Instance) {
        // Only what this call prints may explain its trap.
        inst.store.data().stderr.take();
        inst.store.data_mut().deadline = Instant::now() + self.runtime.config.deadline;
        inst.store.set_epoch_deadline(1);
    }

    async fn init(&self, mut inst: Instance) -> Result<Instance, InvokeError> {
        self.arm_deadline(&mut inst);
        match inst.stage.call_init(&mut inst.store, &self.config).await {
            Ok(Ok(())) => Ok(inst),
            Ok(Err(message)) => Err(InvokeError::InitFailed {
                stage: self.name.to_string(),
                message,
            }),
            Err(err) => {
                self.traps.fetch_add(1, Ordering::Relaxed);
                Err(self.classify(err, &inst))
            }
        }
    }

    /// Turns a trap into the error the caller sees: deadline, memory limit, or
    /// a trap message that includes what the guest printed (its panic).
    fn classify(&self, err: wasmtime::Error, inst: &Instance) -> InvokeError {
        let stage = self.name.to_string();
        if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return InvokeError::Deadline {
                stage,
                deadline_ms: self.runtime.config.deadline.as_millis(),
            };
        }
        let chain = format!("{err:?}");
        if chain.contains("forcing trap when growing memory") {
            return InvokeError::MemoryLimit {
                stage,
                limit_mib: self.runtime.config.memory_limit >> 20,
            };
        }
        let printed = inst.store.data().stderr.take();
        tracing::warn!(stage = %self.name, "stage trapped: {err:?}");
        let trap = match err.downcast_ref::<Trap>() {
            Some(t) => t.to_string(),
            None => err.root_cause().to_string(),
        };
        let message = if printed.is_empty() {
            trap
        } else {
            format!("{printed} ({trap})")
        };
        InvokeError::Trap { stage, message }
    }
}
