//! Host bindings generated from `wit/` (the `weft:stage` world). Generated
//! code stays in this module; the rest of the crate uses plain Rust types.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "weft:stage/stage",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi:nn/tensor.tensor": crate::nn::TensorRes,
        "wasi:nn/graph.graph": crate::nn::GraphRes,
        "wasi:nn/inference.graph-execution-context": crate::nn::ContextRes,
        "wasi:nn/errors.error": crate::nn::ErrorRes,
        "weft:stage/train.trainer": crate::train::TrainerRes,
    },
});
