//! `DeformConv` (2-D): a convolution whose kernel taps move by learned
//! offsets per output pixel (and are scaled by an optional mask), each
//! tap a bilinear sample of the input, zero outside it.

use rayon::prelude::*;

use super::unpool::per_dim;
use super::{Node, opt, req};
use crate::NnError;
use crate::onnx::value::{Value, fail, numel};

/// The bilinear sample of a `[h, w]` plane at `(y, x)`, zero outside.
fn sample(plane: &[f64], h: usize, w: usize, y: f64, x: f64) -> f64 {
    let (y0, x0) = (y.floor(), x.floor());
    let (ly, lx) = (y - y0, x - x0);
    let at = |yy: f64, xx: f64| {
        if yy < 0.0 || xx < 0.0 || yy >= h as f64 || xx >= w as f64 {
            0.0
        } else {
            plane[yy as usize * w + xx as usize]
        }
    };
    (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x0 + 1.0))
        + ly * ((1.0 - lx) * at(y0 + 1.0, x0) + lx * at(y0 + 1.0, x0 + 1.0))
}

pub(super) fn deform_conv(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let (x, wt, off) = (req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?);
    let (bias, mask) = (opt(inputs, 3), opt(inputs, 4));
    let (&[n, ic, ih, iw], &[oc, icg, kh, kw]) = (&x.shape[..], &wt.shape[..]) else {
        return Err(fail(format!(
            "DeformConv runs 2-D inputs: X [N, C, H, W] and W [M, C/group, kH, kW], got {:?} and {:?}",
            x.shape, wt.shape
        )));
    };
    let group = node.int("group", 1).max(1) as usize;
    let og = node.int("offset_group", 1).max(1) as usize;
    let (st, dil, pads) = (
        per_dim(node, "strides", 2, 1)?,
        per_dim(node, "dilations", 2, 1)?,
        per_dim(node, "pads", 4, 0)?,
    );
    if ic != icg * group || oc % group != 0 || ic % og != 0 {
        return Err(fail(format!(
            "DeformConv's shapes disagree: X has {ic} channels, W {icg} per group of {group} \
             for {oc} outputs, offset_group {og}"
        )));
    }
    let span = |i: usize, k: usize, d: i64, s: i64, p: i64| {
        (i as i64 + p - (k as i64 - 1) * d - 1).div_euclid(s.max(1)) + 1
    };
    let oh = span(ih, kh, dil[0], st[0], pads[0] + pads[2]).max(0) as usize;
    let ow = span(iw, kw, dil[1], st[1], pads[1] + pads[3]).max(0) as usize;
    let taps = kh * kw;
    if off.shape != [n, og * taps * 2, oh, ow] {
        return Err(fail(format!(
            "DeformConv's offset must be [{n}, {}, {oh}, {ow}] (offset_group × kH × kW × 2 per \
             output pixel), got {:?}",
            og * taps * 2,
            off.shape
        )));
    }
    if let Some(m) = mask
        && m.shape != [n, og * taps, oh, ow]
    {
        return Err(fail(format!(
            "DeformConv's mask must be [{n}, {}, {oh}, {ow}], got {:?}",
            og * taps,
            m.shape
        )));
    }
    if bias.is_some_and(|b| b.len() != oc) {
        return Err(fail(format!("DeformConv's bias must have {oc} values")));
    }
    let (xv, wv, ov) = (x.to_f64(), wt.to_f64(), off.to_f64());
    let mv = mask.map(Value::to_f64);
    let bv = bias.map(Value::to_f64);
    let pixels = oh * ow;
    numel(&[n, ic, taps, pixels], "DeformConv's columns")?;
    // Columns: for each image, input channel and tap, the sampled (and
    // masked) value under every output pixel.
    let cols: Vec<f64> = (0..n * ic * taps)
        .into_par_iter()
        .flat_map_iter(|row| {
            let (b, c, t) = (row / (ic * taps), row / taps % ic, row % taps);
            let g = c / (ic / og);
            let (ki, kj) = (t / kw, t % kw);
            let plane = &xv[(b * ic + c) * ih * iw..][..ih * iw];
            let (ov, mv, st, dil, pads) = (&ov, &mv, &st, &dil, &pads);
            (0..pixels).map(move |p| {
                let (i, j) = (p / ow, p % ow);
                let channel = |k: usize| ((b * og * taps * k) + (g * taps + t) * k) * pixels;
                let dy = ov[channel(2) + p];
                let dx = ov[channel(2) + pixels + p];
                let y = (i as i64 * st[0] - pads[0] + ki as i64 * dil[0]) as f64 + dy;
                let x = (j as i64 * st[1] - pads[1] + kj as i64 * dil[1]) as f64 + dx;
                let m = mv.as_ref().map_or(1.0, |m| m[channel(1) + p]);
                m * sample(plane, ih, iw, y, x)
            })
        })
        .collect();
    let ocg = oc / group;
    let out: Vec<f64> = (0..n * oc)
        .into_par_iter()
        .flat_map_iter(|bo| {
            let (b, o) = (bo / oc, bo % oc);
            let g = o / ocg;
            let mut acc = vec![bv.as_ref().map_or(0.0, |bv| bv[o]); pixels];
            for cg in 0..icg {
                let c = g * icg + cg;
                for t in 0..taps {
                    let wgt = wv[(o * icg + cg) * taps + t];
                    let col = &cols[((b * ic + c) * taps + t) * pixels..][..pixels];
                    for (a, v) in acc.iter_mut().zip(col) {
                        *a += wgt * v;
                    }
                }
            }
            acc
        })
        .collect();
    Ok(Value::f64_as(x.dtype, vec![n, oc, oh, ow], out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::NodeProto;

    #[test]
    fn zero_offsets_are_a_plain_convolution_and_half_pixel_ones_interpolate() {
        let proto = NodeProto::default();
        let node = Node {
            proto: &proto,
            opset: 19,
        };
        let x = Value::f32(vec![1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
        let w = Value::f32(vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let zero = Value::f32(vec![1, 8, 2, 2], vec![0.0; 32]);
        let y = deform_conv(node, &[Some(&x), Some(&w), Some(&zero)]).unwrap();
        // 1·1 + 2·2 + 3·4 + 4·5 = 37, and so on.
        assert_eq!(y.to_f32(), [37.0, 47.0, 67.0, 77.0]);
        // Every tap half a pixel right: the mean of two neighbours, and
        // zero past the edge.
        let right: Vec<f32> = (0..32)
            .map(|i| if (i / 4) % 2 == 1 { 0.5 } else { 0.0 })
            .collect();
        let right = Value::f32(vec![1, 8, 2, 2], right);
        let y = deform_conv(node, &[Some(&x), Some(&w), Some(&right)]).unwrap();
        // Top-left: taps at (0, .5), (0, 1.5), (1, .5), (1, 1.5).
        assert_eq!(y.to_f32()[0], 1.5 + 2.0 * 2.5 + 3.0 * 4.5 + 4.0 * 5.5);
        // Top-right: the taps at x 2.5 reach half of a zero past the edge.
        assert_eq!(y.to_f32()[1], 2.5 + 2.0 * 1.5 + 3.0 * 5.5 + 4.0 * 3.0);
        let bad = Value::f32(vec![1, 4, 2, 2], vec![0.0; 16]);
        let err = deform_conv(node, &[Some(&x), Some(&w), Some(&bad)]).unwrap_err();
        assert!(
            err.message.contains("offset must be [1, 8, 2, 2]"),
            "{}",
            err.message
        );
    }
}
