//! Node resources and placement groups: replicas reserve what their step
//! asks, over-subscription is refused naming what is short, scale-up stops at
//! capacity (and says why), groups reserve all their bundles or none, and
//! everything comes back after a restart.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_e2e::TestDaemon;

/// 2 cores, no GPU and one `licence`.
fn capacity(c: &mut weft::ServeConfig) {
    c.capacity.cpus = Some(2.0);
    c.capacity.gpus = Some(0.0);
    c.capacity.custom.insert("licence".into(), 1.0);
}

async fn node() -> TestDaemon {
    let d = TestDaemon::start_with(capacity).await;
    d.deploy("probe", "probe.wasm").await;
    d
}

fn pipeline(name: &str, step: &str) -> String {
    format!("name = \"{name}\"\ntimeout_ms = 20000\n[[steps]]\nstage = \"probe\"\n{step}\n")
}

async fn reserved(d: &TestDaemon, resource: &str) -> f64 {
    d.get_json("/v1/node").await["reserved"][resource]
        .as_f64()
        .unwrap()
}

fn error(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or(""),
        body["error"]["message"].as_str().unwrap_or(""),
    )
}

#[tokio::test]
async fn replicas_reserve_resources_and_oversubscription_is_refused() {
    let d = node().await;
    let n = d.get_json("/v1/node").await;
    assert_eq!(n["capacity"]["cpu"], 2.0, "{n}");
    assert_eq!(n["capacity"]["custom"]["licence"], 1.0, "{n}");
    assert!(n["capacity"]["memory_mib"].as_f64().unwrap() > 0.0, "{n}");
    // Detected GPUs are listed, software adapters (llvmpipe) never.
    let gpus = n["gpus_detected"].as_array().expect("gpus_detected");
    assert!(gpus.iter().all(|g| g["device_type"] != "cpu"), "{n}");

    // By default a replica reserves nothing.
    assert_eq!(d.apply("free", &pipeline("free", "")).await.0, 201);
    assert_eq!(reserved(&d, "cpu").await, 0.0);

    // Two replicas of one core each fill the node; applied again unchanged,
    // the pipeline keeps its reservations.
    let a = pipeline(
        "a",
        "resources = { cpu = 1 }\nreplicas = { min = 2, max = 2 }",
    );
    for status in [201, 200] {
        let (s, v) = d.apply("a", &a).await;
        assert_eq!(s, status, "{v}");
        assert_eq!(reserved(&d, "cpu").await, 2.0);
    }
    let (s, v) = d
        .apply("b", &pipeline("b", "resources = { cpu = 0.5 }"))
        .await;
    assert_eq!(s, 409, "{v}");
    let (code, message) = error(&v);
    assert_eq!(code, "insufficient_resources");
    assert!(
        message.contains("steps[0] (`probe`): 1 replica(s) (replicas.min) needs 0.5 cpu but the node has 0 free of 2"),
        "{message}"
    );
    assert!(
        v["error"]["hint"].as_str().unwrap().contains("--cpus"),
        "{v}"
    );
    assert!(
        d.get_json("/v1/pipelines")
            .await
            .to_string()
            .contains("\"a\"")
    );

    // What can never fit says so even before anything is reserved.
    for (step, says) in [
        (
            "resources = { gpu = 1 }",
            "one replica needs 1 gpu but the node has 0 free of 0",
        ),
        (
            "resources = { custom = { licence = 2 } }",
            "needs 2 licence but the node has 1 free of 1",
        ),
        (
            "resources = { custom = { tpu = 1 } }",
            "needs 1 tpu but the node has 0 free of 0",
        ),
    ] {
        let (s, v) = d.apply("c", &pipeline("c", step)).await;
        assert_eq!(s, 409, "{v}");
        assert!(error(&v).1.contains(says), "{v} should say {says}");
    }
    let (s, v) = d
        .apply("c", &pipeline("c", "resources = { cpu = -1 }"))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(error(&v).1.contains("steps[0].resources.cpu"), "{v}");

    // Applying a new version of a pipeline on a full node works: the old
    // version hands its reservations over.
    let (s, v) = d
        .apply(
            "a",
            &pipeline(
                "a",
                "resources = { cpu = 1 }\nreplicas = { min = 1, max = 2 }",
            ),
        )
        .await;
    assert_eq!(s, 201, "a new version: {v}");
    assert_eq!(reserved(&d, "cpu").await, 1.0);
    // A failed replacement gives the old version its reservations back.
    let (s, _) = d
        .apply(
            "a",
            &pipeline(
                "a",
                "resources = { cpu = 1 }\nreplicas = { min = 3, max = 3 }",
            ),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(reserved(&d, "cpu").await, 1.0);

    // Deleting returns them.
    let r = d
        .http
        .delete(d.url("/v1/pipelines/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let until = Instant::now() + Duration::from_secs(5);
    while reserved(&d, "cpu").await != 0.0 {
        assert!(Instant::now() < until, "reservations not returned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn scale_up_stops_at_capacity_and_says_why() {
    let d = node().await;
    let spec = pipeline(
        "s",
        "resources = { cpu = 1 }\nreplicas = { min = 1, max = 4, target_in_flight = 1, idle_timeout_s = 1 }",
    );
    assert_eq!(d.apply("s", &spec).await.0, 201);
    let body = json!({"op": "sleep", "ms": 400}).to_string();
    let calls: Vec<_> = (0..4)
        .map(|_| d.spawn_post("/v1/pipelines/s/invoke", body.clone()))
        .collect();
    let mut seen = Value::Null;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let s = d.get_json("/v1/pipelines/s").await;
        let replicas = s["steps"][0]["replicas"].clone();
        if replicas["limited_by"].is_string() {
            seen = replicas;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen["target"], 2,
        "4 requests want 4 replicas; 2 cores fit 2: {seen}"
    );
    assert_eq!(seen["reserved"], 2, "{seen}");
    assert!(
        seen["limited_by"]
            .as_str()
            .unwrap()
            .contains("needs 1 cpu but the node has 0 free of 2"),
        "{seen}"
    );
    // Every request is still served, two at a time.
    for c in calls {
        assert_eq!(c.await.unwrap().0, 200);
    }
    // Idle: back to min, and the core is returned.
    let until = Instant::now() + Duration::from_secs(10);
    while reserved(&d, "cpu").await != 1.0 {
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn placement_groups_reserve_all_bundles_or_none_and_survive_restarts() {
    let mut d = node().await;
    let create = |body: Value| {
        let d = &d;
        async move {
            let (s, v, _) = d.post("/v1/placement-groups", &body).await;
            (s, v)
        }
    };
    let (s, v) = create(json!({"name": "g", "bundles": [{"cpu": 1}, {"cpu": 0.5, "custom": {"licence": 1}}], "strategy": "pack"})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["bundles"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(reserved(&d, "cpu").await, 1.5);

    // All or nothing: the second bundle does not fit, the first is not kept.
    let (s, v) = create(json!({"name": "h", "bundles": [{"cpu": 0.5}, {"cpu": 1}]})).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(error(&v).0, "insufficient_resources");
    assert!(
        error(&v)
            .1
            .contains("bundle 1 needs 1 cpu but the node has 0 free of 2; nothing was reserved"),
        "{v}"
    );
    assert_eq!(reserved(&d, "cpu").await, 1.5);
    // strict_spread needs a node per bundle.
    let (s, v) = create(
        json!({"name": "h", "bundles": [{"cpu": 0.1}, {"cpu": 0.1}], "strategy": "strict_spread"}),
    )
    .await;
    assert_eq!((s, error(&v).0), (409, "placement_infeasible"), "{v}");
    // Bad specs name the field.
    for (body, says) in [
        (
            json!({"name": "h", "bundles": []}),
            "bundles: give 1 to 64 bundles",
        ),
        (
            json!({"name": "h", "bundles": [{}]}),
            "bundles[0]: asks for nothing",
        ),
        (
            json!({"name": "h", "bundles": [{"cpu": -1}]}),
            "bundles[0].cpu: must be a non-negative",
        ),
        (
            json!({"name": "h", "bundles": [{"cpus": 1}]}),
            "unknown field `cpus`",
        ),
        (
            json!({"name": "h", "bundles": [{"cpu": 1}], "strategy": "tight"}),
            "strategy",
        ),
    ] {
        let (s, v) = create(body).await;
        assert_eq!(s, 400, "{v}");
        assert!(error(&v).1.contains(says), "{v} should say {says}");
    }
    let (s, v) = create(json!({"name": "g", "bundles": [{"cpu": 0.1}]})).await;
    assert_eq!((s, error(&v).0), (409, "placement_group_exists"), "{v}");

    // A step runs inside a bundle: its replicas reserve from the bundle.
    let in_group = |min: u32| {
        pipeline(
            "p",
            &format!(
                "resources = {{ cpu = 0.5 }}\nreplicas = {{ min = {min}, max = 2 }}\nplacement = {{ group = \"g\", bundle = 0 }}"
            ),
        )
    };
    let (s, v) = d.apply("p", &in_group(3)).await;
    assert_eq!(s, 400, "min 3 > max 2 is a spec error first: {v}");
    let (s, v) = d.apply("p", &in_group(2)).await;
    assert_eq!(s, 201, "{v}");
    let g = d.get_json("/v1/placement-groups/g").await;
    assert_eq!(g["bundles"][0]["reserved"]["cpu"], 1.0, "{g}");
    assert_eq!(
        reserved(&d, "cpu").await,
        1.5,
        "the node's share did not change"
    );
    let (s, v) = d
        .apply(
            "q",
            &pipeline(
                "q",
                "resources = { cpu = 0.5 }\nplacement = { group = \"g\" }",
            ),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        error(&v)
            .1
            .contains("placement group `g` bundle 0 has 0 free of 1"),
        "{v}"
    );
    for (step, says) in [
        (
            "placement = { group = \"nope\" }",
            "steps[0].placement.group: no placement group named `nope`",
        ),
        (
            "placement = { group = \"g\", bundle = 5 }",
            "steps[0].placement.bundle",
        ),
    ] {
        let (s, v) = d.apply("q", &pipeline("q", step)).await;
        assert_eq!(s, 400, "{v}");
        assert!(error(&v).1.contains(says), "{v} should say {says}");
    }
    let (s, _, _) = d
        .post("/v1/pipelines/p/invoke", &json!({"op": "echo"}))
        .await;
    assert_eq!(s, 200);

    // After a restart the group is placed again and its pipeline runs in it.
    d.restart_with(capacity).await;
    assert_eq!(reserved(&d, "cpu").await, 1.5);
    let g = d.get_json("/v1/placement-groups/g").await;
    assert_eq!(g["bundles"][0]["reserved"]["cpu"], 1.0, "{g}");
    let (s, _, _) = d
        .post("/v1/pipelines/p/invoke", &json!({"op": "echo"}))
        .await;
    assert_eq!(s, 200);

    // A group in use is not removed; once free, removing it returns all.
    let r = d
        .http
        .delete(d.url("/v1/placement-groups/g"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert!(error(&v).1.contains("pipeline `p`"), "{v}");
    let r = d
        .http
        .delete(d.url("/v1/pipelines/p"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = d
        .http
        .delete(d.url("/v1/placement-groups/g"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(reserved(&d, "cpu").await, 0.0);
    assert_eq!(
        d.get_json("/v1/placement-groups").await["placement_groups"],
        json!([])
    );
    let r = d
        .http
        .delete(d.url("/v1/placement-groups/g"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The CLI says the same.
    d.cli(&[
        "placement-group",
        "create",
        "c",
        "--bundle",
        "cpu=1,licence=1",
        "--bundle",
        "cpu=0.5",
    ])
    .await
    .unwrap();
    let g = d.get_json("/v1/placement-groups/c").await;
    assert_eq!(
        g["bundles"][0]["resources"]["custom"]["licence"], 1.0,
        "{g}"
    );
    assert_eq!(reserved(&d, "cpu").await, 1.5);
    d.cli(&["node", "status"]).await.unwrap();
    d.cli(&["pg", "list"]).await.unwrap();
    let err = d
        .cli(&["placement-group", "create", "e", "--bundle", "gpu=1"])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("needs 1 gpu"), "{err:#}");
    d.cli(&["placement-group", "delete", "c"]).await.unwrap();
    assert_eq!(reserved(&d, "cpu").await, 0.0);
}
