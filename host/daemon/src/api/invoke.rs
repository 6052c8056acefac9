//! `POST /v1/stages/{name}/invoke`: run a stage once on the request body.
//!
//! The body becomes one item (`Content-Type` kept, `Weft-Key` header as key).
//! The answer is the single output item as is (its content type, `Weft-Key`),
//! or, when the stage returns zero or several items, a JSON array of them.
//! With `Accept: text/event-stream` the answer is an SSE stream of `partial`
//! and `progress` events followed by one `result` (or `error`) event; closing
//! the stream cancels the call.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;

use super::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use weft_runtime::{InvokeError, Item, StageEvent};

use super::{AppState, Body};
use crate::ApiError;

/// Header carrying an item's key in and out.
pub const KEY_HEADER: &str = "weft-key";
/// Header giving the number of output items.
pub const ITEMS_HEADER: &str = "weft-items";

/// Whether a content type is JSON (`application/json`, `…+json`).
pub(crate) fn is_json(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime == "application/json" || mime.ends_with("+json")
}

/// An item as a JSON value: its payload when JSON, a string when text
/// (`text/*`, UTF-8), else `{"key", "content_type", "base64"}`. The same
/// everywhere items are shown as JSON: answers of several items, SSE
/// events, invoke jobs' results and batch jobs' output rows.
pub fn render_item(item: &Item) -> Value {
    if is_json(&item.content_type)
        && let Ok(v) = serde_json::from_slice::<Value>(&item.payload)
    {
        return v;
    }
    if item.content_type.starts_with("text/")
        && let Ok(s) = std::str::from_utf8(&item.payload)
    {
        return Value::String(s.to_string());
    }
    json!({
        "key": item.key,
        "content_type": item.content_type,
        "base64": base64::engine::general_purpose::STANDARD.encode(&item.payload),
    })
}

pub(crate) fn request_item(headers: &HeaderMap, body: bytes::Bytes) -> Item {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    Item {
        key: header(KEY_HEADER).map(str::to_string),
        content_type: header(header::CONTENT_TYPE.as_str())
            .unwrap_or("application/octet-stream")
            .to_string(),
        payload: body.to_vec(),
    }
}

fn outcome(result: &Result<Vec<Item>, InvokeError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => crate::error::classify_invoke(e).1,
    }
}

/// Whether the client asked for server-sent events.
pub(crate) fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// The handler.
pub async fn invoke(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let pool = state.stages.get(&name).await?;
    let item = request_item(&headers, body);
    if wants_sse(&headers) {
        return Ok(stream_invoke(state, pool, item).await);
    }

    let started = Instant::now();
    let result = pool.invoke(vec![item], None).await;
    state
        .metrics
        .record_call(&name, outcome(&result), started.elapsed());
    Ok(respond(result?))
}

pub(crate) fn respond(mut items: Vec<Item>) -> Response {
    let count = HeaderValue::from(items.len());
    let mut response = if items.len() == 1 {
        let item = items.pop().expect("one item");
        let mut r = (StatusCode::OK, item.payload).into_response();
        if let Ok(ct) = HeaderValue::from_str(&item.content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        if let Some(key) = item
            .key
            .as_deref()
            .and_then(|k| HeaderValue::from_str(k).ok())
        {
            r.headers_mut().insert(KEY_HEADER, key);
        }
        r
    } else {
        Json(items.iter().map(render_item).collect::<Vec<_>>()).into_response()
    };
    response.headers_mut().insert(ITEMS_HEADER, count);
    response
}

async fn stream_invoke(
    state: Arc<AppState>,
    pool: Arc<weft_runtime::StagePool>,
    item: Item,
) -> Response {
    sse_response(move |events| async move {
        let mut call = Unfinished {
            state,
            stage: pool.name().to_string(),
            started: Instant::now(),
            done: false,
        };
        let result = pool.invoke(vec![item], Some(events)).await;
        call.done = true;
        call.state
            .metrics
            .record_call(&call.stage, outcome(&result), call.started.elapsed());
        result.map_err(ApiError::from)
    })
    .await
}

/// A streamed call in progress: dropped before it is done (its client
/// closed the stream, which drops the call), it is counted as
/// `cancelled`.
struct Unfinished {
    state: Arc<AppState>,
    stage: String,
    started: Instant,
    done: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.done {
            let elapsed = self.started.elapsed();
            self.state
                .metrics
                .record_call(&self.stage, "cancelled", elapsed);
            tracing::debug!(stage = %self.stage, ?elapsed, "streamed call cancelled");
        }
    }
}

/// How long a streamed answer's head waits for the call's first event
/// (or its end, or its error).
const HEAD_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs `work` with an event channel and answers with SSE: one `partial` or
/// `progress` event per [`StageEvent`], then `result` (the output items) or
/// `error`. The answer starts with the call's first event, or after
/// [`HEAD_WAIT`] without one: a call refused at once (bad input, a full
/// queue) is answered with its status and JSON error, as without a stream,
/// not with a 200 whose only event is the error; a call that is slow to say
/// anything still gets its stream's head soon (a client may wait for it
/// before it shows anything, or to be able to cancel). When the client
/// closes the stream, `work` is dropped, which discards the instance(s) it
/// was running and stops the guest.
pub(crate) async fn sse_response<F, Fut>(work: F) -> Response
where
    F: FnOnce(mpsc::Sender<StageEvent>) -> Fut,
    Fut: Future<Output = Result<Vec<Item>, ApiError>> + Send + 'static,
{
    let (events_tx, mut events_rx) = mpsc::channel::<StageEvent>(64);
    let (done_tx, mut done_rx) = oneshot::channel();
    let watch = events_tx.clone();
    let fut = work(events_tx);
    tokio::spawn(async move {
        tokio::select! {
            result = fut => {
                let _ = done_tx.send(result);
            }
            _ = watch.closed() => {}
        }
    });
    // (Events first: those sent before the call ended come before its end.)
    let head = tokio::time::timeout(HEAD_WAIT, async {
        tokio::select! {
            biased;
            Some(event) = events_rx.recv() => (Some(event), None),
            done = &mut done_rx => (None, Some(done)),
        }
    });
    let (first, done) = head.await.unwrap_or((None, None));
    if let Some(Ok(Err(e))) = done {
        return e.into_response();
    }
    let event = |event: StageEvent| {
        let e = match event {
            StageEvent::Partial(item) => Event::default()
                .event("partial")
                .data(render_item(&item).to_string()),
            StageEvent::Progress {
                done,
                total,
                message,
            } => Event::default()
                .event("progress")
                .data(json!({"done": done, "total": total, "message": message}).to_string()),
        };
        Ok::<_, Infallible>(e)
    };
    let events = stream::iter(first)
        .chain(ReceiverStream::new(events_rx))
        .map(event);
    let last = stream::once(async move {
        let done = match done {
            Some(done) => done,
            None => done_rx.await,
        };
        let event = match done {
            Ok(Ok(items)) => Event::default()
                .event("result")
                .data(Value::Array(items.iter().map(render_item).collect()).to_string()),
            Ok(Err(e)) => Event::default().event("error").data(e.body().to_string()),
            Err(_) => Event::default().event("error").data(
                ApiError::internal("the call was abandoned")
                    .body()
                    .to_string(),
            ),
        };
        Ok::<_, Infallible>(event)
    });
    Sse::new(events.chain(last)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_items_render_as_json_and_others_as_base64() {
        let json_item = Item {
            key: None,
            content_type: "application/json; charset=utf-8".into(),
            payload: br#"{"a":1}"#.to_vec(),
        };
        assert_eq!(render_item(&json_item), json!({"a": 1}));
        // Text as a string (an invoke job's result showed it as base64,
        // its batch output as text).
        let text = Item {
            key: None,
            content_type: "text/plain; charset=utf-8".into(),
            payload: b"HELLO".to_vec(),
        };
        assert_eq!(render_item(&text), json!("HELLO"));
        let bin = Item {
            key: Some("k".into()),
            content_type: "application/octet-stream".into(),
            payload: vec![0, 1],
        };
        assert_eq!(
            render_item(&bin),
            json!({"key": "k", "content_type": "application/octet-stream", "base64": "AAE="})
        );
        assert!(is_json("application/vnd.x+json"));
        assert!(!is_json("text/plain"));
    }
}
