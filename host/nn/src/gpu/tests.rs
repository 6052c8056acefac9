//! The GPU kernels against the CPU ones, device limits and accounting.

use super::*;
use crate::kernels::tests::data;

/// The GPU, which these tests require: `scripts/install-vulkan.sh`
/// provides a software one.
pub(crate) fn gpu() -> Arc<Gpu> {
    Gpu::shared().unwrap_or_else(|e| {
        panic!("the GPU tests need an adapter (run scripts/install-vulkan.sh): {e}")
    })
}

/// A GPU of the test's own (its counters count only what the test runs),
/// with buffers of at most `max_buffer` bytes when given.
pub(crate) fn own(max_buffer: Option<u64>) -> Arc<Gpu> {
    let gpu = match max_buffer {
        Some(bytes) => Gpu::limited(bytes, 65_535, None),
        None => Gpu::new(),
    };
    Arc::new(gpu.unwrap_or_else(|e| panic!("the GPU tests need an adapter: {e}")))
}

/// A separate `Gpu` that runs products of a few rows with the `gemv`
/// hardware GPUs run, whatever its device (a software one picks another):
/// how a hardware GPU runs a decoder, on the CI's llvmpipe.
pub(crate) fn hardware_gemv() -> Arc<Gpu> {
    let gpu = Gpu::with_gemv(Some(Gemv::Deep));
    Arc::new(gpu.unwrap_or_else(|e| panic!("the GPU tests need an adapter: {e}")))
}

/// A `Gpu` for each of the `gemv` kernels, and for each another whose
/// weights are split into panels of at most `panel_bytes`.
pub(crate) fn every_product_kernel(panel_bytes: u64) -> Vec<Arc<Gpu>> {
    let gemvs = [Gemv::Columns, Gemv::Split, Gemv::Deep].map(Some);
    let whole = gemvs.into_iter().map(Gpu::with_gemv);
    let panels = gemvs
        .into_iter()
        .map(|g| Gpu::limited(panel_bytes, 65_535, g));
    whole
        .chain(panels)
        .map(|g| Arc::new(g.unwrap_or_else(|e| panic!("the GPU tests need an adapter: {e}"))))
        .collect()
}

/// A `Gpu` of the test's own that takes GGUF weights up as f32 (as
/// `WEFT_NN_GPU_WEIGHTS=f32` has it), to compare with their blocks.
pub(crate) fn f32_weights() -> Arc<Gpu> {
    let mut gpu = Gpu::new().unwrap_or_else(|e| panic!("the GPU tests need an adapter: {e}"));
    gpu.keeps_blocks = false;
    Arc::new(gpu)
}

/// Held by tests that upload counted weights or read the count, so
/// that their counts are exact while other tests run in parallel.
pub(crate) fn counted_uploads() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `a · b` on the CPU, row-major `m x k` by `k x n`.
pub(crate) fn cpu_product(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    cpu(a, b, m, k, n)
}

fn cpu(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    crate::kernels::matmul(a, b, &mut c, m, k, n);
    c
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
            "{what}: element {i}: GPU {g}, CPU {w}"
        );
    }
}

/// Up to 4 rows run the `gemv` kernel, more the tiled one.
const SHAPES: [(usize, usize, usize); 7] = [
    (1, 1, 1),
    (3, 5, 7),
    (4, 300, 200),
    (17, 33, 65),
    (64, 384, 384),
    (100, 257, 3),
    (2, 1, 130),
];

#[test]
fn matmul_matches_the_cpu_kernel() {
    let gpu = gpu();
    eprintln!("GPU: {}", gpu.adapter());
    for (i, &(m, k, n)) in SHAPES.iter().enumerate() {
        let (a, b) = (data(m * k, 2 * i as u32 + 1), data(k * n, 2 * i as u32 + 2));
        let got = gpu.matmul(&a, &b, m, k, n).unwrap();
        assert_close(&got, &cpu(&a, &b, m, k, n), &format!("{m}x{k}x{n}"));
    }
    assert_eq!(gpu.matmul(&[], &[], 0, 0, 0).unwrap(), Vec::<f32>::new());
    assert_eq!(gpu.matmul(&[], &[], 2, 0, 3).unwrap(), vec![0.0; 6]);
    let err = gpu.matmul(&[1.0; 3], &[1.0; 4], 2, 2, 2).unwrap_err();
    assert_eq!(err.kind, NnErrorKind::InvalidArgument, "{err}");
}

#[test]
fn both_gemv_kernels_match_the_cpu_kernel() {
    // The device picks one (software: columns, hardware: split); each must
    // be right wherever it runs. k and n off the 16-wide slices and
    // columns, 1 to 4 rows, panels of both widths.
    for kind in [super::Gemv::Columns, super::Gemv::Split, super::Gemv::Deep] {
        let gpu = Gpu::with_gemv(Some(kind)).unwrap();
        for (i, (m, k, n)) in [
            (1, 1, 1),
            (1, 577, 49),
            (2, 16, 16),
            (3, 5, 7),
            (4, 300, 200),
        ]
        .into_iter()
        .enumerate()
        {
            let (a, b) = (data(m * k, 3 * i as u32 + 1), data(k * n, 3 * i as u32 + 2));
            let got = gpu.matmul(&a, &b, m, k, n).unwrap();
            let want = cpu(&a, &b, m, k, n);
            assert_close(&got, &want, &format!("{kind:?} {m}x{k}x{n}"));
            let w = gpu.upload(&b, k, n).unwrap();
            let got = gpu.matmul_weights(&a, m, k, &w).unwrap();
            assert_close(&got, &want, &format!("{kind:?} resident {m}x{k}x{n}"));
        }
    }
}

#[test]
fn resident_weights_match_and_are_counted() {
    let gpu = gpu();
    let _only = counted_uploads();
    for (i, &(m, k, n)) in SHAPES.iter().enumerate() {
        let (a, b) = (data(m * k, 7 * i as u32 + 3), data(k * n, 7 * i as u32 + 4));
        let w = gpu.upload(&b, k, n).unwrap();
        assert_eq!((w.rows(), w.cols(), w.bytes()), (k, n, (k * n * 4) as u64));
        // Twice: the second call reuses the pooled scratch buffers.
        for _ in 0..2 {
            let got = gpu.matmul_weights(&a, m, k, &w).unwrap();
            assert_close(&got, &cpu(&a, &b, m, k, n), &format!("{m}x{k}x{n}"));
        }
        let err = gpu.matmul_weights(&a, m, k + 1, &w).unwrap_err();
        assert_eq!(err.kind, NnErrorKind::InvalidArgument, "{err}");
    }
    let before = gpu.device_bytes();
    let w = gpu.upload(&data(1000 * 1001, 9), 1000, 1001).unwrap();
    assert_eq!(gpu.device_bytes(), before + 4_004_000);
    drop(w);
    assert_eq!(gpu.device_bytes(), before);
}

#[test]
fn splits_work_to_fit_the_device_limits() {
    // 16 KiB buffers, two workgroups per dispatch (32 columns of `gemv`'s,
    // 128 rows of the tiled kernel's): weights in column panels, A in row
    // chunks. With either `gemv` kernel.
    for kind in [super::Gemv::Columns, super::Gemv::Split, super::Gemv::Deep] {
        splits_to_fit(&Gpu::limited(16 << 10, 2, Some(kind)).unwrap());
    }
}

fn splits_to_fit(gpu: &Gpu) {
    for (i, (m, k, n)) in [
        (17, 33, 65),
        (100, 257, 3),
        (130, 40, 200),
        (1, 1, 1),
        (3, 20, 100),
    ]
    .into_iter()
    .enumerate()
    {
        let (a, b) = (data(m * k, 5 * i as u32 + 1), data(k * n, 5 * i as u32 + 2));
        let w = gpu.upload(&b, k, n).unwrap();
        assert!(k * n * 4 <= 16 << 10 || w.panel_count() > 1, "{m}x{k}x{n}");
        // Each panel within two of `gemv`'s workgroups, the narrower kind.
        assert!(
            n.div_ceil(w.panel_count()) <= 2 * super::GEMV_GROUP,
            "{m}x{k}x{n}: {} panels",
            w.panel_count()
        );
        let got = gpu.matmul_weights(&a, m, k, &w).unwrap();
        assert_close(&got, &cpu(&a, &b, m, k, n), &format!("{m}x{k}x{n}"));
    }
    assert_eq!(gpu.device_bytes(), 0, "all dropped");
    let err = gpu
        .matmul(&[0.0; 8192], &[0.0; 8192], 1, 8192, 1)
        .unwrap_err();
    assert_eq!(err.kind, NnErrorKind::TooLarge, "{err}");
    assert!(err.message.contains("GPU buffer"), "{err}");
}

#[test]
fn the_gpu_is_created_once() {
    let (a, b) = (gpu(), gpu());
    assert!(Arc::ptr_eq(&a, &b));
    let summary = a.adapter();
    assert!(!summary.name.is_empty());
    assert!(
        ["vulkan", "metal", "dx12"].contains(&summary.backend.as_str()),
        "{summary}"
    );
}

/// Many threads reading products back at once: each must get its own
/// result, even when another thread's device poll runs its mapping
/// callback (a race that once failed a CI run with "the mapping never
/// completed").
#[test]
fn concurrent_readbacks_all_complete() {
    let gpu = gpu();
    let (m, k, n) = (8, 16, 8);
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let gpu = gpu.clone();
            std::thread::spawn(move || {
                for i in 0..40u32 {
                    let (a, b) = (data(m * k, t * 97 + i), data(k * n, t * 89 + i + 1));
                    let got = gpu.matmul(&a, &b, m, k, n).unwrap();
                    assert_close(&got, &cpu(&a, &b, m, k, n), &format!("thread {t} call {i}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// GPU detection counts hardware only: the software adapter these tests
/// run on (llvmpipe) is never one, and nothing is listed twice.
#[test]
fn detection_leaves_software_adapters_out() {
    let gpus = hardware_gpus();
    assert!(gpus.iter().all(|g| g.device_type != "cpu"), "{gpus:?}");
    let names: std::collections::BTreeSet<String> = gpus.iter().map(|g| g.to_string()).collect();
    assert!(names.len() <= gpus.len());
    if gpu().adapter().device_type == "cpu" {
        assert!(
            !gpus.iter().any(|g| g.name == gpu().adapter().name),
            "{gpus:?}"
        );
    }
}

/// `WEFT_NN_PROFILE`'s per-kernel times: each dispatch of a program is
/// counted under its kernel, with the results unchanged; a `Gpu` opened
/// without profiling keeps none.
#[test]
fn profiling_times_each_kernel_and_keeps_results() {
    let gpu = Gpu::open(None, true).unwrap();
    assert!(
        gpu.profiler.is_some(),
        "{} writes no timestamps: the profiler cannot be tested on it",
        gpu.adapter()
    );
    let (k, n) = (300, 40);
    let (a, b) = (data(k, 1), data(k * n, 2));
    let run = |gpu: &Gpu| {
        let w = gpu.upload(&b, k, n).unwrap();
        let norm = gpu.upload(&vec![1.0; k], 1, k).unwrap();
        let x = gpu.buffer(k, "x").unwrap();
        let (h, c) = (gpu.buffer(k, "h").unwrap(), gpu.buffer(n, "c").unwrap());
        let mut p = gpu.program().unwrap();
        p.write(&x, a.clone());
        let kind = NormKind {
            eps: 1e-6,
            layer: false,
        };
        p.norm(&x, 0, 1, (&norm, kind), &h, 0);
        p.product(&h, 1, &w, &c);
        p.add(&c, &h, n, 1.0);
        p.run(&c, n).unwrap()
    };
    let got = run(&gpu);
    let scale = (a.iter().map(|v| v * v).sum::<f32>() / k as f32 + 1e-6).sqrt();
    let normed: Vec<f32> = a.iter().map(|v| v / scale).collect();
    let want: Vec<f32> = cpu(&normed, &b, 1, k, n)
        .iter()
        .zip(&normed)
        .map(|(v, h)| v + h)
        .collect();
    assert_close(&got, &want, "profiled program");
    let times = gpu.take_kernel_times();
    let names: Vec<_> = times.iter().map(|t| (t.kernel, t.dispatches)).collect();
    for kernel in ["rms_norm", gpu.gemv.entry_point(), "add"] {
        assert!(names.contains(&(kernel, 1)), "{kernel} once in {names:?}");
    }
    assert_eq!(times.len(), 3, "{names:?}");
    assert!(
        times.windows(2).all(|t| t[0].device >= t[1].device),
        "{times:?}"
    );
    assert!(gpu.take_kernel_times().is_empty(), "taken");
    let plain = Gpu::open(None, false).unwrap();
    let _ = run(&plain);
    assert!(plain.take_kernel_times().is_empty());
}

/// A program's products of 5 to 16 rows run the split-k `gemv` kernels in
/// groups of 4 rows (the last group partial), not the tiled kernel, and
/// match the CPU; one thread per column keeps the tiled kernel there.
#[test]
fn programs_run_up_to_16_rows_as_gemv_row_groups() {
    let (k, n) = (300, 40);
    for kind in [Gemv::Columns, Gemv::Split, Gemv::Deep] {
        let gpu = Gpu::open(Some(kind), true).unwrap();
        assert!(
            gpu.profiler.is_some(),
            "{} writes no timestamps",
            gpu.adapter()
        );
        let b = data(k * n, 11);
        let w = gpu.upload(&b, k, n).unwrap();
        // Last groups of 1, 2, 3 and 4 rows.
        for rows in [4, 5, 6, 7, 13, 14, 15, 16, 17] {
            let a = data(rows * k, rows as u32);
            let (x, c) = (
                gpu.buffer(rows * k, "a").unwrap(),
                gpu.buffer(rows * n, "c").unwrap(),
            );
            let mut p = gpu.program().unwrap();
            p.write(&x, a.clone());
            p.product(&x, rows, &w, &c);
            let got = p.run(&c, rows * n).unwrap();
            assert_close(
                &got,
                &cpu(&a, &b, rows, k, n),
                &format!("{kind:?} {rows} rows"),
            );
            let ran: Vec<_> = gpu.take_kernel_times().iter().map(|t| t.kernel).collect();
            let gemv = rows <= 4 || (kind != Gemv::Columns && rows <= 16);
            let want = if gemv { kind.entry_point() } else { "main" };
            assert_eq!(ran, [want], "{kind:?} {rows} rows");
        }
    }
}

/// A program run again through the same `Reuse` binds the bind groups
/// made the first time, with the new run's parameters and data; a step
/// whose buffers changed gets a new one.
#[test]
fn reused_programs_rebind_only_steps_whose_buffers_changed() {
    let gpu = own(None);
    let (k, n) = (64, 24);
    let b = data(k * n, 5);
    let w = gpu.upload(&b, k, n).unwrap();
    let x = gpu.buffer(2 * k, "x").unwrap();
    let (c, other) = (
        gpu.buffer(2 * n, "c").unwrap(),
        gpu.buffer(2 * n, "c2").unwrap(),
    );
    let mut reuse = super::Reuse::default();
    // (rows, output, scale of each add, bind groups made): a third step
    // outgrows the parameters' buffer, whose bind groups all go; a run of
    // fewer steps keeps only its own.
    let runs: [(usize, &Buffer, &[f32], usize); 6] = [
        (1, &c, &[0.5], 2),
        (1, &c, &[-2.0], 0),
        (1, &other, &[0.5], 2),
        (2, &c, &[0.5], 2),
        (2, &c, &[0.5, 0.25], 3),
        (2, &c, &[], 0),
    ];
    for (run, &(rows, out, scales, made)) in runs.iter().enumerate() {
        let a = data(rows * k, 40 + run as u32);
        let mut p = gpu.program().unwrap();
        p.write(&x, a.clone());
        p.product(&x, rows, &w, out);
        // out[i] += scale * x[i]: the parameters (scale, count) differ
        // from run to run where the buffers do not.
        for &scale in scales {
            p.add(out, &x, rows * n, scale);
        }
        let before = reuse.made;
        let got = p.run_reusing(&mut reuse, out, rows * n).unwrap();
        let scale: f32 = scales.iter().sum();
        let want: Vec<f32> = cpu(&a, &b, rows, k, n)
            .iter()
            .zip(&a)
            .map(|(c, x)| c + scale * x)
            .collect();
        assert_close(&got, &want, &format!("run {run}"));
        assert_eq!(reuse.made - before, made, "run {run}: bind groups made");
        assert_eq!(reuse.kept(), 1 + scales.len(), "run {run}: kept");
    }
}
