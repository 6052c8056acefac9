//! Tests of `products.rs`: `Gemm` and `Einsum` on the device against
//! the CPU.

use super::{matches_the_cpu, ran_on_the_device, wave};
use crate::Tensor;
use crate::onnx::write::GraphWriter;

#[test]
fn gemm_scalings_transposes_and_biases_run_on_the_device_as_on_the_cpu() {
    // `alpha` and `beta` other than 1, `transA` (a strided copy first),
    // `transB`, and C as a column, a scalar, a row and the whole result.
    let mut g = GraphWriter::new("gemms");
    g.node("MatMul", &["x", "w"], &["h"], "mm", &[]);
    g.node_ints(
        "Transpose",
        &["h"],
        &["ht"],
        "ht",
        &[],
        &[("perm", &[1, 0])],
    );
    type Attrs = &'static [(&'static str, i64)];
    let gemms: [(&str, &[&str], Attrs); 5] = [
        ("column", &["h", "w", "col"], &[("alpha", 2), ("beta", -1)]),
        (
            "trans_a",
            &["ht", "w", "scalar"],
            &[("transA", 1), ("beta", 3)],
        ),
        (
            "trans_b",
            &["h", "w", "full"],
            &[("transB", 1), ("alpha", 3)],
        ),
        ("no_c", &["h", "w"], &[("alpha", -1)]),
        ("row", &["h", "w", "row"], &[]),
    ];
    for (name, inputs, attrs) in gemms {
        let out = format!("y_{name}");
        g.node("Gemm", inputs, &[&out], name, attrs);
        g.output(&out, &[]);
    }
    g.initializer("w", &[4, 4], &wave(16, 0.3));
    g.initializer("col", &[6, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    g.initializer("scalar", &[], &[0.5]);
    g.initializer("full", &[6, 4], &wave(24, 1.1));
    g.initializer("row", &[4], &[1.0, -2.0, 0.5, 3.0]);
    g.input("x", &["6", "4"]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x = [("x".into(), Tensor::from_f32(vec![6, 4], &wave(24, 0.0)))];
    matches_the_cpu(&bytes, &gpu, &x);
    assert_eq!(
        (gpu.matmuls(), gpu.round_trips()),
        (6, 1),
        "all on the device"
    );
}

#[test]
fn einsums_of_two_operands_run_on_the_device_as_on_the_cpu() {
    // A batched product by a weight, attention's scores (B read
    // transposed), an outer product (nothing summed), a product to a
    // permuted output, one of A read transposed, and a dot product over
    // the last axis spelled with `...`.
    let mut g = GraphWriter::new("einsums");
    g.node("MatMul", &["x", "w"], &["h"], "up", &[]);
    let cases = [
        ("bij,bjk->bik", ["h", "k1"]),
        ("bqd,bkd->bqk", ["h", "h"]),
        ("bsi,bsj->bsij", ["h", "h"]),
        ("bsd,de->ebs", ["h", "w2"]),
        ("bji,bjk->bik", ["h", "k2"]),
        ("...d,...d->...", ["h", "h"]),
    ];
    for (i, (eq, inputs)) in cases.into_iter().enumerate() {
        let out = format!("e{i}");
        let attrs = [("equation", eq)];
        g.node_strings("Einsum", &inputs, &[&out], &out, (&[], &[]), &attrs);
        g.output(&out, &[]);
    }
    g.initializer("w", &[4, 4], &wave(16, 0.2));
    g.initializer("k1", &[2, 4, 5], &wave(40, 1.4));
    g.initializer("w2", &[4, 6], &wave(24, 2.1));
    g.initializer("k2", &[2, 3, 5], &wave(30, 0.9));
    g.input("x", &["2", "3", "4"]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x = [("x".into(), Tensor::from_f32(vec![2, 3, 4], &wave(24, 0.7)))];
    matches_the_cpu(&bytes, &gpu, &x);
    // The product; then 1, 2 (B transposed first), 1, 2 (the output
    // permuted after), 2 (A transposed first) and 1: one program.
    ran_on_the_device(&gpu, 1, 1 + 1 + 2 + 1 + 2 + 2 + 1);
}

#[test]
fn einsums_of_one_operand_and_implicit_outputs_run_on_the_device_as_on_the_cpu() {
    // A permutation, sums over some labels (in place, or after moving
    // them last), a sum spelled with `...`, an implicit output (`b` and
    // `j` summed, `i` and `k` kept in order); a diagonal is the CPU's.
    let mut g = GraphWriter::new("einsums_of_one");
    g.node("MatMul", &["x", "w"], &["h"], "up", &[]);
    g.node("MatMul", &["sq_in", "w"], &["sq"], "square", &[]);
    let cases: [(&str, &[&str]); 6] = [
        ("bij->bji", &["h"]),
        ("bij->b", &["h"]),
        ("bij->jb", &["h"]),
        ("...j->...", &["h"]),
        ("bij,bkj", &["h", "k"]),
        ("ii->i", &["sq"]),
    ];
    for (i, (eq, inputs)) in cases.into_iter().enumerate() {
        let out = format!("e{i}");
        let attrs = [("equation", eq)];
        g.node_strings("Einsum", inputs, &[&out], &out, (&[], &[]), &attrs);
        g.output(&out, &[]);
    }
    g.initializer("w", &[4, 4], &wave(16, 0.2));
    g.initializer("k", &[2, 5, 4], &wave(40, 1.4));
    g.input("x", &["2", "3", "4"]);
    g.input("sq_in", &["4", "4"]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let inputs = [
        ("x".into(), Tensor::from_f32(vec![2, 3, 4], &wave(24, 0.7))),
        ("sq_in".into(), Tensor::from_f32(vec![4, 4], &wave(16, 0.1))),
    ];
    matches_the_cpu(&bytes, &gpu, &inputs);
    // The products; then 1 (a copy), 1 (a sum), 2 (a copy, a sum), 1 (a
    // sum) and 3 (each operand copied, the product); `sq` read back for
    // the diagonal, the outputs after.
    ran_on_the_device(&gpu, 2, 2 + 1 + 1 + 2 + 1 + 3);
}
