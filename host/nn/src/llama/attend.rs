//! One query head's attention over a session's KV cache on the CPU.
//!
//! The cache holds f16, as llama.cpp's does: a joined pass of a dozen
//! sessions reads every session's cache once per layer, which at a hundred
//! positions is about as many bytes as the weights, so half-width values
//! halve what attention streams through memory. llama.cpp multiplies the
//! f16 cache by f16-rounded operands; so does this, in f32, summing each
//! query-key dot over 8 lanes, then the lanes pairwise
//! (`((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))`, what `hadd` gives four
//! positions at once), and each output position by position. Each KV
//! head's positions lie side by side, so a head's keys and values stream
//! through memory in order. The AVX2 copy gives the same bits as the
//! portable one ([`tests`]).

use crate::quant::{extend_f16, extend_rounded_f16, f16_to_f32, round_f16_in_place};
use crate::simd::{self, wide_fn};

/// Lanes of a query-key dot.
const LANES: usize = 8;

/// `src`, positions' rows of every KV head's `hd` values, rounded to f16
/// and appended to each head's cache in `dsts` (one per head, in order).
pub(super) fn append(dsts: &mut [Vec<u16>], src: &[f32], hd: usize) {
    let row = hd * dsts.len();
    assert!(
        row > 0 && src.len().is_multiple_of(row),
        "whole rows of every head"
    );
    let each = src.len() / dsts.len();
    for dst in dsts.iter_mut() {
        dst.reserve(each);
    }
    for row in src.chunks_exact(row) {
        for (dst, head) in dsts.iter_mut().zip(row.chunks_exact(hd)) {
            extend_f16(dst, head);
        }
    }
}

/// One KV head's cache in a layer: its keys and values, `[position][head
/// dim]`.
#[derive(Clone, Copy)]
pub(super) struct Head<'a> {
    pub(super) k: &'a [u16],
    pub(super) v: &'a [u16],
}

/// The query heads `qs` of one KV head's group (`hd` values each) over
/// the first `seen` positions of `cache`, each added into its `hd` values
/// of `o` (as long as `qs`), the queries multiplied by `warm` before they
/// are rounded (Mistral 3's temperature; 1 elsewhere), the scores scaled by
/// `scale` (then soft-capped at `softcap`, Gemma 2's, unless 0); where
/// `sinks` are given (gpt-oss's, one per head), each head's softmax has
/// its sink's logit in its denominator alone, as llama.cpp's
/// `soft_max_add_sinks`. The group's
/// heads share each pass over the keys: a key is loaded and widened once
/// for up to three heads (grouped-query attention's point, which a head at
/// a time gave away).
pub(super) fn attend(
    qs: &[f32],
    hd: usize,
    cache: Head<'_>,
    (seen, sinks): (usize, Option<&[f32]>),
    (scale, softcap, warm): (f32, f32, f32),
    o: &mut [f32],
) {
    assert!(hd > 0 && qs.len().is_multiple_of(hd), "whole heads");
    assert_eq!(o.len(), qs.len());
    if seen == 0 {
        return;
    }
    assert!(
        cache.k.len() >= seen * hd && cache.v.len() >= seen * hd,
        "a cache that short"
    );
    let heads = qs.len() / hd;
    let mut q = qs.to_vec();
    if warm != 1.0 {
        q.iter_mut().for_each(|x| *x *= warm);
    }
    round_f16_in_place(&mut q);
    // Head by head, `seen` scores each.
    let mut scores = vec![0f32; heads * seen];
    #[cfg(target_arch = "x86_64")]
    let wide = crate::quant::has_f16c() && hd.is_multiple_of(LANES);
    #[cfg(not(target_arch = "x86_64"))]
    let wide = false;
    if wide {
        #[cfg(target_arch = "x86_64")]
        for (qg, sg) in q
            .chunks(x86::HEADS * hd)
            .zip(scores.chunks_mut(x86::HEADS * seen))
        {
            // SAFETY: the CPU has AVX2, FMA and F16C; `hd` is a multiple
            // of 8, the cache holds `seen` positions (asserted above) and
            // each head has `seen` scores.
            unsafe {
                match qg.len() / hd {
                    3 => x86::scores::<3>(qg, cache, seen, scale, sg),
                    2 => x86::scores::<2>(qg, cache, seen, scale, sg),
                    _ => x86::scores::<1>(qg, cache, seen, scale, sg),
                }
            }
        }
    } else {
        for (qh, sh) in q.chunks_exact(hd).zip(scores.chunks_exact_mut(seen)) {
            for (p, s) in sh.iter_mut().enumerate() {
                *s = dot(qh, &cache.k[p * hd..][..hd]) * scale;
            }
        }
    }
    super::rows::soft_cap(&mut scores, softcap);
    let mut weights = Vec::with_capacity(seen);
    let heads_scores = scores.chunks_exact_mut(seen).zip(o.chunks_exact_mut(hd));
    for (h, (sh, oh)) in heads_scores.enumerate() {
        softmax(sh, sinks.map_or(f32::NEG_INFINITY, |s| s[h]));
        weights.clear();
        extend_rounded_f16(&mut weights, sh);
        if wide {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            unsafe {
                x86::weighted(&weights, cache, oh)
            };
        } else {
            for (p, &w) in weights.iter().enumerate() {
                let vp = &cache.v[p * hd..][..hd];
                oh.iter_mut()
                    .zip(vp)
                    .for_each(|(o, &v)| *o += w * f16_to_f32(v));
            }
        }
    }
}

wide_fn! {
    /// Softmax in place, its exponentials vectorised (as llama.cpp's),
    /// summed in f64, with `sink`'s exponential in the sum alone (−∞ for
    /// none: it adds 0).
    fn softmax(scores: &mut [f32], sink: f32) {
        let max = scores.iter().fold(sink, |a, &b| a.max(b));
        scores.iter_mut().for_each(|s| *s = simd::exp(*s - max));
        let sum = simd::sum_f64(scores, |s| s) + f64::from((sink - max).exp());
        let inv = (1.0 / sum) as f32;
        scores.iter_mut().for_each(|s| *s *= inv);
    }
}

/// The query-key dot the kernels compute: 8 lanes, summed pairwise, then
/// whatever is left over.
fn dot(q: &[f32], k: &[u16]) -> f32 {
    let mut l = [0f32; LANES];
    let (qs, ks) = (q.chunks_exact(LANES), k.chunks_exact(LANES));
    let rest: f32 = qs
        .remainder()
        .iter()
        .zip(ks.remainder())
        .map(|(a, &b)| a * f16_to_f32(b))
        .sum();
    for (a, b) in qs.zip(ks) {
        for i in 0..LANES {
            l[i] += a[i] * f16_to_f32(b[i]);
        }
    }
    pairwise(&l) + rest
}

/// `((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))`.
fn pairwise(l: &[f32; LANES]) -> f32 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Head, LANES};

    /// Query-key dots run this many positions side by side.
    const AT_ONCE: usize = 4;
    /// Positions ahead whose keys are prefetched.
    const PREFETCH_AHEAD: usize = 16;
    /// Output vectors kept in registers over all positions.
    const OUT_VECTORS: usize = 4;

    /// 8 cache values from `at`, widened.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(cache: &[u16], at: usize) -> __m256 {
        // SAFETY: the caller has 8 values from `at`.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(cache.as_ptr().add(at) as *const __m128i) })
    }

    /// The lanes of `v` summed as [`super::pairwise`] sums them.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn sum(v: __m256) -> f32 {
        let mut lanes = [0f32; LANES];
        // SAFETY: 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        super::pairwise(&lanes)
    }

    /// Query heads a pass over the keys takes at most: their 4 positions'
    /// accumulators (12), a key and a query fill AVX2's 16 registers.
    pub(super) const HEADS: usize = 3;

    /// The dots of `H` query heads (`q`, `hd` values each, `hd` a multiple
    /// of 8) with each of the first `seen` keys, times `scale`, into
    /// `scores` (`seen` a head, head by head); the cache holds `seen`
    /// positions. Each dot is summed as [`super::dot`] sums it.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn scores<const H: usize>(
        q: &[f32],
        cache: Head<'_>,
        seen: usize,
        scale: f32,
        scores: &mut [f32],
    ) {
        let hd = q.len() / H;
        assert!(q.len() == H * hd && scores.len() == H * seen);
        let mut p = 0;
        let scale4 = _mm_set1_ps(scale);
        while p + AT_ONCE <= seen {
            // A head's cache is a few kilobytes, gone from the caches
            // since the last pass: its keys are asked for a few positions
            // ahead, and its values now, for the weighted sums after.
            for line in (0..AT_ONCE * hd).step_by(32) {
                let k = cache
                    .k
                    .as_ptr()
                    .wrapping_add((p + PREFETCH_AHEAD) * hd + line);
                _mm_prefetch::<_MM_HINT_T0>(k as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(
                    cache.v.as_ptr().wrapping_add(p * hd + line) as *const i8
                );
            }
            let mut acc = [[_mm256_setzero_ps(); AT_ONCE]; H];
            for c in (0..hd).step_by(LANES) {
                for j in 0..AT_ONCE {
                    // SAFETY: `c + 8 <= hd`; positions below `seen`.
                    let k = unsafe { load(cache.k, (p + j) * hd + c) };
                    for (h, a) in acc.iter_mut().enumerate() {
                        // SAFETY: within head `h` of `q`.
                        let qc = unsafe { _mm256_loadu_ps(q.as_ptr().add(h * hd + c)) };
                        a[j] = _mm256_add_ps(a[j], _mm256_mul_ps(qc, k));
                    }
                }
            }
            for (h, a) in acc.iter().enumerate() {
                // Four positions' lanes summed pairwise at once: `hadd`
                // adds neighbours, twice, then the two halves.
                let pairs = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
                let sums = _mm_add_ps(
                    _mm256_castps256_ps128(pairs),
                    _mm256_extractf128_ps::<1>(pairs),
                );
                // SAFETY: four of head `h`'s `seen` places.
                unsafe {
                    _mm_storeu_ps(
                        scores.as_mut_ptr().add(h * seen + p),
                        _mm_mul_ps(sums, scale4),
                    )
                };
            }
            p += AT_ONCE;
        }
        for p in p..seen {
            for h in 0..H {
                let mut acc = _mm256_setzero_ps();
                for c in (0..hd).step_by(LANES) {
                    // SAFETY: as above.
                    let (qc, k) = unsafe {
                        (
                            _mm256_loadu_ps(q.as_ptr().add(h * hd + c)),
                            load(cache.k, p * hd + c),
                        )
                    };
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(qc, k));
                }
                scores[h * seen + p] = sum(acc) * scale;
            }
        }
    }

    /// `o += Σ_p weights[p] · v_p`, position by position; `o.len()` is a
    /// multiple of 8 and the cache holds `weights.len()` positions.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn weighted(weights: &[f32], cache: Head<'_>, o: &mut [f32]) {
        let mut at = 0;
        while at < o.len() {
            let n = ((o.len() - at) / LANES).min(OUT_VECTORS);
            // SAFETY: passed on: `n` vectors from `at` in `o` and in each
            // position's values.
            unsafe {
                match n {
                    4 => weighted_n::<4>(weights, cache, at, o),
                    3 => weighted_n::<3>(weights, cache, at, o),
                    2 => weighted_n::<2>(weights, cache, at, o),
                    _ => weighted_n::<1>(weights, cache, at, o),
                }
            }
            at += n * LANES;
        }
    }

    /// [`weighted`] for the `N` vectors of `o` from `at`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weighted_n<const N: usize>(
        weights: &[f32],
        cache: Head<'_>,
        at: usize,
        o: &mut [f32],
    ) {
        assert!(at + N * LANES <= o.len());
        let mut acc = [_mm256_setzero_ps(); N];
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: within `o` (asserted).
            *a = unsafe { _mm256_loadu_ps(o.as_ptr().add(at + j * LANES)) };
        }
        for (p, &w) in weights.iter().enumerate() {
            let w = _mm256_set1_ps(w);
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: the caller's cache holds this position.
                let v = unsafe { load(cache.v, p * o.len() + at + j * LANES) };
                *a = _mm256_add_ps(*a, _mm256_mul_ps(w, v));
            }
        }
        for (j, a) in acc.iter().enumerate() {
            // SAFETY: within `o` (asserted).
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(at + j * LANES), *a) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::data;
    use crate::quant::f32_to_f16;

    /// Attention in f64 over the same f16 operands, one position at a
    /// time, `sink`'s exponential in the denominator (−∞ for none): what
    /// the kernels approximate.
    fn reference(qh: &[f32], cache: Head<'_>, seen: usize, scale: f32, sink: f64) -> Vec<f64> {
        let hd = qh.len();
        let q: Vec<f64> = qh
            .iter()
            .map(|&x| f64::from(crate::quant::round_f16(x)))
            .collect();
        let at = |c: &[u16], p: usize, i: usize| f64::from(f16_to_f32(c[p * hd + i]));
        let s: Vec<f64> = (0..seen)
            .map(|p| (0..hd).map(|i| q[i] * at(cache.k, p, i)).sum::<f64>() * f64::from(scale))
            .collect();
        let max = s.iter().cloned().fold(sink, f64::max);
        let e: Vec<f64> = s.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = e.iter().sum::<f64>() + (sink - max).exp();
        (0..hd)
            .map(|i| (0..seen).map(|p| e[p] / total * at(cache.v, p, i)).sum())
            .collect()
    }

    #[test]
    fn every_head_size_and_length_gives_the_portable_bits_and_the_reference() {
        // Head sizes of the families supported (64, 80, 96, 128), one with
        // a vector left over past 4, and one no kernel takes (36); lengths
        // around the 4 positions a step.
        for hd in [64, 80, 96, 128, 40, 36] {
            for seen in [1, 3, 4, 5, 9, 70] {
                // Three KV heads' rows, appended a position at a time; the
                // second head attended.
                let (mut k, mut v) = (vec![Vec::new(); 3], vec![Vec::new(); 3]);
                let (keys, values) = (
                    data(seen * 3 * hd, hd as u32),
                    data(seen * 3 * hd, 7 + seen as u32),
                );
                // (The first positions at once, as a prompt; then one by
                // one, as decoding.)
                let (at_once, _) = keys.split_at(seen / 2 * 3 * hd);
                append(&mut k, at_once, hd);
                append(&mut v, &values[..at_once.len()], hd);
                for (key, value) in keys
                    .chunks_exact(3 * hd)
                    .zip(values.chunks_exact(3 * hd))
                    .skip(seen / 2)
                {
                    append(&mut k, key, hd);
                    append(&mut v, value, hd);
                }
                for (head, cache) in k.iter().enumerate() {
                    let want: Vec<u16> = keys
                        .chunks_exact(hd)
                        .skip(head)
                        .step_by(3)
                        .flatten()
                        .map(|&x| f32_to_f16(x))
                        .collect();
                    assert_eq!(cache, &want, "hd {hd}, {seen} seen: head {head}'s keys");
                }
                let qh = data(hd, 3);
                let cache = Head { k: &k[1], v: &v[1] };
                let scale = 1.0 / (hd as f32).sqrt();
                // (And with a sink, gpt-oss's, about the scores' size.)
                for sink in [None, Some(0.5f32)] {
                    let mut o = vec![0f32; hd];
                    let sinks = sink.as_ref().map(std::slice::from_ref);
                    attend(&qh, hd, cache, (seen, sinks), (scale, 0.0, 1.0), &mut o);
                    let sink = sink.map_or(f64::NEG_INFINITY, f64::from);
                    let want = reference(&qh, cache, seen, scale, sink);
                    for (i, (&got, &want)) in o.iter().zip(&want).enumerate() {
                        assert!(
                            (f64::from(got) - want).abs() < 2e-3,
                            "hd {hd}, {seen} seen, sink {sink}, output {i}: {got} against {want}"
                        );
                    }
                }
                let q: Vec<f32> = qh.iter().map(|&x| crate::quant::round_f16(x)).collect();
                #[cfg(target_arch = "x86_64")]
                if crate::quant::has_f16c() && hd.is_multiple_of(LANES) {
                    let mut portable = Vec::new();
                    portable.extend((0..seen).map(|p| dot(&q, &cache.k[p * hd..][..hd]) * scale));
                    let mut wide = vec![0f32; seen];
                    // SAFETY: checked just above; `seen` positions held.
                    unsafe { x86::scores::<1>(&q, cache, seen, scale, &mut wide) };
                    assert_eq!(portable, wide, "hd {hd}, {seen} seen: scores");
                    let weights = data(seen, 11);
                    let mut by_hand = vec![0.5f32; hd];
                    for (p, &w) in weights.iter().enumerate() {
                        for (i, o) in by_hand.iter_mut().enumerate() {
                            *o += w * f16_to_f32(cache.v[p * hd + i]);
                        }
                    }
                    let mut kernel = vec![0.5f32; hd];
                    // SAFETY: as above.
                    unsafe { x86::weighted(&weights, cache, &mut kernel) };
                    assert_eq!(by_hand, kernel, "hd {hd}, {seen} seen: weighted values");
                }
            }
        }
    }

    /// A KV head's query heads attended together (in passes of up to three
    /// over the keys) give each head's bits alone, for the group sizes of
    /// the families supported (1 to 8), on both paths.
    #[test]
    fn a_group_of_heads_gives_each_heads_bits_alone() {
        for hd in [64, 80, 36] {
            for seen in [1, 5, 70] {
                let (k, v) = (
                    data(seen * hd, 21)
                        .iter()
                        .map(|&x| f32_to_f16(x))
                        .collect::<Vec<_>>(),
                    data(seen * hd, 22)
                        .iter()
                        .map(|&x| f32_to_f16(x))
                        .collect::<Vec<_>>(),
                );
                let cache = Head { k: &k, v: &v };
                for group in [1, 2, 3, 4, 5, 7, 8] {
                    let qs = data(group * hd, 23 + group as u32);
                    let scale = 0.125;
                    let mut together = vec![0.25f32; group * hd];
                    attend(
                        &qs,
                        hd,
                        cache,
                        (seen, None),
                        (scale, 0.0, 1.0),
                        &mut together,
                    );
                    let mut alone = vec![0.25f32; group * hd];
                    for (qh, o) in qs.chunks_exact(hd).zip(alone.chunks_exact_mut(hd)) {
                        attend(qh, hd, cache, (seen, None), (scale, 0.0, 1.0), o);
                    }
                    assert_eq!(together, alone, "hd {hd}, {seen} seen, {group} heads");
                }
            }
        }
    }

    #[test]
    fn the_cache_holds_what_rounding_through_f16_gives() {
        let xs: Vec<f32> = data(1001, 5)
            .into_iter()
            .chain([0.0, -0.0, 65504.0, 70000.0, 1e-7, -3e-5, f32::INFINITY])
            .collect();
        let mut cache = Vec::new();
        append(std::slice::from_mut(&mut cache), &xs, xs.len());
        let want: Vec<u16> = xs.iter().map(|&x| f32_to_f16(x)).collect();
        assert_eq!(cache, want);
    }
}
