//! ONNX: a protobuf field walker over `ModelProto` → `GraphProto` →
//! `NodeProto`, used here to refuse a file that is not a complete ONNX
//! model and to list what it contains (opsets, operators, initializers,
//! inputs and outputs), and by [`proto`] to decode a graph for the CPU
//! interpreter in [`exec`] (values in [`value`], operators in [`ops`]).
//! Field numbers are those of `onnx.proto3`.

mod control;
mod device;
mod dtype;
pub(crate) mod exec;
mod fuse;
mod narrow;
mod ops;
mod proto;
mod value;
mod weights;
pub(crate) mod write;

use std::collections::BTreeMap;

use crate::ModelError;

/// What an ONNX model holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OnnxInfo {
    /// `ir_version`.
    pub ir_version: u64,
    /// Opset imports: (domain, version); `""` is the default domain.
    pub opsets: Vec<(String, u64)>,
    /// Operator types and how often each occurs.
    pub ops: BTreeMap<String, usize>,
    /// Number of nodes.
    pub nodes: usize,
    /// Names of the initializers (weights).
    pub initializers: Vec<String>,
    /// Graph input names (weights excluded).
    pub inputs: Vec<String>,
    /// Graph output names.
    pub outputs: Vec<String>,
}

/// One protobuf field: number and payload.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed32 or fixed64 payload, zero-extended.
    Fixed(u64),
}

fn malformed(what: &str) -> ModelError {
    ModelError(format!("malformed ONNX: {what}"))
}

fn varint(b: &[u8], at: &mut usize, what: &str) -> Result<u64, ModelError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b
            .get(*at)
            .ok_or_else(|| malformed(&format!("{what} is cut short")))?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(malformed(&format!("{what} has a varint over 10 bytes")))
}

/// The fields of one message, in order.
fn fields<'a>(b: &'a [u8], what: &str) -> Result<Vec<(u64, Field<'a>)>, ModelError> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let key = varint(b, &mut at, what)?;
        let (number, wire) = (key >> 3, key & 7);
        if number == 0 {
            return Err(malformed(&format!("{what} has a field numbered 0")));
        }
        let field = match wire {
            0 => Field::Varint(varint(b, &mut at, what)?),
            1 | 5 => {
                let size = if wire == 1 { 8 } else { 4 };
                let raw = b
                    .get(at..at + size)
                    .ok_or_else(|| malformed(&format!("{what} is cut short")))?;
                at += size;
                let mut v = [0u8; 8];
                v[..size].copy_from_slice(raw);
                Field::Fixed(u64::from_le_bytes(v))
            }
            2 => {
                let len = varint(b, &mut at, what)?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| at.checked_add(l))
                    .filter(|&e| e <= b.len())
                    .ok_or_else(|| malformed(&format!("{what} has a field longer than the data left; was the upload cut short?")))?;
                let s = &b[at..end];
                at = end;
                Field::Bytes(s)
            }
            other => {
                return Err(malformed(&format!(
                    "{what} uses protobuf wire type {other}"
                )));
            }
        };
        out.push((number, field));
    }
    Ok(out)
}

fn text(f: &Field<'_>, what: &str) -> Result<String, ModelError> {
    match f {
        Field::Bytes(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| malformed(&format!("{what} is not UTF-8")))
        }
        _ => Err(malformed(&format!("{what} is not a string"))),
    }
}

/// The `name` (field 1) of a `ValueInfoProto` / `TensorProto`-like message
/// whose name is field `name_field`.
fn name_of(b: &[u8], name_field: u64, what: &str) -> Result<String, ModelError> {
    for (n, f) in fields(b, what)? {
        if n == name_field {
            return text(&f, what);
        }
    }
    Ok(String::new())
}

pub(crate) fn inspect(bytes: &[u8]) -> Result<OnnxInfo, ModelError> {
    let mut info = OnnxInfo::default();
    let mut graph = None;
    for (n, f) in fields(bytes, "the model")? {
        match (n, f) {
            (1, Field::Varint(v)) => info.ir_version = v,
            (7, Field::Bytes(g)) => graph = Some(g),
            (8, Field::Bytes(op)) => {
                let (mut domain, mut version) = (String::new(), 0);
                for (n, f) in fields(op, "an opset import")? {
                    match (n, &f) {
                        (1, _) => domain = text(&f, "an opset domain")?,
                        (2, Field::Varint(v)) => version = *v,
                        _ => {}
                    }
                }
                info.opsets.push((domain, version));
            }
            _ => {}
        }
    }
    if info.ir_version == 0 {
        return Err(ModelError(
            "not an ONNX model: it has no ir_version (is this the right file and encoding?)".into(),
        ));
    }
    let graph = graph.ok_or_else(|| malformed("the model has no graph"))?;
    let mut weights = std::collections::BTreeSet::new();
    let mut inputs = Vec::new();
    for (n, f) in fields(graph, "the graph")? {
        let Field::Bytes(b) = f else { continue };
        match n {
            1 => {
                info.nodes += 1;
                let what = format!("node {}", info.nodes - 1);
                let mut op = None;
                for (n, f) in fields(b, &what)? {
                    if n == 4 {
                        op = Some(text(&f, &what)?);
                    }
                }
                let op = op
                    .filter(|o| !o.is_empty())
                    .ok_or_else(|| malformed(&format!("{what} has no op_type")))?;
                *info.ops.entry(op).or_default() += 1;
            }
            5 => {
                let name = name_of(b, 8, "an initializer")?;
                weights.insert(name.clone());
                info.initializers.push(name);
            }
            11 => inputs.push(name_of(b, 1, "a graph input")?),
            12 => info.outputs.push(name_of(b, 1, "a graph output")?),
            _ => {}
        }
    }
    if info.nodes == 0 {
        return Err(malformed("the graph has no nodes"));
    }
    if info.outputs.is_empty() {
        return Err(malformed("the graph has no outputs"));
    }
    info.inputs = inputs
        .into_iter()
        .filter(|i| !weights.contains(i))
        .collect();
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::onnx as model;

    #[test]
    fn lists_ops_inputs_and_refuses_broken_files() {
        let m = model(&["MatMul", "Add", "Relu", "Add"]);
        let info = inspect(&m).unwrap();
        assert_eq!(info.ir_version, 8);
        assert_eq!(info.opsets, vec![(String::new(), 17)]);
        assert_eq!(info.ops["Add"], 2);
        assert_eq!(info.nodes, 4);
        assert_eq!(info.inputs, vec!["x"], "weights are not inputs");
        assert_eq!(info.outputs, vec!["y"]);
        for cut in [1, m.len() / 2, m.len() - 1] {
            assert!(inspect(&m[..cut]).is_err(), "cut at {cut}");
        }
        let err = inspect(b"GGUF\x03\x00\x00\x00").unwrap_err().0;
        assert!(err.contains("ONNX"), "{err}");
        assert!(inspect(&model(&[])).unwrap_err().0.contains("no nodes"));
    }
}
