//! all-MiniLM-L6-v2 (ONNX) loaded for the GPU gives the CPU's outputs: its
//! embedding lookups and six layers run on the GPU (llvmpipe where there
//! is none: `scripts/install-vulkan.sh`). SmolLM2 (GGUF)
//! loaded for the GPU generates llama.cpp's tokens with every weight product
//! there. Fails, rather than skips, without a Vulkan adapter.

use weft_nn::{Encoding, Engine, Placement, Target, Tensor};

use crate::support::{ids, model_file, reference};

#[test]
fn minilm_on_the_gpu_matches_the_cpu() {
    let bytes = std::fs::read(model_file("minilm/model.onnx")).unwrap();
    let engine = Engine::default();
    let cpu = engine.load(&bytes, Encoding::Onnx, Target::Cpu).unwrap();
    let gpu = engine.load(&bytes, Encoding::Onnx, Target::Gpu).unwrap();
    let Placement::Gpu(adapter) = gpu.placement() else {
        panic!(
            "MiniLM loaded for the GPU runs on {:?}: install a Vulkan driver (scripts/install-vulkan.sh)",
            gpu.placement()
        );
    };
    eprintln!("MiniLM on {adapter}");
    // The 36 projection and feed-forward weights: 6 layers of 4 x 384 x 384
    // and 2 x 384 x 1536 floats; then the constants of the nodes that may
    // run on the device, uploaded once too: each layer's 6 biases and two
    // norms' weights and biases, the embeddings' norm, and the mask's 1
    // and minimum (the norms' epsilon and the attention scale are read
    // on the host), and the tables the embeddings' lookups read: 30,522
    // words, 512 positions and 2 token types of 384 each.
    let weights = 6 * (4 * 384 * 384 + 2 * 384 * 1536);
    let tables = (30_522 + 512 + 2) * 384;
    let constants = 6 * (4 * 384 + 1536 + 384 + 4 * 384) + 2 * 384 + 2 + tables;
    assert_eq!(gpu.device_bytes(), (weights + constants) * 4);
    assert_eq!(cpu.device_bytes(), 0);
    assert_eq!(engine.stats().device_bytes, gpu.device_bytes());

    let reference = reference("minilm_reference.json");
    // Two short sentences: llvmpipe computes at a few GFLOP/s.
    for s in &reference["sentences"].as_array().unwrap()[..2] {
        let input = ids(&s["input_ids"]);
        let shape = vec![1, input.len()];
        let inputs = [
            ("input_ids".into(), Tensor::from_i64(shape.clone(), &input)),
            (
                "attention_mask".into(),
                Tensor::from_i64(shape.clone(), &ids(&s["attention_mask"])),
            ),
            (
                "token_type_ids".into(),
                Tensor::from_i64(shape, &ids(&s["token_type_ids"])),
            ),
        ];
        let want = cpu.session().compute(&inputs).unwrap();
        let got = gpu.session().compute(&inputs).unwrap();
        assert_eq!(got[0].0, "last_hidden_state");
        assert_eq!(got[0].1.shape, want[0].1.shape);
        assert_eq!(got[0].1.shape, vec![1, input.len(), 384]);
        let (got, want) = (got[0].1.to_f32().unwrap(), want[0].1.to_f32().unwrap());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
            .fold(0.0f32, f32::max);
        eprintln!(
            "{}: GPU vs CPU, worst relative difference {worst:.1e}",
            s["text"]
        );
        assert!(
            worst <= 1e-4,
            "{:?}: GPU differs from CPU by {worst}",
            s["text"]
        );
        // And both agree with onnxruntime.
        for (g, r) in got.iter().zip(s["hidden_0_0_first8"].as_array().unwrap()) {
            let r = r.as_f64().unwrap() as f32;
            assert!(
                (g - r).abs() <= 1e-4 * r.abs().max(1.0),
                "{g} vs onnxruntime {r}"
            );
        }
    }
    // A mask of zeros masks every key of every row with f32::MIN: the
    // softmax is then uniform on both paths (the GPU's once gave NaN).
    let ids = [101, 7592, 102];
    let masked = [
        ("input_ids".into(), Tensor::from_i64(vec![1, 3], &ids)),
        (
            "attention_mask".into(),
            Tensor::from_i64(vec![1, 3], &[0; 3]),
        ),
        (
            "token_type_ids".into(),
            Tensor::from_i64(vec![1, 3], &[0; 3]),
        ),
    ];
    let want = cpu.session().compute(&masked).unwrap()[0]
        .1
        .to_f32()
        .unwrap();
    let got = gpu.session().compute(&masked).unwrap()[0]
        .1
        .to_f32()
        .unwrap();
    assert!(want.iter().all(|v| v.is_finite()));
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{g} vs {w}");
    }
}

#[test]
fn smollm2_on_the_gpu_generates_llama_cpps_tokens() {
    use crate::smollm2::{argmax, assert_top5_near, logits};
    let bytes = std::fs::read(model_file("smollm2-135m-instruct.gguf")).unwrap();
    let engine = Engine::default();
    let gpu = engine.load(&bytes, Encoding::Ggml, Target::Gpu).unwrap();
    assert!(
        matches!(gpu.placement(), Placement::Gpu(_)),
        "SmolLM2 loaded for the GPU runs on {:?}",
        gpu.placement()
    );
    // Every product's weights in their blocks of 32: 30 layers of Q and O
    // (576 x 576), K and V (192 x 576), gate, up and down (1536 x 576) in
    // Q4_1 (24 bytes a block on the device); the output head, the token
    // embeddings (49152 x 576), in Q8_0 (36); and the 61 norms' weights
    // as f32. (As f32 copies: 538 MB.)
    let per_layer = 2 * 576 * 576 + 2 * 192 * 576 + 3 * 1536 * 576;
    assert_eq!(
        gpu.device_bytes(),
        30 * per_layer / 32 * 24 + 49152 * 576 / 32 * 36 + 61 * 576 * 4
    );

    // The France prompt (no near-tie in llama.cpp's tokens: its smallest
    // margin is 1.4) and its whole answer, end token included: 8 passes,
    // ~0.65 s each on llvmpipe.
    let case = &reference("smollm2_reference.json")["prompts"][0];
    let expected = ids(&case["generated_ids"]);
    let mut session = gpu.session();
    let mut input = ids(&case["prompt_ids"]);
    let mut got = Vec::new();
    for i in 0..expected.len() {
        let l = logits(&mut session, &input);
        if i == 0 {
            // The GPU keeps activations in f32 where llama.cpp (and the CPU
            // path) round them to 8 bits per block of 32: within 1.0 of its
            // logits, where the CPU path is within 0.5.
            assert_top5_near(case, &l, 1.0);
        }
        got.push(argmax(&l));
        input = vec![*got.last().unwrap()];
    }
    assert_eq!(got, expected);
}
