//! Products on the device besides `MatMul` by a resident weight: `Gemm`
//! by one (its bias added after), and `MatMul` of two activations
//! (attention's scores and mix in a graph whose attention is not fused).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Dev, OnDevice, input, row_broadcast};
use crate::NnError;
use crate::gpu::BinaryOp;
use crate::onnx::ops::Node;
use crate::onnx::value::{Value, broadcast_shape};

impl OnDevice<'_> {
    /// `Gemm` by a resident weight: `A · B (+ C)`, with A 2-D and not
    /// transposed, `alpha` 1 and C (if any) a row of the result scaled by
    /// a `beta` of 1. Anything else runs on the CPU.
    pub(super) fn gemm(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        let w = self.weights.for_node(p)?;
        let a = self.operand(input(p, 0)?, host)?;
        let &[rows, k] = a.shape() else {
            return None;
        };
        if k != w.rows() || node.int("transA", 0) != 0 || node.float("alpha", 1.0) != 1.0 {
            return None;
        }
        let shape = vec![rows, w.cols()];
        let c = match input(p, 2) {
            Some(c) => {
                let c = self.operand(c, host)?;
                let fits = node.float("beta", 1.0) == 1.0 && row_broadcast(c.shape(), &shape);
                Some(fits.then_some(c)?)
            }
            None => None,
        };
        let count = rows * w.cols();
        self.try_record(shape, |me, out| {
            let a = me.up(a)?;
            let Some(c) = c else {
                me.program()?.product(&a.buf, rows, w, out);
                return Ok(());
            };
            let c = me.up(c)?;
            let y = me.buffer(count, "weft-nn ONNX Gemm product")?;
            let period = c.len();
            let program = me.program()?;
            program.product(&a.buf, rows, w, &y);
            program.binary(BinaryOp::Add, (&y, &c.buf), period, count, out);
            Ok(())
        })
    }

    /// `MatMul` of two values at least one of which is on the device, both
    /// of rank 2 or more: one product per matrix of their (broadcast)
    /// leading dims. A side whose leading dims are all 1 is shared by
    /// every product; leading dims that broadcast otherwise (`[2, 1]` by
    /// `[1, 3]`), like 1-D operands, are the CPU's.
    pub(super) fn product_of_two(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        let a = self.operand(input(p, 0)?, host)?;
        let b = self.operand(input(p, 1)?, host)?;
        let ([lead_a @ .., m, k], [lead_b @ .., k2, n]) = (a.shape(), b.shape()) else {
            return None;
        };
        let (m, k, n) = (*m, *k, *n);
        // (An empty product is the CPU's: zeros, or its error.)
        if k != *k2 || m * k * n == 0 {
            return None;
        }
        let mut shape = broadcast_shape(lead_a, lead_b).ok()?;
        let batches: usize = shape.iter().product();
        if batches == 0 {
            return None;
        }
        let stride = |lead: &[usize], size: usize| match lead.iter().product::<usize>() {
            1 => Some(0),
            d if d == batches => Some(size),
            _ => None,
        };
        let strides = (stride(lead_a, m * k)?, stride(lead_b, k * n)?);
        shape.extend([m, n]);
        self.try_record(shape, |me, out| {
            let (a, b) = (me.up(a)?, me.up(b)?);
            me.program()?
                .batched_product((&a.buf, &b.buf), [batches, m, k, n], strides, out)
        })
    }
}
