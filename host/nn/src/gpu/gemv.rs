//! Which of `matmul.wgsl`'s `gemv` kernels runs the products of a few
//! rows on a device, and the shapes it works in.

/// Products with at most this many rows of A run one of `matmul.wgsl`'s
/// `gemv` kernels (see [`Gemv`]) instead of its 64 x 64 tiles
/// (`GEMV_MAX_ROWS` there).
pub(super) const GEMV_ROWS: usize = 4;
/// Columns of C per workgroup of the narrowest `gemv` kernel (`gemv_deep`):
/// what bounds a weight panel's width.
pub(super) const GEMV_GROUP: usize = 8;

/// Which `gemv` kernel runs the products of a few rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gemv {
    /// `gemv_columns`: one thread per column walks all of k. A software
    /// device (llvmpipe) runs it ~1.7x faster than `Split` (SmolLM2's
    /// decode on two cores).
    Columns,
    /// `gemv_split`: 16 threads per column, each a slice of k, summed in
    /// workgroup memory. Hardware GPUs need the threads.
    Split,
    /// `gemv_deep`: 32 threads per column, each with four loads in flight
    /// (a decoder's products are chains of memory latencies on a GPU).
    /// What hardware GPUs run: on an H200 SmolLM2 decoded at 135.8 tok/s
    /// with it, 95.3 with `Split` and 15.4 with `Columns`.
    Deep,
}

impl Gemv {
    /// The kernel for a device of this type (`cpu` for software ones),
    /// unless `WEFT_NN_GEMV` (`columns`, `split` or `deep`) names one.
    pub(super) fn for_device(device_type: wgpu::DeviceType) -> Self {
        match std::env::var("WEFT_NN_GEMV").as_deref() {
            Ok("columns") => Self::Columns,
            Ok("split") => Self::Split,
            Ok("deep") => Self::Deep,
            _ if device_type == wgpu::DeviceType::Cpu => Self::Columns,
            _ => Self::Deep,
        }
    }

    pub(super) fn entry_point(self) -> &'static str {
        match self {
            Self::Columns => "gemv_columns",
            Self::Split => "gemv_split",
            Self::Deep => "gemv_deep",
        }
    }

    /// The most rows a [`Program`](super::Program)'s product runs with this kernel, in
    /// groups of [`GEMV_ROWS`], rather than with the tiled one: a joined
    /// decoder pass has a row per session. One thread per column
    /// (software devices) keeps the tiled kernel past one group.
    pub(super) fn max_rows(self) -> usize {
        match self {
            Self::Columns => GEMV_ROWS,
            Self::Split | Self::Deep => 4 * GEMV_ROWS,
        }
    }

    /// Columns of C per workgroup.
    pub(super) fn columns(self) -> usize {
        match self {
            Self::Columns => 64,
            Self::Split => 16,
            Self::Deep => GEMV_GROUP,
        }
    }
}
