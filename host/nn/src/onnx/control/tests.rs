//! Tests of `onnx/control.rs`: If, Loop and Scan through whole models.

use crate::onnx::exec::OnnxModel;
use crate::onnx::write::GraphWriter;
use crate::{ElementType, Model, Tensor};

fn run(
    model: &OnnxModel,
    x: &[f32],
    flag: Option<bool>,
) -> Result<Vec<(String, Tensor)>, crate::NnError> {
    let mut inputs = vec![("x".to_string(), Tensor::from_f32(vec![2, 3], x))];
    if let Some(c) = flag {
        inputs.push((
            "c".into(),
            Tensor::new(vec![], ElementType::U8, vec![u8::from(c)]).unwrap(),
        ));
    }
    model.session().compute(&inputs)
}

#[test]
fn if_branches_read_outer_values_and_weights_and_nest() {
    // y = c ? (c ? relu(x · w) : -(x · w)) : x + x, where the inner If
    // reads `m`, made in the branch around it, and the outer branch
    // reads the input `x` and the weight `w` of the main graph.
    let mut inner_then = GraphWriter::new("inner then");
    inner_then.node("Relu", &["m"], &["r"], "relu", &[]);
    inner_then.output("r", &[]);
    let mut inner_else = GraphWriter::new("inner else");
    inner_else.node("Neg", &["m"], &["n"], "neg", &[]);
    inner_else.output("n", &[]);
    let mut then = GraphWriter::new("then");
    then.node("MatMul", &["x", "w"], &["m"], "mm", &[]);
    then.node_graphs(
        ("If", &["c"], &["t"], "inner"),
        (&[], &[]),
        vec![("then_branch", inner_then), ("else_branch", inner_else)],
    );
    then.output("t", &[]);
    let mut other = GraphWriter::new("else");
    other.node("Add", &["x", "x"], &["e"], "add", &[]);
    other.output("e", &[]);
    let mut g = GraphWriter::new("if");
    g.node_graphs(
        ("If", &["c"], &["y"], "outer"),
        (&[], &[]),
        vec![("then_branch", then), ("else_branch", other)],
    );
    g.initializer("w", &[3, 2], &[1.0, -1.0, 2.0, -2.0, 3.0, -3.0]);
    g.input("x", &["2", "3"]);
    g.input_of("c", &[], 9);
    g.output("y", &[]);
    let model = OnnxModel::load(&g.finish("weft-nn tests", 17)).unwrap();
    let x = [1.0, 2.0, 3.0, -1.0, -2.0, -3.0];
    let y = |flag| run(&model, &x, Some(flag)).unwrap()[0].1.to_f32().unwrap();
    // x · w = [[14, -14], [-14, 14]], relu'd.
    assert_eq!(y(true), [14.0, 0.0, 0.0, 14.0]);
    assert_eq!(y(false), [2.0, 4.0, 6.0, -2.0, -4.0, -6.0]);
    // The branch reads `w` as its own weight, packed for the kernel.
    let then = &model.graph.subgraphs[&0]
        .iter()
        .find(|(n, _)| n == "then_branch")
        .unwrap()
        .1;
    assert!(then.packed.contains_key("w"));
    assert_eq!(
        then.inputs
            .iter()
            .map(|(i, _)| i.name.as_str())
            .collect::<Vec<_>>(),
        ["x", "c"]
    );
}

#[test]
fn loops_carry_values_stack_scans_and_stop_runaways() {
    // Four times: v = v + v, each v also scanned out.
    let build = |trips: bool| {
        let mut body = GraphWriter::new("body");
        body.node("Add", &["v", "v"], &["v2"], "add", &[]);
        body.node("Identity", &["cond"], &["cond_out"], "keep", &[]);
        body.node("Identity", &["v2"], &["s"], "scan", &[]);
        body.input_of("i", &[], 7);
        body.input_of("cond", &[], 9);
        body.input("v", &["2", "3"]);
        body.output_of("cond_out", &[], 9);
        body.output("v2", &["2", "3"]);
        body.output("s", &["2", "3"]);
        let mut g = GraphWriter::new("loop");
        let m = if trips { "m" } else { "" };
        g.node_graphs(
            ("Loop", &[m, "", "x"], &["v_final", "scanned"], "loop"),
            (&[], &[]),
            vec![("body", body)],
        );
        g.initializer_i64("m", &[], &[4]);
        g.input("x", &["2", "3"]);
        g.output("v_final", &["2", "3"]);
        g.output("scanned", &["4", "2", "3"]);
        g.finish("weft-nn tests", 17)
    };
    let model = OnnxModel::load(&build(true)).unwrap();
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let out = run(&model, &x, None).unwrap();
    assert_eq!(out[0].1.to_f32().unwrap(), x.map(|v| v * 16.0));
    assert_eq!(out[1].1.shape, [4, 2, 3]);
    let scanned = out[1].1.to_f32().unwrap();
    assert_eq!(&scanned[..6], x.map(|v| v * 2.0));
    assert_eq!(&scanned[18..], x.map(|v| v * 16.0));
    // No trip count and a condition that stays true: stopped, said so.
    let model = OnnxModel::load(&build(false)).unwrap();
    let err = run(&model, &x, None).unwrap_err();
    assert!(
        err.message
            .contains("Loop ran 1000 iterations without stopping"),
        "{}",
        err.message
    );
}

#[test]
fn loops_and_branches_pass_sequences_in_and_out() {
    // A Loop appending x · i to a list three times (as PyTorch exports
    // a list built in a loop), the list stacked at the end; an If
    // whose branches give lists of different lengths.
    let mut body = GraphWriter::new("body");
    body.node("Cast", &["i"], &["i_f"], "cast", &[("to", 1)]);
    body.node("Mul", &["x", "i_f"], &["row"], "mul", &[]);
    body.node(
        "SequenceInsert",
        &["seq_in", "row"],
        &["seq_out"],
        "append",
        &[],
    );
    body.node("Identity", &["cond"], &["cond_out"], "keep", &[]);
    body.input_of("i", &[], 7);
    body.input_of("cond", &[], 9);
    body.sequence(11, "seq_in");
    body.output_of("cond_out", &[], 9);
    body.sequence(12, "seq_out");
    let branch = |copies: usize| {
        let mut b = GraphWriter::new("branch");
        b.node(
            "SequenceConstruct",
            &vec!["x"; copies],
            &["list"],
            "make",
            &[],
        );
        b.sequence(12, "list");
        b
    };
    let mut g = GraphWriter::new("lists");
    g.node("SequenceEmpty", &[], &["empty"], "empty", &[]);
    g.node_graphs(
        ("Loop", &["m", "", "empty"], &["rows"], "loop"),
        (&[], &[]),
        vec![("body", body)],
    );
    g.node_ints(
        "ConcatFromSequence",
        &["rows"],
        &["y"],
        "stack",
        &[("axis", 0), ("new_axis", 1)],
        &[],
    );
    g.node_graphs(
        ("If", &["c"], &["picked"], "pick"),
        (&[], &[]),
        vec![("then_branch", branch(1)), ("else_branch", branch(3))],
    );
    g.node("SequenceLength", &["picked"], &["len"], "len", &[]);
    g.initializer_i64("m", &[], &[3]);
    g.input("x", &["2"]);
    g.input_of("c", &[], 9);
    g.output("y", &["3", "2"]);
    g.output_of("len", &[], 7);
    let bytes = g.finish("weft-nn tests", 17);
    for gpu in [false, true] {
        let device = gpu.then(|| Ok(crate::gpu::tests::gpu()));
        let model = OnnxModel::load_for(&bytes, device).unwrap();
        let call = |c: bool| {
            let feed = [
                ("x".to_string(), Tensor::from_f32(vec![2], &[1.0, 2.0])),
                (
                    "c".to_string(),
                    Tensor::new(vec![], ElementType::U8, vec![u8::from(c)]).unwrap(),
                ),
            ];
            model.session().compute(&feed).unwrap()
        };
        let out = call(true);
        assert_eq!(out[0].1.shape, [3, 2]);
        assert_eq!(out[0].1.to_f32().unwrap(), [0.0, 0.0, 1.0, 2.0, 2.0, 4.0]);
        assert_eq!(out[1].1.to_i64().unwrap(), [1]);
        assert_eq!(call(false)[1].1.to_i64().unwrap(), [3]);
    }

    // The model's own inputs and outputs stay tensors.
    let mut g = GraphWriter::new("out");
    g.node("SequenceConstruct", &["x"], &["list"], "make", &[]);
    g.input("x", &["2"]);
    g.sequence(12, "list");
    let err = OnnxModel::load(&g.finish("weft-nn tests", 17)).unwrap_err();
    assert!(
        err.message.contains("`list` is not a tensor"),
        "{}",
        err.message
    );
}

#[test]
fn scan_slices_along_its_axes_in_its_directions() {
    // A running sum over x's rows taken last to first; the sums are
    // stacked along axis 1.
    let mut body = GraphWriter::new("body");
    body.node("Add", &["s", "row"], &["s2"], "add", &[]);
    body.node("Identity", &["s2"], &["out"], "out", &[]);
    body.input("s", &["2"]);
    body.input("row", &["2"]);
    body.output("s2", &["2"]);
    body.output("out", &["2"]);
    let mut g = GraphWriter::new("scan");
    g.node_graphs(
        ("Scan", &["s0", "x"], &["total", "sums"], "scan"),
        (
            &[("num_scan_inputs", 1)],
            &[("scan_input_directions", &[1]), ("scan_output_axes", &[1])],
        ),
        vec![("body", body)],
    );
    g.initializer("s0", &[2], &[0.0, 0.0]);
    g.input("x", &["3", "2"]);
    g.output("total", &["2"]);
    g.output("sums", &["2", "3"]);
    let model = OnnxModel::load(&g.finish("weft-nn tests", 17)).unwrap();
    let x = Tensor::from_f32(vec![3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let out = model.session().compute(&[("x".into(), x)]).unwrap();
    assert_eq!(out[0].1.to_f32().unwrap(), [9.0, 12.0]);
    assert_eq!(out[1].1.shape, [2, 3]);
    assert_eq!(out[1].1.to_f32().unwrap(), [5.0, 8.0, 9.0, 6.0, 10.0, 12.0]);
}

#[test]
fn weights_both_branches_read_are_packed_once_and_counted_once() {
    let branch = |neg: bool| {
        let mut b = GraphWriter::new("branch");
        b.node("MatMul", &["x", "w"], &["m"], "mm", &[]);
        if neg {
            b.node("Neg", &["m"], &["o"], "neg", &[]);
        } else {
            b.node("Identity", &["m"], &["o"], "id", &[]);
        }
        b.output("o", &[]);
        b
    };
    let mut g = GraphWriter::new("if");
    g.node_graphs(
        ("If", &["c"], &["y"], "if"),
        (&[], &[]),
        vec![
            ("then_branch", branch(false)),
            ("else_branch", branch(true)),
        ],
    );
    g.initializer("w", &[3, 2], &[1.0; 6]);
    g.input("x", &["2", "3"]);
    g.input_of("c", &[], 9);
    g.output("y", &[]);
    let model = OnnxModel::load(&g.finish("weft-nn tests", 17)).unwrap();
    let subs = &model.graph.subgraphs[&0];
    let (then, other) = (&subs[0].1, &subs[1].1);
    assert!(std::sync::Arc::ptr_eq(
        &then.packed["w"],
        &other.packed["w"]
    ));
    assert!(
        !model.graph.weights.contains_key("w"),
        "only the branches read w"
    );
    assert_eq!(model.weight_bytes(), then.packed["w"].bytes() as u64);
    // Each caller's condition is its own: no batching across callers.
    assert!(!model.batchable());
    let y = |c| {
        run(&model, &[1.0; 6], Some(c)).unwrap()[0]
            .1
            .to_f32()
            .unwrap()
    };
    assert_eq!((y(true), y(false)), (vec![3.0; 4], vec![-3.0; 4]));
}

#[test]
fn malformed_control_flow_is_refused_saying_why() {
    // Subgraphs nested past 32 levels: refused while decoding.
    let mut inner = GraphWriter::new("leaf");
    inner.node("Identity", &["x"], &["y"], "id", &[]);
    inner.output("y", &[]);
    for depth in 0..40 {
        let mut g = GraphWriter::new(&format!("level {depth}"));
        let mut other = GraphWriter::new("other");
        other.node("Identity", &["x"], &["y"], "id", &[]);
        other.output("y", &[]);
        g.node_graphs(
            ("If", &["c"], &["y"], "if"),
            (&[], &[]),
            vec![("then_branch", inner), ("else_branch", other)],
        );
        g.output("y", &[]);
        inner = g;
    }
    inner.input("x", &["2", "3"]);
    inner.input_of("c", &[], 9);
    let err = OnnxModel::load(&inner.finish("weft-nn tests", 17)).unwrap_err();
    assert!(
        err.message.contains("nest more than 32 deep"),
        "{}",
        err.message
    );
    // A graph attribute on an operator that takes none.
    let mut body = GraphWriter::new("body");
    body.node("Identity", &["x"], &["y"], "id", &[]);
    body.output("y", &[]);
    let mut g = GraphWriter::new("relu");
    g.node_graphs(
        ("Relu", &["x"], &["y"], "relu"),
        (&[], &[]),
        vec![("body", body)],
    );
    g.input("x", &["2", "3"]);
    g.output("y", &[]);
    let err = OnnxModel::load(&g.finish("weft-nn tests", 17)).unwrap_err();
    assert!(
        err.message.contains("only If, Loop and Scan take one"),
        "{}",
        err.message
    );
    // A Loop body without the iteration number and condition inputs.
    let mut body = GraphWriter::new("body");
    body.node("Add", &["v", "v"], &["v2"], "add", &[]);
    body.node("Identity", &["v2"], &["c"], "c", &[]);
    body.input("v", &["2", "3"]);
    body.output("c", &[]);
    body.output("v2", &["2", "3"]);
    let mut g = GraphWriter::new("loop");
    g.node_graphs(
        ("Loop", &["m", "", "x"], &["y"], "loop"),
        (&[], &[]),
        vec![("body", body)],
    );
    g.initializer_i64("m", &[], &[2]);
    g.input("x", &["2", "3"]);
    g.output("y", &["2", "3"]);
    let model = OnnxModel::load(&g.finish("weft-nn tests", 17)).unwrap();
    let err = run(&model, &[1.0; 6], None).unwrap_err();
    assert!(
        err.message.contains("Loop's body takes 1 inputs"),
        "{}",
        err.message
    );
}

#[test]
fn an_int8_weight_both_branches_read_is_widened_and_packed_once() {
    let branch = || {
        let mut b = GraphWriter::new("branch");
        b.node("MatMulInteger", &["a", "b"], &["c"], "mmi", &[]);
        b.node("Cast", &["c"], &["o"], "cast", &[("to", 1)]);
        b.output("o", &[]);
        b
    };
    let mut g = GraphWriter::new("if");
    g.node_graphs(
        ("If", &["c"], &["y"], "if"),
        (&[], &[]),
        vec![("then_branch", branch()), ("else_branch", branch())],
    );
    g.raw_initializer("b", &[3, 2], 3, &[1, 2, 3, 4, 5, 6]);
    g.input_of("a", &["2", "3"], 2);
    g.input_of("c", &[], 9);
    g.output("y", &[]);
    let model = OnnxModel::load(&g.finish("weft-nn tests", 17)).unwrap();
    let subs = &model.graph.subgraphs[&0];
    let (then, other) = (&subs[0].1, &subs[1].1);
    let key = "weft:widened:b:";
    assert!(std::sync::Arc::ptr_eq(
        &then.packed[key],
        &other.packed[key]
    ));
    assert_eq!(model.weight_bytes(), then.packed[key].bytes() as u64);
}
