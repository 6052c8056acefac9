//! weft-runtime: runs weft stages, Wasm components of the `weft:stage` world,
//! inside wasmtime.
//!
//! - [`Runtime`] owns the wasmtime [`Engine`](wasmtime::Engine) (component
//!   model, async, pooling allocator, epoch interruption), the linker with every
//!   host import, and the compile cache in [`weft_store`]: a component is
//!   compiled once per digest and engine fingerprint, then deserialized.
//! - [`StagePool`] keeps a bounded pool of instances of one stage version,
//!   each created from one `InstancePre`, `init`-ed once with the stage config,
//!   reused while healthy and discarded after a trap.
//! - Host imports (`objects`, `emit`, `state`, `log`, `wasi:nn`) are
//!   implemented on [`HostState`]; inference goes through the [`NnBackend`]
//!   trait object, so the engine behind `wasi:nn` is pluggable.
//!
//! This crate knows nothing of HTTP.
//!
//! ```no_run
//! # async fn demo(component: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
//! use weft_runtime::{Item, Runtime, RuntimeConfig};
//! let store = weft_store::Store::open("weft.redb")?;
//! let runtime = Runtime::new(store.clone(), RuntimeConfig::default())?;
//! let compiled = runtime.compile(&component)?; // checks the world, caches the code
//! let version = store.put_stage("upper", &component, Default::default())?;
//! let pool = runtime.pool_from("upper", &version, compiled);
//! let item = Item { key: None, content_type: "text/plain".into(), payload: b"hi".to_vec() };
//! let out = pool.invoke(vec![item], None).await?;
//! # Ok(()) }
//! ```

mod batcher;
mod bindings;
mod config;
mod engine;
mod error;
mod host;
mod inference;
mod nn;
mod pool;
mod stderr;
mod tokenizer;
mod train;

pub use bindings::weft::stage::types::{Item, StageError};
pub use config::RuntimeConfig;
pub use engine::{Compiled, Runtime};
pub use error::{InvokeError, RuntimeError};
pub use host::{HostState, MirrorFuture, StageEvent, StateMirror};
pub use inference::{BatchConfig, EngineBackend, InferenceStats, model_summary};
pub use nn::{
    BytesLoader, ExecutionTarget, GraphEncoding, NnBackend, NnContext, NnError, NnErrorCode,
    NnFuture, NnGraph, Tensor, TensorType, Unavailable,
};
pub use pool::{PoolStats, StagePool};
pub use tokenizer::gguf_tokenizer;
