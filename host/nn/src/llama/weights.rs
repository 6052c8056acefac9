//! Weight matrices kept in their GGUF encoding, and the matrix product
//! that reads them.

use rayon::prelude::*;

use crate::quant::{self, Q8Row};
use crate::{GgmlType, GgufInfo, NnError, NnErrorKind};

/// Products that read fewer weight bytes than this run on the calling thread.
const SERIAL_BELOW: usize = 1 << 20;

/// A `rows × cols` weight matrix in a ggml encoding, row-major (each row
/// quantised along `cols`).
#[derive(Debug)]
pub(crate) struct QMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
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
    let got: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    if got != dims {
        return Err(NnError::new(
            NnErrorKind::InvalidEncoding,
            format!("tensor `{name}` has shape {got:?}, expected {dims:?}"),
        ));
    }
    let start = (info.data_start + t.offset) as usize;
    Ok((t.ty, &bytes[start..start + t.bytes as usize]))
}

/// A 1-D tensor (a norm's weight) as f32.
pub(crate) fn vector(
    info: &GgufInfo,
    bytes: &[u8],
    name: &str,
    len: usize,
) -> Result<Vec<f32>, NnError> {
    let (ty, raw) = tensor(info, bytes, name, &[len])?;
    let mut out = vec![0f32; len];
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
        if matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
            && !cols.is_multiple_of(quant::BLOCK)
        {
            return Err(NnError::new(
                NnErrorKind::InvalidEncoding,
                format!("tensor `{name}`: rows of {cols} do not split into blocks of 32"),
            ));
        }
        Ok(Self {
            ty,
            rows,
            cols,
            row_bytes: raw.len() / rows,
            data: raw.to_vec(),
        })
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Row `r` dequantised into `out`.
    pub(crate) fn row(&self, r: usize, out: &mut [f32]) {
        quant::dequantize(
            self.ty,
            &self.data[r * self.row_bytes..][..self.row_bytes],
            out,
        );
    }

    /// `y = x · Wᵀ` for `n` rows of `x` (`n × cols`), giving `n × rows`.
    pub(crate) fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        debug_assert_eq!(x.len(), n * self.cols);
        let xq: Vec<Q8Row> = match self.ty {
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => {
                x.chunks_exact(self.cols).map(Q8Row::quantize).collect()
            }
            _ => (0..n).map(|_| Q8Row::default()).collect(),
        };
        // Rows of W are split over threads; each reads its rows once for
        // all `n` inputs, so W streams through memory once per call.
        let mut yt = vec![0f32; self.rows * n];
        let chunk = (self.rows / (rayon::current_num_threads() * 8)).clamp(16, 512);
        let rows_of = |(c, out): (usize, &mut [f32])| {
            for (i, o) in out.chunks_exact_mut(n).enumerate() {
                let r = c * chunk + i;
                let w = &self.data[r * self.row_bytes..][..self.row_bytes];
                quant::dot_rows(self.ty, w, &xq, x, o);
            }
        };
        // Waking the pool costs more than a small product takes: below
        // ~1 MB of weight reads, stay on this thread.
        if self.data.len() * n < SERIAL_BELOW {
            yt.chunks_mut(chunk * n).enumerate().for_each(rows_of);
        } else {
            yt.par_chunks_mut(chunk * n).enumerate().for_each(rows_of);
        }
        if n == 1 {
            return yt;
        }
        let mut y = vec![0f32; n * self.rows];
        for r in 0..self.rows {
            for t in 0..n {
                y[t * self.rows + r] = yt[r * n + t];
            }
        }
        y
    }
}
