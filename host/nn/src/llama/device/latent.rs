//! DeepSeek-V2's latent attention on the GPU ([`Mla`]), as the CPU runs
//! it (`session::latent`): each token's heads' queries, keys and values
//! built from its latents into the fused Q/K/V rows ([`Qkv`]) that the
//! rotation and the attention read, a head's rotated part first and its
//! value padded to a key's width; then the attention's output cut back to
//! the values' width for the output product.

use super::super::Layer;
use super::super::hparams::{HParams, Mla};
use super::on_gpu;
use crate::NnError;
use crate::gpu::{Buffer, Gpu, GpuMatrix, Program, Qkv};

/// A latent attention layer's norms on the device: its queries' latent's
/// (none where one product gives the queries), and its keys' and values'.
#[derive(Debug)]
pub(super) struct DeviceLatent {
    q_norm: Option<GpuMatrix>,
    kv_norm: GpuMatrix,
}

impl DeviceLatent {
    /// `l`'s, where it has latent attention.
    pub(super) fn upload(gpu: &Gpu, l: &Layer) -> Result<Option<Self>, NnError> {
        let Some(m) = &l.mla else {
            return Ok(None);
        };
        let vector = |v: &[f32]| gpu.upload(v, 1, v.len());
        Ok(Some(Self {
            q_norm: m.q_b.as_ref().map(|(norm, _)| vector(norm)).transpose()?,
            kv_norm: vector(&m.kv_norm)?,
        }))
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &GpuMatrix> {
        self.q_norm.iter().chain([&self.kv_norm])
    }
}

/// A pass's buffers for latent attention: the first product's rows (the
/// queries, or their latent, then the keys' and values' latent and the
/// rotated key part); a latent copied out of them for its product (the
/// keys' and values', then the queries'); the heads' keys and values, and
/// queries where a latent gives them; the output cut to the values' width.
#[derive(Debug)]
pub(super) struct LatentWork {
    lat: Buffer,
    latent: Buffer,
    kv_b: Buffer,
    q: Option<Buffer>,
    out: Buffer,
}

impl LatentWork {
    /// For passes of up to `n` rows, where `hp` has latent attention.
    pub(super) fn new(gpu: &Gpu, hp: &HParams, n: usize) -> Result<Option<Self>, NnError> {
        let Some(a) = &hp.mla else {
            return Ok(None);
        };
        let b = |floats: usize| gpu.buffer(floats, "weft-nn latent attention");
        let h = hp.heads;
        Ok(Some(Self {
            lat: b(n * (q_width(hp, a) + a.kv_rank + a.rope))?,
            latent: b(n * a.kv_rank.max(a.q_rank))?,
            kv_b: b(n * a.kv_b_rows(h))?,
            q: match a.q_rank {
                0 => None,
                _ => Some(b(n * h * a.key())?),
            },
            out: b(n * hp.o_dim())?,
        }))
    }
}

/// The first product's queries' width: all heads' queries, or their
/// latent's.
fn q_width(hp: &HParams, a: &Mla) -> usize {
    match a.q_rank {
        0 => hp.heads * a.key(),
        r => r,
    }
}

/// Records `layer`'s queries, keys and values from the `n` rows of
/// `input` (its norm's output) into the fused rows of `qkv`, as the
/// rotation and the attention read them. `first` is `layer`'s `wq` and
/// `wk` side by side.
pub(super) fn assemble(
    p: &mut Program<'_>,
    (input, n): (&Buffer, usize),
    (layer, dl, first): (&Layer, &DeviceLatent, &GpuMatrix),
    hp: &HParams,
    work: &LatentWork,
    qkv: &Buffer,
) -> Result<(), NnError> {
    let a = hp.mla.as_ref().expect("a latent attention layer");
    let (h, kd, r, eps) = (hp.heads, a.key(), a.kv_rank, hp.norm_eps);
    let qw = q_width(hp, a);
    let w = qw + r + a.rope;
    p.product(input, n, first, &work.lat);
    // The keys' unrotated parts and the values, from the normed latent.
    p.norm_part(&work.lat, n, (qw, w), &dl.kv_norm, eps);
    p.copy_rows((&work.lat, qw, w, 0), (&work.latent, 0, r, 0), (n, 1, r));
    p.product(&work.latent, n, on_gpu(&layer.wv)?, &work.kv_b);
    // The queries, through their normed latent where the file has one.
    let q_b = layer.mla.as_ref().and_then(|m| m.q_b.as_ref());
    let (queries, q_t) = match (&dl.q_norm, q_b, &work.q) {
        (Some(norm), Some((_, q_b)), Some(q)) => {
            let qr = a.q_rank;
            p.norm_part(&work.lat, n, (0, w), norm, eps);
            p.copy_rows((&work.lat, 0, w, 0), (&work.latent, 0, qr, 0), (n, 1, qr));
            p.product(&work.latent, n, on_gpu(q_b)?, q);
            (q, h * kd)
        }
        _ => (&work.lat, w),
    };
    let shape = Qkv {
        heads: h,
        kv_heads: h,
        head_dim: kd,
    };
    let (s, qd, per) = (shape.stride(), shape.q_dim(), a.nope + a.value);
    let heads = |width| (n, h, width);
    // A head's query and key `[pe, nope]`; its value padded (what the
    // padding holds reaches only the output's columns that are cut).
    p.copy_rows((queries, a.nope, q_t, kd), (qkv, 0, s, kd), heads(a.rope));
    p.copy_rows((queries, 0, q_t, kd), (qkv, a.rope, s, kd), heads(a.nope));
    p.copy_rows((&work.lat, qw + r, w, 0), (qkv, qd, s, kd), heads(a.rope));
    let kv_b = (&work.kv_b, h * per, per);
    p.copy_rows(
        (kv_b.0, 0, kv_b.1, kv_b.2),
        (qkv, qd + a.rope, s, kd),
        heads(a.nope),
    );
    p.copy_rows(
        (kv_b.0, a.nope, kv_b.1, kv_b.2),
        (qkv, 2 * qd, s, kd),
        heads(a.value),
    );
    Ok(())
}

/// The attention's `n` rows `att` (`q_dim` each) cut to the values'
/// width, into the buffer the output product reads.
pub(super) fn cut<'b>(
    p: &mut Program<'_>,
    (att, n): (&Buffer, usize),
    hp: &HParams,
    work: &'b LatentWork,
) -> &'b Buffer {
    let a = hp.mla.as_ref().expect("a latent attention layer");
    let (h, kd, v) = (hp.heads, a.key(), a.value);
    p.copy_rows((att, 0, h * kd, kd), (&work.out, 0, h * v, v), (n, h, v));
    &work.out
}
