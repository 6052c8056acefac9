//! `/v1/actors`: named, stateful, long-lived stage instances.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
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
pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    let actors: Vec<Value> = state.actors.all().iter().map(|a| a.json()).collect();
    Json(json!({ "actors": actors }))
}

/// `GET /v1/actors/{name}`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.actors.find(&name)?.json()))
}

/// `DELETE /v1/actors/{name}`: the actor and its state.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.actors.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/actors/{name}/call`: like a stage invoke, one call at a time.
pub async fn call(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let actor = state.actors.find(&name)?;
    let item = request_item(&headers, body);
    if wants_sse(&headers) {
        return Ok(sse_response(move |events| async move {
            actor.call(item, Some(events)).await
        }));
    }
    Ok(respond(actor.call(item, None).await?))
}
