//! Every user-facing failure answers with the right status and a JSON error,
//! and a misbehaving stage never disturbs a well-behaved one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use weft_e2e::{TestDaemon, component};

async fn put(d: &TestDaemon, path: &str, body: Vec<u8>) -> (u16, Value) {
    let r = d.http.put(d.url(path)).body(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_rejected_and_leave_nothing_behind() {
    let d = TestDaemon::start_with(|c| c.max_body = 1 << 20).await;

    let (status, body) = put(&d, "/v1/stages/junk", b"definitely not wasm".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "not_a_component");
    assert!(
        body["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("wasm32-wasip2")
    );

    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let (status, body) = put(&d, "/v1/stages/core", core_module).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("core Wasm module"),
        "{body}"
    );

    let (status, body) = put(&d, "/v1/stages/wrong", component("wrongworld.wasm")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "wrong_world");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("init"),
        "names the missing export: {message}"
    );

    let mut truncated = component("normalize.wasm");
    truncated.truncate(truncated.len() / 2);
    let (status, body) = put(&d, "/v1/stages/trunc", truncated).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_component");

    let (status, body) = put(&d, "/v1/stages/Bad%20Name", component("normalize.wasm")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_argument");

    let (status, body) = put(&d, "/v1/stages/q?lang=en", component("normalize.wasm")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_query");

    let r = d
        .http
        .post(d.url("/v1/stages/normalize"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    // The server answers 413 before reading the rest of the body and closes
    // the connection, so this goes last and on its own client.
    let r = reqwest::Client::new()
        .put(d.url("/v1/stages/huge"))
        .body(vec![0u8; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");

    let list: Value = d.get_json("/v1/stages").await;
    assert_eq!(
        list["stages"],
        json!([]),
        "rejected uploads left a stage behind"
    );
    for name in ["junk", "core", "wrong", "trunc", "huge", "q"] {
        let r = d
            .http
            .get(d.url(&format!("/v1/stages/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = d.http.get(d.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_route");

    // A listing takes no query: `?state=running` returned every job.
    for path in ["/v1/jobs?state=running", "/v1/stages?limit=10"] {
        let r = d.http.get(d.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_query", "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("takes no query"),
            "{body}"
        );
    }

    // A path segment the route cannot take is a JSON 400 too (was axum's
    // text/plain).
    for path in ["/v1/stages/%FF", "/v1/jobs/1/blocks/x"] {
        let r = d.http.get(d.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_path", "{path}: {body}");
    }
}

/// Keeps calling `normalize` until stopped; counts successes and failures.
fn steady_caller(d: &TestDaemon, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(usize, usize)> {
    let (http, url) = (d.http.clone(), d.url("/v1/stages/normalize/invoke"));
    tokio::spawn(async move {
        let (ok, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
        while !stop.load(Ordering::Relaxed) {
            let r = http
                .post(&url)
                .header("content-type", "application/json")
                .body(r#"{"text":"Still  HERE"}"#)
                .send()
                .await;
            let good = match r {
                Ok(r) if r.status() == 200 => {
                    r.text().await.unwrap_or_default() == r#"{"text":"still here"}"#
                }
                _ => false,
            };
            if good {
                ok.fetch_add(1, Ordering::Relaxed);
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        (ok.into_inner(), failed.into_inner())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_deadlines_and_memory_limits_hit_only_the_guilty_call() {
    let d = TestDaemon::start_with(|c| {
        c.runtime.deadline = Duration::from_millis(1500);
        c.runtime.memory_limit = 64 << 20;
    })
    .await;
    d.deploy("normalize", "normalize.wasm").await;
    d.deploy("probe", "probe.wasm").await;
    let stop = Arc::new(AtomicBool::new(false));
    let caller = steady_caller(&d, stop.clone());

    let (status, body) = d.invoke("probe", &json!({"op": "trap"})).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "trap");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("probe") && message.contains("deliberate trap"),
        "{message}"
    );
    // Said once (the logged panic and stderr's copy of it said it twice).
    assert_eq!(message.matches("deliberate trap").count(), 1, "{message}");

    let (status, body) = d.invoke("probe", &json!({"op": "spin"})).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "deadline_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains("probe"));

    let (status, body) = d.invoke("probe", &json!({"op": "alloc", "mb": 256})).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "memory_limit");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("64 MiB"),
        "{body}"
    );

    // Within the limit works, and the stage recovered from every failure.
    let (status, body) = d.invoke("probe", &json!({"op": "alloc", "mb": 8})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = d.invoke("probe", &json!({"op": "echo", "n": 1})).await;
    assert_eq!((status, body), (200, json!({"op": "echo", "n": 1})));

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = caller.await.unwrap();
    assert_eq!(
        failed, 0,
        "a well-behaved stage failed while another misbehaved"
    );
    assert!(ok > 0);

    let text = d.get_text("/metrics").await;
    assert!(
        text.contains(r#"weft_stage_traps_total{stage="probe"} 3"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_errors_map_to_statuses() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let (status, body) = d.invoke("probe", &json!({"op": "bad"})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("bad_input"))
    );

    let r = d
        .http
        .post(d.url("/v1/stages/probe/invoke"))
        .body(json!({"op": "retryable"}).to_string())
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");

    let (status, body) = d.invoke("probe", &json!({"op": "fatal"})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (500, json!("stage_failed"))
    );

    let (status, body) = d.invoke("nobody", &json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("stage_not_found"))
    );

    d.deploy_query("picky", "probe.wasm", "config.fail_init=true")
        .await;
    let (status, body) = d.invoke("picky", &json!({"op": "echo"})).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "init_failed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("init refused"),
        "{body}"
    );

    // A misspelt config key was ignored (its default used, silently): the
    // example stages refuse it, and the deploy answer already says so.
    let deployed = d
        .deploy_query("typo", "normalize.wasm", "config.lowercse=false")
        .await;
    let warning = deployed["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("unknown config key `lowercse`: did you mean `lowercase`?"),
        "{deployed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_answers_503_with_retry_after() {
    let d = TestDaemon::start_with(|c| {
        c.runtime.max_instances_per_stage = 1;
        c.runtime.acquire_timeout = Duration::from_millis(200);
        c.runtime.deadline = Duration::from_secs(3);
    })
    .await;
    d.deploy("probe", "probe.wasm").await;
    let spinner = d.spawn_post("/v1/stages/probe/invoke", r#"{"op":"spin"}"#);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = d
        .http
        .post(d.url("/v1/stages/probe/invoke"))
        .header("content-type", "application/json")
        .body(r#"{"op":"echo"}"#)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let retry = r.headers().get("retry-after").cloned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.unwrap(), "1");
    assert_eq!(body["error"]["code"], "busy");
    assert_eq!(spinner.await.unwrap().0, 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_mutating_routes() {
    let d = TestDaemon::start_with(|c| c.token = Some("s3cret".into())).await;
    let (status, body) = put(&d, "/v1/stages/normalize", component("normalize.wasm")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let r = d
        .http
        .put(d.url("/v1/stages/normalize"))
        .bearer_auth("wrong")
        .body(component("normalize.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = d
        .http
        .put(d.url("/v1/stages/normalize"))
        .bearer_auth("s3cret")
        .body(component("normalize.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = d.http.get(d.url("/v1/stages")).send().await.unwrap();
    assert_eq!(r.status(), 200, "reads need no token");
}
