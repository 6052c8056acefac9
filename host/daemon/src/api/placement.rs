//! `/v1/placement-groups` and `/v1/node`: placement groups, and the node's
//! capacity and what is reserved from it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AppState, Body};
use crate::ApiError;
use crate::placement::GroupSpec;

/// `POST /v1/placement-groups` `{"name", "bundles": [{"cpu", "gpu",
/// "memory_mib", "custom"}], "strategy"}`: 201 once every bundle is
/// reserved; 409 naming the short resource when one does not fit.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let spec: GroupSpec = serde_path_to_error::deserialize(de).map_err(|e| {
        ApiError::bad_request("invalid_spec", format!("`{}`: {}", e.path(), e.inner())).hint(
            r#"send {"name": NAME, "bundles": [{"cpu": 1, "gpu": 1}], "strategy": "pack|spread|strict_pack|strict_spread"}"#,
        )
    })?;
    let group = state.placement.create(spec).await?;
    Ok((StatusCode::CREATED, Json(group.to_json())).into_response())
}

/// `GET /v1/placement-groups`.
pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    let groups: Vec<Value> = state.placement.all().iter().map(|g| g.to_json()).collect();
    Json(json!({ "placement_groups": groups }))
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "placement_group_not_found",
        format!("no placement group named `{name}`"),
    )
    .hint("list them with GET /v1/placement-groups")
}

/// `GET /v1/placement-groups/{name}`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let group = state.placement.get(&name).ok_or_else(|| not_found(&name))?;
    Ok(Json(group.to_json()))
}

/// `DELETE /v1/placement-groups/{name}`: 204, returning its reservations;
/// 409 while a pipeline runs in it.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if let Some(pipeline) = state.pipelines.using_group(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "placement_group_in_use",
            format!("pipeline `{pipeline}` runs in placement group `{name}`"),
        )
        .hint("delete the pipeline, or apply it without `placement`, first"));
    }
    if state.placement.delete(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}

/// `GET /v1/node`: capacity, reserved and free resources, and the groups.
pub async fn node(State(state): State<Arc<AppState>>) -> Json<Value> {
    let usage = state.placement.node().usage();
    let names: Vec<String> = state
        .placement
        .all()
        .iter()
        .map(|g| g.spec.name.clone())
        .collect();
    Json(json!({
        "capacity": usage.capacity,
        "reserved": usage.reserved,
        "free": usage.free,
        "placement_groups": names,
    }))
}
