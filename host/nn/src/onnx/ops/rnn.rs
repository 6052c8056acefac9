//! The recurrent layers: `RNN`, `GRU` and `LSTM`, forward, reverse or
//! bidirectional, with per-batch sequence lengths, initial states, custom
//! activations, clipping, `LSTM`'s peepholes and coupled input-forget gate,
//! and `GRU`'s `linear_before_reset`; batch-first (`layout = 1`) too.
//! Computed in f64, one step at a time.

use super::{Node, opt, req};
use crate::NnError;
use crate::onnx::value::{Value, fail, numel};

/// An activation function by its ONNX name, with its alpha and beta.
#[derive(Clone, Copy)]
struct Act {
    kind: ActKind,
    alpha: f64,
    beta: f64,
}

#[derive(Clone, Copy)]
enum ActKind {
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu,
    ThresholdedRelu,
    ScaledTanh,
    HardSigmoid,
    Elu,
    Softsign,
    Softplus,
    Affine,
}

impl Act {
    fn apply(self, x: f64) -> f64 {
        let (a, b) = (self.alpha, self.beta);
        match self.kind {
            ActKind::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            ActKind::Tanh => x.tanh(),
            ActKind::Relu => x.max(0.0),
            ActKind::LeakyRelu => {
                if x < 0.0 {
                    a * x
                } else {
                    x
                }
            }
            ActKind::ThresholdedRelu => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            ActKind::ScaledTanh => a * (b * x).tanh(),
            ActKind::HardSigmoid => (a * x + b).clamp(0.0, 1.0),
            ActKind::Elu => {
                if x < 0.0 {
                    a * (x.exp() - 1.0)
                } else {
                    x
                }
            }
            ActKind::Softsign => x / (1.0 + x.abs()),
            ActKind::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            ActKind::Affine => a * x + b,
        }
    }
}

/// The node's activations, `per_dir` for each of `dirs` directions: its
/// `activations` attribute (with `activation_alpha`/`activation_beta`
/// consumed in order by the functions that take them), or `defaults`.
fn activations(node: Node<'_>, defaults: &[&str], dirs: usize) -> Result<Vec<Act>, NnError> {
    let names: Vec<String> = match node.strings("activations") {
        Some(v) => v,
        None => (0..dirs)
            .flat_map(|_| defaults.iter().map(|s| s.to_string()))
            .collect(),
    };
    if names.len() != defaults.len() * dirs {
        return Err(fail(format!(
            "{} activations given; {} takes {} per direction",
            names.len(),
            node.proto.op_type,
            defaults.len()
        )));
    }
    let (alphas, betas) = (
        node.floats("activation_alpha").unwrap_or_default(),
        node.floats("activation_beta").unwrap_or_default(),
    );
    let (mut ai, mut bi) = (0, 0);
    let param = |list: &[f32], at: &mut usize, default: f64| {
        let v = list.get(*at).map_or(default, |&v| f64::from(v));
        *at += 1;
        v
    };
    names
        .iter()
        .map(|n| {
            let (kind, alpha, beta) = match n.to_ascii_lowercase().as_str() {
                "sigmoid" => (ActKind::Sigmoid, 0.0, 0.0),
                "tanh" => (ActKind::Tanh, 0.0, 0.0),
                "relu" => (ActKind::Relu, 0.0, 0.0),
                "leakyrelu" => (ActKind::LeakyRelu, param(&alphas, &mut ai, 0.01), 0.0),
                "thresholdedrelu" => (ActKind::ThresholdedRelu, param(&alphas, &mut ai, 1.0), 0.0),
                "scaledtanh" => (
                    ActKind::ScaledTanh,
                    param(&alphas, &mut ai, 1.0),
                    param(&betas, &mut bi, 1.0),
                ),
                "hardsigmoid" => (
                    ActKind::HardSigmoid,
                    param(&alphas, &mut ai, 0.2),
                    param(&betas, &mut bi, 0.5),
                ),
                "elu" => (ActKind::Elu, param(&alphas, &mut ai, 1.0), 0.0),
                "softsign" => (ActKind::Softsign, 0.0, 0.0),
                "softplus" => (ActKind::Softplus, 0.0, 0.0),
                "affine" => (
                    ActKind::Affine,
                    param(&alphas, &mut ai, 1.0),
                    param(&betas, &mut bi, 0.0),
                ),
                other => return Err(fail(format!("activation `{other}` is not one ONNX names"))),
            };
            Ok(Act { kind, alpha, beta })
        })
        .collect()
}

/// Which recurrent layer.
#[derive(Clone, Copy, PartialEq)]
enum Cell {
    Rnn,
    Gru,
    Lstm,
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }
}

/// `RNN`, `GRU` or `LSTM` (by the node's op type): outputs `Y` (every
/// step's hidden state), `Y_h` (the last), and for `LSTM` `Y_c`.
pub(super) fn recurrent(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let cell = match node.proto.op_type.as_str() {
        "RNN" => Cell::Rnn,
        "GRU" => Cell::Gru,
        _ => Cell::Lstm,
    };
    let g = cell.gates();
    let (x, w, r) = (req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?);
    let layout = node.int("layout", 0);
    if !matches!(layout, 0 | 1) {
        return Err(fail(format!(
            "layout {layout}: expected 0 (sequence first) or 1 (batch first)"
        )));
    }
    if x.shape.len() != 3 || w.shape.len() != 3 || r.shape.len() != 3 {
        return Err(fail(format!(
            "X {:?}, W {:?} and R {:?} must each have rank 3",
            x.shape, w.shape, r.shape
        )));
    }
    let (seq, batch, input) = match layout {
        0 => (x.shape[0], x.shape[1], x.shape[2]),
        _ => (x.shape[1], x.shape[0], x.shape[2]),
    };
    let dirs = w.shape[0];
    let hidden = r.shape[2];
    if node.has("hidden_size") && node.int("hidden_size", 0) != hidden as i64 {
        return Err(fail(format!(
            "hidden_size {} differs from R's {hidden}",
            node.int("hidden_size", 0)
        )));
    }
    let direction = node.string("direction", "forward");
    let want_dirs = if direction == "bidirectional" { 2 } else { 1 };
    if !matches!(direction.as_str(), "forward" | "reverse" | "bidirectional") {
        return Err(fail(format!(
            "direction `{direction}`: expected forward, reverse or bidirectional"
        )));
    }
    if dirs != want_dirs
        || w.shape[1] != g * hidden
        || w.shape[2] != input
        || r.shape != [dirs, g * hidden, hidden]
    {
        return Err(fail(format!(
            "W {:?} and R {:?} do not fit {} gates of hidden size {hidden} over inputs of \
             {input}, {want_dirs} direction(s)",
            w.shape, r.shape, g
        )));
    }
    let (xv, wv, rv) = (x.to_f64(), w.to_f64(), r.to_f64());
    let bias = opt(inputs, 3).map(Value::to_f64);
    if bias
        .as_ref()
        .is_some_and(|b| b.len() != dirs * 2 * g * hidden)
    {
        return Err(fail(format!(
            "B must hold {} values",
            dirs * 2 * g * hidden
        )));
    }
    let lens: Vec<usize> = match opt(inputs, 4) {
        Some(l) => l
            .to_i64()
            .iter()
            .map(|&v| match usize::try_from(v) {
                Ok(v) if v <= seq => Ok(v),
                _ => Err(fail(format!("sequence length {v} is outside 0..={seq}"))),
            })
            .collect::<Result<_, _>>()?,
        None => vec![seq; batch],
    };
    if lens.len() != batch {
        return Err(fail(format!(
            "sequence_lens has {} values for a batch of {batch}",
            lens.len()
        )));
    }
    // A state tensor ([dirs, batch, hidden], or batch first) as
    // [dir][batch][hidden].
    let state = |v: Option<&Value>, what: &str| -> Result<Vec<f64>, NnError> {
        let Some(v) = v else {
            return Ok(vec![0.0; dirs * batch * hidden]);
        };
        let want = match layout {
            0 => [dirs, batch, hidden],
            _ => [batch, dirs, hidden],
        };
        if v.shape != want {
            return Err(fail(format!("{what} {:?} must be {want:?}", v.shape)));
        }
        let d = v.to_f64();
        Ok(match layout {
            0 => d,
            _ => (0..dirs * batch * hidden)
                .map(|i| {
                    let (di, b, j) = (i / (batch * hidden), i / hidden % batch, i % hidden);
                    d[(b * dirs + di) * hidden + j]
                })
                .collect(),
        })
    };
    let mut h0 = state(opt(inputs, 5), "initial_h")?;
    let mut c0 = match cell {
        Cell::Lstm => state(opt(inputs, 6), "initial_c")?,
        _ => Vec::new(),
    };
    let peep = match cell {
        Cell::Lstm => opt(inputs, 7).map(Value::to_f64),
        _ => None,
    };
    if peep.as_ref().is_some_and(|p| p.len() != dirs * 3 * hidden) {
        return Err(fail(format!("P must hold {dirs} x 3 x {hidden} values")));
    }
    let per_dir: &[&str] = match cell {
        Cell::Rnn => &["Tanh"],
        Cell::Gru => &["Sigmoid", "Tanh"],
        Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
    };
    let acts = activations(node, per_dir, dirs)?;
    let clip = node.has("clip").then(|| f64::from(node.float("clip", 0.0)));
    if let Some(c) = clip.filter(|c| c.is_nan() || *c <= 0.0) {
        return Err(fail(format!("clip {c}: a threshold must be above 0")));
    }
    let clipped = |v: f64| clip.map_or(v, |c| v.clamp(-c, c));
    let input_forget = node.int("input_forget", 0) != 0;
    let linear_before_reset = node.int("linear_before_reset", 0) != 0;
    let xat = |t: usize, b: usize| -> &[f64] {
        let at = match layout {
            0 => (t * batch + b) * input,
            _ => (b * seq + t) * input,
        };
        &xv[at..at + input]
    };
    // Y as [seq][dir][batch][hidden]; steps past a sequence's length stay 0.
    let mut y = vec![0.0; numel(&[seq, dirs, batch, hidden], "the recurrence's Y")?];
    for d in 0..dirs {
        let reverse = direction == "reverse" || d == 1;
        let wd = &wv[d * g * hidden * input..(d + 1) * g * hidden * input];
        let rd = &rv[d * g * hidden * hidden..(d + 1) * g * hidden * hidden];
        let zero = vec![0.0; 2 * g * hidden];
        let bd = bias.as_ref().map_or(&zero[..], |b| {
            &b[d * 2 * g * hidden..(d + 1) * 2 * g * hidden]
        });
        let act = &acts[d * per_dir.len()..(d + 1) * per_dir.len()];
        for b in 0..batch {
            let h = &mut h0[(d * batch + b) * hidden..][..hidden];
            let mut c: Vec<f64> = match cell {
                Cell::Lstm => c0[(d * batch + b) * hidden..][..hidden].to_vec(),
                _ => Vec::new(),
            };
            for step in 0..lens[b] {
                let t = if reverse { lens[b] - 1 - step } else { step };
                let xt = xat(t, b);
                // Each gate row's input and recurrent products with biases.
                let wx = |row: usize| -> f64 {
                    let w = &wd[row * input..(row + 1) * input];
                    w.iter().zip(xt).map(|(a, b)| a * b).sum::<f64>() + bd[row]
                };
                let rh = |row: usize, hv: &[f64]| -> f64 {
                    let r = &rd[row * hidden..(row + 1) * hidden];
                    r.iter().zip(hv).map(|(a, b)| a * b).sum::<f64>() + bd[g * hidden + row]
                };
                let prev = h.to_vec();
                match cell {
                    Cell::Rnn => {
                        for (j, hj) in h.iter_mut().enumerate() {
                            *hj = act[0].apply(clipped(wx(j) + rh(j, &prev)));
                        }
                    }
                    Cell::Gru => {
                        // Gates z, r, h.
                        let z: Vec<f64> = (0..hidden)
                            .map(|j| act[0].apply(clipped(wx(j) + rh(j, &prev))))
                            .collect();
                        let rg: Vec<f64> = (0..hidden)
                            .map(|j| act[0].apply(clipped(wx(hidden + j) + rh(hidden + j, &prev))))
                            .collect();
                        let reset: Vec<f64> = prev.iter().zip(&rg).map(|(p, r)| p * r).collect();
                        for j in 0..hidden {
                            let row = 2 * hidden + j;
                            let pre = if linear_before_reset {
                                wx(row) + rg[j] * rh(row, &prev)
                            } else {
                                wx(row) + rh(row, &reset)
                            };
                            let ht = act[1].apply(clipped(pre));
                            h[j] = (1.0 - z[j]) * ht + z[j] * prev[j];
                        }
                    }
                    Cell::Lstm => {
                        // Gates i, o, f, c; peepholes i, o, f.
                        let p = |k: usize, j: usize| {
                            peep.as_ref()
                                .map_or(0.0, |p| p[d * 3 * hidden + k * hidden + j])
                        };
                        for j in 0..hidden {
                            let pre =
                                |gate: usize| wx(gate * hidden + j) + rh(gate * hidden + j, &prev);
                            let i = act[0].apply(clipped(pre(0) + p(0, j) * c[j]));
                            let f = if input_forget {
                                1.0 - i
                            } else {
                                act[0].apply(clipped(pre(2) + p(2, j) * c[j]))
                            };
                            let cand = act[1].apply(clipped(pre(3)));
                            c[j] = f * c[j] + i * cand;
                            let o = act[0].apply(clipped(pre(1) + p(1, j) * c[j]));
                            h[j] = o * act[2].apply(c[j]);
                        }
                    }
                }
                y[((t * dirs + d) * batch + b) * hidden..][..hidden].copy_from_slice(h);
            }
            if cell == Cell::Lstm {
                c0[(d * batch + b) * hidden..][..hidden].copy_from_slice(&c);
            }
        }
    }
    let dt = x.dtype;
    let out = |shape: Vec<usize>, v: Vec<f64>| Value::f64_as(dt, shape, v);
    // Batch first: Y [batch, seq, dirs, hidden], states [batch, dirs, hidden].
    let (y, y_shape, states_shape) = match layout {
        0 => (y, vec![seq, dirs, batch, hidden], vec![dirs, batch, hidden]),
        _ => {
            let t: Vec<f64> = (0..seq * dirs * batch * hidden)
                .map(|i| {
                    let (b, s, di, j) = (
                        i / (seq * dirs * hidden),
                        i / (dirs * hidden) % seq,
                        i / hidden % dirs,
                        i % hidden,
                    );
                    y[((s * dirs + di) * batch + b) * hidden + j]
                })
                .collect();
            (t, vec![batch, seq, dirs, hidden], vec![batch, dirs, hidden])
        }
    };
    let states = |v: Vec<f64>| match layout {
        0 => v,
        _ => (0..dirs * batch * hidden)
            .map(|i| {
                let (b, di, j) = (i / (dirs * hidden), i / hidden % dirs, i % hidden);
                v[(di * batch + b) * hidden + j]
            })
            .collect(),
    };
    let mut outs = vec![out(y_shape, y), out(states_shape.clone(), states(h0))];
    if cell == Cell::Lstm {
        outs.push(out(states_shape, states(c0)));
    }
    Ok(outs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{Attr, NodeProto};

    fn lstm(direction: &str, x: &Value, w: &Value, r: &Value, lens: Option<&Value>) -> Vec<Value> {
        let proto = NodeProto {
            name: "lstm".into(),
            op_type: "LSTM".into(),
            domain: String::new(),
            inputs: vec![],
            outputs: vec!["y".into(), "h".into(), "c".into()],
            attrs: vec![
                ("direction".into(), Attr::Str(direction.as_bytes().to_vec())),
                ("clip".into(), Attr::Float(0.8)),
            ],
        };
        let node = Node {
            proto: &proto,
            opset: 14,
        };
        recurrent(node, &[Some(x), Some(w), Some(r), None, lens]).unwrap()
    }

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| ((i * 7919 + seed * 104_729) % 997) as f32 / 498.5 - 1.0)
            .collect()
    }

    #[test]
    fn a_bidirectional_lstm_is_a_forward_and_a_reverse_one_and_honours_lengths() {
        let (seq, batch, input, hidden) = (3, 2, 2, 3);
        let x = Value::f32(vec![seq, batch, input], values(seq * batch * input, 1));
        let w = Value::f32(
            vec![2, 4 * hidden, input],
            values(2 * 4 * hidden * input, 2),
        );
        let r = Value::f32(
            vec![2, 4 * hidden, hidden],
            values(2 * 4 * hidden * hidden, 3),
        );
        let half = |v: &Value, d: usize| {
            let n = v.len() / 2;
            let mut shape = v.shape.clone();
            shape[0] = 1;
            Value::f32(shape, v.to_f32()[d * n..(d + 1) * n].to_vec())
        };
        let lens = Value::i64(vec![2], vec![3, 2]);
        let both = lstm("bidirectional", &x, &w, &r, Some(&lens));
        let fwd = lstm("forward", &x, &half(&w, 0), &half(&r, 0), Some(&lens));
        let rev = lstm("reverse", &x, &half(&w, 1), &half(&r, 1), Some(&lens));
        assert_eq!(both[0].shape, [seq, 2, batch, hidden]);
        let y = both[0].to_f32();
        let (yf, yr) = (fwd[0].to_f32(), rev[0].to_f32());
        for t in 0..seq {
            let at = |d: usize| ((t * 2 + d) * batch) * hidden;
            assert_eq!(
                y[at(0)..at(0) + batch * hidden],
                yf[t * batch * hidden..(t + 1) * batch * hidden]
            );
            assert_eq!(
                y[at(1)..at(1) + batch * hidden],
                yr[t * batch * hidden..(t + 1) * batch * hidden]
            );
        }
        // The second sequence stops after 2 steps: its last step's output
        // is zeros, and its forward state is its second step's output.
        assert!(
            yf[2 * batch * hidden + hidden..3 * batch * hidden]
                .iter()
                .all(|&v| v == 0.0)
        );
        assert_eq!(
            fwd[1].to_f32()[hidden..],
            yf[batch * hidden + hidden..2 * batch * hidden]
        );
        // Run alone on its 2 steps, it gives the same: the reverse
        // direction starts from its own last step, not the batch's.
        let x1: Vec<f32> = (0..2)
            .flat_map(|t| x.to_f32()[(t * batch + 1) * input..][..input].to_vec())
            .collect();
        let alone = lstm(
            "reverse",
            &Value::f32(vec![2, 1, input], x1),
            &half(&w, 1),
            &half(&r, 1),
            None,
        );
        assert_eq!(alone[1].to_f32(), rev[1].to_f32()[hidden..]);
    }

    #[test]
    fn gru_resets_before_or_after_its_recurrent_product() {
        // One step, one input, hidden size 1: every weight and bias 0.5
        // but the candidate's recurrent bias, -1, from h0 = -1 and x = 1.
        let gru = |linear: i64| {
            let proto = NodeProto {
                name: "gru".into(),
                op_type: "GRU".into(),
                domain: String::new(),
                inputs: vec![],
                outputs: vec!["y".into(), "h".into()],
                attrs: vec![("linear_before_reset".into(), Attr::Int(linear))],
            };
            let node = Node {
                proto: &proto,
                opset: 14,
            };
            let x = Value::f32(vec![1, 1, 1], vec![1.0]);
            let w = Value::f32(vec![1, 3, 1], vec![0.5; 3]);
            let r = Value::f32(vec![1, 3, 1], vec![0.5; 3]);
            let b = Value::f32(vec![1, 6], vec![0.5, 0.5, 0.5, 0.5, 0.5, -1.0]);
            let h0 = Value::f32(vec![1, 1, 1], vec![-1.0]);
            let inputs = [Some(&x), Some(&w), Some(&r), Some(&b), None, Some(&h0)];
            f64::from(recurrent(node, &inputs).unwrap()[1].to_f32()[0])
        };
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let h = -1.0f64;
        // z = r = sigmoid(0.5 x + 0.5 + 0.5 h + 0.5).
        let (z, rg) = (
            sig(0.5 + 0.5 + 0.5 * h + 0.5),
            sig(0.5 + 0.5 + 0.5 * h + 0.5),
        );
        // Default: the reset scales h before R; linear: after R and Rbh.
        let default = (1.0 - z) * (0.5 + 0.5 + 0.5 * (rg * h) - 1.0).tanh() + z * h;
        let linear = (1.0 - z) * (0.5 + 0.5 + rg * (0.5 * h - 1.0)).tanh() + z * h;
        assert!((gru(0) - default).abs() < 1e-6, "{} vs {default}", gru(0));
        assert!((gru(1) - linear).abs() < 1e-6, "{} vs {linear}", gru(1));
        assert!((default - linear).abs() > 1e-2, "{default} {linear}");
    }
}
