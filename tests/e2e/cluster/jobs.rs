//! Batch jobs across the cluster: blocks spread over the nodes, a job
//! that survives its owner restarting, and a cancel that reaches every
//! node.

use super::*;

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

/// Submits the `sleepy` batch job over dataset `naps` on `d` and waits
/// until a few of its blocks are done; returns its id.
async fn sleepy_job_under_way(d: &TestDaemon) -> String {
    let id = submit_batch(
        d,
        json!({"kind": "batch", "pipeline": "sleepy", "dataset": "naps"}),
    )
    .await;
    eventually("a few blocks are done", Duration::from_secs(30), || async {
        let v = d.get_json(&format!("/v1/jobs/{id}")).await;
        match v["progress"]["blocks_done"].as_u64() {
            Some(n) if n >= 3 => Ok(()),
            _ => Err(v.to_string()),
        }
    })
    .await;
    id
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
    let id = sleepy_job_under_way(&a).await;
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
    let id = sleepy_job_under_way(&a).await;
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
