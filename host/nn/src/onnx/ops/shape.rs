//! Operators that move data rather than compute it: shape queries,
//! reshapes, transposes, slicing, padding (gathers and scatters: `index`).
//!
//! Most are written as an index map — for every output element, the flat
//! index of the input element it copies — and one `take`.

use rayon::prelude::*;

use super::{Node, axis, opt, req};
use crate::NnError;
use crate::onnx::value::{DType, Data, Value, broadcast_shape, broadcast_to, fail, strides};

/// Elements of `d` at `idx`, in order.
pub(super) fn take(d: &Data, idx: &[usize]) -> Data {
    match d {
        Data::F32(v) => Data::F32(idx.iter().map(|&i| v[i]).collect()),
        Data::F64(v) => Data::F64(idx.iter().map(|&i| v[i]).collect()),
        Data::I64(v) => Data::I64(idx.iter().map(|&i| v[i]).collect()),
        Data::Bool(v) => Data::Bool(idx.iter().map(|&i| v[i]).collect()),
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

fn ints_input(inputs: &[Option<&Value>], i: usize) -> Option<Vec<i64>> {
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

pub(super) fn dropout(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?;
    let mut out = vec![x.clone()];
    if node.proto.outputs.len() > 1 {
        out.push(Value::bool(x.shape.clone(), vec![true; x.len()]));
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
fn reshaped(x: &Value, shape: Vec<usize>) -> Result<Value, NnError> {
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

pub(super) fn flatten(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len() as i64;
    let a = node.int("axis", 1);
    let a = if a < 0 { a + r } else { a };
    if !(0..=r).contains(&a) {
        return Err(fail(format!("axis {a} out of range")));
    }
    let outer: usize = x.shape[..a as usize].iter().product();
    reshaped(x, vec![outer, x.len().checked_div(outer).unwrap_or(0)])
}

fn axes_of(node: Node<'_>, inputs: &[Option<&Value>], since: i64) -> Option<Vec<i64>> {
    if node.opset < since {
        node.ints("axes")
    } else {
        ints_input(inputs, 1)
    }
}

pub(super) fn squeeze(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len();
    let shape = match axes_of(node, inputs, 13) {
        Some(a) => {
            let a: Vec<usize> = a.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?;
            x.shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !a.contains(i))
                .map(|(_, &d)| d)
                .collect()
        }
        None => x.shape.iter().copied().filter(|&d| d != 1).collect(),
    };
    reshaped(x, shape)
}

pub(super) fn unsqueeze(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let a = axes_of(node, inputs, 13).ok_or_else(|| fail("Unsqueeze needs axes"))?;
    let r = x.shape.len() + a.len();
    let mut a: Vec<usize> = a.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?;
    a.sort_unstable();
    let mut shape = x.shape.clone();
    for ax in a {
        shape.insert(ax, 1);
    }
    reshaped(x, shape)
}

pub(super) fn transpose_perm(x: &Value, perm: &[usize]) -> Value {
    let st = strides(&x.shape);
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) || x.len() == 0 {
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
    };
    x.with(shape, data)
}

pub(super) fn transpose(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len();
    let perm: Vec<usize> = match node.ints("perm") {
        Some(p) => p.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?,
        None => (0..r).rev().collect(),
    };
    if perm.len() != r {
        return Err(fail("perm has the wrong length"));
    }
    Ok(transpose_perm(x, &perm))
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
        .sum();
    let cast: Vec<Value> = parts.iter().map(|p| p.cast(first.dtype)).collect();
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
    };
    Ok(first.with(shape, data))
}

/// `x` restricted to `[start, start + len)` along `ax`.
fn narrow(x: &Value, ax: usize, start: usize, len: usize) -> Value {
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
    if sizes.iter().sum::<usize>() != dim {
        return Err(fail(format!(
            "split sizes {sizes:?} do not add up to {dim}"
        )));
    }
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

pub(super) fn slice(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
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
    let st = strides(&x.shape);
    let idx = map_indices(&shape, |i| {
        i.iter()
            .enumerate()
            .map(|(a, &v)| (begin[a] + v as i64 * step[a]) as usize * st[a])
            .sum()
    });
    Ok(x.with(shape, take(&x.data, &idx)))
}

pub(super) fn expand(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let want: Vec<usize> = req(inputs, 1)?
        .to_i64()
        .iter()
        .map(|&d| d.max(0) as usize)
        .collect();
    let out = broadcast_shape(&x.shape, &want)?;
    let idx: Vec<usize> = broadcast_to(&(0..x.len()).collect::<Vec<_>>(), &x.shape, &out);
    Ok(x.with(out, take(&x.data, &idx)))
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
        .map(|(&d, &r)| d * r.max(0) as usize)
        .collect();
    let st = strides(&x.shape);
    let idx = map_indices(&shape, |i| {
        i.iter()
            .enumerate()
            .map(|(a, &v)| (v % x.shape[a]) * st[a])
            .sum()
    });
    Ok(x.with(shape, take(&x.data, &idx)))
}

pub(super) fn constant_of_shape(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Result<Value, NnError> {
    let shape: Vec<usize> = req(inputs, 0)?
        .to_i64()
        .iter()
        .map(|&d| d.max(0) as usize)
        .collect();
    let fill = node
        .tensor("value")
        .cloned()
        .unwrap_or_else(|| Value::f32(vec![1], vec![0.0]));
    let n: usize = shape.iter().product();
    Ok(fill.with(shape, take(&fill.data, &vec![0; n])))
}

pub(super) fn range(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let s = req(inputs, 0)?;
    let (a, l, d) = (
        s.to_f64()[0],
        req(inputs, 1)?.to_f64()[0],
        req(inputs, 2)?.to_f64()[0],
    );
    let n = ((l - a) / d).ceil().max(0.0) as usize;
    let v: Vec<f64> = (0..n).map(|i| a + i as f64 * d).collect();
    Ok(Value {
        dtype: DType::F64,
        shape: vec![n],
        data: Data::F64(v),
    }
    .cast(s.dtype))
}

pub(super) fn pad(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len();
    let (pads, value) = if node.opset < 11 {
        (
            node.ints("pads")
                .or_else(|| node.ints("paddings"))
                .unwrap_or_default(),
            Value::f32(vec![], vec![node.float("value", 0.0)]),
        )
    } else {
        (
            req(inputs, 1)?.to_i64(),
            opt(inputs, 2)
                .cloned()
                .unwrap_or_else(|| Value::f32(vec![], vec![0.0])),
        )
    };
    let axes: Vec<usize> = match ints_input(inputs, 3) {
        Some(a) => a.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    let mut before = vec![0i64; r];
    let mut after = vec![0i64; r];
    for (i, &a) in axes.iter().enumerate() {
        before[a] = pads[i];
        after[a] = pads[i + axes.len()];
    }
    let shape: Vec<usize> = (0..r)
        .map(|a| (x.shape[a] as i64 + before[a] + after[a]).max(0) as usize)
        .collect();
    let mode = node.string("mode", "constant");
    let st = strides(&x.shape);
    // Index len(x) marks "the constant": take from x extended by one value.
    let sentinel = x.len();
    let idx = map_indices(&shape, |i| {
        let mut off = 0;
        for a in 0..r {
            let d = x.shape[a] as i64;
            let mut j = i[a] as i64 - before[a];
            if j < 0 || j >= d {
                j = match mode.as_str() {
                    "edge" => j.clamp(0, d - 1),
                    "reflect" if d > 1 => {
                        let period = 2 * (d - 1);
                        let m = j.rem_euclid(period);
                        if m >= d { period - m } else { m }
                    }
                    "reflect" => 0,
                    "wrap" => j.rem_euclid(d),
                    _ => return sentinel,
                };
            }
            off += j as usize * st[a];
        }
        off
    });
    let mut ext = x.clone();
    let fill = value.cast(x.dtype);
    match (&mut ext.data, &fill.data) {
        (Data::F32(v), Data::F32(f)) => v.push(f[0]),
        (Data::F64(v), Data::F64(f)) => v.push(f[0]),
        (Data::I64(v), Data::I64(f)) => v.push(f[0]),
        (Data::Bool(v), Data::Bool(f)) => v.push(f[0]),
        _ => return Err(fail("bad pad value")),
    }
    Ok(x.with(shape, take(&ext.data, &idx)))
}

pub(super) fn eye_like(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let k = node.int("k", 0);
    let (rows, cols) = (x.shape[0], x.shape[1]);
    let v: Vec<f64> = (0..rows * cols)
        .map(|i| f64::from(u8::from((i % cols) as i64 - (i / cols) as i64 == k)))
        .collect();
    let dtype = if node.has("dtype") {
        DType::from_onnx(node.int("dtype", 1)).ok_or_else(|| fail("bad dtype"))?
    } else {
        x.dtype
    };
    Ok(Value {
        dtype: DType::F64,
        shape: x.shape.clone(),
        data: Data::F64(v),
    }
    .cast(dtype))
}

pub(super) fn trilu(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let k = opt(inputs, 1).map_or(0, |v| v.to_i64()[0]);
    let upper = node.int("upper", 1) != 0;
    let r = x.shape.len();
    let (rows, cols) = (x.shape[r - 2], x.shape[r - 1]);
    let zero = x.len();
    let idx: Vec<usize> = (0..x.len())
        .map(|i| {
            let (row, col) = (((i / cols) % rows) as i64, (i % cols) as i64);
            let keep = if upper {
                col - row >= k
            } else {
                col - row <= k
            };
            if keep { i } else { zero }
        })
        .collect();
    let mut ext = x.clone();
    match &mut ext.data {
        Data::F32(v) => v.push(0.0),
        Data::F64(v) => v.push(0.0),
        Data::I64(v) => v.push(0),
        Data::Bool(v) => v.push(false),
    }
    Ok(x.with(x.shape.clone(), take(&ext.data, &idx)))
}

pub(super) fn one_hot(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (ind, depth, vals) = (req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?);
    let depth = depth.to_f64()[0] as i64;
    let r = ind.shape.len() + 1;
    let ax = axis(node.int("axis", -1), r)?;
    let mut shape = ind.shape.clone();
    shape.insert(ax, depth.max(0) as usize);
    let iv = ind.to_i64();
    let inner: usize = ind.shape[ax..].iter().product();
    let idx = map_indices(&shape, |i| {
        let flat: usize = i
            .iter()
            .enumerate()
            .filter(|(a, _)| *a != ax)
            .fold(0, |acc, (a, &v)| acc * shape[a] + v);
        let _ = inner;
        let mut want = iv[flat];
        if want < 0 {
            want += depth;
        }
        usize::from(want == i[ax] as i64)
    });
    Ok(vals.with(shape, take(&vals.data, &idx)))
}

pub(super) fn non_zero(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let b = x.to_bool();
    let r = x.shape.len();
    let nz: Vec<usize> = (0..b.len()).filter(|&i| b[i]).collect();
    let st = strides(&x.shape);
    let mut out = vec![0i64; r * nz.len()];
    for (j, &i) in nz.iter().enumerate() {
        for a in 0..r {
            out[a * nz.len() + j] = ((i / st[a]) % x.shape[a]) as i64;
        }
    }
    Ok(Value::i64(vec![r, nz.len()], out))
}

pub(super) fn compress(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, c) = (req(inputs, 0)?, req(inputs, 1)?.to_bool());
    if !node.has("axis") {
        let idx: Vec<usize> = (0..x.len().min(c.len())).filter(|&i| c[i]).collect();
        return Ok(x.with(vec![idx.len()], take(&x.data, &idx)));
    }
    let ax = axis(node.int("axis", 0), x.shape.len())?;
    let keep: Vec<usize> = (0..x.shape[ax].min(c.len())).filter(|&i| c[i]).collect();
    let mut shape = x.shape.clone();
    shape[ax] = keep.len();
    let st = strides(&x.shape);
    let idx = map_indices(&shape, |i| {
        i.iter()
            .enumerate()
            .map(|(a, &v)| if a == ax { keep[v] } else { v } * st[a])
            .sum()
    });
    Ok(x.with(shape, take(&x.data, &idx)))
}

pub(super) fn cumsum(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let ax = axis(req(inputs, 1)?.to_i64()[0], x.shape.len())?;
    let (excl, rev) = (node.int("exclusive", 0) != 0, node.int("reverse", 0) != 0);
    let d = x.shape[ax];
    let inner: usize = x.shape[ax + 1..].iter().product();
    let outer: usize = x.shape[..ax].iter().product();
    macro_rules! cs {
        ($v:expr, $zero:expr) => {{
            let v = $v;
            let mut out = vec![$zero; v.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let mut acc = $zero;
                    for s in 0..d {
                        let k = if rev { d - 1 - s } else { s };
                        let p = (o * d + k) * inner + i;
                        if excl {
                            out[p] = acc;
                            acc += v[p];
                        } else {
                            acc += v[p];
                            out[p] = acc;
                        }
                    }
                }
            }
            out
        }};
    }
    let data = match &x.data {
        Data::F32(v) => Data::F32(cs!(v, 0.0f32)),
        Data::F64(v) => Data::F64(cs!(v, 0.0f64)),
        Data::I64(v) => Data::I64(cs!(v, 0i64)),
        Data::Bool(_) => return Err(fail("CumSum on bool")),
    };
    Ok(x.with(x.shape.clone(), data))
}

pub(super) fn depth_space(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let b = node.int("blocksize", 1) as usize;
    let [n, c, h, w] = x.shape[..] else {
        return Err(fail("expects a 4-D input"));
    };
    let crd = node.string("mode", "DCR") == "CRD";
    if node.proto.op_type == "DepthToSpace" {
        let (c2, shape6, perm): (usize, Vec<usize>, [usize; 6]) = if crd {
            (
                c / (b * b),
                vec![n, c / (b * b), b, b, h, w],
                [0, 1, 4, 2, 5, 3],
            )
        } else {
            (
                c / (b * b),
                vec![n, b, b, c / (b * b), h, w],
                [0, 3, 4, 1, 5, 2],
            )
        };
        let t = transpose_perm(&x.with(shape6, x.data.clone()), &perm);
        return reshaped(&t, vec![n, c2, h * b, w * b]);
    }
    let t = x.with(vec![n, c, h / b, b, w / b, b], x.data.clone());
    let t = transpose_perm(&t, &[0, 3, 5, 1, 2, 4]);
    reshaped(&t, vec![n, c * b * b, h / b, w / b])
}

pub(super) fn reverse_sequence(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Result<Value, NnError> {
    let (x, lens) = (req(inputs, 0)?, req(inputs, 1)?.to_i64());
    let r = x.shape.len();
    let (bax, tax) = (
        axis(node.int("batch_axis", 1), r)?,
        axis(node.int("time_axis", 0), r)?,
    );
    let st = strides(&x.shape);
    let idx = map_indices(&x.shape, |i| {
        let len = lens.get(i[bax]).copied().unwrap_or(0).max(0) as usize;
        i.iter()
            .enumerate()
            .map(|(a, &v)| if a == tax && v < len { len - 1 - v } else { v } * st[a])
            .sum()
    });
    Ok(x.with(x.shape.clone(), take(&x.data, &idx)))
}

pub(super) fn center_crop_pad(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let want = req(inputs, 1)?.to_i64();
    let r = x.shape.len();
    let axes: Vec<usize> = match node.ints("axes") {
        Some(a) => a.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    let mut shape = x.shape.clone();
    // Per axis: output index + shift = input index.
    let mut shift = vec![0i64; r];
    for (i, &a) in axes.iter().enumerate() {
        let (old, new) = (x.shape[a] as i64, want[i].max(0));
        shift[a] = if new < old {
            (old - new) / 2
        } else {
            -((new - old) / 2)
        };
        shape[a] = new as usize;
    }
    let st = strides(&x.shape);
    let zero = x.len();
    let idx = map_indices(&shape, |i| {
        let mut off = 0;
        for a in 0..r {
            let j = i[a] as i64 + shift[a];
            if j < 0 || j >= x.shape[a] as i64 {
                return zero;
            }
            off += j as usize * st[a];
        }
        off
    });
    let mut ext = x.clone();
    match &mut ext.data {
        Data::F32(v) => v.push(0.0),
        Data::F64(v) => v.push(0.0),
        Data::I64(v) => v.push(0),
        Data::Bool(v) => v.push(false),
    }
    Ok(x.with(shape, take(&ext.data, &idx)))
}

/// `Unique`: distinct elements (or slices along `axis`), sorted or in
/// order of first occurrence, with first indices, inverse and counts.
pub(super) fn unique(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?;
    let sorted = node.int("sorted", 1) != 0;
    let (ax, x) = if node.has("axis") {
        (axis(node.int("axis", 0), x.shape.len())?, x.clone())
    } else {
        (0, x.with(vec![x.len()], x.data.clone()))
    };
    let n = x.shape[ax];
    // Slice i along the axis, as f64 keys for comparison.
    let v = x.to_f64();
    let st = strides(&x.shape);
    let mut slice_shape = x.shape.clone();
    slice_shape[ax] = 1;
    let slice = |i: usize| -> Vec<f64> {
        map_indices(&slice_shape, |j| {
            j.iter()
                .enumerate()
                .map(|(a, &p)| if a == ax { i } else { p } * st[a])
                .sum()
        })
        .into_iter()
        .map(|k| v[k])
        .collect()
    };
    let keys: Vec<Vec<f64>> = (0..n).map(slice).collect();
    let mut firsts: Vec<usize> = Vec::new();
    for i in 0..n {
        if !firsts.iter().any(|&f| keys[f] == keys[i]) {
            firsts.push(i);
        }
    }
    if sorted {
        firsts.sort_by(|&a, &b| {
            keys[a]
                .iter()
                .zip(&keys[b])
                .map(|(p, q)| p.total_cmp(q))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    let inverse: Vec<i64> = (0..n)
        .map(|i| firsts.iter().position(|&f| keys[f] == keys[i]).unwrap_or(0) as i64)
        .collect();
    let counts: Vec<i64> = (0..firsts.len())
        .map(|u| inverse.iter().filter(|&&w| w == u as i64).count() as i64)
        .collect();
    let mut shape = x.shape.clone();
    shape[ax] = firsts.len();
    let idx = map_indices(&shape, |j| {
        j.iter()
            .enumerate()
            .map(|(a, &p)| if a == ax { firsts[p] } else { p } * st[a])
            .sum()
    });
    let k = firsts.len();
    Ok(vec![
        x.with(shape, take(&x.data, &idx)),
        Value::i64(vec![k], firsts.iter().map(|&f| f as i64).collect()),
        Value::i64(vec![n], inverse),
        Value::i64(vec![k], counts),
    ])
}
