//! The engine: loads models from bytes once per node and hands out sessions.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use crate::{Encoding, NnError, NnErrorKind, Tensor};

/// Where a graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The host CPU.
    Cpu,
    /// The node's GPU (wgpu: Vulkan, Metal or DX12; see [`crate::gpu`]).
    /// For ONNX models, the `MatMul`s and `Gemm`s whose B is a 2-D f32
    /// initializer run there, with those weights uploaded once at load,
    /// and so does every operator with a device kernel between them. For
    /// GGUF (Llama) models, the whole forward pass runs there, on its
    /// weights uploaded at load (quantised ones in their blocks) and a KV
    /// cache kept on the device; a mixture of experts reads its router's
    /// scores back to route each token on the host. Without a
    /// usable GPU the model loads for the CPU and says why in
    /// [`Model::placement`].
    Gpu,
}

/// Where a loaded model runs, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On the CPU (loaded for [`Target::Cpu`]).
    Cpu,
    /// On this GPU: an ONNX graph's weight products (the rest on the CPU),
    /// a GGUF decoder's whole forward pass.
    Gpu(crate::gpu::AdapterSummary),
    /// Loaded for [`Target::Gpu`], but no GPU was usable: on the CPU, and
    /// why.
    CpuFallback(String),
}

/// Named tensors.
pub type Named = Vec<(String, Tensor)>;

/// A `compute` call's result.
pub type Outputs = Result<Named, NnError>;

/// A call for [`Model::compute_joined`]: the session and its inputs.
pub type Joined<'a> = (&'a mut dyn Session, &'a [(String, Tensor)]);

/// A loaded model, shared by every session (and every Wasm instance) that
/// uses it. Weights live here, once.
pub trait Model: Send + Sync + fmt::Debug {
    /// A fresh execution context: its own inputs, outputs and (for decoders)
    /// KV cache.
    fn session(&self) -> Box<dyn Session>;

    /// Whether calls from different sessions may be merged along dimension 0
    /// (stateless graphs whose outputs are per-row functions of their inputs).
    fn batchable(&self) -> bool;

    /// Whether calls on different sessions of this model, each with its
    /// own state, run faster as one [`Model::compute_joined`] than one by
    /// one (decoders on the CPU: every session's new tokens go through the
    /// weights together).
    fn joinable(&self) -> bool {
        false
    }

    /// Runs one call per session, each on its own session's state, as one
    /// engine call where the model can ([`Model::joinable`]); returns one
    /// result per call, in order, each what the call would have given on
    /// its own. A bad call fails alone. The default runs them one by one.
    fn compute_joined(&self, calls: &mut [Joined<'_>]) -> Vec<Outputs> {
        calls
            .iter_mut()
            .map(|(session, inputs)| session.compute(inputs))
            .collect()
    }

    /// For a [`Model::joinable`] model: `inputs` cut into a first call of
    /// `rows` rows and the rest, to run on `session` one after the other
    /// (a long prompt over several joined passes, so that the other
    /// callers' tokens keep coming); `None` when the call is not longer
    /// than `rows`, or would fail on `session` (then it runs, and fails,
    /// whole: cutting must not change what a call does). The default
    /// never cuts.
    fn split_call(
        &self,
        _session: &dyn Session,
        _inputs: &[(String, Tensor)],
        _rows: usize,
    ) -> Option<(Named, Named)> {
        None
    }

    /// Bytes of weights this model holds (in host memory).
    fn weight_bytes(&self) -> u64;

    /// Bytes of weights this model holds on a GPU (besides its
    /// [`Model::weight_bytes`] in host memory).
    fn device_bytes(&self) -> u64 {
        0
    }

    /// Where it runs.
    fn placement(&self) -> Placement {
        Placement::Cpu
    }
}

/// One caller's execution context on a model.
pub trait Session: Any + Send + fmt::Debug {
    /// Runs the model on named inputs and returns its named outputs.
    fn compute(&mut self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, NnError>;
}

/// Loads `bytes` as a model of `encoding` for `target` (see [`Target`] for
/// what runs where).
pub fn load(bytes: &[u8], encoding: Encoding, target: Target) -> Result<Arc<dyn Model>, NnError> {
    match encoding {
        Encoding::Ggml => {
            use crate::llama::Llama;
            let model = match target {
                Target::Cpu => Llama::load(bytes)?,
                Target::Gpu => Llama::load_for(bytes, Some(gpu_or_why()))?,
            };
            Ok(Arc::new(model))
        }
        Encoding::Onnx => {
            use crate::onnx::exec::OnnxModel;
            let model = match target {
                Target::Cpu => OnnxModel::load(bytes)?,
                Target::Gpu => OnnxModel::load_for(bytes, Some(gpu_or_why()))?,
            };
            Ok(Arc::new(model))
        }
    }
}

/// The process's GPU, or why there is none, said once on stderr.
pub(crate) fn gpu_or_why() -> Result<Arc<crate::gpu::Gpu>, NnError> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let gpu = crate::gpu::Gpu::shared();
    match &gpu {
        Ok(g) => SAID.call_once(|| eprintln!("weft-nn: GPU models run on {}", g.adapter())),
        Err(e) => SAID.call_once(|| {
            eprintln!("weft-nn: no GPU, models loaded for the GPU run on the CPU: {e}")
        }),
    }
    gpu
}

/// What the engine holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Models loaded and alive.
    pub models: usize,
    /// Bytes of weights those models hold.
    pub weight_bytes: u64,
    /// Bytes of those weights also held on a GPU.
    pub device_bytes: u64,
    /// Loads answered from the cache.
    pub cache_hits: u64,
    /// Loads that parsed a model.
    pub loads: u64,
}

/// A node's inference engine: a cache of loaded models keyed by the digest
/// of their bytes, so that every instance loading the same model shares one
/// copy of its weights.
///
/// ```
/// let engine = weft_nn::Engine::default();
/// let err = engine
///     .load(b"not onnx", weft_nn::Encoding::Onnx, weft_nn::Target::Cpu)
///     .unwrap_err();
/// assert_eq!(err.kind, weft_nn::NnErrorKind::InvalidEncoding);
/// ```
#[derive(Debug, Default)]
pub struct Engine {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    models: HashMap<(blake3::Hash, Target), Weak<dyn Model>>,
    cache_hits: u64,
    loads: u64,
}

impl Engine {
    /// Loads a model, or returns the one already loaded from the same bytes.
    pub fn load(
        &self,
        bytes: &[u8],
        encoding: Encoding,
        target: Target,
    ) -> Result<Arc<dyn Model>, NnError> {
        let key = (blake3::hash(bytes), target);
        {
            let mut inner = self.lock();
            if let Some(m) = inner.models.get(&key).and_then(Weak::upgrade) {
                inner.cache_hits += 1;
                return Ok(m);
            }
        }
        // Parse outside the lock: loads of different models run in parallel.
        // Two racing loads of the same model both parse; the first stored wins.
        let model = load(bytes, encoding, target)?;
        let mut inner = self.lock();
        inner.loads += 1;
        if let Some(m) = inner.models.get(&key).and_then(Weak::upgrade) {
            inner.cache_hits += 1;
            return Ok(m);
        }
        inner.models.retain(|_, w| w.strong_count() > 0);
        inner.models.insert(key, Arc::downgrade(&model));
        Ok(model)
    }

    /// Models alive and the bytes they hold.
    pub fn stats(&self) -> EngineStats {
        let inner = self.lock();
        let live: Vec<_> = inner.models.values().filter_map(Weak::upgrade).collect();
        EngineStats {
            models: live.len(),
            weight_bytes: live.iter().map(|m| m.weight_bytes()).sum(),
            device_bytes: live.iter().map(|m| m.device_bytes()).sum(),
            cache_hits: inner.cache_hits,
            loads: inner.loads,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An input by name, or the only input when the graph has one and the
/// caller named it differently; errors name what the model expects.
pub(crate) fn input<'a>(
    inputs: &'a [(String, Tensor)],
    name: &str,
    position: usize,
) -> Result<&'a Tensor, NnError> {
    inputs
        .iter()
        .find(|(n, _)| n == name)
        .or_else(|| {
            inputs
                .get(position)
                .filter(|(n, _)| n.is_empty() || n.parse::<usize>() == Ok(position))
        })
        .map(|(_, t)| t)
        .ok_or_else(|| {
            NnError::new(
                NnErrorKind::InvalidArgument,
                format!(
                    "missing input `{name}` (or index {position}); got {:?}",
                    inputs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bytes_load_once_and_are_shared() {
        let engine = Engine::default();
        let bytes = crate::fixtures::onnx_linear();
        let a = engine.load(&bytes, Encoding::Onnx, Target::Cpu).unwrap();
        // A cache hit (this deadlocked once: the lookup's guard was still
        // held when the hit was counted).
        let b = engine.load(&bytes, Encoding::Onnx, Target::Cpu).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let stats = engine.stats();
        assert_eq!((stats.models, stats.loads, stats.cache_hits), (1, 1, 1));
        assert!(stats.weight_bytes > 0);
        drop((a, b));
        assert_eq!(
            engine.stats().models,
            0,
            "weights leave with their last user"
        );
    }

    #[test]
    fn the_gpu_target_runs_weight_products_on_the_gpu() {
        let _only = crate::gpu::tests::counted_uploads();
        let gpu = crate::gpu::tests::gpu();
        let engine = Engine::default();
        let bytes = crate::fixtures::onnx_linear();
        let cpu = engine.load(&bytes, Encoding::Onnx, Target::Cpu).unwrap();
        let before = gpu.device_bytes();
        let on_gpu = engine.load(&bytes, Encoding::Onnx, Target::Gpu).unwrap();
        assert!(!Arc::ptr_eq(&cpu, &on_gpu), "one model per target");
        assert_eq!(on_gpu.placement(), Placement::Gpu(gpu.adapter()));
        assert_eq!(cpu.placement(), Placement::Cpu);
        // w (2 x 3 floats) went up, and so did b (3 floats, for the Add).
        assert_eq!((on_gpu.device_bytes(), cpu.device_bytes()), (36, 0));
        assert_eq!(gpu.device_bytes(), before + 36);
        assert_eq!(engine.stats().device_bytes, 36);
        let x = Tensor::from_f32(vec![3, 2], &[1.0, 1.0, 0.0, 2.0, -1.5, 0.25]);
        let want = cpu.session().compute(&[("x".into(), x.clone())]).unwrap();
        let products = gpu.matmuls();
        let got = on_gpu.session().compute(&[("x".into(), x)]).unwrap();
        assert!(gpu.matmuls() > products, "the MatMul ran on the GPU");
        assert_eq!(got[0].0, want[0].0);
        assert_eq!(got[0].1.shape, want[0].1.shape);
        assert_eq!(got[0].1.to_f32().unwrap(), want[0].1.to_f32().unwrap());
        drop(on_gpu);
        assert_eq!(
            gpu.device_bytes(),
            before,
            "weights leave the GPU with the model"
        );
    }
}
