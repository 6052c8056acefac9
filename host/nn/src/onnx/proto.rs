//! Decoding the parts of `onnx.proto3` the interpreter runs: `ModelProto`,
//! `GraphProto`, `NodeProto`, `AttributeProto`, `TensorProto` and the
//! tensor types of `ValueInfoProto`. Built on the field walker in the parent
//! module; field numbers are those of `onnx.proto3`.

use super::narrow;
use super::value::{DType, Data, Value, f16_to_f32};
use super::{Field, fields, malformed, text};
use crate::{NnError, NnErrorKind};

/// A decoded model: the default-domain opset and the main graph.
#[derive(Debug, Clone)]
pub(crate) struct ModelProto<'a> {
    /// Opset version of the default (`""` / `ai.onnx`) domain.
    pub(crate) opset: i64,
    pub(crate) graph: GraphProto<'a>,
}

/// A graph: nodes in topological order, weights, and its interface.
#[derive(Debug, Clone, Default)]
pub(crate) struct GraphProto<'a> {
    pub(crate) nodes: Vec<NodeProto>,
    /// Undecoded `TensorProto`s (see [`tensor`]): decoded once the nodes
    /// are known to be runnable, so that an unsupported operator is what a
    /// refusal names.
    pub(crate) initializers: Vec<&'a [u8]>,
    pub(crate) inputs: Vec<ValueInfo>,
    pub(crate) outputs: Vec<ValueInfo>,
}

/// A graph held by an attribute, decoded whole (its initializers too).
/// Its nodes may read names of the graphs around it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubGraph {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<(String, Value)>,
    pub(crate) inputs: Vec<ValueInfo>,
    pub(crate) outputs: Vec<ValueInfo>,
}

/// A graph input or output: its name and declared type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValueInfo {
    pub(crate) name: String,
    /// `Some(code)` for a tensor of `TensorProto.DataType` `code`; `None`
    /// when no type is declared.
    pub(crate) elem_type: Option<i64>,
    /// The type is a sequence, map, optional or sparse tensor.
    pub(crate) non_tensor: bool,
    /// Declared dims, when the type has a shape: `Some(n)` fixed, `None`
    /// symbolic or unknown.
    pub(crate) shape: Option<Vec<Option<usize>>>,
}

/// One operator application.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NodeProto {
    pub(crate) name: String,
    pub(crate) op_type: String,
    pub(crate) domain: String,
    /// Input names; `""` marks an omitted optional input.
    pub(crate) inputs: Vec<String>,
    pub(crate) outputs: Vec<String>,
    pub(crate) attrs: Vec<(String, Attr)>,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Attr {
    Float(f32),
    Int(i64),
    Str(Vec<u8>),
    Tensor(Value),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    /// A subgraph: `If`'s branches, `Loop`'s and `Scan`'s bodies.
    Graph(Box<SubGraph>),
    /// Graphs, sparse tensors or types: kinds the interpreter does not run.
    Unsupported(&'static str),
}

/// Decodes a model.
pub(crate) fn model(bytes: &[u8]) -> Result<ModelProto<'_>, NnError> {
    let mut graph = None;
    let mut opset = None;
    let mut ir = 0;
    for (n, f) in fields(bytes, "the model")? {
        match (n, f) {
            (1, Field::Varint(v)) => ir = v,
            (7, Field::Bytes(g)) => graph = Some(g),
            (8, Field::Bytes(op)) => {
                let (mut domain, mut version) = (String::new(), 0);
                for (n, f) in fields(op, "an opset import")? {
                    match (n, &f) {
                        (1, _) => domain = text(&f, "an opset domain")?,
                        (2, Field::Varint(v)) => version = *v as i64,
                        _ => {}
                    }
                }
                if domain.is_empty() || domain == "ai.onnx" {
                    opset = Some(version);
                }
            }
            _ => {}
        }
    }
    if ir == 0 {
        return Err(malformed("the model has no ir_version; is this an ONNX file?").into());
    }
    let graph = graph.ok_or_else(|| malformed("the model has no graph"))?;
    Ok(ModelProto {
        // Models that import no default opset predate opset imports: opset 1.
        opset: opset.unwrap_or(1),
        graph: self::graph(graph, 0)?,
    })
}

/// How deep subgraphs may nest (`If` in a `Loop` body in ...): decoding
/// recurses, so a hostile file must not nest them without end.
const MAX_DEPTH: usize = 32;

/// Decodes a graph `depth` subgraphs deep.
fn graph(b: &[u8], depth: usize) -> Result<GraphProto<'_>, NnError> {
    if depth > MAX_DEPTH {
        return Err(malformed(&format!("subgraphs nest more than {MAX_DEPTH} deep")).into());
    }
    let mut g = GraphProto::default();
    for (n, f) in fields(b, "the graph")? {
        let Field::Bytes(b) = f else { continue };
        match n {
            1 => g.nodes.push(node(b, g.nodes.len(), depth)?),
            5 => g.initializers.push(b),
            11 => g.inputs.push(value_info(b)?),
            12 => g.outputs.push(value_info(b)?),
            15 => {
                return Err(NnError::new(
                    NnErrorKind::UnsupportedOperation,
                    "the graph has sparse initializers, which weft-nn does not support",
                ));
            }
            _ => {}
        }
    }
    Ok(g)
}

fn node(b: &[u8], index: usize, depth: usize) -> Result<NodeProto, NnError> {
    let what = format!("node {index}");
    let mut node = NodeProto::default();
    for (n, f) in fields(b, &what)? {
        match n {
            1 => node.inputs.push(text(&f, &what)?),
            2 => node.outputs.push(text(&f, &what)?),
            3 => node.name = text(&f, &what)?,
            4 => node.op_type = text(&f, &what)?,
            7 => node.domain = text(&f, &what)?,
            5 => {
                let Field::Bytes(a) = f else {
                    return Err(malformed(&format!("{what} has a bad attribute")).into());
                };
                node.attrs.push(attribute(a, &what, depth)?);
            }
            _ => {}
        }
    }
    if node.op_type.is_empty() {
        return Err(malformed(&format!("{what} has no op_type")).into());
    }
    if node.name.is_empty() {
        node.name = format!("#{index}");
    }
    Ok(node)
}

fn attribute(b: &[u8], node: &str, depth: usize) -> Result<(String, Attr), NnError> {
    let what = format!("an attribute of {node}");
    let mut name = String::new();
    let mut ty = 0;
    let (mut f, mut i, mut s, mut t, mut g) = (None, None, None, None, None);
    let (mut floats, mut ints, mut strings) = (Vec::new(), Vec::new(), Vec::new());
    let mut other = None;
    for (n, field) in fields(b, &what)? {
        match (n, &field) {
            (1, _) => name = text(&field, &what)?,
            (2, Field::Fixed(v)) => f = Some(f32::from_bits(*v as u32)),
            (3, Field::Varint(v)) => i = Some(*v as i64),
            (4, Field::Bytes(v)) => s = Some(v.to_vec()),
            (5, Field::Bytes(v)) => t = Some(tensor(v)?.1),
            (6, Field::Bytes(v)) => {
                let sub = graph(v, depth + 1)?;
                g = Some(SubGraph {
                    nodes: sub.nodes,
                    initializers: sub
                        .initializers
                        .into_iter()
                        .map(tensor)
                        .collect::<Result<_, _>>()?,
                    inputs: sub.inputs,
                    outputs: sub.outputs,
                });
            }
            (11, _) => other = Some("graphs"),
            (10, _) => other = Some("tensors"),
            (22 | 23, _) => other = Some("sparse tensor"),
            (14 | 15, _) => other = Some("type"),
            (7, _) => push_floats(&field, &mut floats, &what)?,
            (8, _) => push_ints(&field, &mut ints, &what)?,
            (9, Field::Bytes(v)) => strings.push(v.to_vec()),
            (20, Field::Varint(v)) => ty = *v,
            _ => {}
        }
    }
    let attr = match ty {
        1 => Attr::Float(f.unwrap_or(0.0)),
        2 => Attr::Int(i.unwrap_or(0)),
        3 => Attr::Str(s.unwrap_or_default()),
        4 => Attr::Tensor(t.ok_or_else(|| malformed(&format!("{what} `{name}` has no tensor")))?),
        6 => Attr::Floats(floats),
        7 => Attr::Ints(ints),
        8 => Attr::Strings(strings),
        5 => {
            Attr::Graph(Box::new(g.ok_or_else(|| {
                malformed(&format!("{what} `{name}` has no graph"))
            })?))
        }
        10 => Attr::Unsupported("graphs"),
        // No type (old writers): whichever field is set.
        _ => {
            if let Some(g) = g {
                Attr::Graph(Box::new(g))
            } else if let Some(o) = other {
                Attr::Unsupported(o)
            } else if let Some(t) = t {
                Attr::Tensor(t)
            } else if let Some(f) = f {
                Attr::Float(f)
            } else if let Some(i) = i {
                Attr::Int(i)
            } else if let Some(s) = s {
                Attr::Str(s)
            } else if !floats.is_empty() {
                Attr::Floats(floats)
            } else if !strings.is_empty() {
                Attr::Strings(strings)
            } else {
                Attr::Ints(ints)
            }
        }
    };
    Ok((name, attr))
}

fn value_info(b: &[u8]) -> Result<ValueInfo, NnError> {
    let what = "a graph input or output";
    let mut info = ValueInfo {
        name: String::new(),
        elem_type: None,
        non_tensor: false,
        shape: None,
    };
    for (n, f) in fields(b, what)? {
        match (n, f) {
            (1, f) => info.name = text(&f, what)?,
            (2, Field::Bytes(ty)) => {
                for (n, f) in fields(ty, what)? {
                    let (1, Field::Bytes(tt)) = (n, f) else {
                        info.non_tensor |= matches!(n, 4 | 5 | 8 | 9);
                        continue;
                    };
                    for (n, f) in fields(tt, what)? {
                        match (n, f) {
                            (1, Field::Varint(v)) => info.elem_type = Some(v as i64),
                            (2, Field::Bytes(shape)) => info.shape = Some(dims(shape)?),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

fn dims(b: &[u8]) -> Result<Vec<Option<usize>>, NnError> {
    let mut out = Vec::new();
    for (n, f) in fields(b, "a tensor shape")? {
        let (1, Field::Bytes(d)) = (n, f) else {
            continue;
        };
        let mut dim = None;
        for (n, f) in fields(d, "a tensor dimension")? {
            if let (1, Field::Varint(v)) = (n, f) {
                dim = Some(v as usize);
            }
        }
        out.push(dim);
    }
    Ok(out)
}

fn push_ints(f: &Field<'_>, out: &mut Vec<i64>, what: &str) -> Result<(), NnError> {
    match f {
        Field::Varint(v) => out.push(*v as i64),
        Field::Bytes(b) => {
            let mut at = 0;
            while at < b.len() {
                out.push(super::varint(b, &mut at, what)? as i64);
            }
        }
        Field::Fixed(_) => {
            return Err(malformed(&format!("{what} has a fixed-width integer")).into());
        }
    }
    Ok(())
}

fn push_floats(f: &Field<'_>, out: &mut Vec<f32>, what: &str) -> Result<(), NnError> {
    match f {
        Field::Fixed(v) => out.push(f32::from_bits(*v as u32)),
        Field::Bytes(b) if b.len() % 4 == 0 => out.extend(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4"))),
        ),
        _ => return Err(malformed(&format!("{what} has bad float data")).into()),
    }
    Ok(())
}

fn push_doubles(f: &Field<'_>, out: &mut Vec<f64>, what: &str) -> Result<(), NnError> {
    match f {
        Field::Fixed(v) => out.push(f64::from_bits(*v)),
        Field::Bytes(b) if b.len() % 8 == 0 => out.extend(
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8"))),
        ),
        _ => return Err(malformed(&format!("{what} has bad double data")).into()),
    }
    Ok(())
}

/// Decodes a `TensorProto`: its name and value.
pub(crate) fn tensor(b: &[u8]) -> Result<(String, Value), NnError> {
    let mut name = String::new();
    let mut shape = Vec::new();
    let mut code = 0i64;
    let mut raw: Option<&[u8]> = None;
    let (mut f32s, mut i64s, mut f64s) = (Vec::new(), Vec::new(), Vec::new());
    let mut i32s: Vec<i64> = Vec::new();
    let mut u64s: Vec<i64> = Vec::new();
    let mut external = false;
    for (n, f) in fields(b, "a tensor")? {
        let what = "a tensor";
        match n {
            1 => {
                let mut d = Vec::new();
                push_ints(&f, &mut d, what)?;
                for v in d {
                    shape.push(
                        usize::try_from(v).map_err(|_| malformed("a tensor has a negative dim"))?,
                    );
                }
            }
            2 => {
                if let Field::Varint(v) = f {
                    code = v as i64;
                }
            }
            4 => push_floats(&f, &mut f32s, what)?,
            5 => push_ints(&f, &mut i32s, what)?,
            7 => push_ints(&f, &mut i64s, what)?,
            8 => name = text(&f, what)?,
            9 => {
                if let Field::Bytes(r) = f {
                    raw = Some(r);
                }
            }
            10 => push_doubles(&f, &mut f64s, what)?,
            11 => push_ints(&f, &mut u64s, what)?,
            14 => external = matches!(f, Field::Varint(1)),
            _ => {}
        }
    }
    let dtype = DType::from_onnx(code).ok_or_else(|| {
        NnError::new(
            NnErrorKind::UnsupportedOperation,
            format!("tensor `{name}` has element type {code} (TensorProto.DataType), which weft-nn does not support"),
        )
    })?;
    if external {
        return Err(NnError::new(
            NnErrorKind::UnsupportedOperation,
            format!(
                "tensor `{name}` keeps its data in an external file; embed the weights in the model"
            ),
        ));
    }
    // (Checked: dims whose product wraps must not pass the count check.)
    let count = (shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)))
        .ok_or_else(|| malformed(&format!("tensor `{name}` has a shape {shape:?} too large")))?;
    if let Some(bits) = dtype.packed_bits() {
        // Packed bytes, in raw_data or one to an int32_data entry.
        let need = count.div_ceil((8 / bits) as usize);
        let have = raw.map_or(i32s.len(), <[u8]>::len);
        if have != need {
            return Err(malformed(&format!(
                "tensor `{name}` of shape {shape:?} packs {count} {bits}-bit elements in \
                 {need} bytes, but has {have}"
            ))
            .into());
        }
    }
    let data = match raw {
        Some(r) => from_raw(dtype, r, count),
        // Narrow types' int32_data holds what raw_data would, a byte each.
        None if dtype.packed_bits().is_some() || dtype.is_narrow_float() => {
            let bytes: Vec<u8> = i32s.iter().map(|&v| v as u8).collect();
            from_raw(dtype, &bytes, count)
        }
        None => match dtype {
            DType::F32 => Data::F32(f32s),
            DType::F64 => Data::F64(f64s),
            DType::I64 => Data::I64(i64s),
            DType::U32 | DType::U64 => Data::I64(u64s),
            DType::F16 => Data::F32(i32s.iter().map(|&v| f16_to_f32(v as u16)).collect()),
            DType::Bf16 => Data::F32(
                i32s.iter()
                    .map(|&v| f32::from_bits((v as u32) << 16))
                    .collect(),
            ),
            DType::Bool => Data::Bool(i32s.iter().map(|&v| v != 0).collect()),
            d => Data::I64(i32s.into_iter().map(|v| d.wrap(v)).collect()),
        },
    };
    if data.len() != count {
        return Err(malformed(&format!(
            "tensor `{name}` has shape {shape:?} ({count} elements) but {} values",
            data.len()
        ))
        .into());
    }
    Ok((name, Value { dtype, shape, data }))
}

/// Little-endian element bytes of `dtype` (`count` of them: 2- and 4-bit
/// elements are packed several to a byte); a trailing partial element is
/// dropped, and too few are caught by the element count check.
fn from_raw(dtype: DType, r: &[u8], count: usize) -> Data {
    fn le<const N: usize>(r: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        r.chunks_exact(N).map(|c| c.try_into().expect("N"))
    }
    let unpacked;
    let bytes: &[u8] = match dtype.packed_bits() {
        Some(bits) => {
            unpacked = narrow::unpack(r, bits, count).unwrap_or_default();
            &unpacked
        }
        None => r,
    };
    match dtype {
        DType::F8E4M3Fn
        | DType::F8E4M3Fnuz
        | DType::F8E5M2
        | DType::F8E5M2Fnuz
        | DType::F8E8M0
        | DType::F4E2M1 => Data::F32(bytes.iter().map(|&b| dtype.decode(b)).collect()),
        DType::I4 | DType::U4 | DType::I2 | DType::U2 => {
            Data::I64(bytes.iter().map(|&b| dtype.wrap(i64::from(b))).collect())
        }
        DType::F32 => Data::F32(le::<4>(r).map(f32::from_le_bytes).collect()),
        DType::F16 => Data::F32(
            le::<2>(r)
                .map(|c| f16_to_f32(u16::from_le_bytes(c)))
                .collect(),
        ),
        DType::Bf16 => Data::F32(
            le::<2>(r)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes(c)) << 16))
                .collect(),
        ),
        DType::F64 => Data::F64(le::<8>(r).map(f64::from_le_bytes).collect()),
        DType::I8 => Data::I64(r.iter().map(|&v| i64::from(v as i8)).collect()),
        DType::U8 => Data::I64(r.iter().map(|&v| i64::from(v)).collect()),
        DType::Bool => Data::Bool(r.iter().map(|&v| v != 0).collect()),
        DType::I16 => Data::I64(
            le::<2>(r)
                .map(|c| i64::from(i16::from_le_bytes(c)))
                .collect(),
        ),
        DType::U16 => Data::I64(
            le::<2>(r)
                .map(|c| i64::from(u16::from_le_bytes(c)))
                .collect(),
        ),
        DType::I32 => Data::I64(
            le::<4>(r)
                .map(|c| i64::from(i32::from_le_bytes(c)))
                .collect(),
        ),
        DType::U32 => Data::I64(
            le::<4>(r)
                .map(|c| i64::from(u32::from_le_bytes(c)))
                .collect(),
        ),
        DType::I64 | DType::U64 => Data::I64(le::<8>(r).map(i64::from_le_bytes).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures::{bytes, var};

    #[test]
    fn decodes_tensors_in_every_encoding() {
        // dims [2] packed, float, raw data.
        let mut t = Vec::new();
        bytes(1, &[2], &mut t);
        var(2 << 3, &mut t);
        var(1, &mut t);
        bytes(8, b"w", &mut t);
        let raw: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        bytes(9, &raw, &mut t);
        let (name, v) = tensor(&t).unwrap();
        assert_eq!(name, "w");
        assert_eq!(v, Value::f32(vec![2], vec![1.5, -2.0]));

        // dims unpacked, int64, int64_data unpacked with a negative value.
        let mut t = Vec::new();
        for d in [1, 2] {
            var(1 << 3, &mut t);
            var(d, &mut t);
        }
        var(2 << 3, &mut t);
        var(7, &mut t);
        for x in [5i64, -3] {
            var(7 << 3, &mut t);
            var(x as u64, &mut t);
        }
        assert_eq!(tensor(&t).unwrap().1, Value::i64(vec![1, 2], vec![5, -3]));

        // Packed int4 (type 22) with a spare byte after its 3 elements.
        let mut spare = Vec::new();
        bytes(1, &[3], &mut spare);
        var(2 << 3, &mut spare);
        var(22, &mut spare);
        bytes(8, b"q", &mut spare);
        bytes(9, &[0x21, 0x03, 0x00], &mut spare);
        let err = tensor(&spare).unwrap_err();
        assert_eq!(err.kind, NnErrorKind::InvalidEncoding);
        assert!(
            err.message.contains("in 2 bytes, but has 3"),
            "{}",
            err.message
        );

        // A count mismatch and an unsupported type are refused.
        let mut bad = Vec::new();
        bytes(1, &[3], &mut bad);
        var(2 << 3, &mut bad);
        var(1, &mut bad);
        bytes(9, &raw, &mut bad);
        assert_eq!(tensor(&bad).unwrap_err().kind, NnErrorKind::InvalidEncoding);
        let mut s = Vec::new();
        var(2 << 3, &mut s);
        var(8, &mut s);
        assert_eq!(
            tensor(&s).unwrap_err().kind,
            NnErrorKind::UnsupportedOperation
        );
    }

    #[test]
    fn decodes_a_model_and_its_attributes() {
        let fixture = crate::fixtures::onnx(&["Relu", "Abs"]);
        let m = model(&fixture).unwrap();
        assert_eq!(m.opset, 17);
        assert_eq!(m.graph.nodes.len(), 2);
        assert_eq!(m.graph.nodes[1].op_type, "Abs");
        assert_eq!(m.graph.nodes[0].inputs, vec!["x"]);
        assert_eq!(m.graph.initializers.len(), 1);
        assert_eq!(m.graph.inputs.len(), 2);

        let mut a = Vec::new();
        bytes(1, b"perm", &mut a);
        bytes(8, &[2, 0, 1], &mut a);
        var(20 << 3, &mut a);
        var(7, &mut a);
        assert_eq!(
            attribute(&a, "n", 0).unwrap(),
            ("perm".into(), Attr::Ints(vec![2, 0, 1]))
        );
        let mut a = Vec::new();
        bytes(1, b"alpha", &mut a);
        var(2 << 3 | 5, &mut a);
        a.extend(0.5f32.to_le_bytes());
        assert_eq!(
            attribute(&a, "n", 0).unwrap(),
            ("alpha".into(), Attr::Float(0.5))
        );
        assert!(model(b"\x0a\xff").is_err());
    }
}
