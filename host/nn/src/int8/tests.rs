use super::*;

/// `(A - za) · B` in i64, the plain way.
fn naive(a: &[i64], b: &[f32], (m, k, n): (usize, usize, usize), za: &[i64]) -> Vec<i64> {
    let mut c = vec![0i64; m * n];
    for i in 0..m {
        let z = za[if za.len() == 1 { 0 } else { i }];
        for j in 0..n {
            for p in 0..k {
                c[i * n + j] += (a[i * k + p] - z) * b[p * n + j] as i64;
            }
        }
    }
    c
}

/// `len` pseudo-random integers in `lo..=hi` (xorshift from `seed`).
fn ints(len: usize, seed: u32, lo: i64, hi: i64) -> Vec<i64> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            lo + i64::from(s) % (hi - lo + 1)
        })
        .collect()
}

/// Every kernel this CPU can run.
fn kernels() -> Vec<Kernel> {
    let mut all = vec![Kernel::Portable];
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vnni") {
            all.push(Kernel::Vnni);
        }
        if has!("avx2") && has!("avxvnni") {
            all.push(Kernel::Vnni256);
        }
    }
    all
}

#[test]
fn matches_a_naive_product_on_ragged_sizes_and_zero_points() {
    // k not a multiple of 4 or past one k block (4 * KG), n past and short
    // of a panel, one block of rows (split by panels) and several.
    for &(m, k, n) in &[
        (1, 1, 1),
        (3, 5, 7),
        (9, 17, 33),
        (1, 384, 1536),
        (50, 1030, 40),
        (130, 64, 96),
        (4, 0, 3),
    ] {
        let b: Vec<f32> = ints(k * n, 7, -128, 127)
            .iter()
            .map(|&v| v as f32)
            .collect();
        for kernel in kernels() {
            let w = PackedI8::with(&b, k, n, kernel).expect("fits i8");
            assert_eq!(w.unpack(), b);
            for (signed, lo, hi) in [(false, 0, 255), (true, -128, 127)] {
                let a = ints(m * k, 3, lo, hi);
                let per_row = ints(m, 5, lo, hi);
                for za in [vec![0], vec![lo + 17], per_row] {
                    let rows = match signed {
                        true => Activations::I8(&a),
                        false => Activations::U8(&a),
                    };
                    let got = w.product(rows, m, &za, i64::from);
                    assert_eq!(
                        got,
                        naive(&a, &b, (m, k, n), &za),
                        "{kernel:?} {m}x{k}x{n}, signed {signed}, za {za:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_largest_sums_stay_exact() {
    // MAX_K products of 255 · -128 and of -128 · -128 (an i8 A): the
    // extremes an i32 must hold.
    let k = MAX_K;
    let b = vec![-128.0; k];
    for kernel in kernels() {
        let w = PackedI8::with(&b, k, 1, kernel).expect("fits i8");
        let got = w.product(Activations::U8(&vec![255; k]), 1, &[0], i64::from);
        assert_eq!(got, [-255 * 128 * k as i64], "{kernel:?}");
        let got = w.product(Activations::I8(&vec![-128; k]), 1, &[127], i64::from);
        assert_eq!(got, [255 * 128 * k as i64], "{kernel:?}");
    }
}

#[test]
fn refuses_weights_that_are_not_i8() {
    for b in [[0.5, 1.0], [128.0, 0.0], [-129.0, 0.0], [f32::NAN, 0.0]] {
        assert!(
            PackedI8::with(&b, 1, 2, Kernel::Portable).is_none(),
            "{b:?}"
        );
    }
    let long = vec![1.0; MAX_K + 1];
    assert!(PackedI8::with(&long, MAX_K + 1, 1, Kernel::Portable).is_none());
    assert!(PackedI8::with(&[127.0, -128.0], 1, 2, Kernel::Portable).is_some());
}

#[test]
fn quantised_activations_are_read_as_dynamic_quantize_linear_writes_them() {
    // Halves round to even, and values past the range saturate.
    let (scale, zp) = (0.5, 10.0);
    let x = [0.25, 0.75, -5.0, -6.0, 122.5, 200.0, f32::MAX, -f32::MAX];
    let q: Vec<u8> = x.iter().map(|&v| quantize_u8(v, scale, zp)).collect();
    assert_eq!(q, [10, 12, 0, 0, 255, 255, 255, 0]);
    let b: Vec<f32> = ints(8 * 3, 9, -128, 127)
        .iter()
        .map(|&v| v as f32)
        .collect();
    for kernel in kernels() {
        let w = PackedI8::with(&b, 8, 3, kernel).expect("fits i8");
        let got = w.product(
            Activations::Quantized { x: &x, scale, zp },
            1,
            &[10],
            i64::from,
        );
        let a: Vec<i64> = q.iter().map(|&v| i64::from(v)).collect();
        assert_eq!(got, naive(&a, &b, (1, 8, 3), &[10]), "{kernel:?}");
    }
}

#[test]
fn runs_of_panels_with_a_ragged_last_one_land_in_their_columns() {
    // One block of rows on two threads: 8 panels in runs of 2, the last
    // run ending 26 columns into its second panel.
    let (m, k, n) = (5, 20, 250);
    let b: Vec<f32> = ints(k * n, 4, -128, 127)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let a = ints(m * k, 6, 0, 255);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for kernel in kernels() {
        let w = PackedI8::with(&b, k, n, kernel).expect("fits i8");
        let got = pool.install(|| w.product(Activations::U8(&a), m, &[3], i64::from));
        assert_eq!(got, naive(&a, &b, (m, k, n), &[3]), "{kernel:?}");
    }
}
