//! Batch jobs: order and completeness, failing rows, cancel, resume,
//! objects datasets.

use super::*;

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
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "job_finished", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(succeeded)"),
        "{v}"
    );
    // Deleting it and its dataset frees both: the echoed rows are the
    // dataset's blocks over again, kept while either names them.
    let stored = |v: Value| v["objects"]["bytes"].as_u64().unwrap();
    let before = stored(d.get_json("/v1/node").await);
    let r = d
        .http
        .delete(d.url("/v1/datasets/nums"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(stored(d.get_json("/v1/node").await), before);
    let r = d
        .http
        .delete(d.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let freed = before - stored(d.get_json("/v1/node").await);
    assert_eq!(freed, ds["bytes"].as_u64().unwrap(), "{ds}");
    for path in [format!("/v1/jobs/{id}"), format!("/v1/jobs/{id}/cancel")] {
        let r = match path.ends_with("cancel") {
            true => d.http.post(d.url(&path)),
            false => d.http.get(d.url(&path)),
        };
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "job_not_found", "{path}: {v}");
    }
}

#[tokio::test]
async fn rows_reach_a_batched_step_a_whole_batch_at_a_time() {
    let d = probe_daemon().await;
    // Blocks of 20 rows: batches of 8, 8 and 4 (the step's max_size is 8).
    let (status, _) = dataset(
        &d,
        "name=sizes&format=jsonl&block_rows=20",
        rows(200, |_| json!({"op": "batch"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, job, _) = submit(
        &d,
        &json!({"kind": "batch", "pipeline": "p", "dataset": "sizes"}),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(finished(&d, &id).await["state"], "succeeded");
    let output = lines(&d.get_text(&format!("/v1/jobs/{id}/output")).await);
    assert_eq!(output.len(), 200);
    for (row, out) in output.iter().enumerate() {
        let (size, index) = (out["batch_size"].as_u64(), out["index"].as_u64());
        // A call never exceeds max_size, even when it takes several
        // requests (two blocks' batches of 4 may share a call).
        assert!(size.unwrap() <= 8, "row {row}: {out}");
        let at = (row % 20) as u64;
        if at < 16 {
            assert_eq!((size, index), (Some(8), Some(at % 8)), "row {row}: {out}");
        }
    }
    let step = &d.get_json("/v1/pipelines/p").await["steps"][0];
    assert_eq!(step["items"], 200, "{step}");
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
    let done = super::failed(&d, &id, "1 of 10 rows failed").await;
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
    // Its errors, what its failure points to, are all there are: no
    // `partial` needed (it was a 409), and the message names the command.
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains(&format!("`weft job output {id} --errors`")),
        "{done}"
    );
    let errors = d.get_text(&format!("/v1/jobs/{id}/errors")).await;
    assert_eq!(errors.lines().count(), 1, "{errors}");
    assert!(errors.contains("\"row\":5"), "{errors}");
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
    // Nor its pipeline: the job would fail each row it has left, one by one.
    let (status, v) = d.delete("/v1/pipelines/p").await;
    assert_eq!(status, 409);
    assert_eq!(v["error"]["code"], "pipeline_in_use", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("job {id} is running over pipeline `p`")),
        "{v}"
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
    d.cli(&args).await.unwrap();
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

    // An `objects` dataset naming a model's bytes keeps them when the
    // model goes.
    let weights = weft_nn::fixtures::onnx_linear();
    let r = d
        .http
        .put(d.url("/v1/models/w"))
        .body(weights.clone())
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 201);
    let object = d.get_json("/v1/models/w").await["versions"][0]["object"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, ds) = dataset(&d, "name=named&format=objects", format!("{object}\n")).await;
    assert_eq!(status, 201, "{ds}");
    let r = d.http.delete(d.url("/v1/models/w")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = d
        .http
        .get(d.url(&format!("/v1/objects/{object}")))
        .send()
        .await;
    assert_eq!(r.unwrap().bytes().await.unwrap(), weights);
}

/// An upload that fails part way leaves none of its blocks stored.
#[tokio::test]
async fn a_failed_upload_frees_the_blocks_it_stored() {
    let d = probe_daemon().await;
    let count = |v: Value| v["objects"]["count"].as_u64().unwrap();
    let before = count(d.get_json("/v1/node").await);
    // Blocks of 100 rows, stored as the body streams in (2 MB: many
    // chunks); the last row is not JSON.
    let mut body = rows(100_000, |i| json!({"row": i}));
    body.push_str("{not json\n");
    let (status, v) = dataset(&d, "name=bad&format=jsonl&block_rows=100", body).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(count(d.get_json("/v1/node").await), before);
}
