//! `/v1/datasets`: streamed uploads become datasets of row blocks.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};

use super::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use weft_store::{DatasetRecord, validate_name_of};

use super::AppState;
use crate::ApiError;
use crate::datasets::{self, DEFAULT_BLOCK_ROWS, Format};

/// Query of `POST /v1/datasets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    name: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    block_rows: Option<u32>,
}

/// `POST /v1/datasets?name=N&format=jsonl|csv|lines|objects&block_rows=R`,
/// body = the rows, streamed. 201 with the dataset.
pub async fn create(
    State(state): State<Arc<AppState>>,
    query: Result<Query<CreateQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request("invalid_argument", e.body_text())
            .hint("POST /v1/datasets?name=NAME&format=jsonl|csv|lines|objects[&block_rows=N]")
    })?;
    validate_name_of("dataset name", &q.name)
        .map_err(|e| ApiError::bad_request("invalid_argument", e.to_string()))?;
    let format = match &q.format {
        Some(f) => f.parse::<Format>()?,
        None => headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(Format::of_content_type)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_argument",
                    "format: not given and not implied by the content type",
                )
                .hint("add format=jsonl, csv, lines or objects to the query")
            })?,
    };
    if let Some(n) = q.block_rows
        && !(1..=datasets::MAX_BLOCK_ROWS).contains(&n)
    {
        return Err(ApiError::bad_request(
            "invalid_argument",
            format!(
                "block_rows: {n} is not between 1 and {}",
                datasets::MAX_BLOCK_ROWS
            ),
        )
        .hint(format!(
            "leave it out for {DEFAULT_BLOCK_ROWS} rows per block"
        )));
    }
    {
        let (store, name) = (state.store.clone(), q.name.clone());
        let exists = crate::blocking(move || store.dataset(&name)).await?;
        if exists.is_some() {
            return Err(weft_store::StoreError::Exists {
                what: "dataset",
                name: q.name,
            }
            .into());
        }
    }
    let stream = body.into_data_stream();
    let blocks = datasets::ingest(
        &state.store,
        format,
        q.block_rows.unwrap_or(DEFAULT_BLOCK_ROWS),
        stream,
    )
    .await?;
    // (A job over it "succeeded" over 0 of 0 rows.)
    if blocks.is_empty() {
        return Err(ApiError::bad_request(
            "empty_dataset",
            format!(
                "the upload of dataset `{}` has no rows (an empty body, blank lines only, \
                 or a CSV header alone)",
                q.name
            ),
        )
        .hint("send the rows in the body: `weft dataset create NAME FILE`"));
    }
    let rec = DatasetRecord::new(&q.name, format.as_str(), blocks);
    let store = state.store.clone();
    let stored = rec.clone();
    if let Err(e) = crate::blocking(move || store.put_dataset(&stored)).await {
        datasets::release(&state.store, &rec.blocks).await;
        return Err(e);
    }
    Ok((StatusCode::CREATED, Json(dataset_json(&rec))).into_response())
}

fn dataset_json(d: &DatasetRecord) -> Value {
    json!({
        "name": d.name,
        "format": d.format,
        "rows": d.rows,
        "bytes": d.bytes,
        "blocks": d.blocks.len(),
        "created_unix_ms": d.created_unix_ms,
    })
}

fn no_dataset(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "dataset_not_found",
        format!("no dataset named `{name}`"),
    )
    .hint("create it with `weft dataset create NAME FILE`; `weft dataset list` shows what exists")
}

/// `GET /v1/datasets`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: super::NoQuery,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let all = crate::blocking(move || store.list_datasets()).await?;
    Ok(Json(
        json!({"datasets": all.iter().map(dataset_json).collect::<Vec<_>>()}),
    ))
}

/// `GET /v1/datasets/{name}`: totals and the blocks.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let n = name.clone();
    let rec = crate::blocking(move || store.dataset(&n))
        .await?
        .ok_or_else(|| no_dataset(&name))?;
    let mut v = dataset_json(&rec);
    v["block_list"] = rec
        .blocks
        .iter()
        .map(|b| json!({"object": b.object, "rows": b.rows, "bytes": b.bytes}))
        .collect();
    Ok(Json(v))
}

/// 409 `code` while a job that has not ended names `name` as its `what`
/// (`dataset`, `pipeline`) in its spec.
pub(crate) async fn refuse_under_a_job(
    state: &AppState,
    what: &str,
    code: &'static str,
    name: &str,
) -> Result<(), ApiError> {
    let active = state.jobs.list().await?.into_iter().find(|j| {
        !j.state.is_terminal()
            && serde_json::from_str::<Value>(&j.spec_json).is_ok_and(|s| s[what] == name)
    });
    match active {
        Some(job) => Err(ApiError::new(
            StatusCode::CONFLICT,
            code,
            format!(
                "job {} is {} over {what} `{name}`",
                job.id,
                job.state.as_str()
            ),
        )
        .hint("wait for the job to end, or cancel it (`weft job cancel ID`)")),
        None => Ok(()),
    }
}

/// `DELETE /v1/datasets/{name}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    // A job reads its dataset's blocks by index until it ends: deleting (and
    // perhaps re-creating) the dataset under it would mix two datasets.
    refuse_under_a_job(&state, "dataset", "dataset_in_use", &name).await?;
    let store = state.store.clone();
    let n = name.clone();
    let existed = crate::blocking(move || store.delete_dataset(&n)).await?;
    if existed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_dataset(&name))
    }
}
