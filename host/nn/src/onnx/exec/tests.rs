//! Tests of `onnx/exec.rs`.

use super::*;
use crate::ElementType;

#[test]
fn refuses_unsupported_operators_by_name() {
    let err = OnnxModel::load(&crate::fixtures::onnx(&["Relu", "FancyOp"])).unwrap_err();
    assert_eq!(err.kind, NnErrorKind::UnsupportedOperation);
    assert!(
        err.message.contains("FancyOp") && err.message.contains("n1"),
        "{}",
        err.message
    );
    let err = OnnxModel::load(b"\x08").unwrap_err();
    assert_eq!(err.kind, NnErrorKind::InvalidEncoding);
}

use crate::fixtures::{bytes as field, var};

/// `y = Relu(x)`, x a float vector of any length.
fn relu_model() -> Vec<u8> {
    let mut node = Vec::new();
    field(1, b"x", &mut node);
    field(2, b"y", &mut node);
    field(4, b"Relu", &mut node);
    let mut graph = Vec::new();
    field(1, &node, &mut graph);
    for (f, name) in [(11, "x"), (12, "y")] {
        let mut dim = Vec::new();
        field(2, b"n", &mut dim);
        let mut shape = Vec::new();
        field(1, &dim, &mut shape);
        let mut tt = vec![1 << 3, 1];
        field(2, &shape, &mut tt);
        let mut ty = Vec::new();
        field(1, &tt, &mut ty);
        let mut vi = Vec::new();
        field(1, name.as_bytes(), &mut vi);
        field(2, &ty, &mut vi);
        field(f, &vi, &mut graph);
    }
    let mut m = vec![1 << 3, 8];
    let mut opset = vec![2 << 3];
    var(17, &mut opset);
    field(8, &opset, &mut m);
    field(7, &graph, &mut m);
    m
}

#[test]
fn runs_a_graph_and_checks_inputs() {
    let model = OnnxModel::load(&relu_model()).unwrap();
    assert!(model.batchable());
    let mut s = model.session();
    let out = s
        .compute(&[("x".into(), Tensor::from_f32(vec![3], &[-1.0, 0.5, 2.0]))])
        .unwrap();
    assert_eq!(out[0].0, "y");
    assert_eq!(out[0].1.to_f32().unwrap(), vec![0.0, 0.5, 2.0]);
    let err = s
        .compute(&[
            ("z".into(), Tensor::from_f32(vec![1], &[1.0])),
            ("q".into(), Tensor::from_f32(vec![1], &[1.0])),
        ])
        .unwrap_err();
    assert_eq!(err.kind, NnErrorKind::InvalidArgument);
    assert!(err.message.contains("`x`"), "{}", err.message);
    let err = s
        .compute(&[("x".into(), Tensor::from_f32(vec![1, 1], &[1.0]))])
        .unwrap_err();
    assert_eq!(err.kind, NnErrorKind::InvalidArgument, "wrong rank");
    let err = s
        .compute(&[("x".into(), Tensor::from_i64(vec![1], &[1]))])
        .unwrap_err();
    assert_eq!(err.kind, NnErrorKind::InvalidArgument, "wrong type");
}

/// `MatMul`s (3-D and 1-D A) and `Gemm`s (`transB`, `transA`, alpha,
/// beta and C) with weight B, for the GPU path.
fn products_model() -> Vec<u8> {
    use crate::onnx::write::GraphWriter;
    let ramp = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) * scale)
            .collect()
    };
    let mut g = GraphWriter::new("products");
    g.node("MatMul", &["x", "w1"], &["h"], "mm3d", &[]);
    g.node("MatMul", &["x1", "w1"], &["h1"], "mm1d", &[]);
    let gemm_attrs = [("transB", 1), ("alpha", 2), ("beta", 3)];
    g.node("Gemm", &["z", "w2", "c"], &["y2"], "gemm_tb", &gemm_attrs);
    g.node("Gemm", &["zt", "w3"], &["y3"], "gemm_ta", &[("transA", 1)]);
    g.initializer("w1", &[5, 7], &ramp(35, 0.25));
    g.initializer("w2", &[3, 7], &ramp(21, 0.5));
    g.initializer("c", &[3], &[1.0, -2.0, 0.5]);
    g.initializer("w3", &[7, 4], &ramp(28, 0.125));
    g.input("x", &["b", "s", "5"]);
    g.input("x1", &["5"]);
    g.input("z", &["b", "7"]);
    g.input("zt", &["7", "b"]);
    for o in ["h", "h1", "y2", "y3"] {
        g.output(o, &[]);
    }
    g.finish("weft-nn tests", 17)
}

#[test]
fn weight_products_run_on_the_gpu_with_the_cpu_results() {
    let _only = crate::gpu::tests::counted_uploads();
    let gpu = crate::gpu::tests::gpu();
    let bytes = products_model();
    let cpu = OnnxModel::load(&bytes).unwrap();
    let on_gpu = OnnxModel::load_for(&bytes, Some(Ok(Arc::clone(&gpu)))).unwrap();
    assert_eq!(on_gpu.placement(), Placement::Gpu(gpu.adapter()));
    // The three weights, and `c`, a constant on the device too.
    assert_eq!(on_gpu.device_bytes(), (35 + 21 + 28 + 3) * 4);
    let values = |n: usize| -> Vec<f32> { (0..n).map(|i| (i as f32 * 0.37).sin()).collect() };
    let inputs = [
        ("x".into(), Tensor::from_f32(vec![2, 3, 5], &values(30))),
        ("x1".into(), Tensor::from_f32(vec![5], &values(5))),
        ("z".into(), Tensor::from_f32(vec![2, 7], &values(14))),
        ("zt".into(), Tensor::from_f32(vec![7, 2], &values(14))),
    ];
    let want = cpu.session().compute(&inputs).unwrap();
    let products = gpu.matmuls();
    let got = on_gpu.session().compute(&inputs).unwrap();
    assert!(gpu.matmuls() >= products + 4, "all four ran on the GPU");
    for ((gn, g), (wn, w)) in got.iter().zip(&want) {
        assert_eq!((gn, &g.shape), (wn, &w.shape));
        for (a, b) in g.to_f32().unwrap().iter().zip(w.to_f32().unwrap()) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{gn}: {a} vs {b}");
        }
    }
    assert_eq!(want[1].1.shape, vec![7], "1-D A gives a 1-D product");

    // No GPU: the same model on the CPU, saying why.
    let why = NnError::new(NnErrorKind::UnsupportedOperation, "no adapter here");
    let fallback = OnnxModel::load_for(&bytes, Some(Err(why))).unwrap();
    assert_eq!(
        fallback.placement(),
        Placement::CpuFallback("no adapter here".into())
    );
    assert_eq!(fallback.device_bytes(), 0);
    let out = fallback.session().compute(&inputs).unwrap();
    assert_eq!(out[2].1.to_f32().unwrap(), want[2].1.to_f32().unwrap());
}

#[test]
fn a_weight_only_products_read_is_kept_packed_only_and_unpacked_when_needed() {
    use crate::onnx::write::GraphWriter;
    // y = x · w with x 1-D, which the packed kernel does not take;
    // with `shared`, w also feeds an Add, so its stored copy stays.
    let build = |shared: bool| {
        let mut g = GraphWriter::new("packed");
        g.node("MatMul", &["x", "w"], &["y"], "mm", &[]);
        if shared {
            g.node("Add", &["w", "w"], &["w2"], "add", &[]);
            g.output("w2", &["2", "3"]);
        }
        g.initializer("w", &[2, 3], &[1., 2., 3., 4., 5., 6.]);
        g.input("x", &["2"]);
        g.output("y", &["3"]);
        g.finish("weft-nn tests", 17)
    };
    let (only, shared) = (
        OnnxModel::load(&build(false)).unwrap(),
        OnnxModel::load(&build(true)).unwrap(),
    );
    assert_eq!(
        shared.weight_bytes() - only.weight_bytes(),
        6 * 4,
        "only the shared model keeps w as stored"
    );
    for model in [&only, &shared] {
        let x = Tensor::from_f32(vec![2], &[1.0, 1.0]);
        let out = model.session().compute(&[("x".into(), x)]).unwrap();
        let y = out.iter().find(|(n, _)| n == "y").unwrap();
        assert_eq!(y.1.to_f32().unwrap(), vec![5.0, 7.0, 9.0]);
    }
    let x = Tensor::from_f32(vec![2], &[1.0, 1.0]);
    let out = shared.session().compute(&[("x".into(), x)]).unwrap();
    let w2 = out.iter().find(|(n, _)| n == "w2").unwrap();
    assert_eq!(w2.1.to_f32().unwrap(), vec![2., 4., 6., 8., 10., 12.]);
}

#[test]
fn integer_products_by_constant_weights_are_widened_at_load() {
    use crate::onnx::write::GraphWriter;
    // y = float((a - a_zp) · (b - b_zp)), b int8 with a zero point per
    // column, as onnxruntime's quantize_dynamic writes it.
    let b: [i8; 12] = [-128, 127, 3, 0, -7, 55, 91, -100, 1, 12, 34, -56];
    let b_zp: [i8; 3] = [-3, 0, 7];
    let a_zp = 128u8;
    // With `int_out`, the int32 product is a graph output too, so the
    // Cast is not folded into the product.
    let build = |a_dims: &[&str], y_dims: &[&str], int_out: bool| {
        let mut g = GraphWriter::new("int8");
        g.node(
            "MatMulInteger",
            &["a", "b", "a_zp", "b_zp"],
            &["c"],
            "mmi",
            &[],
        );
        g.node("Cast", &["c"], &["y"], "cast", &[("to", 1)]);
        g.raw_initializer("b", &[4, 3], 3, &b.map(|v| v as u8));
        g.raw_initializer("b_zp", &[3], 3, &b_zp.map(|v| v as u8));
        g.raw_initializer("a_zp", &[], 2, &[a_zp]);
        g.input_of("a", a_dims, 2);
        g.output("y", y_dims);
        if int_out {
            g.output("c", y_dims);
        }
        g.finish("weft-nn tests", 17)
    };
    let want = |a: &[u8]| -> Vec<f32> {
        let rows = a.len() / 4;
        let mut y = vec![0.0; rows * 3];
        for r in 0..rows {
            for c in 0..3 {
                let dot: i32 = (0..4)
                    .map(|k| {
                        (i32::from(a[r * 4 + k]) - i32::from(a_zp))
                            * (i32::from(b[k * 3 + c]) - i32::from(b_zp[c]))
                    })
                    .sum();
                y[r * 3 + c] = dot as f32;
            }
        }
        y
    };
    let a: [u8; 8] = [0, 255, 128, 7, 200, 13, 129, 64];
    // Rows of A: the packed kernel. One 1-D A: the packed form does not
    // take it, so B is unpacked for it.
    for (a_dims, y_dims, a) in [
        (&["m", "4"][..], &["m", "3"][..], &a[..]),
        (&["4"][..], &["3"][..], &a[..4]),
    ] {
        for int_out in [false, true] {
            let model = OnnxModel::load(&build(a_dims, y_dims, int_out)).unwrap();
            let nodes: Vec<&str> = model
                .graph
                .nodes
                .iter()
                .map(|n| n.op_type.as_str())
                .collect();
            match int_out {
                false => assert_eq!(nodes, ["WeftMatMulInteger"]),
                true => assert_eq!(nodes, ["WeftMatMulInteger", "Cast"]),
            }
            assert!(
                !model.graph.weights.contains_key("b"),
                "the int8 copy is dropped"
            );
            assert_eq!(model.graph.packed.len(), 1);
            let shape: Vec<usize> = if a.len() == 4 { vec![4] } else { vec![2, 4] };
            let t = Tensor::new(shape, ElementType::U8, a.to_vec()).unwrap();
            let out = model.session().compute(&[("a".into(), t)]).unwrap();
            let y = out.iter().find(|(n, _)| n == "y").unwrap();
            assert_eq!(y.1.ty, ElementType::F32);
            assert_eq!(y.1.to_f32().unwrap(), want(a));
            if let Some((_, c)) = out.iter().find(|(n, _)| n == "c") {
                assert_eq!(c.ty, ElementType::I32);
                let c: Vec<f32> = c
                    .data
                    .chunks(4)
                    .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as f32)
                    .collect();
                assert_eq!(c, want(a));
            }
        }
    }
    // A zero point that fits neither B nor its columns: refused at load,
    // naming the node.
    let mut g = GraphWriter::new("bad zp");
    g.node("MatMulInteger", &["a", "b", "", "b_zp"], &["c"], "mmi", &[]);
    g.node("Cast", &["c"], &["y"], "cast", &[("to", 1)]);
    g.raw_initializer("b", &[4, 3], 3, &b.map(|v| v as u8));
    g.raw_initializer("b_zp", &[2], 3, &[1, 2]);
    g.input_of("a", &["m", "4"], 2);
    g.output("y", &["m", "3"]);
    let err = OnnxModel::load(&g.finish("weft-nn tests", 17)).unwrap_err();
    assert_eq!(err.kind, NnErrorKind::InvalidEncoding);
    assert!(
        err.message.contains("node `mmi`") && err.message.contains("zero point [2]"),
        "{}",
        err.message
    );
}

#[test]
fn integer_products_take_the_int8_kernel_where_the_weight_fits_it() {
    use crate::onnx::write::GraphWriter;
    // y = float((a - a_zp) · (b - b_zp)) for a 3-D i8 A with a zero point
    // per row, over a k and n that are not whole groups or panels; b's
    // zero point either keeps b - b_zp in i8's range (the int8 kernel,
    // where the CPU has it) or takes it out (the f32 kernels).
    let (k, n) = (37, 45);
    let ints = |len: usize, seed: u64| -> Vec<i8> {
        let mut s = crate::train::math::SplitMix(seed);
        (0..len)
            .map(|_| (s.next_f64() * 256.0 - 128.0) as i8)
            .collect()
    };
    let (a, a_zp) = (ints(2 * 3 * k, 1), ints(3, 2));
    let b: Vec<i8> = ints(k * n, 3).iter().map(|v| v / 2).collect();
    for (b_zp, int8) in [(-60i8, true), (-70, false)] {
        let mut g = GraphWriter::new("int8 kernel");
        g.node("Cast", &["af"], &["a"], "to_i8", &[("to", 3)]);
        g.node(
            "MatMulInteger",
            &["a", "b", "a_zp", "b_zp"],
            &["c"],
            "mmi",
            &[],
        );
        g.node("Cast", &["c"], &["y"], "cast", &[("to", 1)]);
        g.raw_initializer(
            "b",
            &[k as u64, n as u64],
            3,
            &b.iter().map(|&v| v as u8).collect::<Vec<_>>(),
        );
        g.raw_initializer("b_zp", &[], 3, &[b_zp as u8]);
        g.raw_initializer(
            "a_zp",
            &[3],
            3,
            &a_zp.iter().map(|&v| v as u8).collect::<Vec<_>>(),
        );
        g.input_of("af", &["2", "3", &k.to_string()], 1);
        g.output("y", &["2", "3", &n.to_string()]);
        let model = OnnxModel::load(&g.finish("weft-nn tests", 17)).unwrap();
        let packed = model.graph.packed.values().next().unwrap();
        // (In the crate's tests, on every CPU: with the portable kernel
        // where it lacks VNNI.)
        assert_eq!(packed.int8().is_some(), int8, "b_zp {b_zp}");
        // wasi:nn has no i8 tensors: A comes in as i32 and is cast.
        let a32: Vec<f32> = a.iter().map(|&v| f32::from(v)).collect();
        let t = Tensor::from_f32(vec![2, 3, k], &a32);
        let out = model.session().compute(&[("af".into(), t)]).unwrap();
        let mut want = Vec::new();
        for (i, row) in a.chunks(k).enumerate() {
            for j in 0..n {
                let dot: i32 = (0..k)
                    .map(|p| {
                        (i32::from(row[p]) - i32::from(a_zp[i % 3]))
                            * (i32::from(b[p * n + j]) - i32::from(b_zp))
                    })
                    .sum();
                want.push(dot as f32);
            }
        }
        assert_eq!(out[0].1.to_f32().unwrap(), want, "b_zp {b_zp}");
    }
}

#[test]
fn dynamic_quantisation_fuses_into_the_integer_products_that_read_it() {
    use crate::onnx::write::GraphWriter;
    // x -> DynamicQuantizeLinear -> two MatMulIntegers (as Q, K and V
    // share one) -> Cast -> Mul by the scale: what quantize_dynamic
    // writes. With `keep`, the u8 tensor is a graph output too, so the
    // products cannot quantise for themselves.
    let (k, n) = (40, 33);
    let mut rng = crate::train::math::SplitMix(11);
    let b: Vec<u8> = (0..k * n).map(|_| (rng.next_f64() * 255.0) as u8).collect();
    let x: Vec<f32> = (0..3 * k)
        .map(|_| rng.next_f64() as f32 * 6.0 - 2.0)
        .collect();
    let build = |keep: bool| {
        let mut g = GraphWriter::new("dql");
        g.node(
            "DynamicQuantizeLinear",
            &["x"],
            &["q", "s", "z"],
            "dql",
            &[],
        );
        for (i, w) in ["b1", "b2"].into_iter().enumerate() {
            let (c, f, y) = (format!("c{i}"), format!("f{i}"), format!("y{i}"));
            g.node(
                "MatMulInteger",
                &["q", w, "z", ""],
                &[&c],
                &format!("mm{i}"),
                &[],
            );
            g.node("Cast", &[&c], &[&f], &format!("cast{i}"), &[("to", 1)]);
            g.node("Mul", &[&f, "s"], &[&y], &format!("mul{i}"), &[]);
            g.output(&y, &["3", &n.to_string()]);
        }
        g.raw_initializer("b1", &[k as u64, n as u64], 3, &b);
        g.raw_initializer("b2", &[k as u64, n as u64], 2, &b);
        g.input_of("x", &["3", &k.to_string()], 1);
        if keep {
            g.output_of("q", &["3", &k.to_string()], 2);
        }
        OnnxModel::load(&g.finish("weft-nn tests", 17)).unwrap()
    };
    let run = |model: &OnnxModel| {
        let t = Tensor::from_f32(vec![3, k], &x);
        let out = model.session().compute(&[("x".into(), t)]).unwrap();
        let y = |name: &str| {
            out.iter()
                .find(|(n, _)| n == name)
                .unwrap()
                .1
                .to_f32()
                .unwrap()
        };
        (y("y0"), y("y1"))
    };
    let (fused, plain) = (build(false), build(true));
    // The scale comes from the whole tensor: merging callers' rows would
    // make each one's answer depend on the others'.
    assert!(!fused.batchable() && !plain.batchable());
    let quantize = |m: &OnnxModel| {
        m.graph
            .nodes
            .iter()
            .filter(|n| n.op_type == "WeftMatMulInteger")
            .map(|n| (n.inputs[0].clone(), n.inputs.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        quantize(&fused),
        [("x".to_string(), 4), ("x".to_string(), 4)]
    );
    assert_eq!(fused.graph.nodes[0].outputs, ["", "s", "z"]);
    assert_eq!(
        quantize(&plain),
        [("q".to_string(), 3), ("q".to_string(), 3)]
    );
    let (y0, y1) = run(&fused);
    assert_eq!((y0.clone(), y1.clone()), run(&plain));
    // Against the spec, step by step, for the i8 weight.
    let hi = x.iter().fold(0.0f32, |m, &v| m.max(v));
    let lo = x.iter().fold(0.0f32, |m, &v| m.min(v));
    let scale = (hi - lo) / 255.0;
    let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
    let q: Vec<i64> = x
        .iter()
        .map(|&v| ((v / scale).round_ties_even() + zp).clamp(0.0, 255.0) as i64)
        .collect();
    let want: Vec<f32> = (0..3 * n)
        .map(|i| {
            let (r, j) = (i / n, i % n);
            let dot: i64 = (0..k)
                .map(|p| (q[r * k + p] - zp as i64) * i64::from(b[p * n + j] as i8))
                .sum();
            dot as f32 * scale
        })
        .collect();
    assert_eq!(y0, want);
    assert_ne!(y0, y1, "b read as i8 and as u8 differ");
}

#[test]
fn constant_weights_are_dequantised_once_at_load() {
    use crate::onnx::write::GraphWriter;
    // A quantised embedding table: DequantizeLinear of three initializers,
    // then Gather by the caller's ids.
    let table: [i8; 6] = [-128, -1, 0, 1, 2, 127];
    let build = |scale: &[f32]| {
        let mut g = GraphWriter::new("dq");
        g.node("DequantizeLinear", &["t", "s", "z"], &["table"], "dq", &[]);
        g.node("Gather", &["table", "ids"], &["y"], "gather", &[]);
        g.raw_initializer("t", &[3, 2], 3, &table.map(|v| v as u8));
        let s: Vec<u8> = scale.iter().flat_map(|v| v.to_le_bytes()).collect();
        g.raw_initializer("s", &[scale.len() as u64], 1, &s);
        g.raw_initializer("z", &[], 3, &[2]);
        g.input_of("ids", &["2"], 7);
        g.output("y", &["2", "2"]);
        OnnxModel::load(&g.finish("weft-nn tests", 21)).unwrap()
    };
    let ids = Tensor::new(
        vec![2],
        ElementType::I64,
        [2i64, 0].iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
    .unwrap();
    let model = build(&[0.5]);
    let ops: Vec<&str> = model
        .graph
        .nodes
        .iter()
        .map(|n| n.op_type.as_str())
        .collect();
    assert_eq!(ops, ["Gather"]);
    assert!(
        !model.graph.weights.contains_key("t"),
        "the integer table is dropped"
    );
    let out = model
        .session()
        .compute(&[("ids".into(), ids.clone())])
        .unwrap();
    assert_eq!(out[0].1.to_f32().unwrap(), [0.0, 62.5, -65.0, -1.5]);
    // A scale that fits nothing is left to fail when the node runs,
    // naming it, as it would have.
    let model = build(&[0.5, 1.0, 2.0, 4.0]);
    assert_eq!(model.graph.nodes.len(), 2);
    let err = model.session().compute(&[("ids".into(), ids)]).unwrap_err();
    assert!(err.message.contains("dq"), "{}", err.message);
    // Blocks of 2 along axis 1 of a [2, 4] table want a [2, 2] scale; a
    // [2, 1] one is an error when the node runs, not a panic at load.
    let mut g = GraphWriter::new("dq blocks");
    g.node(
        "DequantizeLinear",
        &["t", "s"],
        &["y"],
        "dq",
        &[("axis", 1), ("block_size", 2)],
    );
    g.raw_initializer("t", &[2, 4], 3, &[1, 2, 3, 4, 5, 6, 7, 8]);
    g.raw_initializer("s", &[2, 1], 1, &[0, 0, 0, 63, 0, 0, 128, 63]);
    g.output("y", &["2", "4"]);
    let model = OnnxModel::load(&g.finish("weft-nn tests", 21)).unwrap();
    let err = model.session().compute(&[]).unwrap_err();
    assert!(
        err.message.contains("dq") && err.message.contains("blocked scale [2, 1]"),
        "{}",
        err.message
    );
}

#[test]
fn a_zero_point_of_another_shape_than_its_scale_is_an_error_naming_it() {
    use crate::onnx::write::GraphWriter;
    // Two scales per axis 1 and one zero point: it used to index past the
    // zero point and panic.
    for op in ["QuantizeLinear", "DequantizeLinear"] {
        let mut g = GraphWriter::new("zp");
        g.node(op, &["x", "s", "z"], &["y"], "q", &[("axis", 1)]);
        g.raw_initializer("s", &[2], 1, &[0, 0, 0, 63, 0, 0, 128, 63]);
        g.raw_initializer("z", &[1], 2, &[3]);
        let elem = if op == "QuantizeLinear" { 1 } else { 2 };
        g.input_of("x", &["1", "2"], elem);
        g.output_of("y", &["1", "2"], 3 - elem);
        let model = OnnxModel::load(&g.finish("weft-nn tests", 21)).unwrap();
        let x = match elem {
            1 => Tensor::from_f32(vec![1, 2], &[1.0, 2.0]),
            _ => Tensor::new(vec![1, 2], ElementType::U8, vec![4, 5]).unwrap(),
        };
        let err = model.session().compute(&[("x".into(), x)]).unwrap_err();
        assert!(
            err.message
                .contains("zero point's shape [1] is not the scale's [2]"),
            "{op}: {}",
            err.message
        );
    }
}

#[test]
fn training_mode_dropout_keeps_one_minus_ratio_and_scales_what_it_keeps() {
    use crate::onnx::write::GraphWriter;
    let build = |training: bool| {
        let mut g = GraphWriter::new("dropout");
        g.node(
            "Dropout",
            &["x", "ratio", "training"],
            &["y"],
            "drop",
            &[("seed", 5)],
        );
        g.initializer("ratio", &[], &[0.25]);
        g.raw_initializer("training", &[], 9, &[u8::from(training)]);
        g.input("x", &["n"]);
        g.output("y", &["n"]);
        g.finish("weft-nn tests", 13)
    };
    let x = Tensor::from_f32(vec![1000], &[1.0; 1000]);
    let run = |model: &OnnxModel| {
        let out = model.session().compute(&[("x".into(), x.clone())]).unwrap();
        out[0].1.to_f32().unwrap()
    };
    let training = OnnxModel::load(&build(true)).unwrap();
    let y = run(&training);
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    // 750 expected; 7 standard deviations either side.
    assert!((650..=850).contains(&kept), "kept {kept} of 1000");
    assert!(y.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75), "{y:?}");
    assert_eq!(run(&training), y, "the seed fixes the mask");
    let inference = OnnxModel::load(&build(false)).unwrap();
    assert_eq!(run(&inference), vec![1.0; 1000]);
}

mod limits;
mod values;
