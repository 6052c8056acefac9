//! Mamba's layers on the device (a [`Mamba2`]): Mamba-2's (Granite 4.0-H,
//! Nemotron-H, `mamba2`) and Mamba-1's (`mamba`: Mamba-1, Falcon-Mamba; a
//! [`Selective`](crate::gpu::Selective) one), as the CPU's `rows::mamba2`
//! and `session::selective` compute them.

use super::super::hparams::HParams;
use super::super::{Layer, Scan};
use super::{OnDevice, Work, on_gpu};
use crate::NnError;
use crate::gpu::{Buffer, Gpu, GpuMatrix, Mamba2, Program};

/// [`Scan`] on the device.
#[derive(Debug)]
pub(super) struct DeviceScan {
    conv: GpuMatrix,
    conv_bias: GpuMatrix,
    /// Each head's `dt` bias, then `A`, then `D` (Mamba-1's: each
    /// channel's, `A` a channel's states side by side).
    per_head: GpuMatrix,
    /// Mamba-2's gated output's norm.
    norm: Option<GpuMatrix>,
    /// Falcon-Mamba's weightless norms of `dt` and of `B` and `C`: ones.
    ones: Option<[GpuMatrix; 2]>,
}

impl DeviceScan {
    pub(super) fn upload(gpu: &Gpu, hp: &HParams, s: &Scan) -> Result<Self, NnError> {
        let vector = |v: &[f32]| gpu.upload(v, 1, v.len());
        Ok(Self {
            conv: vector(&s.conv)?,
            conv_bias: vector(&s.conv_bias)?,
            per_head: vector(&[&s.dt_bias[..], &s.a, &s.d].concat())?,
            norm: (!s.norm.is_empty()).then(|| vector(&s.norm)).transpose()?,
            ones: match hp.selective() {
                Some((m, sel)) if sel.norms => Some([
                    vector(&vec![1.0; sel.dt_rank])?,
                    vector(&vec![1.0; m.state])?,
                ]),
                _ => None,
            },
        })
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &GpuMatrix> {
        [&self.conv, &self.conv_bias, &self.per_head]
            .into_iter()
            .chain(&self.norm)
            .chain(self.ones.iter().flatten())
    }
}

/// A pass's buffers for Mamba-1's layers, `n` rows of each: `ssm_x`'s
/// product, its `dt` part gathered, and `ssm_dt`'s product of that.
#[derive(Debug)]
pub(super) struct SelectiveWork {
    bc: Buffer,
    dt_low: Buffer,
    dt: Buffer,
}

impl SelectiveWork {
    /// The buffers of `n` rows, for a model with Mamba-1's layers.
    pub(super) fn new(gpu: &Gpu, hp: &HParams, n: usize) -> Result<Option<Self>, NnError> {
        let Some((m, s)) = hp.selective() else {
            return Ok(None);
        };
        let b = |floats: usize| gpu.buffer(floats, "weft-nn Mamba-1 activations");
        Ok(Some(Self {
            bc: b(n * (s.dt_rank + 2 * m.state))?,
            dt_low: b(n * s.dt_rank)?,
            dt: b(n * m.inner)?,
        }))
    }
}

/// Layer `l`'s Mamba mixer of a pass's `n` rows, each session's over its
/// own convolution and states, from `a.qkv` (its `ssm_in` rows); the
/// buffer its output (`inner` a row) is in, which `ssm_out` reads.
pub(super) fn layer<'w>(
    p: &mut Program<'_>,
    (l, layer, ds): (usize, &Layer, &DeviceScan),
    (m, eps): (&Mamba2, f32),
    sessions: &[(&OnDevice, usize, usize, usize)],
    (a, n): (&'w Work, usize),
) -> Result<&'w Buffer, NnError> {
    let xbc = a.xbc.as_ref().expect("reserved");
    let Some(sel) = m.selective else {
        // Mamba-2's: `ssm_in` gives z, xBC and dt; the scan's output,
        // normalised, in `xbc`.
        for &(on, _, tokens, start) in sessions {
            let conv = on.conv[l].as_ref().expect("reserved");
            let states = on.ssm[l].as_ref().expect("reserved");
            let rows = (tokens, start);
            p.ssm_conv(&a.qkv, (&ds.conv, &ds.conv_bias, m, conv), xbc, rows);
            p.ssm_scan((&a.qkv, xbc), (&ds.per_head, m, states), &a.att, rows);
        }
        let norm = ds.norm.as_ref().expect("Mamba-2's norm");
        p.group_norm(&a.att, n, (norm, m.groups, eps), xbc);
        return Ok(xbc);
    };
    // Mamba-1's: `ssm_in` gives x and z; x's convolution in `xbc`, the
    // scan's output in `att`.
    let work = a.selective.as_ref().expect("reserved");
    let (rank, xz) = (sel.dt_rank, &a.qkv);
    let stride = rank + 2 * m.state;
    for &(on, _, tokens, start) in sessions {
        let conv = on.conv[l].as_ref().expect("reserved");
        p.ssm_conv(xz, (&ds.conv, &ds.conv_bias, m, conv), xbc, (tokens, start));
    }
    let x_proj = layer.ssm.as_ref().and_then(|s| s.x_proj.as_ref());
    p.product(xbc, n, on_gpu(x_proj.expect("Mamba-1's ssm_x"))?, &work.bc);
    // (Falcon-Mamba's: `dt`, `B` and `C` each RMS-normed, without weights.)
    if let Some([ones_rank, ones_state]) = &ds.ones {
        p.norm_part(&work.bc, n, (0, stride), ones_rank, eps);
        p.norm_part(&work.bc, n, (rank, stride), ones_state, eps);
        p.norm_part(&work.bc, n, (rank + m.state, stride), ones_state, eps);
    }
    p.copy_rows(
        (&work.bc, 0, stride, 0),
        (&work.dt_low, 0, rank, 0),
        (n, 1, rank),
    );
    p.product(&work.dt_low, n, on_gpu(&layer.wv)?, &work.dt);
    for &(on, _, tokens, start) in sessions {
        let states = on.ssm[l].as_ref().expect("reserved");
        let rows = [xbc, &work.dt, &work.bc, xz];
        p.selective_scan(rows, (&ds.per_head, m, states), &a.att, (tokens, start));
    }
    Ok(&a.att)
}
