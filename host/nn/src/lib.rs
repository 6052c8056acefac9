//! weft-nn: what a node knows about models, independent of Wasm and HTTP.
//!
//! Today this crate reads and checks the two model formats weft accepts —
//! GGUF (`wasi:nn` encoding `ggml`) and ONNX — so that an upload is refused
//! with a reason (the bad tensor, the unsupported quantisation, the
//! truncated field) before it is stored, and so that the registry can show
//! what a model contains. The execution engine (burn on wgpu, and a CPU
//! path) builds on these readers.
//!
//! ```
//! let err = weft_nn::inspect(b"not a model", weft_nn::Encoding::Ggml).unwrap_err();
//! assert!(err.to_string().contains("GGUF"));
//! ```

pub mod fixtures;
mod gguf;
mod onnx;

pub use gguf::{GgmlType, GgufInfo, GgufTensor};
pub use onnx::OnnxInfo;

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
/// the structure is complete and every tensor has a supported type.
pub fn inspect(bytes: &[u8], encoding: Encoding) -> Result<ModelInfo, ModelError> {
    match encoding {
        Encoding::Ggml => gguf::inspect(bytes).map(ModelInfo::Gguf),
        Encoding::Onnx => onnx::inspect(bytes).map(ModelInfo::Onnx),
    }
}
