//! The hybrids: LFM2's short convolutions and Granite 4.0-H's and
//! Nemotron-H's Mamba-2 layers beside attention ones. Their keys and tensors read and refused
//! as llama.cpp's loader reads them, and each session's convolution (and
//! scan) state carried from call to call, through joined passes and on the
//! GPU, as its KV cache is.

use super::families::{refused_with_copy, refused_without, requires_each, with_key, without_key};
use super::*;
use crate::GgufValue::{Array, Int, Str};
use crate::gpu::FfnAct;

fn lfm2() -> Vec<u8> {
    model_file("tiny-lfm2.gguf")
}

/// The layers whose KV head count is 0 convolve, with the file's taps;
/// the others attend, their Q/K norms required. A convolution layer's
/// `shortconv` tensors are required and an attention tensor there is
/// another model's; the final norm is `token_embd_norm`.
#[test]
fn lfm2_is_read_as_llama_cpp_reads_it() {
    let bytes = lfm2();
    let info = crate::gguf::inspect(&bytes).unwrap();
    let hp = check(&info).unwrap();
    let convolves = [true, false, true, true, false];
    let c = hp.short_conv.clone().expect("LFM2's convolutions");
    assert_eq!((c.taps, c.layers.as_slice()), (3, &convolves[..]));
    assert!((0..5).map(|l| hp.convolves(l)).eq(convolves));
    assert_eq!((hp.heads, hp.kv_heads, hp.head_dim), (4, 2, 16));
    assert!(hp.rope_neox && hp.gated && !hp.layer_norm && !hp.qk_norms_whole);
    assert_eq!(hp.output_norm_name(), "token_embd_norm");
    let w = Llama::read(&bytes).unwrap();
    assert!(w.layers.iter().map(|l| l.conv.is_some()).eq(convolves));
    assert_eq!(w.layers[0].conv.as_ref().map(Vec::len), Some(3 * 64));
    requires_each(
        &info,
        &[
            "blk.0.shortconv.conv.weight",
            "blk.2.shortconv.in_proj.weight",
            "blk.3.shortconv.out_proj.weight",
            "blk.1.attn_q_norm.weight",
            "blk.4.attn_k_norm.weight",
            "token_embd_norm.weight",
        ],
    );
    for (from, to) in [
        ("blk.1.attn_q.weight", "blk.0.attn_q.weight"),
        ("blk.0.shortconv.conv.weight", "blk.1.shortconv.conv.weight"),
        ("token_embd_norm.weight", "output_norm.weight"),
    ] {
        let err = refused_with_copy(&info, from, to, None);
        assert!(err.contains(&format!("`{to}` is not one")), "{err}");
    }
    let mut four_taps = info.clone();
    (four_taps.tensors.iter_mut())
        .filter(|t| t.name == "blk.0.shortconv.conv.weight")
        .for_each(|t| t.dims = vec![4, 64]);
    let err = check(&four_taps).unwrap_err().to_string();
    assert!(err.contains("has shape [4, 64], expected [3, 64]"), "{err}");
}

/// Metadata that does not describe an LFM2 weft-nn runs is refused,
/// naming the key: attention layers with different KV head counts, no
/// attention layer, a count per layer for other than every layer, a
/// convolution of fewer than 2 taps or none given, sliding windows
/// (which llama.cpp gives every attention layer); and a list of counts
/// in another architecture's file (whose layers weft-nn runs alike).
#[test]
fn lfm2_metadata_that_does_not_fit_is_refused() {
    let info = crate::gguf::inspect(&lfm2()).unwrap();
    let kv = "lfm2.attention.head_count_kv";
    let counts = |c: &[i64]| Array(c.iter().map(|&c| Int(c)).collect());
    let taps = "lfm2.shortconv.l_cache";
    let without_taps = without_key(&info, taps);
    let qwen3 = crate::gguf::inspect(&model_file("tiny-qwen3.gguf")).unwrap();
    let mut with_window = info.clone();
    (with_window.metadata).push(("lfm2.attention.sliding_window".into(), Int(8)));
    for (info, want) in [
        (
            with_key(&info, kv, counts(&[0, 2, 0, 0, 4])),
            "gives attention layers 2 and 4 KV heads",
        ),
        (with_key(&info, kv, counts(&[0; 5])), "is 0 for every layer"),
        (
            with_key(&info, kv, counts(&[0, 2, 0, 2])),
            "has 4 counts, not one per layer",
        ),
        (
            with_key(&info, kv, counts(&[0, 2, 0, -1, 2])),
            "holds other than",
        ),
        (
            with_key(&info, taps, Int(1)),
            "is 1: a convolution needs 2 taps",
        ),
        (without_taps, "`lfm2.shortconv.l_cache` is missing"),
        (with_window, "`lfm2.attention.sliding_window` is 8"),
        (
            with_key(&qwen3, "qwen3.attention.head_count_kv", counts(&[2, 2])),
            "is a list (a count per layer)",
        ),
    ] {
        let err = check(&info).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}

/// Each session's convolution (and scan) state is its own and carried
/// from call to call, on the CPU and on the GPU: a prompt fed in pieces
/// gives the logits it gives in one call, and three sessions joined in
/// one pass (their prompts, then a token each) get what each gets alone.
#[test]
fn hybrid_sessions_carry_their_own_convolution_and_scan_state() {
    let _device = on_the_device();
    for file in [
        "tiny-lfm2.gguf",
        "tiny-granitehybrid.gguf",
        "tiny-nemotronh.gguf",
        "tiny-mamba2.gguf",
        "tiny-mamba.gguf",
    ] {
        sessions_carry_their_own_state(&model_file(file));
    }
}

pub(super) fn sessions_carry_their_own_state(bytes: &[u8]) {
    let bytes = bytes.to_vec();
    let cpu = Llama::load(&bytes).unwrap();
    let gpu = Llama::load_for(&bytes, Some(Ok(crate::gpu::tests::gpu()))).unwrap();
    let named = |ids: &[i64]| {
        vec![(
            "input_ids".to_string(),
            Tensor::from_i64(vec![ids.len()], ids),
        )]
    };
    let logits = |o: Outputs| o.unwrap()[0].1.to_f32().unwrap();
    let prompt = [1, 4093, 198, 1780, 314, 260];
    let steps: [[&[i64]; 3]; 2] = [[&prompt, &[1, 520], &prompt[..4]], [&[504], &[30], &[2]]];
    for (model, place) in [(&cpu, "CPU"), (&gpu, "GPU")] {
        let want = logits(model.session().compute(&named(&prompt)));
        let mut pieces = model.session();
        let mut got = Vec::new();
        for part in [&prompt[..2], &prompt[2..3], &prompt[3..]] {
            got = logits(pieces.compute(&named(part)));
        }
        assert!(
            worst(&got, &want) <= 1e-3,
            "{place}: {}",
            worst(&got, &want)
        );
        let mut alone: Vec<Box<dyn Session>> = (0..3).map(|_| model.session()).collect();
        let mut together: Vec<Box<dyn Session>> = (0..3).map(|_| model.session()).collect();
        for inputs in &steps {
            let inputs: Vec<_> = inputs.iter().map(|ids| named(ids)).collect();
            let got = model.compute_joined(&mut joined(&mut together, &inputs));
            for ((g, s), i) in got.into_iter().zip(&mut alone).zip(&inputs) {
                let (g, w) = (logits(g), logits(s.compute(i)));
                assert!(worst(&g, &w) <= 1e-3, "{place}: {}", worst(&g, &w));
                assert_eq!(argmax(&g), argmax(&w), "{place}");
            }
        }
    }
    assert!(gpu.weights.device.is_some(), "the GPU model ran there");
}

/// LFM2-MoE's keys, as llama.cpp's loader reads them: LFM2's layers, a
/// dense first layer `feed_forward_length` wide, then mixtures of
/// `expert_feed_forward_length`, picked by the sigmoid of the router's
/// scores plus its (required) bias and weighted renormalised;
/// `expert_gating_func` required, 1 (softmax) or 2 (sigmoid).
#[test]
fn lfm2moe_is_read_as_llama_cpp_reads_it() {
    let info = crate::gguf::inspect(&model_file("tiny-lfm2moe.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert!(
        (0..4)
            .map(|l| hp.convolves(l))
            .eq([true, false, true, false])
    );
    assert_eq!((hp.experts, hp.experts_used, hp.ffn), (4, 2, 48));
    assert_eq!((hp.dense_lead, hp.dense_ffn), (1, 96));
    assert!(hp.experts_sigmoid && hp.expert_bias && hp.experts_renormalised);
    assert!(!hp.is_moe(0) && hp.is_moe(1));
    let err = refused_without(&info, "blk.2.exp_probs_b.bias");
    assert!(err.contains("`blk.2.exp_probs_b.bias` is missing"), "{err}");
    let gating = "lfm2moe.expert_gating_func";
    assert!(
        !check(&with_key(&info, gating, Int(1)))
            .unwrap()
            .experts_sigmoid
    );
    let err = check(&with_key(&info, gating, Int(3)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`lfm2moe.expert_gating_func` is 3"), "{err}");
    let without = without_key(&info, gating);
    let err = check(&without).unwrap_err().to_string();
    assert!(
        err.contains("`lfm2moe.expert_gating_func` is missing"),
        "{err}"
    );
    // Without a dense count, none (as llama.cpp reads it): the first
    // layer is then a mixture's, which this file's is not.
    let all_mixtures = without_key(&info, "lfm2moe.leading_dense_block_count");
    let err = check(&all_mixtures).unwrap_err().to_string();
    assert!(
        err.contains("`blk.0.ffn_gate_inp.weight` is missing"),
        "{err}"
    );
}

/// On the GPU, an LFM2 or Granite 4.0-H prompt run in passes of 2 tokens
/// while its cache grows from 4 positions (the convolution and scan
/// layers' caches a float each, their state carried from pass to pass)
/// gives the logits of the CPU path; after a failed pass the session
/// carries on on the CPU, its state rebuilt from the tokens seen, as the
/// CPU path's.
#[test]
fn on_the_gpu_hybrid_passes_a_growing_cache_and_a_failure_change_nothing() {
    let _device = on_the_device();
    for file in [
        "tiny-lfm2.gguf",
        "tiny-granitehybrid.gguf",
        "tiny-nemotronh.gguf",
        "tiny-mamba2.gguf",
        "tiny-falconmamba.gguf",
    ] {
        passes_and_a_failure_change_nothing(&model_file(file));
    }
}

pub(super) fn passes_and_a_failure_change_nothing(bytes: &[u8]) {
    let gpu = Llama::load_for(bytes, Some(Ok(crate::gpu::tests::gpu()))).unwrap();
    let cpu = Llama::load(bytes).unwrap();
    let mut on = session::Decoder::new(gpu.weights.clone());
    on.on_device().expect("loaded for the GPU").shrink(2, 4);
    let mut off = session::Decoder::new(cpu.weights.clone());
    let steps: [&[u32]; 4] = [
        &[1, 4093, 198, 1780, 314, 260, 3575],
        &[282],
        &[4649],
        &[47],
    ];
    for (step, tokens) in steps.into_iter().enumerate() {
        if step == 2 {
            on.on_device().expect("still on the GPU").fail_next = true;
        }
        let (a, c) = (on.forward(tokens), off.forward(tokens));
        assert!(worst(&a, &c) <= 1e-3, "step {step}: {}", worst(&a, &c));
        assert_eq!(argmax(&a), argmax(&c), "step {step}");
        assert_eq!(on.on_gpu(), step < 2, "step {step}");
    }
}

/// Granite 4.0-H's keys, as llama.cpp's loader reads them: the layers
/// whose KV head count is 0 scan, with the file's `ssm.*` shape; the
/// others attend, rotating only where `rope.scaling.finetuned` is not
/// false; Granite's multipliers. A Mamba-2 layer's tensors are required,
/// in their shapes, and an attention tensor there is another model's.
#[test]
fn granitehybrid_is_read_as_llama_cpp_reads_it() {
    let info = crate::gguf::inspect(&model_file("tiny-granitehybrid.gguf")).unwrap();
    let hp = check(&info).unwrap();
    let scans = [true, true, false, true];
    let m = hp.ssm.clone().expect("Mamba-2 layers");
    let shape = (m.taps, m.inner, m.state, m.heads, m.groups);
    assert_eq!(shape, (4, 128, 16, 8, 2));
    assert_eq!((m.conv_dim(), m.head_dim(), m.in_dim()), (192, 16, 328));
    assert!((0..4).map(|l| hp.scans(l)).eq(scans));
    assert!((0..4).map(|l| hp.attends(l)).eq(scans.map(|s| !s)));
    assert!(!hp.ropes(2) && hp.short_conv.is_none());
    assert_eq!((hp.embd_scale, hp.residual_scale), (12.0, 0.22));
    assert_eq!((hp.logit_scale, hp.attn_scale), (1.0 / 8.0, 0.0078125));
    let w = Llama::read(&model_file("tiny-granitehybrid.gguf")).unwrap();
    assert!(w.layers.iter().map(|l| l.ssm.is_some()).eq(scans));
    requires_each(
        &info,
        &[
            "blk.0.ssm_in.weight",
            "blk.0.ssm_conv1d.weight",
            "blk.1.ssm_conv1d.bias",
            "blk.1.ssm_dt.bias",
            "blk.3.ssm_a",
            "blk.3.ssm_d",
            "blk.3.ssm_norm.weight",
            "blk.0.ssm_out.weight",
            "blk.2.attn_q.weight",
        ],
    );
    for (from, to) in [
        ("blk.2.attn_q.weight", "blk.0.attn_q.weight"),
        ("blk.0.ssm_a", "blk.2.ssm_a"),
    ] {
        let err = refused_with_copy(&info, from, to, None);
        assert!(err.contains(&format!("`{to}` is not one")), "{err}");
    }
    let mut wrong_norm = info.clone();
    (wrong_norm.tensors.iter_mut())
        .filter(|t| t.name == "blk.0.ssm_norm.weight")
        .for_each(|t| t.dims = vec![128, 1]);
    let err = check(&wrong_norm).unwrap_err().to_string();
    assert!(
        err.contains("has shape [128, 1], expected [64, 2]"),
        "{err}"
    );
    // The MoE file rotates (no switch) and mixes.
    let moe = crate::gguf::inspect(&model_file("tiny-granitehybridmoe.gguf")).unwrap();
    let hp = check(&moe).unwrap();
    assert!(hp.ropes(1) && hp.is_moe(0) && hp.scans(0) && !hp.scans(1));
    assert_eq!((hp.experts, hp.experts_used, hp.shared_ffn), (4, 2, 48));
}

/// Granite 4.0-H metadata weft-nn cannot run is refused, naming the key:
/// each `ssm.*` key missing or 0, channels that do not divide into the
/// heads, heads that do not divide into the groups, a convolution of one
/// tap, and no attention layer.
#[test]
fn granitehybrid_metadata_that_does_not_fit_is_refused() {
    let info = crate::gguf::inspect(&model_file("tiny-granitehybrid.gguf")).unwrap();
    let key = |k: &str| format!("granitehybrid.ssm.{k}");
    for k in [
        "conv_kernel",
        "inner_size",
        "state_size",
        "time_step_rank",
        "group_count",
    ] {
        let mut without = info.clone();
        without.metadata.retain(|(name, _)| *name != key(k));
        for info in [without, with_key(&info, &key(k), Int(0))] {
            let err = check(&info).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{}` is missing, 0", key(k))),
                "{err}"
            );
        }
    }
    let counts = |c: &[i64]| Array(c.iter().map(|&c| Int(c)).collect());
    let kv = "granitehybrid.attention.head_count_kv";
    for (info, want) in [
        (
            with_key(&info, &key("time_step_rank"), Int(7)),
            "must divide",
        ),
        (with_key(&info, &key("group_count"), Int(3)), "must divide"),
        (with_key(&info, &key("conv_kernel"), Int(1)), "needs 2 taps"),
        (with_key(&info, kv, counts(&[0; 4])), "is 0 for every layer"),
    ] {
        let err = check(&info).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}

/// Nemotron-H's blocks, as llama.cpp's loader reads them: a block whose
/// `feed_forward_length` entry is not 0 is a feed-forward, joined to the
/// mixer before it as one layer (its `attn_norm` the layer's feed-forward
/// norm); of the others, those whose KV head count is 0 scan and the rest
/// attend, without a rotation. A mixer no feed-forward follows is a layer
/// without one.
#[test]
fn nemotron_h_blocks_are_read_as_llama_cpp_reads_them() {
    let info = crate::gguf::inspect(&model_file("tiny-nemotronh.gguf")).unwrap();
    let hp = check(&info).unwrap();
    // M-*M-MM-
    let blocks = [
        (0, Some(1)),
        (2, None),
        (3, Some(4)),
        (5, None),
        (6, Some(7)),
    ];
    assert_eq!(hp.layers, 5);
    assert!((0..5).map(|l| hp.blocks_of(l)).eq(blocks));
    assert!(
        (0..5)
            .map(|l| hp.scans(l))
            .eq([true, false, true, true, true])
    );
    assert!(hp.attends(1) && !hp.ropes(1) && hp.ffn_blocks());
    assert_eq!(
        (hp.dense_ffn, hp.act, hp.gated),
        (96, FfnAct::ReluSquared, false)
    );
    let w = Llama::read(&model_file("tiny-nemotronh.gguf")).unwrap();
    let feeds = w.layers.iter().map(|l| l.experts.len());
    assert!(feeds.eq([1, 0, 1, 0, 1]));
    assert!(
        w.layers
            .iter()
            .map(|l| l.ffn_norm.is_some())
            .eq([true, false, true, false, true])
    );
    requires_each(
        &info,
        &[
            "blk.1.attn_norm.weight",
            "blk.4.ffn_up.weight",
            "blk.3.ssm_in.weight",
        ],
    );
    // A feed-forward block's tensors in a mixer's, and the other way round.
    for (from, to) in [
        ("blk.1.ffn_up.weight", "blk.0.ffn_up.weight"),
        ("blk.0.ssm_a", "blk.1.ssm_a"),
        ("blk.1.ffn_up.weight", "blk.2.ffn_up.weight"),
    ] {
        let err = refused_with_copy(&info, from, to, None);
        assert!(err.contains(&format!("`{to}` is not one")), "{err}");
    }
    // (Optional: zeros.)
    let mut without_bias = info.clone();
    without_bias
        .tensors
        .retain(|t| t.name != "blk.0.ssm_conv1d.bias");
    assert!(check(&without_bias).is_ok());
}

/// Nemotron-H blocks weft-nn cannot join into layers are refused, naming
/// the key: a feed-forward first or after another, feed-forwards of
/// different widths, widths that are not a list of one per block, no
/// feed-forward at all.
#[test]
fn nemotron_h_blocks_that_do_not_fit_are_refused() {
    let info = crate::gguf::inspect(&model_file("tiny-nemotronh.gguf")).unwrap();
    let key = "nemotron_h.feed_forward_length";
    let widths = |w: &[i64]| Array(w.iter().map(|&w| Int(w)).collect());
    for (info, want) in [
        (
            with_key(&info, key, widths(&[96, 0, 0, 0, 96, 0, 0, 96])),
            "block 0 is a feed-forward",
        ),
        (
            with_key(&info, key, widths(&[0, 96, 96, 0, 96, 0, 0, 96])),
            "block 2 is a feed-forward",
        ),
        (
            with_key(&info, key, widths(&[0, 96, 0, 0, 64, 0, 0, 96])),
            "gives feed-forward blocks 96 and 64",
        ),
        (
            with_key(&info, key, widths(&[0, 96, 0])),
            "has 3 widths, not one per block",
        ),
        (with_key(&info, key, Int(96)), "is not a list"),
        (
            with_key(&info, key, widths(&[0; 8])),
            "is 0 for every block",
        ),
    ] {
        let err = check(&info).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}

/// Nemotron 3 Nano's keys, as llama.cpp's loader reads them: Nemotron-H's
/// blocks, its feed-forward blocks mixtures of experts without a gate
/// (`expert_feed_forward_length` wide), picked by the sigmoid of the
/// router's scores plus its required bias, renormalised as
/// `expert_weights_norm` says and scaled by the required
/// `expert_weights_scale`, beside a shared expert without a gate.
#[test]
fn nemotron_h_moe_is_read_as_llama_cpp_reads_it() {
    let info = crate::gguf::inspect(&model_file("tiny-nemotronhmoe.gguf")).unwrap();
    let hp = check(&info).unwrap();
    // M-*-MM-
    let blocks = [(0, Some(1)), (2, Some(3)), (4, None), (5, Some(6))];
    assert!((0..4).map(|l| hp.blocks_of(l)).eq(blocks));
    assert_eq!(
        (hp.experts, hp.experts_used, hp.ffn, hp.shared_ffn),
        (4, 2, 32, 48)
    );
    assert!(hp.experts_sigmoid && hp.expert_bias && hp.experts_renormalised);
    assert_eq!((hp.experts_scale, hp.gated), (2.5, false));
    let w = Llama::read(&model_file("tiny-nemotronhmoe.gguf")).unwrap();
    assert!(w.layers[0].experts.iter().all(|e| e.gate.is_none()));
    assert!(w.layers[2].experts.is_empty() && w.layers[2].router.is_none());
    let norm = "nemotron_h_moe.expert_weights_norm";
    let unnormed = without_key(&info, norm);
    assert!(!check(&unnormed).unwrap().experts_renormalised);
    for (key, want) in [
        (
            "nemotron_h_moe.expert_weights_scale",
            "is missing or not above 0",
        ),
        (
            "nemotron_h_moe.expert_shared_feed_forward_length",
            "is missing or 0",
        ),
    ] {
        let without = without_key(&info, key);
        let err = check(&without).unwrap_err().to_string();
        assert!(err.contains(&format!("`{key}` {want}")), "{err}");
    }
    let err = refused_without(&info, "blk.3.exp_probs_b.bias");
    assert!(err.contains("`blk.3.exp_probs_b.bias` is missing"), "{err}");
    // (A gate is another model's.)
    let err = refused_with_copy(
        &info,
        "blk.1.ffn_up_exps.weight",
        "blk.1.ffn_gate_exps.weight",
        None,
    );
    assert!(
        err.contains("`blk.1.ffn_gate_exps.weight` is not one"),
        "{err}"
    );
}

/// Mamba-2 shapes past any release's are refused before anything is
/// allocated or overflows: a state of 2^32 floats a layer, and sizes
/// whose products overflow.
#[test]
fn mamba2_shapes_past_the_bound_are_refused() {
    let info = crate::gguf::inspect(&model_file("tiny-granitehybrid.gguf")).unwrap();
    let key = |k: &str| format!("granitehybrid.ssm.{k}");
    let huge = with_key(&info, &key("inner_size"), Int(1 << 16));
    let huge = with_key(&huge, &key("state_size"), Int(1 << 16));
    let overflow = with_key(&info, &key("state_size"), Int(i64::MAX / 2));
    for info in [huge, overflow] {
        let err = check(&info).unwrap_err().to_string();
        assert!(err.contains("weft-nn runs up to 67108864 floats"), "{err}");
    }
}

/// Pure Mamba-2's files (`mamba2`), as llama.cpp's loader reads them:
/// every block a Mamba-2 layer under its norm, without a feed-forward, no
/// attention (0 heads, nothing rotating); the layer's tensors required
/// and another's refused; the `ssm.*` keys required; a block count past
/// the file's tensors refused before anything is allocated.
#[test]
fn mamba2_is_read_as_llama_cpp_reads_it() {
    let info = crate::gguf::inspect(&model_file("tiny-mamba2.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert_eq!((hp.layers, hp.heads, hp.kv_heads, hp.experts), (3, 0, 0, 0));
    assert!((0..3).all(|l| hp.scans(l) && !hp.attends(l) && !hp.ropes(l)));
    assert!((0..3).all(|l| hp.blocks_of(l) == (l, None)));
    let m = hp.ssm.clone().expect("Mamba-2 layers");
    assert_eq!(
        (m.taps, m.inner, m.state, m.heads, m.groups),
        (4, 128, 16, 8, 2)
    );
    let w = Llama::read(&model_file("tiny-mamba2.gguf")).unwrap();
    assert!(
        w.layers
            .iter()
            .all(|l| l.experts.is_empty() && l.ffn_norm.is_none())
    );
    requires_each(
        &info,
        &[
            "blk.0.ssm_conv1d.bias",
            "blk.2.ssm_norm.weight",
            "blk.1.attn_norm.weight",
        ],
    );
    let err = refused_with_copy(
        &info,
        "blk.0.attn_norm.weight",
        "blk.0.ffn_norm.weight",
        None,
    );
    assert!(err.contains("`blk.0.ffn_norm.weight` is not one"), "{err}");
    let without = without_key(&info, "mamba2.ssm.group_count");
    let err = check(&without).unwrap_err().to_string();
    assert!(err.contains("`mamba2.ssm.group_count` is missing"), "{err}");
    let err = check(&with_key(&info, "mamba2.block_count", Int(1 << 40)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`mamba2.block_count` gives 1099511627776 layers"),
        "{err}"
    );
}

/// Mamba-1's files (`mamba`: Mamba-1, Falcon-Mamba), as llama.cpp's loader
/// reads them: every block a Mamba-1 layer under its norm, each channel a
/// head of one group; `ssm_x`, `ssm_dt` and a decay per channel and state
/// required, no `group_count` read; `dt_b_c_rms` false unless the file
/// says, and refused when not a boolean.
#[test]
fn mamba_is_read_as_llama_cpp_reads_it() {
    let info = crate::gguf::inspect(&model_file("tiny-mamba.gguf")).unwrap();
    let hp = check(&info).unwrap();
    assert_eq!((hp.layers, hp.heads, hp.kv_heads, hp.experts), (3, 0, 0, 0));
    assert!((0..3).all(|l| hp.scans(l) && !hp.attends(l) && !hp.ropes(l)));
    let m = hp.ssm.clone().expect("Mamba-1 layers");
    assert_eq!(
        (m.taps, m.inner, m.state, m.heads, m.groups),
        (4, 128, 16, 128, 1)
    );
    assert_eq!((m.conv_dim(), m.in_dim()), (128, 256), "x alone convolved");
    let sel = m.selective.expect("Mamba-1's");
    assert_eq!((sel.dt_rank, sel.norms), (4, false));
    let falcon = crate::gguf::inspect(&model_file("tiny-falconmamba.gguf")).unwrap();
    let norms = check(&falcon).unwrap().ssm.and_then(|m| m.selective);
    assert_eq!(norms.map(|s| s.norms), Some(true));
    let err = check(&with_key(
        &falcon,
        "mamba.ssm.dt_b_c_rms",
        Str("yes".into()),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`mamba.ssm.dt_b_c_rms` is not a boolean"),
        "{err}"
    );
    let w = Llama::read(&model_file("tiny-mamba.gguf")).unwrap();
    assert!(
        w.layers
            .iter()
            .all(|l| l.selective() && l.experts.is_empty())
    );
    requires_each(
        &info,
        &[
            "blk.0.ssm_x.weight",
            "blk.1.ssm_dt.weight",
            "blk.2.ssm_dt.bias",
            "blk.0.ssm_a",
            "blk.1.ssm_d",
            "blk.2.ssm_conv1d.bias",
        ],
    );
    // (Mamba-2's shape of `A`, a decay per head, is not Mamba-1's.)
    let mut per_head = info.clone();
    let a = (per_head.tensors.iter_mut())
        .find(|t| t.name == "blk.0.ssm_a")
        .unwrap();
    a.dims = vec![1, 128];
    let err = check(&per_head).unwrap_err().to_string();
    assert!(err.contains("blk.0.ssm_a"), "{err}");
    let err = check(&with_key(&info, "mamba.ssm.time_step_rank", Int(1 << 40)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`mamba.ssm.time_step_rank` (1099511627776) is more than"),
        "{err}"
    );
    let without = without_key(&info, "mamba.ssm.time_step_rank");
    let err = check(&without).unwrap_err().to_string();
    assert!(
        err.contains("`mamba.ssm.time_step_rank` is missing"),
        "{err}"
    );
}
