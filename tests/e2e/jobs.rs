//! Datasets and jobs: streamed uploads, batch jobs over datasets (order,
//! completeness, failures, cancel, resume), async invoke jobs with events.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_e2e::TestDaemon;

async fn apply(d: &TestDaemon, name: &str, toml: &str) {
    let r = d
        .http
        .put(d.url(&format!("/v1/pipelines/{name}")))
        .header("content-type", "application/toml")
        .body(toml.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(status.is_success(), "{status}: {}", r.text().await.unwrap());
}

async fn dataset(d: &TestDaemon, query: &str, body: String) -> (u16, Value) {
    let r = d
        .http
        .post(d.url(&format!("/v1/datasets?{query}")))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn submit(d: &TestDaemon, spec: &Value) -> (u16, Value, Option<String>) {
    let r = d
        .http
        .post(d.url("/v1/jobs"))
        .header("content-type", "application/json")
        .body(spec.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap(), location)
}

/// Polls a job until it is in a terminal state.
async fn finished(d: &TestDaemon, id: &str) -> Value {
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

/// A daemon with the probe stage behind a batched pipeline `p`.
async fn probe_daemon() -> TestDaemon {
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

fn rows(n: usize, op: impl Fn(usize) -> Value) -> String {
    (0..n).map(|i| format!("{}\n", op(i))).collect()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_batch_job_writes_every_row_once_in_input_order() {
    let d = probe_daemon().await;
    let (status, ds) = dataset(
        &d,
        "name=nums&format=jsonl&block_rows=50",
        rows(1000, |i| json!({"op": "echo", "n": i})),
    )
    .await;
    assert_eq!(status, 201, "{ds}");
    assert_eq!(
        (ds["rows"].as_u64(), ds["blocks"].as_u64()),
        (Some(1000), Some(20))
    );
    let out_dir = d.dir.path().join("exported");
    let (status, job, location) = submit(
        &d,
        &json!({"kind": "batch", "pipeline": "p", "dataset": "nums", "output": {"dir": out_dir}}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(location.as_deref(), Some(format!("/v1/jobs/{id}").as_str()));

    let done = finished(&d, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let p = &done["progress"];
    assert_eq!(
        (p["items_done"].as_u64(), p["items_failed"].as_u64()),
        (Some(1000), Some(0))
    );
    assert_eq!(
        (p["blocks_done"].as_u64(), p["rows_out"].as_u64()),
        (Some(20), Some(1000))
    );

    let output = d.get_text(&format!("/v1/jobs/{id}/output")).await;
    let ns: Vec<u64> = lines(&output)
        .iter()
        .map(|v| v["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..1000).collect::<Vec<_>>());
    // The same bytes in the output directory, and an empty error file.
    assert_eq!(
        std::fs::read_to_string(out_dir.join("output.jsonl")).unwrap(),
        output
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("errors.jsonl")).unwrap(),
        ""
    );

    // The event log replays from the start and ends with the final state.
    let events = d.get_text(&format!("/v1/jobs/{id}/events")).await;
    assert_eq!(events.matches("event: block").count(), 20, "{events}");
    assert!(
        events.trim_end().ends_with(r#""type":"state"}"#)
            || events.contains(r#""state":"succeeded""#),
        "{events}"
    );
    let metrics = d.get_text("/metrics").await;
    assert!(
        metrics.contains("weft_step_busy_seconds_total{pipeline=\"p\",step=\"probe\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("weft_jobs_running 0"));

    // A finished job cannot be cancelled; it can be deleted.
    let r = d
        .http
        .post(d.url(&format!("/v1/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = d
        .http
        .delete(d.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = d
        .http
        .get(d.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn rows_that_trap_fail_alone_and_the_job_counts_them() {
    let d = probe_daemon().await;
    // 1% of rows trap; they are batched with good rows, which must not fail
    // with them.
    let body = rows(400, |i| {
        if i % 100 == 7 {
            json!({"op": "trap", "n": i})
        } else {
            json!({"op": "echo", "n": i})
        }
    });
    assert_eq!(
        dataset(&d, "name=traps&format=jsonl&block_rows=64", body)
            .await
            .0,
        201
    );
    let (_, job, _) = submit(
        &d,
        &json!({"kind": "batch", "pipeline": "p", "dataset": "traps"}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    let done = finished(&d, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["progress"]["items_failed"], 4);
    let output = lines(&d.get_text(&format!("/v1/jobs/{id}/output")).await);
    assert_eq!(output.len(), 396);
    assert!(output.iter().all(|v| v["op"] == "echo"));
    let errors = lines(&d.get_text(&format!("/v1/jobs/{id}/errors")).await);
    let failed: Vec<u64> = errors.iter().map(|e| e["row"].as_u64().unwrap()).collect();
    assert_eq!(failed, vec![7, 107, 207, 307]);
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("deliberate trap"),
        "{}",
        errors[0]
    );

    // With no failures allowed, one poison row fails the job, and the
    // output (incomplete) is refused unless asked for partially.
    let body = rows(10, |i| json!({"op": if i == 5 { "fatal" } else { "echo" }}));
    assert_eq!(dataset(&d, "name=poison&format=jsonl", body).await.0, 201);
    let (_, job, _) = submit(
        &d,
        &json!({"kind": "batch", "pipeline": "p", "dataset": "poison", "max_failed_fraction": 0}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    let done = finished(&d, &id).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("1 of 10 rows failed"),
        "{done}"
    );
    let r = d
        .http
        .get(d.url(&format!("/v1/jobs/{id}/output")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "job_not_succeeded"
    );
    let r = d
        .http
        .get(d.url(&format!("/v1/jobs/{id}/output?partial=maybe")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "bad_query"
    );
    let partial = d
        .get_text(&format!("/v1/jobs/{id}/output?partial=true"))
        .await;
    assert_eq!(partial.lines().count(), 9);
}

#[tokio::test]
async fn cancel_stops_a_running_job_promptly() {
    let d = probe_daemon().await;
    let body = rows(200, |_| json!({"op": "sleep", "ms": 50}));
    assert_eq!(
        dataset(&d, "name=slow&format=jsonl&block_rows=10", body)
            .await
            .0,
        201
    );
    let (_, job, _) = submit(
        &d,
        &json!({"kind": "batch", "pipeline": "p", "dataset": "slow"}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    // Wait until it has made some progress, then cancel.
    let until = Instant::now() + Duration::from_secs(30);
    while d.get_json(&format!("/v1/jobs/{id}")).await["progress"]["blocks_done"] == 0 {
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The dataset cannot go while a job reads it.
    let r = d
        .http
        .delete(d.url("/v1/datasets/slow"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "dataset_in_use"
    );
    let r = d
        .http
        .post(d.url(&format!("/v1/jobs/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "cancelled");
    let r = d
        .http
        .delete(d.url("/v1/datasets/slow"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        204,
        "a dataset is free once its jobs have ended"
    );
    let at_cancel = d.get_json(&format!("/v1/jobs/{id}")).await["progress"]["blocks_done"]
        .as_u64()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = d.get_json(&format!("/v1/jobs/{id}")).await;
    assert_eq!(later["state"], "cancelled");
    assert!(
        later["progress"]["blocks_done"].as_u64().unwrap() <= at_cancel + 4,
        "{later}"
    );
    assert!(
        later["progress"]["blocks_done"].as_u64().unwrap() < 20,
        "{later}"
    );
    assert!(d.get_text("/metrics").await.contains("weft_jobs_running 0"));
}

#[tokio::test]
async fn bad_datasets_and_job_specs_are_explained() {
    let d = probe_daemon().await;
    // Datasets.
    let (s, e) = dataset(&d, "name=bad&format=jsonl", "{}\n{\"a\":\nnext\n".into()).await;
    assert_eq!(s, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2: not JSON"),
        "{e}"
    );
    assert_eq!(
        d.get_json("/v1/datasets").await["datasets"],
        json!([]),
        "nothing registered"
    );
    let (s, e) = dataset(&d, "name=nofmt", "x\n".into()).await;
    assert_eq!(s, 400);
    assert!(
        e["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("format=jsonl"),
        "{e}"
    );
    let (s, _) = dataset(&d, "name=Bad Name&format=lines", "x\n".into()).await;
    assert_eq!(s, 400);
    let (s, e) = dataset(&d, "format=lines", "x\n".into()).await;
    assert_eq!(s, 400, "{e}");
    for rows in ["0", "100001"] {
        let (s, e) = dataset(
            &d,
            &format!("name=t&format=lines&block_rows={rows}"),
            "x\n".into(),
        )
        .await;
        assert_eq!(s, 400, "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("block_rows"),
            "{e}"
        );
    }
    let (s, e) = dataset(&d, "name=t&format=parquet", "x\n".into()).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (s, csv) = dataset(&d, "name=t&format=csv", "op,n\necho,1\necho,\"2\"\n".into()).await;
    assert_eq!((s, csv["rows"].as_u64()), (201, Some(2)), "{csv}");
    let (s, e) = dataset(&d, "name=t&format=lines", "x\n".into()).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("already_exists"))
    );
    let (s, e) = dataset(
        &d,
        "name=o&format=objects",
        format!("{}\n", "ab".repeat(32)),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not stored"),
        "{e}"
    );
    let r = d
        .http
        .get(d.url("/v1/datasets/missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Jobs.
    let cases = [
        (
            json!({"kind": "batch", "pipeline": "nope", "dataset": "t"}),
            "no pipeline named `nope`",
        ),
        (
            json!({"kind": "batch", "pipeline": "p", "dataset": "nope"}),
            "no dataset named `nope`",
        ),
        (
            json!({"kind": "batch", "pipeline": "p"}),
            "missing field `dataset`",
        ),
        (
            json!({"kind": "train", "pipeline": "p"}),
            "unknown variant `train`",
        ),
        (
            json!({"kind": "batch", "pipeline": "p", "dataset": "t", "output": {"dir": "relative"}}),
            "`output.dir`",
        ),
        (
            json!({"kind": "batch", "pipeline": "p", "dataset": "t", "output": {"dir": "/proc/weft-no"}}),
            "cannot write",
        ),
        (
            json!({"kind": "invoke", "pipeline": "p", "input_base64": "%%"}),
            "not valid base64",
        ),
    ];
    for (spec, message) in cases {
        let (s, e, _) = submit(&d, &spec).await;
        assert_eq!(s, 400, "{spec}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(message),
            "{spec}: {e}"
        );
        assert!(e["error"]["hint"].is_string(), "{e}");
    }
    assert_eq!(
        d.get_json("/v1/jobs").await["jobs"],
        json!([]),
        "nothing submitted"
    );
    for path in [
        "/v1/jobs/42",
        "/v1/jobs/x",
        "/v1/jobs/42/events",
        "/v1/jobs/42/output",
    ] {
        let r = d.http.get(d.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "job_not_found"
        );
    }
}

#[tokio::test]
async fn invoke_jobs_run_in_the_background_with_replayable_events() {
    let d = TestDaemon::start().await;
    d.deploy_query("chunk", "chunk.wasm", "config.size=2").await;
    apply(
        &d,
        "chunks",
        "name = \"chunks\"\n[[steps]]\nstage = \"chunk\"\n[[triggers]]\nmethod = \"POST\"\nroute = \"/chunks\"\n",
    )
    .await;
    let (s, job, location) = submit(
        &d,
        &json!({"kind": "invoke", "pipeline": "chunks", "input": {"text": "a b c d e f"}}),
    )
    .await;
    assert_eq!(s, 202, "{job}");
    let location = location.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let done = finished(&d, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(done["result"].is_array(), "{done}");
    assert_eq!(d.get_json(&location).await["id"], id);

    // Replay: running, partials (one per chunk), progress, then the end.
    let events = d.get_text(&format!("/v1/jobs/{id}/events")).await;
    assert_eq!(events.matches("event: partial").count(), 3, "{events}");
    assert!(events.contains("event: progress"), "{events}");
    assert!(events.contains(r#""state":"succeeded""#), "{events}");
    // Last-Event-ID skips what the client has seen.
    let r = d
        .http
        .get(d.url(&format!("/v1/jobs/{id}/events")))
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    let rest = r.text().await.unwrap();
    assert!(
        !rest.contains("id: 1\n") && !rest.contains("id: 2\n") && rest.contains("id: 3\n"),
        "{rest}"
    );

    // A trigger request with `Prefer: respond-async` becomes a job too.
    let r = d
        .http
        .post(d.url("/chunks"))
        .header("prefer", "respond-async")
        .header("content-type", "application/json")
        .body(json!({"text": "x y z"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["kind"], "invoke");
    let done = finished(&d, job["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
}

#[tokio::test]
async fn a_running_batch_job_resumes_after_a_restart() {
    let mut d = probe_daemon().await;
    let body = rows(120, |i| json!({"op": "sleep", "ms": 20, "n": i}));
    assert_eq!(
        dataset(&d, "name=slow&format=jsonl&block_rows=10", body)
            .await
            .0,
        201
    );
    let (_, job, _) = submit(
        &d,
        &json!({"kind": "batch", "pipeline": "p", "dataset": "slow"}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    let until = Instant::now() + Duration::from_secs(30);
    while d.get_json(&format!("/v1/jobs/{id}")).await["progress"]["blocks_done"] == 0 {
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An open event stream must not hold the shutdown up.
    let events = d
        .http
        .get(d.url(&format!("/v1/jobs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    tokio::time::timeout(Duration::from_secs(20), d.restart())
        .await
        .expect("restart with a job event stream open");
    drop(events);
    let done = finished(&d, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let ns: Vec<u64> = lines(&d.get_text(&format!("/v1/jobs/{id}/output")).await)
        .iter()
        .map(|v| v["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..120).collect::<Vec<_>>(), "no row lost or repeated");
    let events = d.get_text(&format!("/v1/jobs/{id}/events")).await;
    assert!(events.contains("event: resumed"), "{events}");
}

#[tokio::test]
async fn an_invoke_job_resumes_from_its_checkpoint_after_a_restart() {
    // Calls may run 300 ms, the pipeline's requests 100 ms: neither applies
    // to a job, whose own deadline (an hour) does.
    let mut d = TestDaemon::start_with(|c| c.runtime.deadline = Duration::from_millis(300)).await;
    d.deploy("probe", "probe.wasm").await;
    apply(
        &d,
        "long",
        "name = \"long\"\ntimeout_ms = 100\n[[steps]]\nstage = \"probe\"\n",
    )
    .await;
    let (s, job, _) = submit(
        &d,
        &json!({"kind": "invoke", "pipeline": "long", "input": {"op": "count_to", "n": 30, "ms": 40}}),
    )
    .await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let v = d.get_json(&format!("/v1/jobs/{id}")).await;
        if v["progress"]["done"].as_u64().unwrap_or(0) >= 10 {
            assert_eq!(v["state"], "running", "{v}");
            assert_eq!(v["progress"]["total"], 30);
            break;
        }
        assert!(Instant::now() < until, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.restart().await;
    let done = finished(&d, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let result = &done["result"][0];
    assert_eq!(result["counted"], 30, "{done}");
    assert!(result["resumed_from"].as_u64().unwrap() >= 10, "{done}");
}

/// Runs the `weft` CLI in-process against `d`.
async fn cli(d: &TestDaemon, args: &[&str]) -> anyhow::Result<()> {
    use clap::Parser;
    let mut argv = vec!["weft", "--server", &d.url];
    argv.extend_from_slice(args);
    weft::cli::run(weft::cli::Cli::try_parse_from(argv)?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_uploads_datasets_and_follows_jobs() {
    let d = probe_daemon().await;
    let dir = d.dir.path();
    // Two files, the first without a final newline: rows must not merge.
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    std::fs::write(&a, rows(60, |i| json!({"op": "echo", "n": i})).trim_end()).unwrap();
    std::fs::write(&b, rows(40, |i| json!({"op": "echo", "n": 60 + i}))).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    cli(
        &d,
        &["dataset", "create", "two", a, b, "--block-rows", "16"],
    )
    .await
    .unwrap();
    let ds = d.get_json("/v1/datasets/two").await;
    assert_eq!(
        (ds["rows"].as_u64(), ds["blocks"].as_u64()),
        (Some(100), Some(7)),
        "{ds}"
    );

    cli(
        &d,
        &[
            "job",
            "submit",
            "--pipeline",
            "p",
            "--dataset",
            "two",
            "--watch",
        ],
    )
    .await
    .unwrap();
    let out = dir.join("out.jsonl");
    cli(&d, &["job", "output", "1", "-o", out.to_str().unwrap()])
        .await
        .unwrap();
    let ns: Vec<u64> = lines(&std::fs::read_to_string(&out).unwrap())
        .iter()
        .map(|v| v["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..100).collect::<Vec<_>>());
    cli(&d, &["job", "list"]).await.unwrap();
    cli(&d, &["dataset", "list"]).await.unwrap();

    // An async invocation, followed to its end.
    cli(
        &d,
        &[
            "job",
            "submit",
            "--pipeline",
            "p",
            "--input",
            r#"{"op":"echo"}"#,
            "--watch",
        ],
    )
    .await
    .unwrap();
    // A job that fails makes `--watch` fail, with the reason.
    let poison = dir.join("poison.jsonl");
    std::fs::write(&poison, "{\"op\":\"fatal\"}\n").unwrap();
    cli(
        &d,
        &["dataset", "create", "poison", poison.to_str().unwrap()],
    )
    .await
    .unwrap();
    let err = cli(
        &d,
        &[
            "job",
            "submit",
            "--pipeline",
            "p",
            "--dataset",
            "poison",
            "--watch",
        ],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("failed") && err.contains("1 of 1 rows failed"),
        "{err}"
    );
    // Mistakes are explained.
    let err = cli(
        &d,
        &["job", "submit", "--pipeline", "p", "--dataset", "nope"],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no dataset named `nope`") && err.contains("hint:"),
        "{err}"
    );
    let bin = dir.join("data.bin");
    std::fs::write(&bin, b"x").unwrap();
    let err = cli(&d, &["dataset", "create", "x", bin.to_str().unwrap()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--format"), "{err}");
    let err = cli(&d, &["job", "submit", "--pipeline", "p"])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--dataset"), "{err}");
}

#[tokio::test]
async fn jobs_queue_per_pipeline_cancel_promptly_stream_live_and_expire() {
    let d = TestDaemon::start_with(|c| {
        c.jobs.per_pipeline = 1;
        c.jobs.ttl = Duration::from_millis(600);
    })
    .await;
    d.deploy("probe", "probe.wasm").await;
    apply(
        &d,
        "long",
        "name = \"long\"\n[[steps]]\nstage = \"probe\"\nreplicas = { min = 1, max = 2 }\n",
    )
    .await;
    let count = |n: u64| json!({"kind": "invoke", "pipeline": "long", "input": {"op": "count_to", "n": n, "ms": 30}});
    let (_, first, _) = submit(&d, &count(1000)).await;
    let (_, second, _) = submit(&d, &count(3)).await;
    let (first, second) = (
        first["id"].as_str().unwrap().to_string(),
        second["id"].as_str().unwrap().to_string(),
    );

    // Follow the first job live over SSE while it runs.
    let events = d
        .http
        .get(d.url(&format!("/v1/jobs/{first}/events")))
        .send()
        .await
        .unwrap();
    let mut body = events.bytes_stream();
    let mut seen = String::new();
    use futures_util::StreamExt;
    while !seen.contains("event: progress") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // One job per pipeline at a time: the second waits.
    assert_eq!(
        d.get_json(&format!("/v1/jobs/{second}")).await["state"],
        "queued"
    );

    // Cancel stops the running guest within a tick; the stream ends with it.
    let started = Instant::now();
    let r = d
        .http
        .post(d.url(&format!("/v1/jobs/{first}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = String::new();
        while let Some(chunk) = body.next().await {
            rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        rest
    })
    .await
    .expect("the event stream ends when the job does");
    assert!(rest.contains(r#""state":"cancelled""#), "{rest}");
    let done_at = d.get_json(&format!("/v1/jobs/{first}")).await["progress"]["done"]
        .as_u64()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = d.get_json(&format!("/v1/jobs/{first}")).await;
    assert_eq!(later["state"], "cancelled");
    assert_eq!(
        later["progress"]["done"].as_u64().unwrap(),
        done_at,
        "the guest stopped counting"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // The queued job runs once the slot frees.
    assert_eq!(finished(&d, &second).await["state"], "succeeded");
    // Finished jobs are deleted after the retention time.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = d
            .http
            .get(d.url(&format!("/v1/jobs/{second}")))
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            break;
        }
        assert!(Instant::now() < until, "job {second} was not swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Prefer: respond-async on the pipeline's invoke route, too.
    let r = d
        .http
        .post(d.url("/v1/pipelines/long/invoke"))
        .header("prefer", "respond-async")
        .header("content-type", "application/json")
        .body(r#"{"op":"echo"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/v1/jobs/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_become_rows_of_an_objects_dataset() {
    let d = probe_daemon().await;
    let dir = d.dir.path();
    let docs: Vec<String> = (0..3)
        .map(|n| json!({"op": "echo", "n": n}).to_string())
        .collect();
    let mut files = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let f = dir.join(format!("img-{i}.bin"));
        std::fs::write(&f, doc).unwrap();
        files.push(f.to_str().unwrap().to_string());
    }
    let mut args = vec!["dataset", "create", "files", "--format", "objects"];
    args.extend(files.iter().map(String::as_str));
    cli(&d, &args).await.unwrap();
    let ds = d.get_json("/v1/datasets/files").await;
    assert_eq!(ds["rows"], 3);
    let total: usize = docs.iter().map(String::len).sum();
    assert_eq!(
        ds["bytes"], total,
        "an objects dataset counts its objects' bytes"
    );

    let (_, job, _) = submit(
        &d,
        &json!({"kind": "batch", "pipeline": "p", "dataset": "files"}),
    )
    .await;
    let done = finished(&d, job["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let out = lines(
        &d.get_text(&format!("/v1/jobs/{}/output", job["id"].as_str().unwrap()))
            .await,
    );
    use base64::Engine as _;
    let back: Vec<String> = out
        .iter()
        .map(|row| {
            assert_eq!(row["content_type"], "application/octet-stream", "{row}");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(row["base64"].as_str().unwrap())
                .unwrap();
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    assert_eq!(back, docs, "each file's bytes went through, in order");
}
