//! One generation: the KV cache and the forward pass.

use std::sync::Arc;

mod latent;
mod mixture;
mod selective;

use super::Weights;
use super::attend;
use super::device::OnDevice;
use super::rows::{
    self, add_bias, geglu, gelu_in_place, relu_squared, residual, rms_norm, rope, soft_cap, swiglu,
    swiglu_oai,
};
use super::weights::QMatrix;
use crate::gpu::FfnAct;
use crate::quant::Q8Batch;
use crate::team::{self, Workers};
use crate::{NnError, NnErrorKind, Session, Tensor};
use mixture::mixture;
pub(super) use mixture::route;

/// A decoder session: the positions seen so far and their keys and values.
#[derive(Debug)]
pub(crate) struct Decoder {
    w: Arc<Weights>,
    /// Positions already in the cache.
    past: usize,
    /// Per layer and KV head (`layer * kv_heads + head`):
    /// `[position][head dim]`, in f16 as llama.cpp's cache stores them.
    /// (A head's positions side by side: attention streams through them.)
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
    /// Per layer that convolves (LFM2's), the last `taps − 1` rows of its
    /// `b ⊙ x`, oldest first ([`rows::short_conv`]), or that scans
    /// (Mamba-2's), of its `xBC` ([`rows::mamba2`]), or (Mamba-1's) of its
    /// `x` ([`selective`]); empty elsewhere.
    conv: Vec<Vec<f32>>,
    /// Per layer that scans, its channels' states (`[inner][state]`);
    /// empty elsewhere.
    ssm: Vec<Vec<f32>>,
    /// The cache and buffers on the GPU, when the model is there (the CPU
    /// caches above stay empty meanwhile).
    device: Option<OnDevice>,
    /// The tokens seen, while on the GPU: should the device fail, the CPU
    /// runs them again to fill its own cache and carries on.
    seen: Vec<u32>,
}

impl Decoder {
    pub(crate) fn new(w: Arc<Weights>) -> Self {
        let heads = w.hp.layers * w.hp.kv_heads;
        let hp = &w.hp;
        let conv = (0..hp.layers)
            .map(|l| match (&hp.short_conv, &hp.ssm) {
                (Some(c), _) if hp.convolves(l) => vec![0.0; (c.taps - 1) * hp.embd],
                (_, Some(m)) if hp.scans(l) => vec![0.0; (m.taps - 1) * m.conv_dim()],
                _ => Vec::new(),
            })
            .collect();
        let ssm = (0..hp.layers)
            .map(|l| match &hp.ssm {
                Some(m) if hp.scans(l) => vec![0.0; m.inner * m.state],
                _ => Vec::new(),
            })
            .collect();
        Self {
            conv,
            ssm,
            device: w.device.as_ref().map(OnDevice::new),
            w,
            past: 0,
            k: vec![Vec::new(); heads],
            v: vec![Vec::new(); heads],
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
                Err(e) => self.move_to_the_cpu(&e),
            }
        }
        self.forward_cpu(tokens)
    }

    /// After a failed pass on the GPU: from now on on the CPU, whose cache
    /// is first filled with the tokens seen so far (said once per process).
    fn move_to_the_cpu(&mut self, e: &NnError) {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            eprintln!("weft-nn: a decoder pass failed on the GPU, running on the CPU: {e}")
        });
        self.device = None;
        self.past = 0;
        let seen = std::mem::take(&mut self.seen);
        if !seen.is_empty() {
            self.forward_cpu(&seen);
        }
    }

    /// Whether this session runs on the GPU.
    pub(super) fn on_gpu(&self) -> bool {
        self.device.is_some()
    }

    /// Its state on the GPU, while it runs there.
    #[cfg(test)]
    pub(super) fn on_device(&mut self) -> Option<&mut OnDevice> {
        self.device.as_mut()
    }

    /// [`Decoder::forward`] on the CPU.
    fn forward_cpu(&mut self, tokens: &[u32]) -> Vec<f32> {
        forward_together(&mut [self], &[tokens])
    }

    /// Whether this session can run in a joined pass with others of the
    /// model whose weights are `w` ([`forward_together`] on the CPU,
    /// [`forward_together_on_the_gpu`] on the GPU): it is on those weights.
    pub(super) fn joins(&self, w: &Arc<Weights>) -> bool {
        Arc::ptr_eq(&self.w, w)
    }
}

/// Runs each session's new `tokens` after what its cache holds, on the CPU,
/// and returns each one's logits for its last token, one after another
/// (`vocab` each, as the output head wrote them). The sessions (of one
/// model) go through every weight product together, their rows stacked, so
/// the weights stream through memory once for all of them: a decoded
/// token's products are memory-bound, and a dozen sessions' tokens cost
/// little more than one's. Each session's result is what it would get on
/// its own.
pub(super) fn forward_together(ds: &mut [&mut Decoder], tokens: &[&[u32]]) -> Vec<f32> {
    // Sessions stepped together (the batcher's joined passes, which run
    // one at a time) take every thread of the pool for the pass; a lone
    // session's pass shares the pool with others that may run at once.
    if ds.len() > 1 && rayon::current_num_threads() > 1 {
        return team::run(|team| forward_with(ds, tokens, Workers::Team(team)));
    }
    // On a thread of the pool: its ~150 parallel products a token then
    // wait for each other on spinning latches; called from outside, each
    // would park the caller and wake it again.
    rayon::scope(|_| forward_with(ds, tokens, Workers::Pool))
}

/// Attention of every session's new rows over its cache in layer `l`:
/// `q` holds the rows' queries, stacked as the sessions' rows are; each
/// row's heads are written into `out` (as long). One task per row and KV
/// head, which serves the query heads of its group.
fn attention_together(
    ds: &[&mut Decoder],
    tokens: &[&[u32]],
    l: usize,
    q: &[f32],
    out: &mut [f32],
    workers: Workers<'_>,
) {
    let hp = &ds[0].w.hp;
    let (hd, heads, kv_heads) = (hp.head_dim, hp.heads, hp.kv_heads);
    let (qd, group) = (heads * hd, heads / kv_heads);
    let window = hp.window_of(l);
    // (gpt-oss's: each query head's sink.)
    let sinks = ds[0].w.layers[l].sinks.as_deref();
    // (session, KV head, positions seen, query row, output of the group).
    let mut tasks = Vec::with_capacity(q.len() / qd * kv_heads);
    let mut rows = q.chunks_exact(qd).zip(out.chunks_exact_mut(qd));
    for (s, (dec, toks)) in ds.iter().zip(tokens).enumerate() {
        for t in 0..toks.len() {
            let (qr, or) = rows.next().expect("a row per token");
            for (g, o) in or.chunks_exact_mut(group * hd).enumerate() {
                tasks.push((
                    s,
                    g,
                    dec.past + t + 1,
                    &qr[g * group * hd..][..group * hd],
                    o,
                ));
            }
        }
    }
    // (A sliding-window layer's query reads at most `window` positions.)
    let read = |seen: usize| window.map_or(seen, |w| seen.min(w));
    let work: usize = tasks.iter().map(|task| read(task.2)).sum::<usize>() * group * hd;
    // A few new tokens' heads are too little work to wake the pool for.
    let workers = match workers {
        Workers::Pool if work < 1 << 18 => Workers::Caller,
        w => w,
    };
    workers.for_each_item(tasks, |_, (s, g, seen, qg, og)| {
        let dec = &ds[s];
        let at = l * kv_heads + g;
        // A sliding-window layer's query sees the last `window` positions.
        let from = seen - read(seen);
        let cache = attend::Head {
            k: &dec.k[at][from * hd..],
            v: &dec.v[at][from * hd..],
        };
        // (`attend` adds; `out` holds the last layer's.)
        og.fill(0.0);
        // (Mistral 3's temperature warms the query at its position.)
        let warm = hp.attn_temperature(seen - 1);
        let scores = (hp.attn_scale, hp.attn_softcap, warm);
        let sinks = sinks.map(|s| &s[g * group..][..group]);
        attend::attend(qg, hd, cache, (seen - from, sinks), scores, og);
    });
}

/// [`forward_together`]'s pass, its parallel steps shared out over
/// `workers`.
fn forward_with(ds: &mut [&mut Decoder], tokens: &[&[u32]], workers: Workers<'_>) -> Vec<f32> {
    debug_assert_eq!(ds.len(), tokens.len());
    let w = ds[0].w.clone();
    let hp = &w.hp;
    let (d, qd) = (hp.embd, hp.q_dim());
    // Session `s` has rows `starts[s] .. starts[s] + tokens[s].len()`.
    let starts: Vec<usize> = tokens
        .iter()
        .scan(0, |at, t| {
            let start = *at;
            *at += t.len();
            Some(start)
        })
        .collect();
    let n: usize = tokens.iter().map(|t| t.len()).sum();
    let mut x = vec![0f32; n * d];
    for ((&start, toks), dec) in starts.iter().zip(tokens).zip(ds.iter()) {
        w.embed(toks, dec.past, &mut x[start * d..][..toks.len() * d]);
    }
    if hp.embd_scale != 1.0 {
        x.iter_mut().for_each(|x| *x *= hp.embd_scale);
    }
    // Each row's rotary angles, the same in every layer (but Gemma 3's
    // local layers, which have theirs).
    let swa_angles = hp.swa_angles();
    let mut angles = [Vec::with_capacity(n * hp.rope_dims), Vec::new()];
    for (dec, toks) in ds.iter().zip(tokens) {
        for t in 0..toks.len() {
            for (swa, table) in [false, swa_angles].into_iter().zip(&mut angles) {
                hp.rope_angles(w.rope_freqs.as_deref(), dec.past + t, swa, table);
            }
        }
    }
    let mut h = vec![0f32; n * d];
    // (The attention's output, or a convolution's (LFM2's) or a scan's
    // (Mamba-2's, `inner` wide).)
    let inner = hp.ssm.as_ref().map_or(0, |m| m.inner);
    let mut attn = vec![0f32; n * qd.max(d).max(inner)];
    // Row by row, each row a task on a team.
    let eps = (hp.norm_eps, hp.layer_norm);
    let norm = |x: &[f32], weight: &[f32], h: &mut [f32]| {
        workers.rows(h, d, |i, h| rows::norm(&x[i * d..][..d], weight, eps, h));
    };
    let add = |x: &mut [f32], out: &[f32]| {
        workers.rows(x, d, |i, x| {
            residual(x, &out[i * d..][..d], hp.residual_scale)
        });
    };
    // The products' outputs, reused layer after layer (each written whole).
    let [mut qkv, mut gu] = [vec![Vec::new(); 3], vec![Vec::new(); 2]];
    let (mut o, mut down) = (vec![Vec::new()], vec![Vec::new()]);
    // The activations quantised for each product, their buffers reused.
    let mut xq = Q8Batch::default();
    for (l, layer) in w.layers.iter().enumerate() {
        // (OLMo 2's blocks read the stream as it is.)
        let input = match &layer.attn_norm {
            Some(weight) => {
                norm(&x, weight, &mut h);
                &h
            }
            None => &x,
        };
        // (Latent attention's and Mamba-1's `wv` run after.)
        let group = [&layer.wq, &layer.wk, &layer.wv];
        let selective = layer.selective();
        let first = if layer.wv_alone() { 2 } else { 3 };
        QMatrix::matmul_group_into(
            &group[..first],
            input,
            n,
            workers,
            &mut xq,
            &mut qkv[..first],
        );
        let [q, k, v] = &mut qkv[..] else {
            unreachable!("three products")
        };
        // (LFM2's convolution layers: `b`, `c` and `x` for Q, K and V.)
        // (Mamba-2's: `z`, `xBC` and `dt`.)
        let attended = match (&layer.conv, &hp.short_conv, &layer.ssm, &hp.ssm) {
            (Some(weights), Some(c), ..) => {
                let out = &mut attn[..n * d];
                let bcx = [&q[..], &k[..], &v[..]];
                convolve(ds, (tokens, &starts), l, (weights, c.taps), bcx, out);
                &attn[..n * d]
            }
            (.., Some(_), Some(_)) if selective => {
                let out = &mut attn[..n * inner];
                let rows = (tokens, &starts[..]);
                selective::selective_layer(ds, rows, (&w, l), [&q[..], &k[..]], workers, out);
                &attn[..n * inner]
            }
            (.., Some(scan), Some(m)) => {
                let out = &mut attn[..n * inner];
                let zxdt = [&q[..], &k[..], &v[..]];
                scan_layer(ds, (tokens, &starts), l, (scan, m, hp.norm_eps), zxdt, out);
                &attn[..n * inner]
            }
            _ if layer.mla.is_some() => {
                let out = &mut attn[..n * qd];
                let [q0, kv_a] = [&q[..], &k[..]].map(<[f32]>::to_vec);
                let qkv = [&mut *q, &mut *k, &mut *v];
                let rows = (tokens, &starts[..]);
                latent::latent_layer(
                    ds,
                    rows,
                    (&w, l),
                    [&q0, &kv_a],
                    qkv,
                    &angles[0],
                    workers,
                    out,
                );
                &attn[..n * hp.o_dim()]
            }
            _ => {
                let angles = &angles[usize::from(swa_angles && hp.is_swa(l))];
                let out = &mut attn[..n * qd];
                attend_layer(
                    ds,
                    (tokens, &starts),
                    (&w, l),
                    [q, k, v],
                    angles,
                    workers,
                    out,
                );
                &attn[..n * qd]
            }
        };
        QMatrix::matmul_group_into(&[&layer.wo], attended, n, workers, &mut xq, &mut o);
        add_bias(&mut o[0], layer.bo.as_deref());
        let input = if hp.parallel {
            // The feed-forward reads the block's input: its own norm of
            // it (GPT-NeoX's), else the attention's, still in `h` (Phi-2's);
            // both outputs are added. (No post-norms in these families.)
            if let Some(weight) = &layer.ffn_norm {
                norm(&x, weight, &mut h);
            }
            add(&mut x, &o[0]);
            &h
        } else {
            // Gemma 2 and 3 normalise a block's output before adding it
            // (into `h`, free until the next norm).
            let out = match &layer.post_attn_norm {
                Some(weight) => {
                    norm(&o[0], weight, &mut h);
                    &h
                }
                None => &o[0],
            };
            add(&mut x, out);
            match &layer.ffn_norm {
                Some(weight) => {
                    norm(&x, weight, &mut h);
                    &h
                }
                None => &x,
            }
        };
        // (Nemotron-H's layers without a feed-forward: the block is the
        // mixer's, added above.)
        if layer.experts.is_empty() {
            continue;
        }
        let buffers = (&mut gu, &mut down);
        match &layer.router {
            None => {
                let act = hp.act_of(l);
                feed_forward(layer.dense(), (input, n), act, workers, &mut xq, buffers);
            }
            Some(router) => {
                mixture((layer, router, hp), (input, n), workers, &mut xq, buffers);
            }
        }
        let out = match &layer.post_ffn_norm {
            Some(weight) => {
                norm(&down[0], weight, &mut h);
                &h
            }
            None => &down[0],
        };
        add(&mut x, out);
    }
    // Each session's last row, normalised, through the output head at once.
    let mut normed = vec![0f32; ds.len() * d];
    for (((dec, &start), toks), out) in ds
        .iter_mut()
        .zip(&starts)
        .zip(tokens)
        .zip(normed.chunks_exact_mut(d))
    {
        dec.past += toks.len();
        let last = &x[(start + toks.len() - 1) * d..][..d];
        rows::norm(last, &w.output_norm, eps, out);
    }
    let mut logits = w
        .output
        .as_ref()
        .unwrap_or(&w.tok_embd)
        .matmul(&normed, ds.len(), workers);
    add_bias(&mut logits, w.output_bias.as_deref());
    if hp.logit_scale != 1.0 {
        logits.iter_mut().for_each(|l| *l *= hp.logit_scale);
    }
    soft_cap(&mut logits, hp.final_softcap);
    // (Not cut into a vector per session here: 3 MB copied on the pass's
    // thread for 16 sessions, which their tensors copy again anyway.)
    logits
}

/// Layer `l`'s attention of every session's new rows, whose Q, K and V
/// products are `q`, `k` and `v` (stacked as the sessions' rows are): their
/// biases, bounds, norms and rotations (by `angles`, each row's) applied,
/// the keys and values appended to each session's cache, the heads'
/// outputs into `out` (`q_dim` a row).
fn attend_layer(
    ds: &mut [&mut Decoder],
    (tokens, starts): (&[&[u32]], &[usize]),
    (w, l): (&Weights, usize),
    [q, k, v]: [&mut Vec<f32>; 3],
    angles: &[f32],
    workers: Workers<'_>,
    out: &mut [f32],
) {
    let (hp, layer) = (&w.hp, &w.layers[l]);
    let (qd, kvd) = (hp.q_dim(), hp.kv_dim());
    add_bias(q, layer.bq.as_deref());
    add_bias(k, layer.bk.as_deref());
    add_bias(v, layer.bv.as_deref());
    // (OLMo 1's bound, before the rotation.)
    if hp.clamp_kqv > 0.0 {
        let c = hp.clamp_kqv;
        for y in [&mut *q, &mut *k, &mut *v] {
            y.iter_mut().for_each(|y| *y = y.clamp(-c, c));
        }
    }
    let qk_norms = |q: &mut Vec<f32>, k: &mut Vec<f32>| {
        for (y, norm) in [(q, &layer.q_norm), (k, &layer.k_norm)] {
            if let Some(norm) = norm {
                let unnormed = y.clone();
                rms_norm(&unnormed, norm, hp.norm_eps, y);
            }
        }
    };
    if !hp.qk_norms_after_rope {
        qk_norms(q, k);
    }
    let (hd, neox, dims) = (hp.head_dim, hp.rope_neox, hp.rope_dims);
    // (SmolLM3's every fourth layer has none.)
    let ropes = [(&mut *q, qd), (&mut *k, kvd)]
        .into_iter()
        .filter(|_| hp.ropes(l));
    for (y, width) in ropes {
        workers.rows(y, width, |row, y| {
            rope(y, hd, neox, &angles[row * dims..][..dims]);
        });
    }
    if hp.qk_norms_after_rope {
        qk_norms(q, k);
    }
    for ((dec, &start), toks) in ds.iter_mut().zip(starts).zip(tokens) {
        let rows = start * kvd..(start + toks.len()) * kvd;
        let heads = l * hp.kv_heads..(l + 1) * hp.kv_heads;
        attend::append(&mut dec.k[heads.clone()], &k[rows.clone()], hp.head_dim);
        attend::append(&mut dec.v[heads], &v[rows], hp.head_dim);
    }
    attention_together(ds, tokens, l, q, out, workers);
}

/// LFM2's convolution in layer `l` of every session's new rows, whose
/// `in_proj` products are `b`, `c` and `x`, each session's over its own
/// state ([`rows::short_conv`]), into `out` (`embd` a row).
fn convolve(
    ds: &mut [&mut Decoder],
    (tokens, starts): (&[&[u32]], &[usize]),
    l: usize,
    (weights, taps): (&[f32], usize),
    [b, c, x]: [&[f32]; 3],
    out: &mut [f32],
) {
    let d = weights.len() / taps;
    for ((dec, &start), toks) in ds.iter_mut().zip(starts).zip(tokens) {
        let span = start * d..(start + toks.len()) * d;
        let bcx = [&b[span.clone()], &c[span.clone()], &x[span.clone()]];
        rows::short_conv(&mut dec.conv[l], weights, taps, bcx, &mut out[span]);
    }
}

/// A Mamba-2 layer `l` of every session's new rows, whose `ssm_in`
/// products are `z`, `xBC` and `dt`, each session's over its own state
/// ([`rows::mamba2`]), into `out` (`inner` a row).
fn scan_layer(
    ds: &mut [&mut Decoder],
    (tokens, starts): (&[&[u32]], &[usize]),
    l: usize,
    (scan, m, eps): (&super::Scan, &super::hparams::Mamba2, f32),
    [z, xbc, dt]: [&[f32]; 3],
    out: &mut [f32],
) {
    let (inner, cd, h) = (m.inner, m.conv_dim(), m.heads);
    for ((dec, &start), toks) in ds.iter_mut().zip(starts).zip(tokens) {
        let rows = start..start + toks.len();
        let zxdt = [(z, inner), (xbc, cd), (dt, h)].map(|(y, w)| &y[rows.start * w..rows.end * w]);
        let state = (&mut dec.conv[l][..], &mut dec.ssm[l][..]);
        let out = &mut out[rows.start * inner..rows.end * inner];
        rows::mamba2(state, (scan, m, eps), zxdt, out);
    }
}

/// One expert's feed-forward (a dense layer's) of the `rows` rows of `h`,
/// into `down[0]`: `W_down · (act(W_gate · h) ⊙ W_up · h)`, `act` SiLU or
/// GELU, or without a gate `W_down · act(W_up · h)`, `act` (Arcee's)
/// squared ReLU or (StarCoder 2's) GELU, or (gpt-oss's experts') the
/// clamped SwiGLU, its products' biases (gpt-oss's gate's too) added
/// where it has them. `gu` holds the gate and up products.
fn feed_forward(
    e: &super::Expert,
    (h, rows): (&[f32], usize),
    act: FfnAct,
    workers: Workers<'_>,
    xq: &mut Q8Batch,
    (gu, down): (&mut Vec<Vec<f32>>, &mut Vec<Vec<f32>>),
) {
    match &e.gate {
        Some(gate) => QMatrix::matmul_group_into(&[gate, &e.up], h, rows, workers, xq, gu),
        // (Into the up product's buffer alone.)
        None => QMatrix::matmul_group_into(&[&e.up], h, rows, workers, xq, &mut gu[1..]),
    }
    let [g, u] = &mut gu[..] else {
        unreachable!("two products")
    };
    let ff = u.len() / rows;
    add_bias(g, e.gate_bias.as_deref());
    let [up_bias, down_bias] = match &e.biases {
        Some([up, down]) => [Some(&up[..]), Some(&down[..])],
        None => [None, None],
    };
    add_bias(u, up_bias);
    let out = match (&e.gate, act) {
        (None, FfnAct::Gelu) => {
            workers.rows(u, ff, |_, u| gelu_in_place(u));
            u
        }
        (None, FfnAct::Xielu(x)) => {
            workers.rows(u, ff, |_, u| u.iter_mut().for_each(|u| *u = x.of(*u)));
            u
        }
        (None, _) => {
            workers.rows(u, ff, |_, u| relu_squared(u));
            u
        }
        (Some(_), FfnAct::Gelu) => {
            workers.rows(g, ff, |i, g| geglu(g, &u[i * ff..][..ff]));
            g
        }
        (Some(_), FfnAct::SwigluOai) => {
            workers.rows(g, ff, |i, g| swiglu_oai(g, &u[i * ff..][..ff]));
            g
        }
        (Some(_), _) => {
            workers.rows(g, ff, |i, g| swiglu(g, &u[i * ff..][..ff]));
            g
        }
    };
    QMatrix::matmul_group_into(&[&e.down], out, rows, workers, xq, down);
    add_bias(&mut down[0], down_bias);
}

/// [`forward_together`] for sessions on the GPU: one pass on the device
/// for all of them. Should it fail, each moves to the CPU (as
/// [`Decoder::forward`] does) and they run there together.
pub(super) fn forward_together_on_the_gpu(
    ds: &mut [&mut Decoder],
    tokens: &[&[u32]],
) -> Vec<Vec<f32>> {
    let w = ds[0].w.clone();
    let dw = w.device.as_ref().expect("loaded for the GPU");
    let mut parts: Vec<(&mut OnDevice, usize, &[u32])> = ds
        .iter_mut()
        .zip(tokens)
        .map(|(d, t)| {
            let past = d.past;
            (d.device.as_mut().expect("on the GPU"), past, *t)
        })
        .collect();
    match OnDevice::forward_together(&w, dw, &mut parts) {
        Ok(all) => {
            for (d, t) in ds.iter_mut().zip(tokens) {
                d.past += t.len();
                d.seen.extend_from_slice(t);
            }
            all
        }
        Err(e) => {
            ds.iter_mut().for_each(|d| d.move_to_the_cpu(&e));
            let all = forward_together(ds, tokens);
            all.chunks_exact(w.hp.vocab).map(<[f32]>::to_vec).collect()
        }
    }
}

impl Decoder {
    /// The new token ids of a `compute` call, checked against the
    /// vocabulary and the room left in the context.
    pub(super) fn tokens(&self, inputs: &[(String, Tensor)]) -> Result<Vec<u32>, NnError> {
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
        Ok(tokens)
    }
}

/// The `compute` result for a decoder's `logits`.
pub(super) fn logits(logits: &[f32]) -> Vec<(String, Tensor)> {
    vec![(
        "logits".into(),
        Tensor::from_f32(vec![logits.len()], logits),
    )]
}

impl Session for Decoder {
    fn compute(&mut self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, NnError> {
        let tokens = self.tokens(inputs)?;
        Ok(logits(&self.forward(&tokens)))
    }
}
