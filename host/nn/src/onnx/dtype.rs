//! The ONNX element types the interpreter holds, and what each is to
//! `wasi:nn` and to the narrow-float rounding of [`super::narrow`].

use super::narrow::{self, E8m0Round, Minifloat};
use crate::ElementType;

/// An ONNX tensor element type (`TensorProto.DataType`) weft-nn can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DType {
    F32,
    F16,
    Bf16,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
    /// float8 with 4 exponent and 3 mantissa bits, no inf (max 448).
    F8E4M3Fn,
    /// float8 E4M3 with no -0 or inf (max 240).
    F8E4M3Fnuz,
    /// float8 with 5 exponent and 2 mantissa bits, IEEE-like (max 57344).
    F8E5M2,
    /// float8 E5M2 with no -0 or inf.
    F8E5M2Fnuz,
    /// float8 of an exponent alone: unsigned powers of two.
    F8E8M0,
    /// float4 with 2 exponent bits and 1 mantissa bit (max 6).
    F4E2M1,
    I4,
    U4,
    I2,
    U2,
}

impl DType {
    /// From the `TensorProto.DataType` code; `None` for strings and
    /// complex types.
    pub(crate) fn from_onnx(code: i64) -> Option<Self> {
        Some(match code {
            1 => Self::F32,
            2 => Self::U8,
            3 => Self::I8,
            4 => Self::U16,
            5 => Self::I16,
            6 => Self::I32,
            7 => Self::I64,
            9 => Self::Bool,
            10 => Self::F16,
            11 => Self::F64,
            12 => Self::U32,
            13 => Self::U64,
            16 => Self::Bf16,
            17 => Self::F8E4M3Fn,
            18 => Self::F8E4M3Fnuz,
            19 => Self::F8E5M2,
            20 => Self::F8E5M2Fnuz,
            21 => Self::U4,
            22 => Self::I4,
            23 => Self::F4E2M1,
            24 => Self::F8E8M0,
            25 => Self::U2,
            26 => Self::I2,
            _ => return None,
        })
    }

    /// The format of a float narrower than half (not E8M0, which has no
    /// mantissa: see [`narrow::e8m0_round`]).
    fn minifloat(self) -> Option<Minifloat> {
        Some(match self {
            Self::F8E4M3Fn => Minifloat::E4M3FN,
            Self::F8E4M3Fnuz => Minifloat::E4M3FNUZ,
            Self::F8E5M2 => Minifloat::E5M2,
            Self::F8E5M2Fnuz => Minifloat::E5M2FNUZ,
            Self::F4E2M1 => Minifloat::E2M1,
            _ => return None,
        })
    }

    /// Whether this is a float narrower than half (held in f32 storage,
    /// rounded to the type by whatever makes a value of it).
    pub(crate) fn is_narrow_float(self) -> bool {
        self == Self::F8E8M0 || self.minifloat().is_some()
    }

    /// `x` rounded to this narrow float type with `Cast`'s `saturate` and
    /// `round_mode` (E8M0 only); other types keep `x`.
    pub(crate) fn round(self, x: f32, saturate: bool, mode: E8m0Round) -> f32 {
        match self.minifloat() {
            Some(f) => f.round(x, saturate),
            None if self == Self::F8E8M0 => narrow::e8m0_round(x, saturate, mode),
            None => x,
        }
    }

    /// The value of a narrow float's bits (0 for other types).
    pub(crate) fn decode(self, bits: u8) -> f32 {
        match self.minifloat() {
            Some(f) => f.decode(bits),
            None if self == Self::F8E8M0 => narrow::e8m0_decode(bits),
            None => 0.0,
        }
    }

    /// The bits of a packed element of this type (2- and 4-bit types).
    pub(crate) fn packed_bits(self) -> Option<u32> {
        match self {
            Self::I4 | Self::U4 | Self::F4E2M1 => Some(4),
            Self::I2 | Self::U2 => Some(2),
            _ => None,
        }
    }

    /// Whether values are stored as f32 or f64.
    pub(crate) fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::Bf16 | Self::F64) || self.is_narrow_float()
    }

    /// Whether values are stored as i64.
    pub(crate) fn is_int(self) -> bool {
        !self.is_float() && self != Self::Bool
    }

    pub(crate) fn is_unsigned(self) -> bool {
        matches!(
            self,
            Self::U8 | Self::U16 | Self::U32 | Self::U64 | Self::U4 | Self::U2
        )
    }

    /// Wraps an integer result to this type's width, as C would.
    pub(crate) fn wrap(self, v: i64) -> i64 {
        match self {
            Self::I8 => i64::from(v as i8),
            Self::I16 => i64::from(v as i16),
            Self::I32 => i64::from(v as i32),
            Self::U8 => i64::from(v as u8),
            Self::U16 => i64::from(v as u16),
            Self::U32 => i64::from(v as u32),
            Self::I4 => narrow::sign_extend(v, 4),
            Self::U4 => v & 0xf,
            Self::I2 => narrow::sign_extend(v, 2),
            Self::U2 => v & 0x3,
            _ => v,
        }
    }

    /// The `wasi:nn` type this is emitted as: bool as U8, narrow integers
    /// widened to I32, unsigned 32/64-bit to I64 (u64 bit-for-bit), floats
    /// narrower than half widened to F32 (which holds each exactly).
    pub(crate) fn element_type(self) -> ElementType {
        match self {
            Self::F32 => ElementType::F32,
            Self::F16 => ElementType::F16,
            Self::Bf16 => ElementType::Bf16,
            Self::F64 => ElementType::F64,
            Self::F8E4M3Fn
            | Self::F8E4M3Fnuz
            | Self::F8E5M2
            | Self::F8E5M2Fnuz
            | Self::F8E8M0
            | Self::F4E2M1 => ElementType::F32,
            Self::U8 | Self::Bool => ElementType::U8,
            Self::I8
            | Self::I16
            | Self::U16
            | Self::I32
            | Self::I4
            | Self::U4
            | Self::I2
            | Self::U2 => ElementType::I32,
            Self::I64 | Self::U32 | Self::U64 => ElementType::I64,
        }
    }
}
