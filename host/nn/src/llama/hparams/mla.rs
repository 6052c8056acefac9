//! DeepSeek-V2's multi-head latent attention (`deepseek2`: DeepSeek-V2,
//! V2-Lite, V2.5, V3, R1; Kimi K2; GLM-4.7-Flash; and `minicpm3`,
//! MiniCPM3-4B's): the shape of its latents, from the `attention.*`
//! metadata.
//!
//! weft-nn runs it as llama.cpp runs the older files (its "naive" path):
//! each token's keys and values decompressed per head from the latent,
//! then attention as any other. A head's query and key are laid out with
//! their rotated part first (`[pe, nope]`, where the file has `[nope,
//! pe]`: the scores are the same sums), so that the rotation reaches the
//! first `rope` floats of a head as it does elsewhere; a value is padded
//! with zeros to the key's width, so that the cache's heads have one
//! width, and the attention's output is cut back to the values' width
//! before the output product.

use crate::gguf::Value;
use crate::{GgufInfo, NnError, NnErrorKind};

/// The widest latent (and head) weft-nn reads, far past any release's
/// (512 and 1536, heads of 192 and 256): a file past it would only
/// allocate.
const MAX_WIDTH: usize = 1 << 16;

/// A `deepseek2` or `minicpm3` file's latent attention.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mla {
    /// The queries' latent (`attention.q_lora_rank`): `attn_q_a`, normed,
    /// then `attn_q_b`; 0 for one product (`attn_q`: V2-Lite's; never
    /// MiniCPM3's).
    pub q_rank: usize,
    /// The keys' and values' latent (`attention.kv_lora_rank`).
    pub kv_rank: usize,
    /// Per head: the keys' part that is not rotated.
    pub nope: usize,
    /// Per head: the keys' rotated part, one for every head (from the
    /// latent's product).
    pub rope: usize,
    /// Per head: the values' width.
    pub value: usize,
    /// Whether the file gives the latent's product per head, its keys'
    /// part transposed (`attn_k_b`, `attn_v_b`: llama.cpp's converter
    /// since 2025, with the `*_mla` keys), rather than one product for
    /// every head (`attn_kv_b`).
    pub split: bool,
}

impl Mla {
    /// A head's key width (and query's): its two parts.
    pub fn key(&self) -> usize {
        self.nope + self.rope
    }

    /// The rows of the product from the normed latent: per head, the
    /// keys' unrotated part then the values.
    pub fn kv_b_rows(&self, heads: usize) -> usize {
        heads * (self.nope + self.value)
    }
}

/// A `deepseek2` or `minicpm3` file's latent attention (none for other
/// architectures), each key required as llama.cpp requires it, and the
/// shapes it runs. A `minicpm3` file's head widths default to `head`
/// (the width over the heads), as its converter writes no value width and
/// llama.cpp reads it so; its queries' latent is required.
pub(super) fn read(arch: &str, info: &GgufInfo, head: usize) -> Result<Option<Mla>, NnError> {
    let minicpm3 = arch == "minicpm3";
    if arch != "deepseek2" && !minicpm3 {
        return Ok(None);
    }
    let get = |key: &str| {
        info.get(&format!("{arch}.{key}"))
            .and_then(Value::as_int)
            .and_then(|v| usize::try_from(v).ok())
    };
    let bad = |kind, m: String| Err(NnError::new(kind, m));
    let int = |key: &str| {
        get(key).filter(|&v| v > 0).ok_or_else(|| {
            NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("GGUF metadata `{arch}.{key}` is missing, 0 or not an integer"),
            )
        })
    };
    // (Mistral Large 3's files, also `deepseek2`, scale their queries by
    // position: not run.)
    let temp = format!("{arch}.attention.temperature_scale");
    if info
        .get(&temp)
        .and_then(Value::as_float)
        .is_some_and(|t| t != 0.0)
    {
        return bad(
            NnErrorKind::UnsupportedOperation,
            format!("`{temp}`: weft-nn runs latent attention without a temperature"),
        );
    }
    // The split files' key and value widths are the latent's (as llama.cpp
    // runs them, one head of it); the heads' are the `*_mla` keys (both,
    // and not 0, as llama.cpp's `is_mla` asks).
    let mla_keys = ["attention.key_length_mla", "attention.value_length_mla"];
    // (MiniCPM3's product is always whole, as llama.cpp loads it.)
    let split = !minicpm3 && mla_keys.iter().all(|k| get(k).is_some_and(|v| v > 0));
    let (key, value) = match split {
        true => (
            int("attention.key_length_mla")?,
            int("attention.value_length_mla")?,
        ),
        false if minicpm3 => {
            let key = get("attention.key_length").unwrap_or(head);
            (key, get("attention.value_length").unwrap_or(head))
        }
        false => (int("attention.key_length")?, int("attention.value_length")?),
    };
    // (Absent or 0 for one product, as llama.cpp reads it; MiniCPM3's
    // queries always go through their latent.)
    let q_key = format!("{arch}.attention.q_lora_rank");
    let q_rank = match info.get(&q_key) {
        _ if minicpm3 => int("attention.q_lora_rank")?,
        None => 0,
        Some(v) => (v.as_int())
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| {
                NnError::new(
                    NnErrorKind::InvalidEncoding,
                    format!("GGUF metadata `{q_key}` is not a non-negative integer"),
                )
            })?,
    };
    let m = Mla {
        q_rank,
        kv_rank: int("attention.kv_lora_rank")?,
        rope: int("rope.dimension_count")?,
        nope: 0,
        value,
        split,
    };
    if key <= m.rope || !m.rope.is_multiple_of(2) {
        return bad(
            NnErrorKind::InvalidEncoding,
            format!(
                "`{arch}.rope.dimension_count` ({}) does not fit the heads' keys of {key}: \
                 it must be even and leave a part that is not rotated",
                m.rope
            ),
        );
    }
    let widest = [key, value, m.kv_rank, m.q_rank]
        .into_iter()
        .max()
        .unwrap_or(0);
    if widest > MAX_WIDTH {
        return bad(
            NnErrorKind::InvalidEncoding,
            format!(
                "`{arch}.attention.*` gives a latent or head of {widest} floats: weft-nn \
                 reads up to {MAX_WIDTH}"
            ),
        );
    }
    if value > key {
        return bad(
            NnErrorKind::UnsupportedOperation,
            format!(
                "values of {value} floats a head, keys of {key}: weft-nn runs latent \
                 attention whose values are no wider than its keys (as every release's)"
            ),
        );
    }
    Ok(Some(Mla {
        nope: key - m.rope,
        ..m
    }))
}
