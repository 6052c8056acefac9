//! Values flowing through an ONNX graph: an element type, a shape and data
//! in one of four storage kinds (f32, f64, i64, bool). Narrow integer types
//! live widened in i64 and narrow float types in f32; the type tag keeps the
//! ONNX type so outputs and casts come out as the graph declares.

use rayon::prelude::*;

pub(crate) use super::dtype::DType;
use super::narrow::E8m0Round;
use crate::quant::round_f16;
use crate::{ElementType, NnError, NnErrorKind, Tensor};

/// Element storage; or, inside a graph only, a value that is not a
/// tensor (graph inputs and outputs are tensors: `wasi:nn` passes nothing
/// else).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    /// A sequence of tensors of the value's `dtype` (its shape is `[]`),
    /// shared: inserting into or erasing from a sequence copies pointers,
    /// not the tensors (a `Loop` growing a list would copy it every turn).
    Seq(Vec<std::sync::Arc<Value>>),
    /// An optional without an element (an optional with one is its
    /// element).
    Absent,
}

impl Data {
    /// Elements of a tensor; 0 for a sequence or an absent optional.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::Seq(_) | Self::Absent => 0,
        }
    }
}

/// A tensor value inside the interpreter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Value {
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Data,
}

/// A runtime error (bad shapes or types met while computing).
pub(crate) fn fail(msg: impl Into<String>) -> NnError {
    NnError::new(NnErrorKind::RuntimeError, msg)
}

/// The element count of `shape`, checked before anything of that size is
/// allocated: a count that overflows or passes [`crate::max_tensor_elements`]
/// is a `too-large` error naming `what` made it, so a model (or an input)
/// that asks for a huge tensor fails its call instead of aborting the
/// process on a failed allocation.
pub(crate) fn numel(shape: &[usize], what: &str) -> Result<usize, NnError> {
    numel_with(shape, || what.to_string())
}

/// [`numel`] naming what made the tensor only when it fails (for callers
/// on hot paths whose name would be formatted: every broadcast).
pub(crate) fn numel_with(shape: &[usize], what: impl FnOnce() -> String) -> Result<usize, NnError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= crate::max_tensor_elements())
        .ok_or_else(|| {
            let what = what();
            NnError::new(
                NnErrorKind::TooLarge,
                format!(
                    "{what} would make a tensor of shape {shape:?}, more than the {} \
                     elements weft-nn allows one tensor; check the sizes the model \
                     computes from its inputs and attributes (a node with the memory \
                     for more may raise WEFT_NN_MAX_TENSOR_ELEMENTS)",
                    crate::max_tensor_elements()
                ),
            )
        })
}

impl Value {
    pub(crate) fn f32(shape: Vec<usize>, v: Vec<f32>) -> Self {
        Self {
            dtype: DType::F32,
            shape,
            data: Data::F32(v),
        }
    }
    pub(crate) fn i64(shape: Vec<usize>, v: Vec<i64>) -> Self {
        Self {
            dtype: DType::I64,
            shape,
            data: Data::I64(v),
        }
    }
    pub(crate) fn bool(shape: Vec<usize>, v: Vec<bool>) -> Self {
        Self {
            dtype: DType::Bool,
            shape,
            data: Data::Bool(v),
        }
    }
    /// Results computed in f64, as a value of `dtype` (`Cast` semantics).
    pub(crate) fn f64_as(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Self {
        Self {
            dtype: DType::F64,
            shape,
            data: Data::F64(v),
        }
        .cast(dtype)
    }
    /// A value of `dtype` from float results (f64 storage for F64).
    pub(crate) fn float(dtype: DType, shape: Vec<usize>, v: Vec<f32>) -> Self {
        if dtype == DType::F64 {
            return Self {
                dtype,
                shape,
                data: Data::F64(v.into_iter().map(f64::from).collect()),
            };
        }
        Self {
            dtype,
            shape,
            data: Data::F32(v),
        }
    }
    /// Same type, new shape and data (which must be of this storage kind).
    pub(crate) fn with(&self, shape: Vec<usize>, data: Data) -> Self {
        Self {
            dtype: self.dtype,
            shape,
            data,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether this is a tensor (not a sequence or an absent optional).
    pub(crate) fn is_tensor(&self) -> bool {
        !matches!(self.data, Data::Seq(_) | Data::Absent)
    }

    /// Values as f32 (any numeric type).
    pub(crate) fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I64(v) if self.dtype == DType::U64 => {
                v.iter().map(|&x| x as u64 as f32).collect()
            }
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
            Data::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
            Data::Seq(_) | Data::Absent => Vec::new(),
        }
    }

    /// Values as f64 (any numeric type).
    pub(crate) fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            Data::F64(v) => v.clone(),
            Data::I64(v) if self.dtype == DType::U64 => {
                v.iter().map(|&x| x as u64 as f64).collect()
            }
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
            Data::Seq(_) | Data::Absent => Vec::new(),
        }
    }

    /// Values as i64 (floats truncated).
    pub(crate) fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::F64(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
            Data::Bool(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Data::Seq(_) | Data::Absent => Vec::new(),
        }
    }

    /// Values as bool (nonzero).
    pub(crate) fn to_bool(&self) -> Vec<bool> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x != 0.0).collect(),
            Data::F64(v) => v.iter().map(|&x| x != 0.0).collect(),
            Data::I64(v) => v.iter().map(|&x| x != 0).collect(),
            Data::Bool(v) => v.clone(),
            Data::Seq(_) | Data::Absent => Vec::new(),
        }
    }

    /// The value converted to `to`, with ONNX `Cast` semantics (and its
    /// defaults: saturating, E8M0 rounded up).
    pub(crate) fn cast(&self, to: DType) -> Value {
        self.cast_with(to, true, E8m0Round::Up)
    }

    /// [`Value::cast`] with `Cast`'s `saturate` and `round_mode`, which
    /// only narrow float types read.
    pub(crate) fn cast_with(&self, to: DType, saturate: bool, mode: E8m0Round) -> Value {
        if to == self.dtype {
            return self.clone();
        }
        let data = match to {
            DType::F64 => Data::F64(self.to_f64()),
            DType::F32 => Data::F32(match &self.data {
                Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
                _ => self.to_f32(),
            }),
            // (From f64 through f32, as `f64_to_f16` rounds.)
            DType::F16 => Data::F32(match &self.data {
                Data::F64(v) => v.iter().map(|&x| round_f16(x as f32)).collect(),
                _ => {
                    let mut v = self.to_f32();
                    crate::quant::round_f16_in_place(&mut v);
                    v
                }
            }),
            DType::Bf16 => Data::F32(self.to_f32().into_iter().map(round_bf16).collect()),
            narrow if narrow.is_narrow_float() => Data::F32(
                self.to_f32()
                    .into_iter()
                    .map(|x| narrow.round(x, saturate, mode))
                    .collect(),
            ),
            DType::Bool => Data::Bool(self.to_bool()),
            int => Data::I64(match &self.data {
                Data::F32(v) => v.iter().map(|&x| float_to_int(f64::from(x), int)).collect(),
                Data::F64(v) => v.iter().map(|&x| float_to_int(x, int)).collect(),
                _ => self.to_i64().into_iter().map(|x| int.wrap(x)).collect(),
            }),
        };
        Value {
            dtype: to,
            shape: self.shape.clone(),
            data,
        }
    }

    /// Reads a `wasi:nn` tensor as a graph input declared `want`.
    pub(crate) fn from_tensor(t: &Tensor, want: DType, name: &str) -> Result<Value, NnError> {
        let bad = || {
            NnError::new(
                NnErrorKind::InvalidArgument,
                format!(
                    "input `{name}` must be {want:?} (as {:?}), got {:?}",
                    want.element_type(),
                    t.ty
                ),
            )
        };
        let n = t.elements();
        if n * t.ty.size() != t.data.len() {
            return Err(NnError::new(
                NnErrorKind::InvalidArgument,
                format!(
                    "input `{name}`: shape {:?} of {:?} needs {} bytes, got {}",
                    t.shape,
                    t.ty,
                    n * t.ty.size(),
                    t.data.len()
                ),
            ));
        }
        let data = if want.is_float() {
            if !matches!(
                t.ty,
                ElementType::F32 | ElementType::F16 | ElementType::Bf16 | ElementType::F64
            ) {
                return Err(bad());
            }
            if want == DType::F64 && t.ty == ElementType::F64 {
                Data::F64(
                    t.data
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
                        .collect(),
                )
            } else {
                let v = t.to_f32()?;
                if want == DType::F64 {
                    Data::F64(v.into_iter().map(f64::from).collect())
                } else if want.is_narrow_float() {
                    Data::F32(
                        v.into_iter()
                            .map(|x| want.round(x, true, E8m0Round::Up))
                            .collect(),
                    )
                } else {
                    Data::F32(v)
                }
            }
        } else {
            let v = t.to_i64().map_err(|_| bad())?;
            if want == DType::Bool {
                Data::Bool(v.into_iter().map(|x| x != 0).collect())
            } else {
                Data::I64(v.into_iter().map(|x| want.wrap(x)).collect())
            }
        };
        Ok(Value {
            dtype: want,
            shape: t.shape.clone(),
            data,
        })
    }

    /// The value as a `wasi:nn` tensor (see [`DType::element_type`]).
    pub(crate) fn to_tensor(&self) -> Tensor {
        let ty = self.dtype.element_type();
        let data: Vec<u8> = match (&self.data, ty) {
            (Data::F32(v), ElementType::F16) => v
                .iter()
                .flat_map(|&x| f64_to_f16(f64::from(x)).to_le_bytes())
                .collect(),
            (Data::F32(v), ElementType::Bf16) => v
                .iter()
                .flat_map(|&x| ((round_bf16(x).to_bits() >> 16) as u16).to_le_bytes())
                .collect(),
            (Data::F32(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (Data::F64(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (Data::I64(v), ElementType::U8) => v.iter().map(|&x| x as u8).collect(),
            (Data::I64(v), ElementType::I32) => {
                v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect()
            }
            (Data::I64(v), _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            (Data::Bool(v), _) => v.iter().map(|&x| u8::from(x)).collect(),
            // Graph outputs are tensors (checked at load).
            (Data::Seq(_) | Data::Absent, _) => Vec::new(),
        };
        Tensor {
            shape: self.shape.clone(),
            ty,
            data,
        }
    }
}

fn float_to_int(x: f64, to: DType) -> i64 {
    if x.is_nan() {
        return 0;
    }
    if to.is_unsigned() && x < 0.0 {
        // numpy's behaviour on x86: through i64, then wrapped.
        return to.wrap(x as i64);
    }
    if to == DType::U64 {
        return x as u64 as i64;
    }
    to.wrap(x as i64)
}

/// IEEE half bits to f32.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    crate::quant::f16_to_f32(h)
}

/// f64 to IEEE half bits, rounding to nearest even (through f32).
pub(crate) fn f64_to_f16(x: f64) -> u16 {
    crate::quant::f32_to_f16(x as f32)
}

/// `v`'s f32 results as a value of half type `dtype` (F16 or BF16, held
/// in f32): rounded in place; any other type is left as it is.
pub(crate) fn round_to_half(v: &mut Value, dtype: DType) {
    let Data::F32(d) = &mut v.data else {
        return;
    };
    let round: fn(&mut [f32]) = match dtype {
        // (Eight at a time with F16C.)
        DType::F16 => crate::quant::round_f16_in_place,
        DType::Bf16 => |c| c.iter_mut().for_each(|x| *x = round_bf16(*x)),
        _ => return,
    };
    if d.len() >= PAR_ELEMENTS {
        d.par_chunks_mut(PAR_ELEMENTS / 4).for_each(round);
    } else {
        round(d);
    }
    v.dtype = dtype;
}

/// f32 rounded to bfloat16 precision (nearest even).
pub(crate) fn round_bf16(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let b = x.to_bits();
    let r = b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(r)
}

/// The numpy broadcast of two shapes.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, NnError> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let x = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let y = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(fail(format!("shapes {a:?} and {b:?} do not broadcast"))),
        };
    }
    numel_with(&out, || format!("broadcasting {a:?} with {b:?}"))?;
    Ok(out)
}

/// Row-major strides of `shape`.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// `data` of `shape` repeated out to `out`, which callers have checked it
/// broadcasts to (see [`broadcast_shape`]).
pub(crate) fn broadcast_to<T: Copy>(data: &[T], shape: &[usize], out: &[usize]) -> Vec<T> {
    let total: usize = out.iter().product();
    if shape == out {
        return data.to_vec();
    }
    if data.len() == 1 {
        return vec![data[0]; total];
    }
    let rank = out.len();
    let pad = rank - shape.len();
    let src = strides(shape);
    // Strides into `data` per output axis; 0 along broadcast axes.
    let st: Vec<usize> = (0..rank)
        .map(|i| {
            if i < pad || shape[i - pad] == 1 {
                0
            } else {
                src[i - pad]
            }
        })
        .collect();
    let mut res = Vec::with_capacity(total);
    if total == 0 {
        return res;
    }
    let inner = out[rank - 1];
    let si = st[rank - 1];
    let mut idx = vec![0usize; rank];
    let mut base = 0usize;
    loop {
        if si == 1 {
            res.extend_from_slice(&data[base..base + inner]);
        } else {
            res.extend(std::iter::repeat_n(data[base], inner));
        }
        // Advance the outer index (all axes but the last).
        let mut ax = rank - 1;
        loop {
            if ax == 0 {
                return res;
            }
            ax -= 1;
            idx[ax] += 1;
            base += st[ax];
            if idx[ax] < out[ax] {
                break;
            }
            base -= st[ax] * out[ax];
            idx[ax] = 0;
        }
    }
}

/// Elementwise `f` over two broadcast operands.
pub(crate) fn zip_broadcast<A: Copy + Sync, B: Copy + Sync, R: Copy + Default + Send + Sync>(
    a: &[A],
    ash: &[usize],
    b: &[B],
    bsh: &[usize],
    f: impl Fn(A, B) -> R + Sync,
) -> Result<(Vec<R>, Vec<usize>), NnError> {
    let out = broadcast_shape(ash, bsh)?;
    let total: usize = out.iter().product();
    let par = total >= PAR_ELEMENTS;
    if a.len() == total && b.len() == total {
        let v = if par {
            a.par_iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
        } else {
            a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
        };
        return Ok((v, out));
    }
    if total == 0 {
        return Ok((Vec::new(), out));
    }
    // General case: walk the output row by row (rows of the last axis),
    // each operand read with stride 0 along its broadcast axes.
    let (sa, sb) = (operand_strides(ash, &out), operand_strides(bsh, &out));
    let rank = out.len();
    let inner = if rank == 0 { 1 } else { out[rank - 1] };
    let (ia, ib) = if rank == 0 {
        (0, 0)
    } else {
        (sa[rank - 1], sb[rank - 1])
    };
    let base = |r: usize| {
        let (mut oa, mut ob, mut rem) = (0, 0, r);
        for ax in (0..rank.saturating_sub(1)).rev() {
            let i = rem % out[ax];
            rem /= out[ax];
            oa += i * sa[ax];
            ob += i * sb[ax];
        }
        (oa, ob)
    };
    let mut v = vec![R::default(); total];
    // Contiguous or repeated operands get slice loops LLVM vectorises.
    let fill = |(r, dst): (usize, &mut [R])| {
        let (oa, ob) = base(r);
        match (ia, ib) {
            (1, 1) => {
                let (x, y) = (&a[oa..oa + inner], &b[ob..ob + inner]);
                dst.iter_mut()
                    .zip(x.iter().zip(y))
                    .for_each(|(d, (&p, &q))| *d = f(p, q));
            }
            (1, 0) => {
                let q = b[ob];
                dst.iter_mut()
                    .zip(&a[oa..oa + inner])
                    .for_each(|(d, &p)| *d = f(p, q));
            }
            (0, 1) => {
                let p = a[oa];
                dst.iter_mut()
                    .zip(&b[ob..ob + inner])
                    .for_each(|(d, &q)| *d = f(p, q));
            }
            _ => dst
                .iter_mut()
                .enumerate()
                .for_each(|(j, d)| *d = f(a[oa + j * ia], b[ob + j * ib])),
        }
    };
    if par {
        v.par_chunks_mut(inner).enumerate().for_each(fill);
    } else {
        v.chunks_mut(inner).enumerate().for_each(fill);
    }
    Ok((v, out))
}

/// Above this many output elements, elementwise work runs in parallel.
const PAR_ELEMENTS: usize = 1 << 16;

/// Strides of an operand of `shape` per axis of the broadcast `out`:
/// 0 along the axes it is broadcast over.
fn operand_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let pad = out.len() - shape.len();
    let st = strides(shape);
    (0..out.len())
        .map(|i| {
            if i < pad || shape[i - pad] == 1 {
                0
            } else {
                st[i - pad]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shape(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert_eq!(broadcast_shape(&[], &[5]).unwrap(), vec![5]);
        assert!(broadcast_shape(&[2, 3], &[4]).is_err());
        let a: Vec<i64> = (0..6).collect(); // [2, 3]
        let (v, s) = zip_broadcast(&a, &[2, 3], &[10, 20], &[2, 1], |x, y| x + y).unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(v, vec![10, 11, 12, 23, 24, 25]);
        let (v, _) = zip_broadcast(&a, &[2, 3], &[1, 2, 3], &[3], |x, y| x * y).unwrap();
        assert_eq!(v, vec![0, 2, 6, 3, 8, 15]);
        let (v, s) = zip_broadcast(&[1, 2], &[2, 1], &[10, 20, 30], &[1, 3], |x, y| x + y).unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(v, vec![11, 21, 31, 12, 22, 32]);
        assert_eq!(broadcast_to(&[7], &[], &[2, 2]), vec![7; 4]);
        assert_eq!(
            broadcast_to(&[1, 2], &[2, 1, 1], &[2, 2, 2]),
            vec![1, 1, 1, 1, 2, 2, 2, 2]
        );
    }

    #[test]
    fn half_round_trips_and_rounds_to_nearest_even() {
        for x in [0.0, 1.0, -2.5, 65504.0, 6.1e-5, 1e-7, 0.1] {
            let h = f64_to_f16(x);
            assert!(
                (f64::from(f16_to_f32(h)) - x).abs() <= x.abs() * 1e-3 + 6e-8,
                "{x}"
            );
        }
        assert_eq!(f64_to_f16(1e6), 0x7c00);
        assert_eq!(f64_to_f16(1.0 + 1.0 / 2048.0), 0x3c00, "ties go to even");
    }

    #[test]
    fn casts_wrap_and_truncate() {
        let v = Value::f32(vec![3], vec![-1.7, 300.2, f32::NAN]);
        assert_eq!(v.cast(DType::I32).to_i64(), vec![-1, 300, 0]);
        assert_eq!(
            Value::i64(vec![1], vec![300]).cast(DType::U8).to_i64(),
            vec![44]
        );
        assert_eq!(v.cast(DType::Bool).to_bool(), vec![true, true, true]);
    }
}
