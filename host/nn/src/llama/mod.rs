//! Llama-family decoders from GGUF (`wasi:nn` encoding `ggml`): RMSNorm,
//! rotary position embeddings, grouped-query attention and SwiGLU, on the
//! CPU, reading weights in their quantised form (Q4_0, Q4_1, Q8_0; F16,
//! BF16 and F32 too). Loaded for the GPU, the weight products run there
//! instead, on f32 copies of the weights uploaded once at load. A [`Session`] keeps the KV cache, so a guest generates
//! token by token: `compute` with the prompt's token ids, then with each new
//! token, reading the logits of the last position each time (the contract
//! LlamaEdge's `wasi:nn` GGML backend made common).

mod session;
mod weights;

use std::sync::Arc;

use crate::gpu::Gpu;
use crate::{GgufInfo, Model, NnError, NnErrorKind, Placement, Session};

pub(crate) use weights::QMatrix;

/// A decoder's shape, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HParams {
    pub vocab: usize,
    pub embd: usize,
    pub ffn: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_dims: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub context: usize,
}

impl HParams {
    fn read(info: &GgufInfo) -> Result<Self, NnError> {
        let arch = info.architecture.as_deref().unwrap_or("");
        if !matches!(arch, "llama" | "mistral" | "granite") {
            return Err(NnError::new(
                NnErrorKind::UnsupportedOperation,
                format!(
                    "GGUF architecture `{arch}` is not supported: weft-nn runs Llama-family decoders (`llama`)"
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
        let float = |key: &str, default: f64| {
            info.get(&format!("{arch}.{key}"))
                .and_then(|v| v.as_float())
                .unwrap_or(default) as f32
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
        let head_dim = embd / heads;
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
        if rope_dims > head_dim || !rope_dims.is_multiple_of(2) {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("rope dimension {rope_dims} does not fit head size {head_dim}"),
            ));
        }
        Ok(Self {
            vocab,
            embd,
            ffn: int("feed_forward_length")?,
            layers: int("block_count")?,
            heads,
            kv_heads,
            head_dim,
            rope_dims,
            rope_base: float("rope.freq_base", 10_000.0),
            rms_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            context: int("context_length").unwrap_or(2048),
        })
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

    /// [`Llama::load`] for `gpu`: every weight product runs there, its
    /// matrix dequantised to f32 and uploaded once (attention, norms and
    /// the embedding lookup stay on the CPU). `Some(Err)` (no usable GPU)
    /// or a failed upload loads for the CPU and says why in the placement.
    pub(crate) fn load_for(
        bytes: &[u8],
        gpu: Option<Result<Arc<Gpu>, NnError>>,
    ) -> Result<Self, NnError> {
        let mut weights = Self::read(bytes)?;
        let placement = match gpu {
            None => Placement::Cpu,
            Some(Err(e)) => Placement::CpuFallback(e.message),
            Some(Ok(gpu)) => {
                let uploaded = weights.products_mut().try_for_each(|m| m.upload(&gpu));
                match uploaded {
                    Ok(()) => Placement::Gpu(gpu.adapter()),
                    Err(e) => {
                        weights.products_mut().for_each(QMatrix::unload);
                        Placement::CpuFallback(format!(
                            "uploading the weights failed: {}",
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
        let hp = HParams::read(&info)?;
        let m = |name: &str, rows: usize, cols: usize| {
            QMatrix::from_gguf(&info, bytes, name, rows, cols)
        };
        let v = |name: &str, len: usize| weights::vector(&info, bytes, name, len);
        let kv = hp.kv_heads * hp.head_dim;
        let layers = (0..hp.layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Layer {
                    attn_norm: v(&n("attn_norm"), hp.embd)?,
                    wq: m(&n("attn_q"), hp.embd, hp.embd)?,
                    wk: m(&n("attn_k"), kv, hp.embd)?,
                    wv: m(&n("attn_v"), kv, hp.embd)?,
                    wo: m(&n("attn_output"), hp.embd, hp.embd)?,
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
            layers,
            output,
            hp,
        })
    }
}

impl Model for Llama {
    fn session(&self) -> Box<dyn Session> {
        Box::new(session::Decoder::new(self.weights.clone()))
    }

    fn batchable(&self) -> bool {
        false
    }

    fn weight_bytes(&self) -> u64 {
        let w = &self.weights;
        let mats = w
            .layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down]);
        let norms = (w.layers.len() * 2 + 1) * w.hp.embd * 4;
        (mats.map(QMatrix::bytes).sum::<usize>()
            + w.tok_embd.bytes()
            + w.output.as_ref().map_or(0, QMatrix::bytes)
            + norms) as u64
    }

    fn device_bytes(&self) -> u64 {
        self.weights.products().map(QMatrix::device_bytes).sum()
    }

    fn placement(&self) -> Placement {
        self.placement.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    #[test]
    fn loaded_for_an_unusable_gpu_it_runs_on_the_cpu_and_says_why() {
        let path = std::env::var_os("WEFT_MODELS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/models")
            })
            .join("smollm2-135m-instruct.gguf");
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask models`)", path.display()));
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
