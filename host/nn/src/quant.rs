//! ggml's block formats: dequantisation, and the quantised dot products
//! llama.cpp uses on the CPU (activations quantised to 8 bits per block of
//! 32, integer dot products against 4- or 8-bit weights). Reading the
//! weights in their quantised form is what makes decoding fast: a token reads
//! ~0.6 byte per parameter instead of 4.

use rayon::prelude::*;

use crate::GgmlType;

/// Elements per quantisation block.
pub const BLOCK: usize = 32;

/// IEEE half to f32.
///
/// ```
/// assert_eq!(weft_nn::quant::f16_to_f32(0x3c00), 1.0);
/// assert_eq!(weft_nn::quant::f16_to_f32(0xc000), -2.0);
/// ```
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m * 2^-24.
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// f32 to IEEE half, rounding to nearest even.
///
/// ```
/// use weft_nn::quant::{f16_to_f32, f32_to_f16};
/// for x in [0.0f32, 1.0, -2.5, 65504.0, 1e-6, 0.1] {
///     assert!((f16_to_f32(f32_to_f16(x)) - x).abs() <= x.abs() * 1e-3 + 6e-8);
/// }
/// ```
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut h = m >> shift;
        if rest > half || (rest == half && h & 1 == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1; // May carry into the exponent, which is still correct.
    }
    sign | h as u16
}

/// Rounds an f32 through f16 (what llama.cpp's f16 KV cache keeps):
/// `f16_to_f32(f32_to_f16(x))`, on the bits where the result is a normal
/// half (nearly every value a layer computes), which is several times
/// faster.
pub fn round_f16(x: f32) -> f32 {
    // Normal halves: [2^-14, 65504); the rest (zero, subnormals, overflow,
    // NaN) the long way.
    if (6.103_515_6e-5..65504.0).contains(&x.abs()) {
        let b = x.to_bits();
        return f32::from_bits(b.wrapping_add(0x0fff + ((b >> 13) & 1)) & 0xffff_e000);
    }
    f16_to_f32(f32_to_f16(x))
}

/// `src` rounded through f16 ([`round_f16`]), appended to `dst`.
pub fn extend_rounded_f16(dst: &mut Vec<f32>, src: &[f32]) {
    let at = dst.len();
    dst.extend_from_slice(src);
    round_f16_in_place(&mut dst[at..]);
}

/// Every value of `v` rounded through f16 ([`round_f16`]); with F16C
/// eight at a time (the same rounding: to nearest, ties to even).
pub fn round_f16_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has F16C (checked).
        unsafe { avx2::round_f16(v) };
        return;
    }
    v.iter_mut().for_each(|x| *x = round_f16(*x));
}

/// `src` rounded to f16 (to nearest, ties to even), its bits appended to
/// `dst`; with F16C eight at a time.
pub(crate) fn extend_f16(dst: &mut Vec<u16>, src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        let at = dst.len();
        dst.resize(at + src.len(), 0);
        // SAFETY: the CPU has F16C (checked); the slices are as long.
        unsafe { avx2::to_f16(src, &mut dst[at..]) };
        return;
    }
    dst.extend(src.iter().map(|&x| f32_to_f16(x)));
}

/// Whether the CPU has AVX2, FMA and F16C, which the crate's x86 kernels
/// use together (asked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_f16c() -> bool {
    avx2::available()
}

fn half(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Dequantises `out.len()` elements of type `ty` from `raw`.
pub fn dequantize(ty: GgmlType, raw: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(raw.chunks_exact(4)) {
                *o = f32::from_le_bytes(c.try_into().expect("4"));
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::Bf16 => {
            for (o, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16);
            }
        }
        GgmlType::Q4_0 => {
            for (o, b) in out.chunks_exact_mut(BLOCK).zip(raw.chunks_exact(18)) {
                let d = half(b, 0);
                for j in 0..16 {
                    o[j] = d * (i32::from(b[2 + j] & 0xf) - 8) as f32;
                    o[j + 16] = d * (i32::from(b[2 + j] >> 4) - 8) as f32;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (o, b) in out.chunks_exact_mut(BLOCK).zip(raw.chunks_exact(20)) {
                let (d, m) = (half(b, 0), half(b, 2));
                for j in 0..16 {
                    o[j] = d * f32::from(b[4 + j] & 0xf) + m;
                    o[j + 16] = d * f32::from(b[4 + j] >> 4) + m;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(BLOCK).zip(raw.chunks_exact(34)) {
                let d = half(b, 0);
                for j in 0..BLOCK {
                    o[j] = d * f32::from(b[2 + j] as i8);
                }
            }
        }
        // The rest: the formats weights are transcoded from at load.
        _ => {
            debug_assert!(transcode::transcoded(ty));
            transcode::dequantize(ty, raw, out);
        }
    }
}

/// A row of activations quantised to 8 bits per element in blocks of 32,
/// as llama.cpp's `q8_0`/`q8_1` (scale rounded through f16, and for `q8_1`
/// the scaled sum of the block used by offset formats).
#[derive(Debug, Clone, Default)]
pub struct Q8Row {
    /// Per block: the scale.
    pub d: Vec<f32>,
    /// Per block: scale × sum of the quantised values.
    pub s: Vec<f32>,
    /// The quantised values.
    pub q: Vec<i8>,
    /// Per block, 8 lanes: −8 × the sum of each 4 consecutive values, what
    /// reading Q4_0's nibbles as unsigned (`nibble`, not `nibble − 8`) adds
    /// to each lane of an unsigned-by-signed dot product (VNNI kernels).
    pub unsigned4: Vec<i32>,
    /// The same for Q8_0's bytes read as `byte + 128`: −128 × the sums.
    pub unsigned8: Vec<i32>,
    /// Per block: the sum of the quantised values.
    pub sums: Vec<i32>,
}

impl Q8Row {
    /// Quantises `x` (its length a multiple of 32).
    pub fn quantize(x: &[f32]) -> Self {
        let mut row = Self::default();
        row.quantize_from(x);
        row
    }

    /// Quantises `x` into this row, reusing its buffers.
    pub fn quantize_from(&mut self, x: &[f32]) {
        quantize_into(x, self, true);
    }

    /// [`Q8Row::quantize_from`] for the packed matrices' kernel only
    /// ([`lanes`]), which reads the blocks' sums but not the per-lane
    /// corrections of the row-at-a-time kernels: those are left empty
    /// (the row kernels' length checks refuse such a row).
    pub(crate) fn quantize_for_lanes_from(&mut self, x: &[f32]) {
        quantize_into(x, self, false);
    }
}

/// [`Q8Row::quantize_from`]: a block at a time with AVX2 where the CPU
/// has it ([`avx2::quantize_block`], the same bytes), else
/// [`quantize_block`].
/// The row kernels' per-lane corrections too where `corrections`.
fn quantize_into(x: &[f32], row: &mut Q8Row, corrections: bool) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked).
        unsafe { quantize_with(x, row, corrections, |x, q| avx2::quantize_block(x, q)) };
        return;
    }
    quantize_with(x, row, corrections, quantize_block);
}

/// Quantises `x` into `row` by `block`, which fills a block's bytes and
/// returns its scale (before rounding) and the sums of its 4-byte groups.
#[inline(always)]
fn quantize_with(
    x: &[f32],
    row: &mut Q8Row,
    corrections: bool,
    block: impl Fn(&[f32; BLOCK], &mut [i8; BLOCK]) -> (f32, [i32; 8]),
) {
    debug_assert!(x.len().is_multiple_of(BLOCK), "whole blocks");
    let blocks = x.len() / BLOCK;
    for v in [&mut row.d, &mut row.s] {
        v.clear();
        v.reserve(blocks);
    }
    row.sums.clear();
    row.sums.reserve(blocks);
    for v in [&mut row.unsigned4, &mut row.unsigned8] {
        v.clear();
        v.reserve(if corrections { blocks * 8 } else { 0 });
    }
    // (Every block is written: a row kept at this length is not zeroed
    // first.)
    row.q.resize(x.len(), 0);
    for (xs, qs) in x.chunks_exact(BLOCK).zip(row.q.chunks_exact_mut(BLOCK)) {
        let (xs, qs) = (
            xs.try_into().expect("a block"),
            qs.try_into().expect("a block"),
        );
        let (d, fours) = block(xs, qs);
        if corrections {
            row.unsigned4.extend(fours.iter().map(|f| -8 * f));
            row.unsigned8.extend(fours.iter().map(|f| -128 * f));
        }
        let sum: i32 = fours.iter().sum();
        row.d.push(d);
        row.s.push(d * sum as f32);
        row.sums.push(sum);
    }
    // The scales are stored as f16, as llama.cpp's: rounded all at once.
    round_f16_in_place(&mut row.d);
    round_f16_in_place(&mut row.s);
    debug_assert_eq!(row.d.len(), blocks);
}

/// One block quantised to `q` (llama.cpp's `q8_0`: the largest magnitude
/// maps to ±127, values round half away from zero); returns the scale and
/// the sums of each 4 consecutive bytes.
fn quantize_block(xs: &[f32; BLOCK], qs: &mut [i8; BLOCK]) -> (f32, [i32; 8]) {
    let amax = xs.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    // (Clamped: a block of subnormal values has an infinite inverse
    // scale.)
    for (q, &v) in qs.iter_mut().zip(xs) {
        *q = round_away(v * id).clamp(-127.0, 127.0) as i8;
    }
    let mut fours = [0i32; 8];
    for (f, four) in fours.iter_mut().zip(qs.chunks_exact(4)) {
        *f = four.iter().map(|&q| i32::from(q)).sum();
    }
    (d, fours)
}

/// `x` rounded to an integer, halves away from zero (C's `roundf`), in
/// operations that vectorise (`f32::round` is a call to libm on baseline
/// x86-64). NaN stays NaN.
#[inline(always)]
fn round_away(x: f32) -> f32 {
    let t = x.trunc();
    let frac = x - t; // exact
    t + if frac >= 0.5 {
        1.0
    } else if frac <= -0.5 {
        -1.0
    } else {
        0.0
    }
}

/// Activation rows quantised for products with many weight rows
/// ([`dot_rows`], and the packed matrices' kernel).
#[derive(Debug, Clone, Default)]
pub struct Q8Batch {
    /// The rows, in order, all of the same length.
    rows: Vec<Q8Row>,
}

impl Q8Batch {
    /// Values from which [`Q8Batch::quantize`] shares the rows out over
    /// the thread pool.
    pub(crate) const PARALLEL_FROM: usize = 64 * 1024;

    /// Quantises `x`, rows of `cols` values (a multiple of 32); a few
    /// rows at a time on the thread pool when there are many (a joined
    /// decoding step's dozen rows take microseconds: less than waking the
    /// pool).
    pub fn quantize(x: &[f32], cols: usize) -> Self {
        let rows = if x.len() >= Self::PARALLEL_FROM {
            x.par_chunks_exact(cols).map(Q8Row::quantize).collect()
        } else {
            x.chunks_exact(cols).map(Q8Row::quantize).collect()
        };
        Self::new(rows)
    }

    /// A batch of `rows`.
    ///
    /// # Panics
    /// If the rows are not all of the same length.
    pub fn new(rows: Vec<Q8Row>) -> Self {
        same_lengths(&rows);
        Self { rows }
    }

    /// The rows, in order.
    pub fn rows(&self) -> &[Q8Row] {
        &self.rows
    }

    /// Makes this batch `n` rows, which `fill` quantises: the rows it held
    /// are written again, their buffers reused (a pass's products
    /// otherwise allocated and freed six vectors a row each, on the
    /// pass's thread while its helpers waited).
    ///
    /// # Panics
    /// If `fill` leaves rows of different lengths.
    pub(crate) fn refill(&mut self, n: usize, fill: impl FnOnce(&mut [Q8Row])) {
        self.rows.resize_with(n, Q8Row::default);
        fill(&mut self.rows);
        same_lengths(&self.rows);
    }
}

/// Asserts that the rows of a batch have the same length.
fn same_lengths(rows: &[Q8Row]) {
    if let Some(first) = rows.first() {
        assert!(
            rows.iter()
                .all(|r| r.q.len() == first.q.len() && r.d.len() == first.d.len()),
            "the rows of a batch have the same length"
        );
    }
}

#[inline(always)]
fn dot_i8(a: &[i8; 32], b: &[i8; 32]) -> i32 {
    let mut s = 0i32;
    for i in 0..32 {
        s += i32::from(a[i]) * i32::from(b[i]);
    }
    s
}

/// Unpacks a 4-bit block (`qs`, 16 bytes) into 32 values, offset by `bias`.
#[inline(always)]
fn unpack4(qs: &[u8], bias: i8) -> [i8; 32] {
    let mut out = [0i8; 32];
    for j in 0..16 {
        out[j] = (qs[j] & 0xf) as i8 - bias;
        out[j + 16] = (qs[j] >> 4) as i8 - bias;
    }
    out
}

/// The dot product of one quantised weight row (`raw`, type `ty`) with a
/// quantised activation row. Types without a quantised kernel go through
/// f32 (`xf` is the activation row unquantised).
pub fn dot_row(ty: GgmlType, raw: &[u8], x: &Q8Row, xf: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0) && avx2::available() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above); the
        // kernels read `raw` and `x` within the blocks their lengths give.
        return unsafe { avx2::dot(ty, raw, x) };
    }
    dot_row_portable(ty, raw, x, xf)
}

/// The dot products of one weight row with each of `xs` (the activation
/// rows quantised; `xf` the same rows unquantised, `cols` each), into `out`.
/// Each weight block is decoded once for all rows.
pub fn dot_rows(ty: GgmlType, raw: &[u8], xs: &Q8Batch, xf: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0) && avx2::available() {
        // SAFETY: as in `dot_row`.
        unsafe { avx2::dot_many(ty, raw, &xs.rows, out) };
        return;
    }
    let cols = xf.len() / xs.rows.len().max(1);
    for (t, (x, o)) in xs.rows.iter().zip(out.iter_mut()).enumerate() {
        *o = dot_row_portable(ty, raw, x, &xf[t * cols..(t + 1) * cols]);
    }
}

/// The products of rows `first ..` of a matrix packed by
/// [`lanes::pack`] (`first` a multiple of [`lanes::LANES`]) with the rows
/// of `xs`: weight row `first + r` by `xs`'s row `t` into `out[t][r]`, for
/// as many weight rows as each of `out`'s slices (one per row of `xs`)
/// holds. Only where [`lanes::used_for`] the type.
pub(crate) fn dot_lanes(
    ty: GgmlType,
    packed: &[u8],
    row_bytes: usize,
    first: usize,
    xs: &Q8Batch,
    out: &mut [&mut [f32]],
) {
    assert!(
        lanes::used_for(ty),
        "a matrix packed for a CPU that has no kernel for it"
    );
    assert_eq!(out.len(), xs.rows.len(), "an output per activation row");
    let rows = out.first().map_or(0, |o| o.len());
    assert!(out.iter().all(|o| o.len() == rows), "outputs of one length");
    assert!(packed.len() >= (first + rows).div_ceil(lanes::LANES) * lanes::LANES * row_bytes);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has 512-bit VNNI (`used_for`); whole tiles hold the
    // rows asked for (asserted); each row of `xs` is as long as a
    // weight row (the caller quantised it from the same width).
    unsafe {
        lanes::x86::dot(ty, packed, row_bytes, first, &xs.rows, out)
    };
}

/// [`dot_row`] without SIMD intrinsics: the reference the AVX2 kernels
/// are tested against.
pub fn dot_row_portable(ty: GgmlType, raw: &[u8], x: &Q8Row, xf: &[f32]) -> f32 {
    let mut acc = 0f32;
    match ty {
        GgmlType::Q4_0 => {
            for (b, blk) in raw.chunks_exact(18).enumerate() {
                let w = unpack4(&blk[2..18], 8);
                let q: &[i8; 32] = x.q[b * 32..b * 32 + 32].try_into().expect("32");
                acc += dot_i8(&w, q) as f32 * (half(blk, 0) * x.d[b]);
            }
        }
        GgmlType::Q4_1 => {
            for (b, blk) in raw.chunks_exact(20).enumerate() {
                let w = unpack4(&blk[4..20], 0);
                let q: &[i8; 32] = x.q[b * 32..b * 32 + 32].try_into().expect("32");
                acc += dot_i8(&w, q) as f32 * (half(blk, 0) * x.d[b]) + half(blk, 2) * x.s[b];
            }
        }
        GgmlType::Q8_0 => {
            for (b, blk) in raw.chunks_exact(34).enumerate() {
                let w: &[i8; 32] = bytemuck_i8(&blk[2..34]);
                let q: &[i8; 32] = x.q[b * 32..b * 32 + 32].try_into().expect("32");
                acc += dot_i8(w, q) as f32 * (half(blk, 0) * x.d[b]);
            }
        }
        GgmlType::F32 => {
            for (c, v) in raw.chunks_exact(4).zip(xf) {
                acc += f32::from_le_bytes(c.try_into().expect("4")) * v;
            }
        }
        // F16 and BF16, and formats weights are transcoded from at load
        // (`transcode`): through f32, a block at a time.
        _ => {
            let (n, size) = (ty.block().0 as usize, ty.block().1 as usize);
            let mut w = [0f32; 256];
            for (blk, xs) in raw.chunks_exact(size).zip(xf.chunks_exact(n)) {
                dequantize(ty, blk, &mut w[..n]);
                for (w, x) in w[..n].iter().zip(xs) {
                    acc += w * x;
                }
            }
        }
    }
    acc
}

fn bytemuck_i8(b: &[u8]) -> &[i8; 32] {
    let arr: &[u8; 32] = b.try_into().expect("32 bytes");
    // SAFETY: u8 and i8 have the same size and alignment; every bit
    // pattern is valid for both.
    unsafe { &*(arr as *const [u8; 32] as *const [i8; 32]) }
}

#[cfg(target_arch = "x86_64")]
mod avx2;
mod grids;
pub(crate) mod lanes;
mod lattice;
pub(crate) mod transcode;

#[cfg(test)]
mod tests;
