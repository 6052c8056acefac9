//! Random generators: `RandomUniform`, `RandomNormal`, their `…Like`
//! forms, `Bernoulli` and `Multinomial` (sampling inside a graph). Each
//! draws from splitmix64 seeded by the node's `seed` attribute, so a
//! seeded node repeats itself, or from the clock and a call counter.
//! (The ONNX reference draws from numpy's generator, so no backend
//! reproduces its values; the conformance test lists those cases.)

use super::{Node, req};
use crate::NnError;
use crate::onnx::value::{DType, Value, fail, numel};
use crate::train::math::SplitMix;

/// The generator for one run of `node`.
pub(super) fn rng(node: Node<'_>) -> SplitMix {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = if node.has("seed") {
        u64::from(node.float("seed", 0.0).to_bits())
    } else {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos
            ^ CALLS
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
    };
    SplitMix(seed)
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut SplitMix) -> f64 {
    let u = 1.0 - rng.next_f64();
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The output type: attribute `dtype` if set, else `like`'s.
fn dtype(node: Node<'_>, like: DType) -> Result<DType, NnError> {
    if !node.has("dtype") {
        return Ok(like);
    }
    let code = node.int("dtype", 1);
    DType::from_onnx(code).ok_or_else(|| fail(format!("dtype {code} is not supported")))
}

pub(super) fn run(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let op = node.proto.op_type.as_str();
    let mut rng = rng(node);
    let f = |name: &str, default: f32| f64::from(node.float(name, default));
    let (shape, like) = match op {
        "RandomUniform" | "RandomNormal" => {
            let shape = node
                .ints("shape")
                .ok_or_else(|| fail(format!("{op} needs shape")))?;
            let shape = (shape.iter().map(|&d| usize::try_from(d)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| fail(format!("{op}'s shape {shape:?} has a negative size")))?;
            (shape, DType::F32)
        }
        _ => {
            let x = req(inputs, 0)?;
            (x.shape.clone(), x.dtype)
        }
    };
    let to = dtype(node, like)?;
    let n = numel(&shape, op)?;
    let v: Vec<f64> = match op {
        "RandomUniform" | "RandomUniformLike" => {
            let (lo, hi) = (f("low", 0.0), f("high", 1.0));
            (0..n).map(|_| lo + (hi - lo) * rng.next_f64()).collect()
        }
        "RandomNormal" | "RandomNormalLike" => {
            let (mean, scale) = (f("mean", 0.0), f("scale", 1.0));
            (0..n).map(|_| mean + scale * normal(&mut rng)).collect()
        }
        "Bernoulli" => {
            let p = req(inputs, 0)?.to_f64();
            p.iter()
                .map(|&p| f64::from(u8::from(rng.next_f64() < p)))
                .collect()
        }
        _ => return multinomial(node, inputs, &mut rng),
    };
    Ok(Value::f64_as(to, shape, v))
}

/// `Multinomial`: `sample_size` class indices per row of unnormalised
/// log-probabilities `[batch, classes]`.
fn multinomial(
    node: Node<'_>,
    inputs: &[Option<&Value>],
    rng: &mut SplitMix,
) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let [batch, classes] = x.shape[..] else {
        return Err(fail(format!(
            "Multinomial's input must be [batch, classes], got {:?}",
            x.shape
        )));
    };
    let samples = node.int("sample_size", 1).max(0) as usize;
    let to = match node.int("dtype", 6) {
        6 => DType::I32,
        7 => DType::I64,
        c => {
            return Err(fail(format!(
                "Multinomial's dtype {c} is not int32 or int64"
            )));
        }
    };
    if classes == 0 && batch * samples > 0 {
        return Err(fail("Multinomial needs at least one class to draw from"));
    }
    let logits = x.to_f64();
    let mut out = Vec::with_capacity(numel(&[batch, samples], "Multinomial")?);
    for row in logits.chunks(classes.max(1)).take(batch) {
        let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = row.iter().map(|&l| (l - top).exp()).collect();
        let total: f64 = weights.iter().sum();
        for _ in 0..samples {
            let mut u = rng.next_f64() * total;
            let pick = weights
                .iter()
                .position(|&w| {
                    u -= w;
                    u < 0.0
                })
                .unwrap_or(classes.saturating_sub(1));
            out.push(pick as i64);
        }
    }
    Ok(Value {
        dtype: to,
        shape: vec![batch, samples],
        data: crate::onnx::value::Data::I64(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{Attr, NodeProto};

    fn node_of(op: &str, attrs: Vec<(&str, Attr)>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            attrs: attrs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn draws_follow_their_distributions_and_a_seed_repeats_them() {
        let run = |proto: &NodeProto, inputs: &[Option<&Value>]| {
            run(Node { proto, opset: 22 }, inputs).unwrap()
        };
        let seeded = |op, mut attrs: Vec<(&'static str, Attr)>| {
            attrs.push(("seed", Attr::Float(3.0)));
            node_of(op, attrs)
        };
        let uniform = seeded(
            "RandomUniform",
            vec![
                ("shape", Attr::Ints(vec![100, 100])),
                ("low", Attr::Float(2.0)),
                ("high", Attr::Float(4.0)),
            ],
        );
        let u = run(&uniform, &[]).to_f64();
        let mean = u.iter().sum::<f64>() / u.len() as f64;
        assert!(u.iter().all(|v| (2.0..4.0).contains(v)) && (mean - 3.0).abs() < 0.05);
        assert_eq!(run(&uniform, &[]).to_f64(), u, "the seed repeats the draw");
        let x = Value::f32(vec![10_000], vec![0.0; 10_000]);
        let normal = seeded("RandomNormalLike", vec![("scale", Attr::Float(2.0))]);
        let z = run(&normal, &[Some(&x)]).to_f64();
        let var = z.iter().map(|v| v * v).sum::<f64>() / z.len() as f64;
        assert!((var - 4.0).abs() < 0.3, "variance {var}");
        let p = Value::f32(vec![10_000], vec![0.25; 10_000]);
        let b = run(&seeded("Bernoulli", vec![]), &[Some(&p)]).to_f64();
        let ones = b.iter().filter(|&&v| v == 1.0).count();
        assert!((2250..2750).contains(&ones), "{ones} of 10000");
        // Class 1 has e^2 times class 0's weight; class 2 none to speak of.
        let logits = Value::f32(vec![1, 3], vec![0.0, 2.0, -100.0]);
        let m = seeded("Multinomial", vec![("sample_size", Attr::Int(2000))]);
        let picks = run(&m, &[Some(&logits)]);
        assert_eq!(
            (picks.dtype, &picks.shape[..]),
            (DType::I32, &[1, 2000][..])
        );
        let ones = picks.to_i64().iter().filter(|&&c| c == 1).count();
        let want = 2000.0 * 2f64.exp() / (1.0 + 2f64.exp());
        assert!(
            (ones as f64 - want).abs() < 100.0,
            "{ones}, want about {want}"
        );
        assert!(picks.to_i64().iter().all(|&c| c != 2));
        let err = super::run(
            Node {
                proto: &node_of("RandomNormal", vec![]),
                opset: 22,
            },
            &[],
        )
        .unwrap_err();
        assert!(err.message.contains("needs shape"), "{}", err.message);
    }
}
