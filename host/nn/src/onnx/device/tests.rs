//! Tests of `onnx/device.rs`.

use std::sync::Arc;

use crate::onnx::exec::OnnxModel;
use crate::onnx::write::GraphWriter;
use crate::{Model, Tensor};

/// Products by weights, every broadcast `binary` takes (and one it
/// does not), a `Reshape` on the device, and an `Atan` (no device
/// kernel) in the middle.
fn graph() -> Vec<u8> {
    let ramp = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) * scale)
            .collect()
    };
    let mut g = GraphWriter::new("resident");
    g.node("MatMul", &["x", "w1"], &["h"], "mm1", &[]);
    g.node("Add", &["h", "c4"], &["hb"], "bias", &[]);
    g.node("Add", &["c4", "hb"], &["hb2"], "bias_first", &[]);
    g.node("Sub", &["hb2", "c4"], &["d1"], "sub_row", &[]);
    g.node("Mul", &["d1", "two"], &["m"], "scalar", &[]);
    g.node("Div", &["m", "hb"], &["q"], "same_shape", &[]);
    g.node("Shape", &["like"], &["dims"], "dims", &[]);
    g.node("Reshape", &["q", "dims"], &["r"], "view", &[]);
    // Shape, Size and Identity of device values, read from what is
    // known of them: no round trip.
    g.node("Identity", &["hb"], &["hb_id"], "same", &[]);
    g.node("Shape", &["hb_id"], &["hb_dims"], "its_dims", &[]);
    g.node("Reshape", &["r", "hb_dims"], &["r2"], "view_back", &[]);
    g.node("Size", &["r2"], &["count"], "count", &[]);
    g.node("Atan", &["r2"], &["n"], "on_the_cpu", &[]);
    g.node("MatMul", &["n", "w2"], &["o"], "mm2", &[]);
    g.node("Sub", &["c3", "o"], &["p"], "row_minus", &[]);
    g.initializer("w1", &[5, 4], &ramp(20, 0.25));
    g.initializer("w2", &[4, 3], &ramp(12, 0.5));
    g.initializer("c4", &[4], &[1.0, -2.0, 0.5, 3.0]);
    g.initializer("c3", &[1, 3], &[0.25, -1.0, 2.0]);
    g.initializer("two", &[1], &[2.0]);
    g.input("x", &["b", "s", "5"]);
    g.input("like", &["n", "4"]);
    for o in ["p", "hb", "o", "count"] {
        g.output(o, &[]);
    }
    g.finish("weft-nn tests", 17)
}

fn inputs(rows: usize) -> [(String, Tensor); 2] {
    let x: Vec<f32> = (0..rows * 5).map(|i| (i as f32 * 0.37).sin()).collect();
    [
        ("x".into(), Tensor::from_f32(vec![2, rows / 2, 5], &x)),
        (
            "like".into(),
            Tensor::from_f32(vec![rows, 4], &vec![0.0; rows * 4]),
        ),
    ]
}

fn same(got: &[(String, Tensor)], want: &[(String, Tensor)]) {
    assert_eq!(got.len(), want.len());
    for ((gn, g), (wn, w)) in got.iter().zip(want) {
        assert_eq!((gn, &g.shape), (wn, &w.shape));
        if let Ok(w) = w.to_i64() {
            assert_eq!(g.to_i64().unwrap(), w, "{gn}");
            continue;
        }
        for (a, b) in g.to_f32().unwrap().iter().zip(w.to_f32().unwrap()) {
            // (Infinities equal, NaN matches NaN.)
            let close = *a == b || (a.is_nan() && b.is_nan());
            assert!(
                close || (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{gn}: {a} vs {b}"
            );
        }
    }
}

/// Checks that `bytes` run on `gpu` give what they give on the CPU.
fn matches_the_cpu(bytes: &[u8], gpu: &Arc<crate::gpu::Gpu>, inputs: &[(String, Tensor)]) {
    let want = OnnxModel::load(bytes)
        .unwrap()
        .session()
        .compute(inputs)
        .unwrap();
    let on_gpu = OnnxModel::load_for(bytes, Some(Ok(Arc::clone(gpu)))).unwrap();
    same(&on_gpu.session().compute(inputs).unwrap(), &want);
}

/// Checks that a call of `bytes` fails on the CPU and on the GPU alike,
/// with a message saying `says`.
fn fails_on_both(bytes: &[u8], inputs: &[(String, Tensor)], says: &str) {
    let gpu = crate::gpu::tests::own(None);
    for model in [
        OnnxModel::load(bytes).unwrap(),
        OnnxModel::load_for(bytes, Some(Ok(gpu))).unwrap(),
    ] {
        let e = model.session().compute(inputs).unwrap_err();
        assert!(e.message.contains(says), "{}", e.message);
    }
}

/// Checks that `gpu` ran `programs` submissions of `dispatches` kernel
/// dispatches in all: a node that fell back to the CPU shows there.
fn ran_on_the_device(gpu: &crate::gpu::Gpu, programs: u64, dispatches: u64) {
    let times = gpu.pass_times();
    assert_eq!(
        (times.programs, times.dispatches),
        (programs, dispatches),
        "programs and dispatches on the device"
    );
}

/// Deterministic values in about [-1, 1].
fn wave(n: usize, phase: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.731 + phase).sin()).collect()
}

#[test]
fn a_call_keeps_its_values_on_the_device_and_matches_the_cpu() {
    let gpu = crate::gpu::tests::own(None);
    let bytes = graph();
    let cpu = OnnxModel::load(&bytes).unwrap();
    let on_gpu = OnnxModel::load_for(&bytes, Some(Ok(Arc::clone(&gpu)))).unwrap();
    let inputs = inputs(6);
    let want = cpu.session().compute(&inputs).unwrap();
    let got = on_gpu.session().compute(&inputs).unwrap();
    same(&got, &want);
    // Round trips: `Atan` reads `r2`, and the end reads `hb` (and the
    // rest). `Sub(c3, o)`, a broadcast of its first operand, stays on
    // the device: `c3` is repeated to `o`'s shape first.
    assert_eq!(gpu.matmuls(), 2);
    assert_eq!(gpu.round_trips(), 2);
    assert_eq!(gpu.work_bytes(), 0, "the call's buffers are freed");
}

#[test]
fn layers_of_products_make_one_round_trip() {
    // Four layers of `x = x · w + b`: one submission, where products
    // run one by one would make four round trips.
    let mut g = GraphWriter::new("layers");
    let names: Vec<String> = (0..=8).map(|i| format!("v{i}")).collect();
    for l in 0..4 {
        let (w, b) = (format!("w{l}"), format!("b{l}"));
        let (x, h, y) = (&names[2 * l], format!("h{l}"), &names[2 * l + 2]);
        g.node("MatMul", &[x, &w], &[&h], &format!("mm{l}"), &[]);
        g.node("Add", &[&h, &b], &[y], &format!("bias{l}"), &[]);
        let ramp: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) * 0.1).collect();
        g.initializer(&w, &[4, 4], &ramp);
        g.initializer(&b, &[4], &[0.5, -0.5, 0.25, 0.0]);
    }
    g.input("v0", &["n", "4"]);
    g.output("v8", &["n", "4"]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x = [("v0".into(), Tensor::from_f32(vec![3, 4], &[0.1; 12]))];
    matches_the_cpu(&bytes, &gpu, &x);
    assert_eq!((gpu.matmuls(), gpu.round_trips()), (4, 1));
}

#[test]
fn constants_go_up_once_at_load_and_calls_upload_only_their_inputs() {
    // `x · w + b`, then a layer norm with weights and a scale by a
    // scalar: every initializer is on the device from the load on.
    let mut g = GraphWriter::new("constants");
    g.node("MatMul", &["x", "w"], &["h"], "mm", &[]);
    g.node("Add", &["h", "b"], &["hb"], "bias", &[]);
    g.node(
        "LayerNormalization",
        &["hb", "gamma", "beta"],
        &["n"],
        "norm",
        &[],
    );
    g.node("Mul", &["n", "half"], &["y"], "scale", &[]);
    let ramp: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) * 0.1).collect();
    g.initializer("w", &[4, 4], &ramp);
    g.initializer("b", &[4], &[0.5, -0.5, 0.25, 0.0]);
    g.initializer("gamma", &[4], &[1.0, 2.0, 0.5, -1.0]);
    g.initializer("beta", &[4], &[0.0, 0.1, 0.2, 0.3]);
    g.initializer("half", &[], &[0.5]);
    g.input("x", &["n", "4"]);
    g.output("y", &["n", "4"]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x = [(
        "x".into(),
        Tensor::from_f32(vec![3, 4], &[0.1, 0.2, -0.3, 0.4].repeat(3)),
    )];
    let model = OnnxModel::load_for(&bytes, Some(Ok(Arc::clone(&gpu)))).unwrap();
    // The weight, three rows of four and the scalar.
    let loaded = (16 + 3 * 4 + 1) * 4;
    assert_eq!(gpu.device_bytes(), loaded);
    assert_eq!(model.device_bytes(), loaded);
    let want = OnnxModel::load(&bytes)
        .unwrap()
        .session()
        .compute(&x)
        .unwrap();
    for call in 1..=2 {
        same(&model.session().compute(&x).unwrap(), &want);
        // Each call uploads its 12 inputs and nothing else.
        assert_eq!(gpu.bytes_written(), call * 12 * 4);
    }
    assert_eq!(gpu.round_trips(), 2);
    drop(model);
    assert_eq!(gpu.device_bytes(), 0, "unloading frees the constants");
}

#[test]
fn activations_norms_and_softmax_run_on_the_device_as_on_the_cpu() {
    let ramp: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) * 0.3).collect();
    let x: Vec<f32> = (0..24).map(|i| (i as f32 * 0.61).sin() * 2.0).collect();
    let check = |bytes: Vec<u8>| {
        let gpu = crate::gpu::tests::own(None);
        let x = [("x".into(), Tensor::from_f32(vec![2, 3, 4], &x))];
        matches_the_cpu(&bytes, &gpu, &x);
        assert_eq!(
            (gpu.matmuls(), gpu.round_trips()),
            (1, 1),
            "all on the device"
        );
    };
    // Every activation of `h`, summed, then layer norms with and
    // without a bias and a softmax over the last axis (opset 20).
    let mut g = GraphWriter::new("activations");
    g.node("MatMul", &["x", "w"], &["h"], "mm", &[]);
    let acts = ["Relu", "Sigmoid", "Tanh", "Erf", "Gelu", "Neg"];
    for (i, op) in acts.iter().enumerate() {
        g.node(op, &["h"], &[&format!("a{i}")], op, &[]);
    }
    g.node("Exp", &["a2"], &["e"], "exp", &[]);
    g.node("Sqrt", &["a1"], &["r"], "sqrt", &[]);
    let mut sum = "e".to_string();
    for (i, a) in (0..acts.len())
        .map(|i| format!("a{i}"))
        .chain(["r".into()])
        .enumerate()
    {
        let next = format!("s{i}");
        g.node("Add", &[&sum, &a], &[&next], &next, &[]);
        sum = next;
    }
    g.node(
        "LayerNormalization",
        &[&sum, "scale", "bias"],
        &["n1"],
        "ln",
        &[],
    );
    g.node(
        "LayerNormalization",
        &["n1", "scale"],
        &["n2"],
        "ln_no_bias",
        &[],
    );
    g.node("Softmax", &["n2"], &["y"], "softmax", &[]);
    g.initializer("w", &[4, 4], &ramp);
    g.initializer("scale", &[4], &[1.0, 0.5, -2.0, 1.5]);
    g.initializer("bias", &[4], &[0.1, 0.0, -0.3, 0.2]);
    g.input("x", &["2", "3", "4"]);
    g.output("y", &["2", "3", "4"]);
    check(g.finish("weft-nn tests", 20));
    // Before opset 13, `Softmax` (axis 1 by default) normalises rows of
    // everything from its axis on: here 3 x 4 values, then 4 after
    // views of the same buffer (axes as attributes at opset 11).
    let mut g = GraphWriter::new("legacy softmax");
    g.node("MatMul", &["x", "w"], &["h"], "mm", &[]);
    g.node("Softmax", &["h"], &["y"], "softmax", &[]);
    g.node("Unsqueeze", &["h"], &["u"], "unsqueeze", &[("axes", 1)]);
    g.node("Squeeze", &["u"], &["q"], "squeeze", &[("axes", 1)]);
    g.node("Flatten", &["q"], &["f"], "flatten", &[("axis", 2)]);
    g.node("Softmax", &["f"], &["y2"], "softmax_rows", &[]);
    g.initializer("w", &[4, 4], &ramp);
    g.input("x", &["2", "3", "4"]);
    g.output("y", &["2", "3", "4"]);
    g.output("y2", &["6", "4"]);
    check(g.finish("weft-nn tests", 11));
}

#[test]
fn a_view_the_cpu_refuses_is_refused_on_the_gpu_too() {
    // `Squeeze` of axis 1, which is 3 long, not 1.
    let mut g = GraphWriter::new("bad squeeze");
    g.node("MatMul", &["x", "w"], &["h"], "mm", &[]);
    g.node("Squeeze", &["h"], &["y"], "squeeze", &[("axes", 1)]);
    g.initializer("w", &[4, 4], &[0.5; 16]);
    g.input("x", &["2", "3", "4"]);
    g.output("y", &[]);
    let bytes = g.finish("weft-nn tests", 11);
    let gpu = crate::gpu::tests::own(None);
    let on_gpu = OnnxModel::load_for(&bytes, Some(Ok(gpu))).unwrap();
    let x = [("x".into(), Tensor::from_f32(vec![2, 3, 4], &[1.0; 24]))];
    let want = OnnxModel::load(&bytes)
        .unwrap()
        .session()
        .compute(&x)
        .unwrap_err();
    let got = on_gpu.session().compute(&x).unwrap_err();
    assert_eq!((got.kind, &got.message), (want.kind, &want.message));
    assert!(
        got.message
            .contains("cannot squeeze axis 1 of [2, 3, 4]: it is 3 long, not 1"),
        "{}",
        got.message
    );
}

#[test]
fn a_transpose_naming_an_axis_twice_is_refused_on_both_paths() {
    let mut g = GraphWriter::new("bad perm");
    g.node("MatMul", &["x", "w"], &["h"], "mm", &[]);
    g.node_ints("Transpose", &["h"], &["y"], "t", &[], &[("perm", &[1, 1])]);
    g.initializer("w", &[4, 4], &[0.5; 16]);
    g.input("x", &["3", "4"]);
    g.output("y", &[]);
    let bytes = g.finish("weft-nn tests", 17);
    let x = [("x".into(), Tensor::from_f32(vec![3, 4], &[1.0; 12]))];
    fails_on_both(&bytes, &x, "names axis 1 twice");
}

#[test]
fn values_too_large_for_one_buffer_run_on_the_cpu() {
    // Weights fit (80 and 48 bytes), a 64-row `x` (1280 bytes) does
    // not: the first product and what follows it run on the CPU, with
    // the same results.
    let gpu = crate::gpu::tests::own(Some(512));
    let bytes = graph();
    let cpu = OnnxModel::load(&bytes).unwrap();
    let on_gpu = OnnxModel::load_for(&bytes, Some(Ok(Arc::clone(&gpu)))).unwrap();
    // (With the constants `c4`, `c3` and `two`.)
    assert_eq!(on_gpu.device_bytes(), (20 + 12 + 4 + 3 + 1) * 4);
    let inputs = inputs(64);
    let want = cpu.session().compute(&inputs).unwrap();
    let got = on_gpu.session().compute(&inputs).unwrap();
    same(&got, &want);
}

#[test]
fn a_long_call_submits_as_it_goes_to_free_what_it_no_longer_reads() {
    // 6 rows fit one 512-byte buffer, but the buffers a call makes
    // pass 512 bytes after a few nodes: what is recorded is then
    // submitted (more round trips than the 2 of an unlimited GPU),
    // and the results are the same.
    let gpu = crate::gpu::tests::own(Some(512));
    let bytes = graph();
    let inputs = inputs(6);
    matches_the_cpu(&bytes, &gpu, &inputs);
    assert_eq!(gpu.matmuls(), 2, "both products ran on the device");
    assert!(gpu.round_trips() > 2, "{}", gpu.round_trips());
    assert_eq!(gpu.work_bytes(), 0);
}

/// Attention as exporters write it when it is not fused: head splits by
/// `Transpose`, products of two activations, a mask broadcast over heads
/// and queries, then `Gemm` (with `transB`), a backwards `Slice`,
/// `Expand`, and `Concat` with a host value; `x` is `[2, seq, 8]`.
fn unfused_attention() -> Vec<u8> {
    let ramp = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 5 % 13) as f32 - 6.0) * scale)
            .collect()
    };
    let mut g = GraphWriter::new("unfused attention");
    for (i, w) in ["wq", "wk", "wv"].iter().enumerate() {
        let (h, h4) = (format!("{w}_h"), format!("{w}_4"));
        g.node("MatMul", &["x", w], &[&h], &h, &[]);
        g.node("Reshape", &[&h, "heads"], &[&h4], &h4, &[]);
        g.initializer(w, &[8, 8], &ramp(64, 0.05 * (i + 1) as f32));
    }
    let t = |g: &mut GraphWriter, x: &str, y: &str, perm: &[i64]| {
        g.node_ints("Transpose", &[x], &[y], y, &[], &[("perm", perm)]);
    };
    t(&mut g, "wq_4", "q", &[0, 2, 1, 3]);
    t(&mut g, "wk_4", "kt", &[0, 2, 3, 1]);
    t(&mut g, "wv_4", "v", &[0, 2, 1, 3]);
    g.node("MatMul", &["q", "kt"], &["scores"], "scores", &[]);
    g.node("Div", &["scores", "scale"], &["scaled"], "scaled", &[]);
    g.node("Add", &["scaled", "mask"], &["masked"], "masked", &[]);
    g.node("Softmax", &["masked"], &["probs"], "probs", &[]);
    g.node("MatMul", &["probs", "v"], &["mixed"], "mixed", &[]);
    t(&mut g, "mixed", "merged", &[0, 2, 1, 3]);
    g.node("Reshape", &["merged", "rows"], &["flat"], "flat", &[]);
    g.node_ints(
        "Gemm",
        &["flat", "wo", "bo"],
        &["y"],
        "gemm",
        &[("transB", 1)],
        &[],
    );
    // Every other row from the last, backwards; then repeated twice.
    let slice = ["y", "starts", "ends", "axes", "steps"];
    g.node("Slice", &slice, &["picked"], "picked", &[]);
    g.node(
        "Expand",
        &["picked", "twice"],
        &["repeated"],
        "repeated",
        &[],
    );
    g.node_ints(
        "Concat",
        &["y", "extra"],
        &["cat"],
        "cat",
        &[("axis", 0)],
        &[],
    );
    // Products with one side shared by every matrix of the other: a
    // device value of rank 2 (`small`), on the right and on the left.
    g.node("MatMul", &["eye_in", "wq"], &["small"], "small", &[]);
    g.node("Transpose", &["small"], &["small_t"], "small_t", &[]);
    g.node("MatMul", &["y", "small_t"], &["right"], "right", &[]);
    g.node(
        "Slice",
        &["small", "zero", "four", "one"],
        &["sq"],
        "sq",
        &[],
    );
    g.node("MatMul", &["sq", "kt"], &["left"], "left", &[]);
    // Parts interleaved along an inner axis, a side shared by more than
    // one product, a forward slice from 1, a broadcast of the left side
    // of a `Sub`, and a `Gemm` without bias or `transB`.
    g.node_ints("Concat", &["q", "v"], &["qv"], "qv", &[("axis", 3)], &[]);
    g.node("MatMul", &["q", "sq"], &["shared"], "shared", &[]);
    let odd = ["y", "one", "hundred", "one", "two"];
    g.node("Slice", &odd, &["odd"], "odd", &[]);
    g.node(
        "Sub",
        &["mask", "scaled"],
        &["mask_minus"],
        "mask_minus",
        &[],
    );
    g.node("Gemm", &["flat", "wo"], &["plain"], "plain", &[]);
    g.initializer_i64("hundred", &[1], &[100]);
    g.initializer_i64("two", &[1], &[2]);
    g.initializer_i64("heads", &[4], &[0, -1, 2, 4]);
    g.initializer_i64("rows", &[2], &[-1, 8]);
    g.initializer("scale", &[], &[2.0]);
    g.initializer("wo", &[8, 8], &ramp(64, 0.07));
    g.initializer("bo", &[8], &ramp(8, 0.1));
    g.initializer_i64("starts", &[1], &[-1]);
    g.initializer_i64("ends", &[1], &[i64::MIN]);
    g.initializer_i64("axes", &[1], &[0]);
    g.initializer_i64("steps", &[1], &[-2]);
    g.initializer_i64("twice", &[3], &[2, 1, 1]);
    g.initializer("extra", &[1, 8], &ramp(8, 1.0));
    g.initializer_i64("zero", &[1], &[0]);
    g.initializer_i64("four", &[1], &[4]);
    g.initializer_i64("one", &[1], &[1]);
    g.input("x", &["2", "s", "8"]);
    g.input("mask", &["2", "1", "1", "s"]);
    g.input("eye_in", &["4", "8"]);
    let outputs = ["cat", "repeated", "right", "left", "qv", "shared", "odd"];
    for o in outputs.into_iter().chain(["mask_minus", "plain"]) {
        g.output(o, &[]);
    }
    g.finish("weft-nn tests", 17)
}

#[test]
fn unfused_attention_and_rearranging_ops_run_on_the_device_as_on_the_cpu() {
    let bytes = unfused_attention();
    let cpu = OnnxModel::load(&bytes).unwrap();
    // 3 rows: the few-row product kernel; 70: two tiles each way.
    for seq in [3, 70] {
        let gpu = crate::gpu::tests::own(None);
        let on_gpu = OnnxModel::load_for(&bytes, Some(Ok(Arc::clone(&gpu)))).unwrap();
        let x: Vec<f32> = (0..2 * seq * 8).map(|i| (i as f32 * 0.29).sin()).collect();
        // The second sequence's last two keys are masked.
        let mask: Vec<f32> = (0..2 * seq)
            .map(|i| if i >= 2 * seq - 2 { -1e4 } else { 0.0 })
            .collect();
        let eye: Vec<f32> = (0..32).map(|i| f32::from(i % 9 == 0)).collect();
        let inputs = [
            ("x".into(), Tensor::from_f32(vec![2, seq, 8], &x)),
            ("mask".into(), Tensor::from_f32(vec![2, 1, 1, seq], &mask)),
            ("eye_in".into(), Tensor::from_f32(vec![4, 8], &eye)),
        ];
        let want = cpu.session().compute(&inputs).unwrap();
        same(&on_gpu.session().compute(&inputs).unwrap(), &want);
        // 3 projections, `small`, two `Gemm`s and 5 products of
        // activations, all in the one submission that reads the outputs
        // back.
        assert_eq!((gpu.matmuls(), gpu.round_trips()), (11, 1), "seq {seq}");
        assert_eq!(gpu.work_bytes(), 0, "the call's buffers are freed");
    }
}

#[test]
fn broadcasts_the_device_kernels_do_not_take_run_on_the_cpu() {
    // `[2, 1]` by `[1, 3]` leading dims: products the device cannot
    // share a side of, on the CPU, with the same results.
    let mut g = GraphWriter::new("cpu broadcasts");
    g.node("MatMul", &["x", "w"], &["h"], "mm", &[]);
    g.node("Reshape", &["h", "a_shape"], &["a"], "a", &[]);
    g.node("Reshape", &["h", "b_shape"], &["b"], "b", &[]);
    g.node("MatMul", &["a", "b"], &["ab"], "ab", &[]);
    g.initializer(
        "w",
        &[4, 4],
        &(0..16).map(|i| i as f32 * 0.1).collect::<Vec<_>>(),
    );
    g.initializer_i64("a_shape", &[4], &[2, 1, 3, 4]);
    g.initializer_i64("b_shape", &[4], &[1, 3, 4, 2]);
    g.input("x", &["6", "4"]);
    g.output("ab", &[]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x: Vec<f32> = (0..24).map(|i| (i as f32 * 0.7).cos()).collect();
    let x = [("x".into(), Tensor::from_f32(vec![6, 4], &x))];
    matches_the_cpu(&bytes, &gpu, &x);
    // On the device only `mm`; `ab` reads it back.
    assert_eq!((gpu.matmuls(), gpu.round_trips()), (1, 1));
}

#[test]
fn a_decomposed_rms_norm_reductions_and_powers_run_on_the_device_as_on_the_cpu() {
    // RMSNorm as exporters write it (`Pow`, `ReduceMean`, `Sqrt`,
    // `Reciprocal`, a `[.., 1]` broadcast), the other reductions (axes
    // as an input and as an attribute, keepdims off), odd and
    // fractional powers of negative values, and more activations.
    let mut g = GraphWriter::new("rms norm");
    g.node("MatMul", &["x", "w"], &["h"], "mm", &[]);
    g.node("Pow", &["h", "two"], &["sq"], "sq", &[]);
    g.node_ints(
        "ReduceMean",
        &["sq"],
        &["ms"],
        "ms",
        &[],
        &[("axes", &[-1])],
    );
    g.node("Add", &["ms", "eps"], &["ve"], "ve", &[]);
    g.node("Sqrt", &["ve"], &["rt"], "rt", &[]);
    g.node("Reciprocal", &["rt"], &["inv"], "inv", &[]);
    g.node("Mul", &["h", "inv"], &["n"], "n", &[]);
    g.node("Mul", &["n", "gain"], &["y"], "y", &[]);
    g.node("ReduceSum", &["h", "last"], &["s"], "s", &[("keepdims", 0)]);
    g.node_ints("ReduceMax", &["h"], &["m"], "m", &[], &[("axes", &[2])]);
    g.node("Abs", &["h"], &["a"], "a", &[]);
    g.node("Add", &["a", "one"], &["a1"], "a1", &[]);
    g.node("Log", &["a1"], &["l"], "l", &[]);
    g.node_ints(
        "ReduceMax",
        &["h"],
        &["m0"],
        "m0",
        &[("keepdims", 0)],
        &[("axes", &[-1])],
    );
    // Zero to the powers 0 and -1 (1 and infinity), its log (-infinity),
    // and the log and square root of negatives (NaN).
    g.node("Sub", &["h", "h"], &["z"], "z", &[]);
    g.node("Pow", &["z", "zero"], &["z0"], "z0", &[]);
    g.node("Pow", &["z", "minus_one"], &["zi"], "zi", &[]);
    g.node("Log", &["z"], &["lz"], "lz", &[]);
    g.node("Neg", &["a1"], &["na"], "na", &[]);
    g.node("Log", &["na"], &["ln"], "ln", &[]);
    g.node("Sqrt", &["na"], &["sn"], "sn", &[]);
    g.node("Pow", &["h", "three"], &["p3"], "p3", &[]);
    g.node("Pow", &["h", "half"], &["ph"], "ph", &[]);
    g.node("Pow", &["a", "half"], &["pa"], "pa", &[]);
    let ramp: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) * 0.3).collect();
    g.initializer("w", &[4, 4], &ramp);
    g.initializer("gain", &[4], &[1.0, 0.5, -2.0, 1.5]);
    let scalars = [("two", 2.0), ("three", 3.0), ("half", 0.5), ("one", 1.0)];
    for (name, v) in scalars
        .into_iter()
        .chain([("zero", 0.0), ("minus_one", -1.0)])
    {
        g.initializer(name, &[], &[v]);
    }
    g.initializer("eps", &[1], &[1e-6]);
    g.initializer_i64("last", &[1], &[-1]);
    g.input("x", &["2", "3", "4"]);
    let outputs = [
        "y", "s", "m", "l", "m0", "p3", "ph", "pa", "z0", "zi", "lz", "ln",
    ];
    for o in outputs.into_iter().chain(["sn"]) {
        g.output(o, &[]);
    }
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let on_gpu = OnnxModel::load_for(&bytes, Some(Ok(Arc::clone(&gpu)))).unwrap();
    let x: Vec<f32> = (0..24).map(|i| (i as f32 * 0.61).sin() * 2.0).collect();
    let x = [("x".into(), Tensor::from_f32(vec![2, 3, 4], &x))];
    let want = OnnxModel::load(&bytes)
        .unwrap()
        .session()
        .compute(&x)
        .unwrap();
    let got = on_gpu.session().compute(&x).unwrap();
    // `ph` is NaN wherever `h` is negative (on both paths: `same`).
    assert!(want[6].1.to_f32().unwrap().iter().any(|f| f.is_nan()));
    let zi = want[9].1.to_f32().unwrap();
    assert!(zi.iter().all(|f| f.is_infinite()), "{zi:?}");
    same(&got, &want);
    assert_eq!(
        (gpu.matmuls(), gpu.round_trips()),
        (1, 1),
        "all on the device"
    );
}

#[test]
fn rotary_cos_and_sin_run_on_the_device_as_on_the_cpu() {
    // Angles as a rotary embedding makes them (positions times inverse
    // frequencies), up to thousands of radians, then their cosines and
    // sines; and of infinities and NaN (x / 0, 0 / 0). The positions go
    // up by a product by the identity (exact, as the angles must be: at
    // 4000 radians one rounding apart is 5e-4 of a sine apart).
    let mut g = GraphWriter::new("rotary");
    g.node("MatMul", &["x", "eye"], &["p"], "up", &[]);
    g.node("Unsqueeze", &["p", "last"], &["p1"], "p1", &[]);
    g.node("Mul", &["p1", "freqs"], &["angles"], "angles", &[]);
    g.node("Cos", &["angles"], &["c"], "cos", &[]);
    g.node("Sin", &["angles"], &["s"], "sin", &[]);
    g.node("Sub", &["angles", "angles"], &["z"], "zero", &[]);
    g.node("Div", &["angles", "z"], &["odd"], "inf_and_nan", &[]);
    g.node("Cos", &["odd"], &["co"], "cos_odd", &[]);
    g.node("Sin", &["odd"], &["so"], "sin_odd", &[]);
    let freqs: Vec<f32> = (0..4).map(|i| 10_f32.powf(2.0 - i as f32)).collect();
    g.initializer("freqs", &[4], &freqs);
    let eye: Vec<f32> = (0..9).map(|i| f32::from(i % 4 == 0)).collect();
    g.initializer("eye", &[3, 3], &eye);
    g.initializer_i64("last", &[1], &[-1]);
    g.input("x", &["5", "3"]);
    for o in ["c", "s", "co", "so"] {
        g.output(o, &[]);
    }
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    // Positions 0..=40 (one row at 0: 0 / 0 is NaN there, x / 0 ±inf elsewhere).
    let x: Vec<f32> = (0..15).map(|i| (i * 3 % 41) as f32).collect();
    let x = [("x".into(), Tensor::from_f32(vec![5, 3], &x))];
    matches_the_cpu(&bytes, &gpu, &x);
    assert_eq!(
        (gpu.matmuls(), gpu.round_trips()),
        (1, 1),
        "all on the device"
    );
}

mod cnn;
mod layout;
mod math;
mod products;
mod select;
