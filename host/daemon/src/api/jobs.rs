//! `/v1/jobs`: submit, inspect, follow, cancel and read batch and async jobs.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};

use super::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use weft_store::{BlockOutput, JobState};

use super::{AppState, Body};
use crate::ApiError;
use crate::jobs::{JobSpec, job_json};

/// `POST /v1/jobs`: 202 with the job and a `Location`.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let spec = JobSpec::from_json(&body)?;
    accepted(&state, spec).await
}

/// Submits `spec` and answers 202 + `Location: /v1/jobs/{id}`.
pub(crate) async fn accepted(state: &AppState, spec: JobSpec) -> Result<Response, ApiError> {
    let rec = state.jobs.submit(spec).await?;
    let location = format!("/v1/jobs/{}", rec.id);
    let mut response = (StatusCode::ACCEPTED, Json(job_json(&state.jobs, &rec))).into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("ASCII path"),
    );
    Ok(response)
}

/// `GET /v1/jobs`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: super::NoQuery,
) -> Result<Json<Value>, ApiError> {
    let jobs = state.jobs.list().await?;
    Ok(Json(json!({
        "jobs": jobs.iter().rev().map(|j| job_json(&state.jobs, j)).collect::<Vec<_>>()
    })))
}

/// `GET /v1/jobs/{id}`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = state.jobs.get(&id).await?;
    Ok(Json(job_json(&state.jobs, &rec)))
}

/// `POST /v1/jobs/{id}/cancel`.
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = state.jobs.cancel(&id).await?;
    Ok(Json(job_json(&state.jobs, &rec)))
}

/// `DELETE /v1/jobs/{id}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.jobs.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/jobs/{id}/events`: SSE. Replays the job's stored events (after
/// `Last-Event-ID`, when sent), then follows live ones until the job ends.
pub async fn events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rec = state.jobs.get(&id).await?;
    let after: u64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // Subscribe before reading the log, so nothing falls between the two.
    let live = state.jobs.subscribe(rec.id);
    let store = state.store.clone();
    let (tx, rx) = mpsc::channel::<(u64, String)>(64);
    tokio::spawn(async move {
        let mut last = after;
        let replay = |from: u64| {
            let store = store.clone();
            async move {
                tokio::task::spawn_blocking(move || store.job_events(rec.id, from))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default()
            }
        };
        for (seq, e) in replay(last).await {
            last = seq;
            if tx.send((seq, e)).await.is_err() {
                return;
            }
        }
        let Some(mut live) = live else { return };
        loop {
            let batch = match live.recv().await {
                Ok(event) => vec![event],
                // Fell behind: catch up from the log.
                Err(broadcast::error::RecvError::Lagged(_)) => replay(last).await,
                Err(broadcast::error::RecvError::Closed) => replay(last).await,
            };
            let closed = batch.is_empty();
            for (seq, e) in batch {
                if seq <= last {
                    continue;
                }
                last = seq;
                let end = is_terminal_event(&e);
                if tx.send((seq, e)).await.is_err() || end {
                    return;
                }
            }
            if closed {
                return;
            }
        }
    });
    let stream = ReceiverStream::new(rx).map(|(seq, data)| {
        let kind = serde_json::from_str::<Value>(&data)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_string))
            .unwrap_or_else(|| "event".into());
        Ok::<_, Infallible>(Event::default().id(seq.to_string()).event(kind).data(data))
    });
    Ok(Sse::new(stream).into_response())
}

fn is_terminal_event(data: &str) -> bool {
    serde_json::from_str::<Value>(data).is_ok_and(|v| {
        v["type"] == "state"
            && matches!(
                v["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
    })
}

/// Query of the output routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputQuery {
    /// Serve what has been committed so far, even before the job succeeded.
    #[serde(default)]
    partial: bool,
}

/// The query, or a JSON 400 that says what is accepted.
type OutputQueryResult = Result<Query<OutputQuery>, axum::extract::rejection::QueryRejection>;

fn output_query(q: OutputQueryResult) -> Result<Query<OutputQuery>, ApiError> {
    q.map_err(|e| {
        ApiError::bad_request("bad_query", e.body_text())
            .hint("the only parameter is partial=true|false")
    })
}

/// `GET /v1/jobs/{id}/output`: the output rows, JSON lines in input order.
pub async fn output(
    state: State<Arc<AppState>>,
    id: Path<String>,
    query: OutputQueryResult,
) -> Result<Response, ApiError> {
    rows(state, id, output_query(query)?, Rows::Output).await
}

/// `GET /v1/jobs/{id}/errors`: one JSON line per failed row.
pub async fn errors(
    state: State<Arc<AppState>>,
    id: Path<String>,
    query: OutputQueryResult,
) -> Result<Response, ApiError> {
    rows(state, id, output_query(query)?, Rows::Errors).await
}

/// Which rows of a batch job's blocks.
#[derive(Clone, Copy, PartialEq)]
enum Rows {
    Output,
    Errors,
}

/// Streams the chosen object of every committed block, in block order,
/// reading one block at a time.
async fn rows(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<OutputQuery>,
    which: Rows,
) -> Result<Response, ApiError> {
    let rec = state.jobs.get(&id).await?;
    if rec.kind != "batch" {
        return Err(ApiError::bad_request(
            "not_a_batch_job",
            format!(
                "job {} is an invoke job: it has a result, not output rows; see it with \
                 `weft job status {}` (GET /v1/jobs/{})",
                rec.id, rec.id, rec.id
            ),
        ));
    }
    // A failed or cancelled job's errors are all there are: what its user
    // wants to read (and what its failure points to).
    let complete =
        rec.state == JobState::Succeeded || (which == Rows::Errors && rec.state.is_terminal());
    if !complete && !q.partial {
        let (what, hint) = match (which, rec.state.is_terminal()) {
            (Rows::Errors, _) => (
                "its errors are not complete",
                "wait until it has ended (`weft job watch ID`), or add ?partial=true for the blocks committed so far",
            ),
            (Rows::Output, false) => (
                "its output is not complete",
                "wait until it has succeeded (`weft job watch ID`), or add ?partial=true for the blocks committed so far",
            ),
            (Rows::Output, true) => (
                "its output will not be complete",
                "add ?partial=true (`--partial`) for the blocks it committed; its failed rows are at /errors (`--errors`)",
            ),
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_not_succeeded",
            format!("job {} is {}: {what}", rec.id, rec.state.as_str()),
        )
        .hint(hint));
    }
    let store = state.store.clone();
    let blocks = crate::blocking(move || store.job_blocks(rec.id)).await?;
    let pick = |b: &BlockOutput| match which {
        Rows::Output => Some(b.output.clone()),
        Rows::Errors => b.errors.clone(),
    };
    let objects: Vec<String> = blocks.iter().filter_map(|(_, b)| pick(b)).collect();
    let store = state.store.clone();
    let body = stream::iter(objects).then(move |object| {
        let store = store.clone();
        async move {
            tokio::task::spawn_blocking(move || store.get_object(&object))
                .await
                .map_err(std::io::Error::other)?
                .map_err(std::io::Error::other)?
                .map(bytes::Bytes::from)
                .ok_or_else(|| std::io::Error::other("output block missing"))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// `GET /v1/jobs/{id}/blocks/{index}` (cluster internal): the rows of a
/// block of a distributed batch job owned by this node, for a worker to
/// run. 409 when the block is committed already, 410 when the job has
/// ended, 503 while the job is not running here yet.
pub async fn block_input(
    State(state): State<Arc<AppState>>,
    Path((id, index)): Path<(String, u32)>,
) -> Result<Response, ApiError> {
    let id: u64 = id.parse().map_err(|_| crate::jobs::no_job(&id))?;
    let data = state.jobs.block_input(id, index).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

/// `POST /v1/jobs/{id}/blocks/{index}` (cluster internal): a worker's
/// result for a block of a distributed batch job owned by this node.
/// Answers `{"committed": true}` when this commit recorded the block,
/// `false` when it was recorded already; 410 when the job has ended.
pub async fn block_commit(
    State(state): State<Arc<AppState>>,
    Path((id, index)): Path<(String, u32)>,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let id: u64 = id.parse().map_err(|_| crate::jobs::no_job(&id))?;
    let body: crate::jobs::distributed::CommitBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("bad_body", format!("a block result: {e}")))?;
    let (node, object) = (body.node.clone(), body.object.clone());
    let committed = state
        .jobs
        .commit_remote_block(id, index, &object, &node, body.commit())
        .await?;
    Ok(Json(json!({"committed": committed})))
}
