//! The example stages, deployed and invoked over HTTP.

use serde_json::{Value, json};
use weft_e2e::TestDaemon;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalize_lowercases_unicode_and_collapses_whitespace() {
    let d = TestDaemon::start().await;
    let deployed = d.deploy("normalize", "normalize.wasm").await;
    assert_eq!(deployed["version"], 1);
    assert_eq!(deployed["name"], "normalize");

    let (status, body) = d
        .invoke(
            "normalize",
            &json!({"text": "  ÉCOLE \t Straße\n\nΣΟΦΙΑ  "}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"text": "école straße σοφια"}));

    // Stage-level bad input is a 400 that names the problem.
    let (status, body) = d.invoke("normalize", &json!({"txt": "x"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_input");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("text"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_keeps_running_totals_in_state() {
    let d = TestDaemon::start().await;
    d.deploy("count", "count.wasm").await;
    let (status, first) = d.invoke("count", &json!({"text": "one two three"})).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["words"], 3);
    assert_eq!(first["total_words"], 3);
    let (_, second) = d.invoke("count", &json!({"text": "four five"})).await;
    assert_eq!(second["words"], 2);
    assert_eq!(second["total_words"], 5);
    assert_eq!(second["total_items"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_returns_all_chunks_and_streams_partials_and_progress() {
    let d = TestDaemon::start().await;
    d.deploy_query("chunk", "chunk.wasm", "config.size=2").await;
    let doc = json!({"text": "a b c d e"});
    let (status, body) = d.invoke("chunk", &doc).await;
    assert_eq!(status, 200, "{body}");
    let texts: Vec<_> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].clone())
        .collect();
    assert_eq!(texts, [json!("a b"), json!("c d"), json!("e")]);

    let sse = d
        .http
        .post(d.url("/v1/stages/chunk/invoke"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(doc.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert!(
        sse.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = sse.text().await.unwrap();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut event = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(x) = line.strip_prefix("data:") {
                    data.push_str(x.trim_start());
                }
            }
            (event, serde_json::from_str(&data).unwrap())
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "partial", "progress", "partial", "progress", "partial", "progress", "result"
        ],
        "{text}"
    );
    assert_eq!(events[0].1["text"], "a b");
    assert_eq!(
        events[5].1,
        json!({"done": 3, "total": 3, "message": "chunk 3/3"})
    );
    assert_eq!(events[6].1.as_array().unwrap().len(), 3);

    // Input the stage refuses before it has streamed anything: a 400 with
    // the JSON error, as without a stream (it was a 200 whose only event
    // was the error).
    let refused = d
        .http
        .post(d.url("/v1/stages/chunk/invoke"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_input", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_list_show_redeploy_delete() {
    let d = TestDaemon::start().await;
    d.deploy("normalize", "normalize.wasm").await;
    // Same bytes, same config: same version, 200 not 201.
    let r = d
        .http
        .put(d.url("/v1/stages/normalize"))
        .body(weft_e2e::component("normalize.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v2 = d
        .deploy_query("normalize", "normalize.wasm", "config.lowercase=false")
        .await;
    assert_eq!(v2["version"], 2);
    let (_, body) = d
        .invoke("normalize", &json!({"text": "  KEEP  Case "}))
        .await;
    assert_eq!(
        body,
        json!({"text": "KEEP Case"}),
        "redeploy swaps the pool to v2"
    );

    let list: Value = d.get_json("/v1/stages").await;
    assert_eq!(list["stages"][0]["name"], "normalize");
    assert_eq!(list["stages"][0]["versions"].as_array().unwrap().len(), 2);
    let show: Value = d.get_json("/v1/stages/normalize").await;
    assert_eq!(show["latest"]["config"]["lowercase"], "false");
    assert!(show["instances"]["live"].as_u64().unwrap() >= 1);

    let r = d
        .http
        .delete(d.url("/v1/stages/normalize"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, body) = d.invoke("normalize", &json!({"text": "x"})).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "stage_not_found");
    let r = d
        .http
        .delete(d.url("/v1/stages/normalize"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_over_http_and_through_a_stage() {
    let d = TestDaemon::start().await;
    let r = d
        .http
        .put(d.url("/v1/objects"))
        .body(vec![7u8; 3 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let put: Value = r.json().await.unwrap();
    let id = put["id"].as_str().unwrap().to_string();
    let back = d
        .http
        .get(d.url(&format!("/v1/objects/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(back.bytes().await.unwrap().to_vec(), vec![7u8; 3 << 20]);

    d.deploy("probe", "probe.wasm").await;
    let (status, stored) = d
        .invoke("probe", &json!({"op": "put", "data": "from a stage"}))
        .await;
    assert_eq!(status, 200, "{stored}");
    let sid = stored["id"].as_str().unwrap();
    let raw = d
        .http
        .get(d.url(&format!("/v1/objects/{sid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.text().await.unwrap(), "from a stage");
    let (_, got) = d.invoke("probe", &json!({"op": "get", "id": sid})).await;
    assert_eq!(got["data"], "from a stage");

    let missing = "0".repeat(64);
    let r = d
        .http
        .get(d.url(&format!("/v1/objects/{missing}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = d
        .http
        .get(d.url("/v1/objects/not-an-id"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_argument");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health() {
    let d = TestDaemon::start().await;
    d.deploy("normalize", "normalize.wasm").await;
    d.invoke("normalize", &json!({"text": "A"})).await;
    d.invoke("normalize", &json!({"nope": 1})).await;
    let health: Value = d.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    let text = d.get_text("/metrics").await;
    assert!(
        text.contains(r#"weft_stage_calls_total{stage="normalize",outcome="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"weft_stage_calls_total{stage="normalize",outcome="bad_input"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"weft_stage_call_duration_seconds_count{stage="normalize"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"weft_stage_instances{stage="normalize",state="idle"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"weft_stage_uploads_total{outcome="ok"} 1"#),
        "{text}"
    );
}
