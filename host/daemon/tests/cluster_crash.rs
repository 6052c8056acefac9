//! A batch job spread over three real `weft` processes (one `nats-server
//! -js`), one of them killed with `kill -9` while it runs blocks: the job
//! still completes, every row once, in order, as on one node.

mod common;

use common::cluster::{get, metric, nats, node, until};
use common::component;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_job_loses_no_block_and_duplicates_none() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (_nats, nats_url) = nats(dir.path());
    let (_n1, owner) = node(dir.path(), &nats_url, "n1");
    let (_n2, second) = node(dir.path(), &nats_url, "n2");
    let (mut victim, doomed) = node(dir.path(), &nats_url, "n3");

    until("three nodes alive", Duration::from_secs(10), || async {
        let (_, v) = get(&http, &format!("{owner}/v1/cluster")).await;
        let v: Value = serde_json::from_str(&v).map_err(|e| e.to_string())?;
        let alive = v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["alive"] == true)
            .count();
        if alive == 3 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;

    let r = http
        .put(format!("{owner}/v1/stages/probe"))
        .body(component("probe.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // One replica: a node runs one row at a time (sleep-bound).
    let spec = "name = \"sleepy\"\n[[steps]]\nstage = \"probe\"\nreplicas = { min = 1, max = 1 }\n";
    let r = http
        .put(format!("{owner}/v1/pipelines/sleepy"))
        .header("content-type", "application/toml")
        .body(spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for url in [&second, &doomed] {
        until(
            "the pipeline replicates",
            Duration::from_secs(20),
            || async {
                match get(&http, &format!("{url}/v1/pipelines/sleepy")).await {
                    (200, _) => Ok(()),
                    (s, t) => Err(format!("{s} {t}")),
                }
            },
        )
        .await;
    }
    // 30 blocks of 4 rows sleeping 100 ms.
    let rows: String = (0..120)
        .map(|i| format!("{}\n", json!({"op": "sleep", "ms": 100, "n": i})))
        .collect();
    let r = http
        .post(format!(
            "{owner}/v1/datasets?name=naps&format=jsonl&block_rows=4"
        ))
        .body(rows)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let r = http
        .post(format!("{owner}/v1/jobs"))
        .header("content-type", "application/json")
        .body(json!({"kind": "batch", "pipeline": "sleepy", "dataset": "naps"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Kill n3 while it runs blocks, before it can ack them.
    until("n3 runs a block", Duration::from_secs(30), || async {
        match metric(&http, &doomed, "weft_cluster_blocks_in_flight").await {
            0 => Err("none in flight".to_string()),
            n => Ok(n),
        }
    })
    .await;
    let redelivered_before = metric(&http, &owner, "weft_cluster_blocks_redelivered_total").await
        + metric(&http, &second, "weft_cluster_blocks_redelivered_total").await;
    victim.0.kill().expect("SIGKILL");
    victim.0.wait().unwrap();
    let killed = Instant::now();

    // Its blocks come back to the survivors after the ack wait.
    until(
        "n3's blocks are redelivered",
        Duration::from_secs(20),
        || async {
            let n = metric(&http, &owner, "weft_cluster_blocks_redelivered_total").await
                + metric(&http, &second, "weft_cluster_blocks_redelivered_total").await;
            if n > redelivered_before {
                Ok(())
            } else {
                Err(format!("{n} redelivered"))
            }
        },
    )
    .await;
    eprintln!(
        "n3's in-flight blocks were redelivered {:?} after kill -9 (ack wait 1.5 s)",
        killed.elapsed()
    );

    let job = until("the job finishes", Duration::from_secs(60), || async {
        let (_, v) = get(&http, &format!("{owner}/v1/jobs/{id}")).await;
        let v: Value = serde_json::from_str(&v).map_err(|e| e.to_string())?;
        match v["state"].as_str() {
            Some("succeeded" | "failed" | "cancelled") => Ok(v),
            _ => Err(v.to_string()),
        }
    })
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["progress"]["blocks_done"], 30, "{job}");
    assert_eq!(job["progress"]["rows_out"], 120, "{job}");
    let (_, output) = get(&http, &format!("{owner}/v1/jobs/{id}/output")).await;
    let ns: Vec<u64> = output
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, (0..120).collect::<Vec<_>>(), "every row once, in order");

    // One block event per block: none was committed twice.
    let (_, events) = get(&http, &format!("{owner}/v1/jobs/{id}/events")).await;
    let mut blocks: Vec<u64> = Vec::new();
    let mut nodes = std::collections::BTreeMap::<String, u32>::new();
    for line in events.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["type"] == "block" {
            blocks.push(v["block"].as_u64().unwrap());
            *nodes
                .entry(v["node"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    blocks.sort_unstable();
    assert_eq!(blocks, (0..30).collect::<Vec<_>>(), "{events}");
    eprintln!("blocks committed per node: {nodes:?}");
}
