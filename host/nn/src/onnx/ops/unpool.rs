//! Operators that scatter values back into an image: `Col2Im` (the
//! inverse of im2col: overlapping blocks summed) and `MaxUnpool` (the
//! inverse of `MaxPool` with its indices).

use super::{Node, opt, req};
use crate::NnError;
use crate::onnx::value::{Value, fail, numel, strides};

/// Attribute `name` with `n` values (one per spatial dim; pads two),
/// `default` each when absent.
pub(super) fn per_dim(
    node: Node<'_>,
    name: &str,
    n: usize,
    default: i64,
) -> Result<Vec<i64>, NnError> {
    let v = node.ints(name).unwrap_or_else(|| vec![default; n]);
    if matches!(name, "strides" | "dilations") && v.iter().any(|&s| s < 1) {
        return Err(fail(format!(
            "{}'s {name} must be 1 or more, got {v:?}",
            node.proto.op_type
        )));
    }
    if v.len() != n {
        return Err(fail(format!(
            "{} needs {n} {name}, got {v:?}",
            node.proto.op_type
        )));
    }
    Ok(v)
}

/// A list input of `n` non-negative sizes.
fn sizes(inputs: &[Option<&Value>], i: usize, what: &str) -> Result<Vec<usize>, NnError> {
    req(inputs, i)?
        .to_i64()
        .into_iter()
        .map(|v| usize::try_from(v).map_err(|_| fail(format!("{what} has a negative size {v}"))))
        .collect()
}

/// `i`'s coordinates in row-major `dims`.
fn unravel(mut i: usize, dims: &[usize], out: &mut [usize]) {
    for (o, &d) in out.iter_mut().zip(dims).rev() {
        *o = i % d;
        i /= d;
    }
}

/// `Col2Im`: `[N, C·∏block, L]` columns summed into `[N, C, *image]`,
/// each of the `L` block positions (given by strides, pads and
/// dilations) adding its `∏block` values where they fall inside.
pub(super) fn col2im(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let image = sizes(inputs, 1, "image_shape")?;
    let block = sizes(inputs, 2, "block_shape")?;
    let d = image.len();
    if block.len() != d || d == 0 {
        return Err(fail(format!(
            "image_shape {image:?} and block_shape {block:?} must have one size per spatial dim"
        )));
    }
    let dil = per_dim(node, "dilations", d, 1)?;
    let st = per_dim(node, "strides", d, 1)?;
    let pads = per_dim(node, "pads", 2 * d, 0)?;
    let blocks: Vec<usize> = (0..d)
        .map(|i| {
            let span = image[i] as i64 + pads[i] + pads[d + i] - dil[i] * (block[i] as i64 - 1) - 1;
            (span.div_euclid(st[i].max(1)) + 1).max(0) as usize
        })
        .collect();
    let (k, l): (usize, usize) = (block.iter().product(), blocks.iter().product());
    let [n, ck, xl] = x.shape[..] else {
        return Err(fail(format!(
            "Col2Im's input must be [N, C × block size, blocks], got {:?}",
            x.shape
        )));
    };
    if k == 0 || ck % k != 0 || xl != l {
        return Err(fail(format!(
            "Col2Im's input {:?} must be [N, C × {k}, {l}] for blocks {block:?} placed {blocks:?} \
             times over image {image:?}",
            x.shape
        )));
    }
    let c = ck / k;
    let pixels = numel(&image, "Col2Im")?;
    numel(&[n, c, pixels], "Col2Im")?;
    let v = x.to_f64();
    let mut out = vec![0.0; n * c * pixels];
    let im_st = strides(&image);
    let (mut off, mut pos) = (vec![0; d], vec![0; d]);
    for nc in 0..n * c {
        let (src, dst) = (&v[nc * k * l..][..k * l], &mut out[nc * pixels..][..pixels]);
        for kk in 0..k {
            unravel(kk, &block, &mut off);
            for col in 0..l {
                unravel(col, &blocks, &mut pos);
                let mut at = 0;
                let inside = (0..d).all(|i| {
                    let p = pos[i] as i64 * st[i] - pads[i] + off[i] as i64 * dil[i];
                    at += p.max(0) as usize * im_st[i];
                    (0..image[i] as i64).contains(&p)
                });
                if inside {
                    dst[at] += src[kk * l + col];
                }
            }
        }
    }
    let mut shape = vec![n, c];
    shape.extend(image);
    Ok(Value::f64_as(x.dtype, shape, out))
}

/// `MaxUnpool`: each value of `X` put at its flat index (from `MaxPool`)
/// in zeros of the shape the pooling came from; with `output_shape`, that
/// image sits at the start of zeros of the shape asked for, as the ONNX
/// reference places it.
pub(super) fn max_unpool(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, idx) = (req(inputs, 0)?, req(inputs, 1)?);
    if x.shape.len() < 3 || idx.shape != x.shape {
        return Err(fail(format!(
            "MaxUnpool needs X of [N, C, spatial...] and indices of its shape, got {:?} and {:?}",
            x.shape, idx.shape
        )));
    }
    let d = x.shape.len() - 2;
    let kernel = node
        .ints("kernel_shape")
        .filter(|k| k.len() == d)
        .ok_or_else(|| fail(format!("MaxUnpool needs kernel_shape with {d} sizes")))?;
    let st = per_dim(node, "strides", d, 1)?;
    let pads = per_dim(node, "pads", 2 * d, 0)?;
    let mut inferred = x.shape[..2].to_vec();
    for i in 0..d {
        let s = (x.shape[i + 2] as i64 - 1) * st[i] - pads[i] - pads[d + i] + kernel[i];
        inferred.push(s.max(0) as usize);
    }
    let size = numel(&inferred, "MaxUnpool")?;
    let mut y = vec![0.0; size];
    for (&v, &i) in x.to_f64().iter().zip(&idx.to_i64()) {
        let slot = usize::try_from(i)
            .ok()
            .filter(|&i| i < size)
            .ok_or_else(|| fail(format!("index {i} is outside the unpooled {inferred:?}")))?;
        y[slot] = v;
    }
    let Some(shape) = opt(inputs, 2) else {
        return Ok(Value::f64_as(x.dtype, inferred, y));
    };
    let shape = sizes(&[Some(shape)], 0, "output_shape")?;
    if shape.len() != inferred.len() || shape.iter().zip(&inferred).any(|(s, i)| s < i) {
        return Err(fail(format!(
            "output_shape {shape:?} must hold the unpooled {inferred:?}"
        )));
    }
    let to = strides(&shape);
    let mut out = vec![0.0; numel(&shape, "MaxUnpool's output_shape")?];
    let mut at = vec![0; inferred.len()];
    for (i, &v) in y.iter().enumerate() {
        unravel(i, &inferred, &mut at);
        let j: usize = at.iter().zip(&to).map(|(a, s)| a * s).sum();
        out[j] = v;
    }
    Ok(Value::f64_as(x.dtype, shape, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{Attr, NodeProto};

    fn node_with(op: &str, attrs: Vec<(String, Attr)>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            attrs,
            ..Default::default()
        }
    }

    #[test]
    fn col2im_sums_overlapping_blocks() {
        // A 1-D image of 4 from blocks of 2 at stride 1: 3 blocks, the
        // middle pixels covered twice.
        let proto = node_with("Col2Im", vec![]);
        let node = Node {
            proto: &proto,
            opset: 18,
        };
        let x = Value::f32(vec![1, 2, 3], vec![1.0, 2.0, 3.0, 10.0, 20.0, 30.0]);
        let (image, block) = (Value::i64(vec![1], vec![4]), Value::i64(vec![1], vec![2]));
        let y = col2im(node, &[Some(&x), Some(&image), Some(&block)]).unwrap();
        assert_eq!(y.shape, [1, 1, 4]);
        assert_eq!(y.to_f32(), [1.0, 12.0, 23.0, 30.0]);
        let short = Value::f32(vec![1, 2, 2], vec![0.0; 4]);
        let err = col2im(node, &[Some(&short), Some(&image), Some(&block)]).unwrap_err();
        assert!(
            err.message.contains("must be [N, C × 2, 3]"),
            "{}",
            err.message
        );
    }

    #[test]
    fn max_unpool_places_values_and_refuses_indices_outside() {
        let proto = node_with(
            "MaxUnpool",
            vec![
                ("kernel_shape".into(), Attr::Ints(vec![2])),
                ("strides".into(), Attr::Ints(vec![2])),
            ],
        );
        let node = Node {
            proto: &proto,
            opset: 11,
        };
        let x = Value::f32(vec![1, 1, 2], vec![5.0, 7.0]);
        let idx = Value::i64(vec![1, 1, 2], vec![1, 2]);
        let y = max_unpool(node, &[Some(&x), Some(&idx)]).unwrap();
        assert_eq!(y.to_f32(), [0.0, 5.0, 7.0, 0.0]);
        let shape = Value::i64(vec![3], vec![1, 1, 6]);
        let y = max_unpool(node, &[Some(&x), Some(&idx), Some(&shape)]).unwrap();
        assert_eq!(y.to_f32(), [0.0, 5.0, 7.0, 0.0, 0.0, 0.0]);
        let far = Value::i64(vec![1, 1, 2], vec![1, 9]);
        let err = max_unpool(node, &[Some(&x), Some(&far)]).unwrap_err();
        assert!(
            err.message.contains("index 9 is outside"),
            "{}",
            err.message
        );
    }
}
