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
mod rows;
mod session;
mod weights;

use std::any::Any;
use std::sync::Arc;

use crate::gpu::Gpu;
use crate::{Joined, Model, Named, NnError, Outputs, Placement, Session, Tensor};

pub use hparams::ARCHITECTURES;
pub(crate) use hparams::{HParams, LONGROPE_SHORT, check};
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
    /// mixture's, of which each token goes through `experts_used`.
    experts: Vec<Expert>,
    /// A mixture's router (`ffn_gate_inp`): a score per expert.
    router: Option<QMatrix>,
    /// ERNIE 4.5 MoE's router bias (`exp_probs_b`), added to the
    /// probabilities to pick a token's experts, not to weight them.
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
    /// another's).
    norm: Vec<f32>,
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

    fn matrices(&self) -> impl Iterator<Item = &QMatrix> {
        let ffn = (self.experts.iter().chain(&self.shared))
            .flat_map(|e| e.gate.iter().chain([&e.up, &e.down]));
        [&self.wq, &self.wk, &self.wv, &self.wo]
            .into_iter()
            .chain(ffn)
            .chain(&self.router)
    }

    fn matrices_mut(&mut self) -> impl Iterator<Item = &mut QMatrix> {
        let ffn = (self.experts.iter_mut().chain(&mut self.shared))
            .flat_map(|e| e.gate.iter_mut().chain([&mut e.up, &mut e.down]));
        [&mut self.wq, &mut self.wk, &mut self.wv, &mut self.wo]
            .into_iter()
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
    /// unload: each layer's output projection, each expert's down
    /// projection (a dense layer's one, a mixture's routed and shared
    /// ones), a mixture's router, and the output head. Its Q, K and V, and
    /// each expert's gate and up, go up side by side (`DeviceWeights`).
    fn alone_on_the_gpu_mut(&mut self) -> impl Iterator<Item = &mut QMatrix> {
        let head = self.output.as_mut().unwrap_or(&mut self.tok_embd);
        self.layers
            .iter_mut()
            .flat_map(|l| {
                let downs = (l.experts.iter_mut().chain(&mut l.shared)).map(|e| &mut e.down);
                std::iter::once(&mut l.wo).chain(downs).chain(&mut l.router)
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
                let products = weights
                    .alone_on_the_gpu_mut()
                    .try_for_each(|m| m.upload(&gpu));
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
        let (q_norm, k_norm) = hp.qk_norm_widths();
        let (e, s) = (hp.embd, hp.shared_ffn);
        // A norm's weight, and a LayerNorm's bias after it (StarCoder 2;
        // zeros for Command R's, which have none; ones and zeros for OLMo
        // 1's, which have neither).
        let norm = |name: &str| -> Result<Vec<f32>, NnError> {
            let mut weight = match hp.norm_weights {
                true => v(&format!("{name}.weight"), hp.embd)?,
                false => vec![1.0; hp.embd],
            };
            match (hp.layer_norm, hp.norm_bias) {
                (true, true) => weight.extend(v(&format!("{name}.bias"), hp.embd)?),
                (true, false) => weight.resize(2 * hp.embd, 0.0),
                (false, _) => {}
            }
            Ok(weight)
        };
        // Required but in OLMo 2 and EXAONE 4, which have none.
        let pre_norm = |name: &str| match hp.pre_norms {
            true => norm(name).map(Some),
            false => Ok(None),
        };
        let layers = (0..hp.layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                let bias = |s: &str, len| optional(&format!("blk.{i}.{s}.bias"), len);
                let conv = hp.short_conv.as_ref().filter(|_| hp.convolves(i));
                let scan = hp.ssm.as_ref().filter(|_| hp.scans(i));
                // Phi-3's fused products, cut into the separate ones (and
                // LFM2's `in_proj`, as its B, C and x; Mamba-2's `ssm_in`,
                // as its z, xBC and dt).
                let [wq, wk, wv] = if conv.is_some() {
                    let bcx = m(&format!("blk.{i}.shortconv.in_proj.weight"), 3 * e, e)?;
                    take(bcx.split_rows(&[e, e, e]))
                } else if let Some(s) = scan {
                    let zxdt = m(&n("ssm_in"), s.in_dim(), e)?;
                    take(zxdt.split_rows(&[s.inner, s.conv_dim(), s.heads]))
                } else if hp.fused_qkv {
                    let qkv = m(&n("attn_qkv"), qd + 2 * kvd, hp.embd)?;
                    take(qkv.split_rows(&[qd, kvd, kvd]))
                } else {
                    [
                        m(&n("attn_q"), qd, hp.embd)?,
                        m(&n("attn_k"), kvd, hp.embd)?,
                        m(&n("attn_v"), kvd, hp.embd)?,
                    ]
                };
                // A fused product's bias (Phi-2's), cut as the product is;
                // else each part's own.
                let [bq, bk, bv] = match bias("attn_qkv", qd + 2 * kvd)? {
                    Some(b) if hp.fused_qkv => {
                        let (q, kv) = b.split_at(qd);
                        let (k, v) = kv.split_at(kvd);
                        [q, k, v].map(|b| Some(b.to_vec()))
                    }
                    _ => [
                        bias("attn_q", qd)?,
                        bias("attn_k", kvd)?,
                        bias("attn_v", kvd)?,
                    ],
                };
                let moe = hp.is_moe(i);
                let (experts, router) = if moe {
                    let shape = |rows, cols| [hp.experts, rows, cols];
                    let all = |s: &str, [rows, cols]: [usize; 2]| {
                        QMatrix::experts_from_gguf(&info, bytes, &n(s), shape(rows, cols))
                    };
                    let gates = all("ffn_gate_exps", [hp.ffn, hp.embd])?;
                    let ups = all("ffn_up_exps", [hp.ffn, hp.embd])?;
                    let downs = all("ffn_down_exps", [hp.embd, hp.ffn])?;
                    // gpt-oss's biases: a row per expert.
                    let rows = |s: &str, len: usize| match hp.gpt_oss {
                        true => {
                            let name = format!("blk.{i}.{s}.bias");
                            weights::values(&info, bytes, &name, &[len, hp.experts]).map(Some)
                        }
                        false => Ok(None),
                    };
                    let (f, d) = (hp.ffn, hp.embd);
                    let [gate_b, up_b, down_b] = [
                        ("ffn_gate_exps", f),
                        ("ffn_up_exps", f),
                        ("ffn_down_exps", d),
                    ]
                    .map(|(s, len)| rows(s, len));
                    let (gate_b, up_b, down_b) = (gate_b?, up_b?, down_b?);
                    let row = |b: &Option<Vec<f32>>, x: usize, len: usize| {
                        b.as_ref().map(|b| b[x * len..][..len].to_vec())
                    };
                    let experts = (gates.into_iter().zip(ups).zip(downs))
                        .enumerate()
                        .map(|(x, ((gate, up), down))| Expert {
                            gate: Some(gate),
                            up,
                            down,
                            biases: row(&up_b, x, f)
                                .zip(row(&down_b, x, d))
                                .map(|(u, d)| [u, d]),
                            gate_bias: row(&gate_b, x, f),
                        })
                        .collect();
                    let router = m(&n("ffn_gate_inp"), hp.experts, hp.embd)?;
                    (experts, Some(router))
                } else {
                    let f = hp.dense_ffn;
                    let (gate, up) = if hp.fused_gate_up {
                        let gate_up = m(&n("ffn_up"), 2 * f, hp.embd)?;
                        let [gate, up] = take(gate_up.split_rows(&[f, f]));
                        (Some(gate), up)
                    } else if !hp.gated {
                        (None, m(&n("ffn_up"), f, hp.embd)?)
                    } else {
                        (
                            Some(m(&n("ffn_gate"), f, hp.embd)?),
                            m(&n("ffn_up"), f, hp.embd)?,
                        )
                    };
                    let down = m(&n("ffn_down"), hp.embd, f)?;
                    // (Required where `ffn_biases` and refused where neither
                    // that nor Nemotron's, by the check, as llama.cpp does;
                    // Nemotron's may have one alone, zeros for the other.)
                    let biases = match (bias("ffn_up", f)?, bias("ffn_down", hp.embd)?) {
                        (None, None) => None,
                        (up, down) => Some([
                            up.unwrap_or_else(|| vec![0.0; f]),
                            down.unwrap_or_else(|| vec![0.0; hp.embd]),
                        ]),
                    };
                    let dense = Expert {
                        gate,
                        up,
                        down,
                        biases,
                        gate_bias: None,
                    };
                    (vec![dense], None)
                };
                // Falcon 40B's attention reads `attn_norm_2`, and its
                // feed-forward `attn_norm`, in parallel.
                let (attn_norm, ffn_norm) = match info.tensor(&n("attn_norm_2")) {
                    Some(_) => (
                        pre_norm(&format!("blk.{i}.attn_norm_2"))?,
                        pre_norm(&format!("blk.{i}.attn_norm"))?,
                    ),
                    None => (
                        pre_norm(&format!("blk.{i}.attn_norm"))?,
                        match info.tensor(&n("ffn_norm")) {
                            // (gpt-oss's, under another name.)
                            None if hp.gpt_oss => Some(v(&n("post_attention_norm"), hp.embd)?),
                            // (Phi-2's feed-forward reads the attention's norm.)
                            None if hp.parallel => None,
                            _ => pre_norm(&format!("blk.{i}.ffn_norm"))?,
                        },
                    ),
                };
                Ok(Layer {
                    attn_norm,
                    wq,
                    wk,
                    wv,
                    wo: match (conv, scan) {
                        (Some(_), _) => m(&format!("blk.{i}.shortconv.out_proj.weight"), e, e)?,
                        (_, Some(s)) => m(&n("ssm_out"), e, s.inner)?,
                        _ => m(&n("attn_output"), hp.embd, qd)?,
                    },
                    ssm: match scan {
                        Some(s) => {
                            let (cd, h) = (s.conv_dim(), s.heads);
                            let (dims, groups) = ([s.taps, cd], [s.inner / s.groups, s.groups]);
                            let name = n("ssm_conv1d");
                            let at = |t: &str| format!("blk.{i}.{t}");
                            Some(Scan {
                                conv: weights::values(&info, bytes, &name, &dims)?,
                                conv_bias: v(&at("ssm_conv1d.bias"), cd)?,
                                dt_bias: v(&at("ssm_dt.bias"), h)?,
                                a: weights::values(&info, bytes, &at("ssm_a"), &[1, h])?,
                                d: weights::values(&info, bytes, &at("ssm_d"), &[1, h])?,
                                norm: weights::values(&info, bytes, &n("ssm_norm"), &groups)?,
                            })
                        }
                        None => None,
                    },
                    conv: match conv {
                        Some(c) => {
                            let name = format!("blk.{i}.shortconv.conv.weight");
                            Some(weights::values(&info, bytes, &name, &[c.taps, e])?)
                        }
                        None => None,
                    },
                    bq,
                    bk,
                    bv,
                    bo: bias("attn_output", hp.embd)?,
                    q_norm: optional(&n("attn_q_norm"), q_norm)?,
                    k_norm: optional(&n("attn_k_norm"), k_norm)?,
                    ffn_norm,
                    post_attn_norm: match hp.gpt_oss {
                        true => None,
                        false => optional(&n("post_attention_norm"), hp.embd)?,
                    },
                    post_ffn_norm: optional(&n("post_ffw_norm"), hp.embd)?,
                    shared_gate: match hp.shared_gate && moe {
                        true => Some(v(&n("ffn_gate_inp_shexp"), e)?),
                        false => None,
                    },
                    expert_bias: match moe {
                        true => optional(&format!("blk.{i}.exp_probs_b.bias"), hp.experts)?,
                        false => None,
                    },
                    shared: match moe && s > 0 {
                        true => Some(Expert {
                            gate: Some(m(&n("ffn_gate_shexp"), s, e)?),
                            up: m(&n("ffn_up_shexp"), s, e)?,
                            down: m(&n("ffn_down_shexp"), e, s)?,
                            biases: None,
                            gate_bias: None,
                        }),
                        false => None,
                    },
                    sinks: match hp.gpt_oss {
                        true => Some(v(&n("attn_sinks"), hp.heads)?),
                        false => None,
                    },
                    router_bias: match hp.gpt_oss && moe {
                        true => Some(v(&format!("blk.{i}.ffn_gate_inp.bias"), hp.experts)?),
                        false => None,
                    },
                    experts,
                    router,
                })
            })
            .collect::<Result<Vec<_>, NnError>>()?;
        let output = match info.tensor("output.weight") {
            Some(_) => Some(m("output.weight", hp.vocab, hp.embd)?),
            None => None,
        };
        let mut weights = Weights {
            tok_embd: m("token_embd.weight", hp.vocab, hp.embd)?,
            output_norm: norm(hp.output_norm_name())?,
            output_bias: match hp.output_bias {
                true => Some(v("output.bias", hp.vocab)?),
                false => None,
            },
            positions: match hp.positions {
                true => Some(m("position_embd.weight", hp.context, hp.embd)?),
                false => None,
            },
            // Llama 3's frequencies; else a LongRoPE file's short factors
            // (it runs its original window: `HParams::context`).
            rope_freqs: match optional("rope_freqs.weight", hp.rope_dims / 2)? {
                Some(freqs) => Some(freqs),
                None => optional(LONGROPE_SHORT, hp.rope_dims / 2)?,
            },
            layers,
            output,
            hp,
            device: None,
        };
        weights.products_mut().for_each(QMatrix::pack);
        Ok(weights)
    }
}

/// The `N` matrices of a split, as an array.
fn take<const N: usize>(parts: Vec<QMatrix>) -> [QMatrix; N] {
    parts.try_into().expect("split into N")
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
