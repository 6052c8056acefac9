//! The block formats' and kernels' tests.

use super::*;

fn q8_0_block(vals: &[f32; 32]) -> Vec<u8> {
    let amax = vals.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let mut b = f32_to_f16(d).to_le_bytes().to_vec();
    b.extend(vals.iter().map(|v| ((v / d).round() as i8) as u8));
    b
}

/// A block whose largest activation is over 2047 has an infinite
/// `s` (rounded through f16): only Q4_1 may use it, or the dot is NaN.
#[test]
fn large_activations_give_finite_dots_in_every_copy() {
    let xs: Vec<Vec<f32>> = (0..9)
        .map(|t| {
            (0..64)
                .map(|i| ((i * 7 + t) % 13) as f32 * 400.0 + 2400.0)
                .collect()
        })
        .collect();
    let xq: Vec<Q8Row> = xs.iter().map(|x| Q8Row::quantize(x)).collect();
    assert!(
        xq[0].s.iter().any(|s| s.is_infinite()),
        "the case under test"
    );
    let flat: Vec<f32> = xs.concat();
    for (ty, size) in [(GgmlType::Q4_0, 18), (GgmlType::Q8_0, 34)] {
        let mut raw: Vec<u8> = (0..2 * size).map(|i| (i * 37 % 251) as u8).collect();
        for b in 0..2 {
            raw[b * size..b * size + 2].copy_from_slice(&f32_to_f16(0.05).to_le_bytes());
        }
        let mut out = vec![0f32; xs.len()];
        dot_rows(ty, &raw, &Q8Batch::new(xq.clone()), &flat, &mut out);
        assert!(out.iter().all(|v| v.is_finite()), "{ty:?}: {out:?}");
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            let mut plain = vec![0f32; xs.len()];
            // SAFETY: AVX2, FMA and F16C are present; whole blocks.
            unsafe { avx2::dot_many_avx2(ty, &raw, &xq[..8], &mut plain[..8]) };
            unsafe { avx2::dot_many_avx2(ty, &raw, &xq[8..], &mut plain[8..]) };
            assert_eq!(plain, out, "{ty:?}: AVX2 copy");
        }
        if lanes::used_for(ty) {
            let packed = lanes::pack(ty, &raw, raw.len());
            let mut out = vec![[0f32]; xs.len()];
            let mut outs: Vec<&mut [f32]> = out.iter_mut().map(|o| &mut o[..]).collect();
            dot_lanes(
                ty,
                &packed,
                raw.len(),
                0,
                &Q8Batch::new(xq.clone()),
                &mut outs,
            );
            assert!(
                out.iter().all(|[v]| v.is_finite()),
                "{ty:?} packed: {out:?}"
            );
        }
    }
}

#[test]
fn rounding_through_f16_in_bulk_is_the_scalar_rounding() {
    // Every kind of value: normal, subnormal in f16, ties, overflow,
    // infinities and NaN (compared by bits; NaN stays NaN).
    let mut xs: Vec<f32> = (0..20_000)
        .map(|i| f32::from_bits(0x3000_0000u32.wrapping_add(i * 104_729)))
        .collect();
    xs.extend([
        0.0,
        -0.0,
        65504.0,
        65520.0,
        1e9,
        -1e9,
        5.96e-8,
        2.98e-8,
        1.0 + 1.0 / 2048.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        3.1e-5,
        -7.0e-6,
    ]);
    let mut bulk = vec![1.5];
    extend_rounded_f16(&mut bulk, &xs);
    assert_eq!(bulk.len(), xs.len() + 1);
    for (x, got) in xs.iter().zip(&bulk[1..]) {
        let want = round_f16(*x);
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{x:e}: {got:e} vs {want:e}"
        );
    }
}

#[test]
fn rounding_for_quantisation_is_roundf() {
    let mut xs: Vec<f32> = (-140 * 64..=140 * 64).map(|i| i as f32 / 64.0).collect();
    for x in [0.5f32, 1.5, 126.5, 127.49999] {
        for y in [
            x,
            -x,
            f32::from_bits(x.to_bits() - 1),
            f32::from_bits(x.to_bits() + 1),
        ] {
            xs.push(y);
            xs.push(-y);
        }
    }
    xs.extend([0.0, -0.0, f32::NAN, 1e-30, -1e-30]);
    for x in xs {
        assert_eq!(round_away(x) as i32, x.round() as i32, "{x:e}");
    }
}

/// The AVX2 quantiser gives the portable one's bytes, scale and sums for
/// blocks whose values land on halves, near them, past ±127 after scaling
/// (the clamp), NaN, infinities and subnormal blocks.
#[test]
fn blocks_quantise_the_same_in_every_copy() {
    let mut blocks: Vec<[f32; BLOCK]> = Vec::new();
    // Multiples of a half of the step, so values tie: 127 steps of 1/64.
    blocks.extend(
        (0..40).map(|b| std::array::from_fn(|i| ((i as f32 - 15.5) * (b as f32 + 1.0)) / 64.0)),
    );
    blocks.extend((0..40u32).map(|b| {
        std::array::from_fn(|i| {
            let x = ((i as u32 * 2_654_435_761) ^ (b * 40_503)) % 20_001;
            (x as f32 - 10_000.0) * 1e-3 * (b as f32 + 0.25)
        })
    }));
    let mut odd = [0.37f32; BLOCK];
    odd[3] = f32::NAN;
    odd[9] = -0.5;
    blocks.push(odd);
    odd[4] = f32::INFINITY;
    odd[5] = f32::NEG_INFINITY;
    blocks.push(odd);
    blocks.push(std::array::from_fn(|i| {
        f32::from_bits(i as u32 + 1) * if i % 2 == 0 { 1.0 } else { -1.0 }
    }));
    blocks.push([0.0; BLOCK]);
    blocks.push(std::array::from_fn(|i| if i == 7 { -3.0 } else { 1.5 }));
    for (b, xs) in blocks.iter().enumerate() {
        let mut want = [0i8; BLOCK];
        let (d, fours) = quantize_block(xs, &mut want);
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            let mut got = [0i8; BLOCK];
            // SAFETY: the CPU has AVX2, FMA and F16C (checked).
            let (gd, gfours) = unsafe { avx2::quantize_block(xs, &mut got) };
            assert_eq!(
                (got, gd.to_bits(), gfours),
                (want, d.to_bits(), fours),
                "block {b}: {xs:?}"
            );
        }
        let expect: [i32; 8] =
            std::array::from_fn(|f| want[f * 4..f * 4 + 4].iter().map(|&q| i32::from(q)).sum());
        assert_eq!(fours, expect, "block {b}");
    }
}

#[test]
fn f16_round_trips_every_finite_half() {
    for h in 0..=u16::MAX {
        let f = f16_to_f32(h);
        if f.is_nan() {
            continue;
        }
        assert_eq!(f32_to_f16(f), h, "{h:#x} -> {f}");
    }
}

#[test]
fn quantised_dots_match_the_dequantised_dot() {
    let w: Vec<f32> = (0..64)
        .map(|i| ((i * 37 % 29) as f32 - 14.0) / 7.0)
        .collect();
    let x: Vec<f32> = (0..64)
        .map(|i| ((i * 11 % 17) as f32 - 8.0) / 3.0)
        .collect();
    let xq = Q8Row::quantize(&x);
    let mut raw = q8_0_block(w[..32].try_into().unwrap());
    raw.extend(q8_0_block(w[32..].try_into().unwrap()));
    let mut deq = vec![0f32; 64];
    dequantize(GgmlType::Q8_0, &raw, &mut deq);
    let exact: f32 = deq.iter().zip(&x).map(|(a, b)| a * b).sum();
    let got = dot_row(GgmlType::Q8_0, &raw, &xq, &x);
    assert!(
        (got - exact).abs() < 0.02 * exact.abs().max(1.0),
        "{got} vs {exact}"
    );

    // Q4_1: d=0.5, m=-1 → values -1 + 0.5 q.
    let mut raw = Vec::new();
    for _ in 0..2 {
        raw.extend(f32_to_f16(0.5).to_le_bytes());
        raw.extend(f32_to_f16(-1.0).to_le_bytes());
        raw.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    }
    dequantize(GgmlType::Q4_1, &raw, &mut deq);
    assert_eq!(deq[0], -1.0);
    assert_eq!(deq[16], 6.5);
    let exact: f32 = deq.iter().zip(&x).map(|(a, b)| a * b).sum();
    let got = dot_row(GgmlType::Q4_1, &raw, &xq, &x);
    assert!(
        (got - exact).abs() < 0.02 * exact.abs().max(1.0),
        "{got} vs {exact}"
    );

    // Q4_0: d=0.25 → values 0.25 (q - 8).
    let mut raw = Vec::new();
    for _ in 0..2 {
        raw.extend(f32_to_f16(0.25).to_le_bytes());
        raw.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    }
    dequantize(GgmlType::Q4_0, &raw, &mut deq);
    assert_eq!(deq[0], -2.0);
    let exact: f32 = deq.iter().zip(&x).map(|(a, b)| a * b).sum();
    let got = dot_row(GgmlType::Q4_0, &raw, &xq, &x);
    assert!(
        (got - exact).abs() < 0.02 * exact.abs().max(1.0),
        "{got} vs {exact}"
    );
}

#[test]
fn simd_kernels_agree_with_the_portable_ones() {
    // Pseudo-random blocks of every quantised type.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let x: Vec<f32> = (0..256)
        .map(|_| (next() % 2001) as f32 / 100.0 - 10.0)
        .collect();
    let xq = Q8Row::quantize(&x);
    for (ty, size) in [
        (GgmlType::Q4_0, 18),
        (GgmlType::Q4_1, 20),
        (GgmlType::Q8_0, 34),
    ] {
        let mut raw: Vec<u8> = (0..8 * size).map(|_| next() as u8).collect();
        for b in 0..8 {
            let d = f32_to_f16(0.01 * (b + 1) as f32).to_le_bytes();
            raw[b * size..b * size + 2].copy_from_slice(&d);
            if ty == GgmlType::Q4_1 {
                let m = f32_to_f16(-0.3).to_le_bytes();
                raw[b * size + 2..b * size + 4].copy_from_slice(&m);
            }
        }
        let fast = dot_row(ty, &raw, &xq, &x);
        let slow = dot_row_portable(ty, &raw, &xq, &x);
        assert!(
            (fast - slow).abs() <= 1e-3 * slow.abs().max(1.0),
            "{ty:?}: {fast} vs {slow}"
        );
    }
}

#[test]
fn packed_products_match_the_portable_ones_and_each_row_alone() {
    // 19 activation rows (groups of 8, 8, 2 and 1) by 35 weight rows:
    // two whole tiles and a padded one, of 3 blocks.
    let xs: Vec<Vec<f32>> = (0..19)
        .map(|t| {
            (0..96)
                .map(|i| ((i * 13 + t * 7) % 23) as f32 / 5.0 - 2.0)
                .collect()
        })
        .collect();
    let xq: Vec<Q8Row> = xs.iter().map(|x| Q8Row::quantize(x)).collect();
    for (ty, size) in [
        (GgmlType::Q4_0, 18),
        (GgmlType::Q4_1, 20),
        (GgmlType::Q8_0, 34),
    ] {
        if !lanes::used_for(ty) {
            continue;
        }
        let row_bytes = 3 * size;
        let mut raw: Vec<u8> = (0..35 * row_bytes).map(|i| (i * 37 % 251) as u8).collect();
        for blk in raw.chunks_exact_mut(size) {
            blk[..2].copy_from_slice(&f32_to_f16(0.05).to_le_bytes());
            if ty == GgmlType::Q4_1 {
                blk[2..4].copy_from_slice(&f32_to_f16(-0.2).to_le_bytes());
            }
        }
        let packed = lanes::pack(ty, &raw, row_bytes);
        let n = xs.len();
        // Rows 16.. (a run that starts at the second tile), all at once.
        let mut all = vec![vec![0f32; 19]; n];
        let mut outs: Vec<&mut [f32]> = all.iter_mut().map(|o| &mut o[..]).collect();
        dot_lanes(
            ty,
            &packed,
            row_bytes,
            16,
            &Q8Batch::new(xq.clone()),
            &mut outs,
        );
        for (r, w) in raw.chunks_exact(row_bytes).enumerate().skip(16) {
            for (t, x) in xs.iter().enumerate() {
                let got = all[t][r - 16];
                let want = dot_row_portable(ty, w, &xq[t], x);
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{ty:?} row {r}, input {t}: {got} vs {want}"
                );
                let mut alone = [0f32; 19];
                let one = Q8Batch::new(vec![xq[t].clone()]);
                dot_lanes(ty, &packed, row_bytes, 16, &one, &mut [&mut alone[..]]);
                assert_eq!(
                    alone[r - 16].to_bits(),
                    got.to_bits(),
                    "{ty:?} row {r}, input {t}"
                );
            }
        }
    }
}

#[test]
fn many_rows_at_once_match_one_at_a_time() {
    // 19 rows: groups of 8, 8, 2 and 1 on the VNNI copy.
    let xs: Vec<Vec<f32>> = (0..19)
        .map(|t| {
            (0..64)
                .map(|i| ((i * 13 + t * 7) % 23) as f32 / 5.0 - 2.0)
                .collect()
        })
        .collect();
    let xq: Vec<Q8Row> = xs.iter().map(|x| Q8Row::quantize(x)).collect();
    let flat: Vec<f32> = xs.concat();
    for (ty, size) in [
        (GgmlType::Q4_0, 18),
        (GgmlType::Q4_1, 20),
        (GgmlType::Q8_0, 34),
    ] {
        let mut raw: Vec<u8> = (0..2 * size).map(|i| (i * 37 % 251) as u8).collect();
        for b in 0..2 {
            raw[b * size..b * size + 2].copy_from_slice(&f32_to_f16(0.05).to_le_bytes());
            if ty == GgmlType::Q4_1 {
                raw[b * size + 2..b * size + 4].copy_from_slice(&f32_to_f16(0.2).to_le_bytes());
            }
        }
        let mut out = vec![0f32; xs.len()];
        dot_rows(ty, &raw, &Q8Batch::new(xq.clone()), &flat, &mut out);
        for (t, x) in xs.iter().enumerate() {
            let one = dot_row_portable(ty, &raw, &xq[t], x);
            assert!(
                (out[t] - one).abs() <= 1e-4 * one.abs().max(1.0),
                "{ty:?} row {t}"
            );
        }
        // The plain AVX2 copy, which CPUs with VNNI never pick.
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            let mut plain = vec![0f32; xs.len()];
            for (x, o) in xq.chunks(avx2::ROWS).zip(plain.chunks_mut(avx2::ROWS)) {
                // SAFETY: AVX2, FMA and F16C are present; whole blocks.
                unsafe { avx2::dot_many_avx2(ty, &raw, x, o) };
            }
            assert_eq!(plain, out, "{ty:?}: AVX2 and VNNI copies differ");
        }
    }
}

/// The quick half rounding is the long one, at and around every edge of
/// the normal range, ties, and spread values.
#[test]
fn round_f16_matches_the_conversion_both_ways() {
    let mut xs = vec![
        0.0,
        -0.0,
        1.0,
        65504.0,
        65519.0,
        65520.0,
        6.1035156e-5,
        6.1e-5,
        1e-8,
    ];
    xs.extend([
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
    ]);
    // Ties at every exponent: x.5 ulp of a half.
    for e in -14..16 {
        let ulp = 2f32.powi(e - 10);
        xs.extend([2f32.powi(e) + 0.5 * ulp, 2f32.powi(e) + 1.5 * ulp]);
    }
    let mut s = 0x1234_5678u32;
    for _ in 0..200_000 {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        xs.push(f32::from_bits(s));
    }
    for x in xs.iter().flat_map(|&x| [x, -x]) {
        let want = f16_to_f32(f32_to_f16(x));
        let got = round_f16(x);
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{x:e}: {got:e} vs {want:e}"
        );
    }
}
