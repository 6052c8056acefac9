//! Named actors: serial calls in order, state of their own that survives a
//! restart and goes away with the actor, errors explained.

use serde_json::{Value, json};
use weft_e2e::TestDaemon;

async fn create(d: &TestDaemon, spec: &Value) -> (u16, Value) {
    let r = d
        .http
        .post(d.url("/v1/actors"))
        .header("content-type", "application/json")
        .body(spec.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn call(d: &TestDaemon, actor: &str, text: &str) -> (u16, Value) {
    let r = d
        .http
        .post(d.url(&format!("/v1/actors/{actor}/call")))
        .header("content-type", "application/json")
        .body(json!({ "text": text }).to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn actors_run_calls_one_at_a_time_on_state_of_their_own() {
    let mut d = TestDaemon::start().await;
    d.deploy("count", "count.wasm").await;
    for name in ["a", "b"] {
        let (s, v) = create(&d, &json!({"name": name, "stage": "count"})).await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(
            (v["stage"].as_str(), v["version"].as_u64()),
            (Some("count"), Some(1))
        );
    }
    // Concurrent calls are serialised: each sees the totals of all before it.
    let calls: Vec<_> = (0..20)
        .map(|_| d.spawn_post("/v1/actors/a/call", json!({"text": "x y"}).to_string()))
        .collect();
    let mut seen = Vec::new();
    for c in calls {
        let (status, body) = c.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        seen.push(v["total_items"].as_u64().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=20).collect::<Vec<_>>(),
        "no call saw another's partial update"
    );
    // Another actor, and the stage itself, keep their own totals.
    assert_eq!(call(&d, "b", "one").await.1["total_items"], 1);
    assert_eq!(
        d.invoke("count", &json!({"text": "one"})).await.1["total_items"],
        1
    );
    let listed = d.get_json("/v1/actors").await;
    assert_eq!(listed["actors"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(d.get_json("/v1/actors/a").await["calls"], 20);

    // After a restart the actor is back, with its state.
    d.restart().await;
    let (s, v) = call(&d, "a", "z").await;
    assert_eq!(
        (s, v["total_items"].as_u64(), v["total_words"].as_u64()),
        (200, Some(21), Some(41))
    );

    // Deleting takes the state with it.
    let r = d.http.delete(d.url("/v1/actors/a")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (s, v) = call(&d, "a", "z").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("actor_not_found"))
    );
    assert_eq!(
        create(&d, &json!({"name": "a", "stage": "count"})).await.0,
        201
    );
    assert_eq!(call(&d, "a", "z").await.1["total_items"], 1);
    let r = d.http.delete(d.url("/v1/actors/zz")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// A stored actor that cannot start after a restart (its stage was
/// deleted) is listed as not running and its calls are a 503 saying why,
/// not a 404 as if it never existed; it starts again by itself, with its
/// state, once the stage is deployed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_that_cannot_start_comes_back_with_its_state() {
    let mut d = TestDaemon::start().await;
    d.deploy("count", "count.wasm").await;
    assert_eq!(
        create(&d, &json!({"name": "k", "stage": "count"})).await.0,
        201
    );
    assert_eq!(call(&d, "k", "a b").await.1["total_items"], 1);
    assert_eq!(d.delete("/v1/stages/count").await.0, 204);
    d.restart().await;

    let (s, v) = call(&d, "k", "c").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("actor_not_running")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("count"),
        "{v}"
    );
    let listed = d.get_json("/v1/actors").await;
    assert_eq!(listed["not_running"][0]["name"], "k", "{listed}");

    d.deploy("count", "count.wasm").await;
    let mut answer = (0, Value::Null);
    for _ in 0..100 {
        answer = call(&d, "k", "c").await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        (answer.0, answer.1["total_items"].as_u64()),
        (200, Some(2)),
        "{answer:?}"
    );
    assert_eq!(d.get_json("/v1/actors").await["not_running"], json!([]));
}

#[tokio::test]
async fn bad_actor_requests_are_explained() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    assert_eq!(
        create(&d, &json!({"name": "p", "stage": "probe"})).await.0,
        201
    );
    let cases = [
        (
            json!({"name": "p", "stage": "probe"}),
            409,
            "already exists",
        ),
        (
            json!({"name": "q", "stage": "nope"}),
            400,
            "no stage named `nope`",
        ),
        (
            json!({"name": "Bad Name", "stage": "probe"}),
            400,
            "actor name",
        ),
        (
            json!({"name": "q", "stage": "probe", "version": 9}),
            400,
            "has no version 9",
        ),
        (
            json!({"name": "q", "stage": "probe", "confg": {}}),
            400,
            "confg",
        ),
        (
            json!({"name": "q", "stage": "probe", "config": {"fail_init": true}}),
            400,
            "init refused",
        ),
        (json!({"stage": "probe"}), 400, "missing field `name`"),
    ];
    for (spec, status, message) in cases {
        let (s, v) = create(&d, &spec).await;
        assert_eq!(s, status, "{spec}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(message),
            "{spec}: {v}"
        );
    }
    assert_eq!(
        d.get_json("/v1/actors").await["actors"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A trap discards the instance but not the actor: the next call works.
    let r = d
        .http
        .post(d.url("/v1/actors/p/call"))
        .body(r#"{"op":"trap"}"#)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("actor `p`"),
        "{body}"
    );
    let r = d
        .http
        .post(d.url("/v1/actors/p/call"))
        .body(r#"{"op":"echo"}"#)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_actors() {
    let d = TestDaemon::start().await;
    d.deploy("count", "count.wasm").await;
    d.cli(&["actor", "create", "c", "--stage", "count"])
        .await
        .unwrap();
    d.cli(&["actor", "call", "c", "--data", r#"{"text":"a b"}"#])
        .await
        .unwrap();
    d.cli(&["actor", "list"]).await.unwrap();
    d.cli(&["actor", "show", "c"]).await.unwrap();
    assert_eq!(d.get_json("/v1/actors/c").await["calls"], 1);
    d.cli(&["actor", "delete", "c"]).await.unwrap();
    let err = d
        .cli(&["actor", "call", "c", "--data", "{}"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no actor named `c`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_give_up_while_waiting_free_their_mailbox_slot() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    assert_eq!(
        create(&d, &json!({"name": "slow", "stage": "probe"}))
            .await
            .0,
        201
    );
    let busy = d.spawn_post("/v1/actors/slow/call", r#"{"op":"sleep","ms":1500}"#);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // More callers than the mailbox holds queue up, then hang up.
    let mut streams = Vec::new();
    for _ in 0..70 {
        let r = d
            .http
            .post(d.url("/v1/actors/slow/call"))
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .body(r#"{"op":"echo"}"#)
            .send()
            .await
            .unwrap();
        streams.push(r);
    }
    drop(streams);
    assert_eq!(busy.await.unwrap().0, 200);
    // Their slots are free again: a new call is served, not refused.
    let mut status = 0;
    for _ in 0..50 {
        let r = d
            .http
            .post(d.url("/v1/actors/slow/call"))
            .header("content-type", "application/json")
            .body(r#"{"op":"echo"}"#)
            .send()
            .await
            .unwrap();
        status = r.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the actor still counts callers that left");
    assert_eq!(d.get_json("/v1/actors/slow").await["waiting"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_actor_turns_away_its_waiting_calls() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    assert_eq!(
        create(&d, &json!({"name": "p", "stage": "probe"})).await.0,
        201
    );
    let slow = d.spawn_post("/v1/actors/p/call", r#"{"op":"sleep","ms":800}"#);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let queued = d.spawn_post(
        "/v1/actors/p/call",
        r#"{"op":"state_set","key":"k","value":"stale"}"#,
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = d.http.delete(d.url("/v1/actors/p")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(slow.await.unwrap().0, 200, "the running call finishes");
    assert_eq!(
        queued.await.unwrap().0,
        404,
        "the waiting call is turned away"
    );
    // A new actor of the same name starts from empty state.
    assert_eq!(
        create(&d, &json!({"name": "p", "stage": "probe"})).await.0,
        201
    );
    let r = d
        .http
        .post(d.url("/v1/actors/p/call"))
        .header("content-type", "application/json")
        .body(r#"{"op":"state_get","key":"k"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["value"], Value::Null);
}
