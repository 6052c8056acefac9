//! The decoder's kernels (`ops.wgsl`) as [`Program`] steps: RMSNorm,
//! rotary embeddings, cache stores, residual adds, SwiGLU and attention.

use super::{Buffer, Program, groups, whole};
use crate::gpu::GpuMatrix;
use crate::{NnError, NnErrorKind};

/// Floats of a head `attention` keeps in workgroup memory.
pub(crate) const MAX_HEAD_DIM: usize = 256;

impl Program<'_> {
    /// `out[out_row0 + r] = rms_norm(x[row0 + r]) * weight` for `rows`
    /// rows of `weight.cols()` each (`weight`: one row, in one panel).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rms_norm(
        &mut self,
        x: &Buffer,
        row0: usize,
        rows: usize,
        weight: &GpuMatrix,
        eps: f32,
        out: &Buffer,
        out_row0: usize,
    ) {
        let d = weight.cols();
        let (w, _, _) = weight.panels().next().expect("a vector is one panel");
        self.step(
            &self.ops.rms_norm,
            vec![whole(x), (w.clone(), 0, w.size()), whole(out)],
            [
                d as u32,
                eps.to_bits(),
                row0 as u32,
                out_row0 as u32,
                0,
                0,
                0,
                0,
            ],
            [rows as u32, 1],
        );
    }

    /// Rotates the first `2 * half` floats of each head of `head_dim` in
    /// each of `tokens` rows of `q` (`heads` heads a row) and of `k`
    /// (`kv_heads`), token `t` by the angles `table[t * half ..][.. half]`
    /// (cos, sin pairs): adjacent pairs, or pairs `half` apart when `neox`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rope(
        &mut self,
        (q, k): (&Buffer, &Buffer),
        tokens: usize,
        (heads, kv_heads): (usize, usize),
        head_dim: usize,
        half: usize,
        neox: bool,
        table: &Buffer,
    ) {
        let q_count = tokens * heads * half;
        let count = q_count + tokens * kv_heads * half;
        self.step(
            &self.ops.rope,
            vec![whole(q), whole(k), whole(table)],
            [
                count,
                heads,
                head_dim,
                half,
                neox.into(),
                kv_heads,
                q_count,
                0,
            ]
            .map(|x| x as u32),
            groups(count),
        );
    }

    /// `kc[offset + i] = f16(k[start + i])`, and the same of `v` into
    /// `vc`, for `i < count`: new keys and values into a cache.
    pub(crate) fn store(
        &mut self,
        (k, v, start): (&Buffer, &Buffer, usize),
        count: usize,
        (kc, vc): (&Buffer, &Buffer),
        offset: usize,
    ) {
        self.step(
            &self.ops.store,
            vec![whole(k), whole(v), whole(kc), whole(vc)],
            [count, offset, start, 0, 0, 0, 0, 0].map(|x| x as u32),
            groups(count),
        );
    }

    /// `x[i] += scale · y[i]` for `i < count`.
    pub(crate) fn add(&mut self, x: &Buffer, y: &Buffer, count: usize, scale: f32) {
        self.step(
            &self.ops.add,
            vec![whole(x), whole(y)],
            [count as u32, count as u32, scale.to_bits(), 0, 0, 0, 0, 0],
            groups(count),
        );
    }

    /// `x[i] += bias[i % bias.cols()]` for `i < count`: the bias added to
    /// each row of `x`.
    pub(crate) fn add_bias(&mut self, x: &Buffer, bias: &GpuMatrix, count: usize) {
        let (b, _, _) = bias.panels().next().expect("a vector is one panel");
        self.step(
            &self.ops.add,
            vec![whole(x), (b.clone(), 0, b.size())],
            [count, bias.cols(), 1f32.to_bits() as usize, 0, 0, 0, 0, 0].map(|x| x as u32),
            groups(count),
        );
    }

    /// `g[i] = silu(g[i]) * u[i]` for `i < count`.
    pub(crate) fn swiglu(&mut self, g: &Buffer, u: &Buffer, count: usize) {
        self.step(
            &self.ops.swiglu,
            vec![whole(g), whole(u)],
            [count as u32, 0, 0, 0, 0, 0, 0, 0],
            groups(count),
        );
    }

    /// Causal attention of `tokens` new queries (rows `row0 ..` of `q`,
    /// `heads x head_dim`, into the same rows of `out`) over the caches `k` and `v` (`kv_heads x head_dim` per
    /// position, the new ones already stored after `past` old ones), into
    /// `out`. `scores` holds `tokens x heads x stride` floats, `stride` at
    /// least `past + tokens`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention(
        &mut self,
        q: &Buffer,
        k: &Buffer,
        v: &Buffer,
        scores: &Buffer,
        out: &Buffer,
        shape: Attention,
    ) {
        let Attention {
            tokens,
            heads,
            kv_heads,
            head_dim,
            past,
            stride,
            scale,
            row0,
        } = shape;
        self.step(
            &self.ops.attention,
            vec![whole(q), whole(k), whole(v), whole(scores), whole(out)],
            [
                heads as u32,
                kv_heads as u32,
                head_dim as u32,
                past as u32,
                stride as u32,
                scale.to_bits(),
                row0 as u32,
                0,
            ],
            [heads as u32, tokens as u32],
        );
    }
}

/// The shape of [`Program::attention`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attention {
    pub tokens: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub past: usize,
    pub stride: usize,
    /// Multiplies the scores (`1/√head_dim` for most models).
    pub scale: f32,
    /// The first row of `q` (and of `out`) these tokens' queries are in.
    pub row0: usize,
}

impl Attention {
    /// Whether the kernel can run heads this wide.
    pub(crate) fn check(head_dim: usize) -> Result<(), NnError> {
        if head_dim > MAX_HEAD_DIM {
            return Err(NnError::new(
                NnErrorKind::UnsupportedOperation,
                format!("heads of {head_dim} floats (the GPU kernel takes up to {MAX_HEAD_DIM})"),
            ));
        }
        Ok(())
    }
}
