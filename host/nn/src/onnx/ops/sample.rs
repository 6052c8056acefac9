//! `GridSample`: reading an image at the (normalised) coordinates of a
//! grid, with nearest, linear or cubic interpolation and zeros, border or
//! reflection padding, in any number of spatial dimensions.

use super::{Node, req};
use crate::NnError;
use crate::onnx::value::{Value, fail};

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
