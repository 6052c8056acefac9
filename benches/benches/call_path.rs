//! The in-process call path: one pooled instance of the `normalize` stage on a
//! 1 KiB JSON payload, against the same Rust function called natively (JSON
//! decode + normalise + encode), plus the `probe` echo stage to show the fixed
//! cost of crossing into Wasm. `cargo xtask bench` prints the ratios.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use weft_runtime::Item;

/// ~1 KiB of mixed-case, mixed-script text with irregular whitespace.
fn payload() -> Vec<u8> {
    let words = [
        "Hello",
        "WÖRLD",
        "  straße",
        "ÉCOLE\t",
        "naïve",
        "Σοφία",
        "data\n",
        "Pipeline",
    ];
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 1000 {
        text.push_str(words[i % words.len()]);
        text.push_str(if i % 3 == 0 { "   " } else { " " });
        i += 1;
    }
    json!({ "text": text }).to_string().into_bytes()
}

fn native(payload: &[u8]) -> Vec<u8> {
    let doc: Value = serde_json::from_slice(payload).expect("json");
    let text = normalize::normalize(doc["text"].as_str().expect("text"), true);
    serde_json::to_vec(&json!({ "text": text })).expect("encode")
}

fn call_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let body = payload();
    assert!(
        (1000..1100).contains(&body.len()),
        "payload is {} bytes",
        body.len()
    );
    let item = Item {
        key: None,
        content_type: "application/json".into(),
        payload: body.clone(),
    };

    let _guard = rt.enter();
    let normalize = weft_benches::deploy("normalize", "normalize.wasm");
    let probe = weft_benches::deploy("probe", "probe.wasm");
    let echo = Item {
        key: None,
        content_type: "application/json".into(),
        payload: json!({"op": "echo", "pad": "x".repeat(1000)})
            .to_string()
            .into_bytes(),
    };
    // Same answer both ways, so the comparison is of equal work.
    let out = rt
        .block_on(normalize.pool.invoke(vec![item.clone()], None))
        .expect("wasm call");
    assert_eq!(out[0].payload, native(&body));

    let mut group = c.benchmark_group("call_1kib");
    group.bench_function("native", |b| b.iter(|| native(black_box(&body))));
    group.bench_function("wasm_normalize", |b| {
        b.iter(|| rt.block_on(normalize.pool.invoke(vec![black_box(item.clone())], None)))
    });
    group.bench_function("wasm_echo", |b| {
        b.iter(|| rt.block_on(probe.pool.invoke(vec![black_box(echo.clone())], None)))
    });
    group.finish();
}

criterion_group!(benches, call_path);
criterion_main!(benches);
