//! The check that a file is a decoder weft-nn runs, from its metadata and
//! tensor list alone (what an upload checks, without reading weights).

use super::super::weights::same_shape;
use super::{ARCHITECTURES, HParams, LONGROPE_LONG, LONGROPE_SHORT};
use crate::{GgufInfo, NnError, NnErrorKind};

/// Checks that `info` is a decoder weft-nn runs, without reading weights
/// (what an upload checks): an architecture it knows, its hyperparameters,
/// every tensor it reads present in its shape, and no tensor it would not
/// read — an extra of another architecture, skipped, would give wrong
/// logits.
pub(crate) fn check(info: &GgufInfo) -> Result<HParams, NnError> {
    let hp = HParams::read(info)?;
    let (e, qd, kvd) = (hp.embd, hp.q_dim(), hp.kv_dim());
    let arch = info.architecture.as_deref().unwrap_or_default();
    // (name, ggml dims, required)
    let mut want: Vec<(String, Vec<usize>, bool)> =
        vec![("token_embd.weight".into(), vec![e, hp.vocab], true)];
    // (OLMo 1's norms have no weights: a file with them is another model.)
    if hp.norm_weights {
        want.push((format!("{}.weight", hp.output_norm_name()), vec![e], true));
    }
    // Tied to the embeddings where absent, but in Qwen2-MoE, InternLM2,
    // StableLM, Phi-2, GPT-NeoX, OLMoE, DeepSeek-MoE, Nemotron and
    // gpt-oss, whose files llama.cpp refuses without it; and always in
    // Command R's, whose files with one it refuses (it reads none).
    if !matches!(arch, "command-r" | "cohere2") {
        let required = matches!(
            arch,
            "qwen2moe"
                | "internlm2"
                | "stablelm"
                | "phi2"
                | "gptneox"
                | "olmoe"
                | "deepseek"
                | "nemotron"
                | "gpt-oss"
        );
        want.push(("output.weight".into(), vec![e, hp.vocab], required));
    }
    // A rotary embedding's factors (none where nothing rotates: GPT-2's,
    // StarCoder's, whose files with them are refused).
    if !hp.positions {
        want.extend([
            ("rope_freqs.weight".into(), vec![hp.rope_dims / 2], false),
            (LONGROPE_SHORT.into(), vec![hp.rope_dims / 2], false),
            // Read for no window weft-nn runs, but part of the model.
            (LONGROPE_LONG.into(), vec![hp.rope_dims / 2], false),
        ]);
    }
    // LayerNorms have biases, and the feed-forward and output products of
    // the families with `ffn_biases` too (Phi-2's logits as well), each
    // required as llama.cpp requires them (a file of another architecture
    // with them is refused, below).
    let biases = hp.layer_norm && hp.norm_bias;
    if biases {
        want.push(("output_norm.bias".into(), vec![e], true));
    }
    if hp.output_bias {
        want.push(("output.bias".into(), vec![hp.vocab], true));
    }
    if hp.positions {
        want.push(("position_embd.weight".into(), vec![e, hp.context], true));
    }
    // Phi-3, GPT-2, StarCoder, GPT-NeoX and (old files) Phi-2 fuse Q, K and
    // V, and Phi-3 and GLM-4 gate and up: the unfused names are then
    // unknown, and the other way round.
    let products: Vec<(&str, Vec<usize>)> = match hp.fused_qkv {
        true => vec![("attn_qkv", vec![e, qd + 2 * kvd])],
        false => vec![
            ("attn_q", vec![e, qd]),
            ("attn_k", vec![e, kvd]),
            ("attn_v", vec![e, kvd]),
        ],
    };
    // A dense feed-forward, or a router and its experts side by side
    // (in a mixture's layers: ERNIE 4.5's first ones are dense).
    let (f, x, df) = (hp.ffn, hp.experts, hp.dense_ffn);
    let dense: Vec<(&str, Vec<usize>, bool)> = match hp.fused_gate_up {
        true => vec![
            ("ffn_up", vec![e, 2 * df], true),
            ("ffn_down", vec![df, e], true),
        ],
        false if !hp.gated => vec![
            ("ffn_up", vec![e, df], true),
            ("ffn_down", vec![df, e], true),
        ],
        false => vec![
            ("ffn_gate", vec![e, df], true),
            ("ffn_up", vec![e, df], true),
            ("ffn_down", vec![df, e], true),
        ],
    };
    // (Nemotron 3 Nano's experts, and its shared one, have no gate.)
    let mut mixture = vec![
        ("ffn_gate_inp", vec![e, x], true),
        ("ffn_up_exps", vec![e, f, x], true),
        ("ffn_down_exps", vec![f, e, x], true),
    ];
    if hp.gated {
        mixture.push(("ffn_gate_exps", vec![e, f, x], true));
    }
    if hp.shared_gate {
        mixture.push(("ffn_gate_inp_shexp", vec![e], true));
    }
    if hp.shared_ffn > 0 {
        let s = hp.shared_ffn;
        mixture.extend([
            ("ffn_up_shexp", vec![e, s], true),
            ("ffn_down_shexp", vec![s, e], true),
        ]);
        if hp.gated {
            mixture.push(("ffn_gate_shexp", vec![e, s], true));
        }
    }
    // ERNIE 4.5's, LFM2-MoE's, Nemotron 3 Nano's, GLM-4.5's and DeepSeek-V2's: a bias
    // added to the router's probabilities to pick the experts (not to
    // weight them), optional (ERNIE's, DeepSeek-V2's) or required as in
    // llama.cpp.
    if hp.expert_bias {
        mixture.push((
            "exp_probs_b.bias",
            vec![x],
            !matches!(arch, "ernie4_5-moe" | "deepseek2"),
        ));
    }
    // gpt-oss's router's and experts' biases, required as llama.cpp
    // requires them.
    if hp.gpt_oss {
        mixture.extend([
            ("ffn_gate_inp.bias", vec![x], true),
            ("ffn_gate_exps.bias", vec![f, x], true),
            ("ffn_up_exps.bias", vec![f, x], true),
            ("ffn_down_exps.bias", vec![e, x], true),
        ]);
    }
    // Qwen3's, Gemma 3's and EXAONE 4's per-head Q/K norms, and OLMo 2's
    // whole-row ones (optional elsewhere), which llama.cpp requires of
    // them too.
    let qk_norms = matches!(
        arch,
        "qwen3"
            | "qwen3moe"
            | "qwen3vl"
            | "qwen3vlmoe"
            | "gemma3"
            | "olmo2"
            | "exaone4"
            | "olmoe"
            | "apertus"
            | "hunyuan-dense"
    ) || super::conv::hybrid(arch);
    let (q_norm, k_norm) = hp.qk_norm_widths();
    let gptneox = arch == "gptneox";
    let no_output_bias = matches!(
        arch,
        "ernie4_5"
            | "ernie4_5-moe"
            | "glm4"
            | "glm4moe"
            | "stablelm"
            | "olmoe"
            | "deepseek"
            | "command-r"
            | "cohere2"
            | "falcon"
    );
    for i in 0..hp.layers {
        let (mb, fb) = hp.blocks_of(i);
        let ffn = match hp.is_moe(i) {
            true => &mixture,
            false => &dense,
        };
        let layer = (products.iter())
            .map(|(name, dims)| (*name, dims.clone(), true))
            .chain(ffn.iter().cloned());
        for (name, dims, required) in layer.chain([
            ("attn_norm", vec![e], true),
            ("attn_output", vec![qd, e], true),
            ("attn_q.bias", vec![qd], false),
            ("attn_k.bias", vec![kvd], false),
            ("attn_v.bias", vec![kvd], false),
            ("attn_output.bias", vec![e], false),
            ("attn_q_norm", vec![q_norm], qk_norms),
            ("attn_k_norm", vec![k_norm], qk_norms),
            ("ffn_norm", vec![e], true),
        ]) {
            // (LFM2's convolution layers and Granite 4.0-H's Mamba-2 ones:
            // no attention, their products below.)
            // (DeepSeek-V2's latent attention: its products below.)
            let latent = hp.mla.is_some();
            if (!hp.attends(i) || latent) && name.starts_with("attn_") && name != "attn_norm" {
                continue;
            }
            // (Nemotron-H's feed-forwards are blocks of their own, under
            // their own `attn_norm`; a layer may have none.)
            let feeds = name.starts_with("ffn_") || name.starts_with("exp_probs_b");
            let (b, name) = match (feeds, fb) {
                (false, _) => (mb, name),
                (true, None) => continue,
                (true, Some(f)) if hp.ffn_blocks() && name == "ffn_norm" => (f, "attn_norm"),
                (true, Some(f)) => (f, name),
            };
            // Phi-2's and StableLM 2 12B's feed-forward reads the
            // attention's norm: they have no other (GPT-NeoX has).
            if hp.parallel && !gptneox && name == "ffn_norm" {
                continue;
            }
            // gpt-oss's is named `post_attention_norm` (below).
            if hp.ffn_norm_post_attention && name == "ffn_norm" {
                continue;
            }
            if biases && matches!(name, "attn_norm" | "ffn_norm") {
                want.push((format!("blk.{b}.{name}.bias"), vec![e], true));
            }
            // (GLM-4.5's Q, K and V biases too, as llama.cpp requires them.)
            let required = required
                || (hp.ffn_biases && name == "attn_output.bias")
                || (hp.gpt_oss && name.ends_with(".bias"))
                || (arch == "glm4moe"
                    && name.starts_with("attn_")
                    && name.ends_with(".bias")
                    && name != "attn_output.bias");
            // OLMo 2 and EXAONE 4 have no pre-norms, OLMo 1 no norm
            // weights: a file with them is another model.
            if (!hp.pre_norms || !hp.norm_weights) && matches!(name, "attn_norm" | "ffn_norm") {
                continue;
            }
            // llama.cpp loads an ERNIE 4.5 output bias but never adds it
            // (HF adds it), and GLM-4 and StableLM have none: a file with
            // one is refused.
            if no_output_bias && name == "attn_output.bias" {
                continue;
            }
            // Fused, the product's bias (below): a part's would be dropped.
            if hp.fused_qkv && matches!(name, "attn_q.bias" | "attn_k.bias" | "attn_v.bias") {
                continue;
            }
            // (Per-head norms are RMSNorms: a LayerNorm family's, StableLM
            // 2 12B's, would run wrong.)
            if hp.layer_norm && matches!(name, "attn_q_norm" | "attn_k_norm") {
                continue;
            }
            let name = match name.ends_with(".bias") {
                true => format!("blk.{b}.{name}"),
                false => format!("blk.{b}.{name}.weight"),
            };
            want.push((name, dims, required));
        }
        if let Some(c) = hp.short_conv.as_ref().filter(|_| hp.convolves(i)) {
            want.extend([
                (
                    format!("blk.{i}.shortconv.in_proj.weight"),
                    vec![e, 3 * e],
                    true,
                ),
                (
                    format!("blk.{i}.shortconv.conv.weight"),
                    vec![c.taps, e],
                    true,
                ),
                (
                    format!("blk.{i}.shortconv.out_proj.weight"),
                    vec![e, e],
                    true,
                ),
            ]);
        }
        // (Granite 4.0-H's and Nemotron-H's, each required as llama.cpp
        // requires it: the convolution's bias but Nemotron-H's; the
        // convolution's taps of a channel side by side, the norm's weights
        // a row per group.)
        // (Mamba-1's: `ssm_x` and `ssm_dt` for `dt`, `B` and `C`, a decay
        // per channel and state, no norm.)
        if let Some((m, s)) = hp.selective().filter(|_| hp.scans(i)) {
            let (inner, n) = (m.inner, m.state);
            want.extend(
                [
                    ("ssm_in.weight", vec![e, m.in_dim()]),
                    ("ssm_conv1d.weight", vec![m.taps, inner]),
                    ("ssm_conv1d.bias", vec![inner]),
                    ("ssm_x.weight", vec![inner, s.dt_rank + 2 * n]),
                    ("ssm_dt.weight", vec![s.dt_rank, inner]),
                    ("ssm_dt.bias", vec![inner]),
                    ("ssm_a", vec![n, inner]),
                    ("ssm_d", vec![inner]),
                    ("ssm_out.weight", vec![inner, e]),
                ]
                .map(|(name, dims)| (format!("blk.{mb}.{name}"), dims, true)),
            );
        } else if let Some(m) = hp.ssm.as_ref().filter(|_| hp.scans(i)) {
            let (cd, h) = (m.conv_dim(), m.heads);
            want.extend(
                [
                    ("ssm_in.weight", vec![e, m.in_dim()], true),
                    ("ssm_conv1d.weight", vec![m.taps, cd], true),
                    ("ssm_conv1d.bias", vec![cd], !super::ssm::nemotron_h(arch)),
                    ("ssm_dt.bias", vec![h], true),
                    ("ssm_a", vec![1, h], true),
                    ("ssm_d", vec![1, h], true),
                    ("ssm_norm.weight", vec![m.inner / m.groups, m.groups], true),
                    ("ssm_out.weight", vec![m.inner, e], true),
                ]
                .map(|(name, dims, required)| (format!("blk.{mb}.{name}"), dims, required)),
            );
        }
        // (DeepSeek-V2's latent attention, each required as llama.cpp
        // requires it: the queries' latent's but where one product gives
        // them, the latent's product whole or split per head.)
        if let Some(a) = &hp.mla {
            let (h, k, r) = (hp.heads, a.key(), a.kv_rank);
            let mut mla = vec![
                ("attn_kv_a_mqa", vec![e, r + a.rope]),
                ("attn_kv_a_norm", vec![r]),
                ("attn_output", vec![h * a.value, e]),
            ];
            match a.q_rank {
                0 => mla.push(("attn_q", vec![e, h * k])),
                q => mla.extend([
                    ("attn_q_a", vec![e, q]),
                    ("attn_q_a_norm", vec![q]),
                    ("attn_q_b", vec![q, h * k]),
                ]),
            }
            match a.split {
                true => mla.extend([
                    ("attn_k_b", vec![a.nope, r, h]),
                    ("attn_v_b", vec![r, a.value, h]),
                ]),
                false => mla.push(("attn_kv_b", vec![r, a.kv_b_rows(h)])),
            }
            want.extend(
                (mla.into_iter())
                    .map(|(name, dims)| (format!("blk.{i}.{name}.weight"), dims, true)),
            );
        }
        // (A fused Q/K/V's bias, optional as its parts' are, but GPT-2's,
        // StarCoder's and GPT-NeoX's, which llama.cpp requires.)
        if hp.fused_qkv {
            let name = format!("blk.{i}.attn_qkv.bias");
            want.push((name, vec![qd + 2 * kvd], hp.positions || gptneox));
        }
        // (Nemotron's and Nemotron-H's, each optional as llama.cpp reads
        // them.)
        let nemotron = arch == "nemotron" || super::ssm::nemotron_h(arch);
        if let (true, false, Some(f)) = (hp.ffn_biases || nemotron, hp.is_moe(i), fb) {
            want.push((format!("blk.{f}.ffn_up.bias"), vec![df], !nemotron));
            want.push((format!("blk.{f}.ffn_down.bias"), vec![e], !nemotron));
        }
        // gpt-oss's: a logit per head in its softmax, and its feed-forward's
        // norm.
        if hp.gpt_oss {
            want.push((format!("blk.{i}.attn_sinks.weight"), vec![hp.heads], true));
        }
        // (And GLM-4.5's.)
        if hp.ffn_norm_post_attention {
            want.push((format!("blk.{i}.post_attention_norm.weight"), vec![e], true));
        }
        // Falcon 40B's: the attention's own norm (its `attn_norm` is then
        // the feed-forward's).
        if arch == "falcon" {
            let weight = format!("blk.{i}.attn_norm_2.weight");
            if info.tensor(&weight).is_some() {
                want.push((weight, vec![e], true));
                want.push((format!("blk.{i}.attn_norm_2.bias"), vec![e], true));
            }
        }
        // Gemma 2 and 3's, OLMo 2's, EXAONE 4's and GLM-4's; another's
        // file with them is refused (below).
        if hp.post_norms {
            for name in ["post_attention_norm", "post_ffw_norm"] {
                want.push((format!("blk.{i}.{name}.weight"), vec![e], true));
            }
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
            Some(t) if !same_shape(&t.dims, dims) => {
                return Err(NnError::new(
                    NnErrorKind::InvalidEncoding,
                    format!("tensor `{name}` has shape {:?}, expected {dims:?}", t.dims),
                ));
            }
            _ => {}
        }
    }
    let known: std::collections::HashSet<&str> = want.iter().map(|(n, ..)| n.as_str()).collect();
    // (GLM-4.5's multi-token prediction blocks: part of the model, not run.)
    let mtp = |name: &str| {
        (hp.layers..hp.layers + hp.mtp_blocks).any(|b| name.starts_with(&format!("blk.{b}.")))
    };
    if let Some(t) = info
        .tensors
        .iter()
        .find(|t| !known.contains(t.name.as_str()) && !mtp(&t.name))
    {
        return Err(NnError::new(
            NnErrorKind::UnsupportedOperation,
            format!(
                "tensor `{}` is not one a `{}` decoder has in weft-nn, which would run the model without it and give wrong logits; weft-nn reads Llama-family decoders ({})",
                t.name,
                arch,
                ARCHITECTURES.join(", ")
            ),
        ));
    }
    Ok(hp)
}
