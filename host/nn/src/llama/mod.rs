//! Llama-family decoders from GGUF (`wasi:nn` encoding `ggml`): RMSNorm,
//! rotary position embeddings, grouped-query attention and SwiGLU, on the
//! CPU, reading weights in their quantised form (Q4_0, Q4_1, Q8_0; F16,
//! BF16 and F32 too). A [`Session`] keeps the KV cache, so a guest generates
//! token by token: `compute` with the prompt's token ids, then with each new
//! token, reading the logits of the last position each time (the contract
//! LlamaEdge's `wasi:nn` GGML backend made common).

mod session;
mod weights;

use std::sync::Arc;

use crate::{GgufInfo, Model, NnError, NnErrorKind, Session};

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
}

impl Llama {
    /// Parses a GGUF file and takes its weights (copied out of `bytes`,
    /// still quantised).
    pub(crate) fn load(bytes: &[u8]) -> Result<Self, NnError> {
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
        Ok(Self {
            weights: Arc::new(Weights {
                tok_embd: m("token_embd.weight", hp.vocab, hp.embd)?,
                output_norm: v("output_norm.weight", hp.embd)?,
                layers,
                output,
                hp,
            }),
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
}
