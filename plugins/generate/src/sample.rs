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
pub(crate) fn sample(logits: &[f32], sampling: Sampling, rng: &mut Pcg32) -> usize {
    if sampling.temperature <= 0.0 {
        return argmax(logits);
    }
    let max = logits
        .iter()
        .copied()
        .filter(|l| !l.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    // Unnormalised softmax weights; NaN logits get none.
    let mut weights: Vec<(usize, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, ((l - max) / sampling.temperature).exp()))
        .filter(|&(_, w)| w > 0.0)
        .collect();
    if weights.is_empty() {
        return argmax(logits);
    }
    if sampling.top_p < 1.0 {
        weights.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f32 = weights.iter().map(|w| w.1).sum();
        let mut kept = 0.0;
        let mut keep = 0;
        while keep < weights.len() && (keep == 0 || kept < sampling.top_p * total) {
            kept += weights[keep].1;
            keep += 1;
        }
        weights.truncate(keep);
    }
    let total: f32 = weights.iter().map(|w| w.1).sum();
    let mut target = rng.next_f32() * total;
    for &(i, w) in &weights {
        if target < w {
            return i;
        }
        target -= w;
    }
    // Rounding left a sliver past the last weight.
    weights[weights.len() - 1].0
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
