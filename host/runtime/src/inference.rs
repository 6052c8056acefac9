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
    /// Most tokens of one caller's prompt a joined decoder pass takes while
    /// other callers are in it (chunked prefill): a longer prompt runs over
    /// several passes, so it delays their next token by a chunk's time, not
    /// the whole prompt's. Alone, a prompt runs whole. 0 never cuts.
    /// Default 128.
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
                    *s = Box::new(crate::batcher::Failed(why.clone()));
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

/// The tokenizer a GGUF file carries (`tokenizer.ggml.*`), as the JSON the
/// `generate` stage takes as its `tokenizer` object (the `tok` crate's
/// `Bpe`; `scripts/models.py` writes the same for SmolLM2): for byte-level
/// BPE (`tokenizer.ggml.model` = `gpt2`) and SentencePiece (`llama`: Llama 2,
/// Mistral, TinyLlama) tokenizers, the ones it reads, checked by building
/// it as the stage will (a pre-tokenizer it does not know is named here, at
/// upload, not at deploy). An error says why there is none.
pub fn gguf_tokenizer(g: &weft_nn::GgufInfo) -> Result<Vec<u8>, String> {
    use serde_json::{Map, Value, json};
    use weft_nn::GgufValue;
    let model = g
        .get("tokenizer.ggml.model")
        .and_then(GgufValue::as_str)
        .ok_or("the file has no tokenizer (no `tokenizer.ggml.model`)")?;
    if model != "gpt2" && model != "llama" {
        return Err(format!(
            "its tokenizer is `{model}`; the generate stage reads byte-level BPE (`gpt2`) \
             and SentencePiece (`llama`) tokenizers"
        ));
    }
    let array = |key: &str| match g.get(key) {
        Some(GgufValue::Array(items)) => Ok(items.as_slice()),
        _ => Err(format!("the tokenizer has no `{key}` list")),
    };
    let strings = |key: &str| -> Result<Vec<&str>, String> {
        array(key)?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("`{key}` holds a non-string"))
            })
            .collect()
    };
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let tokens = strings("tokenizer.ggml.tokens")?;
    if model == "gpt2" {
        out.insert("merges".into(), json!(strings("tokenizer.ggml.merges")?));
    } else {
        let scores = array("tokenizer.ggml.scores")?
            .iter()
            .map(|v| {
                v.as_float()
                    .ok_or("`tokenizer.ggml.scores` holds a non-number")
            })
            .collect::<Result<Vec<f64>, _>>()?;
        out.insert("scores".into(), json!(scores));
    }
    if let Ok(types) = array("tokenizer.ggml.token_type") {
        let types: Vec<i64> = types.iter().filter_map(GgufValue::as_int).collect();
        let name = g.get("general.name").and_then(GgufValue::as_str);
        let rstrip = phi3_rstrip(name.unwrap_or_default(), &tokens, &types);
        if !rstrip.is_empty() {
            out.insert("rstrip".into(), json!(rstrip));
        }
        out.insert("token_types".into(), json!(types));
    }
    out.insert("tokens".into(), json!(tokens));
    for (key, field) in [
        ("tokenizer.ggml.pre", "pre"),
        ("tokenizer.chat_template", "chat_template"),
    ] {
        if let Some(v) = g.get(key).and_then(GgufValue::as_str) {
            out.insert(field.into(), json!(v));
        }
    }
    for (key, field) in [
        ("bos_token_id", "bos_id"),
        ("eos_token_id", "eos_id"),
        ("unknown_token_id", "unknown_id"),
        ("padding_token_id", "padding_id"),
    ] {
        if let Some(v) = g
            .get(&format!("tokenizer.ggml.{key}"))
            .and_then(GgufValue::as_int)
        {
            out.insert(field.into(), json!(v));
        }
    }
    // (`add_space_prefix` matters to SentencePiece alone.)
    let fields: &[&str] = match model {
        "llama" => &["add_bos_token", "add_eos_token", "add_space_prefix"],
        _ => &["add_bos_token", "add_eos_token"],
    };
    for &field in fields {
        if let Some(v) = g
            .get(&format!("tokenizer.ggml.{field}"))
            .and_then(GgufValue::as_int)
        {
            out.insert(field.into(), json!(v != 0));
        }
    }
    let json = serde_json::to_vec(&Value::Object(out)).expect("JSON");
    tok::Bpe::from_json(&json).map_err(|e| format!("the generate stage cannot use it: {e}"))?;
    Ok(json)
}

/// The special tokens that swallow the whitespace after them: llama.cpp
/// (`llama-vocab.cpp`) gives Phi-3's (found by the model's `general.name`)
/// its `RSTRIP` attribute, as their HF tokenizer config does: every
/// control, user-defined or unknown token but `<unk>`, `<s>` and
/// `<|endoftext|>`, and `</s>`.
fn phi3_rstrip(name: &str, tokens: &[&str], types: &[i64]) -> Vec<usize> {
    let name = name.to_lowercase();
    if !(name.contains("phi-3") || name.contains("phi3")) {
        return Vec::new();
    }
    let special = |id: usize| matches!(types.get(id), Some(2..=4));
    (0..tokens.len())
        .filter(|&id| match tokens[id] {
            "<unk>" | "<s>" | "<|endoftext|>" => false,
            "</s>" => true,
            _ => special(id),
        })
        .collect()
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

    fn gguf(metadata: Vec<(&str, weft_nn::GgufValue)>) -> weft_nn::GgufInfo {
        weft_nn::GgufInfo {
            version: 3,
            architecture: Some("llama".into()),
            metadata_keys: metadata.iter().map(|(k, _)| k.to_string()).collect(),
            metadata: metadata
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            tensors: Vec::new(),
            parameters: 0,
            data_start: 0,
        }
    }

    #[test]
    fn gguf_tokenizers_are_extracted_or_refused_with_the_reason() {
        use weft_nn::GgufValue::{Array, Int, Str};
        let t5 = gguf(vec![("tokenizer.ggml.model", Str("t5".into()))]);
        let why = gguf_tokenizer(&t5).unwrap_err();
        assert!(why.contains("`t5`") && why.contains("`llama`"), "{why}");
        let no_merges = gguf(vec![("tokenizer.ggml.model", Str("gpt2".into()))]);
        let why = gguf_tokenizer(&no_merges).unwrap_err();
        assert!(why.contains("tokenizer.ggml.tokens"), "{why}");
        let bpe = gguf(vec![
            ("tokenizer.ggml.model", Str("gpt2".into())),
            (
                "tokenizer.ggml.tokens",
                Array(vec![Str("a".into()), Str("b".into())]),
            ),
            ("tokenizer.ggml.merges", Array(vec![Str("a b".into())])),
            ("tokenizer.ggml.eos_token_id", Int(1)),
            ("tokenizer.ggml.add_bos_token", Int(0)),
            // SentencePiece's alone: not copied for BPE.
            ("tokenizer.ggml.add_space_prefix", Int(0)),
        ]);
        let json: serde_json::Value =
            serde_json::from_slice(&gguf_tokenizer(&bpe).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"model": "gpt2", "tokens": ["a", "b"], "merges": ["a b"],
                               "eos_id": 1, "add_bos_token": false})
        );
        let spm = |scores| {
            gguf(vec![
                ("tokenizer.ggml.model", Str("llama".into())),
                ("tokenizer.ggml.tokens", Array(vec![Str("▁a".into())])),
                ("tokenizer.ggml.scores", Array(scores)),
                ("tokenizer.ggml.add_space_prefix", Int(0)),
            ])
        };
        let json: serde_json::Value =
            serde_json::from_slice(&gguf_tokenizer(&spm(vec![Int(-1)])).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"model": "llama", "tokens": ["▁a"], "scores": [-1.0],
                               "add_space_prefix": false})
        );
        let why = gguf_tokenizer(&spm(vec![Str("x".into())])).unwrap_err();
        assert!(why.contains("scores"), "{why}");
        let why = gguf_tokenizer(&spm(vec![])).unwrap_err();
        assert!(why.contains("0 scores for 1 tokens"), "{why}");
        // Phi-3's special tokens swallow the whitespace after them, as in
        // llama.cpp (by the model's name).
        let tokens = [
            "<unk>",
            "<s>",
            "</s>",
            "<|endoftext|>",
            "<|user|>",
            "<|end|>",
            "a",
        ];
        let types = [2, 3, 3, 3, 4, 4, 1];
        assert_eq!(phi3_rstrip("Phi-3 Mini", &tokens, &types), [2, 4, 5]);
        assert_eq!(phi3_rstrip("weft tiny phi3", &tokens, &types), [2, 4, 5]);
        assert!(phi3_rstrip("TinyLlama", &tokens, &types).is_empty());
        // A pre-tokenizer `tok` does not know is named at upload.
        let mut unknown_pre = bpe;
        unknown_pre
            .metadata
            .push(("tokenizer.ggml.pre".into(), Str("deepseek-llm".into())));
        let why = gguf_tokenizer(&unknown_pre).unwrap_err();
        assert!(
            why.contains("cannot use it") && why.contains("\"deepseek-llm\""),
            "{why}"
        );
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
