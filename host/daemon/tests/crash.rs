//! Real `weft` processes: `kill -9` loses nothing acknowledged (stage state,
//! batch job blocks), and a batch job's memory stays bounded as the dataset
//! grows.

mod common;

use std::process::{Child, Command};

use common::component;

use serde_json::{Value, json};

/// Starts `weft serve` on an ephemeral port; returns the child and its URL.
fn spawn(data_dir: &std::path::Path) -> (Child, String) {
    spawn_with(data_dir, &[])
}

/// [`spawn`] with extra `weft serve` flags.
fn spawn_with(data_dir: &std::path::Path, flags: &[&str]) -> (Child, String) {
    common::spawn_weft(data_dir, flags, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (mut child, url) = spawn(dir.path());

    let r = http
        .put(format!("{url}/v1/stages/count"))
        .body(component("count.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let invoke = |text: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .post(format!("{url}/v1/stages/count/invoke"))
                .header("content-type", "application/json")
                .body(json!({ "text": text }).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(invoke("one two three").await["total_words"], 3);

    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    child.wait().unwrap();

    let (mut child, url) = spawn(dir.path());
    let r = http
        .post(format!("{url}/v1/stages/count/invoke"))
        .header("content-type", "application/json")
        .body(r#"{"text":"four"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the stage survived the crash");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["total_words"], 4,
        "the stage's state survived the crash"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// SIGTERM (what systemd, Docker and Kubernetes send) stops the daemon
/// cleanly: it exits 0 and the next start has nothing to repair. (It used
/// to die at once, and every start after a stop silently repaired the
/// store, ~40 s for a 1 GB one.) After a kill -9, the repair is said.
#[cfg(unix)]
#[test]
fn sigterm_stops_cleanly_and_a_crash_is_repaired_out_loud() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let start = |log: &str| {
        let file = std::fs::File::create(dir.path().join(log)).unwrap();
        common::spawn_weft(&dir.path().join("data"), &[], Some(file.into()))
    };
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let (mut child, _) = start("first.log");
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert_eq!(
        (status.code(), status.signal()),
        (Some(0), None),
        "{status:?}"
    );

    let (mut child, _) = start("second.log");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !log("second.log").contains("not closed cleanly"),
        "{}",
        log("second.log")
    );

    let (mut child, _) = start("third.log");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        log("third.log").contains("not closed cleanly"),
        "{}",
        log("third.log")
    );
}

/// A client of one spawned daemon.
struct Node {
    http: reqwest::Client,
    url: String,
}

impl Node {
    async fn send(&self, req: reqwest::RequestBuilder) -> Value {
        let r = req.send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{status}: {body}");
        body
    }

    /// Deploys probe and applies a batched pipeline `p` over it.
    async fn setup(&self) {
        self.send(
            self.http
                .put(format!("{}/v1/stages/probe", self.url))
                .body(component("probe.wasm")),
        )
        .await;
        let spec = "name = \"p\"\n[[steps]]\nstage = \"probe\"\n\
                    replicas = { min = 1, max = 2 }\nbatch = { max_size = 8, max_wait_ms = 2 }\n";
        self.send(
            self.http
                .put(format!("{}/v1/pipelines/p", self.url))
                .header("content-type", "application/toml")
                .body(spec),
        )
        .await;
    }

    async fn dataset(&self, name: &str, block_rows: u32, body: String) {
        self.send(
            self.http
                .post(format!(
                    "{}/v1/datasets?name={name}&format=jsonl&block_rows={block_rows}",
                    self.url
                ))
                .body(body),
        )
        .await;
    }

    async fn submit(&self, dataset: &str) -> String {
        let spec = json!({"kind": "batch", "pipeline": "p", "dataset": dataset});
        let job = self
            .send(self.http.post(format!("{}/v1/jobs", self.url)).json(&spec))
            .await;
        job["id"].as_str().unwrap().to_string()
    }

    async fn job(&self, id: &str) -> Value {
        self.send(self.http.get(format!("{}/v1/jobs/{id}", self.url)))
            .await
    }

    async fn wait(&self, id: &str) -> Value {
        for _ in 0..1200 {
            let job = self.job(id).await;
            if job["state"] != "running" && job["state"] != "queued" {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("job {id} did not finish");
    }

    async fn output(&self, id: &str) -> String {
        let r = self
            .http
            .get(format!("{}/v1/jobs/{id}/output", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_job_killed_mid_run_resumes_with_no_loss_and_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (mut child, url) = spawn(dir.path());
    let node = Node {
        http: http.clone(),
        url,
    };
    node.setup().await;
    let rows: String = (0..600)
        .map(|n| format!("{}\n", json!({"op": "sleep", "ms": 3, "n": n})))
        .collect();
    node.dataset("rows", 20, rows).await;
    let id = node.submit("rows").await;
    // Kill once some blocks have committed and others are in flight.
    loop {
        let job = node.job(&id).await;
        if job["progress"]["blocks_done"].as_u64().unwrap() >= 4 {
            assert_eq!(job["state"], "running", "{job}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();

    let (mut child, url) = spawn(dir.path());
    let node = Node { http, url };
    let job = node.wait(&id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["progress"]["items_done"], 600, "{job}");
    assert_eq!(job["progress"]["rows_out"], 600, "{job}");
    let resumed = node.output(&id).await;
    let ns: Vec<u64> = resumed
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, (0..600).collect::<Vec<_>>(), "no row lost or repeated");
    // Byte for byte what an uninterrupted run of the same job writes.
    let again = node.submit("rows").await;
    assert_eq!(node.wait(&again).await["state"], "succeeded");
    assert_eq!(node.output(&again).await, resumed);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Peak resident memory of a process, in bytes (Linux).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_job_over_a_dataset_larger_than_its_budget_keeps_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn_with(
        dir.path(),
        &["--job-memory-mib", "2", "--store-cache-mib", "8"],
    );
    let node = Node {
        http: reqwest::Client::new(),
        url,
    };
    node.setup().await;
    let pad = "x".repeat(2000);
    let rows = |n: usize| -> String {
        (0..n)
            .map(|i| format!("{}\n", json!({"op": "echo", "n": i, "pad": pad})))
            .collect()
    };
    // 1 MB and 24 MB: the big one is 12 times the job's 2 MiB budget.
    node.dataset("small", 64, rows(500)).await;
    node.dataset("big", 64, rows(12_000)).await;
    let warm = node.submit("small").await;
    assert_eq!(node.wait(&warm).await["state"], "succeeded");
    let before = peak_rss(child.id());
    let big = node.submit("big").await;
    let job = node.wait(&big).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["progress"]["rows_out"], 12_000);
    let grew = peak_rss(child.id()).saturating_sub(before);
    assert!(
        grew < 12 << 20,
        "peak RSS grew by {} MiB over a 24 MB job with a 2 MiB budget",
        grew >> 20
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn cli_errors_are_one_message_without_a_backtrace() {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["--server", "http://127.0.0.1:1", "stage", "list"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("weft runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot reach the weft daemon"),
        "{stderr}"
    );
    assert!(!stderr.contains("backtrace"), "{stderr}");
}
