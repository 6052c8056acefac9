//! The CPU path's row operations between a decoder's weight products:
//! norms, activations, biases, residual adds, rotary embeddings and soft
//! caps, each as llama.cpp's CPU backend computes it.

use super::Scan;
use super::hparams::Mamba2;
use crate::quant::round_f16;
use crate::simd::{self, wide_fn};

wide_fn! {
    /// `g = silu(g) · u`, with a vectorised `e^x` (as llama.cpp's SIMD
    /// SiLU): a pass of a dozen sessions has hundreds of thousands.
    pub(super) fn swiglu(g: &mut [f32], u: &[f32]) {
        g.iter_mut()
            .zip(u)
            .for_each(|(g, u)| *g = *g / (1.0 + simd::exp(-*g)) * u);
    }
}

/// `g = min(g, 7) · σ(1.702 · min(g, 7)) · (clamp(u, ±7) + 1)`: gpt-oss's
/// experts' activation, as llama.cpp's `swiglu_oai`.
pub(super) fn swiglu_oai(g: &mut [f32], u: &[f32]) {
    const ALPHA: f32 = 1.702;
    const LIMIT: f32 = 7.0;
    g.iter_mut().zip(u).for_each(|(g, u)| {
        let x = g.min(LIMIT);
        let y = u.clamp(-LIMIT, LIMIT);
        *g = x / (1.0 + (-ALPHA * x).exp()) * (y + 1.0);
    });
}

/// `u = relu(u)²` (Arcee's feed-forward, as llama.cpp's `relu` then `sqr`).
pub(super) fn relu_squared(u: &mut [f32]) {
    u.iter_mut().for_each(|u| *u = u.max(0.0) * u.max(0.0));
}

/// `g = gelu(g) · u` (Gemma's GEGLU feed-forward).
pub(super) fn geglu(g: &mut [f32], u: &[f32]) {
    g.iter_mut().zip(u).for_each(|(g, u)| *g = gelu(*g) * u);
}

/// `u = gelu(u)` (StarCoder 2's feed-forward, without a gate).
pub(super) fn gelu_in_place(u: &mut [f32]) {
    u.iter_mut().for_each(|u| *u = gelu(*u));
}

/// GELU's tanh form as llama.cpp's CPU `gelu` computes it (in GEGLU too):
/// from its table, of `x` rounded to f16 and rounded to f16 itself; 0
/// below -10, `x` above 10.
fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let x = round_f16(x);
        round_f16(0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x)).tanh()))
    }
}

/// `x = cap · tanh(x / cap)` (Gemma 2's soft cap), unless `cap` is 0.
pub(super) fn soft_cap(x: &mut [f32], cap: f32) {
    if cap > 0.0 {
        x.iter_mut().for_each(|x| *x = cap * (*x / cap).tanh());
    }
}

/// The norm of the rows of `x` into `out` by `norm`: RMSNorm by its
/// weight, or with `layer` LayerNorm by its weight and bias (`norm` holds
/// both, the weight first).
pub(super) fn norm(x: &[f32], norm: &[f32], (eps, layer): (f32, bool), out: &mut [f32]) {
    match layer {
        true => {
            let (weight, bias) = norm.split_at(norm.len() / 2);
            layer_norm(x, weight, bias, eps, out);
        }
        false => rms_norm(x, norm, eps, out),
    }
}

/// `out = (x - mean(x)) / √(var(x) + eps) * weight + bias`, row by row
/// (sums in f64, as ggml's `norm`).
fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = (xr.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64) as f32;
        let ss: f64 = xr.iter().map(|&v| f64::from(v - mean).powi(2)).sum();
        let scale = 1.0 / ((ss / d as f64) as f32 + eps).sqrt();
        for (((o, &v), &g), &b) in or.iter_mut().zip(xr).zip(weight).zip(bias) {
            *o = (v - mean) * scale * g + b;
        }
    }
}

/// `out = x / rms(x) * weight`, row by row (sums in f64 as ggml does).
pub(super) fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ss: f64 = xr.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let scale = 1.0 / ((ss / d as f64) as f32 + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(weight) {
            *o = v * scale * g;
        }
    }
}

/// `y += bias` on each row of `y`, when there is a bias.
pub(super) fn add_bias(y: &mut [f32], bias: Option<&[f32]>) {
    if let Some(bias) = bias {
        for row in y.chunks_exact_mut(bias.len()) {
            row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
        }
    }
}

/// `x += scale · out`: a block's output added to the residual stream
/// (scaled first where the model says, as ggml does).
pub(super) fn residual(x: &mut [f32], out: &[f32], scale: f32) {
    if scale == 1.0 {
        x.iter_mut().zip(out).for_each(|(x, o)| *x += o);
    } else {
        x.iter_mut().zip(out).for_each(|(x, o)| *x += o * scale);
    }
}

/// Rotary embedding of each head of one row, by the `(cos, sin)` pairs of
/// `table` ([`super::HParams::rope_angles`]): on adjacent pairs (ggml's
/// "normal" mode, which GGUF Llama weights are permuted for) or, `neox`,
/// on pairs half the rotated width apart.
pub(super) fn rope(x: &mut [f32], head_dim: usize, neox: bool, table: &[f32]) {
    let half = table.len() / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for (i, cs) in table.chunks_exact(2).enumerate() {
            let (cos, sin) = (cs[0], cs[1]);
            let (i, j) = if neox {
                (i, i + half)
            } else {
                (2 * i, 2 * i + 1)
            };
            let (a, b) = (head[i], head[j]);
            head[i] = a * cos - b * sin;
            head[j] = a * sin + b * cos;
        }
    }
}

/// LFM2's gated short convolution of one session's new rows: `b`, `c`
/// and `x` its `in_proj` products (rows of `d`, `d = w.len() / taps`),
/// into `out`: `out = c ⊙ conv(b ⊙ x)`, each channel convolved causally
/// ([`conv_row`]) over `state` (the last `taps − 1` rows of `b ⊙ x`).
pub(super) fn short_conv(
    state: &mut [f32],
    w: &[f32],
    taps: usize,
    bcx: [&[f32]; 3],
    out: &mut [f32],
) {
    let d = w.len() / taps;
    let [b, c, x] = bcx;
    let mut bx = vec![0f32; d];
    for (t, o) in out.chunks_exact_mut(d).enumerate() {
        let row = t * d..(t + 1) * d;
        bx.iter_mut()
            .zip(&b[row.clone()])
            .zip(&x[row.clone()])
            .for_each(|((bx, b), x)| *bx = b * x);
        conv_row(state, w, taps, &bx, o);
        o.iter_mut().zip(&c[row]).for_each(|(o, c)| *o *= c);
    }
}

/// One row through a causal convolution, each channel of `input` with its
/// own `taps` weights (`w`, a channel's side by side, the oldest input's
/// first) over `state` (the last `taps − 1` rows, oldest first) and
/// itself, into `out`; `input` becomes the state's newest row. Summed
/// oldest first, as ggml's `ssm_conv`.
pub(super) fn conv_row(state: &mut [f32], w: &[f32], taps: usize, input: &[f32], out: &mut [f32]) {
    let d = input.len();
    debug_assert_eq!(state.len(), (taps - 1) * d);
    for (ch, o) in out.iter_mut().enumerate() {
        let w = &w[ch * taps..][..taps];
        let mut sum = 0f32;
        for k in 0..taps - 1 {
            sum += state[k * d + ch] * w[k];
        }
        sum += input[ch] * w[taps - 1];
        for k in 0..taps - 2 {
            state[k * d + ch] = state[(k + 1) * d + ch];
        }
        state[(taps - 2) * d + ch] = input[ch];
        *o = sum;
    }
}

/// A Mamba-2 layer ([`Mamba2`]) of one session's new rows: `z`, `xbc` and
/// `dt` its `ssm_in` products, into `out` (`inner` a row), over and
/// updating the session's convolution `conv` (the last `taps − 1` rows of
/// `xBC`) and `states` (per head, `head_dim × state`), as llama.cpp's
/// `ssm_conv` and `ssm_scan` compute them (`eps`: the RMSNorm's).
pub(super) fn mamba2(
    (conv, states): (&mut [f32], &mut [f32]),
    (s, m, eps): (&Scan, &Mamba2, f32),
    [z, xbc, dt]: [&[f32]; 3],
    out: &mut [f32],
) {
    let (cd, inner, n, hd) = (m.conv_dim(), m.inner, m.state, m.head_dim());
    let per_group = m.heads / m.groups;
    // (The convolution's row and the gated row, reused token after token.)
    let (mut c, mut gated) = (vec![0f32; cd], vec![0f32; inner]);
    for (t, y) in out.chunks_exact_mut(inner).enumerate() {
        conv_row(conv, &s.conv, m.taps, &xbc[t * cd..][..cd], &mut c);
        for (c, b) in c.iter_mut().zip(&s.conv_bias) {
            *c += b;
            *c /= 1.0 + (-*c).exp();
        }
        let (x, bc) = c.split_at(inner);
        let (bs, cs) = bc.split_at(m.groups * n);
        for (h, y) in y.chunks_exact_mut(hd).enumerate() {
            let dt = dt[t * m.heads + h] + s.dt_bias[h];
            // (ggml's softplus, linear past 20.)
            let dt = if dt <= 20.0 { dt.exp().ln_1p() } else { dt };
            let decay = (dt * s.a[h]).exp();
            let g = h / per_group;
            let (b, c) = (&bs[g * n..][..n], &cs[g * n..][..n]);
            for (i, y) in y.iter_mut().enumerate() {
                let x = x[h * hd + i];
                let x_dt = x * dt;
                let state = &mut states[(h * hd + i) * n..][..n];
                let mut sum = 0f32;
                for ((s, b), c) in state.iter_mut().zip(b).zip(c) {
                    *s = *s * decay + b * x_dt;
                    sum += *s * c;
                }
                *y = sum + x * s.d[h];
            }
        }
        // Gated by silu(z), then normalised a group of channels at a time.
        let z = &z[t * inner..][..inner];
        y.iter_mut()
            .zip(z)
            .for_each(|(y, z)| *y *= z / (1.0 + (-z).exp()));
        gated.copy_from_slice(y);
        let width = inner / m.groups;
        for ((y, g), w) in (y.chunks_exact_mut(width))
            .zip(gated.chunks_exact(width))
            .zip(s.norm.chunks_exact(width))
        {
            rms_norm(g, w, eps, y);
        }
    }
}
