//! Weight matrices kept in their GGUF encoding, and the matrix product
//! that reads them.

use std::borrow::Cow;

use crate::gpu::{Gpu, GpuMatrix, Part, WeightFormat};
use crate::quant::{self, Q8Batch, Q8Row};
use crate::team::Workers;
use crate::{GgmlType, GgufInfo, NnError, NnErrorKind};

/// Products that read fewer weight bytes than this run on the calling
/// thread. Lower than it looks worth: a decoder token's products are each
/// a few hundred KB, and running them on one thread left the other idle
/// for most of the token (1 MB here measured 15-25% fewer tokens/s).
const SERIAL_BELOW: usize = 1 << 14;

/// A `rows × cols` weight matrix in a ggml encoding, row-major (each row
/// quantised along `cols`).
#[derive(Debug)]
pub(crate) struct QMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
    /// Whether `data` holds the rows interleaved 16 at a time
    /// ([`quant::lanes`]) rather than one after another.
    lanes: bool,
    /// Wᵀ on a GPU (in its blocks or as f32), when the model was loaded
    /// for one: the device's forward pass reads it (the quantised rows stay for
    /// embedding lookups, and for the CPU should the device fail).
    gpu: Option<GpuMatrix>,
}

fn tensor<'a>(
    info: &GgufInfo,
    bytes: &'a [u8],
    name: &str,
    dims: &[usize],
) -> Result<(GgmlType, &'a [u8]), NnError> {
    let t = info.tensor(name).ok_or_else(|| {
        NnError::new(
            NnErrorKind::InvalidEncoding,
            format!("tensor `{name}` is missing"),
        )
    })?;
    if !same_shape(&t.dims, dims) {
        return Err(NnError::new(
            NnErrorKind::InvalidEncoding,
            format!("tensor `{name}` has shape {:?}, expected {dims:?}", t.dims),
        ));
    }
    let start = (info.data_start + t.offset) as usize;
    Ok((t.ty, &bytes[start..start + t.bytes as usize]))
}

/// Whether a tensor's ggml dims are `want`'s, as llama.cpp compares them:
/// dims past either's count are 1 (a `[e, 1]` tensor is an `[e]` one).
pub(crate) fn same_shape(got: &[u64], want: &[usize]) -> bool {
    let dims = got.len().max(want.len());
    (0..dims).all(|i| got.get(i).map_or(1, |&d| d as usize) == want.get(i).copied().unwrap_or(1))
}

/// A 1-D tensor (a norm's weight) as f32.
pub(crate) fn vector(
    info: &GgufInfo,
    bytes: &[u8],
    name: &str,
    len: usize,
) -> Result<Vec<f32>, NnError> {
    values(info, bytes, name, &[len])
}

/// A tensor of ggml `dims` (gpt-oss's experts' biases: a row per expert)
/// as f32.
pub(crate) fn values(
    info: &GgufInfo,
    bytes: &[u8],
    name: &str,
    dims: &[usize],
) -> Result<Vec<f32>, NnError> {
    let (ty, raw) = tensor(info, bytes, name, dims)?;
    let mut out = vec![0f32; dims.iter().product()];
    quant::dequantize(ty, raw, &mut out);
    Ok(out)
}

impl QMatrix {
    /// The tensor `name`, which must be `rows × cols` (ggml dims `[cols, rows]`).
    pub(crate) fn from_gguf(
        info: &GgufInfo,
        bytes: &[u8],
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Self, NnError> {
        let (ty, raw) = tensor(info, bytes, name, &[cols, rows])?;
        Self::from_raw(name, ty, raw, rows, cols)
    }

    /// The tensor `name` of `experts` matrices of `rows × cols` (ggml dims
    /// `[cols, rows, experts]`: a mixture's experts side by side), one
    /// matrix each.
    pub(crate) fn experts_from_gguf(
        info: &GgufInfo,
        bytes: &[u8],
        name: &str,
        [experts, rows, cols]: [usize; 3],
    ) -> Result<Vec<Self>, NnError> {
        let (ty, raw) = tensor(info, bytes, name, &[cols, rows, experts])?;
        // Cut from the file's bytes (whole rows each), not from a copy.
        if experts == 0 || raw.is_empty() || !raw.len().is_multiple_of(experts) {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("tensor `{name}` does not hold {experts} experts"),
            ));
        }
        raw.chunks_exact(raw.len() / experts)
            .map(|raw| Self::from_raw(name, ty, raw, rows, cols))
            .collect()
    }

    fn from_raw(
        name: &str,
        ty: GgmlType,
        raw: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<Self, NnError> {
        if rows == 0 || cols == 0 {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("tensor `{name}` is empty ({rows} x {cols})"),
            ));
        }
        let per_block = ty.block().0 as usize;
        if !cols.is_multiple_of(per_block) {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("tensor `{name}`: rows of {cols} do not split into blocks of {per_block}"),
            ));
        }
        // Formats the dot kernels do not read become ones they do (Q4_K →
        // Q4_1, the others → Q8_0; see `quant::transcode`).
        let (ty, data) = if quant::transcode::transcoded(ty) {
            quant::transcode::transcode(ty, raw).map_err(|e| {
                NnError::new(
                    NnErrorKind::InvalidEncoding,
                    format!("tensor `{name}`: {e}"),
                )
            })?
        } else {
            (ty, raw.to_vec())
        };
        Ok(Self {
            ty,
            rows,
            cols,
            row_bytes: data.len() / rows,
            data,
            lanes: false,
            gpu: None,
        })
    }

    /// A `rows × cols` matrix of `values` (row-major), as the loader builds
    /// one from tensors of type `like` that it rearranges (DeepSeek-V2's
    /// split latent products): in that type where it is a float one (F32,
    /// F16, BF16: the values came from it, so exactly), else in Q8_0 (as
    /// fine as the quantised blocks they came from, at about their bytes),
    /// or F32 where Q8_0 cannot hold a block of them.
    pub(crate) fn from_f32(
        name: &str,
        values: &[f32],
        (rows, cols): (usize, usize),
        like: GgmlType,
    ) -> Result<Self, NnError> {
        let f32s = || bytemuck::cast_slice::<f32, u8>(values).to_vec();
        let (ty, raw) = match like {
            GgmlType::F32 => (GgmlType::F32, f32s()),
            GgmlType::F16 => (
                GgmlType::F16,
                (values.iter())
                    .flat_map(|&v| quant::f32_to_f16(v).to_le_bytes())
                    .collect(),
            ),
            GgmlType::Bf16 => (
                GgmlType::Bf16,
                (values.iter())
                    .flat_map(|&v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                    .collect(),
            ),
            _ => {
                let mut q8 = Vec::with_capacity(values.len() / 32 * 34);
                let blocks = (cols.is_multiple_of(32))
                    .then(|| values.chunks_exact(32))
                    .into_iter()
                    .flatten()
                    .try_for_each(|b| quant::transcode::quantize_q8_0(b, &mut q8));
                match (cols.is_multiple_of(32), blocks) {
                    (true, Ok(())) => (GgmlType::Q8_0, q8),
                    _ => (GgmlType::F32, f32s()),
                }
            }
        };
        Self::from_raw(name, ty, &raw, rows, cols)
    }

    /// The matrix cut into consecutive runs of `rows` rows (which must add
    /// up to all of them): Phi-3's fused Q/K/V and gate/up products, read
    /// as the separate matrices the forward pass takes.
    pub(crate) fn split_rows(self, rows: &[usize]) -> Vec<QMatrix> {
        assert!(!self.lanes, "split before packing");
        assert_eq!(
            rows.iter().sum::<usize>(),
            self.rows,
            "a split of every row"
        );
        let mut at = 0;
        rows.iter()
            .map(|&n| {
                let data = self.data[at * self.row_bytes..(at + n) * self.row_bytes].to_vec();
                at += n;
                QMatrix {
                    ty: self.ty,
                    rows: n,
                    cols: self.cols,
                    row_bytes: self.row_bytes,
                    data,
                    lanes: false,
                    gpu: None,
                }
            })
            .collect()
    }

    /// Uploads Wᵀ (`cols × rows`) to `gpu`, for the device's forward
    /// pass: see [`QMatrix::upload_side_by_side`].
    pub(crate) fn upload(&mut self, gpu: &Gpu) -> Result<(), NnError> {
        self.gpu = Some(Self::upload_side_by_side(gpu, &[self])?);
        Ok(())
    }

    /// The transposes of `matrices` (all of one width) side by side, as
    /// one `cols × Σ rows` matrix on `gpu`: one product by it gives each
    /// row's products by all of them, in order (a decoder's Q, K and V;
    /// its gate and up). Matrices in F16, BF16, Q8_0, Q4_0 or Q4_1 (what
    /// every quantised GGUF type is read as), in rows of whole blocks of
    /// 32, keep their blocks there; the others (F32) go up as f32, and so
    /// do all where [`Gpu::keeps_blocks`] says not to keep them. Matrices
    /// in different formats (a Q4_K_M file's Q4_K and Q6_K, read as Q4_1
    /// and Q8_0) are panels of their own, each product a dispatch more.
    /// The products give the same values either way.
    pub(crate) fn upload_side_by_side(
        gpu: &Gpu,
        matrices: &[&QMatrix],
    ) -> Result<GpuMatrix, NnError> {
        let cols = matrices.first().map_or(0, |m| m.cols);
        assert!(matrices.iter().all(|m| m.cols == cols), "one width");
        let format = |m: &QMatrix| match m.ty {
            _ if !gpu.keeps_blocks() || !cols.is_multiple_of(32) => WeightFormat::F32,
            GgmlType::F16 => WeightFormat::F16,
            GgmlType::Bf16 => WeightFormat::Bf16,
            GgmlType::Q8_0 => WeightFormat::Q8_0,
            GgmlType::Q4_0 => WeightFormat::Q4_0,
            GgmlType::Q4_1 => WeightFormat::Q4_1,
            _ => WeightFormat::F32,
        };
        let parts: Vec<Part<'_>> = matrices
            .chunk_by(|a, b| format(a) == format(b))
            .map(|run| {
                let format = format(run[0]);
                let words = match format {
                    WeightFormat::F32 => transposed(run, cols),
                    _ => device_blocks(run, cols, format),
                };
                Part {
                    format,
                    cols: run.iter().map(|m| m.rows).sum(),
                    words: Cow::Owned(words),
                }
            })
            .collect();
        gpu.upload_parts(cols, &parts)
    }

    /// Wᵀ on the GPU, if uploaded.
    pub(crate) fn on_gpu(&self) -> Option<&GpuMatrix> {
        self.gpu.as_ref()
    }

    /// Drops the GPU copy (the model runs on the CPU).
    pub(crate) fn unload(&mut self) {
        self.gpu = None;
    }

    /// Bytes held on a GPU.
    pub(crate) fn device_bytes(&self) -> u64 {
        self.gpu.as_ref().map_or(0, GpuMatrix::bytes)
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Its encoding, and whether its rows are packed ([`QMatrix::pack`]).
    #[cfg(test)]
    pub(crate) fn packing(&self) -> (GgmlType, bool) {
        (self.ty, self.lanes)
    }

    /// The matrix as f32 rows, unpacked (tests: products whose inputs the
    /// CPU does not round to Q8_0 as it does for quantised weights).
    #[cfg(test)]
    pub(crate) fn to_f32(&self) -> QMatrix {
        let mut row = vec![0f32; self.cols];
        let mut raw = Vec::with_capacity(self.rows * self.cols * 4);
        for r in 0..self.rows {
            self.row(r, &mut row);
            raw.extend(row.iter().flat_map(|v| v.to_le_bytes()));
        }
        Self::from_raw("f32 copy", GgmlType::F32, &raw, self.rows, self.cols).expect("f32 rows")
    }

    /// Interleaves the rows for the CPU's product kernel, where it has
    /// one for them ([`quant::lanes`]); the same bytes, reordered.
    pub(crate) fn pack(&mut self) {
        if !self.lanes && quant::lanes::used_for(self.ty) {
            self.data = quant::lanes::pack(self.ty, &self.data, self.row_bytes);
            self.lanes = true;
        }
    }

    /// Row `r` dequantised into `out`.
    pub(crate) fn row(&self, r: usize, out: &mut [f32]) {
        if self.lanes {
            let mut raw = vec![0u8; self.row_bytes];
            self.raw_row(r, &mut raw);
            quant::dequantize(self.ty, &raw, out);
        } else {
            quant::dequantize(
                self.ty,
                &self.data[r * self.row_bytes..][..self.row_bytes],
                out,
            );
        }
    }

    /// Row `r`'s bytes, as the file has them, into `out` (`row_bytes`).
    fn raw_row(&self, r: usize, out: &mut [u8]) {
        if self.lanes {
            quant::lanes::row(self.ty, &self.data, self.row_bytes, r, out);
        } else {
            out.copy_from_slice(&self.data[r * self.row_bytes..][..self.row_bytes]);
        }
    }

    /// `y = x · Wᵀ` for `n` rows of `x` (`n × cols`), giving `n × rows`,
    /// shared out over `workers`.
    pub(crate) fn matmul(&self, x: &[f32], n: usize, workers: Workers<'_>) -> Vec<f32> {
        Self::matmul_group(&[self], x, n, workers)
            .pop()
            .expect("one product per matrix")
    }

    /// [`QMatrix::matmul`] of the same `x` by several matrices of the same
    /// width (Q, K and V; gate and up): `x` is quantised once, and all
    /// their rows are shared out over the threads in one go, since waking
    /// the pool costs about as much as a small product takes.
    pub(crate) fn matmul_group(
        mats: &[&QMatrix],
        x: &[f32],
        n: usize,
        workers: Workers<'_>,
    ) -> Vec<Vec<f32>> {
        let mut ys = vec![Vec::new(); mats.len()];
        Self::matmul_group_into(mats, x, n, workers, &mut Q8Batch::default(), &mut ys);
        ys
    }

    /// [`QMatrix::matmul_group`] into `ys`, one per matrix, each resized
    /// to `n × rows`. Every value is written, so buffers kept from a
    /// product of the same shape (a pass's layers) are reused as they
    /// are: a joined pass otherwise allocated and zeroed ~10 MB for its
    /// products, on its own thread while the others waited.
    pub(crate) fn matmul_group_into(
        mats: &[&QMatrix],
        x: &[f32],
        n: usize,
        workers: Workers<'_>,
        xq: &mut Q8Batch,
        ys: &mut [Vec<f32>],
    ) {
        assert_eq!(ys.len(), mats.len(), "an output per matrix");
        let cols = mats[0].cols;
        debug_assert!(mats.iter().all(|m| m.cols == cols));
        debug_assert_eq!(x.len(), n * cols);
        let quantised = mats
            .iter()
            .any(|m| matches!(m.ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0));
        // Packed matrices only: the row kernels' corrections go unused.
        let lanes = mats.iter().all(|m| m.lanes);
        let quantise = |row: &mut Q8Row, x: &[f32]| {
            if lanes {
                row.quantize_for_lanes_from(x);
            } else {
                row.quantize_from(x);
            }
        };
        if !quantised {
            // (Rows the f32 kernels do not read.)
            *xq = Q8Batch::new((0..n).map(|_| Q8Row::default()).collect());
        } else if matches!(workers, Workers::Team(_)) && n > 1 {
            // A team starts a step in a microsecond: each row is a task.
            xq.refill(n, |rows| {
                workers.for_each_item(rows.iter_mut().collect(), |t, row| {
                    quantise(row, &x[t * cols..][..cols]);
                });
            });
        } else if x.len() >= Q8Batch::PARALLEL_FROM {
            // (A prompt's rows: on the pool, a few at a time.)
            *xq = Q8Batch::quantize(x, cols);
        } else {
            xq.refill(n, |rows| {
                for (row, x) in rows.iter_mut().zip(x.chunks_exact(cols)) {
                    quantise(row, x);
                }
            });
        }
        let xq = &*xq;
        // Rows of each W are split into runs; each run reads its rows once
        // for all `n` inputs, so W streams through memory once per call.
        let total: usize = mats.iter().map(|m| m.rows).sum();
        // (A multiple of 16: packed matrices are multiplied 16 rows at a
        // time.)
        let chunk = (total / (workers.threads() * 8))
            .clamp(16, 512)
            .next_multiple_of(quant::lanes::LANES);
        // Run `c` of a matrix writes columns `c * chunk ..` of each of the
        // `n` rows of its product, straight where they go: a transpose
        // after the products would run on one thread while the rest wait.
        for (y, m) in ys.iter_mut().zip(mats) {
            y.resize(n * m.rows, 0.0);
        }
        let mut runs: Vec<(&QMatrix, usize, Vec<&mut [f32]>)> = Vec::new();
        for (m, y) in mats.iter().zip(ys.iter_mut()) {
            let at = runs.len();
            runs.extend(
                (0..m.rows.div_ceil(chunk)).map(|c| (*m, c * chunk, Vec::with_capacity(n))),
            );
            for row in y.chunks_mut(m.rows) {
                for (c, part) in row.chunks_mut(chunk).enumerate() {
                    runs[at + c].2.push(part);
                }
            }
        }
        let run = |(m, first, mut parts): (&QMatrix, usize, Vec<&mut [f32]>)| {
            if m.lanes {
                quant::dot_lanes(m.ty, &m.data, m.row_bytes, first, xq, &mut parts);
                return;
            }
            let rows = parts[0].len();
            // `dot_rows` gives weight row by weight row: `[row][t]`.
            let mut by_row = if n == 1 {
                Vec::new()
            } else {
                vec![0f32; rows * n]
            };
            let out: &mut [f32] = if n == 1 { parts[0] } else { &mut by_row };
            for (i, o) in out.chunks_exact_mut(n).enumerate() {
                let r = first + i;
                let w = &m.data[r * m.row_bytes..][..m.row_bytes];
                quant::dot_rows(m.ty, w, xq, x, o);
            }
            for (t, part) in parts.iter_mut().enumerate().filter(|_| n > 1) {
                for (r, y) in part.iter_mut().enumerate() {
                    *y = by_row[r * n + t];
                }
            }
        };
        let bytes: usize = mats.iter().map(|m| m.data.len()).sum();
        if bytes * n < SERIAL_BELOW {
            runs.into_iter().for_each(run);
        } else {
            workers.for_each_item(runs, |_, r| run(r));
        }
    }
}

/// The transposes of `run` side by side, `cols × Σ rows` row-major f32
/// (as bits).
fn transposed(run: &[&QMatrix], cols: usize) -> Vec<u32> {
    let width: usize = run.iter().map(|m| m.rows).sum();
    let mut row = vec![0f32; cols];
    let mut wt = vec![0u32; width * cols];
    let mut col0 = 0;
    for m in run {
        for r in 0..m.rows {
            m.row(r, &mut row);
            for (c, &v) in row.iter().enumerate() {
                wt[c * width + col0 + r] = v.to_bits();
            }
        }
        col0 += m.rows;
    }
    wt
}

/// The transposes of `run` (all in `format`) side by side, in their
/// blocks as the GPU reads them: for each run of 32 rows of Wᵀ, the
/// columns' blocks in order.
fn device_blocks(run: &[&QMatrix], cols: usize, format: WeightFormat) -> Vec<u32> {
    let width: usize = run.iter().map(|m| m.rows).sum();
    let (words, per_row) = (format.words(), cols / 32);
    let mut blocks = vec![0u32; per_row * width * words];
    let mut col0 = 0;
    for m in run {
        let block_bytes = m.row_bytes / per_row;
        let mut raw = vec![0u8; m.row_bytes];
        for r in 0..m.rows {
            m.raw_row(r, &mut raw);
            for (j, block) in raw.chunks_exact(block_bytes).enumerate() {
                let at = (j * width + col0 + r) * words;
                device_block(format, block, &mut blocks[at..at + words]);
            }
        }
        col0 += m.rows;
    }
    blocks
}

/// A block of 32 values in `format` as the GPU reads it
/// (`gpu/weights.wgsl`): a quantised one's f16 scale (and Q4_1's offset)
/// widened to f32, exactly, then its quants, 4 bytes a word (halves: two
/// values a word).
fn device_block(format: WeightFormat, block: &[u8], words: &mut [u32]) {
    let scales = match format {
        WeightFormat::Q4_1 => 2,
        WeightFormat::Q8_0 | WeightFormat::Q4_0 => 1,
        _ => 0,
    };
    let (halves, quants) = block.split_at(2 * scales);
    let (head, tail) = words.split_at_mut(scales);
    for (w, h) in head.iter_mut().zip(halves.chunks_exact(2)) {
        *w = quant::f16_to_f32(u16::from_le_bytes([h[0], h[1]])).to_bits();
    }
    for (w, q) in tail.iter_mut().zip(quants.chunks_exact(4)) {
        *w = u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
    }
}

#[cfg(test)]
mod tests;
