//! Loss operators: `NegativeLogLikelihoodLoss` and
//! `SoftmaxCrossEntropyLoss` (log-softmax over axis 1, then the former).

use super::{Node, opt, req};
use crate::NnError;
use crate::onnx::value::{DType, Value, fail};

/// NLL of `logp` (`[N, C, d...]`, log-probabilities) at `target`
/// (`[N, d...]`), weighted and reduced as the ONNX reference does.
fn nll(
    node: Node<'_>,
    logp: &[f64],
    shape: &[usize],
    target: &Value,
    weight: Option<&Value>,
) -> Result<(Vec<f64>, Vec<usize>), NnError> {
    let (n, c) = (
        shape[0],
        *shape
            .get(1)
            .ok_or_else(|| fail("input must be [N, C, ...]"))?,
    );
    let inner: usize = shape[2..].iter().product();
    let t = target.to_i64();
    if t.len() != n * inner {
        return Err(fail(format!(
            "target {:?} does not match input {shape:?}",
            target.shape
        )));
    }
    let ignore = node
        .has("ignore_index")
        .then(|| node.int("ignore_index", 0));
    let w = weight.map(Value::to_f64);
    let mut loss = vec![0.0; t.len()];
    let mut gw = vec![1.0; t.len()];
    for (i, &cls) in t.iter().enumerate() {
        if Some(cls) == ignore {
            gw[i] = 0.0;
            continue;
        }
        let k = usize::try_from(cls)
            .ok()
            .filter(|&k| k < c)
            .ok_or_else(|| fail(format!("target class {cls} out of range")))?;
        let (b, d) = (i / inner.max(1), i % inner.max(1));
        if let Some(w) = &w {
            gw[i] = w[k];
        }
        loss[i] = -logp[(b * c + k) * inner + d] * gw[i];
    }
    let weighted = w.is_some() || ignore.is_some();
    Ok(match node.string("reduction", "mean").as_str() {
        "none" => (loss, target.shape.clone()),
        "sum" => (vec![loss.iter().sum()], vec![]),
        _ if weighted => (
            vec![loss.iter().sum::<f64>() / gw.iter().sum::<f64>()],
            vec![],
        ),
        _ => (
            vec![loss.iter().sum::<f64>() / loss.len().max(1) as f64],
            vec![],
        ),
    })
}

fn f64_value(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Value {
    Value::f64_as(dtype, shape, v)
}

pub(super) fn nll_loss(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let (v, s) = nll(node, &x.to_f64(), &x.shape, req(inputs, 1)?, opt(inputs, 2))?;
    Ok(f64_value(x.dtype, s, v))
}

pub(super) fn softmax_cross_entropy(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?;
    let (n, c) = (
        x.shape[0],
        *x.shape
            .get(1)
            .ok_or_else(|| fail("scores must be [N, C, ...]"))?,
    );
    let inner: usize = x.shape[2..].iter().product();
    let mut logp = x.to_f64();
    for b in 0..n {
        for d in 0..inner {
            let at = |k: usize| (b * c + k) * inner + d;
            let m = (0..c)
                .map(|k| logp[at(k)])
                .fold(f64::NEG_INFINITY, f64::max);
            let lse = m + (0..c).map(|k| (logp[at(k)] - m).exp()).sum::<f64>().ln();
            (0..c).for_each(|k| logp[at(k)] -= lse);
        }
    }
    let (v, s) = nll(node, &logp, &x.shape, req(inputs, 1)?, opt(inputs, 2))?;
    let mut out = vec![f64_value(x.dtype, s, v)];
    if node.proto.outputs.len() > 1 {
        out.push(f64_value(x.dtype, x.shape.clone(), logp));
    }
    Ok(out)
}
