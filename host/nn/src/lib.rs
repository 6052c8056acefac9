//! weft-nn: weft's inference engine, independent of Wasm and HTTP.
//!
//! It reads and checks the two model formats weft accepts — GGUF (`wasi:nn`
//! encoding `ggml`) and ONNX — so that an upload is refused with a reason
//! (the bad tensor, the unsupported operator or quantisation, the truncated
//! field) before it is stored, and it runs them:
//!
//! - ONNX graphs, op by op, with dynamic batch and sequence sizes;
//! - Llama-family GGUF decoders reading Q4_0/Q4_1/Q8_0 weights in place,
//!   with the KV cache in the [`Session`] (send the prompt's token ids, then
//!   one token per call; read `logits`).
//!
//! Everything runs on the CPU, except that an ONNX model loaded for
//! [`Target::Gpu`] runs its `MatMul`s and `Gemm`s whose B is a 2-D f32
//! initializer on the GPU ([`gpu`]: wgpu on Vulkan, Metal or DX12), with
//! those weights uploaded once at load, and a GGUF model loaded for it runs
//! its whole forward pass there (on its weights, quantised ones kept in
//! their blocks, with the KV cache on the device).
//! Without a usable GPU, a model loaded for it runs on the CPU and says so
//! in [`Model::placement`].
//!
//! [`Engine`] loads each distinct model once and shares it. It is not a
//! training library. The runtime serves `wasi:nn` with it.
//!
//! ```
//! use weft_nn::{Encoding, Engine, Target, Tensor};
//!
//! let engine = Engine::default();
//! let model = engine
//!     .load(&weft_nn::fixtures::onnx_linear(), Encoding::Onnx, Target::Cpu)
//!     .unwrap();
//! let x = Tensor::from_f32(vec![2, 2], &[1.0, 1.0, 0.0, 2.0]);
//! let y = model.session().compute(&[("x".into(), x)]).unwrap();
//! assert_eq!(y[0].1.shape, vec![2, 3]);
//!
//! let err = weft_nn::inspect(b"not a model", Encoding::Ggml).unwrap_err();
//! assert!(err.to_string().contains("GGUF"));
//! ```

mod engine;
pub mod fixtures;
mod gguf;
pub mod gpu;
mod int8;
pub mod kernels;
mod llama;
mod onnx;
pub mod quant;
mod simd;
mod team;
mod tensor;
pub mod train;

pub use engine::{Engine, EngineStats, Joined, Model, Named, Outputs, Placement, Session, Target};
pub use gguf::{GgmlType, GgufInfo, GgufTensor, READABLE_TYPES, Value as GgufValue};
pub use llama::ARCHITECTURES as GGUF_ARCHITECTURES;
pub use onnx::OnnxInfo;
pub use tensor::{ElementType, Tensor};

/// The default of [`max_tensor_elements`]: 2^30 elements (4 GiB as f32).
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 30;

/// The most elements a tensor that an ONNX operator computes the size of
/// may hold: [`MAX_TENSOR_ELEMENTS`], or the environment's
/// `WEFT_NN_MAX_TENSOR_ELEMENTS` (read once) for a node with the memory for
/// more (attention scores pass 2^30 at 32 heads of 5.8k tokens).
///
/// Operators whose output size comes from their inputs' values or their
/// attributes (`ConstantOfShape`, `Expand`, `Tile`, `Range`, `Pad`,
/// `Resize`, `Concat`, broadcasting, products, windows, recurrences,
/// sequences a `Loop` grows, ...) check it before allocating, and a call
/// that passes it fails with [`NnErrorKind::TooLarge`] rather than
/// aborting the process on a failed allocation. Index plans and f64
/// intermediates some of them build cost more bytes per element than f32.
pub fn max_tensor_elements() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        let Ok(v) = std::env::var("WEFT_NN_MAX_TENSOR_ELEMENTS") else {
            return MAX_TENSOR_ELEMENTS;
        };
        match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!(
                    "weft-nn: WEFT_NN_MAX_TENSOR_ELEMENTS={v:?} is not a positive whole \
                     number of elements (write 3000000000, not 3e9); using {MAX_TENSOR_ELEMENTS}"
                );
                MAX_TENSOR_ELEMENTS
            }
        }
    })
}

/// A model encoding, as `wasi:nn` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// ONNX protobuf.
    Onnx,
    /// GGUF (llama.cpp's format; `wasi:nn` calls it `ggml`).
    Ggml,
}

impl Encoding {
    /// `onnx` or `ggml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Onnx => "onnx",
            Self::Ggml => "ggml",
        }
    }

    /// Parses `onnx`, `ggml` (or `gguf`).
    ///
    /// ```
    /// assert_eq!(weft_nn::Encoding::parse("gguf"), Some(weft_nn::Encoding::Ggml));
    /// assert_eq!(weft_nn::Encoding::parse("tflite"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "onnx" => Some(Self::Onnx),
            "ggml" | "gguf" => Some(Self::Ggml),
            _ => None,
        }
    }
}

/// Why a model was refused: what is wrong, where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

/// What a model contains.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelInfo {
    /// A GGUF model.
    Gguf(GgufInfo),
    /// An ONNX model.
    Onnx(OnnxInfo),
}

/// Reads `bytes` as a model of `encoding` and checks it can be loaded:
/// the structure is complete and every tensor has a supported type; a GGUF
/// is also a decoder weft-nn runs (its architecture, hyperparameters and
/// tensors).
pub fn inspect(bytes: &[u8], encoding: Encoding) -> Result<ModelInfo, ModelError> {
    match encoding {
        Encoding::Ggml => {
            let info = gguf::inspect(bytes)?;
            llama::check(&info).map_err(|e| ModelError(e.message))?;
            Ok(ModelInfo::Gguf(info))
        }
        Encoding::Onnx => onnx::inspect(bytes).map(ModelInfo::Onnx),
    }
}

/// What kind of failure an inference call hit; maps one to one onto the
/// `wasi:nn` error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NnErrorKind {
    /// A bad tensor: wrong shape, type or name, index out of range.
    InvalidArgument,
    /// The model bytes are not a valid model of the encoding.
    InvalidEncoding,
    /// The model uses something weft-nn does not implement.
    UnsupportedOperation,
    /// Too large for the engine's limits (context length, memory).
    TooLarge,
    /// No such model.
    NotFound,
    /// Failed while computing.
    RuntimeError,
}

/// An inference error: its kind and a message that says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NnError {
    /// The kind, for the `wasi:nn` error code.
    pub kind: NnErrorKind,
    /// What went wrong and, where possible, how to fix it.
    pub message: String,
}

impl NnError {
    /// An error of `kind`.
    pub fn new(kind: NnErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<ModelError> for NnError {
    fn from(e: ModelError) -> Self {
        Self::new(NnErrorKind::InvalidEncoding, e.0)
    }
}
