//! The decoder against itself: passes, joined sessions, the GPU and
//! its failures, and the checks of what it loads.

use super::*;
use crate::{NnErrorKind, Tensor};

mod families;
mod hybrid;
mod latent;
mod mixtures;

fn smollm2() -> Vec<u8> {
    model_file("smollm2-135m-instruct.gguf")
}

/// The bytes of `name` in the models folder.
fn model_file(name: &str) -> Vec<u8> {
    let path = std::env::var_os("WEFT_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/models")
        })
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask models`)", path.display()))
}

/// Held by the tests that run decoders on the GPU, so that the
/// working bytes one of them counts are its own.
fn on_the_device() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Each session with its inputs, as the runtime hands a joined pass.
fn joined<'a>(
    sessions: &'a mut [Box<dyn Session>],
    inputs: &'a [Vec<(String, Tensor)>],
) -> Vec<Joined<'a>> {
    sessions
        .iter_mut()
        .zip(inputs)
        .map(|(s, i)| (&mut **s, i.as_slice()))
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

fn worst(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// A prompt split into passes, and a cache that grows (and is copied)
/// in the middle of one and between tokens, change nothing: each step's
/// logits are those of a session running the prompt in one pass, and
/// pick llama.cpp's token, as the CPU path does. The caches are
/// counted in the GPU's working bytes until the sessions are dropped.
#[test]
fn on_the_gpu_passes_and_a_growing_cache_change_nothing() {
    let _device = on_the_device();
    let bytes = smollm2();
    let device = crate::gpu::tests::gpu();
    let before = device.work_bytes();
    let gpu = Llama::load_for(&bytes, Some(Ok(device.clone()))).unwrap();
    let cpu = Llama::load(&bytes).unwrap();
    let mut on = session::Decoder::new(gpu.weights.clone());
    on.on_device().expect("loaded for the GPU").shrink(5, 8);
    let mut whole = session::Decoder::new(gpu.weights.clone());
    let mut off = session::Decoder::new(cpu.weights.clone());
    // The France prompt of tests/data/smollm2_reference.json, 16 tokens:
    // passes of 5, 5, 5 and 1; the cache grows from 8 to 16 positions
    // in the second. Then llama.cpp's answer, one token at a time: the
    // cache grows to 32 at the 17th position.
    let mut input: Vec<u32> = vec![
        1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
    ];
    let llama_cpp = [504, 3575, 282, 4649, 314, 7042, 30, 2];
    for (step, &want) in llama_cpp.iter().enumerate() {
        let (a, w, c) = (
            on.forward(&input),
            whole.forward(&input),
            off.forward(&input),
        );
        let diff = worst(&a, &w);
        assert!(diff <= 1e-3, "step {step}: logits differ by {diff}");
        assert_eq!((argmax(&a), argmax(&c)), (want, want), "step {step}");
        input = vec![want as u32];
    }
    // Single tokens' scores (9 heads over 32 positions), not the
    // prompt passes' 5 tokens' any more.
    let on_device = on.on_device().expect("still on the GPU");
    assert_eq!(on_device.scores_floats(), 9 * 32);
    // K and V of 30 layers, 3 heads of 64 each, for 32 and 64 positions.
    let cache = |positions: u64| positions * 3 * 64 * 4 * 2 * 30;
    let held = device.work_bytes() - before;
    assert!(held >= cache(32) + cache(64), "{held} bytes counted");
    drop((on, whole));
    assert_eq!(device.work_bytes(), before);
}

/// SmolLM2's products keep their blocks on the GPU, in a fraction of the
/// bytes of f32 copies (measured: 112 and 138 MB against 538), and its
/// passes give the logits of the same model taken up as f32: the same
/// values, summed in the same order (to the bit on llvmpipe; a hardware
/// driver may fuse Q4_1's multiply-add). The published file is Q4_1 (its
/// output head Q8_0); the K-quant one has Q4_K (read as Q4_1) and Q5_0,
/// Q5_1, Q5_K and Q6_K (read as Q8_0).
#[test]
fn on_the_gpu_weights_in_their_blocks_give_the_logits_of_f32_copies() {
    let _device = on_the_device();
    for (file, fraction) in [
        ("smollm2-135m-instruct.gguf", 0.25),
        ("smollm2-135m-kquants.gguf", 0.3),
    ] {
        blocks_give_the_logits_of_f32_copies(&model_file(file), fraction);
    }
}

fn blocks_give_the_logits_of_f32_copies(bytes: &[u8], fraction: f64) {
    let device = crate::gpu::tests::gpu();
    let blocks = Llama::load_for(bytes, Some(Ok(device.clone()))).unwrap();
    let f32s = Llama::load_for(bytes, Some(Ok(crate::gpu::tests::f32_weights()))).unwrap();
    let (kept, widened) = (blocks.device_bytes(), f32s.device_bytes());
    assert!(
        (kept as f64) < fraction * widened as f64,
        "{kept} bytes in blocks, {widened} as f32"
    );
    let mut a = session::Decoder::new(blocks.weights.clone());
    let mut b = session::Decoder::new(f32s.weights.clone());
    let software = device.adapter().device_type == "cpu";
    for input in [&[1, 4093, 198, 1780, 314][..], &[504], &[3575]] {
        let (x, y) = (a.forward(input), b.forward(input));
        if software {
            assert!(x == y, "{input:?}: logits differ by {}", worst(&x, &y));
        } else {
            assert!(worst(&x, &y) <= 1e-3, "{input:?}");
        }
    }
    assert!(a.on_device().is_some() && b.on_device().is_some());
}

/// On a GPU that runs the split-k `gemv` (hardware GPUs do; CI's llvmpipe
/// runs the one-thread-per-column kernel unless told), a prompt (16
/// tokens: products in four groups of 4 rows) and then single tokens,
/// alone and two sessions joined (products of 2 rows), pick llama.cpp's
/// tokens.
#[test]
fn with_the_hardware_gemv_decoding_picks_llama_cpps_tokens() {
    let _device = on_the_device();
    let bytes = smollm2();
    let device = crate::gpu::tests::hardware_gemv();
    let gpu = Llama::load_for(&bytes, Some(Ok(device.clone()))).unwrap();
    let mut single = gpu.session();
    let mut pair: Vec<Box<dyn Session>> = vec![gpu.session(), gpu.session()];
    // The France prompt of tests/data/smollm2_reference.json, then
    // llama.cpp's answer.
    let prompt: Vec<i64> = vec![
        1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
    ];
    let ids = |ids: &[i64]| {
        vec![(
            "input_ids".to_string(),
            Tensor::from_i64(vec![ids.len()], ids),
        )]
    };
    let pick = |out: &[(String, Tensor)]| argmax(&out[0].1.to_f32().unwrap()) as i64;
    let llama_cpp = [504, 3575, 282, 4649];
    let mut alone = vec![pick(&single.compute(&ids(&prompt)).unwrap())];
    let mut both = vec![pick(&pair[0].compute(&ids(&prompt)).unwrap())];
    assert_eq!(pick(&pair[1].compute(&ids(&prompt)).unwrap()), both[0]);
    for _ in 1..llama_cpp.len() {
        let last = *alone.last().unwrap();
        alone.push(pick(&single.compute(&ids(&[last])).unwrap()));
        let step = ids(&[*both.last().unwrap()]);
        let inputs = [step.clone(), step];
        let outs = gpu.compute_joined(&mut joined(&mut pair, &inputs));
        let picks: Vec<i64> = outs.iter().map(|o| pick(o.as_ref().unwrap())).collect();
        assert_eq!(
            picks[0], picks[1],
            "joined sessions in the same place agree"
        );
        both.push(picks[0]);
    }
    assert_eq!(
        (alone.as_slice(), both.as_slice()),
        (&llama_cpp[..], &llama_cpp[..])
    );
    // On the device, not the CPU it falls back to: 3 prompts, 3 single
    // steps and 3 joined ones, each one pass.
    assert_eq!(device.pass_times().programs, 9);
}

/// A pass records nine dispatches a layer: Q, K and V come from one
/// product and gate and up from another, each residual add runs with the
/// norm that reads it, and attention stores the new keys and values. A
/// joined pass adds an attention per session; a prompt's pass normalises
/// each session's last row apart.
#[test]
fn a_pass_runs_nine_dispatches_a_layer_and_one_more_per_joined_session() {
    let _device = on_the_device();
    let bytes = smollm2();
    let device = crate::gpu::tests::own(None);
    let model = Llama::load_for(&bytes, Some(Ok(device.clone()))).unwrap();
    let w = &model.weights;
    let layers = w.hp.layers as u64;
    let head = w.output.as_ref().unwrap_or(&w.tok_embd);
    let head = head.on_gpu().unwrap().panel_count() as u64;
    // (The layers' products are one panel each at SmolLM2's widths.)
    let mut pair: Vec<Box<dyn Session>> = vec![model.session(), model.session()];
    let ids = |ids: &[i64]| {
        vec![(
            "input_ids".to_string(),
            Tensor::from_i64(vec![ids.len()], ids),
        )]
    };
    // Dispatches of the one pass `run` runs.
    let dispatches = |run: &mut dyn FnMut()| {
        let before = device.pass_times();
        run();
        let after = device.pass_times();
        assert_eq!(after.programs, before.programs + 1, "one pass");
        after.dispatches - before.dispatches
    };
    let prompt = dispatches(&mut || {
        pair[0].compute(&ids(&[1, 4093, 198])).unwrap();
    });
    assert_eq!(prompt, 1 + 9 * layers + 1 + head);
    let one = dispatches(&mut || {
        pair[0].compute(&ids(&[1780])).unwrap();
    });
    assert_eq!(one, 1 + 9 * layers + head);
    dispatches(&mut || {
        pair[1].compute(&ids(&[1, 520])).unwrap();
    });
    let both = dispatches(&mut || {
        let inputs = [ids(&[314]), ids(&[9531])];
        for out in model.compute_joined(&mut joined(&mut pair, &inputs)) {
            out.unwrap();
        }
    });
    assert_eq!(both, 1 + 10 * layers + head);
}

/// Loading packs every product's rows for the CPU's lane kernel where
/// this CPU has one: all seven of each layer and the output head, those
/// a GPU runs fused (Q, K, V, gate, up) too, for the CPU path and for a
/// session that falls back to it.
#[test]
fn every_product_is_packed_where_the_cpu_has_the_lane_kernel() {
    let bytes = smollm2();
    let on_gpu = Llama::load_for(&bytes, Some(Ok(crate::gpu::tests::gpu()))).unwrap();
    for model in [Llama::load(&bytes).unwrap(), on_gpu] {
        let mut w = Arc::into_inner(model.weights).unwrap();
        assert_eq!(w.products().count(), 7 * w.hp.layers + 1);
        assert_eq!(w.products_mut().count(), w.products().count());
        for m in w.products() {
            let (ty, packed) = m.packing();
            assert_eq!(packed, crate::quant::lanes::used_for(ty), "{ty:?}");
        }
    }
}

/// A pass that fails on the device moves the session to the CPU, which
/// first runs the tokens seen so far: from then on its logits are the
/// CPU path's, bit for bit.
#[test]
fn a_session_whose_gpu_fails_carries_on_on_the_cpu() {
    let _device = on_the_device();
    let bytes = smollm2();
    let gpu = Llama::load_for(&bytes, Some(Ok(crate::gpu::tests::gpu()))).unwrap();
    let cpu = Llama::load(&bytes).unwrap();
    let mut on = session::Decoder::new(gpu.weights.clone());
    let mut off = session::Decoder::new(cpu.weights.clone());
    let prompt = [1, 504, 3458, 282];
    on.forward(&prompt);
    off.forward(&prompt);
    on.on_device().expect("loaded for the GPU").fail_next = true;
    assert_eq!(on.forward(&[30]), off.forward(&[30]));
    assert!(on.on_device().is_none(), "moved to the CPU");
    assert_eq!(on.forward(&[216]), off.forward(&[216]));
}

/// Three sessions' prompts of different lengths, then one token each,
/// computed together give each session exactly what it gets alone; a
/// bad call among them fails alone, and a session that is not a
/// decoder's answers for itself.
#[test]
fn sessions_computed_together_get_what_each_gets_alone() {
    let model = Llama::load(&smollm2()).unwrap();
    assert!(model.joinable());
    let steps: [[Vec<i64>; 3]; 2] = [
        [
            vec![1, 4093, 198],
            vec![1, 520],
            vec![1, 4093, 198, 1780, 314],
        ],
        [vec![504], vec![30], vec![2]],
    ];
    let mut alone: Vec<Box<dyn Session>> = (0..3).map(|_| model.session()).collect();
    let mut together: Vec<Box<dyn Session>> = (0..3).map(|_| model.session()).collect();
    let mut bad = model.session();
    let named = |ids: &[i64]| {
        vec![(
            "input_ids".to_string(),
            Tensor::from_i64(vec![ids.len()], ids),
        )]
    };
    for inputs in &steps {
        let inputs: Vec<_> = inputs.iter().map(|ids| named(ids)).collect();
        let want: Vec<Vec<f32>> = alone
            .iter_mut()
            .zip(&inputs)
            .map(|(s, i)| s.compute(i).unwrap()[0].1.to_f32().unwrap())
            .collect();
        let outside = named(&[49152]);
        let mut calls = joined(&mut together, &inputs);
        calls.insert(1, (&mut *bad, outside.as_slice()));
        let mut refuses = Refuses;
        calls.push((&mut refuses, outside.as_slice()));
        let mut got = model.compute_joined(&mut calls);
        let e = got.pop().unwrap().unwrap_err();
        assert_eq!(
            e.message, "refused",
            "another kind of session answers for itself"
        );
        let e = got.remove(1).unwrap_err();
        assert_eq!(e.kind, NnErrorKind::InvalidArgument, "{e}");
        assert!(e.message.contains("outside the vocabulary"), "{e}");
        for (g, w) in got.into_iter().zip(&want) {
            assert_eq!(&g.unwrap()[0].1.to_f32().unwrap(), w);
        }
    }
}

/// On the GPU too: three sessions' prompts, then a token each, run as
/// one pass (the weights read once, not three times) and give each
/// session what it gets alone, up to the order the
/// kernels sum in. Should the joined pass fail, every session moves to
/// the CPU and gets the CPU path's logits from then on.
#[test]
fn on_the_gpu_sessions_computed_together_run_one_pass_and_get_what_each_gets_alone() {
    let _device = on_the_device();
    let bytes = smollm2();
    let device = crate::gpu::tests::gpu();
    let model = Llama::load_for(&bytes, Some(Ok(device.clone()))).unwrap();
    assert!(model.joinable());
    let cpu = Llama::load(&bytes).unwrap();
    let steps: [[Vec<i64>; 3]; 2] = [
        [
            vec![1, 4093, 198],
            vec![1, 520],
            vec![1, 4093, 198, 1780, 314],
        ],
        [vec![504], vec![30], vec![2]],
    ];
    let named = |ids: &[i64]| {
        vec![(
            "input_ids".to_string(),
            Tensor::from_i64(vec![ids.len()], ids),
        )]
    };
    let logits = |o: Outputs| o.unwrap()[0].1.to_f32().unwrap();
    let mut alone: Vec<Box<dyn Session>> = (0..3).map(|_| model.session()).collect();
    let mut together: Vec<Box<dyn Session>> = (0..3).map(|_| model.session()).collect();
    let mut on_cpu: Vec<Box<dyn Session>> = (0..3).map(|_| cpu.session()).collect();
    for inputs in &steps {
        let inputs: Vec<_> = inputs.iter().map(|ids| named(ids)).collect();
        let want: Vec<Vec<f32>> = alone
            .iter_mut()
            .zip(&inputs)
            .map(|(s, i)| logits(s.compute(i)))
            .collect();
        let mut calls = joined(&mut together, &inputs);
        let got = model.compute_joined(&mut calls);
        for (g, w) in got.into_iter().zip(&want) {
            let g = logits(g);
            assert!(worst(&g, w) <= 1e-3, "{}", worst(&g, w));
            assert_eq!(argmax(&g), argmax(w));
        }
        for (s, i) in on_cpu.iter_mut().zip(&inputs) {
            s.compute(i).unwrap();
        }
    }
    let passes: Vec<usize> = together
        .iter_mut()
        .map(|s| {
            let any: &mut dyn Any = &mut **s;
            let dec = any.downcast_mut::<session::Decoder>().unwrap();
            dec.on_device().expect("on the GPU").passes
        })
        .collect();
    assert_eq!(
        passes,
        [2, 0, 0],
        "one pass per step, in the first's buffers"
    );
    // A failed joined pass: all three carry on on the CPU.
    let any: &mut dyn Any = &mut *together[1];
    let dec = any.downcast_mut::<session::Decoder>().unwrap();
    dec.on_device().expect("on the GPU").fail_next = true;
    let inputs: Vec<_> = [[216], [28], [30]].iter().map(|ids| named(ids)).collect();
    let mut calls = joined(&mut together, &inputs);
    let got = model.compute_joined(&mut calls);
    for ((g, s), i) in got.into_iter().zip(&mut on_cpu).zip(&inputs) {
        assert_eq!(logits(g), logits(s.compute(i)));
    }
}

/// A mixture of experts on the GPU: three sessions' prompts, then a token
/// each, run together (their rows routed in one pass, each expert over
/// the rows of all three) give each what it gets alone, and the CPU's
/// best tokens; with the experts' groups of rows padded apart, as a
/// device with a coarse binding alignment pads them.
#[test]
fn on_the_gpu_a_mixture_computed_together_gets_what_each_gets_alone() {
    let _device = on_the_device();
    device::PAD_GROUPS.store(3, std::sync::atomic::Ordering::Relaxed);
    let bytes = model_file("tiny-qwen2moe.gguf");
    let model = Llama::load_for(&bytes, Some(Ok(crate::gpu::tests::gpu()))).unwrap();
    assert!(
        matches!(model.placement, Placement::Gpu(_)),
        "{:?}",
        model.placement
    );
    let cpu = Llama::load(&bytes).unwrap();
    let steps: [[Vec<i64>; 3]; 2] = [
        [vec![1, 40, 19], vec![1, 52], vec![1, 40, 19, 78, 31, 7]],
        [vec![50], vec![3], vec![2]],
    ];
    let named = |ids: &[i64]| {
        vec![(
            "input_ids".to_string(),
            Tensor::from_i64(vec![ids.len()], ids),
        )]
    };
    let logits = |o: Outputs| o.unwrap()[0].1.to_f32().unwrap();
    let sessions = |m: &Llama| (0..3).map(|_| m.session()).collect::<Vec<_>>();
    let (mut alone, mut together, mut on_cpu) =
        (sessions(&model), sessions(&model), sessions(&cpu));
    for inputs in &steps {
        let inputs: Vec<_> = inputs.iter().map(|ids| named(ids)).collect();
        let mut calls = joined(&mut together, &inputs);
        let got = model.compute_joined(&mut calls);
        for (((g, a), c), i) in got
            .into_iter()
            .zip(&mut alone)
            .zip(&mut on_cpu)
            .zip(&inputs)
        {
            let (g, a, c) = (logits(g), logits(a.compute(i)), logits(c.compute(i)));
            assert!(worst(&g, &a) <= 1e-3, "{}", worst(&g, &a));
            assert!(worst(&g, &c) <= 1e-2, "{}", worst(&g, &c));
            assert_eq!(argmax(&g), argmax(&c));
        }
    }
    device::PAD_GROUPS.store(1, std::sync::atomic::Ordering::Relaxed);
}

/// A mixture's decoding passes make no buffer once its first has run:
/// the tables that gather its rows by expert and sum their outputs are
/// kept with its other buffers, not made for each layer of each pass.
#[test]
fn on_the_gpu_a_mixture_decodes_without_making_buffers() {
    let _device = on_the_device();
    let bytes = model_file("tiny-qwen2moe.gguf");
    let device = crate::gpu::tests::own(None);
    let model = Llama::load_for(&bytes, Some(Ok(device.clone()))).unwrap();
    let mut s = session::Decoder::new(model.weights.clone());
    s.forward(&[1, 40, 19]);
    s.forward(&[50]);
    let made = device.buffers_made();
    s.forward(&[3]);
    assert_eq!(device.buffers_made(), made);
}

/// What an upload checks: the fixture decoder passes; bad head and
/// rotary sizes are refused with the reason, not a panic later.
#[test]
fn check_refuses_shapes_the_decoder_cannot_run() {
    use crate::fixtures::{decoder, decoder_with};
    let check_bytes = |b: Vec<u8>| check(&crate::gguf::inspect(&b).unwrap());
    check_bytes(decoder()).unwrap();
    for (key, value, why) in [
        ("llama.rope.dimension_count", 0, "rope dimension 0"),
        ("llama.rope.dimension_count", 17, "rope dimension 17"),
        ("llama.attention.key_length", 0, "key heads of 0"),
        ("llama.attention.head_count_kv", 0, "0 KV heads"),
    ] {
        let e = check_bytes(decoder_with(&[(key, value)])).unwrap_err();
        assert!(e.message.contains(why), "{key}: {e}");
    }
}

/// Rotary scaling keys as llama.cpp reads them: a factor without a type
/// is linear scaling, the older `rope.scale_linear` stands in for
/// `rope.scaling.factor`, and `rope.scaling.attn_factor` scales the
/// rotations under any scaling, not LongRoPE's alone.
#[test]
fn rope_scaling_keys_are_read_as_llama_cpp_reads_them() {
    use crate::fixtures::decoder_with;
    let read = |more: &[(&str, u32)]| {
        let hp = check(&crate::gguf::inspect(&decoder_with(more)).unwrap()).unwrap();
        (hp.rope_freq_scale, hp.rope_mscale)
    };
    assert_eq!(read(&[]), (1.0, 1.0));
    assert_eq!(read(&[("llama.rope.scaling.factor", 4)]), (0.25, 1.0));
    assert_eq!(read(&[("llama.rope.scale_linear", 4)]), (0.25, 1.0));
    let both = [
        ("llama.rope.scaling.factor", 2),
        ("llama.rope.scale_linear", 4),
    ];
    assert_eq!(read(&both), (0.5, 1.0), "the newer key first");
    assert_eq!(read(&[("llama.rope.scaling.factor", 0)]), (1.0, 1.0));
    assert_eq!(read(&[("llama.rope.scaling.attn_factor", 2)]), (1.0, 2.0));
    // Type `none` never scales.
    let mut info =
        crate::gguf::inspect(&decoder_with(&[("llama.rope.scaling.factor", 4)])).unwrap();
    let none = crate::GgufValue::Str("none".into());
    info.metadata.push(("llama.rope.scaling.type".into(), none));
    assert_eq!(check(&info).unwrap().rope_freq_scale, 1.0);
}

/// OLMo 3's sliding-window layers rotate plainly, whatever the global
/// layers' scaling: unscaled, without the attention factor (llama.cpp's
/// OLMo graph passes 1 for both).
#[test]
fn olmo_sliding_layers_rotate_without_scale_or_attention_factor() {
    use crate::GgufValue::{Float, Str};
    let plain = crate::gguf::inspect(&model_file("tiny-olmo3.gguf")).unwrap();
    let mut scaled = plain.clone();
    for (key, value) in [
        ("olmo2.rope.scaling.type", Str("linear".into())),
        ("olmo2.rope.scaling.factor", Float(4.0)),
        ("olmo2.rope.scaling.attn_factor", Float(2.0)),
    ] {
        scaled.metadata.push((key.into(), value));
    }
    let (plain, scaled) = (check(&plain).unwrap(), check(&scaled).unwrap());
    assert!(
        scaled.swa_angles(),
        "the sliding layers need a table of their own"
    );
    let angles = |hp: &HParams, swa| {
        let mut out = Vec::new();
        hp.rope_angles(None, 7, swa, &mut out);
        out
    };
    assert_eq!(angles(&scaled, true), angles(&plain, true));
    assert_ne!(angles(&scaled, false), angles(&plain, false));
}

#[derive(Debug)]
struct Refuses;

impl Session for Refuses {
    fn compute(&mut self, _: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, NnError> {
        Err(NnError::new(NnErrorKind::RuntimeError, "refused"))
    }
}

#[test]
fn loaded_for_an_unusable_gpu_it_runs_on_the_cpu_and_says_why() {
    let bytes = smollm2();
    let why = NnError::new(NnErrorKind::UnsupportedOperation, "no adapter here");
    let fallback = Llama::load_for(&bytes, Some(Err(why))).unwrap();
    assert_eq!(
        fallback.placement(),
        Placement::CpuFallback("no adapter here".into())
    );
    assert_eq!(fallback.device_bytes(), 0);
    let cpu = Llama::load(&bytes).unwrap();
    assert_eq!(cpu.placement(), Placement::Cpu);
    let input = [("input_ids".to_string(), Tensor::from_i64(vec![2], &[1, 2]))];
    let (a, b) = (
        fallback.session().compute(&input).unwrap(),
        cpu.session().compute(&input).unwrap(),
    );
    assert_eq!(a[0].1.to_f32().unwrap(), b[0].1.to_f32().unwrap());
}

/// Products into buffers kept from another product (stale values, other
/// lengths, as a pass's layers leave them; quantised activations of
/// another width and count) equal fresh ones, alone and on a team: every
/// value is written, none is left from before.
#[test]
fn products_into_kept_buffers_write_every_value() {
    use crate::quant::Q8Batch;
    let llama = Llama::load(&smollm2()).unwrap();
    let layer = &llama.weights.layers[0];
    let group = [&layer.wq, &layer.wk, &layer.wv];
    let cols = llama.weights.hp.embd;
    // Kept from product to product, as a pass keeps them: first 20 rows
    // of 64 values.
    let stale = || Q8Batch::quantize(&[1.5; 20 * 64], 64);
    let (mut xq_alone, mut xq_team) = (stale(), stale());
    for n in [16, 1, 5] {
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let fresh = QMatrix::matmul_group(&group, &x, n, crate::team::Workers::Caller);
        let kept = || vec![vec![f32::NAN; 7], vec![f32::NAN; 5000], Vec::new()];
        let mut alone = kept();
        let workers = crate::team::Workers::Caller;
        QMatrix::matmul_group_into(&group, &x, n, workers, &mut xq_alone, &mut alone);
        let mut on_a_team = kept();
        crate::team::run(|team| {
            let workers = crate::team::Workers::Team(team);
            QMatrix::matmul_group_into(&group, &x, n, workers, &mut xq_team, &mut on_a_team)
        });
        for ys in [alone, on_a_team] {
            for (y, want) in ys.iter().zip(&fresh) {
                assert_eq!(y.len(), want.len());
                let same = y.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{n} rows: a product differs from a fresh one");
            }
        }
    }
}

/// Mistral 3's keys, as llama.cpp's `mistral3` loader reads them: the
/// attention temperature in steps of YaRN's original window (refused
/// without one; ignored by other architectures, as there), and
/// `mscale_all_dim` dividing YaRN's magnitude.
#[test]
fn mistral3_temperature_and_yarn_keys_are_read_as_llama_cpp_reads_them() {
    use crate::GgufValue::{Float, Int};
    let file = crate::gguf::inspect(&model_file("tiny-ministral.gguf")).unwrap();
    let with = |arch: &str, key: &str, value| {
        let mut info = file.clone();
        info.metadata.retain(|(k, _)| k != key);
        info.metadata.push((key.into(), value));
        info.architecture = Some(arch.into());
        info.metadata = (info.metadata.into_iter())
            .map(|(k, v)| (k.replacen("mistral3.", &format!("{arch}."), 1), v))
            .collect();
        info
    };
    let hp = check(&file).unwrap();
    assert_eq!(hp.attn_temp, Some((0.5, 8)));
    for pos in 0..8 {
        assert_eq!(hp.attn_temperature(pos), 1.0, "{pos}");
    }
    let step = |n: f64| (1.0 + 0.5 * (1.0 + n).ln()) as f32;
    assert_eq!(hp.attn_temperature(8), step(1.0));
    assert_eq!(hp.attn_temperature(23), step(2.0));
    // (YaRN's magnitude 1 + 0.1 ln 4, divided by itself for
    // mscale_all_dim 1, and the kernel's own cancelled.)
    let cancel = 1.0 / (1.0 + 0.1 * 4f32.ln());
    assert!((hp.rope_mscale - cancel).abs() < 1e-6, "{}", hp.rope_mscale);
    let plain = check(&with(
        "mistral3",
        "mistral3.rope.scaling.yarn_log_multiplier",
        Float(0.0),
    ));
    assert!((plain.unwrap().rope_mscale - 1.0).abs() < 1e-6);
    let no_window = with(
        "mistral3",
        "mistral3.rope.scaling.original_context_length",
        Int(0),
    );
    let err = check(&no_window).unwrap_err().to_string();
    assert!(
        err.contains("temperature_scale") && err.contains("is 0"),
        "{err}"
    );
    let llama = with("llama", "llama.attention.temperature_scale", Float(0.5));
    assert_eq!(check(&llama).unwrap().attn_temp, None);
}
