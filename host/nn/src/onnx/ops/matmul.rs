//! `MatMul` and `Gemm` on the shared f32 kernel: as written, with B packed
//! at load (`kernels::PackedB`), or with B resident on the GPU.

use rayon::prelude::*;

use super::nn::{from_f32, to_f32};
use super::shape::transpose_perm;
use super::{Node, opt, req};
use crate::NnError;
use crate::gpu::{Gpu, GpuMatrix};
use crate::kernels;
use crate::onnx::value::{
    DType, Data, Value, broadcast_shape, broadcast_to, fail, numel, zip_broadcast,
};

/// `a · b` with numpy `matmul` semantics (1-D promotion, broadcast batch).
pub(crate) fn matmul(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (a, b) = (req(inputs, 0)?, req(inputs, 1)?);
    let mut ash = a.shape.clone();
    let mut bsh = b.shape.clone();
    if ash.is_empty() || bsh.is_empty() {
        return Err(fail("MatMul operands must have rank >= 1"));
    }
    let (a1, b1) = (ash.len() == 1, bsh.len() == 1);
    if a1 {
        ash.insert(0, 1);
    }
    if b1 {
        bsh.push(1);
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        return Err(fail(format!(
            "MatMul of {:?} and {:?}: inner dims differ",
            a.shape, b.shape
        )));
    }
    let (ab, bb) = (&ash[..ash.len() - 2], &bsh[..bsh.len() - 2]);
    let (batch, c) = batched(&to_f32(a), ab, &to_f32(b), bb, (m, k, n))?;
    let mut shape = batch;
    if !a1 {
        shape.push(m);
    }
    if !b1 {
        shape.push(n);
    }
    Ok(from_f32(a.dtype, shape, c))
}

/// The products of `af` (matrices `m × k` under batch dims `ab`) by `bf`
/// (`k × n` under `bb`), the batch dims broadcast: the broadcast batch
/// shape and the `m × n` results, row-major.
pub(super) fn batched(
    af: &[f32],
    ab: &[usize],
    bf: &[f32],
    bb: &[usize],
    (m, k, n): (usize, usize, usize),
) -> Result<(Vec<usize>, Vec<f32>), NnError> {
    let batch = broadcast_shape(ab, bb)?;
    let nb: usize = batch.iter().product();
    numel(&[nb, m, n], "the product")?;
    let mut c = vec![0.0f32; nb * m * n];
    let b_batches: usize = bb.iter().product();
    let a_batches: usize = ab.iter().product();
    if b_batches == 1 && a_batches == nb {
        // One tall product: the weights case.
        kernels::matmul(af, bf, &mut c, nb * m, k, n);
        return Ok((batch, c));
    }
    let ai = broadcast_to(&(0..a_batches).collect::<Vec<_>>(), ab, &batch);
    let bi = broadcast_to(&(0..b_batches).collect::<Vec<_>>(), bb, &batch);
    let one = |(i, cb): (usize, &mut [f32])| {
        let (x, y) = (ai[i], bi[i]);
        kernels::matmul_serial(
            &af[x * m * k..(x + 1) * m * k],
            &bf[y * k * n..(y + 1) * k * n],
            cb,
            m,
            k,
            n,
        );
    };
    if nb >= rayon::current_num_threads() && m * n > 0 {
        c.par_chunks_mut(m * n).enumerate().for_each(one);
    } else if m * n > 0 {
        for (i, cb) in c.chunks_mut(m * n).enumerate() {
            let (x, y) = (ai[i], bi[i]);
            kernels::matmul(
                &af[x * m * k..(x + 1) * m * k],
                &bf[y * k * n..(y + 1) * k * n],
                cb,
                m,
                k,
                n,
            );
        }
    }
    Ok((batch, c))
}

pub(super) fn gemm(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (mut a, mut b) = (req(inputs, 0)?.clone(), req(inputs, 1)?.clone());
    if node.int("transA", 0) != 0 {
        a = transpose_perm(&a, &[1, 0]);
    }
    if node.int("transB", 0) != 0 {
        b = transpose_perm(&b, &[1, 0]);
    }
    let y = matmul(&[Some(&a), Some(&b)])?;
    gemm_finish(node, inputs, y)
}

/// Gemm's `alpha * y + beta * C` on the product `y = A' · B'`.
fn gemm_finish(node: Node<'_>, inputs: &[Option<&Value>], y: Value) -> Result<Value, NnError> {
    let (alpha, beta) = (node.float("alpha", 1.0), node.float("beta", 1.0));
    let mut y = y.cast(DType::F32);
    if let (Data::F32(v), true) = (&mut y.data, alpha != 1.0) {
        v.iter_mut().for_each(|x| *x *= alpha);
    }
    if let Some(c) = opt(inputs, 2) {
        let c = c.cast(DType::F32);
        let (Data::F32(yv), Data::F32(cv)) = (&y.data, &c.data) else {
            unreachable!()
        };
        let (v, s) = zip_broadcast(yv, &y.shape, cv, &c.shape, |p, q| p + beta * q)?;
        y = Value::f32(s, v);
    }
    Ok(y.cast(req(inputs, 0)?.dtype))
}

/// `MatMul` with B resident on the GPU: A's leading dims fold into the
/// rows of one product (a half A, held in f32, as f32; the result rounded
/// to its type). `None` (run it on the CPU instead) when A is not a float
/// held in f32 or its shape does not fit B; the CPU path reports those.
pub(crate) fn matmul_resident(
    inputs: &[Option<&Value>],
    gpu: &Gpu,
    w: &GpuMatrix,
) -> Option<Result<Value, NnError>> {
    let a = opt(inputs, 0)?;
    let (Data::F32(av), DType::F32 | DType::F16 | DType::Bf16) = (&a.data, a.dtype) else {
        return None;
    };
    let (&k, lead) = a.shape.split_last()?;
    if k != w.rows() {
        return None;
    }
    let m = lead.iter().product();
    let mut shape = lead.to_vec();
    shape.push(w.cols());
    Some(
        gpu.matmul_weights(av, m, k, w)
            .map(|c| from_f32(a.dtype, shape, c)),
    )
}

/// `MatMul` of an f32 A (rank >= 2) by a weight packed at load: A's
/// leading dims fold into the rows of one product. `None` (run it as
/// written) when A does not suit; the plain path reports errors.
pub(crate) fn matmul_packed(
    inputs: &[Option<&Value>],
    w: &kernels::PackedB,
) -> Option<Result<Value, NnError>> {
    let a = opt(inputs, 0)?;
    let (Data::F32(av), DType::F32 | DType::F16 | DType::Bf16) = (&a.data, a.dtype) else {
        return None;
    };
    let (&k, lead) = a.shape.split_last()?;
    if k != w.k() || lead.is_empty() || w.int8().is_some() {
        return None;
    }
    let m = lead.iter().product();
    if let Err(e) = numel(&[m, w.n()], "the product") {
        return Some(Err(e));
    }
    let mut c = vec![0.0; m * w.n()];
    kernels::matmul_packed(av, w, &mut c, m, true);
    let mut shape = lead.to_vec();
    shape.push(w.n());
    Some(Ok(from_f32(a.dtype, shape, c)))
}

/// `Gemm` with B (transposed already when `transB` says so) resident on
/// the GPU; `None` as for [`matmul_resident`].
pub(crate) fn gemm_resident(
    node: Node<'_>,
    inputs: &[Option<&Value>],
    gpu: &Gpu,
    w: &GpuMatrix,
) -> Option<Result<Value, NnError>> {
    let a = opt(inputs, 0)?;
    // (gemm_finish rounds a half's result to its type.)
    if !matches!(a.dtype, DType::F32 | DType::F16 | DType::Bf16) || a.shape.len() != 2 {
        return None;
    }
    let transposed;
    let a = if node.int("transA", 0) != 0 {
        transposed = transpose_perm(a, &[1, 0]);
        &transposed
    } else {
        a
    };
    let Data::F32(av) = &a.data else {
        return None;
    };
    let (m, k) = (a.shape[0], a.shape[1]);
    if k != w.rows() {
        return None;
    }
    Some(
        gpu.matmul_weights(av, m, k, w)
            .and_then(|c| gemm_finish(node, inputs, Value::f32(vec![m, w.cols()], c))),
    )
}
