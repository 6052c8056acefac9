//! `/v1/pipelines` and the pipelines' own trigger routes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;

use super::Path;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::invoke::{request_item, respond, sse_response, wants_sse};
use super::{AppState, Body};
use crate::ApiError;
use crate::pipeline::{PipelineHandle, PipelineSpec, RunFailure, StepFailure};

/// Maps a failed run to the HTTP answer, naming pipeline and step.
pub(crate) fn run_error(f: RunFailure) -> ApiError {
    let at = format!("pipeline `{}`, step `{}`", f.pipeline, f.step);
    match f.failure {
        StepFailure::Overloaded => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!("{at}: its queue is full"),
            )
            .hint("retry after the Retry-After delay, or raise the step's replicas.max");
            e.retry_after = Some(1);
            e
        }
        StepFailure::Stopped => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "pipeline_replaced",
                format!("{at}: the pipeline was replaced or deleted while this request waited"),
            )
            .hint("retry: a new request reaches the pipeline's current version");
            e.retry_after = Some(1);
            e
        }
        StepFailure::Timeout => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            format!("{at}: the request's deadline passed"),
        )
        .hint("raise the pipeline's timeout_ms or the step's timeout_ms"),
        StepFailure::BatchShape { sent, got } => ApiError::internal(format!(
            "{at}: the stage returned {got} items for a batch of {sent}"
        ))
        .hint("a batched step's stage must return exactly one output per input; remove `batch` from the step or fix the stage"),
        StepFailure::Invoke(e) => {
            let mut api = ApiError::from(e);
            api.message = format!("{at}: {}", api.message);
            api
        }
    }
}

fn parse_spec(headers: &HeaderMap, body: &[u8]) -> Result<PipelineSpec, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let looks_json =
        ct.contains("json") || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed = if looks_json {
        PipelineSpec::from_json(body)
    } else {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("invalid_spec", "the spec is not UTF-8 text"))?;
        PipelineSpec::from_toml(text)
    };
    parsed.map_err(|e| {
        ApiError::bad_request("invalid_spec", e.to_string()).hint(format!(
            "fix `{}` in the pipeline spec (TOML, or JSON with content-type application/json)",
            e.field
        ))
    })
}

/// `PUT /v1/pipelines/{name}`: TOML or JSON spec. 201 new version, 200 unchanged.
pub async fn apply(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let spec = parse_spec(&headers, &body)?;
    if spec.name != name {
        return Err(ApiError::bad_request(
            "invalid_spec",
            format!(
                "name: the spec is named `{}` but was sent to /v1/pipelines/{name}",
                spec.name
            ),
        )
        .hint("make the URL and the spec's `name` agree"));
    }
    let local = state.cluster.begin(crate::cluster::Kind::Pipeline, &name);
    let (handle, created) = state.pipelines.apply(spec).await?;
    // Other nodes of a cluster get it too.
    local.publish(crate::cluster::Change::Pipeline {
        spec: serde_json::to_string(&handle.spec).expect("a spec serializes"),
    });
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(status_json(&handle))).into_response())
}

/// `GET /v1/pipelines/{name}`: spec and live status per step.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .pipelines
        .get(&name)
        .map(|p| Json(status_json(&p)))
        .ok_or_else(|| no_pipeline(&state, &name))
}

/// `GET /v1/pipelines`.
pub async fn list(State(state): State<Arc<AppState>>, _: super::NoQuery) -> Json<Value> {
    let pipelines: Vec<Value> = state.pipelines.all().iter().map(status_json).collect();
    let broken: Vec<Value> = state
        .pipelines
        .broken()
        .into_iter()
        .map(|(name, reason)| json!({"name": name, "error": reason}))
        .collect();
    Json(json!({"pipelines": pipelines, "not_running": broken}))
}

/// `DELETE /v1/pipelines/{name}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Its jobs would each fail every row they have left, one by one.
    super::datasets::refuse_under_a_job(&state, "pipeline", "pipeline_in_use", &name).await?;
    let local = state.cluster.begin(crate::cluster::Kind::Pipeline, &name);
    if state.pipelines.delete(&name).await? {
        local.publish(crate::cluster::Change::Deleted);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_pipeline(&state, &name))
    }
}

/// `POST /v1/pipelines/{name}/invoke`.
pub async fn invoke(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    if let Some(addr) = state.cluster.should_forward(&headers) {
        return state
            .cluster
            .forward(&addr, &Method::POST, &uri, &headers, body)
            .await;
    }
    let Some(pipeline) = state.pipelines.get(&name) else {
        // Not here, but on a peer: pass the request on.
        return match state.cluster.peer_running(&headers, Some(&name), None) {
            Some(addr) => {
                state
                    .cluster
                    .forward(&addr, &Method::POST, &uri, &headers, body)
                    .await
            }
            None => Err(no_pipeline(&state, &name)),
        };
    };
    let item = request_item(&headers, body);
    if wants_async(&headers) {
        return respond_async(&state, &pipeline, &item).await;
    }
    let stream = wants_sse(&headers);
    run(pipeline, item, stream, None).await
}

/// Whether the client sent `Prefer: respond-async` (RFC 7240).
fn wants_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// Runs the request as an invoke job: 202 + `Location` of the job.
async fn respond_async(
    state: &AppState,
    pipeline: &PipelineHandle,
    item: &weft_runtime::Item,
) -> Result<Response, ApiError> {
    let spec = crate::jobs::InvokeSpec::from_item(&pipeline.spec.name, item);
    super::jobs::accepted(state, crate::jobs::JobSpec::Invoke(spec)).await
}

/// A request to a trigger route, if one matches (called by the fallback).
pub async fn trigger(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Option<Result<Response, ApiError>> {
    let pipeline = state.pipelines.route(method.as_str(), uri.path())?;
    if let Some(addr) = state.cluster.should_forward(headers) {
        return Some(
            state
                .cluster
                .forward(&addr, method, uri, headers, body)
                .await,
        );
    }
    let trigger = pipeline
        .spec
        .triggers
        .iter()
        .find(|t| t.method == method.as_str() && t.route == uri.path())?
        .clone();
    let mut item = request_item(headers, body);
    if let Some(ct) = &trigger.request_content_type {
        item.content_type = ct.clone();
    }
    if wants_async(headers) {
        return Some(respond_async(state, &pipeline, &item).await);
    }
    let stream = trigger.stream || wants_sse(headers);
    Some(run(pipeline, item, stream, trigger.response_content_type).await)
}

async fn run(
    pipeline: PipelineHandle,
    item: weft_runtime::Item,
    stream: bool,
    response_content_type: Option<String>,
) -> Result<Response, ApiError> {
    if stream {
        return Ok(sse_response(move |events| async move {
            pipeline.run(item, Some(events)).await.map_err(run_error)
        })
        .await);
    }
    let items = pipeline.run(item, None).await.map_err(run_error)?;
    let mut response = respond(items);
    if let Some(ct) = response_content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(response)
}

/// 503 for a stored pipeline that could not start.
pub(crate) fn not_running(name: &str, reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "pipeline_not_running",
        format!("pipeline `{name}` is stored but could not start: {reason}"),
    )
    .hint(
        "upload what the message says is missing (a stage, a model): the pipeline starts \
         again by itself; or apply it again with `weft pipeline apply FILE`",
    )
}

fn no_pipeline(state: &AppState, name: &str) -> ApiError {
    match state.pipelines.broken_why(name) {
        Some(reason) => not_running(name, &reason),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "pipeline_not_found",
            format!("no pipeline named `{name}`"),
        )
        .hint("create it with `weft pipeline apply FILE`; `weft pipeline list` shows what exists"),
    }
}

/// Spec, version and live per-step numbers.
pub(crate) fn status_json(p: &PipelineHandle) -> Value {
    let steps: Vec<Value> = p
        .steps
        .iter()
        .map(|s| {
            let pool = s.pool.stats();
            json!({
                "name": s.name,
                "stage": s.spec.stage,
                "stage_version": s.pool.version(),
                "replicas": {
                    "live": pool.live, "idle": pool.idle,
                    "target": s.stats.target_replicas.load(Ordering::Relaxed),
                    "min": s.spec.replicas.min, "max": s.spec.replicas.max,
                    "reserved": s.grant.held(),
                    "limited_by": s.grant.limited_by().map(|short| short.to_string()),
                },
                "queued": s.stats.queued.load(Ordering::Relaxed),
                "in_flight": s.stats.in_flight.load(Ordering::Relaxed),
                "calls": s.stats.calls.load(Ordering::Relaxed),
                "items": s.stats.items.load(Ordering::Relaxed),
                "rejected": s.stats.rejected.load(Ordering::Relaxed),
                "retries": s.stats.retries.load(Ordering::Relaxed),
                "busy_s": s.stats.busy_us.load(Ordering::Relaxed) as f64 / 1e6,
                "traps": pool.traps,
                "p50_us": s.stats.quantile_us(0.5),
                "p99_us": s.stats.quantile_us(0.99),
            })
        })
        .collect();
    json!({
        "name": p.spec.name,
        "version": p.version,
        "spec": p.spec,
        "steps": steps,
    })
}

/// Per-step gauges and counters in the Prometheus text format: replicas
/// (scaling decisions), queue depth, in-flight calls, rejections, latency.
pub(crate) fn render_metrics(pipelines: &[PipelineHandle], out: &mut String) {
    use std::fmt::Write;
    let series = [
        (
            "weft_step_replicas",
            "gauge",
            "Live replicas (instances) of a pipeline step.",
        ),
        (
            "weft_step_target_replicas",
            "gauge",
            "Replicas the autoscaler wants for a step (ongoing requests / target_in_flight, within min..max).",
        ),
        (
            "weft_step_queue_depth",
            "gauge",
            "Requests waiting for a pipeline step.",
        ),
        (
            "weft_step_in_flight",
            "gauge",
            "Calls a pipeline step is running.",
        ),
        (
            "weft_step_rejected_total",
            "counter",
            "Requests refused because a step's queue was full.",
        ),
        (
            "weft_step_busy_seconds_total",
            "counter",
            "Time a step spent in calls; its rate divided by replicas is the step's utilisation.",
        ),
        (
            "weft_step_latency_p50_seconds",
            "gauge",
            "Median call latency of a step (recent calls).",
        ),
        (
            "weft_step_latency_p99_seconds",
            "gauge",
            "99th percentile call latency of a step (recent calls).",
        ),
    ];
    for (name, kind, help) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in pipelines {
            for s in &p.steps {
                let value = match name {
                    "weft_step_replicas" => s.pool.stats().live as f64,
                    "weft_step_target_replicas" => {
                        s.stats.target_replicas.load(Ordering::Relaxed) as f64
                    }
                    "weft_step_queue_depth" => s.stats.queued.load(Ordering::Relaxed) as f64,
                    "weft_step_in_flight" => s.stats.in_flight.load(Ordering::Relaxed) as f64,
                    "weft_step_rejected_total" => s.stats.rejected.load(Ordering::Relaxed) as f64,
                    "weft_step_busy_seconds_total" => {
                        s.stats.busy_us.load(Ordering::Relaxed) as f64 / 1e6
                    }
                    "weft_step_latency_p50_seconds" => {
                        s.stats.quantile_us(0.5).unwrap_or(0) as f64 / 1e6
                    }
                    _ => s.stats.quantile_us(0.99).unwrap_or(0) as f64 / 1e6,
                };
                let _ = writeln!(
                    out,
                    "{name}{{pipeline=\"{}\",step=\"{}\"}} {value}",
                    p.spec.name, s.name
                );
            }
        }
    }
}
