//! The kernels of the fused nodes `onnx/fuse.rs` makes: one pass over the
//! activations where the graph as written takes five to nine.

use rayon::prelude::*;

use super::{fail, req};
use crate::NnError;
use crate::onnx::value::{DType, Data, Value};

/// Fused operators that can write over their first input.
pub(super) const IN_PLACE: &[&str] = &["WeftGelu", "WeftLayerNorm"];

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

fn scalar(inputs: &[Option<&Value>], i: usize) -> Result<f32, NnError> {
    match &req(inputs, i)?.data {
        Data::F32(v) if v.len() == 1 => Ok(v[0]),
        _ => Err(fail(format!(
            "input {i} of a fused node is not an f32 scalar"
        ))),
    }
}

fn floats<'a>(inputs: &[Option<&'a Value>], i: usize) -> Result<&'a [f32], NnError> {
    match &req(inputs, i)?.data {
        Data::F32(v) => Ok(v),
        _ => Err(fail(format!("input {i} of a fused node is not f32"))),
    }
}

/// Runs `WeftGelu` or `WeftLayerNorm` on `x` (owned: written over).
pub(super) fn run(op: &str, inputs: &[Option<&Value>], mut x: Value) -> Result<Value, NnError> {
    if x.dtype != DType::F32 {
        return Err(fail(format!("{op} takes f32, not {:?}", x.dtype)));
    }
    let d = x.shape.last().copied().unwrap_or(1).max(1);
    let Data::F32(data) = &mut x.data else {
        return Err(fail(format!("{op} takes f32")));
    };
    match op {
        "WeftGelu" => {
            let (root2, one, half) = (scalar(inputs, 1)?, scalar(inputs, 2)?, scalar(inputs, 3)?);
            let erf = super::elementwise::erf_f32;
            // The graph's order: Div, Erf, Add, Mul(x), Mul(0.5).
            let f = |c: &mut [f32]| {
                c.iter_mut()
                    .for_each(|v| *v = (*v * (erf(*v / root2) + one)) * half)
            };
            if data.len() > CHUNK {
                data.par_chunks_mut(CHUNK).for_each(f);
            } else {
                f(data);
            }
        }
        "WeftLayerNorm" => {
            let eps = scalar(inputs, 1)?;
            let (w, b) = (floats(inputs, 2)?, floats(inputs, 3)?);
            if w.len() != d || b.len() != d {
                return Err(fail(format!(
                    "layer norm over {d} values with {} weights and {} biases",
                    w.len(),
                    b.len()
                )));
            }
            let row = |r: &mut [f32]| {
                let mean = (r.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64) as f32;
                r.iter_mut().for_each(|v| *v -= mean);
                let var = (r.iter().map(|&v| f64::from(v * v)).sum::<f64>() / d as f64) as f32;
                let q = (var + eps).sqrt();
                r.iter_mut()
                    .zip(w.iter().zip(b))
                    .for_each(|(v, (&w, &b))| *v = *v / q * w + b);
            };
            let rows_per_task = (CHUNK / d).max(1);
            if data.len() > CHUNK {
                data.par_chunks_mut(rows_per_task * d)
                    .for_each(|c| c.chunks_mut(d).for_each(row));
            } else {
                data.chunks_mut(d).for_each(row);
            }
        }
        other => return Err(fail(format!("unknown fused operator {other}"))),
    }
    Ok(x)
}

/// `WeftMatMulBias`: A·W + bias, W 2-D and bias one value per column,
/// the product accumulated onto the broadcast bias (no separate pass).
pub(super) fn matmul_bias(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (a, w) = (req(inputs, 0)?, req(inputs, 1)?);
    let bias = floats(inputs, 2)?;
    let (Data::F32(x), Data::F32(wd), DType::F32) = (&a.data, &w.data, a.dtype) else {
        return Err(fail("WeftMatMulBias takes f32"));
    };
    let (&[k, n], Some(&ka)) = (w.shape.as_slice(), a.shape.last()) else {
        return Err(fail(format!(
            "WeftMatMulBias: weight of shape {:?}",
            w.shape
        )));
    };
    if ka != k || bias.len() != n {
        return Err(fail(format!(
            "MatMul of {:?} and {:?} with a bias of {}",
            a.shape,
            w.shape,
            bias.len()
        )));
    }
    let rows: usize = a.shape[..a.shape.len() - 1].iter().product();
    let mut c = Vec::with_capacity(rows * n);
    for _ in 0..rows {
        c.extend_from_slice(bias);
    }
    crate::kernels::matmul_add(x, wd, &mut c, rows, k, n);
    let mut shape = a.shape.clone();
    *shape.last_mut().expect("rank >= 1") = n;
    Ok(a.with(shape, Data::F32(c)))
}
