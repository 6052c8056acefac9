//! The one place domain errors become HTTP: status + JSON
//! `{"error": {"code", "message", "hint"}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use weft_runtime::{InvokeError, RuntimeError};
use weft_store::StoreError;

/// An error answer of the HTTP API.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `wrong_world`.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// Seconds for a `Retry-After` header (busy, overloaded).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with no hint.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            hint: None,
            retry_after: None,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// 404 for a stage that is not deployed.
    pub fn no_stage(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "stage_not_found",
            format!("no stage named `{name}`"),
        )
        .hint("deploy it with `weft stage deploy NAME FILE`; `weft stage list` shows what exists")
    }

    /// 400 for a bad request argument.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 500 for a failure inside the node.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The JSON body of this error.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message, "hint": self.hint}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // What a user was told went wrong on this side is in the log too
        // (a 503 of a busy node is routine: only at debug).
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = self.code, message = %self.message, "answered 500");
        } else if self.status.is_server_error() {
            tracing::debug!(code = self.code, message = %self.message, status = %self.status, "answered");
        }
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid { what, .. } => {
                Self::bad_request("invalid_argument", e.to_string())
                    .hint(format!("fix the {what} in the request path or body"))
            }
            StoreError::Exists { what, ref name } => {
                let hint = format!("pick another name, or delete the {what} `{name}` first");
                Self::new(StatusCode::CONFLICT, "already_exists", e.to_string()).hint(hint)
            }
            // A record (not an object's bytes, which no DELETE reaches).
            StoreError::Corrupt { table, .. } if !table.starts_with("object") => Self::internal(
                e.to_string(),
            )
            .hint(
                "a newer weft release wrote this record, or the store file was damaged: read it \
                 with the release that wrote it, or DELETE it by the same path (listings pass \
                 over it; the bytes it names stay in the store)",
            ),
            e => Self::internal(e.to_string()),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        let message = e.to_string();
        match e {
            RuntimeError::NotComponent(_) => Self::bad_request("not_a_component", message)
                .hint("build the stage with `cargo build --release --target wasm32-wasip2` and upload the .wasm it produces"),
            RuntimeError::WrongWorld(_) => Self::bad_request("wrong_world", message)
                .hint("a stage implements `weft_sdk::Stage` and calls `weft_sdk::export_stage!`; see wit/stage.wit"),
            RuntimeError::Compile(_) => Self::bad_request("invalid_component", message)
                .hint("the component failed validation; rebuild it with a current toolchain"),
            RuntimeError::Store(e) => e.into(),
            RuntimeError::MissingComponent { .. } | RuntimeError::Engine(_) => {
                Self::internal(message)
            }
        }
    }
}

/// Status, code, hint and Retry-After of a failed call; shared by the error
/// response and the metrics outcome label.
pub(crate) fn classify_invoke(
    e: &InvokeError,
) -> (StatusCode, &'static str, Option<&'static str>, Option<u64>) {
    match e {
        InvokeError::BadInput { .. } => (
            StatusCode::BAD_REQUEST,
            "bad_input",
            Some("the stage refused this input: fix what the message names and send it again"),
            None,
        ),
        InvokeError::Retryable { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "retryable",
            Some("the stage reported a transient failure; retry the request"),
            Some(1),
        ),
        InvokeError::Fatal { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "stage_failed",
            Some(
                "the stage gave up on this call (its instance was discarded); other calls are unaffected",
            ),
            None,
        ),
        InvokeError::InitFailed { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "init_failed",
            Some("check the config the stage was deployed with (`weft stage deploy --config`)"),
            None,
        ),
        InvokeError::Trap { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "trap",
            Some(
                "the stage trapped on this call (the message has its panic): a bug in the stage; \
                 its instance was discarded, other calls are unaffected",
            ),
            None,
        ),
        InvokeError::MemoryLimit { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "memory_limit",
            Some("process smaller batches or raise the limit with `weft serve --memory-mib`"),
            None,
        ),
        InvokeError::Deadline { .. } => (
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            Some("the call was interrupted; raise the limit with `weft serve --deadline-ms`"),
            None,
        ),
        InvokeError::Busy { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            Some(
                "every instance stayed busy; retry after the Retry-After delay or raise `--max-instances`",
            ),
            Some(1),
        ),
        InvokeError::Host { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "host_error", None, None),
    }
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        let message = e.to_string();
        let (status, code, hint, retry) = classify_invoke(&e);
        let mut err = Self::new(status, code, message);
        err.hint = hint.map(str::to_string);
        err.retry_after = retry;
        err
    }
}
