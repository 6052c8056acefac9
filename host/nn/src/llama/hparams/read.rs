//! Reading a decoder's shape ([`HParams`]) from its GGUF metadata.

use super::families::{Gemma, Yarn, dense_layers, experts, shared_width};
use super::{ARCHITECTURES, HParams, LONGROPE_SHORT, conv, families, mla, ssm, xielu};
use crate::gpu::FfnAct;
use crate::{GgufInfo, NnError, NnErrorKind};

/// `block_count`, refused past the file's tensors (a layer has tensors:
/// a count past them would only allocate).
fn bounded_blocks(
    arch: &str,
    info: &GgufInfo,
    int: &dyn Fn(&str) -> Result<usize, NnError>,
) -> Result<usize, NnError> {
    match int("block_count")? {
        n if n > info.tensors.len() => Err(NnError::new(
            NnErrorKind::InvalidEncoding,
            format!(
                "`{arch}.block_count` gives {n} layers, but the file has {} tensors",
                info.tensors.len()
            ),
        )),
        n => Ok(n),
    }
}

impl HParams {
    /// The shape `info`'s metadata gives, as llama.cpp's loader reads it,
    /// each key's absence or bad value refused by name ([`super::check`]
    /// checks the tensors against it).
    pub(super) fn read(info: &GgufInfo) -> Result<Self, NnError> {
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
        // (A pure Mamba-2 or Mamba-1 file attends nowhere: every block
        // scans; its head count, 0, optional.)
        let attentionless = ssm::attentionless(arch);
        let heads = match attentionless {
            true => int("attention.head_count").unwrap_or(0),
            false => int("attention.head_count")?,
        };
        // (Latent attention decompresses a key and a value per query head.)
        let mla = mla::read(arch, info, embd / heads.max(1))?;
        let (kv_heads, recurrent) = match mla {
            Some(_) => (heads, Vec::new()),
            None if attentionless => (0, vec![true; bounded_blocks(arch, info, &int)?]),
            None => conv::kv_heads(arch, info, heads)?,
        };
        // (Nemotron-H's blocks joined into layers: which of those scan.)
        let (blocks, block_ffn) = ssm::blocks(arch, info, &recurrent)?;
        let recurrent: Vec<bool> = match blocks.is_empty() {
            true => recurrent,
            false => (blocks.iter())
                .map(|&(b, _)| recurrent.get(b).copied().unwrap_or(false))
                .collect(),
        };
        let short_conv = conv::short_conv(arch, info, &recurrent)?;
        let ssm = ssm::read(arch, info, &recurrent)?;
        if !attentionless
            && (heads == 0
                || kv_heads == 0
                || (!embd.is_multiple_of(heads) && mla.is_none())
                || !heads.is_multiple_of(kv_heads))
        {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("bad attention shape: {heads} heads, {kv_heads} KV heads, width {embd}"),
            ));
        }
        // (Latent attention's heads are bounded by the width, which the
        // check of its widths against the tensors then bounds.)
        if mla.is_some() && heads > embd {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("`{arch}.attention.head_count` ({heads}) is more than the width ({embd})"),
            ));
        }
        // (Latent attention's values are padded to its keys' width.)
        let (head_dim, value_dim) = match &mla {
            Some(m) => (m.key(), m.key()),
            None if attentionless => (0, 0),
            None => {
                let head_dim = int("attention.key_length").unwrap_or(embd / heads);
                (head_dim, int("attention.value_length").unwrap_or(head_dim))
            }
        };
        if (head_dim == 0 && !attentionless) || value_dim != head_dim {
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
        if (rope_dims == 0 && !attentionless)
            || rope_dims > head_dim
            || !rope_dims.is_multiple_of(2)
        {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("rope dimension {rope_dims} does not fit head size {head_dim}"),
            ));
        }
        // (llama.cpp refuses a Falcon file that rotates part of each head.)
        if arch == "falcon" && rope_dims != head_dim {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!(
                    "a Falcon file rotates whole heads: rope dimension {rope_dims}, head size {head_dim}"
                ),
            ));
        }
        // As llama.cpp reads them: no type is `linear`, and the factor (or
        // the older `rope.scale_linear`; 0 as none) divides the angles
        // under any type but `none`, which never scales.
        let scaling = info
            .get(&format!("{arch}.rope.scaling.type"))
            .and_then(|v| v.as_str())
            .unwrap_or("linear");
        if !matches!(scaling, "none" | "linear" | "yarn") {
            return Err(NnError::new(
                NnErrorKind::UnsupportedOperation,
                format!(
                    "rope scaling `{scaling}` is not supported: weft-nn runs unscaled, linearly scaled and YaRN rotary embeddings"
                ),
            ));
        }
        let rope_freq_scale = match scaling {
            "none" => 1.0,
            _ => {
                1.0 / float("rope.scaling.factor")
                    .or_else(|| float("rope.scale_linear"))
                    .filter(|&f| f > 0.0 && f.is_finite())
                    .unwrap_or(1.0)
            }
        };
        let longrope = info.tensor(LONGROPE_SHORT).is_some();
        let trained = int("context_length").unwrap_or(2048);
        // The window before scaling, read once for its three readers
        // (LongRoPE's, YaRN's and the attention temperature's), each with
        // llama.cpp's own rule for an absent or 0 one.
        let original = int("rope.scaling.original_context_length").ok();
        let context = match original {
            Some(o) if longrope && o > 0 => trained.min(o),
            // (MiniCPM3's converter writes none: its factors' window is
            // the trained one, as llama.cpp takes it.)
            _ if longrope && arch == "minicpm3" => trained,
            // Past the short factors' window they would be wrong, and the
            // file does not say where it ends.
            _ if longrope => {
                return Err(NnError::new(
                    NnErrorKind::InvalidEncoding,
                    format!(
                        "a LongRoPE file (`{LONGROPE_SHORT}`) without \
                         `{arch}.rope.scaling.original_context_length`: weft-nn runs such a \
                         file in its original window, which the file does not give"
                    ),
                ));
            }
            _ => trained,
        };
        // (Under any scaling, as llama.cpp multiplies it in.)
        let attn_factor = float("rope.scaling.attn_factor").filter(|&f| f > 0.0);
        // (DeepSeek-V2's converter writes `0.1 mscale_all_dim`.)
        let deepseek_log_mul = match arch {
            "deepseek2" => float("rope.scaling.yarn_log_multiplier").unwrap_or(0.0),
            _ => 0.0,
        };
        let mut rope_mscale = attn_factor.unwrap_or(1.0);
        let yarn = match scaling {
            "yarn" => {
                // (0 as absent, as llama.cpp reads it.)
                let mut y = Yarn::new(original.filter(|&o| o > 0).unwrap_or(trained));
                // (Mistral 3's files give YaRN's betas and `mscale_all_dim`;
                // llama.cpp reads them for that architecture alone.)
                if arch == "mistral3" {
                    y.beta_fast = float("rope.scaling.yarn_beta_fast").unwrap_or(y.beta_fast);
                    y.beta_slow = float("rope.scaling.yarn_beta_slow").unwrap_or(y.beta_slow);
                    y.log_mul = float("rope.scaling.yarn_log_multiplier").unwrap_or(0.0);
                }
                rope_mscale = y.attn_factor(rope_freq_scale, attn_factor.unwrap_or(1.0));
                // (DeepSeek-V2's `mscale` is its `mscale_all_dim`, as
                // llama.cpp takes it: their ratio 1, the magnitude the
                // file's factor alone.)
                if deepseek_log_mul != 0.0 {
                    let factor = 1.0 / rope_freq_scale;
                    rope_mscale = attn_factor.unwrap_or(1.0) / (1.0 + 0.1 * factor.ln());
                }
                Some(y)
            }
            _ => None,
        };
        // (GLM-4.5's and GLM-4.7-Flash's last blocks predict further
        // tokens: not run.)
        let mtp_blocks = match arch {
            "glm4moe" | "deepseek2" => int("nextn_predict_layers").unwrap_or(0),
            _ => 0,
        };
        let layers = match blocks.len() {
            0 => int("block_count")?.checked_sub(mtp_blocks).filter(|&l| l > 0).ok_or_else(|| {
                NnError::new(
                    NnErrorKind::InvalidEncoding,
                    format!("`{arch}.nextn_predict_layers` ({mtp_blocks}) leaves no layer of `{arch}.block_count`"),
                )
            })?,
            n => n,
        };
        // (A layer has tensors: a count past them would only allocate.)
        if layers > info.tensors.len() {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!(
                    "`{arch}.block_count` gives {layers} layers, but the file has {} tensors",
                    info.tensors.len()
                ),
            ));
        }
        // (Nemotron-H's width, from its list of one per block.)
        let int = |key: &str| match (key, block_ffn) {
            ("feed_forward_length", w) if w > 0 => Ok(w),
            _ => int(key),
        };
        let (experts, experts_used, ffn) = experts(arch, &int)?;
        // (GLM-4.5's experts picked in groups: one group, as its releases'.)
        if let Ok(groups @ 2..) = int("expert_group_count") {
            return Err(NnError::new(
                NnErrorKind::UnsupportedOperation,
                format!(
                    "`{arch}.expert_group_count` is {groups}: weft-nn picks experts from \
                     one group"
                ),
            ));
        }
        let shared_ffn = shared_width(arch, (experts, ffn), &int)?;
        let ernie_moe = arch == "ernie4_5-moe";
        let (dense_lead, dense_ffn) = dense_layers(arch, ffn, &int, &float)?;
        // GLM-4V's language model (also `glm4`) rotates by sections of
        // positions (llama.cpp's M-RoPE), its weights permuted for it.
        if arch == "glm4" && info.get("glm4.rope.dimension_sections").is_some() {
            return Err(NnError::new(
                NnErrorKind::UnsupportedOperation,
                "`glm4.rope.dimension_sections`: a GLM-4V language model, whose \
                 multimodal rotary embedding (M-RoPE) weft-nn does not run",
            ));
        }
        // StableLM 2 12B normalises each query and key head by a LayerNorm.
        if arch == "stablelm" && info.tensor("blk.0.attn_q_norm.weight").is_some() {
            return Err(NnError::new(
                NnErrorKind::UnsupportedOperation,
                "`blk.0.attn_q_norm.weight`: StableLM 2 12B's LayerNorms of each query \
                 and key head, which weft-nn does not run (its 1.6B and 3B models run)",
            ));
        }
        let is_granite = matches!(arch, "granite" | "granitemoe" | "granitehybrid");
        // Granite's switch for the rotary embedding, on unless the file
        // says `false` (llama.cpp's `rope_finetuned`, which only Granite
        // reads this way).
        let granite_ropes = info
            .get(&format!("{arch}.rope.scaling.finetuned"))
            .and_then(|v| v.as_int())
            .is_none_or(|v| v != 0);
        let granite = |key: &str| float(key).filter(|&f| f != 0.0);
        let gemma = arch.starts_with("gemma");
        let command_r = matches!(arch, "command-r" | "cohere2");
        let layer_norm = command_r
            || matches!(
                arch,
                "olmo"
                    | "starcoder2"
                    | "stablelm"
                    | "phi2"
                    | "gpt2"
                    | "starcoder"
                    | "gptneox"
                    | "falcon"
                    | "nemotron"
            );
        // GPT-2's and StarCoder's: learned positions, StarCoder 2's blocks.
        let positions = matches!(arch, "gpt2" | "starcoder");
        // Phi-2's, and StableLM 2 12B's, whose files have no `ffn_norm`.
        // (GPT-NeoX's as its file says, required as llama.cpp requires it.)
        // (Command R's and Falcon's: one norm for both, or Falcon 40B's
        // two, read as the attention's and the feed-forward's.)
        let parallel = match arch {
            "phi2" | "command-r" | "cohere2" | "falcon" => true,
            "stablelm" => info.tensor("blk.0.ffn_norm.weight").is_none(),
            "gptneox" => info
                .get("gptneox.use_parallel_residual")
                .and_then(|v| v.as_int())
                .map(|v| v != 0)
                .ok_or_else(|| {
                    NnError::new(
                        NnErrorKind::InvalidEncoding,
                        "GGUF metadata `gptneox.use_parallel_residual` is missing",
                    )
                })?,
            _ => false,
        };
        // StarCoder 2's blocks (GPT-2's and StarCoder's with learned
        // positions, not rotation).
        let sc2 = positions || matches!(arch, "starcoder2" | "gptneox");
        let (embd_scale, residual_scale, logit_scale, mut attn_scale) = if is_granite {
            (
                granite("embedding_scale").unwrap_or(1.0),
                granite("residual_scale").unwrap_or(1.0),
                1.0 / granite("logit_scale").unwrap_or(1.0),
                granite("attention.scale"),
            )
        } else if arch == "minicpm" {
            // Granite's multipliers. A file converted before llama.cpp
            // wrote them ran MiniCPM's own constants (`scale_emb` 12,
            // `scale_depth` 1.4, logits over `hidden_size /
            // dim_model_base` of 256), as HF's MiniCPM and llama.cpp's
            // builder of then ran them, and as here. (Today's llama.cpp
            // defaults the logit key to 256 / width, which its graph
            // divides by: logits times width / 256, the inverse.)
            let (embd_scale, residual_scale, logit_scale) = minicpm_scales(embd, layers);
            (
                granite("embedding_scale").unwrap_or(embd_scale),
                granite("residual_scale").unwrap_or(residual_scale),
                granite("logit_scale").map_or(logit_scale, |s| 1.0 / s),
                None,
            )
        } else if arch == "minicpm3" {
            // (Which llama.cpp's MiniCPM3 graph runs whatever the file
            // says: it reads no key for them.)
            let (embd_scale, residual_scale, logit_scale) = minicpm_scales(embd, layers);
            (embd_scale, residual_scale, logit_scale, None)
        } else if gemma {
            ((embd as f32).sqrt(), 1.0, 1.0, None)
        } else if command_r {
            // Command R multiplies its logits (required, as llama.cpp
            // requires it).
            let scale = float("logit_scale").ok_or_else(|| {
                NnError::new(
                    NnErrorKind::InvalidEncoding,
                    format!("GGUF metadata `{arch}.logit_scale` is missing"),
                )
            })?;
            (1.0, 1.0, scale, None)
        } else {
            (1.0, 1.0, 1.0, None)
        };
        // Gemma 2 and 3 27B scale queries by the model's width per head,
        // not their own (llama.cpp knows the size by its depth, as here).
        if (arch, layers) == ("gemma2", 46) || (arch, layers) == ("gemma3", 62) {
            attn_scale = Some(1.0 / ((embd / heads) as f32).sqrt());
        }
        // DeepSeek-V2's scores are scaled by the square of YaRN's
        // magnitude (the rotation's, its cancelling undone) times its own
        // `1 + 0.1 mscale_all_dim ln(factor)`, as llama.cpp's graph does.
        // (A deepseek2 file always has its latent attention: `mla::read`.)
        if arch == "deepseek2" {
            let ln = (1.0 / rope_freq_scale).ln();
            let m = rope_mscale * (1.0 + 0.1 * ln) * (1.0 + deepseek_log_mul * ln);
            attn_scale = Some(m * m / (head_dim as f32).sqrt());
        }
        let rope_base = float("rope.freq_base").unwrap_or(10_000.0);
        let gemma_swa = Gemma::read(arch, layers, info, rope_base, rope_freq_scale)?;
        // The temperature's step: YaRN's original window
        // (`n_ctx_orig_yarn`: the file's, else the trained context), as
        // llama.cpp takes it.
        let attn_temp = match float("attention.temperature_scale").filter(|&t| t != 0.0) {
            Some(t) if arch == "mistral3" => {
                let every = original.unwrap_or(trained);
                if every == 0 {
                    return Err(NnError::new(
                        NnErrorKind::InvalidEncoding,
                        format!(
                            "`{arch}.attention.temperature_scale` needs a window: \
                             `{arch}.rope.scaling.original_context_length` is 0"
                        ),
                    ));
                }
                Some((t, every))
            }
            _ => None,
        };
        Ok(Self {
            vocab,
            embd,
            ffn,
            experts,
            experts_used,
            // (OLMoE and DeepSeek-MoE weight by the probabilities as the
            // softmax gave them, as Qwen2-MoE does.)
            experts_renormalised: match arch {
                "qwen2moe" | "olmoe" | "deepseek" => false,
                // (Optional, false without it, as llama.cpp reads it.)
                "nemotron_h_moe" | "glm4moe" | "deepseek2" => info
                    .get(&format!("{arch}.expert_weights_norm"))
                    .and_then(|v| v.as_int())
                    .is_some_and(|v| v != 0),
                _ => true,
            },
            experts_scale: families::experts_scale(arch, &float)?,
            dense_lead,
            dense_ffn,
            expert_bias: ernie_moe
                || matches!(arch, "lfm2moe" | "nemotron_h_moe" | "glm4moe" | "deepseek2"),
            experts_sigmoid: conv::sigmoid_router(arch, info)?,
            shared_ffn,
            shared_gate: arch == "qwen2moe",
            gpt_oss: arch == "gpt-oss",
            ffn_norm_post_attention: matches!(arch, "gpt-oss" | "glm4moe"),
            mtp_blocks,
            layers,
            heads,
            kv_heads,
            head_dim,
            rope_dims,
            rope_base,
            rope_freq_scale,
            rope_mscale,
            swa_plain: arch == "olmo2",
            // (And Command R7B's, whose global layers do not rotate.)
            rope_swa_only: (arch == "exaone4" && layers == 64) || arch == "cohere2",
            yarn,
            rope_neox: gemma
                || matches!(
                    arch,
                    "qwen2"
                        | "qwen2moe"
                        | "qwen3"
                        | "qwen3moe"
                        | "qwen2vl"
                        | "qwen3vl"
                        | "qwen3vlmoe"
                        | "apertus"
                        | "phi3"
                        | "olmo2"
                        | "exaone"
                        | "exaone4"
                        | "starcoder2"
                        | "stablelm"
                        | "phi2"
                        | "gptneox"
                        | "olmoe"
                        | "falcon"
                        | "nemotron"
                        | "gpt-oss"
                        | "glm4moe"
                        | "hunyuan-dense"
                        | "minicpm3"
                )
                || conv::hybrid(arch),
            no_rope_every: match arch {
                "smollm3" => 4,
                // (No layer rotates.)
                _ if positions
                    || (is_granite && !granite_ropes)
                    || ssm::nemotron_h(arch)
                    || attentionless =>
                {
                    1
                }
                _ => 0,
            },
            norm_eps: match layer_norm {
                // (Required, as llama.cpp requires it of these families.)
                true => float("attention.layer_norm_epsilon").ok_or_else(|| {
                    NnError::new(
                        NnErrorKind::InvalidEncoding,
                        format!("GGUF metadata `{arch}.attention.layer_norm_epsilon` is missing"),
                    )
                })?,
                false => float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            },
            layer_norm,
            norm_bias: !command_r && arch != "olmo",
            norm_weights: arch != "olmo",
            parallel,
            context,
            embd_scale,
            residual_scale,
            logit_scale,
            attn_scale: attn_scale.unwrap_or(1.0 / (head_dim.max(1) as f32).sqrt()),
            attn_temp,
            // (Optional, as llama.cpp reads it.)
            clamp_kqv: match arch {
                "olmo" => float("attention.clamp_kqv")
                    .filter(|&c| c > 0.0)
                    .unwrap_or(0.0),
                _ => 0.0,
            },
            // (Phi-2's files converted from its first release fuse them
            // too; those from its transformers release do not.)
            fused_qkv: matches!(arch, "phi3" | "gptneox" | "falcon")
                || positions
                || (arch == "phi2" && info.tensor("blk.0.attn_qkv.weight").is_some()),
            fused_gate_up: matches!(arch, "phi3" | "glm4"),
            act: match arch {
                _ if gemma || sc2 || matches!(arch, "phi2" | "falcon") => FfnAct::Gelu,
                "arcee" | "nemotron" | "nemotron_h" | "nemotron_h_moe" => FfnAct::ReluSquared,
                "gpt-oss" => FfnAct::SwigluOai,
                _ => FfnAct::Silu,
            },
            xielu: xielu::read(arch, info, layers)?,
            gated: !sc2
                && !matches!(
                    arch,
                    "arcee"
                        | "phi2"
                        | "falcon"
                        | "nemotron"
                        | "nemotron_h"
                        | "nemotron_h_moe"
                        | "apertus"
                ),
            ffn_biases: sc2 || arch == "phi2",
            positions,
            output_bias: arch == "phi2",
            post_norms: matches!(arch, "gemma2" | "gemma3" | "olmo2" | "exaone4" | "glm4"),
            pre_norms: !matches!(arch, "olmo2" | "exaone4"),
            qk_norms_whole: matches!(arch, "olmo2" | "olmoe"),
            qk_norms_after_rope: arch == "hunyuan-dense",
            attn_softcap: gemma_swa.attn_softcap,
            final_softcap: gemma_swa.final_softcap,
            window: gemma_swa.window,
            swa: gemma_swa.swa,
            rope_base_swa: gemma_swa.rope_base,
            // (Unscaled for Gemma 3's local layers and OLMo 3's sliding ones.)
            rope_freq_scale_swa: gemma_swa.rope_freq_scale,
            short_conv,
            ssm,
            blocks,
            mla,
        })
    }
}

/// MiniCPM's own multipliers (`scale_emb` 12, `scale_depth` 1.4 over the
/// root of the depth, logits times `dim_model_base` 256 over the width),
/// as HF's MiniCPM and MiniCPM3 run them: the embeddings', the residual
/// branches' and the logits'.
fn minicpm_scales(embd: usize, layers: usize) -> (f32, f32, f32) {
    (12.0, 1.4 / (layers as f32).sqrt(), 256.0 / embd as f32)
}
