//! `/v1/actors`: named, stateful, long-lived stage instances.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::Path;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::invoke::{request_item, respond, sse_response, wants_sse};
use super::{AppState, Body};
use crate::ApiError;

/// Body of `POST /v1/actors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateActor {
    name: String,
    stage: String,
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    config: BTreeMap<String, Value>,
}

/// `POST /v1/actors` `{"name", "stage", "version"?, "config"?}`: 201.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let spec: CreateActor = serde_path_to_error::deserialize(de).map_err(|e| {
        ApiError::bad_request("invalid_actor", format!("`{}`: {}", e.path(), e.inner()))
            .hint("send {\"name\": NAME, \"stage\": STAGE, \"config\": {\"key\": \"value\"}}")
    })?;
    let config = spec
        .config
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    let actor = state
        .actors
        .create(&spec.name, &spec.stage, spec.version, config)
        .await?;
    Ok((StatusCode::CREATED, Json(actor.json())).into_response())
}

/// `GET /v1/actors`.
pub async fn list(State(state): State<Arc<AppState>>, _: super::NoQuery) -> Json<Value> {
    let actors: Vec<Value> = state.actors.all().iter().map(|a| a.json()).collect();
    let broken: Vec<Value> = state
        .actors
        .broken()
        .into_iter()
        .map(|(name, stage, why)| json!({"name": name, "stage": stage, "error": why}))
        .collect();
    Json(json!({ "actors": actors, "not_running": broken }))
}

/// `GET /v1/actors/{name}`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(forwarded) = elsewhere(&state, &name, &method, &uri, &headers, Bytes::new()).await {
        return forwarded;
    }
    Ok(Json(state.actors.find(&name)?.json()).into_response())
}

/// `DELETE /v1/actors/{name}`: the actor and its state.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(forwarded) = elsewhere(&state, &name, &method, &uri, &headers, Bytes::new()).await {
        return forwarded;
    }
    state.actors.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/actors/{name}/call`: like a stage invoke, one call at a time.
pub async fn call(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    if let Some(forwarded) = elsewhere(&state, &name, &method, &uri, &headers, body.clone()).await {
        return forwarded;
    }
    let actor = state.actors.find(&name)?;
    let item = request_item(&headers, body);
    if wants_sse(&headers) {
        return Ok(
            sse_response(move |events| async move { actor.call(item, Some(events)).await }).await,
        );
    }
    Ok(respond(actor.call(item, None).await?))
}

/// In a cluster, the answer of the node that has actor `name` when this
/// node does not (never for a request that was already forwarded).
async fn elsewhere(
    state: &AppState,
    name: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<Result<Response, ApiError>> {
    if state.actors.get(name).is_some() || headers.contains_key(crate::cluster::FORWARDED) {
        return None;
    }
    let owner = state.actors.owner_elsewhere(name).await?;
    let Some(addr) = state.cluster.peer_addr(&owner) else {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "actor_unavailable",
            format!("actor `{name}` lives on node `{owner}`, which is not answering"),
        )
        .hint("when a node stays silent past the cluster's node TTL, another node takes its actors over: retry in a few seconds");
        e.retry_after = Some(2);
        return Some(Err(e));
    };
    Some(
        state
            .cluster
            .forward(&addr, method, uri, headers, body)
            .await,
    )
}
