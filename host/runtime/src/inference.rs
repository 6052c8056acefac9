//! The node's inference engine behind `wasi:nn`: [`EngineBackend`] serves the
//! imports with weft-nn, keeps one copy of each model for every instance,
//! runs computation off the async executor, and merges concurrent `compute`
//! calls on the same stateless graph into one engine call (dynamic batching
//! at the `wasi:nn` layer), or, for a decoder, runs concurrent calls on
//! their own KV caches as one pass over the weights (continuous batching).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use weft_nn::{Encoding, Engine, Model, NnErrorKind, Target};

use crate::batcher::Answer;
use crate::nn::{
    ExecutionTarget, GraphEncoding, NnBackend, NnContext, NnError, NnErrorCode, NnFuture, NnGraph,
    Tensor, TensorType,
};

/// How concurrent `compute` calls are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most rows (dimension 0) in one merged call, or decoder calls in one
    /// joined pass; 1 turns batching off. Default 32.
    pub max_batch: usize,
    /// How long the first call of a batch waits for others. Calls that
    /// arrive while the engine is busy join the next batch without waiting.
    /// Decoder passes ignore it: a pass waits only while fewer calls are
    /// queued than the last pass had (their callers come back for the next
    /// token together), for up to a quarter of the last pass's time; a lone
    /// generation never waits. Default 1 ms.
    pub max_wait: Duration,
    /// Merged calls of one graph that run at once, each on its own session.
    /// A call that no other call joins runs on its caller's own session,
    /// outside these slots. Default: the number of cores. (Joined decoder
    /// passes, which use every core, run one at a time.)
    pub max_in_flight: usize,
    /// Most tokens of one caller's prompt a joined decoder pass takes
    /// (chunked prefill): a longer prompt runs over several passes, so it
    /// delays other callers' next tokens by a chunk's time, not the whole
    /// prompt's, and stops at the end of a chunk once its caller has gone.
    /// 0 never cuts. Default 128.
    pub prefill_chunk: usize,
    /// Where models loaded by name from the registry run (`wasi:nn`
    /// `load-by-name` names no target). `Gpu` uses the node's GPU when it
    /// has one, else the CPU. Default `Cpu`.
    pub registry_target: ExecutionTarget,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_wait: Duration::from_millis(1),
            max_in_flight: std::thread::available_parallelism().map_or(2, |n| n.get()),
            prefill_chunk: 128,
            registry_target: ExecutionTarget::Cpu,
        }
    }
}

/// Counters of the engine, for `/metrics`.
#[derive(Debug, Default)]
pub struct InferenceStats {
    /// `compute` calls served.
    pub computes: AtomicU64,
    /// Engine calls made for them (fewer when calls were merged).
    pub engine_calls: AtomicU64,
    /// Prompts left part-run because their caller had gone.
    pub cancelled: AtomicU64,
}

/// `wasi:nn` on weft-nn.
#[derive(Debug)]
pub struct EngineBackend {
    engine: Arc<Engine>,
    batch: BatchConfig,
    /// Graphs loaded from registry objects, by object id, while anything
    /// (a graph resource, an execution context) holds them.
    graphs: Mutex<HashMap<String, Weak<Graph>>>,
    /// Per object id being loaded, a lock its other loaders wait on, so
    /// that concurrent first loads make one graph (one copy of the model,
    /// one batch queue), not one each.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    stats: Arc<InferenceStats>,
}

impl EngineBackend {
    /// A backend with its own engine.
    pub fn new(batch: BatchConfig) -> Self {
        Self {
            engine: Arc::new(Engine::default()),
            batch,
            graphs: Mutex::default(),
            loading: Mutex::default(),
            stats: Arc::default(),
        }
    }

    /// The engine (models loaded, bytes held).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Calls served and engine calls made.
    pub fn stats(&self) -> &InferenceStats {
        &self.stats
    }

    async fn load_bytes(
        &self,
        bytes: Vec<u8>,
        encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> Result<Arc<Graph>, NnError> {
        let encoding = match encoding {
            GraphEncoding::Onnx => Encoding::Onnx,
            GraphEncoding::Ggml => Encoding::Ggml,
            other => {
                return Err(NnError::new(
                    NnErrorCode::InvalidEncoding,
                    format!("weft-nn loads `onnx` and `ggml` graphs, not {other:?}"),
                ));
            }
        };
        let target = match target {
            ExecutionTarget::Gpu | ExecutionTarget::Tpu => Target::Gpu,
            ExecutionTarget::Cpu => Target::Cpu,
        };
        let engine = self.engine.clone();
        let model = tokio::task::spawn_blocking(move || engine.load(&bytes, encoding, target))
            .await
            .map_err(|e| NnError::new(NnErrorCode::RuntimeError, e.to_string()))?
            .map_err(convert_error)?;
        Ok(Graph::new(model, self.batch, self.stats.clone()))
    }
}

impl NnBackend for EngineBackend {
    fn load(
        &self,
        builders: Vec<Vec<u8>>,
        encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> NnFuture<'_, Arc<dyn NnGraph>> {
        Box::pin(async move {
            let bytes = match <[Vec<u8>; 1]>::try_from(builders) {
                Ok([bytes]) => bytes,
                Err(b) => {
                    return Err(NnError::new(
                        NnErrorCode::InvalidArgument,
                        format!(
                            "weft-nn loads a graph from one builder (the model file), got {}",
                            b.len()
                        ),
                    ));
                }
            };
            let graph: Arc<dyn NnGraph> = self.load_bytes(bytes, encoding, target).await?;
            Ok(graph)
        })
    }

    fn load_by_name<'a>(&'a self, name: &'a str) -> NnFuture<'a, Arc<dyn NnGraph>> {
        Box::pin(async move {
            Err(NnError::new(
                NnErrorCode::NotFound,
                format!("no model named `{name}`: upload it with `weft model upload {name} FILE`"),
            ))
        })
    }

    fn load_object<'a>(
        &'a self,
        id: &'a str,
        encoding: GraphEncoding,
        bytes: crate::nn::BytesLoader,
    ) -> NnFuture<'a, Arc<dyn NnGraph>> {
        Box::pin(async move {
            if let Some(g) = self.cached(id) {
                return Ok(g as Arc<dyn NnGraph>);
            }
            let gate = self
                .loading
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id.to_string())
                .or_default()
                .clone();
            let loaded = {
                let _turn = gate.lock().await;
                // A loader before us may have finished meanwhile.
                match self.cached(id) {
                    Some(g) => Ok(g),
                    None => self.load_object_now(id, encoding, bytes).await,
                }
            };
            {
                let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
                // The map's entry and ours: no other loader is waiting.
                if Arc::strong_count(&gate) == 2 {
                    loading.remove(id);
                }
                // Let go while the map is locked, so that a loader finishing
                // next counts without us.
                drop(gate);
            }
            Ok(loaded? as Arc<dyn NnGraph>)
        })
    }
}

impl EngineBackend {
    /// Whether a graph loaded from registry object `id` is held (by a
    /// graph resource or execution context of a live instance).
    pub fn holds(&self, id: &str) -> bool {
        self.cached(id).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Graph>>> {
        self.graphs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, id: &str) -> Option<Arc<Graph>> {
        self.lock().get(id).and_then(Weak::upgrade)
    }

    async fn load_object_now(
        &self,
        id: &str,
        encoding: GraphEncoding,
        bytes: crate::nn::BytesLoader,
    ) -> Result<Arc<Graph>, NnError> {
        let bytes = tokio::task::spawn_blocking(bytes)
            .await
            .map_err(|e| NnError::new(NnErrorCode::RuntimeError, e.to_string()))??;
        let graph = self
            .load_bytes(bytes, encoding, self.batch.registry_target)
            .await?;
        let mut graphs = self.lock();
        graphs.retain(|_, g| g.strong_count() > 0);
        graphs.insert(id.to_string(), Arc::downgrade(&graph));
        Ok(graph)
    }
}

pub(crate) fn convert_error(e: weft_nn::NnError) -> NnError {
    let code = match e.kind {
        NnErrorKind::InvalidArgument => NnErrorCode::InvalidArgument,
        NnErrorKind::InvalidEncoding => NnErrorCode::InvalidEncoding,
        NnErrorKind::UnsupportedOperation => NnErrorCode::UnsupportedOperation,
        NnErrorKind::TooLarge => NnErrorCode::TooLarge,
        NnErrorKind::NotFound => NnErrorCode::NotFound,
        NnErrorKind::RuntimeError => NnErrorCode::RuntimeError,
    };
    NnError::new(code, e.message)
}

fn to_engine(t: Tensor) -> Result<weft_nn::Tensor, NnError> {
    let ty = match t.ty {
        TensorType::Fp16 => weft_nn::ElementType::F16,
        TensorType::Fp32 => weft_nn::ElementType::F32,
        TensorType::Fp64 => weft_nn::ElementType::F64,
        TensorType::Bf16 => weft_nn::ElementType::Bf16,
        TensorType::U8 => weft_nn::ElementType::U8,
        TensorType::I32 => weft_nn::ElementType::I32,
        TensorType::I64 => weft_nn::ElementType::I64,
    };
    let shape = t.dimensions.iter().map(|&d| d as usize).collect();
    weft_nn::Tensor::new(shape, ty, t.data).map_err(convert_error)
}

fn from_engine(t: weft_nn::Tensor) -> Tensor {
    let ty = match t.ty {
        weft_nn::ElementType::F16 => TensorType::Fp16,
        weft_nn::ElementType::F32 => TensorType::Fp32,
        weft_nn::ElementType::F64 => TensorType::Fp64,
        weft_nn::ElementType::Bf16 => TensorType::Bf16,
        weft_nn::ElementType::U8 => TensorType::U8,
        weft_nn::ElementType::I32 => TensorType::I32,
        weft_nn::ElementType::I64 => TensorType::I64,
    };
    Tensor {
        dimensions: t.shape.iter().map(|&d| d as u32).collect(),
        ty,
        data: t.data,
    }
}

type Named = Vec<(String, weft_nn::Tensor)>;
type Reply = oneshot::Sender<Answer>;
type Queue = mpsc::Sender<(Named, crate::batcher::Shared, Reply)>;

/// A loaded model as `wasi:nn` sees it; for batchable or joinable models,
/// the queue of the task that merges calls.
#[derive(Debug)]
struct Graph {
    model: Arc<dyn Model>,
    queue: Option<Queue>,
    stats: Arc<InferenceStats>,
    /// Itself, for the contexts it makes to hold.
    me: Weak<Graph>,
}

impl Graph {
    fn new(model: Arc<dyn Model>, batch: BatchConfig, stats: Arc<InferenceStats>) -> Arc<Self> {
        let merges = model.batchable() || model.joinable();
        let queue = (merges && batch.max_batch > 1).then(|| {
            let (tx, rx) = mpsc::channel(batch.max_batch * 4);
            tokio::spawn(crate::batcher::run(model.clone(), rx, batch, stats.clone()));
            tx
        });
        Arc::new_cyclic(|me| Self {
            model,
            queue,
            stats,
            me: me.clone(),
        })
    }
}

impl NnGraph for Graph {
    fn init_execution_context(&self) -> Result<Box<dyn NnContext>, NnError> {
        let graph = self.me.upgrade().ok_or_else(gone)?;
        Ok(Box::new(Context {
            session: Arc::new(Mutex::new(self.model.session())),
            graph,
        }))
    }
}

/// One guest's execution context.
struct Context {
    session: crate::batcher::Shared,
    /// Its graph (batch queue, statistics), which stays loaded (and found
    /// by the next `load-by-name`, so that its calls batch with this
    /// context's) while a context lives, also after the guest drops its
    /// graph resource.
    graph: Arc<Graph>,
}

impl Context {
    /// Runs `inputs` on this context's own session, on the blocking pool.
    async fn compute_alone(&self, inputs: Named) -> Result<Named, NnError> {
        self.graph
            .stats
            .engine_calls
            .fetch_add(1, Ordering::Relaxed);
        let session = self.session.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = session.lock().unwrap_or_else(|e| e.into_inner());
            match crate::batcher::contained(|| s.compute(&inputs)) {
                Ok(result) => result.map_err(convert_error),
                Err(why) => {
                    *s = Box::new(crate::batcher::Failed(format!(
                        "the inference engine panicked: {why}"
                    )));
                    Err(convert_error(crate::batcher::panicked(&why)))
                }
            }
        })
        .await
        .map_err(|e| NnError::new(NnErrorCode::RuntimeError, e.to_string()))?
    }
}

impl NnContext for Context {
    fn compute(&mut self, inputs: Vec<(String, Tensor)>) -> NnFuture<'_, Vec<(String, Tensor)>> {
        Box::pin(async move {
            let inputs = inputs
                .into_iter()
                .map(|(n, t)| Ok((n, to_engine(t)?)))
                .collect::<Result<Named, NnError>>()?;
            self.graph.stats.computes.fetch_add(1, Ordering::Relaxed);
            let outputs = match &self.graph.queue {
                Some(queue) => {
                    let (tx, rx) = oneshot::channel();
                    let session = self.session.clone();
                    queue
                        .send((inputs, session, tx))
                        .await
                        .map_err(|_| gone())?;
                    match rx.await.map_err(|_| gone())? {
                        Answer::Done(outputs) => outputs?,
                        Answer::Alone(inputs) => self.compute_alone(inputs).await?,
                    }
                }
                None => self.compute_alone(inputs).await?,
            };
            Ok(outputs
                .into_iter()
                .map(|(n, t)| (n, from_engine(t)))
                .collect())
        })
    }
}

fn gone() -> NnError {
    NnError::new(NnErrorCode::RuntimeError, "the inference engine shut down")
}

/// What a model holds, as the JSON summary kept with each registered
/// version (and shown by `GET /v1/models/{name}`).
pub fn model_summary(info: &weft_nn::ModelInfo) -> serde_json::Value {
    use serde_json::json;
    use weft_nn::ModelInfo;
    match info {
        ModelInfo::Gguf(g) => {
            let mut types = std::collections::BTreeMap::<String, usize>::new();
            for t in &g.tensors {
                *types.entry(format!("{:?}", t.ty)).or_default() += 1;
            }
            json!({
                "format": "gguf",
                "gguf_version": g.version,
                "architecture": g.architecture,
                "tensors": g.tensors.len(),
                "tensor_types": types,
                "parameters": g.parameters,
                "metadata_keys": g.metadata_keys.len(),
            })
        }
        ModelInfo::Onnx(o) => json!({
            "format": "onnx",
            "ir_version": o.ir_version,
            "opsets": o.opsets.iter().map(|(d, v)| json!({"domain": d, "version": v})).collect::<Vec<_>>(),
            "nodes": o.nodes,
            "ops": o.ops,
            "initializers": o.initializers.len(),
            "inputs": o.inputs,
            "outputs": o.outputs,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A loader of the linear fixture that counts its calls.
    fn counting(count: &Arc<AtomicUsize>) -> crate::nn::BytesLoader {
        let count = count.clone();
        Box::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(weft_nn::fixtures::onnx_linear())
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_loads_make_one_graph() {
        let backend = Arc::new(EngineBackend::new(BatchConfig::default()));
        let count = Arc::new(AtomicUsize::new(0));
        let loads: Vec<_> = (0..6)
            .map(|_| {
                let (backend, loader) = (backend.clone(), counting(&count));
                tokio::spawn(async move {
                    backend
                        .load_object("obj", GraphEncoding::Onnx, loader)
                        .await
                        .map_err(|e| e.message)
                })
            })
            .collect();
        let mut graphs = Vec::new();
        for load in loads {
            graphs.push(load.await.unwrap().unwrap());
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "the bytes were loaded once"
        );
        assert!(graphs.windows(2).all(|g| Arc::ptr_eq(&g[0], &g[1])));
        assert!(backend.loading.lock().unwrap().is_empty(), "no gate left");
    }

    #[tokio::test]
    async fn a_context_keeps_its_graph_for_the_next_load() {
        let backend = EngineBackend::new(BatchConfig::default());
        let count = Arc::new(AtomicUsize::new(0));
        let graph = backend
            .load_object("obj", GraphEncoding::Onnx, counting(&count))
            .await
            .unwrap();
        let context = graph.init_execution_context().unwrap();
        drop(graph);
        let again = backend
            .load_object("obj", GraphEncoding::Onnx, counting(&count))
            .await
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1, "found, not loaded again");
        drop((context, again));
        // With nothing holding it, the graph goes: the next load loads.
        backend
            .load_object("obj", GraphEncoding::Onnx, counting(&count))
            .await
            .unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }
}
