//! The GPU upload of weight matrices: their blocks, their panels, and
//! the products of both against f32 copies.

use super::*;
use crate::quant::f32_to_f16;

/// `rows` rows of `cols` values in `ty`'s blocks: scales and offsets
/// from `seed`, quants of every value.
fn blocks(ty: GgmlType, rows: usize, cols: usize, seed: u32) -> QMatrix {
    let values = crate::kernels::tests::data(rows * cols, seed);
    if matches!(ty, GgmlType::F16 | GgmlType::Bf16) {
        // Every 7th value below f16's smallest normal (6.1e-5).
        let halves = values.iter().enumerate().flat_map(|(i, &v)| {
            let x = if i % 7 == 0 { v * 4e-5 } else { v };
            let h = match ty {
                GgmlType::F16 => f32_to_f16(x),
                _ => (x.to_bits() >> 16) as u16,
            };
            h.to_le_bytes()
        });
        let raw: Vec<u8> = halves.collect();
        return QMatrix::from_raw("test", ty, &raw, rows, cols).unwrap();
    }
    let (size, scales) = match ty {
        GgmlType::Q8_0 => (34, 1),
        GgmlType::Q4_0 => (18, 1),
        _ => (20, 2),
    };
    let mut raw = Vec::new();
    for (b, v) in values.chunks_exact(32).enumerate() {
        // A scale, and Q4_1's offset (negative).
        for (s, x) in v[..scales].iter().enumerate() {
            let scale = (0.01 + 0.05 * x.abs()) * if s == 1 { -1.0 } else { 1.0 };
            raw.extend_from_slice(&f32_to_f16(scale).to_le_bytes());
        }
        let quants = size - 2 * scales;
        raw.extend((0..quants).map(|q| ((b * 37 + q * 101) as u32 ^ (v[q].to_bits() >> 9)) as u8));
    }
    QMatrix::from_raw("test", ty, &raw, rows, cols).unwrap()
}

/// Wᵀ of `matrices` side by side, dequantised on the host.
fn transposed(matrices: &[&QMatrix]) -> Vec<f32> {
    let cols = matrices[0].cols;
    let rows: Vec<Vec<f32>> = matrices
        .iter()
        .flat_map(|m| {
            (0..m.rows).map(|r| {
                let mut row = vec![0.0; cols];
                m.row(r, &mut row);
                row
            })
        })
        .collect();
    (0..cols)
        .flat_map(|c| rows.iter().map(move |r| r[c]))
        .collect()
}

/// F16, BF16, Q8_0, Q4_0 and Q4_1 weights stay in their blocks on the
/// GPU, in far fewer bytes (halves: half), and every product kernel (a few rows, a tile of
/// many; split into panels) gives what it gives with the same weights
/// dequantised to f32 on the host: the same f32 values, summed in
/// the same order.
#[test]
fn weights_kept_in_their_blocks_give_the_products_of_their_f32_values() {
    let _device = crate::gpu::tests::counted_uploads();
    let (k, widths) = (96, [40, 24]);
    let n: usize = widths.iter().sum();
    let formats = [
        GgmlType::F16,
        GgmlType::Bf16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
    ];
    for (i, ty) in formats.into_iter().enumerate() {
        let seed = 10 * i as u32;
        let mut wq = blocks(ty, widths[0], k, seed + 1);
        let wk = blocks(ty, widths[1], k, seed + 2);
        // One packed as for the CPU's lane kernel (where it has one).
        if matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1) {
            wq.data = quant::lanes::pack(ty, &wq.data, wq.row_bytes);
            wq.lanes = true;
        }
        let wt = transposed(&[&wq, &wk]);
        for gpu in crate::gpu::tests::every_product_kernel(k as u64 * 36 / 32 * 32) {
            let on = QMatrix::upload_side_by_side(&gpu, &[&wq, &wk]).unwrap();
            let format = on.formats()[0];
            assert_eq!(on.formats(), [format], "one part");
            assert_ne!(format, WeightFormat::F32, "{ty:?}");
            assert_eq!((on.rows(), on.cols()), (k, n));
            assert_eq!(on.bytes(), (k / 32 * n * format.words() * 4) as u64);
            assert!(
                on.bytes() * 2 <= (k * n * 4) as u64,
                "{ty:?}: {}",
                on.bytes()
            );
            if gpu.max_buffer() < 4096 {
                assert!(on.panel_count() > 1, "split into panels");
            }
            let f32s = gpu.upload(&wt, k, n).unwrap();
            // (The GPU of small buffers runs the few rows alone.)
            let fits = |&rows: &usize| (rows * k * 4) as u64 <= gpu.max_buffer();
            for rows in [1, 3, 6, 70].into_iter().filter(fits) {
                let a = crate::kernels::tests::data(rows * k, seed + rows as u32);
                let (got, want) = (product(&gpu, &a, &on), product(&gpu, &a, &f32s));
                // A driver may fuse Q4_1's `d * q + m` into one
                // rounding (llvmpipe does not).
                let fused = ty == GgmlType::Q4_1 && gpu.adapter().device_type != "cpu";
                if fused {
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                            "{ty:?}: {g} vs {w}"
                        );
                    }
                } else {
                    assert_eq!(got, want, "{ty:?}, {rows} rows, {gpu:?}");
                }
                let host = crate::gpu::tests::cpu_product(&a, &wt, rows, k, n);
                for (g, h) in got.iter().zip(&host) {
                    assert!(
                        (g - h).abs() <= 1e-4 * h.abs().max(1.0),
                        "{ty:?}: {g} vs {h}"
                    );
                }
            }
        }
    }
}

/// `a · w` on `gpu`, through a program's product.
fn product(gpu: &Gpu, a: &[f32], w: &GpuMatrix) -> Vec<f32> {
    let (k, n) = (w.rows(), w.cols());
    let rows = a.len() / k;
    let (a_buf, c) = (
        gpu.buffer(rows * k, "a").unwrap(),
        gpu.buffer(rows * n, "c").unwrap(),
    );
    let mut p = gpu.program().unwrap();
    p.write(&a_buf, a.to_vec());
    p.product(&a_buf, rows, w, &c);
    p.run(&c, rows * n).unwrap()
}

/// Matrices side by side in different formats (a Q4_K_M file's Q4_K
/// and Q6_K, read as Q4_1 and Q8_0) are panels of their own, each in
/// its blocks, and give the products of their f32 values; rows that
/// are not whole blocks and F32 matrices go up as f32, and so does
/// every one on a GPU told to (`WEFT_NN_GPU_WEIGHTS=f32`).
#[test]
fn mixed_formats_go_up_as_panels_of_their_own() {
    let _device = crate::gpu::tests::counted_uploads();
    let (q41, q8, q40) = (
        blocks(GgmlType::Q4_1, 8, 64, 1),
        blocks(GgmlType::Q8_0, 16, 64, 2),
        blocks(GgmlType::Q4_0, 24, 64, 3),
    );
    let gpu = crate::gpu::tests::gpu();
    let run = [&q41, &q8, &q40, &q41];
    let mixed = QMatrix::upload_side_by_side(&gpu, &run).unwrap();
    use WeightFormat::{F32, Q4_0, Q4_1, Q8_0};
    assert_eq!(mixed.formats(), [Q4_1, Q8_0, Q4_0, Q4_1]);
    assert_eq!(mixed.bytes(), 2 * (8 * 6 + 16 * 9 + 24 * 5 + 8 * 6) * 4);
    let f32s = gpu.upload(&transposed(&run), 64, 56).unwrap();
    for rows in [1, 6, 70] {
        let a = crate::kernels::tests::data(rows * 64, rows as u32);
        let (got, want) = (product(&gpu, &a, &mixed), product(&gpu, &a, &f32s));
        // (A hardware driver may fuse Q4_1's multiply-add.)
        if gpu.adapter().device_type == "cpu" {
            assert_eq!(got, want, "{rows} rows");
        } else {
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(g, w)| (g - w).abs() <= 1e-5 * w.abs().max(1.0))
            );
        }
    }
    let told = crate::gpu::tests::f32_weights();
    let f32s = QMatrix::upload_side_by_side(&told, &run).unwrap();
    assert_eq!(f32s.formats(), [F32]);
    // Rows that are not whole blocks of 32, and f32 itself.
    let f16 = blocks(GgmlType::F16, 8, 48, 3);
    let on = QMatrix::upload_side_by_side(&gpu, &[&f16]).unwrap();
    assert_eq!(on.formats(), [F32]);
    let f32s: Vec<u8> = (0..8 * 64u32)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    let f32s = QMatrix::from_raw("f32", GgmlType::F32, &f32s, 8, 64).unwrap();
    let on = QMatrix::upload_side_by_side(&gpu, &[&f32s, &q8]).unwrap();
    assert_eq!(on.formats(), [F32, Q8_0]);
    // Words that are not the shape's.
    for (rows, words) in [(64, 35), (48, 27)] {
        let part = Part {
            format: Q8_0,
            cols: 2,
            words: Cow::Owned(vec![0; words]),
        };
        let err = gpu.upload_parts(rows, &[part]).unwrap_err();
        assert_eq!(err.kind, NnErrorKind::InvalidArgument, "{err}");
    }
}
