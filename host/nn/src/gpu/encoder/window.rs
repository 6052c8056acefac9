//! Convolutions and poolings over one, two or three spatial axes as
//! [`Program`] steps: `encoder.wgsl`'s `window` kernel, one thread per
//! output, the taps read directly.

use crate::NnError;
use crate::gpu::program::{Buffer, Program, whole};

/// What [`Program::window`] computes: a convolution (with its weights
/// `[m, c / groups, kd, kh, kw]` and perhaps a bias `[m]`) or a pooling.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WindowOp<'b> {
    Conv {
        w: &'b Buffer,
        bias: Option<&'b Buffer>,
        out_channels: usize,
        groups: usize,
        /// `ConvTranspose`: weights `[c, m / groups, kd, kh, kw]`, each input
        /// spread over the outputs its taps reach (gathered per output).
        transposed: bool,
    },
    MaxPool,
    AveragePool {
        count_include_pad: bool,
    },
    /// `(Σ |x|^p)^(1/p)` over each window (padding adds nothing), for a
    /// `p` of 1 or 2.
    LpPool {
        p: usize,
    },
}

/// The geometry of a [`Program::window`] over NCDHW: `x` is
/// `[n, c, d, h, w]`, the output `[n, m, out...]`; the spatial arrays are
/// (depth, height, width), a 2-D window's depth 1 and a 1-D one's height
/// 1 too.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WindowShape {
    pub n: usize,
    pub c: usize,
    pub d: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 3],
    pub out: [usize; 3],
    pub strides: [usize; 3],
    pub dilations: [usize; 3],
    pub pads_begin: [usize; 3],
    pub pads_end: [usize; 3],
}

impl Program<'_> {
    /// A convolution or pooling of `x` (see [`WindowOp`] and
    /// [`WindowShape`]) into `out`.
    ///
    /// # Errors
    ///
    /// `TooLarge` past 2^31 elements, or where the layout buffer cannot be
    /// made.
    pub(crate) fn window(
        &mut self,
        x: &Buffer,
        op: WindowOp<'_>,
        s: WindowShape,
        out: &Buffer,
    ) -> Result<(), NnError> {
        let (m, groups, mode, bias, w) = match op {
            WindowOp::Conv {
                w,
                bias,
                out_channels,
                groups,
                transposed,
            } => (
                out_channels,
                groups.max(1),
                if transposed { 3 } else { 0 },
                bias,
                Some(w),
            ),
            WindowOp::MaxPool => (s.c, s.c, 1, None, None),
            WindowOp::AveragePool { .. } => (s.c, s.c, 2, None, None),
            WindowOp::LpPool { .. } => (s.c, s.c, 4, None, None),
        };
        let include_pad = matches!(
            op,
            WindowOp::AveragePool {
                count_include_pad: true
            }
        );
        let meta = [
            s.n,
            s.c,
            s.h,
            s.w,
            m,
            s.c / groups,
            m / groups,
            s.kernel[1],
            s.kernel[2],
            s.out[1],
            s.out[2],
            s.strides[1],
            s.strides[2],
            s.dilations[1],
            s.dilations[2],
            s.pads_begin[1],
            s.pads_begin[2],
            s.h + s.pads_end[1],
            s.w + s.pads_end[2],
            mode,
            usize::from(bias.is_some()),
            usize::from(include_pad),
            match op {
                WindowOp::LpPool { p } => p,
                _ => 0,
            },
            s.d,
            s.kernel[0],
            s.out[0],
            s.strides[0],
            s.dilations[0],
            s.pads_begin[0],
            s.d + s.pads_end[0],
        ];
        let count = s.n * m * s.out.iter().product::<usize>();
        // Every index the kernel forms stays below the largest of these.
        let largest = [
            count,
            s.n * s.c * s.d * s.h * s.w,
            m * (s.c / groups) * s.kernel.iter().product::<usize>(),
        ];
        let too_large = || {
            crate::gpu::too_large(format!(
                "a convolution or pooling of {count} outputs on the GPU"
            ))
        };
        if largest.iter().any(|&v| i32::try_from(v).is_err()) {
            return Err(too_large());
        }
        let meta = meta.map(|v| v as i64);
        let layout = self.int_table(None, meta, "weft-nn window layout", too_large)?;
        self.step(
            &self.encoder().window,
            vec![
                whole(x),
                whole(w.unwrap_or(x)),
                whole(bias.or(w).unwrap_or(x)),
                whole(&layout),
                whole(out),
            ],
            [count as u32, 0, 0, 0, 0, 0, 0, 0],
            crate::gpu::program::groups(count),
        );
        Ok(())
    }
}
