//! Sizes a model computes from its inputs or attributes: a tensor past
//! `MAX_TENSOR_ELEMENTS` fails the call with `too-large`, naming the node,
//! on the CPU and the GPU path, instead of aborting the process on a
//! failed allocation (each case here asks for 2^32 elements or more; before
//! the checks, every one of them took the test process down).

use crate::onnx::exec::OnnxModel;
use crate::onnx::write::GraphWriter;
use crate::{Model, NnErrorKind, Tensor};

/// What `op` (one node called `big` on `inputs` of f32 `x` of shape `x`
/// and int64 `s` when `ints` is given, with list attributes `lists`) says
/// when run.
fn run(
    op: &str,
    inputs: &[&str],
    ints: Option<&[i64]>,
    x: &[usize],
    lists: &[(&str, &[i64])],
    gpu: bool,
) -> Result<(), crate::NnError> {
    let mut g = GraphWriter::new("limits");
    let rank: Vec<String> = (0..x.len()).map(|i| format!("d{i}")).collect();
    let dims: Vec<&str> = rank.iter().map(String::as_str).collect();
    g.input("x", &dims);
    if ints.is_some() {
        g.input_i64("s", &["n"]);
    }
    g.node_ints(op, inputs, &["y"], "big", &[], lists);
    g.output("y", &["o"]);
    let bytes = g.finish("weft-nn tests", 21);
    let device = gpu.then(|| Ok(crate::gpu::tests::gpu()));
    let model = OnnxModel::load_for(&bytes, device)?;
    let count = x.iter().product();
    let mut feed = vec![(
        "x".to_string(),
        Tensor::from_f32(x.to_vec(), &vec![1.0; count]),
    )];
    if let Some(s) = ints {
        feed.push(("s".into(), Tensor::from_i64(vec![s.len()], s)));
    }
    model.session().compute(&feed).map(drop)
}

fn too_large(what: &str, r: Result<(), crate::NnError>) {
    let err = r.expect_err(what);
    assert_eq!(err.kind, NnErrorKind::TooLarge, "{what}: {}", err.message);
    assert!(
        err.message.contains("`big`")
            && err
                .message
                .contains(&crate::max_tensor_elements().to_string()),
        "{what}: {}",
        err.message
    );
}

const HUGE: i64 = 1 << 16;

/// One case: what it is, the operator, its inputs, `s`'s values, `x`'s
/// shape and the list attributes.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a [&'a str],
    Option<&'a [i64]>,
    &'a [usize],
    &'a [(&'a str, &'a [i64])],
);

#[test]
fn sizes_from_values_and_attributes_past_the_cap_are_too_large() {
    let cases: &[Case<'_>] = &[
        (
            "ConstantOfShape",
            "ConstantOfShape",
            &["s"],
            Some(&[HUGE, HUGE]),
            &[1],
            &[],
        ),
        (
            "Expand",
            "Expand",
            &["x", "s"],
            Some(&[HUGE, HUGE]),
            &[1],
            &[],
        ),
        ("Tile", "Tile", &["x", "s"], Some(&[HUGE * HUGE]), &[4], &[]),
        (
            "Pad",
            "Pad",
            &["x", "s"],
            Some(&[0, HUGE * HUGE]),
            &[1],
            &[],
        ),
        (
            "RandomUniform",
            "RandomUniform",
            &[],
            None,
            &[1],
            &[("shape", &[HUGE, HUGE])],
        ),
        (
            "MaxPool's pads",
            "MaxPool",
            &["x"],
            None,
            &[1, 1, 1],
            &[("kernel_shape", &[1]), ("pads", &[HUGE * HUGE, 0])],
        ),
        // Pads of 2^29 and a kernel of 1: under the cap as elements, but
        // the window's plan takes 16 bytes an entry and its positions more.
        (
            "MaxPool's plan",
            "MaxPool",
            &["x"],
            None,
            &[1, 1, 1],
            &[("kernel_shape", &[1]), ("pads", &[1 << 29, 0])],
        ),
        // An empty input holds nothing, however long its other axis.
        (
            "ReduceSum over an empty axis",
            "ReduceSum",
            &["x", "s"],
            Some(&[1]),
            &[1 << 31, 0],
            &[],
        ),
    ];
    for gpu in [false, true] {
        for &(what, op, inputs, ints, x, lists) in cases {
            let what = format!("{what} ({})", if gpu { "GPU" } else { "CPU" });
            too_large(&what, run(op, inputs, ints, x, lists, gpu));
        }
    }
}

/// A two-input node of `op` on f32 `a` and `b` of the given shapes.
fn pair(op: &str, a: &[usize], b: &[usize], gpu: bool) -> Result<(), crate::NnError> {
    let mut g = GraphWriter::new("limits");
    g.input("a", &["p", "q"]);
    g.input("b", &["r", "s"]);
    g.node(op, &["a", "b"], &["y"], "big", &[]);
    g.output("y", &["o", "t"]);
    let device = gpu.then(|| Ok(crate::gpu::tests::gpu()));
    let model = OnnxModel::load_for(&g.finish("weft-nn tests", 21), device)?;
    let t = |s: &[usize]| Tensor::from_f32(s.to_vec(), &vec![1.0; s.iter().product()]);
    let feed = [("a".to_string(), t(a)), ("b".to_string(), t(b))];
    model.session().compute(&feed).map(drop)
}

#[test]
fn small_operands_whose_product_or_broadcast_is_huge_are_too_large() {
    let n = HUGE as usize;
    for gpu in [false, true] {
        let on = |what: &str| format!("{what} ({})", if gpu { "GPU" } else { "CPU" });
        too_large(&on("Add"), pair("Add", &[n, 1], &[1, n], gpu));
        too_large(&on("MatMul"), pair("MatMul", &[n, 1], &[1, n], gpu));
        // The same operators within the cap still run.
        pair("Add", &[64, 1], &[1, 64], gpu).unwrap();
        pair("MatMul", &[64, 1], &[1, 64], gpu).unwrap();
    }
}

#[test]
fn ranges_past_the_cap_are_too_large() {
    // Range's length comes from its input values.
    let scalars = |op: &str, values: &[f32]| {
        let mut g = GraphWriter::new("limits");
        let names: Vec<String> = (0..values.len()).map(|i| format!("v{i}")).collect();
        for n in &names {
            g.input(n, &[]);
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        g.node(op, &refs, &["y"], "big", &[]);
        g.output("y", &["o"]);
        let model = OnnxModel::load(&g.finish("weft-nn tests", 21)).unwrap();
        let feed: Vec<(String, Tensor)> = names
            .iter()
            .zip(values)
            .map(|(n, &v)| (n.clone(), Tensor::from_f32(vec![], &[v])))
            .collect();
        model.session().compute(&feed).map(drop)
    };
    too_large("Range", scalars("Range", &[0.0, 1e12, 1.0]));
    too_large("Range by 0", scalars("Range", &[0.0, 1.0, 0.0]));
    scalars("Range", &[0.0, 10.0, 1.0]).unwrap();
    // A zero-length range (0 / 0 steps) is empty, not an error.
    scalars("Range", &[0.0, 0.0, 0.0]).unwrap();
}

#[test]
fn one_hot_depth_past_the_cap_is_too_large() {
    let mut g = GraphWriter::new("limits");
    g.input_i64("i", &["n"]);
    g.input("d", &[]);
    g.input("v", &["2"]);
    g.node("OneHot", &["i", "d", "v"], &["y"], "big", &[]);
    g.output("y", &["n", "k"]);
    let model = OnnxModel::load(&g.finish("weft-nn tests", 21)).unwrap();
    let feed = |depth: f32| {
        vec![
            ("i".to_string(), Tensor::from_i64(vec![2], &[0, 1])),
            ("d".to_string(), Tensor::from_f32(vec![], &[depth])),
            ("v".to_string(), Tensor::from_f32(vec![2], &[0.0, 1.0])),
        ]
    };
    too_large("OneHot", model.session().compute(&feed(1e10)).map(drop));
    model.session().compute(&feed(3.0)).unwrap();
}
