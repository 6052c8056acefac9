//! Broadcast binary arithmetic (`Add`, `Sub`, `Mul`, `Div`, `Mod`, `Min`,
//! `Max` and the float ops built on them): f32 fast paths that read the
//! smaller operand in place (same shape, repeated, or one value per row),
//! written in place over a spare operand when the executor has one, and a
//! generic broadcasting path for every numeric type.

use rayon::prelude::*;

use super::elementwise::{CHUNK, PAR};
use crate::NnError;
use crate::onnx::value::{DType, Data, Value, broadcast_shape, fail, zip_broadcast};

/// A float binary op with broadcasting, computed in f64.
pub(super) fn float_binary(
    a: &Value,
    b: &Value,
    f: impl Fn(f64, f64) -> f64 + Sync,
) -> Result<Value, NnError> {
    let (data, shape) = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => {
            let (v, s) = zip_broadcast(x, &a.shape, y, &b.shape, |p, q| {
                f(f64::from(p), f64::from(q)) as f32
            })?;
            (Data::F32(v), s)
        }
        (Data::F64(x), Data::F64(y)) => {
            let (v, s) = zip_broadcast(x, &a.shape, y, &b.shape, &f)?;
            (Data::F64(v), s)
        }
        _ => {
            let (x, y) = (a.to_f64(), b.to_f64());
            let (v, s) = zip_broadcast(&x, &a.shape, &y, &b.shape, |p, q| {
                a.dtype.wrap(f(p, q) as i64)
            })?;
            (Data::I64(v), s)
        }
    };
    Ok(a.with(shape, data))
}

/// Arithmetic every storage kind supports.
trait Arith: Copy + Default + PartialOrd + Send + Sync {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    fn rem(self, o: Self, fmod: bool) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! float_arith {
    ($t:ty) => {
        impl Arith for $t {
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
            fn rem(self, o: Self, fmod: bool) -> Self {
                let r = self % o;
                if fmod || r == 0.0 || (r < 0.0) == (o < 0.0) {
                    r
                } else {
                    r + o
                }
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
float_arith!(f32);
float_arith!(f64);

impl Arith for i64 {
    fn add(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    fn sub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    fn mul(self, o: Self) -> Self {
        self.wrapping_mul(o)
    }
    fn div(self, o: Self) -> Self {
        if o == 0 { 0 } else { self.wrapping_div(o) }
    }
    fn rem(self, o: Self, fmod: bool) -> Self {
        if o == 0 {
            return 0;
        }
        let r = self.wrapping_rem(o);
        if fmod || r == 0 || (r < 0) == (o < 0) {
            r
        } else {
            r + o
        }
    }
    fn is_nan(self) -> bool {
        false
    }
}

#[derive(Clone, Copy)]
pub(super) enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Rem(bool),
    Min,
    Max,
}

fn arith<T: Arith>(
    x: &[T],
    xs: &[usize],
    y: &[T],
    ys: &[usize],
    op: Bin,
) -> Result<(Vec<T>, Vec<usize>), NnError> {
    match op {
        Bin::Add => zip_broadcast(x, xs, y, ys, T::add),
        Bin::Sub => zip_broadcast(x, xs, y, ys, T::sub),
        Bin::Mul => zip_broadcast(x, xs, y, ys, T::mul),
        Bin::Div => zip_broadcast(x, xs, y, ys, T::div),
        Bin::Rem(fmod) => zip_broadcast(x, xs, y, ys, |p, q| p.rem(q, fmod)),
        Bin::Min => zip_broadcast(x, xs, y, ys, |p, q| if p.is_nan() || p < q { p } else { q }),
        Bin::Max => zip_broadcast(x, xs, y, ys, |p, q| if p.is_nan() || p > q { p } else { q }),
    }
}

/// How two f32 operands line up with their broadcast output, for the
/// shapes transformers produce; anything else takes [`zip_broadcast`].
#[derive(Clone, Copy)]
pub(super) enum Layout {
    /// Both hold every output element.
    Same,
    /// One holds every element; the other, `n` elements, repeats every `n`
    /// (a bias or a scale over the last axes). `.1`: whether the full
    /// operand is the left one.
    Repeat(usize, bool),
    /// One holds every element; the other one value per row of `n` (a mean
    /// or a norm with keepdims). `.1` as above.
    PerRow(usize, bool),
}

pub(super) fn layout(xs: &[usize], ys: &[usize], out: &[usize]) -> Option<Layout> {
    let total: usize = out.iter().product();
    let (xl, yl) = (xs.iter().product::<usize>(), ys.iter().product::<usize>());
    if xl == total && yl == total {
        return Some(Layout::Same);
    }
    let (small, left_full) = if xl == total { (ys, true) } else { (xs, false) };
    if (if left_full { yl } else { xl }) == 0 || (if left_full { xl } else { yl }) != total {
        return None;
    }
    let trimmed: &[usize] = {
        let lead = small.iter().take_while(|&&d| d == 1).count();
        &small[lead..]
    };
    if out.ends_with(trimmed) {
        return Some(Layout::Repeat(trimmed.iter().product(), left_full));
    }
    let rank = out.len();
    let pad = rank - small.len();
    let per_row = rank > 0
        && small.last() == Some(&1)
        && (0..rank - 1).all(|i| i >= pad && small[i - pad] == out[i] || i < pad && out[i] == 1);
    per_row.then(|| Layout::PerRow(out[rank - 1].max(1), left_full))
}

/// `dst = f(dst, other)` elementwise, `dst` being the full operand of
/// `layout` and `other` the other one, in parallel over chunks of whole
/// rows: straight slice loops that LLVM vectorises.
fn apply_f32(dst: &mut [f32], other: &[f32], layout: Layout, f: impl Fn(f32, f32) -> f32 + Sync) {
    let n = match layout {
        Layout::Same => 1,
        Layout::Repeat(n, _) | Layout::PerRow(n, _) => n.max(1),
    };
    let chunk = (CHUNK / n).max(1) * n;
    let fill = |(i, d): (usize, &mut [f32])| {
        let o = i * chunk;
        match layout {
            Layout::Same => d
                .iter_mut()
                .zip(&other[o..])
                .for_each(|(d, &q)| *d = f(*d, q)),
            Layout::Repeat(1, _) => {
                let q = other[0];
                d.iter_mut().for_each(|d| *d = f(*d, q));
            }
            Layout::Repeat(..) => {
                for row in d.chunks_mut(n) {
                    row.iter_mut().zip(other).for_each(|(d, &q)| *d = f(*d, q));
                }
            }
            Layout::PerRow(..) => {
                for (r, row) in d.chunks_mut(n).enumerate() {
                    let q = other[o / n + r];
                    row.iter_mut().for_each(|d| *d = f(*d, q));
                }
            }
        }
    };
    if dst.len() >= PAR {
        dst.par_chunks_mut(chunk).enumerate().for_each(fill);
    } else {
        dst.chunks_mut(chunk).enumerate().for_each(fill);
    }
}

/// `dst op other` (`other op dst` unless `dst_left`) into `dst`.
pub(super) fn apply_bin(
    dst: &mut [f32],
    other: &[f32],
    layout: Layout,
    dst_left: bool,
    op: Bin,
) -> bool {
    macro_rules! go {
        ($f:expr) => {{
            let f = $f;
            if dst_left {
                apply_f32(dst, other, layout, f)
            } else {
                apply_f32(dst, other, layout, move |p, q| f(q, p))
            }
        }};
    }
    match op {
        Bin::Add => go!(|p: f32, q: f32| p + q),
        Bin::Sub => go!(|p: f32, q: f32| p - q),
        Bin::Mul => go!(|p: f32, q: f32| p * q),
        Bin::Div => go!(|p: f32, q: f32| p / q),
        _ => return false,
    }
    true
}

/// The f32 `Add`/`Sub`/`Mul`/`Div` of common layouts, or `None`.
fn binary_f32(a: &Value, b: &Value, op: Bin) -> Option<Value> {
    let (Data::F32(x), Data::F32(y)) = (&a.data, &b.data) else {
        return None;
    };
    if a.dtype != b.dtype || !matches!(op, Bin::Add | Bin::Sub | Bin::Mul | Bin::Div) {
        return None;
    }
    let out = broadcast_shape(&a.shape, &b.shape).ok()?;
    let l = layout(&a.shape, &b.shape, &out)?;
    let left = match l {
        Layout::Same => true,
        Layout::Repeat(_, left) | Layout::PerRow(_, left) => left,
    };
    let (mut dst, other) = if left { (x.clone(), y) } else { (y.clone(), x) };
    apply_bin(&mut dst, other, l, left, op);
    Some(a.with(out, Data::F32(dst)))
}

pub(super) fn binary(a: &Value, b: &Value, op: Bin) -> Result<Value, NnError> {
    if let Some(v) = binary_f32(a, b, op) {
        return Ok(v);
    }
    let cast;
    let b = if b.dtype == a.dtype {
        b
    } else {
        cast = b.cast(a.dtype);
        &cast
    };
    let (data, shape) = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => {
            let (v, s) = arith(x, &a.shape, y, &b.shape, op)?;
            (Data::F32(v), s)
        }
        (Data::F64(x), Data::F64(y)) => {
            let (v, s) = arith(x, &a.shape, y, &b.shape, op)?;
            (Data::F64(v), s)
        }
        (Data::I64(x), Data::I64(y)) => {
            let (mut v, s) = if a.dtype == DType::U64
                && matches!(op, Bin::Div | Bin::Rem(_) | Bin::Min | Bin::Max)
            {
                // Unsigned 64-bit compares and divides differently from i64.
                let (x, y): (Vec<u64>, Vec<u64>) = (
                    x.iter().map(|&v| v as u64).collect(),
                    y.iter().map(|&v| v as u64).collect(),
                );
                let (r, s) = zip_broadcast(&x, &a.shape, &y, &b.shape, |p, q| match op {
                    Bin::Div => p.checked_div(q).unwrap_or(0),
                    Bin::Rem(_) => p.checked_rem(q).unwrap_or(0),
                    Bin::Min => p.min(q),
                    _ => p.max(q),
                })?;
                (r.into_iter().map(|v| v as i64).collect(), s)
            } else {
                arith(x, &a.shape, y, &b.shape, op)?
            };
            if a.dtype != DType::I64 {
                v.iter_mut().for_each(|x| *x = a.dtype.wrap(*x));
            }
            (Data::I64(v), s)
        }
        (Data::Bool(x), Data::Bool(y)) if matches!(op, Bin::Min | Bin::Max) => {
            let f = |p: bool, q: bool| {
                if matches!(op, Bin::Min) {
                    p && q
                } else {
                    p || q
                }
            };
            let (v, s) = zip_broadcast(x, &a.shape, y, &b.shape, f)?;
            (Data::Bool(v), s)
        }
        _ => return Err(fail(format!("arithmetic is not defined on {:?}", a.dtype))),
    };
    Ok(a.with(shape, data))
}
