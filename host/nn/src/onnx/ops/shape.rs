//! Operators that move data rather than compute it: shape queries,
//! reshapes, transposes, slicing, tiling (padding and the rest: `arrange`;
//! gathers and scatters: `index`).
//!
//! Most are written as an index map — for every output element, the flat
//! index of the input element it copies — and one `take`.

use rayon::prelude::*;

use super::{Node, axis, opt, req};
use crate::NnError;
use crate::onnx::value::{Data, Value, broadcast_shape, fail, numel, strides};

/// Elements of `d` at `idx`, in order.
pub(super) fn take(d: &Data, idx: &[usize]) -> Data {
    match d {
        Data::F32(v) => Data::F32(idx.iter().map(|&i| v[i]).collect()),
        Data::F64(v) => Data::F64(idx.iter().map(|&i| v[i]).collect()),
        Data::I64(v) => Data::I64(idx.iter().map(|&i| v[i]).collect()),
        Data::Bool(v) => Data::Bool(idx.iter().map(|&i| v[i]).collect()),
        // Not tensors: `ops::run` gives operators tensors only.
        other @ (Data::Seq(_) | Data::Absent) => other.clone(),
    }
}

/// For every multi-index of `shape` in row-major order, `f(index)`.
pub(super) fn map_indices(shape: &[usize], mut f: impl FnMut(&[usize]) -> usize) -> Vec<usize> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let mut idx = vec![0; shape.len()];
    for _ in 0..total {
        out.push(f(&idx));
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

pub(super) fn ints_input(inputs: &[Option<&Value>], i: usize) -> Option<Vec<i64>> {
    opt(inputs, i).map(Value::to_i64)
}

pub(super) fn constant(node: Node<'_>) -> Result<Value, NnError> {
    if let Some(t) = node.tensor("value") {
        return Ok(t.clone());
    }
    if node.has("value_float") {
        return Ok(Value::f32(vec![], vec![node.float("value_float", 0.0)]));
    }
    if let Some(v) = node.floats("value_floats") {
        return Ok(Value::f32(vec![v.len()], v));
    }
    if node.has("value_int") {
        return Ok(Value::i64(vec![], vec![node.int("value_int", 0)]));
    }
    if let Some(v) = node.ints("value_ints") {
        return Ok(Value::i64(vec![v.len()], v));
    }
    Err(fail("Constant has no supported value attribute"))
}

/// `Dropout`: the identity at inference (and with a ratio of 0); in
/// training mode (opset 12's third input true) each element is kept with
/// probability `1 - ratio` and scaled by `1 / (1 - ratio)`, as onnxruntime
/// does, drawn from the `seed` attribute when there is one.
pub(super) fn dropout(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?;
    let training = opt(inputs, 2).is_some_and(|t| t.to_bool().first() == Some(&true));
    let ratio = opt(inputs, 1).and_then(|r| r.to_f64().first().copied());
    let ratio = ratio.unwrap_or(0.5);
    let keep: Vec<bool> = if !training || ratio == 0.0 {
        vec![true; x.len()]
    } else if (0.0..1.0).contains(&ratio) {
        let mut rng = super::random::rng(node);
        (0..x.len()).map(|_| rng.next_f64() >= ratio).collect()
    } else {
        return Err(fail(format!("Dropout ratio {ratio} is outside [0, 1)")));
    };
    let y = if keep.iter().all(|&k| k) {
        x.clone()
    } else {
        let scale = 1.0 / (1.0 - ratio);
        let v = x
            .to_f64()
            .iter()
            .zip(&keep)
            .map(|(&v, &k)| if k { v * scale } else { 0.0 })
            .collect();
        Value::f64_as(x.dtype, x.shape.clone(), v)
    };
    let mut out = vec![y];
    if node.proto.outputs.len() > 1 {
        out.push(Value::bool(x.shape.clone(), keep));
    }
    Ok(out)
}

pub(super) fn shape(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let s = &req(inputs, 0)?.shape;
    let r = s.len() as i64;
    let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (start, end) = (clampi(node.int("start", 0)), clampi(node.int("end", r)));
    let dims: Vec<i64> = s[start..end.max(start)].iter().map(|&d| d as i64).collect();
    Ok(Value::i64(vec![dims.len()], dims))
}

/// `x` with a new shape; element count must match.
pub(super) fn reshaped(x: &Value, shape: Vec<usize>) -> Result<Value, NnError> {
    if shape.iter().product::<usize>() != x.len() {
        return Err(fail(format!("cannot reshape {:?} to {shape:?}", x.shape)));
    }
    Ok(x.with(shape, x.data.clone()))
}

pub(super) fn reshape(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let spec = if node.opset < 5 {
        node.ints("shape").unwrap_or_default()
    } else {
        req(inputs, 1)?.to_i64()
    };
    let allow_zero = node.int("allowzero", 0) != 0;
    let mut shape = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        shape.push(match d {
            -1 => {
                infer = Some(i);
                1
            }
            0 if !allow_zero => *x
                .shape
                .get(i)
                .ok_or_else(|| fail("reshape copies a dim the input lacks"))?,
            d if d < 0 => return Err(fail(format!("bad reshape dim {d}"))),
            d => d as usize,
        });
    }
    if let Some(i) = infer {
        let known: usize = shape.iter().product();
        if known == 0 || x.len() % known != 0 {
            return Err(fail(format!("cannot reshape {:?} to {spec:?}", x.shape)));
        }
        shape[i] = x.len() / known;
    }
    reshaped(x, shape)
}

/// The shape `Flatten`, `Squeeze` or `Unsqueeze` gives its input, read
/// from the input's shape only (these ops just rename the data; the GPU
/// path, `onnx/device.rs`, applies them to values it never reads back).
pub(crate) fn view_shape(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Option<Result<Vec<usize>, NnError>> {
    Some(match node.proto.op_type.as_str() {
        "Flatten" => flatten_shape(node, inputs),
        "Squeeze" => squeeze_shape(node, inputs),
        "Unsqueeze" => unsqueeze_shape(node, inputs),
        _ => return None,
    })
}

fn flatten_shape(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<usize>, NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len() as i64;
    let a = node.int("axis", 1);
    let a = if a < 0 { a + r } else { a };
    if !(0..=r).contains(&a) {
        return Err(fail(format!("axis {a} out of range")));
    }
    let outer: usize = x.shape[..a as usize].iter().product();
    let all: usize = x.shape.iter().product();
    Ok(vec![outer, all.checked_div(outer).unwrap_or(0)])
}

pub(super) fn flatten(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    reshaped(req(inputs, 0)?, flatten_shape(node, inputs)?)
}

fn axes_of(node: Node<'_>, inputs: &[Option<&Value>], since: i64) -> Option<Vec<i64>> {
    if node.opset < since {
        node.ints("axes")
    } else {
        ints_input(inputs, 1)
    }
}

fn squeeze_shape(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<usize>, NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len();
    Ok(match axes_of(node, inputs, 13) {
        Some(a) => {
            let a: Vec<usize> = a.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?;
            if let Some(&bad) = a.iter().find(|&&ax| x.shape[ax] != 1) {
                return Err(fail(format!(
                    "cannot squeeze axis {bad} of {:?}: it is {} long, not 1",
                    x.shape, x.shape[bad]
                )));
            }
            x.shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !a.contains(i))
                .map(|(_, &d)| d)
                .collect()
        }
        None => x.shape.iter().copied().filter(|&d| d != 1).collect(),
    })
}

pub(super) fn squeeze(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    reshaped(req(inputs, 0)?, squeeze_shape(node, inputs)?)
}

fn unsqueeze_shape(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<usize>, NnError> {
    let x = req(inputs, 0)?;
    let a = axes_of(node, inputs, 13).ok_or_else(|| fail("Unsqueeze needs axes"))?;
    let r = x.shape.len() + a.len();
    let mut a: Vec<usize> = a.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?;
    a.sort_unstable();
    let mut shape = x.shape.clone();
    for ax in a {
        shape.insert(ax, 1);
    }
    Ok(shape)
}

pub(super) fn unsqueeze(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    reshaped(req(inputs, 0)?, unsqueeze_shape(node, inputs)?)
}

/// Whether each axis of `order` (a permutation) stays where it is.
pub(crate) fn unpermuted(order: &[usize]) -> bool {
    order.iter().enumerate().all(|(i, &o)| i == o)
}

/// Element `i` of `x` along `axis`, that axis removed (a `Scan` slice).
pub(crate) fn index_axis(x: &Value, axis: usize, i: usize) -> Value {
    let outer: usize = x.shape[..axis].iter().product();
    let inner: usize = x.shape[axis + 1..].iter().product();
    let n = x.shape[axis];
    let idx: Vec<usize> = (0..outer)
        .flat_map(|o| (0..inner).map(move |k| (o * n + i) * inner + k))
        .collect();
    let mut shape = x.shape.clone();
    shape.remove(axis);
    x.with(shape, take(&x.data, &idx))
}

/// `values` (of one shape and type) stacked along a new `axis`; no values
/// give an empty f32 tensor.
pub(crate) fn stack<V: std::borrow::Borrow<Value>>(
    values: &[V],
    axis: usize,
) -> Result<Value, NnError> {
    let values: Vec<&Value> = values.iter().map(V::borrow).collect();
    let Some(first) = values.first() else {
        return Ok(Value::f32(vec![0], Vec::new()));
    };
    if let Some(v) = values
        .iter()
        .find(|v| v.shape != first.shape || v.dtype != first.dtype)
    {
        return Err(fail(format!(
            "values to stack change from {:?} {:?} to {:?} {:?}",
            first.dtype, first.shape, v.dtype, v.shape
        )));
    }
    if axis > first.shape.len() {
        return Err(fail(format!(
            "axis {axis} is out of range for stacking values of rank {}",
            first.shape.len()
        )));
    }
    let data = match &first.data {
        Data::F32(_) => Data::F32(values.iter().flat_map(|v| v.to_f32()).collect()),
        Data::F64(_) => Data::F64(values.iter().flat_map(|v| v.to_f64()).collect()),
        Data::I64(_) => Data::I64(values.iter().flat_map(|v| v.to_i64()).collect()),
        Data::Bool(_) => Data::Bool(values.iter().flat_map(|v| v.to_bool()).collect()),
        Data::Seq(_) | Data::Absent => return Err(fail("only tensors stack")),
    };
    let mut shape = vec![values.len()];
    shape.extend_from_slice(&first.shape);
    let stacked = first.with(shape, data);
    if axis == 0 {
        return Ok(stacked);
    }
    let perm: Vec<usize> = (0..=first.shape.len())
        .map(|j| match j.cmp(&axis) {
            std::cmp::Ordering::Less => j + 1,
            std::cmp::Ordering::Equal => 0,
            std::cmp::Ordering::Greater => j,
        })
        .collect();
    Ok(transpose_perm(&stacked, &perm))
}

pub(super) fn transpose_perm(x: &Value, perm: &[usize]) -> Value {
    let st = strides(&x.shape);
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    if unpermuted(perm) || x.len() == 0 {
        return x.with(shape, x.data.clone());
    }
    // Input strides along each output axis; copy output rows (its last
    // axis) in parallel, each a strided run of the input.
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let rank = shape.len();
    let inner = shape[rank - 1];
    let si = pst[rank - 1];
    let rows = x.len() / inner;
    let base = |r: usize| {
        let (mut off, mut rem) = (0, r);
        for ax in (0..rank - 1).rev() {
            off += (rem % shape[ax]) * pst[ax];
            rem /= shape[ax];
        }
        off
    };
    macro_rules! tr {
        ($v:expr) => {{
            let v = $v;
            if si == 1 {
                // Rows stay contiguous (attention's head split and merge):
                // copy them whole.
                let mut out = v[..0].to_vec();
                out.resize(v.len(), v[0]);
                out.par_chunks_mut(inner)
                    .with_min_len(64)
                    .enumerate()
                    .for_each(|(r, d)| {
                        let b = base(r);
                        d.copy_from_slice(&v[b..b + inner]);
                    });
                out
            } else {
                (0..rows)
                    .into_par_iter()
                    .with_min_len(64)
                    .flat_map_iter(|r| {
                        let b = base(r);
                        (0..inner).map(move |j| v[b + j * si])
                    })
                    .collect()
            }
        }};
    }
    let data = match &x.data {
        Data::F32(v) => Data::F32(tr!(v)),
        Data::F64(v) => Data::F64(tr!(v)),
        Data::I64(v) => Data::I64(tr!(v)),
        Data::Bool(v) => Data::Bool(tr!(v)),
        // Not tensors: `ops::run` gives operators tensors only.
        other @ (Data::Seq(_) | Data::Absent) => other.clone(),
    };
    x.with(shape, data)
}

fn perm_of(node: Node<'_>, rank: usize) -> Result<Vec<usize>, NnError> {
    let perm: Vec<usize> = match node.ints("perm") {
        Some(p) => p.iter().map(|&v| axis(v, rank)).collect::<Result<_, _>>()?,
        None => (0..rank).rev().collect(),
    };
    if perm.len() != rank {
        return Err(fail("perm has the wrong length"));
    }
    let mut seen = vec![false; rank];
    if let Some(&twice) = perm
        .iter()
        .find(|&&a| std::mem::replace(&mut seen[a], true))
    {
        return Err(fail(format!(
            "perm {perm:?} names axis {twice} twice: it must list each axis once"
        )));
    }
    Ok(perm)
}

pub(super) fn transpose(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    Ok(transpose_perm(x, &perm_of(node, x.shape.len())?))
}

/// Where each element of a `Transpose`, `Slice` or `Expand` output comes
/// from in its input: element `i` (a multi-index of `shape`) is input
/// element `offset + Σ i[a]·strides[a]` (a negative stride: a slice
/// stepping backwards). The GPU path (`onnx/device.rs`) records it as one
/// strided copy.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Strided {
    pub shape: Vec<usize>,
    pub offset: i64,
    pub strides: Vec<i64>,
}

impl Strided {
    /// The input's flat index of every output element, in order.
    fn indices(&self) -> Vec<usize> {
        map_indices(&self.shape, |i| {
            let at = i.iter().zip(&self.strides).map(|(&v, &s)| v as i64 * s);
            (self.offset + at.sum::<i64>()) as usize
        })
    }
}

/// The strides, along each axis of `to`, of a row-major value of shape
/// `from` that broadcasts to it: axis `a` of `from` is axis `a + lead` of
/// `to`, and an axis of 1 (or one `from` lacks) repeats its one element.
pub(crate) fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<i64> {
    let st = strides(from);
    let lead = to.len() - from.len();
    (0..to.len())
        .map(|o| match o.checked_sub(lead) {
            Some(a) if from[a] != 1 => st[a] as i64,
            _ => 0,
        })
        .collect()
}

/// The [`Strided`] view `node` takes of its input (`inputs[0]`, of which
/// only the shape is read); `None` when it is not one of those ops.
pub(crate) fn strided_view(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Option<Result<Strided, NnError>> {
    let view = || {
        let x = req(inputs, 0)?;
        let st: Vec<i64> = strides(&x.shape).iter().map(|&s| s as i64).collect();
        Ok(match node.proto.op_type.as_str() {
            "Transpose" => {
                let perm = perm_of(node, x.shape.len())?;
                Strided {
                    shape: perm.iter().map(|&p| x.shape[p]).collect(),
                    offset: 0,
                    strides: perm.iter().map(|&p| st[p]).collect(),
                }
            }
            "Slice" => {
                let (shape, begin, step) = slice_bounds(node, inputs)?;
                Strided {
                    shape,
                    offset: begin.iter().zip(&st).map(|(b, s)| b * s).sum(),
                    strides: step.iter().zip(&st).map(|(a, s)| a * s).collect(),
                }
            }
            "Expand" => {
                let want: Vec<usize> = req(inputs, 1)?
                    .to_i64()
                    .iter()
                    .map(|&d| d.max(0) as usize)
                    .collect();
                let shape = broadcast_shape(&x.shape, &want)?;
                Strided {
                    strides: broadcast_strides(&x.shape, &shape),
                    shape,
                    offset: 0,
                }
            }
            _ => unreachable!("checked below"),
        })
    };
    matches!(
        node.proto.op_type.as_str(),
        "Transpose" | "Slice" | "Expand"
    )
    .then(view)
}

pub(super) fn concat(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let parts: Vec<&Value> = inputs.iter().flatten().copied().collect();
    let first = parts.first().ok_or_else(|| fail("Concat needs inputs"))?;
    let ax = axis(node.int("axis", 0), first.shape.len())?;
    let outer: usize = first.shape[..ax].iter().product();
    let mut shape = first.shape.clone();
    shape[ax] = parts
        .iter()
        .map(|p| p.shape.get(ax).copied().unwrap_or(0))
        .fold(0usize, usize::saturating_add);
    numel(&shape, "Concat")?;
    // Parts of the first's type are read as they are (a decoder's KV cache
    // grows by Concat every step: a copy of each part would double it).
    let cast: Vec<std::borrow::Cow<'_, Value>> = parts
        .iter()
        .map(|&p| match p.dtype == first.dtype {
            true => std::borrow::Cow::Borrowed(p),
            false => std::borrow::Cow::Owned(p.cast(first.dtype)),
        })
        .collect();
    for p in &cast {
        if p.shape.len() != shape.len()
            || p.shape
                .iter()
                .enumerate()
                .any(|(i, &d)| i != ax && d != shape[i])
        {
            return Err(fail(format!(
                "Concat inputs {:?} and {:?} differ off the axis",
                first.shape, p.shape
            )));
        }
    }
    macro_rules! cat {
        ($var:ident) => {{
            let mut out = Vec::with_capacity(shape.iter().product());
            for o in 0..outer {
                for p in &cast {
                    let Data::$var(v) = &p.data else {
                        unreachable!()
                    };
                    let chunk = v.len().checked_div(outer).unwrap_or(0);
                    out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
                }
            }
            Data::$var(out)
        }};
    }
    let data = match first.data {
        Data::F32(_) => cat!(F32),
        Data::F64(_) => cat!(F64),
        Data::I64(_) => cat!(I64),
        Data::Bool(_) => cat!(Bool),
        Data::Seq(_) | Data::Absent => return Err(fail("only tensors concatenate")),
    };
    Ok(first.with(shape, data))
}

/// `x` restricted to `[start, start + len)` along `ax`.
pub(super) fn narrow(x: &Value, ax: usize, start: usize, len: usize) -> Value {
    let mut shape = x.shape.clone();
    shape[ax] = len;
    let st = strides(&x.shape);
    let idx = map_indices(&shape, |i| {
        i.iter()
            .zip(&st)
            .enumerate()
            .map(|(a, (v, s))| (v + if a == ax { start } else { 0 }) * s)
            .sum()
    });
    x.with(shape, take(&x.data, &idx))
}

pub(super) fn split(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?;
    let (ax, sizes) = split_sizes(node, inputs)?;
    let mut start = 0;
    Ok(sizes
        .iter()
        .map(|&len| {
            let v = narrow(x, ax, start, len);
            start += len;
            v
        })
        .collect())
}

/// The axis a `Split` splits its input along and the length of each part
/// (only the shape of input 0 is read).
pub(crate) fn split_sizes(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Result<(usize, Vec<usize>), NnError> {
    let x = req(inputs, 0)?;
    let ax = axis(node.int("axis", 0), x.shape.len())?;
    let n = node.proto.outputs.len();
    let dim = x.shape[ax];
    let sizes: Vec<usize> = match if node.opset < 13 {
        node.ints("split")
    } else {
        ints_input(inputs, 1)
    } {
        Some(s) => s.iter().map(|&v| v.max(0) as usize).collect(),
        None => {
            let parts = if node.has("num_outputs") {
                node.int("num_outputs", 1) as usize
            } else {
                n
            };
            let chunk = dim.div_ceil(parts.max(1));
            (0..parts)
                .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
                .collect()
        }
    };
    if sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)) != Some(dim) {
        return Err(fail(format!(
            "split sizes {sizes:?} do not add up to {dim}"
        )));
    }
    Ok((ax, sizes))
}

/// A `Slice`'s output shape, and the first index and step along each
/// input axis.
#[allow(clippy::type_complexity)]
fn slice_bounds(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Result<(Vec<usize>, Vec<i64>, Vec<i64>), NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len();
    let (starts, ends, axes, steps) = if node.opset < 10 {
        (
            node.ints("starts").unwrap_or_default(),
            node.ints("ends").unwrap_or_default(),
            node.ints("axes"),
            None,
        )
    } else {
        (
            req(inputs, 1)?.to_i64(),
            req(inputs, 2)?.to_i64(),
            ints_input(inputs, 3),
            ints_input(inputs, 4),
        )
    };
    let axes: Vec<i64> = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let mut begin: Vec<i64> = vec![0; r];
    let mut step: Vec<i64> = vec![1; r];
    let mut shape = x.shape.clone();
    for (i, &a) in axes.iter().enumerate() {
        let a = axis(a, r)?;
        let d = x.shape[a] as i64;
        let s = steps.as_ref().map_or(1, |s| s[i]);
        if s == 0 {
            return Err(fail("slice step 0"));
        }
        let fix = |v: i64| if v < 0 { v + d } else { v };
        let (mut b, mut e) = (fix(starts[i]), fix(ends[i]));
        if s > 0 {
            b = b.clamp(0, d);
            e = e.clamp(0, d);
        } else {
            b = b.clamp(-1, d - 1);
            e = e.clamp(-1, d - 1);
        }
        let len = if s > 0 {
            (e - b + s - 1).div_euclid(s)
        } else {
            (b - e + (-s) - 1).div_euclid(-s)
        };
        shape[a] = len.max(0) as usize;
        begin[a] = b;
        step[a] = s;
    }
    Ok((shape, begin, step))
}

/// `Slice` and `Expand`: a copy of the [`Strided`] view they take.
pub(super) fn strided_copy(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let view = strided_view(node, inputs).expect("a strided op")?;
    Ok(x.with(view.shape.clone(), take(&x.data, &view.indices())))
}

pub(super) fn tile(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let reps = req(inputs, 1)?.to_i64();
    if reps.len() != x.shape.len() {
        return Err(fail("Tile repeats must match the input rank"));
    }
    let shape: Vec<usize> = x
        .shape
        .iter()
        .zip(&reps)
        .map(|(&d, &r)| d.saturating_mul(r.max(0) as usize))
        .collect();
    numel(&shape, "Tile")?;
    let st = strides(&x.shape);
    let idx = map_indices(&shape, |i| {
        i.iter()
            .enumerate()
            .map(|(a, &v)| (v % x.shape[a]) * st[a])
            .sum()
    });
    Ok(x.with(shape, take(&x.data, &idx)))
}
