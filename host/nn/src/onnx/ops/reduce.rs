//! Operators that reduce along axes: the `Reduce*` family, `ArgMax`,
//! softmaxes, normalisations and `TopK`.
//!
//! The general path moves the reduced axes last (one transpose) so every
//! reduction runs over contiguous chunks; the common last-axis f32 cases
//! (softmax and layer norm in transformers) skip the transpose and run in
//! parallel over rows.

use rayon::prelude::*;

use super::shape::transpose_perm;
use super::{Node, axis, opt, req};
use crate::NnError;
use crate::onnx::value::{DType, Data, Value, fail, numel, zip_broadcast};

/// Rows below which parallelism is not worth it.
const PAR_ROWS: usize = 64;

/// `x` as f64 with `axes` moved last (in order): data, the kept dims, the
/// reduced chunk length, and the permutation used.
fn axes_last(x: &Value, axes: &[usize]) -> (Vec<f64>, Vec<usize>, usize, Vec<usize>) {
    let r = x.shape.len();
    let mut perm: Vec<usize> = (0..r).filter(|a| !axes.contains(a)).collect();
    let kept: Vec<usize> = perm.iter().map(|&a| x.shape[a]).collect();
    perm.extend_from_slice(axes);
    let red: usize = axes.iter().map(|&a| x.shape[a]).product();
    let v = if super::shape::unpermuted(&perm) {
        x.to_f64()
    } else {
        transpose_perm(
            &Value {
                dtype: DType::F64,
                shape: x.shape.clone(),
                data: Data::F64(x.to_f64()),
            },
            &perm,
        )
        .to_f64()
    };
    (v, kept, red, perm)
}

/// `data` laid out as `x` permuted by `perm`, put back in `x`'s order.
fn undo(data: Vec<f64>, x: &Value, perm: &[usize]) -> Value {
    let permuted: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    let v = Value {
        dtype: DType::F64,
        shape: permuted,
        data: Data::F64(data),
    };
    let v = if super::shape::unpermuted(&inv) {
        v
    } else {
        transpose_perm(&v, &inv)
    };
    v.cast(x.dtype)
}

/// The axes a `Reduce*` node reduces, sorted (`None`: none, the input
/// passes through).
pub(crate) fn reduce_axes(
    node: Node<'_>,
    inputs: &[Option<&Value>],
    r: usize,
) -> Result<Option<Vec<usize>>, NnError> {
    let since = if node.proto.op_type == "ReduceSum" {
        13
    } else {
        18
    };
    let axes = if node.opset < since {
        node.ints("axes")
    } else {
        opt(inputs, 1).map(Value::to_i64)
    };
    let axes = axes.filter(|a| !a.is_empty());
    let Some(axes) = axes else {
        return Ok(if node.int("noop_with_empty_axes", 0) != 0 {
            None
        } else {
            Some((0..r).collect())
        });
    };
    let mut a: Vec<usize> = axes.iter().map(|&v| axis(v, r)).collect::<Result<_, _>>()?;
    a.sort_unstable();
    a.dedup();
    Ok(Some(a))
}

pub(super) fn reduce(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len();
    let Some(axes) = reduce_axes(node, inputs, r)? else {
        return Ok(x.clone());
    };
    let keep = node.int("keepdims", 1) != 0;
    let op = node.proto.op_type.as_str();
    if let (Data::F32(v), true, "ReduceMean" | "ReduceSum") = (
        &x.data,
        axes == [r.saturating_sub(1)] && r > 0 && x.shape[r - 1] > 0,
        op,
    ) {
        // The last axis of an f32 tensor (LayerNorm decompositions): sum
        // contiguous rows in place, in f64 as the general path does.
        let n = x.shape[r - 1];
        let scale = if op == "ReduceMean" {
            1.0 / n as f64
        } else {
            1.0
        };
        let row = |c: &[f32]| (c.iter().map(|&v| f64::from(v)).sum::<f64>() * scale) as f32;
        let out: Vec<f32> = if v.len() / n > PAR_ROWS {
            v.par_chunks(n).map(row).collect()
        } else {
            v.chunks(n).map(row).collect()
        };
        let mut shape = x.shape.clone();
        if keep {
            shape[r - 1] = 1;
        } else {
            shape.pop();
        }
        return Ok(x.with(shape, Data::F32(out)));
    }
    let (v, _, red, _) = axes_last(x, &axes);
    let f =
        |c: &[f64]| -> f64 {
            match op {
                "ReduceSum" => c.iter().sum(),
                "ReduceMean" => c.iter().sum::<f64>() / c.len() as f64,
                "ReduceMax" => c.iter().copied().fold(f64::NEG_INFINITY, |a, b| {
                    if b.is_nan() || b > a { b } else { a }
                }),
                "ReduceMin" => {
                    c.iter().copied().fold(
                        f64::INFINITY,
                        |a, b| if b.is_nan() || b < a { b } else { a },
                    )
                }
                "ReduceProd" => c.iter().product(),
                "ReduceL1" => c.iter().map(|v| v.abs()).sum(),
                "ReduceL2" => c.iter().map(|v| v * v).sum::<f64>().sqrt(),
                "ReduceSumSquare" => c.iter().map(|v| v * v).sum(),
                "ReduceLogSum" => c.iter().sum::<f64>().ln(),
                _ => {
                    let m = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    if m.is_infinite() {
                        return c.iter().map(|v| v.exp()).sum::<f64>().ln();
                    }
                    m + c.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
                }
            }
        };
    let outer: usize = x
        .shape
        .iter()
        .enumerate()
        .filter(|(a, _)| !axes.contains(a))
        .map(|(_, &d)| d)
        .product();
    let out: Vec<f64> = if red == 0 {
        // (An empty input holds nothing however large its other axes.)
        vec![f(&[]); numel(&[outer], "the reduction")?]
    } else {
        v.chunks_exact(red).map(f).collect()
    };
    let shape: Vec<usize> = if keep {
        x.shape
            .iter()
            .enumerate()
            .map(|(a, &d)| if axes.contains(&a) { 1 } else { d })
            .collect()
    } else {
        x.shape
            .iter()
            .enumerate()
            .filter(|(a, _)| !axes.contains(a))
            .map(|(_, &d)| d)
            .collect()
    };
    let mut res = Value {
        dtype: DType::F64,
        shape,
        data: Data::F64(out),
    };
    if x.dtype.is_int() && matches!(op, "ReduceMax" | "ReduceMin") && red == 0 {
        // Empty integer max/min: the type's extreme, as numpy's identity.
        let ext = if op == "ReduceMax" {
            i64::MIN
        } else {
            i64::MAX
        };
        res = Value::i64(res.shape.clone(), vec![ext; res.len()]);
    }
    Ok(res.cast(x.dtype))
}

pub(super) fn arg(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let ax = axis(node.int("axis", 0), x.shape.len())?;
    let (v, _, red, _) = axes_last(x, &[ax]);
    let max = node.proto.op_type == "ArgMax";
    let last = node.int("select_last_index", 0) != 0;
    let out: Vec<i64> = v
        .chunks_exact(red.max(1))
        .map(|c| {
            let mut best = 0;
            for (i, &val) in c.iter().enumerate() {
                let better = if max { val > c[best] } else { val < c[best] };
                if better || (last && val == c[best]) {
                    best = i;
                }
            }
            best as i64
        })
        .collect();
    let mut shape = x.shape.clone();
    if node.int("keepdims", 1) != 0 {
        shape[ax] = 1;
    } else {
        shape.remove(ax);
    }
    Ok(Value::i64(shape, out))
}

pub(super) fn softmax(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len();
    let op = node.proto.op_type.as_str();
    let legacy = node.opset < 13;
    let ax = axis(node.int("axis", if legacy { 1 } else { -1 }), r)?;
    // Before opset 13 the input is coerced to 2-D at `axis`.
    let x2;
    let (x, ax) = if legacy && ax + 1 < r {
        let outer: usize = x.shape[..ax].iter().product();
        x2 = x.with(
            vec![outer, x.len().checked_div(outer).unwrap_or(0)],
            x.data.clone(),
        );
        (&x2, 1)
    } else {
        (x, ax)
    };
    let shape = req(inputs, 0)?.shape.clone();
    let row = |c: &mut [f64]| {
        let m = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        match op {
            "Hardmax" => {
                let best = c.iter().position(|&v| v == m).unwrap_or(0);
                c.iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = f64::from(u8::from(i == best)));
            }
            "LogSoftmax" => {
                let lse = m + c.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                c.iter_mut().for_each(|v| *v -= lse);
            }
            _ => {
                let mut s = 0.0;
                c.iter_mut().for_each(|v| {
                    *v = (*v - m).exp();
                    s += *v;
                });
                c.iter_mut().for_each(|v| *v /= s);
            }
        }
    };
    if let (Data::F32(v), true, "Softmax") = (&x.data, ax + 1 == x.shape.len(), op) {
        let n = x.shape[ax].max(1);
        let mut out = v.clone();
        let f = |c: &mut [f32]| {
            let m = c.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut s = 0.0f32;
            c.iter_mut().for_each(|v| {
                *v = (*v - m).exp();
                s += *v;
            });
            let inv = 1.0 / s;
            c.iter_mut().for_each(|v| *v *= inv);
        };
        if out.len() / n > PAR_ROWS {
            out.par_chunks_mut(n).for_each(f);
        } else {
            out.chunks_mut(n).for_each(f);
        }
        return Ok(x.with(shape, Data::F32(out)));
    }
    let (mut v, _, red, perm) = axes_last(x, &[ax]);
    v.chunks_mut(red.max(1)).for_each(row);
    let mut res = undo(v, x, &perm);
    res.shape = shape;
    Ok(res)
}

/// Normalises `x` over trailing dims from `ax` (mean-centred when `centre`):
/// returns normalised values, and per-row mean and 1/std.
fn normalise(x: &Value, ax: usize, eps: f64, centre: bool) -> (Value, Vec<f64>, Vec<f64>) {
    let n: usize = x.shape[ax..].iter().product::<usize>().max(1);
    let rows = x.len() / n;
    let stats = |c: &[f64]| -> (f64, f64) {
        let mean = if centre {
            c.iter().sum::<f64>() / n as f64
        } else {
            0.0
        };
        let var = c.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        (mean, 1.0 / (var + eps).sqrt())
    };
    if let Data::F32(v) = &x.data {
        let mut out = v.clone();
        let mut st = vec![(0.0, 0.0); rows];
        let f = |(c, s): (&mut [f32], &mut (f64, f64))| {
            let c64: Vec<f64> = c.iter().map(|&v| f64::from(v)).collect();
            *s = stats(&c64);
            let (m, inv) = *s;
            c.iter_mut()
                .zip(&c64)
                .for_each(|(o, &v)| *o = ((v - m) * inv) as f32);
        };
        if rows > PAR_ROWS {
            out.par_chunks_mut(n).zip(st.par_iter_mut()).for_each(f);
        } else {
            out.chunks_mut(n).zip(st.iter_mut()).for_each(f);
        }
        let (m, i) = st.into_iter().unzip();
        return (x.with(x.shape.clone(), Data::F32(out)), m, i);
    }
    let mut v = x.to_f64();
    let (mut ms, mut is) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for c in v.chunks_mut(n) {
        let (m, inv) = stats(c);
        c.iter_mut().for_each(|v| *v = (*v - m) * inv);
        ms.push(m);
        is.push(inv);
    }
    (Value::f64_as(x.dtype, x.shape.clone(), v), ms, is)
}

/// `a * b` (or `a + b`) with broadcasting, in `a`'s float type.
fn affine(a: &Value, b: &Value, add: bool) -> Result<Value, NnError> {
    let b = b.cast(a.dtype);
    let (data, shape) = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => {
            let (v, s) = if add {
                zip_broadcast(x, &a.shape, y, &b.shape, |p, q| p + q)?
            } else {
                zip_broadcast(x, &a.shape, y, &b.shape, |p, q| p * q)?
            };
            (Data::F32(v), s)
        }
        _ => {
            let (x, y) = (a.to_f64(), b.to_f64());
            let (v, s) = if add {
                zip_broadcast(&x, &a.shape, &y, &b.shape, |p, q| p + q)?
            } else {
                zip_broadcast(&x, &a.shape, &y, &b.shape, |p, q| p * q)?
            };
            return Ok(Value::f64_as(a.dtype, s, v));
        }
    };
    Ok(a.with(shape, data))
}

pub(super) fn layer_norm(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?;
    let ax = axis(node.int("axis", -1), x.shape.len())?;
    let eps = f64::from(node.float("epsilon", 1e-5));
    let (y, mean, inv) = normalise(x, ax, eps, true);
    let mut y = affine(&y, req(inputs, 1)?, false)?;
    if let Some(b) = opt(inputs, 2) {
        y = affine(&y, b, true)?;
    }
    let stat_shape: Vec<usize> = x
        .shape
        .iter()
        .enumerate()
        .map(|(a, &d)| if a < ax { d } else { 1 })
        .collect();
    let stat = |v: Vec<f64>| Value::f64_as(DType::F32, stat_shape.clone(), v);
    Ok(vec![y, stat(mean), stat(inv)])
}

pub(super) fn rms_norm(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let ax = axis(node.int("axis", -1), x.shape.len())?;
    let (y, _, _) = normalise(x, ax, f64::from(node.float("epsilon", 1e-5)), false);
    affine(&y, req(inputs, 1)?, false)
}

pub(super) fn instance_norm(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let (y, _, _) = normalise(
        x,
        2.min(x.shape.len()),
        f64::from(node.float("epsilon", 1e-5)),
        true,
    );
    // Scale and bias are per channel: shape them [C, 1, ...] to broadcast.
    let mut cs = vec![1; x.shape.len() - 1];
    cs[0] = x.shape[1];
    let s = req(inputs, 1)?;
    let b = req(inputs, 2)?;
    let y = affine(&y, &s.with(cs.clone(), s.data.clone()), false)?;
    affine(&y, &b.with(cs, b.data.clone()), true)
}

pub(super) fn mvn(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len();
    let mut axes: Vec<usize> = node
        .ints("axes")
        .unwrap_or(vec![0, 2, 3])
        .iter()
        .map(|&a| axis(a, r))
        .collect::<Result<_, _>>()?;
    axes.sort_unstable();
    let (mut v, _, red, perm) = axes_last(x, &axes);
    for c in v.chunks_mut(red.max(1)) {
        let mean = c.iter().sum::<f64>() / c.len() as f64;
        let var = c.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / c.len() as f64;
        let d = var.sqrt() + 1e-9;
        c.iter_mut().for_each(|v| *v = (*v - mean) / d);
    }
    Ok(undo(v, x, &perm))
}

pub(super) fn lp_norm(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let ax = axis(node.int("axis", -1), x.shape.len())?;
    let p = node.int("p", 2);
    let (mut v, _, red, perm) = axes_last(x, &[ax]);
    for c in v.chunks_mut(red.max(1)) {
        let n = if p == 1 {
            c.iter().map(|v| v.abs()).sum::<f64>()
        } else {
            c.iter().map(|v| v * v).sum::<f64>().sqrt()
        };
        c.iter_mut().for_each(|v| *v /= n);
    }
    Ok(undo(v, x, &perm))
}

pub(super) fn top_k(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?;
    let ax = axis(node.int("axis", -1), x.shape.len())?;
    let k = if node.opset < 10 {
        node.int("k", 1)
    } else {
        req(inputs, 1)?.to_i64()[0]
    };
    let k = usize::try_from(k).map_err(|_| fail("negative k"))?;
    if k > x.shape[ax] {
        return Err(fail(format!(
            "k = {k} exceeds the axis length {}",
            x.shape[ax]
        )));
    }
    let largest = node.int("largest", 1) != 0;
    let (v, kept, red, _) = axes_last(x, &[ax]);
    let (mut vals, mut idxs) = (Vec::new(), Vec::new());
    for c in v.chunks_exact(red.max(1)) {
        let mut order: Vec<usize> = (0..c.len()).collect();
        order.sort_by(|&a, &b| {
            let o = c[a].partial_cmp(&c[b]).unwrap_or(std::cmp::Ordering::Equal);
            (if largest { o.reverse() } else { o }).then(a.cmp(&b))
        });
        for &i in &order[..k] {
            vals.push(c[i]);
            idxs.push(i as i64);
        }
    }
    // Results are laid out with the axis last; move it back.
    let mut shape_last = kept.clone();
    shape_last.push(k);
    let r = x.shape.len();
    let mut perm: Vec<usize> = (0..r).filter(|&a| a != ax).collect();
    perm.push(ax);
    let mut inv = vec![0; r];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    let vals = transpose_perm(
        &Value {
            dtype: DType::F64,
            shape: shape_last.clone(),
            data: Data::F64(vals),
        },
        &inv,
    )
    .cast(x.dtype);
    let idxs = transpose_perm(&Value::i64(shape_last, idxs), &inv);
    Ok(vec![vals, idxs])
}

pub(super) fn group_norm(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let g = node.int("num_groups", 1).max(1) as usize;
    let (n, c) = (
        x.shape[0],
        *x.shape
            .get(1)
            .ok_or_else(|| fail("GroupNormalization needs [N, C, ...]"))?,
    );
    if c % g != 0 {
        return Err(fail(format!("{c} channels do not split into {g} groups")));
    }
    let inner: usize = x.shape[2..].iter().product();
    let grouped = x.with(vec![n, g, c / g * inner], x.data.clone());
    let (y, _, _) = normalise(&grouped, 2, f64::from(node.float("epsilon", 1e-5)), true);
    let y = y.with(x.shape.clone(), y.data.clone());
    // Scale and bias per channel (opset 21) or per group (opset 18).
    let per_channel = |v: &Value| -> Value {
        let vals = v.to_f64();
        let rep = c / vals.len().max(1);
        let mut shape = vec![1; x.shape.len() - 1];
        shape[0] = c;
        let data: Vec<f64> = (0..c)
            .map(|i| vals[(i / rep.max(1)).min(vals.len() - 1)])
            .collect();
        Value {
            dtype: DType::F64,
            shape,
            data: Data::F64(data),
        }
    };
    let y = affine(&y, &per_channel(req(inputs, 1)?), false)?;
    affine(&y, &per_channel(req(inputs, 2)?), true)
}
