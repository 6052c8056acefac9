//! Support for the end-to-end tests: a daemon on an ephemeral loopback port
//! with a temporary data directory, and the built Wasm components.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use weft::{Daemon, ServeConfig};

/// A daemon started in-process for one test.
#[derive(Debug)]
pub struct TestDaemon {
    /// The running daemon (taken on shutdown).
    pub daemon: Option<Daemon>,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The data directory (kept so a test can restart on it).
    pub dir: tempfile::TempDir,
    /// HTTP client.
    pub http: reqwest::Client,
}

impl TestDaemon {
    /// Starts a daemon with default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a daemon after `tweak` adjusts its config.
    pub async fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ServeConfig::ephemeral(dir.path());
        tweak(&mut config);
        let daemon = Daemon::start(config).await.expect("daemon starts");
        Self {
            url: format!("http://{}", daemon.addr()),
            daemon: Some(daemon),
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    /// Stops the daemon and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await;
    }

    /// Like [`TestDaemon::restart`], with `tweak` adjusting the new config.
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut ServeConfig)) {
        self.daemon
            .take()
            .expect("running")
            .shutdown()
            .await
            .expect("clean shutdown");
        let mut config = ServeConfig::ephemeral(self.dir.path());
        tweak(&mut config);
        let daemon = Daemon::start(config).await.expect("daemon restarts");
        self.url = format!("http://{}", daemon.addr());
        self.daemon = Some(daemon);
    }

    /// Full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// POSTs JSON `body` to `path` in a task of its own, so several calls can be
    /// in flight at once; the task yields the status and the body text.
    pub fn spawn_post(
        &self,
        path: &str,
        body: impl Into<String>,
    ) -> tokio::task::JoinHandle<(u16, String)> {
        let (http, url, body) = (self.http.clone(), self.url(path), body.into());
        tokio::spawn(async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("POST");
            let status = r.status().as_u16();
            (status, r.text().await.expect("body"))
        })
    }

    /// GETs `path` and parses the JSON answer.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        r.json().await.expect("JSON body")
    }

    /// DELETEs `path`: the status, and the JSON answer (`null` when there
    /// is none, as for a 204).
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE");
        let status = r.status().as_u16();
        let body = r.bytes().await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// GETs `path` and returns the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        r.text().await.expect("text body")
    }

    /// Uploads component `wasm` (a file name under the Wasm target dir) as `name`.
    pub async fn deploy(&self, name: &str, wasm: &str) -> Value {
        self.deploy_query(name, wasm, "").await
    }

    /// Uploads with a query string (e.g. `config.size=2`); panics unless 2xx.
    pub async fn deploy_query(&self, name: &str, wasm: &str, query: &str) -> Value {
        let r = self
            .http
            .put(self.url(&format!("/v1/stages/{name}?{query}")))
            .body(component(wasm))
            .send()
            .await
            .expect("deploy request");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert!(status.is_success(), "deploy {name}: {status} {body}");
        body
    }

    /// Applies a TOML pipeline spec as `name`; returns status and body.
    pub async fn apply(&self, name: &str, toml: &str) -> (u16, Value) {
        let r = self
            .http
            .put(self.url(&format!("/v1/pipelines/{name}")))
            .header("content-type", "application/toml")
            .body(toml.to_string())
            .send()
            .await
            .expect("apply request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json"))
    }

    /// POSTs JSON `body` to `path`; returns status, body (JSON, or the text
    /// as a JSON string) and headers.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }

    /// Runs the `weft` CLI in-process against this daemon.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<()> {
        use clap::Parser;
        let mut argv = vec!["weft", "--server", &self.url];
        argv.extend_from_slice(args);
        weft::cli::run(weft::cli::Cli::try_parse_from(argv)?).await
    }

    /// Invokes `stage` with a JSON body; returns status and parsed body.
    pub async fn invoke(&self, stage: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(&format!("/v1/stages/{stage}/invoke")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("invoke request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// Where `cargo xtask plugins` puts the components.
pub fn wasm_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("wasm32-wasip2/release")
}

/// The bytes of a built component, e.g. `component("normalize.wasm")`.
pub fn component(file: &str) -> Vec<u8> {
    let path = wasm_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the components first with `cargo xtask plugins` (`cargo xtask test` does it)",
            path.display()
        )
    })
}

/// A file fetched by `cargo xtask models` (`WEFT_MODELS`, default
/// `target/models`); panics, saying how to fetch it, when absent.
pub fn model_file(name: &str) -> PathBuf {
    let dir = std::env::var_os("WEFT_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/models"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask models` (`cargo xtask test` does it)",
        path.display()
    );
    path
}

/// A `nats-server -js` child process for the cluster tests, on a free
/// loopback port with its store in a temporary directory; killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<std::process::Child>,
    /// The port it listens on (kept across [`NatsServer::restart`]).
    pub port: u16,
    /// Its JetStream store and log.
    pub dir: tempfile::TempDir,
}

impl NatsServer {
    /// The `nats-server` binary: `WEFT_NATS_SERVER`, else `nats-server` on
    /// PATH, else Debian's `/usr/sbin/nats-server`.
    pub fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os("WEFT_NATS_SERVER") {
            return PathBuf::from(p);
        }
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        });
        let path = on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"));
        assert!(
            path.is_file(),
            "nats-server is missing: run scripts/install-nats.sh (`cargo xtask test` does it)"
        );
        path
    }

    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            child: None,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .expect("nats log");
        let child = std::process::Command::new(Self::binary())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // Ready once it answers with its INFO line.
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", self.port))
                .and_then(|mut s| {
                    use std::io::Read;
                    s.set_read_timeout(Some(Duration::from_millis(500)))?;
                    let mut buf = [0u8; 4];
                    s.read_exact(&mut buf)?;
                    Ok(&buf == b"INFO")
                })
                .unwrap_or(false);
            if ready {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nats-server exited ({status}): {}", self.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start listening: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a new one on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
