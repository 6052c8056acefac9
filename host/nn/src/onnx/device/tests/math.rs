//! Tests of the reductions, activations and softmaxes on the device
//! against the CPU.

use super::{matches_the_cpu, ran_on_the_device, wave};
use crate::onnx::exec::OnnxModel;
use crate::onnx::write::GraphWriter;
use crate::{Model, Tensor};

#[test]
fn every_reduction_over_any_axes_runs_on_the_device_as_on_the_cpu() {
    // Each `Reduce*` with a device kernel over a leading axis, a middle
    // one, two apart, all (no axes) and the last without keepdims; the
    // axes as an attribute (opset 17) and, for `ReduceSum`, an input.
    // Then rows with NaN and -inf (`Log` of `h`), and a `ReduceSum`
    // that passes its input through (`noop_with_empty_axes`).
    let mut g = GraphWriter::new("reductions");
    g.node("MatMul", &["x", "w"], &["h"], "mm", &[]);
    g.node("Log", &["h"], &["l"], "l", &[]);
    g.node("Abs", &["h"], &["a"], "a", &[]);
    g.node("Add", &["a", "one"], &["pos"], "pos", &[]);
    let ops = [
        "ReduceSum",
        "ReduceMean",
        "ReduceMax",
        "ReduceMin",
        "ReduceSumSquare",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceProd",
    ];
    let axes: [&[i64]; 5] = [&[0], &[1], &[0, 2], &[], &[-1]];
    let mut outputs = Vec::new();
    for op in ops {
        // (The log of a sum wants it positive.)
        let x = if op == "ReduceLogSum" { "pos" } else { "h" };
        for (i, axes) in axes.iter().enumerate() {
            let out = format!("{op}_{i}");
            let keep = [("keepdims", i64::from(i != 4))];
            if op == "ReduceSum" {
                let name = format!("axes_{i}");
                g.initializer_i64(&name, &[axes.len() as u64], axes);
                let inputs: &[&str] = if axes.is_empty() { &[x] } else { &[x, &name] };
                g.node(op, inputs, &[&out], &out, &keep);
            } else {
                let lists: &[(&str, &[i64])] = if axes.is_empty() {
                    &[]
                } else {
                    &[("axes", axes)]
                };
                g.node_ints(op, &[x], &[&out], &out, &keep, lists);
            }
            outputs.push(out);
        }
    }
    for op in [
        "ReduceMax",
        "ReduceMin",
        "ReduceLogSumExp",
        "ReduceSum",
        "ReduceProd",
    ] {
        let out = format!("{op}_odd");
        g.node_ints(op, &["l"], &[&out], &out, &[], &[("axes", &[1])]);
        outputs.push(out);
    }
    g.node(
        "ReduceSum",
        &["h"],
        &["same"],
        "same",
        &[("noop_with_empty_axes", 1)],
    );
    outputs.push("same".into());
    for o in &outputs {
        g.output(o, &[]);
    }
    g.initializer("w", &[4, 4], &wave(16, 0.9));
    g.initializer("one", &[], &[1.0]);
    g.input("x", &["2", "3", "4"]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    // One row of x zero: a row of h zero, its log -inf.
    let mut x = wave(24, 0.2);
    x[4..8].fill(0.0);
    let x = [("x".into(), Tensor::from_f32(vec![2, 3, 4], &x))];
    let want = OnnxModel::load(&bytes)
        .unwrap()
        .session()
        .compute(&x)
        .unwrap();
    let odd = |name: &str| {
        let (_, t) = want.iter().find(|(n, _)| n == name).unwrap();
        t.to_f32().unwrap()
    };
    assert!(odd("ReduceMax_odd").iter().any(|v| v.is_nan()));
    assert!(odd("ReduceMin_odd").iter().any(|v| v.is_nan()));
    assert!(odd("ReduceLogSumExp_odd").iter().any(|v| v.is_nan()));
    matches_the_cpu(&bytes, &gpu, &x);
    assert_eq!(
        (gpu.matmuls(), gpu.round_trips()),
        (1, 1),
        "all on the device"
    );
}

#[test]
fn cnn_activations_rounding_and_max_min_prelu_run_on_the_device_as_on_the_cpu() {
    // Each unary op with attributes set (and one at its defaults) over
    // values from -40 to 40 (softplus's tails, exp's range), halfway
    // cases for `Round`, and NaN (kept, by all but `ThresholdedRelu`);
    // `Max`, `Min` with NaN on either side and `PRelu` by a per-channel
    // slope.
    let mut g = GraphWriter::new("activations");
    g.node("MatMul", &["x", "eye"], &["h"], "up", &[]);
    // 0 / 0 in the middle row: NaN there.
    g.node("Div", &["h", "h"], &["ones"], "ones", &[]);
    g.node("Mul", &["h", "ones"], &["hn"], "hn", &[]);
    let unary: [(&str, &[(&str, i64)]); 16] = [
        ("LeakyRelu", &[("alpha", 3)]),
        ("Elu", &[("alpha", 2)]),
        ("Selu", &[("alpha", 2), ("gamma", 3)]),
        ("HardSigmoid", &[("alpha", 1), ("beta", 2)]),
        ("HardSwish", &[]),
        ("Softplus", &[]),
        ("Softsign", &[]),
        ("Mish", &[]),
        ("Celu", &[("alpha", 2)]),
        ("ThresholdedRelu", &[("alpha", 2)]),
        ("Floor", &[]),
        ("Ceil", &[]),
        ("Round", &[]),
        ("Sign", &[]),
        ("Swish", &[("alpha", 2)]),
        ("Selu", &[]),
    ];
    let mut outputs = Vec::new();
    for (i, (op, attrs)) in unary.into_iter().enumerate() {
        let out = format!("{op}_{i}");
        g.node(op, &["hn"], &[&out], &out, attrs);
        outputs.push(out);
    }
    for (op, inputs) in [
        ("Max", ["hn", "row"]),
        ("Min", ["row", "hn"]),
        ("PRelu", ["h", "slope"]),
    ] {
        g.node(op, &inputs, &[op], op, &[]);
        outputs.push(op.to_string());
    }
    for o in &outputs {
        g.output(o, &[]);
    }
    let eye: Vec<f32> = (0..64).map(|i| f32::from(i % 9 == 0)).collect();
    g.initializer("eye", &[8, 8], &eye);
    g.initializer("row", &[8], &[0.0, 1.0, -1.0, 2.5, -2.5, 40.0, -40.0, 0.5]);
    g.initializer("slope", &[8], &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    g.input("x", &["3", "8"]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x: Vec<f32> = [-40.0, -20.0, -5.5, -2.5, -0.5, 0.5, 1.5, 2.5]
        .into_iter()
        .chain([0.0; 8])
        .chain([-3.0, -1.0, -0.25, 0.25, 3.0, 6.0, 20.0, 40.0])
        .collect();
    let x = [("x".into(), Tensor::from_f32(vec![3, 8], &x))];
    matches_the_cpu(&bytes, &gpu, &x);
    assert_eq!(
        (gpu.matmuls(), gpu.round_trips()),
        (1, 1),
        "all on the device"
    );
}

#[test]
fn softmax_and_log_softmax_over_any_axis_run_on_the_device_as_on_the_cpu() {
    // Over the last axis, a middle one and the first (each moved last
    // and back), with large values (log-softmax's subtraction matters).
    let mut g = GraphWriter::new("softmaxes");
    g.node("MatMul", &["x", "w"], &["h"], "up", &[]);
    let cases = [
        ("Softmax", 0),
        ("Softmax", 1),
        ("LogSoftmax", -1),
        ("LogSoftmax", 1),
        ("LogSoftmax", 0),
    ];
    for (i, (op, axis)) in cases.into_iter().enumerate() {
        let out = format!("{op}_{i}");
        g.node(op, &["h"], &[&out], &out, &[("axis", axis)]);
        g.output(&out, &[]);
    }
    g.initializer(
        "w",
        &[4, 4],
        &wave(16, 0.5).iter().map(|v| v * 30.0).collect::<Vec<_>>(),
    );
    g.input("x", &["2", "3", "4"]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x = [("x".into(), Tensor::from_f32(vec![2, 3, 4], &wave(24, 1.0)))];
    matches_the_cpu(&bytes, &gpu, &x);
    // The product; one dispatch for the last axis, three for another.
    ran_on_the_device(&gpu, 1, 1 + 1 + 3 * 4);
}
