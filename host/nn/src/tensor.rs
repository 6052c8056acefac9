//! Tensors as they cross weft-nn's API: a shape, an element type and
//! little-endian bytes, the same layout `wasi:nn` uses.

use crate::{NnError, NnErrorKind};

/// An element type (the `wasi:nn` `tensor-type` cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// IEEE half.
    F16,
    /// IEEE single.
    F32,
    /// IEEE double.
    F64,
    /// bfloat16.
    Bf16,
    /// Unsigned byte.
    U8,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
}

impl ElementType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
            Self::F64 | Self::I64 => 8,
            Self::U8 => 1,
        }
    }
}

/// A dense row-major tensor.
///
/// ```
/// use weft_nn::Tensor;
/// let t = Tensor::from_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.0]);
/// assert_eq!(t.to_f32().unwrap()[3], 4.0);
/// assert_eq!(t.elements(), 4);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Element type.
    pub ty: ElementType,
    /// Little-endian element bytes, `shape.product() * ty.size()` of them.
    pub data: Vec<u8>,
}

impl Tensor {
    /// A tensor, checked: `data` must hold exactly `shape`'s elements.
    pub fn new(shape: Vec<usize>, ty: ElementType, data: Vec<u8>) -> Result<Self, NnError> {
        let n: usize = shape.iter().product();
        if n * ty.size() != data.len() {
            return Err(NnError::new(
                NnErrorKind::InvalidArgument,
                format!(
                    "a {ty:?} tensor of shape {shape:?} needs {} bytes, got {}",
                    n * ty.size(),
                    data.len()
                ),
            ));
        }
        Ok(Self { shape, ty, data })
    }

    /// An f32 tensor.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self {
            shape,
            ty: ElementType::F32,
            data,
        }
    }

    /// An i64 tensor.
    pub fn from_i64(shape: Vec<usize>, values: &[i64]) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self {
            shape,
            ty: ElementType::I64,
            data,
        }
    }

    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32 (from any float type).
    pub fn to_f32(&self) -> Result<Vec<f32>, NnError> {
        let d = &self.data;
        Ok(match self.ty {
            ElementType::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect(),
            ElementType::F64 => d
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
                .collect(),
            ElementType::F16 => d
                .chunks_exact(2)
                .map(|c| crate::quant::f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            ElementType::Bf16 => d
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            other => {
                return Err(NnError::new(
                    NnErrorKind::InvalidArgument,
                    format!("expected a float tensor, got {other:?}"),
                ));
            }
        })
    }

    /// The values as i64 (from any integer type).
    pub fn to_i64(&self) -> Result<Vec<i64>, NnError> {
        let d = &self.data;
        Ok(match self.ty {
            ElementType::I64 => d
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
            ElementType::I32 => d
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().expect("4"))))
                .collect(),
            ElementType::U8 => d.iter().map(|&b| i64::from(b)).collect(),
            other => {
                return Err(NnError::new(
                    NnErrorKind::InvalidArgument,
                    format!("expected an integer tensor, got {other:?}"),
                ));
            }
        })
    }
}
