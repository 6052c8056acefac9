//! Choosing the next token from logits: greedy, or temperature plus nucleus
//! (top-p) sampling with a seeded [`Pcg32`], so a seed replays a completion.

/// PCG32 (XSH-RR, O'Neill 2014): a small, well-distributed generator; the same
/// seed always gives the same stream, on every platform.
#[derive(Debug, Clone)]
pub(crate) struct Pcg32 {
    state: u64,
}

impl Pcg32 {
    const MULTIPLIER: u64 = 6_364_136_223_846_793_005;
    const INCREMENT: u64 = 1_442_695_040_888_963_407;

    /// A generator seeded with `seed` (on the default PCG32 stream), as the
    /// reference `pcg32_srandom_r` seeds one.
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = Pcg32 { state: 0 };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(seed);
        rng.next_u32();
        rng
    }

    /// The next 32 random bits.
    pub(crate) fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old
            .wrapping_mul(Self::MULTIPLIER)
            .wrapping_add(Self::INCREMENT);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        xorshifted.rotate_right((old >> 59) as u32)
    }

    /// Uniform in `[0, 1)`, from the top 24 bits (an f32's precision).
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }
}

/// How to pick each token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sampling {
    /// 0 is greedy; otherwise logits are divided by it before the softmax.
    pub(crate) temperature: f32,
    /// Sample only from the most likely tokens whose probabilities sum to this.
    pub(crate) top_p: f32,
}

/// The index of the chosen token in `logits`.
///
/// This runs once per token over the whole vocabulary (49 152 logits for
/// SmolLM2), so it avoids what would cost milliseconds: the weights come
/// from a vectorisable `exp` ([`exp_neg`]), and nucleus sampling sorts
/// only the most likely tokens (a few dozen for a peaked distribution),
/// not the vocabulary.
pub(crate) fn sample(logits: &[f32], sampling: Sampling, rng: &mut Pcg32) -> usize {
    if sampling.temperature <= 0.0 {
        return argmax(logits);
    }
    let max = largest(logits);
    // Unnormalised softmax weights; NaN logits (and all of them when the
    // largest is infinite or there is none) get none.
    let weights = softmax_weights(logits, max, sampling.temperature);
    // (Finite and not negative: each weight is in [0, 1].)
    let total = sum(&weights);
    if total <= 0.0 {
        return argmax(logits);
    }
    if sampling.top_p >= 1.0 {
        return draw(weights.iter().copied().enumerate(), total, rng)
            .unwrap_or_else(|| last_positive(&weights));
    }
    let kept = nucleus(&weights, sampling.top_p * total);
    let kept_total: f32 = kept.iter().map(|&i| weights[i as usize]).sum();
    let chosen = kept.iter().map(|&i| (i as usize, weights[i as usize]));
    // Rounding left a sliver past the last weight: the last kept token.
    draw(chosen, kept_total, rng).unwrap_or(kept[kept.len() - 1] as usize)
}

/// Walks `weights` (index, weight) to where a uniform draw in `[0, total)`
/// falls; `None` if rounding leaves it past the end.
fn draw(weights: impl Iterator<Item = (usize, f32)>, total: f32, rng: &mut Pcg32) -> Option<usize> {
    let mut target = rng.next_f32() * total;
    for (i, w) in weights.filter(|&(_, w)| w > 0.0) {
        if target < w {
            return Some(i);
        }
        target -= w;
    }
    None
}

/// The index of the last positive weight (there is one).
fn last_positive(weights: &[f32]) -> usize {
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// The indices of the most likely tokens, most likely first (a tie: the
/// lower index first), up to the first whose running sum reaches
/// `mass` (at least one).
///
/// Only the weights above a threshold are sorted: they come first in the
/// order of all, so if their sum reaches `mass` the answer is among them
/// (for an LLM's distribution, a few dozen tokens). Otherwise the
/// threshold falls and it tries again, at worst sorting every weight.
fn nucleus(weights: &[f32], mass: f32) -> Vec<u32> {
    let before = |a: &u32, b: &u32| {
        let (wa, wb) = (weights[*a as usize], weights[*b as usize]);
        wb.total_cmp(&wa).then(a.cmp(b))
    };
    let top = largest(weights);
    let mut threshold = top * 1e-4;
    loop {
        // (At 0, every positive weight.)
        let mut order: Vec<u32> = (0..weights.len() as u32)
            .filter(|&i| weights[i as usize] >= threshold && weights[i as usize] > 0.0)
            .collect();
        order.sort_unstable_by(before);
        let mut kept = 0.0;
        let mut keep = 0;
        while keep < order.len() && (keep == 0 || kept < mass) {
            kept += weights[order[keep] as usize];
            keep += 1;
        }
        if kept >= mass || threshold == 0.0 {
            order.truncate(keep);
            return order;
        }
        threshold = if threshold > top * 1e-12 {
            threshold * 1e-4
        } else {
            0.0
        };
    }
}

/// `exp((l - max) / temperature)` of every logit, 0 for a NaN one.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn softmax_weights(logits: &[f32], max: f32, temperature: f32) -> Vec<f32> {
    logits
        .iter()
        .map(|&l| exp_neg((l - max) / temperature))
        .collect()
}

/// The sum of `values`, in [`LANES`] running sums (so it vectorises).
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (s, &v) in lanes.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    lanes.iter().chain(rest).sum()
}

/// `e^x` for `x <= 0`, within 3 ε (relative) of `f32::exp`; 0 below
/// -87 (e^-87 ≈ 1.6e-38, next to the smallest normal f32: a weight that
/// cannot matter) and for NaN.
/// Branch-free arithmetic, unlike the library `exp`, so that a loop of
/// it vectorises: `x = n ln 2 + r`, `e^r` by its Taylor series to r^7
/// (|r| <= ln 2 / 2), times `2^n` made from its bits.
#[inline]
fn exp_neg(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, the first exact in few bits, for an exact `n ln 2`.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding it rounds to the nearest integer (|x log2 e| < 2^22).
    const ROUND: f32 = 12_582_912.0;
    let inside = x >= -87.0;
    let x = if inside { x } else { 0.0 };
    let n = (x * LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    let scale = f32::from_bits((((n as i32) + 127) as u32) << 23);
    if inside { p * scale } else { 0.0 }
}

/// The index of the largest logit, the first on a tie; NaNs never win
/// (all NaN: the last).
pub(crate) fn argmax(logits: &[f32]) -> usize {
    // Two passes that vectorise (a pass keeping the index does not): the
    // largest value, then where it first is. This runs over the whole
    // vocabulary a token; in Wasm with SIMD it is about ten times faster.
    first_of(logits, largest(logits)).unwrap_or(logits.len().saturating_sub(1))
}

/// Values compared at once: four 128-bit vectors in Wasm.
const LANES: usize = 16;

/// The largest value that is not NaN (−∞ if there is none).
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn largest(values: &[f32]) -> f32 {
    // A NaN never compares greater, so it is never kept.
    let keep = |top: f32, v: f32| if v > top { v } else { top };
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (top, &v) in lanes.iter_mut().zip(chunk) {
            *top = keep(*top, v);
        }
    }
    lanes
        .iter()
        .chain(rest)
        .copied()
        .fold(f32::NEG_INFINITY, keep)
}

/// The index of the first value equal to `wanted`.
#[cfg_attr(target_arch = "wasm32", target_feature(enable = "simd128"))]
fn first_of(values: &[f32], wanted: f32) -> Option<usize> {
    let mut chunks = values.chunks_exact(LANES);
    for (i, chunk) in chunks.by_ref().enumerate() {
        // Every lane compared (no early exit inside a chunk): vector code.
        if chunk.iter().fold(false, |any, &v| any | (v == wanted)) {
            return chunk
                .iter()
                .position(|&v| v == wanted)
                .map(|k| i * LANES + k);
        }
    }
    let at = values.len() - chunks.remainder().len();
    chunks
        .remainder()
        .iter()
        .position(|&v| v == wanted)
        .map(|k| at + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_p: 1.0,
    };

    #[test]
    fn pcg32_is_deterministic_and_uniform() {
        let stream = |seed| {
            (0..4)
                .scan(Pcg32::new(seed), |r, _| Some(r.next_u32()))
                .collect::<Vec<_>>()
        };
        assert_eq!(stream(7), stream(7));
        assert_ne!(stream(7), stream(8));
        let mut r = Pcg32::new(0);
        let mean = (0..10_000).map(|_| r.next_f32()).sum::<f32>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert!((0..10_000).all(|_| r.next_f32() < 1.0));
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut rng = Pcg32::new(0);
        assert_eq!(sample(&[0.1, 3.0, 3.0, -1.0], GREEDY, &mut rng), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0, 0.5]), 1);
        assert_eq!(argmax(&[0.5, f32::NAN, 2.0, 2.0, f32::NAN]), 2);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 1, "all NaN: the last");
        assert_eq!(argmax(&[f32::NAN, f32::NEG_INFINITY, f32::NAN]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    /// The vector passes against the one-pass scan they replace, over
    /// lengths around their 16 lanes, the maximum anywhere (repeated, in
    /// the tail, or alone among NaNs).
    #[test]
    fn argmax_agrees_with_a_plain_scan() {
        fn scan(logits: &[f32]) -> usize {
            let (mut best, mut top) = (0, f32::NAN);
            for (i, &l) in logits.iter().enumerate() {
                if l > top || top.is_nan() {
                    (best, top) = (i, l);
                }
            }
            best
        }
        let mut rng = Pcg32::new(9);
        for len in [1, 15, 16, 17, 31, 32, 33, 100, 49_152] {
            for case in 0..20 {
                let mut v: Vec<f32> = (0..len).map(|_| rng.next_f32() * 10.0 - 5.0).collect();
                let at = rng.next_u32() as usize % len;
                match case % 4 {
                    0 => v[at] = 7.0,
                    1 => {
                        v[at] = 7.0;
                        v[len - 1] = 7.0;
                    }
                    2 => v.iter_mut().step_by(3).for_each(|l| *l = f32::NAN),
                    _ => v.iter_mut().for_each(|l| *l = l.round()),
                }
                assert_eq!(argmax(&v), scan(&v), "length {len}, case {case}: {v:?}");
            }
        }
    }

    #[test]
    fn tiny_top_p_is_greedy() {
        let sampling = Sampling {
            temperature: 1.0,
            top_p: 1e-6,
        };
        let mut rng = Pcg32::new(3);
        for _ in 0..50 {
            assert_eq!(sample(&[1.0, 2.5, 2.0], sampling, &mut rng), 1);
        }
    }

    #[test]
    fn temperature_follows_the_softmax() {
        let sampling = Sampling {
            temperature: 1.0,
            top_p: 1.0,
        };
        // p = softmax([0, ln 3]) = [0.25, 0.75].
        let logits = [0.0, 3f32.ln()];
        let mut rng = Pcg32::new(11);
        let ones = (0..4000)
            .filter(|_| sample(&logits, sampling, &mut rng) == 1)
            .count();
        assert!((2800..3200).contains(&ones), "{ones}");
    }

    #[test]
    fn top_p_cuts_the_tail() {
        // p ≈ [0.665, 0.245, 0.09]: top_p 0.8 keeps the first two only.
        let logits = [2.0, 1.0, 0.0];
        let sampling = Sampling {
            temperature: 1.0,
            top_p: 0.8,
        };
        let mut rng = Pcg32::new(5);
        assert!((0..2000).all(|_| sample(&logits, sampling, &mut rng) != 2));
    }

    #[test]
    fn exp_neg_is_exp_within_a_few_ulp() {
        let mut x = 0.0f32;
        while x > -87.0 {
            let (got, want) = (exp_neg(x), x.exp());
            assert!(
                (got - want).abs() <= 3.0 * f32::EPSILON * want,
                "e^{x}: {got} vs {want}"
            );
            x -= 0.0137;
        }
        assert_eq!(exp_neg(0.0), 1.0);
        for zero in [-87.5, -200.0, f32::NEG_INFINITY, f32::NAN] {
            assert_eq!(exp_neg(zero), 0.0, "{zero}");
        }
    }

    /// The nucleus as the whole vocabulary sorted gives it.
    #[test]
    fn the_nucleus_is_the_top_of_the_sorted_weights() {
        fn sorted(weights: &[f32], mass: f32) -> Vec<u32> {
            let mut all: Vec<u32> = (0..weights.len() as u32)
                .filter(|&i| weights[i as usize] > 0.0)
                .collect();
            all.sort_by(|a, b| {
                weights[*b as usize]
                    .total_cmp(&weights[*a as usize])
                    .then(a.cmp(b))
            });
            let (mut kept, mut keep) = (0.0, 0);
            while keep < all.len() && (keep == 0 || kept < mass) {
                kept += weights[all[keep] as usize];
                keep += 1;
            }
            all.truncate(keep);
            all
        }
        let mut rng = Pcg32::new(4);
        for len in [1, 3, 64, 65, 600, 49_152] {
            for case in 0..6 {
                // Peaked, flat (the first threshold keeps too little),
                // ties and zeros, a few large among many small.
                let weights: Vec<f32> = (0..len)
                    .map(|i| match case {
                        0 => exp_neg(-(rng.next_f32() * 30.0)),
                        1 => 0.5 + rng.next_f32() * 0.01,
                        2 => (rng.next_u32() % 4) as f32,
                        _ if i % 7 == 0 => 1e3 * rng.next_f32(),
                        _ => rng.next_f32(),
                    })
                    .collect();
                let total = sum(&weights);
                for p in [1e-6, 0.5, 0.9, 0.999] {
                    assert_eq!(
                        nucleus(&weights, p * total),
                        sorted(&weights, p * total),
                        "length {len}, case {case}, top_p {p}"
                    );
                }
            }
        }
    }

    #[test]
    fn nan_and_infinite_logits_sample_sanely() {
        let sampling = Sampling {
            temperature: 0.8,
            top_p: 0.9,
        };
        let mut rng = Pcg32::new(1);
        for _ in 0..20 {
            assert_eq!(sample(&[f32::NAN, 1.0, f32::NAN], sampling, &mut rng), 1);
            assert_eq!(sample(&[0.0, f32::INFINITY, 5.0], sampling, &mut rng), 1);
            assert_eq!(sample(&[f32::NEG_INFINITY; 3], sampling, &mut rng), 0);
        }
    }

    #[test]
    fn same_seed_same_choices() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let sampling = Sampling {
            temperature: 0.8,
            top_p: 0.9,
        };
        let run = |seed| {
            let mut rng = Pcg32::new(seed);
            (0..20)
                .map(|_| sample(&logits, sampling, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
