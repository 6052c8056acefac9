//! Ops that pick values, on the device: `Where` (its condition a bool
//! from the host or the device, its branches both f32 or both bools,
//! any broadcast) and `Gather` of a value on the
//! device or of a table uploaded at load (embeddings) by host indices,
//! along any axis.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Dev, OnDevice, input};
use crate::NnError;
use crate::onnx::ops::Node;
use crate::onnx::value::{Data, Value, broadcast_shape};

impl OnDevice<'_> {
    /// `Where(c, x, y)` with `c`, `x` or `y` on the device (a decoder's
    /// causal mask from the host over scores on the device, say, or a
    /// comparison made there); each is broadcast to the output's shape
    /// there, `c` as 1s and 0s. Its branches are both f32, or both bools
    /// where `x` is one on the device.
    pub(super) fn pick(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        let c = self.logical_operand(input(p, 0)?, host)?;
        // Both branches f32, or both bools where `x` is one on the device.
        let (x, y) = (input(p, 1)?, input(p, 2)?);
        let (x, y) = match self.values.get(x).is_some_and(|d| d.is_bool) {
            true => (
                self.logical_operand(x, host)?,
                self.logical_operand(y, host)?,
            ),
            false => (self.operand(x, host)?, self.operand(y, host)?),
        };
        let shape =
            broadcast_shape(&broadcast_shape(c.shape(), x.shape()).ok()?, y.shape()).ok()?;
        if shape.contains(&0) {
            return None;
        }
        let count = shape.iter().product();
        self.try_record(shape.clone(), |me, out| {
            let c = me.broadcast(c, &shape)?;
            let (x, y) = (me.broadcast(x, &shape)?, me.broadcast(y, &shape)?);
            me.program()?.pick((&c.buf, &x.buf, &y.buf), count, out);
            Ok(())
        })
    }

    /// `Gather` of a value on the device, or of an initializer uploaded
    /// at load (an embedding table), by indices on the host (any integer
    /// type; negative ones count from the end). Indices out of range
    /// leave the node to the CPU, which says which.
    pub(super) fn gather(
        &mut self,
        node: Node<'_>,
        host: &HashMap<&str, Arc<Value>>,
    ) -> Option<Result<Dev, NnError>> {
        let p = node.proto;
        let x = match self.first_input(node) {
            Some(x) => x,
            None => {
                let name = input(p, 0)?;
                self.uploaded_at_load(name, host.get(name)?)?
            }
        };
        let ind = host.get(input(p, 1)?)?;
        if matches!(ind.data, Data::F32(_) | Data::F64(_) | Data::Bool(_)) {
            return None;
        }
        let rank = x.shape.len() as i64;
        let axis = node.int("axis", 0);
        let axis = usize::try_from(if axis < 0 { axis + rank } else { axis })
            .ok()
            .filter(|&a| a < x.shape.len())?;
        let d = x.shape[axis] as i64;
        let indices: Vec<usize> = ind
            .to_i64()
            .into_iter()
            .map(|i| {
                usize::try_from(if i < 0 { i + d } else { i })
                    .ok()
                    .filter(|&i| (i as i64) < d)
            })
            .collect::<Option<_>>()?;
        let outer: usize = x.shape[..axis].iter().product();
        let inner: usize = x.shape[axis + 1..].iter().product();
        let mut shape = x.shape[..axis].to_vec();
        shape.extend_from_slice(&ind.shape);
        shape.extend_from_slice(&x.shape[axis + 1..]);
        if shape.contains(&0) || x.len() == 0 {
            return None;
        }
        self.try_record(shape, |me, out| {
            me.program()?
                .gather(&x.buf, &indices, (outer, d as usize, inner), out)
        })
    }
}
