//! Mamba-1's layers on the CPU (`mamba`: Mamba-1, Falcon-Mamba; a
//! [`Mamba2`] with [`Selective`](super::super::hparams::Selective)): `x` convolved, then `dt`, `B` and `C`
//! from the convolution's product by `ssm_x`, `dt` brought up to a value
//! per channel by `ssm_dt`, and each channel's state scanned, as
//! llama.cpp's `build_mamba_layer` computes them.

use super::super::Weights;
use super::super::hparams::Mamba2;
use super::super::rows::conv_row;
use super::Decoder;
use crate::team::Workers;

/// Layer `l` of every session's new rows, from its `ssm_in` products `x`
/// and `z`, into `out` (`inner` a row); each session's convolution and
/// states go on from where they were.
pub(super) fn selective_layer(
    ds: &mut [&mut Decoder],
    (tokens, starts): (&[&[u32]], &[usize]),
    (w, l): (&Weights, usize),
    [x, z]: [&[f32]; 2],
    workers: Workers<'_>,
    out: &mut [f32],
) {
    let layer = &w.layers[l];
    let (scan, m) = (
        layer.ssm.as_ref().expect("a layer that scans"),
        w.hp.ssm.as_ref().expect("a model that scans"),
    );
    let sel = m.selective.expect("Mamba-1's");
    let (inner, n, rank) = (m.inner, m.state, sel.dt_rank);
    let rows = x.len() / inner;
    // The convolution of each session's rows, over its own state: biased,
    // through SiLU.
    let mut xc = vec![0f32; rows * inner];
    for ((dec, &start), toks) in ds.iter_mut().zip(starts).zip(tokens) {
        for t in start..start + toks.len() {
            let out = &mut xc[t * inner..][..inner];
            conv_row(
                &mut dec.conv[l],
                &scan.conv,
                m.taps,
                &x[t * inner..][..inner],
                out,
            );
            for (c, b) in out.iter_mut().zip(&scan.conv_bias) {
                *c += b;
                *c /= 1.0 + (-*c).exp();
            }
        }
    }
    // `dt`, `B` and `C` of every row at once (normed, in Falcon-Mamba's);
    // then each channel's `dt`.
    let x_proj = scan.x_proj.as_ref().expect("Mamba-1's ssm_x");
    let mut dbc = x_proj.matmul(&xc, rows, workers);
    if sel.norms {
        norm_parts(&mut dbc, [rank, n, n], w.hp.norm_eps);
    }
    let width = rank + 2 * n;
    let dt_low: Vec<f32> = dbc
        .chunks_exact(width)
        .flat_map(|r| &r[..rank])
        .copied()
        .collect();
    let dt = layer.wv.matmul(&dt_low, rows, workers);
    for ((dec, &start), toks) in ds.iter_mut().zip(starts).zip(tokens) {
        let states = &mut dec.ssm[l];
        for t in start..start + toks.len() {
            let (b, c) = dbc[t * width + rank..][..2 * n].split_at(n);
            let row = [&xc, &dt, z].map(|v| &v[t * inner..][..inner]);
            scan_row(
                states,
                (scan, m),
                row,
                [b, c],
                &mut out[t * inner..][..inner],
            );
        }
    }
}

/// Each row of `rows` (the widths of `parts` side by side) RMS-normed in
/// place a part at a time, without weights (ggml's `rms_norm`; summed as
/// `session::rms_norm` sums).
fn norm_parts(rows: &mut [f32], parts: [usize; 3], eps: f32) {
    let width = parts.iter().sum();
    for row in rows.chunks_exact_mut(width) {
        let mut at = 0;
        for len in parts {
            let part = &mut row[at..at + len];
            let ss: f64 = part.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let scale = 1.0 / ((ss / len as f64) as f32 + eps).sqrt();
            part.iter_mut().for_each(|v| *v *= scale);
            at += len;
        }
    }
}

/// One token of a Mamba-1 layer: per channel `i`, `dt' = softplus(dt_i +
/// bias_i)`, each state float `s_ij = s_ij · exp(dt' A_ij) + B_j x_i dt'`,
/// and `out_i = (Σ_j s_ij C_j + D_i x_i) · silu(z_i)`, as ggml's
/// `ssm_scan` and llama.cpp's gate compute them.
fn scan_row(
    states: &mut [f32],
    (s, m): (&super::super::Scan, &Mamba2),
    [x, dt, z]: [&[f32]; 3],
    [b, c]: [&[f32]; 2],
    out: &mut [f32],
) {
    let n = m.state;
    for (i, y) in out.iter_mut().enumerate() {
        let dt = dt[i] + s.dt_bias[i];
        // (ggml's softplus, linear past 20.)
        let dt = if dt <= 20.0 { dt.exp().ln_1p() } else { dt };
        let x_dt = x[i] * dt;
        let (state, a) = (&mut states[i * n..][..n], &s.a[i * n..][..n]);
        let mut sum = 0f32;
        for (((s, a), b), c) in state.iter_mut().zip(a).zip(b).zip(c) {
            *s = *s * (dt * a).exp() + b * x_dt;
            sum += *s * c;
        }
        let z = z[i];
        *y = (sum + x[i] * s.d[i]) * z / (1.0 + (-z).exp());
    }
}
