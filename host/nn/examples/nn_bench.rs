//! The weft side of `benches/nn.sh`: times weft-nn on the inputs the script
//! prepared, and prints one JSON object per measurement on stdout.
//!
//! ```text
//! cargo run -p weft-nn --example nn_bench -- minilm MODEL.onnx IDS.json BATCH...
//! cargo run -p weft-nn --example nn_bench -- llama MODEL.gguf PROMPT.json TOKENS
//! cargo run -p weft-nn --example nn_bench -- matmul N
//! cargo run -p weft-nn --example nn_bench -- gpu-matmul N...
//! cargo run -p weft-nn --example nn_bench -- einsum BATCH HEADS SEQ DIM
//! ```
//!
//! `einsum` times attention's scores written as an ONNX `Einsum`
//! (`bhqd,bhkd->bhqk`) against the same scores as `Transpose` and
//! `MatMul`, on the CPU (`TARGET=gpu`: the GPU).
//!
//! `gpu-matmul` times weft-nn's GPU matmul (wgpu; see `weft_nn::gpu`)
//! against the CPU kernel at each size: with both operands sent per call,
//! and with B resident (the weights case). It fails without a GPU adapter.
//!
//! `minilm`, `llama` and `joined` run on the CPU; `TARGET=gpu` runs them on the GPU (llvmpipe
//! where there is no other; `WEFT_NN_ONNX_RESIDENT=0` to send each
//! product's operands over and back, see `onnx/device.rs`).
//!
//! `IDS.json` is `{"ids": [[token, ...], ...]}`: one unpadded sentence per
//! row; each batch is padded to its longest sentence (id 0, mask 0), as the
//! onnxruntime side does. `PROMPT.json` is `{"prompt_ids": [...]}`.

use std::time::Instant;

use weft_nn::{Encoding, Engine, Target, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("minilm") if args.len() >= 4 => {
            let batches: Vec<usize> = args[3..]
                .iter()
                .map(|b| b.parse().expect("batch size"))
                .collect();
            minilm(&args[1], &args[2], &batches);
        }
        Some("llama") if args.len() == 4 => {
            llama(&args[1], &args[2], args[3].parse().expect("token count"))
        }
        Some("joined") if args.len() == 4 => joined(
            &args[1],
            args[2].parse().expect("session count"),
            args[3].parse().expect("step count"),
        ),
        Some("matmul") if args.len() == 2 => matmul(args[1].parse().expect("size")),
        Some("einsum") if args.len() == 5 => {
            let dims: Vec<usize> = args[1..]
                .iter()
                .map(|d| d.parse().expect("a size"))
                .collect();
            einsum(&dims);
        }
        Some("gpu-matmul") if args.len() >= 2 => {
            for n in &args[1..] {
                gpu_matmul(n.parse().expect("size"));
            }
        }
        _ => {
            eprintln!(
                "usage: nn_bench minilm MODEL IDS.json BATCH... | llama MODEL PROMPT.json TOKENS | joined MODEL SESSIONS STEPS | matmul N | gpu-matmul N... | einsum BATCH HEADS SEQ DIM"
            );
            std::process::exit(2);
        }
    }
}

fn read_json(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .expect("a list of token ids")
        .iter()
        .map(|t| t.as_i64().expect("a token id"))
        .collect()
}

/// `input_ids`, `attention_mask` and `token_type_ids` for `rows`, padded
/// to the longest.
fn batch_inputs(rows: &[Vec<i64>]) -> Vec<(String, Tensor)> {
    let len = rows.iter().map(Vec::len).max().unwrap_or(0);
    let shape = vec![rows.len(), len];
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for r in rows {
        ids.extend(
            r.iter()
                .copied()
                .chain(std::iter::repeat_n(0, len - r.len())),
        );
        mask.extend((0..len).map(|i| i64::from(i < r.len())));
    }
    let types = vec![0; ids.len()];
    vec![
        ("input_ids".into(), Tensor::from_i64(shape.clone(), &ids)),
        (
            "attention_mask".into(),
            Tensor::from_i64(shape.clone(), &mask),
        ),
        ("token_type_ids".into(), Tensor::from_i64(shape, &types)),
    ]
}

/// `TARGET=gpu` runs a model on the GPU (llvmpipe where there is none);
/// the CPU otherwise.
fn target() -> Target {
    match std::env::var("TARGET").as_deref() {
        Ok("gpu") => Target::Gpu,
        _ => Target::Cpu,
    }
}

/// `,"passes":…` JSON fields for what the GPU's programs did since
/// `before` (per program: dispatches, host µs recording, µs waiting);
/// nothing on the CPU.
fn passes_since(before: Option<weft_nn::gpu::PassTimes>) -> String {
    let (Some(before), Ok(gpu)) = (before, weft_nn::gpu::Gpu::shared()) else {
        return String::new();
    };
    let now = gpu.pass_times();
    let n = (now.programs - before.programs).max(1) as f64;
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n;
    // Per kernel (profiled runs): dispatches and device µs per program.
    let kernels: Vec<String> = gpu
        .take_kernel_times()
        .iter()
        .map(|k| {
            format!(
                "[\"{}\",{:.1},{:.1}]",
                k.kernel,
                k.dispatches as f64 / n,
                us(k.device)
            )
        })
        .collect();
    format!(
        ",\"programs\":{},\"dispatches_per_program\":{:.0},\"record_us_per_program\":{:.0},\"wait_us_per_program\":{:.0},\"kernels\":[{}]",
        now.programs - before.programs,
        (now.dispatches - before.dispatches) as f64 / n,
        us(now.recording - before.recording),
        us(now.waiting - before.waiting),
        kernels.join(","),
    )
}

/// The GPU's pass times now, when the bench runs there; clears the
/// per-kernel times (`WEFT_NN_PROFILE=1`), so that [`passes_since`]
/// reports the timed loop's alone.
fn pass_times() -> Option<weft_nn::gpu::PassTimes> {
    let gpu = (target() == Target::Gpu)
        .then(|| weft_nn::gpu::Gpu::shared().ok())
        .flatten()?;
    gpu.take_kernel_times();
    Some(gpu.pass_times())
}

fn minilm(model: &str, ids_path: &str, batches: &[usize]) {
    let bytes = std::fs::read(model).unwrap_or_else(|e| panic!("{model}: {e}"));
    let target = target();
    let model = Engine::default()
        .load(&bytes, Encoding::Onnx, target)
        .expect("MiniLM loads");
    let rows: Vec<Vec<i64>> = read_json(ids_path)["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(ids)
        .collect();
    let mut session = model.session();
    for &b in batches {
        let chunks: Vec<_> = rows.chunks(b).map(batch_inputs).collect();
        // One warm-up batch: page in the weights, start the thread pool.
        session.compute(&chunks[0]).expect("MiniLM runs");
        let before = pass_times();
        let t = Instant::now();
        for c in &chunks {
            session.compute(c).expect("MiniLM runs");
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{{\"bench\":\"minilm\",\"target\":\"{target:?}\",\"batch\":{b},\"threads\":{},\"sentences_per_s\":{:.2}{}}}",
            rayon::current_num_threads(),
            rows.len() as f64 / secs,
            passes_since(before)
        );
    }
}

fn argmax(v: &[f32]) -> i64 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as i64
}

fn llama(model: &str, prompt_path: &str, tokens: usize) {
    let bytes = std::fs::read(model).unwrap_or_else(|e| panic!("{model}: {e}"));
    let model = Engine::default()
        .load(&bytes, Encoding::Ggml, target())
        .expect("the GGUF loads");
    let prompt = ids(&read_json(prompt_path)["prompt_ids"]);
    let logits = |s: &mut Box<dyn weft_nn::Session>, input: &[i64]| {
        let out = s
            .compute(&[(
                "input_ids".into(),
                Tensor::from_i64(vec![input.len()], input),
            )])
            .expect("the decoder runs");
        out[0].1.to_f32().expect("f32 logits")
    };
    // Warm-up on a throwaway session (weights paged in, pool started).
    logits(&mut model.session(), &prompt);
    let mut session = model.session();
    let t = Instant::now();
    let mut next = argmax(&logits(&mut session, &prompt));
    let prompt_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut generated = vec![next];
    let before = pass_times();
    let t = Instant::now();
    for _ in 0..tokens {
        next = argmax(&logits(&mut session, &[next]));
        generated.push(next);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{{\"bench\":\"llama\",\"target\":\"{:?}\",\"prompt_tokens\":{},\"prompt_ms\":{prompt_ms:.2},\"tokens_per_s\":{:.2}{},\"generated\":{generated:?}}}",
        target(),
        prompt.len(),
        tokens as f64 / secs,
        passes_since(before)
    );
}

/// Decoding steps of `n` sessions joined into one pass each (what the
/// node's batcher runs for concurrent generations), after a 30-token
/// prompt each: tokens/s over all sessions.
fn joined(model: &str, n: usize, steps: usize) {
    let bytes = std::fs::read(model).unwrap_or_else(|e| panic!("{model}: {e}"));
    let model = Engine::default()
        .load(&bytes, Encoding::Ggml, target())
        .expect("the GGUF loads");
    let ids = |ids: &[i64]| {
        vec![(
            "input_ids".to_string(),
            Tensor::from_i64(vec![ids.len()], ids),
        )]
    };
    let mut sessions: Vec<_> = (0..n).map(|_| model.session()).collect();
    let prompt: Vec<i64> = (0..30).map(|i| 500 + i).collect();
    for s in &mut sessions {
        s.compute(&ids(&prompt)).expect("the prompt runs");
    }
    let step = ids(&[504]);
    let before = pass_times();
    let t = Instant::now();
    for _ in 0..steps {
        let mut calls: Vec<weft_nn::Joined<'_>> = sessions
            .iter_mut()
            .map(|s| (&mut **s, step.as_slice()))
            .collect();
        for r in model.compute_joined(&mut calls) {
            r.expect("the step runs");
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{{\"bench\":\"joined\",\"target\":\"{:?}\",\"sessions\":{n},\"tokens_per_s\":{:.2}{}}}",
        target(),
        (n * steps) as f64 / secs,
        passes_since(before)
    );
}

/// `len` pseudo-random floats in [-1, 1].
fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// Attention's scores of `dims` (`[batch, heads, seq, dim]`) as an
/// `Einsum` and as `Transpose` + `MatMul`: milliseconds a call of each
/// (best of 20, the two taking turns, after a warm-up) and their ratio.
fn einsum(dims: &[usize]) {
    let target = target();
    let n = dims.iter().product();
    let inputs = [
        (
            "q".to_string(),
            Tensor::from_f32(dims.to_vec(), &data(n, 1)),
        ),
        (
            "k".to_string(),
            Tensor::from_f32(dims.to_vec(), &data(n, 2)),
        ),
    ];
    let session = |einsum: bool| {
        let bytes = weft_nn::fixtures::onnx_scores(einsum);
        let model = Engine::default()
            .load(&bytes, Encoding::Onnx, target)
            .expect("the scores model loads");
        model.session()
    };
    let mut sessions = [session(true), session(false)];
    let mut best = [f64::INFINITY; 2];
    let mut outs = Vec::new();
    // The two take turns, after a warm-up each, so that a noisy
    // neighbour hits both alike.
    for round in 0..21 {
        for (s, best) in sessions.iter_mut().zip(&mut best) {
            let t = Instant::now();
            let out = s.compute(&inputs).expect("scores");
            match round {
                0 => outs.push(out[0].1.to_f32().expect("f32")),
                _ => *best = best.min(t.elapsed().as_secs_f64() * 1e3),
            }
        }
    }
    let [einsum_ms, matmul_ms] = best;
    let (a, b) = (&outs[0], &outs[1]);
    let err = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    println!(
        "{{\"bench\":\"einsum\",\"dims\":{dims:?},\"target\":\"{target:?}\",\"einsum_ms\":{einsum_ms:.3},\"matmul_ms\":{matmul_ms:.3},\"einsum_over_matmul\":{:.2},\"max_abs_diff\":{err}}}",
        einsum_ms / matmul_ms
    );
}

fn matmul(n: usize) {
    let (a, b) = (data(n * n, 1), data(n * n, 2));
    let mut c = vec![0.0; n * n];
    let flop = 2.0 * (n * n * n) as f64;
    weft_nn::kernels::matmul(&a, &b, &mut c, n, n, n);
    let reps = 5;
    let t = Instant::now();
    for _ in 0..reps {
        weft_nn::kernels::matmul(&a, &b, &mut c, n, n, n);
    }
    let weft = flop * reps as f64 / t.elapsed().as_secs_f64() / 1e9;
    // The plain CPU baseline: the textbook loop, one thread, compiled at
    // the same optimisation level as weft-nn.
    let mut plain = vec![0.0f32; n * n];
    let t = Instant::now();
    for i in 0..n {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..n {
                acc += a[i * n + p] * b[p * n + j];
            }
            plain[i * n + j] = acc;
        }
    }
    let naive = flop / t.elapsed().as_secs_f64() / 1e9;
    let err = c
        .iter()
        .zip(&plain)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    println!(
        "{{\"bench\":\"matmul\",\"n\":{n},\"threads\":{},\"weft_gflops\":{weft:.2},\"naive_gflops\":{naive:.2},\"max_abs_diff\":{err}}}",
        rayon::current_num_threads()
    );
}

/// GFLOP/s of `f` (an `n`-cubed product), best of a few timed runs after
/// a warm-up (the GPU's first call also sets up its scratch buffers).
fn gflops(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let reps = if n >= 512 { 3 } else { 10 };
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

fn gpu_matmul(n: usize) {
    let gpu = weft_nn::gpu::Gpu::shared().unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (data(n * n, 1), data(n * n, 2));
    let mut c = vec![0.0; n * n];
    let cpu = gflops(n, || weft_nn::kernels::matmul(&a, &b, &mut c, n, n, n));
    let mut g = Vec::new();
    let sent = gflops(n, || g = gpu.matmul(&a, &b, n, n, n).expect("GPU matmul"));
    let w = gpu.upload(&b, n, n).expect("upload");
    let resident = gflops(n, || {
        g = gpu.matmul_weights(&a, n, n, &w).expect("GPU matmul")
    });
    let err = c
        .iter()
        .zip(&g)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    println!(
        "{{\"bench\":\"gpu_matmul\",\"n\":{n},\"adapter\":{:?},\"cpu_gflops\":{cpu:.2},\"cpu_threads\":{},\"gpu_gflops\":{sent:.2},\"gpu_resident_gflops\":{resident:.2},\"max_abs_diff\":{err}}}",
        gpu.adapter().to_string(),
        rayon::current_num_threads()
    );
}
