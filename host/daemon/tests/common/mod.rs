//! Helpers shared by the tests that run real `weft` processes.

pub mod cluster;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Starts `weft serve` on an ephemeral port with `flags`, stderr to
/// `stderr` (inherited when `None`); returns the child and its URL (read
/// from the line the daemon prints once it listens).
pub fn spawn_weft(data_dir: &Path, flags: &[&str], stderr: Option<Stdio>) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(flags)
        .env("WEFT_LOG", "warn")
        .stdout(Stdio::piped());
    if let Some(stderr) = stderr {
        cmd.stderr(stderr);
    }
    let mut child = cmd.spawn().expect("weft binary starts");
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

/// A built Wasm component from `target/wasm32-wasip2/release`.
pub fn component(file: &str) -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join("wasm32-wasip2/release").join(file);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask plugins` first", path.display()))
}
