//! weft-nn's integration tests, one binary: real models fetched by
//! `cargo xtask models`, reference outputs from independent implementations
//! in `tests/data`, and the ONNX backend conformance suite.

mod conformance;
mod smollm2;
mod support;
