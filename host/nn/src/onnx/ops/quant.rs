//! Linear (de)quantisation: `QuantizeLinear` and `DequantizeLinear`, with
//! per-tensor, per-axis and blocked scales.

use rayon::prelude::*;

use super::shape::map_indices;
use super::{Node, axis, nn, opt, req};
use crate::NnError;
use crate::onnx::narrow::E8m0Round;
use crate::onnx::value::{DType, Data, Value, broadcast_shape, broadcast_to, fail, strides};

/// For every element of `x`, the flat index of its scale.
fn scale_index(node: Node<'_>, x: &[usize], scale: &Value) -> Result<Vec<usize>, NnError> {
    let n: usize = x.iter().product();
    if scale.len() == 1 {
        return Ok(vec![0; n]);
    }
    let ax = axis(node.int("axis", 1), x.len())?;
    let block = node.int("block_size", 0).max(0) as usize;
    if block == 0 {
        if scale.shape.len() != 1 || scale.shape[0] != x[ax] {
            return Err(fail(format!(
                "per-axis scale {:?} does not match axis {ax} of {x:?}",
                scale.shape
            )));
        }
        return Ok(map_indices(x, |i| i[ax]));
    }
    let fits = scale.shape.len() == x.len()
        && (0..x.len()).all(|a| match a == ax {
            true => scale.shape[a] == x[a].div_ceil(block),
            false => scale.shape[a] == x[a],
        });
    if !fits {
        return Err(fail(format!(
            "blocked scale {:?} does not fit {x:?} in blocks of {block} along axis {ax}: \
             give the input's shape with axis {ax} divided by {block}, rounded up",
            scale.shape
        )));
    }
    let st = strides(&scale.shape);
    Ok(map_indices(x, |i| {
        i.iter()
            .enumerate()
            .map(|(a, &v)| if a == ax { v / block } else { v } * st[a])
            .sum()
    }))
}

/// A zero point must have its scale's shape (one value each may differ
/// in rank: `[]` and `[1]`).
fn check_zero_point(zp: Option<&Value>, scale: &Value) -> Result<(), NnError> {
    match zp {
        Some(z) if z.shape != scale.shape && (z.len() != 1 || scale.len() != 1) => {
            Err(fail(format!(
                "the zero point's shape {:?} is not the scale's {:?}: give them the same shape",
                z.shape, scale.shape
            )))
        }
        _ => Ok(()),
    }
}

pub(super) fn dequantize(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, scale) = (req(inputs, 0)?, req(inputs, 1)?);
    let zp = opt(inputs, 2);
    // One f32 scale and an integer x (a quantised model's activations and
    // gathered table rows), in f32 and in parallel: x - zp is exact in
    // f32 and the product rounds once, as in f64 and rounded after.
    if let (Data::I64(q), Data::F32(sv), 0 | 1) =
        (&x.data, &scale.data, node.int("output_dtype", 0))
        && scale.dtype == DType::F32
        && sv.len() == 1
        && matches!(x.dtype, DType::U8 | DType::I8 | DType::U16 | DType::I16)
        && zp.is_none_or(|z| z.len() == 1)
    {
        let (s, z) = (sv[0], zp.map_or(0, |z| z.to_f64()[0] as i64));
        let v = q.par_iter().map(|&q| (q - z) as f32 * s).collect();
        return Ok(Value::f32(x.shape.clone(), v));
    }
    check_zero_point(zp, scale)?;
    let idx = scale_index(node, &x.shape, scale)?;
    let (xv, sv) = (x.to_f64(), scale.to_f64());
    let zp = zp.map(Value::to_f64);
    let v: Vec<f64> = xv
        .iter()
        .zip(&idx)
        .map(|(&q, &i)| (q - zp.as_ref().map_or(0.0, |z| z[i])) * sv[i])
        .collect();
    let to = match node.int("output_dtype", 0) {
        0 => scale.dtype,
        c => {
            DType::from_onnx(c).ok_or_else(|| fail(format!("output_dtype {c} is not supported")))?
        }
    };
    Ok(Value::f64_as(to, x.shape.clone(), v))
}

pub(super) fn quantize(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, scale) = (req(inputs, 0)?, req(inputs, 1)?);
    let zp = opt(inputs, 2);
    let to = match (node.int("output_dtype", 0), zp) {
        (0, Some(z)) => z.dtype,
        (0, None) => DType::U8,
        (c, _) => {
            DType::from_onnx(c).ok_or_else(|| fail(format!("output_dtype {c} is not supported")))?
        }
    };
    if to.is_narrow_float() && to != DType::F8E8M0 {
        return quantize_float(node, x, scale, zp, to);
    }
    let (lo, hi) = match to {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::U16 => (0.0, 65535.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        DType::U4 => (0.0, 15.0),
        DType::I4 => (-8.0, 7.0),
        DType::U2 => (0.0, 3.0),
        DType::I2 => (-2.0, 1.0),
        other => return Err(fail(format!("quantising to {other:?} is not supported"))),
    };
    // One f32 scale and an f32 x (a QDQ model's activations), in parallel:
    // the same arithmetic as below, without an index per element.
    if let (Data::F32(xv), Data::F32(sv)) = (&x.data, &scale.data)
        && scale.dtype == DType::F32
        && sv.len() == 1
        && zp.is_none_or(|z| z.len() == 1)
    {
        let (s, z) = (sv[0], zp.map_or(0.0, |z| z.to_f64()[0]));
        let v = xv
            .par_iter()
            .map(|&f| (f64::from((f / s).round_ties_even()) + z).clamp(lo, hi) as i64)
            .collect();
        return Ok(Value {
            dtype: to,
            shape: x.shape.clone(),
            data: Data::I64(v),
        });
    }
    check_zero_point(zp, scale)?;
    let idx = scale_index(node, &x.shape, scale)?;
    let (xv, sv) = (x.to_f64(), scale.to_f64());
    let zv = zp.map(Value::to_f64);
    let single = x.dtype != DType::F64;
    let v: Vec<i64> = xv
        .iter()
        .zip(&idx)
        .map(|(&f, &i)| {
            // f32 inputs divide in f32, as the reference does: rounding ties
            // depend on it.
            let r = if single {
                f64::from((f as f32 / sv[i] as f32).round_ties_even())
            } else {
                (f / sv[i]).round_ties_even()
            };
            let q = r + zv.as_ref().map_or(0.0, |z| z[i]);
            q.clamp(lo, hi) as i64
        })
        .collect();
    Ok(Value {
        dtype: to,
        shape: x.shape.clone(),
        data: Data::I64(v),
    })
}

/// `QuantizeLinear` to a float8 or float4 type: `x / scale` (plus the zero
/// point, which the spec requires to be 0 for float8) rounded to the type,
/// saturating unless `saturate` is 0 (float4 always saturates).
fn quantize_float(
    node: Node<'_>,
    x: &Value,
    scale: &Value,
    zp: Option<&Value>,
    to: DType,
) -> Result<Value, NnError> {
    check_zero_point(zp, scale)?;
    let idx = scale_index(node, &x.shape, scale)?;
    let (xv, sv) = (x.to_f64(), scale.to_f64());
    let zv = zp.map(Value::to_f64);
    let saturate = node.int("saturate", 1) != 0;
    let v = xv
        .iter()
        .zip(&idx)
        .map(|(&f, &i)| {
            let q = f / sv[i] + zv.as_ref().map_or(0.0, |z| z[i]);
            to.round(q as f32, saturate, E8m0Round::Up)
        })
        .collect();
    Ok(Value {
        dtype: to,
        shape: x.shape.clone(),
        data: Data::F32(v),
    })
}

/// `DynamicQuantizeLinear`: u8 quantisation with a scale and zero point
/// from the data's range (which always includes 0), in f32 as specified.
///
/// Without a name for its first output (integer products quantise it
/// themselves: `weights::fuse_dynamic_quantize`) it gives the scale and
/// zero point alone.
pub(super) fn dynamic_quantize(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?;
    let xv = nn::to_f32(x);
    let (lo, hi) = xv
        .par_chunks(1 << 16)
        .map(range_of)
        .reduce(|| (0.0, 0.0), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
    let (shape, y) = match node.proto.outputs.first().is_some_and(|y| y.is_empty()) {
        true => (vec![0], Vec::new()),
        false => (x.shape.clone(), quantize_all(&xv, scale, zp)),
    };
    Ok(vec![
        Value {
            dtype: DType::U8,
            shape,
            data: Data::I64(y),
        },
        Value::f32(vec![], vec![scale]),
        Value {
            dtype: DType::U8,
            shape: vec![],
            data: Data::I64(vec![zp as i64]),
        },
    ])
}

/// The least and greatest of `x` and 0 (NaNs ignored), sixteen lanes at a
/// time so that it vectorises.
fn range_of(x: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = ([0.0f32; 16], [0.0f32; 16]);
    let lanes = x.chunks_exact(16);
    let rest = lanes.remainder();
    for c in lanes {
        for l in 0..16 {
            lo[l] = if c[l] < lo[l] { c[l] } else { lo[l] };
            hi[l] = if c[l] > hi[l] { c[l] } else { hi[l] };
        }
    }
    let fold = |init: (f32, f32), v: &[f32]| v.iter().fold(init, |(a, b), &v| (a.min(v), b.max(v)));
    let (l, h) = fold((0.0, 0.0), rest);
    (fold((l, h), &lo).0, fold((l, h), &hi).1)
}

/// `x` quantised to u8 as `DynamicQuantizeLinear` does.
fn quantize_all(x: &[f32], scale: f32, zp: f32) -> Vec<i64> {
    x.par_iter()
        .map(|&v| i64::from(crate::int8::quantize_u8(v, scale, zp)))
        .collect()
}

/// A fused `WeftMatMulInteger`'s A (`quantize = 1`, see
/// `weights::fuse_dynamic_quantize`): its f32 input 0 with the scale
/// (input 3) and zero point (input 2) the `DynamicQuantizeLinear` it
/// replaced gave; `None` for an unfused node.
fn to_quantize<'a>(
    node: Node<'_>,
    inputs: &[Option<&'a Value>],
) -> Result<Option<(&'a Value, f32, f32)>, NnError> {
    if node.int("quantize", 0) != 1 {
        return Ok(None);
    }
    let x = req(inputs, 0)?;
    let scale = scalar_of(req(inputs, 3)?, "the activations' scale")? as f32;
    let zp = scalar_of(req(inputs, 2)?, "the activations' zero point")? as f32;
    Ok(Some((x, scale, zp)))
}

/// `x` as f32s less its zero point: none, a scalar, a tensor of `x`'s
/// rank (broadcast), or a vector along `axis` of `x` (A's rows, B's
/// columns, a weight's output channels).
///
/// Integer products then run on the f32 kernels: exact while every partial
/// sum stays within 2^24 (u8 x i8 terms over a few hundred inner elements),
/// and otherwise rounded as a float product would be, which the float
/// rescaling that follows an integer product cannot tell apart.
pub(super) fn less_zero_point(
    x: &Value,
    zp: Option<&Value>,
    axis: usize,
) -> Result<Value, NnError> {
    let Some(z) = zp else {
        return Ok(Value::f32(x.shape.clone(), x.to_f32()));
    };
    let zv = z.to_f32();
    let v: Vec<f32> = if zv.len() == 1 {
        let z = zv[0];
        match &x.data {
            Data::I64(q) => q.par_iter().map(|&q| q as f32 - z).collect(),
            _ => x.to_f32().iter().map(|&q| q - z).collect(),
        }
    } else {
        let at = if z.shape.len() == 1 && x.shape.get(axis) == Some(&zv.len()) {
            map_indices(&x.shape, |i| i[axis])
        } else if z.shape.len() == x.shape.len()
            && broadcast_shape(&z.shape, &x.shape).is_ok_and(|b| b == x.shape)
        {
            let own: Vec<usize> = (0..zv.len()).collect();
            broadcast_to(&own, &z.shape, &x.shape)
        } else {
            return Err(fail(format!(
                "zero point {:?} does not fit an operand of shape {:?}: give a scalar, one per {} \
                 (a vector of {}), or a tensor of the operand's rank",
                z.shape,
                x.shape,
                if axis + 1 == x.shape.len() {
                    "column"
                } else {
                    "row"
                },
                x.shape.get(axis).copied().unwrap_or(1),
            )));
        };
        x.to_f32()
            .iter()
            .zip(&at)
            .map(|(&q, &i)| q - zv[i])
            .collect()
    };
    Ok(Value::f32(x.shape.clone(), v))
}

/// The axis of A's rows (per-row zero points) in a product.
fn rows_axis(a: &Value) -> usize {
    a.shape.len().saturating_sub(2)
}

/// The axis of B's columns (per-column zero points) in a product.
fn cols_axis(b: &Value) -> usize {
    b.shape.len().saturating_sub(1)
}

/// An f32 result of integer operands as the int32 tensor it stands for.
fn int32(c: Value) -> Value {
    let Data::F32(f) = &c.data else {
        unreachable!("products give f32")
    };
    let v = f.par_iter().map(|&x| x.round() as i64).collect();
    Value {
        dtype: DType::I32,
        shape: c.shape,
        data: Data::I64(v),
    }
}

/// `MatMulInteger`: `(A - a_zp) · (B - b_zp)` in int32.
pub(super) fn matmul_integer(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (a, b) = (req(inputs, 0)?, req(inputs, 1)?);
    let a = less_zero_point(a, opt(inputs, 2), rows_axis(a))?;
    let b = less_zero_point(b, opt(inputs, 3), cols_axis(b))?;
    Ok(int32(super::matmul::matmul(&[Some(&a), Some(&b)])?))
}

/// `WeftMatMulInteger(A, B, a_zp)`: a `MatMulInteger` whose constant B
/// was widened at load to f32 less its zero point (see
/// `weights::widen_integer_weights`); `product` runs it on that B packed
/// or resident, when it suits. With `float = 1`, the `Cast` to float that
/// read it was folded in: the f32 result is the output.
pub(super) fn matmul_widened(
    node: Node<'_>,
    inputs: &[Option<&Value>],
    product: impl FnOnce(&Value) -> Option<Result<Value, NnError>>,
) -> Result<Value, NnError> {
    let quantized;
    let a = match to_quantize(node, inputs)? {
        Some((x, scale, zp)) => {
            quantized = Value {
                dtype: DType::U8,
                shape: x.shape.clone(),
                data: Data::I64(quantize_all(&x.to_f32(), scale, zp)),
            };
            &quantized
        }
        None => req(inputs, 0)?,
    };
    let a = less_zero_point(a, opt(inputs, 2), rows_axis(a))?;
    let c = match product(&a) {
        Some(c) => c?,
        None => super::matmul::matmul(&[Some(&a), Some(req(inputs, 1)?)])?,
    };
    Ok(if node.int("float", 0) == 1 {
        c
    } else {
        int32(c)
    })
}

/// `WeftMatMulInteger` on its weight packed for the int8 kernel (see
/// `crate::int8`): exact, in one pass over A's integers. `None` when A
/// does not suit (not u8 or i8, a zero point of another shape); the plain
/// path runs it then.
pub(super) fn matmul_int8(
    node: Node<'_>,
    inputs: &[Option<&Value>],
    w: &crate::int8::PackedI8,
) -> Option<Result<Value, NnError>> {
    use crate::int8::Activations;
    let a = opt(inputs, 0)?;
    let acts = match (to_quantize(node, inputs), &a.data, a.dtype) {
        (Err(e), ..) => return Some(Err(e)),
        (Ok(Some((_, scale, zp))), Data::F32(x), DType::F32) => {
            Activations::Quantized { x, scale, zp }
        }
        (Ok(Some(_)), ..) => return None,
        (Ok(None), Data::I64(v), DType::U8) => Activations::U8(v),
        (Ok(None), Data::I64(v), DType::I8) => Activations::I8(v),
        _ => return None,
    };
    let (&k, lead) = a.shape.split_last()?;
    let (&rows, _) = lead.split_last()?;
    if k != w.k() {
        return None;
    }
    let m: usize = lead.iter().product();
    let za = match opt(inputs, 2).map(|z| (z.shape.as_slice(), z.to_f64())) {
        None => vec![0],
        Some((_, z)) if z.len() == 1 => vec![z[0] as i64],
        // One per row of each matrix of A.
        Some((&[len], z)) if len == rows && m > 0 => (0..m).map(|i| z[i % rows] as i64).collect(),
        Some(_) => return None,
    };
    let mut shape = lead.to_vec();
    shape.push(w.n());
    Some(Ok(if node.int("float", 0) == 1 {
        Value::f32(shape, w.product(acts, m, &za, |v| v as f32))
    } else {
        Value {
            dtype: DType::I32,
            shape,
            data: Data::I64(w.product(acts, m, &za, i64::from)),
        }
    }))
}

/// `ConvInteger`: a convolution of `x - x_zp` by `w - w_zp` (per output
/// channel or per tensor) in int32.
pub(super) fn conv_integer(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = less_zero_point(req(inputs, 0)?, opt(inputs, 2), 1)?;
    let w = less_zero_point(req(inputs, 1)?, opt(inputs, 3), 0)?;
    Ok(int32(super::nn::conv(node, &[Some(&x), Some(&w)])?))
}

/// A scale tensor's values: one, or one per `what` (`n` of them).
fn scales(v: &Value, n: usize, name: &str, what: &str) -> Result<Vec<f64>, NnError> {
    let s = v.to_f64();
    if s.len() == 1 || s.len() == n {
        return Ok(s);
    }
    Err(fail(format!(
        "{name} has {} values: give one, or one per {what} ({n})",
        s.len()
    )))
}

/// A one-value tensor's value.
fn scalar_of(v: &Value, name: &str) -> Result<f64, NnError> {
    match v.to_f64()[..] {
        [s] => Ok(s),
        ref s => Err(fail(format!("{name} has {} values, not 1", s.len()))),
    }
}

/// Rescales int32 accumulators `acc` (`scale[j]` for channel or column j
/// of `[.., channels, inner]` groups: `channel(i)` picks it) by
/// `x_scale · w_scale / y_scale` and requantises them to `y_zp`'s type,
/// rounding half to even and saturating.
fn requantise(
    acc: Value,
    ws: &[f64],
    xs: f64,
    ys: f64,
    yzp: &Value,
    channel: impl Fn(usize) -> usize,
) -> Value {
    let (lo, hi) = if yzp.dtype == DType::I8 {
        (-128.0, 127.0)
    } else {
        (0.0, 255.0)
    };
    let z = yzp.to_f64().first().copied().unwrap_or(0.0);
    let q = acc
        .to_f64()
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let s = xs * ws[channel(i).min(ws.len() - 1)] / ys;
            ((a * s).round_ties_even() + z).clamp(lo, hi) as i64
        })
        .collect();
    Value {
        dtype: yzp.dtype,
        shape: acc.shape,
        data: Data::I64(q),
    }
}

/// `QLinearConv`: a convolution of zero-point-shifted u8/i8 operands plus
/// an int32 bias, rescaled per tensor or per output channel and
/// requantised.
pub(super) fn qlinear_conv(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let v = |i| req(inputs, i);
    let x = less_zero_point(v(0)?, Some(v(2)?), 1)?;
    let w = less_zero_point(v(3)?, opt(inputs, 5), 0)?;
    let bias = opt(inputs, 8).map(|b| Value::f32(b.shape.clone(), b.to_f32()));
    let acc = super::nn::conv(node, &[Some(&x), Some(&w), bias.as_ref()])?;
    let (m, inner) = (acc.shape[1], acc.shape[2..].iter().product::<usize>());
    let ws = scales(v(4)?, m, "w_scale", "output channel")?;
    let (xs, ys) = (scalar_of(v(1)?, "x_scale")?, scalar_of(v(6)?, "y_scale")?);
    Ok(requantise(acc, &ws, xs, ys, v(7)?, |i| {
        i / inner.max(1) % m
    }))
}

/// `QLinearMatMul`: an integer matmul of zero-point-shifted operands,
/// rescaled (per tensor, per row of A, per column of B) and requantised.
pub(super) fn qlinear_matmul(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let v = |i| req(inputs, i);
    let a = less_zero_point(v(0)?, Some(v(2)?), rows_axis(v(0)?))?;
    let b = less_zero_point(v(3)?, Some(v(5)?), cols_axis(v(3)?))?;
    let c = super::matmul::matmul(&[Some(&a), Some(&b)])?;
    let n = *c.shape.last().unwrap_or(&1);
    let m = if c.shape.len() >= 2 {
        c.shape[c.shape.len() - 2]
    } else {
        1
    };
    let sa = scales(v(1)?, m, "a_scale", "row of A")?;
    let sb = scales(v(4)?, n, "b_scale", "column of B")?;
    let sy = scalar_of(v(6)?, "y_scale")?;
    // One scale per row of A and per column of B: their product is the
    // scale of each output element.
    let ws: Vec<f64> = (0..m * n)
        .map(|i| sa[(i / n).min(sa.len() - 1)] * sb[(i % n).min(sb.len() - 1)])
        .collect();
    Ok(requantise(c, &ws, 1.0, sy, v(7)?, |i| i % (m * n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(dtype: DType, shape: Vec<usize>, v: &[i64]) -> Value {
        Value {
            dtype,
            shape,
            data: Data::I64(v.to_vec()),
        }
    }

    fn scalar(v: f32) -> Value {
        Value::f32(vec![1], vec![v])
    }

    #[test]
    fn qlinear_matmul_saturates_as_onnxruntime_does() {
        // onnx's test_qlinearmatmul_2D_int8_float32. The onnx reference
        // casts out of range results with wrap-around (its y[5] is 20);
        // onnxruntime, and the operator's spec, saturate.
        let a = ints(
            DType::I8,
            vec![2, 4],
            &[81, 109, -127, 111, -124, 87, -128, -98],
        );
        let b = ints(
            DType::I8,
            vec![4, 3],
            &[25, -76, 117, -67, -101, -128, -127, 0, 119, 0, 127, 120],
        );
        let (azp, bzp, yzp) = (
            ints(DType::I8, vec![1], &[-14]),
            ints(DType::I8, vec![1], &[-13]),
            ints(DType::I8, vec![1], &[-9]),
        );
        let (sa, sb, sy) = (scalar(0.0066), scalar(0.00705), scalar(0.0107));
        let y = qlinear_matmul(&[
            Some(&a),
            Some(&sa),
            Some(&azp),
            Some(&b),
            Some(&sb),
            Some(&bzp),
            Some(&sy),
            Some(&yzp),
        ])
        .unwrap();
        assert_eq!(y.dtype, DType::I8);
        assert_eq!(y.to_i64(), [41, -12, -9, 1, -75, -128]);
    }

    #[test]
    fn per_column_zero_points_and_scales_apply_to_their_columns() {
        // (b - zp) = [[0, 0], [2, 2]]; a · that = [40, 40]; scaled by
        // column [1, 2].
        let a = ints(DType::U8, vec![1, 2], &[10, 20]);
        let b = ints(DType::U8, vec![2, 2], &[1, 2, 3, 4]);
        let zero = ints(DType::U8, vec![], &[0]);
        let bzp = ints(DType::U8, vec![2], &[1, 2]);
        let sb = Value::f32(vec![2], vec![1.0, 2.0]);
        let one = scalar(1.0);
        let y = qlinear_matmul(&[
            Some(&a),
            Some(&one),
            Some(&zero),
            Some(&b),
            Some(&sb),
            Some(&bzp),
            Some(&one),
            Some(&zero),
        ])
        .unwrap();
        assert_eq!(y.to_i64(), [40, 80]);
        let three = Value::f32(vec![3], vec![1.0; 3]);
        let err = qlinear_matmul(&[
            Some(&a),
            Some(&one),
            Some(&zero),
            Some(&b),
            Some(&three),
            Some(&bzp),
            Some(&one),
            Some(&zero),
        ])
        .unwrap_err();
        assert!(
            err.message
                .contains("b_scale has 3 values: give one, or one per column of B (2)"),
            "{}",
            err.message
        );
        let c = matmul_integer(&[Some(&a), Some(&b), Some(&zero), Some(&bzp)]).unwrap();
        assert_eq!((c.dtype, c.to_i64()), (DType::I32, vec![40, 40]));
        // Per row of A: [[10, 20], [30, 40]] less [10, 30] is
        // [[0, 10], [0, 10]].
        let a2 = ints(DType::U8, vec![2, 2], &[10, 20, 30, 40]);
        let azp = ints(DType::U8, vec![2], &[10, 30]);
        let c = matmul_integer(&[Some(&a2), Some(&b), Some(&azp), None]).unwrap();
        assert_eq!(c.to_i64(), [30, 40, 30, 40]);
        // A zero point of another length is refused, saying what fits.
        let bad = ints(DType::U8, vec![3], &[1, 2, 3]);
        let err = matmul_integer(&[Some(&a), Some(&b), None, Some(&bad)]).unwrap_err();
        assert!(
            err.message.contains("one per column (a vector of 2)"),
            "{}",
            err.message
        );
    }
}
