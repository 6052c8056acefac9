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
    let llm = fixtures::gguf(
        "llama",
        &[
            ("token_embd.weight", &[64, 8], 3),
            ("output_norm.weight", &[64], 0),
        ],
    );
    let (s, v) = upload(&d, "/v1/models/llm", llm.clone()).await;
    assert_eq!(
        (s, v["latest"]["encoding"].as_str()),
        (201, Some("ggml")),
        "{v}"
    );
    assert_eq!(v["latest"]["summary"]["architecture"], "llama");

    // Refusals name what is wrong.
    let kq = fixtures::gguf("llama", &[("blk.0.attn_q.weight", &[256], 14)]);
    let cases = [
        ("/v1/models/k", kq, "`blk.0.attn_q.weight` is Q6_K"),
        (
            "/v1/models/cut",
            llm[..llm.len() - 7].to_vec(),
            "past the end of the file",
        ),
        ("/v1/models/x?encoding=onnx", b"hello".to_vec(), "ONNX"),
        (
            "/v1/models/x?encoding=tflite",
            b"hello".to_vec(),
            "not supported",
        ),
        ("/v1/models/Bad%20Name", fixtures::onnx(&["Relu"]), "name"),
    ];
    for (path, bytes, message) in cases {
        let (s, v) = upload(&d, path, bytes).await;
        assert_eq!(s, 400, "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(message),
            "{path}: {v}"
        );
    }
    assert_eq!(
        d.get_json("/v1/models").await["models"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // load-by-name finds registered models (this node has no engine yet, so
    // loading answers unsupported-operation); unknown names are not-found.
    let nn = |name: &str| {
        let body = json!({"op": "nn", "name": name});
        let d = &d;
        async move { d.invoke("probe", &body).await }
    };
    assert_eq!(nn("tiny").await.1["error"], "unsupported-operation");
    assert_eq!(nn("tiny@1").await.1["error"], "unsupported-operation");
    assert_eq!(nn("tiny@latest").await.1["error"], "unsupported-operation");
    assert_eq!(nn("tiny@7").await.1["error"], "not-found");
    assert_eq!(nn("nope").await.1["error"], "not-found");
    let r = d
        .http
        .delete(d.url("/v1/models/tiny"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(nn("tiny").await.1["error"], "not-found");
    let r = d.http.get(d.url("/v1/models/tiny")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "model_not_found"
    );
}
