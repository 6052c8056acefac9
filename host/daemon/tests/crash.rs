//! `kill -9` of a real `weft` process: everything acknowledged before the kill
//! is there after a restart on the same data directory.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// Starts `weft serve` on an ephemeral port; returns the child and its URL
/// (read from the line the daemon prints once it listens).
fn spawn(data_dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("WEFT_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("weft binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("daemon prints its address");
    let url = line
        .trim()
        .strip_prefix("weft listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (child, url)
}

fn component(file: &str) -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join("wasm32-wasip2/release").join(file);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask plugins` first", path.display()))
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
