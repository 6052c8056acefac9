//! How the mixtures of experts' keys and tensors are read, as llama.cpp's
//! loaders read them: Qwen2-MoE's, ERNIE 4.5 MoE's, OLMoE's, DeepSeek-MoE's
//! and gpt-oss's routing, shared experts and biases, and what each refuses;
//! and gpt-oss's pass on the GPU against the CPU's.

use super::families::{refused_with_copy, refused_without, requires_each, with_key, without_key};
use super::*;
use crate::gpu::FfnAct;

/// Qwen2-MoE's keys and tensors, as llama.cpp's `qwen2moe` loader reads
/// them: experts weighted as the softmax gave them, a shared expert of
/// `expert_shared_feed_forward_length` (else the dense width) with its
/// gate, both required.
#[test]
fn qwen2moe_shared_expert_is_read_as_llama_cpp_reads_it() {
    let file = crate::gguf::inspect(&model_file("tiny-qwen2moe.gguf")).unwrap();
    let hp = check(&file).unwrap();
    assert_eq!((hp.experts, hp.experts_used, hp.ffn), (4, 2, 32));
    assert_eq!((hp.shared_ffn, hp.shared_gate), (80, true));
    assert!(!hp.experts_renormalised && hp.rope_neox);
    // Without its own width, the shared expert is as wide as the dense
    // feed-forward (96 here: this file's tensors are then the wrong shape).
    let no_width = without_key(&file, "qwen2moe.expert_shared_feed_forward_length");
    let err = check(&no_width).unwrap_err().to_string();
    assert!(err.contains("_shexp.weight` has shape"), "{err}");
    assert!(err.contains("96"), "{err}");
    let mut no_gate = file.clone();
    no_gate
        .tensors
        .retain(|t| !t.name.contains("gate_inp_shexp"));
    let err = check(&no_gate).unwrap_err().to_string();
    assert!(
        err.contains("ffn_gate_inp_shexp.weight` is missing"),
        "{err}"
    );
    // The gate as the converter writes HF's `(1, width)` weight, `[e, 1]`:
    // the same shape, as llama.cpp compares them.
    let mut wide = file.clone();
    for t in (wide.tensors.iter_mut()).filter(|t| t.name.contains("gate_inp_shexp")) {
        t.dims.push(1);
    }
    assert!(check(&wide).is_ok());
    assert!(super::weights::same_shape(&[64, 1], &[64]));
    assert!(super::weights::same_shape(&[64], &[64, 1]));
    assert!(!super::weights::same_shape(&[64, 2], &[64]));
    // Its output head is required (llama.cpp ties none for it).
    let mut untied = file.clone();
    untied.tensors.retain(|t| t.name != "output.weight");
    let err = check(&untied).unwrap_err().to_string();
    assert!(err.contains("`output.weight` is missing"), "{err}");
    // A dense width of 0 is refused naming it, not the shared tensors.
    let mut zero = no_width.clone();
    for (k, v) in &mut zero.metadata {
        if k == "qwen2moe.feed_forward_length" {
            *v = crate::GgufValue::Int(0);
        }
    }
    let err = check(&zero).unwrap_err().to_string();
    assert!(err.contains("`qwen2moe.feed_forward_length` is 0"), "{err}");
    // The others renormalise.
    let moe = crate::gguf::inspect(&model_file("tiny-granitemoe.gguf")).unwrap();
    assert!(check(&moe).unwrap().experts_renormalised);
}

/// ERNIE 4.5 MoE's keys, as llama.cpp's `ernie4_5-moe` loader and graph
/// read them: `leading_dense_block_count` dense layers of
/// `feed_forward_length`, then mixtures of `expert_feed_forward_length`-wide
/// experts (both keys required; `interleave_moe_layer_step` too, and 1,
/// the one llama.cpp runs), its router's bias optional. An output bias,
/// which llama.cpp loads but does not add, is refused.
#[test]
fn ernie_moe_layers_are_read_as_llama_cpp_reads_them() {
    use crate::GgufValue::Int;
    let file = crate::gguf::inspect(&model_file("tiny-erniemoe.gguf")).unwrap();
    let hp = check(&file).unwrap();
    assert_eq!(
        (hp.experts, hp.ffn, hp.dense_ffn, hp.shared_ffn),
        (4, 32, 96, 64)
    );
    assert_eq!(
        (0..3).map(|l| hp.is_moe(l)).collect::<Vec<_>>(),
        [false, true, true]
    );
    assert!(hp.experts_renormalised && hp.expert_bias && !hp.rope_neox);
    let with = |key: &str, value: Option<i64>| {
        let mut info = file.clone();
        let key = format!("ernie4_5-moe.{key}");
        info.metadata.retain(|(k, _)| *k != key);
        info.metadata.extend(value.map(|v| (key, Int(v))));
        check(&info).map(|_| ()).unwrap_err().to_string()
    };
    let err = with("interleave_moe_layer_step", None);
    assert!(
        err.contains("interleave_moe_layer_step` is missing"),
        "{err}"
    );
    let err = with("interleave_moe_layer_step", Some(2));
    assert!(err.contains("interleave_moe_layer_step` is 2"), "{err}");
    let err = with("expert_feed_forward_length", None);
    assert!(
        err.contains("expert_feed_forward_length` is missing"),
        "{err}"
    );
    // Every layer a mixture: the first's router is missing.
    let err = with("leading_dense_block_count", Some(0));
    assert!(
        err.contains("`blk.0.ffn_gate_inp.weight` is missing"),
        "{err}"
    );
    let mut unbiased = file.clone();
    unbiased.tensors.retain(|t| !t.name.contains("exp_probs_b"));
    assert!(check(&unbiased).is_ok());
    let mut output_bias = file.clone();
    let mut bias = output_bias
        .tensor("blk.0.attn_output.weight")
        .unwrap()
        .clone();
    (bias.name, bias.dims) = ("blk.0.attn_output.bias".into(), vec![64]);
    output_bias.tensors.push(bias);
    let err = check(&output_bias).unwrap_err().to_string();
    assert!(err.contains("`blk.0.attn_output.bias` is not one"), "{err}");
}

/// OLMoE's and DeepSeek-MoE's keys and tensors, as llama.cpp's loaders
/// read them: experts weighted as the softmax gave them, OLMoE's
/// whole-row Q/K norms (required) and NeoX pairs, DeepSeek's dense first
/// layers and its shared experts run as one, `expert_shared_count` times
/// as wide as a routed one; both require their output head, and DeepSeek
/// a scale of the experts' weights of 1.
#[test]
fn olmoe_and_deepseek_mixtures_are_read_as_llama_cpp_reads_them() {
    use crate::GgufValue::{Float, Int};
    let olmoe = crate::gguf::inspect(&model_file("tiny-olmoe.gguf")).unwrap();
    let hp = check(&olmoe).unwrap();
    assert_eq!((hp.experts, hp.experts_used, hp.ffn), (4, 2, 96));
    assert!(!hp.experts_renormalised && hp.qk_norms_whole && hp.rope_neox);
    assert_eq!((hp.dense_lead, hp.shared_ffn), (0, 0));
    let err = refused_without(&olmoe, "blk.1.attn_q_norm.weight");
    assert!(err.contains("attn_q_norm.weight` is missing"), "{err}");
    let err = refused_without(&olmoe, "output.weight");
    assert!(err.contains("`output.weight` is missing"), "{err}");

    let deepseek = crate::gguf::inspect(&model_file("tiny-deepseek.gguf")).unwrap();
    let hp = check(&deepseek).unwrap();
    assert_eq!((hp.experts, hp.experts_used, hp.ffn), (4, 2, 32));
    assert_eq!((hp.dense_lead, hp.dense_ffn, hp.shared_ffn), (1, 96, 64));
    assert!(!hp.experts_renormalised && !hp.rope_neox);
    assert!(!hp.is_moe(0) && hp.is_moe(1) && hp.is_moe(2));
    let err = refused_without(&deepseek, "blk.2.ffn_up_shexp.weight");
    assert!(err.contains("ffn_up_shexp.weight` is missing"), "{err}");
    let err = refused_without(&deepseek, "output.weight");
    assert!(err.contains("`output.weight` is missing"), "{err}");
    let scaled = with_key(&deepseek, "deepseek.expert_weights_scale", Float(2.5));
    let err = check(&scaled).unwrap_err().to_string();
    assert!(err.contains("expert_weights_scale` is 2.5"), "{err}");
    // (0 is absent, as llama.cpp reads it.)
    check(&with_key(
        &deepseek,
        "deepseek.expert_weights_scale",
        Float(0.0),
    ))
    .unwrap();
    let unshared = without_key(&deepseek, "deepseek.expert_shared_count");
    let err = check(&unshared).unwrap_err().to_string();
    assert!(err.contains("deepseek.expert_shared_count"), "{err}");
    // Two dense layers: the second's mixture tensors are another model's.
    let err = check(&with_key(
        &deepseek,
        "deepseek.leading_dense_block_count",
        Int(2),
    ));
    let err = err.unwrap_err().to_string();
    assert!(err.contains("blk.1.ffn_gate.weight` is missing"), "{err}");
}

/// gpt-oss's keys and tensors, as llama.cpp's loader reads them: a sink
/// per head, every bias and the feed-forward's norm (`post_attention_norm`)
/// required, every other layer, the first too, over the required window,
/// NeoX pairs, experts renormalised (a softmax over the picked logits) under
/// the clamped SwiGLU; a plain `ffn_norm` is another model's.
#[test]
fn gpt_oss_is_read_as_llama_cpp_reads_it() {
    let info = crate::gguf::inspect(&model_file("tiny-gptoss.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert!(hp.gpt_oss && hp.rope_neox && hp.experts_renormalised && hp.yarn.is_some());
    assert_eq!((hp.experts, hp.experts_used, hp.ffn), (4, 2, 32));
    assert_eq!((hp.act, hp.window), (FfnAct::SwigluOai, 8));
    assert_eq!(hp.swa, [true, false, true, false]);
    requires_each(
        &info,
        &[
            "blk.1.attn_sinks.weight",
            "blk.1.attn_q.bias",
            "blk.1.attn_output.bias",
            "blk.1.ffn_gate_inp.bias",
            "blk.1.ffn_up_exps.bias",
            "blk.1.post_attention_norm.weight",
            "output.weight",
        ],
    );
    let err = refused_with_copy(
        &info,
        "blk.0.attn_norm.weight",
        "blk.0.ffn_norm.weight",
        None,
    );
    assert!(err.contains("`blk.0.ffn_norm.weight` is not one"), "{err}");
    let unwindowed = without_key(&info, "gpt-oss.attention.sliding_window");
    let err = check(&unwindowed).unwrap_err().to_string();
    assert!(
        err.contains("gpt-oss.attention.sliding_window` is missing"),
        "{err}"
    );
}

/// On a GPU, gpt-oss's pass (each head's sink in the attention kernel, the
/// router's bias, the experts' biases and clamped SwiGLU) gives the CPU's
/// logits, prompt and greedy steps. The experts are read as f32 on both
/// paths: from their Q8_0 blocks (MXFP4's, transcoded) the CPU rounds the
/// products' inputs to Q8_0 as llama.cpp does and the GPU does not, which
/// the tiny model's steep gates make up to 4e-2 of its best logit. Each
/// expert's group of rows starts after padding (as where a binding's
/// alignment pads them), which its biases must skip too.
#[test]
fn on_the_gpu_gpt_oss_gives_the_cpus_logits() {
    let _device = super::on_the_device();
    device::PAD_GROUPS.store(3, std::sync::atomic::Ordering::Relaxed);
    let bytes = model_file("tiny-gptoss.gguf");
    let read = || {
        let mut w = Llama::read(&bytes).unwrap();
        for e in w.layers.iter_mut().flat_map(|l| &mut l.experts) {
            e.gate = e.gate.as_ref().map(QMatrix::to_f32);
            (e.up, e.down) = (e.up.to_f32(), e.down.to_f32());
        }
        w
    };
    let cpu = Llama::place(read(), None);
    let gpu = Llama::place(read(), Some(Ok(crate::gpu::tests::gpu())));
    assert!(
        matches!(gpu.placement(), Placement::Gpu(_)),
        "{:?}",
        gpu.placement()
    );
    let mut sessions = [&cpu, &gpu].map(|m| session::Decoder::new(m.weights.clone()));
    let mut input = vec![
        504, 3575, 282, 4649, 314, 7042, 28, 284, 281, 216, 34, 32, 34,
    ];
    for step in 0..6 {
        let [a, b] = sessions.each_mut().map(|s| s.forward(&input));
        let off = super::worst(&a, &b);
        assert!(
            off < 1e-4,
            "step {step}: the GPU's logits {off} off the CPU's"
        );
        input = vec![super::argmax(&a) as u32];
    }
    // (Every pass ran on the device: a failed one moves to the CPU.)
    assert!(sessions[1].on_device().is_some(), "still on the GPU");
    device::PAD_GROUPS.store(1, std::sync::atomic::Ordering::Relaxed);
}
