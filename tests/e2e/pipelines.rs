//! Pipelines: specs over HTTP, triggers mounted live, batching, backpressure,
//! deadlines, retries, streaming, scaling, persistence.

use std::time::Duration;

use serde_json::{Value, json};
use weft_e2e::TestDaemon;

fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pipelines")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn status(d: &TestDaemon, name: &str) -> Value {
    d.get_json(&format!("/v1/pipelines/{name}")).await
}

async fn text_daemon() -> TestDaemon {
    let d = TestDaemon::start().await;
    d.deploy("normalize", "normalize.wasm").await;
    d.deploy("chunk", "chunk.wasm").await;
    d.deploy("count", "count.wasm").await;
    let (code, body) = d.apply("text", &example("text.toml")).await;
    assert_eq!(code, 201, "{body}");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_pipeline_runs_through_api_and_trigger_and_streams() {
    let d = text_daemon().await;
    let doc = json!({"text": "  One TWO three four five six seven eight NINE ten  "});
    let (code, out, _) = d.post("/v1/pipelines/text/invoke", &doc).await;
    assert_eq!(code, 200, "{out}");
    let chunks = out.as_array().expect("one count result per chunk");
    assert_eq!(chunks.len(), 2, "{out}");
    assert_eq!(chunks[0]["words"], 8);
    assert_eq!(chunks[1]["words"], 2);
    assert_eq!(chunks[1]["total_words"], 10);

    let (code, out, _) = d.post("/text", &doc).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out.as_array().unwrap().len(), 2);
    // The route with a method it does not serve: 405 naming the one it
    // does (not 404, as if there were no such route); a path nobody
    // serves stays 404.
    let r = d.http.get(d.url("/text")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "/text accepts POST, not GET", "{v}");
    let r = d.http.get(d.url("/nothing-here")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let r = d
        .http
        .post(d.url("/text/stream"))
        .header("content-type", "application/json")
        .body(doc.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let partials = text.matches("event: partial").count();
    let progress = text.matches("event: progress").count();
    assert_eq!((partials, progress), (2, 2), "{text}");
    assert!(text.contains("event: result"), "{text}");
    assert!(
        text.contains("\"text\":\"one two three four five six seven eight\""),
        "partials are the normalised chunks: {text}"
    );

    let st = status(&d, "text").await;
    assert_eq!(st["version"], 1);
    assert_eq!(st["steps"][0]["name"], "normalize");
    assert!(st["steps"][1]["calls"].as_u64().unwrap() >= 3);
    let metrics = d.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"weft_step_replicas{pipeline="text",step="chunk"}"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused_with_the_field_at_fault() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let good = "name = \"p\"\n[[steps]]\nstage = \"probe\"\n[[triggers]]\nroute = \"/p\"\n";
    let cases = [
        (
            good.replace(
                "stage = \"probe\"",
                "stage = \"probe\"\nbatch = { max_size = \"x\" }",
            ),
            "steps[0].batch.max_size",
        ),
        (
            good.replace("stage = \"probe\"", "stage = \"nothere\""),
            "steps[0].stage",
        ),
        (
            good.replace("stage = \"probe\"", "stage = \"probe\"\nversion = 7"),
            "steps[0].stage",
        ),
        (
            good.replace("route = \"/p\"", "route = \"/v1/stages\""),
            "triggers[0].route",
        ),
        (good.replace("[[steps]]", "colour = 1\n[[steps]]"), "colour"),
        (good.replace("name = \"p\"", "name = \"q\""), "name"),
        (
            good.replace(
                "stage = \"probe\"",
                "stage = \"probe\"\nconfig = { fail_init = \"true\" }",
            ),
            "steps[0].config",
        ),
    ];
    for (spec, field) in cases {
        let (code, body) = d.apply("p", &spec).await;
        assert_eq!(code, 400, "{spec}\n{body}");
        assert_eq!(body["error"]["code"], "invalid_spec");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {body}"
        );
    }
    let list: Value = d.get_json("/v1/pipelines").await;
    assert_eq!(list["pipelines"], json!([]), "refused specs left nothing");

    assert_eq!(d.apply("p", good).await.0, 201);
    assert_eq!(
        d.apply("p", good).await.0,
        200,
        "unchanged spec keeps its version"
    );
    // A newer deployment of the stage: the same spec applied again runs it,
    // the pipeline's version unchanged.
    let stage = |st: &Value| st["steps"][0]["stage_version"].as_u64().unwrap();
    let before: Value = d.get_json("/v1/pipelines/p").await;
    d.deploy_query("probe", "probe.wasm", "config.fail_init=false")
        .await;
    let (code, after) = d.apply("p", good).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["version"], before["version"]);
    assert_eq!(stage(&after), stage(&before) + 1, "{after}");
    let now: Value = d.get_json("/v1/pipelines/p").await;
    assert_eq!(stage(&now), stage(&before) + 1, "the new build runs: {now}");
    let other = good.replace("name = \"p\"", "name = \"other\"");
    let (code, body) = d.apply("other", &other).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"]["code"], "route_taken");

    let (code, body, _) = d.post("/v1/pipelines/nope/invoke", &json!({})).await;
    assert_eq!(
        (code, body["error"]["code"].clone()),
        (404, json!("pipeline_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_change_live_and_pipelines_survive_restart() {
    let mut d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let spec = "name = \"p\"\n[[steps]]\nstage = \"probe\"\n[[triggers]]\nroute = \"/one\"\n";
    assert_eq!(d.apply("p", spec).await.0, 201);
    let echo = json!({"op": "echo", "x": 1});
    assert_eq!(d.post("/one", &echo).await.1, echo);

    let (code, body) = d.apply("p", &spec.replace("/one", "/two")).await;
    assert_eq!((code, body["version"].clone()), (201, json!(2)));
    assert_eq!(d.post("/one", &echo).await.0, 404, "old route gone");
    assert_eq!(
        d.post("/two", &echo).await.1,
        echo,
        "new route live without a restart"
    );

    d.restart().await;
    assert_eq!(
        d.post("/two", &echo).await.1,
        echo,
        "pipeline and route back after restart"
    );

    let r = d
        .http
        .delete(d.url("/v1/pipelines/p"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(d.post("/two", &echo).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched_into_fewer_calls() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let spec = "name = \"b\"\n[[steps]]\nstage = \"probe\"\nbatch = { max_size = 8, max_wait_ms = 200 }\nreplicas = { min = 1, max = 1 }\n";
    assert_eq!(d.apply("b", spec).await.0, 201);
    // Spawn all eight before awaiting any: they must be in flight together.
    let calls: Vec<_> = (0..8)
        .map(|i| {
            d.spawn_post(
                "/v1/pipelines/b/invoke",
                json!({"op": "batch", "i": i}).to_string(),
            )
        })
        .collect();
    let mut sizes = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        let (code, text) = call.await.unwrap();
        assert_eq!(code, 200, "{text}");
        let got: Value = serde_json::from_str(&text).unwrap();
        let sent = json!({"op": "batch", "i": i});
        assert_eq!(got["input"], sent, "each caller gets its own item back");
        sizes.push(got["batch_size"].as_u64().unwrap());
    }
    // The stage itself saw batches of more than one item.
    assert!(
        sizes.iter().any(|&s| s > 1),
        "batch sizes seen by the stage: {sizes:?}"
    );
    let st = status(&d, "b").await;
    assert_eq!(st["steps"][0]["items"], 8);
    let n = st["steps"][0]["calls"].as_u64().unwrap();
    assert!(n < 8, "8 concurrent requests took {n} calls: {st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queues_answer_503_and_deadlines_504_naming_the_step() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let spec = "name = \"s\"\ntimeout_ms = 1500\n[[steps]]\nname = \"slow\"\nstage = \"probe\"\nreplicas = { min = 1, max = 1, target_in_flight = 1 }\n";
    assert_eq!(d.apply("s", spec).await.0, 201);
    let spinners: Vec<_> = (0..3)
        .map(|_| d.spawn_post("/v1/pipelines/s/invoke", r#"{"op":"spin"}"#))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, body, headers) = d
        .post("/v1/pipelines/s/invoke", &json!({"op": "echo"}))
        .await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("step `slow`"),
        "{body}"
    );
    assert_eq!(headers["retry-after"], "1");
    for s in spinners {
        assert_eq!(s.await.unwrap().0, 504);
    }
    // Jobs whose callers gave up are skipped; wait for the queue to drain.
    for _ in 0..50 {
        if status(&d, "s").await["steps"][0]["queued"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body, _) = d
        .post("/v1/pipelines/s/invoke", &json!({"op": "spin"}))
        .await;
    assert_eq!(code, 504, "{body}");
    assert_eq!(body["error"]["code"], "deadline_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("step `slow`"),
        "{body}"
    );
    let st = status(&d, "s").await;
    assert!(st["steps"][0]["rejected"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_are_retried_per_policy() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let spec =
        "name = \"r\"\n[[steps]]\nstage = \"probe\"\nretries = { attempts = 2, backoff_ms = 1 }\n";
    assert_eq!(d.apply("r", spec).await.0, 201);
    let (code, body, _) = d
        .post("/v1/pipelines/r/invoke", &json!({"op": "trap"}))
        .await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["error"]["code"], "trap");
    let (code, _, _) = d
        .post("/v1/pipelines/r/invoke", &json!({"op": "bad"}))
        .await;
    assert_eq!(code, 400, "bad input is not retried");
    let st = status(&d, "r").await;
    assert_eq!(st["steps"][0]["retries"], 2);
    assert_eq!(st["steps"][0]["traps"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_prewarm_scale_to_zero_and_cold_start() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let spec = "name = \"z\"\n[[steps]]\nname = \"warm\"\nstage = \"probe\"\nreplicas = { min = 2, max = 3 }\n\
                [[steps]]\nname = \"cold\"\nstage = \"probe\"\nreplicas = { min = 0, max = 2, idle_timeout_s = 1 }\n";
    assert_eq!(d.apply("z", spec).await.0, 201);
    let mut warm = 0;
    for _ in 0..50 {
        warm = status(&d, "z").await["steps"][0]["replicas"]["live"]
            .as_u64()
            .unwrap();
        if warm == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(warm, 2, "min replicas are pre-warmed");
    let echo = json!({"op": "echo"});
    assert_eq!(d.post("/v1/pipelines/z/invoke", &echo).await.0, 200);
    assert_eq!(status(&d, "z").await["steps"][1]["replicas"]["live"], 1);
    let mut live = 1;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        live = status(&d, "z").await["steps"][1]["replicas"]["live"]
            .as_u64()
            .unwrap();
        if live == 0 {
            break;
        }
    }
    assert_eq!(live, 0, "idle replicas above min=0 are removed");
    assert_eq!(
        status(&d, "z").await["steps"][0]["replicas"]["live"],
        2,
        "min is kept"
    );
    let (code, body, _) = d.post("/v1/pipelines/z/invoke", &echo).await;
    assert_eq!(
        (code, body),
        (200, echo),
        "the first request after zero is served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapplying_during_traffic_fails_no_request() {
    let d = TestDaemon::start().await;
    d.deploy("normalize", "normalize.wasm").await;
    let spec = |lower: bool| {
        format!(
            "name = \"live\"\n[[steps]]\nstage = \"normalize\"\nconfig = {{ lowercase = \"{lower}\" }}\n\
             [[triggers]]\nroute = \"/live\"\n"
        )
    };
    assert_eq!(d.apply("live", &spec(true)).await.0, 201);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (http, url, stop) = (d.http.clone(), d.url("/live"), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed, mut lowered, mut kept) = (0, 0, 0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(r#"{"text":"Mixed CASE"}"#)
                    .send()
                    .await
                    .unwrap();
                if r.status() != 200 {
                    failed += 1;
                    continue;
                }
                ok += 1;
                match r.text().await.unwrap().as_str() {
                    r#"{"text":"mixed case"}"# => lowered += 1,
                    r#"{"text":"Mixed CASE"}"# => kept += 1,
                    other => panic!("unexpected answer {other}"),
                }
            }
            (ok, failed, lowered, kept)
        })
    };
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (code, body) = d.apply("live", &spec(i % 2 == 1)).await;
        assert_eq!(code, 201, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, lowered, kept) = traffic.await.unwrap();
    assert_eq!(
        failed, 0,
        "requests failed while the pipeline was re-applied"
    );
    assert!(
        lowered > 0 && kept > 0,
        "both versions served: {ok} ok, {lowered} lowered, {kept} kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_scale_up_under_load_and_back_down_to_min() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let spec = "name = \"u\"\ntimeout_ms = 1000\n[[steps]]\nstage = \"probe\"\n\
                replicas = { min = 1, max = 3, target_in_flight = 1, idle_timeout_s = 1 }\n";
    assert_eq!(d.apply("u", spec).await.0, 201);
    let load: Vec<_> = (0..3)
        .map(|_| d.spawn_post("/v1/pipelines/u/invoke", r#"{"op":"spin"}"#))
        .collect();
    // While the calls spin (up to the 1 s timeout): the third replica may
    // take a while to start on a loaded machine (it did, past 500 ms, once).
    let started = std::time::Instant::now();
    let mut busy = status(&d, "u").await;
    while busy["steps"][0]["replicas"]["live"] != 3
        && started.elapsed() < Duration::from_millis(900)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        busy = status(&d, "u").await;
    }
    assert_eq!(
        busy["steps"][0]["replicas"]["live"], 3,
        "three concurrent calls, three replicas: {busy}"
    );
    for call in load {
        assert_eq!(call.await.unwrap().0, 504);
    }
    let mut live = 3;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        live = status(&d, "u").await["steps"][0]["replicas"]["live"]
            .as_u64()
            .unwrap();
        if live == 1 {
            break;
        }
    }
    assert_eq!(live, 1, "idle replicas scale back down to min");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_cancels_the_pipeline_work() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let spec = "name = \"c\"\ntimeout_ms = 20000\n[[steps]]\nstage = \"probe\"\n\
                replicas = { min = 0, max = 1 }\n[[triggers]]\nroute = \"/c\"\nstream = true\n";
    assert_eq!(d.apply("c", spec).await.0, 201);
    let r = d
        .http
        .post(d.url("/c"))
        .header("content-type", "application/json")
        .body(r#"{"op":"spin"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&d, "c").await["steps"][0]["in_flight"], 1);
    drop(r);
    let mut in_flight = 1;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        in_flight = status(&d, "c").await["steps"][0]["in_flight"]
            .as_u64()
            .unwrap();
        if in_flight == 0 {
            break;
        }
    }
    assert_eq!(
        in_flight, 0,
        "the spinning call went on after its client left"
    );
    let (code, body, _) = d
        .post("/v1/pipelines/c/invoke", &json!({"op": "echo"}))
        .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_capacity_gets_only_503s_and_recovers() {
    let d = TestDaemon::start().await;
    d.deploy("normalize", "normalize.wasm").await;
    let spec = "name = \"burst\"\n[[steps]]\nstage = \"normalize\"\n\
                replicas = { min = 1, max = 1, target_in_flight = 1 }\n";
    assert_eq!(d.apply("burst", spec).await.0, 201);
    let calls: Vec<_> = (0..64)
        .map(|_| {
            d.spawn_post(
                "/v1/pipelines/burst/invoke",
                r#"{"text":"Burst  OF  Work"}"#,
            )
        })
        .collect();
    // While the burst runs, the queue depth the daemon reports stays sane
    // (it used to wrap below zero when a worker took a job before the
    // sender had counted it).
    for _ in 0..20 {
        let queued = status(&d, "burst").await["steps"][0]["queued"]
            .as_u64()
            .unwrap();
        assert!(queued <= 64, "queue depth reported as {queued}");
    }
    let mut codes = std::collections::BTreeMap::new();
    for c in calls {
        *codes.entry(c.await.unwrap().0).or_insert(0) += 1;
    }
    assert!(
        codes.keys().all(|c| *c == 200 || *c == 503),
        "only 200 and 503: {codes:?}"
    );
    assert!(codes.contains_key(&200), "{codes:?}");
    let (code, body, _) = d
        .post("/v1/pipelines/burst/invoke", &json!({"text": "After"}))
        .await;
    assert_eq!(
        (code, body),
        (200, json!({"text": "after"})),
        "recovers after the burst"
    );
}

#[tokio::test]
async fn replicas_follow_ongoing_requests_over_target_in_flight() {
    let d = TestDaemon::start().await;
    d.deploy("probe", "probe.wasm").await;
    let spec = "name = \"t\"\ntimeout_ms = 20000\n[[steps]]\nstage = \"probe\"\n\
                replicas = { min = 1, max = 4, target_in_flight = 2, idle_timeout_s = 1 }\n";
    assert_eq!(d.apply("t", spec).await.0, 201);
    let body = json!({"op": "sleep", "ms": 400}).to_string();
    // Four requests at two per replica: two replicas, not four.
    let calls: Vec<_> = (0..4)
        .map(|_| d.spawn_post("/v1/pipelines/t/invoke", body.clone()))
        .collect();
    let mut most_live = 0;
    let mut target = 0;
    for _ in 0..15 {
        let s = status(&d, "t").await;
        most_live = most_live.max(s["steps"][0]["replicas"]["live"].as_u64().unwrap());
        target = target.max(s["steps"][0]["replicas"]["target"].as_u64().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for c in calls {
        assert_eq!(c.await.unwrap().0, 200);
    }
    assert_eq!(target, 2, "4 ongoing / target_in_flight 2");
    assert!(most_live <= 2, "{most_live} replicas for a target of 2");
    // Eight at once: all four.
    let calls: Vec<_> = (0..8)
        .map(|_| d.spawn_post("/v1/pipelines/t/invoke", body.clone()))
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let metrics = d.get_text("/metrics").await;
    assert!(
        metrics.contains("weft_step_target_replicas{pipeline=\"t\",step=\"probe\"} 4"),
        "{metrics}"
    );
    for c in calls {
        assert_eq!(c.await.unwrap().0, 200);
    }
    // Idle past idle_timeout_s: the target falls back to min.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(&d, "t").await;
        if s["steps"][0]["replicas"]["target"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < until, "{s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
