//! Work that outlives its node: an async invoke job and a named actor on a
//! node killed with `kill -9` are taken over by the surviving node (two real
//! `weft` processes on one `nats-server -js`), from their last checkpoint
//! and state; the killed node, restarted, does not run them a second time.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{alive, get, nats, node, send_json, until};
use common::component;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_job_and_actor_move_to_a_live_node() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (_nats, nats_url) = nats(dir.path());
    let (mut n1, first) = node(dir.path(), &nats_url, "n1");
    let (_n2, second) = node(dir.path(), &nats_url, "n2");
    alive(&http, &first, 2).await;

    let r = http
        .put(format!("{first}/v1/stages/probe"))
        .body(component("probe.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .put(format!("{first}/v1/pipelines/long"))
        .header("content-type", "application/toml")
        .body("name = \"long\"\n[[steps]]\nstage = \"probe\"\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    until(
        "the pipeline replicates",
        Duration::from_secs(20),
        || async {
            match get(&http, &format!("{second}/v1/pipelines/long")).await {
                (200, _) => Ok(()),
                (s, t) => Err(format!("{s} {t}")),
            }
        },
    )
    .await;

    // An actor on n1 with some state; calls through n2 reach it there.
    let (s, v) = send_json(
        &http,
        Method::POST,
        &format!("{first}/v1/actors"),
        &json!({"name": "tally", "stage": "probe"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let call = |url: String, body: Value| {
        let http = http.clone();
        async move {
            send_json(
                &http,
                Method::POST,
                &format!("{url}/v1/actors/tally/call"),
                &body,
            )
            .await
        }
    };
    let (s, v) = call(
        second.clone(),
        json!({"op": "state_set", "key": "total", "value": "41"}),
    )
    .await;
    assert_eq!(s, 200, "a call on n2 is forwarded to n1: {v}");
    // The name is the cluster's: n2 cannot create another `tally`.
    let (s, v) = send_json(
        &http,
        Method::POST,
        &format!("{second}/v1/actors"),
        &json!({"name": "tally", "stage": "probe"}),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("n1"),
        "{v}"
    );

    // A job on n1 counting to 40, checkpointing every step.
    let (s, job) = send_json(
        &http,
        Method::POST,
        &format!("{first}/v1/jobs"),
        &json!({"kind": "invoke", "pipeline": "long", "input": {"op": "count_to", "n": 40, "ms": 50}}),
    )
    .await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    until("the job is under way", Duration::from_secs(20), || async {
        let (_, v) = get(&http, &format!("{first}/v1/jobs/{id}")).await;
        let v: Value = serde_json::from_str(&v).map_err(|e| e.to_string())?;
        match v["progress"]["done"].as_u64() {
            Some(d) if d >= 8 => Ok(()),
            _ => Err(v.to_string()),
        }
    })
    .await;

    n1.0.kill().expect("SIGKILL");
    n1.0.wait().unwrap();
    let killed = Instant::now();

    // n2 takes the job over and finishes it from the checkpoint.
    let moved = until("n2 takes the job over", Duration::from_secs(20), || async {
        let (_, v) = get(&http, &format!("{second}/v1/jobs")).await;
        let v: Value = serde_json::from_str(&v).map_err(|e| e.to_string())?;
        v["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|j| {
                j["spec"]["origin"] == json!({"node": "n1", "id": id.parse::<u64>().unwrap()})
            })
            .cloned()
            .ok_or_else(|| v.to_string())
    })
    .await;
    let taken_over = killed.elapsed();
    let new_id = moved["id"].as_str().unwrap().to_string();
    let done = until(
        "the moved job finishes",
        Duration::from_secs(30),
        || async {
            let (_, v) = get(&http, &format!("{second}/v1/jobs/{new_id}")).await;
            let v: Value = serde_json::from_str(&v).map_err(|e| e.to_string())?;
            match v["state"].as_str() {
                Some("succeeded" | "failed" | "cancelled") => Ok(v),
                _ => Err(v.to_string()),
            }
        },
    )
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let result = &done["result"][0];
    assert_eq!(result["counted"], 40, "{done}");
    assert!(
        result["resumed_from"].as_u64().unwrap() >= 8,
        "resumed from n1's checkpoint: {done}"
    );
    eprintln!("n2 took n1's job over {taken_over:?} after kill -9 (node TTL 1.5 s)");
    assert!(taken_over < Duration::from_secs(10), "{taken_over:?}");

    // n2 recreates the actor with its state.
    let (s, v) = until(
        "n2 takes the actor over",
        Duration::from_secs(20),
        || async {
            match call(second.clone(), json!({"op": "state_get", "key": "total"})).await {
                (200, v) => Ok((200, v)),
                (s, v) => Err(format!("{s} {v}")),
            }
        },
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["value"], "41", "the actor's state moved with it: {v}");

    // n1 comes back: it neither runs the job again nor keeps the actor.
    let (_n1, first) = node(dir.path(), &nats_url, "n1");
    let (_, v) = get(&http, &format!("{first}/v1/jobs/{id}")).await;
    let v: Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["state"], "moved", "{v}");
    assert!(v["error"].as_str().unwrap().contains("n2"), "{v}");
    let (s, v) = call(first.clone(), json!({"op": "state_get", "key": "total"})).await;
    assert_eq!(
        (s, &v["value"]),
        (200, &json!("41")),
        "forwarded to n2: {v}"
    );
    let (_, list) = get(&http, &format!("{first}/v1/actors")).await;
    assert!(!list.contains("tally"), "n1 dropped its copy: {list}");
}
