//! Llama-family decoders from GGUF (`wasi:nn` encoding `ggml`): RMSNorm,
//! rotary position embeddings, grouped-query attention and SwiGLU, on the
//! CPU, reading weights in their quantised form (Q4_0, Q4_1, Q8_0; F16,
//! BF16 and F32 too). Loaded for the GPU, the whole forward pass runs there
//! instead ([`device`]), on f32 copies of the weights uploaded once at load
//! and a KV cache kept on the device. A [`Session`] keeps the KV cache, so a guest generates
//! token by token: `compute` with the prompt's token ids, then with each new
//! token, reading the logits of the last position each time (the contract
//! LlamaEdge's `wasi:nn` GGML backend made common).

mod device;
mod session;
mod weights;

use std::any::Any;
use std::sync::Arc;

use crate::gpu::Gpu;
use crate::{GgufInfo, Joined, Model, NnError, NnErrorKind, Outputs, Placement, Session};

pub(crate) use weights::QMatrix;

/// The GGUF architectures (`general.architecture`) weft-nn runs: Llama and
/// the decoders that differ from it only in hyperparameters and optional
/// tensors.
pub const ARCHITECTURES: &[&str] = &["llama", "mistral", "granite", "qwen2", "qwen3"];

/// A decoder's shape, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HParams {
    pub vocab: usize,
    pub embd: usize,
    pub ffn: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// Width of a query, key or value head (Qwen3's `heads × head_dim`
    /// is wider than `embd`).
    pub head_dim: usize,
    pub rope_dims: usize,
    pub rope_base: f32,
    /// Multiplies every rotary angle: `1 / rope.scaling.factor` under
    /// linear scaling, 1 without.
    pub rope_freq_scale: f32,
    /// Rotary pairs are `(i, i + dims/2)` (ggml's NeoX mode: Qwen), not
    /// adjacent values (Llama, whose GGUF weights are permuted for it).
    pub rope_neox: bool,
    pub rms_eps: f32,
    pub context: usize,
    /// Granite's multipliers, 1 elsewhere: of the token embeddings, of each
    /// block's attention and feed-forward output before its residual add,
    /// and of the logits (`1 / granite.logit_scale`).
    pub embd_scale: f32,
    pub residual_scale: f32,
    pub logit_scale: f32,
    /// Multiplies attention scores: `1/√head_dim` unless the file says.
    pub attn_scale: f32,
}

impl HParams {
    fn read(info: &GgufInfo) -> Result<Self, NnError> {
        let arch = info.architecture.as_deref().unwrap_or("");
        if !ARCHITECTURES.contains(&arch) {
            let what = match arch {
                "" => "the GGUF has no `general.architecture`".to_string(),
                _ => format!("GGUF architecture `{arch}` is not supported"),
            };
            return Err(NnError::new(
                NnErrorKind::UnsupportedOperation,
                format!(
                    "{what}: weft-nn runs Llama-family decoders ({})",
                    ARCHITECTURES.join(", ")
                ),
            ));
        }
        let int = |key: &str| -> Result<usize, NnError> {
            info.get(&format!("{arch}.{key}"))
                .and_then(|v| v.as_int())
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| {
                    NnError::new(
                        NnErrorKind::InvalidEncoding,
                        format!("GGUF metadata `{arch}.{key}` is missing or not an integer"),
                    )
                })
        };
        let float = |key: &str| {
            info.get(&format!("{arch}.{key}"))
                .and_then(|v| v.as_float())
                .map(|v| v as f32)
        };
        let embd = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let kv_heads = int("attention.head_count_kv").unwrap_or(heads);
        if heads == 0
            || kv_heads == 0
            || !embd.is_multiple_of(heads)
            || !heads.is_multiple_of(kv_heads)
        {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("bad attention shape: {heads} heads, {kv_heads} KV heads, width {embd}"),
            ));
        }
        let head_dim = int("attention.key_length").unwrap_or(embd / heads);
        let value_dim = int("attention.value_length").unwrap_or(head_dim);
        if head_dim == 0 || value_dim != head_dim {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!(
                    "key heads of {head_dim} and value heads of {value_dim}: weft-nn runs decoders whose keys and values have one (non-zero) width"
                ),
            ));
        }
        let vocab = info
            .tensor("token_embd.weight")
            .and_then(|t| t.dims.get(1))
            .map(|&v| v as usize)
            .ok_or_else(|| {
                NnError::new(
                    NnErrorKind::InvalidEncoding,
                    "tensor `token_embd.weight` is missing",
                )
            })?;
        let rope_dims = int("rope.dimension_count").unwrap_or(head_dim);
        if rope_dims == 0 || rope_dims > head_dim || !rope_dims.is_multiple_of(2) {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("rope dimension {rope_dims} does not fit head size {head_dim}"),
            ));
        }
        let scaling = info
            .get(&format!("{arch}.rope.scaling.type"))
            .and_then(|v| v.as_str())
            .unwrap_or("none");
        let rope_freq_scale = match scaling {
            "none" => 1.0,
            "linear" => {
                1.0 / float("rope.scaling.factor")
                    .filter(|&f| f > 0.0)
                    .unwrap_or(1.0)
            }
            other => {
                return Err(NnError::new(
                    NnErrorKind::UnsupportedOperation,
                    format!(
                        "rope scaling `{other}` is not supported: weft-nn runs unscaled or linearly scaled rotary embeddings"
                    ),
                ));
            }
        };
        let granite = |key: &str| float(key).filter(|&f| f != 0.0);
        let (embd_scale, residual_scale, logit_scale, attn_scale) = if arch == "granite" {
            (
                granite("embedding_scale").unwrap_or(1.0),
                granite("residual_scale").unwrap_or(1.0),
                1.0 / granite("logit_scale").unwrap_or(1.0),
                granite("attention.scale"),
            )
        } else {
            (1.0, 1.0, 1.0, None)
        };
        Ok(Self {
            vocab,
            embd,
            ffn: int("feed_forward_length")?,
            layers: int("block_count")?,
            heads,
            kv_heads,
            head_dim,
            rope_dims,
            rope_base: float("rope.freq_base").unwrap_or(10_000.0),
            rope_freq_scale,
            rope_neox: matches!(arch, "qwen2" | "qwen3"),
            rms_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            context: int("context_length").unwrap_or(2048),
            embd_scale,
            residual_scale,
            logit_scale,
            attn_scale: attn_scale.unwrap_or(1.0 / (head_dim as f32).sqrt()),
        })
    }

    /// Width of all heads' queries (and of the attention's output).
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Width of all heads' keys (and values).
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// `(cos, sin)` of each rotated pair's angle at `pos`, appended to
    /// `out`, computed as ggml's rope cache does (`freqs`: the file's
    /// `rope_freqs.weight`, which divides each pair's angle).
    pub(crate) fn rope_angles(&self, freqs: Option<&[f32]>, pos: usize, out: &mut Vec<f32>) {
        let theta_scale = self.rope_base.powf(-2.0 / self.rope_dims as f32);
        let mut theta = pos as f32;
        for i in 0..self.rope_dims / 2 {
            let factor = freqs.map_or(1.0, |f| f[i]);
            let (sin, cos) = (theta / factor * self.rope_freq_scale).sin_cos();
            out.extend([cos, sin]);
            theta *= theta_scale;
        }
    }
}

/// One transformer block's weights.
#[derive(Debug)]
pub(crate) struct Layer {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    wo: QMatrix,
    /// Biases of the Q, K, V and output products, where the file has them
    /// (Qwen2's Q, K and V).
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    bo: Option<Vec<f32>>,
    /// RMSNorm weights applied to each query and key head before the
    /// rotary embedding (Qwen3).
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
}

/// All weights of a decoder, shared by its sessions.
#[derive(Debug)]
pub(crate) struct Weights {
    hp: HParams,
    tok_embd: QMatrix,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    /// `output.weight`, or the token embeddings when tied.
    output: Option<QMatrix>,
    /// `rope_freqs.weight` (Llama 3.1 and later): each rotary pair's angle
    /// is divided by its factor.
    rope_freqs: Option<Vec<f32>>,
    /// The rest of what the GPU's forward pass needs, when loaded for one.
    device: Option<device::DeviceWeights>,
}

/// A loaded Llama-family decoder.
#[derive(Debug)]
pub(crate) struct Llama {
    weights: Arc<Weights>,
    placement: Placement,
}

impl Weights {
    /// Every matrix that products read (the token embeddings only when
    /// they are also the output head).
    fn products(&self) -> impl Iterator<Item = &QMatrix> {
        self.layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down])
            .chain([self.output.as_ref().unwrap_or(&self.tok_embd)])
    }

    /// [`Weights::products`], to upload or unload.
    fn products_mut(&mut self) -> impl Iterator<Item = &mut QMatrix> {
        let head = match &mut self.output {
            Some(output) => output,
            None => &mut self.tok_embd,
        };
        self.layers
            .iter_mut()
            .flat_map(|l| {
                [
                    &mut l.wq,
                    &mut l.wk,
                    &mut l.wv,
                    &mut l.wo,
                    &mut l.gate,
                    &mut l.up,
                    &mut l.down,
                ]
            })
            .chain(std::iter::once(head))
    }
}

impl Llama {
    /// Parses a GGUF file and takes its weights (copied out of `bytes`,
    /// still quantised).
    pub(crate) fn load(bytes: &[u8]) -> Result<Self, NnError> {
        Self::load_for(bytes, None)
    }

    /// [`Llama::load`] for `gpu`: the forward pass runs there, each
    /// product's matrix dequantised to f32 and uploaded once (only the
    /// embedding lookup stays on the CPU). `Some(Err)` (no usable GPU) or a
    /// failed upload loads for the CPU and says why in the placement.
    pub(crate) fn load_for(
        bytes: &[u8],
        gpu: Option<Result<Arc<Gpu>, NnError>>,
    ) -> Result<Self, NnError> {
        let mut weights = Self::read(bytes)?;
        let placement = match gpu {
            None => Placement::Cpu,
            Some(Err(e)) => Placement::CpuFallback(e.message),
            Some(Ok(gpu)) => {
                let products = weights.products_mut().try_for_each(|m| m.upload(&gpu));
                let uploaded =
                    products.and_then(|()| device::DeviceWeights::upload(&gpu, &weights));
                match uploaded {
                    Ok(device) => {
                        weights.device = Some(device);
                        Placement::Gpu(gpu.adapter())
                    }
                    Err(e) => {
                        weights.products_mut().for_each(QMatrix::unload);
                        Placement::CpuFallback(format!(
                            "setting the decoder up on the GPU failed: {}",
                            e.message
                        ))
                    }
                }
            }
        };
        Ok(Self {
            weights: Arc::new(weights),
            placement,
        })
    }

    fn read(bytes: &[u8]) -> Result<Weights, NnError> {
        let info = crate::gguf::inspect(bytes)?;
        let hp = check(&info)?;
        let m = |name: &str, rows: usize, cols: usize| {
            QMatrix::from_gguf(&info, bytes, name, rows, cols)
        };
        let v = |name: &str, len: usize| weights::vector(&info, bytes, name, len);
        let optional = |name: &str, len: usize| match info.tensor(name) {
            Some(_) => v(name, len).map(Some),
            None => Ok(None),
        };
        let (qd, kvd) = (hp.q_dim(), hp.kv_dim());
        let layers = (0..hp.layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                let bias = |s: &str, len| optional(&format!("blk.{i}.{s}.bias"), len);
                Ok(Layer {
                    attn_norm: v(&n("attn_norm"), hp.embd)?,
                    wq: m(&n("attn_q"), qd, hp.embd)?,
                    wk: m(&n("attn_k"), kvd, hp.embd)?,
                    wv: m(&n("attn_v"), kvd, hp.embd)?,
                    wo: m(&n("attn_output"), hp.embd, qd)?,
                    bq: bias("attn_q", qd)?,
                    bk: bias("attn_k", kvd)?,
                    bv: bias("attn_v", kvd)?,
                    bo: bias("attn_output", hp.embd)?,
                    q_norm: optional(&n("attn_q_norm"), hp.head_dim)?,
                    k_norm: optional(&n("attn_k_norm"), hp.head_dim)?,
                    ffn_norm: v(&n("ffn_norm"), hp.embd)?,
                    gate: m(&n("ffn_gate"), hp.ffn, hp.embd)?,
                    up: m(&n("ffn_up"), hp.ffn, hp.embd)?,
                    down: m(&n("ffn_down"), hp.embd, hp.ffn)?,
                })
            })
            .collect::<Result<Vec<_>, NnError>>()?;
        let output = match info.tensor("output.weight") {
            Some(_) => Some(m("output.weight", hp.vocab, hp.embd)?),
            None => None,
        };
        Ok(Weights {
            tok_embd: m("token_embd.weight", hp.vocab, hp.embd)?,
            output_norm: v("output_norm.weight", hp.embd)?,
            rope_freqs: optional("rope_freqs.weight", hp.rope_dims / 2)?,
            layers,
            output,
            hp,
            device: None,
        })
    }
}

/// Checks that `info` is a decoder weft-nn runs, without reading weights
/// (what an upload checks): an architecture it knows, its hyperparameters,
/// every tensor it reads present in its shape, and no tensor it would not
/// read — an extra of another architecture, skipped, would give wrong
/// logits.
pub(crate) fn check(info: &GgufInfo) -> Result<HParams, NnError> {
    let hp = HParams::read(info)?;
    let (e, qd, kvd, hd) = (hp.embd, hp.q_dim(), hp.kv_dim(), hp.head_dim);
    // (name, ggml dims, required)
    let mut want: Vec<(String, Vec<usize>, bool)> = vec![
        ("token_embd.weight".into(), vec![e, hp.vocab], true),
        ("output_norm.weight".into(), vec![e], true),
        ("output.weight".into(), vec![e, hp.vocab], false),
        ("rope_freqs.weight".into(), vec![hp.rope_dims / 2], false),
    ];
    for i in 0..hp.layers {
        for (name, dims, required) in [
            ("attn_norm.weight", vec![e], true),
            ("attn_q.weight", vec![e, qd], true),
            ("attn_k.weight", vec![e, kvd], true),
            ("attn_v.weight", vec![e, kvd], true),
            ("attn_output.weight", vec![qd, e], true),
            ("attn_q.bias", vec![qd], false),
            ("attn_k.bias", vec![kvd], false),
            ("attn_v.bias", vec![kvd], false),
            ("attn_output.bias", vec![e], false),
            ("attn_q_norm.weight", vec![hd], false),
            ("attn_k_norm.weight", vec![hd], false),
            ("ffn_norm.weight", vec![e], true),
            ("ffn_gate.weight", vec![e, hp.ffn], true),
            ("ffn_up.weight", vec![e, hp.ffn], true),
            ("ffn_down.weight", vec![hp.ffn, e], true),
        ] {
            want.push((format!("blk.{i}.{name}"), dims, required));
        }
    }
    for (name, dims, required) in &want {
        match info.tensor(name) {
            None if *required => {
                return Err(NnError::new(
                    NnErrorKind::InvalidEncoding,
                    format!("tensor `{name}` is missing"),
                ));
            }
            Some(t) if !t.dims.iter().map(|&d| d as usize).eq(dims.iter().copied()) => {
                return Err(NnError::new(
                    NnErrorKind::InvalidEncoding,
                    format!("tensor `{name}` has shape {:?}, expected {dims:?}", t.dims),
                ));
            }
            _ => {}
        }
    }
    let known: std::collections::HashSet<&str> = want.iter().map(|(n, ..)| n.as_str()).collect();
    if let Some(t) = info
        .tensors
        .iter()
        .find(|t| !known.contains(t.name.as_str()))
    {
        return Err(NnError::new(
            NnErrorKind::UnsupportedOperation,
            format!(
                "tensor `{}` is not one a `{}` decoder has in weft-nn, which would run the model without it and give wrong logits; weft-nn reads Llama-family decoders ({})",
                t.name,
                info.architecture.as_deref().unwrap_or_default(),
                ARCHITECTURES.join(", ")
            ),
        ));
    }
    Ok(hp)
}

impl Model for Llama {
    fn session(&self) -> Box<dyn Session> {
        Box::new(session::Decoder::new(self.weights.clone()))
    }

    fn batchable(&self) -> bool {
        false
    }

    fn joinable(&self) -> bool {
        true
    }

    fn compute_joined(&self, calls: &mut [Joined<'_>]) -> Vec<Outputs> {
        let mut results: Vec<Option<Outputs>> = calls.iter().map(|_| None).collect();
        let mut joined: Vec<(usize, &mut session::Decoder, Vec<u32>)> = Vec::new();
        for (i, (s, inputs)) in calls.iter_mut().enumerate() {
            let any: &dyn Any = &**s;
            if !any.is::<session::Decoder>() {
                // Not a decoder's (the runtime's stand-in for a context a
                // panic left unusable): it answers for itself.
                results[i] = Some(s.compute(inputs));
                continue;
            }
            let any: &mut dyn Any = &mut **s;
            match any.downcast_mut::<session::Decoder>() {
                Some(dec) if dec.joins(&self.weights) => match dec.tokens(inputs) {
                    Ok(tokens) => joined.push((i, dec, tokens)),
                    Err(e) => results[i] = Some(Err(e)),
                },
                // Another model's session: on its own.
                Some(dec) => results[i] = Some(dec.compute(inputs)),
                None => unreachable!("a decoder session (checked above)"),
            }
        }
        // Sessions on the GPU join one pass there, those on the CPU (loaded
        // for it, or moved there by a failed pass) one pass here.
        let (on_gpu, on_cpu): (Vec<_>, Vec<_>) =
            joined.into_iter().partition(|(_, dec, _)| dec.on_gpu());
        for (group, gpu) in [(on_gpu, true), (on_cpu, false)] {
            if group.is_empty() {
                continue;
            }
            let (mut at, mut decoders, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
            for (i, dec, t) in group {
                at.push(i);
                decoders.push(dec);
                tokens.push(t);
            }
            let tokens: Vec<&[u32]> = tokens.iter().map(Vec::as_slice).collect();
            let all = if gpu {
                session::forward_together_on_the_gpu(&mut decoders, &tokens)
            } else {
                session::forward_together(&mut decoders, &tokens)
            };
            for (i, l) in at.into_iter().zip(all) {
                results[i] = Some(Ok(session::logits(&l)));
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every call answered"))
            .collect()
    }

    fn weight_bytes(&self) -> u64 {
        let w = &self.weights;
        let mats = w
            .layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down]);
        let vectors: usize = w
            .layers
            .iter()
            .flat_map(|l| {
                [&l.bq, &l.bk, &l.bv, &l.bo, &l.q_norm, &l.k_norm]
                    .into_iter()
                    .flatten()
                    .chain([&l.attn_norm, &l.ffn_norm])
            })
            .chain(&w.rope_freqs)
            .chain([&w.output_norm])
            .map(|v| v.len() * 4)
            .sum();
        (mats.map(QMatrix::bytes).sum::<usize>()
            + w.tok_embd.bytes()
            + w.output.as_ref().map_or(0, QMatrix::bytes)
            + vectors) as u64
    }

    fn device_bytes(&self) -> u64 {
        let norms = self.weights.device.as_ref().map_or(0, |d| d.bytes());
        self.weights
            .products()
            .map(QMatrix::device_bytes)
            .sum::<u64>()
            + norms
    }

    fn placement(&self) -> Placement {
        self.placement.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    fn smollm2() -> Vec<u8> {
        let path = std::env::var_os("WEFT_MODELS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/models")
            })
            .join("smollm2-135m-instruct.gguf");
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask models`)", path.display()))
    }

    /// Held by the tests that run decoders on the GPU, so that the
    /// working bytes one of them counts are its own.
    fn on_the_device() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn argmax(v: &[f32]) -> usize {
        (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// A prompt split into passes, and a cache that grows (and is copied)
    /// in the middle of one and between tokens, change nothing: each step's
    /// logits are those of a session running the prompt in one pass, and
    /// pick llama.cpp's token, as the CPU path does. The caches are
    /// counted in the GPU's working bytes until the sessions are dropped.
    #[test]
    fn on_the_gpu_passes_and_a_growing_cache_change_nothing() {
        let _device = on_the_device();
        let bytes = smollm2();
        let device = crate::gpu::tests::gpu();
        let before = device.work_bytes();
        let gpu = Llama::load_for(&bytes, Some(Ok(device.clone()))).unwrap();
        let cpu = Llama::load(&bytes).unwrap();
        let mut on = session::Decoder::new(gpu.weights.clone());
        on.on_device().expect("loaded for the GPU").shrink(5, 8);
        let mut whole = session::Decoder::new(gpu.weights.clone());
        let mut off = session::Decoder::new(cpu.weights.clone());
        // The France prompt of tests/data/smollm2_reference.json, 16 tokens:
        // passes of 5, 5, 5 and 1; the cache grows from 8 to 16 positions
        // in the second. Then llama.cpp's answer, one token at a time: the
        // cache grows to 32 at the 17th position.
        let mut input: Vec<u32> = vec![
            1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
        ];
        let llama_cpp = [504, 3575, 282, 4649, 314, 7042, 30, 2];
        for (step, &want) in llama_cpp.iter().enumerate() {
            let (a, w, c) = (
                on.forward(&input),
                whole.forward(&input),
                off.forward(&input),
            );
            let diff = worst(&a, &w);
            assert!(diff <= 1e-3, "step {step}: logits differ by {diff}");
            assert_eq!((argmax(&a), argmax(&c)), (want, want), "step {step}");
            input = vec![want as u32];
        }
        // Single tokens' scores (9 heads over 32 positions), not the
        // prompt passes' 5 tokens' any more.
        let on_device = on.on_device().expect("still on the GPU");
        assert_eq!(on_device.scores_floats(), 9 * 32);
        // K and V of 30 layers, 3 heads of 64 each, for 32 and 64 positions.
        let cache = |positions: u64| positions * 3 * 64 * 4 * 2 * 30;
        let held = device.work_bytes() - before;
        assert!(held >= cache(32) + cache(64), "{held} bytes counted");
        drop((on, whole));
        assert_eq!(device.work_bytes(), before);
    }

    /// A pass that fails on the device moves the session to the CPU, which
    /// first runs the tokens seen so far: from then on its logits are the
    /// CPU path's, bit for bit.
    #[test]
    fn a_session_whose_gpu_fails_carries_on_on_the_cpu() {
        let _device = on_the_device();
        let bytes = smollm2();
        let gpu = Llama::load_for(&bytes, Some(Ok(crate::gpu::tests::gpu()))).unwrap();
        let cpu = Llama::load(&bytes).unwrap();
        let mut on = session::Decoder::new(gpu.weights.clone());
        let mut off = session::Decoder::new(cpu.weights.clone());
        let prompt = [1, 504, 3458, 282];
        on.forward(&prompt);
        off.forward(&prompt);
        on.on_device().expect("loaded for the GPU").fail_next = true;
        assert_eq!(on.forward(&[30]), off.forward(&[30]));
        assert!(on.on_device().is_none(), "moved to the CPU");
        assert_eq!(on.forward(&[216]), off.forward(&[216]));
    }

    /// Three sessions' prompts of different lengths, then one token each,
    /// computed together give each session exactly what it gets alone; a
    /// bad call among them fails alone, and a session that is not a
    /// decoder's answers for itself.
    #[test]
    fn sessions_computed_together_get_what_each_gets_alone() {
        let model = Llama::load(&smollm2()).unwrap();
        assert!(model.joinable());
        let steps: [[Vec<i64>; 3]; 2] = [
            [
                vec![1, 4093, 198],
                vec![1, 520],
                vec![1, 4093, 198, 1780, 314],
            ],
            [vec![504], vec![30], vec![2]],
        ];
        let mut alone: Vec<Box<dyn Session>> = (0..3).map(|_| model.session()).collect();
        let mut together: Vec<Box<dyn Session>> = (0..3).map(|_| model.session()).collect();
        let mut bad = model.session();
        let named = |ids: &[i64]| {
            vec![(
                "input_ids".to_string(),
                Tensor::from_i64(vec![ids.len()], ids),
            )]
        };
        for inputs in &steps {
            let inputs: Vec<_> = inputs.iter().map(|ids| named(ids)).collect();
            let want: Vec<Vec<f32>> = alone
                .iter_mut()
                .zip(&inputs)
                .map(|(s, i)| s.compute(i).unwrap()[0].1.to_f32().unwrap())
                .collect();
            let outside = named(&[49152]);
            let mut calls: Vec<Joined<'_>> = together
                .iter_mut()
                .zip(&inputs)
                .map(|(s, i)| (&mut **s, i.as_slice()))
                .collect();
            calls.insert(1, (&mut *bad, outside.as_slice()));
            let mut refuses = Refuses;
            calls.push((&mut refuses, outside.as_slice()));
            let mut got = model.compute_joined(&mut calls);
            let e = got.pop().unwrap().unwrap_err();
            assert_eq!(
                e.message, "refused",
                "another kind of session answers for itself"
            );
            let e = got.remove(1).unwrap_err();
            assert_eq!(e.kind, NnErrorKind::InvalidArgument, "{e}");
            assert!(e.message.contains("outside the vocabulary"), "{e}");
            for (g, w) in got.into_iter().zip(&want) {
                assert_eq!(&g.unwrap()[0].1.to_f32().unwrap(), w);
            }
        }
    }

    /// On the GPU too: three sessions' prompts, then a token each, run as
    /// one pass (the weights read once, not three times) and give each
    /// session what it gets alone, up to the order the
    /// kernels sum in. Should the joined pass fail, every session moves to
    /// the CPU and gets the CPU path's logits from then on.
    #[test]
    fn on_the_gpu_sessions_computed_together_run_one_pass_and_get_what_each_gets_alone() {
        let _device = on_the_device();
        let bytes = smollm2();
        let device = crate::gpu::tests::gpu();
        let model = Llama::load_for(&bytes, Some(Ok(device.clone()))).unwrap();
        assert!(model.joinable());
        let cpu = Llama::load(&bytes).unwrap();
        let steps: [[Vec<i64>; 3]; 2] = [
            [
                vec![1, 4093, 198],
                vec![1, 520],
                vec![1, 4093, 198, 1780, 314],
            ],
            [vec![504], vec![30], vec![2]],
        ];
        let named = |ids: &[i64]| {
            vec![(
                "input_ids".to_string(),
                Tensor::from_i64(vec![ids.len()], ids),
            )]
        };
        let logits = |o: Outputs| o.unwrap()[0].1.to_f32().unwrap();
        let mut alone: Vec<Box<dyn Session>> = (0..3).map(|_| model.session()).collect();
        let mut together: Vec<Box<dyn Session>> = (0..3).map(|_| model.session()).collect();
        let mut on_cpu: Vec<Box<dyn Session>> = (0..3).map(|_| cpu.session()).collect();
        for inputs in &steps {
            let inputs: Vec<_> = inputs.iter().map(|ids| named(ids)).collect();
            let want: Vec<Vec<f32>> = alone
                .iter_mut()
                .zip(&inputs)
                .map(|(s, i)| logits(s.compute(i)))
                .collect();
            let mut calls: Vec<Joined<'_>> = together
                .iter_mut()
                .zip(&inputs)
                .map(|(s, i)| (&mut **s, i.as_slice()))
                .collect();
            let got = model.compute_joined(&mut calls);
            for (g, w) in got.into_iter().zip(&want) {
                let g = logits(g);
                assert!(worst(&g, w) <= 1e-3, "{}", worst(&g, w));
                assert_eq!(argmax(&g), argmax(w));
            }
            for (s, i) in on_cpu.iter_mut().zip(&inputs) {
                s.compute(i).unwrap();
            }
        }
        let passes: Vec<usize> = together
            .iter_mut()
            .map(|s| {
                let any: &mut dyn Any = &mut **s;
                let dec = any.downcast_mut::<session::Decoder>().unwrap();
                dec.on_device().expect("on the GPU").passes
            })
            .collect();
        assert_eq!(
            passes,
            [2, 0, 0],
            "one pass per step, in the first's buffers"
        );
        // A failed joined pass: all three carry on on the CPU.
        let any: &mut dyn Any = &mut *together[1];
        let dec = any.downcast_mut::<session::Decoder>().unwrap();
        dec.on_device().expect("on the GPU").fail_next = true;
        let inputs: Vec<_> = [[216], [28], [30]].iter().map(|ids| named(ids)).collect();
        let mut calls: Vec<Joined<'_>> = together
            .iter_mut()
            .zip(&inputs)
            .map(|(s, i)| (&mut **s, i.as_slice()))
            .collect();
        let got = model.compute_joined(&mut calls);
        for ((g, s), i) in got.into_iter().zip(&mut on_cpu).zip(&inputs) {
            assert_eq!(logits(g), logits(s.compute(i)));
        }
    }

    /// What an upload checks: the fixture decoder passes; bad head and
    /// rotary sizes are refused with the reason, not a panic later.
    #[test]
    fn check_refuses_shapes_the_decoder_cannot_run() {
        use crate::fixtures::{decoder, decoder_with};
        let check_bytes = |b: Vec<u8>| check(&crate::gguf::inspect(&b).unwrap());
        check_bytes(decoder()).unwrap();
        for (key, value, why) in [
            ("llama.rope.dimension_count", 0, "rope dimension 0"),
            ("llama.rope.dimension_count", 17, "rope dimension 17"),
            ("llama.attention.key_length", 0, "key heads of 0"),
            ("llama.attention.head_count_kv", 0, "0 KV heads"),
        ] {
            let e = check_bytes(decoder_with(&[(key, value)])).unwrap_err();
            assert!(e.message.contains(why), "{key}: {e}");
        }
    }

    #[derive(Debug)]
    struct Refuses;

    impl Session for Refuses {
        fn compute(&mut self, _: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, NnError> {
            Err(NnError::new(NnErrorKind::RuntimeError, "refused"))
        }
    }

    #[test]
    fn loaded_for_an_unusable_gpu_it_runs_on_the_cpu_and_says_why() {
        let bytes = smollm2();
        let why = NnError::new(NnErrorKind::UnsupportedOperation, "no adapter here");
        let fallback = Llama::load_for(&bytes, Some(Err(why))).unwrap();
        assert_eq!(
            fallback.placement(),
            Placement::CpuFallback("no adapter here".into())
        );
        assert_eq!(fallback.device_bytes(), 0);
        let cpu = Llama::load(&bytes).unwrap();
        assert_eq!(cpu.placement(), Placement::Cpu);
        let input = [("input_ids".to_string(), Tensor::from_i64(vec![2], &[1, 2]))];
        let (a, b) = (
            fallback.session().compute(&input).unwrap(),
            cpu.session().compute(&input).unwrap(),
        );
        assert_eq!(a[0].1.to_f32().unwrap(), b[0].1.to_f32().unwrap());
    }
}
