//! Reading a decoder's weights from its GGUF bytes ([`Llama::read`]).

use super::hparams::{HParams, LONGROPE_SHORT, Mla};
use super::weights::{self, QMatrix};
use super::{Expert, Latent, Layer, Llama, Scan, Weights, check};
use crate::{GgmlType, GgufInfo, NnError};

impl Llama {
    /// The weights of the GGUF `bytes`, checked ([`check`]) and read for
    /// the CPU (quantised products packed).
    pub(super) fn read(bytes: &[u8]) -> Result<Weights, NnError> {
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
            .map(|l| {
                // The file's blocks of the layer's mixer (`i`) and of its
                // feed-forward (`f`: the same block but in Nemotron-H's
                // files, whose layers may have none).
                let (i, fb) = hp.blocks_of(l);
                let f = fb.unwrap_or(i);
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                let bias = |s: &str, len| optional(&format!("blk.{i}.{s}.bias"), len);
                let nf = |s: &str| format!("blk.{f}.{s}.weight");
                let bias_f = |s: &str, len| optional(&format!("blk.{f}.{s}.bias"), len);
                let conv = hp.short_conv.as_ref().filter(|_| hp.convolves(l));
                let scan = hp.ssm.as_ref().filter(|_| hp.scans(l));
                // Phi-3's fused products, cut into the separate ones (and
                // LFM2's `in_proj`, as its B, C and x; Mamba-2's `ssm_in`,
                // as its z, xBC and dt).
                let [wq, wk, wv] = if let Some(a) = &hp.mla {
                    latent_products(&info, bytes, &hp, a, i)?
                } else if conv.is_some() {
                    let bcx = m(&format!("blk.{i}.shortconv.in_proj.weight"), 3 * e, e)?;
                    take(bcx.split_rows(&[e, e, e]))
                } else if let Some((s, sel)) = hp.selective().filter(|_| hp.scans(l)) {
                    // (Mamba-1's `ssm_in` as its x and z, and `ssm_dt`,
                    // which the convolution's `ssm_x` product feeds.)
                    let xz = m(&n("ssm_in"), s.in_dim(), e)?;
                    let [x, z] = xz
                        .split_rows(&[s.inner, s.inner])
                        .try_into()
                        .expect("two parts");
                    [x, z, m(&n("ssm_dt"), s.inner, sel.dt_rank)?]
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
                let moe = hp.is_moe(l) && fb.is_some();
                let (experts, router) = if fb.is_none() {
                    (Vec::new(), None)
                } else if moe {
                    let shape = |rows, cols| [hp.experts, rows, cols];
                    let all = |s: &str, [rows, cols]: [usize; 2]| {
                        QMatrix::experts_from_gguf(&info, bytes, &nf(s), shape(rows, cols))
                    };
                    // (None for Nemotron 3 Nano's, which have no gate.)
                    let gates: Vec<Option<QMatrix>> = match hp.gated {
                        true => all("ffn_gate_exps", [hp.ffn, hp.embd])?
                            .into_iter()
                            .map(Some)
                            .collect(),
                        false => (0..hp.experts).map(|_| None).collect(),
                    };
                    let ups = all("ffn_up_exps", [hp.ffn, hp.embd])?;
                    let downs = all("ffn_down_exps", [hp.embd, hp.ffn])?;
                    // gpt-oss's biases: a row per expert.
                    let rows = |s: &str, len: usize| match hp.gpt_oss {
                        true => {
                            let name = format!("blk.{f}.{s}.bias");
                            weights::values(&info, bytes, &name, &[len, hp.experts]).map(Some)
                        }
                        false => Ok(None),
                    };
                    let (w, d) = (hp.ffn, hp.embd);
                    let [gate_b, up_b, down_b] = [
                        ("ffn_gate_exps", w),
                        ("ffn_up_exps", w),
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
                            gate,
                            up,
                            down,
                            biases: row(&up_b, x, w)
                                .zip(row(&down_b, x, d))
                                .map(|(u, d)| [u, d]),
                            gate_bias: row(&gate_b, x, w),
                        })
                        .collect();
                    let router = m(&nf("ffn_gate_inp"), hp.experts, hp.embd)?;
                    (experts, Some(router))
                } else {
                    let w = hp.dense_ffn;
                    let (gate, up) = if hp.fused_gate_up {
                        let gate_up = m(&nf("ffn_up"), 2 * w, hp.embd)?;
                        let [gate, up] = take(gate_up.split_rows(&[w, w]));
                        (Some(gate), up)
                    } else if !hp.gated {
                        (None, m(&nf("ffn_up"), w, hp.embd)?)
                    } else {
                        (
                            Some(m(&nf("ffn_gate"), w, hp.embd)?),
                            m(&nf("ffn_up"), w, hp.embd)?,
                        )
                    };
                    let down = m(&nf("ffn_down"), hp.embd, w)?;
                    // (Required where `ffn_biases` and refused where neither
                    // that nor Nemotron's, by the check, as llama.cpp does;
                    // Nemotron's may have one alone, zeros for the other.)
                    let biases = match (bias_f("ffn_up", w)?, bias_f("ffn_down", hp.embd)?) {
                        (None, None) => None,
                        (up, down) => Some([
                            up.unwrap_or_else(|| vec![0.0; w]),
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
                    // (Nemotron-H's feed-forward blocks' own norms.)
                    _ if hp.ffn_blocks() => (
                        pre_norm(&format!("blk.{i}.attn_norm"))?,
                        fb.map(|f| pre_norm(&format!("blk.{f}.attn_norm")))
                            .transpose()?
                            .flatten(),
                    ),
                    Some(_) => (
                        pre_norm(&format!("blk.{i}.attn_norm_2"))?,
                        pre_norm(&format!("blk.{i}.attn_norm"))?,
                    ),
                    None => (
                        pre_norm(&format!("blk.{i}.attn_norm"))?,
                        match info.tensor(&nf("ffn_norm")) {
                            // (gpt-oss's, under another name.)
                            None if hp.ffn_norm_post_attention => {
                                Some(v(&nf("post_attention_norm"), hp.embd)?)
                            }
                            // (Phi-2's feed-forward reads the attention's norm.)
                            None if hp.parallel => None,
                            _ => pre_norm(&format!("blk.{f}.ffn_norm"))?,
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
                        _ => m(&n("attn_output"), hp.embd, hp.o_dim())?,
                    },
                    mla: match &hp.mla {
                        Some(a) => Some(Latent {
                            q_b: match a.q_rank {
                                0 => None,
                                r => Some((
                                    v(&n("attn_q_a_norm"), r)?,
                                    m(&n("attn_q_b"), hp.heads * a.key(), r)?,
                                )),
                            },
                            kv_norm: v(&n("attn_kv_a_norm"), a.kv_rank)?,
                        }),
                        None => None,
                    },
                    ssm: match scan {
                        Some(s) => {
                            let (cd, h) = (s.conv_dim(), s.heads);
                            let (dims, groups) = ([s.taps, cd], [s.inner / s.groups, s.groups]);
                            let name = n("ssm_conv1d");
                            let at = |t: &str| format!("blk.{i}.{t}");
                            let values = |t: &str, dims: &[usize]| {
                                weights::values(&info, bytes, &at(t), dims)
                            };
                            // (Optional in Nemotron-H's: zeros.)
                            let conv_bias = optional(&at("ssm_conv1d.bias"), cd)?;
                            // (Mamba-1's: `A` per channel and state, `D` per
                            // channel, no norm; `ssm_x` beside.)
                            let (a, d, norm, x_proj) = match s.selective {
                                Some(sel) => (
                                    values("ssm_a", &[s.state, h])?,
                                    values("ssm_d", &[h])?,
                                    Vec::new(),
                                    Some(m(&n("ssm_x"), sel.dt_rank + 2 * s.state, s.inner)?),
                                ),
                                None => (
                                    values("ssm_a", &[1, h])?,
                                    values("ssm_d", &[1, h])?,
                                    weights::values(&info, bytes, &n("ssm_norm"), &groups)?,
                                    None,
                                ),
                            };
                            Some(Scan {
                                conv: weights::values(&info, bytes, &name, &dims)?,
                                conv_bias: conv_bias.unwrap_or_else(|| vec![0.0; cd]),
                                dt_bias: v(&at("ssm_dt.bias"), h)?,
                                a,
                                d,
                                norm,
                                x_proj,
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
                    post_attn_norm: match hp.ffn_norm_post_attention {
                        true => None,
                        false => optional(&n("post_attention_norm"), hp.embd)?,
                    },
                    post_ffn_norm: optional(&n("post_ffw_norm"), hp.embd)?,
                    shared_gate: match hp.shared_gate && moe {
                        true => Some(v(&nf("ffn_gate_inp_shexp"), e)?),
                        false => None,
                    },
                    expert_bias: match moe {
                        true => optional(&format!("blk.{f}.exp_probs_b.bias"), hp.experts)?,
                        false => None,
                    },
                    shared: match moe && s > 0 {
                        true => Some(Expert {
                            gate: match hp.gated {
                                true => Some(m(&nf("ffn_gate_shexp"), s, e)?),
                                false => None,
                            },
                            up: m(&nf("ffn_up_shexp"), s, e)?,
                            down: m(&nf("ffn_down_shexp"), e, s)?,
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
                        true => Some(v(&format!("blk.{f}.ffn_gate_inp.bias"), hp.experts)?),
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

/// Layer `i`'s latent attention products ([`Mla`]), as the forward pass
/// takes them for `wq`, `wk` and `wv`: the queries' (`attn_q`, or their
/// latent's `attn_q_a`); the keys' and values' latent's with the rotated
/// key part (`attn_kv_a_mqa`); and the heads' unrotated keys and values
/// from the normed latent (`attn_kv_b`, or as a split file gives it, per
/// head `attn_k_b` transposed and `attn_v_b`, rebuilt as one).
fn latent_products(
    info: &GgufInfo,
    bytes: &[u8],
    hp: &HParams,
    a: &Mla,
    i: usize,
) -> Result<[QMatrix; 3], NnError> {
    let n = |s: &str| format!("blk.{i}.{s}.weight");
    let m = |name: &str, rows, cols| QMatrix::from_gguf(info, bytes, name, rows, cols);
    let (e, h, r) = (hp.embd, hp.heads, a.kv_rank);
    let q = match a.q_rank {
        0 => m(&n("attn_q"), h * a.key(), e)?,
        q => m(&n("attn_q_a"), q, e)?,
    };
    let kv_a = m(&n("attn_kv_a_mqa"), r + a.rope, e)?;
    let rows = a.kv_b_rows(h);
    if !a.split {
        return Ok([q, kv_a, m(&n("attn_kv_b"), rows, r)?]);
    }
    let (kb, vb) = (n("attn_k_b"), n("attn_v_b"));
    // (ggml's `[nope, rank, heads]`: a head's rows of the latent's width
    // are its keys' columns.)
    let k = weights::values(info, bytes, &kb, &[a.nope, r, h])?;
    let v = weights::values(info, bytes, &vb, &[r, a.value, h])?;
    let mut kv_b = Vec::with_capacity(rows * r);
    for (k, v) in k.chunks_exact(r * a.nope).zip(v.chunks_exact(a.value * r)) {
        for j in 0..a.nope {
            kv_b.extend(k.iter().skip(j).step_by(a.nope));
        }
        kv_b.extend_from_slice(v);
    }
    // (Kept in their type where they share a float one, else Q8_0.)
    let types = [&kb, &vb].map(|t| info.tensor(t).map(|t| t.ty));
    let like = match types {
        [Some(k), Some(v)] if k == v => k,
        _ => GgmlType::Q8_0,
    };
    Ok([q, kv_a, QMatrix::from_f32(&kb, &kv_b, (rows, r), like)?])
}

/// The `N` matrices of a split, as an array.
fn take<const N: usize>(parts: Vec<QMatrix>) -> [QMatrix; N] {
    parts.try_into().expect("split into N")
}
