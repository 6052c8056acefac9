//! Granite 4.0-H's Mamba-2 layers (`granitehybrid`): the shape of their
//! selective state spaces, from the `ssm.*` metadata.

use super::HParams;
use crate::gguf::Value;
pub(crate) use crate::gpu::Mamba2;
use crate::{GgufInfo, NnError, NnErrorKind};

/// Granite 4.0-H's Mamba-2 layers in the `layers` that do not attend
/// (`super::conv::kv_heads`); none for other architectures. Every `ssm.*`
/// key is required (as llama.cpp requires them), and a shape that does
/// not divide (channels into heads, heads into groups) is refused.
pub(super) fn read(
    arch: &str,
    info: &GgufInfo,
    layers: &[bool],
) -> Result<Option<Mamba2>, NnError> {
    if arch != "granitehybrid" {
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
    let m = Mamba2 {
        taps: int("conv_kernel")?,
        inner: int("inner_size")?,
        state: int("state_size")?,
        heads: int("time_step_rank")?,
        groups: int("group_count")?,
        layers: layers.to_vec(),
    };
    let bad = |m: String| Err(NnError::new(NnErrorKind::InvalidEncoding, m));
    if m.taps < 2 {
        return bad(format!(
            "`{arch}.ssm.conv_kernel` is {}: a convolution needs 2 taps or more",
            m.taps
        ));
    }
    if !m.inner.is_multiple_of(m.heads) || !m.heads.is_multiple_of(m.groups) {
        return bad(format!(
            "`{arch}.ssm.inner_size` ({}), `time_step_rank` ({}) and `group_count` ({}): \
             the channels must divide into the heads, and the heads into the groups",
            m.inner, m.heads, m.groups
        ));
    }
    Ok(Some(m))
}

impl HParams {
    /// Whether layer `l` scans (Granite 4.0-H's [`Mamba2`]) instead of
    /// attending.
    pub fn scans(&self, l: usize) -> bool {
        self.ssm
            .as_ref()
            .is_some_and(|m| m.layers.get(l).copied().unwrap_or(false))
    }

    /// Whether layer `l` attends (neither convolves nor scans): it keeps
    /// keys and values.
    pub fn attends(&self, l: usize) -> bool {
        !self.convolves(l) && !self.scans(l)
    }
}
