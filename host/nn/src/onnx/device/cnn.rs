//! Convolutional networks' ops on the device: `Conv`, `ConvTranspose`,
//! `MaxPool`, `AveragePool` and `LpPool` over one, two or three spatial axes ([`Program::window`]: one
//! thread per output, the taps read directly), `GlobalAveragePool` and
//! `GlobalMaxPool` (rows of `reduce_rows`), inference
//! `BatchNormalization`, `InstanceNormalization` and `GroupNormalization`
//! (rows of `layer_norm` with a weight per channel) and `Clip`.
//!
//! [`Program::window`]: crate::gpu::Program::window

use std::collections::HashMap;
use std::sync::Arc;

use super::{Dev, OnDevice, host_scalar, input};
use crate::NnError;
use crate::gpu::{ReduceOp, WindowOp, WindowShape};
use crate::onnx::ops::{self, Node, Window};
use crate::onnx::value::Value;

impl OnDevice<'_> {
    /// `Conv`, `ConvTranspose`, `MaxPool` (its values only), `AveragePool`
    /// or `LpPool` of an `[n, c, w]`, `[n, c, h, w]` or `[n, c, d, h, w]`
    /// value (a `Conv`'s may be a host one,
    /// such as a network's input).
    pub(super) fn window(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        let x = self.operand(input(p, 0)?, host)?;
        let xs = x.shape().to_vec();
        if !(3..=5).contains(&xs.len()) || xs.contains(&0) {
            return None;
        }
        let (n, c) = (xs[0], xs[1]);
        // Geometry the CPU would refuse is the CPU's to explain.
        match p.op_type.as_str() {
            "Conv" | "ConvTranspose" => {
                let w = self.operand(input(p, 1)?, host)?;
                let ws = w.shape();
                let transposed = p.op_type == "ConvTranspose";
                let (win, groups, m) = if transposed {
                    let (win, groups) = ops::conv_transpose_window(node, &xs, ws).ok()?;
                    // (Weights `[c, m / group, k...]`; others are the CPU's.)
                    if ws[0] != c || c % groups != 0 {
                        return None;
                    }
                    (win, groups, ws[1] * groups)
                } else {
                    let (win, groups) = ops::conv_window(node, &xs, ws).ok()?;
                    (win, groups, ws[0])
                };
                let bias = match input(p, 2) {
                    Some(b) => Some(self.operand(b, host)?),
                    None => None,
                };
                if bias.as_ref().is_some_and(|b| b.shape() != [m]) {
                    return None;
                }
                let shape = window_shape(&xs, &win)?;
                self.try_record(out_shape(n, m, &win), |me, out| {
                    let (x, w) = (me.up(x)?, me.up(w)?);
                    let bias = bias.map(|b| me.up(b)).transpose()?;
                    let op = WindowOp::Conv {
                        w: &w.buf,
                        bias: bias.as_ref().map(|b| &*b.buf),
                        out_channels: m,
                        groups,
                        transposed,
                    };
                    me.program()?.window(&x.buf, op, shape, out)
                })
            }
            "MaxPool" | "AveragePool" | "LpPool" => {
                // (`MaxPool`'s indices are the CPU's.)
                if p.outputs.iter().skip(1).any(|o| !o.is_empty()) {
                    return None;
                }
                let win = ops::pool_window(node, &xs).ok()?;
                let shape = window_shape(&xs, &win)?;
                let op = match p.op_type.as_str() {
                    "MaxPool" => WindowOp::MaxPool,
                    // p of 1 or 2, each exact; a higher power leaves f32's
                    // range long before f64's, where the CPU sums it.
                    "LpPool" => WindowOp::LpPool {
                        p: usize::try_from(node.int("p", 2))
                            .ok()
                            .filter(|p| (1..=2).contains(p))?,
                    },
                    _ => WindowOp::AveragePool {
                        count_include_pad: node.int("count_include_pad", 0) != 0,
                    },
                };
                self.try_record(out_shape(n, c, &win), |me, out| {
                    let x = me.up(x)?;
                    me.program()?.window(&x.buf, op, shape, out)
                })
            }
            _ => None,
        }
    }

    /// `GlobalAveragePool` or `GlobalMaxPool` of a value on the device:
    /// a mean or max over each channel's `h · w` (contiguous) values.
    pub(super) fn global_pool(&mut self, node: Node<'_>) -> Option<Result<Dev, NnError>> {
        let x = self.first_input(node)?;
        let op = match node.proto.op_type.as_str() {
            "GlobalAveragePool" => ReduceOp::Mean,
            "GlobalMaxPool" => ReduceOp::MaxSkippingNan,
            _ => return None,
        };
        let inner: usize = x.shape.get(2..)?.iter().product();
        if x.shape.len() < 3 || inner == 0 || x.len() == 0 {
            return None;
        }
        let mut shape = x.shape.clone();
        shape[2..].iter_mut().for_each(|d| *d = 1);
        let rows = x.len() / inner;
        self.try_record(shape, |me, out| {
            me.program()?.reduce_rows(op, &x.buf, (rows, inner), out);
            Ok(())
        })
    }

    /// Inference `BatchNormalization` (only `Y` asked for) of a value on
    /// the device: `y = (x − mean) · scale / √(var + ε) + bias` per
    /// channel (axis 1), as the CPU computes it. The statistics are
    /// constants on the device when they are initializers.
    pub(super) fn batch_norm(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        if node.int("training_mode", 0) != 0 || p.outputs.iter().skip(1).any(|o| !o.is_empty()) {
            return None;
        }
        let x = self.first_input(node)?;
        let c = *x.shape.get(1)?;
        if x.len() == 0 || c == 0 {
            return None;
        }
        let [s, b, mean, var] = [1, 2, 3, 4].map(|i| {
            input(p, i)
                .and_then(|n| self.operand(n, host))
                .filter(|o| o.shape() == [c])
        });
        let stats = [s?, b?, mean?, var?];
        let eps = node.float("epsilon", 1e-5);
        let inner = x.len() / (x.shape[0] * c);
        let count = x.len();
        self.try_record(x.shape.clone(), |me, out| {
            let [s, b, mean, var] = stats.map(|o| me.up(o));
            let stats = [s?, b?, mean?, var?];
            me.program()?.batch_norm(
                &x.buf,
                stats.each_ref().map(|d| &*d.buf),
                (count, inner, c),
                eps,
                out,
            );
            Ok(())
        })
    }

    /// `InstanceNormalization` or `GroupNormalization` of an `[n, c, ...]`
    /// value on the device: rows of each group's channels normalised,
    /// then scaled and shifted per channel (or, as `GroupNormalization`
    /// before opset 21 has it, per group), in one dispatch.
    pub(super) fn channel_norm(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        let x = self.first_input(node)?;
        let (n, c) = (*x.shape.first()?, *x.shape.get(1)?);
        let inner: usize = x.shape[2..].iter().product();
        let groups = match p.op_type.as_str() {
            "GroupNormalization" => usize::try_from(node.int("num_groups", 1)).ok()?,
            _ => c,
        };
        // What the CPU would refuse is the CPU's to explain.
        if x.len() == 0 || groups == 0 || c % groups != 0 {
            return None;
        }
        let (s, b) = (
            self.operand(input(p, 1)?, host)?,
            self.operand(input(p, 2)?, host)?,
        );
        let per: usize = s.shape().iter().product();
        let d = c / groups * inner;
        // A weight per channel, or per group (a row of its own).
        let weight_inner = match per {
            _ if per != b.shape().iter().product::<usize>() => return None,
            _ if per == c => inner,
            _ if per == groups => d,
            _ => return None,
        };
        let eps = node.float("epsilon", 1e-5);
        self.try_record(x.shape.clone(), |me, out| {
            let (s, b) = (me.up(s)?, me.up(b)?);
            me.program()?.channel_norm(
                &x.buf,
                (&s.buf, &b.buf),
                (n * groups, d),
                (groups, weight_inner),
                eps,
                out,
            );
            Ok(())
        })
    }

    /// `Clip` of a value on the device, its bounds host scalars (inputs
    /// from opset 11, attributes before); a missing bound is infinite.
    pub(super) fn clip(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        let x = self.first_input(node)?;
        let bound = |i: usize, attr: &str, none: f32| -> Option<f32> {
            if node.opset < 11 {
                return Some(if node.has(attr) {
                    node.float(attr, none)
                } else {
                    none
                });
            }
            match input(p, i) {
                Some(name) => host_scalar(host, name),
                None => Some(none),
            }
        };
        let bounds = (
            bound(1, "min", f32::NEG_INFINITY)?,
            bound(2, "max", f32::INFINITY)?,
        );
        let count = x.len();
        self.try_record(x.shape.clone(), |me, out| {
            me.program()?.clip(&x.buf, count, bounds, out);
            Ok(())
        })
    }
}

/// `[n, channels, out...]`.
fn out_shape(n: usize, channels: usize, win: &Window) -> Vec<usize> {
    let mut shape = vec![n, channels];
    shape.extend_from_slice(&win.out);
    shape
}

/// The window over `x` (`[n, c, w]`, `[n, c, h, w]` or `[n, c, d, h,
/// w]`; missing spatial axes are 1) as the kernel takes it; `None` for one
/// it does not (an empty output; `ops::window` has refused zero strides,
/// dilations and kernels).
fn window_shape(x: &[usize], win: &Window) -> Option<WindowShape> {
    let spatial = &x[2..];
    // (depth, height, width), the missing leading axes `fill`.
    let three = |v: &[usize], fill: usize| -> Option<[usize; 3]> {
        if v.len() != spatial.len() {
            return None;
        }
        let mut out = [fill; 3];
        out[3 - v.len()..].copy_from_slice(v);
        Some(out)
    };
    let [d, h, w] = three(spatial, 1)?;
    let shape = WindowShape {
        n: x[0],
        c: x[1],
        d,
        h,
        w,
        kernel: three(&win.kernel, 1)?,
        out: three(&win.out, 1)?,
        strides: three(&win.strides, 1)?,
        dilations: three(&win.dilations, 1)?,
        pads_begin: three(&win.pad_begin, 0)?,
        pads_end: three(&win.pad_end, 0)?,
    };
    let positive = [shape.kernel, shape.out, shape.strides, shape.dilations];
    positive
        .iter()
        .all(|v| v.iter().all(|&d| d > 0))
        .then_some(shape)
}
