//! The ggml block formats the dot kernels do not read (Q5_0, Q5_1, the
//! K-quants Q2_K…Q6_K, which most published GGUF files use, the i-quants
//! and MXFP4): their
//! dequantisation, and their transcoding at load into a format the kernels
//! do read.
//!
//! - Q4_K becomes Q4_1, block for block: each 32-value sub-block's scale
//!   (`d × sc`) and minimum (`−dmin × m`) are one Q4_1 block's scale and
//!   offset, and the nibbles stay as they are. The only loss is rounding
//!   those two products to f16 (a relative 2⁻¹¹ at most). The weights
//!   take 11% more bytes (160 per 256 values instead of 144) and run on
//!   the Q4_1 kernels.
//! - IQ4_XS becomes Q8_0 as Q4_K becomes Q4_1: each 32-value sub-block's
//!   scale (`d × (ls − 32)`) is rounded to f16, and its values are the
//!   int8s of IQ4_NL's table. IQ4_NL becomes Q8_0 exactly (its scale is
//!   kept).
//! - Q5_0 becomes Q8_0 exactly (`q − 16` fits a byte, the scale is kept),
//!   and so does MXFP4 (its E2M1 values doubled are the integers of
//!   [`MXFP4_VALUES`], under half its power-of-two scale, an f16 for
//!   every scale but the extremes, which go through f32).
//! - The i-quants on a lattice (IQ1_*, IQ2_*, IQ3_*: [`super::lattice`])
//!   become Q8_0 as IQ4_XS does where a 32's values share one scale, and
//!   as the K-quants do where each 16 has its own (IQ1_M, IQ2_XS, IQ2_S).
//!   Their weights take 2.5 to 5.4 times their file's bytes.
//! - The others become Q8_0 (272 bytes per 256 values) through their f32
//!   values (quantised as
//!   llama.cpp's `quantize_row_q8_0` does: scale `max|x| / 127`, rounded
//!   to nearest). That adds about half a Q8_0 step (1/254 of a block's
//!   largest value; 1/226 at most, with the step rounded to f16): a
//!   fraction of what their own 2–6 bits lose.
//!
//! Layouts follow ggml (`ggml-quants.c`); the tests compare every format
//! with gguf-py's dequantisation of random blocks.

use super::{BLOCK, half, round_away};
use crate::GgmlType;

/// Q4_K's and Q5_K's 6-bit sub-block scales and minimums (8 each),
/// packed in 12 bytes (`get_scale_min_k4`).
fn scale_min_k4(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0xf) | ((s[j] >> 2) & 0x30);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30);
    }
    (sc, m)
}

/// IQ4_NL's and IQ4_XS's values (ggml's `kvalues_iq4nl`), by nibble.
const IQ4_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// IQ4_XS's sub-block `ib`'s scale, `d × (ls − 32)` with `ls` 4 bits of
/// `scales_l` and 2 of `scales_h`.
fn iq4_xs_scale(b: &[u8], ib: usize) -> f32 {
    let high = u16::from_le_bytes([b[2], b[3]]);
    let low = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0xf;
    let ls = i32::from(low) | (i32::from((high >> (2 * ib)) & 3) << 4);
    half(b, 0) * (ls - 32) as f32
}

/// MXFP4's E2M1 values, doubled (as ggml's `kvalues_mxfp4`: its scale is
/// halved to match): a nibble's value, its bit 3 the sign.
const MXFP4_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// An MXFP4 block's scale (E8M0 `e`), halved: 2^(e − 128), as ggml's
/// `GGML_E8M0_TO_FP32_HALF`.
fn mxfp4_scale(e: u8) -> f32 {
    (f64::from(e) - 128.0).exp2() as f32
}

/// A block's 32 4-bit value indices (MXFP4's, IQ4_NL's, an IQ4_XS
/// sub-block's): byte `j`'s low nibble is value `j`, its high nibble
/// value `j + 16`.
fn nibbles(qs: &[u8]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for (j, &b) in qs.iter().enumerate() {
        q[j] = b & 0xf;
        q[j + 16] = b >> 4;
    }
    q
}

/// Q5_0/Q5_1's 5-bit values of one block of 32.
fn five_bits(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes(qh.try_into().expect("4 bytes"));
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = (qs[j] & 0xf) | ((((qh >> j) & 1) as u8) << 4);
        q[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    q
}

/// Dequantises `out.len()` values of `ty` (one of this module's formats).
pub(super) fn dequantize(ty: GgmlType, raw: &[u8], out: &mut [f32]) {
    let size = ty.block().1 as usize;
    let n = ty.block().0 as usize;
    for (o, b) in out.chunks_exact_mut(n).zip(raw.chunks_exact(size)) {
        match ty {
            GgmlType::Q5_0 => {
                let d = half(b, 0);
                for (o, q) in o.iter_mut().zip(five_bits(&b[2..6], &b[6..22])) {
                    *o = d * (i32::from(q) - 16) as f32;
                }
            }
            GgmlType::MXFP4 => {
                let d = mxfp4_scale(b[0]);
                for (o, q) in o.iter_mut().zip(nibbles(&b[1..17])) {
                    *o = d * f32::from(MXFP4_VALUES[usize::from(q)]);
                }
            }
            GgmlType::IQ4_NL => {
                let d = half(b, 0);
                for (o, q) in o.iter_mut().zip(nibbles(&b[2..18])) {
                    *o = d * f32::from(IQ4_VALUES[usize::from(q)]);
                }
            }
            GgmlType::IQ4_XS => {
                for (ib, o) in o.chunks_exact_mut(32).enumerate() {
                    let dl = iq4_xs_scale(b, ib);
                    let qs = &b[8 + 16 * ib..][..16];
                    for (o, q) in o.iter_mut().zip(nibbles(qs)) {
                        *o = dl * f32::from(IQ4_VALUES[usize::from(q)]);
                    }
                }
            }
            GgmlType::Q5_1 => {
                let (d, m) = (half(b, 0), half(b, 2));
                for (o, q) in o.iter_mut().zip(five_bits(&b[4..8], &b[8..24])) {
                    *o = d * f32::from(q) + m;
                }
            }
            GgmlType::Q2_K => {
                let (scales, qs) = (&b[..16], &b[16..80]);
                let (d, dmin) = (half(b, 80), half(b, 82));
                for (e, o) in o.iter_mut().enumerate() {
                    let s = scales[e / 16];
                    let q = two_bits(qs, e);
                    *o = d * f32::from(s & 0xf) * f32::from(q) - dmin * f32::from(s >> 4);
                }
            }
            GgmlType::Q3_K => {
                let (hmask, qs, packed) = (&b[..32], &b[32..96], &b[96..108]);
                let d = half(b, 108);
                let mut scales = [0i8; 16];
                for (s, scale) in scales.iter_mut().enumerate() {
                    let low = if s < 8 {
                        packed[s] & 0xf
                    } else {
                        packed[s - 8] >> 4
                    };
                    let high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
                    *scale = (low | (high << 4)) as i8 - 32;
                }
                for (e, o) in o.iter_mut().enumerate() {
                    let high = (hmask[e % 32] >> (e / 32)) & 1;
                    let q = i32::from(two_bits(qs, e)) - if high == 0 { 4 } else { 0 };
                    *o = d * f32::from(scales[e / 16]) * q as f32;
                }
            }
            GgmlType::Q4_K | GgmlType::Q5_K => {
                let (d, dmin) = (half(b, 0), half(b, 2));
                let (sc, m) = scale_min_k4(&b[4..16]);
                let (qh, qs) = if ty == GgmlType::Q5_K {
                    (Some(&b[16..48]), &b[48..176])
                } else {
                    (None, &b[16..144])
                };
                for (e, o) in o.iter_mut().enumerate() {
                    let (j, i) = (e / 32, e % 32);
                    let mut q = (qs[32 * (j / 2) + i] >> (4 * (j % 2))) & 0xf;
                    if let Some(qh) = qh {
                        q |= ((qh[i] >> j) & 1) << 4;
                    }
                    *o = d * f32::from(sc[j]) * f32::from(q) - dmin * f32::from(m[j]);
                }
            }
            GgmlType::Q6_K => {
                let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
                let d = half(b, 208);
                for (e, o) in o.iter_mut().enumerate() {
                    let (h, r) = (e / 128, e % 128);
                    let low = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0xf;
                    let high = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
                    let q = i32::from(low | (high << 4)) - 32;
                    *o = d * f32::from(scales[e / 16] as i8) * q as f32;
                }
            }
            _ if super::lattice::is_lattice(ty) => super::lattice::dequantize(ty, b, o),
            _ => unreachable!("{ty:?} is not a transcoded format"),
        }
    }
}

/// Q2_K's and Q3_K's 2-bit value `e` of a super-block: 4 per byte, the
/// bytes of each half read 4 times over at growing shifts.
fn two_bits(qs: &[u8], e: usize) -> u8 {
    let (h, r) = (e / 128, e % 128);
    (qs[32 * h + r % 32] >> (2 * (r / 32))) & 3
}

/// Whether weights of `ty` are transcoded at load ([`transcode`]).
pub(crate) fn transcoded(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q2_K
            | GgmlType::Q3_K
            | GgmlType::Q4_K
            | GgmlType::Q5_K
            | GgmlType::Q6_K
            | GgmlType::MXFP4
            | GgmlType::IQ4_NL
            | GgmlType::IQ4_XS
    ) || super::lattice::is_lattice(ty)
}

/// Values a Q8_0 block can hold: its scale, `max|x| / 127`, is an f16.
const Q8_0_LIMIT: f32 = 65504.0 * 127.0;

/// Blocks transcoded per task (they are independent).
const CHUNK: usize = 256;

/// `raw` (whole blocks of `ty`, a transcoded format) in the format the dot
/// kernels read for it: Q4_1 for Q4_K, Q8_0 for the others. Blocks go one
/// at a time through a small buffer, in parallel; an error says why the
/// values cannot be held.
pub(crate) fn transcode(ty: GgmlType, raw: &[u8]) -> Result<(GgmlType, Vec<u8>), String> {
    use rayon::prelude::*;
    let size = ty.block().1 as usize;
    if ty == GgmlType::Q4_K {
        let parts: Option<Vec<Vec<u8>>> = raw.par_chunks(CHUNK * size).map(q4_k_as_q4_1).collect();
        if let Some(parts) = parts {
            return Ok((GgmlType::Q4_1, parts.concat()));
        }
    }
    let parts: Result<Vec<Vec<u8>>, String> = raw
        .par_chunks(CHUNK * size)
        .map(|chunk| as_q8_0(ty, chunk))
        .collect();
    Ok((GgmlType::Q8_0, parts?.concat()))
}

/// Blocks of `ty` as Q8_0 blocks: Q5_0 exactly (`q − 16` and its scale),
/// MXFP4 exactly where its scale is an f16 (2^−24 to 2^15), IQ4_NL
/// exactly and IQ4_XS with each sub-block's scale rounded to f16, the
/// others through their f32 values.
fn as_q8_0(ty: GgmlType, raw: &[u8]) -> Result<Vec<u8>, String> {
    let (n, size) = (ty.block().0 as usize, ty.block().1 as usize);
    let mut out = Vec::with_capacity(raw.len() / size * (n / BLOCK) * 34);
    let mut values = [0f32; 256];
    for b in raw.chunks_exact(size) {
        if super::lattice::is_lattice(ty) {
            super::lattice::as_q8_0(ty, b, &mut out)?;
            continue;
        }
        if ty == GgmlType::Q5_0 {
            out.extend_from_slice(&b[..2]);
            out.extend(five_bits(&b[2..6], &b[6..22]).map(|q| (q as i8 - 16) as u8));
            continue;
        }
        // The table formats' blocks as their int8 values under their
        // scale, where it is an f16 (MXFP4's exactly so).
        let start = out.len();
        let mut table = |scale, qs, table| table_block(scale, qs, table, &mut out);
        let kept = match ty {
            GgmlType::MXFP4 => {
                (104..=143).contains(&b[0]) && table(mxfp4_scale(b[0]), &b[1..17], &MXFP4_VALUES)
            }
            GgmlType::IQ4_NL => table(half(b, 0), &b[2..18], &IQ4_VALUES),
            GgmlType::IQ4_XS => {
                (0..8).all(|ib| table(iq4_xs_scale(b, ib), &b[8 + 16 * ib..][..16], &IQ4_VALUES))
            }
            _ => false,
        };
        if kept {
            continue;
        }
        out.truncate(start);
        let values = &mut values[..n];
        dequantize(ty, b, values);
        for xs in values.chunks_exact(BLOCK) {
            quantize_q8_0(xs, &mut out)?;
        }
    }
    Ok(out)
}

/// A block of the 32 values `table[q]` (`qs`' indices, [`nibbles`]) under
/// `scale` rounded to f16, as a Q8_0 block appended to `out`; false, and
/// nothing appended, where that is past f16 (the caller goes through f32,
/// which says why it fails).
fn table_block(scale: f32, qs: &[u8], table: &[i8; 16], out: &mut Vec<u8>) -> bool {
    let h = super::f32_to_f16(scale);
    if h & 0x7c00 == 0x7c00 {
        return false;
    }
    out.extend_from_slice(&h.to_le_bytes());
    out.extend(nibbles(qs).map(|q| table[usize::from(q)] as u8));
    true
}

/// Q4_K super-blocks as Q4_1 blocks; `None` if a sub-block's scale or
/// minimum is beyond f16 (the caller goes through f32 instead).
fn q4_k_as_q4_1(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() / 144 * 8 * 20);
    for b in raw.chunks_exact(144) {
        let (d, dmin) = (half(b, 0), half(b, 2));
        let (sc, m) = scale_min_k4(&b[4..16]);
        let qs = &b[16..144];
        for j in 0..8 {
            let scale = super::f32_to_f16(d * f32::from(sc[j]));
            let offset = super::f32_to_f16(-dmin * f32::from(m[j]));
            let finite = |h: u16| h & 0x7c00 != 0x7c00;
            if !finite(scale) || !finite(offset) {
                return None;
            }
            out.extend_from_slice(&scale.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            // Q4_1 holds values j and j + 16 in one byte; Q4_K's sub-block
            // holds value i in byte i (low or high nibble, by sub-block).
            let nib = |i: usize| (qs[32 * (j / 2) + i] >> (4 * (j % 2))) & 0xf;
            out.extend((0..16).map(|i| nib(i) | (nib(i + 16) << 4)));
        }
    }
    Some(out)
}

/// 32 values as a Q8_0 block appended to `out`, as llama.cpp's reference
/// `quantize_row_q8_0`.
pub(crate) fn quantize_q8_0(xs: &[f32], out: &mut Vec<u8>) -> Result<(), String> {
    let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
    if amax > Q8_0_LIMIT || amax.is_infinite() {
        return Err(format!(
            "a block holds {amax:e}, beyond what weft holds for this format (|x| ≤ {Q8_0_LIMIT:e})"
        ));
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&super::f32_to_f16(d).to_le_bytes());
    out.extend(
        xs.iter()
            .map(|&v| round_away(v * id).clamp(-127.0, 127.0) as i8 as u8),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{Q8Row, dequantize as dequantize_any, dot_row};

    fn ty(name: &str) -> GgmlType {
        match name {
            "MXFP4" => GgmlType::MXFP4,
            "IQ4_NL" => GgmlType::IQ4_NL,
            "IQ4_XS" => GgmlType::IQ4_XS,
            "Q5_0" => GgmlType::Q5_0,
            "Q5_1" => GgmlType::Q5_1,
            "Q2_K" => GgmlType::Q2_K,
            "Q3_K" => GgmlType::Q3_K,
            "Q4_K" => GgmlType::Q4_K,
            "Q5_K" => GgmlType::Q5_K,
            "Q6_K" => GgmlType::Q6_K,
            "IQ2_XXS" => GgmlType::IQ2_XXS,
            "IQ2_XS" => GgmlType::IQ2_XS,
            "IQ2_S" => GgmlType::IQ2_S,
            "IQ3_XXS" => GgmlType::IQ3_XXS,
            "IQ3_S" => GgmlType::IQ3_S,
            "IQ1_S" => GgmlType::IQ1_S,
            "IQ1_M" => GgmlType::IQ1_M,
            other => panic!("unknown type {other}"),
        }
    }

    /// (type, block bytes, gguf-py's values) of `tests/data/ggml_blocks.json`.
    fn cases() -> Vec<(GgmlType, Vec<u8>, Vec<f32>)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ggml_blocks.json");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases: Vec<_> = json["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let hex = c["bytes"].as_str().unwrap();
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                let values = c["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                (ty(c["type"].as_str().unwrap()), bytes, values)
            })
            .collect();
        assert_eq!(cases.len(), 17, "every transcoded format has a case");
        cases
    }

    #[test]
    fn every_format_dequantises_as_gguf_py_does() {
        for (ty, bytes, want) in cases() {
            assert!(transcoded(ty));
            let mut got = vec![f32::NAN; want.len()];
            dequantize_any(ty, &bytes, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= w.abs() * 1e-6,
                    "{ty:?} value {i}: ours {g}, gguf-py {w}"
                );
            }
        }
    }

    #[test]
    fn transcoded_blocks_keep_their_values() {
        for (ty, bytes, want) in cases() {
            let (to, data) = transcode(ty, &bytes).unwrap();
            let mut got = vec![f32::NAN; want.len()];
            dequantize_any(to, &data, &mut got);
            for (b, (g, w)) in got.chunks(BLOCK).zip(want.chunks(BLOCK)).enumerate() {
                let amax = w.iter().fold(0f32, |a, v| a.max(v.abs()));
                // Q5_0 → Q8_0 is exact, and MXFP4 under a scale an f16
                // holds; Q4_K → Q4_1 rounds a sub-block's
                // scale and minimum to f16; the rest are requantised to 8
                // bits: half a step (amax / 254), plus up to 127 × the
                // step's rounding to f16 (2⁻¹¹ of it): amax / 226.
                let bound = match ty {
                    GgmlType::Q5_0 | GgmlType::IQ4_NL => 0.0,
                    // (Each value's own scale rounded: 2⁻¹¹ of it.)
                    GgmlType::IQ4_XS
                    | GgmlType::IQ2_XXS
                    | GgmlType::IQ3_XXS
                    | GgmlType::IQ3_S
                    | GgmlType::IQ1_S => amax * 4.9e-4,
                    GgmlType::MXFP4 if (104..=143).contains(&bytes[b * 17]) => 0.0,
                    GgmlType::Q4_K => amax * 2e-3,
                    _ => amax / 226.0,
                };
                for (g, w) in g.iter().zip(w) {
                    assert!(
                        (g - w).abs() <= bound,
                        "{ty:?} → {to:?}, block {b}: {g} for {w} (bound {bound})"
                    );
                }
            }
            let want_to = if ty == GgmlType::Q4_K {
                GgmlType::Q4_1
            } else {
                GgmlType::Q8_0
            };
            assert_eq!(to, want_to, "{ty:?}");
        }
    }

    #[test]
    fn dot_products_of_transcoded_weights_match_their_values() {
        for (ty, bytes, want) in cases() {
            let x: Vec<f32> = (0..want.len())
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let exact: f32 = want.iter().zip(&x).map(|(w, x)| w * x).sum();
            let (to, data) = transcode(ty, &bytes).unwrap();
            let got = dot_row(to, &data, &Q8Row::quantize(&x), &x);
            // 8-bit activations (and, but for Q5_0, the transcoding).
            let scale: f32 = want.iter().zip(&x).map(|(w, x)| (w * x).abs()).sum();
            assert!(
                (got - exact).abs() <= scale * 0.02,
                "{ty:?}: {got} for {exact} (scale {scale})"
            );
            // Any format still answers through f32 (no kernel reads it).
            let slow = crate::quant::dot_row_portable(ty, &bytes, &Q8Row::quantize(&x), &x);
            assert!((slow - exact).abs() <= scale * 1e-5, "{ty:?}: {slow}");
        }
    }

    #[test]
    fn q4_k_scales_beyond_f16_go_through_f32() {
        let mut block = vec![0u8; 144];
        block[..2].copy_from_slice(&crate::quant::f32_to_f16(60000.0).to_le_bytes());
        block[4] = 63; // first sub-block's scale: 63 × 60000 is past f16
        block[16] = 0x01;
        let (to, data) = transcode(GgmlType::Q4_K, &block).unwrap();
        assert_eq!(to, GgmlType::Q8_0);
        let mut got = vec![0f32; 256];
        dequantize_any(to, &data, &mut got);
        assert!((got[0] - 63.0 * 60000.0).abs() <= 63.0 * 60000.0 / 254.0);
    }

    #[test]
    fn values_beyond_a_q8_0_block_are_refused() {
        // Q6_K: d = 60000, first scale 127, first value q − 32 = −32.
        let mut block = vec![0u8; 210];
        block[208..].copy_from_slice(&crate::quant::f32_to_f16(60000.0).to_le_bytes());
        block[192] = 127;
        let err = transcode(GgmlType::Q6_K, &block).unwrap_err();
        assert!(err.contains("beyond what weft holds"), "{err}");
    }

    #[test]
    fn many_blocks_transcode_as_one_at_a_time() {
        // More than one parallel chunk, each block its own.
        let (ty, bytes, _) = cases().into_iter().find(|c| c.0 == GgmlType::Q6_K).unwrap();
        let many: Vec<u8> = (0..CHUNK * 2 + 1).flat_map(|_| bytes.clone()).collect();
        let (_, one) = transcode(ty, &bytes).unwrap();
        let (_, all) = transcode(ty, &many).unwrap();
        assert_eq!(all.len(), one.len() * (CHUNK * 2 + 1));
        assert!(all.chunks_exact(one.len()).all(|c| c == one));
    }
}
