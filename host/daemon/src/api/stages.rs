//! `/v1/stages`: deploy, inspect, list and delete stages.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};

use super::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use weft_store::{Expect, StageMeta, StageRecord, StageVersion};

use super::{AppState, Body};
use crate::ApiError;

/// Parses `config.KEY=VALUE` and `env.KEY=VALUE` query pairs into a [`StageMeta`].
pub(crate) fn parse_meta(query: Option<&str>) -> Result<StageMeta, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request("bad_query", format!("unreadable query string: {e}")))?;
    let mut meta = StageMeta::default();
    for (key, value) in pairs {
        if let Some(k) = key.strip_prefix("config.").filter(|k| !k.is_empty()) {
            meta.config.push((k.to_string(), value));
        } else if let Some(k) = key.strip_prefix("env.").filter(|k| !k.is_empty()) {
            meta.env.push((k.to_string(), value));
        } else {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("unknown query parameter `{key}`"),
            )
            .hint("stage settings are `config.KEY=VALUE` (passed to init) and `env.KEY=VALUE` (environment granted to the stage)"));
        }
    }
    Ok(meta)
}

fn version_json(v: &StageVersion) -> Value {
    json!({
        "version": v.version,
        "digest": v.digest,
        "size": v.size,
        "created_unix_ms": v.created_unix_ms,
        "config": v.meta.config.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>(),
        "env": v.meta.env.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
    })
}

fn record_json(state: &AppState, rec: &StageRecord) -> Value {
    let pool = state
        .stages
        .stats_of(&rec.name)
        .map(|s| json!({"live": s.live, "idle": s.idle, "created": s.created, "traps": s.traps}));
    json!({
        "name": rec.name,
        "latest": version_json(rec.latest()),
        "versions": rec.versions.iter().map(version_json).collect::<Vec<_>>(),
        "instances": pool,
    })
}

/// `PUT /v1/stages/{name}`: validate, compile, store, and swap in the new pool.
/// 201 for a new version, 200 when identical to the latest.
pub async fn deploy(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    Body(bytes): Body,
) -> Result<Response, ApiError> {
    let result = deploy_inner(&state, name, query, bytes).await;
    state
        .metrics
        .record_upload(if result.is_ok() { "ok" } else { "rejected" });
    result
}

async fn deploy_inner(
    state: &Arc<AppState>,
    name: String,
    query: Option<String>,
    bytes: bytes::Bytes,
) -> Result<Response, ApiError> {
    weft_store::validate_name(&name)?;
    let meta = parse_meta(query.as_deref())?;
    if bytes.is_empty() {
        return Err(
            ApiError::bad_request("empty_body", "the request body is empty")
                .hint("send the component bytes: `curl -T stage.wasm .../v1/stages/NAME`"),
        );
    }
    let local = state.cluster.begin(crate::cluster::Kind::Stage, &name);
    let (version, created) = deploy_stage(state, name.clone(), meta, bytes, Expect::Any)
        .await?
        .ok_or_else(|| ApiError::internal("an unconditional deploy was refused"))?;
    // Other nodes of a cluster get it too (also when unchanged here: the
    // cluster may hold another version as the latest).
    local.publish(crate::cluster::Change::Stage {
        object: version.digest.clone(),
        size: version.size,
        meta: version.meta.clone(),
    });
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut body = version_json(&version);
    // One instance starts now: a config the stage refuses (a model that is
    // not uploaded yet) is said here, not first as a 500 on a call. Not a
    // refusal: what it needs may come after it.
    if created && let Some(why) = start_one(state, &name).await {
        tracing::warn!(stage = %name, "deployed, but did not start: {why}");
        body["warning"] = Value::String(format!(
            "the stage did not start with this config: {why}; calls fail until it can \
             (upload what it needs, or deploy it again with another config)"
        ));
    }
    body["name"] = Value::String(name);
    Ok((status, Json(body)).into_response())
}

/// Starts one instance of stage `name` (kept for its first call): why it
/// did not start, if it did not.
async fn start_one(state: &AppState, name: &str) -> Option<String> {
    let pool = state.stages.get(name).await.ok()?;
    match pool.prewarm(1).await {
        Ok(()) => None,
        Err(weft_runtime::InvokeError::InitFailed { message, .. }) => Some(message),
        Err(e) => Some(e.to_string()),
    }
}

/// Validates, compiles and stores `bytes` as stage `name`, and swaps in the
/// new pool; what a deploy does, also for a stage replicated from another
/// node. Returns the version and whether it is new; `None` when the stage's
/// latest version is no longer what `expect` says (nothing changed).
pub(crate) async fn deploy_stage(
    state: &Arc<AppState>,
    name: String,
    meta: StageMeta,
    bytes: bytes::Bytes,
    expect: Expect,
) -> Result<Option<(StageVersion, bool)>, ApiError> {
    let st = state.clone();
    let deployed = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        // Validate and compile before anything is written: a rejected upload
        // leaves no trace.
        let compiled = st.runtime.compile(&bytes)?;
        let previous = st.store.stage(&name)?.map(|r| r.latest().version);
        let Some(version) = st.store.put_stage_if(&name, &bytes, meta, expect)? else {
            return Ok(None);
        };
        let pool = st.runtime.pool_from(&name, &version, compiled);
        Ok(Some((version, previous, pool)))
    })
    .await
    .map_err(|e| ApiError::internal(format!("deploy task failed: {e}")))??;
    let Some((version, previous, pool)) = deployed else {
        return Ok(None);
    };
    let created = previous != Some(version.version);
    if created {
        state.stages.install(pool);
        retry_not_running(state);
    }
    Ok(Some((version, created)))
}

/// Tries again, in the background, to start the stored pipelines and
/// actors that could not start (an upload may be what they were missing).
pub(crate) fn retry_not_running(state: &Arc<AppState>) {
    if state.pipelines.any_broken() || state.actors.any_broken() {
        let state = state.clone();
        tokio::spawn(async move {
            state.pipelines.retry_broken().await;
            state.actors.retry_broken().await;
        });
    }
}

/// `GET /v1/stages/{name}`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let lookup = name.clone();
    let rec = crate::blocking(move || store.stage(&lookup))
        .await?
        .ok_or_else(|| ApiError::no_stage(&name))?;
    Ok(Json(record_json(&state, &rec)))
}

/// `GET /v1/stages`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: super::NoQuery,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let recs = crate::blocking(move || store.list_stages()).await?;
    let stages: Vec<Value> = recs.iter().map(|r| record_json(&state, r)).collect();
    Ok(Json(json!({ "stages": stages })))
}

/// `DELETE /v1/stages/{name}`: removes the stage, its pool and its state.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let store = state.store.clone();
    let lookup = name.clone();
    let local = state.cluster.begin(crate::cluster::Kind::Stage, &name);
    if crate::blocking(move || store.delete_stage(&lookup)).await? {
        state.stages.remove(&name);
        local.publish(crate::cluster::Change::Deleted);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::no_stage(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_from_query() {
        let meta = parse_meta(Some("config.size=8&config.mode=a%20b&env.LANG=C")).unwrap();
        assert_eq!(
            meta.config,
            [("size".into(), "8".into()), ("mode".into(), "a b".into())]
        );
        assert_eq!(meta.env, [("LANG".into(), "C".into())]);
        assert_eq!(parse_meta(None).unwrap(), StageMeta::default());
        let err = parse_meta(Some("size=8")).unwrap_err();
        assert_eq!(err.code, "bad_query");
        assert!(err.hint.unwrap().contains("config.KEY"));
        assert!(parse_meta(Some("config.=x")).is_err());
    }
}
