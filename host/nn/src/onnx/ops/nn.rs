//! Neural-network operators: convolution (im2col + matmul), pooling,
//! batch and local response normalisation. MatMul and Gemm are in
//! `matmul.rs`, Resize in `resize.rs`.

use rayon::prelude::*;

use super::{Node, opt, req};
use crate::NnError;
use crate::kernels;
use crate::onnx::value::{DType, Data, Value, fail, numel};

/// Float data as f32 (the kernels' type); integers through f64.
pub(super) fn to_f32(v: &Value) -> std::borrow::Cow<'_, [f32]> {
    match &v.data {
        Data::F32(x) => std::borrow::Cow::Borrowed(x),
        _ => std::borrow::Cow::Owned(v.to_f32()),
    }
}

pub(super) fn from_f32(dtype: DType, shape: Vec<usize>, v: Vec<f32>) -> Value {
    let f = Value::f32(shape, v);
    if dtype == DType::F32 {
        f
    } else {
        f.cast(dtype)
    }
}

/// Spatial geometry shared by convolution and pooling.
pub(crate) struct Window {
    pub(crate) kernel: Vec<usize>,
    pub(crate) strides: Vec<usize>,
    pub(crate) dilations: Vec<usize>,
    pub(crate) pad_begin: Vec<usize>,
    pub(crate) pad_end: Vec<usize>,
    pub(crate) out: Vec<usize>,
}

fn window(
    node: Node<'_>,
    input: &[usize],
    kernel: Vec<usize>,
    ceil: bool,
) -> Result<Window, NnError> {
    let d = input.len();
    let get = |name: &str| -> Vec<usize> {
        node.ints(name)
            .map(|v| v.iter().map(|&x| x.max(0) as usize).collect())
            .unwrap_or_else(|| vec![1; d])
    };
    let strides = get("strides");
    let dilations = get("dilations");
    let pads = node
        .ints("pads")
        .map(|v| v.iter().map(|&x| x.max(0) as usize).collect::<Vec<_>>())
        .unwrap_or_else(|| vec![0; 2 * d]);
    if strides.len() != d || dilations.len() != d || pads.len() != 2 * d || kernel.len() != d {
        return Err(fail(
            "kernel, strides, dilations and pads disagree on the spatial rank",
        ));
    }
    for (what, v) in [
        ("kernel_shape", &kernel),
        ("strides", &strides),
        ("dilations", &dilations),
    ] {
        if v.contains(&0) {
            return Err(fail(format!(
                "{what} {v:?} has a 0: each must be at least 1"
            )));
        }
    }
    let (mut pad_begin, mut pad_end) = (pads[..d].to_vec(), pads[d..].to_vec());
    let auto = node.string("auto_pad", "NOTSET");
    let mut out = Vec::with_capacity(d);
    for i in 0..d {
        let span = (kernel[i] - 1)
            .saturating_mul(dilations[i])
            .saturating_add(1);
        match auto.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                let o = input[i].div_ceil(strides[i]);
                let total = ((o - 1) * strides[i] + span).saturating_sub(input[i]);
                let small = total / 2;
                (pad_begin[i], pad_end[i]) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                out.push(o);
            }
            "VALID" => {
                pad_begin[i] = 0;
                pad_end[i] = 0;
                out.push((input[i].saturating_sub(span)) / strides[i] + 1);
            }
            _ => {
                let full = input[i]
                    .saturating_add(pad_begin[i])
                    .saturating_add(pad_end[i]);
                if full < span {
                    return Err(fail("the kernel is larger than the padded input"));
                }
                let mut o = if ceil {
                    (full - span).div_ceil(strides[i]) + 1
                } else {
                    (full - span) / strides[i] + 1
                };
                // A window may not start in the end padding.
                if ceil && (o - 1) * strides[i] >= input[i] + pad_begin[i] {
                    o -= 1;
                }
                out.push(o);
            }
        }
    }
    // The gather plan holds an entry per kernel offset and output position
    // (16 bytes: counted as four f32s), and the outputs' multi-indices.
    numel(
        &[&kernel[..], &out[..], &[4]].concat(),
        "the window over its outputs",
    )?;
    numel(
        &[&out[..], &[2 * d]].concat(),
        "the window's output positions",
    )?;
    Ok(Window {
        kernel,
        strides,
        dilations,
        pad_begin,
        pad_end,
        out,
    })
}

/// For each output position and kernel offset, the flat input index (or
/// `None` in padding): rows = kernel offsets, columns = output positions.
fn gather_plan(w: &Window, input: &[usize]) -> Vec<Option<usize>> {
    let (kidx, outs) = (all_indices(&w.kernel), all_indices(&w.out));
    let rank = input.len().max(1);
    let mut plan = Vec::with_capacity(kidx.len() / rank * (outs.len() / rank));
    for k in kidx.chunks_exact(rank) {
        for o in outs.chunks_exact(rank) {
            let mut off = 0usize;
            let mut inside = true;
            for d in 0..input.len() {
                let p =
                    (o[d] * w.strides[d] + k[d] * w.dilations[d]) as i64 - w.pad_begin[d] as i64;
                if p < 0 || p >= input[d] as i64 {
                    inside = false;
                    break;
                }
                off = off * input[d] + p as usize;
            }
            plan.push(inside.then_some(off));
        }
    }
    plan
}

/// Every multi-index of `shape`, row-major, one after another (index `i`
/// at `[i * rank, (i + 1) * rank)`).
fn all_indices(shape: &[usize]) -> Vec<usize> {
    let count: usize = shape.iter().product();
    let mut v = Vec::with_capacity(count * shape.len());
    let mut idx = vec![0; shape.len()];
    for _ in 0..count {
        v.extend_from_slice(&idx);
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    v
}

/// The geometry of a `Conv` of input shape `x` by weights of shape `w`,
/// and its groups.
pub(crate) fn conv_window(
    node: Node<'_>,
    x: &[usize],
    w: &[usize],
) -> Result<(Window, usize), NnError> {
    if x.len() < 3 || w.len() != x.len() {
        return Err(fail(format!(
            "Conv input {x:?} and weights {w:?} do not match"
        )));
    }
    let (c, m) = (x[1], w[0]);
    let groups = node.int("group", 1).max(1) as usize;
    let cg = w[1];
    if cg * groups != c || m % groups != 0 {
        return Err(fail(format!(
            "Conv: {c} input channels, {groups} groups and weights {w:?} disagree"
        )));
    }
    if let Some(k) = node.ints("kernel_shape")
        && k.iter()
            .map(|&k| usize::try_from(k).ok())
            .ne(w[2..].iter().map(|&d| Some(d)))
    {
        return Err(fail(format!(
            "Conv: kernel_shape {k:?} is not the weights' spatial shape {:?}",
            &w[2..]
        )));
    }
    Ok((window(node, &x[2..], w[2..].to_vec(), false)?, groups))
}

/// The most im2col values a `Conv` task holds at once (16 MiB of f32; in
/// unit tests few, so that their convolutions run block by block).
const COLUMNS: usize = if cfg!(test) { 1 << 8 } else { 1 << 22 };

pub(super) fn conv(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, w) = (req(inputs, 0)?, req(inputs, 1)?);
    let (win, groups) = conv_window(node, &x.shape, &w.shape)?;
    let (n, c) = (x.shape[0], x.shape[1]);
    let (m, cg) = (w.shape[0], w.shape[1]);
    let spatial = &x.shape[2..];
    let plan = gather_plan(&win, spatial);
    let (ksize, osize, isize) = (
        win.kernel.iter().product::<usize>(),
        win.out.iter().product::<usize>(),
        spatial.iter().product::<usize>(),
    );
    let (xf, wf) = (to_f32(x), to_f32(w));
    let bias = opt(inputs, 2).map(Value::to_f32);
    let mg = m / groups;
    numel(&[n, m, osize], "Conv")?;
    let mut out = vec![0.0f32; n * m * osize];
    let rows = cg * ksize;
    // Columns (a group's channels by kernel offsets) for a block of output
    // positions at a time, at most COLUMNS values: a wide image with many
    // channels would otherwise need gigabytes of them per task.
    let block = (COLUMNS / rows.max(1)).clamp(1, osize.max(1));
    out.par_chunks_mut(m * osize)
        .enumerate()
        .for_each(|(b, ob)| {
            let mut col = vec![0.0f32; rows * block];
            let mut part = vec![0.0f32; if block < osize { mg * block } else { 0 }];
            for g in 0..groups {
                let wg = &wf[g * mg * rows..(g + 1) * mg * rows];
                for p0 in (0..osize).step_by(block) {
                    let bl = block.min(osize - p0);
                    for ci in 0..cg {
                        let src = &xf[(b * c + g * cg + ci) * isize..][..isize];
                        for kk in 0..ksize {
                            let dst = &mut col[(ci * ksize + kk) * bl..][..bl];
                            for (d, p) in dst.iter_mut().zip(&plan[kk * osize + p0..][..bl]) {
                                *d = p.map_or(0.0, |i| src[i]);
                            }
                        }
                    }
                    let col = &col[..rows * bl];
                    if bl == osize {
                        let og = &mut ob[g * mg * osize..(g + 1) * mg * osize];
                        kernels::matmul_serial(wg, col, og, mg, rows, osize);
                        continue;
                    }
                    let part = &mut part[..mg * bl];
                    kernels::matmul_serial(wg, col, part, mg, rows, bl);
                    for (r, row) in part.chunks_exact(bl).enumerate() {
                        ob[(g * mg + r) * osize + p0..][..bl].copy_from_slice(row);
                    }
                }
            }
            if let Some(bias) = &bias {
                for (oc, chunk) in ob.chunks_mut(osize.max(1)).enumerate() {
                    chunk.iter_mut().for_each(|v| *v += bias[oc]);
                }
            }
        });
    let mut shape = vec![n, m];
    shape.extend_from_slice(&win.out);
    Ok(from_f32(x.dtype, shape, out))
}

/// The geometry of a `MaxPool`, `AveragePool` or `LpPool` of input
/// shape `x`.
pub(crate) fn pool_window(node: Node<'_>, x: &[usize]) -> Result<Window, NnError> {
    if x.len() < 3 {
        return Err(fail("pooling needs an [N, C, spatial...] input"));
    }
    let kernel: Vec<usize> = node
        .ints("kernel_shape")
        .ok_or_else(|| fail("pooling needs kernel_shape"))?
        .iter()
        .map(|&v| v as usize)
        .collect();
    window(node, &x[2..], kernel, node.int("ceil_mode", 0) != 0)
}

pub(super) fn pool(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?;
    let win = pool_window(node, &x.shape)?;
    let (n, c) = (x.shape[0], x.shape[1]);
    let spatial = x.shape[2..].to_vec();
    let plan = gather_plan(&win, &spatial);
    let (ksize, osize, isize) = (
        win.kernel.iter().product::<usize>(),
        win.out.iter().product::<usize>(),
        spatial.iter().product::<usize>(),
    );
    let max = node.proto.op_type == "MaxPool";
    let lp = (node.proto.op_type == "LpPool").then(|| node.int("p", 2) as f64);
    let include_pad = node.int("count_include_pad", 0) != 0;
    // For count_include_pad: how many offsets of each window fall inside
    // the padded (not the ceil-extended) input.
    let padded_count: Vec<usize> = if include_pad {
        let outs: Vec<usize> = (0..osize).collect();
        outs.iter()
            .map(|&o| {
                let oi = decode_pos(o, &win.out);
                let mut cnt = 1;
                for d in 0..spatial.len() {
                    let lo = -(win.pad_begin[d] as i64);
                    let hi = (spatial[d] + win.pad_end[d]) as i64;
                    let inside = (0..win.kernel[d])
                        .filter(|&k| {
                            let p = (oi[d] * win.strides[d] + k * win.dilations[d]) as i64
                                - win.pad_begin[d] as i64;
                            p >= lo && p < hi
                        })
                        .count();
                    cnt *= inside;
                }
                cnt
            })
            .collect()
    } else {
        Vec::new()
    };
    let xf = x.to_f64();
    numel(&[n, c, osize], "pooling")?;
    let mut out = vec![0.0f64; n * c * osize];
    let mut idx = vec![0i64; n * c * osize];
    for ch in 0..n * c {
        let src = &xf[ch * isize..(ch + 1) * isize];
        for o in 0..osize {
            let (mut acc, mut cnt, mut best) =
                (if max { f64::NEG_INFINITY } else { 0.0 }, 0usize, 0usize);
            for kk in 0..ksize {
                if let Some(i) = plan[kk * osize + o] {
                    let v = src[i];
                    if max {
                        if v > acc {
                            acc = v;
                            best = i;
                        }
                    } else if let Some(p) = lp {
                        acc += v.abs().powf(p);
                    } else {
                        acc += v;
                    }
                    cnt += 1;
                }
            }
            out[ch * osize + o] = if max {
                acc
            } else if let Some(p) = lp {
                acc.powf(1.0 / p)
            } else if include_pad {
                acc / padded_count[o] as f64
            } else {
                acc / cnt.max(1) as f64
            };
            idx[ch * osize + o] = (ch * isize + best) as i64;
        }
    }
    let mut shape = vec![n, c];
    shape.extend_from_slice(&win.out);
    let y = Value::f64_as(x.dtype, shape.clone(), out);
    let mut res = vec![y];
    if max && node.proto.outputs.len() > 1 {
        if node.int("storage_order", 0) != 0 {
            // Column-major spatial offsets within each channel.
            let col = |flat: i64| -> i64 {
                let (ch, pos) = (flat as usize / isize.max(1), flat as usize % isize.max(1));
                let p = decode_pos(pos, &spatial);
                let off = (0..spatial.len())
                    .rev()
                    .fold(0, |acc, d| acc * spatial[d] + p[d]);
                (ch * isize + off) as i64
            };
            idx.iter_mut().for_each(|v| *v = col(*v));
        }
        res.push(Value::i64(shape, idx));
    }
    Ok(res)
}

fn decode_pos(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut v = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        v[d] = flat % shape[d];
        flat /= shape[d];
    }
    v
}

pub(super) fn global_pool(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let inner: usize = x.shape[2..].iter().product();
    let v = x.to_f64();
    let max = node.proto.op_type == "GlobalMaxPool";
    let out: Vec<f64> = v
        .chunks(inner.max(1))
        .map(|c| {
            if max {
                c.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            } else {
                c.iter().sum::<f64>() / c.len() as f64
            }
        })
        .collect();
    let mut shape = x.shape.clone();
    shape[2..].iter_mut().for_each(|d| *d = 1);
    Ok(Value::f64_as(x.dtype, shape, out))
}

pub(super) fn batch_norm(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Value>, NnError> {
    let x = req(inputs, 0)?;
    let [s, b, mean, var] = [1, 2, 3, 4].map(|i| req(inputs, i).map(Value::to_f64));
    let (s, b, mut mean, mut var) = (s?, b?, mean?, var?);
    let eps = f64::from(node.float("epsilon", 1e-5));
    let c = *x.shape.get(1).unwrap_or(&1);
    let inner: usize = x.shape.get(2..).map_or(1, |d| d.iter().product());
    let mut v = x.to_f64();
    let mut running = Vec::new();
    if node.int("training_mode", 0) != 0 {
        // Batch statistics (population variance) normalise; the running
        // ones are blended with `momentum` and returned.
        let (mut sum, mut sq, mut cnt) = (vec![0.0; c], vec![0.0; c], vec![0usize; c]);
        for (i, chunk) in v.chunks(inner.max(1)).enumerate() {
            let ch = i % c;
            sum[ch] += chunk.iter().sum::<f64>();
            sq[ch] += chunk.iter().map(|x| x * x).sum::<f64>();
            cnt[ch] += chunk.len();
        }
        let m = f64::from(node.float("momentum", 0.9));
        let bm: Vec<f64> = (0..c).map(|i| sum[i] / cnt[i].max(1) as f64).collect();
        let bv: Vec<f64> = (0..c)
            .map(|i| sq[i] / cnt[i].max(1) as f64 - bm[i] * bm[i])
            .collect();
        let rm: Vec<f64> = (0..c).map(|i| mean[i] * m + bm[i] * (1.0 - m)).collect();
        let rv: Vec<f64> = (0..c).map(|i| var[i] * m + bv[i] * (1.0 - m)).collect();
        let dt = req(inputs, 3)?.dtype;
        for stat in [rm, rv] {
            running.push(Value::f64_as(dt, vec![c], stat));
        }
        (mean, var) = (bm, bv);
    }
    for (i, chunk) in v.chunks_mut(inner.max(1)).enumerate() {
        let ch = i % c;
        let k = s[ch] / (var[ch] + eps).sqrt();
        chunk
            .iter_mut()
            .for_each(|x| *x = (*x - mean[ch]) * k + b[ch]);
    }
    let mut out = vec![Value::f64_as(x.dtype, x.shape.clone(), v)];
    out.extend(running);
    Ok(out)
}

pub(super) fn lrn(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let size = node.int("size", 1) as usize;
    let (alpha, beta, bias) = (
        f64::from(node.float("alpha", 1e-4)),
        f64::from(node.float("beta", 0.75)),
        f64::from(node.float("bias", 1.0)),
    );
    let c = x.shape[1];
    let inner: usize = x.shape[2..].iter().product();
    let v = x.to_f64();
    let (lo, hi) = ((size - 1) / 2, (size - 1).div_ceil(2));
    let mut out = vec![0.0; v.len()];
    for (i, o) in out.iter_mut().enumerate() {
        let (b, ch, p) = (i / (c * inner), (i / inner) % c, i % inner);
        let sq: f64 = (ch.saturating_sub(lo)..=(ch + hi).min(c - 1))
            .map(|k| v[(b * c + k) * inner + p].powi(2))
            .sum();
        *o = v[i] / (bias + alpha / size as f64 * sq).powf(beta);
    }
    Ok(Value::f64_as(x.dtype, x.shape.clone(), out))
}

/// The geometry of a `ConvTranspose` of `x` by weights `w`
/// (`[c, m / group, k...]`) and its group count. `pad_begin` says where
/// input position 0 lands: input `i` and tap `k` add to output
/// `i · stride + k · dilation − pad_begin` (an output past the full
/// extent, as `output_shape` may ask, stays zero).
pub(crate) fn conv_transpose_window(
    node: Node<'_>,
    x: &[usize],
    w: &[usize],
) -> Result<(Window, usize), NnError> {
    if x.len() < 3 || w.len() != x.len() {
        return Err(fail(format!(
            "ConvTranspose input {x:?} and weights {w:?} do not match"
        )));
    }
    let groups = node.int("group", 1).max(1) as usize;
    let spatial = &x[2..];
    let d = spatial.len();
    let kernel: Vec<usize> = w[2..].to_vec();
    let get = |name: &str, default: usize| -> Vec<usize> {
        node.ints(name)
            .map(|v| v.iter().map(|&x| x.max(0) as usize).collect())
            .unwrap_or_else(|| vec![default; d])
    };
    let (strides, dil, outpad) = (
        get("strides", 1),
        get("dilations", 1),
        get("output_padding", 0),
    );
    let mut pads = node
        .ints("pads")
        .map(|v| v.iter().map(|&x| x.max(0) as usize).collect())
        .unwrap_or_else(|| vec![0; 2 * d]);
    let auto = node.string("auto_pad", "NOTSET");
    let full: Vec<usize> = (0..d)
        .map(|i| {
            let span = (kernel[i] - 1).saturating_mul(dil[i]).saturating_add(1);
            strides[i]
                .saturating_mul(spatial[i] - 1)
                .saturating_add(outpad[i])
                .saturating_add(span)
        })
        .collect();
    let target: Option<Vec<usize>> = node
        .ints("output_shape")
        .map(|v| v.iter().rev().take(d).rev().map(|&x| x as usize).collect())
        .or_else(|| {
            auto.starts_with("SAME")
                .then(|| (0..d).map(|i| spatial[i] * strides[i]).collect())
        });
    if let Some(t) = &target {
        for i in 0..d {
            let total = full[i].saturating_sub(t[i]);
            (pads[i], pads[i + d]) = if auto == "SAME_UPPER" {
                (total / 2, total - total / 2)
            } else {
                (total - total / 2, total / 2)
            };
        }
    }
    let out: Vec<usize> = match &target {
        // A target beyond the full size extends the output with zeros.
        Some(t) => t.clone(),
        None => (0..d).map(|i| full[i] - pads[i] - pads[i + d]).collect(),
    };
    let window = Window {
        kernel,
        strides,
        dilations: dil,
        pad_begin: pads[..d].to_vec(),
        pad_end: pads[d..].to_vec(),
        out,
    };
    Ok((window, groups))
}

pub(super) fn conv_transpose(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, w) = (req(inputs, 0)?, req(inputs, 1)?);
    let (win, groups) = conv_transpose_window(node, &x.shape, &w.shape)?;
    let (n, c) = (x.shape[0], x.shape[1]);
    let mg = w.shape[1];
    let m = mg * groups;
    let cg = c / groups;
    let spatial = x.shape[2..].to_vec();
    let d = spatial.len();
    let Window {
        kernel,
        strides,
        dilations: dil,
        pad_begin: pads,
        out,
        ..
    } = win;
    let (isize, osize, ksize) = (
        spatial.iter().product::<usize>(),
        out.iter().product::<usize>(),
        kernel.iter().product::<usize>(),
    );
    let (xv, wv) = (x.to_f64(), w.to_f64());
    numel(&[&[n, m][..], &out[..]].concat(), "ConvTranspose")?;
    let (ipos, kpos) = (all_indices(&spatial), all_indices(&kernel));
    let mut y = vec![0.0f64; n * m * osize];
    for b in 0..n {
        for ci in 0..c {
            let g = ci / cg;
            for (ii, ip) in ipos.chunks_exact(d.max(1)).enumerate() {
                let xval = xv[(b * c + ci) * isize + ii];
                for (kk, kp) in kpos.chunks_exact(d.max(1)).enumerate() {
                    let mut off = 0usize;
                    let mut inside = true;
                    for a in 0..d {
                        let p = (ip[a] * strides[a] + kp[a] * dil[a]) as i64 - pads[a] as i64;
                        if p < 0 || p >= out[a] as i64 {
                            inside = false;
                            break;
                        }
                        off = off * out[a] + p as usize;
                    }
                    if !inside {
                        continue;
                    }
                    for mo in 0..mg {
                        y[(b * m + g * mg + mo) * osize + off] +=
                            xval * wv[(ci * mg + mo) * ksize + kk];
                    }
                }
            }
        }
    }
    if let Some(bias) = opt(inputs, 2).map(Value::to_f64) {
        for (i, chunk) in y.chunks_mut(osize.max(1)).enumerate() {
            chunk.iter_mut().for_each(|v| *v += bias[i % m]);
        }
    }
    let mut shape = vec![n, m];
    shape.extend_from_slice(&out);
    Ok(Value::f64_as(x.dtype, shape, y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{Attr, NodeProto};

    /// A convolution too wide for one block of columns (two groups, pads,
    /// strides) equals the sums as defined.
    #[test]
    fn conv_in_blocks_of_output_positions_equals_the_definition() {
        let (n, c, h, wd, m, groups) = (2, 4, 9, 11, 6, 2);
        let (cg, mg) = (c / groups, m / groups);
        let x: Vec<f32> = (0..n * c * h * wd).map(|i| (i % 13) as f32 - 6.0).collect();
        let w: Vec<f32> = (0..m * cg * 9)
            .map(|i| (i % 7) as f32 * 0.5 - 1.5)
            .collect();
        let proto = NodeProto {
            op_type: "Conv".into(),
            attrs: vec![
                ("group".into(), Attr::Int(groups as i64)),
                ("pads".into(), Attr::Ints(vec![1, 2, 1, 0])),
                ("strides".into(), Attr::Ints(vec![1, 2])),
            ],
            ..Default::default()
        };
        let xv = Value::f32(vec![n, c, h, wd], x.clone());
        let wv = Value::f32(vec![m, cg, 3, 3], w.clone());
        let node = Node {
            proto: &proto,
            opset: 17,
        };
        let y = conv(node, &[Some(&xv), Some(&wv)]).unwrap();
        let (oh, ow) = (h + 2 - 2, (wd + 2 - 3) / 2 + 1);
        assert_eq!(y.shape, [n, m, oh, ow]);
        assert!(cg * 9 * oh * ow > COLUMNS, "one block would hold it all");
        let got = y.to_f32();
        for (b, o, i, j) in (0..n).flat_map(|b| {
            (0..m).flat_map(move |o| (0..oh).flat_map(move |i| (0..ow).map(move |j| (b, o, i, j))))
        }) {
            let g = o / mg;
            let mut want = 0.0f32;
            for ci in 0..cg {
                for (ki, kj) in (0..3).flat_map(|ki| (0..3).map(move |kj| (ki, kj))) {
                    let (p, q) = (i as i64 + ki - 1, (j * 2) as i64 + kj - 2);
                    if (0..h as i64).contains(&p) && (0..wd as i64).contains(&q) {
                        let xi = ((b * c + g * cg + ci) * h + p as usize) * wd + q as usize;
                        want += x[xi] * w[((o * cg + ci) * 3 + ki as usize) * 3 + kj as usize];
                    }
                }
            }
            let at = ((b * m + o) * oh + i) * ow + j;
            assert!(
                (got[at] - want).abs() < 1e-4,
                "{b} {o} {i} {j}: {} vs {want}",
                got[at]
            );
        }
    }
}
