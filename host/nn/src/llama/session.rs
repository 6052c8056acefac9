//! One generation: the KV cache and the forward pass.

use std::sync::Arc;

use rayon::prelude::*;

use super::Weights;
use super::device::OnDevice;
use super::weights::QMatrix;
use crate::quant::round_f16;
use crate::{NnError, NnErrorKind, Session, Tensor};

/// A decoder session: the positions seen so far and their keys and values.
#[derive(Debug)]
pub(crate) struct Decoder {
    w: Arc<Weights>,
    /// Positions already in the cache.
    past: usize,
    /// Per layer: `[position][kv head][head dim]`, values rounded through
    /// f16 as llama.cpp's cache stores them.
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    /// The cache and buffers on the GPU, when the model is there (the CPU
    /// caches above stay empty meanwhile).
    device: Option<OnDevice>,
    /// The tokens seen, while on the GPU: should the device fail, the CPU
    /// runs them again to fill its own cache and carries on.
    seen: Vec<u32>,
}

impl Decoder {
    pub(crate) fn new(w: Arc<Weights>) -> Self {
        let layers = w.hp.layers;
        Self {
            device: w.device.as_ref().map(OnDevice::new),
            w,
            past: 0,
            k: vec![Vec::new(); layers],
            v: vec![Vec::new(); layers],
            seen: Vec::new(),
        }
    }

    /// Runs `tokens` after what the cache holds; returns the logits of the
    /// last one. On the GPU when the model is there; if the device fails,
    /// this session moves to the CPU for good (said once per process).
    pub(crate) fn forward(&mut self, tokens: &[u32]) -> Vec<f32> {
        if let (Some(on), Some(dw)) = (&mut self.device, &self.w.device) {
            match on.forward(&self.w, dw, tokens, self.past) {
                Ok(logits) => {
                    self.past += tokens.len();
                    self.seen.extend_from_slice(tokens);
                    return logits;
                }
                Err(e) => {
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| {
                        eprintln!(
                            "weft-nn: a decoder pass failed on the GPU, running on the CPU: {e}"
                        )
                    });
                    self.device = None;
                    self.past = 0;
                    let seen = std::mem::take(&mut self.seen);
                    if !seen.is_empty() {
                        self.forward_cpu(&seen);
                    }
                }
            }
        }
        self.forward_cpu(tokens)
    }

    /// Its state on the GPU, while it runs there.
    #[cfg(test)]
    pub(super) fn on_device(&mut self) -> Option<&mut OnDevice> {
        self.device.as_mut()
    }

    /// [`Decoder::forward`] on the CPU.
    fn forward_cpu(&mut self, tokens: &[u32]) -> Vec<f32> {
        let w = self.w.clone();
        let hp = &w.hp;
        let (n, d) = (tokens.len(), hp.embd);
        let kvd = hp.kv_heads * hp.head_dim;
        let mut x = vec![0f32; n * d];
        for (t, &tok) in tokens.iter().enumerate() {
            w.tok_embd.row(tok as usize, &mut x[t * d..(t + 1) * d]);
        }
        let mut h = vec![0f32; n * d];
        for (l, layer) in w.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, hp.rms_eps, &mut h);
            let [mut q, mut k, v]: [Vec<f32>; 3] =
                QMatrix::matmul_group(&[&layer.wq, &layer.wk, &layer.wv], &h, n)
                    .try_into()
                    .expect("three products");
            for t in 0..n {
                let pos = self.past + t;
                rope(
                    &mut q[t * d..(t + 1) * d],
                    hp.head_dim,
                    hp.rope_dims,
                    pos,
                    hp.rope_base,
                );
                rope(
                    &mut k[t * kvd..(t + 1) * kvd],
                    hp.head_dim,
                    hp.rope_dims,
                    pos,
                    hp.rope_base,
                );
            }
            self.k[l].extend(k.iter().map(|&x| round_f16(x)));
            self.v[l].extend(v.iter().map(|&x| round_f16(x)));
            let attn = self.attention(l, &q, n);
            let o = layer.wo.matmul(&attn, n);
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);

            rms_norm(&x, &layer.ffn_norm, hp.rms_eps, &mut h);
            let [mut g, u]: [Vec<f32>; 2] = QMatrix::matmul_group(&[&layer.gate, &layer.up], &h, n)
                .try_into()
                .expect("two products");
            g.iter_mut()
                .zip(&u)
                .for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
            let down = layer.down.matmul(&g, n);
            x.iter_mut().zip(&down).for_each(|(x, o)| *x += o);
        }
        self.past += n;
        let last = &x[(n - 1) * d..];
        let mut normed = vec![0f32; d];
        rms_norm(last, &w.output_norm, hp.rms_eps, &mut normed);
        w.output.as_ref().unwrap_or(&w.tok_embd).matmul(&normed, 1)
    }

    /// Causal attention of `n` new queries over the whole cache of layer `l`.
    fn attention(&self, l: usize, q: &[f32], n: usize) -> Vec<f32> {
        let hp = &self.w.hp;
        let (hd, heads, kv_heads) = (hp.head_dim, hp.heads, hp.kv_heads);
        let (d, kvd) = (heads * hd, kv_heads * hd);
        let group = heads / kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let (kc, vc) = (&self.k[l], &self.v[l]);
        let mut out = vec![0f32; n * d];
        let one_head = |(i, o): (usize, &mut [f32])| {
            let (t, head) = (i / heads, i % heads);
            let kvh = head / group;
            let seen = self.past + t + 1;
            // llama.cpp multiplies the f16 cache by f16-rounded operands.
            let qh: Vec<f32> = q[t * d + head * hd..][..hd]
                .iter()
                .map(|&x| round_f16(x))
                .collect();
            let mut scores: Vec<f32> = (0..seen)
                .map(|p| {
                    let kp = &kc[p * kvd + kvh * hd..][..hd];
                    qh.iter().zip(kp).map(|(a, b)| a * b).sum::<f32>() * scale
                })
                .collect();
            let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0f64;
            for s in &mut scores {
                *s = (*s - max).exp();
                sum += f64::from(*s);
            }
            let inv = (1.0 / sum) as f32;
            for (p, s) in scores.iter().enumerate() {
                let weight = round_f16(s * inv);
                let vp = &vc[p * kvd + kvh * hd..][..hd];
                o.iter_mut().zip(vp).for_each(|(o, v)| *o += weight * v);
            }
        };
        // A few new tokens' heads are too little work to wake the pool for.
        if n * (self.past + n) * heads * hd < 1 << 18 {
            out.chunks_mut(hd).enumerate().for_each(one_head);
        } else {
            out.par_chunks_mut(hd).enumerate().for_each(one_head);
        }
        out
    }
}

/// `out = x / rms(x) * weight`, row by row (sums in f64 as ggml does).
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ss: f64 = xr.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let scale = 1.0 / ((ss / d as f64) as f32 + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(weight) {
            *o = v * scale * g;
        }
    }
}

/// Rotary embedding on adjacent pairs (ggml's "normal" mode, which GGUF
/// Llama weights are permuted for), head by head.
fn rope(x: &mut [f32], head_dim: usize, dims: usize, pos: usize, base: f32) {
    let theta_scale = base.powf(-2.0 / dims as f32);
    for head in x.chunks_exact_mut(head_dim) {
        let mut theta = pos as f32;
        for i in (0..dims).step_by(2) {
            let (sin, cos) = theta.sin_cos();
            let (a, b) = (head[i], head[i + 1]);
            head[i] = a * cos - b * sin;
            head[i + 1] = a * sin + b * cos;
            theta *= theta_scale;
        }
    }
}

impl Session for Decoder {
    fn compute(&mut self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, NnError> {
        let bad = |m: String| NnError::new(NnErrorKind::InvalidArgument, m);
        let [(_, ids)] = inputs else {
            return Err(bad(format!(
                "a decoder takes one input (`input_ids`, the new token ids), got {}",
                inputs.len()
            )));
        };
        if ids.shape.iter().filter(|&&d| d != 1).count() > 1 {
            return Err(bad(format!(
                "`input_ids` must be a vector of token ids ([n] or [1, n]), got shape {:?}",
                ids.shape
            )));
        }
        let vocab = self.w.hp.vocab;
        let tokens = ids
            .to_i64()?
            .into_iter()
            .map(|t| {
                usize::try_from(t)
                    .ok()
                    .filter(|&t| t < vocab)
                    .map(|t| t as u32)
                    .ok_or_else(|| {
                        bad(format!(
                            "token id {t} is outside the vocabulary (0..{vocab})"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if tokens.is_empty() {
            return Err(bad(
                "`input_ids` is empty: pass at least one token id".into()
            ));
        }
        let context = self.w.hp.context;
        if self.past + tokens.len() > context {
            return Err(NnError::new(
                NnErrorKind::TooLarge,
                format!(
                    "{} tokens after {} in the cache exceed the model's context of {context}; start a new execution context",
                    tokens.len(),
                    self.past
                ),
            ));
        }
        let logits = self.forward(&tokens);
        Ok(vec![(
            "logits".into(),
            Tensor::from_f32(vec![vocab], &logits),
        )])
    }
}
