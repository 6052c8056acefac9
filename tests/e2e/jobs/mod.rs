//! Datasets and jobs: streamed uploads, batch jobs over datasets (order,
//! completeness, failures, cancel, resume), async invoke jobs with events,
//! the CLI, and every way a request can be wrong.

mod batch;
mod errors_and_cli;
mod invoke;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_e2e::TestDaemon;

pub(super) async fn apply(d: &TestDaemon, name: &str, toml: &str) {
    let (status, body) = d.apply(name, toml).await;
    assert!((200..300).contains(&status), "{status}: {body}");
}

pub(super) async fn dataset(d: &TestDaemon, query: &str, body: String) -> (u16, Value) {
    let r = d
        .http
        .post(d.url(&format!("/v1/datasets?{query}")))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub(super) async fn submit(d: &TestDaemon, spec: &Value) -> (u16, Value, Option<String>) {
    let (status, body, headers) = d.post("/v1/jobs", spec).await;
    let location = headers
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, body, location)
}

/// Polls a job until it is in a terminal state.
pub(super) async fn finished(d: &TestDaemon, id: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let v = d.get_json(&format!("/v1/jobs/{id}")).await;
        if matches!(
            v["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return v;
        }
        assert!(Instant::now() < until, "job {id} did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Job `id` once it has failed, its error saying `why`.
pub(super) async fn failed(d: &TestDaemon, id: &str, why: &str) -> Value {
    let done = finished(d, id).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap_or_default().contains(why),
        "{why}: {done}"
    );
    done
}

/// A daemon with the probe stage behind a batched pipeline `p`.
pub(super) async fn probe_daemon() -> TestDaemon {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    apply(
        &d,
        "p",
        r#"
name = "p"
[[steps]]
stage = "probe"
replicas = { min = 1, max = 2 }
batch = { max_size = 8, max_wait_ms = 2 }
"#,
    )
    .await;
    d
}

pub(super) fn rows(n: usize, op: impl Fn(usize) -> Value) -> String {
    (0..n).map(|i| format!("{}\n", op(i))).collect()
}

pub(super) fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
