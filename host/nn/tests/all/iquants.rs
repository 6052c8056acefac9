//! The i-quants (llama.cpp's `IQ*` files), each against llama.cpp on a
//! tiny random Llama of `scripts/models.py`'s, on the CPU and on the GPU:
//! IQ4_NL and IQ4_XS, and the lattice ones, IQ1_S to IQ3_S. Their weights
//! are transcoded to Q8_0 at load (`quant/transcode.rs`).

use weft_nn::{Encoding, Engine, Placement, Target};

use crate::archs::{matches_llama_cpp_within, tiny};

/// A Llama in the i-quants: IQ4_NL products (transcoded to Q8_0 exactly)
/// and IQ4_XS down products (each 32's scale rounded to f16), on the CPU
/// and on the GPU. Looser than the f32 families (`archs.rs`): llama.cpp multiplies IQ4_XS
/// weights by activations rounded to 8 bits per 256 (`q8_K`), where ours
/// are rounded per 32, and the GPU's not at all (measured: 1.1e-2 of the
/// best logit on either; with IQ4_NL down products too, 2e-4 on the CPU,
/// whose rounding is then llama.cpp's, and 9e-3 on the GPU).
#[test]
fn iq4_nl_and_iq4_xs_weights_match_llama_cpp() {
    on_both_within("iq4", 2e-2);
}

/// A Llama whose down products are each of the lattice i-quants in turn
/// (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M: random codebook
/// entries, signs and scales), on the CPU and on the GPU. As loose as the
/// IQ4_XS model's, for its reason, and because IQ2_XS's, IQ2_S's and
/// IQ1_M's 16-value scales are requantised to one per 32 (measured: 2.4e-2
/// of the best logit on the CPU, 2.1e-2 on the GPU; a lattice entry's
/// shift or a sub-block's scale read wrong fails it).
#[test]
fn lattice_i_quant_weights_match_llama_cpp() {
    on_both_within("iq2", 4e-2);
}

/// The model `name` against llama.cpp on the CPU and on the GPU, within
/// `tolerance` of the best logit.
fn on_both_within(name: &str, tolerance: f64) {
    let (case, bytes) = tiny(name);
    let engine = Engine::default();
    for target in [Target::Cpu, Target::Gpu] {
        let model = engine.load(&bytes, Encoding::Ggml, target).unwrap();
        assert_eq!(
            matches!(model.placement(), Placement::Gpu(_)),
            target == Target::Gpu
        );
        let worst = matches_llama_cpp_within(tolerance, name, &model, &case);
        eprintln!("{name} on {target:?}: logits within {worst:.2e} (of the best) of llama.cpp's");
    }
}
