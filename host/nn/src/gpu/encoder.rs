//! Recording `encoder.wgsl`'s kernels in a [`Program`]: what an ONNX
//! transformer encoder runs between its weight products, so that a call
//! keeps its activations on the device (`onnx/device.rs`).

use super::program::{Buffer, Kernel, Program, whole};
use super::{Gpu, runtime};
use crate::{NnError, NnErrorKind};

mod kinds;
mod window;
pub(crate) use kinds::{BinaryOp, ReduceOp, UnaryOp};
pub(crate) use window::{WindowOp, WindowShape};

/// Storage buffers the attention kernel binds.
const STORAGE_BUFFERS: u32 = 6;

/// The compiled `encoder.wgsl` kernels.
pub(super) struct Kernels {
    binary: Kernel,
    unary: Kernel,
    layer_norm: Kernel,
    softmax: Kernel,
    gelu: Kernel,
    attention: Kernel,
    strided: Kernel,
    pad_edges: Kernel,
    reduce_rows: Kernel,
    resample: Kernel,
    window: Kernel,
    batch_norm: Kernel,
    pick: Kernel,
    gather: Kernel,
}

impl Gpu {
    /// Whether the `encoder.wgsl` kernels compile (once); an error where
    /// the device cannot run them (its ONNX calls then make a round trip
    /// per product, as they did before these kernels).
    pub(crate) fn encoder_kernels_compile(&self) -> Result<(), NnError> {
        self.encoder_kernels().map(drop)
    }

    fn encoder_kernels(&self) -> Result<&Kernels, NnError> {
        self.encoder
            .get_or_init(|| {
                let has = self.device.limits().max_storage_buffers_per_shader_stage;
                if has < STORAGE_BUFFERS {
                    return Err(NnError::new(
                        NnErrorKind::UnsupportedOperation,
                        format!(
                            "GPU adapter {} allows {has} storage buffers per stage; the encoder kernels need {STORAGE_BUFFERS}",
                            self.adapter
                        ),
                    ));
                }
                let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
                let kernels = Kernels::compile(&self.device);
                match super::block_on(scope.pop()) {
                    Some(e) => Err(runtime(format!(
                        "compiling weft-nn's encoder kernels on {}: {e}",
                        self.adapter
                    ))),
                    None => Ok(kernels),
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl Kernels {
    fn compile(device: &wgpu::Device) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("weft-nn encoder ops"),
            source: wgpu::ShaderSource::Wgsl(
                concat!(include_str!("reduce.wgsl"), include_str!("encoder.wgsl")).into(),
            ),
        });
        let kernel = |name| Kernel::new(device, &module, name);
        Self {
            binary: kernel("binary"),
            unary: kernel("unary"),
            layer_norm: kernel("layer_norm"),
            softmax: kernel("softmax"),
            gelu: kernel("gelu"),
            attention: kernel("attention"),
            strided: kernel("strided"),
            pad_edges: kernel("pad_edges"),
            reduce_rows: kernel("reduce_rows"),
            resample: kernel("resample"),
            window: kernel("window"),
            batch_norm: kernel("batch_norm"),
            pick: kernel("pick"),
            gather: kernel("gather"),
        }
    }
}

/// `unary`'s op for `Clip` ([`Program::clip`]).
const UNARY_CLIP: u32 = 12;

/// The shape of [`Program::encoder_attention`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct EncoderAttention {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Divides the scores.
    pub scale: f32,
    /// The mask's strides over (batch, head, query, key); 0 broadcasts.
    pub mask_strides: [usize; 4],
}

/// One copy [`Program::strided`] records: for every multi-index `i` of
/// `dims`, `out[to.0 + Σ i[a]·to.1[a]] = x[from.0 + Σ i[a]·from.1[a]]`
/// (an offset and signed strides on each side).
#[derive(Clone, Copy, Debug)]
pub(crate) struct StridedCopy<'s> {
    pub dims: &'s [usize],
    pub from: (i64, &'s [i64]),
    pub to: (i64, &'s [i64]),
}

/// Workgroups along x for one workgroup per row: the rest go along y.
const ROW_SPREAD: usize = 32_768;

fn row_groups(rows: usize) -> [u32; 2] {
    let x = rows.clamp(1, ROW_SPREAD);
    [x as u32, rows.div_ceil(x).max(1) as u32]
}

impl<'a> Program<'a> {
    /// The encoder kernels, which [`Gpu::encoder_kernels`] compiled
    /// before anything recorded one (`onnx/device.rs` checks it first).
    fn encoder(&self) -> &'a Kernels {
        self.gpu()
            .encoder_kernels()
            .expect("the encoder kernels are compiled before they are recorded")
    }

    /// `out[i] = a[i] op b[i % period]` for `i < count`.
    pub(crate) fn binary(
        &mut self,
        op: BinaryOp,
        (a, b): (&Buffer, &Buffer),
        period: usize,
        count: usize,
        out: &Buffer,
    ) {
        self.step(
            &self.encoder().binary,
            vec![whole(a), whole(b), whole(out)],
            [count, period.max(1), op as usize, 0, 0, 0, 0, 0].map(|x| x as u32),
            super::program::groups(count),
        );
    }

    /// Writes a kernel's table `data` into `kept` (a buffer the caller
    /// keeps, sized for it) or, when there is none, a new buffer (`label`).
    ///
    /// # Errors
    ///
    /// `TooLarge` where the buffer cannot be made; `RuntimeError` for a
    /// kept buffer too small (a sizing bug).
    fn table<'t>(
        &mut self,
        kept: Option<&'t Buffer>,
        data: Vec<f32>,
        label: &str,
    ) -> Result<Table<'t>, NnError> {
        let buf = match kept {
            Some(t) if t.floats() >= data.len() => Table::Kept(t),
            Some(t) => {
                debug_assert!(false, "{label}: {} values for {}", data.len(), t.floats());
                return Err(runtime(format!(
                    "{label}: {} values for a table of {}",
                    data.len(),
                    t.floats()
                )));
            }
            None => Table::Made(self.gpu().buffer(data.len(), label)?),
        };
        self.write(&buf, data);
        Ok(buf)
    }

    /// Uploads `values` as i32s (in f32 bits, as the kernels bind them)
    /// with the submission, into `kept` when given (see [`Program::table`]):
    /// a kernel's layout or indices.
    ///
    /// # Errors
    ///
    /// `too_large()` for a value past i32; those of [`Program::table`].
    fn int_table<'t>(
        &mut self,
        kept: Option<&'t Buffer>,
        values: impl IntoIterator<Item = i64>,
        label: &str,
        too_large: impl Fn() -> NnError,
    ) -> Result<Table<'t>, NnError> {
        let bits: Vec<f32> = values
            .into_iter()
            .map(|v| i32::try_from(v).map(|v| f32::from_bits(v as u32)))
            .collect::<Result<_, _>>()
            .map_err(|_| too_large())?;
        self.table(kept, bits, label)
    }

    /// `out[i] = x[i]` clamped to `[lo, hi]` (NaN stays NaN) for `i <
    /// count`: ONNX `Clip`.
    pub(crate) fn clip(&mut self, x: &Buffer, count: usize, (lo, hi): (f32, f32), out: &Buffer) {
        self.step(
            &self.encoder().unary,
            vec![whole(x), whole(out)],
            [
                count as u32,
                UNARY_CLIP,
                lo.to_bits(),
                hi.to_bits(),
                0,
                0,
                0,
                0,
            ],
            super::program::groups(count),
        );
    }

    /// Inference batch normalisation of `count` floats of `x`, whose
    /// channels cycle every `inner` elements: `(x - mean) · scale /
    /// √(var + eps) + bias`, each of `stats` (scale, bias, mean, var) one
    /// value per channel.
    pub(crate) fn batch_norm(
        &mut self,
        x: &Buffer,
        [scale, bias, mean, var]: [&Buffer; 4],
        (count, inner, channels): (usize, usize, usize),
        eps: f32,
        out: &Buffer,
    ) {
        self.step(
            &self.encoder().batch_norm,
            vec![
                whole(x),
                whole(scale),
                whole(bias),
                whole(mean),
                whole(var),
                whole(out),
            ],
            [
                count as u32,
                inner.max(1) as u32,
                channels.max(1) as u32,
                eps.to_bits(),
                0,
                0,
                0,
                0,
            ],
            super::program::groups(count),
        );
    }

    /// `out[i] = if c[i] != 0 { x[i] } else { y[i] }` for `i < count`.
    pub(crate) fn pick(
        &mut self,
        (c, x, y): (&Buffer, &Buffer, &Buffer),
        count: usize,
        out: &Buffer,
    ) {
        self.step(
            &self.encoder().pick,
            vec![whole(c), whole(x), whole(y), whole(out)],
            [count as u32, 0, 0, 0, 0, 0, 0, 0],
            super::program::groups(count),
        );
    }

    /// ONNX `Gather` of `x` seen as `[outer, axis, inner]` by `indices`
    /// (each below `axis`), into `out` (`[outer, indices, inner]`).
    ///
    /// # Errors
    ///
    /// `TooLarge` past 2^31 elements or indices, or where the index buffer
    /// cannot be made.
    pub(crate) fn gather(
        &mut self,
        x: &Buffer,
        indices: &[usize],
        dims: (usize, usize, usize),
        out: &Buffer,
    ) -> Result<(), NnError> {
        self.gather_through(x, indices, dims, out, None)
    }

    /// [`Program::gather`] with its indices written into `table` (a
    /// buffer the caller keeps, of at least `indices.len()` values) rather
    /// than a new buffer.
    pub(crate) fn gather_through(
        &mut self,
        x: &Buffer,
        indices: &[usize],
        (outer, axis, inner): (usize, usize, usize),
        out: &Buffer,
        table: Option<&Buffer>,
    ) -> Result<(), NnError> {
        let count = outer * indices.len() * inner;
        let too_large = || super::too_large(format!("a gather of {count} elements on the GPU"));
        if [count, outer * axis * inner]
            .iter()
            .any(|&v| i32::try_from(v).is_err())
        {
            return Err(too_large());
        }
        let values = indices.iter().map(|&i| i as i64);
        let buf = self.int_table(table, values, "weft-nn gather indices", too_large)?;
        self.step(
            &self.encoder().gather,
            vec![whole(x), whole(&buf), whole(out)],
            [count, indices.len(), inner, axis, 0, 0, 0, 0].map(|v| v as u32),
            super::program::groups(count),
        );
        Ok(())
    }

    /// One axis of a `Resize` (see `resample` in `encoder.wgsl`): `x` is
    /// `[outer, len_in, inner]`, `out` `[outer, taps.len(), inner]`, and
    /// output position `j` the sum of its taps `(index, weight)` (an
    /// index of `usize::MAX`: the weight is the value).
    ///
    /// # Errors
    ///
    /// `TooLarge` past 2^31 elements, or where the table cannot be made.
    pub(crate) fn resample(
        &mut self,
        x: &Buffer,
        dims: (usize, usize, usize),
        taps: &[Vec<(usize, f64)>],
        out: &Buffer,
    ) -> Result<(), NnError> {
        self.resample_through(x, dims, taps, out, None)
    }

    /// [`Program::resample`] with its table written into `table` (a buffer
    /// the caller keeps, of at least twice as many values as taps the
    /// widest position has times positions) rather than a new buffer.
    pub(crate) fn resample_through(
        &mut self,
        x: &Buffer,
        (outer, len_in, inner): (usize, usize, usize),
        taps: &[Vec<(usize, f64)>],
        out: &Buffer,
        kept: Option<&Buffer>,
    ) -> Result<(), NnError> {
        let len_out = taps.len();
        let count = outer * len_out * inner;
        let width = taps.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let too_large = || super::too_large(format!("a resize to {count} elements on the GPU"));
        if [count, outer * len_in * inner, len_out * width * 2]
            .iter()
            .any(|&v| i32::try_from(v).is_err())
        {
            return Err(too_large());
        }
        // Indices (as i32 bits; -2 ends a position's taps: adding 0 times
        // an unused input would turn an infinite one into NaN), then
        // weights.
        let mut table = vec![0.0f32; 2 * len_out * width];
        table[..len_out * width].fill(f32::from_bits(-2i32 as u32));
        let (indices, weights) = table.split_at_mut(len_out * width);
        for (j, t) in taps.iter().enumerate() {
            for (k, &(i, w)) in t.iter().enumerate() {
                let i = if i == usize::MAX {
                    -1
                } else {
                    i32::try_from(i).map_err(|_| too_large())?
                };
                indices[j * width + k] = f32::from_bits(i as u32);
                weights[j * width + k] = w as f32;
            }
        }
        let buf = self.table(kept, table, "weft-nn resize taps")?;
        self.step(
            &self.encoder().resample,
            vec![whole(x), whole(&buf), whole(out)],
            [count, len_in, len_out, inner, width, 0, 0, 0].map(|v| v as u32),
            super::program::groups(count),
        );
        Ok(())
    }

    /// `out[i] = op(x[i])` for `i < count`.
    pub(crate) fn unary(
        &mut self,
        (op, [a, b]): (UnaryOp, [f32; 2]),
        x: &Buffer,
        count: usize,
        out: &Buffer,
    ) {
        self.step(
            &self.encoder().unary,
            vec![whole(x), whole(out)],
            [
                count as u32,
                op as u32,
                a.to_bits(),
                b.to_bits(),
                0,
                0,
                0,
                0,
            ],
            super::program::groups(count),
        );
    }

    /// Layer normalisation of `rows` rows of `d` floats of `x` with weight
    /// `w` and bias `b` (`d` floats each; none: 0), into `out`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn layer_norm(
        &mut self,
        x: &Buffer,
        (w, b): (&Buffer, Option<&Buffer>),
        rows: usize,
        d: usize,
        eps: f32,
        out: &Buffer,
    ) {
        self.norm_rows(x, (w, b), (rows, d), None, eps, out);
    }

    /// Normalisation of `rows` rows of `d` floats of `x` as
    /// [`Program::layer_norm`], but with one weight and bias per channel:
    /// `x` is `[n, groups, d]` and each row holds `d / inner` channels of
    /// `inner` floats, so row `r`'s element `i` is channel
    /// `(r % groups) · (d / inner) + i / inner` (`GroupNormalization`;
    /// `InstanceNormalization` is a group per channel).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn channel_norm(
        &mut self,
        x: &Buffer,
        (w, b): (&Buffer, &Buffer),
        (rows, d): (usize, usize),
        (groups, inner): (usize, usize),
        eps: f32,
        out: &Buffer,
    ) {
        self.norm_rows(x, (w, Some(b)), (rows, d), Some((groups, inner)), eps, out);
    }

    fn norm_rows(
        &mut self,
        x: &Buffer,
        (w, b): (&Buffer, Option<&Buffer>),
        (rows, d): (usize, usize),
        channels: Option<(usize, usize)>,
        eps: f32,
        out: &Buffer,
    ) {
        let (groups, inner) = channels.unwrap_or((0, 0));
        self.step(
            &self.encoder().layer_norm,
            vec![whole(x), whole(w), whole(b.unwrap_or(w)), whole(out)],
            [
                d,
                eps.to_bits() as usize,
                rows,
                b.is_some().into(),
                channels.is_some().into(),
                groups,
                inner,
                0,
            ]
            .map(|x| x as u32),
            row_groups(rows),
        );
    }

    /// `out[r]` = `op` over row `r` of `rows` rows of `d` floats of `x`.
    pub(crate) fn reduce_rows(
        &mut self,
        op: ReduceOp,
        x: &Buffer,
        (rows, d): (usize, usize),
        out: &Buffer,
    ) {
        self.step(
            &self.encoder().reduce_rows,
            vec![whole(x), whole(out)],
            [d, op as usize, rows, 0, 0, 0, 0, 0].map(|x| x as u32),
            row_groups(rows),
        );
    }

    /// Softmax (or, if `log`, log-softmax) over each of `rows` rows of `d`
    /// floats of `x`, into `out`.
    pub(crate) fn softmax(
        &mut self,
        x: &Buffer,
        (rows, d): (usize, usize),
        log: bool,
        out: &Buffer,
    ) {
        self.step(
            &self.encoder().softmax,
            vec![whole(x), whole(out)],
            [d, 0, rows, log.into(), 0, 0, 0, 0].map(|x| x as u32),
            row_groups(rows),
        );
    }

    /// `out[i] = (x[i] * (erf(x[i] / root2) + one)) * half` for `i <
    /// count`: exact GELU with the graph's constants.
    pub(crate) fn gelu(
        &mut self,
        x: &Buffer,
        count: usize,
        [root2, one, half]: [f32; 3],
        out: &Buffer,
    ) {
        self.step(
            &self.encoder().gelu,
            vec![whole(x), whole(out)],
            [
                count,
                root2.to_bits() as usize,
                one.to_bits() as usize,
                half.to_bits() as usize,
                0,
                0,
                0,
                0,
            ]
            .map(|x| x as u32),
            super::program::groups(count),
        );
    }

    /// Multi-head attention over `[B, S, H, D]` projections `q`, `k`, `v`
    /// with an additive `mask`, into `out` (`[B, S, H, D]`); `scores`
    /// holds `B·S·H·S` floats, `q` exactly `B·S·H·D`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encoder_attention(
        &mut self,
        (q, k, v): (&Buffer, &Buffer, &Buffer),
        mask: &Buffer,
        scores: &Buffer,
        out: &Buffer,
        shape: EncoderAttention,
    ) {
        let [mb, mh, mi, mj] = shape.mask_strides;
        // The key stride is 0 or 1: it shares its parameter with the batch.
        debug_assert!(mj <= 1);
        self.step(
            &self.encoder().attention,
            vec![
                whole(q),
                whole(k),
                whole(v),
                whole(mask),
                whole(scores),
                whole(out),
            ],
            [
                shape.seq,
                shape.heads,
                shape.head_dim,
                shape.scale.to_bits() as usize,
                mb,
                mh,
                mi,
                shape.batch << 1 | mj,
            ]
            .map(|x| x as u32),
            super::program::groups(shape.batch * shape.seq * shape.heads),
        );
    }

    /// Copies `x` into `out` as `copy` says (see [`StridedCopy`]), with
    /// the layout uploaded beside it.
    ///
    /// # Errors
    ///
    /// `TooLarge` where an index passes what the kernel's `i32`s hold.
    pub(crate) fn strided(
        &mut self,
        x: &Buffer,
        copy: StridedCopy<'_>,
        out: &Buffer,
    ) -> Result<(), NnError> {
        let rank = copy.dims.len();
        let mut meta: Vec<i64> = vec![rank as i64, copy.from.0, copy.to.0];
        meta.extend(copy.dims.iter().map(|&d| d as i64));
        meta.extend_from_slice(copy.from.1);
        meta.extend_from_slice(copy.to.1);
        debug_assert_eq!(meta.len(), 3 + 3 * rank);
        let layout = self.int_table(None, meta, "weft-nn strided copy layout", || {
            super::too_large("a strided copy past 2^31 elements on the GPU".to_string())
        })?;
        let count: usize = copy.dims.iter().product();
        let count32 = u32::try_from(count)
            .map_err(|_| super::too_large(format!("a strided copy of {count} elements")))?;
        self.step(
            &self.encoder().strided,
            vec![whole(x), whole(&layout), whole(out)],
            [count32, 0, 0, 0, 0, 0, 0, 0],
            super::program::groups(count),
        );
        Ok(())
    }

    /// `Pad` in `mode` (0 `edge`, 1 `reflect`, 2 `wrap`) of `x`
    /// (`shape`, row-major `strides`) into `out` (`out_shape`),
    /// `before[a]` new elements before axis `a`'s (negative: that many
    /// cropped): each output element is the input's at its index mapped
    /// back into the input.
    ///
    /// # Errors
    ///
    /// `TooLarge` past 2^31 elements.
    pub(crate) fn pad_edges(
        &mut self,
        (x, shape, strides): (&Buffer, &[usize], &[i64]),
        mode: u8,
        before: &[i64],
        (out, out_shape): (&Buffer, &[usize]),
    ) -> Result<(), NnError> {
        let count: usize = out_shape.iter().product();
        let too_large = || super::too_large(format!("a pad of {count} elements on the GPU"));
        // Every index the kernel forms (a reflection's period is twice
        // an axis) within i32, and every pad too.
        let inner = shape.iter().product::<usize>();
        let widest = shape.iter().max().map_or(0, |&d| 2 * d);
        let pads_fit = before.iter().all(|b| b.unsigned_abs() < 1 << 30);
        if i32::try_from(count.max(inner).max(widest)).is_err() || !pads_fit {
            return Err(too_large());
        }
        let mut meta: Vec<i64> = vec![shape.len() as i64, i64::from(mode)];
        for a in 0..shape.len() {
            meta.extend([out_shape[a] as i64, shape[a] as i64, before[a], strides[a]]);
        }
        let layout = self.int_table(None, meta, "weft-nn pad layout", too_large)?;
        self.step(
            &self.encoder().pad_edges,
            vec![whole(x), whole(&layout), whole(out)],
            [count as u32, 0, 0, 0, 0, 0, 0, 0],
            super::program::groups(count),
        );
        Ok(())
    }
}

/// A kernel's table: in a buffer its caller keeps, or a new one.
enum Table<'t> {
    Kept(&'t Buffer),
    Made(Buffer),
}

impl std::ops::Deref for Table<'_> {
    type Target = Buffer;

    fn deref(&self) -> &Buffer {
        match self {
            Self::Kept(b) => b,
            Self::Made(b) => b,
        }
    }
}
