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

/// `POST /v1/cluster/nodes/{name}/drain` (and `/undrain`): starts (stops)
/// draining node `name`, on whichever node receives it: another node's
/// request is passed to it.
pub async fn drain(
    State(state): State<Arc<AppState>>,
    axum::extract::Path((name, action)): axum::extract::Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, crate::ApiError> {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let on = match action.as_str() {
        "drain" => true,
        "undrain" => false,
        _ => {
            return Err(crate::ApiError::new(
                StatusCode::NOT_FOUND,
                "no_route",
                format!("no action `{action}` on a node"),
            )
            .hint("POST /v1/cluster/nodes/{name}/drain or /undrain"));
        }
    };
    let cluster = &state.cluster;
    if name == cluster.node() {
        cluster.set_draining(on);
        return Ok(Json(serde_json::json!({"node": name, "draining": on})).into_response());
    }
    let known = |hint: &str| {
        crate::ApiError::new(
            StatusCode::NOT_FOUND,
            "node_not_found",
            format!("no live node named `{name}` in this cluster"),
        )
        .hint(hint.to_string())
    };
    if !cluster.enabled() {
        return Err(known(
            "this node is not in a cluster; its own name is in GET /v1/cluster",
        ));
    }
    if headers.contains_key(crate::cluster::FORWARDED) {
        return Err(known("the node this was passed to is not that node"));
    }
    let addr = cluster
        .peer_addr(&name)
        .ok_or_else(|| known("see GET /v1/cluster (weft cluster status) for the live nodes"))?;
    let uri: axum::http::Uri = format!("/v1/cluster/nodes/{name}/{action}")
        .parse()
        .expect("a valid path");
    cluster
        .forward(
            &addr,
            &axum::http::Method::POST,
            &uri,
            &headers,
            bytes::Bytes::new(),
        )
        .await
}
