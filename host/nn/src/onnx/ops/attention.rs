//! `Attention` (opset 23): scaled dot-product attention with grouped
//! key/value heads, an optional mask (boolean keep-mask or additive), a
//! causal mask, a KV cache (`past_*` in, `present_*` out), soft-capping,
//! and the optional `qk_matmul_output`.

use super::{Node, opt, req};
use crate::NnError;
use crate::onnx::value::{DType, Data, Value, broadcast_shape, broadcast_to, fail, numel};

/// `[B, heads, S, D]` from a 4-D input, or a 3-D `[B, S, heads * D]` one.
fn heads(v: &Value, heads: i64, what: &str) -> Result<(Vec<f64>, [usize; 4]), NnError> {
    let s = &v.shape;
    match s.len() {
        4 => Ok((v.to_f64(), [s[0], s[1], s[2], s[3]])),
        3 => {
            let h = usize::try_from(heads)
                .ok()
                .filter(|&h| h > 0 && s[2].is_multiple_of(h))
                .ok_or_else(|| {
                    fail(format!(
                        "3-D {what} needs a num_heads attribute dividing {}",
                        s[2]
                    ))
                })?;
            let (b, n, d) = (s[0], s[1], s[2] / h);
            let x = v.to_f64();
            let mut out = vec![0.0; x.len()];
            for bi in 0..b {
                for si in 0..n {
                    for hi in 0..h {
                        let src = ((bi * n + si) * h + hi) * d;
                        let dst = ((bi * h + hi) * n + si) * d;
                        out[dst..dst + d].copy_from_slice(&x[src..src + d]);
                    }
                }
            }
            Ok((out, [b, h, n, d]))
        }
        _ => Err(fail(format!("{what} must be 3-D or 4-D, got {s:?}"))),
    }
}

/// Concatenates a cache `[B, H, P, D]` and new `[B, H, S, D]` along the
/// sequence axis.
fn append(
    past: Option<&Value>,
    new: Vec<f64>,
    dims: [usize; 4],
) -> Result<(Vec<f64>, [usize; 4]), NnError> {
    let Some(p) = past else {
        return Ok((new, dims));
    };
    let [b, h, s, d] = dims;
    if p.shape.len() != 4 || p.shape[0] != b || p.shape[1] != h || p.shape[3] != d {
        return Err(fail(format!(
            "past cache {:?} does not match {dims:?}",
            p.shape
        )));
    }
    let pl = p.shape[2];
    let pv = p.to_f64();
    let mut out = Vec::with_capacity(pv.len() + new.len());
    for bh in 0..b * h {
        out.extend_from_slice(&pv[bh * pl * d..(bh + 1) * pl * d]);
        out.extend_from_slice(&new[bh * s * d..(bh + 1) * s * d]);
    }
    Ok((out, [b, h, pl + s, d]))
}

pub(super) fn attention(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let q_in = req(inputs, 0)?;
    let (q, [b, qh, sq, dk]) = heads(q_in, node.int("q_num_heads", 0), "Q")?;
    let (k, kd) = heads(req(inputs, 1)?, node.int("kv_num_heads", 0), "K")?;
    let (v, vd) = heads(req(inputs, 2)?, node.int("kv_num_heads", 0), "V")?;
    let (k, [_, kvh, st, _]) = append(opt(inputs, 4), k, kd)?;
    let (v, [_, _, _, dv]) = append(opt(inputs, 5), v, vd)?;
    if kd[3] != dk || kvh == 0 || qh % kvh != 0 {
        return Err(fail(format!(
            "Q heads {qh}x{dk} and K heads {kvh}x{} do not group",
            kd[3]
        )));
    }
    let scale = if node.has("scale") {
        f64::from(node.float("scale", 1.0))
    } else {
        1.0 / (dk as f64).sqrt()
    };
    let softcap = f64::from(node.float("softcap", 0.0));
    let causal = node.int("is_causal", 0) != 0;
    // Keys already in the cache are all visible; the causal mask covers
    // the new ones, row i seeing new keys 0..=i (onnx 1.20's reference).
    let past = st - kd[2];
    let mode = node.int("qk_matmul_output_mode", 0);
    let full = [b, qh, sq, st];
    numel(&[b, qh, sq, st.max(dv)], "Attention")?;
    let mask: Option<Vec<f64>> = match opt(inputs, 3) {
        Some(m) => {
            // Opset 24: a mask shorter than the keys is padded with "masked".
            let m = &if m.shape.last().is_some_and(|&l| l < st) {
                let l = m.shape[m.shape.len() - 1];
                let rows = m.len() / l.max(1);
                let mut shape = m.shape.clone();
                *shape.last_mut().expect("rank >= 1") = st;
                let idx: Vec<usize> = (0..rows * st)
                    .map(|i| {
                        if i % st < l {
                            i / st * l + i % st
                        } else {
                            m.len()
                        }
                    })
                    .collect();
                let mut ext = m.cast(if m.dtype == DType::Bool {
                    DType::Bool
                } else {
                    DType::F64
                });
                match &mut ext.data {
                    Data::Bool(v) => v.push(false),
                    Data::F64(v) => v.push(f64::NEG_INFINITY),
                    _ => unreachable!("cast above"),
                }
                ext.with(shape, super::shape::take(&ext.data, &idx))
            } else {
                m.clone()
            };
            if broadcast_shape(&m.shape, &full)? != full {
                return Err(fail(format!(
                    "attn_mask {:?} does not broadcast to {full:?}",
                    m.shape
                )));
            }
            let add: Vec<f64> = match &m.data {
                Data::Bool(v) => v
                    .iter()
                    .map(|&keep| if keep { 0.0 } else { f64::NEG_INFINITY })
                    .collect(),
                _ => m.to_f64(),
            };
            Some(broadcast_to(&add, &m.shape, &full))
        }
        None => None,
    };
    // Opset 24: keys at or past each batch's length are padding.
    let kv_len: Option<Vec<i64>> = opt(inputs, 6).map(Value::to_i64);
    let group = qh / kvh;
    let mut y = vec![0.0; b * qh * sq * dv];
    let mut qk_out = vec![0.0; b * qh * sq * st];
    for bi in 0..b {
        for h in 0..qh {
            let kh = h / group;
            for i in 0..sq {
                let qrow = &q[((bi * qh + h) * sq + i) * dk..][..dk];
                let base = ((bi * qh + h) * sq + i) * st;
                let mut row: Vec<f64> = (0..st)
                    .map(|j| {
                        let krow = &k[((bi * kvh + kh) * st + j) * dk..][..dk];
                        qrow.iter().zip(krow).map(|(a, c)| a * c).sum::<f64>() * scale
                    })
                    .collect();
                if mode == 0 {
                    qk_out[base..base + st].copy_from_slice(&row);
                }
                for (j, s) in row.iter_mut().enumerate() {
                    if let Some(m) = &mask {
                        *s += m[base + j];
                    }
                    let padded = kv_len.as_ref().is_some_and(|l| j as i64 >= l[bi]);
                    if (causal && j > past + i) || padded {
                        *s = f64::NEG_INFINITY;
                    }
                }
                if mode == 1 {
                    qk_out[base..base + st].copy_from_slice(&row);
                }
                if softcap > 0.0 {
                    // A masked score stays masked: softcapping -inf would
                    // give it -softcap, and so some of the attention.
                    row.iter_mut()
                        .filter(|s| **s != f64::NEG_INFINITY)
                        .for_each(|s| *s = softcap * (*s / softcap).tanh());
                }
                if mode == 2 {
                    qk_out[base..base + st].copy_from_slice(&row);
                }
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                row.iter_mut().for_each(|s| {
                    *s = (*s - m).exp();
                    sum += *s;
                });
                row.iter_mut().for_each(|s| *s /= sum);
                if mode == 3 {
                    qk_out[base..base + st].copy_from_slice(&row);
                }
                let out = &mut y[((bi * qh + h) * sq + i) * dv..][..dv];
                for (j, p) in row.iter().enumerate() {
                    let vrow = &v[((bi * kvh + kh) * st + j) * dv..][..dv];
                    out.iter_mut().zip(vrow).for_each(|(o, x)| *o += p * x);
                }
            }
        }
    }
    let dt = q_in.dtype;
    let val = |shape: Vec<usize>, data: Vec<f64>| Value::f64_as(dt, shape, data);
    let y = if q_in.shape.len() == 3 {
        let mut t = vec![0.0; y.len()];
        for bi in 0..b {
            for h in 0..qh {
                for i in 0..sq {
                    let src = ((bi * qh + h) * sq + i) * dv;
                    let dst = ((bi * sq + i) * qh + h) * dv;
                    t[dst..dst + dv].copy_from_slice(&y[src..src + dv]);
                }
            }
        }
        val(vec![b, sq, qh * dv], t)
    } else {
        val(vec![b, qh, sq, dv], y)
    };
    Ok(vec![
        y,
        val(vec![b, kvh, st, dk], k),
        val(vec![b, kvh, st, dv], v),
        val(full.to_vec(), qk_out),
    ])
}

/// `RotaryEmbedding` (opset 23) on `[B, H, S, D]` or `[B, S, H * D]`.
pub(super) fn rotary(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?;
    let (cos, sin) = (req(inputs, 1)?.to_f64(), req(inputs, 2)?.to_f64());
    let cache_shape = &req(inputs, 1)?.shape;
    let pos = opt(inputs, 3).map(Value::to_i64);
    let four = x.shape.len() == 4;
    let (b, s, h, d) = if four {
        (x.shape[0], x.shape[2], x.shape[1], x.shape[3])
    } else {
        let h = usize::try_from(node.int("num_heads", 0))
            .ok()
            .filter(|&h| h > 0)
            .ok_or_else(|| fail("3-D input needs num_heads"))?;
        (x.shape[0], x.shape[1], h, x.shape[2] / h)
    };
    let rot = match node.int("rotary_embedding_dim", 0) {
        0 => d,
        r => r as usize,
    };
    let half = rot / 2;
    let width = *cache_shape.last().ok_or_else(|| fail("bad cos cache"))?;
    let interleaved = node.int("interleaved", 0) != 0;
    let at = |bi: usize, si: usize, hi: usize, di: usize| {
        if four {
            ((bi * h + hi) * s + si) * d + di
        } else {
            ((bi * s + si) * h + hi) * d + di
        }
    };
    let xv = x.to_f64();
    let mut out = xv.clone();
    for bi in 0..b {
        for si in 0..s {
            let row = match &pos {
                Some(p) => {
                    usize::try_from(p[bi * s + si]).map_err(|_| fail("negative position id"))?
                }
                None => bi * s + si,
            };
            for hi in 0..h {
                for k in 0..half {
                    let (c, sn) = (cos[row * width + k], sin[row * width + k]);
                    let (i1, i2) = if interleaved {
                        (2 * k, 2 * k + 1)
                    } else {
                        (k, k + half)
                    };
                    let (x1, x2) = (xv[at(bi, si, hi, i1)], xv[at(bi, si, hi, i2)]);
                    out[at(bi, si, hi, i1)] = c * x1 - sn * x2;
                    out[at(bi, si, hi, i2)] = sn * x1 + c * x2;
                }
            }
        }
    }
    Ok(vec![Value::f64_as(x.dtype, x.shape.clone(), out)])
}

/// `TensorScatter` (opset 24): a KV cache `past_cache` with `update`
/// written along `axis` (default -2, the sequence) from each batch's
/// `write_indices` entry (0 without them), wrapping around the cache in
/// mode `circular`.
pub(super) fn tensor_scatter(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (past, update) = (req(inputs, 0)?, req(inputs, 1)?);
    let r = past.shape.len();
    let ax = super::axis(node.int("axis", -2), r)?;
    let circular = match node.string("mode", "linear").as_str() {
        "linear" => false,
        "circular" => true,
        m => {
            return Err(fail(format!(
                "TensorScatter mode `{m}`: expected `linear` or `circular`"
            )));
        }
    };
    let fits = update.shape.len() == r
        && (0..r).all(|i| match i == ax {
            true => update.shape[i] <= past.shape[i],
            false => update.shape[i] == past.shape[i],
        });
    if ax == 0 || !fits || update.dtype != past.dtype {
        return Err(fail(format!(
            "TensorScatter: update {:?} ({:?}) does not fit cache {:?} ({:?}) along axis {ax} \
             (same type, same dims but the axis, no longer along it, and the axis not the batch)",
            update.shape, update.dtype, past.shape, past.dtype
        )));
    }
    let batch = past.shape[0];
    let starts = opt(inputs, 2).map_or_else(|| vec![0; batch], Value::to_i64);
    if starts.len() != batch {
        return Err(fail(format!(
            "TensorScatter: {} write indices for a batch of {batch}",
            starts.len()
        )));
    }
    let (max, seq) = (past.shape[ax], update.shape[ax]);
    let inner: usize = past.shape[ax + 1..].iter().product();
    let outer: usize = past.shape[..ax].iter().product();
    // Each output element's source: the cache's own, or past its end, the
    // update's.
    let mut idx: Vec<usize> = (0..past.len()).collect();
    for o in 0..outer {
        let b = o / (outer / batch).max(1);
        for s in 0..seq {
            let at = starts[b] + s as i64;
            let at = if circular {
                at.rem_euclid(max as i64)
            } else {
                at
            };
            if !(0..max as i64).contains(&at) {
                return Err(fail(format!(
                    "TensorScatter: batch {b} writes {seq} positions from {} into a cache of {max} \
                     (mode `circular` wraps around)",
                    starts[b]
                )));
            }
            let (dst, src) = ((o * max + at as usize) * inner, (o * seq + s) * inner);
            for i in 0..inner {
                idx[dst + i] = past.len() + src + i;
            }
        }
    }
    let both = match (&past.data, &update.data) {
        (Data::F32(a), Data::F32(b)) => Data::F32([&a[..], b].concat()),
        (Data::F64(a), Data::F64(b)) => Data::F64([&a[..], b].concat()),
        (Data::I64(a), Data::I64(b)) => Data::I64([&a[..], b].concat()),
        (Data::Bool(a), Data::Bool(b)) => Data::Bool([&a[..], b].concat()),
        _ => unreachable!("same dtype, same storage"),
    };
    Ok(past.with(past.shape.clone(), super::shape::take(&both, &idx)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{Attr, NodeProto};

    fn scatter(mode: &str, starts: &[i64]) -> Result<Value, NnError> {
        let proto = NodeProto {
            name: "ts".into(),
            op_type: "TensorScatter".into(),
            domain: String::new(),
            inputs: vec!["past".into(), "update".into(), "at".into()],
            outputs: vec!["present".into()],
            attrs: vec![("mode".into(), Attr::Str(mode.as_bytes().to_vec()))],
        };
        // A cache of 2 batches x 3 positions x 1, one new position each.
        let past = Value::f32(vec![2, 3, 1], vec![0.0; 6]);
        let update = Value::f32(vec![2, 1, 1], vec![7.0, 8.0]);
        let at = Value::i64(vec![2], starts.to_vec());
        let node = Node {
            proto: &proto,
            opset: 24,
        };
        tensor_scatter(node, &[Some(&past), Some(&update), Some(&at)])
    }

    #[test]
    fn tensor_scatter_writes_at_each_batchs_index_and_says_when_it_cannot() {
        let y = scatter("linear", &[2, 0]).unwrap();
        assert_eq!(y.to_f32(), [0.0, 0.0, 7.0, 8.0, 0.0, 0.0]);
        let y = scatter("circular", &[4, -1]).unwrap();
        assert_eq!(y.to_f32(), [0.0, 7.0, 0.0, 0.0, 0.0, 8.0]);
        let err = scatter("linear", &[3, 0]).unwrap_err();
        assert!(
            err.message
                .contains("batch 0 writes 1 positions from 3 into a cache of 3"),
            "{}",
            err.message
        );
        let err = scatter("ring", &[0, 0]).unwrap_err();
        assert!(
            err.message.contains("expected `linear` or `circular`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_masked_key_gets_no_attention_under_a_softcap() {
        let proto = NodeProto {
            name: "att".into(),
            op_type: "Attention".into(),
            domain: String::new(),
            inputs: vec!["q".into(), "k".into(), "v".into()],
            outputs: vec!["y".into()],
            attrs: vec![
                ("is_causal".into(), Attr::Int(1)),
                ("softcap".into(), Attr::Float(2.0)),
            ],
        };
        // One head, two positions: the first sees only the first key, so
        // its output is the first value exactly.
        let q = Value::f32(vec![1, 1, 2, 2], vec![1.0, 0.0, 0.0, 1.0]);
        let k = Value::f32(vec![1, 1, 2, 2], vec![1.0, 1.0, 0.5, -1.0]);
        let v = Value::f32(vec![1, 1, 2, 2], vec![3.0, 4.0, -5.0, 6.0]);
        let node = Node {
            proto: &proto,
            opset: 23,
        };
        let y = attention(node, &[Some(&q), Some(&k), Some(&v)]).unwrap();
        assert_eq!(&y[0].to_f32()[..2], [3.0, 4.0]);
    }
}
