//! Operators that index: Gather, GatherElements, GatherND and their
//! scatter counterparts, written as index maps over `take` like the other
//! data-moving operators.

use super::shape::{map_indices, take};
use super::{Node, axis, req};
use crate::NnError;
use crate::onnx::value::{Data, Value, fail, numel, strides};

fn fix_index(i: i64, d: usize) -> Result<usize, NnError> {
    let j = if i < 0 { i + d as i64 } else { i };
    if j < 0 || j >= d as i64 {
        return Err(fail(format!("index {i} is out of range for a dim of {d}")));
    }
    Ok(j as usize)
}

pub(super) fn gather(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, ind) = (req(inputs, 0)?, req(inputs, 1)?);
    let ax = axis(node.int("axis", 0), x.shape.len())?;
    let d = x.shape[ax];
    let ind: Vec<usize> = ind
        .to_i64()
        .into_iter()
        .map(|i| fix_index(i, d))
        .collect::<Result<_, _>>()?;
    let outer: usize = x.shape[..ax].iter().product();
    let inner: usize = x.shape[ax + 1..].iter().product();
    numel(&[outer, ind.len(), inner], "Gather")?;
    let mut idx = Vec::with_capacity(outer * ind.len() * inner);
    for o in 0..outer {
        for &i in &ind {
            let base = (o * d + i) * inner;
            idx.extend(base..base + inner);
        }
    }
    let mut shape = x.shape[..ax].to_vec();
    shape.extend_from_slice(&req(inputs, 1)?.shape);
    shape.extend_from_slice(&x.shape[ax + 1..]);
    Ok(x.with(shape, take(&x.data, &idx)))
}

pub(super) fn gather_elements(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, ind) = (req(inputs, 0)?, req(inputs, 1)?);
    let ax = axis(node.int("axis", 0), x.shape.len())?;
    let st = strides(&x.shape);
    let iv = ind.to_i64();
    let mut k = 0;
    let mut bad = None;
    let idx = map_indices(&ind.shape, |i| {
        let j = fix_index(iv[k], x.shape[ax]).unwrap_or_else(|e| {
            bad = Some(e);
            0
        });
        k += 1;
        i.iter()
            .enumerate()
            .map(|(a, &v)| if a == ax { j } else { v } * st[a])
            .sum()
    });
    if let Some(e) = bad {
        return Err(e);
    }
    Ok(x.with(ind.shape.clone(), take(&x.data, &idx)))
}

/// For GatherND / ScatterND: the flat offsets of the slices `ind` names,
/// and the slice length.
fn nd_offsets(x: &[usize], ind: &Value, batch: usize) -> Result<(Vec<usize>, usize), NnError> {
    let q = *ind
        .shape
        .last()
        .ok_or_else(|| fail("indices must have rank >= 1"))?;
    let st = strides(x);
    let slice: usize = x[batch + q..].iter().product();
    let bsize: usize = x[..batch].iter().product::<usize>().max(1);
    let rows = ind
        .len()
        .checked_div(q)
        .unwrap_or(ind.shape[..ind.shape.len() - 1].iter().product());
    let per_batch = rows / bsize.max(1);
    let iv = ind.to_i64();
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        let b = r.checked_div(per_batch).unwrap_or(0);
        let mut off = if batch > 0 { b * st[batch - 1] } else { 0 };
        for j in 0..q {
            off += fix_index(iv[r * q + j], x[batch + j])? * st[batch + j];
        }
        out.push(off);
    }
    Ok((out, slice))
}

pub(super) fn gather_nd(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, ind) = (req(inputs, 0)?, req(inputs, 1)?);
    let batch = node.int("batch_dims", 0) as usize;
    let (offs, slice) = nd_offsets(&x.shape, ind, batch)?;
    numel(&[offs.len(), slice], "GatherND")?;
    let idx: Vec<usize> = offs.iter().flat_map(|&o| o..o + slice).collect();
    let q = *ind.shape.last().unwrap_or(&0);
    let mut shape = ind.shape[..ind.shape.len() - 1].to_vec();
    shape.extend_from_slice(&x.shape[batch + q..]);
    Ok(x.with(shape, take(&x.data, &idx)))
}

/// Writes `upd` into a copy of `x` at flat positions `pos`, combining per
/// `reduction`.
fn scatter(x: &Value, pos: &[usize], upd: &Value, reduction: &str) -> Result<Value, NnError> {
    let upd = upd.cast(x.dtype);
    macro_rules! sc {
        ($v:expr, $u:expr) => {{
            let mut v = $v.clone();
            for (&p, &u) in pos.iter().zip($u.iter()) {
                v[p] = match reduction {
                    "add" => v[p] + u,
                    "mul" => v[p] * u,
                    "max" => {
                        if u > v[p] {
                            u
                        } else {
                            v[p]
                        }
                    }
                    "min" => {
                        if u < v[p] {
                            u
                        } else {
                            v[p]
                        }
                    }
                    _ => u,
                };
            }
            v
        }};
    }
    let data = match (&x.data, &upd.data) {
        (Data::F32(v), Data::F32(u)) => Data::F32(sc!(v, u)),
        (Data::F64(v), Data::F64(u)) => Data::F64(sc!(v, u)),
        (Data::I64(v), Data::I64(u)) => Data::I64(sc!(v, u)),
        (Data::Bool(v), Data::Bool(u)) => {
            let mut v = v.clone();
            pos.iter().zip(u).for_each(|(&p, &b)| v[p] = b);
            Data::Bool(v)
        }
        _ => return Err(fail("scatter type mismatch")),
    };
    Ok(x.with(x.shape.clone(), data))
}

pub(super) fn scatter_elements(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Result<Value, NnError> {
    let (x, ind, upd) = (req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?);
    let ax = axis(node.int("axis", 0), x.shape.len())?;
    let st = strides(&x.shape);
    let iv = ind.to_i64();
    let mut k = 0;
    let mut bad = None;
    let pos = map_indices(&ind.shape, |i| {
        let j = fix_index(iv[k], x.shape[ax]).unwrap_or_else(|e| {
            bad = Some(e);
            0
        });
        k += 1;
        i.iter()
            .enumerate()
            .map(|(a, &v)| if a == ax { j } else { v } * st[a])
            .sum()
    });
    if let Some(e) = bad {
        return Err(e);
    }
    scatter(x, &pos, upd, &node.string("reduction", "none"))
}

pub(super) fn scatter_nd(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, ind, upd) = (req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?);
    let (offs, slice) = nd_offsets(&x.shape, ind, 0)?;
    let pos: Vec<usize> = offs.iter().flat_map(|&o| o..o + slice).collect();
    scatter(x, &pos, upd, &node.string("reduction", "none"))
}
