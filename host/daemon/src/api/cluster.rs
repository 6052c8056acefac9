//! `/v1/cluster`: the nodes this node knows of (`weft cluster status`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::AppState;

/// `GET /v1/cluster`: `{"enabled", "node", "nodes": [{name, http_addr,
/// alive, age_ms, capacity, load, ...}]}`; without `--cluster`, just this
/// node and `enabled: false`.
pub async fn status(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(state.cluster.status(&state))
}
