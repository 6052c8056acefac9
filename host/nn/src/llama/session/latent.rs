//! DeepSeek-V2's (and MiniCPM3's) multi-head latent attention on the CPU
//! ([`Mla`](super::super::hparams::Mla)): each row's heads' queries, keys
//! and values built from its latents, then attended as any layer's.

use super::super::Weights;
use super::super::hparams::Mla;
use super::{Decoder, attend_layer, rms_norm};
use crate::team::Workers;

/// Latent attention in layer `l` of every session's new rows, from `q0`
/// (the queries' product, or their latent's) and `kv_a` (the keys' and
/// values' latent, then the rotated key part every head shares), into
/// `out` (`o_dim` a row); `[q, k, v]` are its buffers.
///
/// A head's query and key are laid out `[pe, nope]` (the file's `[nope,
/// pe]` turned round: the same scores), so [`attend_layer`] rotates their
/// first `rope` floats as it does any head's; its value is padded with
/// zeros to the key's width for the cache, and the attention's output cut
/// back to the values' width, as the output product reads it.
#[allow(clippy::too_many_arguments)]
pub(super) fn latent_layer(
    ds: &mut [&mut Decoder],
    rows: (&[&[u32]], &[usize]),
    (w, l): (&Weights, usize),
    [q0, kv_a]: [&[f32]; 2],
    [q, k, v]: [&mut Vec<f32>; 3],
    angles: &[f32],
    workers: Workers<'_>,
    out: &mut [f32],
) {
    let (hp, layer) = (&w.hp, &w.layers[l]);
    let a = hp.mla.as_ref().expect("a latent attention layer");
    let latent = layer.mla.as_ref().expect("a latent attention layer");
    let n: usize = rows.0.iter().map(|t| t.len()).sum();
    let (heads, kd, eps) = (hp.heads, a.key(), hp.norm_eps);
    // The queries, through their normed latent where the file has one.
    let queries: Vec<f32> = match &latent.q_b {
        Some((norm, q_b)) => {
            let mut normed = vec![0f32; q0.len()];
            rms_norm(q0, norm, eps, &mut normed);
            q_b.matmul(&normed, n, workers)
        }
        None => q0.to_vec(),
    };
    // The keys' unrotated parts and the values, from the normed latent.
    let r = a.kv_rank;
    let mut c = vec![0f32; n * r];
    for (kv, c) in kv_a.chunks_exact(r + a.rope).zip(c.chunks_exact_mut(r)) {
        rms_norm(&kv[..r], &latent.kv_norm, eps, c);
    }
    let kv_b = layer.wv.matmul(&c, n, workers);
    for y in [&mut *q, &mut *k, &mut *v] {
        y.clear();
        y.resize(n * heads * kd, 0.0);
    }
    let per = a.nope + a.value;
    let (qh, kh, vh) = (
        q.chunks_exact_mut(kd),
        k.chunks_exact_mut(kd),
        v.chunks_exact_mut(kd),
    );
    for (i, ((qh, kh), vh)) in qh.zip(kh).zip(vh).enumerate() {
        let (t, h) = (i / heads, i % heads);
        let (qs, kvs) = (
            &queries[i * kd..][..kd],
            &kv_b[t * heads * per + h * per..][..per],
        );
        let pe = &kv_a[t * (r + a.rope) + r..][..a.rope];
        turn(qs, a, qh);
        kh[..a.rope].copy_from_slice(pe);
        kh[a.rope..].copy_from_slice(&kvs[..a.nope]);
        vh[..a.value].copy_from_slice(&kvs[a.nope..]);
    }
    let full = &mut out[..n * heads * kd];
    attend_layer(ds, rows, (w, l), [q, k, v], angles, workers, full);
    // Each head's output cut to its values' width, in place (a head's
    // cut never reaches past where the next one's starts).
    for i in 0..n * heads {
        out.copy_within(i * kd..i * kd + a.value, i * a.value);
    }
}

/// A head's query from the file's `[nope, pe]` to `[pe, nope]`.
fn turn(q: &[f32], a: &Mla, out: &mut [f32]) {
    out[..a.rope].copy_from_slice(&q[a.nope..]);
    out[a.rope..].copy_from_slice(&q[..a.nope]);
}
