//! The `wasi:nn` seam: host implementations of the `wasi:nn` imports that
//! delegate to an [`NnBackend`] trait object.
//!
//! The runtime does not know how inference is done. A node plugs in an engine
//! (`weft-nn`) by implementing [`NnBackend`]; without one, the imports still
//! link and answer with proper `wasi:nn` errors (`not-found`,
//! `unsupported-operation`) instead of trapping, so stages compiled today keep
//! working when an engine arrives.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use wasmtime::component::Resource;

use crate::bindings::wasi::nn::{errors, graph, inference, tensor};
use crate::host::HostState;

pub use errors::ErrorCode as NnErrorCode;
pub use graph::{ExecutionTarget, GraphEncoding};
pub use tensor::TensorType;

/// A boxed future returned by backend operations.
pub type NnFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, NnError>> + Send + 'a>>;

/// An inference engine behind `wasi:nn`, shared by every instance on a node.
pub trait NnBackend: Send + Sync + 'static {
    /// Loads a graph from bytes (`wasi:nn/graph.load`).
    fn load(
        &self,
        builders: Vec<Vec<u8>>,
        encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> NnFuture<'_, Arc<dyn NnGraph>>;

    /// Loads a model the node's registry does not know by name
    /// (`wasi:nn/graph.load-by-name`); a model that does not exist is
    /// [`NnErrorCode::NotFound`].
    fn load_by_name<'a>(&'a self, name: &'a str) -> NnFuture<'a, Arc<dyn NnGraph>>;

    /// Loads a registered model stored as object `id`. `bytes` reads it
    /// (blocking); a backend that caches by id need not call it. The default
    /// reads the bytes and calls [`NnBackend::load`].
    fn load_object<'a>(
        &'a self,
        id: &'a str,
        encoding: GraphEncoding,
        bytes: BytesLoader,
    ) -> NnFuture<'a, Arc<dyn NnGraph>> {
        let _ = id;
        Box::pin(async move {
            let bytes = tokio::task::spawn_blocking(bytes)
                .await
                .map_err(|e| NnError::new(NnErrorCode::RuntimeError, e.to_string()))??;
            self.load(vec![bytes], encoding, ExecutionTarget::Cpu).await
        })
    }
}

/// Reads a model's bytes (blocking: call it on a blocking thread).
pub type BytesLoader = Box<dyn FnOnce() -> Result<Vec<u8>, NnError> + Send + 'static>;

/// A loaded graph; shared by all instances that loaded the same model.
pub trait NnGraph: Send + Sync {
    /// Creates an execution context (holds per-caller state, e.g. a KV cache).
    fn init_execution_context(&self) -> Result<Box<dyn NnContext>, NnError>;
}

/// One caller's execution context on a graph.
pub trait NnContext: Send {
    /// Runs the graph on named inputs and returns named outputs.
    fn compute(&mut self, inputs: Vec<(String, Tensor)>) -> NnFuture<'_, Vec<(String, Tensor)>>;
}

/// A tensor crossing the `wasi:nn` boundary: row-major bytes plus shape and type.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub dimensions: Vec<u32>,
    /// Element type.
    pub ty: TensorType,
    /// Little-endian element bytes.
    pub data: Vec<u8>,
}

/// A `wasi:nn` error: a code and a message for the guest.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct NnError {
    /// The `wasi:nn` error code.
    pub code: NnErrorCode,
    /// Backend-specific detail.
    pub message: String,
}

impl NnError {
    /// An error with this code and message.
    pub fn new(code: NnErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The backend of a node without an inference engine: every load fails with a
/// `wasi:nn` error that says so.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unavailable;

impl NnBackend for Unavailable {
    fn load(
        &self,
        _: Vec<Vec<u8>>,
        encoding: GraphEncoding,
        _: ExecutionTarget,
    ) -> NnFuture<'_, Arc<dyn NnGraph>> {
        Box::pin(async move {
            Err(NnError::new(
                NnErrorCode::UnsupportedOperation,
                format!("this node has no inference engine for {encoding:?} graphs"),
            ))
        })
    }

    fn load_by_name<'a>(&'a self, name: &'a str) -> NnFuture<'a, Arc<dyn NnGraph>> {
        Box::pin(async move {
            Err(NnError::new(
                NnErrorCode::NotFound,
                format!("no model named `{name}` on this node"),
            ))
        })
    }
}

/// The object id and encoding of registered model `name` (`name@N` picks a
/// version), or `None` when the registry has no such model.
fn registered_model(
    store: &weft_store::Store,
    name: &str,
) -> Result<Option<(String, GraphEncoding)>, NnError> {
    let internal =
        |e: weft_store::StoreError| NnError::new(NnErrorCode::RuntimeError, e.to_string());
    let (base, version) = match name.split_once('@') {
        Some((b, "latest")) => (b, None),
        Some((b, v)) => match v.parse::<u32>() {
            Ok(n) => (b, Some(n)),
            Err(_) => return Ok(None),
        },
        None => (name, None),
    };
    let Some(rec) = store.model(base).map_err(internal)? else {
        return Ok(None);
    };
    let Some(v) = (match version {
        Some(n) => rec.version(n),
        None => Some(rec.latest()),
    }) else {
        return Err(NnError::new(
            NnErrorCode::NotFound,
            format!("model `{base}` has no version {}", version.unwrap_or(0)),
        ));
    };
    let encoding = match v.encoding.as_str() {
        "ggml" => GraphEncoding::Ggml,
        _ => GraphEncoding::Onnx,
    };
    Ok(Some((v.object.clone(), encoding)))
}

/// Reads object `id`'s bytes from the store.
fn object_loader(store: weft_store::Store, id: String, name: String) -> BytesLoader {
    Box::new(move || {
        store
            .get_object(&id)
            .map_err(|e| NnError::new(NnErrorCode::RuntimeError, e.to_string()))?
            .ok_or_else(|| {
                // Deleted (its bytes freed) since it was looked up.
                NnError::new(NnErrorCode::NotFound, format!("model `{name}` was deleted"))
            })
    })
}

/// Host-side representation of the `tensor` resource.
pub type TensorRes = Tensor;
/// Host-side representation of the `graph` resource.
pub type GraphRes = Arc<dyn NnGraph>;
/// Host-side representation of the `graph-execution-context` resource.
pub type ContextRes = Box<dyn NnContext>;
/// Host-side representation of the `error` resource.
pub type ErrorRes = NnError;

impl HostState {
    fn nn_error<T>(&mut self, e: NnError) -> wasmtime::Result<Result<T, Resource<NnError>>> {
        Ok(Err(self.table.push(e)?))
    }
}

impl tensor::Host for HostState {}

impl tensor::HostTensor for HostState {
    async fn new(
        &mut self,
        dimensions: Vec<u32>,
        ty: TensorType,
        data: Vec<u8>,
    ) -> wasmtime::Result<Resource<Tensor>> {
        // The constructor cannot fail in this WIT; a tensor whose data does
        // not fill its shape is refused by `compute` with `invalid-argument`.
        Ok(self.table.push(Tensor {
            dimensions,
            ty,
            data,
        })?)
    }

    async fn dimensions(&mut self, t: Resource<Tensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&t)?.dimensions.clone())
    }

    async fn ty(&mut self, t: Resource<Tensor>) -> wasmtime::Result<TensorType> {
        Ok(self.table.get(&t)?.ty)
    }

    async fn data(&mut self, t: Resource<Tensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&t)?.data.clone())
    }

    async fn drop(&mut self, t: Resource<Tensor>) -> wasmtime::Result<()> {
        self.table.delete(t)?;
        Ok(())
    }
}

impl graph::Host for HostState {
    async fn load(
        &mut self,
        builders: Vec<Vec<u8>>,
        encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> wasmtime::Result<Result<Resource<GraphRes>, Resource<NnError>>> {
        match self.nn.clone().load(builders, encoding, target).await {
            Ok(g) => Ok(Ok(self.table.push(g)?)),
            Err(e) => self.nn_error(e),
        }
    }

    async fn load_by_name(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<GraphRes>, Resource<NnError>>> {
        let nn = self.nn.clone();
        // A model in the node's registry (`name`, `name@latest` or
        // `name@N`) is loaded from its bytes; other names go to the backend.
        let (store, wanted) = (self.store.clone(), name.clone());
        let registered = tokio::task::spawn_blocking(move || registered_model(&store, &wanted))
            .await
            .unwrap_or_else(|e| Err(NnError::new(NnErrorCode::RuntimeError, e.to_string())));
        let loaded = match registered {
            Ok(Some((id, encoding))) => {
                let bytes = object_loader(self.store.clone(), id.clone(), name.clone());
                nn.load_object(&id, encoding, bytes).await
            }
            Ok(None) => nn.load_by_name(&name).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(g) => Ok(Ok(self.table.push(g)?)),
            Err(e) => self.nn_error(e),
        }
    }
}

impl graph::HostGraph for HostState {
    async fn init_execution_context(
        &mut self,
        g: Resource<GraphRes>,
    ) -> wasmtime::Result<Result<Resource<ContextRes>, Resource<NnError>>> {
        match self.table.get(&g)?.init_execution_context() {
            Ok(ctx) => Ok(Ok(self.table.push(ctx)?)),
            Err(e) => self.nn_error(e),
        }
    }

    async fn drop(&mut self, g: Resource<GraphRes>) -> wasmtime::Result<()> {
        self.table.delete(g)?;
        Ok(())
    }
}

impl inference::Host for HostState {}

impl inference::HostGraphExecutionContext for HostState {
    async fn compute(
        &mut self,
        ctx: Resource<ContextRes>,
        inputs: Vec<(String, Resource<Tensor>)>,
    ) -> wasmtime::Result<Result<Vec<(String, Resource<Tensor>)>, Resource<NnError>>> {
        let mut tensors = Vec::with_capacity(inputs.len());
        for (name, t) in inputs {
            tensors.push((name, self.table.get(&t)?.clone()));
        }
        let result = self.table.get_mut(&ctx)?.compute(tensors).await;
        match result {
            Ok(outputs) => {
                let mut out = Vec::with_capacity(outputs.len());
                for (name, t) in outputs {
                    out.push((name, self.table.push(t)?));
                }
                Ok(Ok(out))
            }
            Err(e) => self.nn_error(e),
        }
    }

    async fn drop(&mut self, ctx: Resource<ContextRes>) -> wasmtime::Result<()> {
        self.table.delete(ctx)?;
        Ok(())
    }
}

impl errors::Host for HostState {}

impl errors::HostError for HostState {
    async fn code(&mut self, e: Resource<NnError>) -> wasmtime::Result<NnErrorCode> {
        Ok(self.table.get(&e)?.code)
    }

    async fn data(&mut self, e: Resource<NnError>) -> wasmtime::Result<String> {
        Ok(self.table.get(&e)?.message.clone())
    }

    async fn drop(&mut self, e: Resource<NnError>) -> wasmtime::Result<()> {
        self.table.delete(e)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model deleted between its lookup and its load is `not-found`, as
    /// one never uploaded is, not a runtime error.
    #[test]
    fn a_model_deleted_before_its_load_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = weft_store::Store::open(dir.path().join("db")).unwrap();
        let (rec, _) = store.put_model("m", "onnx", b"weights", "").unwrap();
        let object = rec.latest().object.clone();
        assert!(store.delete_model("m").unwrap());
        let err = object_loader(store, object, "m".into())().unwrap_err();
        assert!(matches!(err.code, NnErrorCode::NotFound), "{}", err.message);
        assert!(err.message.contains("was deleted"), "{}", err.message);
    }
}
