//! The wasmtime engine, the linker with every host import, component
//! validation and the compile cache.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::{Stage, StagePre};
use crate::host::HostState;
use crate::nn::{NnBackend, Unavailable};
use crate::pool::StagePool;
use crate::{RuntimeConfig, RuntimeError};

/// The exports a stage must have, with the signature the error message shows.
const REQUIRED_EXPORTS: [(&str, &str); 2] = [
    (
        "init",
        "init: func(config: list<tuple<string, string>>) -> result<_, string>",
    ),
    (
        "process",
        "process: func(batch: list<item>) -> result<list<item>, stage-error>",
    ),
];

/// A component that passed validation against the `weft:stage` world,
/// compiled and linked, ready to become a [`StagePool`].
pub struct Compiled {
    pre: StagePre<HostState>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").finish_non_exhaustive()
    }
}

/// Shared by every stage on a node: engine, linker, store, inference backend.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) store: weft_store::Store,
    pub(crate) config: RuntimeConfig,
    pub(crate) nn: Arc<dyn NnBackend>,
    fingerprint: String,
    ticker_stop: Arc<AtomicBool>,
    compiles: AtomicU64,
    pub(crate) mirror: crate::host::MirrorSlot,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// A runtime without an inference engine (`wasi:nn` answers `not-found`).
    pub fn new(store: weft_store::Store, config: RuntimeConfig) -> Result<Arc<Self>, RuntimeError> {
        Self::with_nn(store, config, Arc::new(Unavailable))
    }

    /// A runtime whose `wasi:nn` imports are served by `nn`.
    pub fn with_nn(
        store: weft_store::Store,
        config: RuntimeConfig,
        nn: Arc<dyn NnBackend>,
    ) -> Result<Arc<Self>, RuntimeError> {
        let engine = build_engine(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        Stage::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let fingerprint = format!("wasmtime-48-{:016x}", hasher.finish());

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), config.epoch_tick, ticker_stop.clone());
        Ok(Arc::new(Self {
            engine,
            linker,
            store,
            config,
            nn,
            fingerprint,
            ticker_stop,
            compiles: AtomicU64::new(0),
            mirror: crate::host::MirrorSlot::default(),
        }))
    }

    /// Sends every `state` write and delete of every instance, from now on,
    /// to `mirror` too (after it is committed locally). Set once, when a
    /// node joins a cluster; later calls are ignored.
    pub fn set_state_mirror(&self, mirror: Arc<dyn crate::host::StateMirror>) {
        let _ = self.mirror.set(mirror);
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Identifies the engine's code format; part of every compile-cache key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// How many components this runtime compiled (compile-cache misses).
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Checks that `bytes` are a component of the `weft:stage` world, compiles
    /// it (or loads its code from the compile cache) and caches the code.
    /// CPU-heavy on a cache miss: call it off the executor.
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled, RuntimeError> {
        let component = self.compile_component(bytes)?;
        Ok(Compiled {
            pre: self.stage_pre(&component)?,
        })
    }

    /// A pool of instances running `compiled` as `version` of stage `name`.
    pub fn pool_from(
        self: &Arc<Self>,
        name: &str,
        version: &weft_store::StageVersion,
        compiled: Compiled,
    ) -> Arc<StagePool> {
        let max = self.config.max_instances_per_stage;
        Arc::new(StagePool::new(
            self.clone(),
            name,
            version,
            compiled.pre,
            max,
        ))
    }

    /// Like [`Runtime::pool`], with its own bound on instances (a pipeline
    /// step's `replicas.max`) instead of the node default.
    pub fn pool_sized(
        self: &Arc<Self>,
        name: &str,
        version: &weft_store::StageVersion,
        max_instances: usize,
    ) -> Result<Arc<StagePool>, RuntimeError> {
        let compiled = self.compiled_for(name, version)?;
        Ok(Arc::new(StagePool::new(
            self.clone(),
            name,
            version,
            compiled.pre,
            max_instances,
        )))
    }

    /// A pool of one instance whose `state` is the named actor's own
    /// (namespace `@actor`), apart from the stage's and other actors'.
    pub fn actor_pool(
        self: &Arc<Self>,
        actor: &str,
        stage: &str,
        version: &weft_store::StageVersion,
    ) -> Result<Arc<StagePool>, RuntimeError> {
        let compiled = self.compiled_for(stage, version)?;
        let mut pool = StagePool::new(self.clone(), stage, version, compiled.pre, 1);
        pool.set_state_namespace(&format!("@{actor}"));
        Ok(Arc::new(pool))
    }

    /// A pool for a version already in the store (e.g. after a restart):
    /// loads its code from the compile cache, compiling only on a miss.
    pub fn pool(
        self: &Arc<Self>,
        name: &str,
        version: &weft_store::StageVersion,
    ) -> Result<Arc<StagePool>, RuntimeError> {
        let compiled = self.compiled_for(name, version)?;
        Ok(self.pool_from(name, version, compiled))
    }

    /// The compiled form of a stored version, from the cache when possible.
    fn compiled_for(
        &self,
        name: &str,
        version: &weft_store::StageVersion,
    ) -> Result<Compiled, RuntimeError> {
        let compiled = match self.cached(&version.digest)? {
            Some(component) => Compiled {
                pre: self.stage_pre(&component)?,
            },
            None => {
                let bytes = self.store.get_object(&version.digest)?.ok_or_else(|| {
                    RuntimeError::MissingComponent {
                        stage: name.to_string(),
                        digest: version.digest.clone(),
                    }
                })?;
                self.compile(&bytes)?
            }
        };
        Ok(compiled)
    }

    /// The cached compiled code of the component with this digest, if any.
    fn cached(&self, digest: &str) -> Result<Option<Component>, RuntimeError> {
        match self.store.compiled(&self.cache_key(digest))? {
            // SAFETY: the bytes were produced by `Component::serialize` of an
            // engine with this fingerprint and stored in our own redb file.
            Some(code) => unsafe { Component::deserialize(&self.engine, &code) }
                .map(Some)
                .map_err(|e| RuntimeError::Compile(e.to_string())),
            None => Ok(None),
        }
    }

    fn cache_key(&self, digest: &str) -> String {
        format!("{digest}:{}", self.fingerprint)
    }

    /// Compiles (or loads from the cache) and checks the world; the cache is
    /// written only for components that pass the checks.
    fn compile_component(&self, bytes: &[u8]) -> Result<Component, RuntimeError> {
        check_component_header(bytes)?;
        let digest = weft_store::object_id(bytes);
        if let Some(component) = self.cached(&digest)? {
            return Ok(component);
        }
        let key = self.cache_key(&digest);
        self.compiles.fetch_add(1, Ordering::Relaxed);
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| RuntimeError::Compile(format!("{e:#}")))?;
        self.stage_pre(&component)?;
        let code = component
            .serialize()
            .map_err(|e| RuntimeError::Compile(e.to_string()))?;
        self.store.put_compiled(&key, &code)?;
        Ok(component)
    }

    /// Checks exports by name first (for a clear message), then lets the
    /// linker and the generated bindings check imports and exact types.
    fn stage_pre(&self, component: &Component) -> Result<StagePre<HostState>, RuntimeError> {
        let ty = component.component_type();
        for (name, signature) in REQUIRED_EXPORTS {
            match ty.get_export(&self.engine, name).map(|e| e.ty) {
                Some(ComponentItem::ComponentFunc(_)) => {}
                _ => {
                    return Err(RuntimeError::WrongWorld(format!(
                        "missing export `{signature}`; implement `weft_sdk::Stage` and call \
                         `weft_sdk::export_stage!`"
                    )));
                }
            }
        }
        let pre = self.linker.instantiate_pre(component).map_err(|e| {
            RuntimeError::WrongWorld(format!(
                "{e:#}; a stage may import only WASI p2, weft:stage and wasi:nn"
            ))
        })?;
        StagePre::new(pre).map_err(|e| RuntimeError::WrongWorld(format!("{e:#}")))
    }
}

/// Rejects anything but a component before handing bytes to the compiler, so
/// the common mistakes get a message that says how to fix them.
fn check_component_header(bytes: &[u8]) -> Result<(), RuntimeError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(RuntimeError::NotComponent(
            "the file does not start with the Wasm magic bytes; upload the `.wasm` built with \
             `cargo build --target wasm32-wasip2`"
                .into(),
        ));
    }
    if bytes[6..8] != [1, 0] {
        return Err(RuntimeError::NotComponent(
            "this is a core Wasm module, not a component; build for `wasm32-wasip2` (which emits \
             a component) or wrap it with `wasm-tools component new`"
                .into(),
        ));
    }
    Ok(())
}

fn build_engine(config: &RuntimeConfig) -> Result<Engine, RuntimeError> {
    let n = config.total_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(n)
        .total_core_instances(n * 8)
        .total_memories(n * 2)
        .total_tables(n * 4)
        .total_stacks(n)
        .max_memory_size(config.memory_limit);
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c).map_err(|e| RuntimeError::Engine(format!("{e:#}")))
}

/// Advances the engine's epoch every `tick` until `stop` is set; deadlines are
/// counted in these ticks.
fn spawn_epoch_ticker(engine: Engine, tick: std::time::Duration, stop: Arc<AtomicBool>) {
    thread::Builder::new()
        .name("weft-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_explains_core_modules_and_garbage() {
        let err = check_component_header(b"hello world").unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
        let core = b"\0asm\x01\0\0\0";
        let err = check_component_header(core).unwrap_err();
        assert!(err.to_string().contains("core Wasm module"), "{err}");
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
