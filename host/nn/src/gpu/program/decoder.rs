//! The decoder's kernels (`ops.wgsl`) as [`Program`] steps: RMSNorm or
//! LayerNorm (alone, per head, or after a residual add), rotary
//! embeddings, residual adds, SwiGLU and attention (which stores the new keys and values). A pass's
//! Q, K and V come from one fused product, a row per token laid out as
//! [`Qkv`] says, and its gate and up from another: the kernels read them
//! in place.

use super::{Buffer, Program, groups, whole};
use crate::gpu::GpuMatrix;
use crate::{NnError, NnErrorKind};

/// A feed-forward's activation, as [`Program::swiglu`] applies it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum FfnAct {
    /// `silu(gate) · up`: Llama's SwiGLU.
    Silu,
    /// `gelu(gate) · up`, GELU's tanh form: Gemma's GEGLU; without a gate
    /// `gelu(up)`: StarCoder 2's, Phi-2's, GPT-2's, GPT-NeoX's.
    Gelu,
    /// `relu(up)²`, without a gate: Arcee's.
    ReluSquared,
    /// gpt-oss's experts' clamped SwiGLU, `g · σ(1.702 g) · (u + 1)` with
    /// `g` the gate capped at 7 and `u` the up product within ±7
    /// (llama.cpp's `swiglu_oai`).
    SwigluOai,
    /// Apertus's xIELU of the up product alone (per layer: llama.cpp's
    /// `ggml_xielu`).
    Xielu(Xielu),
}

/// Mamba-2's selective state spaces (llama.cpp's `build_mamba2_layer`),
/// in the layers `layers` marks (their `attention.head_count_kv` is 0).
///
/// A token's `ssm_in` product gives `z` (`inner` wide), `xBC` (`inner`
/// then `B` and `C`, `groups · state` each) and `dt` (a value per head).
/// `xBC` is convolved causally per channel over the last `taps` tokens,
/// biased and put through SiLU. Each head (`inner / heads` channels of
/// `x`) keeps a state of `head_dim × state`, decayed by `exp(softplus(dt
/// + dt_bias) · A)` and fed `B ⊗ x · softplus(…)` every token; its output
/// is the state times `C`, plus `D · x`, gated by `silu(z)`, normalised
/// per group of channels (RMS) and put through `ssm_out`. Heads share
/// their group's `B` and `C` (`heads / groups` heads a group, in order).
///
/// Mamba-1's ([`Selective`]) are the same scan, but each channel its own
/// head, one group, and no norm: a token's `ssm_in` gives `x` and `z`
/// alone; `x` alone is convolved, and its convolution's product by `ssm_x`
/// gives `dt` (`dt_rank` wide), `B` and `C`; `dt`'s product by `ssm_dt`
/// gives each channel its own; and `A` is a decay per channel and state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mamba2 {
    /// `ssm.conv_kernel`: the convolution's taps.
    pub taps: usize,
    /// `ssm.inner_size`: the channels of `x` and `z`.
    pub inner: usize,
    /// `ssm.state_size`: a channel's state, and `B`'s and `C`'s width.
    pub state: usize,
    /// `ssm.time_step_rank`: the heads (one `dt` and `A` each; Mamba-1's:
    /// `inner`, its `time_step_rank` being [`Selective::dt_rank`]).
    pub heads: usize,
    /// `ssm.group_count`: the groups of heads sharing `B` and `C`, and of
    /// channels normalised together.
    pub groups: usize,
    /// Per layer (of weft-nn's: a Nemotron-H layer's mixer block's): whether
    /// it scans (its `attention.head_count_kv` is 0).
    pub layers: Vec<bool>,
    /// Mamba-1's (`mamba`: Mamba-1, Falcon-Mamba): `None` for Mamba-2's.
    pub selective: Option<Selective>,
}

/// What Mamba-1's layers ([`Mamba2`], each channel a head) have beside.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Selective {
    /// `ssm.time_step_rank`: `dt`'s width before `ssm_dt`.
    pub dt_rank: usize,
    /// `ssm.dt_b_c_rms` (Falcon-Mamba's): `dt`, `B` and `C` are each
    /// RMS-normed (without weights) before they are used.
    pub norms: bool,
}

impl Mamba2 {
    /// The channels convolved: `x`, then `B` and `C` (Mamba-1's: `x`).
    pub fn conv_dim(&self) -> usize {
        match self.selective {
            Some(_) => self.inner,
            None => self.inner + 2 * self.groups * self.state,
        }
    }

    /// The channels of `x` a head reads.
    pub fn head_dim(&self) -> usize {
        self.inner / self.heads
    }

    /// The rows of `ssm_in`: `z`, `xBC` and `dt` (Mamba-1's: `x`, `z`).
    pub fn in_dim(&self) -> usize {
        match self.selective {
            Some(_) => 2 * self.inner,
            None => self.inner + self.conv_dim() + self.heads,
        }
    }
}

/// xIELU's constants as ggml's op takes them (the file's `alpha_n` and
/// `alpha_p` through softplus, `alpha_n` plus `beta`): `x > 0` gives
/// `alpha_p x² + beta x`, else `(expm1(min(x, eps)) − x) alpha_n + beta x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Xielu {
    pub alpha_n: f32,
    pub alpha_p: f32,
    pub beta: f32,
    pub eps: f32,
}

impl Xielu {
    /// The activation of `x`.
    pub(crate) fn of(&self, x: f32) -> f32 {
        match x > 0.0 {
            true => self.alpha_p * x * x + self.beta * x,
            false => (x.min(self.eps).exp_m1() - x) * self.alpha_n + self.beta * x,
        }
    }
}

/// How a norm step normalises: RMSNorm by a weight, or (`layer`) LayerNorm
/// by a weight and a bias, which its matrix holds in one row (the weight
/// first); `eps` is added to the mean square (the variance).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NormKind {
    pub eps: f32,
    pub layer: bool,
}

impl NormKind {
    /// The width of the rows `weight` normalises, and the kernel's flag.
    fn width(&self, weight: &GpuMatrix) -> (usize, u32) {
        match self.layer {
            true => (weight.cols() / 2, 1),
            false => (weight.cols(), 0),
        }
    }
}

/// Floats of a head `attention` keeps in workgroup memory.
pub(crate) const MAX_HEAD_DIM: usize = 256;

/// A token's row of a fused Q/K/V product: `heads` query heads, then
/// `kv_heads` key heads, then as many value heads, `head_dim` floats each.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Qkv {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Qkv {
    /// Floats of a token's queries (where its keys start).
    pub(crate) fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Floats of a token's keys, or of its values.
    pub(crate) fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    /// Floats of a token's row.
    pub(crate) fn stride(&self) -> usize {
        self.q_dim() + 2 * self.kv_dim()
    }
}

/// The parameters of `rms_norm`, `head_norm` and `add_rms_norm`
/// (`NormParams`): `(d, layer)` as [`NormKind::width`] gives them.
fn norm_params(
    (d, layer): (usize, u32),
    eps: f32,
    (src, dst): (usize, usize),
    (per, stride): (usize, usize),
    scale: f32,
) -> [u32; 8] {
    [
        d as u32,
        eps.to_bits(),
        src as u32,
        dst as u32,
        per as u32,
        stride as u32,
        scale.to_bits(),
        layer,
    ]
}

/// A one-row matrix (a norm's weight, a bias) as the binding of its one
/// panel.
fn vector(m: &GpuMatrix) -> (wgpu::Buffer, u64, u64) {
    let (b, ..) = m.panels().next().expect("a vector is one panel");
    (b.clone(), 0, b.size())
}

impl Program<'_> {
    /// `out[out_row0 + r] = norm(x[row0 + r])` by `weight` for `rows`
    /// rows (`weight`: one row, in one panel; RMSNorm's weight, or
    /// LayerNorm's weight and bias, as `kind` says).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn norm(
        &mut self,
        x: &Buffer,
        row0: usize,
        rows: usize,
        (weight, kind): (&GpuMatrix, NormKind),
        out: &Buffer,
        out_row0: usize,
    ) {
        let width = kind.width(weight);
        let d = width.0;
        self.step(
            &self.ops.rms_norm,
            vec![whole(x), vector(weight), whole(out)],
            norm_params(width, kind.eps, (row0 * d, out_row0 * d), (1, d), 1.0),
            [rows as u32, 1],
        );
    }

    /// Normalises in place each query head (`keys` false) or each key
    /// head of `tokens` rows of a fused Q/K/V product `x` by `norm`
    /// (`head_dim` floats: Qwen3's per-head norms); with `all`, a token's
    /// queries (keys) as one (OLMo 2's norms, as wide as all its heads).
    pub(crate) fn head_norm(
        &mut self,
        x: &Buffer,
        tokens: usize,
        (qkv, keys, all): (Qkv, bool, bool),
        norm: &GpuMatrix,
        eps: f32,
    ) {
        let (col, heads) = match keys {
            false => (0, qkv.heads),
            true => (qkv.q_dim(), qkv.kv_heads),
        };
        let (d, heads) = match all {
            true => (heads * qkv.head_dim, 1),
            false => (qkv.head_dim, heads),
        };
        self.step(
            &self.ops.head_norm,
            vec![whole(x), vector(norm)],
            norm_params((d, 0), eps, (col, 0), (heads, qkv.stride()), 1.0),
            [(tokens * heads) as u32, 1],
        );
    }

    /// `x[r] += scale · y[r]`, then `out[r] = norm(x[r])` by `weight`
    /// (as [`Program::norm`]'s), for `rows` rows: a residual add and the
    /// norm that reads its sum, in one dispatch.
    pub(crate) fn add_norm(
        &mut self,
        (x, y, scale): (&Buffer, &Buffer, f32),
        rows: usize,
        (weight, kind): (&GpuMatrix, NormKind),
        out: &Buffer,
    ) {
        let width = kind.width(weight);
        self.step(
            &self.ops.add_rms_norm,
            vec![whole(x), whole(y), vector(weight), whole(out)],
            norm_params(width, kind.eps, (0, 0), (1, width.0), scale),
            [rows as u32, 1],
        );
    }

    /// Rotates the first `2 * half` floats of each query and key head of
    /// `tokens` rows of a fused Q/K/V product `x`, token `t` by the angles
    /// `table[t * half ..][.. half]` (cos, sin pairs): adjacent pairs, or
    /// pairs `half` apart when `neox`.
    pub(crate) fn rope(
        &mut self,
        x: &Buffer,
        tokens: usize,
        qkv: Qkv,
        (half, neox): (usize, bool),
        table: &Buffer,
    ) {
        let q_count = tokens * qkv.heads * half;
        let count = q_count + tokens * qkv.kv_heads * half;
        self.step(
            &self.ops.rope,
            vec![whole(x), whole(table)],
            [
                count,
                qkv.heads,
                qkv.head_dim,
                half,
                neox.into(),
                qkv.kv_heads,
                q_count,
                qkv.stride(),
            ]
            .map(|x| x as u32),
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
        self.add_bias_at((x, 0), bias, count);
    }

    /// `x[start + i] += bias[i % bias.cols()]` for `i < count`: the bias
    /// added to each row of `x` from float `start` on (rows a binding
    /// could not start at).
    pub(crate) fn add_bias_at(
        &mut self,
        (x, start): (&Buffer, usize),
        bias: &GpuMatrix,
        count: usize,
    ) {
        self.step(
            &self.ops.add,
            vec![whole(x), vector(bias)],
            [
                count,
                bias.cols(),
                1f32.to_bits() as usize,
                start,
                0,
                0,
                0,
                0,
            ]
            .map(|x| x as u32),
            groups(count),
        );
    }

    /// `x[i] = clamp(x[i], −bound, bound)` for `i < count` (OLMo 1's Q, K
    /// and V).
    pub(crate) fn clamp(&mut self, x: &Buffer, count: usize, bound: f32) {
        self.step(
            &self.ops.clamp,
            vec![whole(x)],
            [count as u32, bound.to_bits(), 0, 0, 0, 0, 0, 0],
            groups(count),
        );
    }

    /// LFM2's gated short convolution of a session's `tokens` rows, rows
    /// `row0 ..` of a fused `in_proj` product `bcx` (`b`, `c` and `x`, `d`
    /// floats each, a row of `3 d`), into the same rows of `out` (`d`
    /// each): `c ⊙ conv(b ⊙ x)`, each channel convolved with its `taps`
    /// weights (`weights`, `[d][taps]`) over `state` (the session's last
    /// `taps − 1` rows of `b ⊙ x`, oldest first), which the rows join.
    pub(crate) fn short_conv(
        &mut self,
        bcx: &Buffer,
        (weights, taps, state): (&GpuMatrix, usize, &Buffer),
        out: &Buffer,
        (tokens, row0): (usize, usize),
    ) {
        let d = weights.cols() / taps;
        debug_assert_eq!(state.floats(), (taps - 1) * d);
        // (No bias: the weights bound in its place.)
        let bindings = vec![whole(bcx), vector(weights), whole(state), whole(out)];
        self.step(
            &self.ops.short_conv,
            [bindings, vec![vector(weights)]].concat(),
            [d, taps, tokens, row0, 3 * d, 0, 0, 0].map(|x| x as u32),
            groups(d),
        );
    }

    /// Mamba's convolution of a session's `tokens` rows, rows `row0 ..`
    /// of its `ssm_in` product `zxdt` (rows of `m.in_dim()`: Mamba-2's
    /// `z`, `xBC`, `dt`, `xBC` read; Mamba-1's `x`, `z`, `x` read), into
    /// the same rows of `out` (`m.conv_dim()` each):
    /// `silu(conv(xBC) + bias)`, each channel convolved with its `taps`
    /// weights (`weights`, `[conv_dim][taps]`) over `state` (the
    /// session's last `taps − 1` rows of `xBC`, oldest first), which the
    /// rows join.
    pub(crate) fn ssm_conv(
        &mut self,
        zxdt: &Buffer,
        (weights, bias, m, state): (&GpuMatrix, &GpuMatrix, &Mamba2, &Buffer),
        out: &Buffer,
        (tokens, row0): (usize, usize),
    ) {
        let d = m.conv_dim();
        debug_assert_eq!(state.floats(), (m.taps - 1) * d);
        // (Mamba-1's `x` is first in its rows.)
        let col = if m.selective.is_some() { 0 } else { m.inner };
        let stride = m.in_dim();
        self.step(
            &self.ops.short_conv,
            vec![
                whole(zxdt),
                vector(weights),
                whole(state),
                whole(out),
                vector(bias),
            ],
            [d, m.taps, tokens, row0, stride, 1, col, 0].map(|x| x as u32),
            groups(d),
        );
    }

    /// Mamba-2's selective scan of a session's `tokens` rows, rows `row0
    /// ..` of its `ssm_in` product `zxdt` and of their convolution `xbc`
    /// ([`Program::ssm_conv`]), into the same rows of `out` (`m.inner`
    /// each): each channel's state (`states`, `[state][inner]`) decayed
    /// and fed, read through `C`, plus `D x`, gated by `silu(z)`.
    /// `per_head` holds each head's `dt` bias, then `A`, then `D`.
    pub(crate) fn ssm_scan(
        &mut self,
        (zxdt, xbc): (&Buffer, &Buffer),
        (per_head, m, states): (&GpuMatrix, &Mamba2, &Buffer),
        out: &Buffer,
        (tokens, row0): (usize, usize),
    ) {
        debug_assert_eq!(states.floats(), m.inner * m.state);
        let stride = m.in_dim();
        self.step(
            &self.ops.ssm_scan,
            vec![
                whole(zxdt),
                whole(xbc),
                vector(per_head),
                whole(states),
                whole(out),
            ],
            [m.inner, m.state, m.heads, m.groups, tokens, row0, stride, 0].map(|x| x as u32),
            groups(m.inner),
        );
    }

    /// Mamba-1's selective scan of a session's `tokens` rows, rows `row0
    /// ..` of `x` (the convolution's, `m.inner` each), `dt` (each
    /// channel's, before its bias), `bc` (`ssm_x`'s rows, `B` and `C` from
    /// float `dt_rank`) and `xz` (`ssm_in`'s, `z` after `x`), into the same
    /// rows of `out` (`m.inner` each): each channel's state (`states`,
    /// `[state][inner]`) decayed and fed, read through `C`, plus `D x`,
    /// gated by `silu(z)`. `weights` holds each channel's `dt` bias, then
    /// `A` (`[inner][state]`), then `D`.
    pub(crate) fn selective_scan(
        &mut self,
        [x, dt, bc, xz]: [&Buffer; 4],
        (weights, m, states): (&GpuMatrix, &Mamba2, &Buffer),
        out: &Buffer,
        (tokens, row0): (usize, usize),
    ) {
        debug_assert_eq!(states.floats(), m.inner * m.state);
        let rank = m.selective.map_or(0, |s| s.dt_rank);
        let bc_stride = rank + 2 * m.state;
        self.step(
            &self.ops.selective_scan,
            vec![
                whole(x),
                whole(dt),
                whole(bc),
                whole(xz),
                vector(weights),
                whole(states),
                whole(out),
            ],
            [
                m.inner,
                m.state,
                tokens,
                row0,
                bc_stride,
                rank,
                m.in_dim(),
                0,
            ]
            .map(|x| x as u32),
            groups(m.inner),
        );
    }

    /// Normalises in place (RMSNorm) `d` floats of each of `rows` rows of
    /// `x`, from float `col` of a row `stride` floats long, by `weight`
    /// (`d` floats): DeepSeek-V2's latents, beside other parts in their
    /// rows.
    pub(crate) fn norm_part(
        &mut self,
        x: &Buffer,
        rows: usize,
        (col, stride): (usize, usize),
        weight: &GpuMatrix,
        eps: f32,
    ) {
        let d = weight.cols();
        self.step(
            &self.ops.head_norm,
            vec![whole(x), vector(weight)],
            norm_params((d, 0), eps, (col, 0), (1, stride), 1.0),
            [rows as u32, 1],
        );
    }

    /// `dst[dst0 + t·dst_t + h·dst_h + i] = src[src0 + t·src_t + h·src_h +
    /// i]` for `i < width`, `h < heads`, `t < tokens`: parts of rows
    /// gathered (`src_h` 0: one part for every head).
    pub(crate) fn copy_rows(
        &mut self,
        (src, src0, src_t, src_h): (&Buffer, usize, usize, usize),
        (dst, dst0, dst_t, dst_h): (&Buffer, usize, usize, usize),
        (tokens, heads, width): (usize, usize, usize),
    ) {
        let count = tokens * heads * width;
        let mut params = [0u32; 16];
        params[..9].copy_from_slice(
            &[count, width, heads, src0, src_t, src_h, dst0, dst_t, dst_h].map(|x| x as u32),
        );
        self.step_wide(
            &self.ops.copy_rows,
            vec![whole(src), whole(dst)],
            params,
            groups(count),
        );
    }

    /// `out[r] = rms_norm(x[r])` for `rows` rows of `weight.cols()`
    /// floats, a group of `weight.cols() / groups` at a time, each group
    /// by its part of `weight` (Mamba-2's grouped norm).
    pub(crate) fn group_norm(
        &mut self,
        x: &Buffer,
        rows: usize,
        (weight, groups, eps): (&GpuMatrix, usize, f32),
        out: &Buffer,
    ) {
        let d = weight.cols() / groups;
        self.step(
            &self.ops.rms_norm,
            vec![whole(x), vector(weight), whole(out)],
            norm_params((d, 0), eps, (0, 0), (groups, d), 1.0),
            [(rows * groups) as u32, 1],
        );
    }

    /// `out[t][i] = silu(gu[t][i]) * gu[t][ffn + i]` for `tokens` rows
    /// of a fused gate/up product `gu` (`2 * ffn` floats each); with
    /// [`FfnAct::Gelu`], GELU (tanh form, as llama.cpp's) for SiLU, with
    /// [`FfnAct::ReluSquared`] `relu(x)²`, with [`FfnAct::SwigluOai`]
    /// gpt-oss's clamped SwiGLU. Not `gated`, `act(gu[t][i])`
    /// of rows of an up product alone (`ffn` floats each).
    pub(crate) fn swiglu(
        &mut self,
        gu: &Buffer,
        (tokens, ffn, act, gated): (usize, usize, FfnAct, bool),
        out: &Buffer,
    ) {
        let count = tokens * ffn;
        let (act, [an, ap, beta, eps]) = match act {
            FfnAct::Silu => (0, [0.0; 4]),
            FfnAct::Gelu => (1, [0.0; 4]),
            FfnAct::ReluSquared => (2, [0.0; 4]),
            FfnAct::SwigluOai => (3, [0.0; 4]),
            FfnAct::Xielu(x) => (4, [x.alpha_n, x.alpha_p, x.beta, x.eps]),
        };
        self.step(
            &self.ops.swiglu,
            vec![whole(gu), whole(out)],
            [
                count as u32,
                ffn as u32,
                act,
                gated.into(),
                an.to_bits(),
                ap.to_bits(),
                beta.to_bits(),
                eps.to_bits(),
            ],
            groups(count),
        );
    }

    /// Causal attention of a session's `tokens` new tokens, whose rows
    /// of a fused Q/K/V product are rows `row0 ..` of `qkv` (`q_stride`
    /// floats each), over the caches `k` and `v` (`kv_heads x head_dim`
    /// per position, `past` old ones) and themselves, into the same rows
    /// of `out` (`heads x head_dim` each). Their keys and values go into
    /// the caches after the old ones. `scores` holds `tokens x heads x
    /// stride` floats, `stride` at least `past + tokens`. `sinks` (a row
    /// of a logit per head: gpt-oss's) joins each head's softmax's
    /// denominator.
    pub(crate) fn attention(
        &mut self,
        qkv: &Buffer,
        (k, v, sinks): (&Buffer, &Buffer, Option<&GpuMatrix>),
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
            q_stride,
            softcap,
            window,
            temperature,
        } = shape;
        let (temp_scale, temp_every) = temperature.unwrap_or((0.0, 1));
        let mut params = [0; 16];
        params[..12].copy_from_slice(&[
            heads as u32,
            kv_heads as u32,
            head_dim as u32,
            past as u32,
            stride as u32,
            scale.to_bits(),
            row0 as u32,
            q_stride as u32,
            softcap.to_bits(),
            // (A window past u32 is past any context: none.)
            window.map_or(0, |w| u32::try_from(w).unwrap_or(0)),
            temp_scale.to_bits(),
            // (A step past u32 is past any context: always the first.)
            u32::try_from(temp_every).unwrap_or(u32::MAX),
        ]);
        params[12] = sinks.is_some().into();
        // (Without sinks the binding is the queries again, never read.)
        let sinks = sinks.map_or_else(|| whole(qkv), vector);
        self.step_wide(
            &self.ops.attention,
            vec![
                whole(qkv),
                whole(k),
                whole(v),
                whole(scores),
                whole(out),
                sinks,
            ],
            params,
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
    /// The first row of `qkv` (and of `out`) of these tokens.
    pub row0: usize,
    /// Floats from one row of `qkv` to the next ([`Qkv::stride`]).
    pub q_stride: usize,
    /// Gemma 2's soft cap of the scores (after `scale`); 0 for none.
    pub softcap: f32,
    /// A sliding-window layer's window: a query sees the last `window`
    /// positions (itself included).
    pub window: Option<usize>,
    /// Mistral 3's attention temperature, `(scale, every)`
    /// (the decoder's `HParams::attn_temp`): the query at `pos` is
    /// multiplied by `1 + scale · ln(1 + ⌊pos / every⌋)` before rounding.
    pub temperature: Option<(f32, usize)>,
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
