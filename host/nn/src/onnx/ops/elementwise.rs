//! Elementwise operators: unary maths and activations, comparisons and
//! logic, `Where`, `Clip` and casts; the broadcast binary arithmetic they
//! dispatch to is in `binary.rs`.

use rayon::prelude::*;

use super::binary::{Bin, Layout, apply_bin, binary, float_binary, layout};
use super::{Node, opt, req};
use crate::NnError;
use crate::onnx::narrow::E8m0Round;
use crate::onnx::value::{DType, Data, Value, broadcast_shape, broadcast_to, fail, zip_broadcast};

/// Above this many elements, unary maps run in parallel.
pub(super) const PAR: usize = 1 << 16;

pub(super) fn run(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let op = node.proto.op_type.as_str();
    let alpha = |d| f64::from(node.float("alpha", d));
    match op {
        "Add" | "Sub" | "Mul" | "Div" | "Mod" | "Min" | "Max" | "Sum" | "Mean" => {
            variadic(node, inputs)
        }
        "Pow" => pow(req(inputs, 0)?, req(inputs, 1)?),
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => {
            compare(op, req(inputs, 0)?, req(inputs, 1)?)
        }
        "And" | "Or" | "Xor" => logic(op, req(inputs, 0)?, req(inputs, 1)?),
        "BitwiseAnd" | "BitwiseOr" | "BitwiseXor" | "BitShift" => {
            bitwise(node, req(inputs, 0)?, req(inputs, 1)?)
        }
        "Not" => Ok(Value::bool(
            req(inputs, 0)?.shape.clone(),
            req(inputs, 0)?.to_bool().iter().map(|b| !b).collect(),
        )),
        "BitwiseNot" => {
            let x = req(inputs, 0)?;
            Ok(x.with(
                x.shape.clone(),
                Data::I64(x.to_i64().into_iter().map(|v| x.dtype.wrap(!v)).collect()),
            ))
        }
        "Where" => where_(req(inputs, 0)?, req(inputs, 1)?, req(inputs, 2)?),
        "Clip" => clip(node, inputs),
        "Cast" => {
            let to = node.int("to", 0);
            let to = DType::from_onnx(to)
                .ok_or_else(|| fail(format!("Cast to element type {to} is not supported")))?;
            cast(node, req(inputs, 0)?, to)
        }
        "CastLike" => cast(node, req(inputs, 0)?, req(inputs, 1)?.dtype),
        "PRelu" => {
            let (x, mut s) = (req(inputs, 0)?, req(inputs, 1)?.cast(req(inputs, 0)?.dtype));
            // Before opset 7 (no numpy broadcasting yet), a 1-D slope of
            // one value per channel applies along axis 1, as Caffe's and
            // PyTorch's PReLU do.
            if node.opset < 7 && s.shape.len() == 1 && x.shape.get(1) == Some(&s.shape[0]) {
                s.shape.extend(std::iter::repeat_n(1, x.shape.len() - 2));
            }
            float_binary(x, &s, |x, s| if x < 0.0 { x * s } else { x })
        }
        "IsNaN" => {
            let x = req(inputs, 0)?;
            Ok(Value::bool(
                x.shape.clone(),
                x.to_f64().iter().map(|v| v.is_nan()).collect(),
            ))
        }
        "IsInf" => {
            let x = req(inputs, 0)?;
            let (neg, pos) = (
                node.int("detect_negative", 1) != 0,
                node.int("detect_positive", 1) != 0,
            );
            let v = x
                .to_f64()
                .iter()
                .map(|v| v.is_infinite() && ((*v > 0.0 && pos) || (*v < 0.0 && neg)))
                .collect();
            Ok(Value::bool(x.shape.clone(), v))
        }
        "Abs" | "Neg" | "Sign" | "Relu" if req(inputs, 0)?.dtype.is_int() => {
            let x = req(inputs, 0)?;
            let f: fn(i64) -> i64 = match op {
                "Abs" => i64::wrapping_abs,
                "Neg" => i64::wrapping_neg,
                "Sign" => i64::signum,
                _ => |v| v.max(0),
            };
            Ok(x.with(
                x.shape.clone(),
                Data::I64(x.to_i64().into_iter().map(|v| x.dtype.wrap(f(v))).collect()),
            ))
        }
        "Shrink" => {
            let (bias, lambd) = (
                f64::from(node.float("bias", 0.0)),
                f64::from(node.float("lambd", 0.5)),
            );
            let x = req(inputs, 0)?;
            let f = move |v: f64| {
                if v < -lambd {
                    v + bias
                } else if v > lambd {
                    v - bias
                } else {
                    0.0
                }
            };
            if x.dtype.is_int() {
                let v = x
                    .to_f64()
                    .into_iter()
                    .map(|v| x.dtype.wrap(f(v) as i64))
                    .collect();
                return Ok(x.with(x.shape.clone(), Data::I64(v)));
            }
            unary(x, f)
        }
        "Abs" => unary_f32(req(inputs, 0)?, f32::abs, f64::abs),
        "Neg" => unary_f32(req(inputs, 0)?, |v| -v, |v| -v),
        "Sign" => unary(req(inputs, 0)?, |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }),
        "Relu" => unary_f32(
            req(inputs, 0)?,
            |v| if v < 0.0 { 0.0 } else { v },
            |v| if v < 0.0 { 0.0 } else { v },
        ),
        "Ceil" => unary(req(inputs, 0)?, f64::ceil),
        "Floor" => unary(req(inputs, 0)?, f64::floor),
        "Round" => unary(req(inputs, 0)?, f64::round_ties_even),
        "Sqrt" => unary_f32(req(inputs, 0)?, f32::sqrt, f64::sqrt),
        "Exp" => unary(req(inputs, 0)?, f64::exp),
        "Log" => unary(req(inputs, 0)?, f64::ln),
        "Reciprocal" => unary_f32(req(inputs, 0)?, f32::recip, f64::recip),
        "Erf" => unary_f32(req(inputs, 0)?, erf_f32, erf),
        "Tanh" => unary(req(inputs, 0)?, f64::tanh),
        "Sigmoid" => unary(req(inputs, 0)?, sigmoid),
        "Sin" => unary(req(inputs, 0)?, f64::sin),
        "Cos" => unary(req(inputs, 0)?, f64::cos),
        "Tan" => unary(req(inputs, 0)?, f64::tan),
        "Asin" => unary(req(inputs, 0)?, f64::asin),
        "Acos" => unary(req(inputs, 0)?, f64::acos),
        "Atan" => unary(req(inputs, 0)?, f64::atan),
        "Sinh" => unary(req(inputs, 0)?, f64::sinh),
        "Cosh" => unary(req(inputs, 0)?, f64::cosh),
        "Asinh" => unary(req(inputs, 0)?, f64::asinh),
        "Acosh" => unary(req(inputs, 0)?, f64::acosh),
        "Atanh" => unary(req(inputs, 0)?, f64::atanh),
        "Softplus" => unary(
            req(inputs, 0)?,
            |v| if v > 30.0 { v } else { v.exp().ln_1p() },
        ),
        "Softsign" => unary(req(inputs, 0)?, |v| v / (1.0 + v.abs())),
        "Mish" => unary(req(inputs, 0)?, |v| {
            v * (if v > 30.0 { v } else { v.exp().ln_1p() }).tanh()
        }),
        "HardSwish" => unary(req(inputs, 0)?, |v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0)),
        "Gelu" => {
            if node.string("approximate", "none") == "tanh" {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                unary(req(inputs, 0)?, move |v| {
                    0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())
                })
            } else {
                unary(req(inputs, 0)?, |v| {
                    0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2))
                })
            }
        }
        "Swish" => {
            let a = alpha(1.0);
            unary(req(inputs, 0)?, move |v| v * sigmoid(a * v))
        }
        "LeakyRelu" => {
            let a = alpha(0.01);
            unary(req(inputs, 0)?, move |v| if v < 0.0 { a * v } else { v })
        }
        "ThresholdedRelu" => {
            let a = alpha(1.0);
            unary(req(inputs, 0)?, move |v| if v > a { v } else { 0.0 })
        }
        "Elu" => {
            let a = alpha(1.0);
            unary(req(inputs, 0)?, move |v| {
                if v < 0.0 { a * (v.exp() - 1.0) } else { v }
            })
        }
        "Celu" => {
            let a = alpha(1.0);
            // (`f64::max` would take 0 over NaN; ONNX's reference keeps it.)
            unary(req(inputs, 0)?, move |v| {
                if v.is_nan() {
                    return v;
                }
                v.max(0.0) + (a * ((v / a).exp() - 1.0)).min(0.0)
            })
        }
        "Selu" => {
            let a = alpha(1.673_263_2);
            let g = f64::from(node.float("gamma", 1.050_701));
            unary(req(inputs, 0)?, move |v| {
                if v <= 0.0 {
                    g * (a * v.exp() - a)
                } else {
                    g * v
                }
            })
        }
        "HardSigmoid" => {
            let (a, b) = (alpha(0.2), f64::from(node.float("beta", 0.5)));
            unary(req(inputs, 0)?, move |v| (a * v + b).clamp(0.0, 1.0))
        }
        other => Err(fail(format!("operator {other} is not implemented"))),
    }
}

fn sigmoid(v: f64) -> f64 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

/// The error function (W. J. Cody's rational approximations, as in most
/// libms; accurate to double precision's last few bits).
#[allow(clippy::excessive_precision)] // Cody's published coefficients, verbatim.
pub(crate) fn erf(x: f64) -> f64 {
    let ax = x.abs();
    if ax.is_nan() {
        return x;
    }
    if ax < 0.5 {
        const P: [f64; 5] = [
            3.209_377_589_138_469_5e3,
            3.774_852_376_853_020_2e2,
            1.138_641_541_510_501_6e2,
            3.161_123_743_870_565_6,
            1.857_777_061_846_031_5e-1,
        ];
        const Q: [f64; 4] = [
            2.844_236_833_439_170_6e3,
            1.282_616_526_077_372_3e3,
            2.440_246_379_344_441_7e2,
            2.360_129_095_234_412_1e1,
        ];
        let z = x * x;
        let num = (((P[4] * z + P[3]) * z + P[2]) * z + P[1]) * z + P[0];
        let den = (((z + Q[3]) * z + Q[2]) * z + Q[1]) * z + Q[0];
        return x * num / den;
    }
    let erfc = if ax < 4.0 {
        const P: [f64; 9] = [
            1.230_339_354_797_997_2e3,
            2.051_078_377_826_071_5e3,
            1.712_047_612_634_070_6e3,
            8.819_522_212_417_690_9e2,
            2.986_351_381_974_001_3e2,
            6.611_919_063_714_162_9e1,
            8.883_149_794_388_376e0,
            5.641_884_969_886_700_9e-1,
            2.153_115_354_744_038_5e-8,
        ];
        const Q: [f64; 8] = [
            1.230_339_354_803_749_4e3,
            3.439_367_674_143_721_6e3,
            4.362_619_090_143_247e3,
            3.290_799_235_733_459_7e3,
            1.621_389_574_566_690_2e3,
            5.371_811_018_620_098_6e2,
            1.176_939_508_913_125e2,
            1.574_492_611_070_983_3e1,
        ];
        let num = P.iter().rev().fold(0.0, |acc, &p| acc * ax + p);
        let den = Q.iter().rev().fold(1.0, |acc, &q| acc * ax + q);
        (-ax * ax).exp() * num / den
    } else {
        const P: [f64; 6] = [
            -6.587_491_615_298_378_3e-4,
            -1.608_378_514_874_227_7e-2,
            -1.257_817_261_112_292_5e-1,
            -3.603_448_999_498_044_4e-1,
            -3.053_266_349_612_323_4e-1,
            -1.631_538_713_730_709_8e-2,
        ];
        const Q: [f64; 5] = [
            2.335_204_976_268_691_9e-3,
            6.051_834_131_244_132e-2,
            5.279_051_029_514_284_3e-1,
            1.872_952_849_923_460_3,
            2.568_520_192_289_822_4,
        ];
        let z = 1.0 / (ax * ax);
        let num = P.iter().rev().fold(0.0, |acc, &p| acc * z + p);
        let den = Q.iter().rev().fold(1.0, |acc, &q| acc * z + q);
        let r = z * num / den;
        (-ax * ax).exp() / ax * (1.0 / std::f64::consts::PI.sqrt() + r)
    };
    if x > 0.0 { 1.0 - erfc } else { erfc - 1.0 }
}

/// The error function in f32: Eigen's rational approximation on
/// [-4, 4] (erf is ±1 to f32 precision beyond), a few ulp from the exact
/// value and branch-free, so it vectorises. BERT's GELU runs it on every
/// activation of every feed-forward layer.
#[allow(clippy::excessive_precision)] // Eigen's published coefficients, verbatim.
#[inline(always)]
pub(crate) fn erf_f32(x: f32) -> f32 {
    const A: [f32; 7] = [
        -2.726_142_258_013_06e-10,
        2.770_681_424_959_02e-08,
        -2.101_024_020_825_08e-06,
        -5.692_506_394_623_46e-05,
        -7.349_906_303_268_55e-04,
        -2.954_599_808_540_25e-03,
        -1.609_603_332_624_15e-02,
    ];
    const B: [f32; 5] = [
        -1.456_607_184_649_96e-05,
        -2.133_740_552_789_05e-04,
        -1.682_826_974_382_03e-03,
        -7.373_329_167_204_68e-03,
        -1.426_473_905_141_89e-02,
    ];
    // NaN passes through the clamp and the polynomials.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = A[1..].iter().fold(A[0], |acc, &a| acc * x2 + a);
    let q = B[1..].iter().fold(B[0], |acc, &b| acc * x2 + b);
    x * p / q
}

/// A float map with an f32 form: f32 tensors run `f32` (no round trip
/// through f64, so LLVM vectorises it), f64 ones `f64`.
fn unary_f32(
    x: &Value,
    f32: impl Fn(f32) -> f32 + Sync,
    f64: impl Fn(f64) -> f64 + Sync,
) -> Result<Value, NnError> {
    let Data::F32(v) = &x.data else {
        return unary(x, f64);
    };
    let mut out = vec![0.0f32; v.len()];
    let map = |(o, s): (&mut [f32], &[f32])| o.iter_mut().zip(s).for_each(|(o, &s)| *o = f32(s));
    if v.len() > PAR {
        out.par_chunks_mut(CHUNK)
            .zip(v.par_chunks(CHUNK))
            .for_each(map);
    } else {
        map((&mut out, v));
    }
    Ok(x.with(x.shape.clone(), Data::F32(out)))
}

/// Elements per parallel task of the f32 fast paths.
pub(super) const CHUNK: usize = 1 << 14;

/// A float map (computed in f64, stored back in the value's precision).
fn unary(x: &Value, f: impl Fn(f64) -> f64 + Sync) -> Result<Value, NnError> {
    let data = match &x.data {
        Data::F32(v) if v.len() > PAR => {
            Data::F32(v.par_iter().map(|&a| f(f64::from(a)) as f32).collect())
        }
        Data::F32(v) => Data::F32(v.iter().map(|&a| f(f64::from(a)) as f32).collect()),
        Data::F64(v) => Data::F64(v.iter().map(|&a| f(a)).collect()),
        _ => return Err(fail(format!("expected a float tensor, got {:?}", x.dtype))),
    };
    Ok(x.with(x.shape.clone(), data))
}

/// An elementwise node whose input `i` is `v`, which no one else reads:
/// f32 arithmetic and maps write their result over `v` instead of
/// allocating (fresh pages cost more than the arithmetic itself).
pub(super) fn run_owned(
    node: Node<'_>,
    inputs: &[Option<&Value>],
    i: usize,
    mut v: Value,
) -> Result<Value, NnError> {
    let op = node.proto.op_type.as_str();
    let bin = match op {
        "Add" => Some(Bin::Add),
        "Sub" => Some(Bin::Sub),
        "Mul" => Some(Bin::Mul),
        "Div" => Some(Bin::Div),
        _ => None,
    };
    let other = inputs.get(1 - i.min(1)).copied().flatten();
    if let (Some(op), Some(o), 2) = (bin, other, inputs.len())
        && o.dtype == v.dtype
        && let (Data::F32(y), Ok(out)) = (&o.data, broadcast_shape(&v.shape, &o.shape))
        && out == v.shape
        && let Some(l) = layout(&v.shape, &o.shape, &out)
        && match l {
            Layout::Same => true,
            Layout::Repeat(_, left) | Layout::PerRow(_, left) => left,
        }
        && let Data::F32(dst) = &mut v.data
        && apply_bin(dst, y, l, i == 0, op)
    {
        return Ok(v);
    }
    let map: Option<fn(f32) -> f32> = match op {
        "Erf" => Some(erf_f32),
        "Sqrt" => Some(f32::sqrt),
        "Neg" => Some(|v| -v),
        "Relu" => Some(|v| if v < 0.0 { 0.0 } else { v }),
        _ => None,
    };
    if let (Some(f), 0, Data::F32(dst)) = (map, i, &mut v.data) {
        if dst.len() > PAR {
            dst.par_chunks_mut(CHUNK)
                .for_each(|c| c.iter_mut().for_each(|d| *d = f(*d)));
        } else {
            dst.iter_mut().for_each(|d| *d = f(*d));
        }
        return Ok(v);
    }
    let mut args = inputs.to_vec();
    args[i] = Some(&v);
    run(node, &args)
}

/// Operators [`run_owned`] may compute in place.
pub(super) const IN_PLACE: &[&str] = &["Add", "Sub", "Mul", "Div", "Erf", "Sqrt", "Neg", "Relu"];

/// `Add`..`Mod` (two inputs) and `Sum`/`Mean`/`Min`/`Max` (one or more).
fn variadic(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let op = match node.proto.op_type.as_str() {
        "Add" | "Sum" | "Mean" => Bin::Add,
        "Sub" => Bin::Sub,
        "Mul" => Bin::Mul,
        "Div" => Bin::Div,
        "Mod" => Bin::Rem(node.int("fmod", 0) != 0),
        "Min" => Bin::Min,
        _ => Bin::Max,
    };
    let present: Vec<&Value> = inputs.iter().flatten().copied().collect();
    let first = present
        .first()
        .ok_or_else(|| fail("needs at least one input"))?;
    let mut acc = (*first).clone();
    for v in &present[1..] {
        acc = binary(&acc, v, op)?;
    }
    if node.proto.op_type == "Mean" {
        let n = Value::float(acc.dtype, vec![], vec![present.len() as f32]);
        acc = binary(&acc, &n, Bin::Div)?;
    }
    Ok(acc)
}

fn pow(a: &Value, b: &Value) -> Result<Value, NnError> {
    if a.dtype.is_float() {
        let b = b.cast(a.dtype);
        // Squares dominate real graphs (LayerNorm decompositions); an
        // exponent of higher rank than `a` broadcasts it (the general path).
        if b.len() == 1 && b.shape.len() <= a.shape.len() && b.to_f64()[0] == 2.0 {
            return binary(a, a, Bin::Mul);
        }
        return float_binary(a, &b, f64::powf);
    }
    let (x, y) = (a.to_f64(), b.to_f64());
    let (v, s) = zip_broadcast(&x, &a.shape, &y, &b.shape, |p, q| {
        a.dtype.wrap(p.powf(q) as i64)
    })?;
    Ok(a.with(s, Data::I64(v)))
}

fn compare(op: &str, a: &Value, b: &Value) -> Result<Value, NnError> {
    fn cmp<T: PartialOrd + Copy + Sync>(
        op: &str,
        x: &[T],
        xs: &[usize],
        y: &[T],
        ys: &[usize],
    ) -> Result<(Vec<bool>, Vec<usize>), NnError> {
        match op {
            "Equal" => zip_broadcast(x, xs, y, ys, |p, q| p == q),
            "Less" => zip_broadcast(x, xs, y, ys, |p, q| p < q),
            "Greater" => zip_broadcast(x, xs, y, ys, |p, q| p > q),
            "LessOrEqual" => zip_broadcast(x, xs, y, ys, |p, q| p <= q),
            _ => zip_broadcast(x, xs, y, ys, |p, q| p >= q),
        }
    }
    let b = b.cast(a.dtype);
    let (v, s) = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => cmp(op, x, &a.shape, y, &b.shape)?,
        (Data::F64(x), Data::F64(y)) => cmp(op, x, &a.shape, y, &b.shape)?,
        (Data::I64(x), Data::I64(y)) if a.dtype == DType::U64 => {
            let (x, y): (Vec<u64>, Vec<u64>) = (
                x.iter().map(|&v| v as u64).collect(),
                y.iter().map(|&v| v as u64).collect(),
            );
            cmp(op, &x, &a.shape, &y, &b.shape)?
        }
        (Data::I64(x), Data::I64(y)) => cmp(op, x, &a.shape, y, &b.shape)?,
        (Data::Bool(x), Data::Bool(y)) => cmp(op, x, &a.shape, y, &b.shape)?,
        _ => return Err(fail("mismatched comparison operands")),
    };
    Ok(Value::bool(s, v))
}

/// `Cast` and `CastLike`, with their `saturate` and `round_mode`.
fn cast(node: Node<'_>, x: &Value, to: DType) -> Result<Value, NnError> {
    let mode = node.string("round_mode", "up");
    let mode = E8m0Round::parse(&mode).ok_or_else(|| {
        fail(format!(
            "round_mode `{mode}` is not one of `up`, `down` and `nearest`"
        ))
    })?;
    Ok(x.cast_with(to, node.int("saturate", 1) != 0, mode))
}

fn logic(op: &str, a: &Value, b: &Value) -> Result<Value, NnError> {
    let (x, y) = (a.to_bool(), b.to_bool());
    let f = match op {
        "And" => |p: bool, q: bool| p && q,
        "Or" => |p: bool, q: bool| p || q,
        _ => |p: bool, q: bool| p != q,
    };
    let (v, s) = zip_broadcast(&x, &a.shape, &y, &b.shape, f)?;
    Ok(Value::bool(s, v))
}

fn bitwise(node: Node<'_>, a: &Value, b: &Value) -> Result<Value, NnError> {
    let (x, y) = (a.to_i64(), b.to_i64());
    let bits: u32 = match a.dtype {
        DType::U8 | DType::I8 => 8,
        DType::U16 | DType::I16 => 16,
        DType::U32 | DType::I32 => 32,
        _ => 64,
    };
    let (v, s) = match node.proto.op_type.as_str() {
        "BitwiseAnd" => zip_broadcast(&x, &a.shape, &y, &b.shape, |p, q| p & q)?,
        "BitwiseOr" => zip_broadcast(&x, &a.shape, &y, &b.shape, |p, q| p | q)?,
        "BitwiseXor" => zip_broadcast(&x, &a.shape, &y, &b.shape, |p, q| p ^ q)?,
        _ => {
            let left = node.string("direction", "") == "LEFT";
            zip_broadcast(&x, &a.shape, &y, &b.shape, |p, q| {
                let q = q as u32;
                if q >= bits {
                    0
                } else if left {
                    ((p as u64) << q) as i64
                } else {
                    ((p as u64) >> q) as i64
                }
            })?
        }
    };
    Ok(a.with(
        s,
        Data::I64(v.into_iter().map(|x| a.dtype.wrap(x)).collect()),
    ))
}

fn where_(c: &Value, x: &Value, y: &Value) -> Result<Value, NnError> {
    let y = y.cast(x.dtype);
    let out = broadcast_shape(&broadcast_shape(&c.shape, &x.shape)?, &y.shape)?;
    let cond = broadcast_to(&c.to_bool(), &c.shape, &out);
    fn pick<T: Copy>(
        cond: &[bool],
        x: &[T],
        xs: &[usize],
        y: &[T],
        ys: &[usize],
        out: &[usize],
    ) -> Vec<T> {
        let (x, y) = (broadcast_to(x, xs, out), broadcast_to(y, ys, out));
        cond.iter()
            .zip(x.iter().zip(&y))
            .map(|(&c, (&p, &q))| if c { p } else { q })
            .collect()
    }
    let data = match (&x.data, &y.data) {
        (Data::F32(p), Data::F32(q)) => Data::F32(pick(&cond, p, &x.shape, q, &y.shape, &out)),
        (Data::F64(p), Data::F64(q)) => Data::F64(pick(&cond, p, &x.shape, q, &y.shape, &out)),
        (Data::I64(p), Data::I64(q)) => Data::I64(pick(&cond, p, &x.shape, q, &y.shape, &out)),
        (Data::Bool(p), Data::Bool(q)) => Data::Bool(pick(&cond, p, &x.shape, q, &y.shape, &out)),
        _ => return Err(fail("Where branches differ in type")),
    };
    Ok(x.with(out, data))
}

fn clip(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let bound = |i: usize, attr: &str| -> Option<f64> {
        if node.opset < 11 {
            node.has(attr).then(|| f64::from(node.float(attr, 0.0)))
        } else {
            opt(inputs, i).map(|v| v.to_f64()[0])
        }
    };
    let (lo, hi) = (bound(1, "min"), bound(2, "max"));
    let f = |v: f64| {
        let v = lo.map_or(v, |l| if v < l { l } else { v });
        hi.map_or(v, |h| if v > h { h } else { v })
    };
    Ok(match &x.data {
        Data::I64(v) => x.with(
            x.shape.clone(),
            Data::I64(v.iter().map(|&a| f(a as f64) as i64).collect()),
        ),
        _ => unary(x, f)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (-2.0, -0.995_322_265_018_952_7),
            (5.0, 0.999_999_999_998_462_5),
        ] {
            assert!((erf(x) - want).abs() < 1e-12, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn integer_arithmetic_wraps_and_mod_follows_the_divisor() {
        let a = Value {
            dtype: DType::U8,
            shape: vec![2],
            data: Data::I64(vec![250, 3]),
        };
        let b = Value {
            dtype: DType::U8,
            shape: vec![1],
            data: Data::I64(vec![10]),
        };
        assert_eq!(binary(&a, &b, Bin::Add).unwrap().to_i64(), vec![4, 13]);
        let a = Value::i64(vec![2], vec![-7, 7]);
        let b = Value::i64(vec![], vec![3]);
        assert_eq!(
            binary(&a, &b, Bin::Rem(false)).unwrap().to_i64(),
            vec![2, 1]
        );
        assert_eq!(
            binary(&a, &b, Bin::Rem(true)).unwrap().to_i64(),
            vec![-1, 1]
        );
    }

    #[test]
    fn a_square_by_an_exponent_of_higher_rank_broadcasts() {
        let a = Value::f32(vec![3], vec![1.0, -2.0, 3.0]);
        let two = Value::f32(vec![1, 1], vec![2.0]);
        let y = pow(&a, &two).unwrap();
        assert_eq!(y.shape, [1, 3]);
        assert_eq!(y.to_f64(), [1.0, 4.0, 9.0]);
    }
}
