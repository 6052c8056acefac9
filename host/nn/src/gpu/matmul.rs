//! Weights resident on the device ([`GpuMatrix`]) and the products that
//! read them: uploads, the per-call scratch buffers, and one submission
//! per chunk of rows (the tiled kernel, or `gemv` for a few rows).

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use super::{
    GEMV_GROUP, GEMV_ROWS, Gpu, PARAMS_BYTES, PARAMS_STRIDE, POOL, TILE, runtime, too_large,
};
use crate::{NnError, NnErrorKind};

/// A `rows x cols` matrix resident on a [`Gpu`], split into column panels
/// when it is wider than one buffer may be: row-major f32 values, or (a
/// GGUF decoder's weights) the file's blocks as `weights.wgsl` lays them
/// out, each panel in one format. Freed (and uncounted) on drop.
pub struct GpuMatrix {
    rows: usize,
    cols: usize,
    panels: Vec<Panel>,
    /// The owning `Gpu`'s counter.
    owner: Arc<AtomicU64>,
    /// Whether this matrix is in the owner's count (weights are, the
    /// temporary B of [`Gpu::matmul`] is not).
    counted: bool,
}

/// How a [`GpuMatrix`]'s panel holds its values: f32, or blocks of 32 values
/// along its rows (k) in a GGUF encoding, read by kernels compiled for it
/// (`weights.wgsl`). The packed ones take 2x (F16, BF16), 3.6x (Q8_0)
/// to 6.4x (Q4_0) fewer bytes than f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WeightFormat {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl WeightFormat {
    /// The packed formats, in the order [`Gpu`] keeps their kernels.
    pub(crate) const PACKED: [Self; 5] =
        [Self::F16, Self::Bf16, Self::Q8_0, Self::Q4_0, Self::Q4_1];

    /// Its sections of `weights.wgsl`: its own, and the 4-bit formats'
    /// shared `nibbles`.
    pub(super) fn source(self) -> String {
        let section = |name: &str| {
            include_str!("weights.wgsl")
                .split("//# ")
                .find_map(|s| s.strip_prefix(name)?.strip_prefix('\n'))
                .expect("a section per format")
        };
        let (name, nibbles) = match self {
            Self::F32 => ("f32", false),
            Self::F16 => ("f16", false),
            Self::Bf16 => ("bf16", false),
            Self::Q8_0 => ("q8_0", false),
            Self::Q4_0 => ("q4_0", true),
            Self::Q4_1 => ("q4_1", true),
        };
        let mut source = section(name).to_owned();
        if nibbles {
            source.push_str(section("nibbles"));
        }
        source
    }

    /// Bytes of a `rows x cols` matrix.
    fn bytes(self, rows: usize, cols: usize) -> u64 {
        let (run, words) = self.run();
        (rows / run * cols * words * 4) as u64
    }

    /// Rows a run of its layout holds, and words a column takes in one:
    /// f32, one row and one word; the others, a block.
    pub(crate) fn run(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 1),
            _ => (32, self.words()),
        }
    }

    /// 4-byte words per block of 32 values on the device: the scale (and
    /// offset) as f32, then the quants. (F32: a value a word; halves: two.)
    pub(crate) fn words(self) -> usize {
        match self {
            Self::F32 => 32,
            Self::F16 | Self::Bf16 => 16,
            Self::Q8_0 => 9,
            Self::Q4_0 => 5,
            Self::Q4_1 => 6,
        }
    }
}

/// Columns `col0 .. col0 + cols` of a matrix, in one buffer.
struct Panel {
    buffer: wgpu::Buffer,
    format: WeightFormat,
    col0: usize,
    cols: usize,
}

/// Columns of a matrix in one format, for [`Gpu::upload_parts`]: laid out
/// as the device reads them, in runs of [`WeightFormat::run`] rows, each
/// run the columns' values (f32: a row) or blocks in order.
pub(crate) struct Part<'d> {
    pub(crate) format: WeightFormat,
    pub(crate) cols: usize,
    pub(crate) words: Cow<'d, [u32]>,
}

impl GpuMatrix {
    /// Rows (the `k` of a product with it).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns (the `n` of a product with it).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bytes it holds on the device.
    pub fn bytes(&self) -> u64 {
        let panels = self.panels.iter();
        panels.map(|p| p.format.bytes(self.rows, p.cols)).sum()
    }

    /// How its panels hold their values, in order, each once.
    #[cfg(test)]
    pub(crate) fn formats(&self) -> Vec<WeightFormat> {
        let mut formats: Vec<_> = self.panels.iter().map(|p| p.format).collect();
        formats.dedup();
        formats
    }

    /// Its column panels: (buffer, first column, columns, format).
    pub(super) fn panels(
        &self,
    ) -> impl Iterator<Item = (&wgpu::Buffer, usize, usize, WeightFormat)> {
        self.panels
            .iter()
            .map(|p| (&p.buffer, p.col0, p.cols, p.format))
    }

    /// Column panels it is split into.
    #[cfg(test)]
    pub(crate) fn panel_count(&self) -> usize {
        self.panels.len()
    }
}

impl fmt::Debug for GpuMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuMatrix")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("panels", &self.panels.len())
            .field(
                "formats",
                &self.panels.iter().map(|p| p.format).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Drop for GpuMatrix {
    fn drop(&mut self) {
        for p in &self.panels {
            p.buffer.destroy();
        }
        if self.counted {
            self.owner.fetch_sub(self.bytes(), Ordering::Relaxed);
        }
    }
}

/// Per-call buffers: A in, C out, C read back, and the parameters.
pub(super) struct Scratch {
    a: wgpu::Buffer,
    c: wgpu::Buffer,
    read: wgpu::Buffer,
    params: wgpu::Buffer,
}

impl Scratch {
    fn fits(&self, a: u64, c: u64, params: u64) -> bool {
        self.a.size() >= a && self.c.size() >= c && self.params.size() >= params
    }
    fn size(&self) -> u64 {
        self.a.size() + self.c.size() + self.read.size()
    }
}

impl Gpu {
    /// `matmul.wgsl`'s kernel for a product of `few` rows (a `gemv`) or
    /// more (64 x 64 tiles) by a matrix of `format`.
    ///
    /// # Panics
    ///
    /// For a packed format no matrix was uploaded in: the upload
    /// compiles its kernels ([`Gpu::product_kernels`]).
    pub(super) fn product_kernel(&self, few: bool, format: WeightFormat) -> &wgpu::ComputePipeline {
        let [main, gemv] = match format {
            WeightFormat::F32 => [&self.pipeline, &self.gemv_pipeline],
            _ => {
                let compiled = self.packed[Self::packed_index(format)].get();
                let pair = compiled.and_then(|r| r.as_ref().ok());
                let [main, gemv] = pair.expect("compiled when a matrix of the format went up");
                [main, gemv]
            }
        };
        if few { gemv } else { main }
    }

    /// Compiles the products' kernels for `format`, once.
    ///
    /// # Errors
    ///
    /// `RuntimeError` when they do not compile on this device.
    pub(super) fn product_kernels(&self, format: WeightFormat) -> Result<(), NnError> {
        if format == WeightFormat::F32 {
            return Ok(());
        }
        let compiled = self.packed[Self::packed_index(format)].get_or_init(|| {
            super::compile_products(&self.device, &self.pipeline_layout, format, self.gemv)
                .map_err(|e| runtime(format!("{e} on {}", self.adapter)))
        });
        compiled.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    fn packed_index(format: WeightFormat) -> usize {
        WeightFormat::PACKED
            .iter()
            .position(|&f| f == format)
            .expect("a packed format")
    }

    /// Uploads a row-major `rows x cols` matrix (weights) to stay on the
    /// device until the returned [`GpuMatrix`] is dropped; counted in
    /// [`Gpu::device_bytes`] meanwhile.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` when `data` is not `rows * cols` long; `TooLarge`
    /// when a single row is more than one device buffer may hold, or the
    /// device is out of memory.
    pub fn upload(&self, data: &[f32], rows: usize, cols: usize) -> Result<GpuMatrix, NnError> {
        self.matrix(data, rows, cols, true)
    }

    fn matrix(
        &self,
        data: &[f32],
        rows: usize,
        cols: usize,
        counted: bool,
    ) -> Result<GpuMatrix, NnError> {
        self.check_alive()?;
        let len = rows.checked_mul(cols).filter(|&l| l == data.len());
        if len.is_none() {
            return Err(NnError::new(
                NnErrorKind::InvalidArgument,
                format!(
                    "a {rows} x {cols} matrix needs {} floats, got {}",
                    rows.saturating_mul(cols),
                    data.len()
                ),
            ));
        }
        let part = Part {
            format: WeightFormat::F32,
            cols,
            words: Cow::Borrowed(bytemuck::cast_slice(data)),
        };
        self.resident_matrix(rows, &[part], counted)
    }

    /// Uploads a GGUF decoder's weights as the `rows x Σ cols` matrix of
    /// `parts` side by side (Wᵀ: a column per row of W), each part's
    /// values kept in their format (`weights.wgsl`), and compiles the
    /// products' kernels for a format no matrix of it came up in before.
    /// Counted in [`Gpu::device_bytes`] until dropped.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` when a part's words are not `rows / run · cols ·
    /// words` ([`WeightFormat::run`]) or `rows` not a whole number of runs;
    /// as [`Gpu::upload`] otherwise, and `RuntimeError` when the kernels do
    /// not compile on this device.
    pub(crate) fn upload_parts(
        &self,
        rows: usize,
        parts: &[Part<'_>],
    ) -> Result<GpuMatrix, NnError> {
        self.check_alive()?;
        for part in parts {
            let (format, (run, words)) = (part.format, part.format.run());
            let need = rows / run * part.cols * words;
            if !rows.is_multiple_of(run) || part.words.len() != need {
                return Err(NnError::new(
                    NnErrorKind::InvalidArgument,
                    format!(
                        "{} columns of {rows} rows of {format:?} need {need} words and rows \
                         a multiple of {run}, got {} words",
                        part.cols,
                        part.words.len()
                    ),
                ));
            }
            self.product_kernels(format)?;
        }
        self.resident_matrix(rows, parts, true)
    }

    /// A [`GpuMatrix`] of `parts` side by side, each split into as many
    /// panels as the device's limits require.
    fn resident_matrix(
        &self,
        rows: usize,
        parts: &[Part<'_>],
        counted: bool,
    ) -> Result<GpuMatrix, NnError> {
        self.check_alive()?;
        let mut m = GpuMatrix {
            rows,
            cols: parts.iter().map(|p| p.cols).sum(),
            panels: Vec::new(),
            owner: Arc::clone(&self.resident),
            counted: false,
        };
        if rows == 0 || m.cols == 0 {
            return Ok(m);
        }
        // Columns per panel of each part: within one buffer and one
        // dispatch's width (`gemv`'s, the narrower workgroup).
        let mut widths = Vec::with_capacity(parts.len());
        for part in parts {
            let fit = (self.max_buffer / part.format.bytes(rows, 1)) as usize;
            let mut width = fit.min(self.max_groups * GEMV_GROUP);
            if width == 0 {
                return Err(too_large(format!(
                    "a matrix with {rows} rows does not fit in one GPU buffer even one column \
                     wide (at most {} bytes on {})",
                    self.max_buffer, self.adapter
                )));
            }
            if width < part.cols && width >= TILE {
                width -= width % TILE;
            }
            widths.push(width);
        }
        let scopes = self.push_scopes();
        let mut first = 0;
        for (part, width) in parts.iter().zip(widths) {
            let (format, cols) = (part.format, part.cols);
            let column = format.bytes(rows, 1);
            let per_column = format.run().1;
            for col0 in (0..cols).step_by(width.max(1)) {
                let w = width.min(cols - col0);
                let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("weft-nn weights"),
                    size: column * w as u64,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let words = if w == cols {
                    Cow::Borrowed(&*part.words)
                } else {
                    let runs = part.words.chunks_exact(cols * per_column);
                    let panel = runs.flat_map(|r| &r[col0 * per_column..(col0 + w) * per_column]);
                    Cow::Owned(panel.copied().collect::<Vec<u32>>())
                };
                self.queue
                    .write_buffer(&buffer, 0, bytemuck::cast_slice(&words));
                m.panels.push(Panel {
                    buffer,
                    format,
                    col0: first + col0,
                    cols: w,
                });
            }
            first += cols;
        }
        // Flush the staged writes and release their staging memory.
        self.queue.submit([]);
        self.wait()?;
        self.pop_scopes(scopes, "uploading weights")?;
        if counted {
            m.counted = true;
            self.resident.fetch_add(m.bytes(), Ordering::Relaxed);
        }
        Ok(m)
    }

    /// `C = A · B` for row-major `a` (`m x k`) and `b` (`k x n`), both from
    /// the host; returns C (`m x n`). Uploads B for this call only: for
    /// weights used again, [`Gpu::upload`] them once and call
    /// [`Gpu::matmul_weights`].
    ///
    /// # Errors
    ///
    /// `InvalidArgument` when a slice's length disagrees with its
    /// dimensions; `TooLarge` when an operand exceeds the device's limits;
    /// `RuntimeError` when the device fails.
    pub fn matmul(
        &self,
        a: &[f32],
        b: &[f32],
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Vec<f32>, NnError> {
        let w = self.matrix(b, k, n, false)?;
        self.matmul_weights(a, m, k, &w)
    }

    /// `C = A · W` for row-major `a` (`m x k`) from the host and `w`
    /// (`k x n`) resident on this GPU; returns C (`m x n`). Rows of A go
    /// up in as many chunks as the device's buffer and dispatch limits
    /// require.
    ///
    /// # Errors
    ///
    /// As [`Gpu::matmul`]; also `InvalidArgument` when `w` belongs to
    /// another `Gpu`.
    pub fn matmul_weights(
        &self,
        a: &[f32],
        m: usize,
        k: usize,
        w: &GpuMatrix,
    ) -> Result<Vec<f32>, NnError> {
        let invalid = |msg: String| NnError::new(NnErrorKind::InvalidArgument, msg);
        if !Arc::ptr_eq(&w.owner, &self.resident) {
            return Err(invalid("the weights were uploaded to another GPU".into()));
        }
        if w.rows != k {
            return Err(invalid(format!(
                "matmul of {m} x {k} and {} x {}: inner dims differ",
                w.rows, w.cols
            )));
        }
        if m.checked_mul(k) != Some(a.len()) {
            return Err(invalid(format!(
                "a {m} x {k} matrix needs {} floats, got {}",
                m.saturating_mul(k),
                a.len()
            )));
        }
        let n = w.cols;
        if m == 0 || n == 0 || k == 0 {
            return Ok(vec![0.0; m * n]);
        }
        self.check_alive()?;
        // Rows per submission: A's and C's chunks within one buffer, and
        // the row tiles within one dispatch.
        let row_bytes = (k.max(n) * 4) as u64;
        let rows = ((self.max_buffer / row_bytes) as usize).min(self.max_groups * TILE);
        if rows == 0 {
            return Err(too_large(format!(
                "a {m} x {k} by {k} x {n} matmul: one row of {} floats is more than one GPU \
                 buffer may hold ({} bytes on {})",
                k.max(n),
                self.max_buffer,
                self.adapter
            )));
        }
        let scopes = self.push_scopes();
        let mut out = Vec::with_capacity(m * n);
        let mut scratch = None;
        let mut run = || -> Result<(), NnError> {
            for r0 in (0..m).step_by(rows) {
                let r = rows.min(m - r0);
                self.chunk(&a[r0 * k..(r0 + r) * k], r, k, w, &mut scratch, &mut out)?;
            }
            Ok(())
        };
        let ran = run();
        let scoped = self.pop_scopes(scopes, "running a matmul");
        ran?;
        scoped?;
        if let Some(s) = scratch {
            self.release(s);
        }
        self.matmuls.fetch_add(1, Ordering::Relaxed);
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// One submission: `rows` rows of A times every panel of `w`, read back
    /// and appended to `out`.
    fn chunk(
        &self,
        a: &[f32],
        rows: usize,
        k: usize,
        w: &GpuMatrix,
        scratch: &mut Option<Scratch>,
        out: &mut Vec<f32>,
    ) -> Result<(), NnError> {
        let n = w.cols;
        let a_bytes = (rows * k * 4) as u64;
        let c_bytes = (rows * n * 4) as u64;
        let p_bytes = w.panels.len() as u64 * PARAMS_STRIDE;
        if !scratch
            .as_ref()
            .is_some_and(|s| s.fits(a_bytes, c_bytes, p_bytes))
        {
            *scratch = Some(self.acquire(a_bytes, c_bytes, p_bytes));
        }
        let s = scratch.as_ref().expect("just set");
        self.queue.write_buffer(&s.a, 0, bytemuck::cast_slice(a));
        let mut params = vec![0u8; p_bytes as usize];
        for (i, p) in w.panels.iter().enumerate() {
            let v = [rows, k, p.cols, n, p.col0, 0, 0, 0].map(|x| x as u32);
            let at = i * PARAMS_STRIDE as usize;
            params[at..at + PARAMS_BYTES as usize].copy_from_slice(bytemuck::cast_slice(&v));
        }
        self.queue.write_buffer(&s.params, 0, &params);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("weft-nn matmul"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("weft-nn matmul"),
                timestamp_writes: None,
            });
            let few = rows <= GEMV_ROWS;
            for (i, p) in w.panels.iter().enumerate() {
                pass.set_pipeline(self.product_kernel(few, p.format));
                let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &self.layout,
                    entries: &[
                        binding(0, &s.a, 0, a_bytes),
                        binding(1, &p.buffer, 0, p.buffer.size()),
                        binding(2, &s.c, 0, c_bytes),
                        binding(3, &s.params, i as u64 * PARAMS_STRIDE, PARAMS_BYTES),
                    ],
                });
                pass.set_bind_group(0, &group, &[]);
                if few {
                    pass.dispatch_workgroups(p.cols.div_ceil(self.gemv_width()) as u32, 1, 1);
                } else {
                    pass.dispatch_workgroups(
                        p.cols.div_ceil(TILE) as u32,
                        rows.div_ceil(TILE) as u32,
                        1,
                    );
                }
            }
        }
        encoder.copy_buffer_to_buffer(&s.c, 0, &s.read, 0, c_bytes);
        self.queue.submit([encoder.finish()]);
        let slice = s.read.slice(..c_bytes);
        let (tx, rx) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.await_mapping(&rx)
            .map_err(|e| runtime(format!("reading a matmul back from the GPU: {e}")))?;
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| runtime(format!("reading a matmul back from the GPU: {e}")))?;
            out.extend(
                view.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        s.read.unmap();
        Ok(())
    }

    /// Scratch buffers holding at least the given bytes: pooled ones if
    /// some fit, else new ones (rounded up to a power of two, so that
    /// nearby sizes reuse them).
    fn acquire(&self, a: u64, c: u64, params: u64) -> Scratch {
        {
            let mut pool = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = pool.iter().position(|s| s.fits(a, c, params)) {
                return pool.swap_remove(i);
            }
        }
        let size = |b: u64| b.next_power_of_two().clamp(256, self.max_buffer.max(b));
        let buffer = |label, size, usage| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        use wgpu::BufferUsages as U;
        Scratch {
            a: buffer("weft-nn matmul a", size(a), U::STORAGE | U::COPY_DST),
            c: buffer("weft-nn matmul c", size(c), U::STORAGE | U::COPY_SRC),
            read: buffer("weft-nn matmul read", size(c), U::MAP_READ | U::COPY_DST),
            params: buffer(
                "weft-nn matmul params",
                size(params),
                U::UNIFORM | U::COPY_DST,
            ),
        }
    }

    /// Returns scratch buffers to the pool, which keeps the largest few.
    fn release(&self, s: Scratch) {
        let mut pool = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        pool.push(s);
        if pool.len() > POOL {
            let smallest = (0..pool.len())
                .min_by_key(|&i| pool[i].size())
                .expect("non-empty");
            pool.swap_remove(smallest);
        }
    }
}

/// Bytes `offset .. offset + size` of `buffer` at `binding`.
pub(super) fn binding(
    binding: u32,
    buffer: &wgpu::Buffer,
    offset: u64,
    size: u64,
) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset,
            size: NonZeroU64::new(size),
        }),
    }
}
