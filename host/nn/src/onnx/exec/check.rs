//! What the interpreter checks before it runs anything: at load, that
//! every node is one it runs and every declared type one it holds; per
//! call, that inputs fit their declarations; and which graphs may merge
//! callers' rows.

use crate::onnx::ops;
use crate::onnx::proto::{self, Attr, ValueInfo};
use crate::onnx::value::DType;
use crate::{ElementType, NnError, NnErrorKind, Tensor};

/// Whether a node's results for one row of the batch depend on the other
/// rows, whatever its input's shape: a model with one must not merge
/// callers' rows, or each caller's answer would depend on the others'.
/// (`DynamicQuantizeLinear` takes its scale from the whole tensor, a
/// training-mode `BatchNormalization` its statistics, and a random
/// generator's draws for one row follow those for the rows before it, or
/// have a fixed shape.)
pub(super) fn mixes_rows(node: &proto::NodeProto) -> bool {
    match node.op_type.as_str() {
        "DynamicQuantizeLinear"
        | "RandomUniform"
        | "RandomNormal"
        | "RandomUniformLike"
        | "RandomNormalLike"
        | "Bernoulli"
        | "Multinomial" => true,
        "BatchNormalization" => node
            .attrs
            .iter()
            .any(|(n, a)| n == "training_mode" && *a != Attr::Int(0)),
        _ => false,
    }
}

pub(super) fn unsupported(msg: String) -> NnError {
    NnError::new(NnErrorKind::UnsupportedOperation, msg)
}

/// Checks that every node, in subgraphs too, is one weft-nn runs.
pub(super) fn check_nodes(nodes: &[proto::NodeProto], opset: i64) -> Result<(), NnError> {
    for n in nodes {
        if n.op_type == "Scan" && opset < 9 {
            return Err(unsupported(format!(
                "operator `Scan` (node `{}`) of opset {opset} (with a batch axis and sequence \
                 lengths) is not supported; export with opset 9 or later",
                n.name
            )));
        }
        let domain_ok = n.domain.is_empty() || n.domain == "ai.onnx";
        let other = match n.domain.as_str() {
            "ai.onnx.preview.training" => ops::TRAINING,
            "ai.onnx.ml" => ops::ML,
            _ => &[],
        };
        let elsewhere = other.contains(&n.op_type.as_str());
        if !elsewhere && (!domain_ok || !ops::supported(&n.op_type)) {
            let op = if domain_ok {
                n.op_type.clone()
            } else {
                format!("{}:{}", n.domain, n.op_type)
            };
            return Err(unsupported(format!(
                "operator `{op}` (node `{}`) is not supported by weft-nn's ONNX interpreter",
                n.name
            )));
        }
        for (name, attr) in &n.attrs {
            if matches!(attr, Attr::Graph(_))
                && !matches!(n.op_type.as_str(), "If" | "Loop" | "Scan")
            {
                return Err(unsupported(format!(
                    "operator `{}` (node `{}`) has a graph attribute `{name}`: only If, Loop and Scan take one",
                    n.op_type, n.name
                )));
            }
            match attr {
                // The type of an `Optional` without an input: weft-nn's
                // absent optionals have none.
                Attr::Unsupported("type") if n.op_type == "Optional" => {}
                Attr::Unsupported(kind) => {
                    return Err(unsupported(format!(
                        "operator `{}` (node `{}`) has a {kind} attribute `{name}`, which weft-nn does not support",
                        n.op_type, n.name
                    )));
                }
                Attr::Graph(sub) => check_nodes(&sub.nodes, opset)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// The element type a graph input or output declares, if any.
pub(in crate::onnx) fn tensor_type(v: &ValueInfo) -> Result<Option<DType>, NnError> {
    if v.non_tensor {
        return Err(unsupported(format!(
            "`{}` is not a tensor: a model's inputs and outputs are tensors (`wasi:nn` \
             passes nothing else); sequences and optionals may flow inside the graph and \
             through its subgraphs",
            v.name
        )));
    }
    v.elem_type
        .map(|code| {
            DType::from_onnx(code).ok_or_else(|| {
                unsupported(format!("`{}` has element type {code} (TensorProto.DataType), which weft-nn does not support", v.name))
            })
        })
        .transpose()
}

/// The interpreter type a caller's tensor maps to when the graph declares
/// none.
pub(super) fn native(t: &Tensor) -> DType {
    match t.ty {
        ElementType::F16 => DType::F16,
        ElementType::F32 => DType::F32,
        ElementType::F64 => DType::F64,
        ElementType::Bf16 => DType::Bf16,
        ElementType::U8 => DType::U8,
        ElementType::I32 => DType::I32,
        ElementType::I64 => DType::I64,
    }
}

/// Refuses an input whose rank or fixed dims differ from the declaration.
pub(super) fn check_shape(info: &ValueInfo, shape: &[usize]) -> Result<(), NnError> {
    let Some(want) = &info.shape else {
        return Ok(());
    };
    let fits = want.len() == shape.len()
        && want
            .iter()
            .zip(shape)
            .all(|(w, &d)| w.is_none_or(|w| w == d));
    if fits {
        return Ok(());
    }
    let shown: Vec<String> = want
        .iter()
        .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
        .collect();
    Err(NnError::new(
        NnErrorKind::InvalidArgument,
        format!(
            "input `{}` must have shape [{}] (? = any), got {shape:?}",
            info.name,
            shown.join(", ")
        ),
    ))
}
