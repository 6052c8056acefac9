//! Cluster mode: in-process daemons joined through a real `nats-server -js`
//! (a child process per test): membership, failure detection, registry
//! replication, late joiners, a NATS restart, batch jobs across nodes.
//! (A node killed with `kill -9` mid-job: `host/daemon/tests/cluster_crash.rs`,
//! real processes.)

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft::cluster::ClusterConfig;
use weft_e2e::{NatsServer, TestDaemon};

const HEARTBEAT: Duration = Duration::from_millis(200);
const TTL: Duration = Duration::from_millis(1500);
const BLOCK_ACK_WAIT: Duration = Duration::from_secs(2);

/// The cluster settings of node `name` on `nats`.
fn cluster_config(nats: &NatsServer, name: &str) -> ClusterConfig {
    let mut cluster = ClusterConfig::new(nats.url());
    cluster.node_name = Some(name.to_string());
    cluster.heartbeat = HEARTBEAT;
    cluster.node_ttl = TTL;
    cluster.block_ack_wait = BLOCK_ACK_WAIT;
    cluster
}

/// A daemon in cluster mode named `name` on `nats`.
async fn node(nats: &NatsServer, name: &str) -> TestDaemon {
    let cluster = cluster_config(nats, name);
    TestDaemon::start_with(|c| c.cluster = Some(cluster)).await
}

/// Polls `check` every 50 ms until it yields a value; panics after `within`
/// with `what` and the last thing it saw.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn view(d: &TestDaemon) -> Value {
    d.get_json("/v1/cluster").await
}

/// Names of the nodes `v` lists, with whether each is alive.
fn nodes(v: &Value) -> Vec<(String, bool)> {
    let mut out: Vec<_> = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("").to_string(),
                n["alive"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

fn alive(names: &[&str]) -> Vec<(String, bool)> {
    names.iter().map(|n| (n.to_string(), true)).collect()
}

async fn sees(d: &TestDaemon, expected: Vec<(String, bool)>) {
    eventually("cluster view", Duration::from_secs(10), || async {
        let v = view(d).await;
        if nodes(&v) == expected {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_tracks_joins_leaves_and_silent_nodes() {
    // One node alone needs no NATS and says so.
    let solo = TestDaemon::start().await;
    let v = view(&solo).await;
    assert_eq!(v["enabled"], false, "{v}");
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["nodes"][0]["alive"], true, "{v}");
    solo.cli(&["cluster", "status"]).await.unwrap();

    let nats = NatsServer::start();
    let a = node(&nats, "a").await;
    let mut b = node(&nats, "b").await;
    let c = node(&nats, "c").await;
    for d in [&a, &b, &c] {
        sees(d, alive(&["a", "b", "c"])).await;
    }
    let v = view(&a).await;
    assert_eq!(
        (&v["enabled"], &v["node"], &v["connected"]),
        (&json!(true), &json!("a"), &json!(true))
    );
    let peer = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "b")
        .unwrap();
    assert_eq!(
        format!("http://{}", peer["http_addr"].as_str().unwrap()),
        b.url,
        "{v}"
    );
    assert!(peer["capacity"]["cpu"].as_f64().unwrap() >= 1.0, "{v}");
    assert!(peer["capacity"]["memory_mib"].as_u64().unwrap() > 0, "{v}");
    assert!(peer["load"]["in_flight"].is_u64(), "{v}");
    a.cli(&["cluster", "status"]).await.unwrap();

    // A node that stops heartbeating (hung, or killed) is reported dead
    // within the TTL of its last heartbeat.
    c.daemon.as_ref().unwrap().cluster().stop_heartbeats();
    let silent = Instant::now();
    sees(
        &a,
        vec![("a".into(), true), ("b".into(), true), ("c".into(), false)],
    )
    .await;
    let detected = silent.elapsed();
    assert!(
        // The TTL, plus polling and a loaded machine's scheduling.
        detected <= TTL + Duration::from_secs(1),
        "c was reported dead {detected:?} after its last heartbeat (TTL {TTL:?})"
    );
    eprintln!("a silent node was reported dead after {detected:?} (TTL {TTL:?})");

    // A node that shuts down cleanly leaves at once.
    let left = Instant::now();
    b.daemon.take().unwrap().shutdown().await.unwrap();
    eventually("b leaves a's view", Duration::from_secs(5), || async {
        let v = view(&a).await;
        if nodes(&v).iter().any(|(n, _)| n == "b") {
            Err(v.to_string())
        } else {
            Ok(())
        }
    })
    .await;
    assert!(
        left.elapsed() < TTL,
        "a clean leave took {:?}",
        left.elapsed()
    );
}

fn clean_pipeline() -> &'static str {
    r#"
name = "clean"

[[steps]]
stage = "normalize"

[[triggers]]
route = "/clean"
"#
}

/// Polls until `path` on `d` answers 200 to `body`; returns the answer.
async fn post_ok(d: &TestDaemon, path: &str, body: Value) -> Value {
    eventually(&format!("POST {path}"), Duration::from_secs(20), || async {
        let (status, out, _) = d.post(path, &body).await;
        if status == 200 {
            Ok(out)
        } else {
            Err(format!("{status} {out}"))
        }
    })
    .await
}

async fn get_status(d: &TestDaemon, path: &str) -> (u16, Value) {
    let r = d.http.get(d.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_replicates_to_every_node_and_to_late_joiners() {
    let nats = NatsServer::start();
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    let c = node(&nats, "c").await;

    // A stage deployed on A is invocable on B.
    a.deploy("normalize", "normalize.wasm").await;
    let doc = json!({"text": "  Hello   WÖRLD "});
    let out = post_ok(&b, "/v1/stages/normalize/invoke", doc.clone()).await;
    assert_eq!(out, json!({"text": "hello wörld"}));

    // A model uploaded on B is listed on C.
    let onnx = weft_nn::fixtures::onnx(&["MatMul", "Add", "Gelu"]);
    let r = b
        .http
        .put(b.url("/v1/models/tiny?encoding=onnx"))
        .body(onnx)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let uploaded: Value = r.json().await.unwrap();
    let listed = eventually("C lists the model", Duration::from_secs(20), || async {
        let v = c.get_json("/v1/models").await;
        match v["models"].as_array().and_then(|m| m.first()).cloned() {
            Some(m) => Ok(m),
            None => Err(v.to_string()),
        }
    })
    .await;
    assert_eq!(listed["name"], "tiny");
    assert_eq!(listed["latest"]["object"], uploaded["latest"]["object"]);
    assert_eq!(listed["latest"]["summary"]["ops"]["Gelu"], 1, "{listed}");

    // A pipeline applied on A serves its trigger on C.
    let (code, body) = a.apply("clean", clean_pipeline()).await;
    assert_eq!(code, 201, "{body}");
    let out = post_ok(&c, "/clean", doc.clone()).await;
    assert_eq!(out, json!({"text": "hello wörld"}));

    // Nothing came back as a new version: the same bytes are the same
    // version everywhere, and an upload does not loop back.
    b.deploy("normalize", "normalize.wasm").await; // unchanged: 200
    b.deploy_query("normalize", "normalize.wasm", "config.lowercase=false")
        .await;
    eventually("A has B's version 2", Duration::from_secs(20), || async {
        let v = a.get_json("/v1/stages/normalize").await;
        if v["latest"]["config"]["lowercase"] == "false" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    for d in [&a, &b] {
        let v = d.get_json("/v1/stages/normalize").await;
        assert_eq!(v["versions"].as_array().unwrap().len(), 2, "{v}");
    }
    let out = post_ok(&a, "/v1/stages/normalize/invoke", doc.clone()).await;
    assert_eq!(out, json!({"text": "Hello WÖRLD"}), "A runs version 2");
    for d in [&a, &c] {
        assert_eq!(d.get_json("/v1/pipelines/clean").await["version"], 1);
    }

    // A delete is replicated too.
    let r = c
        .http
        .delete(c.url("/v1/models/tiny"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually("A forgets the model", Duration::from_secs(20), || async {
        match get_status(&a, "/v1/models/tiny").await {
            (404, _) => Ok(()),
            (s, v) => Err(format!("{s} {v}")),
        }
    })
    .await;

    // A node that joins later gets everything uploaded before, and not
    // what was deleted.
    let d = node(&nats, "d").await;
    let out = post_ok(&d, "/v1/stages/normalize/invoke", doc.clone()).await;
    assert_eq!(out, json!({"text": "Hello WÖRLD"}), "the latest stage");
    // Replication carries each name's latest version: D never had version
    // 1, so its pipeline runs the stage's latest (docs/cluster.md). (Until
    // D has imported the pipeline, D forwards `/clean` to a peer, whose
    // pipeline pins version 1: wait for D's own.)
    eventually("d runs the pipeline", Duration::from_secs(10), || async {
        match get_status(&d, "/v1/pipelines/clean").await {
            (200, _) => Ok(()),
            (s, v) => Err(format!("{s} {v}")),
        }
    })
    .await;
    let out = post_ok(&d, "/clean", doc.clone()).await;
    assert_eq!(out, json!({"text": "Hello WÖRLD"}));
    let v = d.get_json("/v1/stages/normalize").await;
    assert_eq!(v["versions"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(get_status(&d, "/v1/models/tiny").await.0, 404);
    sees(&d, alive(&["a", "b", "c", "d"])).await;
}

/// `wasm` with a custom section of `size` bytes appended: the same stage,
/// but bytes that take a while to replicate.
fn padded(wasm: &[u8], size: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"padding";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.resize(payload.len() + size, 0x5a);
    let mut out = wasm.to_vec();
    out.push(0); // a custom section
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// An upload on B made while B still imports A's upload of the same name
/// is not overwritten by A's older one. Without that, B's history flapped:
/// B's version, then A's when its import finished, then B's again when
/// B's own event came back (3 versions, and a moment of running A's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_during_an_import_of_the_same_name_wins_without_flapping() {
    let nats = NatsServer::start();
    let a = node(&nats, "a").await;
    let c = node(&nats, "c").await;
    // A's version of `shout` is large, and already in the cluster's object
    // store (through `big`, deleted since), so A's event is in the bucket
    // at once while a node without the bytes takes a while fetching them.
    let big = padded(&weft_e2e::component("normalize.wasm"), 48 << 20);
    for name in ["big", "shout"] {
        let r = a
            .http
            .put(a.url(&format!("/v1/stages/{name}")))
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let r = a.http.delete(a.url("/v1/stages/big")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    eventually("C has A's uploads", Duration::from_secs(30), || async {
        match (
            get_status(&c, "/v1/stages/shout").await.0,
            get_status(&c, "/v1/stages/big").await.0,
        ) {
            (200, 404) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // B joins, starts importing A's `shout`, and meanwhile gets its own.
    let b = node(&nats, "b").await;
    b.deploy_query("shout", "normalize.wasm", "config.lowercase=false")
        .await;
    // An upload made after both: once B has it, B has handled A's event
    // (the bucket is watched in order).
    a.deploy("marker", "normalize.wasm").await;
    eventually("B has the marker", Duration::from_secs(30), || async {
        match get_status(&b, "/v1/stages/marker").await {
            (200, _) => Ok(()),
            (s, v) => Err(format!("{s} {v}")),
        }
    })
    .await;
    // B's upload came later in the bucket, so it wins on every node.
    eventually("every node runs B's", Duration::from_secs(20), || async {
        let mut seen = Vec::new();
        for d in [&a, &b, &c] {
            seen.push(d.get_json("/v1/stages/shout").await["latest"]["config"].clone());
        }
        if seen.iter().all(|c| *c == json!({"lowercase": "false"})) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    let versions = |v: Value| v["versions"].as_array().unwrap().len();
    assert_eq!(versions(a.get_json("/v1/stages/shout").await), 2);
    // B has its own only, or A's imported before its own landed; never
    // A's after its own.
    let vb = b.get_json("/v1/stages/shout").await;
    assert!(
        versions(vb.clone()) <= 2,
        "A's older version came after B's: {vb}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reconnect_and_catch_up_after_nats_restarts() {
    let mut nats = NatsServer::start();
    let a = node(&nats, "a").await;
    let b = node(&nats, "b").await;
    sees(&a, alive(&["a", "b"])).await;
    sees(&b, alive(&["a", "b"])).await;
    // Traffic on both nodes all through the outage: serving does not need
    // NATS, so not one request fails.
    a.deploy("probe", "probe.wasm").await;
    let spec = "name = \"echo\"\n[[steps]]\nstage = \"probe\"\n[[triggers]]\nroute = \"/echo\"\n";
    assert_eq!(a.apply("echo", spec).await.0, 201);
    eventually("b has the pipeline", Duration::from_secs(10), || async {
        let v = b.get_json("/v1/pipelines/echo").await;
        if v["name"] == "echo" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (urls, http, stop) = (
            [a.url("/echo"), b.url("/echo")],
            a.http.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for url in &urls {
                    let r = http
                        .post(url)
                        .header("content-type", "application/json")
                        .body(r#"{"op":"echo"}"#)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => failed.push(r.status().as_u16()),
                        Err(e) => failed.push(e.status().map_or(0, |s| s.as_u16())),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, failed)
        })
    };

    nats.kill();
    // With NATS gone nobody hears from anyone: peers go dead.
    sees(&a, vec![("a".into(), true), ("b".into(), false)]).await;
    assert_eq!(view(&a).await["connected"], false);
    // An upload meanwhile works locally and waits to be published.
    a.deploy("normalize", "normalize.wasm").await;

    nats.restart();
    let back = Instant::now();
    sees(&a, alive(&["a", "b"])).await;
    sees(&b, alive(&["a", "b"])).await;
    eprintln!(
        "heartbeats resumed {:?} after NATS came back",
        back.elapsed()
    );
    assert_eq!(view(&b).await["connected"], true);

    // The upload made during the outage reached B, and new ones do too.
    let doc = json!({"text": "  Back   AGAIN "});
    let out = post_ok(&b, "/v1/stages/normalize/invoke", doc).await;
    assert_eq!(out, json!({"text": "back again"}));
    b.deploy("count", "count.wasm").await;
    let out = post_ok(&a, "/v1/stages/count/invoke", json!({"text": "one two"})).await;
    assert_eq!(out["words"], 2, "{out}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(ok > 20, "{ok} requests served");
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
}

/// A pipeline of one probe step with one replica: a node runs one row at a
/// time, so a sleeping row keeps it busy (sleep-bound, not CPU-bound).
const SLEEPY: &str = r#"
name = "sleepy"
[[steps]]
stage = "probe"
replicas = { min = 1, max = 1 }
"#;

/// `rows` rows of `{"op": "sleep", "ms": ms, "n": i}`, `per_block` a block,
/// as dataset `name` on `d`.
async fn sleep_dataset(d: &TestDaemon, name: &str, rows: usize, per_block: usize, ms: u64) {
    let body: String = (0..rows)
        .map(|i| format!("{}\n", json!({"op": "sleep", "ms": ms, "n": i})))
        .collect();
    let r = d
        .http
        .post(d.url(&format!(
            "/v1/datasets?name={name}&format=jsonl&block_rows={per_block}"
        )))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// Submits a batch job on `d`; returns its id.
async fn submit_batch(d: &TestDaemon, spec: Value) -> String {
    let (status, job, _) = d.post("/v1/jobs", &spec).await;
    assert_eq!(status, 202, "{job}");
    job["id"].as_str().unwrap().to_string()
}

/// Waits until job `id` on `d` has finished; returns it.
async fn job_done(d: &TestDaemon, id: &str, within: Duration) -> Value {
    eventually(&format!("job {id} finishes"), within, || async {
        let v = d.get_json(&format!("/v1/jobs/{id}")).await;
        match v["state"].as_str() {
            Some("succeeded" | "failed" | "cancelled") => Ok(v),
            _ => Err(v.to_string()),
        }
    })
    .await
}

/// The value of metric `name` (one series) in `/metrics` of `d`.
async fn metric(d: &TestDaemon, name: &str) -> u64 {
    let text = d.get_text("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

/// Nodes a, b and c, with the probe stage and the `sleepy` pipeline on
/// every one (applied on a, replicated).
async fn sleepy_cluster(nats: &NatsServer) -> (TestDaemon, TestDaemon, TestDaemon) {
    let a = node(nats, "a").await;
    let b = node(nats, "b").await;
    let c = node(nats, "c").await;
    for d in [&a, &b, &c] {
        sees(d, alive(&["a", "b", "c"])).await;
    }
    a.deploy("probe", "probe.wasm").await;
    let (code, body) = a.apply("sleepy", SLEEPY).await;
    assert_eq!(code, 201, "{body}");
    // Every node has the pipeline before a job starts (a worker without
    // it would give its tasks back until replication caught up).
    for d in [&b, &c] {
        eventually(
            "the pipeline replicates",
            Duration::from_secs(20),
            || async {
                match get_status(d, "/v1/pipelines/sleepy").await {
                    (200, _) => Ok(()),
                    (s, v) => Err(format!("{s} {v}")),
                }
            },
        )
        .await;
    }
    (a, b, c)
}

/// Block events of job `id` on `d`: (block, node) in commit order.
async fn block_events(d: &TestDaemon, id: &str) -> Vec<(u64, String)> {
    let events = d.get_text(&format!("/v1/jobs/{id}/events")).await;
    events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "block")
        .map(|v| {
            (
                v["block"].as_u64().unwrap(),
                v["node"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The `n` field of every output row of job `id` on `d`.
async fn output_ns(d: &TestDaemon, id: &str) -> Vec<u64> {
    d.get_text(&format!("/v1/jobs/{id}/output"))
        .await
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_job_runs_its_blocks_across_the_cluster() {
    let nats = NatsServer::start();
    let (a, b, c) = sleepy_cluster(&nats).await;
    // 24 blocks of 4 rows sleeping 25 ms each: about 100 ms a block.
    sleep_dataset(&a, "naps", 96, 4, 25).await;

    let started = Instant::now();
    let id = submit_batch(
        &a,
        json!({"kind": "batch", "pipeline": "sleepy", "dataset": "naps"}),
    )
    .await;
    let done = job_done(&a, &id, Duration::from_secs(60)).await;
    let spread = started.elapsed();
    assert_eq!(done["state"], "succeeded", "{done}");
    let p = &done["progress"];
    assert_eq!(
        (&p["blocks_done"], &p["items_done"], &p["rows_out"]),
        (&json!(24), &json!(96), &json!(96)),
        "{done}"
    );
    let output = a.get_text(&format!("/v1/jobs/{id}/output")).await;
    assert_eq!(
        output_ns(&a, &id).await,
        (0..96).collect::<Vec<_>>(),
        "every row once, in order"
    );

    // Which node ran each block: the owner's events say, and each node
    // counts the blocks it ran that the owner committed.
    let events = a.get_text(&format!("/v1/jobs/{id}/events")).await;
    assert!(events.contains(r#""type":"distributed""#), "{events}");
    let mut by_node = std::collections::BTreeMap::<String, u64>::new();
    for (_, node) in block_events(&a, &id).await {
        *by_node.entry(node).or_default() += 1;
    }
    assert_eq!(by_node.values().sum::<u64>(), 24, "{by_node:?}");
    assert!(
        by_node.len() >= 2,
        "blocks ran on one node only: {by_node:?}"
    );
    let mut processed = 0;
    for (d, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        let n = metric(d, "weft_cluster_blocks_processed_total").await;
        assert_eq!(n, by_node.get(name).copied().unwrap_or(0), "node {name}");
        processed += n;
    }
    assert_eq!(processed, 24);

    // The same job on the owner alone: the very same output.
    let started = Instant::now();
    let local = submit_batch(
        &a,
        json!({"kind": "batch", "pipeline": "sleepy", "dataset": "naps", "distribute": false}),
    )
    .await;
    let done = job_done(&a, &local, Duration::from_secs(60)).await;
    let alone = started.elapsed();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        a.get_text(&format!("/v1/jobs/{local}/output")).await,
        output
    );
    let events = a.get_text(&format!("/v1/jobs/{local}/events")).await;
    assert!(!events.contains(r#""type":"distributed""#), "{events}");
    eprintln!("24 sleep-bound blocks: {spread:?} on 3 nodes ({by_node:?}), {alone:?} on one");

    // An objects dataset: the rows name objects on the owner, which the
    // other nodes fetch from it.
    let mut ids = String::new();
    for n in 0..6 {
        let doc = json!({"op": "sleep", "ms": 50, "file": n}).to_string();
        let r = a
            .http
            .put(a.url("/v1/objects"))
            .body(doc)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        ids.push_str(&format!("{}\n", v["id"].as_str().unwrap()));
    }
    let r = a
        .http
        .post(a.url("/v1/datasets?name=files&format=objects&block_rows=1"))
        .body(ids)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let mut outputs = Vec::new();
    for distribute in [true, false] {
        let id = submit_batch(
            &a,
            json!({"kind": "batch", "pipeline": "sleepy", "dataset": "files", "distribute": distribute}),
        )
        .await;
        let done = job_done(&a, &id, Duration::from_secs(60)).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        assert_eq!(done["progress"]["rows_out"], 6, "{done}");
        outputs.push(a.get_text(&format!("/v1/jobs/{id}/output")).await);
        if distribute {
            let nodes: std::collections::BTreeSet<String> = block_events(&a, &id)
                .await
                .into_iter()
                .map(|(_, n)| n)
                .collect();
            assert!(nodes.len() >= 2, "{nodes:?}");
        }
    }
    assert_eq!(outputs[0], outputs[1]);

    // `distribute: true` needs a cluster.
    let solo = TestDaemon::start().await;
    solo.deploy("probe", "probe.wasm").await;
    assert_eq!(solo.apply("sleepy", SLEEPY).await.0, 201);
    sleep_dataset(&solo, "naps", 4, 4, 1).await;
    let (status, body, _) = solo
        .post(
            "/v1/jobs",
            &json!({"kind": "batch", "pipeline": "sleepy", "dataset": "naps", "distribute": true}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("distribute"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_job_survives_its_owner_restarting() {
    let nats = NatsServer::start();
    let (mut a, _b, _c) = sleepy_cluster(&nats).await;
    // 24 blocks of 4 rows sleeping 50 ms: about 200 ms a block.
    sleep_dataset(&a, "naps", 96, 4, 50).await;
    let id = submit_batch(
        &a,
        json!({"kind": "batch", "pipeline": "sleepy", "dataset": "naps"}),
    )
    .await;
    eventually("a few blocks are done", Duration::from_secs(30), || async {
        let v = a.get_json(&format!("/v1/jobs/{id}")).await;
        match v["progress"]["blocks_done"].as_u64() {
            Some(n) if n >= 3 => Ok(()),
            _ => Err(v.to_string()),
        }
    })
    .await;
    // The owner goes away mid-job and comes back on another port: the
    // other nodes find it again through membership, the job resumes and
    // publishes what is left; nothing is lost or committed twice.
    let cluster = cluster_config(&nats, "a");
    a.restart_with(|c| c.cluster = Some(cluster)).await;
    let done = job_done(&a, &id, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(output_ns(&a, &id).await, (0..96).collect::<Vec<_>>());
    let mut blocks: Vec<u64> = block_events(&a, &id)
        .await
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    blocks.sort_unstable();
    assert_eq!(
        blocks,
        (0..24).collect::<Vec<_>>(),
        "each block committed once"
    );
    let events = a.get_text(&format!("/v1/jobs/{id}/events")).await;
    assert!(events.contains(r#""type":"resumed""#), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_distributed_job_stops_on_every_node() {
    let nats = NatsServer::start();
    let (a, b, c) = sleepy_cluster(&nats).await;
    // 40 blocks of 2 rows sleeping 100 ms.
    sleep_dataset(&a, "naps", 80, 2, 100).await;
    let id = submit_batch(
        &a,
        json!({"kind": "batch", "pipeline": "sleepy", "dataset": "naps"}),
    )
    .await;
    eventually("a few blocks are done", Duration::from_secs(30), || async {
        let v = a.get_json(&format!("/v1/jobs/{id}")).await;
        match v["progress"]["blocks_done"].as_u64() {
            Some(n) if n >= 3 => Ok(()),
            _ => Err(v.to_string()),
        }
    })
    .await;
    let (status, v, _) = a.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, 200, "{v}");
    let at_cancel = a.get_json(&format!("/v1/jobs/{id}")).await["progress"]["blocks_done"]
        .as_u64()
        .unwrap();
    // Blocks in flight finish and are refused; the rest of the job's tasks
    // are dropped from the queue: every node goes idle.
    for d in [&a, &b, &c] {
        eventually("workers go idle", Duration::from_secs(10), || async {
            match metric(d, "weft_cluster_blocks_in_flight").await {
                0 => Ok(()),
                n => Err(format!("{n} in flight")),
            }
        })
        .await;
    }
    tokio::time::sleep(BLOCK_ACK_WAIT).await;
    let v = a.get_json(&format!("/v1/jobs/{id}")).await;
    assert_eq!(v["state"], "cancelled", "{v}");
    assert_eq!(v["progress"]["blocks_done"], at_cancel, "{v}");
    assert!(at_cancel < 40, "{v}");
    let mut ran = 0;
    for d in [&a, &b, &c] {
        ran += metric(d, "weft_cluster_blocks_processed_total").await;
    }
    assert_eq!(ran, at_cancel, "no block was committed after the cancel");
}

/// Reserved CPU on node `d`.
async fn reserved_cpu(d: &TestDaemon) -> f64 {
    d.get_json("/v1/node").await["reserved"]["cpu"]
        .as_f64()
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_groups_span_nodes_all_or_nothing() {
    let nats = NatsServer::start();
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let cluster = cluster_config(&nats, name);
        nodes.push(
            TestDaemon::start_with(|c| {
                c.cluster = Some(cluster);
                c.capacity.cpus = Some(2.0);
                c.capacity.gpus = Some(0.0);
            })
            .await,
        );
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    sees(a, alive(&["a", "b", "c"])).await;
    sees(b, alive(&["a", "b", "c"])).await;

    // One bundle per node.
    let (s, group, _) = a
        .post(
            "/v1/placement-groups",
            &json!({"name": "ring", "bundles": [{"cpu": 1.5}, {"cpu": 1.5}, {"cpu": 1.5}], "strategy": "strict_spread"}),
        )
        .await;
    assert_eq!(s, 201, "{group}");
    let mut placed: Vec<&str> = group["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["node"].as_str().unwrap())
        .collect();
    placed.sort_unstable();
    assert_eq!(placed, ["a", "b", "c"], "{group}");
    for d in [a, b, c] {
        assert_eq!(reserved_cpu(d).await, 1.5);
    }

    // Three more bundles of 1 CPU fit on no node now (0.5 free each): 409,
    // and whatever share was made (a peer's heartbeat may still show 2
    // free) is rolled back.
    let (s, err, _) = b
        .post(
            "/v1/placement-groups",
            &json!({"name": "more", "bundles": [{"cpu": 1}, {"cpu": 1}, {"cpu": 1}], "strategy": "spread"}),
        )
        .await;
    assert_eq!(s, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was reserved"),
        "{err}"
    );
    for d in [a, b, c] {
        assert_eq!(reserved_cpu(d).await, 1.5, "nothing of `more` is left");
    }
    // Users do not say where bundles go.
    let (s, err, _) = c
        .post(
            "/v1/placement-groups",
            &json!({"name": "pinned", "bundles": [{"cpu": 0.1}], "nodes": ["c"]}),
        )
        .await;
    assert_eq!(s, 400, "{err}");
    // The name is the cluster's.
    eventually("b hears of ring", Duration::from_secs(5), || async {
        let (s, err, _) = b
            .post(
                "/v1/placement-groups",
                &json!({"name": "ring", "bundles": [{"cpu": 0.1}]}),
            )
            .await;
        if s == 409 && err["error"]["code"] == "placement_group_exists" {
            Ok(())
        } else {
            Err(format!("{s} {err}"))
        }
    })
    .await;

    // Deleting on any node releases every share.
    let r = c
        .http
        .delete(c.url("/v1/placement-groups/ring"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for d in [a, b, c] {
        assert_eq!(reserved_cpu(d).await, 0.0);
    }
}

/// The names of the nodes among `ds` that run pipeline `name`.
async fn running_on(ds: &[(&str, &TestDaemon)], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, d) in ds {
        if get_status(d, &format!("/v1/pipelines/{name}")).await.0 == 200 {
            out.push(n.to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_with_nodes_runs_on_that_many_and_moves_when_one_leaves() {
    let nats = NatsServer::start();
    let mut ds = vec![
        node(&nats, "a").await,
        node(&nats, "b").await,
        node(&nats, "c").await,
    ];
    sees(&ds[0], alive(&["a", "b", "c"])).await;
    ds[0].deploy("normalize", "normalize.wasm").await;
    let spec = "name = \"clean2\"\nnodes = 2\n[[steps]]\nstage = \"normalize\"\n[[triggers]]\nroute = \"/clean2\"\n";
    let (s, v) = ds[0].apply("clean2", spec).await;
    assert_eq!(s, 201, "{v}");

    let names = ["a", "b", "c"];
    let two = eventually("two nodes run clean2", Duration::from_secs(20), || {
        let view: Vec<(&str, &TestDaemon)> = names.iter().copied().zip(ds.iter()).collect();
        async move {
            let on = running_on(&view, "clean2").await;
            if on.len() == 2 {
                Ok(on)
            } else {
                Err(format!("{on:?}"))
            }
        }
    })
    .await;
    // It stays on those two (no flapping), each at its first version.
    tokio::time::sleep(HEARTBEAT * 5).await;
    let view: Vec<(&str, &TestDaemon)> = names.iter().copied().zip(ds.iter()).collect();
    assert_eq!(running_on(&view, "clean2").await, two);
    for (n, d) in &view {
        if two.contains(&n.to_string()) {
            assert_eq!(d.get_json("/v1/pipelines/clean2").await["version"], 1);
        }
    }
    // Every node serves the trigger: the third forwards.
    for d in &ds {
        let out = post_ok(d, "/clean2", json!({"text": "  Hello   WORLD "})).await;
        assert_eq!(out["text"], "hello world", "{out}");
    }

    // One of the two leaves: the third node takes its place.
    let leaving = names.iter().position(|n| *n == two[0]).unwrap();
    ds[leaving].daemon.take().unwrap().shutdown().await.unwrap();
    let rest: Vec<(&str, &TestDaemon)> = names
        .iter()
        .copied()
        .zip(ds.iter())
        .enumerate()
        .filter(|(i, _)| *i != leaving)
        .map(|(_, p)| p)
        .collect();
    eventually(
        "the other two run clean2",
        Duration::from_secs(20),
        || async {
            let on = running_on(&rest, "clean2").await;
            if on.len() == 2 {
                Ok(())
            } else {
                Err(format!("{on:?}"))
            }
        },
    )
    .await;
}
