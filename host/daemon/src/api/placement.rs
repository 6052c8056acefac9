//! `/v1/placement-groups` and `/v1/node`: placement groups, and the node's
//! capacity and what is reserved from it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::Path;
use axum::http::{HeaderMap, StatusCode};
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
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let spec: GroupSpec = serde_path_to_error::deserialize(de).map_err(|e| {
        ApiError::bad_request("invalid_spec", format!("`{}`: {}", e.path(), e.inner())).hint(
            r#"send {"name": NAME, "bundles": [{"cpu": 1, "gpu": 1}], "strategy": "pack|spread|strict_pack|strict_spread"}"#,
        )
    })?;
    if spec.nodes.is_some() && !headers.contains_key(crate::cluster::FORWARDED) {
        return Err(ApiError::bad_request(
            "invalid_spec",
            "`nodes`: set by the cluster when it places a group",
        )
        .hint("leave it out; the strategy decides where bundles go"));
    }
    let group = state.cluster.create_group(&state, spec).await?;
    Ok((StatusCode::CREATED, Json(group)).into_response())
}

/// `GET /v1/placement-groups`.
pub async fn list(State(state): State<Arc<AppState>>, _: super::NoQuery) -> Json<Value> {
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
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    if let Some(pipeline) = state.pipelines.using_group(&name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "placement_group_in_use",
            format!("pipeline `{pipeline}` runs in placement group `{name}`"),
        )
        .hint("delete the pipeline, or apply it without `placement`, first"));
    }
    let plan = state
        .placement
        .get(&name)
        .and_then(|g| g.spec.nodes.clone());
    let here = state.placement.delete(&name).await?;
    // In a cluster the other nodes' shares go too (a node asked by a peer
    // deletes its own share only).
    let elsewhere = !headers.contains_key(crate::cluster::FORWARDED)
        && state
            .cluster
            .delete_group_elsewhere(&name, plan.as_deref())
            .await?;
    if here || elsewhere {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&name))
    }
}

/// `GET /v1/node`: capacity, reserved and free resources, the groups, and
/// the objects the store holds.
pub async fn node(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let (count, bytes) = crate::blocking(move || store.object_totals()).await?;
    let usage = state.placement.node().usage();
    let names: Vec<String> = state
        .placement
        .all()
        .iter()
        .map(|g| g.spec.name.clone())
        .collect();
    Ok(Json(json!({
        "capacity": usage.capacity,
        "reserved": usage.reserved,
        "free": usage.free,
        "placement_groups": names,
        "gpus_detected": crate::resources::detected_gpus()
            .iter()
            .map(|g| json!({"name": g.name, "backend": g.backend, "device_type": g.device_type}))
            .collect::<Vec<_>>(),
        "objects": {"count": count, "bytes": bytes},
    })))
}
