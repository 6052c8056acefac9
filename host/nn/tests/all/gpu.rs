//! all-MiniLM-L6-v2 (ONNX) loaded for the GPU gives the CPU's outputs: its
//! 36 weight products run on the GPU (llvmpipe where there is none:
//! `scripts/install-vulkan.sh`), everything else on the CPU. Fails, rather
//! than skips, without a Vulkan adapter.

use weft_nn::{Encoding, Engine, Placement, Target, Tensor};

use crate::support::{model_file, reference};

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .expect("token list")
        .iter()
        .map(|t| t.as_i64().expect("token id"))
        .collect()
}

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
    // and 2 x 384 x 1536 floats.
    assert_eq!(gpu.device_bytes(), 6 * (4 * 384 * 384 + 2 * 384 * 1536) * 4);
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
}
