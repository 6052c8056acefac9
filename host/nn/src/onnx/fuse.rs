//! Load-time fusion of two patterns that exporters (PyTorch's among them)
//! spell out node by node in transformer graphs:
//!
//! - layer normalisation over the last axis: `ReduceMean`, `Sub`, `Pow(2)`,
//!   `ReduceMean`, `Add(eps)`, `Sqrt`, `Div`, `Mul(weight)`, `Add(bias)` —
//!   nine passes over the activations — becomes one `WeftLayerNorm` node;
//! - exact GELU: `Div(√2)`, `Erf`, `Add(1)`, `Mul(x)`, `Mul(0.5)` becomes
//!   one `WeftGelu` node (computed in the same order, in f32, so the result
//!   is the same bit for bit);
//! - BERT-style multi-head attention (three `Reshape`+`Transpose` head
//!   splits, `MatMul`, `Div(scale)`, `Add(mask)`, `Softmax`, `MatMul`,
//!   `Transpose` back) becomes one `WeftAttention` node that reads the
//!   heads in place and never materialises a transposed copy;
//! - a `MatMul` by a 2-D weight then the `Add` of a bias vector becomes one
//!   `WeftMatMulBias` node: the product accumulates onto the broadcast bias
//!   (CPU models only: a GPU model keeps its `MatMul`s on the device);
//! - then, a `WeftMatMulBias` read only by a residual `Add` or by a
//!   `WeftGelu` takes that step in too, applied to each stretch of the
//!   product as the kernel finishes it, while it is in cache (inputs 3 and
//!   4-6 of `WeftMatMulBias`): one pass over the activations fewer each.
//!
//! A pattern is fused only when its intermediate values feed nothing else
//! (no other node, no graph output) and its constants are initializers of
//! the expected kind; anything else runs as written. The fused node takes
//! the place of the pattern's last node, whose output it produces.
//! `WEFT_NN_NO_FUSE=1` turns fusion off (to compare, or to rule it out).

use std::collections::HashMap;
use std::sync::Arc;

use super::proto::{Attr, NodeProto};
use super::value::{Data, Value};

/// Whether fusion is on (`WEFT_NN_NO_FUSE` unset or `0`).
pub(super) fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WEFT_NN_NO_FUSE").is_none_or(|v| v == "0"))
}

/// What the matchers look at.
struct Graph<'a> {
    nodes: &'a [NodeProto],
    weights: &'a HashMap<String, Arc<Value>>,
    /// How many node inputs and graph outputs read each value.
    uses: HashMap<&'a str, usize>,
    /// The node producing each value.
    producer: HashMap<&'a str, usize>,
}

impl<'a> Graph<'a> {
    /// The node producing `name` if it is `op` and `name` is read `uses`
    /// times in all.
    fn made_by(&self, name: &str, op: &str, uses: usize) -> Option<usize> {
        let i = *self.producer.get(name)?;
        (self.nodes[i].op_type == op
            && self.uses.get(name) == Some(&uses)
            && self.nodes[i].domain.is_empty())
        .then_some(i)
    }

    /// An f32 initializer's values.
    fn floats(&self, name: &str) -> Option<&'a [f32]> {
        match &self.weights.get(name)?.data {
            Data::F32(v) => Some(v.as_slice()),
            _ => None,
        }
    }

    fn scalar(&self, name: &str) -> Option<f32> {
        self.floats(name).filter(|v| v.len() == 1).map(|v| v[0])
    }

    /// A 1-D f32 initializer (a LayerNorm weight or bias).
    fn vector(&self, name: &str) -> bool {
        self.weights
            .get(name)
            .is_some_and(|w| w.shape.len() == 1 && matches!(w.data, Data::F32(_)))
    }

    /// The two inputs of binary node `i`, the one satisfying `is_const`
    /// second (either order).
    fn split(&self, i: usize, is_const: impl Fn(&str) -> bool) -> Option<(&'a str, &'a str)> {
        let n = &self.nodes[i];
        let [a, b] = n.inputs.as_slice() else {
            return None;
        };
        if is_const(b) {
            Some((a.as_str(), b.as_str()))
        } else if is_const(a) {
            Some((b.as_str(), a.as_str()))
        } else {
            None
        }
    }

    /// Whether node `i` is a `ReduceMean` over the last axis with keepdims.
    fn mean_last(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        let attr = |name: &str| n.attrs.iter().find(|(k, _)| k == name).map(|(_, a)| a);
        n.inputs.len() == 1
            && matches!(attr("axes"), Some(Attr::Ints(a)) if a == &[-1])
            && matches!(attr("keepdims"), None | Some(Attr::Int(1)))
    }

    /// The layer normalisation ending at `Add` node `i`: the nodes it
    /// covers and the fused node.
    fn layer_norm(&self, i: usize) -> Option<(Vec<usize>, NodeProto)> {
        let end = &self.nodes[i];
        let (m_out, bias) = self.split(i, |n| self.vector(n))?;
        let mul = self.made_by(m_out, "Mul", 1)?;
        let (d_out, weight) = self.split(mul, |n| self.vector(n))?;
        let div = self.made_by(d_out, "Div", 1)?;
        let [s_out, q_out] = self.nodes[div].inputs.as_slice() else {
            return None;
        };
        let sqrt = self.made_by(q_out, "Sqrt", 1)?;
        let add = self.made_by(&self.nodes[sqrt].inputs[0], "Add", 1)?;
        let (v_out, eps) = self.split(add, |n| self.scalar(n).is_some())?;
        let mean2 = self.made_by(v_out, "ReduceMean", 1)?;
        let pow = self.made_by(&self.nodes[mean2].inputs[0], "Pow", 1)?;
        let (p_in, two) = self.split(pow, |n| self.scalar(n) == Some(2.0))?;
        let _ = two;
        let sub = self.made_by(s_out, "Sub", 2)?;
        if p_in != s_out {
            return None;
        }
        let [x, m1_out] = self.nodes[sub].inputs.as_slice() else {
            return None;
        };
        let mean1 = self.made_by(m1_out, "ReduceMean", 1)?;
        if &self.nodes[mean1].inputs[0] != x || !self.mean_last(mean1) || !self.mean_last(mean2) {
            return None;
        }
        let fused = NodeProto {
            name: end.name.clone(),
            op_type: "WeftLayerNorm".into(),
            domain: String::new(),
            inputs: vec![x.clone(), eps.into(), weight.into(), bias.into()],
            outputs: end.outputs.clone(),
            attrs: Vec::new(),
        };
        Some((vec![mean1, sub, pow, mean2, add, sqrt, div, mul, i], fused))
    }

    /// A `MatMul` by a 2-D weight followed by the `Add` of a bias vector,
    /// ending at `Add` node `i`.
    fn matmul_bias(&self, i: usize) -> Option<(Vec<usize>, NodeProto)> {
        let end = &self.nodes[i];
        let (mm_out, bias) = self.split(i, |n| self.vector(n))?;
        let mm = self.made_by(mm_out, "MatMul", 1)?;
        let [a, w] = self.nodes[mm].inputs.as_slice() else {
            return None;
        };
        let weight = self.weights.get(w.as_str())?;
        let cols = match weight.shape.as_slice() {
            [_, cols] if matches!(weight.data, Data::F32(_)) => *cols,
            _ => return None,
        };
        if self.weights.get(bias)?.shape != [cols] {
            return None;
        }
        let fused = NodeProto {
            name: end.name.clone(),
            op_type: "WeftMatMulBias".into(),
            domain: String::new(),
            inputs: vec![a.clone(), w.clone(), bias.into()],
            outputs: end.outputs.clone(),
            attrs: Vec::new(),
        };
        Some((vec![mm, i], fused))
    }

    /// The `Ints` attribute `name` of node `i`.
    fn ints(&self, i: usize, name: &str) -> Option<&'a [i64]> {
        self.nodes[i]
            .attrs
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, a)| match a {
                Attr::Ints(v) => Some(v.as_slice()),
                _ => None,
            })
    }

    /// `Transpose(Reshape(x, shape), perm)` producing `name` (read once, as
    /// is the reshape): `(x, shape)`.
    fn heads(&self, name: &str, perm: &[i64]) -> Option<(&'a str, &'a str, [usize; 2])> {
        let t = self.made_by(name, "Transpose", 1)?;
        if self.ints(t, "perm")? != perm {
            return None;
        }
        let r = self.made_by(&self.nodes[t].inputs[0], "Reshape", 1)?;
        let [x, shape] = self.nodes[r].inputs.as_slice() else {
            return None;
        };
        Some((x.as_str(), shape.as_str(), [t, r]))
    }

    /// Multi-head attention as BERT exporters write it, ending at the
    /// `Transpose` node `i` that puts the heads back:
    /// `Transpose(MatMul(Softmax(Add(Div(MatMul(Q, K), scale), mask)), V))`
    /// with Q, K and V each a `Transpose(Reshape(projection, [B, S, H, D]))`.
    fn attention(&self, i: usize) -> Option<(Vec<usize>, NodeProto)> {
        let end = &self.nodes[i];
        if self.ints(i, "perm")? != [0, 2, 1, 3] {
            return None;
        }
        let mm2 = self.made_by(&end.inputs[0], "MatMul", 1)?;
        let [p_out, v_out] = self.nodes[mm2].inputs.as_slice() else {
            return None;
        };
        let softmax = self.made_by(p_out, "Softmax", 1)?;
        let axis = self.nodes[softmax]
            .attrs
            .iter()
            .find(|(k, _)| k == "axis")
            .map(|(_, a)| a);
        if !matches!(axis, Some(Attr::Int(-1) | Attr::Int(3))) {
            return None;
        }
        let add = self.made_by(&self.nodes[softmax].inputs[0], "Add", 1)?;
        let [s_out, mask] = self.nodes[add].inputs.as_slice() else {
            return None;
        };
        let div = self.made_by(s_out, "Div", 1)?;
        let [mm1_out, scale] = self.nodes[div].inputs.as_slice() else {
            return None;
        };
        self.scalar(scale)?;
        let mm1 = self.made_by(mm1_out, "MatMul", 1)?;
        let [q_out, k_out] = self.nodes[mm1].inputs.as_slice() else {
            return None;
        };
        let (q, q_shape, qn) = self.heads(q_out, &[0, 2, 1, 3])?;
        let (k, k_shape, kn) = self.heads(k_out, &[0, 2, 3, 1])?;
        let (v, v_shape, vn) = self.heads(v_out, &[0, 2, 1, 3])?;
        let fused = NodeProto {
            name: end.name.clone(),
            op_type: "WeftAttention".into(),
            domain: String::new(),
            inputs: [
                q,
                k,
                v,
                q_shape,
                k_shape,
                v_shape,
                scale.as_str(),
                mask.as_str(),
            ]
            .map(String::from)
            .to_vec(),
            outputs: end.outputs.clone(),
            attrs: Vec::new(),
        };
        let mut group = vec![mm1, div, add, softmax, mm2, i];
        group.extend(qn.into_iter().chain(kn).chain(vn));
        Some((group, fused))
    }

    /// The exact GELU ending at `Mul` node `i`.
    fn gelu(&self, i: usize) -> Option<(Vec<usize>, NodeProto)> {
        let end = &self.nodes[i];
        let (m_out, half) = self.split(i, |n| self.scalar(n) == Some(0.5))?;
        let mul = self.made_by(m_out, "Mul", 1)?;
        let [a, b] = self.nodes[mul].inputs.as_slice() else {
            return None;
        };
        let (x, add) = match (self.made_by(b, "Add", 1), self.made_by(a, "Add", 1)) {
            (Some(add), _) => (a, add),
            (None, Some(add)) => (b, add),
            _ => return None,
        };
        let (e_out, one) = self.split(add, |n| self.scalar(n) == Some(1.0))?;
        let erf = self.made_by(e_out, "Erf", 1)?;
        let div = self.made_by(&self.nodes[erf].inputs[0], "Div", 1)?;
        let (d_in, root2) = self.split(div, |n| self.scalar(n).is_some())?;
        let is_root2 = self
            .scalar(root2)
            .is_some_and(|r| (r - std::f32::consts::SQRT_2).abs() < 1e-6);
        if d_in != x.as_str() || !is_root2 || self.nodes[div].inputs[0] != *x {
            return None;
        }
        let fused = NodeProto {
            name: end.name.clone(),
            op_type: "WeftGelu".into(),
            domain: String::new(),
            inputs: vec![x.clone(), root2.into(), one.into(), half.into()],
            outputs: end.outputs.clone(),
            attrs: Vec::new(),
        };
        Some((vec![div, erf, add, mul, i], fused))
    }
}

/// `nodes` with the patterns above fused. `products`: whether to fuse
/// weight products with their bias too (not for a model whose products
/// run on a GPU, which keeps its `MatMul`s).
pub(super) fn fuse(
    nodes: Vec<NodeProto>,
    weights: &HashMap<String, Arc<Value>>,
    outputs: &[String],
    products: bool,
) -> Vec<NodeProto> {
    let mut replace: Vec<Option<NodeProto>> = vec![None; nodes.len()];
    let mut covered = vec![false; nodes.len()];
    {
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for n in &nodes {
            for i in n.inputs.iter().filter(|i| !i.is_empty()) {
                *uses.entry(i.as_str()).or_default() += 1;
            }
        }
        for o in outputs {
            *uses.entry(o.as_str()).or_default() += 1;
        }
        let mut producer = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for o in n.outputs.iter().filter(|o| !o.is_empty()) {
                producer.insert(o.as_str(), i);
            }
        }
        let g = Graph {
            nodes: &nodes,
            weights,
            uses,
            producer,
        };
        for i in 0..nodes.len() {
            let found = match (nodes[i].op_type.as_str(), nodes[i].domain.is_empty()) {
                ("Add", true) => g
                    .layer_norm(i)
                    .or_else(|| products.then(|| g.matmul_bias(i)).flatten()),
                ("Mul", true) => g.gelu(i),
                ("Transpose", true) => g.attention(i),
                _ => None,
            };
            if let Some((group, fused)) = found
                && group.iter().all(|&j| !covered[j])
            {
                group.iter().for_each(|&j| covered[j] = true);
                replace[i] = Some(fused);
            }
        }
    }
    let nodes = nodes
        .into_iter()
        .zip(replace)
        .zip(covered)
        .filter_map(|((node, fused), covered)| match fused {
            Some(f) => Some(f),
            None if covered => None,
            None => Some(node),
        })
        .collect();
    if products {
        epilogues(nodes, outputs)
    } else {
        nodes
    }
}

/// Folds into each `WeftMatMulBias` the `Add` of a residual or the
/// `WeftGelu` that alone reads its product (an `Add` then a `WeftGelu`
/// both, in that order). The `Add`'s other input is the residual: the
/// kernel adds it where it has the product's shape and leaves any
/// broadcast to after the product, as the `Add` would.
fn epilogues(mut nodes: Vec<NodeProto>, outputs: &[String]) -> Vec<NodeProto> {
    let mut uses: HashMap<String, usize> = HashMap::new();
    for i in nodes.iter().flat_map(|n| &n.inputs).chain(outputs) {
        *uses.entry(i.clone()).or_default() += 1;
    }
    let mut producer: HashMap<String, usize> = HashMap::new();
    let mut gone = vec![false; nodes.len()];
    for i in 0..nodes.len() {
        let node = &nodes[i];
        // The product this node reads (its only reader), and the inputs
        // it adds to the product node's.
        let reads = |x: &str, most: usize| {
            let j = *producer.get(x)?;
            let p = &nodes[j];
            (p.op_type == "WeftMatMulBias" && p.inputs.len() <= most && uses.get(x) == Some(&1))
                .then_some(j)
        };
        let fold = match (
            node.op_type.as_str(),
            node.domain.is_empty(),
            node.inputs.as_slice(),
        ) {
            ("Add", true, [x, y]) => match (reads(x, 3), reads(y, 3)) {
                (Some(j), _) => Some((j, vec![y.clone()])),
                (None, Some(j)) => Some((j, vec![x.clone()])),
                _ => None,
            },
            ("WeftGelu", true, [x, gelu @ ..]) if gelu.len() == 3 => reads(x, 4).map(|j| {
                let mut extra = vec![String::new(); 4 - nodes[j].inputs.len()];
                extra.extend_from_slice(gelu);
                (j, extra)
            }),
            _ => None,
        };
        if let Some((j, extra)) = fold {
            let mut inputs = std::mem::take(&mut nodes[j].inputs);
            inputs.extend(extra);
            gone[j] = true;
            let node = &mut nodes[i];
            node.op_type = "WeftMatMulBias".into();
            node.inputs = inputs;
            node.attrs.clear();
        }
        for o in &nodes[i].outputs {
            producer.insert(o.clone(), i);
        }
    }
    nodes
        .into_iter()
        .zip(gone)
        .filter_map(|(n, gone)| (!gone).then_some(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::onnx::exec::OnnxModel;
    use crate::{Model, Tensor};

    fn minilm() -> Vec<u8> {
        // Where `cargo xtask models` puts it (`WEFT_MODELS` overrides).
        let dir = std::env::var_os("WEFT_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/models")
            });
        let path = dir.join("minilm/model.onnx");
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask models`", path.display()))
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
        let model = crate::onnx::proto::model(&bytes).unwrap();
        let mut weights = HashMap::new();
        for t in model.graph.initializers {
            let (name, v) = crate::onnx::proto::tensor(t).unwrap();
            weights.insert(name, Arc::new(v));
        }
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
            let model = crate::onnx::proto::model(&bytes).unwrap();
            let mut weights = HashMap::new();
            for t in model.graph.initializers {
                let (name, v) = crate::onnx::proto::tensor(t).unwrap();
                weights.insert(name, Arc::new(v));
            }
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
        let model = crate::onnx::proto::model(&alone).unwrap();
        let mut weights = HashMap::new();
        for t in model.graph.initializers {
            let (name, v) = crate::onnx::proto::tensor(t).unwrap();
            weights.insert(name, Arc::new(v));
        }
        let nodes = model.graph.nodes;
        assert_eq!(fuse(nodes.clone(), &weights, &["y".into()], true).len(), 1);
        // `e` is an output too: nothing fuses.
        assert_eq!(
            fuse(nodes, &weights, &["y".into(), "e".into()], true).len(),
            5
        );
    }
}
