//! The HTTP API: routes, auth, body limits. Handlers are thin: extract, call
//! the domain, map the result.

mod actors;
mod cluster;
mod datasets;
mod invoke;
mod jobs;
mod models;
mod objects;
mod pipelines;
mod placement;
mod stages;

pub(crate) use invoke::{is_json, render_item};
pub(crate) use models::store_model;
pub(crate) use pipelines::run_error;
pub(crate) use stages::deploy_stage;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;
use weft_runtime::Runtime;
use weft_store::Store;

use crate::actors::Actors;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::pipeline::Pipelines;
use crate::stages::Stages;
use crate::{ApiError, ServeConfig};

/// Shared state of every handler.
#[derive(Debug)]
pub struct AppState {
    /// The node store.
    pub store: Store,
    /// The Wasm runtime.
    pub runtime: Arc<Runtime>,
    /// Live stage pools.
    pub stages: Stages,
    /// Running pipelines and their trigger routes.
    pub pipelines: Arc<Pipelines>,
    /// Batch and async jobs.
    pub jobs: Jobs,
    /// Named actors.
    pub actors: Actors,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The inference engine behind `wasi:nn`.
    pub nn: Arc<weft_runtime::EngineBackend>,
    /// The node's resources and placement groups.
    pub placement: Arc<crate::placement::PlacementGroups>,
    /// This node's membership of a cluster (inert without `--cluster`).
    pub cluster: Arc<crate::cluster::Cluster>,
    /// The daemon's configuration.
    pub config: ServeConfig,
}

/// Builds the router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/stages", get(stages::list))
        .route(
            "/v1/stages/{name}",
            put(stages::deploy).get(stages::show).delete(stages::delete),
        )
        .route("/v1/stages/{name}/invoke", post(invoke::invoke))
        .route("/v1/pipelines", get(pipelines::list))
        .route(
            "/v1/pipelines/{name}",
            put(pipelines::apply)
                .get(pipelines::show)
                .delete(pipelines::delete),
        )
        .route("/v1/pipelines/{name}/invoke", post(pipelines::invoke))
        .route("/v1/datasets", get(datasets::list).post(datasets::create))
        .route(
            "/v1/datasets/{name}",
            get(datasets::show).delete(datasets::delete),
        )
        .route("/v1/models", get(models::list))
        .route(
            "/v1/models/{name}",
            put(models::upload).get(models::show).delete(models::delete),
        )
        .route("/v1/actors", get(actors::list).post(actors::create))
        .route(
            "/v1/actors/{name}",
            get(actors::show).delete(actors::delete),
        )
        .route("/v1/actors/{name}/call", post(actors::call))
        .route("/v1/jobs", get(jobs::list).post(jobs::submit))
        .route("/v1/jobs/{id}", get(jobs::show).delete(jobs::delete))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/v1/jobs/{id}/output", get(jobs::output))
        .route("/v1/jobs/{id}/errors", get(jobs::errors))
        .route(
            "/v1/jobs/{id}/blocks/{index}",
            get(jobs::block_input).post(jobs::block_commit),
        )
        .route(
            "/v1/placement-groups",
            get(placement::list).post(placement::create),
        )
        .route(
            "/v1/placement-groups/{name}",
            get(placement::show).delete(placement::delete),
        )
        .route("/v1/node", get(placement::node))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/nodes/{name}/{action}", post(cluster::drain))
        .route("/v1/objects", put(objects::put).post(objects::put))
        .route("/v1/objects/{id}", get(objects::get))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(state.config.max_body))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut text = state
        .metrics
        .render(&state.stages.stats(), state.runtime.compiles());
    pipelines::render_metrics(&state.pipelines.all(), &mut text);
    text.push_str(&format!(
        "# HELP weft_jobs_running Jobs running (or waiting for their pipeline) on this node.\n\
         # TYPE weft_jobs_running gauge\nweft_jobs_running {}\n",
        state.jobs.running()
    ));
    crate::metrics::render_inference(&state.nn, &mut text);
    if let Some(queue) = state.jobs.block_queue() {
        queue.render_metrics(&mut text);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Pipeline triggers live outside the fixed routes: they change whenever a
/// pipeline is applied or deleted, so they are looked up per request.
async fn fallback(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    match pipelines::trigger(&state, &method, &uri, &headers, body.clone()).await {
        Some(result) => result,
        // A route this node does not serve, but a peer does (its pipeline
        // does not fit here, or runs in a placement group there).
        None => {
            match state
                .cluster
                .peer_running(&headers, None, Some((method.as_str(), uri.path())))
            {
                Some(addr) => {
                    state
                        .cluster
                        .forward(&addr, &method, &uri, &headers, body)
                        .await
                }
                // A stored pipeline's route, while it cannot start.
                None => match state.pipelines.broken_route(method.as_str(), uri.path()) {
                    Some((name, reason)) => Err(pipelines::not_running(&name, &reason)),
                    None => {
                        // A pipeline's route, asked with another method.
                        let methods = state.pipelines.methods_of(uri.path());
                        if methods.is_empty() {
                            Err(not_found(method, uri))
                        } else {
                            Err(ApiError::new(
                                StatusCode::METHOD_NOT_ALLOWED,
                                "method_not_allowed",
                                format!(
                                    "{} accepts {}, not {method}",
                                    uri.path(),
                                    methods.join(", ")
                                ),
                            )
                            .hint("send the request with the method the pipeline's trigger names"))
                        }
                    }
                },
            }
        }
    }
}

fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!("no route for {method} {}", uri.path()),
    )
    .hint("see the HTTP API table in the README")
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not accept {method}", uri.path()),
    )
    .hint("see the HTTP API table in the README for the methods of each route")
}

/// With a token configured, every route that is not a read needs
/// `Authorization: Bearer <token>`.
async fn auth(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(token) = &state.config.token else {
        return next.run(req).await;
    };
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented == Some(token.as_str()) {
        next.run(req).await
    } else {
        // Read (and drop) the body first: answering mid-upload makes the
        // server close the connection, and the client would see a broken
        // pipe instead of this 401.
        let _ = axum::body::to_bytes(req.into_body(), state.config.max_body).await;
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs a bearer token",
        )
        .hint("pass `--token` to the CLI (or set WEFT_TOKEN), or send `Authorization: Bearer <token>`")
        .into_response()
    }
}

/// axum's `Path`, with its rejection (a segment that is not UTF-8 once
/// decoded, or not a number where one is expected) said as the API's JSON
/// error, as every other bad request is.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::bad_request("bad_path", rejection.body_text())
                .hint("check the URL's path: names are UTF-8, ids and indices numbers")),
        }
    }
}

/// What a route that takes no query parameters extracts: any is the JSON
/// 400 `bad_query` (the listing routes neither filter nor page, and
/// `GET /v1/jobs?state=running` returned every job without a word).
#[derive(Debug)]
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        match parts.uri.query() {
            None | Some("") => Ok(Self),
            Some(q) => Err(ApiError::bad_request(
                "bad_query",
                format!(
                    "{} {} takes no query parameters (got `{q}`)",
                    parts.method,
                    parts.uri.path()
                ),
            )
            .hint("it lists everything: filter its JSON on your side (e.g. with jq)")),
        }
    }
}

/// A request body read whole, with a JSON 413 when it is over the limit.
#[derive(Debug)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "the request body is larger than this daemon accepts",
                    )
                    .hint("send less, or raise the limit with `weft serve --max-body-mib`")
                } else {
                    ApiError::bad_request("bad_body", rejection.body_text())
                }
            })
    }
}
