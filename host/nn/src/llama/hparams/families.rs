//! What sets some families apart, read from their GGUF metadata as
//! llama.cpp reads it: YaRN's rotary scaling, a mixture of experts' shape,
//! and Gemma 2 and 3's soft caps and sliding windows.

use crate::{GgufInfo, NnError, NnErrorKind};

/// YaRN's settings as llama.cpp runs them for the families weft-nn reads:
/// its fixed extrapolation factor (1) and betas (32, 1), whatever else a
/// converter wrote (`rope.scaling.yarn_*`, which only Grok's, Mistral 3's
/// and DeepSeek-V2's loaders read: Mistral 3's betas and `log_mul` are the
/// file's; DeepSeek-V2's `yarn_log_multiplier` scales its scores, read
/// beside this in `HParams::read`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Yarn {
    pub(super) ext_factor: f32,
    pub(super) beta_fast: f32,
    pub(super) beta_slow: f32,
    /// `rope.scaling.yarn_log_multiplier` (HF's `mscale_all_dim`); 0 for
    /// none.
    pub(super) log_mul: f32,
    /// The context the model was trained in before YaRN extended it.
    pub(super) original: usize,
}

impl Yarn {
    pub(super) fn new(original: usize) -> Self {
        Self {
            ext_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            log_mul: 0.0,
            original,
        }
    }

    /// What the rotations' cosines and sines are multiplied by besides
    /// `1 + 0.1 ln(1/scale)` ([`HParams::rope_angles`]), as llama.cpp
    /// sets `yarn_attn_factor`: YaRN's magnitude (divided by that of
    /// `mscale_all_dim` where the file gives one), that factor cancelled,
    /// the file's `attn_factor` applied.
    pub(super) fn attn_factor(&self, freq_scale: f32, file: f32) -> f32 {
        let factor = 1.0 / freq_scale;
        let mscale = |m: f32| match factor <= 1.0 {
            true => 1.0,
            false => 0.1 * m * factor.ln() + 1.0,
        };
        let m = match self.log_mul {
            0.0 => mscale(1.0),
            all_dims => mscale(1.0) / mscale(all_dims),
        };
        m / (1.0 + 0.1 * factor.ln()) * file
    }

    /// ggml's `ggml_rope_yarn_corr_dims`: the pairs where the ramp from
    /// scaled to unscaled angles starts and ends.
    pub(super) fn corr_dims(&self, dims: usize, base: f32) -> (f32, f32) {
        let dim = |rotations: f32| {
            let turns = self.original as f32 / (rotations * 2.0 * std::f32::consts::PI);
            dims as f32 * turns.ln() / (2.0 * base.ln())
        };
        let low = dim(self.beta_fast).floor().max(0.0);
        let high = dim(self.beta_slow).ceil().min(dims as f32 - 1.0);
        (low, high)
    }
}

/// A mixture of experts' shape, as llama.cpp reads it: `(experts, used,
/// width of each)`, or `(0, 0, feed_forward_length)` for a dense model
/// (no `expert_count`, or 0). Llama-architecture files with experts are
/// Mixtral's; Qwen2-MoE's and Qwen3-MoE's are `expert_feed_forward_length`
/// wide, else `feed_forward_length` over the experts used; Granite's and
/// Granite MoE's experts are as wide as
/// `feed_forward_length` (llama.cpp's Granite graph reads no other
/// width); ERNIE 4.5 MoE's need `expert_feed_forward_length`. A width of
/// 0 is refused (as no width at all).
pub(super) fn experts(
    arch: &str,
    int: &dyn Fn(&str) -> Result<usize, NnError>,
) -> Result<(usize, usize, usize), NnError> {
    let bad = |m: String| NnError::new(NnErrorKind::InvalidEncoding, m);
    // (Pure Mamba-2's and Mamba-1's layers have no feed-forward.)
    if super::ssm::attentionless(arch) {
        return Ok((0, 0, 0));
    }
    let width = |w: usize, key: &str| match w {
        0 => Err(bad(format!("`{arch}.{key}` is 0"))),
        w => Ok(w),
    };
    let dense = || width(int("feed_forward_length")?, "feed_forward_length");
    let count = match arch {
        "llama" | "mistral" | "mistral3" | "qwen2moe" | "qwen3moe" | "qwen3vlmoe" | "granite"
        | "granitemoe" | "granitehybrid" | "ernie4_5-moe" | "olmoe" | "deepseek" | "gpt-oss"
        | "lfm2moe" | "nemotron_h_moe" | "glm4moe" | "deepseek2" => {
            int("expert_count").unwrap_or(0)
        }
        _ => 0,
    };
    let qwen = matches!(arch, "qwen2moe" | "qwen3moe" | "qwen3vlmoe");
    if count == 0 {
        if qwen
            || matches!(
                arch,
                "ernie4_5-moe"
                    | "olmoe"
                    | "deepseek"
                    | "gpt-oss"
                    | "lfm2moe"
                    | "nemotron_h_moe"
                    | "glm4moe"
                    | "deepseek2"
            )
        {
            return Err(bad(format!(
                "a `{arch}` file needs `{arch}.expert_count` (of 1 or more)"
            )));
        }
        return Ok((0, 0, dense()?));
    }
    let used = int("expert_used_count")?;
    if used == 0 || used > count {
        return Err(bad(format!(
            "`{arch}.expert_used_count` is {used}: expected 1 to `{arch}.expert_count` ({count})"
        )));
    }
    // (0 as absent, as llama.cpp reads it.)
    let own = match arch {
        // (OLMoE's experts are `feed_forward_length` wide.)
        "granite" | "granitemoe" | "granitehybrid" | "olmoe" => None,
        _ => int("expert_feed_forward_length").ok().filter(|&w| w > 0),
    };
    let each = match own {
        Some(w) => w,
        None if matches!(
            arch,
            "ernie4_5-moe" | "deepseek" | "gpt-oss" | "lfm2moe" | "glm4moe" | "deepseek2"
        ) =>
        {
            return Err(bad(format!(
                "`{arch}.expert_feed_forward_length` is missing or 0: the experts need a width"
            )));
        }
        None if qwen || arch == "nemotron_h_moe" => match dense()? / used {
            0 => {
                return Err(bad(format!(
                    "`{arch}.feed_forward_length` over `{arch}.expert_used_count` ({used}) \
                     is 0: the experts need a width (`{arch}.expert_feed_forward_length`)"
                )));
            }
            w => w,
        },
        None => dense()?,
    };
    Ok((count, used, each))
}

/// A mixture's dense layers, as llama.cpp reads them: `(count, width)` of
/// the layers before the mixtures (ERNIE 4.5 MoE's and DeepSeek-MoE's
/// `leading_dense_block_count`; none elsewhere, `ffn` wide); and
/// DeepSeek-MoE's scale of its experts' weights checked.
pub(super) fn dense_layers(
    arch: &str,
    ffn: usize,
    int: &dyn Fn(&str) -> Result<usize, NnError>,
    float: &dyn Fn(&str) -> Option<f32>,
) -> Result<(usize, usize), NnError> {
    // DeepSeek-MoE's files scale the experts' weights by 1; llama.cpp
    // releases differ on whether they apply another scale, so weft-nn
    // runs 1 alone (0 is absent, as llama.cpp reads it).
    if arch == "deepseek" {
        match float("expert_weights_scale") {
            Some(s) if s == 0.0 || s == 1.0 => {}
            Some(s) => {
                return Err(NnError::new(
                    NnErrorKind::UnsupportedOperation,
                    format!(
                        "`{arch}.expert_weights_scale` is {s}: weft-nn runs \
                         DeepSeek-MoE files whose experts' weights are scaled by 1, as \
                         its releases' are"
                    ),
                ));
            }
            // (Required, as llama.cpp requires it.)
            None => {
                return Err(NnError::new(
                    NnErrorKind::InvalidEncoding,
                    format!("GGUF metadata `{arch}.expert_weights_scale` is missing"),
                ));
            }
        }
    }
    // (llama.cpp's loader gives every layer past the dense ones
    // experts, while its graph runs every `step`th as a mixture: it
    // runs a step of 1 alone, as every ERNIE 4.5 MoE has. DeepSeek-MoE
    // has no step: every layer past the dense ones is a mixture.)
    Ok(match arch {
        // (Optional in LFM2-MoE's and GLM-4.5's files, as llama.cpp reads
        // them.)
        "lfm2moe" | "glm4moe" => (
            int("leading_dense_block_count").unwrap_or(0),
            int("feed_forward_length")?,
        ),
        "deepseek" | "deepseek2" => (
            int("leading_dense_block_count")?,
            int("feed_forward_length")?,
        ),
        "ernie4_5-moe" => match int("interleave_moe_layer_step")? {
            1 => (
                int("leading_dense_block_count")?,
                int("feed_forward_length")?,
            ),
            step => {
                return Err(NnError::new(
                    NnErrorKind::UnsupportedOperation,
                    format!(
                        "`{arch}.interleave_moe_layer_step` is {step}: weft-nn runs ERNIE \
                         4.5 MoE files whose layers past the dense ones are all mixtures \
                         (a step of 1), as llama.cpp does"
                    ),
                ));
            }
        },
        _ => (0, ffn),
    })
}

/// What the picked experts' weights are multiplied by: Nemotron 3 Nano's
/// and GLM-4.5's `expert_weights_scale` (required: llama.cpp's graph
/// multiplies by it, 0 without it), DeepSeek-V2's (optional; absent or 0
/// as 1), 1
/// elsewhere (DeepSeek-MoE's is checked to be 1 by [`dense_layers`]).
pub(super) fn experts_scale(
    arch: &str,
    float: &dyn Fn(&str) -> Option<f32>,
) -> Result<f32, NnError> {
    match arch {
        "nemotron_h_moe" | "glm4moe" => float("expert_weights_scale")
            .filter(|&s| s > 0.0)
            .ok_or_else(|| {
                NnError::new(
                    NnErrorKind::InvalidEncoding,
                    format!(
                        "GGUF metadata `{arch}.expert_weights_scale` is missing or not above 0"
                    ),
                )
            }),
        // (Optional, as llama.cpp reads it now; absent or 0 is no scale,
        // as its graph takes it.)
        "deepseek2" => match float("expert_weights_scale") {
            None | Some(0.0) => Ok(1.0),
            Some(s) if s > 0.0 => Ok(s),
            Some(s) => Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("`{arch}.expert_weights_scale` is {s}: it must not be below 0"),
            )),
        },
        _ => Ok(1.0),
    }
}

/// A mixture's shared expert's width, as llama.cpp reads it (0 for none):
/// Qwen2-MoE's, which every file has, `expert_shared_feed_forward_length`
/// else the dense width (refused as 0); Granite MoE Shared's and ERNIE 4.5
/// MoE's, read for a mixture only (`experts` of 1 or more); Nemotron 3
/// Nano's `expert_shared_feed_forward_length`, required; DeepSeek-MoE's
/// and DeepSeek-V2's (required) and GLM-4.5's `expert_shared_count`
/// experts of the routed
/// ones' width `each`, run as one. 0 stands for absent.
pub(super) fn shared_width(
    arch: &str,
    (experts, each): (usize, usize),
    int: &dyn Fn(&str) -> Result<usize, NnError>,
) -> Result<usize, NnError> {
    let own = int("expert_shared_feed_forward_length").ok();
    Ok(match arch {
        "qwen2moe" => match own.filter(|&w| w > 0) {
            Some(w) => w,
            None => match int("feed_forward_length")? {
                0 => {
                    return Err(NnError::new(
                        NnErrorKind::InvalidEncoding,
                        format!(
                            "`{arch}.feed_forward_length` is 0 (the shared expert's \
                             width, without `{arch}.expert_shared_feed_forward_length`)"
                        ),
                    ));
                }
                w => w,
            },
        },
        "granite" | "granitemoe" | "granitehybrid" | "ernie4_5-moe" if experts > 0 => {
            own.unwrap_or(0)
        }
        // (Required, as llama.cpp requires it.)
        "deepseek" | "deepseek2" => int("expert_shared_count")? * each,
        // (Optional: none without it.)
        "glm4moe" => int("expert_shared_count").unwrap_or(0) * each,
        // (Required: llama.cpp requires its expert.)
        "nemotron_h_moe" => own.filter(|&w| w > 0).ok_or_else(|| {
            NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("GGUF metadata `{arch}.expert_shared_feed_forward_length` is missing or 0"),
            )
        })?,
        _ => 0,
    })
}

/// Gemma 2 and 3's soft caps and sliding windows, and OLMo 3's, EXAONE
/// 4's and Command R7B's windows, read as llama.cpp reads them (with its defaults where the
/// file is silent); none for the others.
pub(super) struct Gemma {
    pub(super) attn_softcap: f32,
    pub(super) final_softcap: f32,
    pub(super) window: usize,
    pub(super) swa: Vec<bool>,
    pub(super) rope_base: f32,
    pub(super) rope_freq_scale: f32,
}

impl Gemma {
    pub(super) fn read(
        arch: &str,
        layers: usize,
        info: &GgufInfo,
        rope_base: f32,
        rope_freq_scale: f32,
    ) -> Result<Self, NnError> {
        use crate::GgufValue;
        let key = |k: &str| info.get(&format!("{arch}.{k}"));
        let float = |k: &str| key(k).and_then(GgufValue::as_float).map(|v| v as f32);
        let window = || key("attention.sliding_window").and_then(GgufValue::as_int);
        let mut g = Gemma {
            attn_softcap: 0.0,
            final_softcap: 0.0,
            window: 0,
            swa: vec![false; layers],
            rope_base,
            rope_freq_scale,
        };
        // (the layer pattern's period by default, the window)
        let (period, window) = match arch {
            "gemma2" => {
                // (A cap's sign does not matter: tanh is odd.)
                g.attn_softcap = float("attn_logit_softcapping").map_or(50.0, f32::abs);
                g.final_softcap = float("final_logit_softcapping").map_or(30.0, f32::abs);
                (2, window().unwrap_or(4096))
            }
            "gemma3" => {
                g.final_softcap = float("final_logit_softcapping").map_or(0.0, f32::abs);
                match window().filter(|&w| w > 0) {
                    // Local layers rotate by their own base, unscaled.
                    Some(w) => {
                        (g.rope_base, g.rope_freq_scale) = (10_000.0, 1.0);
                        (6, w)
                    }
                    None => return Ok(g),
                }
            }
            // OLMo 3 (an `olmo2` file with a window): three local layers
            // of four, rotating at the file's base, unscaled.
            "olmo2" => match window().filter(|&w| w > 0) {
                Some(w) => {
                    g.rope_freq_scale = 1.0;
                    (4, w)
                }
                None => return Ok(g),
            },
            // EXAONE 4: llama.cpp gives sliding windows to the 64-layer
            // model (32B) alone, three layers of four, 4096 wide unless the
            // file says; every layer of another sees every position,
            // whatever window its file gives.
            "exaone4" if layers == 64 => (4, window().unwrap_or(4096)),
            // Command R7B: three local layers of four, the window required
            // (as llama.cpp requires it).
            // gpt-oss: every other layer (the first too), required.
            "cohere2" | "gpt-oss" => match window() {
                Some(w) => (if arch == "cohere2" { 4 } else { 2 }, w),
                None => {
                    return Err(NnError::new(
                        NnErrorKind::InvalidEncoding,
                        format!("GGUF metadata `{arch}.attention.sliding_window` is missing"),
                    ));
                }
            },
            _ => return Ok(g),
        };
        let bad = |m: String| NnError::new(NnErrorKind::InvalidEncoding, m);
        g.window = usize::try_from(window)
            .ok()
            .filter(|&w| w > 0)
            .ok_or_else(|| bad(format!("`{arch}.attention.sliding_window` is {window}")))?;
        // (llama.cpp's OLMo and EXAONE 4 graphs rotate at the global base
        // whatever.)
        let global_base = matches!(arch, "olmo2" | "exaone4" | "cohere2" | "gpt-oss");
        if let Some(base) = float("rope.freq_base_swa").filter(|_| !global_base) {
            g.rope_base = base;
        }
        let pattern_key = format!("{arch}.attention.sliding_window_pattern");
        g.swa = match info.get(&pattern_key) {
            // One flag per layer.
            Some(GgufValue::Array(flags)) => {
                let flags: Vec<bool> = flags
                    .iter()
                    .map(|f| f.as_int().map(|f| f != 0))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad(format!("`{pattern_key}` holds a non-boolean")))?;
                if flags.len() != layers {
                    return Err(bad(format!(
                        "`{pattern_key}` has {} flags for {layers} layers",
                        flags.len()
                    )));
                }
                flags
            }
            // Every `period`th layer global, the others local.
            other => {
                let period = other.and_then(GgufValue::as_int).unwrap_or(period);
                let period = usize::try_from(period)
                    .map_err(|_| bad(format!("`{pattern_key}` is {period}")))?;
                (0..layers)
                    .map(|l| period == 0 || l % period < period - 1)
                    .collect()
            }
        };
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GgufValue::{Array, Float, Int};

    fn info(arch: &str, metadata: Vec<(String, crate::GgufValue)>) -> GgufInfo {
        GgufInfo {
            version: 3,
            architecture: Some(arch.into()),
            metadata_keys: metadata.iter().map(|(k, _)| k.clone()).collect(),
            metadata,
            tensors: Vec::new(),
            parameters: 0,
            data_start: 0,
        }
    }

    /// Which layers slide, and over what, as llama.cpp reads a Gemma file:
    /// every other layer (Gemma 2) or five of six (Gemma 3) by default, a
    /// period or one flag per layer where the file says; Gemma 3 without a
    /// window has none, and its local layers rotate at 10000, unscaled.
    #[test]
    fn gemma_sliding_windows_are_read_as_llama_cpp_reads_them() {
        let key = |arch: &str, k: &str| format!("{arch}.{k}");
        let swa = |arch: &str, layers, extra: Vec<(&str, crate::GgufValue)>| {
            let meta = extra.into_iter().map(|(k, v)| (key(arch, k), v)).collect();
            Gemma::read(arch, layers, &info(arch, meta), 1e6, 0.125)
        };
        let g = swa("gemma2", 4, vec![]).unwrap();
        assert_eq!(g.swa, [true, false, true, false]);
        assert_eq!(
            (g.window, g.attn_softcap, g.final_softcap),
            (4096, 50.0, 30.0)
        );
        assert_eq!((g.rope_base, g.rope_freq_scale), (1e6, 0.125));
        let g = swa("gemma3", 7, vec![("attention.sliding_window", Int(512))]).unwrap();
        assert_eq!(g.swa, [true, true, true, true, true, false, true]);
        assert_eq!((g.window, g.final_softcap), (512, 0.0));
        assert_eq!((g.rope_base, g.rope_freq_scale), (10_000.0, 1.0));
        let g = swa("gemma3", 3, vec![]).unwrap();
        assert_eq!((g.swa, g.window), (vec![false; 3], 0));
        let g = swa(
            "gemma3",
            3,
            vec![
                ("attention.sliding_window", Int(8)),
                ("attention.sliding_window_pattern", Int(3)),
                ("rope.freq_base_swa", Float(5e4)),
            ],
        )
        .unwrap();
        assert_eq!((g.swa, g.rope_base), (vec![true, true, false], 5e4));
        let flags = Array(vec![Int(0), Int(1)]);
        let pattern = ("attention.sliding_window_pattern", flags);
        let g = swa("gemma2", 2, vec![pattern.clone()]).unwrap();
        assert_eq!(g.swa, [false, true]);
        let e = swa("gemma2", 3, vec![pattern]).err().unwrap();
        assert!(e.message.contains("2 flags for 3 layers"), "{e}");
        let e = swa("gemma2", 2, vec![("attention.sliding_window", Int(0))])
            .err()
            .unwrap();
        assert!(e.message.contains("sliding_window` is 0"), "{e}");
        let g = swa("llama", 2, vec![("attention.sliding_window", Int(8))]).unwrap();
        assert_eq!((g.swa, g.window), (vec![false; 2], 0));
        let strings = Array(vec![crate::GgufValue::Str("x".into())]);
        let e = swa(
            "gemma2",
            1,
            vec![("attention.sliding_window_pattern", strings)],
        )
        .err()
        .unwrap();
        assert!(e.message.contains("non-boolean"), "{e}");
    }

    /// A mixture's shape, as llama.cpp reads it, and each bad count or
    /// width refused naming its key (a width of 0 would divide by zero at
    /// load).
    #[test]
    fn mixtures_of_experts_are_read_as_llama_cpp_reads_them() {
        let read = |arch: &str, keys: &[(&str, usize)]| {
            let keys: Vec<(String, usize)> = keys
                .iter()
                .map(|&(k, v)| (format!("{arch}.{k}"), v))
                .collect();
            let int = move |k: &str| {
                let key = format!("{arch}.{k}");
                keys.iter()
                    .find(|(name, _)| *name == key)
                    .map(|&(_, v)| v)
                    .ok_or_else(|| NnError::new(NnErrorKind::InvalidEncoding, "missing"))
            };
            experts(arch, &int)
        };
        let ffn = ("feed_forward_length", 96);
        assert_eq!(read("llama", &[ffn]).unwrap(), (0, 0, 96));
        let mixtral = [ffn, ("expert_count", 8), ("expert_used_count", 2)];
        assert_eq!(read("llama", &mixtral).unwrap(), (8, 2, 96));
        // A single expert is a mixture too, as in llama.cpp.
        let one = [ffn, ("expert_count", 1), ("expert_used_count", 1)];
        assert_eq!(read("llama", &one).unwrap(), (1, 1, 96));
        // Qwen3-MoE: its experts' own width, else the dense one per expert used.
        let qwen = [ffn, ("expert_count", 8), ("expert_used_count", 2)];
        assert_eq!(read("qwen3moe", &qwen).unwrap(), (8, 2, 48));
        let own = [
            qwen[0],
            qwen[1],
            qwen[2],
            ("expert_feed_forward_length", 32),
        ];
        assert_eq!(read("qwen3moe", &own).unwrap(), (8, 2, 32));
        let zero = [qwen[0], qwen[1], qwen[2], ("expert_feed_forward_length", 0)];
        assert_eq!(read("qwen3moe", &zero).unwrap(), (8, 2, 48), "0 as absent");
        assert_eq!(read("qwen2moe", &qwen).unwrap(), (8, 2, 48), "as Qwen3-MoE");
        assert_eq!(read("qwen2moe", &own).unwrap(), (8, 2, 32));
        // Granite's: the dense width, whatever `expert_feed_forward_length` says.
        let granite = [
            mixtral[0],
            mixtral[1],
            mixtral[2],
            ("expert_feed_forward_length", 32),
        ];
        assert_eq!(read("granitemoe", &granite).unwrap(), (8, 2, 96));
        assert_eq!(read("granite", &granite).unwrap(), (8, 2, 96));
        assert_eq!(read("granitemoe", &[ffn]).unwrap(), (0, 0, 96), "dense");
        // Experts elsewhere are not read (the tensor check refuses them).
        assert_eq!(read("qwen2", &mixtral).unwrap(), (0, 0, 96));
        for (arch, keys, says) in [
            ("qwen3moe", &[ffn][..], "`qwen3moe.expert_count`"),
            ("qwen2moe", &[ffn][..], "`qwen2moe.expert_count`"),
            (
                "llama",
                &[ffn, ("expert_count", 8), ("expert_used_count", 9)],
                "is 9",
            ),
            (
                "llama",
                &[ffn, ("expert_count", 8), ("expert_used_count", 0)],
                "is 0",
            ),
            (
                "llama",
                &[("feed_forward_length", 0)],
                "`llama.feed_forward_length` is 0",
            ),
            (
                "qwen3moe",
                &[
                    ("feed_forward_length", 1),
                    ("expert_count", 8),
                    ("expert_used_count", 2),
                ],
                "`qwen3moe.feed_forward_length` over `qwen3moe.expert_used_count` (2) is 0",
            ),
        ] {
            let e = read(arch, keys).unwrap_err();
            assert_eq!(e.kind, NnErrorKind::InvalidEncoding, "{e}");
            assert!(e.message.contains(says), "{arch} {keys:?}: {e}");
        }
    }
}
