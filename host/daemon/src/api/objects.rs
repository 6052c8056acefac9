//! `/v1/objects`: content-addressed blobs.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AppState, Body};
use crate::ApiError;

/// `PUT /v1/objects` (or POST): stores the body, answers `{"id", "size"}`.
pub async fn put(
    State(state): State<Arc<AppState>>,
    Body(bytes): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let store = state.store.clone();
    let size = bytes.len();
    let id = crate::blocking(move || store.put_object(&bytes)).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "size": size}))))
}

/// `GET /v1/objects/{id}`: the object's bytes.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let lookup = id.clone();
    let data = crate::blocking(move || store.get_object(&lookup))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "object_not_found",
                format!("no object with id {id}"),
            )
            .hint("ids are returned by `PUT /v1/objects`")
        })?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}
