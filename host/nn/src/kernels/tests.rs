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

/// `len` pseudo-random values in [-1, 1] (xorshift from `seed`).
pub(crate) fn data(len: usize, seed: u32) -> Vec<f32> {
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

/// Every kernel this CPU can run, not only the one `detect` picks.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
fn kernels() -> Vec<Kernel> {
    let mut all = vec![Kernel::Portable];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        all.push(Kernel::Avx2);
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        all.push(Kernel::Avx512);
    }
    all
}

/// [`gemm`] (`kernel` None: the detected kernel, small sizes unpacked), or
/// `kernel`'s packing and blocks.
#[allow(clippy::too_many_arguments)]
fn product(
    kernel: Option<Kernel>,
    (a, b): (&[f32], &[f32]),
    c: &mut [f32],
    (m, k, n): (usize, usize, usize),
    parallel: bool,
    ends: Ends<'_>,
) {
    match kernel {
        None => gemm(a, b, c, m, k, n, parallel, ends.0, ends.1),
        Some(kernel) => {
            let mut packed = Vec::new();
            let fill = |kk: usize, j0: usize, dst: &mut [f32]| {
                dst.copy_from_slice(&b[kk * n + j0..][..dst.len()]);
            };
            kernel.pack(k, n, fill, &mut packed);
            blocked(a, &packed, c, (m, k, n), parallel, kernel, ends);
        }
    }
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
        // One block of rows split by columns over the threads.
        (40, 256, 512),
        // Several blocks of rows, the last one short.
        (400, 70, 50),
        // Split by columns, and more than one k block.
        (40, 600, 512),
    ] {
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let want = naive(&a, &b, m, k, n);
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25).collect();
        // A finishing step that marks each value with its row and column,
        // so a stretch handed over with the wrong offsets shows.
        let mark = |r: usize, j: usize| ((r * 7 + j) % 13) as f32;
        let seen = std::sync::atomic::AtomicUsize::new(0);
        let post = |r: usize, j0: usize, seg: &mut [f32]| {
            seen.fetch_add(seg.len(), std::sync::atomic::Ordering::Relaxed);
            for (jj, v) in seg.iter_mut().enumerate() {
                *v = *v * 2.0 + mark(r, j0 + jj);
            }
        };
        // The detected kernel through `gemm`, then each kernel's blocks
        // (which need every dimension).
        let mut runs: Vec<Option<Kernel>> = vec![None];
        if m * k * n > 0 {
            runs.extend(kernels().into_iter().map(Some));
        }
        for (kernel, parallel) in runs.into_iter().flat_map(|r| [(r, true), (r, false)]) {
            // C's contents are ignored from zeros or a bias, kept otherwise.
            let starts = [
                (Init::Zero, f32::NAN),
                (Init::Keep, 0.5),
                (Init::Bias(&bias), f32::NAN),
            ];
            let start = |init: Init<'_>, j: usize| match init {
                Init::Zero => 0.0,
                Init::Keep => 0.5,
                Init::Bias(b) => b[j],
            };
            for (init, fill) in starts {
                for finish in [Finish::NONE, Finish::new(&post)] {
                    seen.store(0, std::sync::atomic::Ordering::Relaxed);
                    let mut c = vec![fill; m * n];
                    product(
                        kernel,
                        (&a, &b),
                        &mut c,
                        (m, k, n),
                        parallel,
                        (init, finish),
                    );
                    for (i, (x, y)) in c.iter().zip(&want).enumerate() {
                        let (r, j) = (i / n, i % n);
                        let mut y = y + start(init, j);
                        if finish.post.is_some() {
                            y = y * 2.0 + mark(r, j);
                        }
                        assert!(
                            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                            "{m}x{k}x{n} {kernel:?} {init:?} at ({r}, {j}): {x} vs {y}"
                        );
                    }
                    let finished = seen.load(std::sync::atomic::Ordering::Relaxed);
                    let once = if finish.post.is_some() { m * n } else { 0 };
                    assert_eq!(finished, once, "{m}x{k}x{n}: each value finished once");
                }
            }
        }
    }
}

#[test]
fn a_prepacked_b_gives_the_same_products() {
    for &(m, k, n) in &[(1, 384, 1536), (7, 33, 65), (100, 300, 40), (3, 0, 5)] {
        let (a, b) = (data(m * k, 5), data(k * n, 6));
        let want = naive(&a, &b, m, k, n);
        let packed = PackedB::new(&b, k, n);
        assert_eq!((packed.k(), packed.n()), (k, n));
        assert_eq!(packed.unpack(), b, "{m}x{k}x{n}: unpacked");
        let mut c = vec![f32::NAN; m * n];
        matmul_packed(&a, &packed, &mut c, m, false);
        let mut acc = vec![1.0; m * n];
        matmul_packed(&a, &packed, &mut acc, m, true);
        for ((x, z), y) in c.iter().zip(&acc).zip(&want) {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{m}x{k}x{n}: {x} vs {y}"
            );
            assert!(
                (z - (y + 1.0)).abs() <= 1e-4 * (1.0 + y.abs()),
                "{m}x{k}x{n} + 1"
            );
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
