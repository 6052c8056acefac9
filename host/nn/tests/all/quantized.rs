//! all-MiniLM-L6-v2 quantised by onnxruntime's `quantize_dynamic` (int8
//! weights, `DynamicQuantizeLinear` + `MatMulInteger`: what a user
//! shrinking a model for the CPU uploads) gives onnxruntime's outputs, on
//! the CPU and loaded for the GPU. `cargo xtask models` writes the model
//! and onnxruntime's outputs for it.

use weft_nn::{Encoding, Engine, Target, Tensor};

use crate::support::{ids, model_file};

/// Activations are quantised per call from the float values before each
/// product, so a float that differs from onnxruntime's in its last bit
/// can round to the next of 256 steps there; the outputs (norms of
/// order 1) then differ by a few thousandths at a few positions.
const TOLERANCE: f32 = 5e-2;

#[test]
fn int8_minilm_matches_onnxruntime() {
    let bytes = std::fs::read(model_file("minilm/model-int8.onnx")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_file("minilm/model-int8.reference.json")).unwrap(),
    )
    .unwrap();
    let engine = Engine::default();
    for target in [Target::Cpu, Target::Gpu] {
        let model = engine.load(&bytes, Encoding::Onnx, target).unwrap();
        // The int8 products' weights are widened to f32 at load: 6 layers
        // of 4 x 384 x 384 and 2 x 384 x 1536.
        let products = 6 * (4 * 384 * 384 + 2 * 384 * 1536) * 4;
        if target == Target::Gpu {
            assert!(model.device_bytes() >= products as u64);
        }
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
            let got = got[0].1.to_f32().unwrap();
            let want: Vec<f32> = case["last_hidden_state"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let diffs: Vec<f32> = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).collect();
            let worst = diffs.iter().copied().fold(0.0, f32::max);
            let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
            eprintln!(
                "{target:?}, {} tokens: worst |diff| {worst:.1e}, mean {mean:.1e}",
                input.len()
            );
            assert!(worst <= TOLERANCE, "worst |diff| {worst} vs onnxruntime");
            assert!(mean <= 1e-3, "mean |diff| {mean} vs onnxruntime");
        }
    }
}
