//! Async invoke jobs: background runs, events, checkpoints, queueing,
//! cancel, retention.

use super::*;

/// Deploys the probe stage and `long`, a pipeline of it (`top`: more of
/// its spec's top level, `step`: of its step).
async fn long_pipeline(d: &TestDaemon, top: &str, step: &str) {
    d.deploy("probe", "probe.wasm").await;
    let spec = format!("name = \"long\"\n{top}[[steps]]\nstage = \"probe\"\n{step}");
    apply(d, "long", &spec).await;
}

/// An invoke job of `long` counting to `n`, `ms` a step (a checkpoint each).
fn count_to(n: u64, ms: u64) -> Value {
    json!({"kind": "invoke", "pipeline": "long", "input": {"op": "count_to", "n": n, "ms": ms}})
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
async fn an_invoke_job_resumes_from_its_checkpoint_after_a_restart() {
    // Calls may run 300 ms, the pipeline's requests 100 ms: neither applies
    // to a job, whose own deadline (an hour) does.
    let mut d = TestDaemon::start_with(|c| c.runtime.deadline = Duration::from_millis(300)).await;
    long_pipeline(&d, "timeout_ms = 100\n", "").await;
    let (s, job, _) = submit(&d, &count_to(30, 40)).await;
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
    // Its events say how it resumed (not a batch job's `blocks_done: 0`).
    let events = d.get_text(&format!("/v1/jobs/{id}/events")).await;
    assert!(events.contains(r#""from":"checkpoints""#), "{events}");
    assert!(!events.contains("blocks_done"), "{events}");
}

/// Deleting a job that ended before its stage cleared its checkpoint (it
/// failed, or was cancelled) deletes the checkpoint: a fine-tuning job's
/// holds a model's weights.
#[tokio::test]
async fn deleting_a_job_deletes_its_checkpoints() {
    let d = TestDaemon::start().await;
    long_pipeline(&d, "", "").await;
    let (_, job, _) = submit(&d, &count_to(1000, 20)).await;
    let id = job["id"].as_str().unwrap().to_string();
    let key = json!({"op": "state_get", "key": format!("checkpoint/job-{id}")});
    let until = Instant::now() + Duration::from_secs(30);
    while d.invoke("probe", &key).await.1["value"].is_null() {
        assert!(Instant::now() < until, "no checkpoint");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = d
        .http
        .post(d.url(&format!("/v1/jobs/{id}/cancel")))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 200);
    // (The guest stops within a tick: no checkpoint comes after this.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!d.invoke("probe", &key).await.1["value"].is_null());
    let r = d.http.delete(d.url(&format!("/v1/jobs/{id}"))).send().await;
    assert_eq!(r.unwrap().status(), 204);
    assert!(d.invoke("probe", &key).await.1["value"].is_null());
}

#[tokio::test]
async fn jobs_queue_per_pipeline_cancel_promptly_stream_live_and_expire() {
    let d = TestDaemon::start_with(|c| {
        c.jobs.per_pipeline = 1;
        c.jobs.ttl = Duration::from_millis(600);
    })
    .await;
    long_pipeline(&d, "", "replicas = { min = 1, max = 2 }\n").await;
    let count = |n: u64| count_to(n, 30);
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
    let checkpoint = |id: &str| {
        let body = json!({"op": "state_get", "key": format!("checkpoint/job-{id}")});
        let d = &d;
        async move { d.invoke("probe", &body).await.1["value"].clone() }
    };
    assert!(
        !checkpoint(&first).await.is_null(),
        "the cancelled job's checkpoint"
    );

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
    // With the cancelled job, its checkpoint went.
    assert!(checkpoint(&first).await.is_null());
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

/// A job past its `timeout_s` says so (it said "the request's deadline
/// passed", naming no setting).
#[tokio::test]
async fn a_job_past_its_timeout_names_timeout_s() {
    let d = probe_daemon().await;
    let (s, job, _) = submit(
        &d,
        &json!({"kind": "invoke", "pipeline": "p", "input": {"op": "sleep", "ms": 4000}, "timeout_s": 1}),
    )
    .await;
    assert_eq!(s, 202, "{job}");
    failed(
        &d,
        job["id"].as_str().unwrap(),
        "the job's timeout_s (1 s) passed",
    )
    .await;
}

/// A job's `timeout_s` counts from its first start: run again after a
/// restart, it has what is left (each restart gave it all of it again, so
/// a crash loop ran it for ever).
#[tokio::test]
async fn a_resumed_job_keeps_its_first_deadline() {
    let mut d = probe_daemon().await;
    let (s, job, _) = submit(
        &d,
        &json!({"kind": "invoke", "pipeline": "p", "input": {"op": "sleep", "ms": 2000}, "timeout_s": 3}),
    )
    .await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.restart().await;
    // 2 s of sleep again, with under 1.5 s left.
    failed(&d, &id, "the job's timeout_s (3 s) passed").await;
}

/// `weft job watch` waits out a daemon restart (the job runs again after
/// it) instead of failing with "cannot reach the weft daemon".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_waits_out_a_restart() {
    let mut d = probe_daemon().await;
    let (_, job, _) = submit(
        &d,
        &json!({"kind": "invoke", "pipeline": "p", "input": {"op": "sleep", "ms": 1500}}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    let url = d.url.clone();
    // (The CLI's future is not Send: on a thread and runtime of its own.)
    let watch = std::thread::spawn(move || {
        let argv = ["weft", "--server", &url, "job", "watch", &id];
        let cli = weft::cli::Cli::try_parse_checked(argv).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(weft::cli::run(cli))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr: std::net::SocketAddr = d.url.trim_start_matches("http://").parse().unwrap();
    // Down for a few of the watch's polls.
    d.restart_with(|c| {
        std::thread::sleep(Duration::from_millis(1500));
        c.listen = addr;
    })
    .await;
    let followed = tokio::task::spawn_blocking(move || watch.join().unwrap())
        .await
        .unwrap();
    followed.expect("the watch followed the job to its end");
}

/// A record this release cannot read (a newer release wrote it, or the file
/// was damaged) does not stop the daemon from starting: listings pass over
/// it, reading it answers 500 saying why and what to do, and deleting it
/// works, so its name can be used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_this_release_cannot_read_does_not_stop_the_daemon() {
    let mut d = TestDaemon::start().await;
    d.deploy_query("chunk", "chunk.wasm", "config.size=2").await;
    let spec = |name: &str| {
        format!(
            "name = \"{name}\"\n[[steps]]\nstage = \"chunk\"\n[[triggers]]\nmethod = \"POST\"\nroute = \"/{name}\"\n"
        )
    };
    for name in ["kept", "newer"] {
        apply(&d, name, &spec(name)).await;
    }
    let mut ids = Vec::new();
    for _ in 0..2 {
        let input = json!({"kind": "invoke", "pipeline": "kept", "input": {"text": "a b c"}});
        let (s, job, _) = submit(&d, &input).await;
        assert_eq!(s, 202, "{job}");
        let id = job["id"].as_str().unwrap().to_string();
        finished(&d, &id).await;
        ids.push(id);
    }

    let db = d.dir.path().join("weft.redb");
    let first: u64 = ids[0].parse().unwrap();
    d.restart_with(move |_| {
        // What a later release's record looks like to this one: another
        // format version in the record's first byte.
        use redb::ReadableTable;
        let db = redb::Database::open(db).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let jobs = redb::TableDefinition::<u64, &[u8]>::new("jobs");
            let mut t = txn.open_table(jobs).unwrap();
            let mut bytes = t.get(first).unwrap().unwrap().value().to_vec();
            bytes[0] += 1;
            t.insert(first, bytes.as_slice()).unwrap();
            let pipelines = redb::TableDefinition::<&str, &[u8]>::new("pipelines");
            let mut t = txn.open_table(pipelines).unwrap();
            let mut bytes = t.get("newer").unwrap().unwrap().value().to_vec();
            bytes[0] += 1;
            t.insert("newer", bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    })
    .await;

    let jobs = d.get_json("/v1/jobs").await["jobs"].clone();
    let listed: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[1].as_str()], "{jobs}");
    let r = d
        .http
        .get(d.url(&format!("/v1/jobs/{}", ids[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("table `jobs`"), "{body}");
    assert!(message.contains("not supported by this release"), "{body}");
    let hint = body["error"]["hint"].as_str().unwrap();
    assert!(
        hint.contains("newer weft release") && hint.contains("DELETE"),
        "{body}"
    );
    let pipelines = d.get_json("/v1/pipelines").await["pipelines"].clone();
    assert_eq!(pipelines.as_array().unwrap().len(), 1, "{pipelines}");
    assert_eq!(pipelines[0]["name"], "kept", "{pipelines}");
    let (s, out, _) = d.post("/kept", &json!({"text": "a b c"})).await;
    assert_eq!(s, 200, "{out}");

    assert_eq!(d.delete(&format!("/v1/jobs/{}", ids[0])).await.0, 204);
    assert_eq!(d.delete(&format!("/v1/jobs/{}", ids[0])).await.0, 404);
    assert_eq!(d.delete("/v1/pipelines/newer").await.0, 204);
    apply(&d, "newer", &spec("newer")).await;
    let (s, out, _) = d.post("/newer", &json!({"text": "a b c"})).await;
    assert_eq!(s, 200, "{out}");
}

/// After a restart the jobs that were running go on first: those queued
/// behind them (one job at a time on the pipeline) stay queued until they
/// end, as before the restart. (A queued job used to take the slot a job
/// stopping with the daemon let go of, and was stored as running: it
/// resumed as one, beside or ahead of the job it had queued behind; and
/// at start-up a queued job could reach the slot before a resumed one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_jobs_resume_before_the_queued_ones() {
    let one_at_a_time = |c: &mut weft::ServeConfig| c.jobs.per_pipeline = 1;
    let mut d = TestDaemon::start_with(one_at_a_time).await;
    long_pipeline(&d, "", "").await;
    let count = |n: u64| count_to(n, 20);
    let (_, first, _) = submit(&d, &count(100_000)).await;
    let first = first["id"].as_str().unwrap().to_string();
    let mut queued = Vec::new();
    for _ in 0..4 {
        let (_, job, _) = submit(&d, &count(2)).await;
        queued.push(job["id"].as_str().unwrap().to_string());
    }
    let done = |v: &Value| v["progress"]["done"].as_u64().unwrap_or(0);
    let until = Instant::now() + Duration::from_secs(30);
    while done(&d.get_json(&format!("/v1/jobs/{first}")).await) < 3 {
        assert!(Instant::now() < until, "the first job does not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    d.restart_with(one_at_a_time).await;
    let before = done(&d.get_json(&format!("/v1/jobs/{first}")).await);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        for id in &queued {
            let v = d.get_json(&format!("/v1/jobs/{id}")).await;
            assert_eq!(v["state"], "queued", "a queued job ran first: {v}");
        }
        let v = d.get_json(&format!("/v1/jobs/{first}")).await;
        if done(&v) >= before + 5 {
            assert_eq!(v["state"], "running", "{v}");
            break;
        }
        assert!(
            Instant::now() < until,
            "the resumed job does not go on: {v}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = d
        .http
        .post(d.url(&format!("/v1/jobs/{first}/cancel")))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 200);
    for id in &queued {
        assert_eq!(finished(&d, id).await["state"], "succeeded");
    }
}
