//! `/v1/models`: the model registry. An upload is checked by weft-nn's
//! readers before it is stored: a truncated file or an unsupported tensor
//! type is a 400 naming the tensor.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};

use super::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use weft_nn::Encoding;
use weft_store::{Expect, ModelRecord};

use super::AppState;
use crate::ApiError;

/// Query of `PUT /v1/models/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    #[serde(default)]
    encoding: Option<String>,
}

/// `PUT /v1/models/{name}?encoding=onnx|ggml`: 201 new version, 200 unchanged.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request("invalid_argument", e.body_text())
            .hint("PUT /v1/models/NAME?encoding=onnx|ggml")
    })?;
    // Before reading what may be a gigabyte.
    weft_store::validate_name_of("model name", &name)?;
    let bytes = axum::body::to_bytes(body, state.config.max_model)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the model is larger than {} MiB",
                    state.config.max_model >> 20
                ),
            )
            .hint("raise the limit with `weft serve --max-model-mib`")
        })?;
    if bytes.is_empty() {
        return Err(
            ApiError::bad_request("empty_body", "the request body is empty").hint(
                "send the model file: `curl -T model.gguf '.../v1/models/NAME?encoding=ggml'`",
            ),
        );
    }
    let gguf = bytes.starts_with(b"GGUF");
    // The encoding: given, else from the file's first bytes.
    let encoding = match q.encoding.as_deref() {
        Some(e) => Encoding::parse(e).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_argument",
                format!("encoding: `{e}` is not supported"),
            )
            .hint("use encoding=onnx or encoding=ggml (GGUF files)")
        })?,
        None if gguf => Encoding::Ggml,
        None => Encoding::Onnx,
    };
    if gguf && encoding == Encoding::Onnx {
        return Err(ApiError::bad_request(
            "invalid_model",
            "the file is GGUF (it starts with `GGUF`), not ONNX",
        )
        .hint("upload it with ?encoding=ggml, or without ?encoding"));
    }
    let local = state.cluster.begin(crate::cluster::Kind::Model, &name);
    let stored = store_model(&state, name.clone(), encoding, bytes, Expect::Any).await;
    let (rec, added) = stored
        .map_err(|e| match q.encoding {
            // Not GGUF, and not readable as ONNX either: say both.
            None if e.code == "invalid_model" => e.hint(
                "the file is neither GGUF (which starts with `GGUF`) nor a readable ONNX model; \
                 upload a .gguf or a complete .onnx file, and give ?encoding=ggml|onnx",
            ),
            _ => e,
        })?
        .ok_or_else(|| ApiError::internal("an unconditional upload was refused"))?;
    // Other nodes of a cluster get it too.
    let latest = rec.latest();
    local.publish(crate::cluster::Change::Model {
        object: latest.object.clone(),
        size: latest.size,
        encoding: latest.encoding.clone(),
    });
    if added {
        super::stages::retry_not_running(&state);
    }
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(model_json(&rec))).into_response())
}

/// Checks `bytes` with weft-nn's readers and stores them as model `name`;
/// what an upload does, also for a model replicated from another node.
/// Returns the record and whether a version was added; `None` when the
/// model's latest version is no longer what `expect` says (nothing stored).
pub(crate) async fn store_model(
    state: &AppState,
    name: String,
    encoding: Encoding,
    bytes: bytes::Bytes,
    expect: Expect,
) -> Result<Option<(ModelRecord, bool)>, ApiError> {
    let info = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || weft_nn::inspect(&bytes, encoding))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| {
                ApiError::bad_request("invalid_model", e.0).hint(match encoding {
                    Encoding::Ggml => format!(
                        "upload a complete GGUF file of a Llama-family decoder ({}) with tensors of {}",
                        weft_nn::GGUF_ARCHITECTURES.join(", "),
                        weft_nn::READABLE_TYPES
                    ),
                    Encoding::Onnx => "upload a complete .onnx file with its weights inline (re-save external-data models with weights embedded)".to_string(),
                })
            })?
    };
    let mut summary = weft_runtime::model_summary(&info);
    // A GGUF decoder's tokenizer, as an object the `generate` stage takes
    // (`--config tokenizer=ID`): no Python needed for a model of one's own.
    // Off the executor: building it to check it reads the whole vocab.
    if let weft_nn::ModelInfo::Gguf(g) = &info {
        let (g, store) = (g.clone(), state.store.clone());
        summary["tokenizer"] = crate::blocking(move || match weft_runtime::gguf_tokenizer(&g) {
            Ok(json) => store.put_object(&json).map(|id| json!({ "object": id })),
            Err(why) => Ok(json!({ "object": null, "why": why })),
        })
        .await?;
    }
    let summary = summary.to_string();
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        store.put_model_if(&name, encoding.as_str(), &bytes, &summary, expect)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(Into::into)
}

fn model_json(rec: &ModelRecord) -> Value {
    let version = |v: &weft_store::ModelVersion| {
        json!({
            "version": v.version,
            "encoding": v.encoding,
            "size": v.size,
            "object": v.object,
            "created_unix_ms": v.created_unix_ms,
            "summary": serde_json::from_str::<Value>(&v.summary).unwrap_or(Value::Null),
        })
    };
    json!({
        "name": rec.name,
        "latest": version(rec.latest()),
        "versions": rec.versions.iter().map(version).collect::<Vec<_>>(),
    })
}

fn no_model(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "model_not_found",
        format!("no model named `{name}`"),
    )
    .hint("upload it with `weft model upload NAME FILE`; `weft model list` shows what exists")
}

/// `GET /v1/models`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: super::NoQuery,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let all = crate::blocking(move || store.list_models()).await?;
    Ok(Json(
        json!({"models": all.iter().map(model_json).collect::<Vec<_>>()}),
    ))
}

/// `GET /v1/models/{name}`.
pub async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let n = name.clone();
    let rec = crate::blocking(move || store.model(&n))
        .await?
        .ok_or_else(|| no_model(&name))?;
    Ok(Json(model_json(&rec)))
}

/// Query of `DELETE /v1/models/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Delete a model that live instances hold loaded.
    #[serde(default)]
    force: bool,
}

/// `DELETE /v1/models/{name}[?force=true]`: 409 while live instances hold
/// the model loaded (a stage, pipeline or actor that uses it), unless
/// forced.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request("invalid_argument", e.body_text())
            .hint("DELETE /v1/models/NAME[?force=true]")
    })?;
    let store = state.store.clone();
    let n = name.clone();
    let read = crate::blocking(move || Ok::<_, ApiError>(store.model(&n))).await?;
    let held: Vec<u32> = match read {
        // A record this release cannot read was never loaded by it.
        Err(e) if e.is_unreadable() => Vec::new(),
        read => read?
            .ok_or_else(|| no_model(&name))?
            .versions
            .iter()
            .filter(|v| state.nn.holds(&v.object))
            .map(|v| v.version)
            .collect(),
    };
    if !held.is_empty() && !q.force {
        let versions: Vec<String> = held.iter().map(|v| format!("v{v}")).collect();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "model_in_use",
            format!(
                "model `{name}` ({}) is loaded by running instances: a stage, pipeline or actor uses it",
                versions.join(", ")
            ),
        )
        .hint(format!(
            "delete or redeploy what uses it first, or delete it anyway with \
             `DELETE /v1/models/{name}?force=true` (running instances keep their copy; new ones \
             cannot load it)"
        )));
    }
    let store = state.store.clone();
    let n = name.clone();
    let local = state.cluster.begin(crate::cluster::Kind::Model, &name);
    let existed = crate::blocking(move || store.delete_model(&n)).await?;
    if existed {
        local.publish(crate::cluster::Change::Deleted);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_model(&name))
    }
}
