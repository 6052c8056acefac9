//! Inference through the standard `wasi:nn` interface
//! (`wasi:nn@0.2.0-rc-2024-10-28`): the raw guest bindings, re-exported as is.
//!
//! Graphs (models) are uploaded to the daemon by name and loaded with
//! [`graph::load_by_name`]; a pipeline grants each stage the models it may use.
//! Build [`tensor::Tensor`]s from little-endian bytes, bind them to a
//! [`inference::GraphExecutionContext`] and call `compute`.
//!
//! # What weft's engine expects
//!
//! - **ONNX graphs** (`onnx`): name each input tensor after the graph input
//!   it feeds (`input_ids`, `attention_mask`, …); `compute` returns every
//!   graph output by name. Batch and sequence dimensions may change from call
//!   to call. Calls from different instances on the same graph whose inputs
//!   differ only in dimension 0 are merged into one engine call, so pad
//!   variable lengths to a few fixed sizes to let them merge.
//! - **GGUF decoders** (`ggml`, Llama family): one input, the new token ids
//!   (`i64` or `i32`, shape `[n]` or `[1, n]`); the output `logits` is `f32`
//!   `[vocab]`, for the last position. The execution context keeps the KV
//!   cache: send the prompt once, then one token per call; start a new
//!   context for a new conversation. Past the model's context length,
//!   `compute` fails with `too-large`.
//! - Mistakes are errors, not traps: a tensor whose data does not fill its
//!   shape, a wrong type or name is `invalid-argument`; an unknown model is
//!   `not-found`.
//!
//! Inside Wasm these are the generated bindings. Natively they are a stand-in with
//! the same signatures, so stages that use inference still build and test; there,
//! tensors work but loading a graph fails with
//! [`errors::ErrorCode::UnsupportedOperation`].
//!
//! # Example
//!
//! ```
//! use weft_sdk::nn::{graph, tensor};
//!
//! let input = tensor::Tensor::new(&[1, 2], tensor::TensorType::Fp32, &[0u8; 8]);
//! assert_eq!(input.dimensions(), vec![1, 2]);
//!
//! match graph::load_by_name("minilm") {
//!     Ok(graph) => {
//!         let context = graph.init_execution_context().expect("context");
//!         let outputs = context.compute(vec![("input".to_string(), input)]).expect("compute");
//!         assert!(!outputs.is_empty());
//!     }
//!     // Always the case under the native harness.
//!     Err(err) => assert_eq!(err.code().name(), "unsupported-operation"),
//! }
//! ```

use std::fmt;

#[cfg(target_arch = "wasm32")]
pub use crate::__private::bindings::wasi::nn::{errors, graph, inference, tensor};

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub use native::{errors, graph, inference, tensor};

use errors::{Error, ErrorCode};

impl ErrorCode {
    /// The case's name as the WIT spells it (`not-found`, `unsupported-operation`,
    /// …): stable text for logs and error messages.
    ///
    /// # Example
    ///
    /// ```
    /// use weft_sdk::nn::errors::ErrorCode;
    ///
    /// assert_eq!(ErrorCode::NotFound.name(), "not-found");
    /// assert_eq!(ErrorCode::TooLarge.to_string(), "too-large");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid-argument",
            ErrorCode::InvalidEncoding => "invalid-encoding",
            ErrorCode::Timeout => "timeout",
            ErrorCode::RuntimeError => "runtime-error",
            ErrorCode::UnsupportedOperation => "unsupported-operation",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Security => "security",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `code: data`, e.g. `not-found: no model named "minilm"`.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.data())
    }
}

impl std::error::Error for Error {}

/// The elements of a float tensor as `f32`: `fp32` as it is, `fp16` and
/// `bf16` widened exactly (an fp16 or bf16 model's outputs come back in its
/// own type), `fp64` rounded; `None` for an integer tensor or data that
/// does not split into whole elements.
///
/// # Example
///
/// ```
/// use weft_sdk::nn::{to_f32, tensor::{Tensor, TensorType}};
///
/// // 1.0 and -2.5 as IEEE halves.
/// let half = Tensor::new(&[2], TensorType::Fp16, &[0x00, 0x3c, 0x00, 0xc1]);
/// assert_eq!(to_f32(&half), Some(vec![1.0, -2.5]));
/// let ids = Tensor::new(&[1], TensorType::I64, &7i64.to_le_bytes());
/// assert_eq!(to_f32(&ids), None);
/// ```
pub fn to_f32(t: &tensor::Tensor) -> Option<Vec<f32>> {
    use tensor::TensorType;
    let data = t.data();
    let width = match t.ty() {
        TensorType::Fp16 | TensorType::Bf16 => 2,
        TensorType::Fp32 => 4,
        TensorType::Fp64 => 8,
        _ => return None,
    };
    if !data.len().is_multiple_of(width) {
        return None;
    }
    let ty = t.ty();
    Some(
        data.chunks_exact(width)
            .map(|b| match ty {
                TensorType::Fp16 => half_to_f32(u16::from_le_bytes([b[0], b[1]])),
                TensorType::Bf16 => {
                    f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
                }
                TensorType::Fp32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                _ => f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            })
            .collect(),
    )
}

/// IEEE half bits as f32 (exact).
fn half_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal: man · 2^-24.
        (0, m) => {
            let v = m as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_tensors_of_every_width_read_as_f32() {
        use tensor::{Tensor, TensorType};
        // Halves: normal, negative, the largest, the smallest subnormal,
        // -0, the infinities and a NaN.
        let halves: [(u16, f32); 8] = [
            (0x3c00, 1.0),
            (0xc100, -2.5),
            (0x7bff, 65504.0),
            (0x0001, 2f32.powi(-24)),
            (0x8200, -2f32.powi(-15)),
            (0x8000, -0.0),
            (0x7c00, f32::INFINITY),
            (0xfc00, f32::NEG_INFINITY),
        ];
        for (bits, want) in halves {
            let got = half_to_f32(bits);
            assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}: {got}");
        }
        assert!(half_to_f32(0x7e00).is_nan());
        let bf = Tensor::new(&[1], TensorType::Bf16, &0x3fc0u16.to_le_bytes());
        assert_eq!(to_f32(&bf), Some(vec![1.5]));
        let wide = Tensor::new(&[1], TensorType::Fp64, &0.25f64.to_le_bytes());
        assert_eq!(to_f32(&wide), Some(vec![0.25]));
        let odd = Tensor::new(&[1], TensorType::Fp32, &[0; 3]);
        assert_eq!(to_f32(&odd), None);
    }

    /// Pins the signatures the native stand-in must share with the generated
    /// bindings: this compiles on both targets (`cargo clippy --all-targets`, natively
    /// and with `--target wasm32-wasip2`), so a drift breaks the build.
    #[test]
    fn stand_in_matches_generated_signatures() {
        use errors::{Error, ErrorCode};
        use graph::{ExecutionTarget, Graph, GraphBuilder, GraphEncoding};
        use inference::{GraphExecutionContext, NamedTensor};
        use tensor::{Tensor, TensorData, TensorDimensions, TensorType};

        let _: fn(&str) -> Result<Graph, Error> = graph::load_by_name;
        let _: fn(&[GraphBuilder], GraphEncoding, ExecutionTarget) -> Result<Graph, Error> =
            graph::load;
        let _: fn(&Graph) -> Result<GraphExecutionContext, Error> = Graph::init_execution_context;
        let _: fn(&GraphExecutionContext, Vec<NamedTensor>) -> Result<Vec<NamedTensor>, Error> =
            GraphExecutionContext::compute;
        let _: fn(&[u32], TensorType, &[u8]) -> Tensor = Tensor::new;
        let _: fn(&Tensor) -> TensorDimensions = Tensor::dimensions;
        let _: fn(&Tensor) -> TensorType = Tensor::ty;
        let _: fn(&Tensor) -> TensorData = Tensor::data;
        let _: fn(&Error) -> ErrorCode = Error::code;
        let _: fn(&Error) -> String = Error::data;
        let _: (
            graph::Tensor,
            graph::Error,
            inference::Tensor,
            inference::Error,
        );
        let _ = |t: TensorType| match t {
            TensorType::Fp16
            | TensorType::Fp32
            | TensorType::Fp64
            | TensorType::Bf16
            | TensorType::U8
            | TensorType::I32
            | TensorType::I64 => (),
        };
        let _ = |e: GraphEncoding| match e {
            GraphEncoding::Openvino
            | GraphEncoding::Onnx
            | GraphEncoding::Tensorflow
            | GraphEncoding::Pytorch
            | GraphEncoding::Tensorflowlite
            | GraphEncoding::Ggml
            | GraphEncoding::Autodetect => (),
        };
        let _ = |t: ExecutionTarget| match t {
            ExecutionTarget::Cpu | ExecutionTarget::Gpu | ExecutionTarget::Tpu => (),
        };
        // `ErrorCode::name` matches exhaustively already.
        assert_eq!(ErrorCode::Security.name(), "security");
    }
}
