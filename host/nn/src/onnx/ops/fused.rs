//! The kernels of the fused nodes `onnx/fuse.rs` makes: one pass over the
//! activations where the graph as written takes five to nine.

use rayon::prelude::*;

use super::{fail, req};
use crate::onnx::value::{DType, Data, Value, round_to_half};
use crate::{NnError, simd};

/// Fused operators that can write over their first input.
pub(super) const IN_PLACE: &[&str] = &["WeftGelu", "WeftLayerNorm"];

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// Runs fused node `f` on `inputs` whose first is of another float type
/// than f32 (an fp16, bf16 or f64 export; fusion sees no types): every
/// float input as f32, and the result rounded back to that type. (More
/// exact than the nodes it replaced, each of which rounds; the way
/// onnxruntime's fused fp16 kernels compute too.) Other types run as they
/// are, and the kernels refuse what is not f32.
pub(super) fn widened(
    inputs: &[Option<&Value>],
    f: impl FnOnce(&[Option<&Value>]) -> Result<Value, NnError>,
) -> Result<Value, NnError> {
    let Some(dtype) = (inputs.first().copied().flatten())
        .map(|x| x.dtype)
        .filter(|&t| t != DType::F32 && t.is_float())
    else {
        return f(inputs);
    };
    // Halves are held in f32 already: the kernels read them as they are.
    if is_half(dtype) {
        let mut out = f(inputs)?;
        round_to_half(&mut out, dtype);
        return Ok(out);
    }
    let wide: Vec<Option<Value>> = inputs
        .iter()
        .map(|v| {
            v.map(|v| {
                v.cast(if v.dtype.is_float() {
                    DType::F32
                } else {
                    v.dtype
                })
            })
        })
        .collect();
    let args: Vec<Option<&Value>> = wide.iter().map(Option::as_ref).collect();
    Ok(f(&args)?.cast(dtype))
}

fn scalar(inputs: &[Option<&Value>], i: usize) -> Result<f32, NnError> {
    match &req(inputs, i)?.data {
        Data::F32(v) if v.len() == 1 => Ok(v[0]),
        _ => Err(fail(format!(
            "input {i} of a fused node is not an f32 scalar"
        ))),
    }
}

fn floats<'a>(inputs: &[Option<&'a Value>], i: usize) -> Result<&'a [f32], NnError> {
    match &req(inputs, i)?.data {
        Data::F32(v) => Ok(v),
        _ => Err(fail(format!("input {i} of a fused node is not f32"))),
    }
}

/// F16 or BF16, which values hold in f32 (exact): the kernels take them
/// as f32, and [`widened`] rounds what they give.
fn is_half(t: DType) -> bool {
    matches!(t, DType::F16 | DType::Bf16)
}

/// Runs `WeftGelu` or `WeftLayerNorm` on `x` (owned: written over).
pub(super) fn run(op: &str, inputs: &[Option<&Value>], mut x: Value) -> Result<Value, NnError> {
    if x.dtype != DType::F32 && !is_half(x.dtype) {
        return Err(fail(format!("{op} takes f32, not {:?}", x.dtype)));
    }
    let d = x.shape.last().copied().unwrap_or(1).max(1);
    let Data::F32(data) = &mut x.data else {
        return Err(fail(format!("{op} takes f32")));
    };
    match op {
        "WeftGelu" => {
            let (root2, one, half) = (scalar(inputs, 1)?, scalar(inputs, 2)?, scalar(inputs, 3)?);
            let f = |c: &mut [f32]| gelu(c, root2, one, half);
            if data.len() > CHUNK {
                data.par_chunks_mut(CHUNK).for_each(f);
            } else {
                f(data);
            }
        }
        "WeftLayerNorm" => {
            let eps = scalar(inputs, 1)?;
            let (w, b) = (floats(inputs, 2)?, floats(inputs, 3)?);
            if w.len() != d || b.len() != d {
                return Err(fail(format!(
                    "layer norm over {d} values with {} weights and {} biases",
                    w.len(),
                    b.len()
                )));
            }
            let row = |r: &mut [f32]| layer_norm(r, w, b, eps);
            let rows_per_task = (CHUNK / d).max(1);
            if data.len() > CHUNK {
                data.par_chunks_mut(rows_per_task * d)
                    .for_each(|c| c.chunks_mut(d).for_each(row));
            } else {
                data.chunks_mut(d).for_each(row);
            }
        }
        other => return Err(fail(format!("unknown fused operator {other}"))),
    }
    Ok(x)
}

simd::wide_fn! {
    /// Exact GELU in the graph's order: Div, Erf, Add, Mul(x), Mul(0.5).
    fn gelu(c: &mut [f32], root2: f32, one: f32, half: f32) {
        let erf = super::elementwise::erf_f32;
        c.iter_mut()
            .for_each(|v| *v = (*v * (erf(*v / root2) + one)) * half)
    }
}

simd::wide_fn! {
    /// One row of a layer norm: mean and variance in f64, then
    /// `(v - mean) / sqrt(var + eps) * w + b`.
    fn layer_norm(r: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
        let d = r.len() as f64;
        let mean = (simd::sum_f64(r, |v| v) / d) as f32;
        r.iter_mut().for_each(|v| *v -= mean);
        let var = (simd::sum_f64(r, |v| v * v) / d) as f32;
        let q = (var + eps).sqrt();
        r.iter_mut()
            .zip(w.iter().zip(b))
            .for_each(|(v, (&w, &b))| *v = *v / q * w + b);
    }
}

/// `WeftMatMulBias`: A·W + bias, W 2-D and bias one value per column,
/// the product written from the broadcast bias (no separate pass).
///
/// Two optional steps fused from the nodes that read the product (see
/// `fuse::epilogues`) run on each stretch of it as the kernel finishes it,
/// while it is in cache: input 3, a residual added (`Add`), and inputs
/// 4-6, GELU's scalars (`WeftGelu`), in that order. A residual that is not
/// f32 is refused (an `Add` of two types is not valid ONNX; the unfused
/// `Add` would cast it).
pub(super) fn matmul_bias(
    inputs: &[Option<&Value>],
    packed: Option<&crate::kernels::PackedB>,
) -> Result<Value, NnError> {
    let (a, w) = (req(inputs, 0)?, req(inputs, 1)?);
    let bias = floats(inputs, 2)?;
    let (Data::F32(x), Data::F32(wd), DType::F32 | DType::F16 | DType::Bf16) =
        (&a.data, &w.data, a.dtype)
    else {
        return Err(fail("WeftMatMulBias takes f32"));
    };
    let (&[k, n], Some(&ka)) = (w.shape.as_slice(), a.shape.last()) else {
        return Err(fail(format!(
            "WeftMatMulBias: weight of shape {:?}",
            w.shape
        )));
    };
    if ka != k || bias.len() != n {
        return Err(fail(format!(
            "MatMul of {:?} and {:?} with a bias of {}",
            a.shape,
            w.shape,
            bias.len()
        )));
    }
    let gelu_args = match inputs.get(4) {
        Some(_) => Some((scalar(inputs, 4)?, scalar(inputs, 5)?, scalar(inputs, 6)?)),
        None => None,
    };
    let rows: usize = a.shape[..a.shape.len() - 1].iter().product();
    let mut shape = a.shape.clone();
    *shape.last_mut().expect("rank >= 1") = n;
    // A residual of the product's own shape is added as the product is
    // finished; any other (a broadcast) by the `Add` it came from, after.
    let residual = super::opt(inputs, 3);
    if let Some(r) = residual
        && r.dtype != a.dtype
    {
        return Err(fail(format!(
            "a residual of {:?} added to a product of {:?}: Add takes two of one type",
            r.dtype, a.dtype
        )));
    }
    let in_kernel = residual.map(|r| match &r.data {
        Data::F32(v) if r.shape == shape => Some(v.as_slice()),
        _ => None,
    });
    let late = matches!(in_kernel, Some(None));
    let post = |row: usize, j0: usize, seg: &mut [f32]| {
        if let Some(Some(res)) = in_kernel {
            let res = &res[row * n + j0..][..seg.len()];
            seg.iter_mut().zip(res).for_each(|(v, r)| *v += r);
        }
        if let (Some((root2, one, half)), false) = (gelu_args, late) {
            gelu(seg, root2, one, half);
        }
    };
    let finish = if matches!(in_kernel, Some(Some(_))) || (gelu_args.is_some() && !late) {
        crate::kernels::Finish::new(&post)
    } else {
        crate::kernels::Finish::NONE
    };
    // Zeroed pages from the allocator cost nothing until the product's
    // threads write them; the kernels write every value, bias included.
    let mut c = vec![0.0; rows * n];
    match packed {
        Some(p) if (p.k(), p.n()) == (k, n) => {
            crate::kernels::matmul_packed_bias(x, p, bias, &mut c, rows, finish)
        }
        _ => crate::kernels::matmul_bias(x, wd, bias, &mut c, (rows, k, n), finish),
    }
    let out = a.with(shape, Data::F32(c));
    match (residual, late) {
        (Some(r), true) => {
            let mut sum = super::binary::binary(&out, r, super::binary::Bin::Add).map_err(|e| {
                let at = format!("the residual Add after a product of {:?}", out.shape);
                NnError::new(e.kind, format!("{at}: {}", e.message))
            })?;
            if let (Some((root2, one, half)), Data::F32(v)) = (gelu_args, &mut sum.data) {
                gelu(v, root2, one, half);
            }
            Ok(sum)
        }
        _ => Ok(out),
    }
}

/// A `Reshape` target (`0` copies the input's dim, `-1` is inferred)
/// resolved against `shape`.
pub(crate) fn reshape_target(target: &Value, shape: &[usize]) -> Result<Vec<usize>, NnError> {
    let Data::I64(t) = &target.data else {
        return Err(fail("WeftAttention: a head shape is not int64"));
    };
    let total: usize = shape.iter().product();
    let mut out: Vec<usize> = Vec::with_capacity(t.len());
    let mut infer = None;
    for (i, &d) in t.iter().enumerate() {
        match d {
            0 => out.push(
                *shape
                    .get(i)
                    .ok_or_else(|| fail("WeftAttention: bad head shape"))?,
            ),
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            d if d > 0 => out.push(d as usize),
            _ => return Err(fail(format!("WeftAttention: head shape {t:?}"))),
        }
    }
    if let Some(i) = infer {
        let known: usize = out.iter().product();
        out[i] = total.checked_div(known).unwrap_or(0);
    }
    if out.iter().product::<usize>() != total {
        return Err(fail(format!(
            "WeftAttention: cannot view {shape:?} as {t:?}"
        )));
    }
    Ok(out)
}

/// The strides at which `WeftAttention` reads a mask of shape `mask`
/// broadcast to `want` (`[B, H, S, S]`): 0 along the axes where it has
/// size 1.
pub(crate) fn mask_strides(mask: &[usize], want: [usize; 4]) -> Result<[usize; 4], NnError> {
    if mask.len() > 4 {
        return Err(fail(format!("WeftAttention: mask of shape {mask:?}")));
    }
    let mut ms = [1usize; 4];
    ms[4 - mask.len()..].copy_from_slice(mask);
    let mut stride = [0usize; 4];
    let mut step = 1;
    for a in (0..4).rev() {
        if ms[a] != 1 && ms[a] != want[a] {
            return Err(fail(format!(
                "WeftAttention: a mask of shape {mask:?} does not broadcast to {want:?}"
            )));
        }
        stride[a] = if ms[a] == 1 { 0 } else { step };
        step *= ms[a];
    }
    Ok(stride)
}

/// `WeftAttention`: softmax(Q·Kᵀ / scale + mask)·V per batch and head,
/// reading Q, K and V (`[B, S, H·D]` projections, viewed as `[B, S, H, D]`)
/// in place and writing `[B, S, H, D]` (the heads put back).
pub(super) fn attention(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (q, k, v) = (req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?);
    let dims = reshape_target(req(inputs, 3)?, &q.shape)?;
    let &[b, s, h, d] = dims.as_slice() else {
        return Err(fail(format!("WeftAttention: heads of shape {dims:?}")));
    };
    for (i, x) in [k, v].iter().enumerate() {
        if reshape_target(req(inputs, 4 + i)?, &x.shape)? != dims {
            return Err(fail("WeftAttention: Q, K and V differ in shape"));
        }
    }
    let (Data::F32(qd), Data::F32(kd), Data::F32(vd)) = (&q.data, &k.data, &v.data) else {
        return Err(fail("WeftAttention takes f32"));
    };
    let scale = scalar(inputs, 6)?;
    let mask = req(inputs, 7)?;
    let Data::F32(md) = &mask.data else {
        return Err(fail("WeftAttention: the mask is not f32"));
    };
    let stride = mask_strides(&mask.shape, [b, h, s, s])?;
    let width = h * d;
    let mut out = vec![0.0f32; b * s * width];
    // Per batch row and head: two small products on the vectorised kernels
    // (the scalar loops the compiler makes for generic x86-64 are several
    // times slower), packing Kᵀ and V straight from the projections.
    let one_batch = |(bi, ob): (usize, &mut [f32])| {
        let mut products = crate::kernels::SmallProducts::new();
        let mut qh = vec![0.0f32; s * d];
        let (mut scores, mut oh) = (vec![0.0f32; s * s], vec![0.0f32; s * d]);
        // Row `j` of this batch row's Q, K or V for head `hi`.
        let at = |j: usize, hi: usize| (bi * s + j) * width + hi * d;
        for hi in 0..h {
            for j in 0..s {
                qh[j * d..(j + 1) * d].copy_from_slice(&qd[at(j, hi)..at(j, hi) + d]);
            }
            // Kᵀ and V are read in place, packed by the product.
            products.product(&qh, (s, d, s), |dd, j| kd[at(j, hi) + dd], &mut scores);
            for (i, row) in scores.chunks_exact_mut(s.max(1)).enumerate() {
                let base = bi * stride[0] + hi * stride[1] + i * stride[2];
                // The mask's last axis has stride 1 or 0 (broadcast).
                let add = if stride[3] == 0 {
                    simd::Add::All(md[base])
                } else {
                    simd::Add::Each(&md[base..base + s])
                };
                simd::softmax_affine(row, 1.0 / scale, add);
            }
            products.product(&scores, (s, s, d), |j, dd| vd[at(j, hi) + dd], &mut oh);
            for i in 0..s {
                ob[i * width + hi * d..][..d].copy_from_slice(&oh[i * d..(i + 1) * d]);
            }
        }
    };
    if b > 1 && s * s * width > CHUNK / 16 {
        out.par_chunks_mut((s * width).max(1))
            .enumerate()
            .for_each(one_batch);
    } else {
        out.chunks_mut((s * width).max(1))
            .enumerate()
            .for_each(one_batch);
    }
    Ok(q.with(vec![b, s, h, d], Data::F32(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A residual of another type is refused by name; one that does not
    /// broadcast fails saying it is the residual's `Add`; one that
    /// broadcasts is added after the product.
    #[test]
    fn a_residual_is_refused_or_added_after_by_type_and_shape() {
        let (k, n) = (4, 3);
        let a = Value::f32(vec![5, k], vec![0.5; 5 * k]);
        let w = Value::f32(vec![k, n], vec![0.25; k * n]);
        let b = Value::f32(vec![n], vec![1.0; n]);
        let with = |r: &Value| matmul_bias(&[Some(&a), Some(&w), Some(&b), Some(r)], None);
        let ints = Value::i64(vec![5, n], vec![1; 5 * n]);
        let err = with(&ints).unwrap_err();
        assert!(err.message.contains("a residual of I64"), "{}", err.message);
        let err = with(&Value::f32(vec![3, n], vec![1.0; 3 * n])).unwrap_err();
        assert!(
            err.message
                .starts_with("the residual Add after a product of [5, 3]: "),
            "{}",
            err.message
        );
        // 4 x 0.5 x 0.25 + the bias 1 + the residual 2, in a [2, 5, 3].
        let out = with(&Value::f32(vec![2, 1, n], vec![2.0; 2 * n])).unwrap();
        assert_eq!(out.shape, [2, 5, n]);
        let Data::F32(v) = &out.data else {
            panic!("f32 in, f32 out")
        };
        assert_eq!(v, &vec![3.5; 2 * 5 * n]);
    }
}
