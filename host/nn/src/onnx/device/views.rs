//! Nodes the device answers without a kernel: `Shape` and `Size` of a
//! value on the device from its shape, and `Identity`, an inference
//! `Dropout`, a `Cast` that keeps the bits, `Flatten`, `Squeeze` and
//! `Unsqueeze` as new names for the same buffer.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Dev, OnDevice, cast_to, layout};
use crate::NnError;
use crate::onnx::ops::{self, Node};
use crate::onnx::value::{DType, Value};

impl OnDevice<'_> {
    /// What `Shape`, `Size`, `Identity`, `Dropout`, `Cast`, `Flatten`,
    /// `Squeeze` or `Unsqueeze` of a value on the device give, from what is known of it
    /// without reading it back: host values for the first two, a new name
    /// (and shape) for the same buffer for the rest.
    /// `Ok(None)` when the node is none of these or its input is not on
    /// the device.
    pub(in crate::onnx) fn describe(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Result<Option<Vec<Value>>, NnError> {
        let p = node.proto;
        let Some(x) = p.inputs.first().and_then(|n| self.values.get(n)).cloned() else {
            return Ok(None);
        };
        let out = p.outputs.first().filter(|o| !o.is_empty()).cloned();
        match p.op_type.as_str() {
            // `Shape` reads nothing but the shape (and its `start`/`end`).
            "Shape" => {
                let placeholder = Value::f32(x.shape.clone(), Vec::new());
                ops::run(node, &[Some(&placeholder)]).map(Some)
            }
            "Size" => Ok(Some(vec![Value::i64(vec![], vec![x.len() as i64])])),
            "Identity" | "Dropout" | "Cast" if passes_through(node, x.is_bool) => {
                // A bool cast to f32 is its 1s and 0s.
                let is_bool = match p.op_type.as_str() {
                    "Cast" => cast_to(node) == Some(DType::Bool),
                    _ => x.is_bool,
                };
                if let Some(out) = out {
                    self.values.insert(out, Dev { is_bool, ..x });
                }
                Ok(Some(Vec::new()))
            }
            "Flatten" | "Squeeze" | "Unsqueeze" => {
                // The axes (an input from opset 13) are on the host, or
                // the node runs on the CPU.
                let placeholder = Value::f32(x.shape.clone(), Vec::new());
                let Some(args) = layout::host_args(&placeholder, node, host) else {
                    return Ok(None);
                };
                // A node it cannot describe runs on the CPU, which says why.
                let Some(Ok(shape)) = ops::view_shape(node, &args) else {
                    return Ok(None);
                };
                // (`Squeeze` of a dim that is not 1, say.)
                if shape.iter().product::<usize>() != x.len() {
                    return Ok(None);
                }
                if let Some(out) = out {
                    self.values.insert(out, Dev { shape, ..x });
                }
                Ok(Some(Vec::new()))
            }
            _ => Ok(None),
        }
    }
}

/// Whether `node` gives its input (a bool if `is_bool`) as it is, bits
/// and all: `Identity`, an inference `Dropout` (asked for its mask, or to
/// train, it is the CPU's), a `Cast` to f32 (of an f32, or of a bool's
/// 1s and 0s) and a `Cast` of a bool to bool.
fn passes_through(node: Node<'_>, is_bool: bool) -> bool {
    let p = node.proto;
    match p.op_type.as_str() {
        "Identity" => true,
        "Dropout" => {
            p.outputs.iter().skip(1).all(String::is_empty)
                && node.int("training_mode", 0) == 0
                && p.inputs.get(2).is_none_or(String::is_empty)
        }
        "Cast" => match cast_to(node) {
            Some(DType::F32) => true,
            Some(DType::Bool) => is_bool,
            _ => false,
        },
        _ => false,
    }
}
