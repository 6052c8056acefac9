//! Draining a cluster node: it passes the requests it still gets to a peer
//! (no request fails), its replicas go idle, and undraining brings them back.
//! And pipelines that need what a node lacks stay on the nodes that have it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft::cluster::ClusterConfig;
use weft_e2e::{NatsServer, TestDaemon};

async fn node(nats: &NatsServer, name: &str) -> TestDaemon {
    node_with_gpus(nats, name, 0.0).await
}

async fn node_with_gpus(nats: &NatsServer, name: &str, gpus: f64) -> TestDaemon {
    let url = nats.url();
    TestDaemon::start_with(|c| {
        c.capacity.gpus = Some(gpus);
        let mut cluster = ClusterConfig::new(url);
        cluster.node_name = Some(name.to_string());
        cluster.heartbeat = Duration::from_millis(100);
        cluster.node_ttl = Duration::from_millis(1500);
        c.cluster = Some(cluster);
    })
    .await
}

/// Waits until `check` holds on `d`'s JSON at `path`.
async fn until(d: &TestDaemon, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = d.http.get(d.url(path)).send().await.unwrap();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{path}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn draining(v: &Value, name: &str) -> Option<bool> {
    v["nodes"].as_array()?.iter().find(|n| n["name"] == name)?["draining"].as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_passes_requests_to_its_peers_without_failures() {
    let nats = NatsServer::start();
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    a.deploy("probe", "probe.wasm").await;
    let spec = "name = \"echo\"\n[[steps]]\nstage = \"probe\"\n\
                replicas = { min = 0, max = 2, idle_timeout_s = 1 }\n\
                [[triggers]]\nroute = \"/echo\"\n";
    assert_eq!(a.apply("echo", spec).await.0, 201);
    // Both nodes know each other and b has the pipeline.
    until(&b, "/v1/cluster", |v| draining(v, "a") == Some(false)).await;
    until(&b, "/v1/pipelines/echo", |v| v["name"] == "echo").await;

    // Clients keep calling a, before, during and after the drain.
    let (url, http) = (a.url("/echo"), a.http.clone());
    let load = tokio::spawn(async move {
        let mut answers = Vec::new();
        let until = Instant::now() + Duration::from_secs(3);
        let mut n = 0;
        while Instant::now() < until {
            n += 1;
            let r = http
                .post(&url)
                .header("content-type", "application/json")
                .body(json!({"op": "echo", "n": n}).to_string())
                .send()
                .await
                .unwrap();
            let via = r
                .headers()
                .get("x-weft-forwarded")
                .map(|v| v.to_str().unwrap().to_string());
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            answers.push((status, via, body["n"] == n));
        }
        answers
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Drained through b: the request is passed to a. (b also sees a's
    // placement groups in its cluster view.)
    let (s, v, _) = a
        .post(
            "/v1/placement-groups",
            &json!({"name": "pg", "bundles": [{"cpu": 0.5}]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    until(&b, "/v1/cluster", |v| {
        v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["name"] == "a" && n["placement_groups"][0]["name"] == "pg")
    })
    .await;
    b.cli(&["node", "drain", "a"]).await.unwrap();
    until(&b, "/v1/cluster", |v| draining(v, "a") == Some(true)).await;
    let answers = load.await.unwrap();
    assert!(answers.len() > 20, "{} requests", answers.len());
    assert!(
        answers.iter().all(|(s, _, same)| *s == 200 && *same),
        "every request answered, with its own answer: {answers:?}"
    );
    let forwarded = answers
        .iter()
        .filter(|(_, via, _)| via.as_deref() == Some("a"))
        .count();
    assert!(forwarded > 0, "some went to b: {answers:?}");
    assert_eq!(
        answers.first().unwrap().1,
        None,
        "served locally before the drain"
    );
    // a's replicas go idle and scale to zero while b serves.
    until(&a, "/v1/pipelines/echo", |v| {
        v["steps"][0]["replicas"]["live"] == 0
    })
    .await;

    // Undrained: a serves its requests itself again.
    a.cli(&["node", "undrain", "a"]).await.unwrap();
    let r = a
        .http
        .post(a.url("/echo"))
        .header("content-type", "application/json")
        .body(json!({"op": "echo"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-weft-forwarded").is_none());

    // Unknown nodes are explained.
    let (status, v, _) = a.post("/v1/cluster/nodes/zz/drain", &json!({})).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "node_not_found");
}

#[tokio::test]
async fn a_single_node_can_drain_itself_and_still_serves() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let name = d.get_json("/v1/cluster").await["node"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, v, _) = d
        .post(&format!("/v1/cluster/nodes/{name}/drain"), &json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["draining"], true);
    // No peer to pass requests to: it serves them.
    assert_eq!(
        d.apply("p", "name = \"p\"\n[[steps]]\nstage = \"probe\"\n")
            .await
            .0,
        201
    );
    let (status, _, headers) = d
        .post("/v1/pipelines/p/invoke", &json!({"op": "echo"}))
        .await;
    assert_eq!(status, 200);
    assert!(headers.get("x-weft-forwarded").is_none());
    let (status, v, _) = d.post("/v1/cluster/nodes/other/drain", &json!({})).await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("not in a cluster"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_stay_where_they_fit_and_requests_for_them_are_forwarded() {
    let nats = NatsServer::start();
    let a = node_with_gpus(&nats, "a", 1.0).await;
    let b = node(&nats, "b").await;
    a.deploy("probe", "probe.wasm").await;
    let (s, v, _) = a
        .post(
            "/v1/placement-groups",
            &json!({"name": "g", "bundles": [{"cpu": 0.5}]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    for (name, step) in [
        (
            "gpu",
            "resources = { gpu = 1 }\n[[triggers]]\nroute = \"/gpu\"",
        ),
        ("grouped", "placement = { group = \"g\" }"),
        ("plain", ""),
    ] {
        let spec = format!("name = \"{name}\"\n[[steps]]\nstage = \"probe\"\n{step}\n");
        let (s, v) = a.apply(name, &spec).await;
        assert_eq!(s, 201, "{name}: {v}");
    }
    // b has imported everything after them, but not the two it cannot run.
    until(&b, "/v1/pipelines/plain", |v| v["name"] == "plain").await;
    for name in ["gpu", "grouped"] {
        let r = b
            .http
            .get(b.url(&format!("/v1/pipelines/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{name} should not run on b");
        let (s, _, _) = a
            .post(
                &format!("/v1/pipelines/{name}/invoke"),
                &json!({"op": "echo"}),
            )
            .await;
        assert_eq!(s, 200, "{name} runs on a");
    }
    let (s, _, _) = b
        .post("/v1/pipelines/plain/invoke", &json!({"op": "echo"}))
        .await;
    assert_eq!(s, 200);

    // Asked at b for what only a runs, b passes the request to a (once a's
    // heartbeat has told b what a runs).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v, headers) = b
            .post("/v1/pipelines/gpu/invoke", &json!({"op": "echo", "k": 1}))
            .await;
        if s == 200 {
            assert_eq!(v["k"], 1, "{v}");
            assert_eq!(headers["x-weft-forwarded"], "b");
            break;
        }
        assert_eq!(s, 404, "{v}");
        assert!(Instant::now() < deadline, "b never forwarded: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, v, headers) = b.post("/gpu", &json!({"op": "echo", "k": 2})).await;
    assert_eq!((s, &v["k"]), (200, &json!(2)), "{v}");
    assert_eq!(headers["x-weft-forwarded"], "b");
    // What nobody runs is still a 404.
    let (s, _, _) = b.post("/nowhere", &json!({})).await;
    assert_eq!(s, 404);
}
