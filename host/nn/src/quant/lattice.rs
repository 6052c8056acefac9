//! The i-quants on a lattice (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S,
//! IQ3_XXS, IQ3_S: what llama.cpp's `IQ1_*`, `IQ2_*` and `IQ3_*` files
//! hold): super-blocks of 256 values, each group of 4 or 8 an entry of a
//! codebook ([`super::grids`]) with its own signs, under a scale per 16 or
//! 32 values.
//!
//! Every such value is a small integer times its group's scale (IQ1's,
//! whose entries are shifted by ±1/8, after both are multiplied by 8), so a
//! super-block [decodes](decode) to 256 int8s under 16 scales. A 32-value
//! sub-block with one scale becomes a Q8_0 block as IQ4_XS's do: its
//! integers under that scale rounded to f16. The others (IQ2_XS, IQ2_S and
//! IQ1_M scale each 16 values apart) go through their f32 values, as the
//! K-quants do. Layouts follow ggml (`dequantize_row_iq*` in
//! `ggml-quants.c`); the tests compare each with gguf-py's dequantisation.

use super::grids::{IQ1S, IQ2S, IQ2XS, IQ2XXS, IQ3S, IQ3XXS};
use super::{BLOCK, half};
use crate::GgmlType;

/// The IQ2 codebooks' values, by index.
const IQ2_VALUES: [i8; 3] = [8, 25, 43];
const IQ3XXS_VALUES: [i8; 8] = [4, 12, 20, 28, 36, 44, 52, 62];
const IQ3S_VALUES: [i8; 8] = [1, 3, 5, 7, 9, 11, 13, 15];
/// IQ1's values, −1, 0 and 1, times 8 (its ±1/8 shift is added to them).
const IQ1_VALUES: [i8; 3] = [-8, 0, 8];

/// A super-block of 256 values as integers under a scale per 16.
pub(super) struct Decoded {
    pub q: [i8; 256],
    pub scales: [f32; 16],
}

/// Entry `idx` of a codebook of `n`-value entries over `values`.
fn entry<const N: usize>(grid: &[u16], idx: usize, values: &[i8]) -> [i8; N] {
    let bits = if N == 8 { 2 } else { 3 };
    let word = grid[idx];
    std::array::from_fn(|j| values[usize::from((word >> (bits * j)) & ((1 << bits) - 1))])
}

/// ggml's `ksigns_iq2xs`: 7 sign bits and an eighth that makes their
/// count even.
fn ksigns(i: u32) -> u8 {
    let i = i & 127;
    (i | ((i.count_ones() & 1) << 7)) as u8
}

/// `values` with the signs of `signs`' bits (bit `j`: value `j` negated).
fn signed(values: [i8; 8], signs: u8) -> [i8; 8] {
    std::array::from_fn(|j| {
        if signs >> j & 1 == 1 {
            -values[j]
        } else {
            values[j]
        }
    })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// A per-16 scale of IQ2_XS and IQ2_S: `d × (0.5 + ls) × 0.25`, `ls` the
/// nibbles of `scales` in order.
fn iq2_scales(d: f32, scales: &[u8]) -> [f32; 16] {
    std::array::from_fn(|s| d * (0.5 + f32::from((scales[s / 2] >> (4 * (s % 2))) & 0xf)) * 0.25)
}

/// One super-block `b` of `ty` (a lattice i-quant).
pub(super) fn decode(ty: GgmlType, b: &[u8]) -> Decoded {
    let mut q = [0i8; 256];
    let mut put = |at: usize, values: [i8; 8]| q[at..at + 8].copy_from_slice(&values);
    let scales = match ty {
        GgmlType::IQ2_XXS => {
            let d = half(b, 0);
            let mut scales = [0f32; 16];
            for ib in 0..8 {
                let g = &b[2 + 8 * ib..][..8];
                let aux = u32_at(g, 4);
                for (l, &idx) in g[..4].iter().enumerate() {
                    let values = entry(&IQ2XXS, usize::from(idx), &IQ2_VALUES);
                    put(32 * ib + 8 * l, signed(values, ksigns(aux >> (7 * l))));
                }
                let scale = d * (0.5 + (aux >> 28) as f32) * 0.25;
                scales[2 * ib..2 * ib + 2].fill(scale);
            }
            scales
        }
        GgmlType::IQ2_XS => {
            for k in 0..32 {
                let word = u16_at(b, 2 + 2 * k);
                let values = entry(&IQ2XS, usize::from(word & 511), &IQ2_VALUES);
                put(8 * k, signed(values, ksigns(u32::from(word >> 9))));
            }
            iq2_scales(half(b, 0), &b[66..74])
        }
        GgmlType::IQ2_S => {
            let (qs, signs, qh) = (&b[2..34], &b[34..66], &b[66..74]);
            for k in 0..32 {
                let high = usize::from((qh[k / 4] >> (2 * (k % 4))) & 3);
                let values = entry(&IQ2S, usize::from(qs[k]) | (high << 8), &IQ2_VALUES);
                put(8 * k, signed(values, signs[k]));
            }
            iq2_scales(half(b, 0), &b[74..82])
        }
        GgmlType::IQ3_XXS => {
            let (d, qs) = (half(b, 0), &b[2..66]);
            let mut scales = [0f32; 16];
            for ib in 0..8 {
                let aux = u32_at(b, 66 + 4 * ib);
                for l in 0..4 {
                    let at = 8 * ib + 2 * l;
                    let low: [i8; 4] = entry(&IQ3XXS, usize::from(qs[at]), &IQ3XXS_VALUES);
                    let high: [i8; 4] = entry(&IQ3XXS, usize::from(qs[at + 1]), &IQ3XXS_VALUES);
                    let values = std::array::from_fn(|j| if j < 4 { low[j] } else { high[j - 4] });
                    put(32 * ib + 8 * l, signed(values, ksigns(aux >> (7 * l))));
                }
                let scale = d * (0.5 + (aux >> 28) as f32) * 0.5;
                scales[2 * ib..2 * ib + 2].fill(scale);
            }
            scales
        }
        GgmlType::IQ3_S => {
            let d = half(b, 0);
            let (qs, qh, signs, packed) = (&b[2..66], &b[66..74], &b[74..106], &b[106..110]);
            for (k, &sign) in signs.iter().enumerate() {
                let pair: [[i8; 4]; 2] = std::array::from_fn(|p| {
                    let i = 2 * k + p;
                    let high = usize::from((qh[i / 8] >> (i % 8)) & 1);
                    entry(&IQ3S, usize::from(qs[i]) | (high << 8), &IQ3S_VALUES)
                });
                let values = std::array::from_fn(|j| pair[j / 4][j % 4]);
                put(8 * k, signed(values, sign));
            }
            std::array::from_fn(|s| {
                let ls = (packed[s / 4] >> (4 * (s / 2 % 2))) & 0xf;
                d * f32::from(1 + 2 * ls)
            })
        }
        GgmlType::IQ1_S => {
            let (d, qs) = (half(b, 0), &b[2..34]);
            let mut scales = [0f32; 16];
            for ib in 0..8 {
                let h = u16_at(b, 34 + 2 * ib);
                let shift = if h & 0x8000 == 0 { 1 } else { -1 };
                for l in 0..4 {
                    let idx = usize::from(qs[4 * ib + l]) | (usize::from((h >> (3 * l)) & 7) << 8);
                    let values: [i8; 8] = entry(&IQ1S, idx, &IQ1_VALUES);
                    put(32 * ib + 8 * l, values.map(|v| v + shift));
                }
                let scale = d * f32::from(2 * ((h >> 12) & 7) + 1) / 8.0;
                scales[2 * ib..2 * ib + 2].fill(scale);
            }
            scales
        }
        GgmlType::IQ1_M => {
            let (qs, qh) = (&b[..32], &b[32..48]);
            let sc: [u16; 4] = std::array::from_fn(|i| u16_at(b, 48 + 2 * i));
            // The f16 super-block scale, in the top nibbles of the four
            // words of 3-bit scales.
            let d = super::f16_to_f32(
                (sc[0] >> 12) | ((sc[1] >> 8) & 0xf0) | ((sc[2] >> 4) & 0xf00) | (sc[3] & 0xf000),
            );
            for k in 0..32 {
                let h = qh[k / 2] >> (4 * (k % 2));
                let idx = usize::from(qs[k]) | (usize::from(h & 7) << 8);
                let values: [i8; 8] = entry(&IQ1S, idx, &IQ1_VALUES);
                let shift = if h & 8 == 0 { 1 } else { -1 };
                put(8 * k, values.map(|v| v + shift));
            }
            std::array::from_fn(|s| d * f32::from(2 * ((sc[s / 4] >> (3 * (s % 4))) & 7) + 1) / 8.0)
        }
        _ => unreachable!("{ty:?} is not a lattice i-quant"),
    };
    Decoded { q, scales }
}

/// Whether `ty` is one of this module's formats.
pub(super) fn is_lattice(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::IQ1_S
            | GgmlType::IQ1_M
            | GgmlType::IQ2_XXS
            | GgmlType::IQ2_XS
            | GgmlType::IQ2_S
            | GgmlType::IQ3_XXS
            | GgmlType::IQ3_S
    )
}

/// The 256 values of super-block `b`.
pub(super) fn dequantize(ty: GgmlType, b: &[u8], out: &mut [f32]) {
    let Decoded { q, scales } = decode(ty, b);
    for (e, o) in out.iter_mut().enumerate() {
        *o = scales[e / 16] * f32::from(q[e]);
    }
}

/// Super-block `b` as 8 Q8_0 blocks appended to `out`: a sub-block under
/// one scale an f16 holds as its integers under that scale rounded, the
/// others requantised from their values.
pub(super) fn as_q8_0(ty: GgmlType, b: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let Decoded { q, scales } = decode(ty, b);
    for (j, q) in q.chunks_exact(BLOCK).enumerate() {
        let (s0, s1) = (scales[2 * j], scales[2 * j + 1]);
        let h = super::f32_to_f16(s0);
        if s0 == s1 && h & 0x7c00 != 0x7c00 {
            out.extend_from_slice(&h.to_le_bytes());
            out.extend(q.iter().map(|&v| v as u8));
        } else {
            let values: [f32; BLOCK] = std::array::from_fn(|e| [s0, s1][e / 16] * f32::from(q[e]));
            super::transcode::quantize_q8_0(&values, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ksigns_are_ggmls() {
        // ggml's ksigns_iq2xs, first and last rows.
        let first = [0x00, 0x81, 0x82, 0x03, 0x84, 0x05, 0x06, 0x87];
        assert!((0..8).all(|i| ksigns(i) == first[i as usize]));
        let last = [0x78, 0xf9, 0xfa, 0x7b, 0xfc, 0x7d, 0x7e, 0xff];
        assert!((0..8).all(|i| ksigns(120 + i) == last[i as usize]));
        assert!((0..128).all(|i| ksigns(i).count_ones().is_multiple_of(2)));
    }

    #[test]
    fn codebook_entries_are_ggmls() {
        // A few of ggml-common.h's entries, as its u64s' bytes.
        let bytes = |x: u64| x.to_le_bytes().map(|b| b as i8);
        assert_eq!(
            entry::<8>(&IQ2XXS, 1, &IQ2_VALUES),
            bytes(0x080808080808082b)
        );
        assert_eq!(
            entry::<8>(&IQ2XXS, 255, &IQ2_VALUES),
            bytes(0x2b2b2b1908081908)
        );
        assert_eq!(
            entry::<8>(&IQ2S, 1023, &IQ2_VALUES),
            bytes(0x2b2b2b2b2b2b2b2b)
        );
        let words = |x: u32| x.to_le_bytes().map(|b| b as i8);
        assert_eq!(entry::<4>(&IQ3XXS, 0, &IQ3XXS_VALUES), words(0x04040404));
        assert_eq!(entry::<4>(&IQ3XXS, 255, &IQ3XXS_VALUES), words(0x3e341c04));
        assert_eq!(entry::<4>(&IQ3S, 1, &IQ3S_VALUES), words(0x01010103));
        assert_eq!(entry::<4>(&IQ3S, 511, &IQ3S_VALUES), words(0x0f0f0101));
        // iq1s_grid holds −1, 0, 1 (0xff, 0x00, 0x01); here times 8.
        assert_eq!(entry::<8>(&IQ1S, 0, &IQ1_VALUES), [-8; 8]);
    }
}
