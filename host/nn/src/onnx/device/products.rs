//! Products on the device besides `MatMul` by a resident weight: `Gemm`
//! by one (its scalings and C applied after), two-operand `Einsum`s, and `MatMul` of two activations
//! (attention's scores and mix in a graph whose attention is not fused).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Dev, OnDevice, Operand, input};
use crate::gpu::{BinaryOp, ReduceOp};
use crate::onnx::ops::{self, Node, einsum};
use crate::onnx::value::{Value, broadcast_shape};
use crate::{NnError, NnErrorKind};

impl OnDevice<'_> {
    /// `Gemm` by a resident weight: `alpha · A' · B + beta · C`, A (2-D)
    /// transposed first by a strided copy if `transA` says so, the
    /// scalings recorded only where they are not 1, and C (if any)
    /// broadcast to the result as `binary` does.
    pub(super) fn gemm(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        let w = self.weights.for_node(p)?;
        let a = self.operand(input(p, 0)?, host)?;
        let trans_a = node.int("transA", 0) != 0;
        let (rows, k) = match *a.shape() {
            [r, k] if !trans_a => (r, k),
            [k, r] => (r, k),
            _ => return None,
        };
        let (alpha, beta) = (node.float("alpha", 1.0), node.float("beta", 1.0));
        let c = match input(p, 2) {
            Some(c) => Some(self.operand(c, host)?),
            None => None,
        };
        let shape = vec![rows, w.cols()];
        // A C that does not broadcast to the result is the CPU's to refuse.
        if k != w.rows()
            || rows * k == 0
            || c.as_ref()
                .is_some_and(|c| broadcast_shape(c.shape(), &shape).ok() != Some(shape.clone()))
        {
            return None;
        }
        let product = self.try_record(shape.clone(), |me, out| {
            let a = me.up(a)?;
            let a = if trans_a { me.permuted(a, &[1, 0])? } else { a };
            me.program()?.product(&a.buf, rows, w, out);
            Ok(())
        })?;
        let scaled = |me: &mut Self, x: Dev, by: f32| {
            if by == 1.0 {
                return Ok(x);
            }
            let by = me.scalar(by)?;
            fitted(me.binary(BinaryOp::Mul, Operand::Dev(x), Operand::Dev(by)))
        };
        Some(product.and_then(|y| {
            let y = scaled(self, y, alpha)?;
            let Some(c) = c else {
                return Ok(y);
            };
            let c = self.up(c)?;
            let c = scaled(self, c, beta)?;
            fitted(self.binary(BinaryOp::Add, Operand::Dev(y), Operand::Dev(c)))
        }))
    }

    /// `Einsum` of two operands, each label once per term (`...` and an
    /// implicit output as the CPU reads them): a batched product
    /// ([`einsum::Product`]), each operand permuted to `[batch, rows,
    /// summed]` and `[batch, summed, columns]`, and the product to the
    /// output's order.
    /// Of one operand, a permutation and a sum over the labels not in the
    /// output ([`OnDevice::einsum_of_one`]). Anything else (a label summed
    /// over in one operand of two, a diagonal, a size-1 broadcast, more
    /// operands) runs on the CPU.
    pub(super) fn einsum(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        let a = self.operand(input(p, 0)?, host)?;
        let b = match p.inputs.len() {
            1 => None,
            2 => Some(self.operand(input(p, 1)?, host)?),
            _ => return None,
        };
        let ranks: Vec<usize> = [Some(&a), b.as_ref()]
            .into_iter()
            .flatten()
            .map(|o| o.shape().len())
            .collect();
        // (A bad equation is the CPU's to refuse.)
        let (terms, to) = einsum::terms(&einsum::equation(node), &ranks).ok()?;
        let Some(b) = b else {
            // (A diagonal, a label twice in a term, is the CPU's.)
            if !einsum::distinct(&terms[0]) || !einsum::distinct(&to) {
                return None;
            }
            return self.einsum_of_one(a, &terms[0], &to);
        };
        let plan = einsum::Product::of((&terms[0], a.shape()), (&terms[1], b.shape()), &to)?;
        self.try_record(plan.out_shape(), |me, out| {
            let (a, b) = (me.up(a)?, me.up(b)?);
            let (a, b) = (
                me.permuted(a, &plan.order_a)?,
                me.permuted(b, &plan.order_b)?,
            );
            let [nb, nm, nk, nn] = plan.dims;
            let strides = (nm * nk, nk * nn);
            if ops::unpermuted(&plan.order_out) {
                return me
                    .program()?
                    .batched_product((&a.buf, &b.buf), plan.dims, strides, out);
            }
            let buf = me.buffer(nb * nm * nn, "weft-nn ONNX Einsum product")?;
            me.program()?
                .batched_product((&a.buf, &b.buf), plan.dims, strides, &buf)?;
            let product = Dev::new(buf, plan.mid_shape.clone());
            me.permute_into(&product, &plan.order_out, out)
        })
    }

    /// `Einsum` of one operand labelled `term` (each label once) into the
    /// labels `to`, all of them the operand's: the operand permuted to the
    /// output's labels then the rest, and each row of the rest summed (no
    /// sum where there is none).
    fn einsum_of_one(
        &mut self,
        x: Operand<'_>,
        term: &[char],
        to: &[char],
    ) -> Option<Result<Dev, NnError>> {
        let pos = |c: &char| term.iter().position(|l| l == c);
        let kept: Vec<usize> = to.iter().map(pos).collect::<Option<_>>()?;
        let order: Vec<usize> = kept
            .iter()
            .copied()
            .chain((0..term.len()).filter(|i| !kept.contains(i)))
            .collect();
        let shape: Vec<usize> = kept.iter().map(|&i| x.shape()[i]).collect();
        let (rows, len) = (
            shape.iter().product::<usize>(),
            x.shape().iter().product::<usize>(),
        );
        if len == 0 {
            return None;
        }
        self.try_record(shape, |me, out| {
            let x = me.up(x)?;
            if kept.len() == term.len() {
                return me.permute_into(&x, &order, out);
            }
            let moved = me.permuted(x, &order)?;
            me.program()?
                .reduce_rows(ReduceOp::Sum, &moved.buf, (rows, len / rows), out);
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

/// What a recorded step gave; one that did not fit in a buffer (a step of
/// a node whose output did) is refused as too large, so the node runs on
/// the CPU.
fn fitted(step: Option<Result<Dev, NnError>>) -> Result<Dev, NnError> {
    step.unwrap_or_else(|| {
        Err(NnError::new(
            NnErrorKind::TooLarge,
            "a step does not fit in one device buffer",
        ))
    })
}
