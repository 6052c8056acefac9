use std::path::PathBuf;

use super::*;
use crate::onnx::exec::OnnxModel;
use crate::{Model, Tensor};

fn minilm() -> Vec<u8> {
    // Where `cargo xtask models` puts it (`WEFT_MODELS` overrides).
    let dir = std::env::var_os("WEFT_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/models"));
    let path = dir.join("minilm/model.onnx");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask models`", path.display()))
}

/// A model's parsed protobuf and its initializers by name, as `fuse`
/// takes them.
fn parsed(
    bytes: &[u8],
) -> (
    crate::onnx::proto::ModelProto<'_>,
    HashMap<String, Arc<Value>>,
) {
    let mut model = crate::onnx::proto::model(bytes).unwrap();
    let mut weights = HashMap::new();
    for t in std::mem::take(&mut model.graph.initializers) {
        let (name, v) = crate::onnx::proto::tensor(t).unwrap();
        weights.insert(name, Arc::new(v));
    }
    (model, weights)
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// MiniLM's 13 layer norms and 6 GELUs fuse, and the fused graph
/// computes what the graph as written does, and what onnxruntime does.
#[test]
fn minilm_fuses_and_agrees_with_the_graph_as_written() {
    let bytes = minilm();
    let (model, weights) = parsed(&bytes);
    let outputs: Vec<String> = model.graph.outputs.iter().map(|o| o.name.clone()).collect();
    let before = model.graph.nodes.len();
    let fused = fuse(model.graph.nodes, &weights, &outputs, true);
    let count = |op: &str| fused.iter().filter(|n| n.op_type == op).count();
    assert_eq!(
        (
            count("WeftLayerNorm"),
            count("WeftGelu"),
            count("WeftMatMulBias")
        ),
        (13, 0, 36)
    );
    assert_eq!(count("WeftAttention"), 6);
    // Each layer's two residual `Add`s and its GELU fold into the
    // products before them.
    let products = fused.iter().filter(|n| n.op_type == "WeftMatMulBias");
    let residual = products
        .clone()
        .filter(|n| n.inputs.get(3).is_some_and(|r| !r.is_empty()));
    let gelu = products.filter(|n| n.inputs.len() == 7);
    assert_eq!((residual.count(), gelu.count()), (12, 6));
    assert_eq!(fused.len(), before - 13 * 8 - 6 * 5 - 36 - 6 * 11 - 12);

    let plain = OnnxModel::load_with(&bytes, None, false).unwrap();
    let quick = OnnxModel::load_with(&bytes, None, true).unwrap();
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm_reference.json"),
    )
    .unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    for s in reference["sentences"].as_array().unwrap().iter().take(3) {
        let input = ids(&s["input_ids"]);
        let shape = vec![1, input.len()];
        let inputs = [
            ("input_ids".into(), Tensor::from_i64(shape.clone(), &input)),
            (
                "attention_mask".into(),
                Tensor::from_i64(shape.clone(), &ids(&s["attention_mask"])),
            ),
            (
                "token_type_ids".into(),
                Tensor::from_i64(shape, &ids(&s["token_type_ids"])),
            ),
        ];
        let want = plain.session().compute(&inputs).unwrap()[0]
            .1
            .to_f32()
            .unwrap();
        let got = quick.session().compute(&inputs).unwrap()[0]
            .1
            .to_f32()
            .unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "fused vs as written: {worst}");
        for (g, r) in got.iter().zip(s["hidden_0_0_first8"].as_array().unwrap()) {
            let r = r.as_f64().unwrap() as f32;
            assert!(
                (g - r).abs() <= 1e-4 * r.abs().max(1.0),
                "{g} vs onnxruntime {r}"
            );
        }
    }
}

/// A product, its bias, a residual `Add` and a GELU become one node
/// that computes what the eight as written do; a residual
/// that broadcasts is added after the product, as the `Add` would.
#[test]
fn a_residual_and_a_gelu_fold_into_the_product_before_them() {
    use crate::onnx::write::GraphWriter;
    let (k, n) = (64, 48);
    let build = |residual: &[&str]| {
        let mut g = GraphWriter::new("epilogue");
        g.node("MatMul", &["x", "w"], &["p"], "mm", &[]);
        g.node("Add", &["p", "b"], &["pb"], "bias", &[]);
        g.node("Add", &["r", "pb"], &["s"], "residual", &[]);
        g.node("Div", &["s", "root2"], &["d"], "div", &[]);
        g.node("Erf", &["d"], &["e"], "erf", &[]);
        g.node("Add", &["e", "one"], &["a"], "add", &[]);
        g.node("Mul", &["s", "a"], &["m"], "mul", &[]);
        g.node("Mul", &["m", "half"], &["y"], "half", &[]);
        g.initializer(
            "w",
            &[k as u64, n as u64],
            &crate::kernels::tests::data(k * n, 3),
        );
        g.initializer("b", &[n as u64], &crate::kernels::tests::data(n, 4));
        g.initializer("root2", &[], &[std::f32::consts::SQRT_2]);
        g.initializer("one", &[], &[1.0]);
        g.initializer("half", &[], &[0.5]);
        g.input("x", &["b", "s", "k"]);
        g.input("r", residual);
        g.output("y", &[]);
        g.finish("weft-nn tests", 17)
    };
    let x = Tensor::from_f32(vec![2, 40, k], &crate::kernels::tests::data(2 * 40 * k, 1));
    for (dims, shape) in [
        (vec!["b", "s", "n"], vec![2, 40, n]),
        (vec!["one", "n"], vec![1, n]),
    ] {
        let bytes = build(&dims);
        let len = shape.iter().product();
        let r = Tensor::from_f32(shape, &crate::kernels::tests::data(len, 2));
        let run = |fuse: bool| {
            let m = OnnxModel::load_with(&bytes, None, fuse).unwrap();
            let inputs = [("x".into(), x.clone()), ("r".into(), r.clone())];
            let out = m.session().compute(&inputs).unwrap();
            assert_eq!(out[0].1.shape, [2, 40, n]);
            out[0].1.to_f32().unwrap()
        };
        // The fused product starts from the bias rather than adding
        // it after, so the sums round differently, a little.
        let (fused, plain) = (run(true), run(false));
        let worst = fused
            .iter()
            .zip(&plain)
            .map(|(f, p)| (f - p).abs() / p.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-5,
            "residual {dims:?}: fused vs as written {worst}"
        );
        let (model, weights) = parsed(&bytes);
        let fused = fuse(model.graph.nodes, &weights, &["y".into()], true);
        assert_eq!(fused.len(), 1, "{fused:?}");
        assert_eq!(fused[0].inputs[..4], ["x", "w", "b", "r"]);
        // A GPU model keeps its products, so nothing folds into them.
        let model = crate::onnx::proto::model(&bytes).unwrap();
        assert_eq!(
            fuse(model.graph.nodes, &weights, &["y".into()], false).len(),
            4
        );
    }
}

/// The fold declines a product read elsewhere, a product added to
/// itself and a product already carrying a GELU; it takes the product
/// as either input of the `Add`, and a residual of higher rank (the
/// output then has the residual's shape).
#[test]
fn a_product_read_twice_or_already_finished_keeps_its_readers() {
    use crate::onnx::write::GraphWriter;
    let (k, n) = (16, 8);
    let graph = |tail: &[(&str, &[&str], &str)], outputs: &[&str], r: &[&str]| {
        let mut g = GraphWriter::new("fold");
        g.node("MatMul", &["x", "w"], &["p"], "mm", &[]);
        g.node("Add", &["p", "b"], &["pb"], "bias", &[]);
        for (i, (op, ins, out)) in tail.iter().enumerate() {
            g.node(op, ins, &[out], &format!("n{i}"), &[]);
        }
        g.initializer(
            "w",
            &[k as u64, n as u64],
            &crate::kernels::tests::data(k * n, 3),
        );
        g.initializer("b", &[n as u64], &crate::kernels::tests::data(n, 4));
        g.initializer("root2", &[], &[std::f32::consts::SQRT_2]);
        g.initializer("one", &[], &[1.0]);
        g.initializer("half", &[], &[0.5]);
        g.input("x", &["s", "k"]);
        g.input("r", r);
        for o in outputs {
            g.output(o, &[]);
        }
        g.finish("weft-nn tests", 17)
    };
    let gelu: [(&str, &[&str], &str); 5] = [
        ("Div", &["pb", "root2"], "d"),
        ("Erf", &["d"], "e"),
        ("Add", &["e", "one"], "a"),
        ("Mul", &["pb", "a"], "m"),
        ("Mul", &["m", "half"], "g"),
    ];
    let then_add = [gelu.as_slice(), &[("Add", &["g", "r"], "y")]].concat();
    let count = |bytes: &[u8], outputs: &[&str]| {
        let (model, weights) = parsed(bytes);
        let outputs: Vec<String> = outputs.iter().map(|o| o.to_string()).collect();
        fuse(model.graph.nodes, &weights, &outputs, true).len()
    };
    let sn: &[&str] = &["s", "n"];
    for (tail, outputs, nodes) in [
        (vec![("Add", &["pb", "r"][..], "y")], vec!["y", "pb"], 2),
        (vec![("Add", &["pb", "pb"][..], "y")], vec!["y"], 2),
        (then_add.clone(), vec!["y"], 2),
        (vec![("Add", &["pb", "r"][..], "y")], vec!["y"], 1),
    ] {
        let bytes = graph(&tail, &outputs, sn);
        assert_eq!(
            count(&bytes, &outputs),
            nodes,
            "{tail:?} with outputs {outputs:?}"
        );
    }
    // A residual of higher rank, `[2, s, n]` added to an `[s, n]`
    // product, after it, as the `Add` would; and the GELU folded before an
    // `Add` it keeps: both compute what the graph as written does.
    let x = Tensor::from_f32(vec![40, k], &crate::kernels::tests::data(40 * k, 1));
    let higher = graph(&[("Add", &["pb", "r"], "y")], &["y"], &["two", "s", "n"]);
    assert_eq!(count(&higher, &["y"]), 1);
    for (bytes, r) in [
        (higher, vec![2, 40, n]),
        (graph(&then_add, &["y"], sn), vec![40, n]),
    ] {
        let len = r.iter().product();
        let r = Tensor::from_f32(r, &crate::kernels::tests::data(len, 2));
        let run = |fuse: bool| {
            let m = OnnxModel::load_with(&bytes, None, fuse).unwrap();
            let inputs = [("x".into(), x.clone()), ("r".into(), r.clone())];
            let out = m.session().compute(&inputs).unwrap();
            assert_eq!(out[0].1.shape, r.shape);
            out[0].1.to_f32().unwrap()
        };
        let (fused, plain) = (run(true), run(false));
        for (f, p) in fused.iter().zip(&plain) {
            assert!((f - p).abs() <= 1e-5 * p.abs().max(1.0), "{f} vs {p}");
        }
    }
}

/// A GELU whose intermediate is also a graph output stays as written.
#[test]
fn patterns_whose_insides_are_read_elsewhere_stay_unfused() {
    use crate::onnx::write::GraphWriter;
    let mut g = GraphWriter::new("gelu");
    g.node("Div", &["x", "root2"], &["d"], "div", &[]);
    g.node("Erf", &["d"], &["e"], "erf", &[]);
    g.node("Add", &["e", "one"], &["a"], "add", &[]);
    g.node("Mul", &["x", "a"], &["m"], "mul", &[]);
    g.node("Mul", &["m", "half"], &["y"], "half", &[]);
    g.initializer("root2", &[], &[std::f32::consts::SQRT_2]);
    g.initializer("one", &[], &[1.0]);
    g.initializer("half", &[], &[0.5]);
    g.input("x", &["n"]);
    g.output("y", &[]);
    let alone = g.finish("weft-nn tests", 17);
    let x = Tensor::from_f32(vec![4], &[-2.0, -0.5, 0.25, 3.0]);
    let run = |bytes: &[u8], fuse: bool| {
        let m = OnnxModel::load_with(bytes, None, fuse).unwrap();
        let out = m.session().compute(&[("x".into(), x.clone())]).unwrap();
        out[0].1.to_f32().unwrap()
    };
    // Fused: the same bits as the five nodes.
    assert_eq!(run(&alone, true), run(&alone, false));
    let (model, weights) = parsed(&alone);
    let nodes = model.graph.nodes;
    assert_eq!(fuse(nodes.clone(), &weights, &["y".into()], true).len(), 1);
    // `e` is an output too: nothing fuses.
    assert_eq!(
        fuse(nodes, &weights, &["y".into(), "e".into()], true).len(),
        5
    );
}

/// An fp16 or bf16 export (what `onnxconverter-common` makes of a
/// transformer) fuses as an f32 one does: the fused nodes read halves as
/// f32 and round their results to the type, within a step or two of the
/// nodes as written (each of which rounds), loaded for the CPU or a GPU
/// (where the half weight is resident for the product, the rest of the
/// graph left to the CPU: the device path holds f32 values only).
/// (Fused nodes once refused every type but f32, so such a model failed.)
#[test]
fn half_models_fuse_and_agree_with_the_graph_as_written() {
    use crate::onnx::value::round_bf16;
    use crate::onnx::write::GraphWriter;
    use crate::quant::round_f16;
    let (k, n) = (32, 24);
    // ONNX's FLOAT16 and BFLOAT16, with each one's bits and rounding.
    type Half = (u64, fn(f32) -> u16, fn(f32) -> f32);
    let f16: Half = (10, crate::quant::f32_to_f16, round_f16);
    let bf16: Half = (16, |x| (round_bf16(x).to_bits() >> 16) as u16, round_bf16);
    for (elem, bits, round) in [f16, bf16] {
        let raw =
            |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|&x| bits(x).to_le_bytes()).collect() };
        let mut g = GraphWriter::new("half");
        g.node("MatMul", &["x", "w"], &["p"], "mm", &[]);
        g.node("Add", &["p", "b"], &["pb"], "bias", &[]);
        g.node("Div", &["pb", "root2"], &["d"], "div", &[]);
        g.node("Erf", &["d"], &["e"], "erf", &[]);
        g.node("Add", &["e", "one"], &["a"], "add", &[]);
        g.node("Mul", &["pb", "a"], &["m"], "mul", &[]);
        g.node("Mul", &["m", "half"], &["y"], "half", &[]);
        let w = crate::kernels::tests::data(k * n, 3);
        g.raw_initializer("w", &[k as u64, n as u64], elem, &raw(&w));
        g.raw_initializer(
            "b",
            &[n as u64],
            elem,
            &raw(&crate::kernels::tests::data(n, 4)),
        );
        g.raw_initializer("root2", &[], elem, &raw(&[std::f32::consts::SQRT_2]));
        g.raw_initializer("one", &[], elem, &raw(&[1.0]));
        g.raw_initializer("half", &[], elem, &raw(&[0.5]));
        g.input_of("x", &["s", "k"], elem);
        g.output_of("y", &["s", "n"], elem);
        let bytes = g.finish("weft-nn tests", 17);
        let (model, weights) = parsed(&bytes);
        let fused = fuse(model.graph.nodes, &weights, &["y".into()], true);
        assert_eq!(fused.len(), 1, "{fused:?}");
        assert_eq!(fused[0].op_type, "WeftMatMulBias");
        let x: Vec<f32> = crate::kernels::tests::data(5 * k, 1)
            .into_iter()
            .map(round)
            .collect();
        let run = |fuse: bool, gpu: bool| {
            let device = gpu.then(|| Ok(crate::gpu::tests::gpu()));
            let m = OnnxModel::load_with(&bytes, device, fuse).unwrap();
            // On a GPU the half weight is resident (as f32), for the product.
            assert_eq!(m.device_bytes() >= (k * n * 4) as u64, gpu);
            let inputs = [("x".into(), Tensor::from_f32(vec![5, k], &x))];
            let out = m.session().compute(&inputs).unwrap();
            assert_eq!(out[0].1.shape, [5, n]);
            out[0].1.to_f32().unwrap()
        };
        let plain = run(false, false);
        for (fuse, gpu) in [(true, false), (true, true)] {
            let got = run(fuse, gpu);
            assert!(
                got.iter().all(|&v| v == round(v)),
                "not rounded to the type"
            );
            let worst = got
                .iter()
                .zip(&plain)
                .map(|(f, p)| (f - p).abs() / p.abs().max(1.0))
                .fold(0.0f32, f32::max);
            let step = if elem == 10 { 1e-3 } else { 8e-3 };
            assert!(worst <= 2.0 * step, "type {elem}, gpu {gpu}: {worst}");
        }
    }
}
