//! Real models over HTTP: the `embed` stage on all-MiniLM-L6-v2 (ONNX)
//! gives onnxruntime's embeddings, and the `generate` stage on
//! SmolLM2-135M-Instruct (GGUF) streams llama.cpp's greedy answer token by
//! token. References: `host/nn/tests/data`, made by `scripts/reference.py`.

use serde_json::{Value, json};
use weft_e2e::{TestDaemon, model_file};

mod archs;

fn reference(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../host/nn/tests/data")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn put(d: &TestDaemon, path: &str, file: &str) -> Value {
    let bytes = std::fs::read(model_file(file)).unwrap();
    let r = d.http.put(d.url(path)).body(bytes).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// SSE frames of a response body: (event, data).
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let (mut event, mut data) = (String::new(), String::new());
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(x) = line.strip_prefix("data:") {
                    data.push_str(x.trim_start());
                }
            }
            (event, serde_json::from_str(&data).unwrap_or(Value::Null))
        })
        .collect()
}

/// Invokes `stage` with `body`, streamed: the ids of its `partial` events
/// and its result (the first item's).
async fn stream(d: &TestDaemon, stage: &str, body: &Value) -> (Vec<Value>, Value) {
    let r = d
        .http
        .post(d.url(&format!("/v1/stages/{stage}/invoke")))
        .header("accept", "text/event-stream")
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{stage}");
    let frames = events(&r.text().await.unwrap());
    let ids = frames
        .iter()
        .filter(|(e, _)| e == "partial")
        .map(|(_, v)| v["id"].clone())
        .collect();
    let (_, result) = frames.last().unwrap();
    let result = if result.is_array() {
        &result[0]
    } else {
        result
    };
    (ids, result.clone())
}

/// The cosines of `embed`'s embeddings of `sentences` with MiniLM variant
/// `variant` (`minilm/model-{variant}.onnx`, uploaded and deployed here)
/// to the f32 model's reference embeddings.
async fn variant_cosines(
    d: &TestDaemon,
    vocab: &str,
    variant: &str,
    sentences: &[Value],
) -> Vec<f64> {
    let model = format!("minilm-{variant}");
    put(
        d,
        &format!("/v1/models/{model}?encoding=onnx"),
        &format!("minilm/model-{variant}.onnx"),
    )
    .await;
    let stage = format!("embed-{variant}");
    d.deploy_query(
        &stage,
        "embed.wasm",
        &format!("config.vocab={vocab}&config.model={model}"),
    )
    .await;
    let mut cosines = Vec::new();
    for s in sentences {
        let (status, v) = d.invoke(&stage, &json!({"text": s["text"]})).await;
        assert_eq!(status, 200, "{v}");
        let cosine: f64 = v["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .zip(s["embedding"].as_array().unwrap())
            .map(|(g, w)| g.as_f64().unwrap() * w.as_f64().unwrap())
            .sum();
        eprintln!(
            "{variant} vs f32 embedding of {}: cosine {cosine:.6}",
            s["text"]
        );
        cosines.push(cosine);
    }
    cosines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_matches_onnxruntime_over_http() {
    let d = TestDaemon::start().await;
    put(&d, "/v1/models/minilm?encoding=onnx", "minilm/model.onnx").await;
    let vocab = put(&d, "/v1/objects", "minilm/vocab.txt").await;
    let vocab = vocab["id"].as_str().unwrap();
    d.deploy_query("embed", "embed.wasm", &format!("config.vocab={vocab}"))
        .await;
    let reference = reference("minilm_reference.json");
    let sentences = reference["sentences"].as_array().unwrap();
    assert!(sentences.len() >= 8);
    let mut worst = 0f64;
    for s in sentences {
        let (status, v) = d.invoke("embed", &json!({"text": s["text"]})).await;
        assert_eq!(status, 200, "{v}");
        let got = v["embedding"].as_array().unwrap();
        let want = s["embedding"].as_array().unwrap();
        assert_eq!(got.len(), 384);
        assert_eq!(v["tokens"], s["input_ids"].as_array().unwrap().len());
        assert_eq!(v["truncated"], false, "{v}");
        for (g, w) in got.iter().zip(want) {
            worst = worst.max((g.as_f64().unwrap() - w.as_f64().unwrap()).abs());
        }
    }
    assert!(
        worst <= 1e-4,
        "max abs difference from onnxruntime: {worst}"
    );

    // The same model quantised to int8 by onnxruntime's quantize_dynamic
    // (what a user shrinking it for the CPU uploads) serves too. Its
    // embeddings are int8's distance from the f32 model's: onnxruntime's
    // own run of it gives cosines of 0.963-0.966 for these sentences
    // (weft-nn's tests match onnxruntime's int8 outputs themselves).
    for cosine in variant_cosines(&d, vocab, "int8", &sentences[..3]).await {
        assert!(
            (0.95..0.99).contains(&cosine),
            "int8 embedding's cosine to f32's: {cosine}"
        );
    }
    // The same model with every float in fp16, its output too (what
    // onnxconverter-common makes of it for a GPU): the stage reads the
    // half output, and its embeddings are the f32 model's within half
    // precision.
    for cosine in variant_cosines(&d, vocab, "fp16", &sentences[..3]).await {
        assert!(
            cosine > 0.9995,
            "fp16 embedding's cosine to f32's: {cosine}"
        );
    }

    // A text past `max_tokens` (128) is cut, and the answer says so.
    let long = "word ".repeat(300);
    let (status, v) = d.invoke("embed", &json!({ "text": long })).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["tokens"].as_u64(), &v["truncated"]),
        (Some(128), &json!(true)),
        "{v}"
    );
    // A row's other fields go through (its `id`), its text does not.
    let (status, v) = d
        .invoke(
            "embed",
            &json!({"text": "a cat", "id": "row-7", "tokens": 1}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["id"], &v["tokens"], v.get("text")),
        (&json!("row-7"), &json!(4), None),
        "{v}"
    );

    // A bad item fails alone with a message that says what to send.
    let (status, v) = d.invoke("embed", &json!({"txt": "typo"})).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("text"),
        "{v}"
    );

    // The example pipeline (normalize -> embed, batched) behind POST /embed,
    // online and as a batch job over a dataset. These sentences are
    // lower-cased by both normalize and the uncased tokenizer, so their
    // embeddings are the reference ones.
    d.deploy("normalize", "normalize.wasm").await;
    let spec = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pipelines/embed.toml"),
    )
    .unwrap();
    crate::jobs::apply(&d, "embed", &spec).await;
    let close = |got: &Value, want: &Value| {
        let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|(g, w)| (g.as_f64().unwrap() - w.as_f64().unwrap()).abs() <= 1e-4)
    };
    let (status, v, _) = d
        .post("/embed", &json!({"text": sentences[0]["text"]}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(close(&v["embedding"], &sentences[0]["embedding"]), "{v}");

    let corpus: String = (0..40)
        .map(|i| format!("{}\n", json!({"text": sentences[i % 2]["text"]})))
        .collect();
    let (status, v) = crate::jobs::dataset(&d, "name=corpus&format=jsonl", corpus).await;
    assert_eq!(status, 201, "{v}");
    let (status, v, _) = crate::jobs::submit(
        &d,
        &json!({"kind": "batch", "pipeline": "embed", "dataset": "corpus"}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let job = crate::jobs::finished(&d, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let output = d.get_text(&format!("/v1/jobs/{id}/output")).await;
    let rows = crate::jobs::lines(&output);
    assert_eq!(rows.len(), 40);
    for (i, row) in rows.iter().enumerate() {
        assert!(
            close(&row["embedding"], &sentences[i % 2]["embedding"]),
            "row {i}: {row}"
        );
    }
}

/// `--nn-device gpu`: registry models run their weight products on the
/// node's GPU (llvmpipe in CI) and give the same embeddings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_on_the_gpu_matches_onnxruntime() {
    let d = TestDaemon::start_with(|c| {
        c.nn_batch.registry_target = weft_runtime::ExecutionTarget::Gpu;
    })
    .await;
    put(&d, "/v1/models/minilm?encoding=onnx", "minilm/model.onnx").await;
    let vocab = put(&d, "/v1/objects", "minilm/vocab.txt").await;
    let vocab = vocab["id"].as_str().unwrap();
    d.deploy_query("embed", "embed.wasm", &format!("config.vocab={vocab}"))
        .await;
    let reference = reference("minilm_reference.json");
    let s = &reference["sentences"][0];
    let (status, v) = d.invoke("embed", &json!({"text": s["text"]})).await;
    assert_eq!(status, 200, "{v}");
    let worst = v["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .zip(s["embedding"].as_array().unwrap())
        .map(|(g, w)| (g.as_f64().unwrap() - w.as_f64().unwrap()).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-4,
        "max abs difference from onnxruntime: {worst}"
    );
    let metrics = d.get_text("/metrics").await;
    let device_bytes = metric(&metrics, "weft_nn_device_bytes");
    assert!(
        device_bytes > 40 << 20,
        "MiniLM's weights are on the GPU: {device_bytes}"
    );
    // Its six layers ran there, read back once (other tests' calls share
    // the process's GPU and its counters, so only this much is exact).
    assert!(
        metric(&metrics, "weft_gpu_round_trips_total") >= 1,
        "{metrics}"
    );
    // Where those submissions spent their time, host and device.
    assert!(
        metric(&metrics, "weft_gpu_dispatches_total") >= 100,
        "{metrics}"
    );
    for timed in [
        "weft_gpu_record_seconds_total",
        "weft_gpu_wait_seconds_total",
    ] {
        assert!(metric_f64(&metrics, timed) > 0.0, "{timed}: {metrics}");
    }
}

/// Concurrent generations share the decoder's passes (their calls join, each
/// on its own KV cache) and each still gets llama.cpp's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_generations_join_passes_and_answer_as_alone() {
    let d = TestDaemon::start().await;
    deploy_generate(&d).await;
    let reference = reference("smollm2_reference.json");
    let france = &reference["prompts"][0];
    let body = json!({"prompt": france["question"]});
    let calls: Vec<_> = (0..3).map(|_| d.invoke("generate", &body)).collect();
    for (status, v) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["text"], france["text"], "{v}");
    }
    let metrics = d.get_text("/metrics").await;
    let counter = |name: &str| metric(&metrics, name);
    // 3 x (the prompt + 7 tokens) computes, in fewer passes.
    let (computes, passes) = (
        counter("weft_nn_computes_total"),
        counter("weft_nn_engine_calls_total"),
    );
    assert_eq!(computes, 24, "{metrics}");
    assert!(passes < computes, "no call joined another: {metrics}");
}

/// `--nn-device gpu`: the `generate` stage's decoder runs its forward passes
/// on the node's GPU (llvmpipe in CI) and gives llama.cpp's answer; its
/// weights and its sessions' caches show in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_on_the_gpu_answers_as_llama_cpp() {
    let d = TestDaemon::start_with(|c| {
        c.nn_batch.registry_target = weft_runtime::ExecutionTarget::Gpu;
        // The GPU is llvmpipe here: ~0.6-1.2 s a token on two busy cores,
        // past the default 30 s for the whole answer on a slow day.
        c.runtime.deadline = std::time::Duration::from_secs(180);
    })
    .await;
    deploy_generate(&d).await;
    let reference = reference("smollm2_reference.json");
    let france = &reference["prompts"][0];
    let (status, v) = d
        .invoke("generate", &json!({"prompt": france["question"]}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["text"], france["text"], "{v}");
    assert_eq!(v["finish_reason"], "stop");
    let metrics = d.get_text("/metrics").await;
    let gauge = |name: &str| metric(&metrics, name);
    // SmolLM2's weights in their Q4_1 and Q8_0 blocks: 112 MB (538 MB
    // as f32).
    let weights = gauge("weft_nn_device_bytes");
    assert!((100 << 20..200 << 20).contains(&weights), "{metrics}");
    gauge("weft_gpu_work_bytes");
}

/// The value of the unlabelled metric `name` in a `/metrics` page.
fn metric(metrics: &str, name: &str) -> u64 {
    metric_f64(metrics, name) as u64
}

fn metric_f64(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .parse()
        .unwrap()
}

/// Uploads SmolLM2, deploys the `generate` stage on it with the tokenizer
/// the upload extracted from the GGUF, and returns the tokenizer's object
/// id. The extracted tokenizer is the one gguf-py reads from the file
/// (`scripts/models.py`'s smollm2-tokenizer.json), field for field.
async fn deploy_generate(d: &TestDaemon) -> String {
    let model = put(
        d,
        "/v1/models/smollm2?encoding=ggml",
        "smollm2-135m-instruct.gguf",
    )
    .await;
    let tokenizer = model["latest"]["summary"]["tokenizer"]["object"]
        .as_str()
        .unwrap_or_else(|| panic!("no tokenizer object in {}", model["latest"]["summary"]))
        .to_string();
    let ours: Value = serde_json::from_slice(
        &d.http
            .get(d.url(&format!("/v1/objects/{tokenizer}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let gguf_py: Value =
        serde_json::from_slice(&std::fs::read(model_file("smollm2-tokenizer.json")).unwrap())
            .unwrap();
    assert_eq!(ours, gguf_py, "the tokenizer extracted at upload");
    d.deploy_query(
        "generate",
        "generate.wasm",
        &format!("config.tokenizer={tokenizer}"),
    )
    .await;
    tokenizer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_streams_llama_cpps_answer_over_http() {
    let d = TestDaemon::start().await;
    let tokenizer = deploy_generate(&d).await;
    let tokenizer = tokenizer.as_str();
    let reference = reference("smollm2_reference.json");
    let france = &reference["prompts"][0];
    assert_eq!(france["question"], "What is the capital of France?");

    let r = d
        .http
        .post(d.url("/v1/stages/generate/invoke"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(json!({"prompt": france["question"]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let frames = events(&text);
    let tokens: Vec<&Value> = frames
        .iter()
        .filter(|(e, _)| e == "partial")
        .map(|(_, v)| v)
        .collect();
    let ids: Vec<Value> = tokens.iter().map(|t| t["id"].clone()).collect();
    let expected = france["generated_ids"].as_array().unwrap();
    // Every token but the end-of-turn one is streamed, in order.
    assert_eq!(ids, expected[..expected.len() - 1], "{text}");
    let streamed: String = tokens
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, france["text"]);
    let (last, result) = frames.last().unwrap();
    assert_eq!(last, "result", "{text}");
    let result = if result.is_array() {
        &result[0]
    } else {
        result
    };
    assert_eq!(result["text"], france["text"]);
    assert_eq!(result["finish_reason"], "stop");
    assert_eq!(
        result["prompt_tokens"],
        france["prompt_ids"].as_array().unwrap().len()
    );

    // max_tokens cuts the answer short.
    let (status, v) = d
        .invoke(
            "generate",
            &json!({"prompt": france["question"], "max_tokens": 3}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["tokens"].as_u64(), v["finish_reason"].as_str()),
        (Some(3), Some("length"))
    );
    assert_eq!(v["text"], "The capital of");
    // A near miss of `max_tokens` is a 400 naming the field meant, not a
    // default-length answer; a field of the caller's own passes.
    let (status, v) = d
        .invoke("generate", &json!({"prompt": "hi", "max_token": 3}))
        .await;
    assert_eq!(status, 400, "{v}");
    let why = v["error"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("did you mean `max_tokens`?"), "{v}");
    let body = json!({"prompt": france["question"], "max_tokens": 3, "id": 7});
    let (status, v) = d.invoke("generate", &body).await;
    assert_eq!((status, v["tokens"].as_u64()), (200, Some(3)), "{v}");

    // The example chat pipeline streams the same answer from POST /chat.
    let spec = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pipelines/chat.toml"),
    )
    .unwrap();
    crate::jobs::apply(&d, "chat", &spec).await;
    let r = d
        .http
        .post(d.url("/chat"))
        .header("content-type", "application/json")
        .body(json!({"prompt": france["question"]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let chat = events(&r.text().await.unwrap());
    let streamed: String = chat
        .iter()
        .filter(|(e, _)| e == "partial")
        .map(|(_, v)| v["token"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, france["text"]);

    // A stage pointed at a model that is not registered fails clearly:
    // its deploy says so at once (still deployed: the model may come
    // after it), and so do its calls.
    let deployed = d
        .deploy_query(
            "generate-missing",
            "generate.wasm",
            &format!("config.tokenizer={tokenizer}&config.model=nope"),
        )
        .await;
    let warning = deployed["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("did not start") && warning.contains("not-found"),
        "{deployed}"
    );
    let (status, v) = d.invoke("generate-missing", &json!({"prompt": "hi"})).await;
    assert!(status >= 400, "{v}");
    assert!(v.to_string().contains("not-found"), "{v}");

    // So does one pointed at a model that is not a decoder.
    let r = d
        .http
        .put(d.url("/v1/models/linear"))
        .body(weft_nn::fixtures::onnx_linear())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    d.deploy_query(
        "generate-encoder",
        "generate.wasm",
        &format!("config.tokenizer={tokenizer}&config.model=linear"),
    )
    .await;
    let (status, v) = d.invoke("generate-encoder", &json!({"prompt": "hi"})).await;
    assert!(status >= 400, "{v}");
    assert!(
        v.to_string().contains("is it a decoder LLM (a GGUF)"),
        "{v}"
    );

    // The model the `generate` instances hold loaded is not deleted from
    // under them, unless asked to be.
    let (status, v) = d.delete("/v1/models/smollm2").await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "model_in_use", "{v}");
    assert!(
        v["error"]["hint"].as_str().unwrap().contains("?force=true"),
        "{v}"
    );
    assert_eq!(d.delete("/v1/models/smollm2?force=true").await.0, 204);
}

/// Calls actor `actor` with `body`, expecting 200.
async fn call(d: &TestDaemon, actor: &str, body: Value) -> Value {
    let (status, v, _) = d.post(&format!("/v1/actors/{actor}/call"), &body).await;
    assert_eq!(status, 200, "{body}: {v}");
    v
}

/// The `generate` stage as a chat-session actor (config `session=true`): each
/// call is the next turn, the prompt carries the conversation, which survives a
/// restart, is bounded by `history_tokens` and goes with a reset.
///
/// SmolLM2-135M is too small to answer "What is my name?" with "Ada" (greedily
/// it says something else), so the checks are on what the model is sent:
/// `prompt_tokens`, against a session that drops the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_session_actor_keeps_the_conversation() {
    let mut d = TestDaemon::start().await;
    deploy_generate(&d).await;
    let create =
        |name: &str, config: Value| json!({"name": name, "stage": "generate", "config": config});
    // The README's example, with shorter replies.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/actors/chat-session.json");
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        (&spec["name"], &spec["stage"]),
        (&json!("chat-1"), &json!("generate"))
    );
    spec["config"]["max_tokens"] = json!("16");
    let (status, v, _) = d.post("/v1/actors", &spec).await;
    assert_eq!(status, 201, "{v}");
    let tokens = |v: &Value, key: &str| v[key].as_u64().unwrap();
    let (intro, question) = (
        "My name is Ada. Reply with one word: OK.",
        "What is my name?",
    );

    let first = call(&d, "chat-1", json!({ "message": intro })).await;
    assert_eq!(
        (&first["turn"], &first["history_turns"]),
        (&json!(1), &json!(1)),
        "{first}"
    );
    assert!(
        first["text"].as_str().is_some_and(|t| !t.is_empty()),
        "{first}"
    );
    let second = call(&d, "chat-1", json!({ "message": question })).await;
    assert_eq!(
        (&second["turn"], &second["history_turns"]),
        (&json!(2), &json!(2)),
        "{second}"
    );

    // A session whose budget holds the first turn but no history: the same
    // first answer, then the question alone.
    let budget = tokens(&first, "prompt_tokens") + 16 + 1;
    let config =
        json!({"session": "true", "max_tokens": "16", "history_tokens": budget.to_string()});
    let (status, v, _) = d.post("/v1/actors", &create("chat-2", config)).await;
    assert_eq!(status, 201, "{v}");
    let again = call(&d, "chat-2", json!({ "message": intro })).await;
    assert_eq!(
        (&again["text"], &again["prompt_tokens"]),
        (&first["text"], &first["prompt_tokens"])
    );
    let alone = call(&d, "chat-2", json!({ "message": question })).await;
    assert_eq!(
        (&alone["turn"], &alone["history_turns"]),
        (&json!(2), &json!(1)),
        "{alone}"
    );
    // chat-1 sent the first exchange with the question: more than the question alone.
    assert!(
        tokens(&second, "prompt_tokens")
            > tokens(&first, "prompt_tokens") + tokens(&alone, "prompt_tokens"),
        "first {first}\nsecond {second}\nalone {alone}"
    );

    // The conversation survives a restart; the reply streams as before.
    d.restart().await;
    let r = d
        .http
        .post(d.url("/v1/actors/chat-1/call"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(json!({"message": "Thank you."}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let frames = events(&r.text().await.unwrap());
    let streamed: String = frames
        .iter()
        .filter(|(e, _)| e == "partial")
        .map(|(_, v)| v["token"].as_str().unwrap())
        .collect();
    let (last, third) = frames.last().unwrap();
    assert_eq!(last, "result");
    let third = if third.is_array() { &third[0] } else { third };
    assert_eq!(third["text"], streamed);
    assert_eq!(
        (&third["turn"], &third["history_turns"]),
        (&json!(3), &json!(3)),
        "{third}"
    );
    assert!(
        tokens(third, "prompt_tokens")
            > tokens(&second, "prompt_tokens") + tokens(&second, "tokens"),
        "{third}"
    );

    // A request a session refuses is a 400; a reset starts over.
    let bad = json!({"messages": [{"role": "user", "content": "hi"}]});
    let (status, v, _) = d.post("/v1/actors/chat-1/call", &bad).await;
    assert_eq!(status, 400, "{v}");
    let reset = call(&d, "chat-1", json!({"reset": true})).await;
    assert_eq!(reset, json!({"reset": true, "turn": 0}));
    let fresh = call(&d, "chat-1", json!({ "message": question })).await;
    assert_eq!(
        (&fresh["turn"], &fresh["prompt_tokens"]),
        (&json!(1), &alone["prompt_tokens"])
    );
}
