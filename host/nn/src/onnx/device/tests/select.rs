//! Tests of `select.rs`: `Where` and `Gather` on the device against the
//! CPU.

use super::{fails_on_both, matches_the_cpu, ran_on_the_device, wave};
use crate::onnx::exec::OnnxModel;
use crate::onnx::write::GraphWriter;
use crate::{Model, Tensor};

#[test]
fn a_masked_decoder_attention_and_its_gathers_stay_on_the_device() {
    // Scores of x·wq by x·wk, a causal mask from a comparison on the CPU
    // (`Where` picks -inf above the diagonal), softmax, the weighted
    // values, then the last position and a few others by `Gather`.
    let mut g = GraphWriter::new("decoder");
    g.node("MatMul", &["x", "wq"], &["q"], "q", &[]);
    g.node("MatMul", &["x", "wk"], &["k"], "k", &[]);
    g.node_ints(
        "Transpose",
        &["k"],
        &["kt"],
        "kt",
        &[],
        &[("perm", &[0, 2, 1])],
    );
    g.node("MatMul", &["q", "kt"], &["scores"], "scores", &[]);
    g.node("Less", &["rows", "cols"], &["masked"], "causal", &[]);
    g.node("Where", &["masked", "neg", "scores"], &["s"], "mask", &[]);
    g.node("Softmax", &["s"], &["probs"], "softmax", &[]);
    g.node("MatMul", &["probs", "q"], &["o"], "weighted", &[]);
    g.node("Gather", &["o", "last"], &["y"], "last", &[("axis", 1)]);
    g.node("Gather", &["o", "some"], &["z"], "some", &[("axis", -2)]);
    g.node("Gather", &["o", "lanes"], &["w"], "lanes", &[("axis", 2)]);
    g.initializer("wq", &[4, 4], &wave(16, 0.3));
    g.initializer("wk", &[4, 4], &wave(16, 1.3));
    g.initializer("neg", &[], &[f32::NEG_INFINITY]);
    g.initializer_i64("rows", &[5, 1], &[0, 1, 2, 3, 4]);
    g.initializer_i64("cols", &[1, 5], &[0, 1, 2, 3, 4]);
    g.initializer_i64("last", &[], &[-1]);
    g.initializer_i64("some", &[2, 2], &[0, 4, 3, 3]);
    g.initializer_i64("lanes", &[3], &[3, 0, -4]);
    g.input("x", &["2", "5", "4"]);
    for o in ["y", "z", "w"] {
        g.output(o, &[]);
    }
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x = [("x".into(), Tensor::from_f32(vec![2, 5, 4], &wave(40, 0.7)))];
    matches_the_cpu(&bytes, &gpu, &x);
    assert_eq!(gpu.round_trips(), 1, "only the outputs come back");
}

#[test]
fn a_gather_index_out_of_range_fails_on_the_cpu_as_it_would() {
    let mut g = GraphWriter::new("bad_gather");
    g.node("MatMul", &["x", "w"], &["h"], "mm", &[]);
    g.node("Gather", &["h", "idx"], &["y"], "gather", &[("axis", 1)]);
    g.initializer("w", &[2, 3], &wave(6, 0.0));
    g.initializer_i64("idx", &[1], &[3]);
    g.input("x", &["2", "2"]);
    g.output("y", &[]);
    let bytes = g.finish("weft-nn tests", 17);
    let x = [("x".into(), Tensor::from_f32(vec![2, 2], &[1.0; 4]))];
    fails_on_both(&bytes, &x, "node `gather` (Gather)");
}

/// An embedding lookup (`Gather` of an initializer table by the call's
/// token ids, one negative) runs on the device from the table uploaded
/// at load, so what an encoder does with its embeddings (their sum, a
/// product) runs there too, and only the ids go up with the call.
#[test]
fn an_embedding_lookup_reads_its_table_on_the_device() {
    let mut g = GraphWriter::new("embed");
    g.node("Gather", &["table", "ids"], &["e"], "lookup", &[]);
    g.node("Gather", &["positions", "pos"], &["p"], "positions", &[]);
    g.node("Add", &["e", "p"], &["s"], "sum", &[]);
    g.node("MatMul", &["s", "w"], &["y"], "project", &[]);
    g.initializer("table", &[10, 4], &wave(40, 0.2));
    g.initializer("positions", &[6, 4], &wave(24, 1.1));
    g.initializer_i64("pos", &[3], &[0, 1, 2]);
    g.initializer("w", &[4, 3], &wave(12, 0.4));
    g.input_i64("ids", &["2", "3"]);
    g.output("y", &[]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let ids = Tensor::from_i64(vec![2, 3], &[1, 9, -1, 0, 4, 4]);
    matches_the_cpu(&bytes, &gpu, &[("ids".into(), ids)]);
    // The two lookups, the sum and the product, in one program (on the
    // CPU, the lookups and the sum: the product alone went up).
    ran_on_the_device(&gpu, 1, 4);
}

/// A table that a product also reads as its weight (tied embeddings and
/// output head) is on the device once, as the product's matrix: its
/// lookup then runs on the CPU, and the answers are the CPU's.
#[test]
fn a_tied_table_goes_up_once() {
    let mut g = GraphWriter::new("tied");
    g.node("Gather", &["table", "ids"], &["e"], "lookup", &[]);
    g.node(
        "Gemm",
        &["e", "table"],
        &["logits"],
        "head",
        &[("transB", 1)],
    );
    g.initializer("table", &[10, 4], &wave(40, 0.2));
    g.input_i64("ids", &["3"]);
    g.output("logits", &[]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let ids = Tensor::from_i64(vec![3], &[1, 9, -1]);
    matches_the_cpu(&bytes, &gpu, &[("ids".into(), ids)]);
    let model = OnnxModel::load_for(&bytes, Some(Ok(gpu))).unwrap();
    assert_eq!(model.device_bytes(), 10 * 4 * 4, "the table once");
}

/// Values with which comparisons differ: NaN, both infinities, ties.
fn awkward() -> (Tensor, Tensor) {
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    let x = [
        0.5, nan, inf, -inf, -1.0, 0.0, 2.0, 0.25, -0.5, 1.5, 0.5, -2.0,
    ];
    let y = [0.5, 0.0, inf, -inf, 1.0, nan];
    (
        Tensor::from_f32(vec![2, 6], &x),
        Tensor::from_f32(vec![6], &y),
    )
}

/// Every comparison and logical op, `IsNaN` and `IsInf`, a bool moved
/// (`Transpose`), read as `Where`'s condition and cast both ways: all on
/// the device, with NaN and the infinities giving what they give on the
/// CPU, in one program of one dispatch a node (and the broadcasts'
/// copies); the bools come back as bools.
#[test]
fn comparisons_and_bools_run_on_the_device_as_on_the_cpu() {
    let mut g = GraphWriter::new("bools");
    g.node("Less", &["x", "half"], &["lt"], "lt", &[]);
    g.node("GreaterOrEqual", &["x", "y"], &["ge"], "ge", &[]);
    // (`y` is a row of `x`: this one broadcasts by a copy.)
    g.node("LessOrEqual", &["y", "x"], &["le"], "le", &[]);
    g.node("Greater", &["x", "y"], &["gt"], "gt", &[]);
    g.node("Equal", &["x", "x"], &["eq"], "eq", &[]);
    g.node("IsNaN", &["x"], &["nan"], "nan", &[]);
    g.node("IsInf", &["x"], &["inf"], "inf", &[("detect_negative", 0)]);
    g.node("Not", &["lt"], &["n"], "not", &[]);
    g.node("And", &["n", "eq"], &["a"], "and", &[]);
    g.node("Or", &["a", "inf"], &["o"], "or", &[]);
    g.node("Xor", &["o", "ge"], &["xr"], "xor", &[]);
    g.node("Equal", &["xr", "le"], &["c"], "same", &[]);
    g.node_ints("Transpose", &["c"], &["t"], "t", &[], &[("perm", &[1, 0])]);
    g.node_ints(
        "Transpose",
        &["x"],
        &["xt"],
        "xt",
        &[],
        &[("perm", &[1, 0])],
    );
    g.node("Where", &["t", "xt", "zero"], &["s"], "pick", &[]);
    g.node("Cast", &["c"], &["f"], "to_f32", &[("to", 1)]);
    g.node("Add", &["f", "x"], &["sum"], "sum", &[]);
    g.node("Cast", &["x"], &["b"], "to_bool", &[("to", 9)]);
    g.initializer("half", &[], &[0.5]);
    g.initializer("zero", &[], &[0.0]);
    g.input("x", &["2", "6"]);
    g.input("y", &["6"]);
    for o in ["s", "sum", "b", "xr", "gt", "nan"] {
        g.output(o, &[]);
    }
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let (x, y) = awkward();
    let inputs = [("x".into(), x), ("y".into(), y)];
    matches_the_cpu(&bytes, &gpu, &inputs);
    assert_eq!(gpu.round_trips(), 1, "only the outputs come back");
    ran_on_the_device(&gpu, 1, 19);
    let model = OnnxModel::load_for(&bytes, Some(Ok(gpu))).unwrap();
    let out = model.session().compute(&inputs).unwrap();
    let types: Vec<_> = out.iter().map(|(_, t)| t.ty).collect();
    use crate::ElementType::{F32, U8};
    assert_eq!(
        types,
        [F32, F32, U8, U8, U8, U8],
        "bools come back as bools"
    );
    let nan = out[5].1.to_i64().unwrap();
    assert_eq!(nan, [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
}

/// Bools made on the device are moved there (`Reshape`, `Gather`,
/// `Expand`, `Concat`, `Unsqueeze`), compared (`Equal` of two bools),
/// and picked between (`Where` with bool branches): one program, bools
/// out.
#[test]
fn bools_move_and_pick_on_the_device_as_on_the_cpu() {
    let mut g = GraphWriter::new("bool_moves");
    g.node("Greater", &["x", "half"], &["gt"], "gt", &[]);
    g.node("Less", &["x", "half"], &["lt"], "lt", &[]);
    // (Both infinities, by default.)
    g.node("IsInf", &["x"], &["inf"], "inf", &[]);
    g.node("Equal", &["gt", "lt"], &["e"], "same", &[]);
    g.node("Reshape", &["e", "three_by_four"], &["r"], "view", &[]);
    g.node("Gather", &["r", "rows"], &["picked"], "rows", &[]);
    g.node("Expand", &["picked", "wide"], &["ex"], "expand", &[]);
    g.node("Concat", &["gt", "inf"], &["cat"], "cat", &[("axis", 0)]);
    g.node("Where", &["lt", "gt", "inf"], &["w"], "pick", &[]);
    g.node("Unsqueeze", &["w", "front"], &["u"], "unsqueeze", &[]);
    g.initializer("half", &[], &[0.5]);
    g.initializer_i64("three_by_four", &[2], &[3, 4]);
    g.initializer_i64("rows", &[2], &[2, 0]);
    g.initializer_i64("wide", &[3], &[3, 2, 4]);
    g.initializer_i64("front", &[1], &[0]);
    g.input("x", &["2", "6"]);
    for o in ["ex", "cat", "u", "e"] {
        g.output(o, &[]);
    }
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let inputs = [("x".into(), awkward().0)];
    matches_the_cpu(&bytes, &gpu, &inputs);
    // The four ops that make bools, `Equal`, the gather, the expand, a
    // copy per part of the concat and `Where`; the views none.
    ran_on_the_device(&gpu, 1, 4 + 1 + 1 + 2 + 1);
    let model = OnnxModel::load_for(&bytes, Some(Ok(gpu))).unwrap();
    let out = model.session().compute(&inputs).unwrap();
    assert!(
        out.iter().all(|(_, t)| t.ty == crate::ElementType::U8),
        "bools"
    );
    assert_eq!(out[2].1.shape, [1, 2, 6]);
}

/// A bool made on the device that a node without a bool kernel there
/// reads (`Cast` to int64, `Split`, a `Concat` with an f32, which the
/// CPU casts) comes back to the CPU as a bool.
#[test]
fn a_bool_the_device_cannot_read_comes_back_to_the_cpu_as_a_bool() {
    let mut g = GraphWriter::new("bool_back");
    g.node("Greater", &["x", "half"], &["gt"], "gt", &[]);
    g.node("Cast", &["gt"], &["i"], "to_i64", &[("to", 7)]);
    g.node("Split", &["gt"], &["p", "q"], "split", &[("axis", 1)]);
    g.node("Not", &["q"], &["nq"], "not", &[]);
    g.node("Concat", &["x", "gt"], &["mixed"], "mixed", &[("axis", 0)]);
    g.initializer("half", &[], &[0.5]);
    g.input("x", &["2", "6"]);
    for o in ["i", "p", "nq", "mixed"] {
        g.output(o, &[]);
    }
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let inputs = [("x".into(), awkward().0)];
    matches_the_cpu(&bytes, &gpu, &inputs);
    // `Greater` alone, brought back for the cast; the rest the CPU's.
    ran_on_the_device(&gpu, 1, 1);
    let model = OnnxModel::load_for(&bytes, Some(Ok(gpu))).unwrap();
    let out = model.session().compute(&inputs).unwrap();
    assert_eq!(
        out[0].1.to_i64().unwrap(),
        [0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0]
    );
    use crate::ElementType::{F32, U8};
    let types: Vec<_> = out.iter().map(|(_, t)| t.ty).collect();
    assert_eq!(types, [crate::ElementType::I64, U8, U8, F32]);
}
