//! Apertus's xIELU activation: its constants per layer, read as
//! llama.cpp's loader reads them and taken up as its graph takes them.

use super::HParams;
use crate::gguf::Value;
use crate::gpu::{FfnAct, Xielu};
use crate::{GgufInfo, NnError, NnErrorKind};

/// ggml's softplus, as its `ggml_xielu` applies it to the file's alphas.
fn softplus(x: f32) -> f32 {
    match x > 20.0 {
        true => x,
        false => (1.0 + x.exp()).ln(),
    }
}

/// An `apertus` file's xIELU constants, a set per layer (none for other
/// architectures): `xielu.alpha_n`, `xielu.alpha_p`, `xielu.beta` and
/// `xielu.eps`, each a value per layer or one for all (llama.cpp's
/// `get_key_or_arr`), required.
pub(super) fn read(arch: &str, info: &GgufInfo, layers: usize) -> Result<Vec<Xielu>, NnError> {
    if arch != "apertus" {
        return Ok(Vec::new());
    }
    let per_layer = |name: &str| -> Result<Vec<f32>, NnError> {
        let key = format!("xielu.{name}");
        let bad = |m: String| NnError::new(NnErrorKind::InvalidEncoding, m);
        let values: Vec<f32> = match info.get(&key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_float().map(|v| v as f32))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("`{key}` holds other than numbers")))?,
            Some(v) => {
                let v = v
                    .as_float()
                    .ok_or_else(|| bad(format!("`{key}` is not a number")))?;
                vec![v as f32; layers]
            }
            None => return Err(bad(format!("GGUF metadata `{key}` is missing"))),
        };
        match values.len() == layers {
            true => Ok(values),
            false => Err(bad(format!(
                "`{key}` has {} values for {layers} layers",
                values.len()
            ))),
        }
    };
    let [alpha_n, alpha_p, beta, eps] = ["alpha_n", "alpha_p", "beta", "eps"].map(per_layer);
    let (alpha_n, alpha_p, beta, eps) = (alpha_n?, alpha_p?, beta?, eps?);
    Ok((0..layers)
        .map(|l| Xielu {
            alpha_n: beta[l] + softplus(alpha_n[l]),
            alpha_p: softplus(alpha_p[l]),
            beta: beta[l],
            eps: eps[l],
        })
        .collect())
}

impl HParams {
    /// Layer `l`'s feed-forward activation: [`HParams::act`], or
    /// Apertus's xIELU with the layer's constants.
    pub fn act_of(&self, l: usize) -> FfnAct {
        match self.xielu.get(l) {
            Some(&x) => FfnAct::Xielu(x),
            None => self.act,
        }
    }
}
