//! The one error type of forja-server: what a request can fail with, and
//! its OpenAI-shaped JSON body (`{"error": {message, type, param, code}}`)
//! with the status code a client acts on (404 for another tenant's rows,
//! 403 for a role that may not, 429 with `Retry-After` over a quota or an
//! admission cap, 503 while the database is busy, 507 when storage is
//! full). Also what [`crate::node::Node::start`] fails with.
//!
//! A 4xx message is one line, at most [`MAX_MESSAGE`] characters (user
//! input it quotes is cut). A 5xx that is a bug or an internal failure
//! (a panic, a database error, a failed background task, llguidance's
//! internals) is answered opaquely: "internal error" and the request id
//! (`X-Request-Id`), while the detail is logged once with that id.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use forja_control::ControlError;
use forja_store::StoreError;

/// Longest message a client gets.
pub const MAX_MESSAGE: usize = 1000;

tokio::task_local! {
    /// The id of the request being answered (set by the request-id middleware).
    pub static REQUEST_ID: String;
}

/// The current request's id, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Errors answered to HTTP clients (and node start-up failures).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No key, or not a live key.
    #[error("missing or invalid API key: send `Authorization: Bearer <key>` with a key from `forja keys create`")]
    Unauthorized,
    /// The key's role may not call this.
    #[error("this key may not call {0}")]
    Forbidden(String),
    /// A malformed request.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The field.
        param: Option<String>,
        /// Machine-readable.
        code: &'static str,
    },
    /// The body is larger than the route accepts.
    #[error("the request body is larger than this route's limit of {0} bytes")]
    TooLarge(usize),
    /// The control plane refused or failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The model is still loading.
    #[error("the model is still loading; retry when /ready answers 200")]
    NotReady,
    /// Background work keeps crashing (`/ready` only).
    #[error("the node is degraded: {0}")]
    Degraded(String),
    /// The request ran past the server's timeout and was cancelled.
    #[error("the request took longer than this server's limit of {0} s (--request-timeout-s) and was cancelled")]
    Timeout(u64),
    /// Serving refused or failed.
    #[error(transparent)]
    Serve(#[from] forja_serve::ServeError),
    /// The tenant already holds this many live event streams.
    #[error("this tenant already follows {0} event streams; close one, or poll /v1/fine_tuning/jobs/{{id}}/events")]
    TooManyStreams(usize),
    /// A bug or an internal failure; the detail is logged, not answered.
    #[error("internal error: {0}")]
    Internal(String),
    /// The worker client could not reach or understand the control plane.
    #[error("{url}: {reason}")]
    Client {
        /// What was called.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The node could not start (data directory, model, listener).
    #[error("{0}")]
    Startup(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Control(e.into())
    }
}

/// `(status, code, param)`; `None` code: internal (opaque).
type Parts = (StatusCode, Option<&'static str>, Option<String>);

impl ApiError {
    /// A bad request naming the field.
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param: Some(param.into()),
            code: "invalid_request",
        }
    }

    fn parts(&self) -> Parts {
        use ControlError as C;
        let internal = (StatusCode::INTERNAL_SERVER_ERROR, None, None);
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, Some("invalid_api_key"), None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, Some("forbidden"), None),
            ApiError::BadRequest { param, code, .. } => {
                (StatusCode::BAD_REQUEST, Some(code), param.clone())
            }
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"), None),
            ApiError::NotReady => (StatusCode::SERVICE_UNAVAILABLE, Some("model_loading"), None),
            ApiError::Degraded(_) => (StatusCode::SERVICE_UNAVAILABLE, Some("degraded"), None),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, Some("timeout"), None),
            ApiError::TooManyStreams(_) => {
                (StatusCode::TOO_MANY_REQUESTS, Some("rate_limit_exceeded"), None)
            }
            ApiError::Serve(e) => serve_parts(e),
            ApiError::Control(c) => match c {
                C::InvalidFile { .. } => {
                    (StatusCode::BAD_REQUEST, Some("invalid_file"), Some("training_file".into()))
                }
                C::InvalidRequest { param, .. } => {
                    (StatusCode::BAD_REQUEST, Some("invalid_request"), Some(param.clone()))
                }
                C::Forbidden(_) => (StatusCode::FORBIDDEN, Some("forbidden"), None),
                C::Document { source: forja_docs::DocsError::TooLarge(_), file } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, Some("document_too_large"), Some(file.clone()))
                }
                C::Document { file, .. } => {
                    (StatusCode::BAD_REQUEST, Some("invalid_document"), Some(file.clone()))
                }
                C::Stopped { .. } => (StatusCode::CONFLICT, Some("lease_lost"), None),
                C::Eval(_) => {
                    (StatusCode::BAD_REQUEST, Some("invalid_golden_set"), Some("file".into()))
                }
                C::Data(forja_data::DataError::Config(_)) => {
                    (StatusCode::BAD_REQUEST, Some("invalid_request"), None)
                }
                C::Store(s) => store_parts(s),
                _ => internal,
            },
            ApiError::Internal(_) | ApiError::Client { .. } | ApiError::Startup(_) => internal,
        }
    }
}

fn store_parts(s: &StoreError) -> Parts {
    use StoreError as S;
    match s {
        S::NotFound { .. } | S::ArtifactMissing { .. } => {
            (StatusCode::NOT_FOUND, Some("not_found"), None)
        }
        S::QuotaExceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded"), None),
        S::StorageQuota { .. } => {
            (StatusCode::INSUFFICIENT_STORAGE, Some("storage_quota_exceeded"), None)
        }
        S::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, Some("database_busy"), None),
        S::Unavailable { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, Some("database_unavailable"), None)
        }
        S::Full { .. } => (StatusCode::INSUFFICIENT_STORAGE, Some("storage_full"), None),
        S::Conflict(_) => (StatusCode::CONFLICT, Some("conflict"), None),
        S::LeaseLost { .. } => (StatusCode::CONFLICT, Some("lease_lost"), None),
        S::HashMismatch { .. } => (StatusCode::BAD_REQUEST, Some("hash_mismatch"), None),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, None, None),
    }
}

fn serve_parts(e: &forja_serve::ServeError) -> Parts {
    use forja_engine::EngineError as E;
    use forja_serve::ServeError as V;
    let p = |s: &str| Some(s.to_string());
    let bad = |code, param: &str| (StatusCode::BAD_REQUEST, Some(code), p(param));
    match e {
        V::NotFound(_) => (StatusCode::NOT_FOUND, Some("model_not_found"), p("model")),
        V::Invalid(_) => bad("invalid_request", "model"),
        V::Busy { .. } => (StatusCode::TOO_MANY_REQUESTS, Some("rate_limit_exceeded"), None),
        V::Engine(E::PromptTooLong { .. }) => bad("context_length_exceeded", "messages"),
        V::Engine(E::EmptyPrompt) => bad("invalid_request", "messages"),
        V::Engine(E::Params(forja_core::CoreError::InvalidParam { name, .. })) => {
            bad("invalid_request", name)
        }
        V::Engine(E::Tokenizer { .. } | E::NoChatTemplate | E::ChatTemplate(_)) => {
            bad("invalid_request", "messages")
        }
        // A grammar refused when compiled, or one that hit llguidance's
        // limits while masking: the request's grammar is at fault.
        V::Engine(E::Grammar { .. } | E::Constraint { .. }) => {
            bad("invalid_grammar", "response_format")
        }
        V::Store(s) => store_parts(s),
        // Load, Unavailable, other engine failures: internal.
        _ => (StatusCode::INTERNAL_SERVER_ERROR, None, None),
    }
}

/// One line, at most [`MAX_MESSAGE`] characters.
fn one_line(s: &str) -> String {
    let flat: String =
        s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    forja_control::clip(&flat, MAX_MESSAGE)
}

impl ApiError {
    /// The status and the OpenAI-shaped error body. Internal errors are
    /// logged here (once) with the request id and answered opaquely.
    pub fn body(&self) -> (StatusCode, serde_json::Value) {
        let (status, code, param) = self.parts();
        let kind = match status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        let (message, code) = match code {
            Some(code) => (one_line(&self.to_string()), code),
            None => {
                let id = request_id()
                    .unwrap_or_else(|| format!("req-{}", uuid::Uuid::new_v4().simple()));
                tracing::error!(request_id = %id, error = %self, "internal error");
                (
                    format!("internal error (request id {id}); the server logged the details"),
                    "internal_error",
                )
            }
        };
        let body = serde_json::json!({
            "error": { "message": message, "type": kind, "param": param, "code": code }
        });
        (status, body)
    }

    /// Seconds a client should wait before retrying, for 429 and 503.
    fn retry_after(&self) -> Option<i64> {
        match self {
            ApiError::Control(ControlError::Store(StoreError::QuotaExceeded {
                frees_at, ..
            })) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                Some((frees_at - now).max(1))
            }
            ApiError::Control(ControlError::Store(
                StoreError::Busy { .. } | StoreError::Unavailable { .. },
            )) => Some(1),
            ApiError::Serve(forja_serve::ServeError::Busy { retry_after_s, .. }) => {
                Some(*retry_after_s as i64)
            }
            ApiError::NotReady | ApiError::TooManyStreams(_) => Some(5),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.body();
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after() {
            resp.headers_mut().insert("retry-after", HeaderValue::from(s));
        }
        resp
    }
}
