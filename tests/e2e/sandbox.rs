//! Stages get nothing they were not granted, and wasi:nn answers with proper
//! errors while no inference engine is plugged in.

use serde_json::json;
use weft_e2e::TestDaemon;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_env_no_filesystem_unless_granted() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let (status, body) = d.invoke("probe", &json!({"op": "env"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["env"], 0);
    assert_eq!(body["root_readable"], false);

    d.deploy_query("granted", "probe.wasm", "env.GREETING=hi")
        .await;
    let (_, body) = d.invoke("granted", &json!({"op": "env"})).await;
    assert_eq!(body["env"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_nn_load_by_name_of_a_missing_model_is_not_found_not_a_trap() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let (status, body) = d
        .invoke("probe", &json!({"op": "nn", "name": "minilm"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["error"], "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_stream_cancels_the_call() {
    let d =
        TestDaemon::start_with(|c| c.runtime.deadline = std::time::Duration::from_secs(20)).await;
    d.deploy("probe", "probe.wasm").await;
    let r = d
        .http
        .post(d.url("/v1/stages/probe/invoke"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(r#"{"op":"spin"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(r);
    // The spinning instance is discarded well before its 20 s deadline.
    let mut live = u64::MAX;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let show: serde_json::Value = d.get_json("/v1/stages/probe").await;
        live = show["instances"]["live"].as_u64().unwrap();
        if live == 0 {
            break;
        }
    }
    assert_eq!(live, 0, "the cancelled call's instance is still alive");
    let metrics = d.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"weft_stage_calls_total{stage="probe",outcome="cancelled"} 1"#),
        "{metrics}"
    );
}
