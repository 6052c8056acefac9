//! A decoder's forward pass on the GPU: the weight products, norms,
//! rotary embeddings, attention over a KV cache kept on the device, SwiGLU
//! and the residual adds are recorded as one [`Program`], so a pass costs
//! one read-back (the last token's logits) whatever the model's depth, and
//! one more per mixture-of-experts layer (its router's scores, to route
//! each token on the host: [`mixture`]). Only the embedding lookup, the
//! rotary angles and that routing are computed on the host, as the CPU
//! path computes them.

use std::sync::Arc;

use super::{QMatrix, Weights};
use crate::gpu::{Attention, Buffer, Gpu, GpuMatrix, NormKind, Program, Qkv, Reuse};
use crate::{NnError, NnErrorKind};

mod buffers;
mod latent;
mod mixture;
mod scan;

use latent::{DeviceLatent, LatentWork};
#[cfg(test)]
pub(super) use mixture::PAD_GROUPS;
use mixture::{DeviceMixture, MixtureWork, mixture};
use scan::{DeviceScan, SelectiveWork};

/// Tokens per pass: a longer prompt runs as several passes, which bounds
/// the activations and the attention scores kept on the device.
const TOKENS_PER_PASS: usize = 256;
/// Positions a session's cache holds at first; it doubles as needed.
const FIRST_CAPACITY: usize = 64;

/// What a decoder keeps on the device besides the matrices of the
/// products it runs alone (output and down projections, a mixture's
/// router, the output head: their `QMatrix`es hold them): per layer, its
/// norms, its fused products and the vectors of the families that have
/// them.
#[derive(Debug)]
pub(super) struct DeviceWeights {
    gpu: Arc<Gpu>,
    layers: Vec<DeviceLayer>,
    output_norm: GpuMatrix,
    /// Phi-2's bias of the logits.
    output_bias: Option<GpuMatrix>,
}

/// A layer's part of [`DeviceWeights`].
#[derive(Debug)]
struct DeviceLayer {
    /// The norms of each block's input (none in OLMo 2 and EXAONE 4): a
    /// row of their weights (and a LayerNorm's bias after them).
    attn_norm: Option<GpuMatrix>,
    ffn_norm: Option<GpuMatrix>,
    /// Wqᵀ, Wkᵀ and Wvᵀ side by side: one product gives each token's
    /// row laid out as [`Qkv`] says.
    qkv: GpuMatrix,
    ffn: Option<DeviceFfn>,
    /// The Q, K and V biases in one row, as `qkv`'s products are (zeros
    /// for any the file lacks), when it has any (Qwen2).
    bqkv: Option<GpuMatrix>,
    bo: Option<GpuMatrix>,
    /// A dense feed-forward's up and down biases (`HParams::ffn_biases`;
    /// those families' feed-forwards have no gate, so the up product's
    /// row is its bias's).
    ffn_biases: Option<[GpuMatrix; 2]>,
    /// Per-head norms of the queries and keys (Qwen3, Gemma 3).
    q_norm: Option<GpuMatrix>,
    k_norm: Option<GpuMatrix>,
    /// Norms of the attention's and feed-forward's outputs (Gemma 2, 3).
    post_attn_norm: Option<GpuMatrix>,
    post_ffn_norm: Option<GpuMatrix>,
    /// gpt-oss's sink logit per head.
    sinks: Option<GpuMatrix>,
    /// LFM2's convolution weights, where the layer convolves (its `qkv`
    /// is then `in_proj`).
    conv: Option<GpuMatrix>,
    /// A Mamba-2 layer's weights besides its products, where it scans (its
    /// `qkv` is then `ssm_in`).
    scan: Option<DeviceScan>,
    /// Latent attention's norms (its `qkv` is then `wq` and `wk` alone).
    latent: Option<DeviceLatent>,
}

/// A layer's feed-forward on the device: its (each expert's) Wgateᵀ and
/// Wupᵀ side by side, one product, then SwiGLU. The down projections and
/// the router are products alone (their `QMatrix`es hold them).
#[derive(Debug)]
enum DeviceFfn {
    Dense(GpuMatrix),
    Mixture(DeviceMixture),
}

impl DeviceFfn {
    fn all(&self) -> Box<dyn Iterator<Item = &GpuMatrix> + '_> {
        match self {
            Self::Dense(gate_up) => Box::new(std::iter::once(gate_up)),
            Self::Mixture(m) => Box::new(m.all()),
        }
    }
}

impl DeviceLayer {
    fn all(&self) -> impl Iterator<Item = &GpuMatrix> {
        std::iter::once(&self.qkv)
            .chain(self.ffn.iter().flat_map(DeviceFfn::all))
            .chain(
                [&self.bqkv, &self.bo, &self.q_norm, &self.k_norm]
                    .into_iter()
                    .chain([
                        &self.post_attn_norm,
                        &self.post_ffn_norm,
                        &self.sinks,
                        &self.conv,
                    ])
                    .chain([&self.attn_norm, &self.ffn_norm])
                    .flatten()
                    .chain(self.scan.iter().flat_map(DeviceScan::all))
                    .chain(self.ffn_biases.iter().flatten())
                    .chain(self.latent.iter().flat_map(DeviceLatent::all)),
            )
    }
}

impl DeviceWeights {
    /// Uploads what `w`'s pass needs on `gpu` besides the products it
    /// runs alone (which are there already), and compiles the kernels.
    /// (The heads' width is checked before, in `Llama::place`.)
    pub(super) fn upload(gpu: &Arc<Gpu>, w: &Weights) -> Result<Self, NnError> {
        gpu.program()?;
        if w.hp.experts > 0 {
            // A mixture's pass gathers and sums rows with them.
            gpu.encoder_kernels_compile()?;
        }
        let side_by_side = |e: &super::Expert| QMatrix::upload_side_by_side(gpu, &e.gate_up());
        let vector = |v: &[f32]| gpu.upload(v, 1, v.len());
        let optional = |v: &Option<Vec<f32>>| v.as_deref().map(vector).transpose();
        let (qd, kvd) = (w.hp.q_dim(), w.hp.kv_dim());
        let layers = w
            .layers
            .iter()
            .map(|l| {
                let bqkv = match (&l.bq, &l.bk, &l.bv) {
                    (None, None, None) => None,
                    (bq, bk, bv) => {
                        let mut row = Vec::with_capacity(qd + 2 * kvd);
                        for (b, len) in [(bq, qd), (bk, kvd), (bv, kvd)] {
                            match b {
                                Some(b) => row.extend_from_slice(b),
                                None => row.resize(row.len() + len, 0.0),
                            }
                        }
                        Some(vector(&row)?)
                    }
                };
                Ok(DeviceLayer {
                    attn_norm: optional(&l.attn_norm)?,
                    ffn_norm: optional(&l.ffn_norm)?,
                    // (Latent attention's `wv` reads its latent, Mamba-1's
                    // its convolution's product: alone.)
                    qkv: match l.wv_alone() {
                        true => QMatrix::upload_side_by_side(gpu, &[&l.wq, &l.wk])?,
                        false => QMatrix::upload_side_by_side(gpu, &[&l.wq, &l.wk, &l.wv])?,
                    },
                    latent: DeviceLatent::upload(gpu, l)?,
                    ffn: match &l.router {
                        _ if l.experts.is_empty() => None,
                        None => Some(DeviceFfn::Dense(side_by_side(l.dense())?)),
                        Some(_) => Some(DeviceFfn::Mixture(DeviceMixture::upload(gpu, &w.hp, l)?)),
                    },
                    bqkv,
                    bo: optional(&l.bo)?,
                    ffn_biases: match l.experts.first().map(|e| &e.biases) {
                        Some(Some([up, down])) if l.router.is_none() => {
                            debug_assert!(!w.hp.gated, "the up bias is added to rows of up alone");
                            Some([vector(up)?, vector(down)?])
                        }
                        _ => None,
                    },
                    q_norm: optional(&l.q_norm)?,
                    k_norm: optional(&l.k_norm)?,
                    post_attn_norm: optional(&l.post_attn_norm)?,
                    post_ffn_norm: optional(&l.post_ffn_norm)?,
                    sinks: optional(&l.sinks)?,
                    conv: optional(&l.conv)?,
                    scan: (l.ssm.as_ref())
                        .map(|s| DeviceScan::upload(gpu, &w.hp, s))
                        .transpose()?,
                })
            })
            .collect::<Result<_, NnError>>()?;
        Ok(Self {
            layers,
            gpu: gpu.clone(),
            output_norm: vector(&w.output_norm)?,
            output_bias: optional(&w.output_bias)?,
        })
    }

    /// Bytes these hold on the device.
    pub(super) fn bytes(&self) -> u64 {
        self.layers
            .iter()
            .flat_map(DeviceLayer::all)
            .chain([&self.output_norm])
            .chain(&self.output_bias)
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
    /// Per layer that convolves (LFM2's), the last `taps − 1` rows of its
    /// `b ⊙ x`, or that scans, of its `xBC` (Mamba-2's) or `x` (Mamba-1's),
    /// oldest first; `None` elsewhere and until the first pass.
    conv: Vec<Option<Buffer>>,
    /// Per layer that scans, its channels' states (`[state][inner]`);
    /// `None` elsewhere and until the first pass.
    ssm: Vec<Option<Buffer>>,
    work: Option<Work>,
    /// Attention scores, `tokens x heads x capacity` (and its floats).
    scores: Option<(Buffer, usize)>,
    /// The bind groups of the last pass this session led, which the next
    /// one binds again where its buffers are the same (most of a pass's
    /// host time is making them): one per program of a pass (a mixture of
    /// experts' passes are a program per mixture layer, and one more).
    reuse: std::sync::Mutex<Vec<Reuse>>,
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
    /// The residual stream.
    x: Buffer,
    /// The norms' outputs, which the products read.
    h: Buffer,
    /// Q, K and V, a row per token ([`Qkv`]) (LFM2's `in_proj`'s rows,
    /// Mamba-2's `ssm_in`'s).
    qkv: Buffer,
    att: Buffer,
    o: Buffer,
    /// Gate and up, a row per token, and SwiGLU's output.
    gu: Buffer,
    g: Buffer,
    /// Each token's rotary angles, and those of the sliding-window layers
    /// where theirs differ (Gemma 3's local layers).
    table: Buffer,
    table_swa: Option<Buffer>,
    /// A block's output normalised before its residual add (Gemma 2, 3).
    post: Option<Buffer>,
    logits: Buffer,
    mixture: Option<MixtureWork>,
    /// Mamba-2's convolution's rows (`xBC`), then its normalised output;
    /// Mamba-1's convolution's rows (`x`).
    xbc: Option<Buffer>,
    latent: Option<LatentWork>,
    /// Mamba-1's other activations.
    selective: Option<SelectiveWork>,
}

impl OnDevice {
    pub(super) fn new(w: &DeviceWeights) -> Self {
        Self {
            gpu: w.gpu.clone(),
            capacity: 0,
            k: Vec::new(),
            v: Vec::new(),
            conv: Vec::new(),
            ssm: Vec::new(),
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
        // (Pure Mamba-2 attends nowhere: no scores, a row of 1 for the bound.)
        let row = (w.hp.heads.max(1) * capacity * 4) as u64;
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
            let row = (w.hp.heads.max(1) * capacity * 4) as u64;
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
        let swa_angles = hp.swa_angles();
        let mut tables = [Vec::with_capacity(n * half * 2), Vec::new()];
        let mut starts = Vec::with_capacity(parts.len());
        for (_, past, tokens) in parts.iter() {
            starts.push(x.len() / d);
            let at = x.len();
            x.resize(at + tokens.len() * d, 0.0);
            w.embed(tokens, *past, &mut x[at..]);
            for t in 0..tokens.len() {
                for (swa, table) in [false, swa_angles].into_iter().zip(&mut tables) {
                    hp.rope_angles(w.rope_freqs.as_deref(), past + t, swa, table);
                }
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
        let mut reuse = sessions[0]
            .0
            .reuse
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // The pass's programs so far.
        let mut programs = 0;
        let mut p = gpu.program()?;
        p.write(&a.x, x);
        let [table, table_swa] = tables;
        p.write(&a.table, table);
        if let Some(b) = &a.table_swa {
            p.write(b, table_swa);
        }
        let eps = hp.norm_eps;
        let norm = NormKind {
            eps,
            layer: hp.layer_norm,
        };
        let qkv = Qkv {
            heads: hp.heads,
            kv_heads: hp.kv_heads,
            head_dim: hp.head_dim,
        };
        let scale = hp.residual_scale;
        let decoding = sessions.iter().all(|&(_, _, tokens, _)| tokens == 1);
        for (l, (layer, dl)) in w.layers.iter().zip(&dw.layers).enumerate() {
            // The previous layer's last residual add and this layer's
            // first norm are one dispatch.
            // (OLMo 2's and EXAONE 4's blocks read the stream itself.)
            let input = |norm: &Option<GpuMatrix>| if norm.is_some() { &a.h } else { &a.x };
            // (A Mamba layer's output, where it scans.)
            let mut scanned = None;
            if let (0, Some(weight)) = (l, &dl.attn_norm) {
                p.norm(&a.x, 0, n, (weight, norm), &a.h, 0);
            }
            match &dl.latent {
                Some(lat) => {
                    let work = a.latent.as_ref().expect("reserved");
                    let weights = (layer, lat, &dl.qkv);
                    latent::assemble(&mut p, (input(&dl.attn_norm), n), weights, hp, work, &a.qkv)?;
                }
                None => p.product(input(&dl.attn_norm), n, &dl.qkv, &a.qkv),
            }
            // (LFM2's convolution layers: `qkv` is `in_proj`, b, c and x.)
            if let (Some(conv), Some(c)) = (&dl.conv, &hp.short_conv) {
                for &(on, _, tokens, start) in &sessions {
                    let state = on.conv[l].as_ref().expect("reserved");
                    p.short_conv(&a.qkv, (conv, c.taps, state), &a.att, (tokens, start));
                }
            } else if let (Some(ds), Some(m)) = (&dl.scan, &hp.ssm) {
                // (Mamba's: `qkv` is `ssm_in`.)
                scanned = Some(scan::layer(
                    &mut p,
                    (l, layer, ds),
                    (m, eps),
                    &sessions,
                    (a, n),
                )?);
            } else {
                if let Some(bias) = &dl.bqkv {
                    p.add_bias(&a.qkv, bias, n * qkv.stride());
                }
                if hp.clamp_kqv > 0.0 {
                    p.clamp(&a.qkv, n * qkv.stride(), hp.clamp_kqv);
                }
                let qk_norms = |p: &mut Program<'_>| {
                    for (norm, keys) in [(&dl.q_norm, false), (&dl.k_norm, true)] {
                        if let Some(norm) = norm {
                            let whole = hp.qk_norms_whole;
                            p.head_norm(&a.qkv, n, (qkv, keys, whole), norm, eps);
                        }
                    }
                };
                if !hp.qk_norms_after_rope {
                    qk_norms(&mut p);
                }
                let table = match &a.table_swa {
                    Some(swa) if hp.is_swa(l) => swa,
                    _ => &a.table,
                };
                if hp.ropes(l) {
                    p.rope(&a.qkv, n, qkv, (half, hp.rope_neox), table);
                }
                if hp.qk_norms_after_rope {
                    qk_norms(&mut p);
                }
                for &(on, past, tokens, start) in &sessions {
                    let (kc, vc) = (&on.k[l], &on.v[l]);
                    let shape = Attention {
                        tokens,
                        heads: hp.heads,
                        kv_heads: hp.kv_heads,
                        head_dim: hp.head_dim,
                        past,
                        stride: on.capacity,
                        scale: hp.attn_scale,
                        row0: start,
                        q_stride: qkv.stride(),
                        softcap: hp.attn_softcap,
                        window: hp.window_of(l),
                        temperature: hp.attn_temp,
                    };
                    let scores = &on.scores.as_ref().expect("reserved").0;
                    let sinks = dl.sinks.as_ref();
                    p.attention(&a.qkv, (kc, vc, sinks), scores, &a.att, shape);
                }
            }
            let attended = match (scanned, &a.latent) {
                (Some(out), _) => out,
                (_, Some(work)) if dl.latent.is_some() => {
                    latent::cut(&mut p, (&a.att, n), hp, work)
                }
                _ => &a.att,
            };
            p.product(attended, n, on_gpu(&layer.wo)?, &a.o);
            if let Some(bias) = &dl.bo {
                p.add_bias(&a.o, bias, n * d);
            }
            // (A layer without a feed-forward, Nemotron-H's: the mixer's
            // output is the block's, added below.)
            let out = match &dl.ffn {
                None => post_norm(&mut p, (&a.o, n), &dl.post_attn_norm, eps, &a.post),
                Some(ffn) => {
                    let ffn_input = if hp.parallel {
                        // The feed-forward reads the block's input: its own norm
                        // of it (GPT-NeoX's), else the attention's, still in `h`
                        // (Phi-2's); both outputs are added.
                        if let Some(weight) = &dl.ffn_norm {
                            p.norm(&a.x, 0, n, (weight, norm), &a.h, 0);
                        }
                        p.add(&a.x, &a.o, n * d, scale);
                        &a.h
                    } else {
                        let out = post_norm(&mut p, (&a.o, n), &dl.post_attn_norm, eps, &a.post);
                        add_norm(&mut p, (&a.x, out, scale), (n, d), &dl.ffn_norm, norm, &a.h);
                        input(&dl.ffn_norm)
                    };
                    match ffn {
                        DeviceFfn::Dense(gate_up) => {
                            let f = hp.dense_ffn;
                            p.product(ffn_input, n, gate_up, &a.gu);
                            // (Only an up product alone has a bias: the row is it.)
                            if let Some([up, _]) = &dl.ffn_biases {
                                p.add_bias(&a.gu, up, n * f);
                            }
                            p.swiglu(&a.gu, (n, f, hp.act_of(l), hp.gated), &a.g);
                            p.product(&a.g, n, on_gpu(&layer.dense().down)?, &a.o);
                            if let Some([_, down]) = &dl.ffn_biases {
                                p.add_bias(&a.o, down, n * d);
                            }
                        }
                        DeviceFfn::Mixture(m) => {
                            let ffn = (layer, m, hp);
                            let reuse = segment(&mut reuse, programs);
                            p = mixture((p, reuse), gpu, ffn, (ffn_input, n), a)?;
                            programs += 1;
                        }
                    }
                    post_norm(&mut p, (&a.o, n), &dl.post_ffn_norm, eps, &a.post)
                }
            };
            match dw.layers.get(l + 1) {
                Some(next) => {
                    add_norm(
                        &mut p,
                        (&a.x, out, scale),
                        (n, d),
                        &next.attn_norm,
                        norm,
                        &a.h,
                    );
                }
                // Each session's last row, normalised, goes through the
                // output head: all rows at once when each session has
                // one (decoding).
                None if decoding => {
                    p.add_norm((&a.x, out, scale), n, (&dw.output_norm, norm), &a.h);
                }
                None => {
                    p.add(&a.x, out, n * d, scale);
                    for (s, &(_, _, tokens, start)) in sessions.iter().enumerate() {
                        let last = start + tokens - 1;
                        p.norm(&a.x, last, 1, (&dw.output_norm, norm), &a.h, s);
                    }
                }
            }
        }
        let head = w.output.as_ref().unwrap_or(&w.tok_embd);
        p.product(&a.h, sessions.len(), on_gpu(head)?, &a.logits);
        if let Some(bias) = &dw.output_bias {
            p.add_bias(&a.logits, bias, sessions.len() * hp.vocab);
        }
        let reuse = segment(&mut reuse, programs);
        let mut logits = p.run_reusing(reuse, &a.logits, sessions.len() * hp.vocab)?;
        if hp.logit_scale != 1.0 {
            logits.iter_mut().for_each(|l| *l *= hp.logit_scale);
        }
        super::rows::soft_cap(&mut logits, hp.final_softcap);
        Ok(logits.chunks_exact(hp.vocab).map(<[f32]>::to_vec).collect())
    }
}

/// The bind groups of program `i` of a pass.
fn segment(reuse: &mut Vec<Reuse>, i: usize) -> &mut Reuse {
    if reuse.len() <= i {
        reuse.resize_with(i + 1, Reuse::default);
    }
    &mut reuse[i]
}

/// `x += scale · y`, then `out = norm(x)` by `weight` in the same
/// dispatch, where the block's next input is normalised; else the add
/// alone (OLMo 2 and EXAONE 4, whose blocks read `x`).
fn add_norm(
    p: &mut crate::gpu::Program<'_>,
    (x, y, scale): (&Buffer, &Buffer, f32),
    (rows, d): (usize, usize),
    weight: &Option<GpuMatrix>,
    kind: NormKind,
    out: &Buffer,
) {
    match weight {
        Some(weight) => p.add_norm((x, y, scale), rows, (weight, kind), out),
        None => p.add(x, y, rows * d, scale),
    }
}

/// A block's output `y` (`rows` rows), normalised into `into` by `norm`
/// where the model has one (Gemma 2 and 3), else as it is: what the
/// residual add reads.
fn post_norm<'b>(
    p: &mut crate::gpu::Program<'_>,
    (y, rows): (&'b Buffer, usize),
    norm: &Option<GpuMatrix>,
    eps: f32,
    into: &'b Option<Buffer>,
) -> &'b Buffer {
    match (norm, into) {
        (Some(norm), Some(into)) => {
            // (Gemma's, OLMo 2's, EXAONE 4's and GLM-4's: RMSNorms.)
            let kind = NormKind { eps, layer: false };
            p.norm(y, 0, rows, (norm, kind), into, 0);
            into
        }
        _ => y,
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
