//! The decoder families weft-nn reads besides SmolLM2's plain Llama, each
//! against llama.cpp on a tiny random model of its own (`scripts/models.py`
//! writes `tiny-<name>.gguf`, `scripts/reference.py --only archs` what
//! llama.cpp computes): Qwen2 (Q/K/V biases, NeoX rotary pairs, tied
//! output), Qwen3 (per-head Q/K norms, heads wider than the model), Granite
//! (its four multipliers, an output bias; its switch for the rotary
//! embedding), Llama 3 (`rope_freqs`, linear
//! rope scaling), Phi-3 (fused products) and Gemma 1, 2 and 3 (GELU,
//! post-norms, soft caps, sliding windows, local and global rotary bases)
//! SmolLM3 (layers without rotary embeddings), OLMo 2 and 3 (norms after
//! each block, not before), ERNIE 4.5, EXAONE 3 and 4 (global layers without
//! rotary embeddings), GLM-4 (norms before and after, fused gate and up,
//! partial rotary), MiniCPM, Arcee (no gate), InternLM2, StarCoder 2
//! (LayerNorm, biases, GELU without a gate), StableLM 2, Phi-2 (parallel
//! blocks, a bias on the logits), GPT-2 and StarCoder (learned positions),
//! GPT-NeoX (parallel blocks, a norm each), Command R and R7B (parallel
//! blocks under a LayerNorm without a bias, scaled logits; R7B's unrotated
//! global layers), Falcon 7B and 40B, Nemotron (squared ReLU under
//! LayerNorms), OLMo 1 (LayerNorms without weights, clamped Q/K/V) and
//! YaRN, on the CPU and on the GPU (the i-quant Llamas are in
//! `iquants.rs`); and the mixtures of experts Mixtral, Qwen2-MoE, Qwen3-MoE, Granite MoE, ERNIE 4.5 MoE,
//! OLMoE, DeepSeek-MoE (shared experts: Qwen2-MoE's gated; ERNIE's and
//! DeepSeek's dense first layers, ERNIE's biased pick) and gpt-oss (sinks,
//! biases, MXFP4 experts under a clamped SwiGLU), on the CPU and on the
//! GPU.

use std::sync::Arc;

use weft_nn::{Encoding, Engine, Model, NnErrorKind, Target};

use crate::smollm2::{argmax, logits};
use crate::support::{ids, model_file, reference};

/// How far our logits may be from llama.cpp's, relative to the size of its
/// best logit (at least 0.1). Both run the products of these f32 weights
/// in f32 and keep the cache in f16; llama.cpp also rounds the activations
/// to f16 for the f16 output head. Measured: within 2e-4 of the best logit
/// (Qwen2's, ~36, 6e-3 off; Granite's, ~0.5, 1e-4). (Quantised weights,
/// gpt-oss's and the i-quant model's, have llama.cpp round the products'
/// inputs to 8 bits: their tests say how far that takes them.)
const TOLERANCE: f64 = 2e-3;

/// The reference of the model `name`, and its file's bytes, checked to be
/// the bytes the reference was written for (the files are made by a
/// script: another numpy could make other bytes).
pub(crate) fn tiny(name: &str) -> (serde_json::Value, Vec<u8>) {
    use sha2::Digest;
    let all = reference("tiny_archs_reference.json");
    let case = all["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no reference for {name}"))
        .clone();
    let file = case["file"].as_str().unwrap();
    let bytes = std::fs::read(model_file(file)).unwrap();
    let digest = format!("{:x}", sha2::Sha256::digest(&bytes));
    assert_eq!(
        case["gguf_sha256"].as_str(),
        Some(digest.as_str()),
        "{file} is not the file the reference was written for: rerun `python3 scripts/reference.py --only archs`"
    );
    (case, bytes)
}

/// Fed llama.cpp's greedy tokens, every step's logits (its five best and
/// every 1021st id) are llama.cpp's, and our best token is its.
pub(crate) fn matches_llama_cpp(
    name: &str,
    model: &Arc<dyn Model>,
    case: &serde_json::Value,
) -> f64 {
    matches_llama_cpp_within(TOLERANCE, name, model, case)
}

/// [`matches_llama_cpp`] within `tolerance` of the best logit.
pub(crate) fn matches_llama_cpp_within(
    tolerance: f64,
    name: &str,
    model: &Arc<dyn Model>,
    case: &serde_json::Value,
) -> f64 {
    let stride = 1021;
    let mut session = model.session();
    let mut input = ids(&case["prompt_ids"]);
    let mut worst = 0f64;
    for (step, (want, s)) in ids(&case["generated_ids"])
        .into_iter()
        .zip(case["steps"].as_array().unwrap())
        .enumerate()
    {
        let l = logits(&mut session, &input);
        let top = s["top5"].as_array().unwrap();
        let best = top[0][1].as_f64().unwrap();
        let tolerance = tolerance * best.abs().max(0.1);
        let probes = s["probes"].as_array().unwrap().iter().enumerate();
        let top5 = s["top5"].as_array().unwrap().iter().map(|p| {
            let id = p[0].as_u64().unwrap() as usize;
            (id, &p[1])
        });
        for (id, value) in top5.chain(probes.map(|(i, v)| (i * stride, v))) {
            let (ours, theirs) = (f64::from(l[id]), value.as_f64().unwrap());
            let diff = (ours - theirs).abs();
            assert!(
                diff <= tolerance,
                "{name}, step {step}, token {id}: ours {ours}, llama.cpp {theirs}"
            );
            worst = worst.max(diff / best.abs().max(0.1));
        }
        let margin = best - top[1][1].as_f64().unwrap();
        if margin > 2.0 * tolerance {
            assert_eq!(argmax(&l), want, "{name}, step {step}");
        }
        input = vec![want];
    }
    worst
}

fn on_the_cpu(name: &str) {
    let (case, bytes) = tiny(name);
    let model = Engine::default()
        .load(&bytes, Encoding::Ggml, Target::Cpu)
        .unwrap();
    let worst = matches_llama_cpp(name, &model, &case);
    eprintln!("{name}: logits within {worst:.2e} (of the best) of llama.cpp's");
}

#[test]
fn qwen2_matches_llama_cpp() {
    on_the_cpu("qwen2");
}

#[test]
fn qwen3_matches_llama_cpp() {
    on_the_cpu("qwen3");
}

#[test]
fn granite_matches_llama_cpp() {
    on_the_cpu("granite");
}

#[test]
fn llama3_rope_frequencies_match_llama_cpp() {
    on_the_cpu("llama3");
}

/// Phi-3: Q/K/V and gate/up fused into one product each, NeoX pairs.
#[test]
fn phi3_matches_llama_cpp() {
    on_the_cpu("phi3");
}

/// Phi-3 128k / Phi-3.5's LongRoPE: the short factors and the attention
/// factor, in the original window (the file says 4× more), as llama.cpp
/// runs a context that fits the original window.
#[test]
fn a_longrope_phi3_matches_llama_cpp_in_its_original_window() {
    on_the_cpu("phi3long");
    // The window is the original 256 tokens, not the file's 1024.
    let (_, bytes) = tiny("phi3long");
    let model = Engine::default()
        .load(&bytes, Encoding::Ggml, Target::Cpu)
        .unwrap();
    let ids = |n: usize| {
        let ids: Vec<i64> = (0..n as i64).map(|i| 300 + i).collect();
        vec![(
            "input_ids".to_string(),
            weft_nn::Tensor::from_i64(vec![n], &ids),
        )]
    };
    let err = model.session().compute(&ids(257)).unwrap_err();
    assert_eq!(err.kind, weft_nn::NnErrorKind::TooLarge, "{err:?}");
    assert!(err.message.contains("context of 256"), "{err:?}");
    model.session().compute(&ids(256)).unwrap();
}

/// Phi-4-mini's layout: rotary on three quarters of each head, with
/// LongRoPE factors for those dims only, and the output tied to the
/// embeddings.
#[test]
fn a_partial_rotary_phi4_mini_matches_llama_cpp() {
    on_the_cpu("phi4mini");
}

/// Gemma: GELU feed-forward, embeddings scaled by √width, heads wider than
/// the model, NeoX pairs, the output head tied to the embeddings.
#[test]
fn gemma_matches_llama_cpp() {
    on_the_cpu("gemma");
}

/// Gemma 2: post-norms, soft-capped scores and logits, and every other
/// layer attending over a sliding window of 8 positions (the prompt and
/// the steps run past it).
#[test]
fn gemma2_soft_caps_and_sliding_window_match_llama_cpp() {
    on_the_cpu("gemma2");
}

/// A prompt fed in two passes, the second longer than Gemma 2's window of
/// 8 and after 12 positions (so that some of its queries' windows start
/// past the cache, inside the pass), gives the logits of one pass: on the
/// CPU and on the GPU.
#[test]
fn a_sliding_window_runs_across_passes_as_in_one() {
    let (case, bytes) = tiny("gemma2");
    let prompt = ids(&case["prompt_ids"]);
    assert!(prompt.len() >= 20, "{}", prompt.len());
    for target in [Target::Cpu, Target::Gpu] {
        let model = Engine::default()
            .load(&bytes, Encoding::Ggml, target)
            .unwrap();
        let whole = logits(&mut model.session(), &prompt);
        let mut split = model.session();
        logits(&mut split, &prompt[..12]);
        let parts = logits(&mut split, &prompt[12..]);
        let worst = whole
            .iter()
            .zip(&parts)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{target:?}: {worst}");
    }
}

/// Gemma 3: per-head Q/K norms, post-norms, five sliding-window layers
/// rotated at base 10000, unscaled, and a global one at the file's base,
/// linearly scaled.
#[test]
fn gemma3_local_and_global_layers_match_llama_cpp() {
    on_the_cpu("gemma3");
}

/// YaRN: each rotated pair's angle between the scaled one (low
/// frequencies) and the unscaled one (high), and the magnitude factor, as
/// a Qwen3 distil with a 4x window has them.
#[test]
fn yarn_rope_scaling_matches_llama_cpp() {
    on_the_cpu("qwen3yarn");
}

/// OLMo 2 (as OLMo 3 lays it out): no pre-norms, post-norms, Q and K
/// norms over all heads of a token, sliding windows in three layers of
/// four.
#[test]
fn olmo_matches_llama_cpp() {
    on_the_cpu("olmo3");
}

/// OLMo 3 as its files have it: YaRN in the global layers, the sliding
/// ones rotating plainly (their own angle table).
#[test]
fn olmo3_with_yarn_matches_llama_cpp() {
    on_the_cpu("olmo3yarn");
}

/// Mistral 3 (Ministral 3, as its files have it): YaRN with the file's
/// betas and `mscale_all_dim`, and Llama 4's attention temperature, which
/// here (an original window of 8) warms the queries from the ninth
/// position on.
#[test]
fn mistral3_yarn_and_attention_temperature_match_llama_cpp() {
    on_the_cpu("ministral");
}

/// An OLMo 2 file without a Q norm (which llama.cpp requires) is refused,
/// naming it.
#[test]
fn an_olmo2_file_without_its_q_norm_is_refused() {
    let e = refused("olmo3", b"blk.0.attn_q_norm", b"blk.0.attn_x_norm");
    assert_eq!(e.kind, NnErrorKind::InvalidEncoding, "{e}");
    assert!(
        e.message.contains("`blk.0.attn_q_norm.weight` is missing"),
        "{e}"
    );
}

/// SmolLM3: every fourth layer without a rotary embedding.
#[test]
fn smollm3_matches_llama_cpp() {
    on_the_cpu("smollm3");
}

/// Mixtral: a Llama whose feed-forward is a mixture of 4 experts, 2 a
/// token, routed by softmax and weighted by the renormalised top two.
#[test]
fn mixtral_matches_llama_cpp() {
    on_the_cpu("mixtral");
}

/// Qwen3-MoE: 8 narrow experts, 2 a token, per-head Q/K norms, NeoX pairs.
#[test]
fn qwen3moe_matches_llama_cpp() {
    on_the_cpu("qwen3moe");
}

/// Qwen2-MoE: 4 narrow experts, 2 a token, weighted by their softmax
/// probabilities as they are (not renormalised), and a wider shared expert
/// whose output each token gates by a sigmoid of its own.
#[test]
fn qwen2moe_with_a_gated_shared_expert_matches_llama_cpp() {
    on_the_cpu("qwen2moe");
}

/// Granite MoE: Granite's multipliers around a mixture of 4 experts, 2 a
/// token, and (Granite MoE Shared) a shared expert every token goes
/// through, its output added to the routed ones'.
#[test]
fn granitemoe_with_a_shared_expert_matches_llama_cpp() {
    on_the_cpu("granitemoe");
}

/// A Granite whose `rope.scaling.finetuned` is false: llama.cpp's switch
/// for the rotary embedding, off in every layer.
#[test]
fn a_granite_without_rotary_embedding_matches_llama_cpp() {
    on_the_cpu("granitenope");
}

/// ERNIE 4.5 (dense): Llama's layout under its own architecture name, the
/// output tied to the embeddings.
#[test]
fn ernie_matches_llama_cpp() {
    on_the_cpu("ernie");
}

/// EXAONE 3 and 3.5: NeoX pairs, with Llama 3's rope frequencies.
#[test]
fn exaone_matches_llama_cpp() {
    on_the_cpu("exaone");
}

/// EXAONE 4 (32B's layout: 64 layers): norms after each block, per-head
/// Q/K norms, three sliding-window layers of four that rotate, and a
/// global one that does not.
#[test]
fn exaone4_sliding_and_unrotated_global_layers_match_llama_cpp() {
    on_the_cpu("exaone4");
}

/// ERNIE 4.5 MoE: a dense first layer, then mixtures whose experts are
/// picked by the router's probabilities plus its bias and weighted by the
/// probabilities alone, renormalised, and a shared expert beside them.
#[test]
fn ernie_moe_with_dense_layers_and_a_biased_pick_matches_llama_cpp() {
    on_the_cpu("erniemoe");
}

/// GLM-4: norms before and after each block, Q/K/V biases, gate and up in
/// one product, adjacent rotary pairs on half of each head.
#[test]
fn glm4_matches_llama_cpp() {
    on_the_cpu("glm4");
}

/// MiniCPM: Llama's layout under Granite's embedding, residual and logit
/// multipliers (llama.cpp runs it with Granite's graph), the output tied.
#[test]
fn minicpm_matches_llama_cpp() {
    on_the_cpu("minicpm");
}

/// Arcee (AFM-4.5B): a feed-forward without a gate, `W_down · relu(W_up ·
/// h)²`, under YaRN.
#[test]
fn arcee_matches_llama_cpp() {
    on_the_cpu("arcee");
}

/// InternLM2 and 2.5: Llama's layout and graph under their own name (the
/// converter splits their fused Q/K/V), the output head required.
#[test]
fn internlm2_matches_llama_cpp() {
    on_the_cpu("internlm2");
}

/// StarCoder 2: LayerNorms with biases (the row less its mean), biases on
/// every product, a GELU feed-forward without a gate, NeoX pairs, the
/// output tied.
#[test]
fn starcoder2_matches_llama_cpp() {
    on_the_cpu("starcoder2");
}

/// StableLM 2: LayerNorms with biases, Q/K/V biases, a quarter of each
/// head rotated, its own output head; StableLM 2's pre-tokenizer name.
#[test]
fn stablelm_matches_llama_cpp() {
    on_the_cpu("stablelm");
}

/// Phi-2: one LayerNorm a block, read by the attention and the
/// feed-forward in parallel, their outputs both added; Q, K and V fused
/// with one bias; biases on every product and on the logits.
#[test]
fn phi2_matches_llama_cpp() {
    on_the_cpu("phi2");
}

/// GPT-2 and StarCoder: learned position embeddings added to the tokens'
/// (no rotation), LayerNorms, Q/K/V fused with a bias, GELU; GPT-2's output
/// tied, StarCoder's one key/value head.
#[test]
fn gpt2_and_starcoder_match_llama_cpp() {
    on_the_cpu("gpt2");
    on_the_cpu("starcoder");
}

/// GPT-NeoX (Pythia): GPT-2's blocks rotating a quarter of each head, the
/// attention and the feed-forward reading their own norms of the block's
/// input in parallel.
#[test]
fn gptneox_matches_llama_cpp() {
    on_the_cpu("gptneox");
}

/// OLMoE: norms before each block, Q/K norms over all heads at once, a
/// mixture weighted by the softmax's probabilities as they are.
#[test]
fn olmoe_matches_llama_cpp() {
    on_the_cpu("olmoe");
}

/// DeepSeek-MoE: a dense first layer, then narrow experts weighted as the
/// softmax gave them, beside two shared experts run as one.
#[test]
fn deepseek_moe_with_dense_layers_and_shared_experts_matches_llama_cpp() {
    on_the_cpu("deepseek");
}

/// Command R: the attention and the feed-forward reading one LayerNorm
/// without a bias in parallel, adjacent rotary pairs, the logits scaled,
/// the output the embeddings; Command R7B: its global layers (every
/// fourth) unrotated, the others over a sliding window.
#[test]
fn command_r_and_r7b_match_llama_cpp() {
    on_the_cpu("commandr");
    on_the_cpu("cohere2");
}

/// Falcon 7B (one LayerNorm read in parallel, fused Q/K/V with one key/value
/// head, a GELU feed-forward without a gate, the output tied) and 40B (the
/// attention's own norm, the feed-forward's the other, an output of its own).
#[test]
fn falcon_7b_and_40b_layouts_match_llama_cpp() {
    on_the_cpu("falcon");
    on_the_cpu("falcon40b");
}

/// Nemotron: LayerNorms with biases, a squared-ReLU feed-forward without a
/// gate (an up bias alone, the down one zeros), half of each head rotated.
#[test]
fn nemotron_matches_llama_cpp() {
    on_the_cpu("nemotron");
}

/// gpt-oss: a sink logit per head in each softmax, biases on Q/K/V/O,
/// every other layer over a sliding window, YaRN, a biased router, and
/// MXFP4 experts with biases under the clamped SwiGLU.
#[test]
fn gpt_oss_matches_llama_cpp() {
    on_the_cpu("gptoss");
}

/// OLMo 1: LayerNorms without weight or bias, adjacent rotary pairs, Q,
/// K and V clamped (the tiny model's bound clips about one value in
/// eight).
#[test]
fn olmo1_matches_llama_cpp() {
    on_the_cpu("olmo1");
}

/// LFM2: gated short convolutions in three of five layers, their state
/// carried from the prompt's pass to each token's.
#[test]
fn lfm2_matches_llama_cpp() {
    on_the_cpu("lfm2");
}

/// LFM2-MoE: LFM2's convolutions, a dense first layer, then experts
/// picked by the sigmoid of their scores plus the router's bias.
#[test]
fn lfm2moe_matches_llama_cpp() {
    on_the_cpu("lfm2moe");
}

/// Apertus: xIELU of the up product alone, its constants per layer.
#[test]
fn apertus_matches_llama_cpp() {
    on_the_cpu("apertus");
}

/// Granite 4.0-H: Mamba-2 layers beside attention ones, their
/// convolutions' and states' carried from the prompt's pass to each
/// token's; two groups of heads sharing `B` and `C` (dense, without a
/// rotation), and over Granite MoE Shared's mixtures (rotating).
#[test]
fn granitehybrid_matches_llama_cpp() {
    on_the_cpu("granitehybrid");
    on_the_cpu("granitehybridmoe");
}

/// Nemotron-H: Mamba-2, attention and squared-ReLU feed-forward blocks,
/// each under its own norm, a mixer without a feed-forward after it
/// (`M-*M-MM-`), nothing rotating.
#[test]
fn nemotron_h_matches_llama_cpp() {
    on_the_cpu("nemotronh");
}

/// Mamba-2 (and Codestral Mamba): Mamba-2 layers alone, each under its
/// norm, no attention anywhere.
#[test]
fn mamba2_matches_llama_cpp() {
    on_the_cpu("mamba2");
}

/// Mamba-1: each channel's own `dt` (from `ssm_x`'s low-rank part through
/// `ssm_dt`) and a decay per channel and state; and Falcon-Mamba's, whose
/// `dt`, `B` and `C` are RMS-normed.
#[test]
fn mamba_matches_llama_cpp() {
    on_the_cpu("mamba");
    on_the_cpu("falconmamba");
}

/// Hunyuan-Dense: Llama's blocks whose per-head Q/K norms come after the
/// rotary embedding (NeoX pairs), not before it as Qwen3's.
#[test]
fn hunyuan_dense_matches_llama_cpp() {
    on_the_cpu("hunyuan");
}

/// MiniCPM3: DeepSeek-V2's latent attention (queries through a latent,
/// the latent's product whole, values as wide as the width over the
/// heads) rotating NeoX pairs by LongRoPE's short factors, under
/// MiniCPM's multipliers.
#[test]
fn minicpm3_matches_llama_cpp() {
    on_the_cpu("minicpm3");
}

/// Nemotron 3 Nano: Nemotron-H's blocks, its feed-forwards mixtures of
/// squared-ReLU experts without a gate, picked by the sigmoid of their
/// scores plus the router's bias, weighted renormalised and scaled by
/// 2.5, beside a shared expert.
#[test]
fn nemotron_h_moe_matches_llama_cpp() {
    on_the_cpu("nemotronhmoe");
}

/// GLM-4.5: Q/K/V biases, half of each head rotated in NeoX pairs, a dense
/// first layer, then experts picked by the sigmoid of their scores plus
/// the router's bias, renormalised and scaled, beside a shared expert; its
/// multi-token prediction block read but not run.
#[test]
fn glm4moe_matches_llama_cpp() {
    on_the_cpu("glm4moe");
}

/// DeepSeek-V2's multi-head latent attention: V2-Lite's file (queries in
/// one product, the latent's product whole, softmax-routed experts), and
/// V3's as llama.cpp's converter writes it now (queries through a latent,
/// the latent's product split per head, YaRN's attention scale,
/// sigmoid-routed experts with a router bias, renormalised and scaled).
#[test]
fn deepseek2_matches_llama_cpp() {
    for name in ["deepseek2", "deepseek3"] {
        on_the_cpu(name);
    }
}

/// The language models of Qwen2.5-VL, Qwen3-VL and Qwen3-VL-MoE: on
/// text, whose positions are one in every M-RoPE section, they rotate as
/// Qwen2's and Qwen3's (llama.cpp's multimodal rotation agrees).
#[test]
fn qwen_vl_language_models_match_llama_cpp_on_text() {
    for name in ["qwen2vl", "qwen3vl", "qwen3vlmoe"] {
        on_the_cpu(name);
    }
}

/// A plain Llama with a SentencePiece vocabulary (its prompt tokenised by
/// llama.cpp's SentencePiece tokenizer).
#[test]
fn a_sentencepiece_llama_matches_llama_cpp() {
    on_the_cpu("tinyllama");
}

/// Renames a tensor or metadata key in a GGUF's header to another of the
/// same length.
fn rename_in_header(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the name in the header");
    bytes[at..at + to.len()].copy_from_slice(to);
}

/// Why the tiny `model`, a name in its header renamed, fails to load.
fn refused(model: &str, from: &[u8], to: &[u8]) -> weft_nn::NnError {
    let (_, mut bytes) = tiny(model);
    rename_in_header(&mut bytes, from, to);
    Engine::default()
        .load(&bytes, Encoding::Ggml, Target::Cpu)
        .unwrap_err()
}

/// A tensor the decoder would not read (another architecture's extra)
/// refuses the file, naming it, instead of giving wrong logits.
#[test]
fn a_tensor_the_decoder_would_not_read_refuses_the_file() {
    let e = refused("llama3", b"rope_freqs.weight", b"rope_extra.weight");
    assert_eq!(e.kind, NnErrorKind::UnsupportedOperation, "{e}");
    assert!(
        e.message.contains("`rope_extra.weight`") && e.message.contains("`llama`"),
        "{e}"
    );
}

/// A file with a scaling factor but no `rope.scaling.type` is scaled
/// linearly, as llama.cpp reads it (not run unscaled): the Llama 3 file,
/// its type renamed away, gives llama.cpp's logits of the file with it.
#[test]
fn rope_scaling_without_a_type_is_linear_as_in_llama_cpp() {
    let (case, mut bytes) = tiny("llama3");
    rename_in_header(
        &mut bytes,
        b"llama.rope.scaling.type",
        b"llama.rope.scaling.typx",
    );
    let model = Engine::default()
        .load(&bytes, Encoding::Ggml, Target::Cpu)
        .unwrap();
    matches_llama_cpp("llama3 without its scaling type", &model, &case);
}

/// A rotary scaling weft-nn does not run is refused, naming it, rather
/// than run unscaled.
#[test]
fn an_unknown_rope_scaling_is_refused() {
    let value = |v: &[u8]| {
        let mut key = b"llama.rope.scaling.type".to_vec();
        key.extend(8u32.to_le_bytes());
        key.extend((v.len() as u64).to_le_bytes());
        key.extend(v);
        key
    };
    let e = refused("llama3", &value(b"linear"), &value(b"ntk-by"));
    assert_eq!(e.kind, NnErrorKind::UnsupportedOperation, "{e}");
    assert!(
        e.message.contains("rope scaling `ntk-by` is not supported"),
        "{e}"
    );
}

/// A Gemma 2 file without a block's post-norm is refused, naming it (run
/// without, its logits would be wrong).
#[test]
fn a_gemma2_file_without_its_post_norms_is_refused() {
    let e = refused("gemma2", b"blk.1.post_ffw_norm", b"blk.1.post_ffx_norm");
    assert_eq!(e.kind, NnErrorKind::InvalidEncoding, "{e}");
    assert!(
        e.message
            .contains("`blk.1.post_ffw_norm.weight` is missing"),
        "{e}"
    );
}

/// A LongRoPE file that does not say its original window is refused: its
/// short factors would run past it, into wrong logits.
#[test]
fn a_longrope_file_without_its_original_window_is_refused() {
    let e = refused(
        "phi3long",
        b"phi3.rope.scaling.original_context_length",
        b"phi3.rope.scaling.original_context_lengtx",
    );
    assert_eq!(e.kind, NnErrorKind::InvalidEncoding, "{e}");
    assert!(e.message.contains("original_context_length"), "{e}");
}
