use super::trees::Post;
use super::*;
use crate::onnx::proto::{Attr, NodeProto};

fn node(op: &str, attrs: Vec<(&str, Attr)>) -> NodeProto {
    NodeProto {
        name: "n".into(),
        op_type: op.into(),
        domain: "ai.onnx.ml".into(),
        inputs: vec!["X".into()],
        outputs: vec!["Y".into()],
        attrs: attrs.into_iter().map(|(n, a)| (n.to_string(), a)).collect(),
    }
}

fn ints(v: &[i64]) -> Attr {
    Attr::Ints(v.to_vec())
}

fn floats(v: &[f32]) -> Attr {
    Attr::Floats(v.to_vec())
}

fn strings(v: &[&str]) -> Attr {
    Attr::Strings(v.iter().map(|s| s.as_bytes().to_vec()).collect())
}

fn run_on(proto: &NodeProto, x: &Value) -> Result<Value, NnError> {
    run(Node { proto, opset: 1 }, &[Some(x)])
}

/// The `nodes_modes` of [`regressor`]'s eight nodes.
const MODES: [&str; 8] = [
    "BRANCH_LEQ",
    "LEAF",
    "LEAF",
    "BRANCH_LT",
    "LEAF",
    "BRANCH_GT",
    "LEAF",
    "LEAF",
];

/// Two trees as skl2onnx writes a gradient-boosted regressor: tree 0
/// splits feature 0 at 0.5 (LEQ), tree 1 feature 1 at 2 (LT) and then,
/// on its false side, feature 0 at 1 (GT); leaves listed apart with
/// their weights, a base value added.
fn regressor(aggregate: &str, post: &str) -> NodeProto {
    node(
        "TreeEnsembleRegressor",
        vec![
            ("nodes_treeids", ints(&[0, 0, 0, 1, 1, 1, 1, 1])),
            ("nodes_nodeids", ints(&[0, 1, 2, 0, 1, 2, 3, 4])),
            ("nodes_featureids", ints(&[0, 0, 0, 1, 0, 0, 0, 0])),
            (
                "nodes_values",
                floats(&[0.5, 0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0]),
            ),
            ("nodes_modes", strings(&MODES)),
            ("nodes_truenodeids", ints(&[1, 0, 0, 1, 0, 3, 0, 0])),
            ("nodes_falsenodeids", ints(&[2, 0, 0, 2, 0, 4, 0, 0])),
            ("target_treeids", ints(&[0, 0, 1, 1, 1])),
            ("target_nodeids", ints(&[1, 2, 1, 3, 4])),
            ("target_ids", ints(&[0, 0, 0, 0, 0])),
            ("target_weights", floats(&[1.0, 2.0, 10.0, 20.0, 30.0])),
            ("n_targets", Attr::Int(1)),
            ("base_values", floats(&[0.25])),
            (
                "aggregate_function",
                Attr::Str(aggregate.as_bytes().to_vec()),
            ),
            ("post_transform", Attr::Str(post.as_bytes().to_vec())),
        ],
    )
}

#[test]
fn a_legacy_regressor_sums_its_trees_leaves_and_base() {
    // Rows: (0, 0) → 1 + 10; (1.5, 3) → 2 + 20; (0.7, 5) → 2 + 30;
    // (NaN, NaN): no branch holds → 2 + 30.
    let x = Value::f32(
        vec![4, 2],
        vec![0.0, 0.0, 1.5, 3.0, 0.7, 5.0, f32::NAN, f32::NAN],
    );
    let y = run_on(&regressor("SUM", "NONE"), &x).unwrap();
    assert_eq!(y.shape, vec![4, 1]);
    assert_eq!(y.dtype, DType::F32);
    assert_eq!(y.to_f64(), vec![11.25, 22.25, 32.25, 32.25]);
    let avg = run_on(&regressor("AVERAGE", "NONE"), &x).unwrap();
    assert_eq!(avg.to_f64(), vec![5.75, 11.25, 16.25, 16.25]);
    // (The values onnxruntime 1.32 gives for this model, these two too.)
    let max = run_on(&regressor("MAX", "NONE"), &x).unwrap();
    assert_eq!(max.to_f64(), vec![10.25, 20.25, 30.25, 30.25]);
    let min = run_on(&regressor("MIN", "NONE"), &x).unwrap();
    assert_eq!(min.to_f64(), vec![1.25, 2.25, 2.25, 2.25]);
}

#[test]
fn a_missing_feature_follows_its_tracks() {
    let mut proto = regressor("SUM", "NONE");
    proto.attrs.push((
        "nodes_missing_value_tracks_true".into(),
        ints(&[1, 0, 0, 1, 0, 0, 0, 0]),
    ));
    let x = Value::f32(vec![1, 2], vec![f32::NAN, f32::NAN]);
    assert_eq!(run_on(&proto, &x).unwrap().to_f64(), vec![11.25]);
}

#[test]
fn broken_trees_and_inputs_are_refused_with_what_is_wrong() {
    let x = Value::f32(vec![1, 2], vec![0.0, 0.0]);
    // A branch to a node the tree does not have.
    let mut missing = regressor("SUM", "NONE");
    missing.attrs[5] = ("nodes_truenodeids".into(), ints(&[1, 0, 0, 1, 0, 9, 0, 0]));
    let err = run_on(&missing, &x).unwrap_err().message;
    assert!(err.contains("node 2 branches to node 9"), "{err}");
    // An attribute with a value too few.
    let mut short = regressor("SUM", "NONE");
    short.attrs[2] = ("nodes_featureids".into(), ints(&[0, 0, 0, 1, 0, 0, 0]));
    let err = run_on(&short, &x).unwrap_err().message;
    assert!(err.contains("must all have one value per node"), "{err}");
    // A loop: node 2 of tree 1 back to node 0.
    let mut cycle = regressor("SUM", "NONE");
    cycle.attrs[5] = ("nodes_truenodeids".into(), ints(&[1, 0, 0, 1, 0, 0, 0, 0]));
    let err = run_on(&cycle, &x).unwrap_err().message;
    assert!(
        err.contains("more than one root") || err.contains("lead back"),
        "{err}"
    );
    // A feature the rows do not have.
    let narrow = Value::f32(vec![2, 1], vec![0.0, 3.0]);
    let err = run_on(&regressor("SUM", "NONE"), &narrow)
        .unwrap_err()
        .message;
    assert!(
        err.contains("splits on feature 1, but the input has 1 per row"),
        "{err}"
    );
    // Weights for a leaf that is not one.
    let mut target = regressor("SUM", "NONE");
    target.attrs[8] = ("target_nodeids".into(), ints(&[0, 2, 1, 3, 4]));
    let err = run_on(&target, &x).unwrap_err().message;
    assert!(
        err.contains("names tree 0's node 0, which is not a leaf"),
        "{err}"
    );
}

#[test]
fn array_feature_extractor_refuses_an_index_past_the_axis() {
    let proto = node("ArrayFeatureExtractor", vec![]);
    let x = Value::f32(vec![2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let at = |i: Vec<i64>| Value::i64(vec![i.len()], i);
    let ok = run(
        Node {
            proto: &proto,
            opset: 1,
        },
        &[Some(&x), Some(&at(vec![2, 0]))],
    )
    .unwrap();
    assert_eq!(
        (ok.shape.clone(), ok.to_f64()),
        (vec![2, 2], vec![2.0, 0.0, 5.0, 3.0])
    );
    let err = run(
        Node {
            proto: &proto,
            opset: 1,
        },
        &[Some(&x), Some(&at(vec![3]))],
    )
    .unwrap_err();
    assert!(
        err.message
            .contains("index 3 is outside the last axis (0..3)"),
        "{err:?}"
    );
}

#[test]
fn softmax_zero_leaves_zeros_alone_and_probit_inverts_the_normal() {
    let mut forest = Forest::from_regressor(Node {
        proto: &regressor("SUM", "SOFTMAX_ZERO"),
        opset: 1,
    })
    .unwrap();
    let mut y = [0.0, 1.0, 1.0];
    forest.finish(&mut y);
    assert_eq!(y, [0.0, 0.5, 0.5]);
    forest.post = Post::Probit;
    let mut p = [0.975, 0.5];
    forest.finish(&mut p);
    assert!(
        (p[0] - 1.959_963_984_540_054).abs() < 1e-9 && p[1].abs() < 1e-12,
        "{p:?}"
    );
    forest.post = Post::Logistic;
    // With one target only PROBIT applies, as in onnxruntime.
    let mut one = [2.0];
    forest.finish(&mut one);
    assert_eq!(one, [2.0]);
    let mut l = [0.0, 2.0];
    forest.finish(&mut l);
    assert!(
        l[0] == 0.5 && (l[1] - 0.880_797_077_977_882_3).abs() < 1e-12,
        "{l:?}"
    );
}

/// A model of one `TreeEnsembleRegressor` node (the `regressor` above,
/// its true branches `yes`), as skl2onnx would write it.
fn regressor_model(yes: &[i64]) -> Vec<u8> {
    use crate::onnx::write::{GraphWriter, bytes, key, var};
    let attr = |name: &str, kind: u64, field: u64, payload: &[u8], out: &mut Vec<u8>| {
        let mut a = Vec::new();
        bytes(1, name.as_bytes(), &mut a);
        bytes(field, payload, &mut a);
        key(20, 0, &mut a);
        var(kind, &mut a);
        bytes(5, &a, out);
    };
    let ints = |name: &str, v: &[i64], out: &mut Vec<u8>| {
        let mut p = Vec::new();
        v.iter().for_each(|&x| var(x as u64, &mut p));
        attr(name, 7, 8, &p, out);
    };
    let floats = |name: &str, v: &[f32], out: &mut Vec<u8>| {
        let p: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        attr(name, 6, 7, &p, out);
    };
    let mut raw = Vec::new();
    bytes(7, b"ai.onnx.ml", &mut raw);
    ints("nodes_treeids", &[0, 0, 0, 1, 1, 1, 1, 1], &mut raw);
    ints("nodes_nodeids", &[0, 1, 2, 0, 1, 2, 3, 4], &mut raw);
    ints("nodes_featureids", &[0, 0, 0, 1, 0, 0, 0, 0], &mut raw);
    floats(
        "nodes_values",
        &[0.5, 0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0],
        &mut raw,
    );
    let mut modes = Vec::new();
    bytes(1, b"nodes_modes", &mut modes);
    for mode in MODES {
        bytes(9, mode.as_bytes(), &mut modes);
    }
    key(20, 0, &mut modes);
    var(8, &mut modes);
    bytes(5, &modes, &mut raw);
    ints("nodes_truenodeids", yes, &mut raw);
    ints("nodes_falsenodeids", &[2, 0, 0, 2, 0, 4, 0, 0], &mut raw);
    ints("target_treeids", &[0, 0, 1, 1, 1], &mut raw);
    ints("target_nodeids", &[1, 2, 1, 3, 4], &mut raw);
    ints("target_ids", &[0; 5], &mut raw);
    floats("target_weights", &[1.0, 2.0, 10.0, 20.0, 30.0], &mut raw);
    let mut g = GraphWriter::new("trees");
    g.node_raw(("TreeEnsembleRegressor", &["x"], &["y"], "forest"), &raw);
    g.input("x", &["N", "2"]);
    g.output("y", &["N", "1"]);
    g.finish("weft-nn tests", 17)
}

#[test]
fn a_forest_is_read_once_at_load_and_a_broken_one_refused_there() {
    use crate::onnx::exec::OnnxModel;
    use crate::{Model, NnErrorKind, Tensor};
    let model = OnnxModel::load(&regressor_model(&[1, 0, 0, 1, 0, 3, 0, 0])).unwrap();
    let x = Tensor::from_f32(vec![2, 2], &[0.0, 0.0, 1.5, 3.0]);
    let out = model.session().compute(&[("x".into(), x)]).unwrap();
    assert_eq!(out[0].1.to_f32().unwrap(), vec![11.0, 22.0]);
    let Err(err) = OnnxModel::load(&regressor_model(&[1, 0, 0, 1, 0, 9, 0, 0])) else {
        panic!("a branch to a node the tree lacks loaded");
    };
    assert_eq!(err.kind, NnErrorKind::InvalidEncoding);
    assert!(
        err.message
            .contains("node `forest` (TreeEnsembleRegressor)")
            && err.message.contains("node 2 branches to node 9"),
        "{}",
        err.message
    );
}

/// An opset-5 `TreeEnsemble` of three trees over two targets: a split of
/// feature 0 (≤ 1: target 0 +1, else target 1 +2); a set-membership split
/// of feature 1 in {3, 5}, a missing value counted in (target 0 +10, else
/// +20); and a lone leaf (both branches to it: target 0 +100).
fn v5(aggregate: i64, post: i64, members: &[f32]) -> NodeProto {
    use crate::onnx::value::Data;
    let tensor = |v: &[f32]| Attr::Tensor(Value::f32(vec![v.len()], v.to_vec()));
    let modes = Value {
        dtype: DType::U8,
        shape: vec![3],
        data: Data::I64(vec![0, 6, 0]),
    };
    node(
        "TreeEnsemble",
        vec![
            ("nodes_featureids", ints(&[0, 1, 0])),
            ("nodes_splits", tensor(&[1.0, 0.0, 0.0])),
            ("nodes_modes", Attr::Tensor(modes)),
            ("nodes_truenodeids", ints(&[0, 2, 4])),
            ("nodes_trueleafs", ints(&[1, 1, 1])),
            ("nodes_falsenodeids", ints(&[1, 3, 4])),
            ("nodes_falseleafs", ints(&[1, 1, 1])),
            ("nodes_missing_value_tracks_true", ints(&[0, 1, 0])),
            ("membership_values", tensor(members)),
            ("leaf_targetids", ints(&[0, 1, 0, 0, 0])),
            ("leaf_weights", tensor(&[1.0, 2.0, 10.0, 20.0, 100.0])),
            ("n_targets", Attr::Int(2)),
            ("tree_roots", ints(&[0, 1, 2])),
            ("aggregate_function", Attr::Int(aggregate)),
            ("post_transform", Attr::Int(post)),
        ],
    )
}

#[test]
fn an_opset_5_ensemble_aggregates_sets_lone_leaves_and_missing_values() {
    // Rows (0, 3) and (2, NaN); a target no leaf reaches is 0.
    let x = Value::f32(vec![2, 2], vec![0.0, 3.0, 2.0, f32::NAN]);
    let members = [3.0, 5.0, f32::NAN];
    let y = |aggregate, post| run_on(&v5(aggregate, post, &members), &x).unwrap().to_f64();
    assert_eq!(y(1, 0), vec![111.0, 0.0, 110.0, 2.0]);
    assert_eq!(y(2, 0), vec![1.0, 0.0, 10.0, 2.0]);
    assert_eq!(y(3, 0), vec![100.0, 0.0, 100.0, 2.0]);
    let avg = y(0, 0);
    assert!(
        (avg[0] - 37.0).abs() < 1e-5 && (avg[3] - 2.0 / 3.0).abs() < 1e-6,
        "{avg:?}"
    );
    // SOFTMAX over the row's two targets (f32 scores, as the input's).
    let soft = y(1, 1);
    assert!(
        (soft[2] - 1.0).abs() < 1e-7 && (0.0..1e-30).contains(&soft[3]),
        "{soft:?}"
    );
    // The set's closing NaN may be left out.
    let open = run_on(&v5(1, 0, &[3.0, 5.0]), &x).unwrap().to_f64();
    assert_eq!(open, vec![111.0, 0.0, 110.0, 2.0]);
}

#[test]
fn an_opset_5_ensemble_with_bad_sets_or_targets_is_refused() {
    let x = Value::f32(vec![1, 2], vec![0.0, 3.0]);
    let err = |proto: NodeProto| run_on(&proto, &x).unwrap_err().message;
    assert!(err(v5(1, 0, &[])).contains("fewer sets than member splits"));
    let extra = err(v5(1, 0, &[3.0, f32::NAN, 4.0]));
    assert!(extra.contains("more sets than member splits"), "{extra}");
    // A count no tensor could hold fails the load, not the allocation.
    let mut huge = v5(1, 0, &[3.0]);
    huge.attrs.retain(|(n, _)| n != "n_targets");
    huge.attrs.push(("n_targets".into(), Attr::Int(1 << 62)));
    let too_large = run_on(&huge, &x).unwrap_err();
    assert_eq!(
        too_large.kind,
        crate::NnErrorKind::TooLarge,
        "{}",
        too_large.message
    );
}
