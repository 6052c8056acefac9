//! Resize (and the older Upsample): nearest, linear and cubic
//! interpolation one axis at a time, with the spec's coordinate
//! transformation modes, nearest rounding modes, antialiasing and aspect
//! ratio policies.

use super::{Node, opt, req};
use crate::NnError;
use crate::onnx::value::{DType, Data, Value, fail, numel};

/// One axis a `Resize` resamples: `len_out` positions, each the sum of
/// its taps `(input index, weight)` along `axis` (an index of
/// `usize::MAX`: the weight is the value, outside a crop).
pub(crate) struct ResizeStep {
    pub(crate) axis: usize,
    pub(crate) len_out: usize,
    pub(crate) taps: Vec<Vec<(usize, f64)>>,
}

pub(super) fn resize(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let mut cur = Value {
        dtype: DType::F64,
        shape: x.shape.clone(),
        data: Data::F64(x.to_f64()),
    };
    for step in resize_plan(node, inputs)? {
        cur = resample(&cur, step.axis, step.len_out, &step.taps);
    }
    Ok(cur.cast(x.dtype))
}

/// What a `Resize` (or `Upsample`) of its input's shape does, one axis at
/// a time (only the shape of input 0 is read).
pub(crate) fn resize_plan(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Result<Vec<ResizeStep>, NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len();
    let legacy = node.proto.op_type == "Upsample" || node.opset < 11;
    let (scales, sizes) = if node.proto.op_type == "Upsample" && node.opset < 9 {
        (node.floats("scales"), None)
    } else if legacy {
        (Some(req(inputs, 1)?.to_f32()), None)
    } else {
        (
            opt(inputs, 2).map(Value::to_f32).filter(|s| !s.is_empty()),
            opt(inputs, 3).map(Value::to_i64).filter(|s| !s.is_empty()),
        )
    };
    let axes: Vec<usize> = match node.ints("axes") {
        Some(a) => a
            .iter()
            .map(|&v| super::axis(v, r))
            .collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    let mut scale = vec![1.0f64; r];
    let mut out = x.shape.clone();
    if let Some(s) = &scales {
        for (i, &a) in axes.iter().enumerate() {
            scale[a] = f64::from(s[i]);
            out[a] = (x.shape[a] as f64 * scale[a]).floor() as usize;
        }
    } else if let Some(sz) = &sizes {
        let policy = node.string("keep_aspect_ratio_policy", "stretch");
        let ratios: Vec<f64> = axes
            .iter()
            .enumerate()
            .map(|(i, &a)| sz[i] as f64 / x.shape[a] as f64)
            .collect();
        for (i, &a) in axes.iter().enumerate() {
            scale[a] = match policy.as_str() {
                "not_larger" => ratios.iter().copied().fold(f64::INFINITY, f64::min),
                "not_smaller" => ratios.iter().copied().fold(0.0, f64::max),
                _ => ratios[i],
            };
            out[a] = if policy == "stretch" {
                sz[i] as usize
            } else {
                (x.shape[a] as f64 * scale[a]).round() as usize
            };
        }
    } else {
        return Err(fail("Resize needs scales or sizes"));
    }
    numel(&out, &node.proto.op_type)?;
    let mode = node.string("mode", "nearest");
    let ctm = if legacy {
        "asymmetric".to_string()
    } else {
        node.string("coordinate_transformation_mode", "half_pixel")
    };
    let antialias = node.int("antialias", 0) != 0;
    let extrapolation = f64::from(node.float("extrapolation_value", 0.0));
    let roi: Vec<f64> = if legacy {
        Vec::new()
    } else {
        opt(inputs, 1).map(Value::to_f64).unwrap_or_default()
    };
    if ctm == "tf_crop_and_resize" && roi.len() != 2 * axes.len() {
        return Err(fail("tf_crop_and_resize needs a roi of 2 values per axis"));
    }
    let nearest_mode = if legacy {
        "floor".to_string()
    } else {
        node.string("nearest_mode", "round_prefer_floor")
    };
    let a = f64::from(node.float("cubic_coeff_a", -0.75));
    let exclude = node.int("exclude_outside", 0) != 0;
    let mut plan = Vec::new();
    for ax in 0..r {
        let crop = axes
            .iter()
            .position(|&v| v == ax)
            .filter(|_| ctm == "tf_crop_and_resize");
        if out[ax] == x.shape[ax] && scale[ax] == 1.0 && crop.is_none() {
            continue;
        }
        let (len_in, len_out) = (x.shape[ax], out[ax]);
        let out_f = len_in as f64 * scale[ax];
        let shrink = if antialias && mode != "nearest" {
            scale[ax].min(1.0)
        } else {
            1.0
        };
        let taps: Vec<Vec<(usize, f64)>> = (0..len_out)
            .map(|o| {
                let xo = match crop {
                    Some(i) => {
                        let (start, end) = (roi[i], roi[i + axes.len()]);
                        let span = len_in as f64 - 1.0;
                        let xo = if len_out > 1 {
                            start * span + o as f64 * (end - start) * span / (len_out as f64 - 1.0)
                        } else {
                            0.5 * (start + end) * span
                        };
                        if xo < 0.0 || xo > span {
                            return vec![(usize::MAX, extrapolation)];
                        }
                        xo
                    }
                    None => original(&ctm, o as f64, scale[ax], len_in, out_f),
                };
                interp_taps(&mode, &nearest_mode, xo, len_in, a, exclude, shrink)
            })
            .collect();
        plan.push(ResizeStep {
            axis: ax,
            len_out,
            taps,
        });
    }
    Ok(plan)
}

/// The input coordinate output position `x` maps to; `len_out` is the
/// unrounded output length (`len_in * scale`), as the ONNX reference uses.
fn original(ctm: &str, x: f64, scale: f64, len_in: usize, len_out: f64) -> f64 {
    match ctm {
        "asymmetric" => x / scale,
        "align_corners" if len_out == 1.0 => 0.0,
        "align_corners" => x * (len_in as f64 - 1.0) / (len_out - 1.0),
        "pytorch_half_pixel" if len_out <= 1.0 => 0.0,
        "half_pixel_symmetric" => {
            let adj = len_out.floor() / len_out;
            let centre = len_in as f64 / 2.0;
            centre * (1.0 - adj) + (x + 0.5) / scale - 0.5
        }
        _ => (x + 0.5) / scale - 0.5,
    }
}

/// Input indices and weights one output position reads along an axis.
/// `shrink` < 1 widens the filter (antialiased downsampling).
fn interp_taps(
    mode: &str,
    nearest: &str,
    x: f64,
    len: usize,
    a: f64,
    exclude: bool,
    shrink: f64,
) -> Vec<(usize, f64)> {
    let clamp = |i: i64| i.clamp(0, len as i64 - 1) as usize;
    let (support, kernel): (f64, Box<dyn Fn(f64) -> f64>) = match mode {
        "linear" => (1.0, Box::new(|d: f64| (1.0 - d.abs()).max(0.0))),
        "cubic" => (2.0, Box::new(move |d: f64| cubic_weight(a, d))),
        _ => {
            let f = x.floor();
            let i = match nearest {
                "floor" => f,
                "ceil" => x.ceil(),
                "round_prefer_ceil" => (x + 0.5).floor(),
                _ if x - f == 0.5 => f,
                _ => x.round(),
            };
            return vec![(clamp(i as i64), 1.0)];
        }
    };
    let reach = support / shrink;
    let (lo, hi) = ((x - reach).floor() as i64, (x + reach).ceil() as i64);
    let mut taps: Vec<(i64, f64)> = (lo..=hi)
        .map(|j| (j, kernel((j as f64 - x) * shrink)))
        .filter(|&(_, w)| w != 0.0)
        .collect();
    if exclude {
        taps.retain(|&(j, _)| j >= 0 && j < len as i64);
    }
    if exclude || shrink < 1.0 {
        let s: f64 = taps.iter().map(|t| t.1).sum();
        taps.iter_mut().for_each(|t| t.1 /= s);
    }
    taps.into_iter().map(|(j, w)| (clamp(j), w)).collect()
}

fn resample(v: &Value, ax: usize, len_out: usize, taps: &[Vec<(usize, f64)>]) -> Value {
    let data = v.to_f64();
    let outer: usize = v.shape[..ax].iter().product();
    let inner: usize = v.shape[ax + 1..].iter().product();
    let len_in = v.shape[ax];
    let mut out = vec![0.0; outer * len_out * inner];
    for o in 0..outer {
        for (j, t) in taps.iter().enumerate() {
            let dst = &mut out[(o * len_out + j) * inner..][..inner];
            for &(i, w) in t {
                if i == usize::MAX {
                    // Outside the crop: the extrapolation value.
                    dst.iter_mut().for_each(|d| *d = w);
                    continue;
                }
                let src = &data[(o * len_in + i) * inner..][..inner];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += w * s);
            }
        }
    }
    let mut shape = v.shape.clone();
    shape[ax] = len_out;
    Value {
        dtype: DType::F64,
        shape,
        data: Data::F64(out),
    }
}

/// The cubic convolution kernel (Keys) with coefficient `a` at distance
/// `d` from a sample.
pub(super) fn cubic_weight(a: f64, d: f64) -> f64 {
    let d = d.abs();
    if d <= 1.0 {
        ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
    } else if d < 2.0 {
        ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
    } else {
        0.0
    }
}
