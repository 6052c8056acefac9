//! A mixture of experts' feed-forward on the CPU, and the routing of its
//! rows, which the GPU's pass uses too.

use super::super::{HParams, Layer};
use super::QMatrix;
use super::feed_forward;
use super::rows::add_bias;
use crate::quant::Q8Batch;
use crate::team::Workers;

/// A mixture of experts' feed-forward of the `n` rows of `h`, into
/// `down[0]`, as llama.cpp's `build_moe_ffn` runs Mixtral's, Qwen2-MoE's,
/// Qwen3-MoE's, Granite MoE's, ERNIE 4.5 MoE's and LFM2-MoE's: each row's
/// router scores go through a softmax (LFM2-MoE's each through a sigmoid),
/// and its `experts_used` likeliest experts' outputs are added, weighted
/// by their probabilities, renormalised to sum to 1 where
/// `HParams::experts_renormalised` says (all but Qwen2-MoE); ERNIE 4.5
/// MoE's and LFM2-MoE's picked by their probabilities plus the router's
/// bias (Nemotron 3 Nano's the same way, renormalised as its file says,
/// then scaled; its experts and shared one squared ReLUs without a gate).
/// Each expert runs once, over the
/// rows routed to it; a shared expert over every row, its output added
/// as it is (Granite MoE Shared) or gated (Qwen2-MoE). gpt-oss's router
/// has a bias, added to its scores, and its experts biases and `act`
/// (the clamped SwiGLU).
pub(super) fn mixture(
    (layer, router, hp): (&Layer, &QMatrix, &HParams),
    (h, n): (&[f32], usize),
    workers: Workers<'_>,
    xq: &mut Q8Batch,
    (gu, down): (&mut Vec<Vec<f32>>, &mut Vec<Vec<f32>>),
) {
    let act = hp.act;
    let d = h.len() / n;
    let mut scores = router.matmul(h, n, workers);
    // (gpt-oss's router bias.)
    add_bias(&mut scores, layer.router_bias.as_deref());
    let routed = route(&scores, hp, layer.expert_bias.as_deref());
    let mut out = vec![0f32; n * d];
    let (mut rows, mut y) = (Vec::new(), vec![Vec::new()]);
    for (expert, list) in layer.experts.iter().zip(&routed) {
        if list.is_empty() {
            continue;
        }
        rows.clear();
        for &(row, _) in list {
            rows.extend_from_slice(&h[row * d..][..d]);
        }
        // (SwiGLU, gpt-oss's clamped one, or Nemotron 3 Nano's squared ReLU.)
        feed_forward(expert, (&rows, list.len()), act, workers, xq, (gu, &mut y));
        for (&(row, weight), y) in list.iter().zip(y[0].chunks_exact(d)) {
            let o = &mut out[row * d..][..d];
            o.iter_mut().zip(y).for_each(|(o, y)| *o += weight * y);
        }
    }
    if let Some(shared) = &layer.shared {
        // (SwiGLU, or Nemotron 3 Nano's squared ReLU without a gate.)
        feed_forward(shared, (h, n), act, workers, xq, (gu, &mut y));
        let gated = (out.chunks_exact_mut(d))
            .zip(y[0].chunks_exact(d))
            .zip(h.chunks_exact(d));
        for ((o, y), h) in gated {
            // (Qwen2-MoE's gate: the sigmoid of the row's score.)
            let gate = layer.shared_gate.as_ref().map_or(1.0, |g| {
                let score: f32 = g.iter().zip(h).map(|(g, h)| g * h).sum();
                1.0 / (1.0 + (-score).exp())
            });
            o.iter_mut().zip(y).for_each(|(o, y)| *o += y * gate);
        }
    }
    *down = vec![out];
}

/// A mixture's routing of the rows whose router `scores` (`count` a row)
/// are given, as [`mixture`] routes them: per expert, `(row, weight)` of
/// the rows routed to it, in order; `bias` is ERNIE 4.5 MoE's and
/// LFM2-MoE's router bias. The probabilities are the scores' softmax, or
/// (LFM2-MoE's, [`HParams::experts_sigmoid`]) each one's sigmoid; the
/// weights then multiplied by [`HParams::experts_scale`]. The GPU's pass
/// routes with this too.
pub(in crate::llama) fn route(
    scores: &[f32],
    hp: &HParams,
    bias: Option<&[f32]>,
) -> Vec<Vec<(usize, f32)>> {
    let (count, used, renormalise) = (hp.experts, hp.experts_used, hp.experts_renormalised);
    let mut routed: Vec<Vec<(usize, f32)>> = vec![Vec::new(); count];
    let (mut order, mut probs) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for (row, s) in scores.chunks_exact(count).enumerate() {
        probs.clear();
        if hp.experts_sigmoid {
            probs.extend(s.iter().map(|&v| 1.0 / (1.0 + (-v).exp())));
        } else {
            let max = s.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            probs.extend(s.iter().map(|&v| (v - max).exp()));
            let total: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
        }
        order.clear();
        order.extend(0..count);
        // Likeliest first (a stable sort: a tie, which ggml's unstable one
        // breaks either way, goes to the lower index), or (ERNIE 4.5 MoE)
        // first by the probability plus the router's bias.
        match bias {
            None => order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a])),
            Some(bias) => {
                let pick = |e: usize| probs[e] + bias[e];
                order.sort_by(|&a, &b| pick(b).total_cmp(&pick(a)));
            }
        }
        let top = &order[..used];
        // (As llama.cpp: the sum kept off 0, at f16's smallest normal.)
        let sum = match renormalise {
            true => top
                .iter()
                .map(|&e| probs[e])
                .sum::<f32>()
                .max(6.103_515_6e-5),
            false => 1.0,
        };
        for &e in top {
            routed[e].push((row, probs[e] / sum * hp.experts_scale));
        }
    }
    routed
}
