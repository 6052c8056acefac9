//! Tests of `layout.rs`: `Split`, `Tile` and the ops that rename a
//! buffer on the device against the CPU.

use super::{matches_the_cpu, ran_on_the_device, wave};
use crate::Tensor;
use crate::onnx::write::GraphWriter;

#[test]
fn splits_tiles_and_pass_throughs_run_on_the_device_as_on_the_cpu() {
    // `Split` by sizes (an input), one part not asked for; by
    // `num_outputs` (opset 18, the last part shorter); `Tile`; and an
    // inference `Dropout` and a `Cast` to f32, which only rename.
    let mut g = GraphWriter::new("layout");
    g.node("MatMul", &["x", "eye"], &["h"], "up", &[]);
    g.node(
        "Split",
        &["h", "sizes"],
        &["a", "", "c"],
        "by_sizes",
        &[("axis", 1)],
    );
    g.node(
        "Split",
        &["h"],
        &["p", "q", "r"],
        "even",
        &[("axis", 0), ("num_outputs", 3)],
    );
    g.node("Tile", &["c", "reps"], &["t"], "tile", &[]);
    g.node("Dropout", &["a"], &["d"], "dropout", &[]);
    g.node("Cast", &["d"], &["f"], "cast", &[("to", 1)]);
    for o in ["f", "t", "p", "q", "r"] {
        g.output(o, &[]);
    }
    let eye: Vec<f32> = (0..36).map(|i| f32::from(i % 7 == 0)).collect();
    g.initializer("eye", &[6, 6], &eye);
    g.initializer_i64("sizes", &[3], &[2, 1, 3]);
    g.initializer_i64("reps", &[2], &[3, 2]);
    g.input("x", &["5", "6"]);
    let bytes = g.finish("weft-nn tests", 18);
    let gpu = crate::gpu::tests::own(None);
    let x = [("x".into(), Tensor::from_f32(vec![5, 6], &wave(30, 0.1)))];
    matches_the_cpu(&bytes, &gpu, &x);
    // The product, two parts, three parts and the tile; the rest rename.
    ran_on_the_device(&gpu, 1, 7);
}
