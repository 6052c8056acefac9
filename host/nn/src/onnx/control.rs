//! Control flow: `If` and `Loop`, whose branches and bodies are graphs held
//! by the node's attributes.
//!
//! A subgraph may read any value of the graphs around it by name. At load,
//! [`capture`] appends the names a node's subgraphs read from outside to
//! the node's own inputs (after its declared ones, counted in the
//! `weft:declared` attribute), so that the interpreter keeps those values
//! alive until the node runs, brings them back from a device, and hands
//! them over like any input. [`body`] builds each subgraph as a graph of
//! its own (fused, packed, uploaded as the main graph is), the outer
//! weights it reads becoming its weights and the other values it reads
//! its inputs, after its declared ones.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::exec::{Graph, tensor_type};
use super::ops::{Node, axis, index_axis, req, stack};
use super::proto::{Attr, NodeProto, SubGraph, ValueInfo};
use super::value::{Value, fail};
use super::weights::LoadCache;
use crate::NnError;
use crate::gpu::Gpu;

/// The attribute recording how many of a node's inputs are its own.
const DECLARED: &str = "weft:declared";

/// A `Loop` with neither a trip count nor a condition that turns false
/// stops here, with an error, rather than spin forever.
const MAX_ITERATIONS: i64 = if cfg!(test) { 1000 } else { 1 << 24 };

/// The names `sub` reads that it does not define (inputs, initializers,
/// node outputs), in order of first use.
fn free_names(sub: &SubGraph) -> Vec<String> {
    let mut defined: HashSet<&str> = sub.inputs.iter().map(|i| i.name.as_str()).collect();
    defined.extend(sub.initializers.iter().map(|(n, _)| n.as_str()));
    let mut free: Vec<String> = Vec::new();
    let mut read = |name: &str, defined: &HashSet<&str>| {
        if !name.is_empty() && !defined.contains(name) && !free.iter().any(|f| f == name) {
            free.push(name.to_string());
        }
    };
    for n in &sub.nodes {
        for i in &n.inputs {
            read(i, &defined);
        }
        defined.extend(n.outputs.iter().map(String::as_str));
    }
    for o in &sub.outputs {
        read(&o.name, &defined);
    }
    free
}

/// Appends to each control-flow node of `nodes` (subgraphs first, so that
/// what an inner node reads from outside is read by the outer one too) the
/// names its subgraphs read from the graphs around them.
pub(super) fn capture(nodes: &mut [NodeProto]) {
    for node in nodes {
        // The count is ours to write: a file's own is dropped.
        node.attrs.retain(|(n, _)| n != DECLARED);
        let mut free: Vec<String> = Vec::new();
        for (_, attr) in &mut node.attrs {
            if let Attr::Graph(sub) = attr {
                capture(&mut sub.nodes);
                for name in free_names(sub) {
                    if !free.contains(&name) {
                        free.push(name);
                    }
                }
            }
        }
        if !free.is_empty() {
            let declared = node.inputs.len() as i64;
            node.attrs.push((DECLARED.into(), Attr::Int(declared)));
            node.inputs.extend(free);
        }
    }
}

/// Runs a subgraph on its declared inputs' values (the values it reads
/// from outside are added by name), giving its outputs.
type Call<'a> = dyn Fn(&Graph, Vec<Value>) -> Result<Vec<Arc<Value>>, NnError> + 'a;

/// How many of `node`'s inputs are its own (the rest were captured).
pub(super) fn declared(node: &NodeProto) -> usize {
    node.attrs
        .iter()
        .find_map(|(n, a)| match (n.as_str(), a) {
            (DECLARED, Attr::Int(d)) => Some(*d as usize),
            _ => None,
        })
        .unwrap_or(node.inputs.len())
}

/// Builds subgraph `sub` of `node`: its initializers and the `outer`
/// weights it reads are its weights; its declared inputs, then the other
/// values it reads from outside, are its inputs.
pub(super) fn body(
    opset: i64,
    node: &NodeProto,
    sub: &SubGraph,
    outer: &HashMap<String, Arc<Value>>,
    gpu: Option<Arc<Gpu>>,
    fuse: bool,
    shared: &mut LoadCache,
) -> Result<Graph, NnError> {
    let mut weights: HashMap<String, Arc<Value>> = sub
        .initializers
        .iter()
        .map(|(n, v)| (n.clone(), Arc::new(v.clone())))
        .collect();
    let mut inputs = Vec::new();
    for info in &sub.inputs {
        inputs.push((info.clone(), tensor_type(info)?));
    }
    for name in free_names(sub) {
        match outer.get(&name) {
            Some(w) => {
                weights.insert(name, Arc::clone(w));
            }
            None => {
                let info = ValueInfo {
                    name,
                    elem_type: None,
                    non_tensor: false,
                    shape: None,
                };
                inputs.push((info, None));
            }
        }
    }
    for o in &sub.outputs {
        tensor_type(o)?;
    }
    let outputs = sub.outputs.iter().map(|o| o.name.clone()).collect();
    let mut g = Graph::build(
        opset,
        sub.nodes.clone(),
        weights,
        inputs,
        outputs,
        gpu,
        fuse,
        shared,
    )
    .map_err(|e| {
        NnError::new(
            e.kind,
            format!(
                "a subgraph of node `{}` ({}): {}",
                node.name, node.op_type, e.message
            ),
        )
    })?;
    g.formal = sub.inputs.len();
    Ok(g)
}

/// Runs control-flow node `node` on its declared inputs `args` (captured
/// ones after them), its subgraphs `subs` by attribute name, and the
/// values around it, `env`.
pub(super) fn run(
    node: Node<'_>,
    args: &[Option<&Value>],
    subs: &[(String, Arc<Graph>)],
    env: &HashMap<&str, Arc<Value>>,
) -> Result<Vec<Value>, NnError> {
    let graph = |name: &str| {
        subs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, g)| g)
            .ok_or_else(|| fail(format!("{} has no `{name}` graph", node.proto.op_type)))
    };
    let n = declared(node.proto);
    // A subgraph's inputs past the declared ones are values read from
    // outside, by name.
    let call = |g: &Graph, formal: Vec<Value>| -> Result<Vec<Arc<Value>>, NnError> {
        let mut values: Vec<Arc<Value>> = formal.into_iter().map(Arc::new).collect();
        for (info, _) in &g.inputs[values.len()..] {
            let v = env.get(info.name.as_str()).ok_or_else(|| {
                fail(format!(
                    "the subgraph reads `{}`, which nothing produced",
                    info.name
                ))
            })?;
            values.push(Arc::clone(v));
        }
        g.execute(values)
    };
    let owned = |v: Arc<Value>| Arc::try_unwrap(v).unwrap_or_else(|v| (*v).clone());
    match node.proto.op_type.as_str() {
        "If" => {
            if n != 1 {
                return Err(fail(format!("If takes 1 input (the condition), not {n}")));
            }
            let cond = req(args, 0)?.to_bool();
            let [cond] = cond[..] else {
                return Err(fail(format!(
                    "If's condition has {} values, not 1",
                    cond.len()
                )));
            };
            let g = graph(if cond { "then_branch" } else { "else_branch" })?;
            if g.formal != 0 {
                return Err(fail(format!(
                    "If's branches take no inputs; this one takes {}",
                    g.formal
                )));
            }
            if g.outputs.len() != node.proto.outputs.len() {
                return Err(fail(format!(
                    "the branch gives {} outputs, the node {}",
                    g.outputs.len(),
                    node.proto.outputs.len()
                )));
            }
            Ok(call(g, Vec::new())?.into_iter().map(owned).collect())
        }
        "Loop" => {
            let body = graph("body")?;
            let trips = args.first().copied().flatten().map(|m| m.to_i64());
            let trips = match trips.as_deref() {
                None => None,
                Some([m]) => Some(*m),
                Some(m) => {
                    return Err(fail(format!(
                        "Loop's trip count has {} values, not 1",
                        m.len()
                    )));
                }
            };
            let mut cond = match args
                .get(1)
                .copied()
                .flatten()
                .map(Value::to_bool)
                .as_deref()
            {
                None => true,
                Some([c]) => *c,
                Some(c) => {
                    return Err(fail(format!(
                        "Loop's condition has {} values, not 1",
                        c.len()
                    )));
                }
            };
            let mut carried: Vec<Value> = (2..n)
                .map(|i| req(args, i).cloned())
                .collect::<Result<_, _>>()?;
            if n < 2 {
                return Err(fail(format!(
                    "Loop takes a trip count and a condition (either may be \"\") before its \
                     loop-carried values; it has {n} inputs"
                )));
            }
            let formal = 2 + carried.len();
            if body.formal != formal || body.outputs.len() < 1 + carried.len() {
                return Err(fail(format!(
                    "Loop's body takes {} inputs and gives {} outputs; it must take the \
                     iteration number, the condition and the {} loop-carried values, and give \
                     the condition and those values first",
                    body.formal,
                    body.outputs.len(),
                    carried.len()
                )));
            }
            let kept = carried.len();
            let scans = body.outputs.len() - 1 - kept;
            let mut scanned: Vec<Vec<Value>> = vec![Vec::new(); scans];
            let mut i = 0;
            while cond && trips.is_none_or(|m| i < m) {
                if i == MAX_ITERATIONS {
                    return Err(fail(format!(
                        "Loop ran {MAX_ITERATIONS} iterations without stopping"
                    )));
                }
                let mut formal = vec![Value::i64(vec![], vec![i]), Value::bool(vec![], vec![cond])];
                formal.append(&mut carried);
                let mut outs = call(body, formal)?.into_iter().map(owned);
                let c = outs.next().expect("checked: the condition").to_bool();
                cond = c.first().copied().unwrap_or(false);
                carried = outs.by_ref().take(kept).collect();
                for (k, v) in outs.enumerate() {
                    // Stacked at the end: refuse before the rows pile up.
                    super::value::numel(&[scanned[k].len() + 1, v.len()], "a Loop's scan output")?;
                    scanned[k].push(v);
                }
                i += 1;
            }
            let mut out = carried;
            for values in scanned {
                out.push(stack(&values, 0)?);
            }
            Ok(out)
        }
        "Scan" => scan(node, args, n, graph("body")?, &call),
        op => Err(fail(format!("{op} is not a control-flow operator"))),
    }
}

/// `Scan` (opset 9 on: `exec::check_nodes` refuses opset 8's, which has a
/// batch axis and sequence lengths): the body runs once per slice of the scan inputs
/// (along their axes, forward or backward), carrying the state values
/// from one run to the next; its scan outputs are stacked (along their
/// axes, in their directions).
fn scan(
    node: Node<'_>,
    args: &[Option<&Value>],
    declared: usize,
    body: &Graph,
    call: &Call<'_>,
) -> Result<Vec<Value>, NnError> {
    let m = node.int("num_scan_inputs", 0).max(0) as usize;
    let Some(states) = declared.checked_sub(m) else {
        return Err(fail(format!(
            "Scan has {declared} inputs, fewer than num_scan_inputs {m}"
        )));
    };
    let inputs: Vec<&Value> = (0..declared)
        .map(|i| req(args, i))
        .collect::<Result<_, _>>()?;
    let list =
        |name: &str, len: usize| -> Vec<i64> { node.ints(name).unwrap_or_else(|| vec![0; len]) };
    let (in_axes, in_dirs) = (list("scan_input_axes", m), list("scan_input_directions", m));
    let k = body.outputs.len().saturating_sub(states);
    let (out_axes, out_dirs) = (
        list("scan_output_axes", k),
        list("scan_output_directions", k),
    );
    if in_axes.len() != m || in_dirs.len() != m || out_axes.len() != k || out_dirs.len() != k {
        return Err(fail(
            "Scan's axes and directions must have one entry per scan input or output",
        ));
    }
    if body.formal != states + m || body.outputs.len() < states {
        return Err(fail(format!(
            "Scan's body takes {} inputs and gives {} outputs; it must take the {states} state \
             values and a slice of each of the {m} scan inputs, and give the states first",
            body.formal,
            body.outputs.len()
        )));
    }
    let scanned: Vec<(&Value, usize)> = inputs[states..]
        .iter()
        .zip(&in_axes)
        .map(|(v, &a)| Ok((*v, axis(a, v.shape.len())?)))
        .collect::<Result<_, NnError>>()?;
    let steps = scanned.first().map_or(0, |(v, a)| v.shape[*a]);
    if let Some((v, a)) = scanned.iter().find(|(v, a)| v.shape[*a] != steps) {
        return Err(fail(format!(
            "Scan's inputs differ in length: {steps} and {} (shape {:?}, axis {a})",
            v.shape[*a], v.shape
        )));
    }
    let mut state: Vec<Value> = inputs[..states].iter().map(|v| (*v).clone()).collect();
    let mut outs: Vec<Vec<Value>> = vec![Vec::new(); k];
    for t in 0..steps {
        let mut formal = std::mem::take(&mut state);
        for ((v, a), &dir) in scanned.iter().zip(&in_dirs) {
            let at = if dir == 1 { steps - 1 - t } else { t };
            formal.push(index_axis(v, *a, at));
        }
        let mut results = call(body, formal)?
            .into_iter()
            .map(|v| Arc::try_unwrap(v).unwrap_or_else(|v| (*v).clone()));
        state = results.by_ref().take(states).collect();
        for (j, v) in results.enumerate() {
            outs[j].push(v);
        }
    }
    let mut result = state;
    for ((mut values, &a), &dir) in outs.into_iter().zip(&out_axes).zip(&out_dirs) {
        if dir == 1 {
            values.reverse();
        }
        let rank = values.first().map_or(0, |v| v.shape.len()) + 1;
        result.push(stack(&values, axis(a, rank)?)?);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
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
}
