//! `GridSample`: reading an image at the (normalised) coordinates of a
//! grid, with nearest, linear or cubic interpolation and zeros, border or
//! reflection padding, in any number of spatial dimensions.

use super::{Node, req};
use crate::NnError;
use crate::onnx::value::{Value, fail, numel};

/// Reflects `x` into `[lo, hi]`, as the ONNX reference does.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let n = (dx / range) as i64;
        let r = dx - n as f64 * range;
        if n % 2 == 0 { lo + r } else { hi - r }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / range) as i64;
        let r = dx - n as f64 * range;
        if n % 2 == 0 { hi - r } else { lo + r }
    } else {
        x
    }
}

fn cubic(t: f64) -> [f64; 4] {
    let w = |d| super::resize::cubic_weight(-0.75, d);
    [w(t + 1.0), w(t), w(1.0 - t), w(2.0 - t)]
}

pub(super) fn grid_sample(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, grid) = (req(inputs, 0)?, req(inputs, 1)?);
    let r = x
        .shape
        .len()
        .checked_sub(2)
        .filter(|&r| r > 0)
        .ok_or_else(|| fail("GridSample needs [N, C, spatial...]"))?;
    if grid.shape.len() != r + 2 || grid.shape[r + 1] != r || grid.shape[0] != x.shape[0] {
        return Err(fail(format!(
            "grid {:?} does not match input {:?}",
            grid.shape, x.shape
        )));
    }
    let align = node.int("align_corners", 0) != 0;
    let mode = match node.string("mode", "linear").as_str() {
        "bilinear" | "linear" => 1,
        "bicubic" | "cubic" => 3,
        _ => 0,
    };
    let padding = node.string("padding_mode", "zeros");
    let (n, c) = (x.shape[0], x.shape[1]);
    let spatial = &x.shape[2..];
    let out_sp = &grid.shape[1..=r];
    let (isize, osize) = (
        spatial.iter().product::<usize>(),
        out_sp.iter().product::<usize>(),
    );
    let (xv, gv) = (x.to_f64(), grid.to_f64());
    numel(&[n, c, osize], "GridSample")?;
    let mut out = vec![0.0; n * c * osize];
    for b in 0..n {
        for o in 0..osize {
            // Taps per spatial dim: (index, weight); grid coordinate i
            // addresses spatial dim r - 1 - i.
            let mut taps: Vec<Vec<(i64, f64)>> = vec![Vec::new(); r];
            for i in 0..r {
                let d = r - 1 - i;
                let len = spatial[d] as f64;
                let g = gv[(b * osize + o) * r + i];
                let mut p = if align {
                    (g + 1.0) / 2.0 * (len - 1.0)
                } else {
                    ((g + 1.0) * len - 1.0) / 2.0
                };
                let (lo, hi) = if align {
                    (0.0, len - 1.0)
                } else {
                    (-0.5, len - 0.5)
                };
                match padding.as_str() {
                    "border" => p = p.clamp(0.0, len - 1.0),
                    "reflection" => p = reflect(p, lo, hi),
                    _ => {}
                }
                taps[d] = match mode {
                    0 => vec![(p.round_ties_even() as i64, 1.0)],
                    1 => {
                        let f = p.floor();
                        vec![(f as i64, 1.0 - (p - f)), (f as i64 + 1, p - f)]
                    }
                    _ => {
                        let f = p.floor();
                        cubic(p - f)
                            .iter()
                            .enumerate()
                            .map(|(k, &w)| (f as i64 - 1 + k as i64, w))
                            .collect()
                    }
                };
            }
            // Resolve each tap's index under the padding mode (None: zero).
            let fix = |d: usize, i: i64| -> Option<usize> {
                let len = spatial[d] as i64;
                if (0..len).contains(&i) {
                    return Some(i as usize);
                }
                match padding.as_str() {
                    "border" => Some(i.clamp(0, len - 1) as usize),
                    "reflection" => {
                        let (lo, hi) = if align {
                            (0.0, len as f64 - 1.0)
                        } else {
                            (-0.5, len as f64 - 0.5)
                        };
                        Some((reflect(i as f64, lo, hi) as i64).clamp(0, len - 1) as usize)
                    }
                    _ => None,
                }
            };
            let combos: usize = taps.iter().map(Vec::len).product();
            for ch in 0..c {
                let img = &xv[(b * c + ch) * isize..(b * c + ch + 1) * isize];
                let mut acc = 0.0;
                for k in 0..combos {
                    let (mut rem, mut off, mut w) = (k, 0usize, 1.0);
                    let mut zero = false;
                    for d in (0..r).rev() {
                        let (i, wd) = taps[d][rem % taps[d].len()];
                        rem /= taps[d].len();
                        w *= wd;
                        match fix(d, i) {
                            Some(j) => off += j * spatial[d + 1..].iter().product::<usize>(),
                            None => zero = true,
                        }
                    }
                    if !zero {
                        acc += w * img[off];
                    }
                }
                out[(b * c + ch) * osize + o] = acc;
            }
        }
    }
    let mut shape = vec![n, c];
    shape.extend_from_slice(out_sp);
    Ok(Value::f64_as(x.dtype, shape, out))
}

/// `AffineGrid`: the sampling grid (for `GridSample`) of affine matrices
/// `theta` (`[N, 2, 3]` or `[N, 3, 4]`) over an output of `size`
/// (`[N, C, H, W]` or `[N, C, D, H, W]`): at each output position, theta
/// times its normalised coordinates `(x, y[, z], 1)`, x along the last
/// axis, each in [-1, 1] (`align_corners`: the end pixels' centres; else
/// their outer edges).
pub(super) fn affine_grid(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (theta, size) = (req(inputs, 0)?, req(inputs, 1)?.to_i64());
    let align = node.int("align_corners", 0) != 0;
    let dims: Vec<usize> = size
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| fail(format!("AffineGrid size {size:?} has a negative dim")))?;
    let k = dims.len().saturating_sub(2);
    if !matches!(k, 2 | 3) || theta.shape != [dims[0], k, k + 1] {
        return Err(fail(format!(
            "AffineGrid: theta {:?} and size {size:?} must be [N, 2, 3] and [N, C, H, W], or \
             [N, 3, 4] and [N, C, D, H, W]",
            theta.shape
        )));
    }
    let spatial = &dims[2..];
    let coord = |i: usize, s: usize| -> f64 {
        match (align, s) {
            (true, 1) => -1.0,
            (true, _) => -1.0 + 2.0 * i as f64 / (s - 1) as f64,
            (false, _) => (2 * i + 1) as f64 / s as f64 - 1.0,
        }
    };
    let th = theta.to_f64();
    let total = numel(spatial, "AffineGrid")?;
    numel(&[dims[0], total, k], "AffineGrid")?;
    let mut out = Vec::with_capacity(dims[0] * total * k);
    let mut at = vec![0; k];
    let mut h = vec![1.0; k + 1];
    for b in 0..dims[0] {
        let m = &th[b * k * (k + 1)..(b + 1) * k * (k + 1)];
        for p in 0..total {
            let mut rest = p;
            for a in (0..k).rev() {
                at[a] = rest % spatial[a];
                rest /= spatial[a];
            }
            // x is the last axis's coordinate, then y, then z.
            for j in 0..k {
                h[j] = coord(at[k - 1 - j], spatial[k - 1 - j]);
            }
            for row in m.chunks(k + 1) {
                out.push(row.iter().zip(&h).map(|(a, b)| a * b).sum());
            }
        }
    }
    let mut shape = vec![dims[0]];
    shape.extend_from_slice(spatial);
    shape.push(k);
    Ok(Value::f64_as(theta.dtype, shape, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::NodeProto;

    #[test]
    fn affine_grid_says_which_shapes_it_takes() {
        let proto = NodeProto {
            op_type: "AffineGrid".into(),
            ..Default::default()
        };
        let node = Node {
            proto: &proto,
            opset: 20,
        };
        // The identity over a 1 x 2 output: the two pixel centres.
        let theta = Value::f32(vec![1, 2, 3], vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let size = Value::i64(vec![4], vec![1, 1, 1, 2]);
        let grid = affine_grid(node, &[Some(&theta), Some(&size)]).unwrap();
        assert_eq!(grid.shape, [1, 1, 2, 2]);
        assert_eq!(grid.to_f32(), [-0.5, 0.0, 0.5, 0.0]);
        // A 3-D size with a 2-D theta.
        let size = Value::i64(vec![5], vec![1, 1, 1, 2, 2]);
        let err = affine_grid(node, &[Some(&theta), Some(&size)]).unwrap_err();
        assert!(
            err.message.contains("must be [N, 2, 3] and [N, C, H, W]"),
            "{}",
            err.message
        );
    }
}
