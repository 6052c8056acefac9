//! Shared set-up for weft's benchmarks: a runtime over a temporary store with
//! one stage deployed, ready to call in-process.

use std::path::PathBuf;
use std::sync::Arc;

use weft_runtime::{Runtime, RuntimeConfig, StagePool};

/// A deployed stage and what keeps it alive.
#[derive(Debug)]
pub struct Deployed {
    /// The instance pool to call.
    pub pool: Arc<StagePool>,
    _runtime: Arc<Runtime>,
    _dir: tempfile::TempDir,
}

/// The workspace's target directory (`CARGO_TARGET_DIR` if set), where
/// `cargo xtask models` leaves the models under `models/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The bytes of a model or component the benchmarks need; panics with the
/// commands that make them when it is missing.
pub fn read_input(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `cargo xtask models` and `cargo xtask plugins` first",
            path.display()
        )
    })
}

/// Where `cargo xtask plugins` leaves the components.
pub fn wasm_path(file: &str) -> PathBuf {
    target_dir().join("wasm32-wasip2/release").join(file)
}

/// Deploys component `file` as stage `name` on a fresh runtime.
pub fn deploy(name: &str, file: &str) -> Deployed {
    let path = wasm_path(file);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask plugins` first", path.display()));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = weft_store::Store::open(dir.path().join("weft.redb")).expect("store");
    let runtime = Runtime::new(store.clone(), RuntimeConfig::default()).expect("runtime");
    let compiled = runtime.compile(&bytes).expect("valid stage");
    let version = store
        .put_stage(name, &bytes, Default::default())
        .expect("stored");
    let pool = runtime.pool_from(name, &version, compiled);
    Deployed {
        pool,
        _runtime: runtime,
        _dir: dir,
    }
}
