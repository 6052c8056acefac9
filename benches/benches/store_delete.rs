//! What freeing objects costs a deletion: deleting a model (1 MiB of
//! bytes) frees them in the deleting transaction after looking through the
//! records that may name an object (job blocks through their index of the
//! objects they name). Measured in an empty store (the baseline) and in
//! stores keeping the output of 1 000 and 10 000 job blocks, each with the
//! model put back first.
//!
//! ```text
//! cargo bench -p weft-benches --bench store_delete
//! ```

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use weft_store::{BlockCommit, Store};

/// A store in `dir` keeping `blocks` committed job blocks (100 a job).
fn store(dir: &tempfile::TempDir, blocks: u32) -> Store {
    let store = Store::open(dir.path().join("db")).unwrap();
    for job in 0..blocks.div_ceil(100) {
        let rec = store.create_job("batch", "{}", 100, 100).unwrap();
        for index in 0..100.min(blocks - job * 100) {
            let commit = BlockCommit {
                rows_in: 1,
                rows_out: 1,
                failed: 0,
                output: format!("{{\"job\":{job},\"block\":{index}}}\n").into_bytes(),
                errors: Vec::new(),
            };
            store.commit_block(rec.id, index, &commit).unwrap();
        }
    }
    store
}

fn delete_model(c: &mut Criterion) {
    let weights: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let mut group = c.benchmark_group("delete a 1 MiB model");
    group.sample_size(20);
    for blocks in [0, 1_000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, blocks);
        group.bench_function(format!("{blocks} job blocks kept"), |b| {
            b.iter_batched(
                || store.put_model("m", "onnx", &weights, "").unwrap(),
                |_| assert!(store.delete_model("m").unwrap()),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, delete_model);
criterion_main!(benches);
