//! Wider vectors for the element-wise loops, chosen at run time.
//!
//! The crate compiles for baseline x86-64, where LLVM vectorises with
//! 4-lane SSE2. [`wide_fn!`] compiles a function's body a second time with
//! AVX2 and FMA enabled and runs that copy when the CPU has them, so its
//! loops are vectorised 8 lanes wide; the arithmetic is the same (Rust
//! never contracts `a * b + c` into an FMA on its own), so the results are
//! bit-identical to the baseline build's.

/// Defines a function whose body is compiled twice, for baseline x86-64
/// and for AVX2+FMA, and picks the second at run time where the CPU has
/// them. Only what is inlined into the body (mark helpers
/// `#[inline(always)]`) gets the wider vectors.
macro_rules! wide_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])* $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::simd::has_avx2() {
                    // SAFETY: the CPU has AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use wide_fn;

/// Accumulators per reduction: one AVX2 vector of f32.
const LANES: usize = 8;

/// `f64` accumulators per sum: one AVX2 vector.
const F64_LANES: usize = 4;

/// The sum of `f(v)` over `r` in f64, over [`F64_LANES`] running lanes
/// (LLVM does not vectorise a float sum into one accumulator).
#[inline(always)]
pub(crate) fn sum_f64(r: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0.0f64; F64_LANES];
    let mut chunks = r.chunks_exact(F64_LANES);
    for c in &mut chunks {
        lanes
            .iter_mut()
            .zip(c)
            .for_each(|(l, &v)| *l += f64::from(f(v)));
    }
    let rest: f64 = chunks.remainder().iter().map(|&v| f64::from(f(v))).sum();
    lanes.iter().sum::<f64>() + rest
}

/// Whether the CPU has AVX2 and FMA (asked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// `e^x` to about 2 ulp, branch-free so that loops over it vectorise; 0
/// below -86.6 (where f32 nears the subnormals, which are slow, and which
/// softmax rounds away anyway), +inf above 88.7, NaN for NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n * LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to the nearest integer, which then sits in
    // the low bits of the sum (no float-to-int conversion, which does not
    // vectorise with Rust's saturating `as`).
    const ROUND: f32 = 12_582_912.0;
    const LO: f32 = -86.6;
    const HI: f32 = 88.7;
    let xc = x.clamp(LO, HI);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = xc - n * LN2_HI - n * LN2_LO;
    // e^r on |r| <= ln2 / 2: Taylor to degree 6 (error ~1e-7 relative).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^(n - 1) from its exponent bits, n in [-125, 128], times 2.
    let half = f32::from_bits((ni.wrapping_add(126) as u32) << 23);
    let y = p * half * 2.0;
    if x < LO {
        0.0
    } else if x > HI {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

wide_fn! {
    /// Softmax of `row` in place after `row = row * mul + add` (the
    /// scaled, masked attention scores); `add` is one value per element or
    /// one for the row. Inputs of -inf become 0; a row of all -inf becomes
    /// NaN, as in the graph as written.
    pub(crate) fn softmax_affine(row: &mut [f32], mul: f32, add: Add<'_>) {
        match add {
            Add::Each(a) => row
                .iter_mut()
                .zip(a)
                .for_each(|(r, &a)| *r = *r * mul + a),
            Add::All(a) => row.iter_mut().for_each(|r| *r = *r * mul + a),
        }
        // Eight running lanes: LLVM does not vectorise a float reduction
        // into one accumulator (that would reorder the sum).
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            lanes.iter_mut().zip(c).for_each(|(l, &v)| *l = l.max(v));
        }
        let max = chunks
            .remainder()
            .iter()
            .chain(&lanes)
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut lanes = [0.0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in &mut chunks {
            lanes.iter_mut().zip(c).for_each(|(l, r)| {
                *r = exp(*r - max);
                *l += *r;
            });
        }
        let mut sum = 0.0f32;
        for r in chunks.into_remainder() {
            *r = exp(*r - max);
            sum += *r;
        }
        let sum = lanes.iter().fold(sum, |s, &l| s + l);
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|r| *r *= inv);
    }
}

/// What [`softmax_affine`] adds to each element.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Add<'a> {
    /// One value per element.
    Each(&'a [f32]),
    /// The same value for all.
    All(f32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_libm_everywhere_it_is_finite() {
        let mut worst = 0.0f64;
        let mut x = -86.5f32;
        while x < 88.5 {
            let (got, want) = (exp(x), x.exp());
            let rel = ((got - want) / want).abs() as f64;
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn softmax_matches_the_plain_formula() {
        let scores = [0.5f32, -1.0, 3.0, 2.5, f32::NEG_INFINITY, 0.0, 7.0];
        let mask = [0.0f32, 0.0, -10000.0, 0.0, 0.0, 0.0, 0.0];
        let mut row = scores;
        softmax_affine(&mut row, 0.25, Add::Each(&mask));
        let z: Vec<f32> = scores
            .iter()
            .zip(&mask)
            .map(|(s, m)| s * 0.25 + m)
            .collect();
        let max = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let sum: f32 = z.iter().map(|v| (v - max).exp()).sum();
        for (got, v) in row.iter().zip(&z) {
            let want = (v - max).exp() / sum;
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let mut all = [f32::NEG_INFINITY; 3];
        softmax_affine(&mut all, 1.0, Add::All(0.0));
        assert!(all.iter().all(|v| v.is_nan()));
    }
}
