//! Per-instance host state and the weft host imports: `objects`, `emit`,
//! `state` and `log`. (`wasi:nn` lives in [`crate::nn`].)

use std::sync::Arc;

use tokio::sync::mpsc;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::weft::stage::{emit, log, objects, state, types::Item};
use crate::nn::NnBackend;
use crate::stderr::StderrTail;

/// Something a stage reports while `process` runs, before it returns.
#[derive(Debug, Clone)]
pub enum StageEvent {
    /// An `emit::partial` item.
    Partial(Item),
    /// An `emit::progress` report.
    Progress {
        /// Units done.
        done: u64,
        /// Units in all, when known.
        total: Option<u64>,
        /// Human-readable status.
        message: String,
    },
}

/// A copy of the node's `state` kept elsewhere (the cluster's KV bucket),
/// so that work moved to another node finds its state there.
///
/// Called after the local write committed; a failure is the mirror's to
/// log (the stage's write has succeeded on this node).
pub trait StateMirror: Send + Sync + std::fmt::Debug {
    /// `key` of namespace `ns` is now `value`.
    fn set(&self, ns: &str, key: &str, value: &[u8]) -> MirrorFuture;
    /// `key` of namespace `ns` was deleted.
    fn delete(&self, ns: &str, key: &str) -> MirrorFuture;
}

/// What [`StateMirror`] methods return.
pub type MirrorFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The runtime's mirror, set when the node joins a cluster; shared with
/// instances created before that.
pub(crate) type MirrorSlot = Arc<std::sync::OnceLock<Arc<dyn StateMirror>>>;

/// Everything one instance's host imports can reach. Created per instance;
/// never shared between instances.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) stage: Arc<str>,
    /// Whose `state` the instance reads and writes: the stage's own, or a
    /// named actor's (`@name`).
    pub(crate) state_ns: Arc<str>,
    pub(crate) store: weft_store::Store,
    pub(crate) mirror: MirrorSlot,
    pub(crate) nn: Arc<dyn NnBackend>,
    pub(crate) stderr: StderrTail,
    /// Where `emit` goes during the current call; `None` drops events.
    pub(crate) sink: Option<mpsc::Sender<StageEvent>>,
    /// When the current call must stop; checked on every epoch tick.
    pub(crate) deadline: std::time::Instant,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Runs a store operation off the async executor (redb does file I/O) and
/// turns a failure into a trap: a stage cannot sensibly continue when the
/// node's store is failing.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> weft_store::Result<T> + Send + 'static,
) -> wasmtime::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(wasmtime::format_err!("node store failed: {e}")),
        Err(e) => Err(wasmtime::format_err!("node store task failed: {e}")),
    }
}

impl objects::Host for HostState {
    async fn put(&mut self, data: Vec<u8>) -> wasmtime::Result<String> {
        let store = self.store.clone();
        blocking(move || store.put_object(&data)).await
    }

    async fn get(&mut self, id: String) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let store = self.store.clone();
        let lookup = id.clone();
        match tokio::task::spawn_blocking(move || store.get_object(&lookup)).await {
            Ok(Ok(Some(data))) => Ok(Ok(data)),
            Ok(Ok(None)) => Ok(Err(format!("no object with id {id}"))),
            Ok(Err(weft_store::StoreError::Invalid { reason, .. })) => Ok(Err(reason)),
            Ok(Err(e)) => Err(wasmtime::format_err!("node store failed: {e}")),
            Err(e) => Err(wasmtime::format_err!("node store task failed: {e}")),
        }
    }
}

impl emit::Host for HostState {
    async fn partial(&mut self, item: Item) -> wasmtime::Result<()> {
        if let Some(sink) = &self.sink {
            // A closed sink means the caller went away; the stage finishes its
            // call but nobody listens any more.
            let _ = sink.send(StageEvent::Partial(item)).await;
        }
        Ok(())
    }

    async fn progress(
        &mut self,
        done: u64,
        total: Option<u64>,
        message: String,
    ) -> wasmtime::Result<()> {
        if let Some(sink) = &self.sink {
            let _ = sink
                .send(StageEvent::Progress {
                    done,
                    total,
                    message,
                })
                .await;
        }
        Ok(())
    }
}

impl state::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let (store, stage) = (self.store.clone(), self.state_ns.clone());
        blocking(move || store.state_get(&stage, &key)).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        let (store, stage) = (self.store.clone(), self.state_ns.clone());
        let mirror = self.mirror.get().map(|m| m.set(&stage, &key, &value));
        blocking(move || store.state_set(&stage, &key, &value)).await?;
        if let Some(m) = mirror {
            m.await;
        }
        Ok(())
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        let (store, stage) = (self.store.clone(), self.state_ns.clone());
        let mirror = self.mirror.get().map(|m| m.delete(&stage, &key));
        blocking(move || store.state_delete(&stage, &key)).await?;
        if let Some(m) = mirror {
            m.await;
        }
        Ok(())
    }
}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let stage = &*self.stage;
        match level {
            log::Level::Trace => tracing::trace!(target: "weft::stage", stage, "{message}"),
            log::Level::Debug => tracing::debug!(target: "weft::stage", stage, "{message}"),
            log::Level::Info => tracing::info!(target: "weft::stage", stage, "{message}"),
            log::Level::Warn => tracing::warn!(target: "weft::stage", stage, "{message}"),
            log::Level::Error => {
                tracing::error!(target: "weft::stage", stage, "{message}");
                // The SDK logs panic messages at error level just before the
                // trap: keep them so the trap's error can say what happened.
                self.stderr.push(message.as_bytes());
                self.stderr.push(b"\n");
            }
        }
        Ok(())
    }
}

impl crate::bindings::weft::stage::types::Host for HostState {}
