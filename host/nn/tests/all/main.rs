//! weft-nn's integration tests, one binary: real models fetched by
//! `cargo xtask models`, reference outputs from independent implementations
//! in `tests/data`, the ONNX backend conformance suite, and the GPU path
//! (on llvmpipe where there is no GPU).

mod archs;
mod archs_gpu;
mod conformance;
mod gpu;
mod iquants;
mod quantized;
mod smollm2;
mod support;
