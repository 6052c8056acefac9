//! The model registry: uploads checked by weft-nn's readers, versions, and
//! `wasi:nn` `load-by-name` resolving registered models.

use serde_json::{Value, json};
use weft_e2e::TestDaemon;
use weft_nn::fixtures;

async fn upload(d: &TestDaemon, path: &str, bytes: Vec<u8>) -> (u16, Value) {
    let r = d.http.put(d.url(path)).body(bytes).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn models_are_checked_versioned_and_loadable_by_name() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let onnx = fixtures::onnx(&["MatMul", "Add", "Gelu"]);
    let (s, v) = upload(&d, "/v1/models/tiny?encoding=onnx", onnx.clone()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["latest"]["summary"]["ops"]["Gelu"], 1, "{v}");
    assert_eq!(v["latest"]["summary"]["inputs"], json!(["x"]));
    assert_eq!(
        upload(&d, "/v1/models/tiny", onnx).await.0,
        200,
        "same bytes: unchanged"
    );
    let llm = fixtures::decoder();
    let (s, v) = upload(&d, "/v1/models/llm", llm.clone()).await;
    assert_eq!(
        (s, v["latest"]["encoding"].as_str()),
        (201, Some("ggml")),
        "{v}"
    );
    assert_eq!(v["latest"]["summary"]["architecture"], "llama");
    // The CLI uploads too (and prints the summary's tokenizer line).
    {
        use clap::Parser;
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &llm).unwrap();
        let cli = weft::cli::Cli::parse_from([
            "weft",
            "--server",
            &d.url,
            "model",
            "upload",
            "llm",
            file.path().to_str().unwrap(),
        ]);
        weft::cli::run(cli).await.expect("upload via the CLI");
    }
    // A GGUF without a tokenizer the generate stage reads says so.
    let tokenizer = &v["latest"]["summary"]["tokenizer"];
    assert_eq!(tokenizer["object"], Value::Null, "{v}");
    assert!(
        tokenizer["why"]
            .as_str()
            .is_some_and(|w| w.contains("no `tokenizer.ggml.model`")),
        "{v}"
    );

    // Refusals name what is wrong.
    let ternary = fixtures::gguf("llama", &[("blk.0.attn_q.weight", &[256], 35)]);
    // GGUFs whose tensors read but that are not decoders weft-nn runs.
    let jamba = fixtures::gguf("jamba", &[("token_embd.weight", &[32, 8], 0)]);
    let parts = fixtures::gguf("llama", &[("token_embd.weight", &[32, 8], 0)]);
    let cases = [
        ("/v1/models/k", ternary, "`blk.0.attn_q.weight` is TQ2_0"),
        (
            "/v1/models/jamba",
            jamba,
            "GGUF architecture `jamba` is not supported",
        ),
        (
            "/v1/models/parts",
            parts,
            "`llama.embedding_length` is missing",
        ),
        (
            "/v1/models/cut",
            llm[..llm.len() - 7].to_vec(),
            "past the end of the file",
        ),
        ("/v1/models/x?encoding=onnx", b"hello".to_vec(), "ONNX"),
        (
            "/v1/models/x?encoding=onnx",
            llm.clone(),
            "the file is GGUF (it starts with `GGUF`), not ONNX",
        ),
        ("/v1/models/x", Vec::new(), "the request body is empty"),
        (
            "/v1/models/x?encoding=tflite",
            b"hello".to_vec(),
            "not supported",
        ),
        (
            "/v1/models/Bad%20Name",
            fixtures::onnx(&["Relu"]),
            "invalid model name: `Bad Name`",
        ),
    ];
    for (path, bytes, message) in cases {
        let (s, v) = upload(&d, path, bytes).await;
        assert_eq!(s, 400, "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(message),
            "{path}: {v}"
        );
    }
    // Bytes that are neither format, sent without an encoding: the hint
    // names both.
    let (s, v) = upload(&d, "/v1/models/x", b"hello world".to_vec()).await;
    assert_eq!(s, 400, "{v}");
    let hint = v["error"]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("neither GGUF"), "{v}");
    assert_eq!(
        d.get_json("/v1/models").await["models"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // load-by-name finds registered models; unknown names and versions are
    // not-found.
    let (s, v) = upload(&d, "/v1/models/linear", fixtures::onnx_linear()).await;
    assert_eq!(s, 201, "{v}");
    let nn = |name: &str| {
        let body = json!({"op": "nn", "name": name});
        let d = &d;
        async move { d.invoke("probe", &body).await }
    };
    assert_eq!(nn("linear").await.1["loaded"], true);
    assert_eq!(nn("linear@1").await.1["loaded"], true);
    assert_eq!(nn("linear@latest").await.1["loaded"], true);
    assert_eq!(nn("linear@7").await.1["error"], "not-found");
    assert_eq!(nn("nope").await.1["error"], "not-found");
    assert_eq!(nn("llm").await.1["loaded"], true);
    // Deleting a model frees its bytes.
    let object = d.get_json("/v1/models/linear").await["versions"][0]["object"]
        .as_str()
        .unwrap()
        .to_string();
    let stored = d.get_json("/v1/node").await["objects"]["bytes"].clone();
    let r = d
        .http
        .get(d.url(&format!("/v1/objects/{object}")))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 200);
    let r = d
        .http
        .delete(d.url("/v1/models/linear"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(nn("linear").await.1["error"], "not-found");
    let r = d
        .http
        .get(d.url(&format!("/v1/objects/{object}")))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 404);
    let freed = stored.as_u64().unwrap()
        - d.get_json("/v1/node").await["objects"]["bytes"]
            .as_u64()
            .unwrap();
    assert_eq!(freed, fixtures::onnx_linear().len() as u64);
    let r = d.http.get(d.url("/v1/models/linear")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "model_not_found"
    );
}

/// One `nn_compute` through the probe: `(outputs or error, whole answer)`.
async fn compute(d: &TestDaemon, model: &str, inputs: Value) -> Value {
    let body = json!({"op": "nn_compute", "name": model, "inputs": inputs});
    let (status, v) = d.invoke("probe", &body).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn x(shape: &[u32], ty: &str, data: &[f64]) -> Value {
    json!([{"name": "x", "shape": shape, "type": ty, "data": data}])
}

#[tokio::test]
async fn guests_compute_through_wasi_nn_and_bad_tensors_are_errors() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let (s, v) = upload(&d, "/v1/models/linear", fixtures::onnx_linear()).await;
    assert_eq!(s, 201, "{v}");

    // y = x·w + b, two rows.
    let v = compute(&d, "linear", x(&[2, 2], "fp32", &[1.0, 1.0, 0.0, 2.0])).await;
    assert_eq!(v["outputs"][0]["name"], "y", "{v}");
    assert_eq!(v["outputs"][0]["shape"], json!([2, 3]));
    assert_eq!(
        v["outputs"][0]["data"],
        json!([5.5, 6.5, 10.0, 8.5, 9.5, 13.0])
    );

    // Each mistake is a wasi:nn error the guest can read, never a trap.
    let cases = [
        (x(&[1, 3], "fp32", &[1.0, 2.0, 3.0]), "invalid-argument"),
        (x(&[1, 2], "i64", &[1.0, 2.0]), "invalid-argument"),
        // The data does not fill the shape.
        (x(&[4, 2], "fp32", &[1.0, 2.0]), "invalid-argument"),
        (
            json!([{"name": "nope", "shape": [1, 2], "type": "fp32", "data": [1, 2]}]),
            "invalid-argument",
        ),
        (json!([]), "invalid-argument"),
    ];
    for (inputs, code) in cases {
        let v = compute(&d, "linear", inputs.clone()).await;
        assert_eq!(v["error"], code, "{inputs}: {v}");
        assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{v}");
    }
    let v = compute(&d, "missing", x(&[1, 2], "fp32", &[1.0, 1.0])).await;
    assert_eq!(v["error"], "not-found", "{v}");
}

#[tokio::test]
async fn concurrent_computes_on_one_graph_are_batched() {
    // The batch goes as soon as it holds all eight rows. The probe drops
    // its graph resource once it has an execution context: the context
    // keeps the graph loaded, so every guest's `load-by-name` finds the
    // same graph and batch queue (it did not: the guests that loaded at
    // the same moment each got a graph and a queue of their own, and each
    // call here waited out the 10 s alone).
    let d = TestDaemon::start_with(|c| {
        c.nn_batch.max_batch = 8;
        c.nn_batch.max_wait = std::time::Duration::from_secs(10);
    })
    .await;
    d.deploy("probe", "probe.wasm").await;
    upload(&d, "/v1/models/linear", fixtures::onnx_linear()).await;
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let body = json!({"op": "nn_compute", "name": "linear",
                "inputs": x(&[1, 2], "fp32", &[f64::from(i), 1.0])});
            d.spawn_post("/v1/stages/probe/invoke", body.to_string())
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let (status, text) = call.await.unwrap();
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let i = i as f64;
        // Each caller gets its own row back: x = [i, 1].
        assert_eq!(
            v["outputs"][0]["data"],
            json!([i + 4.5, 2.0 * i + 4.5, 3.0 * i + 7.0]),
            "{v}"
        );
        assert_eq!(v["outputs"][0]["shape"], json!([1, 3]));
    }
    let metrics = d.get_text("/metrics").await;
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let (computes, calls) = (
        counter("weft_nn_computes_total"),
        counter("weft_nn_engine_calls_total"),
    );
    assert_eq!(computes, 8.0);
    assert_eq!(calls, 1.0, "{calls} engine calls for {computes} computes");
}
