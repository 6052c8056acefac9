//! Values beyond f32 tensors through a whole model: narrow element
//! types, sequences and optionals, random draws.

use crate::onnx::exec::OnnxModel;
use crate::{ElementType, Model, Tensor};

#[test]
fn narrow_types_are_read_packed_fed_rounded_and_cast_with_their_modes() {
    use crate::onnx::write::GraphWriter;
    // An int4 weight of three elements packed in two bytes (low nibble
    // first), dequantised; a float8 E4M3FN input given as f32 (rounded to
    // the type on the way in) and cast back.
    let mut g = GraphWriter::new("narrow");
    g.raw_initializer("w", &[3], 22, &[0x8f, 0x07]);
    g.initializer("s", &[], &[0.5]);
    g.node("DequantizeLinear", &["w", "s"], &["wf"], "dq", &[]);
    g.node("Cast", &["x"], &["xf"], "up", &[("to", 1)]);
    g.input_of("x", &["2"], 17);
    g.output("wf", &["3"]);
    g.output("xf", &["2"]);
    let model = OnnxModel::load(&g.finish("weft-nn tests", 21)).unwrap();
    let x = Tensor::from_f32(vec![2], &[0.478_925_47, 1e6]);
    let out = model.session().compute(&[("x".into(), x)]).unwrap();
    assert_eq!(out[0].1.to_f32().unwrap(), [-0.5, -4.0, 3.5]);
    assert_eq!(out[1].1.to_f32().unwrap(), [0.46875, 448.0]);

    // Cast's modes: no saturation gives NaN past E4M3FN's range; an E8M0
    // round_mode must be one the spec names.
    let cast = |attrs: &[(&str, i64)], mode: &str| {
        let mut g = GraphWriter::new("cast");
        g.node_strings(
            "Cast",
            &["x"],
            &["y"],
            "c",
            (attrs, &[]),
            &[("round_mode", mode)],
        );
        g.input("x", &["1"]);
        g.output_of("y", &["1"], 1);
        let model = OnnxModel::load(&g.finish("weft-nn tests", 25)).unwrap();
        let x = Tensor::from_f32(vec![1], &[1000.0]);
        model
            .session()
            .compute(&[("x".into(), x)])
            .map(|out| out[0].1.to_f32().unwrap()[0])
    };
    assert_eq!(cast(&[("to", 17)], "up").unwrap(), 448.0);
    assert!(cast(&[("to", 17), ("saturate", 0)], "up").unwrap().is_nan());
    assert_eq!(cast(&[("to", 24)], "down").unwrap(), 512.0);
    assert_eq!(cast(&[("to", 24)], "up").unwrap(), 1024.0);
    let err = cast(&[("to", 24)], "sideways").unwrap_err();
    assert!(
        err.message.contains("round_mode `sideways`"),
        "{}",
        err.message
    );
}

#[test]
fn sequences_and_optionals_flow_inside_a_graph_and_misuse_is_named() {
    use crate::onnx::write::GraphWriter;
    // x [4, 2] split into rows, row `at` taken back out; the rows stacked
    // again along a new axis 1; and `at` checked present by
    // OptionalHasElement.
    let build = |tensor_op: bool| {
        let mut g = GraphWriter::new("seq");
        g.node(
            "SplitToSequence",
            &["x"],
            &["rows"],
            "split",
            &[("keepdims", 0)],
        );
        g.node("SequenceAt", &["rows", "at"], &["row"], "at", &[]);
        g.node(
            "ConcatFromSequence",
            &["rows"],
            &["cols"],
            "stack",
            &[("axis", 1), ("new_axis", 1)],
        );
        g.node("OptionalHasElement", &["at"], &["has"], "has", &[]);
        if tensor_op {
            g.node("Relu", &["rows"], &["bad"], "relu", &[]);
            g.output("bad", &["4"]);
        }
        g.input("x", &["4", "2"]);
        g.input_i64("at", &[]);
        g.output("row", &["2"]);
        g.output("cols", &["2", "4"]);
        g.output_of("has", &[], 9);
        OnnxModel::load(&g.finish("weft-nn tests", 18)).unwrap()
    };
    let x = Tensor::from_f32(vec![4, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    let at = |i: i64| Tensor::new(vec![], ElementType::I64, i.to_le_bytes().to_vec()).unwrap();
    let run = |model: &OnnxModel, i: i64| {
        model
            .session()
            .compute(&[("x".into(), x.clone()), ("at".into(), at(i))])
    };
    let model = build(false);
    let out = run(&model, -1).unwrap();
    assert_eq!(out[0].1.to_f32().unwrap(), [6.0, 7.0]);
    assert_eq!(out[1].1.shape, [2, 4]);
    assert_eq!(
        out[1].1.to_f32().unwrap(),
        [0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]
    );
    assert_eq!(out[2].1.data, [1]);
    let err = run(&model, 4).unwrap_err();
    assert!(
        err.message
            .contains("position 4 is outside a sequence of 4"),
        "{}",
        err.message
    );
    // A graph that ends in a sequence (declared a tensor) says how to end
    // it instead of returning an empty tensor.
    let mut g = GraphWriter::new("ends");
    g.node("SplitToSequence", &["x"], &["rows"], "split", &[]);
    g.input("x", &["4", "2"]);
    g.output("rows", &["4"]);
    let ends = OnnxModel::load(&g.finish("weft-nn tests", 18)).unwrap();
    let err = ends
        .session()
        .compute(&[("x".into(), x.clone())])
        .unwrap_err();
    assert!(
        err.message.contains("end the graph with SequenceAt"),
        "{}",
        err.message
    );
    let err = run(&build(true), 0).unwrap_err();
    assert!(
        err.message
            .contains("(Relu): takes tensors, but its input 0 is a sequence"),
        "{}",
        err.message
    );
}

#[test]
fn a_model_that_draws_random_values_is_not_batched_across_callers() {
    use crate::onnx::write::GraphWriter;
    let build = |op: &str| {
        let mut g = GraphWriter::new("noise");
        g.node(op, &["x"], &["y"], "n", &[("seed", 1)]);
        g.input("x", &["n"]);
        g.output("y", &["n"]);
        OnnxModel::load(&g.finish("weft-nn tests", 22)).unwrap()
    };
    assert!(build("Relu").batchable());
    let noisy = build("RandomNormalLike");
    assert!(!noisy.batchable());
    // Seeded: the same draws each call.
    let x = Tensor::from_f32(vec![3], &[0.0; 3]);
    let draw = || noisy.session().compute(&[("x".into(), x.clone())]).unwrap();
    assert_eq!(draw()[0].1, draw()[0].1);
}
