//! llama.cpp's AVX2 block dot products: `maddubs` multiplies unsigned
//! by signed bytes into pairs of i16, `madd` widens to i32, one FMA per
//! block applies the scales. CPUs with AVX-512 VNNI run copies that give
//! the same bits with fewer instructions: `vpdpbusd` on unsigned weights
//! (256-bit, a row at a time), and on pairs of rows (512-bit,
//! [`Q8Batch`]es of 8 rows or more).

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{BLOCK, Q8Row};
use crate::GgmlType;

pub(super) fn available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half(p: *const u8) -> f32 {
    // SAFETY: the caller points at two readable bytes.
    let h = unsafe { (p as *const u16).read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h))))
}

/// [`super::quantize_block`] 8 values at a time: the same bytes, scale
/// and sums (a NaN still quantises to 0).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn quantize_block(xs: &[f32; BLOCK], qs: &mut [i8; BLOCK]) -> (f32, [i32; 8]) {
    let sign = _mm256_set1_ps(-0.0);
    let mut v = [_mm256_setzero_ps(); 4];
    let mut amax = _mm256_setzero_ps();
    for (i, v) in v.iter_mut().enumerate() {
        // SAFETY: 8 of the block's 32 values.
        *v = unsafe { _mm256_loadu_ps(xs.as_ptr().add(i * 8)) };
        // (The running maximum second: `maxps` returns its second operand
        // for a NaN, as `f32::max` keeps the number.)
        amax = _mm256_max_ps(_mm256_andnot_ps(sign, *v), amax);
    }
    let mut lanes = [0f32; 8];
    // SAFETY: 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), amax) };
    let d = lanes.iter().fold(0f32, |a, &l| a.max(l)) / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
    let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
    let mut ints = [_mm256_setzero_si256(); 4];
    for (v, int) in v.iter().zip(&mut ints) {
        let y = _mm256_mul_ps(*v, id);
        // Half away from zero: truncate, then a step away from zero
        // where the fraction's magnitude is a half or more.
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
        let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(y, t));
        let step = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GE_OQ>(frac, half),
            _mm256_or_ps(one, _mm256_and_ps(sign, y)),
        );
        let r = _mm256_add_ps(t, step);
        // NaN to 0 (as `as` casts it), then clamped.
        let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r));
        *int = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
    }
    // llama.cpp's packing: i32 to i16 to i8 interleaves 128-bit lanes,
    // which the permutation puts back in order.
    let words = (
        _mm256_packs_epi32(ints[0], ints[1]),
        _mm256_packs_epi32(ints[2], ints[3]),
    );
    let bytes = _mm256_permutevar8x32_epi32(
        _mm256_packs_epi16(words.0, words.1),
        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
    );
    // SAFETY: 32 bytes.
    unsafe { _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, bytes) };
    // Sums of each 4 bytes: unsigned ones by signed bytes, then pairs.
    let fours = _mm256_madd_epi16(
        _mm256_maddubs_epi16(_mm256_set1_epi8(1), bytes),
        _mm256_set1_epi16(1),
    );
    let mut out = [0i32; 8];
    // SAFETY: 8 ints.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, fours) };
    (d, out)
}

/// `v` rounded through f16 in place, 8 values at a time.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn round_f16(v: &mut [f32]) {
    let mut chunks = v.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: 8 values.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(c.as_ptr()));
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    for x in chunks.into_remainder() {
        *x = super::round_f16(*x);
    }
}

/// `src` rounded to f16 (to nearest, ties to even) into `dst`'s bits, 8
/// values at a time.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn to_f16(src: &[f32], dst: &mut [u16]) {
    assert_eq!(src.len(), dst.len());
    let mut s = src.chunks_exact(8);
    let mut d = dst.chunks_exact_mut(8);
    for (s, d) in (&mut s).zip(&mut d) {
        // SAFETY: 8 values each side.
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(s.as_ptr()));
            _mm_storeu_si128(d.as_mut_ptr() as *mut __m128i, h);
        }
    }
    for (s, d) in s.remainder().iter().zip(d.into_remainder()) {
        *d = super::f32_to_f16(*s);
    }
}

/// Sums of products of signed bytes `a` and `b`, as 8 floats.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_i8(a: __m256i, b: __m256i) -> __m256 {
    let ax = _mm256_sign_epi8(a, a);
    let sy = _mm256_sign_epi8(b, a);
    let pairs = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// The 32 nibbles of a 4-bit block: low nibbles first, then high.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller points at 16 readable bytes.
    let qs = unsafe { _mm_loadu_si128(p as *const __m128i) };
    let both = _mm256_set_m128i(_mm_srli_epi16(qs, 4), qs);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// Activation rows the AVX2 kernel handles at once (16 registers).
pub(super) const ROWS: usize = 8;

/// The block of `ty` at `blk` as 32 bytes, and how to multiply it:
/// `signed` blocks use the sign trick, Q4_1's nibbles are unsigned.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn weights(ty: GgmlType, blk: *const u8) -> __m256i {
    // SAFETY: the caller points at a whole block of `ty`.
    unsafe {
        match ty {
            GgmlType::Q4_0 => _mm256_sub_epi8(nibbles(blk.add(2)), _mm256_set1_epi8(8)),
            GgmlType::Q4_1 => nibbles(blk.add(4)),
            _ => _mm256_loadu_si256(blk.add(2) as *const __m256i),
        }
    }
}

/// Whether the CPU has AVX-512 VNNI (with VL): one `vpdpbusd` instead
/// of `vpmaddubsw` + `vpmaddwd` per block.
pub(super) fn vnni() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
    })
}

/// Whether the CPU has 512-bit VNNI (and what [`super::lanes`]' kernel
/// uses with it).
pub(super) fn wide() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        vnni() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq")
    })
}

/// [`dot`] of one weight row with each row of `xs`.
///
/// # Safety
/// As [`dot`], for every row of `xs`; `out` as long as `xs`.
pub(super) unsafe fn dot_many(ty: GgmlType, raw: &[u8], xs: &[Q8Row], out: &mut [f32]) {
    // SAFETY: the caller's contract, and each copy's features checked.
    unsafe {
        if vnni() {
            dot_many_vnni(ty, raw, xs, out)
        } else {
            for (xs, out) in xs.chunks(ROWS).zip(out.chunks_mut(ROWS)) {
                dot_many_avx2(ty, raw, xs, out)
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_many_avx2(ty: GgmlType, raw: &[u8], xs: &[Q8Row], out: &mut [f32]) {
    // SAFETY: as `dot_many`.
    unsafe { dot_many_body(ty, raw, xs, out) }
}

#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(super) unsafe fn dot_many_vnni(ty: GgmlType, raw: &[u8], xs: &[Q8Row], out: &mut [f32]) {
    // SAFETY: as `dot_many`.
    unsafe {
        match ty {
            GgmlType::Q4_0 => vnni_rows::<Q4_0>(raw, xs, out),
            GgmlType::Q4_1 => vnni_rows::<Q4_1>(raw, xs, out),
            _ => vnni_rows::<Q8_0>(raw, xs, out),
        }
    }
}

/// [`vnni_body`] on `xs` in groups of a constant size (8, 4, 2, 1), so
/// that each group's accumulators stay in registers.
#[inline(always)]
unsafe fn vnni_rows<const TY: u8>(raw: &[u8], xs: &[Q8Row], out: &mut [f32]) {
    let mut done = 0;
    for n in [8, 4, 2, 1] {
        while xs.len() - done >= n {
            let (x, o) = (&xs[done..done + n], &mut out[done..done + n]);
            // SAFETY: the caller's contract, for a part of the rows.
            unsafe {
                match n {
                    8 => vnni_body::<TY, 8>(raw, x, o),
                    4 => vnni_body::<TY, 4>(raw, x, o),
                    2 => vnni_body::<TY, 2>(raw, x, o),
                    _ => vnni_body::<TY, 1>(raw, x, o),
                }
            }
            done += n;
        }
    }
}

pub(super) const Q4_0: u8 = 0;
pub(super) const Q4_1: u8 = 1;
pub(super) const Q8_0: u8 = 2;

/// Bytes in a block of the weight type `TY`.
pub(super) const fn block_bytes<const TY: u8>() -> usize {
    match TY {
        Q4_0 => 18,
        Q4_1 => 20,
        _ => 34,
    }
}

/// The block of `TY` at `blk` as 32 unsigned bytes: Q4_0's and Q4_1's
/// nibbles as they are, Q8_0's bytes + 128.
#[inline(always)]
unsafe fn unsigned_weights<const TY: u8>(blk: *const u8) -> __m256i {
    // SAFETY: the caller points at a whole block of `TY` and enables
    // AVX2.
    unsafe {
        match TY {
            Q4_0 => nibbles(blk.add(2)),
            Q4_1 => nibbles(blk.add(4)),
            _ => _mm256_xor_si256(
                _mm256_loadu_si256(blk.add(2) as *const __m256i),
                _mm256_set1_epi8(-128),
            ),
        }
    }
}

/// [`dot_many_body`] with AVX-512 VNNI, the weight type a constant.
///
/// The weights are read as unsigned bytes (Q4_0's nibbles without the
/// −8, Q8_0's bytes + 128), so `vpdpbusd` takes them as they are, with
/// no sign trick per activation row; each lane starts from the row's
/// precomputed correction ([`Q8Row::unsigned4`]/`unsigned8`), so the
/// lanes, and hence every rounding after them, are exactly those of
/// [`dot_many_body`]. Both scales are multiplied in a vector (the same
/// product as the scalar one), and Q4_1's offset sum is only done for it.
#[inline(always)]
unsafe fn vnni_body<const TY: u8, const N: usize>(raw: &[u8], xs: &[Q8Row], out: &mut [f32]) {
    let size = block_bytes::<TY>();
    let blocks = raw.len() / size;
    let xs: &[Q8Row; N] = xs.try_into().expect("N rows");
    assert!(out.len() >= N);
    for x in xs {
        assert!(x.q.len() >= blocks * BLOCK && x.d.len() >= blocks && x.s.len() >= blocks);
        assert!(x.unsigned4.len() >= blocks * 8 && x.unsigned8.len() >= blocks * 8);
    }
    // SAFETY: the callers enable AVX2, FMA, F16C and AVX-512 VNNI+VL.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); N];
        let mut offsets = [0f32; N];
        for b in 0..blocks {
            // SAFETY: block `b` lies within `raw` and every row (asserted).
            let blk = raw.as_ptr().add(b * size);
            let wu = unsigned_weights::<TY>(blk);
            let dw = _mm256_set1_ps(half(blk));
            let m = if TY == Q4_1 { half(blk.add(2)) } else { 0.0 };
            for (t, x) in xs.iter().enumerate() {
                let qy = _mm256_loadu_si256(x.q.as_ptr().add(b * BLOCK) as *const __m256i);
                let start = match TY {
                    Q4_0 => _mm256_loadu_si256(x.unsigned4.as_ptr().add(b * 8) as *const __m256i),
                    Q4_1 => _mm256_setzero_si256(),
                    _ => _mm256_loadu_si256(x.unsigned8.as_ptr().add(b * 8) as *const __m256i),
                };
                let prod = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(start, wu, qy));
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(*x.d.get_unchecked(b)));
                acc[t] = _mm256_fmadd_ps(d, prod, acc[t]);
                if TY == Q4_1 {
                    offsets[t] += m * *x.s.get_unchecked(b);
                }
            }
        }
        for t in 0..N {
            out[t] = hsum(acc[t]) + offsets[t];
        }
    }
}

/// The body of [`dot_many`]: one accumulator per row, summed block by
/// block in order as llama.cpp does (two, alternating, would be a
/// little faster, but the greedy tokens then part from llama.cpp's
/// sooner).
#[inline(always)]
unsafe fn dot_many_body(ty: GgmlType, raw: &[u8], xs: &[Q8Row], out: &mut [f32]) {
    let size = match ty {
        GgmlType::Q4_0 => 18,
        GgmlType::Q4_1 => 20,
        _ => 34,
    };
    let blocks = raw.len() / size;
    assert!(xs.len() <= ROWS && out.len() >= xs.len());
    for x in xs {
        assert!(x.q.len() >= blocks * BLOCK && x.d.len() >= blocks && x.s.len() >= blocks);
    }
    // SAFETY: the callers enable AVX2, FMA and F16C.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); ROWS];
        let mut offsets = [0f32; ROWS];
        for b in 0..blocks {
            // SAFETY: block `b` lies within `raw` and every row (asserted).
            let blk = raw.as_ptr().add(b * size);
            let qx = weights(ty, blk);
            let dw = half(blk);
            let (ax, m) = match ty {
                GgmlType::Q4_1 => (qx, half(blk.add(2))),
                _ => (_mm256_sign_epi8(qx, qx), 0.0),
            };
            for (t, x) in xs.iter().enumerate() {
                let qy = _mm256_loadu_si256(x.q.as_ptr().add(b * BLOCK) as *const __m256i);
                let sy = match ty {
                    GgmlType::Q4_1 => qy,
                    _ => _mm256_sign_epi8(qy, qx),
                };
                let pairs = _mm256_maddubs_epi16(ax, sy);
                let prod = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
                let d = dw * *x.d.get_unchecked(b);
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), prod, acc[t]);
                // Only Q4_1 has offsets (`s` may be infinite: it is
                // rounded through f16, and 0 × ∞ would be NaN).
                if ty == GgmlType::Q4_1 {
                    offsets[t] += m * *x.s.get_unchecked(b);
                }
            }
        }
        for t in 0..xs.len() {
            out[t] = hsum(acc[t]) + offsets[t];
        }
    }
}

/// # Safety
/// AVX2, FMA and F16C must be available; `raw` holds whole blocks of
/// `ty` and `x` at least as many.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot(ty: GgmlType, raw: &[u8], x: &Q8Row) -> f32 {
    let (size, _) = match ty {
        GgmlType::Q4_0 => (18, 0),
        GgmlType::Q4_1 => (20, 0),
        _ => (34, 0),
    };
    let blocks = raw.len() / size;
    assert!(x.q.len() >= blocks * BLOCK && x.d.len() >= blocks && x.s.len() >= blocks);
    let mut acc = _mm256_setzero_ps();
    let mut offsets = 0f32;
    for b in 0..blocks {
        // SAFETY: block `b` lies within `raw` and `x` (asserted above).
        unsafe {
            let blk = raw.as_ptr().add(b * size);
            let qy = _mm256_loadu_si256(x.q.as_ptr().add(b * BLOCK) as *const __m256i);
            let d = half(blk) * *x.d.get_unchecked(b);
            let prod = match ty {
                GgmlType::Q4_0 => {
                    let qx = _mm256_sub_epi8(nibbles(blk.add(2)), _mm256_set1_epi8(8));
                    dot_i8(qx, qy)
                }
                GgmlType::Q4_1 => {
                    offsets += half(blk.add(2)) * *x.s.get_unchecked(b);
                    let qx = nibbles(blk.add(4));
                    let pairs = _mm256_maddubs_epi16(qx, qy);
                    _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
                }
                _ => {
                    let qx = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                    dot_i8(qx, qy)
                }
            };
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), prod, acc);
        }
    }
    // SAFETY: AVX2 is enabled in this function.
    unsafe { hsum(acc) + offsets }
}
