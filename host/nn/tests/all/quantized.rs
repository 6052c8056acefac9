//! all-MiniLM-L6-v2 quantised by onnxruntime's `quantize_dynamic` (int8
//! weights, `DynamicQuantizeLinear` + `MatMulInteger`: what a user
//! shrinking a model for the CPU uploads), and converted to fp16 (what a
//! user halving it for a GPU uploads), gives onnxruntime's outputs, on
//! the CPU and loaded for the GPU. `cargo xtask models` writes the models
//! and onnxruntime's outputs for them.

use weft_nn::{Encoding, Engine, Target, Tensor};

use crate::support::{ids, model_file};

/// Activations are quantised per call from the float values before each
/// product, so a float that differs from onnxruntime's in its last bit
/// can round to the next of 256 steps there; the outputs (norms of
/// order 1) then differ by a few thousandths at a few positions.
const TOLERANCE: f32 = 5e-2;

/// MiniLM's weight products as f32 bytes: 6 layers of 4 x 384 x 384 and
/// 2 x 384 x 1536.
const PRODUCTS: u64 = 6 * (4 * 384 * 384 + 2 * 384 * 1536) * 4;

#[test]
fn int8_minilm_matches_onnxruntime() {
    matches_onnxruntime("minilm/model-int8", TOLERANCE, 1e-3, |model, target| {
        // The int8 products' weights are widened to f32 at load.
        if target == Target::Gpu {
            assert!(model.device_bytes() >= PRODUCTS);
        }
    });
}

/// The same model with every float in fp16 (`cargo xtask models` converts
/// it as onnxconverter-common would): the fused nodes compute in f32 and
/// round to half, as onnxruntime's fp16 kernels do, so the two stay within
/// a few half steps of values of order 1 (measured: worst 3.9e-3, mean
/// 4e-4; a half step at 1 is 9.8e-4).
#[test]
fn fp16_minilm_matches_onnxruntime() {
    matches_onnxruntime("minilm/model-fp16", 1e-2, 1e-3, |model, target| {
        // Its weights go up (as f32) for the products on a GPU.
        if target == Target::Gpu {
            assert!(model.device_bytes() >= PRODUCTS);
        }
    });
}

/// `{stem}.onnx` on the CPU and loaded for the GPU gives the
/// `last_hidden_state` onnxruntime gave in `{stem}.reference.json`, within
/// `worst` and `mean` absolute differences; `check` looks at each model
/// loaded.
fn matches_onnxruntime(
    stem: &str,
    worst_allowed: f32,
    mean_allowed: f32,
    check: impl Fn(&dyn weft_nn::Model, Target),
) {
    let bytes = std::fs::read(model_file(&format!("{stem}.onnx"))).unwrap();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_file(&format!("{stem}.reference.json"))).unwrap(),
    )
    .unwrap();
    let engine = Engine::default();
    for target in [Target::Cpu, Target::Gpu] {
        let model = engine.load(&bytes, Encoding::Onnx, target).unwrap();
        check(&*model, target);
        // Two sequences on the CPU, the short one on llvmpipe.
        let cases = reference["cases"].as_array().unwrap();
        let cases = if target == Target::Gpu {
            &cases[..1]
        } else {
            &cases[..]
        };
        for case in cases {
            let input = ids(&case["input_ids"]);
            let shape = vec![1, input.len()];
            let inputs = [
                ("input_ids".into(), Tensor::from_i64(shape.clone(), &input)),
                (
                    "attention_mask".into(),
                    Tensor::from_i64(shape.clone(), &vec![1; input.len()]),
                ),
                (
                    "token_type_ids".into(),
                    Tensor::from_i64(shape, &vec![0; input.len()]),
                ),
            ];
            let got = model.session().compute(&inputs).unwrap();
            assert_eq!(got[0].1.shape, vec![1, input.len(), 384]);
            // (The fp16 model's output is fp16, as converters leave it.)
            let half = stem.ends_with("fp16");
            assert_eq!(got[0].1.ty == weft_nn::ElementType::F16, half, "{stem}");
            let got = got[0].1.to_f32().unwrap();
            let want: Vec<f32> = case["last_hidden_state"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(got.len(), want.len(), "the reference's length");
            let diffs: Vec<f32> = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).collect();
            let worst = diffs.iter().copied().fold(0.0, f32::max);
            let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
            eprintln!(
                "{stem}, {target:?}, {} tokens: worst |diff| {worst:.1e}, mean {mean:.1e}",
                input.len()
            );
            assert!(
                worst <= worst_allowed,
                "worst |diff| {worst} vs onnxruntime"
            );
            assert!(mean <= mean_allowed, "mean |diff| {mean} vs onnxruntime");
        }
    }
}
