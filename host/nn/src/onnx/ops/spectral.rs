//! Spectral operators, as audio front ends use them: `DFT`, `STFT` and
//! `MelWeightMatrix`, over a fast Fourier transform of any length
//! (radix 2 where the length is a power of two, Bluestein's chirp
//! transform through radix 2 otherwise), in f64.

use rayon::prelude::*;

use super::{Node, axis, opt, req};
use crate::NnError;
use crate::onnx::value::{DType, Value, fail, numel};

type Complex = (f64, f64);

fn mul(a: Complex, b: Complex) -> Complex {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

/// `e^(sign · i·π·num/den)`.
fn turn(sign: f64, num: f64, den: f64) -> Complex {
    let (s, c) = (sign * std::f64::consts::PI * num / den).sin_cos();
    (c, s)
}

/// The discrete Fourier transform of `x`, in place: `X_k = Σ x_j
/// e^(∓2πi·jk/n)` (the minus sign forward; no scaling either way).
pub(super) fn fft(x: &mut [Complex], inverse: bool) {
    let n = x.len();
    if n <= 1 {
        return;
    }
    let sign = if inverse { 1.0 } else { -1.0 };
    if n.is_power_of_two() {
        return radix2(x, sign);
    }
    // Bluestein: jk = (j² + k² - (k - j)²) / 2 turns the transform into a
    // convolution with the chirp c_j = e^(sign·πi·j²/n), done in radix 2.
    let m = (2 * n - 1).next_power_of_two();
    // j² mod 2n keeps the angle small, so the chirp stays accurate.
    let chirp: Vec<Complex> = (0..n)
        .map(|j| turn(sign, ((j * j) % (2 * n)) as f64, n as f64))
        .collect();
    let mut a = vec![(0.0, 0.0); m];
    for ((a, &x), &c) in a.iter_mut().zip(x.iter()).zip(&chirp) {
        *a = mul(x, c);
    }
    let mut b = vec![(0.0, 0.0); m];
    for (j, &(re, im)) in chirp.iter().enumerate() {
        b[j] = (re, -im);
        if j > 0 {
            b[m - j] = (re, -im);
        }
    }
    radix2(&mut a, -1.0);
    radix2(&mut b, -1.0);
    for (a, b) in a.iter_mut().zip(&b) {
        *a = mul(*a, *b);
    }
    radix2(&mut a, 1.0);
    let scale = 1.0 / m as f64;
    for (k, x) in x.iter_mut().enumerate() {
        let (re, im) = mul(a[k], chirp[k]);
        *x = (re * scale, im * scale);
    }
}

/// Iterative radix-2 transform of a power-of-two length.
fn radix2(x: &mut [Complex], sign: f64) {
    let n = x.len();
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if i < j {
            x.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let w: Vec<Complex> = (0..half)
            .map(|k| turn(sign, 2.0 * k as f64, len as f64))
            .collect();
        for chunk in x.chunks_mut(len) {
            for k in 0..half {
                let t = mul(chunk[k + half], w[k]);
                let u = chunk[k];
                chunk[k] = (u.0 + t.0, u.1 + t.1);
                chunk[k + half] = (u.0 - t.0, u.1 - t.1);
            }
        }
        len *= 2;
    }
}

/// A scalar integer input, if given.
fn scalar(inputs: &[Option<&Value>], i: usize, what: &str) -> Result<Option<i64>, NnError> {
    match opt(inputs, i) {
        None => Ok(None),
        Some(v) if v.len() == 1 => Ok(Some(v.to_i64()[0])),
        Some(v) => Err(fail(format!(
            "{what} must be a single value, got shape {:?}",
            v.shape
        ))),
    }
}

/// A length from input `i` (positive), or `default`.
fn length(
    inputs: &[Option<&Value>],
    i: usize,
    what: &str,
    default: usize,
) -> Result<usize, NnError> {
    match scalar(inputs, i, what)? {
        None => Ok(default),
        Some(n) if n > 0 => Ok(n as usize),
        Some(n) => Err(fail(format!("{what} must be positive, got {n}"))),
    }
}

/// The signal's last axis: 1 (real) or 2 (real, imaginary).
fn components(x: &Value) -> Result<usize, NnError> {
    match x.shape.last() {
        Some(&c @ (1 | 2)) if x.shape.len() >= 2 => Ok(c),
        _ => Err(fail(format!(
            "the signal's shape {:?} must end in 1 (real) or 2 (complex) and have another axis",
            x.shape
        ))),
    }
}

/// `DFT` (opsets 17 and 20) along one axis, zero-padded or cut to
/// `dft_length`; `onesided` keeps the first `n/2 + 1` outputs, `inverse`
/// scales by `1/n`.
pub(super) fn dft(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let c = components(x)?;
    let rank = x.shape.len();
    let ax = match node.opset >= 20 {
        true => scalar(inputs, 2, "DFT's axis")?.unwrap_or(-2),
        false => node.int("axis", 1),
    };
    let ax = axis(ax, rank)?;
    if ax == rank - 1 {
        return Err(fail(
            "DFT's axis cannot be the last, which holds the components",
        ));
    }
    let len = x.shape[ax];
    let n = length(inputs, 1, "dft_length", len)?;
    let (inverse, onesided) = (node.int("inverse", 0) != 0, node.int("onesided", 0) != 0);
    let kept = if onesided { n / 2 + 1 } else { n };
    let outer: usize = x.shape[..ax].iter().product();
    let inner: usize = x.shape[ax + 1..rank - 1].iter().product();
    // Each line is transformed in a buffer of n before it is cut to kept.
    numel(&[outer, n.max(kept), inner, 2], "DFT")?;
    let v = x.to_f64();
    let scale = if inverse { 1.0 / n as f64 } else { 1.0 };
    let lines: Vec<Vec<Complex>> = (0..outer * inner)
        .into_par_iter()
        .map(|line| {
            let (o, i) = (line / inner, line % inner);
            let mut buf: Vec<Complex> = (0..n)
                .map(|j| match j < len {
                    true => {
                        let at = ((o * len + j) * inner + i) * c;
                        (v[at], if c == 2 { v[at + 1] } else { 0.0 })
                    }
                    false => (0.0, 0.0),
                })
                .collect();
            fft(&mut buf, inverse);
            buf.truncate(kept);
            buf
        })
        .collect();
    let mut out = vec![0.0; outer * kept * inner * 2];
    for (line, buf) in lines.iter().enumerate() {
        let (o, i) = (line / inner, line % inner);
        for (k, &(re, im)) in buf.iter().enumerate() {
            let at = ((o * kept + k) * inner + i) * 2;
            out[at] = re * scale;
            out[at + 1] = im * scale;
        }
    }
    let mut shape = x.shape.clone();
    shape[ax] = kept;
    shape[rank - 1] = 2;
    Ok(Value::f64_as(x.dtype, shape, out))
}

/// `STFT`: `[batch, length, 1 or 2]` framed every `frame_step` samples,
/// each frame weighted by `window` (ones by default) and transformed:
/// `[batch, frames, bins, 2]`, `bins` halved (plus one) when `onesided`
/// (the default).
pub(super) fn stft(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let c = components(x)?;
    if x.shape.len() != 3 {
        return Err(fail(format!(
            "STFT's signal must be [batch, length, 1 or 2], got {:?}",
            x.shape
        )));
    }
    let (batch, len) = (x.shape[0], x.shape[1]);
    let step = length(inputs, 1, "frame_step", 0)?;
    if step == 0 {
        return Err(fail("STFT needs frame_step (input 1)"));
    }
    let window = opt(inputs, 2).map(Value::to_f64);
    let frame = length(
        inputs,
        3,
        "frame_length",
        window.as_ref().map_or(len, Vec::len),
    )?;
    let window = window.unwrap_or_else(|| vec![1.0; frame]);
    if window.len() != frame {
        return Err(fail(format!(
            "the window has {} values but frame_length is {frame}: give them the same length",
            window.len()
        )));
    }
    if frame > len {
        return Err(fail(format!(
            "frame_length {frame} is longer than the signal ({len} samples)"
        )));
    }
    let frames = 1 + (len - frame) / step;
    let bins = if node.int("onesided", 1) != 0 {
        frame / 2 + 1
    } else {
        frame
    };
    numel(&[batch, frames, frame, 2], "STFT")?;
    let v = x.to_f64();
    let out: Vec<f64> = (0..batch * frames)
        .into_par_iter()
        .flat_map_iter(|bf| {
            let (b, f) = (bf / frames, bf % frames);
            let mut buf: Vec<Complex> = (0..frame)
                .map(|j| {
                    let at = (b * len + f * step + j) * c;
                    let im = if c == 2 { v[at + 1] } else { 0.0 };
                    (v[at] * window[j], im * window[j])
                })
                .collect();
            fft(&mut buf, false);
            buf.truncate(bins);
            buf.into_iter().flat_map(|(re, im)| [re, im])
        })
        .collect();
    Ok(Value::f64_as(x.dtype, vec![batch, frames, bins, 2], out))
}

/// `MelWeightMatrix`: `[dft_length/2 + 1, num_mel_bins]` triangular
/// filters, spaced evenly in mels between the edge frequencies, with the
/// reference's arithmetic (mels in f32, bins floored in f64).
pub(super) fn mel_weight_matrix(
    node: Node<'_>,
    inputs: &[Option<&Value>],
) -> Result<Value, NnError> {
    let mels = length(inputs, 0, "num_mel_bins", 0)?;
    let dft = length(inputs, 1, "dft_length", 0)?;
    let rate = length(inputs, 2, "sample_rate", 0)?;
    let edge = |i: usize| -> Result<f32, NnError> {
        let v = req(inputs, i)?;
        match v.len() {
            1 => Ok(v.to_f32()[0]),
            _ => Err(fail("the edge frequencies must be single values")),
        }
    };
    let (low, high) = (edge(3)?, edge(4)?);
    if mels == 0 || dft == 0 || rate == 0 || !(0.0 <= low && low < high) {
        return Err(fail(format!(
            "MelWeightMatrix needs positive num_mel_bins, dft_length and sample_rate and \
             0 <= lower_edge_hertz < upper_edge_hertz, got {mels}, {dft}, {rate}, {low}, {high}"
        )));
    }
    let mel = |hz: f32| 2595.0 * (1.0 + hz / 700.0).log10();
    let (lo_mel, hi_mel) = (mel(low), mel(high));
    let step = (hi_mel - lo_mel) / (mels + 2) as f32;
    let spectrum = dft / 2 + 1;
    numel(&[spectrum, mels], "MelWeightMatrix")?;
    let edges: Vec<usize> = (0..mels + 2)
        .map(|i| {
            let m = i as f64 * f64::from(step) + f64::from(lo_mel);
            let hz = 700.0 * (10f64.powf(m / 2595.0) - 1.0);
            (((dft + 1) as f64 * hz) / rate as f64).floor().max(0.0) as usize
        })
        .collect();
    if edges[mels + 1] >= spectrum {
        return Err(fail(format!(
            "upper_edge_hertz {high} falls past the last of the {spectrum} DFT bins at \
             sample_rate {rate}: give at most sample_rate / 2"
        )));
    }
    let mut out = vec![0.0; spectrum * mels];
    for i in 0..mels {
        let (left, center, right) = (edges[i], edges[i + 1], edges[i + 2]);
        if center == left {
            out[center * mels + i] = 1.0;
        } else {
            for j in left..=center {
                out[j * mels + i] = (j - left) as f64 / (center - left) as f64;
            }
        }
        for j in center..right {
            out[j * mels + i] = (right - j) as f64 / (right - center) as f64;
        }
    }
    let code = node.int("output_datatype", 1);
    let dtype = DType::from_onnx(code)
        .ok_or_else(|| fail(format!("output_datatype {code} is not supported")))?;
    Ok(Value::f64_as(dtype, vec![spectrum, mels], out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::NodeProto;

    fn naive(x: &[Complex], inverse: bool) -> Vec<Complex> {
        let n = x.len();
        let sign = if inverse { 1.0 } else { -1.0 };
        (0..n)
            .map(|k| {
                x.iter().enumerate().fold((0.0, 0.0), |acc, (j, &v)| {
                    let t = mul(v, turn(sign, 2.0 * ((j * k) % n) as f64, n as f64));
                    (acc.0 + t.0, acc.1 + t.1)
                })
            })
            .collect()
    }

    fn message(r: Result<Value, NnError>) -> String {
        r.expect_err("an error").message
    }

    #[test]
    fn bad_arguments_are_errors_that_say_what_to_give() {
        let proto = NodeProto::default();
        let node = Node {
            proto: &proto,
            opset: 20,
        };
        let signal = Value::f32(vec![1, 8, 1], (0..8).map(|i| i as f32).collect());
        let step = Value::i64(vec![], vec![2]);
        let window = Value::f32(vec![4], vec![1.0; 4]);
        let long = Value::i64(vec![], vec![5]);
        let err = message(stft(
            node,
            &[Some(&signal), Some(&step), Some(&window), Some(&long)],
        ));
        assert!(err.contains("give them the same length"), "{err}");
        let err = message(stft(node, &[Some(&signal), None]));
        assert!(err.contains("needs frame_step"), "{err}");
        let flat = Value::f32(vec![8], vec![0.0; 8]);
        let err = message(dft(node, &[Some(&flat)]));
        assert!(err.contains("must end in 1 (real) or 2 (complex)"), "{err}");
        let last = Value::i64(vec![], vec![-1]);
        let err = message(dft(node, &[Some(&signal), None, Some(&last)]));
        assert!(err.contains("cannot be the last"), "{err}");
        let int = |v| Value::i64(vec![], vec![v]);
        let hz = |v| Value::f32(vec![], vec![v]);
        let (mels, n, rate) = (int(8), int(16), int(8000));
        let (low, high) = (hz(0.0), hz(6000.0));
        let err = message(mel_weight_matrix(
            node,
            &[Some(&mels), Some(&n), Some(&rate), Some(&low), Some(&high)],
        ));
        assert!(err.contains("give at most sample_rate / 2"), "{err}");
    }

    #[test]
    fn stft_frames_match_a_dft_of_each_frame() {
        let proto = NodeProto::default();
        let node = Node {
            proto: &proto,
            opset: 20,
        };
        let x: Vec<f32> = (0..10).map(|i| (i as f32 * 0.7).sin()).collect();
        let signal = Value::f32(vec![1, 10, 1], x.clone());
        let step = Value::i64(vec![], vec![3]);
        let frame = Value::i64(vec![], vec![4]);
        let y = stft(node, &[Some(&signal), Some(&step), None, Some(&frame)]).unwrap();
        // 1 + (10 - 4) / 3 frames of 4 / 2 + 1 bins.
        assert_eq!(y.shape, [1, 3, 3, 2]);
        let y = y.to_f64();
        for f in 0..3 {
            let mut buf: Vec<Complex> = (0..4).map(|j| (f64::from(x[f * 3 + j]), 0.0)).collect();
            fft(&mut buf, false);
            for (k, want) in buf.iter().take(3).enumerate() {
                let at = (f * 3 + k) * 2;
                assert!((y[at] - want.0).abs() < 1e-6 && (y[at + 1] - want.1).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn fft_matches_the_definition_at_every_kind_of_length() {
        for n in [1, 2, 3, 5, 8, 10, 16, 31, 64, 100, 400] {
            let x: Vec<Complex> = (0..n)
                .map(|i| ((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()))
                .collect();
            for inverse in [false, true] {
                let mut y = x.clone();
                fft(&mut y, inverse);
                let want = naive(&x, inverse);
                for (k, (a, b)) in y.iter().zip(&want).enumerate() {
                    let err = (a.0 - b.0).abs().max((a.1 - b.1).abs());
                    assert!(err < 1e-9 * n as f64, "n {n} k {k}: {a:?} vs {b:?}");
                }
            }
        }
    }
}
