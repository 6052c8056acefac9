//! Ops that move data rather than compute it, on the device: `Transpose`,
//! `Slice` and `Expand` as one strided copy each ([`ops::strided_view`]
//! says where each element comes from, for the CPU as for the device),
//! `Tile` and a constant `Pad` as one strided copy each, an `edge`,
//! `reflect` or `wrap` `Pad` as one gather, `Concat` and `Split` as one
//! per part;
//! `Resize` as one resampling per axis it changes.
//!
//! [`ops::strided_view`]: crate::onnx::ops::strided_view

use std::collections::HashMap;
use std::sync::Arc;

use super::{Dev, OnDevice, Operand, input};
use crate::NnError;
use crate::gpu::{Buffer, StridedCopy};
use crate::onnx::ops::{self, Node};
use crate::onnx::value::{Value, strides};

/// Row-major strides of `shape`, signed.
fn dense(shape: &[usize]) -> Vec<i64> {
    strides(shape).into_iter().map(|s| s as i64).collect()
}

impl OnDevice<'_> {
    /// `Transpose`, `Slice` or `Expand` of a value on the device, whose
    /// other inputs (starts, ends, shape) are on the host.
    pub(super) fn strided(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let x = self.first_input(node)?;
        let placeholder = Value::f32(x.shape.clone(), Vec::new());
        let args = host_args(&placeholder, node, host)?;
        // A node it cannot describe runs on the CPU, which says why; an
        // empty input or output is the CPU's too.
        let view = ops::strided_view(node, &args)?.ok()?;
        if x.len() == 0 || view.shape.contains(&0) {
            return None;
        }
        let to = dense(&view.shape);
        self.try_record(view.shape.clone(), |me, out| {
            let copy = StridedCopy {
                dims: &view.shape,
                from: (view.offset, &view.strides),
                to: (0, &to),
            };
            me.program()?.strided(&x.buf, copy, out)
        })
    }

    /// `op` on the device with the shape `to`, which it broadcasts to:
    /// itself if it has that shape, else a strided copy repeating it.
    pub(super) fn broadcast(&mut self, op: Operand<'_>, to: &[usize]) -> Result<Dev, NnError> {
        let d = self.up(op)?;
        if d.shape == to {
            return Ok(d);
        }
        let buf = self.buffer(to.iter().product(), "weft-nn ONNX broadcast operand")?;
        let copy = StridedCopy {
            dims: to,
            from: (0, &ops::broadcast_strides(&d.shape, to)),
            to: (0, &dense(to)),
        };
        self.program()?.strided(&d.buf, copy, &buf)?;
        Ok(Dev::new(buf, to.to_vec()))
    }

    /// `Split` of a value on the device (its sizes, if an input, on the
    /// host): one strided copy per part, each output recorded here.
    pub(super) fn split(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<(), NnError>> {
        let p = node.proto;
        let x = self.first_input(node)?;
        let placeholder = Value::f32(x.shape.clone(), Vec::new());
        let args = host_args(&placeholder, node, host)?;
        let (axis, sizes) = ops::split_sizes(node, &args).ok()?;
        // Sizes that do not name each output, or empty parts, are the CPU's.
        if x.len() == 0 || sizes.len() != p.outputs.len() || sizes.contains(&0) {
            return None;
        }
        let from = dense(&x.shape);
        let mut parts = Vec::new();
        let mut start = 0;
        for (name, &len) in p.outputs.iter().zip(&sizes) {
            let mut shape = x.shape.clone();
            shape[axis] = len;
            let at = start as i64 * from[axis];
            start += len;
            if name.is_empty() {
                continue;
            }
            let to = dense(&shape);
            let part = self.try_record(shape.clone(), |me, out| {
                let copy = StridedCopy {
                    dims: &shape,
                    from: (at, &from),
                    to: (0, &to),
                };
                me.program()?.strided(&x.buf, copy, out)
            })?;
            match part {
                Ok(part) => parts.push((name.clone(), part)),
                Err(e) => return Some(Err(e)),
            }
        }
        self.values.extend(parts);
        Some(Ok(()))
    }

    /// `Tile` of a value on the device by host repeats: one strided copy,
    /// each axis `d` seen as `[repeats, d]` read with a stride of 0 on
    /// the repeats.
    pub(super) fn tile(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let x = self.first_input(node)?;
        let reps = host.get(input(node.proto, 1)?)?.to_i64();
        // Repeats of 0, or not one per axis, are the CPU's.
        if x.len() == 0 || reps.len() != x.shape.len() || reps.iter().any(|&r| r < 1) {
            return None;
        }
        let shape: Vec<usize> = (x.shape.iter().zip(&reps))
            .map(|(&d, &r)| d * r as usize)
            .collect();
        let (from_x, to_out) = (dense(&x.shape), dense(&shape));
        let (mut dims, mut from, mut to) = (Vec::new(), Vec::new(), Vec::new());
        for (a, &d) in x.shape.iter().enumerate() {
            dims.extend([reps[a] as usize, d]);
            from.extend([0, from_x[a]]);
            to.extend([d as i64 * to_out[a], to_out[a]]);
        }
        self.try_record(shape, |me, out| {
            let copy = StridedCopy {
                dims: &dims,
                from: (0, &from),
                to: (0, &to),
            };
            me.program()?.strided(&x.buf, copy, out)
        })
    }

    /// `Pad` of a value on the device (its pads, value and axes on the
    /// host); negative pads crop. In `constant` mode, the part of the
    /// input that lands in the output is copied into a buffer of the pad
    /// value (a new buffer is zeros; another value is written first); in
    /// `edge`, `reflect` and `wrap` modes each output element is gathered
    /// from where the CPU takes it.
    pub(super) fn pad(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        let mode = match node.string("mode", "constant").as_str() {
            "constant" => None,
            "edge" => Some(0),
            "reflect" => Some(1),
            "wrap" => Some(2),
            _ => return None,
        };
        let x = self.first_input(node)?;
        let r = x.shape.len();
        let (pads, value) = if node.opset < 11 {
            let pads = node.ints("pads").or_else(|| node.ints("paddings"))?;
            (pads, node.float("value", 0.0))
        } else {
            let value = match (mode, input(p, 2)) {
                (None, Some(v)) => super::host_scalar(host, v)?,
                _ => 0.0,
            };
            (host.get(input(p, 1)?)?.to_i64(), value)
        };
        let axes: Vec<usize> = match input(p, 3) {
            Some(a) => (host.get(a)?.to_i64().iter())
                .map(|&a| ops::axis(a, r).ok())
                .collect::<Option<_>>()?,
            None => (0..r).collect(),
        };
        // Pads that do not fit the axes are the CPU's to refuse.
        if pads.len() != 2 * axes.len() {
            return None;
        }
        let (mut before, mut after) = (vec![0i64; r], vec![0i64; r]);
        for (i, &a) in axes.iter().enumerate() {
            (before[a], after[a]) = (pads[i], pads[i + axes.len()]);
        }
        let shape: Vec<usize> = (0..r)
            .map(|a| {
                (x.shape[a] as i64)
                    .saturating_add(before[a])
                    .saturating_add(after[a])
                    .max(0) as usize
            })
            .collect();
        // (An output past what a buffer holds is the CPU's to refuse.)
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
        if x.len() == 0 || count == 0 || !self.fits(count) {
            return None;
        }
        if let Some(mode) = mode {
            let strides = dense(&x.shape);
            return self.try_record(shape.clone(), |me, out| {
                let from = (&*x.buf, x.shape.as_slice(), strides.as_slice());
                me.program()?.pad_edges(from, mode, &before, (out, &shape))
            });
        }
        // Along each axis, the input from `-before` (if cropped) to where
        // the output ends.
        let kept: Vec<usize> = (0..r)
            .map(|a| {
                let first = (-before[a]).max(0);
                let end = (x.shape[a] as i64).min(shape[a] as i64 - before[a]);
                (end - first).max(0) as usize
            })
            .collect();
        let (from, to) = (dense(&x.shape), dense(&shape));
        let from_at = (0..r).map(|a| (-before[a]).max(0) * from[a]).sum();
        let to_at = (0..r).map(|a| before[a].max(0) * to[a]).sum();
        self.try_record(shape, |me, out| {
            // (-0.0 is not a new buffer's zeros.)
            if value.to_bits() != 0 {
                me.program()?.write(out, vec![value; count]);
            }
            if kept.contains(&0) {
                return Ok(());
            }
            let copy = StridedCopy {
                dims: &kept,
                from: (from_at, &from),
                to: (to_at, &to),
            };
            me.program()?.strided(&x.buf, copy, out)
        })
    }

    /// `Resize` (or `Upsample`) of a value on the device, its other inputs
    /// (roi, scales, sizes) on the host: one `resample` dispatch per axis
    /// it changes, with the taps the CPU would use.
    pub(super) fn resize(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let x = self.first_input(node)?;
        let placeholder = Value::f32(x.shape.clone(), Vec::new());
        let args = host_args(&placeholder, node, host)?;
        // A resize it cannot plan runs on the CPU, which says why.
        let plan = ops::resize_plan(node, &args).ok()?;
        let mut shape = x.shape.clone();
        for step in &plan {
            shape[step.axis] = step.len_out;
        }
        if x.len() == 0 || shape.contains(&0) {
            return None;
        }
        if plan.is_empty() {
            // Nothing changes: the same buffer.
            return Some(Ok(x));
        }
        self.try_record(shape, |me, out| {
            let mut cur = x;
            for (i, step) in plan.iter().enumerate() {
                let outer = cur.shape[..step.axis].iter().product();
                let inner = cur.shape[step.axis + 1..].iter().product();
                let dims = (outer, cur.shape[step.axis], inner);
                if i + 1 == plan.len() {
                    return me.program()?.resample(&cur.buf, dims, &step.taps, out);
                }
                let mut shape = cur.shape.clone();
                shape[step.axis] = step.len_out;
                let buf = me.buffer(shape.iter().product(), "weft-nn resize step")?;
                me.program()?.resample(&cur.buf, dims, &step.taps, &buf)?;
                cur = Dev::new(buf, shape);
            }
            Ok(())
        })
    }

    /// `x` with its axes in `order` (`order[i]` is the axis of `x` that
    /// becomes axis `i`): itself where that is their order already, else
    /// a strided copy.
    pub(super) fn permuted(&mut self, x: Dev, order: &[usize]) -> Result<Dev, NnError> {
        if ops::unpermuted(order) {
            return Ok(x);
        }
        let shape: Vec<usize> = order.iter().map(|&a| x.shape[a]).collect();
        let buf = self.buffer(x.len(), "weft-nn ONNX permuted operand")?;
        self.permute_into(&x, order, &buf)?;
        Ok(Dev::new(buf, shape))
    }

    /// Records the copy of `x` with its axes in `order` (as
    /// [`OnDevice::permuted`]) into `out`.
    pub(super) fn permute_into(
        &mut self,
        x: &Dev,
        order: &[usize],
        out: &Buffer,
    ) -> Result<(), NnError> {
        let shape: Vec<usize> = order.iter().map(|&a| x.shape[a]).collect();
        let from = dense(&x.shape);
        let from: Vec<i64> = order.iter().map(|&a| from[a]).collect();
        let copy = StridedCopy {
            dims: &shape,
            from: (0, &from),
            to: (0, &dense(&shape)),
        };
        self.program()?.strided(&x.buf, copy, out)
    }

    /// `Concat` of f32 values or of bools, one of them at least on the
    /// device.
    pub(super) fn concat(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        // All f32, or all bools where one on the device is.
        let bools = p
            .inputs
            .iter()
            .any(|n| self.values.get(n).is_some_and(|d| d.is_bool));
        let parts = (p.inputs.iter())
            .map(|n| match bools {
                true => self.logical_operand(n, host),
                false => self.operand(n, host),
            })
            .collect::<Option<Vec<_>>>()?;
        let first = parts.first()?.shape().to_vec();
        let rank = first.len();
        let axis = ops::axis(node.int("axis", 0), rank).ok()?;
        let off_axis =
            |s: &[usize]| s.len() == rank && (0..rank).all(|a| a == axis || s[a] == first[a]);
        if !parts.iter().all(|o| off_axis(o.shape())) {
            return None;
        }
        let mut shape = first;
        shape[axis] = parts.iter().map(|o| o.shape()[axis]).sum();
        if shape.contains(&0) {
            return None;
        }
        let to = dense(&shape);
        self.try_record(shape, |me, out| {
            let mut at = 0;
            for part in parts {
                let part = me.up(part)?;
                let dims = &part.shape;
                if dims[axis] > 0 {
                    let copy = StridedCopy {
                        dims,
                        from: (0, &dense(dims)),
                        to: (at * to[axis], &to),
                    };
                    me.program()?.strided(&part.buf, copy, out)?;
                }
                at += dims[axis] as i64;
            }
            Ok(())
        })
    }
}

/// `node`'s inputs for reading its output's shape: `placeholder` (the
/// shape of its input on the device) first, then the host values of the
/// rest (`None`: one is on the device, so the node is the CPU's).
pub(super) fn host_args<'v>(
    placeholder: &'v Value,
    node: Node<'_>,
    host: &'v HashMap<&str, Arc<Value>>,
) -> Option<Vec<Option<&'v Value>>> {
    let mut args = vec![Some(placeholder)];
    for n in &node.proto.inputs[1..] {
        match host.get(n.as_str()) {
            Some(v) => args.push(Some(&**v)),
            None if n.is_empty() => args.push(None),
            None => return None,
        }
    }
    Some(args)
}
