//! The native stand-in for the `wasi:nn` bindings: the same modules, types and
//! signatures as the generated code, so a stage builds and tests off Wasm. Tensors
//! are plain values here; anything that needs a backend returns
//! `unsupported-operation`.

/// Explains every native failure the same way.
const UNSUPPORTED: &str =
    "wasi:nn is not available in the native test harness; run the stage in the weft daemon";

/// Tensors: the inputs and outputs of a graph.
pub mod tensor {
    /// The size of each dimension, outermost first; `[1]` for a scalar.
    pub type TensorDimensions = Vec<u32>;

    /// The bytes of a tensor: little-endian elements in row-major order.
    pub type TensorData = Vec<u8>;

    /// The type of a tensor's elements.
    ///
    /// # Example
    ///
    /// ```
    /// let ty = weft_sdk::nn::tensor::TensorType::Fp32;
    /// assert_ne!(ty, weft_sdk::nn::tensor::TensorType::I64);
    /// ```
    #[derive(Clone, Copy, Eq, Ord, PartialEq, PartialOrd, Debug)]
    pub enum TensorType {
        /// IEEE 754 half precision.
        Fp16,
        /// IEEE 754 single precision.
        Fp32,
        /// IEEE 754 double precision.
        Fp64,
        /// bfloat16.
        Bf16,
        /// Unsigned byte.
        U8,
        /// 32-bit signed integer.
        I32,
        /// 64-bit signed integer.
        I64,
    }

    /// A tensor: dimensions, element type and data.
    ///
    /// # Example
    ///
    /// ```
    /// use weft_sdk::nn::tensor::{Tensor, TensorType};
    ///
    /// let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    /// let t = Tensor::new(&[2], TensorType::Fp32, &data);
    /// assert_eq!(t.data().len(), 8);
    /// ```
    #[derive(Debug)]
    pub struct Tensor {
        dimensions: TensorDimensions,
        ty: TensorType,
        data: TensorData,
    }

    impl Tensor {
        /// Builds a tensor; the host checks that `data` matches the dimensions.
        ///
        /// # Example
        ///
        /// ```
        /// use weft_sdk::nn::tensor::{Tensor, TensorType};
        ///
        /// let ids = Tensor::new(&[1, 3], TensorType::I64, &[0u8; 24]);
        /// assert_eq!(ids.ty(), TensorType::I64);
        /// ```
        pub fn new(dimensions: &[u32], ty: TensorType, data: &[u8]) -> Self {
            Tensor {
                dimensions: dimensions.to_vec(),
                ty,
                data: data.to_vec(),
            }
        }

        /// The dimensions.
        ///
        /// # Example
        ///
        /// ```
        /// use weft_sdk::nn::tensor::{Tensor, TensorType};
        ///
        /// assert_eq!(Tensor::new(&[2, 2], TensorType::U8, &[0; 4]).dimensions(), vec![2, 2]);
        /// ```
        pub fn dimensions(&self) -> TensorDimensions {
            self.dimensions.clone()
        }

        /// The element type.
        ///
        /// # Example
        ///
        /// ```
        /// use weft_sdk::nn::tensor::{Tensor, TensorType};
        ///
        /// assert_eq!(Tensor::new(&[1], TensorType::U8, &[7]).ty(), TensorType::U8);
        /// ```
        pub fn ty(&self) -> TensorType {
            self.ty
        }

        /// A copy of the data.
        ///
        /// # Example
        ///
        /// ```
        /// use weft_sdk::nn::tensor::{Tensor, TensorType};
        ///
        /// assert_eq!(Tensor::new(&[1], TensorType::U8, &[7]).data(), vec![7]);
        /// ```
        pub fn data(&self) -> TensorData {
            self.data.clone()
        }
    }
}

/// Errors returned by every `wasi:nn` call.
pub mod errors {
    /// What kind of failure an [`Error`] is.
    ///
    /// # Example
    ///
    /// ```
    /// use weft_sdk::nn::errors::ErrorCode;
    ///
    /// assert_eq!(ErrorCode::UnsupportedOperation.name(), "unsupported-operation");
    /// ```
    #[derive(Clone, Copy, Eq, Ord, PartialEq, PartialOrd, Debug)]
    pub enum ErrorCode {
        /// Caller module passed an invalid argument.
        InvalidArgument,
        /// Invalid encoding.
        InvalidEncoding,
        /// The operation timed out.
        Timeout,
        /// Runtime error.
        RuntimeError,
        /// Unsupported operation.
        UnsupportedOperation,
        /// Graph is too large.
        TooLarge,
        /// Graph not found.
        NotFound,
        /// The operation is insecure or has insufficient privilege.
        Security,
        /// The operation failed for an unspecified reason.
        Unknown,
    }

    /// A failed `wasi:nn` call: a code plus backend-specific detail.
    ///
    /// # Example
    ///
    /// ```
    /// let err = weft_sdk::nn::graph::load_by_name("minilm").unwrap_err();
    /// assert!(err.data().contains("native test harness"));
    /// ```
    #[derive(Debug)]
    pub struct Error {
        pub(super) code: ErrorCode,
        pub(super) data: String,
    }

    impl Error {
        /// The error code.
        ///
        /// # Example
        ///
        /// ```
        /// use weft_sdk::nn::errors::ErrorCode;
        ///
        /// let err = weft_sdk::nn::graph::load_by_name("any").unwrap_err();
        /// assert_eq!(err.code(), ErrorCode::UnsupportedOperation);
        /// ```
        pub fn code(&self) -> ErrorCode {
            self.code
        }

        /// Backend-specific detail.
        ///
        /// # Example
        ///
        /// ```
        /// let err = weft_sdk::nn::graph::load_by_name("any").unwrap_err();
        /// assert!(!err.data().is_empty());
        /// ```
        pub fn data(&self) -> String {
            self.data.clone()
        }
    }

    /// The only error the native stand-in produces.
    pub(super) fn unsupported() -> Error {
        Error {
            code: ErrorCode::UnsupportedOperation,
            data: super::UNSUPPORTED.to_string(),
        }
    }
}

/// Running a loaded graph.
pub mod inference {
    pub use super::errors::Error;
    pub use super::tensor::Tensor;

    /// A tensor bound to a graph input or output name.
    pub type NamedTensor = (String, Tensor);

    /// An inference session on one graph.
    ///
    /// # Example
    ///
    /// ```
    /// fn run(
    ///     context: &weft_sdk::nn::inference::GraphExecutionContext,
    ///     input: weft_sdk::nn::tensor::Tensor,
    /// ) -> Result<usize, weft_sdk::nn::errors::Error> {
    ///     Ok(context.compute(vec![("input".into(), input)])?.len())
    /// }
    /// ```
    #[derive(Debug)]
    pub struct GraphExecutionContext {
        _private: (),
    }

    impl GraphExecutionContext {
        /// Runs the graph on named inputs and returns its named outputs.
        ///
        /// # Example
        ///
        /// ```
        /// # fn f(context: weft_sdk::nn::inference::GraphExecutionContext) {
        /// let outputs = context.compute(Vec::new());
        /// # }
        /// ```
        pub fn compute(&self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, Error> {
            drop(inputs);
            Err(super::errors::unsupported())
        }
    }
}

/// Loading graphs (models).
pub mod graph {
    pub use super::errors::Error;
    pub use super::inference::GraphExecutionContext;
    pub use super::tensor::Tensor;

    /// One part of a serialised graph, for [`load`].
    pub type GraphBuilder = Vec<u8>;

    /// How a serialised graph is encoded.
    ///
    /// # Example
    ///
    /// ```
    /// let encoding = weft_sdk::nn::graph::GraphEncoding::Onnx;
    /// # let _ = encoding;
    /// ```
    #[derive(Clone, Copy, Eq, Ord, PartialEq, PartialOrd, Debug)]
    pub enum GraphEncoding {
        /// OpenVINO IR.
        Openvino,
        /// ONNX.
        Onnx,
        /// TensorFlow.
        Tensorflow,
        /// PyTorch.
        Pytorch,
        /// TensorFlow Lite.
        Tensorflowlite,
        /// GGML / GGUF.
        Ggml,
        /// Let the host decide.
        Autodetect,
    }

    /// Where a graph should run.
    ///
    /// # Example
    ///
    /// ```
    /// let target = weft_sdk::nn::graph::ExecutionTarget::Gpu;
    /// # let _ = target;
    /// ```
    #[derive(Clone, Copy, Eq, Ord, PartialEq, PartialOrd, Debug)]
    pub enum ExecutionTarget {
        /// The CPU.
        Cpu,
        /// A GPU.
        Gpu,
        /// A TPU.
        Tpu,
    }

    /// A loaded graph.
    ///
    /// # Example
    ///
    /// ```
    /// fn session(
    ///     graph: &weft_sdk::nn::graph::Graph,
    /// ) -> Result<weft_sdk::nn::inference::GraphExecutionContext, weft_sdk::nn::errors::Error> {
    ///     graph.init_execution_context()
    /// }
    /// ```
    #[derive(Debug)]
    pub struct Graph {
        _private: (),
    }

    impl Graph {
        /// Starts an inference session on this graph.
        ///
        /// # Example
        ///
        /// ```
        /// # fn f(graph: weft_sdk::nn::graph::Graph) {
        /// let context = graph.init_execution_context();
        /// # }
        /// ```
        pub fn init_execution_context(&self) -> Result<GraphExecutionContext, Error> {
            Err(super::errors::unsupported())
        }
    }

    /// Loads a graph from serialised bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use weft_sdk::nn::graph::{ExecutionTarget, GraphEncoding, load};
    ///
    /// let result = load(&[b"onnx bytes".to_vec()], GraphEncoding::Onnx, ExecutionTarget::Cpu);
    /// assert!(result.is_err(), "no backend natively");
    /// ```
    pub fn load(
        builder: &[GraphBuilder],
        encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> Result<Graph, Error> {
        let _ = (builder, encoding, target);
        Err(super::errors::unsupported())
    }

    /// Loads a graph the daemon knows by name (an uploaded model).
    ///
    /// # Example
    ///
    /// ```
    /// let result = weft_sdk::nn::graph::load_by_name("minilm");
    /// assert!(result.is_err(), "no backend natively");
    /// ```
    pub fn load_by_name(name: &str) -> Result<Graph, Error> {
        let _ = name;
        Err(super::errors::unsupported())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_that_needs_a_backend_is_unsupported() {
        let err = graph::load_by_name("x").unwrap_err();
        assert_eq!(err.code(), errors::ErrorCode::UnsupportedOperation);
        assert_eq!(
            err.to_string(),
            format!("unsupported-operation: {UNSUPPORTED}")
        );
    }
}
