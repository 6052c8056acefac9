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
//!   `WeftMatMulBias` node: the product's sums start from the bias
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
        // (√2 as a half or bfloat16 is 1.4140625; the kernel divides by
        // the constant as given, so the fused node computes what it did.)
        let is_root2 = self
            .scalar(root2)
            .is_some_and(|r| (r - std::f32::consts::SQRT_2).abs() < 1e-3);
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
mod tests;
