//! Linear (de)quantisation: `QuantizeLinear` and `DequantizeLinear`, with
//! per-tensor, per-axis and blocked scales.

use super::shape::map_indices;
use super::{Node, axis, opt, req};
use crate::NnError;
use crate::onnx::value::{DType, Data, Value, fail, strides};

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
    if scale.shape.len() != x.len() {
        return Err(fail("blocked scales must have the input's rank"));
    }
    let st = strides(&scale.shape);
    Ok(map_indices(x, |i| {
        i.iter()
            .enumerate()
            .map(|(a, &v)| if a == ax { v / block } else { v } * st[a])
            .sum()
    }))
}

pub(super) fn dequantize(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, scale) = (req(inputs, 0)?, req(inputs, 1)?);
    let idx = scale_index(node, &x.shape, scale)?;
    let (xv, sv) = (x.to_f64(), scale.to_f64());
    let zp = opt(inputs, 2).map(Value::to_f64);
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
    Ok(Value {
        dtype: DType::F64,
        shape: x.shape.clone(),
        data: Data::F64(v),
    }
    .cast(to))
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
    let (lo, hi) = match to {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::U16 => (0.0, 65535.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        other => return Err(fail(format!("quantising to {other:?} is not supported"))),
    };
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

/// `DynamicQuantizeLinear`: u8 quantisation with a scale and zero point
/// from the data's range (which always includes 0), in f32 as specified.
pub(super) fn dynamic_quantize(inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?.to_f32();
    let lo = x.iter().copied().fold(0.0f32, f32::min);
    let hi = x.iter().copied().fold(0.0f32, f32::max);
    let scale = if hi == lo { 1.0 } else { (hi - lo) / 255.0 };
    let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
    let y: Vec<i64> = x
        .iter()
        .map(|&v| ((v / scale).round_ties_even() + zp).clamp(0.0, 255.0) as i64)
        .collect();
    let shape = req(inputs, 0)?.shape.clone();
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

/// `QLinearMatMul`: an integer matmul of zero-point-shifted operands,
/// rescaled (per tensor, per row of A, per column of B) and requantised.
pub(super) fn qlinear_matmul(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let v = |i| req(inputs, i);
    let shift = |x: &Value, zp: &Value| -> Value {
        let z = zp.to_f64();
        let d: Vec<f32> = x.to_f64().iter().map(|&q| (q - z[0]) as f32).collect();
        Value::f32(x.shape.clone(), d)
    };
    let (a, b) = (shift(v(0)?, v(2)?), shift(v(3)?, v(5)?));
    let c = super::matmul::matmul(&[Some(&a), Some(&b)])?;
    let (sa, sb, sy, zy) = (v(1)?.to_f64(), v(4)?.to_f64(), v(6)?.to_f64()[0], v(7)?);
    let n = *c.shape.last().unwrap_or(&1);
    let m = if c.shape.len() >= 2 {
        c.shape[c.shape.len() - 2]
    } else {
        1
    };
    let (lo, hi) = if zy.dtype == DType::I8 {
        (-128.0, 127.0)
    } else {
        (0.0, 255.0)
    };
    let z = zy.to_f64()[0];
    let q: Vec<i64> = c
        .to_f64()
        .iter()
        .enumerate()
        .map(|(i, &acc)| {
            let (row, col) = ((i / n) % m, i % n);
            let s = sa[row.min(sa.len() - 1)] * sb[col.min(sb.len() - 1)] / sy;
            ((acc * s).round_ties_even() + z).clamp(lo, hi) as i64
        })
        .collect();
    Ok(Value {
        dtype: zy.dtype,
        shape: c.shape.clone(),
        data: Data::I64(q),
    })
}
