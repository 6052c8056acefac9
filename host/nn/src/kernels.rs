//! Dense f32 kernels shared by the engines: a cache-blocked, register-tiled
//! matrix multiply, parallel over row blocks with rayon.
//!
//! The design is the classic GotoBLAS one, written so LLVM vectorises it:
//! B is packed once into column panels `NR` wide (so the inner loop reads
//! one contiguous `NR`-float row per step of k), A is packed per k block
//! into `MR`-row panels, and a micro-kernel keeps an `MR x NR` tile of C in
//! registers while it walks a `KC`-long slice of k.
//! On x86-64 the same code is compiled a second time with AVX2+FMA enabled
//! and picked at run time, since the default target only guarantees SSE2.

use rayon::prelude::*;

/// Rows and columns of C per micro-tile on AVX2 (and the portable path):
/// 6 x 16 floats is 12 AVX registers of accumulators, leaving room for the
/// B row and the broadcast A value.
const MR: usize = 6;
const NR: usize = 16;
/// The same on AVX-512: 8 x 32 floats is 16 of the 32 ZMM registers (at
/// 12 rows LLVM shuffles and spills them).
#[cfg(target_arch = "x86_64")]
const MR512: usize = 8;
#[cfg(target_arch = "x86_64")]
const NR512: usize = 32;
/// Depth of one k block: an `MR x KC` slice of A and a `KC x NR` panel of B
/// stay in L1/L2 while a tile is computed.
const KC: usize = 256;
/// Rows of C per parallel task (a multiple of every `MR`).
const MB: usize = 48;
/// Below this many multiply-adds, packing and threads cost more than they save.
const SMALL: usize = 32 * 32 * 32;

/// `c = a · b` for row-major `a` (`m x k`), `b` (`k x n`) and `c` (`m x n`),
/// overwriting `c`; parallel over rows of `c` on rayon's global pool.
///
/// This is the kernel behind ONNX `MatMul`/`Gemm`; it is public so that
/// benchmarks can measure it directly.
///
/// # Panics
///
/// When a slice is shorter than its dimensions say.
///
/// ```
/// let (a, b) = ([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]);
/// let mut c = [0.0; 4];
/// weft_nn::kernels::matmul(&a, &b, &mut c, 2, 2, 2);
/// assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
/// ```
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    gemm(a, b, c, m, k, n, true, true);
}

/// C += A·B: [`matmul`] adding to what `c` holds (a broadcast bias, say)
/// instead of overwriting it.
pub(crate) fn matmul_add(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    gemm(a, b, c, m, k, n, true, false);
}

/// [`matmul`] on the calling thread only, for callers that parallelise
/// over many small products themselves.
pub(crate) fn matmul_serial(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    gemm(a, b, c, m, k, n, false, true);
}

#[allow(clippy::too_many_arguments)]
fn gemm(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    parallel: bool,
    zero: bool,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "matmul operands too short"
    );
    let c = &mut c[..m * n];
    if m == 0 || n == 0 {
        return;
    }
    if zero {
        c.fill(0.0);
    }
    if k == 0 {
        return;
    }
    if m * k * n <= SMALL {
        naive_axpy(a, b, c, k, n);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        blocked::<MR512, NR512>(a, b, c, m, k, n, parallel, micro_avx512_entry);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        blocked::<MR, NR>(a, b, c, m, k, n, parallel, micro_avx2_entry);
        return;
    }
    blocked::<MR, NR>(a, b, c, m, k, n, parallel, micro::<false>);
}

/// A micro-kernel: the `MR x NR` tile of A·B over one k block, from an A
/// panel (`kc x MR`) and a B panel (`kc x NR`).
type Micro<const MR: usize, const NR: usize> = fn(&[f32], &[f32]) -> [[f32; NR]; MR];

#[allow(clippy::too_many_arguments)]
fn blocked<const MR: usize, const NR: usize>(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    parallel: bool,
    micro: Micro<MR, NR>,
) {
    let packed = pack_b::<NR>(b, k, n);
    let block = |(blk, cb): (usize, &mut [f32])| {
        let rows = cb.len() / n;
        let ab = &a[blk * MB * k..(blk * MB + rows) * k];
        row_block::<MR, NR>(ab, &packed, cb, rows, k, n, micro);
    };
    if parallel && m > MB {
        c.par_chunks_mut(MB * n).enumerate().for_each(block);
    } else {
        c.chunks_mut(MB * n).enumerate().for_each(block);
    }
}

/// C += A·B one row of C at a time (axpy over contiguous rows of B): the
/// small-size path.
fn naive_axpy(a: &[f32], b: &[f32], c: &mut [f32], k: usize, n: usize) {
    for (ci, ai) in c.chunks_exact_mut(n).zip(a.chunks_exact(k)) {
        for (p, &av) in ai.iter().enumerate() {
            if av == 0.0 {
                continue;
            }
            for (cv, &bv) in ci.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                *cv += av * bv;
            }
        }
    }
}

/// B as `ceil(n / NR)` panels, each `k x NR`, zero padded on the right.
fn pack_b<const NR: usize>(b: &[f32], k: usize, n: usize) -> Vec<f32> {
    let panels = n.div_ceil(NR);
    let mut out = vec![0.0; panels * k * NR];
    for (p, panel) in out.chunks_exact_mut(k * NR).enumerate() {
        let j0 = p * NR;
        let w = NR.min(n - j0);
        for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
            dst[..w].copy_from_slice(&b[kk * n + j0..kk * n + j0 + w]);
        }
    }
    out
}

fn row_block<const MR: usize, const NR: usize>(
    a: &[f32],
    packed: &[f32],
    c: &mut [f32],
    rows: usize,
    k: usize,
    n: usize,
    micro: Micro<MR, NR>,
) {
    let tiles = rows.div_ceil(MR);
    let mut apack = vec![0.0f32; tiles * MR * KC.min(k)];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        // A's rows for this k block as MR-row panels, k-major: one load of
        // MR consecutive floats per step of k. Rows past `rows` stay zero.
        for t in 0..tiles {
            let panel = &mut apack[t * MR * kc..(t + 1) * MR * kc];
            for r in 0..MR.min(rows - t * MR) {
                let src = &a[(t * MR + r) * k + k0..(t * MR + r) * k + k0 + kc];
                for (p, &v) in src.iter().enumerate() {
                    panel[p * MR + r] = v;
                }
            }
        }
        for (p, panel) in packed.chunks_exact(k * NR).enumerate() {
            let bp = &panel[k0 * NR..(k0 + kc) * NR];
            let j0 = p * NR;
            let w = NR.min(n - j0);
            for t in 0..tiles {
                let acc = micro(&apack[t * MR * kc..(t + 1) * MR * kc], bp);
                store(&acc, c, t * MR, MR.min(rows - t * MR), j0, w, n);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn micro_avx2_entry(ap: &[f32], bp: &[f32]) -> [[f32; NR]; MR] {
    // SAFETY: `gemm` picks this kernel only when the CPU has AVX2 and FMA.
    unsafe { micro_avx2(ap, bp) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn micro_avx2(ap: &[f32], bp: &[f32]) -> [[f32; NR]; MR] {
    micro::<true>(ap, bp)
}

#[cfg(target_arch = "x86_64")]
fn micro_avx512_entry(ap: &[f32], bp: &[f32]) -> [[f32; NR512]; MR512] {
    // SAFETY: `gemm` picks this kernel only when the CPU has AVX-512F.
    unsafe { micro_avx512(ap, bp) }
}

/// The AVX-512 tile, with intrinsics: LLVM's autovectoriser keeps to
/// 256-bit vectors, which halves the throughput of these cores.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn micro_avx512(ap: &[f32], bp: &[f32]) -> [[f32; NR512]; MR512] {
    use std::arch::x86_64::*;
    let kc = ap.len() / MR512;
    assert!(bp.len() >= kc * NR512, "B panel shorter than the A panel");
    let mut acc = [[_mm512_setzero_ps(); 2]; MR512];
    let (mut pa, mut pb) = (ap.as_ptr(), bp.as_ptr());
    for _ in 0..kc {
        // SAFETY: step `p` reads `ap[p * MR512..][..MR512]` and
        // `bp[p * NR512..][..NR512]`, both in bounds for `p < kc`.
        // Straight-line code over constant indices keeps the 24
        // accumulators in registers (a loop over rows spilled them).
        unsafe {
            let (b0, b1) = (_mm512_loadu_ps(pb), _mm512_loadu_ps(pb.add(16)));
            macro_rules! row {
                ($($r:literal)*) => {$(
                    let av = _mm512_set1_ps(*pa.add($r));
                    acc[$r][0] = _mm512_fmadd_ps(av, b0, acc[$r][0]);
                    acc[$r][1] = _mm512_fmadd_ps(av, b1, acc[$r][1]);
                )*};
            }
            row!(0 1 2 3 4 5 6 7);
            pa = pa.add(MR512);
            pb = pb.add(NR512);
        }
    }
    let mut out = [[0.0f32; NR512]; MR512];
    for (o, a) in out.iter_mut().zip(&acc) {
        // SAFETY: each row of `out` holds 32 floats.
        unsafe {
            _mm512_storeu_ps(o.as_mut_ptr(), a[0]);
            _mm512_storeu_ps(o.as_mut_ptr().add(16), a[1]);
        }
    }
    out
}

/// An `MR x NR` tile of A·B over one k block: `ap` is an A panel
/// (`kc x MR`), `bp` a B panel (`kc x NR`). The fixed-size arrays let
/// LLVM keep the tile in registers and drop every bounds check.
#[inline(always)]
fn micro<const FMA: bool>(ap: &[f32], bp: &[f32]) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for (a, b) in ap.chunks_exact(MR).zip(bp.chunks_exact(NR)) {
        let a: &[f32; MR] = a.try_into().expect("MR wide");
        let b: &[f32; NR] = b.try_into().expect("NR wide");
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] = if FMA {
                    a[r].mul_add(b[j], acc[r][j])
                } else {
                    acc[r][j] + a[r] * b[j]
                };
            }
        }
    }
    acc
}

#[inline(always)]
fn store<const MR: usize, const NR: usize>(
    acc: &[[f32; NR]; MR],
    c: &mut [f32],
    r: usize,
    rows: usize,
    j0: usize,
    w: usize,
    n: usize,
) {
    for (i, accr) in acc.iter().enumerate().take(rows) {
        let row = &mut c[(r + i) * n + j0..(r + i) * n + j0 + w];
        for (cv, av) in row.iter_mut().zip(accr) {
            *cv += av;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += f64::from(a[i * k + p]) * f64::from(b[p * n + j]);
                }
            }
        }
        c.into_iter().map(|v| v as f32).collect()
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).max(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_a_naive_reference_on_ragged_sizes() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (33, 17, 15),
            (70, 300, 33),
            (129, 513, 17),
            (5, 0, 4),
            (64, 64, 64),
        ] {
            let (a, b) = (data(m * k, 1), data(k * n, 2));
            let want = naive(&a, &b, m, k, n);
            for parallel in [true, false] {
                let mut c = vec![f32::NAN; m * n];
                gemm(&a, &b, &mut c, m, k, n, parallel, true);
                for (x, y) in c.iter().zip(&want) {
                    assert!(
                        (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                        "{m}x{k}x{n}: {x} vs {y}"
                    );
                }
                // Accumulating onto what C holds (a bias).
                let mut c = vec![0.5; m * n];
                gemm(&a, &b, &mut c, m, k, n, parallel, false);
                for (x, y) in c.iter().zip(&want) {
                    assert!(
                        (x - (y + 0.5)).abs() <= 1e-4 * (1.0 + y.abs()),
                        "{m}x{k}x{n} + 0.5: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn bert_sized_product_is_fast_enough() {
        let (m, k, n) = (32 * 128, 384, 1536);
        let (a, b) = (data(m * k, 3), data(k * n, 4));
        let mut c = vec![0.0; m * n];
        let t = std::time::Instant::now();
        matmul(&a, &b, &mut c, m, k, n);
        let secs = t.elapsed().as_secs_f64();
        let gflops = 2.0 * (m * k * n) as f64 / secs / 1e9;
        eprintln!(
            "matmul {m}x{k}x{n}: {:.1} ms, {gflops:.1} GFLOP/s",
            secs * 1e3
        );
        // A spot check of one row against the reference.
        let want = naive(&a[..k], &b, 1, k, n);
        for (x, y) in c[..n].iter().zip(&want) {
            assert!((x - y).abs() <= 1e-3 * (1.0 + y.abs()));
        }
    }
}
