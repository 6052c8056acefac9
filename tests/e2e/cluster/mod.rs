//! Cluster mode: in-process daemons joined through a real `nats-server -js`
//! (a child process per test): membership, failure detection, registry
//! replication, late joiners, a NATS restart, batch jobs across nodes.
//! (A node killed with `kill -9` mid-job: `host/daemon/tests/cluster_crash.rs`,
//! real processes.)

mod jobs;
mod placement;

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

/// The objects in the cluster's shared object store (read as the daemon
/// reads them: the last record of each object's subject), by name, and the
/// messages its stream holds.
async fn shared_store(
    nats: &NatsServer,
) -> (Vec<async_nats::jetstream::object_store::ObjectInfo>, u64) {
    use futures_util::StreamExt;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("OBJ_weft_objects").await.unwrap();
    let mut subjects = stream
        .info_with_subjects("$O.weft_objects.M.>")
        .await
        .unwrap();
    let mut names = Vec::new();
    while let Some(subject) = subjects.next().await {
        names.push(subject.unwrap().0);
    }
    let mut objects = Vec::new();
    for subject in names {
        let Ok(message) = stream.get_last_raw_message_by_subject(&subject).await else {
            continue;
        };
        let info: async_nats::jetstream::object_store::ObjectInfo =
            serde_json::from_slice(&message.payload).unwrap();
        if !info.deleted {
            objects.push(info);
        }
    }
    objects.sort_by(|a, b| a.name.cmp(&b.name));
    let messages = stream.info().await.unwrap().state.messages;
    (objects, messages)
}

/// The names of the objects in the cluster's shared object store.
async fn shared_objects(nats: &NatsServer) -> Vec<String> {
    shared_store(nats)
        .await
        .0
        .into_iter()
        .map(|o| o.name)
        .collect()
}

/// Waits until the names in the shared object store pass `ok`.
async fn shared_objects_until(nats: &NatsServer, what: &str, ok: impl Fn(&[String]) -> bool) {
    let ok = &ok;
    eventually(what, Duration::from_secs(20), || async move {
        let names = shared_objects(nats).await;
        if ok(&names) {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
}

/// The shared object store keeps what some registry entry names: a deleted
/// model's bytes, and a stage's first version's once a second replaces it,
/// are deleted once older than `object_grace`; the latest stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_objects_nothing_names_are_freed() {
    let nats = NatsServer::start();
    let mut cluster = cluster_config(&nats, "a");
    cluster.object_grace = Duration::from_millis(300);
    let a = TestDaemon::start_with(|c| c.cluster = Some(cluster)).await;
    let has = |names: &[String], id: &str| names.iter().any(|n| n == id);

    let onnx = weft_nn::fixtures::onnx(&["MatMul", "Add", "Gelu"]);
    let upload = || {
        a.http
            .put(a.url("/v1/models/tiny?encoding=onnx"))
            .body(onnx.clone())
            .send()
    };
    let r = upload().await.unwrap();
    assert_eq!(r.status(), 201);
    let model = r.json::<Value>().await.unwrap()["latest"]["object"]
        .as_str()
        .unwrap()
        .to_string();
    let first = a.deploy("normalize", "normalize.wasm").await["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let nats = &nats;
    shared_objects_until(nats, "both copied to the cluster", |names| {
        has(names, &model) && has(names, &first)
    })
    .await;

    assert_eq!(a.delete("/v1/models/tiny").await.0, 204);
    let wasm = padded(&weft_e2e::component("normalize.wasm"), 64);
    let r = a
        .http
        .put(a.url("/v1/stages/normalize"))
        .body(wasm)
        .send()
        .await
        .unwrap();
    let second: Value = r.json().await.unwrap();
    let second = second["digest"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    shared_objects_until(nats, "the unnamed objects freed", |names| {
        !has(names, &model) && !has(names, &first) && has(names, &second)
    })
    .await;
    // The same bytes uploaded again are copied again (the store still has
    // the deleted object's record).
    assert_eq!(upload().await.unwrap().status(), 201);
    shared_objects_until(nats, "the model copied again", |names| has(names, &model)).await;
    // Named objects stay, round after round: the stage's latest, and a
    // state value too large to copy inline, which the state entry names.
    a.deploy("probe", "probe.wasm").await;
    let big = "z".repeat(300 << 10);
    let set = |value: &str| json!({"op": "state_set", "key": "big", "value": value});
    assert_eq!(a.invoke("probe", &set(&big)).await.0, 200);
    let state = "s.probe.big";
    shared_objects_until(nats, "the state value copied", |names| has(names, state)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probe = a.get_json("/v1/stages/probe").await["latest"]["digest"].clone();
    let mut expect = vec![
        model.clone(),
        second.clone(),
        state.to_string(),
        probe.as_str().unwrap().to_string(),
    ];
    expect.sort();
    assert_eq!(shared_objects(nats).await, expect);
    // Overwritten by a small value (copied inline), it goes.
    assert_eq!(a.invoke("probe", &set("small")).await.0, 200);
    shared_objects_until(nats, "the state object freed", |names| !has(names, state)).await;
    // Nothing is left of the deleted objects, not even their records: the
    // stream holds each live object's record and chunks alone.
    eventually(
        "only live objects left",
        Duration::from_secs(20),
        || async {
            let (objects, messages) = shared_store(nats).await;
            let live: usize = objects.iter().map(|o| 1 + o.chunks).sum();
            if messages == live as u64 {
                Ok(())
            } else {
                Err(format!("{messages} messages, {live} of live objects"))
            }
        },
    )
    .await;
}
