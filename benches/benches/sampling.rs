//! Choosing the next token in the `generate` stage: greedy (an argmax
//! over the vocabulary, the baseline) against temperature sampling and
//! nucleus (top-p) sampling, each over SmolLM2's 49 152 logits, compiled
//! natively from the stage's own `sample.rs`. The guest runs this once
//! per token per caller, between the engine's passes, so with 16 callers
//! on two cores it competes with the model for time.
//!
//! ```text
//! cargo bench -p weft-benches --bench sampling
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../../plugins/generate/src/sample.rs"]
#[allow(dead_code)]
mod sample;

use sample::{Pcg32, Sampling, sample};

/// An LLM-like distribution: a handful of likely tokens well above a long
/// tail spread over 16 nats.
fn logits() -> Vec<f32> {
    let mut rng = Pcg32::new(1);
    (0..49_152)
        .map(|i| {
            let u = rng.next_f32();
            if i % 5000 == 7 {
                18.0 + 4.0 * u
            } else {
                16.0 * u - 6.0
            }
        })
        .collect()
}

fn sampling(c: &mut Criterion) {
    let logits = logits();
    let mut group = c.benchmark_group("sample 49152 logits");
    for (name, temperature, top_p) in [
        ("greedy", 0.0, 1.0),
        ("temperature 0.7", 0.7, 1.0),
        ("temperature 0.7, top_p 0.9", 0.7, 0.9),
    ] {
        let settings = Sampling { temperature, top_p };
        let mut rng = Pcg32::new(7);
        group.bench_function(name, |b| {
            b.iter(|| sample(black_box(&logits), settings, &mut rng))
        });
    }
    group.finish();
}

criterion_group!(benches, sampling);
criterion_main!(benches);
