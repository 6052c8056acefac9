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
    // A subgraph may pass sequences and optionals in and out (a Loop
    // carrying a list it appends to); only the outermost graph's inputs
    // and outputs cross `wasi:nn`, which passes tensors only.
    let declared = |info: &ValueInfo| match info.non_tensor {
        true => Ok(None),
        false => tensor_type(info),
    };
    for info in &sub.inputs {
        inputs.push((info.clone(), declared(info)?));
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
        declared(o)?;
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
mod tests;
