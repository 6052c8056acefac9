//! The optimiser steps of the `ai.onnx.preview.training` domain:
//! `Adagrad`, `Momentum` (standard and Nesterov) and `Adam`, each over any
//! number of tensors at once (inputs: the rate `R`, the step count `T`,
//! then the tensors, their gradients and their accumulators, grouped by
//! kind; outputs: the new tensors, then the new accumulators).

use super::{Node, req};
use crate::NnError;
use crate::onnx::value::{Value, fail};

/// The operators of the training domain weft-nn runs.
pub(crate) const TRAINING: &[&str] = &["Adagrad", "Adam", "Momentum"];

/// What one step keeps per tensor besides the tensor itself.
fn accumulators(op: &str) -> usize {
    match op {
        "Adam" => 2,
        _ => 1,
    }
}

pub(super) fn step(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let op = node.proto.op_type.as_str();
    let per = 2 + accumulators(op);
    let n = inputs.len().saturating_sub(2) / per;
    if n == 0 || inputs.len() != 2 + n * per {
        return Err(fail(format!(
            "{op} takes R, T and then, for each of its tensors, the tensor, its gradient and \
             {} accumulator(s): {} inputs for n tensors, got {}",
            per - 2,
            format_args!("2 + {per}n"),
            inputs.len()
        )));
    }
    let one = |i: usize, what: &str| -> Result<f64, NnError> {
        let v = req(inputs, i)?;
        match v.len() {
            1 => Ok(v.to_f64()[0]),
            _ => Err(fail(format!("{op}'s {what} must be a single value"))),
        }
    };
    let (r, t) = (one(0, "rate R")?, one(1, "step count T")?);
    let f = |name: &str, default: f32| f64::from(node.float(name, default));
    let mut xs = Vec::with_capacity(n);
    let mut accs: Vec<Vec<Value>> = vec![Vec::with_capacity(n); per - 2];
    for i in 0..n {
        let x = req(inputs, 2 + i)?;
        let kin = |k: usize| -> Result<Vec<f64>, NnError> {
            let v = req(inputs, 2 + k * n + i)?;
            match v.shape == x.shape {
                true => Ok(v.to_f64()),
                false => Err(fail(format!(
                    "{op}: input {} has shape {:?}, its tensor {:?}",
                    2 + k * n + i,
                    v.shape,
                    x.shape
                ))),
            }
        };
        let (xv, g) = (x.to_f64(), kin(1)?);
        let norm = f("norm_coefficient", 0.0);
        let g: Vec<f64> = g.iter().zip(&xv).map(|(g, x)| norm * x + g).collect();
        let (x_new, new): (Vec<f64>, Vec<Vec<f64>>) = match op {
            "Adagrad" => {
                let h = kin(2)?;
                let rate = r / (1.0 + t * f("decay_factor", 0.0));
                let eps = f("epsilon", 1e-6);
                let h: Vec<f64> = h.iter().zip(&g).map(|(h, g)| h + g * g).collect();
                let x = (xv.iter().zip(&g).zip(&h))
                    .map(|((x, g), h)| x - rate * g / (h.sqrt() + eps))
                    .collect();
                (x, vec![h])
            }
            "Momentum" => {
                let v = kin(2)?;
                let (alpha, beta) = (f("alpha", 0.0), f("beta", 0.0));
                let beta = if t > 0.0 { beta } else { 1.0 };
                let nesterov = match node.string("mode", "standard").as_str() {
                    "standard" => false,
                    "nesterov" => true,
                    other => {
                        return Err(fail(format!(
                            "Momentum's mode `{other}` is not `standard` or `nesterov`"
                        )));
                    }
                };
                let v: Vec<f64> = v
                    .iter()
                    .zip(&g)
                    .map(|(v, g)| alpha * v + beta * g)
                    .collect();
                let x = (xv.iter().zip(&g).zip(&v))
                    .map(|((x, g), v)| match nesterov {
                        true => x - r * (g + alpha * v),
                        false => x - r * v,
                    })
                    .collect();
                (x, vec![v])
            }
            _ => {
                let (v, h) = (kin(2)?, kin(3)?);
                let (alpha, beta) = (f("alpha", 0.9), f("beta", 0.999));
                let eps = f("epsilon", 1e-6);
                let v: Vec<f64> = v
                    .iter()
                    .zip(&g)
                    .map(|(v, g)| alpha * v + (1.0 - alpha) * g)
                    .collect();
                let h: Vec<f64> = h
                    .iter()
                    .zip(&g)
                    .map(|(h, g)| beta * h + (1.0 - beta) * g * g)
                    .collect();
                // Bias correction once steps are counted.
                let rate = match t > 0.0 {
                    true => r * (1.0 - beta.powf(t)).sqrt() / (1.0 - alpha.powf(t)),
                    false => r,
                };
                let post = 1.0 - f("norm_coefficient_post", 0.0);
                let x = (xv.iter().zip(&v).zip(&h))
                    .map(|((x, v), h)| post * (x - rate * v / (h.sqrt() + eps)))
                    .collect();
                (x, vec![v, h])
            }
        };
        xs.push(Value::f64_as(x.dtype, x.shape.clone(), x_new));
        for (k, a) in new.into_iter().enumerate() {
            let like = req(inputs, 2 + (2 + k) * n + i)?;
            accs[k].push(Value::f64_as(like.dtype, x.shape.clone(), a));
        }
    }
    xs.extend(accs.into_iter().flatten());
    Ok(xs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{Attr, NodeProto};

    #[test]
    fn a_step_updates_every_tensor_and_names_a_wrong_count() {
        let proto = NodeProto {
            op_type: "Adagrad".into(),
            attrs: vec![("epsilon".into(), Attr::Float(0.0))],
            ..Default::default()
        };
        let node = Node {
            proto: &proto,
            opset: 1,
        };
        let (r, t) = (Value::f32(vec![], vec![0.5]), Value::i64(vec![], vec![0]));
        let x = Value::f32(vec![2], vec![1.0, 2.0]);
        let g = Value::f32(vec![2], vec![3.0, -4.0]);
        let h = Value::f32(vec![2], vec![0.0, 0.0]);
        let out = step(node, &[Some(&r), Some(&t), Some(&x), Some(&g), Some(&h)]).unwrap();
        // h = g², x - 0.5·g/|g|.
        assert_eq!(out[0].to_f32(), [0.5, 2.5]);
        assert_eq!(out[1].to_f32(), [9.0, 16.0]);
        let err = step(node, &[Some(&r), Some(&t), Some(&x), Some(&g)]).unwrap_err();
        assert!(err.message.contains("2 + 3n inputs"), "{}", err.message);
    }
}
