//! How each family's keys and tensors are read, as llama.cpp's loaders
//! read them: what sets Granite, EXAONE 4, GLM-4, MiniCPM, Arcee,
//! InternLM2, StarCoder 2, StableLM 2, Phi-2, GPT-2, StarCoder, GPT-NeoX,
//! Command R, Falcon, Nemotron and OLMo 1 apart, and what each refuses (the
//! mixtures' in `mixtures.rs`).

use super::*;
use crate::GgufInfo;
use crate::gpu::FfnAct;

/// The check's error for `info` without tensor `name`.
pub(super) fn refused_without(info: &GgufInfo, name: &str) -> String {
    let mut without = info.clone();
    without.tensors.retain(|t| t.name != name);
    check(&without).unwrap_err().to_string()
}

/// Asserts that `info` without any one of the tensors `names` is
/// refused, naming it.
pub(super) fn requires_each(info: &GgufInfo, names: &[&str]) {
    for name in names {
        let err = refused_without(info, name);
        assert!(err.contains(&format!("`{name}` is missing")), "{err}");
    }
}

/// The check's error for `info` with a copy of tensor `from` named `to`
/// (of `dims` where given).
pub(super) fn refused_with_copy(
    info: &GgufInfo,
    from: &str,
    to: &str,
    dims: Option<Vec<u64>>,
) -> String {
    let mut with = info.clone();
    let mut copy = (with.tensors.iter())
        .find(|t| t.name == from)
        .unwrap_or_else(|| panic!("no {from}"))
        .clone();
    copy.name = to.into();
    copy.dims = dims.unwrap_or(copy.dims);
    with.tensors.push(copy);
    check(&with).unwrap_err().to_string()
}

/// `info` without its metadata key `key`.
pub(super) fn without_key(info: &GgufInfo, key: &str) -> GgufInfo {
    let mut without = info.clone();
    without.metadata.retain(|(k, _)| k != key);
    without
}

/// `info` with its metadata `key` set to `value`.
pub(super) fn with_key(info: &GgufInfo, key: &str, value: crate::GgufValue) -> GgufInfo {
    let mut with = info.clone();
    for (k, v) in &mut with.metadata {
        if k == key {
            *v = value.clone();
        }
    }
    with
}

/// Granite's keys, as llama.cpp's Granite loaders read them: a
/// `granitemoe` file's mixture and its shared expert's width (that width
/// read for a mixture only, its tensors required then and refused
/// otherwise), and `rope.scaling.finetuned` as the switch for the rotary
/// embedding in every layer (on when absent; Granite's alone).
#[test]
fn granite_shared_expert_and_rope_switch_are_read_as_llama_cpp_reads_them() {
    use crate::GgufValue::Int;
    let moe = crate::gguf::inspect(&model_file("tiny-granitemoe.gguf")).unwrap();
    let hp = check(&moe).unwrap();
    assert_eq!((hp.experts, hp.experts_used, hp.ffn), (4, 2, 96));
    assert_eq!(hp.shared_ffn, 48);
    assert_eq!(hp.logit_scale, 1.0 / 8.0, "Granite's multipliers");
    assert!((0..hp.layers).all(|l| hp.ropes(l)), "rotates when absent");
    // Without the width, the shared expert's tensors are another model's.
    let no_width = without_key(&moe, "granitemoe.expert_shared_feed_forward_length");
    let err = check(&no_width).unwrap_err().to_string();
    assert!(err.contains("_shexp.weight` is not one"), "{err}");
    // Without the tensors, the width asks for them.
    let mut no_tensors = moe.clone();
    no_tensors.tensors.retain(|t| !t.name.contains("_shexp"));
    let err = check(&no_tensors).unwrap_err().to_string();
    assert!(err.contains("_shexp.weight` is missing"), "{err}");

    let nope = crate::gguf::inspect(&model_file("tiny-granitenope.gguf")).unwrap();
    let hp = check(&nope).unwrap();
    assert!((0..hp.layers).all(|l| !hp.ropes(l)), "no layer rotates");
    assert_eq!((hp.experts, hp.shared_ffn), (0, 0));
    let with = |arch: &str, on: i64| {
        let mut info = nope.clone();
        info.architecture = Some(arch.into());
        info.metadata = (info.metadata.into_iter())
            .map(|(k, v)| (k.replacen("granite.", &format!("{arch}."), 1), v))
            .collect();
        let key = format!("{arch}.rope.scaling.finetuned");
        info.metadata.retain(|(k, _)| *k != key);
        info.metadata.push((key, Int(on)));
        check(&info).unwrap()
    };
    assert!(with("granite", 1).ropes(0));
    assert!(!with("granitemoe", 0).ropes(0));
    // Elsewhere the key is only printed (llama.cpp): the layers rotate.
    assert!(with("llama", 0).ropes(0));
}

/// EXAONE 4's layout, as llama.cpp's `exaone4` loader and graph read it:
/// sliding windows for the 64-layer model (32B) alone, three layers of
/// four, where only those rotate; any other depth attends and rotates in
/// every layer, whatever window its file gives (1.2B's). Norms after each
/// block, not before, and per-head Q/K norms, required.
#[test]
fn exaone4_windows_and_rotations_are_read_as_llama_cpp_reads_them() {
    let file = crate::gguf::inspect(&model_file("tiny-exaone4.gguf")).unwrap();
    let hp = check(&file).unwrap();
    assert_eq!((hp.layers, hp.window), (64, 8));
    for l in 0..hp.layers {
        let local = l % 4 != 3;
        assert_eq!((hp.is_swa(l), hp.ropes(l)), (local, local), "layer {l}");
    }
    assert!(hp.rope_neox && hp.post_norms && !hp.pre_norms);
    assert_eq!(hp.qk_norm_widths(), (hp.head_dim, hp.head_dim));
    // Without the file's window, llama.cpp's 4096; a rotary base of the
    // sliding layers' own is not read (llama.cpp rotates them at the
    // global one).
    let mut default = without_key(&file, "exaone4.attention.sliding_window");
    default.metadata.push((
        "exaone4.rope.freq_base_swa".into(),
        crate::GgufValue::Float(10.0),
    ));
    let hp = check(&default).unwrap();
    assert_eq!((hp.window, hp.rope_base_swa), (4096, hp.rope_base));
    // 30 layers (1.2B's depth): no window, every layer rotates.
    let mut shallow = file.clone();
    shallow.tensors.retain(|t| {
        let block = t
            .name
            .strip_prefix("blk.")
            .and_then(|b| b.split('.').next());
        block.is_none_or(|b| b.parse::<usize>().unwrap() < 30)
    });
    for (k, v) in &mut shallow.metadata {
        if k == "exaone4.block_count" {
            *v = crate::GgufValue::Int(30);
        }
    }
    let hp = check(&shallow).unwrap();
    assert!((0..30).all(|l| !hp.is_swa(l) && hp.ropes(l)));
    let mut no_norm = file.clone();
    no_norm
        .tensors
        .retain(|t| t.name != "blk.3.attn_k_norm.weight");
    let err = check(&no_norm).unwrap_err().to_string();
    assert!(
        err.contains("`blk.3.attn_k_norm.weight` is missing"),
        "{err}"
    );
    // EXAONE 3 pairs as NeoX does; ERNIE 4.5 as Llama does.
    let exaone = crate::gguf::inspect(&model_file("tiny-exaone.gguf")).unwrap();
    let hp = check(&exaone).unwrap();
    assert!(hp.rope_neox && hp.pre_norms && !hp.post_norms);
    let ernie = crate::gguf::inspect(&model_file("tiny-ernie.gguf")).unwrap();
    assert!(!check(&ernie).unwrap().rope_neox);
}

/// GLM-4's layout, as llama.cpp's `glm4` loader reads it: norms before and
/// after each block, gate and up in one product (Q, K and V apart),
/// adjacent rotary pairs; GLM-4V's language model (its M-RoPE sections)
/// and an output bias, which GLM-4 has not, refused.
#[test]
fn glm4_is_read_as_llama_cpp_reads_it() {
    let file = crate::gguf::inspect(&model_file("tiny-glm4.gguf")).unwrap();
    let hp = check(&file).unwrap();
    assert!(hp.pre_norms && hp.post_norms && hp.fused_gate_up && !hp.fused_qkv);
    assert!(!hp.rope_neox && hp.rope_dims < hp.head_dim);
    let mut vision = file.clone();
    vision.metadata.push((
        "glm4.rope.dimension_sections".into(),
        crate::GgufValue::Array(vec![crate::GgufValue::Int(4); 4]),
    ));
    let err = check(&vision).unwrap_err().to_string();
    assert!(err.contains("M-RoPE"), "{err}");
    let mut biased = file.clone();
    let mut bias = biased.tensor("blk.1.attn_q.bias").unwrap().clone();
    (bias.name, bias.dims) = ("blk.1.attn_output.bias".into(), vec![64]);
    biased.tensors.push(bias);
    let err = check(&biased).unwrap_err().to_string();
    assert!(err.contains("`blk.1.attn_output.bias` is not one"), "{err}");
}

/// MiniCPM's multipliers, as llama.cpp reads them: the file's keys when
/// it has them, else (a file converted before the converter wrote them)
/// MiniCPM's own constants, `scale_emb` 12, `scale_depth` 1.4 over the
/// root of the depth, and logits over `hidden_size / 256`; its layers
/// always rotate (Granite's switch is Granite's alone).
#[test]
fn minicpm_multipliers_are_the_files_or_minicpms_own() {
    use crate::GgufValue::Int;
    let info = crate::gguf::inspect(&model_file("tiny-minicpm.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert_eq!((hp.embd_scale, hp.residual_scale), (10.0, 0.35));
    assert_eq!(hp.logit_scale, 2.0, "1 / minicpm.logit_scale");
    assert_eq!(hp.attn_scale, 1.0 / (hp.head_dim as f32).sqrt());
    assert_eq!(hp.act, FfnAct::Silu);
    let mut old = info.clone();
    old.metadata.retain(|(k, _)| !k.ends_with("_scale"));
    old.metadata
        .push(("minicpm.rope.scaling.finetuned".into(), Int(0)));
    let hp = check(&old).unwrap();
    assert_eq!(hp.embd_scale, 12.0);
    assert_eq!(hp.residual_scale, 1.4 / (hp.layers as f32).sqrt());
    assert_eq!(hp.logit_scale, 256.0 / hp.embd as f32);
    assert!((0..hp.layers).all(|l| hp.ropes(l)));
}

/// Arcee's feed-forward has no gate: an `ffn_up` and an `ffn_down` of the
/// feed-forward's width, and a gate beside them is another model's.
#[test]
fn arcee_reads_no_gate_and_refuses_one() {
    let info = crate::gguf::inspect(&model_file("tiny-arcee.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert_eq!(hp.act, FfnAct::ReluSquared);
    assert!(hp.yarn.is_some());
    let err = refused_with_copy(&info, "blk.0.ffn_up.weight", "blk.0.ffn_gate.weight", None);
    assert!(err.contains("blk.0.ffn_gate.weight"), "{err}");
    let err = refused_without(&info, "blk.1.ffn_up.weight");
    assert!(err.contains("blk.1.ffn_up.weight` is missing"), "{err}");
}

/// InternLM2's output head is its own, required as llama.cpp's loader
/// requires it (tied to the embeddings, as a Llama's may be, it would be
/// another model).
#[test]
fn internlm2_requires_its_output_head() {
    let info = crate::gguf::inspect(&model_file("tiny-internlm2.gguf")).unwrap();
    check(&info).unwrap();
    let mut tied = info.clone();
    tied.tensors.retain(|t| t.name != "output.weight");
    let err = check(&tied).unwrap_err().to_string();
    assert!(err.contains("`output.weight` is missing"), "{err}");
    tied.architecture = Some("llama".into());
    tied.metadata = (tied.metadata.into_iter())
        .map(|(k, v)| (k.replacen("internlm2.", "llama.", 1), v))
        .collect();
    check(&tied).unwrap();
}

/// StarCoder 2's LayerNorms, GELU without a gate and biases, as llama.cpp
/// reads them: its epsilon under its own key, required; every norm's,
/// the output product's and the feed-forward's biases required; a gate,
/// or those biases in another family's file, refused.
#[test]
fn starcoder2_reads_layer_norms_and_biases_as_llama_cpp_does() {
    let info = crate::gguf::inspect(&model_file("tiny-starcoder2.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert!(hp.layer_norm && hp.ffn_biases && hp.rope_neox);
    assert_eq!((hp.act, hp.gated), (FfnAct::Gelu, false));
    assert_eq!(hp.norm_eps, 1e-4, "starcoder2.attention.layer_norm_epsilon");
    let no_eps = without_key(&info, "starcoder2.attention.layer_norm_epsilon");
    let err = check(&no_eps).unwrap_err().to_string();
    assert!(err.contains("layer_norm_epsilon` is missing"), "{err}");
    requires_each(
        &info,
        &[
            "output_norm.bias",
            "blk.1.attn_norm.bias",
            "blk.0.ffn_norm.bias",
            "blk.1.attn_output.bias",
            "blk.0.ffn_up.bias",
            "blk.1.ffn_down.bias",
        ],
    );
    let err = refused_with_copy(&info, "blk.0.ffn_up.weight", "blk.0.ffn_gate.weight", None);
    assert!(err.contains("blk.0.ffn_gate.weight"), "{err}");
    // A Llama's file with a norm's bias would run without it.
    let llama = crate::gguf::inspect(&model_file("tiny-internlm2.gguf")).unwrap();
    let err = refused_with_copy(
        &llama,
        "blk.0.attn_norm.weight",
        "blk.0.attn_norm.bias",
        None,
    );
    assert!(err.contains("`blk.0.attn_norm.bias` is not one"), "{err}");
}

/// StableLM 2 as llama.cpp reads it: LayerNorms, a quarter of each head
/// rotated, SwiGLU, its output head required and no output bias; a file
/// without `ffn_norm` (StableLM 2 12B's) runs its blocks in parallel, and
/// one with 12B's per-head Q/K LayerNorms is refused, saying so.
#[test]
fn stablelm_is_read_as_llama_cpp_reads_it() {
    let info = crate::gguf::inspect(&model_file("tiny-stablelm.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert!(hp.layer_norm && hp.gated && hp.rope_neox);
    assert!(!hp.parallel && !hp.ffn_biases && !hp.output_bias);
    assert_eq!((hp.act, hp.rope_dims, hp.head_dim), (FfnAct::Silu, 4, 16));
    let err = refused_without(&info, "output.weight");
    assert!(err.contains("`output.weight` is missing"), "{err}");
    let (norm, bias) = ("blk.0.attn_norm.bias", "blk.0.attn_output.bias");
    let err = refused_with_copy(&info, norm, bias, None);
    assert!(err.contains("`blk.0.attn_output.bias` is not one"), "{err}");
    let q_norm = "blk.0.attn_q_norm.weight";
    let err = refused_with_copy(&info, "blk.0.attn_q.bias", q_norm, Some(vec![16, 4]));
    assert!(err.contains("StableLM 2 12B"), "{err}");
    let mut parallel = info.clone();
    parallel.tensors.retain(|t| !t.name.contains("ffn_norm"));
    let hp = check(&parallel).unwrap();
    assert!(hp.parallel);
}

/// Phi-2 as llama.cpp reads it: one LayerNorm a block, which the attention
/// and the feed-forward read in parallel; Q, K and V fused (its first
/// release's files) or not (its transformers release's); biases on every
/// product and on the logits, required; a `ffn_norm` is another model's.
#[test]
fn phi2_is_read_as_llama_cpp_reads_it() {
    let info = crate::gguf::inspect(&model_file("tiny-phi2.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert!(hp.layer_norm && hp.parallel && hp.fused_qkv && hp.output_bias);
    assert!(hp.ffn_biases && !hp.gated && hp.rope_neox);
    assert_eq!((hp.act, hp.rope_dims), (FfnAct::Gelu, 6));
    requires_each(
        &info,
        &["output.bias", "blk.1.attn_output.bias", "blk.0.ffn_up.bias"],
    );
    let (attn_norm, ffn_norm) = ("blk.0.attn_norm.weight", "blk.0.ffn_norm.weight");
    let err = refused_with_copy(&info, attn_norm, ffn_norm, None);
    assert!(err.contains("`blk.0.ffn_norm.weight` is not one"), "{err}");
    // Unfused, with each part's bias.
    let (e, qd, kvd) = (hp.embd, hp.q_dim(), hp.kv_dim());
    let mut split = info.clone();
    let fused: Vec<_> = (split.tensors.iter())
        .filter(|t| t.name.contains("attn_qkv"))
        .cloned()
        .collect();
    split.tensors.retain(|t| !t.name.contains("attn_qkv"));
    for t in fused {
        let bias = t.name.ends_with(".bias");
        for (part, rows) in [("attn_q", qd), ("attn_k", kvd), ("attn_v", kvd)] {
            let mut p = t.clone();
            p.name = t.name.replace("attn_qkv", part);
            p.dims = if bias {
                vec![rows as u64]
            } else {
                vec![e as u64, rows as u64]
            };
            split.tensors.push(p);
        }
    }
    let hp = check(&split).unwrap();
    assert!(!hp.fused_qkv && hp.parallel);
}

/// GPT-2 and StarCoder as llama.cpp reads them: StarCoder 2's LayerNorms,
/// biases and GELU, Q/K/V fused with a bias (required), and learned
/// position embeddings, a row a position of the window, instead of any
/// rotation; StarCoder with one key/value head.
#[test]
fn gpt2_and_starcoder_are_read_as_llama_cpp_reads_them() {
    let info = crate::gguf::inspect(&model_file("tiny-gpt2.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert!(hp.positions && hp.layer_norm && hp.fused_qkv && hp.ffn_biases);
    assert!(!hp.gated && !hp.parallel && !hp.output_bias);
    assert!((0..hp.layers).all(|l| !hp.ropes(l)), "no layer rotates");
    assert_eq!(hp.act, FfnAct::Gelu);
    requires_each(&info, &["position_embd.weight", "blk.1.attn_qkv.bias"]);
    // The positions' rows are the window's: fewer would run out.
    let longer = with_key(&info, "gpt2.context_length", crate::GgufValue::Int(512));
    let err = check(&longer).unwrap_err().to_string();
    assert!(err.contains("`position_embd.weight` has shape"), "{err}");
    // A part's bias beside the fused one, or a rotary factor where nothing
    // rotates, would be dropped: refused.
    let q_bias = "blk.0.attn_q.bias";
    let err = refused_with_copy(&info, "blk.0.attn_qkv.bias", q_bias, Some(vec![64]));
    assert!(err.contains("`blk.0.attn_q.bias` is not one"), "{err}");
    let freqs = "rope_freqs.weight";
    let err = refused_with_copy(&info, "blk.0.attn_qkv.bias", freqs, Some(vec![8]));
    assert!(err.contains("`rope_freqs.weight` is not one"), "{err}");
    let info = crate::gguf::inspect(&model_file("tiny-starcoder.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert!(hp.positions && hp.fused_qkv);
    assert_eq!((hp.heads, hp.kv_heads), (4, 1));
}

/// GPT-NeoX as llama.cpp reads it: GPT-2's blocks rotating (NeoX pairs, a
/// quarter of each head), run in parallel, each half through its own norm
/// of the block's input, where `use_parallel_residual` says (required);
/// in sequence where it says not.
#[test]
fn gptneox_runs_its_blocks_as_the_file_says() {
    use crate::GgufValue::Int;
    let info = crate::gguf::inspect(&model_file("tiny-gptneox.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert!(hp.parallel && hp.layer_norm && hp.fused_qkv && hp.rope_neox);
    assert!(!hp.positions && !hp.gated && (0..hp.layers).all(|l| hp.ropes(l)));
    assert_eq!(hp.rope_dims, 4);
    let key = "gptneox.use_parallel_residual";
    let sequential = with_key(&info, key, Int(0));
    assert!(!check(&sequential).unwrap().parallel);
    let unsaid = without_key(&info, key);
    let err = check(&unsaid).unwrap_err().to_string();
    assert!(
        err.contains("`gptneox.use_parallel_residual` is missing"),
        "{err}"
    );
    let err = refused_without(&info, "blk.1.ffn_norm.weight");
    assert!(err.contains("`blk.1.ffn_norm.weight` is missing"), "{err}");
}

/// Command R's and R7B's keys and tensors, as llama.cpp's loaders read
/// them: a LayerNorm with a weight alone, read by both halves of a
/// parallel block, the logits multiplied by the required `logit_scale`,
/// the output always the embeddings (a file with its own is refused: it
/// would run without it); R7B's windows in three layers of four, required,
/// and only those layers rotating.
#[test]
fn command_r_and_r7b_are_read_as_llama_cpp_reads_them() {
    let r = crate::gguf::inspect(&model_file("tiny-commandr.gguf")).unwrap();
    let hp = check(&r).unwrap();
    assert!(hp.layer_norm && !hp.norm_bias && hp.parallel && !hp.rope_neox);
    assert_eq!((hp.logit_scale, hp.norm_eps), (0.25, 1e-5));
    assert!((0..hp.layers).all(|l| hp.ropes(l) && !hp.is_swa(l)));
    let err = refused_with_copy(&r, "token_embd.weight", "output.weight", None);
    assert!(err.contains("`output.weight` is not one"), "{err}");
    let err = refused_with_copy(&r, "blk.0.attn_norm.weight", "blk.0.attn_norm.bias", None);
    assert!(err.contains("`blk.0.attn_norm.bias` is not one"), "{err}");
    let err = refused_with_copy(&r, "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", None);
    assert!(err.contains("`blk.0.ffn_norm.weight` is not one"), "{err}");
    // Command R+'s per-head Q/K LayerNorms are not run: refused.
    let err = refused_with_copy(
        &r,
        "blk.0.attn_norm.weight",
        "blk.0.attn_q_norm.weight",
        None,
    );
    assert!(
        err.contains("`blk.0.attn_q_norm.weight` is not one"),
        "{err}"
    );
    let unscaled = without_key(&r, "command-r.logit_scale");
    let err = check(&unscaled).unwrap_err().to_string();
    assert!(err.contains("`command-r.logit_scale` is missing"), "{err}");

    let r7b = crate::gguf::inspect(&model_file("tiny-cohere2.gguf")).unwrap();
    let hp = check(&r7b).unwrap();
    assert_eq!(hp.swa, [true, true, true, false]);
    assert_eq!(hp.window, 8);
    let ropes: Vec<bool> = (0..hp.layers).map(|l| hp.ropes(l)).collect();
    assert_eq!(ropes, [true, true, true, false]);
    assert!(!hp.swa_angles(), "the global base and scale");
    let unwindowed = without_key(&r7b, "cohere2.attention.sliding_window");
    let err = check(&unwindowed).unwrap_err().to_string();
    assert!(
        err.contains("cohere2.attention.sliding_window` is missing"),
        "{err}"
    );
}

/// Falcon's keys and tensors, as llama.cpp's loader reads them: LayerNorms
/// with biases read in parallel, Q/K/V fused, a GELU feed-forward without a
/// gate or biases, NeoX pairs over whole heads (part of a head refused),
/// the output tied where absent; 40B's `attn_norm_2` optional.
#[test]
fn falcon_is_read_as_llama_cpp_reads_it() {
    use crate::GgufValue::Int;
    let falcon = crate::gguf::inspect(&model_file("tiny-falcon.gguf")).unwrap();
    let hp = check(&falcon).unwrap();
    assert!(hp.layer_norm && hp.norm_bias && hp.parallel && hp.fused_qkv);
    assert!(!hp.gated && !hp.ffn_biases && hp.rope_neox);
    assert_eq!((hp.act, hp.kv_heads), (FfnAct::Gelu, 1));
    assert!(falcon.tensor("output.weight").is_none(), "tied");
    let key = "falcon.rope.dimension_count";
    let mut partial = without_key(&falcon, key);
    partial.metadata.push((key.into(), Int(8)));
    let err = check(&partial).unwrap_err().to_string();
    assert!(err.contains("rotates whole heads"), "{err}");
    let err = refused_with_copy(
        &falcon,
        "blk.0.attn_output.weight",
        "blk.0.ffn_gate.weight",
        None,
    );
    assert!(err.contains("ffn_gate.weight` is not one"), "{err}");

    let forty = crate::gguf::inspect(&model_file("tiny-falcon40b.gguf")).unwrap();
    check(&forty).unwrap();
    assert!(forty.tensor("blk.1.attn_norm_2.bias").is_some());
    let err = refused_without(&forty, "blk.1.attn_norm_2.bias");
    assert!(err.contains("`blk.1.attn_norm_2.bias` is missing"), "{err}");
    // A bias without its weight would not be read: refused.
    let err = refused_with_copy(
        &falcon,
        "blk.0.attn_norm.bias",
        "blk.0.attn_norm_2.bias",
        None,
    );
    assert!(err.contains("`blk.0.attn_norm_2.bias` is not one"), "{err}");
}

/// Nemotron's keys and tensors, as llama.cpp's loader reads them:
/// LayerNorms with biases, a squared-ReLU feed-forward without a gate, NeoX
/// pairs over part of each head, the output required, and each of the
/// feed-forward's biases optional (the file has the up one alone).
#[test]
fn nemotron_is_read_as_llama_cpp_reads_it() {
    let info = crate::gguf::inspect(&model_file("tiny-nemotron.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert!(hp.layer_norm && hp.norm_bias && !hp.parallel && !hp.gated);
    assert!(hp.rope_neox && !hp.ffn_biases);
    assert_eq!(
        (hp.act, hp.rope_dims, hp.head_dim),
        (FfnAct::ReluSquared, 8, 16)
    );
    assert!(info.tensor("blk.0.ffn_down.bias").is_none());
    // The down bias alone is as good; a gate is another model's.
    let mut down = info.clone();
    for t in &mut down.tensors {
        if t.name == "blk.0.ffn_up.bias" {
            t.name = "blk.0.ffn_down.bias".into();
            t.dims = vec![64];
        }
    }
    check(&down).unwrap();
    let err = refused_with_copy(&info, "blk.0.ffn_up.weight", "blk.0.ffn_gate.weight", None);
    assert!(err.contains("ffn_gate.weight` is not one"), "{err}");
    let err = refused_without(&info, "output.weight");
    assert!(err.contains("`output.weight` is missing"), "{err}");
}

/// OLMo 1's keys and tensors, as llama.cpp's loader reads them: LayerNorms
/// without weight or bias (ones and zeros), adjacent rotary pairs, and the
/// Q/K/V bound optional. A file with a norm's weight is another model's.
#[test]
fn olmo1_is_read_as_llama_cpp_reads_it() {
    let bytes = model_file("tiny-olmo1.gguf");
    let info = crate::gguf::inspect(&bytes).unwrap();
    let hp = check(&info).unwrap();
    assert!(hp.layer_norm && !hp.norm_weights && !hp.norm_bias && hp.pre_norms);
    assert!(!hp.rope_neox && hp.gated && !hp.parallel);
    assert_eq!((hp.clamp_kqv, hp.norm_eps), (1.5, 1e-5));
    let w = Llama::read(&bytes).unwrap();
    let ones_then_zeros = |n: &[f32]| n[..64].iter().all(|&v| v == 1.0) && n[64..] == [0.0; 64];
    assert!(ones_then_zeros(&w.output_norm));
    assert!(w.layers.iter().all(|l| {
        [&l.attn_norm, &l.ffn_norm]
            .iter()
            .all(|n| n.as_deref().is_some_and(ones_then_zeros))
    }));
    // Without the bound, none.
    let unbound = without_key(&info, "olmo.attention.clamp_kqv");
    assert_eq!(check(&unbound).unwrap().clamp_kqv, 0.0);
    for norm in [
        "output_norm.weight",
        "blk.0.attn_norm.weight",
        "blk.1.ffn_norm.weight",
    ] {
        let err = refused_with_copy(&info, "blk.0.attn_q.weight", norm, Some(vec![64]));
        assert!(err.contains(&format!("`{norm}` is not one")), "{err}");
    }
}

/// Apertus's keys, as llama.cpp's loader reads them: a feed-forward
/// without a gate under xIELU, whose constants (`xielu.*`, keys of no
/// architecture) are a value per layer or one for all, taken through
/// softplus as ggml's op takes them, and required; per-head Q/K norms
/// required.
#[test]
fn apertus_is_read_as_llama_cpp_reads_it() {
    use crate::GgufValue::{Array, Float};
    let info = crate::gguf::inspect(&model_file("tiny-apertus.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert!(!hp.gated && hp.rope_neox && hp.xielu.len() == 2);
    let softplus = |x: f32| (1.0 + x.exp()).ln();
    let FfnAct::Xielu(x) = hp.act_of(1) else {
        panic!("{:?}", hp.act_of(1))
    };
    assert_eq!((x.alpha_p, x.beta, x.eps), (softplus(-0.4), 0.3, -1e-6));
    assert_eq!(x.alpha_n, 0.3 + softplus(0.9));
    assert!(x.of(2.0) > 0.0 && x.of(-1.0) != 0.0);
    let one = with_key(&info, "xielu.beta", Float(0.25));
    let hp = check(&one).unwrap();
    assert!(
        hp.xielu.iter().all(|x| x.beta == 0.25),
        "one for all layers"
    );
    for (info, want) in [
        (
            with_key(&info, "xielu.eps", Array(vec![Float(0.0)])),
            "`xielu.eps` has 1 values for 2 layers",
        ),
        (
            without_key(&info, "xielu.alpha_p"),
            "`xielu.alpha_p` is missing",
        ),
    ] {
        let err = check(&info).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    let err = refused_without(&info, "blk.0.attn_k_norm.weight");
    assert!(err.contains("is missing"), "{err}");
    let err = refused_with_copy(&info, "blk.0.ffn_up.weight", "blk.0.ffn_gate.weight", None);
    assert!(err.contains("`blk.0.ffn_gate.weight` is not one"), "{err}");
}

/// GLM-4.5's keys, as llama.cpp's loader reads them: its last
/// `nextn_predict_layers` blocks predict further tokens (read, not run),
/// its Q/K/V biases are required, its feed-forward's norm is named
/// `post_attention_norm`, its experts are picked by the sigmoid of their
/// scores (`expert_gating_func` 2, or absent) plus the required router
/// bias, renormalised as `expert_weights_norm` says and scaled by the
/// required `expert_weights_scale`, beside `expert_shared_count` shared
/// experts; experts picked in more than one group are refused.
#[test]
fn glm4moe_is_read_as_llama_cpp_reads_it() {
    let info = crate::gguf::inspect(&model_file("tiny-glm4moe.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert_eq!((hp.layers, hp.mtp_blocks, hp.dense_lead), (3, 1, 1));
    assert_eq!(
        (hp.experts, hp.experts_used, hp.ffn, hp.shared_ffn),
        (4, 2, 32, 32)
    );
    assert!(hp.experts_sigmoid && hp.expert_bias && hp.experts_renormalised);
    assert!(hp.rope_neox && hp.ffn_norm_post_attention && !hp.gpt_oss);
    assert_eq!((hp.experts_scale, hp.rope_dims), (2.5, 8));
    let default_gating = without_key(&info, "glm4moe.expert_gating_func");
    assert!(check(&default_gating).unwrap().experts_sigmoid);
    requires_each(
        &info,
        &[
            "blk.1.attn_q.bias",
            "blk.2.post_attention_norm.weight",
            "blk.2.exp_probs_b.bias",
        ],
    );
    // (A block past the prediction one is another model's.)
    let err = refused_with_copy(
        &info,
        "blk.3.nextn.enorm.weight",
        "blk.4.nextn.enorm.weight",
        None,
    );
    assert!(
        err.contains("`blk.4.nextn.enorm.weight` is not one"),
        "{err}"
    );
    let mut groups = info.clone();
    (groups.metadata).push((
        "glm4moe.expert_group_count".into(),
        crate::GgufValue::Int(2),
    ));
    let err = check(&groups).unwrap_err().to_string();
    assert!(err.contains("`glm4moe.expert_group_count` is 2"), "{err}");
    let unscaled = without_key(&info, "glm4moe.expert_weights_scale");
    let err = check(&unscaled).unwrap_err().to_string();
    assert!(
        err.contains("`glm4moe.expert_weights_scale` is missing"),
        "{err}"
    );
}

/// Hunyuan-Dense's keys: Qwen3's per-head Q/K norms, required as llama.cpp
/// requires them, run after the rotation (NeoX pairs).
#[test]
fn hunyuan_dense_is_read_as_llama_cpp_reads_it() {
    let info = crate::gguf::inspect(&model_file("tiny-hunyuan.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert!(hp.qk_norms_after_rope && hp.rope_neox && !hp.qk_norms_whole);
    for tensor in ["blk.0.attn_q_norm.weight", "blk.1.attn_k_norm.weight"] {
        let err = refused_without(&info, tensor);
        assert!(err.contains(&format!("`{tensor}` is missing")), "{err}");
    }
}
