//! Weight products ([`Program::product`], at row offsets too) and the
//! batched products of two activations, as [`Program`] steps of the
//! `matmul.wgsl` kernels.

use super::{Buffer, Program, Step, whole, wide};
use crate::NnError;
use crate::gpu::{GEMV_ROWS, GpuMatrix, TILE, WeightFormat};

impl Program<'_> {
    /// `c = a · w` for `rows` rows of `a` (`rows x w.rows()`), into the
    /// first `rows x w.cols()` floats of `c`.
    pub(crate) fn product(&mut self, a: &Buffer, rows: usize, w: &GpuMatrix, c: &Buffer) {
        self.product_at((a, 0), rows, w, (c, 0));
    }

    /// [`Program::product`] of `a`'s rows from `a_row`, into `c`'s from
    /// `c_row`; each row's offset in bytes a multiple of
    /// [`Gpu::offset_alignment`] (where a buffer may be bound).
    pub(crate) fn product_at(
        &mut self,
        (a, a_row): (&Buffer, usize),
        rows: usize,
        w: &GpuMatrix,
        (c, c_row): (&Buffer, usize),
    ) {
        let (k, n) = (w.rows(), w.cols());
        let align = self.gpu.offset_alignment();
        debug_assert!((a_row * k) % align == 0 && (c_row * n) % align == 0);
        let at = |row: usize, width: usize| (row * width * 4) as u64;
        // A few rows run the `gemv` kernel, in groups of `GEMV_ROWS` rows
        // (`matmul.wgsl`): the tiled kernel would give a decoder's joined
        // pass (a row per session) one workgroup per 64 columns.
        let few = rows <= self.gpu.gemv.max_rows();
        for (buffer, col0, cols, format) in w.panels() {
            self.steps.push(Step {
                name: self.gpu.product_name(few),
                pipeline: self.gpu.product_kernel(few, format),
                layout: &self.gpu.layout,
                buffers: vec![
                    (a.raw.clone(), at(a_row, k), at(rows, k)),
                    (buffer.clone(), 0, buffer.size()),
                    (c.raw.clone(), at(c_row, n), at(rows, n)),
                ],
                params: wide(
                    if few {
                        [
                            rows.min(GEMV_ROWS),
                            k,
                            cols,
                            n,
                            col0,
                            GEMV_ROWS * k,
                            0,
                            rows,
                        ]
                    } else {
                        [rows, k, cols, n, col0, 0, 0, 0]
                    }
                    .map(|x| x as u32),
                ),
                groups: if few {
                    [
                        cols.div_ceil(self.gpu.gemv_width()) as u32,
                        rows.div_ceil(GEMV_ROWS) as u32,
                    ]
                } else {
                    [cols.div_ceil(TILE) as u32, rows.div_ceil(TILE) as u32]
                },
            });
        }
        self.products += 1;
    }

    /// `batches` products `c[i] = a[i] · b[i]` of `m x k` by `k x n`
    /// matrices, where `a[i]` starts `i · strides.0` floats into `a` and
    /// `b[i]` `i · strides.1` into `b` (0: one matrix for all); `c` holds
    /// the results in order. What multiplies two activations (attention's
    /// scores and mix) where [`Program::product`] multiplies by a weight.
    ///
    /// # Errors
    ///
    /// `TooLarge` past the workgroups the device dispatches at once.
    pub(crate) fn batched_product(
        &mut self,
        (a, b): (&Buffer, &Buffer),
        [batches, m, k, n]: [usize; 4],
        strides: (usize, usize),
        c: &Buffer,
    ) -> Result<(), NnError> {
        let few = m <= GEMV_ROWS;
        let tiles_m = m.div_ceil(TILE);
        let groups = if few {
            [n.div_ceil(self.gpu.gemv_width()), batches]
        } else {
            [n.div_ceil(TILE), batches * tiles_m]
        };
        if groups.iter().any(|&g| g > self.gpu.max_groups) {
            return Err(crate::gpu::too_large(format!(
                "{batches} products of {m} x {k} by {k} x {n} in one dispatch"
            )));
        }
        self.steps.push(Step {
            name: self.gpu.product_name(few),
            pipeline: self.gpu.product_kernel(few, WeightFormat::F32),
            layout: &self.gpu.layout,
            buffers: vec![whole(a), whole(b), whole(c)],
            params: wide(
                [
                    m,
                    k,
                    n,
                    n,
                    0,
                    strides.0,
                    strides.1,
                    if few { 0 } else { tiles_m },
                ]
                .map(|x| x as u32),
            ),
            groups: groups.map(|g| g.max(1) as u32),
        });
        self.products += 1;
        Ok(())
    }
}
