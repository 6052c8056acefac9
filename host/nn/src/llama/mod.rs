//! Llama-family decoders from GGUF (`wasi:nn` encoding `ggml`): RMSNorm,
//! rotary position embeddings, grouped-query attention and SwiGLU (GELU
//! for Gemma, with its post-norms, soft caps and sliding windows; the
//! LayerNorms, biases, gate-less GELU, parallel blocks and learned
//! positions of StarCoder 2, StableLM, Phi-2, GPT-2, StarCoder and
//! GPT-NeoX), on the CPU, reading weights in their quantised form (Q4_0, Q4_1, Q8_0; F16,
//! BF16 and F32 too). Loaded for the GPU, the whole forward pass runs there
//! instead ([`device`]), on the weights uploaded once at load (quantised
//! ones in their blocks, see [`QMatrix::upload_side_by_side`]) and a KV
//! cache kept on the device. A [`Session`] keeps the KV cache, so a guest generates
//! token by token: `compute` with the prompt's token ids, then with each new
//! token, reading the logits of the last position each time (the contract
//! LlamaEdge's `wasi:nn` GGML backend made common).

mod attend;
mod device;
mod hparams;
mod load;
mod rows;
mod session;
mod weights;

use std::any::Any;
use std::sync::Arc;

use crate::gpu::Gpu;
use crate::{Joined, Model, Named, NnError, Outputs, Placement, Session, Tensor};

pub use hparams::ARCHITECTURES;
pub(crate) use hparams::{HParams, check};
pub(crate) use weights::QMatrix;

/// One transformer block's weights.
#[derive(Debug)]
pub(crate) struct Layer {
    /// The norms of each block's input (none in OLMo 2 and EXAONE 4):
    /// their weights, or with [`HParams::layer_norm`] a LayerNorm's weight
    /// then its bias (twice the width).
    attn_norm: Option<Vec<f32>>,
    /// The attention's products; in a layer that convolves (LFM2's
    /// [`ShortConv`](hparams::ShortConv)), `wq`, `wk` and `wv` are the
    /// rows of its `in_proj` giving `b`, `c` and `x`, and `wo` its
    /// `out_proj`; in one that scans (Granite 4.0-H's
    /// [`Mamba2`](hparams::Mamba2)), the rows of its `ssm_in` giving `z`,
    /// `xBC` and `dt`, and `wo` its `ssm_out`.
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
    ffn_norm: Option<Vec<f32>>,
    /// Gemma 2 and 3's norms of the attention's and the feed-forward's
    /// output, before each residual add.
    post_attn_norm: Option<Vec<f32>>,
    post_ffn_norm: Option<Vec<f32>>,
    /// The feed-forward: one expert (a dense model), or with `router` a
    /// mixture's, of which each token goes through `experts_used`; none
    /// in a Nemotron-H layer without one.
    experts: Vec<Expert>,
    /// A mixture's router (`ffn_gate_inp`): a score per expert.
    router: Option<QMatrix>,
    /// The router's bias (`exp_probs_b`: ERNIE 4.5 MoE's, LFM2-MoE's,
    /// Nemotron 3 Nano's, GLM-4.5's, DeepSeek-V3's), added to the
    /// probabilities to pick a
    /// token's experts, not to weight them.
    expert_bias: Option<Vec<f32>>,
    /// A mixture's shared expert (Qwen2-MoE's, Granite MoE Shared's and
    /// ERNIE 4.5 MoE's `ffn_*_shexp`), which every token goes through
    /// beside its routed ones.
    shared: Option<Expert>,
    /// Qwen2-MoE's gate of the shared expert's output
    /// (`ffn_gate_inp_shexp`): a token's is the sigmoid of its product
    /// with the expert's input.
    shared_gate: Option<Vec<f32>>,
    /// gpt-oss's: each query head's sink, a logit in its softmax's
    /// denominator alone (`attn_sinks`), and its router's bias, added to
    /// the scores (`ffn_gate_inp.bias`).
    sinks: Option<Vec<f32>>,
    router_bias: Option<Vec<f32>>,
    /// LFM2's convolution weights, where the layer convolves: `taps` per
    /// channel, the oldest input's first (ggml's `[taps, embd]`).
    conv: Option<Vec<f32>>,
    /// A Mamba-2 layer's weights besides its products, where it scans.
    ssm: Option<Scan>,
    /// DeepSeek-V2's latent attention's weights besides `wq` (the queries'
    /// product, or their latent's), `wk` (the keys' and values' latent's,
    /// with the rotated key part) and `wv` (the heads' keys and values
    /// from the normed latent).
    mla: Option<Latent>,
}

/// A latent attention layer's ([`Mla`](hparams::Mla)) weights besides its
/// three products.
#[derive(Debug)]
pub(crate) struct Latent {
    /// The queries' latent's norm and the product after it
    /// (`attn_q_a_norm`, `attn_q_b`); none where `wq` gives the queries.
    q_b: Option<(Vec<f32>, QMatrix)>,
    /// The keys' and values' latent's norm (`attn_kv_a_norm`).
    kv_norm: Vec<f32>,
}

/// A Mamba-2 layer's ([`Mamba2`](hparams::Mamba2)) weights besides its
/// products.
#[derive(Debug)]
pub(crate) struct Scan {
    /// The convolution's: `taps` per channel of `xBC`, the oldest input's
    /// first (ggml's `[taps, conv_dim]`), then a bias per channel.
    conv: Vec<f32>,
    conv_bias: Vec<f32>,
    /// Per head: `dt`'s bias, the decay `A` (negative: the file holds
    /// `-exp(A_log)`) and the skip `D`.
    dt_bias: Vec<f32>,
    a: Vec<f32>,
    d: Vec<f32>,
    /// The gated output's RMSNorm weights (`inner`, a group's after
    /// another's; none in Mamba-1's).
    norm: Vec<f32>,
    /// Mamba-1's `ssm_x`, giving `dt` (before the layer's `wv`, its
    /// `ssm_dt`), `B` and `C` from the convolution's output; its `A` a
    /// decay per channel and state (`[inner][state]`), `dt_bias` and `D`
    /// per channel.
    x_proj: Option<QMatrix>,
}

impl Scan {
    fn vectors(&self) -> [&Vec<f32>; 6] {
        [
            &self.conv,
            &self.conv_bias,
            &self.dt_bias,
            &self.a,
            &self.d,
            &self.norm,
        ]
    }
}

/// A SwiGLU (GEGLU) feed-forward, or (Arcee's, StarCoder 2's) one without
/// a gate: a dense layer's, or one expert's.
#[derive(Debug)]
pub(crate) struct Expert {
    gate: Option<QMatrix>,
    up: QMatrix,
    down: QMatrix,
    /// The biases of the up and the down products, a dense layer's of the
    /// families with [`HParams::ffn_biases`] (and Nemotron's), gpt-oss's
    /// experts'.
    biases: Option<[Vec<f32>; 2]>,
    /// gpt-oss's experts': the gate product's bias.
    gate_bias: Option<Vec<f32>>,
}

impl Expert {
    /// The products of the feed-forward's input: the gate's (if it has
    /// one), then the up one's.
    fn gate_up(&self) -> Vec<&QMatrix> {
        self.gate.iter().chain([&self.up]).collect()
    }
}

impl Layer {
    /// A dense layer's feed-forward.
    fn dense(&self) -> &Expert {
        &self.experts[0]
    }

    /// Whether it is a Mamba-1 layer ([`Scan::x_proj`]): its `wv` is
    /// `ssm_dt`, which runs after the convolution.
    fn selective(&self) -> bool {
        self.ssm.as_ref().is_some_and(|s| s.x_proj.is_some())
    }

    /// Whether its `wv` runs alone, after the fused Q and K products:
    /// latent attention's reads its normed latent, Mamba-1's (`ssm_dt`)
    /// its convolution's product.
    fn wv_alone(&self) -> bool {
        self.mla.is_some() || self.selective()
    }

    fn matrices(&self) -> impl Iterator<Item = &QMatrix> {
        let ffn = (self.experts.iter().chain(&self.shared))
            .flat_map(|e| e.gate.iter().chain([&e.up, &e.down]));
        let q_b = self.mla.iter().flat_map(|m| m.q_b.iter().map(|(_, q)| q));
        let x_proj = self.ssm.iter().flat_map(|s| &s.x_proj);
        [&self.wq, &self.wk, &self.wv, &self.wo]
            .into_iter()
            .chain(q_b)
            .chain(x_proj)
            .chain(ffn)
            .chain(&self.router)
    }

    fn matrices_mut(&mut self) -> impl Iterator<Item = &mut QMatrix> {
        let ffn = (self.experts.iter_mut().chain(&mut self.shared))
            .flat_map(|e| e.gate.iter_mut().chain([&mut e.up, &mut e.down]));
        let q_b = (self.mla.iter_mut()).flat_map(|m| m.q_b.iter_mut().map(|(_, q)| q));
        let x_proj = self.ssm.iter_mut().flat_map(|s| &mut s.x_proj);
        [&mut self.wq, &mut self.wk, &mut self.wv, &mut self.wo]
            .into_iter()
            .chain(q_b)
            .chain(x_proj)
            .chain(ffn)
            .chain(&mut self.router)
    }
}

/// All weights of a decoder, shared by its sessions.
#[derive(Debug)]
pub(crate) struct Weights {
    hp: HParams,
    tok_embd: QMatrix,
    layers: Vec<Layer>,
    /// As [`Layer::attn_norm`]'s (with its bias after the weight).
    output_norm: Vec<f32>,
    /// `output.weight`, or the token embeddings when tied.
    output: Option<QMatrix>,
    /// Phi-2's bias of the logits.
    output_bias: Option<Vec<f32>>,
    /// GPT-2's and StarCoder's position embeddings, a row a position.
    positions: Option<QMatrix>,
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
    /// The embeddings of `tokens`, the first at position `past`, into
    /// `out` (a row of the model's width each): each token's row, plus its
    /// position's where the model learned them (GPT-2, StarCoder).
    fn embed(&self, tokens: &[u32], past: usize, out: &mut [f32]) {
        if tokens.is_empty() {
            return;
        }
        let d = out.len() / tokens.len();
        for (&tok, row) in tokens.iter().zip(out.chunks_exact_mut(d)) {
            self.tok_embd.row(tok as usize, row);
        }
        if let Some(positions) = &self.positions {
            let mut pos_row = vec![0f32; d];
            for (t, row) in out.chunks_exact_mut(d).enumerate() {
                positions.row(past + t, &mut pos_row);
                row.iter_mut().zip(&pos_row).for_each(|(x, p)| *x += p);
            }
        }
    }

    /// Every matrix that products read (the token embeddings only when
    /// they are also the output head).
    fn products(&self) -> impl Iterator<Item = &QMatrix> {
        self.layers
            .iter()
            .flat_map(Layer::matrices)
            .chain([self.output.as_ref().unwrap_or(&self.tok_embd)])
    }

    /// [`Weights::products`], to pack for the CPU.
    fn products_mut(&mut self) -> impl Iterator<Item = &mut QMatrix> {
        let head = self.output.as_mut().unwrap_or(&mut self.tok_embd);
        self.layers
            .iter_mut()
            .flat_map(Layer::matrices_mut)
            .chain(std::iter::once(head))
    }

    /// The products a GPU runs by their own matrices, to upload or
    /// unload: each layer's output projection (and latent attention's
    /// products of its latents, Mamba-1's `ssm_dt` and `ssm_x`), each
    /// expert's down
    /// projection (a dense layer's one, a mixture's routed and shared
    /// ones), a mixture's router, and the output head. Its Q, K and V, and
    /// each expert's gate and up, go up side by side (`DeviceWeights`).
    fn alone_on_the_gpu_mut(&mut self) -> impl Iterator<Item = &mut QMatrix> {
        let head = self.output.as_mut().unwrap_or(&mut self.tok_embd);
        self.layers
            .iter_mut()
            .flat_map(|l| {
                let wv_alone = l.wv_alone();
                let downs = (l.experts.iter_mut().chain(&mut l.shared)).map(|e| &mut e.down);
                // (Latent attention's products of its latents; Mamba-1's
                // `ssm_dt` and `ssm_x`.)
                let wv = wv_alone.then_some(&mut l.wv);
                let q_b = l
                    .mla
                    .as_mut()
                    .and_then(|m| m.q_b.as_mut().map(|(_, q_b)| q_b));
                let x_proj = l.ssm.as_mut().and_then(|s| s.x_proj.as_mut());
                std::iter::once(&mut l.wo)
                    .chain(downs)
                    .chain(&mut l.router)
                    .chain(wv)
                    .chain(q_b)
                    .chain(x_proj)
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
    /// product's matrix uploaded once, in its blocks or as f32 (only the
    /// embedding lookup stays on the CPU). `Some(Err)` (no usable GPU) or a
    /// failed upload loads for the CPU and says why in the placement.
    pub(crate) fn load_for(
        bytes: &[u8],
        gpu: Option<Result<Arc<Gpu>, NnError>>,
    ) -> Result<Self, NnError> {
        Ok(Self::place(Self::read(bytes)?, gpu))
    }

    /// `weights` set up as [`Llama::load_for`] sets them up.
    fn place(mut weights: Weights, gpu: Option<Result<Arc<Gpu>, NnError>>) -> Self {
        let placement = match gpu {
            None => Placement::Cpu,
            Some(Err(e)) => Placement::CpuFallback(e.message),
            Some(Ok(gpu)) => {
                // (Heads the attention kernel cannot take are refused
                // before any product goes up.)
                let products = crate::gpu::Attention::check(weights.hp.head_dim).and_then(|()| {
                    (weights.alone_on_the_gpu_mut()).try_for_each(|m| m.upload(&gpu))
                });
                let uploaded =
                    products.and_then(|()| device::DeviceWeights::upload(&gpu, &weights));
                match uploaded {
                    Ok(device) => {
                        weights.device = Some(device);
                        Placement::Gpu(gpu.adapter())
                    }
                    Err(e) => {
                        weights.alone_on_the_gpu_mut().for_each(QMatrix::unload);
                        Placement::CpuFallback(format!(
                            "setting the decoder up on the GPU failed: {}",
                            e.message
                        ))
                    }
                }
            }
        };
        Self {
            weights: Arc::new(weights),
            placement,
        }
    }
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

    fn split_call(
        &self,
        session: &dyn Session,
        inputs: &[(String, Tensor)],
        rows: usize,
    ) -> Option<(Named, Named)> {
        let any: &dyn Any = session;
        let dec = any.downcast_ref::<session::Decoder>()?;
        // Checked as the whole call would be (ids, room in the context).
        let tokens = dec.tokens(inputs).ok()?;
        if tokens.len() <= rows || rows == 0 {
            return None;
        }
        let name = &inputs[0].0;
        let part = |ids: &[u32]| {
            let ids: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
            vec![(name.clone(), Tensor::from_i64(vec![ids.len()], &ids))]
        };
        Some((part(&tokens[..rows]), part(&tokens[rows..])))
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
            let mut answer = |i: usize, l: &[f32]| results[i] = Some(Ok(session::logits(l)));
            if gpu {
                let all = session::forward_together_on_the_gpu(&mut decoders, &tokens);
                at.into_iter().zip(all).for_each(|(i, l)| answer(i, &l));
            } else {
                let all = session::forward_together(&mut decoders, &tokens);
                let each = all.chunks_exact(self.weights.hp.vocab);
                at.into_iter().zip(each).for_each(|(i, l)| answer(i, l));
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every call answered"))
            .collect()
    }

    fn weight_bytes(&self) -> u64 {
        let w = &self.weights;
        let mats = w.layers.iter().flat_map(Layer::matrices);
        let vectors: usize = w
            .layers
            .iter()
            .flat_map(|l| {
                [&l.bq, &l.bk, &l.bv, &l.bo, &l.q_norm, &l.k_norm]
                    .into_iter()
                    .chain([&l.post_attn_norm, &l.post_ffn_norm])
                    .chain([&l.attn_norm, &l.ffn_norm, &l.sinks, &l.router_bias])
                    .chain([&l.shared_gate, &l.expert_bias, &l.conv])
                    .flatten()
                    .chain(l.ssm.iter().flat_map(Scan::vectors))
                    .chain(l.experts.iter().flat_map(|e| e.biases.iter().flatten()))
                    .chain(l.experts.iter().flat_map(|e| &e.gate_bias))
            })
            .chain(&w.rope_freqs)
            .chain(&w.output_bias)
            .chain([&w.output_norm])
            .map(|v| v.len() * 4)
            .sum();
        (mats.map(QMatrix::bytes).sum::<usize>()
            + w.tok_embd.bytes()
            + w.output.as_ref().map_or(0, QMatrix::bytes)
            + w.positions.as_ref().map_or(0, QMatrix::bytes)
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
mod tests;
