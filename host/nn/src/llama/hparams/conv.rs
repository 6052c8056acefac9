//! The hybrids' layouts from their GGUF metadata: which layers convolve
//! (LFM2's) or scan (Granite 4.0-H's and Nemotron-H's Mamba-2 layers,
//! [`super::ssm`])
//! instead of attending, and how far back LFM2's convolutions look.

use super::HParams;
use crate::gguf::Value;
use crate::{GgufInfo, NnError, NnErrorKind};

/// LFM2's gated short convolutions (llama.cpp's `shortconv`): in the layers
/// `layers` marks, each token's `in_proj` product gives three rows `b`,
/// `c` and `x`; each channel of `b ⊙ x` is convolved causally over the
/// session's tokens with `taps` weights of its own (the last `taps − 1`
/// rows carried from one call to the next), and `c ⊙` that goes through
/// `out_proj`, where other layers attend.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ShortConv {
    pub taps: usize,
    /// Per layer: whether it convolves (its `attention.head_count_kv` is 0).
    pub layers: Vec<bool>,
}

/// Whether `arch` is LFM2's hybrid (dense, or LFM2-MoE).
pub(super) fn hybrid(arch: &str) -> bool {
    matches!(arch, "lfm2" | "lfm2moe")
}

/// Whether `arch`'s files give a KV head count per layer, 0 for a layer
/// that does not attend: LFM2's, Granite 4.0-H's and Nemotron-H's (per
/// block: [`super::ssm::blocks`]).
fn layered(arch: &str) -> bool {
    hybrid(arch) || arch == "granitehybrid" || super::ssm::nemotron_h(arch)
}

/// Whether a mixture's router picks and weights experts by the sigmoid of
/// their scores: the file's `expert_gating_func`, 2 for the sigmoid, 1 for
/// the softmax; required in LFM2-MoE's (llama.cpp runs none without it),
/// the sigmoid without it in GLM-4.5's and in DeepSeek-V2's of GLM-4.7
/// Flash's shape ([`glm47_flash`]), else the softmax (DeepSeek-V2's,
/// V2.5's); Nemotron 3 Nano's always the sigmoid; others the softmax.
pub(super) fn sigmoid_router(arch: &str, info: &GgufInfo) -> Result<bool, NnError> {
    // (Nemotron 3 Nano's router is a sigmoid's, as llama.cpp runs it.)
    if arch == "nemotron_h_moe" {
        return Ok(true);
    }
    if !matches!(arch, "lfm2moe" | "glm4moe" | "deepseek2") {
        return Ok(false);
    }
    let key = format!("{arch}.expert_gating_func");
    match info.get(&key).and_then(Value::as_int) {
        // (GLM-4.5's is the sigmoid without it, as llama.cpp reads it.)
        None if arch == "glm4moe" => Ok(true),
        // (DeepSeek-V2's, V2.5's, the softmax's; GLM-4.7-Flash's files,
        // which do not say, the sigmoid's, as llama.cpp knows them.)
        None if arch == "deepseek2" => Ok(glm47_flash(arch, info)),
        Some(1) => Ok(false),
        Some(2) => Ok(true),
        Some(other) => Err(NnError::new(
            NnErrorKind::UnsupportedOperation,
            format!("`{key}` is {other}: weft-nn runs 1 (softmax) and 2 (sigmoid)"),
        )),
        None => Err(NnError::new(
            NnErrorKind::InvalidEncoding,
            format!("GGUF metadata `{key}` is missing or not an integer"),
        )),
    }
}

/// Whether a `deepseek2` file has GLM-4.7-Flash's shape, as llama.cpp
/// tells it for a file without `expert_gating_func`: 47 or 48 layers
/// (past any multi-token prediction blocks) and a vocabulary of 154880.
fn glm47_flash(arch: &str, info: &GgufInfo) -> bool {
    let int = |key: &str| info.get(&format!("{arch}.{key}")).and_then(Value::as_int);
    let layers = int("block_count").unwrap_or(0) - int("nextn_predict_layers").unwrap_or(0);
    let vocab = (info.tensor("token_embd.weight")).and_then(|t| t.dims.get(1).copied());
    matches!(layers, 47 | 48) && vocab == Some(154_880)
}

/// The KV heads of the layers that attend (`attention.head_count_kv`,
/// `heads` without it), and per layer whether it does not ([`layered`]
/// files give a count per layer, 0 for a layer that convolves or scans;
/// empty: every layer attends). A list elsewhere, counts that differ
/// between attention layers, or a file none of whose layers attends are
/// refused, naming the key.
pub(super) fn kv_heads(
    arch: &str,
    info: &GgufInfo,
    heads: usize,
) -> Result<(usize, Vec<bool>), NnError> {
    let bad = |kind, m: String| NnError::new(kind, m);
    let key = format!("{arch}.attention.head_count_kv");
    let counts: Vec<usize> = match info.get(&key) {
        Some(Value::Array(items)) => {
            if !layered(arch) {
                return Err(bad(
                    NnErrorKind::UnsupportedOperation,
                    format!(
                        "`{key}` is a list (a count per layer): weft-nn runs `{arch}` files \
                         whose layers have one count"
                    ),
                ));
            }
            items
                .iter()
                .map(|v| v.as_int().and_then(|v| usize::try_from(v).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    bad(
                        NnErrorKind::InvalidEncoding,
                        format!("`{key}` holds other than non-negative integers"),
                    )
                })?
        }
        Some(v) => vec![
            v.as_int()
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| {
                    bad(
                        NnErrorKind::InvalidEncoding,
                        format!("GGUF metadata `{key}` is not an integer"),
                    )
                })?,
        ],
        None => vec![heads],
    };
    let kv = counts.iter().copied().find(|&c| c > 0).unwrap_or(0);
    if !layered(arch) {
        return Ok((kv, Vec::new()));
    }
    // (llama.cpp windows every attention layer of a file that gives one.)
    let window_key = format!("{arch}.attention.sliding_window");
    if let Some(w) = info
        .get(&window_key)
        .and_then(Value::as_int)
        .filter(|&w| w > 0)
    {
        return Err(bad(
            NnErrorKind::UnsupportedOperation,
            format!(
                "`{window_key}` is {w}: weft-nn runs `{arch}` files whose attention \
                 layers see every position"
            ),
        ));
    }
    if kv == 0 {
        return Err(bad(
            NnErrorKind::UnsupportedOperation,
            format!(
                "`{key}` is 0 for every layer: weft-nn runs `{arch}` files with attention layers"
            ),
        ));
    }
    if let Some(other) = counts.iter().find(|&&c| c != 0 && c != kv) {
        return Err(bad(
            NnErrorKind::UnsupportedOperation,
            format!(
                "`{key}` gives attention layers {kv} and {other} KV heads: weft-nn runs \
                 files whose attention layers have one count"
            ),
        ));
    }
    // (A single count: every layer attends, as llama.cpp reads it.)
    let layers = match counts.len() {
        1 => Vec::new(),
        n => {
            let blocks = info
                .get(&format!("{arch}.block_count"))
                .and_then(Value::as_int);
            if blocks != Some(n as i64) {
                return Err(bad(
                    NnErrorKind::InvalidEncoding,
                    format!("`{key}` has {n} counts, not one per layer (`{arch}.block_count`)"),
                ));
            }
            counts.iter().map(|&c| c == 0).collect()
        }
    };
    Ok((kv, layers))
}

/// LFM2's convolutions ([`ShortConv`]) in the `layers` that do not attend
/// ([`kv_heads`]); none for other architectures.
pub(super) fn short_conv(
    arch: &str,
    info: &GgufInfo,
    layers: &[bool],
) -> Result<Option<ShortConv>, NnError> {
    if !hybrid(arch) {
        return Ok(None);
    }
    let bad = |kind, m: String| NnError::new(kind, m);
    let taps_key = format!("{arch}.shortconv.l_cache");
    let taps = info
        .get(&taps_key)
        .and_then(Value::as_int)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| {
            bad(
                NnErrorKind::InvalidEncoding,
                format!("GGUF metadata `{taps_key}` is missing or not an integer"),
            )
        })?;
    // (llama.cpp requires more than one: the state is the taps but one.)
    if taps < 2 {
        return Err(bad(
            NnErrorKind::InvalidEncoding,
            format!("`{taps_key}` is {taps}: a convolution needs 2 taps or more"),
        ));
    }
    Ok(Some(ShortConv {
        taps,
        layers: layers.to_vec(),
    }))
}

impl HParams {
    /// The final norm's tensor: `output_norm`, LFM2's `token_embd_norm`.
    pub fn output_norm_name(&self) -> &'static str {
        match self.short_conv {
            Some(_) => "token_embd_norm",
            None => "output_norm",
        }
    }

    /// Whether layer `l` convolves (LFM2's [`ShortConv`]) instead of
    /// attending.
    pub fn convolves(&self, l: usize) -> bool {
        self.short_conv
            .as_ref()
            .is_some_and(|c| c.layers.get(l).copied().unwrap_or(false))
    }
}
