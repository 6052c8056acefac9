//! A decoder's forward pass on the GPU: the weight products, norms,
//! rotary embeddings, attention over a KV cache kept on the device, SwiGLU
//! and the residual adds are recorded as one [`Program`], so a pass costs
//! one read-back (the last token's logits) whatever the model's depth.
//! Only the embedding lookup and the rotary angles are computed on the
//! host, as the CPU path computes them.

use std::sync::Arc;

use super::{HParams, QMatrix, Weights};
use crate::gpu::{Attention, Buffer, Gpu, GpuMatrix, Reuse};
use crate::{NnError, NnErrorKind};

/// Tokens per pass: a longer prompt runs as several passes, which bounds
/// the activations and the attention scores kept on the device.
const TOKENS_PER_PASS: usize = 256;
/// Positions a session's cache holds at first; it doubles as needed.
const FIRST_CAPACITY: usize = 64;

/// What a decoder keeps on the device besides its products' matrices
/// (which its `QMatrix`es hold): the norms' weights, and the biases and
/// per-head norms of the families that have them.
#[derive(Debug)]
pub(super) struct DeviceWeights {
    gpu: Arc<Gpu>,
    attn_norm: Vec<GpuMatrix>,
    ffn_norm: Vec<GpuMatrix>,
    output_norm: GpuMatrix,
    /// Per layer: the `Layer`'s optional vectors, in [`Extras::of`]'s order.
    extras: Vec<Extras>,
}

/// A layer's optional vectors on the device.
#[derive(Debug)]
struct Extras {
    bq: Option<GpuMatrix>,
    bk: Option<GpuMatrix>,
    bv: Option<GpuMatrix>,
    bo: Option<GpuMatrix>,
    q_norm: Option<GpuMatrix>,
    k_norm: Option<GpuMatrix>,
}

impl Extras {
    fn all(&self) -> impl Iterator<Item = &GpuMatrix> {
        [
            &self.bq,
            &self.bk,
            &self.bv,
            &self.bo,
            &self.q_norm,
            &self.k_norm,
        ]
        .into_iter()
        .flatten()
    }
}

impl DeviceWeights {
    /// Uploads the norms of `w` (whose products are on `gpu` already) and
    /// compiles the kernels.
    pub(super) fn upload(gpu: &Arc<Gpu>, w: &Weights) -> Result<Self, NnError> {
        Attention::check(w.hp.head_dim)?;
        gpu.program()?;
        let vector = |v: &[f32]| gpu.upload(v, 1, v.len());
        let optional = |v: &Option<Vec<f32>>| v.as_deref().map(vector).transpose();
        let extras = w
            .layers
            .iter()
            .map(|l| {
                Ok(Extras {
                    bq: optional(&l.bq)?,
                    bk: optional(&l.bk)?,
                    bv: optional(&l.bv)?,
                    bo: optional(&l.bo)?,
                    q_norm: optional(&l.q_norm)?,
                    k_norm: optional(&l.k_norm)?,
                })
            })
            .collect::<Result<_, NnError>>()?;
        Ok(Self {
            extras,
            gpu: gpu.clone(),
            attn_norm: w
                .layers
                .iter()
                .map(|l| vector(&l.attn_norm))
                .collect::<Result<_, _>>()?,
            ffn_norm: w
                .layers
                .iter()
                .map(|l| vector(&l.ffn_norm))
                .collect::<Result<_, _>>()?,
            output_norm: vector(&w.output_norm)?,
        })
    }

    /// Bytes these hold on the device.
    pub(super) fn bytes(&self) -> u64 {
        self.attn_norm
            .iter()
            .chain(&self.ffn_norm)
            .chain([&self.output_norm])
            .chain(self.extras.iter().flat_map(Extras::all))
            .map(GpuMatrix::bytes)
            .sum()
    }
}

/// One session's state on the device: its KV cache and the buffers a
/// pass works in.
#[derive(Debug)]
pub(super) struct OnDevice {
    gpu: Arc<Gpu>,
    /// Positions each layer's cache has room for.
    capacity: usize,
    /// Per layer: `[position][kv head][head dim]`, rounded through f16.
    k: Vec<Buffer>,
    v: Vec<Buffer>,
    work: Option<Work>,
    /// Attention scores, `tokens x heads x capacity` (and its floats).
    scores: Option<(Buffer, usize)>,
    /// The bind groups of the last pass this session led, which the next
    /// one binds again where its buffers are the same (most of a pass's
    /// host time is making them).
    reuse: std::sync::Mutex<Reuse>,
    /// [`TOKENS_PER_PASS`] and [`FIRST_CAPACITY`]; smaller in tests.
    tokens_per_pass: usize,
    first_capacity: usize,
    /// Makes the next pass fail, as a lost device would (tests).
    #[cfg(test)]
    pub(super) fail_next: bool,
    /// Passes run in this session's buffers (tests: a joined pass counts
    /// once, for its first session).
    #[cfg(test)]
    pub(super) passes: usize,
}

/// A pass's activations, for up to `tokens` tokens and the logits of
/// `outputs` sessions.
#[derive(Debug)]
struct Work {
    tokens: usize,
    outputs: usize,
    x: Buffer,
    h: Buffer,
    q: Buffer,
    k: Buffer,
    /// Q and K after their per-head norms (models that have them).
    qn: Buffer,
    kn: Buffer,
    v: Buffer,
    att: Buffer,
    o: Buffer,
    g: Buffer,
    u: Buffer,
    table: Buffer,
    logits: Buffer,
}

impl OnDevice {
    pub(super) fn new(w: &DeviceWeights) -> Self {
        Self {
            gpu: w.gpu.clone(),
            capacity: 0,
            k: Vec::new(),
            v: Vec::new(),
            work: None,
            scores: None,
            reuse: std::sync::Mutex::default(),
            tokens_per_pass: TOKENS_PER_PASS,
            first_capacity: FIRST_CAPACITY,
            #[cfg(test)]
            fail_next: false,
            #[cfg(test)]
            passes: 0,
        }
    }

    /// Passes of at most `tokens_per_pass` tokens, and a cache of
    /// `first_capacity` positions at first: the tests of long prompts and
    /// of growing caches, at sizes llvmpipe runs quickly.
    #[cfg(test)]
    pub(super) fn shrink(&mut self, tokens_per_pass: usize, first_capacity: usize) {
        self.tokens_per_pass = tokens_per_pass;
        self.first_capacity = first_capacity;
    }

    /// Floats of the attention scores buffer.
    #[cfg(test)]
    pub(super) fn scores_floats(&self) -> usize {
        self.scores.as_ref().map_or(0, |(_, floats)| *floats)
    }

    /// Runs `tokens` after the `past` positions in the cache; returns the
    /// logits of the last one.
    pub(super) fn forward(
        &mut self,
        w: &Weights,
        dw: &DeviceWeights,
        tokens: &[u32],
        past: usize,
    ) -> Result<Vec<f32>, NnError> {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next) {
            return Err(NnError::new(NnErrorKind::RuntimeError, "failed by a test"));
        }
        // Passes whose scores fit one buffer at the cache's final size.
        let capacity = self.capacity_for(&w.hp, past + tokens.len());
        let row = (w.hp.heads * capacity * 4) as u64;
        let fit = (self.gpu.max_buffer() / row) as usize;
        let mut logits = Vec::new();
        let mut at = past;
        for part in tokens.chunks(self.tokens_per_pass.min(fit).max(1)) {
            let mut all = Self::pass(w, dw, &mut [(&mut *self, at, part)])?;
            logits = all.pop().expect("one session's logits");
            at += part.len();
        }
        Ok(logits)
    }

    /// [`OnDevice::forward`] for several sessions of one model at once:
    /// `(session, positions in its cache, its new tokens)`. When all their
    /// tokens fit one pass they run as one, their rows stacked through
    /// every weight product (the weights are read once for all of them);
    /// otherwise each runs on its own. Returns each one's logits.
    pub(super) fn forward_together(
        w: &Weights,
        dw: &DeviceWeights,
        parts: &mut [(&mut OnDevice, usize, &[u32])],
    ) -> Result<Vec<Vec<f32>>, NnError> {
        #[cfg(test)]
        if parts
            .iter_mut()
            .any(|(on, ..)| std::mem::take(&mut on.fail_next))
        {
            return Err(NnError::new(NnErrorKind::RuntimeError, "failed by a test"));
        }
        let total: usize = parts.iter().map(|(_, _, t)| t.len()).sum();
        let one_pass = parts.iter().all(|(on, past, t)| {
            let capacity = on.capacity_for(&w.hp, past + t.len());
            let row = (w.hp.heads * capacity * 4) as u64;
            t.len() as u64 * row <= on.gpu.max_buffer() && total <= on.tokens_per_pass
        });
        if one_pass {
            return Self::pass(w, dw, parts);
        }
        parts
            .iter_mut()
            .map(|(on, past, t)| on.forward(w, dw, t, *past))
            .collect()
    }

    /// The capacity a cache grows to for `positions`.
    fn capacity_for(&self, hp: &HParams, positions: usize) -> usize {
        positions
            .next_power_of_two()
            .max(self.first_capacity)
            .min(hp.context.max(positions))
    }

    /// Room in the cache for `positions`, and attention scores for
    /// `tokens` new ones.
    fn reserve(&mut self, hp: &HParams, positions: usize, tokens: usize) -> Result<(), NnError> {
        let gpu = &self.gpu;
        let kvd = hp.kv_heads * hp.head_dim;
        if positions > self.capacity {
            let capacity = self.capacity_for(hp, positions);
            let grow = |old: &[Buffer], label| -> Result<Vec<Buffer>, NnError> {
                (0..hp.layers)
                    .map(|l| {
                        let b = gpu.buffer(capacity * kvd, label)?;
                        if let Some(o) = old.get(l) {
                            gpu.copy(o, &b, self.capacity * kvd)?;
                        }
                        Ok(b)
                    })
                    .collect()
            };
            // Both grown before either is kept: a failure leaves the
            // cache as it was.
            let k = grow(&self.k, "weft-nn kv cache (k)")?;
            let v = grow(&self.v, "weft-nn kv cache (v)")?;
            (self.k, self.v, self.capacity) = (k, v, capacity);
        }
        // This pass's scores over the whole cache: regrown with the cache,
        // and shrunk once passes get far smaller (after a long prompt).
        let need = tokens * hp.heads * self.capacity;
        let have = self.scores.as_ref().map_or(0, |(_, floats)| *floats);
        if need > have || need * 4 < have {
            self.scores = None;
            self.scores = Some((gpu.buffer(need, "weft-nn attention scores")?, need));
        }
        Ok(())
    }

    /// Activation buffers for a pass of `tokens` rows giving `outputs`
    /// sessions' logits.
    fn reserve_work(&mut self, hp: &HParams, tokens: usize, outputs: usize) -> Result<(), NnError> {
        let gpu = &self.gpu;
        let kvd = hp.kv_dim();
        if self
            .work
            .as_ref()
            .is_none_or(|w| w.tokens < tokens || w.outputs < outputs)
        {
            // Never fewer than before: a prompt, then one at a time.
            let (n, outputs) = self.work.take().map_or((tokens, outputs), |w| {
                (w.tokens.max(tokens), w.outputs.max(outputs))
            });
            let b = |floats: usize| gpu.buffer(floats, "weft-nn decoder activations");
            let (d, qd, ffn) = (hp.embd, hp.q_dim(), hp.ffn);
            self.work = Some(Work {
                tokens: n,
                outputs,
                x: b(n * d)?,
                h: b(n * d)?,
                q: b(n * qd)?,
                k: b(n * kvd)?,
                qn: b(n * qd)?,
                kn: b(n * kvd)?,
                v: b(n * kvd)?,
                att: b(n * qd)?,
                o: b(n * d)?,
                g: b(n * ffn)?,
                u: b(n * ffn)?,
                table: b(n * hp.rope_dims)?,
                logits: b(outputs * hp.vocab)?,
            });
        }
        Ok(())
    }

    /// One pass of `parts` (see [`OnDevice::forward_together`]) on the
    /// device, in the first session's activation buffers; each session's
    /// rows store into and attend over its own cache.
    fn pass(
        w: &Weights,
        dw: &DeviceWeights,
        parts: &mut [(&mut OnDevice, usize, &[u32])],
    ) -> Result<Vec<Vec<f32>>, NnError> {
        let hp = &w.hp;
        let d = hp.embd;
        let (qd, kvd) = (hp.q_dim(), hp.kv_dim());
        let half = hp.rope_dims / 2;
        let n: usize = parts.iter().map(|(_, _, t)| t.len()).sum();
        for (on, past, tokens) in parts.iter_mut() {
            on.reserve(hp, *past + tokens.len(), tokens.len())?;
        }
        parts[0].0.reserve_work(hp, n, parts.len())?;
        #[cfg(test)]
        {
            parts[0].0.passes += 1;
        }
        // Session `s` has rows `starts[s] ..`; the rotary angles are each
        // row's own position's, computed as the CPU path computes them.
        let mut x = Vec::with_capacity(n * d);
        let mut table = Vec::with_capacity(n * half * 2);
        let mut starts = Vec::with_capacity(parts.len());
        for (_, past, tokens) in parts.iter() {
            starts.push(x.len() / d);
            for (t, &tok) in tokens.iter().enumerate() {
                x.resize(x.len() + d, 0.0);
                let at = x.len() - d;
                w.tok_embd.row(tok as usize, &mut x[at..]);
                hp.rope_angles(w.rope_freqs.as_deref(), past + t, &mut table);
            }
        }
        if hp.embd_scale != 1.0 {
            x.iter_mut().for_each(|x| *x *= hp.embd_scale);
        }
        let sessions: Vec<(&OnDevice, usize, usize, usize)> = parts
            .iter()
            .zip(&starts)
            .map(|((on, past, tokens), &start)| (&**on, *past, tokens.len(), start))
            .collect();
        let a = sessions[0].0.work.as_ref().expect("reserved");
        let gpu = &sessions[0].0.gpu;
        let mut p = gpu.program()?;
        p.write(&a.x, x);
        p.write(&a.table, table);
        let (hd, neox, eps) = (hp.head_dim, hp.rope_neox, hp.rms_eps);
        for (l, (layer, extra)) in w.layers.iter().zip(&dw.extras).enumerate() {
            p.rms_norm(&a.x, 0, n, &dw.attn_norm[l], eps, &a.h, 0);
            p.product(&a.h, n, on_gpu(&layer.wq)?, &a.q);
            p.product(&a.h, n, on_gpu(&layer.wk)?, &a.k);
            p.product(&a.h, n, on_gpu(&layer.wv)?, &a.v);
            for (y, bias, floats) in [
                (&a.q, &extra.bq, n * qd),
                (&a.k, &extra.bk, n * kvd),
                (&a.v, &extra.bv, n * kvd),
            ] {
                if let Some(bias) = bias {
                    p.add_bias(y, bias, floats);
                }
            }
            // Per-head norms (Qwen3) write into their own buffers.
            let q = match &extra.q_norm {
                Some(norm) => {
                    p.rms_norm(&a.q, 0, n * hp.heads, norm, eps, &a.qn, 0);
                    &a.qn
                }
                None => &a.q,
            };
            let k = match &extra.k_norm {
                Some(norm) => {
                    p.rms_norm(&a.k, 0, n * hp.kv_heads, norm, eps, &a.kn, 0);
                    &a.kn
                }
                None => &a.k,
            };
            p.rope((q, k), n, (hp.heads, hp.kv_heads), hd, half, neox, &a.table);
            for &(on, past, tokens, start) in &sessions {
                let (kc, vc) = (&on.k[l], &on.v[l]);
                p.store((k, &a.v, start * kvd), tokens * kvd, (kc, vc), past * kvd);
                let shape = Attention {
                    tokens,
                    heads: hp.heads,
                    kv_heads: hp.kv_heads,
                    head_dim: hd,
                    past,
                    stride: on.capacity,
                    scale: hp.attn_scale,
                    row0: start,
                };
                let scores = &on.scores.as_ref().expect("reserved").0;
                p.attention(q, kc, vc, scores, &a.att, shape);
            }
            p.product(&a.att, n, on_gpu(&layer.wo)?, &a.o);
            if let Some(bias) = &extra.bo {
                p.add_bias(&a.o, bias, n * d);
            }
            p.add(&a.x, &a.o, n * d, hp.residual_scale);
            p.rms_norm(&a.x, 0, n, &dw.ffn_norm[l], eps, &a.h, 0);
            p.product(&a.h, n, on_gpu(&layer.gate)?, &a.g);
            p.product(&a.h, n, on_gpu(&layer.up)?, &a.u);
            p.swiglu(&a.g, &a.u, n * hp.ffn);
            p.product(&a.g, n, on_gpu(&layer.down)?, &a.o);
            p.add(&a.x, &a.o, n * d, hp.residual_scale);
        }
        // Each session's last row, normalised, through the output head at
        // once: one norm of all rows when each session has one (decoding).
        if sessions.iter().all(|&(_, _, tokens, _)| tokens == 1) {
            p.rms_norm(&a.x, 0, n, &dw.output_norm, eps, &a.h, 0);
        } else {
            for (s, &(_, _, tokens, start)) in sessions.iter().enumerate() {
                p.rms_norm(&a.x, start + tokens - 1, 1, &dw.output_norm, eps, &a.h, s);
            }
        }
        let head = w.output.as_ref().unwrap_or(&w.tok_embd);
        p.product(&a.h, sessions.len(), on_gpu(head)?, &a.logits);
        let mut reuse = sessions[0]
            .0
            .reuse
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut logits = p.run_reusing(&mut reuse, &a.logits, sessions.len() * hp.vocab)?;
        if hp.logit_scale != 1.0 {
            logits.iter_mut().for_each(|l| *l *= hp.logit_scale);
        }
        Ok(logits.chunks_exact(hp.vocab).map(<[f32]>::to_vec).collect())
    }
}

fn on_gpu(m: &QMatrix) -> Result<&GpuMatrix, NnError> {
    m.on_gpu().ok_or_else(|| {
        NnError::new(
            NnErrorKind::RuntimeError,
            "a decoder weight is not on the GPU",
        )
    })
}
