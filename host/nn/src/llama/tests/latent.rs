//! DeepSeek-V2's multi-head latent attention: its keys read and refused
//! as llama.cpp's loader reads them, its tensors (the queries' product
//! or their latent's, the latent's product whole or split per head)
//! required by the check, and its sessions through pieces, joined passes,
//! the GPU and a GPU failure as any decoder's.

use super::families::{refused_with_copy, refused_without, with_key, without_key};
use super::hybrid::{passes_and_a_failure_change_nothing, sessions_carry_their_own_state};
use super::*;
use crate::GgufInfo;
use crate::GgufValue::{Float, Int};

fn deepseek(name: &str) -> GgufInfo {
    crate::gguf::inspect(&model_file(&format!("tiny-{name}.gguf"))).unwrap()
}

/// V2-Lite's file (queries in one product, the latent's product whole,
/// softmax routing) and V3's as the converter writes it now (queries
/// through a latent, the product split per head, the K/V keys the
/// latent's and the heads' in `*_mla`, YaRN, sigmoid routing with a
/// bias): each head's keys and values decompressed, one per query head;
/// V3's scores scaled by YaRN's `mscale` squared.
#[test]
fn deepseek2_files_are_read_as_llama_cpp_reads_them() {
    let lite = deepseek("deepseek2");
    let hp = check(&lite).unwrap();
    let m = hp.mla.clone().expect("latent attention");
    let shape = |m: &hparams::Mla| (m.q_rank, m.kv_rank, m.nope, m.rope, m.value, m.split);
    assert_eq!(shape(&m), (0, 32, 16, 8, 16, false));
    assert_eq!(
        (hp.heads, hp.kv_heads, hp.head_dim, hp.o_dim()),
        (4, 4, 24, 64)
    );
    assert!(!hp.rope_neox && !hp.experts_sigmoid && !hp.experts_renormalised);
    let moe = (
        hp.experts,
        hp.experts_used,
        hp.ffn,
        hp.shared_ffn,
        hp.dense_lead,
    );
    assert_eq!(moe, (4, 2, 32, 64, 1));
    assert_eq!((hp.experts_scale, hp.attn_scale), (1.0, 1.0 / 24f32.sqrt()));
    let v3 = deepseek("deepseek3");
    let hp = check(&v3).unwrap();
    assert_eq!(shape(hp.mla.as_ref().unwrap()), (48, 32, 16, 8, 16, true));
    // (Not the file's one head of the latent's 40 floats.)
    assert_eq!((hp.kv_heads, hp.head_dim), (4, 24));
    assert!(hp.experts_sigmoid && hp.experts_renormalised && hp.expert_bias);
    assert_eq!(hp.experts_scale, 2.5);
    // (1 + 0.1 mscale_all_dim ln 4)², the converter's 0.0707 that tenth.)
    let m = 1.0 + 0.0707 * 4f32.ln();
    assert!((hp.attn_scale - m * m / 24f32.sqrt()).abs() < 1e-6);
    assert!((hp.rope_mscale * (1.0 + 0.1 * 4f32.ln()) - 1.0).abs() < 1e-6);
    for (info, name) in [
        (&lite, "blk.0.attn_q.weight"),
        (&lite, "blk.3.attn_kv_b.weight"),
        (&lite, "blk.1.attn_kv_a_norm.weight"),
        (&lite, "blk.25.attn_kv_a_mqa.weight"),
        (&v3, "blk.0.attn_q_a_norm.weight"),
        (&v3, "blk.0.attn_q_b.weight"),
        (&v3, "blk.2.attn_k_b.weight"),
        (&v3, "blk.2.attn_v_b.weight"),
        (&v3, "blk.1.attn_output.weight"),
    ] {
        let err = refused_without(info, name);
        assert!(err.contains(&format!("`{name}` is missing")), "{err}");
    }
    // (Optional, as llama.cpp reads it.)
    let mut unbiased = v3.clone();
    unbiased
        .tensors
        .retain(|t| !t.name.ends_with("exp_probs_b.bias"));
    assert!(check(&unbiased).is_ok());
    // The other form's tensor, or a query latent's in a one-product file,
    // is another model's.
    for (info, from, to) in [
        (&lite, "blk.0.attn_kv_b.weight", "blk.0.attn_k_b.weight"),
        (&lite, "blk.0.attn_q.weight", "blk.0.attn_q_b.weight"),
        (&v3, "blk.0.attn_k_b.weight", "blk.0.attn_kv_b.weight"),
    ] {
        let err = refused_with_copy(info, from, to, None);
        assert!(err.contains(&format!("`{to}` is not one")), "{err}");
    }
}

/// Keys that do not fit are refused, naming them: the latent's rank
/// missing, a rotated part as wide as the key or odd, values wider than
/// keys, Mistral Large 3's temperature, experts picked in groups
/// (DeepSeek-V3's), another gating function, a negative scale or query
/// rank, heads or latents past any bound.
#[test]
fn deepseek2_metadata_that_does_not_fit_is_refused() {
    let v3 = deepseek("deepseek3");
    let refused = |info: &GgufInfo| check(info).unwrap_err().to_string();
    let without_rank = without_key(&v3, "deepseek2.attention.kv_lora_rank");
    let err = refused(&without_rank);
    assert!(
        err.contains("`deepseek2.attention.kv_lora_rank` is missing"),
        "{err}"
    );
    for rope in [24, 7] {
        let err = refused(&with_key(&v3, "deepseek2.rope.dimension_count", Int(rope)));
        assert!(err.contains("does not fit the heads' keys of 24"), "{err}");
    }
    let err = refused(&with_key(
        &v3,
        "deepseek2.attention.value_length_mla",
        Int(32),
    ));
    assert!(
        err.contains("values of 32 floats a head, keys of 24"),
        "{err}"
    );
    for (key, value, says) in [
        (
            "attention.temperature_scale",
            Float(0.1),
            "without a temperature",
        ),
        (
            "expert_group_count",
            Int(8),
            "is 8: weft-nn picks experts from one group",
        ),
    ] {
        let mut with = v3.clone();
        (with.metadata).push((format!("deepseek2.{key}"), value));
        let err = refused(&with);
        assert!(
            err.contains(&format!("`deepseek2.{key}`")) && err.contains(says),
            "{err}"
        );
    }
    let err = refused(&with_key(&v3, "deepseek2.expert_gating_func", Int(3)));
    assert!(err.contains("`deepseek2.expert_gating_func` is 3"), "{err}");
    let err = refused(&with_key(
        &v3,
        "deepseek2.expert_weights_scale",
        Float(-1.0),
    ));
    assert!(
        err.contains("`deepseek2.expert_weights_scale` is -1"),
        "{err}"
    );
    let err = refused(&with_key(&v3, "deepseek2.attention.q_lora_rank", Int(-48)));
    assert!(
        err.contains("`deepseek2.attention.q_lora_rank` is not a non-negative"),
        "{err}"
    );
    // (Heads past the width, a latent past any release's: before anything
    // is sized by them.)
    let err = refused(&with_key(
        &v3,
        "deepseek2.attention.head_count",
        Int(1 << 62),
    ));
    assert!(err.contains("is more than the width (64)"), "{err}");
    let err = refused(&with_key(
        &v3,
        "deepseek2.attention.kv_lora_rank",
        Int(1 << 40),
    ));
    assert!(
        err.contains("a latent or head of 1099511627776 floats"),
        "{err}"
    );
    // (llama.cpp's split form wants both `*_mla` keys, and not 0: else the
    // file is read as the older form, here the wrong shapes.)
    let err = refused(&with_key(&v3, "deepseek2.attention.key_length_mla", Int(0)));
    assert!(err.contains("expected [128, 64]"), "{err}");
}

/// What files say or leave out as llama.cpp reads them: no scale of the
/// experts' weights is 1; GLM-4.7-Flash's files, which give no gating
/// function, route by the sigmoid (by its shape: 47 layers past its
/// multi-token prediction block, a vocabulary of 154880), others by the
/// softmax; that block's tensors are read, not run.
#[test]
fn deepseek2_defaults_are_llama_cpps() {
    let v3 = deepseek("deepseek3");
    let unscaled = without_key(&v3, "deepseek2.expert_weights_scale");
    assert_eq!(check(&unscaled).unwrap().experts_scale, 1.0);
    let ungated = without_key(&v3, "deepseek2.expert_gating_func");
    assert!(!check(&ungated).unwrap().experts_sigmoid);
    // GLM-4.7-Flash's shape: 48 blocks (blocks 3.. copies of block 2's
    // tensors), the last a prediction block, and its vocabulary.
    let mut flash = with_key(&ungated, "deepseek2.block_count", Int(48));
    (flash.metadata).push(("deepseek2.nextn_predict_layers".into(), Int(1)));
    let last: Vec<_> = (flash.tensors.iter())
        .filter(|t| t.name.starts_with("blk.2."))
        .cloned()
        .collect();
    for b in 3..48 {
        flash.tensors.extend(last.iter().cloned().map(|mut t| {
            t.name = t.name.replacen("blk.2.", &format!("blk.{b}."), 1);
            t
        }));
    }
    for t in &mut flash.tensors {
        if matches!(t.name.as_str(), "token_embd.weight" | "output.weight") {
            t.dims[1] = 154_880;
        }
    }
    let hp = check(&flash).unwrap();
    assert_eq!((hp.layers, hp.mtp_blocks, hp.vocab), (47, 1, 154_880));
    assert!(hp.experts_sigmoid, "GLM-4.7-Flash's routing");
    let mut other = flash.clone();
    for t in &mut other.tensors {
        if matches!(t.name.as_str(), "token_embd.weight" | "output.weight") {
            t.dims[1] = 154_879;
        }
    }
    assert!(
        !check(&other).unwrap().experts_sigmoid,
        "another vocabulary"
    );
}

/// Each session's decompressed keys and values are its own: a prompt fed
/// in pieces, sessions joined in one pass, GPU passes while the cache
/// grows, and a GPU failure mid-session give what one session alone
/// gets, on the CPU and on the GPU.
#[test]
fn latent_attention_sessions_are_each_their_own() {
    let _device = on_the_device();
    // (V2-Lite's 26 layers carry the two devices' rounding 1.4e-3 apart:
    // its sessions are compared on each device alone.)
    sessions_carry_their_own_state(&model_file("tiny-deepseek2.gguf"));
    passes_and_a_failure_change_nothing(&model_file("tiny-deepseek3.gguf"));
}

/// The latent product rebuilt from split tensors keeps a float type's
/// values exactly (F32, F16, BF16) and a quantised type's in Q8_0, a
/// step of a block's largest over 127 at most.
#[test]
fn rebuilt_latent_products_keep_their_values() {
    use crate::GgmlType::{Bf16, F16, F32, Q4_K, Q8_0};
    let (rows, cols) = (4, 64);
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 37 % 33) as f32 - 16.0) / 8.0)
        .collect();
    for (like, ty, step) in [
        (F32, F32, 0.0),
        (F16, F16, 0.0),
        (Bf16, Bf16, 0.0),
        (Q4_K, Q8_0, 2.0 / 127.0),
    ] {
        let m = weights::QMatrix::from_f32("t", &values, (rows, cols), like).unwrap();
        assert_eq!(m.packing().0, ty, "{like:?}");
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            m.row(r, &mut row);
            let want = &values[r * cols..][..cols];
            let worst = (row.iter().zip(want))
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= step / 2.0 + 1e-6, "{like:?} row {r}: {worst}");
        }
    }
}

/// MiniCPM3's keys, as llama.cpp reads them: the value width absent (the
/// width over the heads), the queries' latent required, MiniCPM's fixed
/// multipliers whatever the file says, LongRoPE's short factors in the
/// trained window (no original window written), NeoX pairs.
#[test]
fn minicpm3_is_read_as_llama_cpp_reads_it() {
    let info = deepseek("minicpm3");
    let hp = check(&info).unwrap();
    let a = hp.mla.clone().unwrap();
    assert_eq!(
        (a.q_rank, a.kv_rank, a.nope, a.rope, a.value),
        (48, 32, 16, 8, 16)
    );
    assert!(hp.rope_neox && !a.split);
    assert_eq!((hp.embd_scale, hp.logit_scale), (12.0, 256.0 / 64.0));
    assert_eq!(hp.residual_scale, 1.4 / 8f32.sqrt());
    assert_eq!(hp.attn_scale, 1.0 / 24f32.sqrt());
    assert_eq!(hp.context, 256);
    let mut said = info.clone();
    (said.metadata).push(("minicpm3.embedding_scale".into(), Float(1.0)));
    assert_eq!(check(&said).unwrap().embd_scale, 12.0);
    for info in [
        without_key(&info, "minicpm3.attention.q_lora_rank"),
        with_key(&info, "minicpm3.attention.q_lora_rank", Int(0)),
    ] {
        let err = check(&info).unwrap_err().to_string();
        assert!(
            err.contains("`minicpm3.attention.q_lora_rank` is missing, 0"),
            "{err}"
        );
    }
    // (Its product is whole whatever `*_mla` keys say, as llama.cpp loads it.)
    let mut mla_keys = info.clone();
    for key in ["key_length_mla", "value_length_mla"] {
        (mla_keys.metadata).push((format!("minicpm3.attention.{key}"), Int(32)));
    }
    assert!(!check(&mla_keys).unwrap().mla.unwrap().split);
}
