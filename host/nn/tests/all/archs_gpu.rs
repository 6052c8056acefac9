//! The tiny decoders of every family on the GPU (llvmpipe where there is
//! no GPU), against llama.cpp as on the CPU (`archs.rs`).

use weft_nn::{Encoding, Engine, Placement, Target};

use crate::archs::{matches_llama_cpp, matches_llama_cpp_within, tiny};

/// On the GPU (llvmpipe here) every family's forward pass runs there —
/// biases, NeoX pairs, per-head norms, multipliers, rope frequencies,
/// feed-forwards without a gate, LayerNorm — and matches llama.cpp as the
/// CPU path does.
#[test]
fn on_the_gpu_every_family_matches_llama_cpp() {
    on_the_gpu(&[
        "qwen2",
        "qwen3",
        "granite",
        "llama3",
        "phi3",
        "phi3long",
        "gemma",
        "gemma2",
        "gemma3",
        "smollm3",
        "qwen3yarn",
        "olmo3",
        "olmo3yarn",
        "phi4mini",
        "ministral",
        "granitenope",
        "exaone",
        "exaone4",
        "glm4",
        "ernie",
        "minicpm",
        "arcee",
        "internlm2",
        "starcoder2",
        "stablelm",
        "phi2",
        "gpt2",
        "starcoder",
        "gptneox",
        "commandr",
        "cohere2",
        "falcon",
        "falcon40b",
        "nemotron",
        "olmo1",
        "lfm2",
        "qwen2vl",
        "qwen3vl",
        "apertus",
        "granitehybrid",
        "nemotronh",
        "mamba2",
        "mamba",
        "falconmamba",
        "hunyuan",
        "minicpm3",
    ]);
}

/// Each of the tiny models `names`, loaded for the GPU, runs there and
/// matches llama.cpp.
fn on_the_gpu(names: &[&str]) {
    let engine = Engine::default();
    for &name in names {
        let (case, bytes) = tiny(name);
        let model = engine.load(&bytes, Encoding::Ggml, Target::Gpu).unwrap();
        assert!(
            matches!(model.placement(), Placement::Gpu(_)),
            "{name}: {:?}",
            model.placement()
        );
        let worst = matches_llama_cpp(name, &model, &case);
        eprintln!("{name} on the GPU: logits within {worst:.2e} (of the best) of llama.cpp's");
    }
}

/// On the GPU the mixtures of experts run there too, routed on the host
/// from the router's scores read back, each expert over the rows routed
/// to it, and match llama.cpp as on the CPU: Mixtral, Qwen2-MoE (its
/// gated shared expert), Qwen3-MoE, Granite MoE Shared and ERNIE 4.5 MoE
/// (a dense first layer, the biased pick), OLMoE, DeepSeek-MoE (its
/// shared experts) and gpt-oss (its sinks in the attention kernel, its
/// router's bias added to the scores read back, its experts' biases and
/// clamped SwiGLU on the device; looser, below). DeepSeek-V2's latent
/// attention builds its heads on the device from its latents.
#[test]
fn on_the_gpu_mixtures_of_experts_match_llama_cpp() {
    on_the_gpu(&[
        "mixtral",
        "qwen2moe",
        "qwen3moe",
        "granitemoe",
        "erniemoe",
        "olmoe",
        "deepseek",
        "lfm2moe",
        "qwen3vlmoe",
        "granitehybridmoe",
        "nemotronhmoe",
        "glm4moe",
        "deepseek2",
        "deepseek3",
    ]);
    let (case, bytes) = tiny("gptoss");
    let model = Engine::default()
        .load(&bytes, Encoding::Ggml, Target::Gpu)
        .unwrap();
    assert!(matches!(model.placement(), Placement::Gpu(_)));
    // (Its experts' Q8_0 blocks, MXFP4's transcoded, are read by products
    // of f32 inputs, where llama.cpp's CPU rounds them to Q8_0, as ours
    // does: the tiny model's steep gates make that 4e-2 of the best logit
    // here. `llama::tests::mixtures` holds the two paths to 1e-4 of each
    // other without that rounding.)
    let worst = matches_llama_cpp_within(6e-2, "gptoss", &model, &case);
    eprintln!("gptoss on the GPU: logits within {worst:.2e} (of the best) of llama.cpp's");
}
