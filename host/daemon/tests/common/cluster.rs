//! Helpers for the tests that run a cluster of real `weft` processes on
//! one `nats-server -js`.
#![allow(dead_code)] // each test binary uses some of them

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `nats-server -js` on a free port (`WEFT_NATS_SERVER`, else on PATH, else
/// Debian's `/usr/sbin/nats-server`); waits until it answers.
pub fn nats(dir: &Path) -> (Proc, String) {
    let binary = std::env::var_os("WEFT_NATS_SERVER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("nats-server"))
                    .find(|p| p.is_file())
            })
        })
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"));
    assert!(
        binary.is_file(),
        "nats-server is missing: run scripts/install-nats.sh (`cargo xtask test` does it)"
    );
    let port = free_port();
    let child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("nats"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nats-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Proc(child), format!("nats://127.0.0.1:{port}"))
}

/// `weft serve --cluster` as node `name`; returns the process and its URL.
pub fn node(dir: &Path, nats: &str, name: &str) -> (Proc, String) {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let flags = [
        "--cluster",
        nats,
        "--node-name",
        name,
        "--heartbeat-ms",
        "200",
        "--node-ttl-ms",
        "1500",
        "--block-ack-wait-ms",
        "1500",
    ];
    let (child, url) = super::spawn_weft(&dir.join(name), &flags, Some(log.into()));
    (Proc(child), url)
}

pub async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    match http.get(url).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Polls `check` every 50 ms until it yields a value; panics after `within`.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
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

/// The value of metric `name` on the node at `url` (0 when absent).
pub async fn metric(http: &reqwest::Client, url: &str, name: &str) -> u64 {
    let (_, text) = get(http, &format!("{url}/metrics")).await;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until the node at `url` sees `n` live nodes (itself included).
pub async fn alive(http: &reqwest::Client, url: &str, n: usize) {
    until(
        "the nodes see each other",
        Duration::from_secs(15),
        || async {
            let (_, v) = get(http, &format!("{url}/v1/cluster")).await;
            let v: serde_json::Value = serde_json::from_str(&v).map_err(|e| e.to_string())?;
            let alive = v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["alive"] == true)
                .count();
            if alive == n {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
}

/// `method url` with a JSON body; returns the status and the JSON answer
/// (`null` when it is not JSON).
pub async fn send_json(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = http
        .request(method, url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}
