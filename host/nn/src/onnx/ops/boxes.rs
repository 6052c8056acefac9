//! Detection: `NonMaxSuppression` and `RoiAlign`.

use super::{Node, opt, req};
use crate::NnError;
use crate::onnx::value::{Value, fail, numel};

/// Corners `(y1, x1, y2, x2)`, ordered, of box `b`.
fn corners(b: &[f64], centre: bool) -> [f64; 4] {
    if centre {
        let (xc, yc, w, h) = (b[0], b[1], b[2], b[3]);
        [yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0]
    } else {
        [
            b[0].min(b[2]),
            b[1].min(b[3]),
            b[0].max(b[2]),
            b[1].max(b[3]),
        ]
    }
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let area = |c: [f64; 4]| (c[2] - c[0]) * (c[3] - c[1]);
    let (ih, iw) = (
        a[2].min(b[2]) - a[0].max(b[0]),
        a[3].min(b[3]) - a[1].max(b[1]),
    );
    if ih <= 0.0 || iw <= 0.0 {
        return 0.0;
    }
    let inter = ih * iw;
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

pub(super) fn non_max_suppression(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Result<Value, NnError> {
    let (boxes, scores) = (req(inputs, 0)?, req(inputs, 1)?);
    let [nb, ns, 4] = boxes.shape[..] else {
        return Err(fail("boxes must be [batch, boxes, 4]"));
    };
    let [sb, nc, ss] = scores.shape[..] else {
        return Err(fail("scores must be [batch, classes, boxes]"));
    };
    if sb != nb || ss != ns {
        return Err(fail("boxes and scores disagree"));
    }
    let max_out = opt(inputs, 2).map_or(0, |v| v.to_i64()[0]).max(0) as usize;
    let iou_max = opt(inputs, 3).map_or(0.0, |v| v.to_f64()[0]);
    let min_score = opt(inputs, 4).map(|v| v.to_f64()[0]);
    let centre = node.int("center_point_box", 0) != 0;
    let (bv, sv) = (boxes.to_f64(), scores.to_f64());
    let mut out = Vec::new();
    for b in 0..nb {
        for c in 0..nc {
            let s = &sv[(b * nc + c) * ns..(b * nc + c + 1) * ns];
            let mut order: Vec<usize> = (0..ns)
                .filter(|&i| min_score.is_none_or(|m| s[i] > m))
                .collect();
            order.sort_by(|&i, &j| s[j].total_cmp(&s[i]).then(i.cmp(&j)));
            let mut kept: Vec<usize> = Vec::new();
            for i in order {
                if kept.len() >= max_out {
                    break;
                }
                let bi = corners(&bv[(b * ns + i) * 4..][..4], centre);
                if kept
                    .iter()
                    .all(|&k| iou(bi, corners(&bv[(b * ns + k) * 4..][..4], centre)) <= iou_max)
                {
                    kept.push(i);
                }
            }
            out.extend(kept.iter().flat_map(|&k| [b as i64, c as i64, k as i64]));
        }
    }
    Ok(Value::i64(vec![out.len() / 3, 3], out))
}

/// One bilinear sample of a `[H, W]` plane: its four corners' flat
/// indices and weights, as `RoiAlign` precomputes them (a point more than
/// a pixel outside gives nothing; one at the edge clamps to it).
fn corner_weights(y: f64, x: f64, h: usize, w: usize) -> [(usize, f64); 4] {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 {
        return [(0, 0.0); 4];
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let (mut y0, mut x0) = (y as usize, x as usize);
    let y1 = if y0 >= h - 1 {
        y0 = h - 1;
        y = y0 as f64;
        y0
    } else {
        y0 + 1
    };
    let x1 = if x0 >= w - 1 {
        x0 = w - 1;
        x = x0 as f64;
        x0
    } else {
        x0 + 1
    };
    let (ly, lx) = (y - y0 as f64, x - x0 as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    [
        (y0 * w + x0, hy * hx),
        (y0 * w + x1, hy * lx),
        (y1 * w + x0, ly * hx),
        (y1 * w + x1, ly * lx),
    ]
}

/// `RoiAlign`: for each region (`[x1, y1, x2, y2]` of image
/// `batch_indices[r]`, scaled by `spatial_scale`), an
/// `[output_height, output_width]` grid of bins, each the average (or
/// the max of the weighted corners, as onnxruntime does) of bilinear
/// samples on a `sampling_ratio` grid (adaptive when 0).
pub(super) fn roi_align(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, rois, batch) = (req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?);
    let [n, c, h, w] = x.shape[..] else {
        return Err(fail(format!(
            "RoiAlign's X must be [N, C, H, W], got {:?}",
            x.shape
        )));
    };
    let r = batch.len();
    if rois.shape != [r, 4] || h == 0 || w == 0 {
        return Err(fail(format!(
            "RoiAlign needs rois of [regions, 4] and one batch index per region, got {:?} and {:?}",
            rois.shape, batch.shape
        )));
    }
    let (ph, pw) = (
        node.int("output_height", 1).max(1) as usize,
        node.int("output_width", 1).max(1) as usize,
    );
    let ratio = node.int("sampling_ratio", 0);
    let scale = f64::from(node.float("spatial_scale", 1.0));
    let default = if node.opset >= 16 {
        "half_pixel"
    } else {
        "output_half_pixel"
    };
    let half_pixel = match node
        .string("coordinate_transformation_mode", default)
        .as_str()
    {
        "half_pixel" => true,
        "output_half_pixel" => false,
        other => {
            return Err(fail(format!(
                "RoiAlign's coordinate_transformation_mode `{other}` is not `half_pixel` or \
                 `output_half_pixel`"
            )));
        }
    };
    let max = match node.string("mode", "avg").as_str() {
        "avg" => false,
        "max" => true,
        other => {
            return Err(fail(format!(
                "RoiAlign's mode `{other}` is not `avg` or `max`"
            )));
        }
    };
    let (xv, rv, bv) = (x.to_f64(), rois.to_f64(), batch.to_i64());
    let mut out = vec![0.0; numel(&[r, c, ph, pw], "RoiAlign")?];
    for (i, (roi, &b)) in rv.chunks(4).zip(&bv).enumerate() {
        let b = usize::try_from(b)
            .ok()
            .filter(|&b| b < n)
            .ok_or_else(|| fail(format!("batch index {b} is not one of the {n} images")))?;
        let offset = if half_pixel { 0.5 } else { 0.0 };
        let (x0, y0) = (roi[0] * scale - offset, roi[1] * scale - offset);
        let (mut rw, mut rh) = (roi[2] * scale - offset - x0, roi[3] * scale - offset - y0);
        if !half_pixel {
            (rw, rh) = (rw.max(1.0), rh.max(1.0));
        }
        let (bh, bw) = (rh / ph as f64, rw / pw as f64);
        let grid = |bin: f64| match ratio > 0 {
            true => ratio as usize,
            false => bin.ceil().max(0.0) as usize,
        };
        let (gh, gw) = (grid(bh), grid(bw));
        let count = (gh * gw).max(1) as f64;
        // The samples of every bin, shared by the channels.
        let samples: Vec<[(usize, f64); 4]> = (0..ph * pw)
            .flat_map(|bin| {
                let (py, px) = (bin / pw, bin % pw);
                (0..gh * gw).map(move |s| {
                    let (iy, ix) = ((s / gw) as f64, (s % gw) as f64);
                    let y = y0 + py as f64 * bh + (iy + 0.5) * bh / gh as f64;
                    let x = x0 + px as f64 * bw + (ix + 0.5) * bw / gw as f64;
                    corner_weights(y, x, h, w)
                })
            })
            .collect();
        for ch in 0..c {
            let plane = &xv[(b * c + ch) * h * w..][..h * w];
            let dst = &mut out[(i * c + ch) * ph * pw..][..ph * pw];
            for (bin, d) in dst.iter_mut().enumerate() {
                let bin = &samples[bin * gh * gw..][..gh * gw];
                let vals = bin.iter().map(|s| s.map(|(at, wt)| wt * plane[at]));
                *d = match max {
                    false => vals.map(|v| v.iter().sum::<f64>()).sum::<f64>() / count,
                    true => vals
                        .map(|v| v.into_iter().fold(f64::NEG_INFINITY, f64::max))
                        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                        .unwrap_or(0.0),
                };
            }
        }
    }
    Ok(Value::f64_as(x.dtype, vec![r, c, ph, pw], out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{Attr, NodeProto};

    #[test]
    fn roi_align_averages_samples_and_names_bad_arguments() {
        let mut proto = NodeProto {
            op_type: "RoiAlign".into(),
            ..Default::default()
        };
        let run = |proto: &NodeProto, b: i64| {
            let node = Node { proto, opset: 16 };
            // A ramp 0..16 over a 4 x 4 image; the whole image as one bin.
            let x = Value::f32(vec![1, 1, 4, 4], (0..16).map(|v| v as f32).collect());
            let rois = Value::f32(vec![1, 4], vec![0.0, 0.0, 4.0, 4.0]);
            let batch = Value::i64(vec![1], vec![b]);
            roi_align(node, &[Some(&x), Some(&rois), Some(&batch)])
        };
        // Half-pixel samples at 0.5 + {0, 1, 2, 3} - 0.5 hit the pixels:
        // their mean.
        assert_eq!(run(&proto, 0).unwrap().to_f32(), [7.5]);
        let err = run(&proto, 1).unwrap_err();
        assert!(
            err.message.contains("batch index 1 is not one of the 1"),
            "{}",
            err.message
        );
        proto
            .attrs
            .push(("mode".into(), Attr::Str(b"median".to_vec())));
        let err = run(&proto, 0).unwrap_err();
        assert!(err.message.contains("mode `median`"), "{}", err.message);
    }
}
