//! Values that are not tensors, inside a graph: sequences of tensors
//! (`SequenceEmpty`, `SequenceConstruct`, `SequenceInsert`, `SequenceAt`,
//! `SequenceErase`, `SequenceLength`, `SplitToSequence`,
//! `ConcatFromSequence`) and optionals (`Optional`, `OptionalHasElement`,
//! `OptionalGetElement`). An optional with an element is that element;
//! one without is [`Data::Absent`].

use std::sync::Arc;

use super::shape::{concat, narrow, stack};
use super::{Node, axis, opt, req};
use crate::NnError;
use crate::onnx::value::{DType, Data, Value, fail, numel};

/// The operators here: with `Identity` and control flow, the only ones
/// given values that are not tensors.
pub(super) const OPS: &[&str] = &[
    "SequenceEmpty",
    "SequenceConstruct",
    "SequenceInsert",
    "SequenceAt",
    "SequenceErase",
    "SequenceLength",
    "SplitToSequence",
    "ConcatFromSequence",
    "Optional",
    "OptionalHasElement",
    "OptionalGetElement",
];

fn sequence(dtype: DType, items: Vec<Arc<Value>>) -> Value {
    Value {
        dtype,
        shape: Vec::new(),
        data: Data::Seq(items),
    }
}

/// Input `i` as a sequence's items.
fn items<'a>(
    inputs: &[Option<&'a Value>],
    i: usize,
    op: &str,
) -> Result<&'a [Arc<Value>], NnError> {
    match &req(inputs, i)?.data {
        Data::Seq(items) => Ok(items),
        _ => Err(fail(format!(
            "{op}'s input {i} must be a sequence, got a tensor or an absent optional"
        ))),
    }
}

/// A position in a sequence of `n` (negative from the end); `past` allows
/// `n` itself (an insertion at the end).
fn position(v: Option<&Value>, n: usize, past: bool, default: usize) -> Result<usize, NnError> {
    let Some(v) = v else {
        return Ok(default);
    };
    let p = match v.to_i64()[..] {
        [p] => p,
        _ => return Err(fail("a sequence position must be a single integer")),
    };
    let at = if p < 0 { p + n as i64 } else { p };
    let last = if past { n as i64 } else { n as i64 - 1 };
    if at < 0 || at > last {
        return Err(fail(format!("position {p} is outside a sequence of {n}")));
    }
    Ok(at as usize)
}

/// A tensor for a sequence of `dtype`.
fn tensor_of(v: &Value, dtype: DType, op: &str) -> Result<Arc<Value>, NnError> {
    if !v.is_tensor() || v.dtype != dtype {
        return Err(fail(format!(
            "{op}: a sequence of {dtype:?} takes {dtype:?} tensors, got {:?}{}",
            v.dtype,
            if v.is_tensor() {
                ""
            } else {
                " that is not a tensor"
            }
        )));
    }
    Ok(Arc::new(v.clone()))
}

pub(super) fn run(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let op = node.proto.op_type.as_str();
    let out = match op {
        "SequenceEmpty" => {
            let code = node.int("dtype", 1);
            let dtype = DType::from_onnx(code)
                .ok_or_else(|| fail(format!("SequenceEmpty of element type {code}")))?;
            sequence(dtype, Vec::new())
        }
        "SequenceConstruct" => {
            let first = req(inputs, 0)?;
            let items = (0..inputs.len())
                .map(|i| tensor_of(req(inputs, i)?, first.dtype, op))
                .collect::<Result<_, _>>()?;
            sequence(first.dtype, items)
        }
        "SequenceInsert" => {
            let (seq, items) = (req(inputs, 0)?, items(inputs, 0, op)?);
            let t = tensor_of(req(inputs, 1)?, seq.dtype, op)?;
            let at = position(opt(inputs, 2), items.len(), true, items.len())?;
            // A list a Loop grows is checked as a whole, as one tensor.
            let total = items.iter().map(|v| v.len()).sum::<usize>();
            numel(&[total.saturating_add(t.len())], "the sequence")?;
            let mut items = items.to_vec();
            items.insert(at, t);
            sequence(seq.dtype, items)
        }
        "SequenceAt" => {
            let items = items(inputs, 0, op)?;
            (*items[position(Some(req(inputs, 1)?), items.len(), false, 0)?]).clone()
        }
        "SequenceErase" => {
            let (seq, items) = (req(inputs, 0)?, items(inputs, 0, op)?);
            if items.is_empty() {
                return Err(fail("SequenceErase of an empty sequence"));
            }
            let at = position(opt(inputs, 1), items.len(), false, items.len() - 1)?;
            let mut items = items.to_vec();
            items.remove(at);
            sequence(seq.dtype, items)
        }
        "SequenceLength" => Value::i64(vec![], vec![items(inputs, 0, op)?.len() as i64]),
        "SplitToSequence" => split_to_sequence(node, inputs)?,
        "ConcatFromSequence" => {
            let items = items(inputs, 0, op)?;
            let first = items
                .first()
                .ok_or_else(|| fail("ConcatFromSequence of an empty sequence"))?;
            match node.int("new_axis", 0) != 0 {
                true => stack(items, axis(node.int("axis", 0), first.shape.len() + 1)?)?,
                false if first.shape.is_empty() => {
                    return Err(fail(
                        "ConcatFromSequence of scalars needs new_axis 1 (they have no axis to join)",
                    ));
                }
                false => concat(node, &items.iter().map(|v| Some(&**v)).collect::<Vec<_>>())?,
            }
        }
        "Optional" => match opt(inputs, 0) {
            Some(v) => v.clone(),
            None => Value {
                dtype: DType::F32,
                shape: Vec::new(),
                data: Data::Absent,
            },
        },
        "OptionalHasElement" => {
            let has = opt(inputs, 0).is_some_and(|v| !matches!(v.data, Data::Absent));
            Value::bool(vec![], vec![has])
        }
        _ => match opt(inputs, 0) {
            Some(v) if !matches!(v.data, Data::Absent) => v.clone(),
            _ => return Err(fail("OptionalGetElement of an optional without an element")),
        },
    };
    Ok(vec![out])
}

/// `SplitToSequence`: parts of one size (the `split` scalar), of the
/// sizes listed, or (no `split`) of 1, squeezed unless `keepdims`.
fn split_to_sequence(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let split = opt(inputs, 1);
    if !x.is_tensor() || x.shape.is_empty() || split.is_some_and(|s| !s.is_tensor()) {
        return Err(fail(
            "SplitToSequence splits a tensor of rank 1 or more, by a tensor of sizes",
        ));
    }
    let ax = axis(node.int("axis", 0), x.shape.len())?;
    let dim = x.shape[ax];
    let sizes: Vec<usize> = match split.map(|s| (s.shape.is_empty(), s.to_i64())) {
        None => vec![1; dim],
        Some((true, v)) if v.len() == 1 => {
            let chunk = usize::try_from(v[0]).ok().filter(|&c| c > 0);
            let chunk = chunk.ok_or_else(|| fail(format!("split {} must be positive", v[0])))?;
            (0..dim.div_ceil(chunk))
                .map(|i| chunk.min(dim - i * chunk))
                .collect()
        }
        Some((_, v)) => v.iter().map(|&s| s.max(0) as usize).collect(),
    };
    if sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)) != Some(dim) {
        return Err(fail(format!(
            "split sizes {sizes:?} do not add up to {dim}"
        )));
    }
    let squeeze = split.is_none() && node.int("keepdims", 1) == 0;
    let mut start = 0;
    let items = sizes
        .iter()
        .map(|&len| {
            let mut part = narrow(x, ax, start, len);
            start += len;
            if squeeze {
                part.shape.remove(ax);
            }
            Arc::new(part)
        })
        .collect();
    Ok(sequence(x.dtype, items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::NodeProto;

    /// Inserting into a sequence (a Loop appends every turn) shares the
    /// tensors already in it instead of copying them.
    #[test]
    fn insert_and_erase_share_the_items_they_keep() {
        let item = Arc::new(Value::f32(vec![2], vec![1.0, 2.0]));
        let seq = sequence(DType::F32, vec![Arc::clone(&item)]);
        let x = Value::f32(vec![2], vec![3.0, 4.0]);
        let node = |op: &str| NodeProto {
            op_type: op.into(),
            ..Default::default()
        };
        let op = |n: &NodeProto, inputs: &[Option<&Value>]| {
            run(
                Node {
                    proto: n,
                    opset: 21,
                },
                inputs,
            )
            .unwrap()
            .remove(0)
        };
        let grown = op(&node("SequenceInsert"), &[Some(&seq), Some(&x)]);
        let Data::Seq(items) = &grown.data else {
            panic!("not a sequence")
        };
        assert_eq!(items.len(), 2);
        assert!(Arc::ptr_eq(&items[0], &item), "the kept item was copied");
        assert_eq!(items[1].to_f32(), [3.0, 4.0]);
        let at = Value::i64(vec![], vec![1]);
        let shrunk = op(&node("SequenceErase"), &[Some(&grown), Some(&at)]);
        let Data::Seq(items) = &shrunk.data else {
            panic!("not a sequence")
        };
        assert!(items.len() == 1 && Arc::ptr_eq(&items[0], &item));
    }
}
