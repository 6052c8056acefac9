//! The GGUF architectures weft-nn's decoder runs.

/// The GGUF architectures (`general.architecture`) weft-nn runs: Llama and
/// the decoders that differ from it only in their name (InternLM2),
/// hyperparameters, optional tensors, (Phi-3, GLM-4) fused products,
/// (Gemma) GELU, post-norms, soft caps and sliding-window layers, (OLMo 2,
/// EXAONE 4) norms after each block instead of before, (Mixtral,
/// Qwen2-MoE, Qwen3-MoE, Granite MoE, ERNIE 4.5 MoE) mixtures of experts, (Qwen2-MoE, Granite MoE Shared,
/// ERNIE 4.5 MoE) a shared expert beside them, (ERNIE 4.5 MoE) dense
/// layers before them and a router's bias to pick them, (Mistral 3) Llama
/// 4's attention temperature, (EXAONE 4) global layers without a
/// rotary embedding beside sliding-window ones, (MiniCPM) Granite's
/// multipliers, (Arcee) a feed-forward without a gate, its up
/// product's ReLU squared, (StarCoder 2, Phi-2) LayerNorm with biases and
/// a GELU feed-forward without a gate, with biases, (StableLM) LayerNorm
/// and partial rotary embeddings, (Phi-2, StableLM 2 12B) blocks whose
/// attention and feed-forward read one norm of the stream in parallel, and
/// (GPT-2, StarCoder) StarCoder 2's blocks under learned position
/// embeddings instead of rotary ones, (GPT-NeoX) those blocks rotating,
/// in parallel where the file says, (OLMoE) OLMo 2's whole-row Q/K norms
/// before a mixture, (DeepSeek-MoE) dense layers before mixtures with
/// shared experts, (Command R, Command R7B) parallel blocks under one
/// LayerNorm without a bias, scaled logits and (Command R7B) sliding
/// windows whose global layers do not rotate, (Falcon) parallel
/// blocks with one or two LayerNorms and one key/value head,
/// (Nemotron) LayerNorms before Arcee's squared-ReLU feed-forward, and
/// (gpt-oss) attention sinks, biased routers and experts and a clamped
/// SwiGLU, (OLMo 1) LayerNorms without weights and clamped Q/K/V, and
/// (LFM2, LFM2-MoE) gated short convolutions in place of some layers'
/// attention and (LFM2-MoE) sigmoid routing, (Apertus) xIELU, and the
/// language models of Qwen2.5-VL and Qwen3-VL, on text, and (Granite
/// 4.0-H) Mamba-2 layers beside attention ones under Granite's
/// multipliers, (Nemotron-H) those and feed-forwards as blocks of
/// their own, (DeepSeek-V2, V3, Kimi K2, GLM-4.7-Flash) multi-head
/// latent attention before DeepSeek-MoE's mixtures, and (Mamba-2,
/// Codestral Mamba) Mamba-2 layers alone, (Mamba, Falcon-Mamba) Mamba-1
/// layers alone, (Hunyuan-Dense) per-head Q/K norms after the rotary
/// embedding, and (MiniCPM3) DeepSeek-V2's latent attention under
/// MiniCPM's multipliers and LongRoPE.
pub const ARCHITECTURES: &[&str] = &[
    "llama",
    "mistral",
    "mistral3",
    "granite",
    "granitemoe",
    "qwen2",
    "qwen2moe",
    "qwen3",
    "qwen3moe",
    "phi3",
    "gemma",
    "gemma2",
    "gemma3",
    "smollm3",
    "olmo2",
    "ernie4_5",
    "ernie4_5-moe",
    "exaone",
    "exaone4",
    "glm4",
    "minicpm",
    "arcee",
    "internlm2",
    "starcoder2",
    "stablelm",
    "phi2",
    "gpt2",
    "starcoder",
    "gptneox",
    "olmoe",
    "deepseek",
    "command-r",
    "cohere2",
    "falcon",
    "nemotron",
    "gpt-oss",
    "olmo",
    "lfm2",
    "lfm2moe",
    "qwen2vl",
    "qwen3vl",
    "qwen3vlmoe",
    "apertus",
    "granitehybrid",
    "nemotron_h",
    "nemotron_h_moe",
    "glm4moe",
    "deepseek2",
    "mamba2",
    "mamba",
    "hunyuan-dense",
    "minicpm3",
];
