//! Ops over rows on the device: every `Reduce*` over any axes (moved
//! last first), `Softmax`/`LogSoftmax` over any axis (moved last and
//! back), and layer normalisation over the last axis.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Dev, OnDevice, Operand, layout};
use crate::NnError;
use crate::gpu::ReduceOp;
use crate::onnx::ops::{self, Node};
use crate::onnx::value::Value;

impl OnDevice<'_> {
    /// A `Reduce*` of a value on the device over
    /// any of its axes (the axes, from opset 13 or 18 an input, on the
    /// host): the reduced axes moved last by a strided copy where they
    /// are not already, then one reduction per row of what they span.
    pub(super) fn reduce(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let op = ReduceOp::of(&node.proto.op_type)?;
        let x = self.first_input(node)?;
        let placeholder = Value::f32(x.shape.clone(), Vec::new());
        let args = layout::host_args(&placeholder, node, host)?;
        let rank = x.shape.len();
        // (`None`: no axes and `noop_with_empty_axes`, the input itself.)
        let Some(axes) = ops::reduce_axes(node, &args, rank).ok()? else {
            return Some(Ok(x));
        };
        // An empty reduction (its identity) or output is the CPU's.
        if x.len() == 0 {
            return None;
        }
        let d = axes.iter().map(|&a| x.shape[a]).product::<usize>();
        let keep = node.int("keepdims", 1) != 0;
        let shape: Vec<usize> = (0..rank)
            .filter_map(|a| match axes.contains(&a) {
                false => Some(x.shape[a]),
                true => keep.then_some(1),
            })
            .collect();
        // The axes kept, then those reduced.
        let order: Vec<usize> = (0..rank)
            .filter(|a| !axes.contains(a))
            .chain(axes.iter().copied())
            .collect();
        let rows = x.len() / d;
        self.try_record(shape, |me, out| {
            let x = me.permuted(x, &order)?;
            me.program()?.reduce_rows(op, &x.buf, (rows, d), out);
            Ok(())
        })
    }

    /// `Softmax` or `LogSoftmax` of a value on the device: before opset
    /// 13 over rows of everything from `axis` on, from it over `axis`
    /// alone (moved last by a strided copy, and back, where it is not).
    pub(super) fn softmax(&mut self, node: Node<'_>) -> Option<Result<Dev, NnError>> {
        let x = self.first_input(node)?;
        let log = node.proto.op_type == "LogSoftmax";
        let rank = x.shape.len();
        let legacy = node.opset < 13;
        let axis = node.int("axis", if legacy { 1 } else { -1 });
        let axis = usize::try_from(if axis < 0 { axis + rank as i64 } else { axis })
            .ok()
            .filter(|&a| a < rank)?;
        let shape = x.shape.clone();
        let d = match legacy {
            true => shape[axis..].iter().product::<usize>(),
            false => shape[axis],
        };
        if d == 0 || x.len() == 0 {
            return None;
        }
        let rows = x.len() / d;
        if legacy || axis + 1 == rank {
            return self.try_record(shape, |me, out| {
                me.program()?.softmax(&x.buf, (rows, d), log, out);
                Ok(())
            });
        }
        let order: Vec<usize> = (0..rank).filter(|&a| a != axis).chain([axis]).collect();
        // (Back: axis `order[k]` from axis `k` of the rows.)
        let mut back = vec![0; rank];
        order.iter().enumerate().for_each(|(k, &a)| back[a] = k);
        self.try_record(shape, |me, out| {
            let moved = me.permuted(x, &order)?;
            let buf = me.buffer(moved.len(), "weft-nn ONNX softmax rows")?;
            me.program()?.softmax(&moved.buf, (rows, d), log, &buf);
            let rowwise = Dev::new(buf, moved.shape);
            me.permute_into(&rowwise, &back, out)
        })
    }

    /// Layer normalisation of `x` over its last axis with weight `w` and
    /// bias `b` (one value per element of that axis).
    pub(super) fn layer_norm(
        &mut self,
        x: Operand<'_>,
        (w, b): (Operand<'_>, Option<Operand<'_>>),
        eps: f32,
    ) -> Option<Result<Dev, NnError>> {
        let d = *x.shape().last()?;
        // `[d]`, or `[1, .., d]` of no higher rank than `x`: what does not
        // broadcast to `x` as one value per element of its last axis is
        // the CPU's to refuse or broadcast.
        let rank = x.shape().len();
        let per_element = |o: &Operand<'_>| {
            let s = o.shape();
            s.len() <= rank && s.last() == Some(&d) && s.iter().rev().skip(1).all(|&n| n == 1)
        };
        if d == 0 || !per_element(&w) || b.as_ref().is_some_and(|b| !per_element(b)) {
            return None;
        }
        let shape = x.shape().to_vec();
        let rows = shape.iter().product::<usize>() / d;
        self.try_record(shape, |me, out| {
            let (x, w) = (me.up(x)?, me.up(w)?);
            let b = b.map(|b| me.up(b)).transpose()?;
            let b = b.as_ref().map(|b| &*b.buf);
            me.program()?
                .layer_norm(&x.buf, (&w.buf, b), rows, d, eps, out);
            Ok(())
        })
    }
}
