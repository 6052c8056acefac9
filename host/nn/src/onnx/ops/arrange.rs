//! Operators that make tensors (constants of a shape, ranges, identity
//! and triangular masks, one-hots) or rearrange their elements (padding
//! and cropping, cumulative sums, depth/space blocks, reversed sequences,
//! selection by mask, unique values), written as `shape`'s are: an index
//! map and one `take` where they copy.

use super::shape::{ints_input, map_indices, reshaped, take, transpose_perm};
use super::{Node, axis, opt, req};
use crate::NnError;
use crate::onnx::value::{DType, Data, Value, fail, numel, numel_with, strides};

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
    let n = numel(&shape, "ConstantOfShape")?;
    // (Repeated as it is: no index per element.)
    let data = match &fill.data {
        Data::F32(v) if v.len() == 1 => Data::F32(vec![v[0]; n]),
        Data::F64(v) if v.len() == 1 => Data::F64(vec![v[0]; n]),
        Data::I64(v) if v.len() == 1 => Data::I64(vec![v[0]; n]),
        Data::Bool(v) if v.len() == 1 => Data::Bool(vec![v[0]; n]),
        _ => return Err(fail("ConstantOfShape's value must be one element")),
    };
    Ok(fill.with(shape, data))
}

pub(super) fn range(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let s = req(inputs, 0)?;
    let (a, l, d) = (
        s.to_f64()[0],
        req(inputs, 1)?.to_f64()[0],
        req(inputs, 2)?.to_f64()[0],
    );
    // A float count past usize (or infinite) saturates, and is refused.
    let n = ((l - a) / d).ceil().max(0.0) as usize;
    numel_with(&[n], || format!("Range from {a} to {l} by {d}"))?;
    let v: Vec<f64> = (0..n).map(|i| a + i as f64 * d).collect();
    Ok(Value::f64_as(s.dtype, vec![n], v))
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
        .map(|a| {
            (x.shape[a] as i64)
                .saturating_add(before[a])
                .saturating_add(after[a])
                .max(0) as usize
        })
        .collect();
    numel(&shape, "Pad")?;
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
    Ok(Value::f64_as(dtype, x.shape.clone(), v))
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
    Ok(x.with(x.shape.clone(), take(&with_zero(x), &idx)))
}

pub(super) fn one_hot(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (ind, depth, vals) = (req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?);
    let depth = depth.to_f64()[0] as i64;
    let r = ind.shape.len() + 1;
    let ax = axis(node.int("axis", -1), r)?;
    let mut shape = ind.shape.clone();
    shape.insert(ax, depth.max(0) as usize);
    numel(&shape, "OneHot")?;
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
        _ => return Err(fail("CumSum takes numbers")),
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
    numel(&shape, "CenterCropPad")?;
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
    Ok(x.with(shape, take(&with_zero(x), &idx)))
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

/// `x`'s values with a zero after them: an index map sends the elements
/// that no input fills to `x.len()`.
fn with_zero(x: &Value) -> Data {
    let mut data = x.data.clone();
    match &mut data {
        Data::F32(v) => v.push(0.0),
        Data::F64(v) => v.push(0.0),
        Data::I64(v) => v.push(0),
        Data::Bool(v) => v.push(false),
        // Not tensors: `ops::run` gives operators tensors only.
        Data::Seq(_) | Data::Absent => {}
    }
    data
}
