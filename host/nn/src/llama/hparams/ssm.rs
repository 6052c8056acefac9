//! The Mamba-2 layers of Granite 4.0-H (`granitehybrid`) and Nemotron-H
//! (`nemotron_h`): the shape of their selective state spaces, from the
//! `ssm.*` metadata, and Nemotron-H's blocks as weft-nn's layers; and
//! pure Mamba-2's (`mamba2`) and Mamba-1's (`mamba`), whose every block is
//! such a layer alone.

use super::HParams;
use crate::gguf::Value;
pub(crate) use crate::gpu::{Mamba2, Selective};
use crate::{GgufInfo, NnError, NnErrorKind};

/// The most floats a Mamba layer's state (and its `ssm_in` rows) may take
/// per session.
const MAX_STATE: usize = 1 << 26;

/// Granite 4.0-H's, Nemotron-H's and pure Mamba-2's Mamba-2 layers in the
/// `layers` that do not attend
/// (`super::conv::kv_heads`), and Mamba-1's; none for other architectures.
/// Every `ssm.*` key is required (as llama.cpp requires them; Mamba-1's
/// have no `group_count`, its `dt_b_c_rms` is optional), and a shape that
/// does not divide (channels into heads, heads into groups) is refused.
pub(super) fn read(
    arch: &str,
    info: &GgufInfo,
    layers: &[bool],
) -> Result<Option<Mamba2>, NnError> {
    if arch != "granitehybrid" && !nemotron_h(arch) && !attentionless(arch) {
        return Ok(None);
    }
    let int = |key: &str| {
        let key = format!("{arch}.ssm.{key}");
        info.get(&key)
            .and_then(Value::as_int)
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| {
                NnError::new(
                    NnErrorKind::InvalidEncoding,
                    format!("GGUF metadata `{key}` is missing, 0 or not an integer"),
                )
            })
    };
    let inner = int("inner_size")?;
    // (Mamba-1's channels are each a head of one group; its
    // `time_step_rank` is `dt`'s width before `ssm_dt`.)
    let selective = match arch {
        "mamba" => Some(Selective {
            dt_rank: int("time_step_rank")?,
            // (A boolean: an integer here; false without it.)
            norms: match info.get(&format!("{arch}.ssm.dt_b_c_rms")) {
                None => false,
                Some(Value::Int(b)) => *b != 0,
                Some(_) => {
                    return Err(NnError::new(
                        NnErrorKind::InvalidEncoding,
                        format!("GGUF metadata `{arch}.ssm.dt_b_c_rms` is not a boolean"),
                    ));
                }
            },
        }),
        _ => None,
    };
    let (heads, groups) = match selective {
        Some(_) => (inner, 1),
        None => (int("time_step_rank")?, int("group_count")?),
    };
    let m = Mamba2 {
        taps: int("conv_kernel")?,
        inner,
        state: int("state_size")?,
        heads,
        groups,
        layers: layers.to_vec(),
        selective,
    };
    let bad = |m: String| Err(NnError::new(NnErrorKind::InvalidEncoding, m));
    if m.taps < 2 {
        return bad(format!(
            "`{arch}.ssm.conv_kernel` is {}: a convolution needs 2 taps or more",
            m.taps
        ));
    }
    // (A bound far above any release's, 8192 x 128 for Nemotron-H 8B: a
    // file past it would ask each session for gigabytes per layer.)
    let floats = |a: usize, b: usize| a.checked_mul(b).filter(|&f| f <= MAX_STATE);
    let rows = floats(2 * m.groups, m.state)
        .and_then(|bc| bc.checked_add(m.heads)?.checked_add(floats(2, m.inner)?))
        .filter(|&r| r <= MAX_STATE);
    if floats(m.inner, m.state).is_none() || rows.is_none() || m.taps > 64 {
        return bad(format!(
            "`{arch}.ssm.*` asks for a state of {} x {} floats a layer and {} taps: \
             weft-nn runs up to {MAX_STATE} floats and 64 taps",
            m.inner, m.state, m.taps
        ));
    }
    if !m.inner.is_multiple_of(m.heads) || !m.heads.is_multiple_of(m.groups) {
        return bad(format!(
            "`{arch}.ssm.inner_size` ({}), `time_step_rank` ({}) and `group_count` ({}): \
             the channels must divide into the heads, and the heads into the groups",
            m.inner, m.heads, m.groups
        ));
    }
    // (Mamba-1's `dt` is brought up to its channels from fewer floats:
    // `ceil(embd / 16)` in every release.)
    if let Some(s) = m.selective.filter(|s| s.dt_rank > m.inner) {
        return bad(format!(
            "`{arch}.ssm.time_step_rank` ({}) is more than `inner_size` ({}): Mamba-1's \
             `dt` is brought up to its channels from fewer floats",
            s.dt_rank, m.inner
        ));
    }
    Ok(Some(m))
}

/// Whether `arch`'s files are Mamba-2 layers alone (`mamba2`: Mamba-2
/// 130m to 2.7b, Codestral Mamba 7B) or Mamba-1's (`mamba`: Mamba 130m to
/// 2.8b, Falcon-Mamba 7B), each a block under its norm, without attention
/// or a feed-forward.
pub(super) fn attentionless(arch: &str) -> bool {
    matches!(arch, "mamba2" | "mamba")
}

/// Whether `arch` is Nemotron-H's: dense (`nemotron_h`), or with
/// mixtures for feed-forwards (`nemotron_h_moe`, Nemotron 3 Nano's).
pub(super) fn nemotron_h(arch: &str) -> bool {
    matches!(arch, "nemotron_h" | "nemotron_h_moe")
}

/// Per layer, the file's blocks of its mixer and of its feed-forward
/// (`None`: the layer has none).
pub(crate) type Blocks = Vec<(usize, Option<usize>)>;

/// Nemotron-H's blocks as weft-nn's layers, and its feed-forwards' width.
///
/// Each of its blocks is one of a Mamba-2 layer (its KV head count and
/// `feed_forward_length` entries are 0), an attention layer (its KV head
/// count is not), or a feed-forward alone (its `feed_forward_length` is
/// not), each under a norm of its own. A feed-forward block joins the
/// mixer block before it as one layer (its norm the layer's feed-forward
/// norm); a mixer block that no feed-forward follows is a layer without
/// one. A feed-forward block first or after another, or widths that
/// differ, are refused. `recurrent` is per block whether its KV head count
/// is 0 ([`super::conv::kv_heads`]). Pure Mamba-2's and Mamba-1's blocks
/// are each a layer without a feed-forward. Empty for other architectures.
pub(super) fn blocks(
    arch: &str,
    info: &GgufInfo,
    recurrent: &[bool],
) -> Result<(Blocks, usize), NnError> {
    // (Pure Mamba-2's and Mamba-1's: layers without a feed-forward,
    // `recurrent` one per block.)
    if attentionless(arch) {
        return Ok(((0..recurrent.len()).map(|b| (b, None)).collect(), 0));
    }
    if !nemotron_h(arch) {
        return Ok((Vec::new(), 0));
    }
    let key = format!("{arch}.feed_forward_length");
    let bad = |m: String| NnError::new(NnErrorKind::InvalidEncoding, m);
    let widths: Vec<usize> = match info.get(&key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_int().and_then(|v| usize::try_from(v).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("`{key}` holds other than non-negative integers")))?,
        _ => {
            return Err(bad(format!(
                "GGUF metadata `{key}` is not a list (a width per block, 0 for the \
                 Mamba-2 and attention blocks)"
            )));
        }
    };
    let count = info
        .get(&format!("{arch}.block_count"))
        .and_then(Value::as_int);
    if count != Some(widths.len() as i64) {
        return Err(bad(format!(
            "`{key}` has {} widths, not one per block (`{arch}.block_count`)",
            widths.len()
        )));
    }
    let Some(width) = widths.iter().copied().find(|&w| w > 0) else {
        return Err(NnError::new(
            NnErrorKind::UnsupportedOperation,
            format!(
                "`{key}` is 0 for every block: weft-nn runs `{arch}` files with feed-forward blocks"
            ),
        ));
    };
    let mut layers: Blocks = Vec::new();
    for (b, &w) in widths.iter().enumerate() {
        match (w, layers.last_mut()) {
            (0, _) => layers.push((b, None)),
            (w, _) if w != width => {
                return Err(NnError::new(
                    NnErrorKind::UnsupportedOperation,
                    format!(
                        "`{key}` gives feed-forward blocks {width} and {w}: weft-nn runs \
                         files whose feed-forwards have one width"
                    ),
                ));
            }
            (_, Some((_, ffn @ None))) => *ffn = Some(b),
            _ => {
                return Err(NnError::new(
                    NnErrorKind::UnsupportedOperation,
                    format!(
                        "block {b} is a feed-forward (`{key}`) after no Mamba-2 or \
                         attention block: weft-nn runs files whose feed-forward blocks \
                         each follow one"
                    ),
                ));
            }
        }
    }
    debug_assert!(recurrent.is_empty() || recurrent.len() == widths.len());
    Ok((layers, width))
}

impl HParams {
    /// The file's blocks holding layer `l`: its mixer's (attention, or a
    /// convolution or scan), and its feed-forward's (`None`: the layer has
    /// none). The same block but in Nemotron-H's files ([`blocks`]).
    pub fn blocks_of(&self, l: usize) -> (usize, Option<usize>) {
        self.blocks.get(l).copied().unwrap_or((l, Some(l)))
    }

    /// Whether the feed-forwards are blocks of their own (Nemotron-H's),
    /// each under its own `attn_norm`.
    pub fn ffn_blocks(&self) -> bool {
        !self.blocks.is_empty()
    }

    /// Whether layer `l` scans (a [`Mamba2`] layer) instead of
    /// attending.
    pub fn scans(&self, l: usize) -> bool {
        self.ssm
            .as_ref()
            .is_some_and(|m| m.layers.get(l).copied().unwrap_or(false))
    }

    /// Mamba-1's state spaces and what its layers have beside
    /// ([`Selective`]); `None` for any other model.
    pub fn selective(&self) -> Option<(&Mamba2, Selective)> {
        self.ssm.as_ref().and_then(|m| Some((m, m.selective?)))
    }

    /// Whether layer `l` attends (neither convolves nor scans): it keeps
    /// keys and values.
    pub fn attends(&self, l: usize) -> bool {
        !self.convolves(l) && !self.scans(l)
    }
}
