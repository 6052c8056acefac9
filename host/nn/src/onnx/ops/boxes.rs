//! Detection post-processing: `NonMaxSuppression`.

use super::{Node, opt, req};
use crate::NnError;
use crate::onnx::value::{Value, fail};

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
