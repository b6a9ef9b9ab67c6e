//! The one error type of forja-server: what a request can fail with, and
//! its OpenAI-shaped JSON body (`{"error": {message, type, param, code}}`)
//! with the status code a client acts on (404 for another tenant's rows,
//! 429 with `Retry-After` over quota, 503 while the database is busy, 507
//! when it is full).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use forja_control::ControlError;
use forja_store::StoreError;

/// Errors answered to HTTP clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No key, or not a live key.
    #[error("missing or invalid API key: send `Authorization: Bearer <key>` with a key from `forja keys create`")]
    Unauthorized,
    /// The key's role may not call this.
    #[error("this key may not call {0}")]
    Forbidden(&'static str),
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
    /// The control plane refused or failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The model is still loading.
    #[error("the model is still loading; retry when /ready answers 200")]
    NotReady,
    /// The request ran past the server's timeout and was cancelled.
    #[error("the request took longer than this server's limit of {0} s (--request-timeout-s) and was cancelled")]
    Timeout(u64),
    /// Serving refused or failed.
    #[error(transparent)]
    Serve(#[from] forja_serve::ServeError),
    /// The worker client could not reach or understand the control plane.
    #[error("{url}: {reason}")]
    Client {
        /// What was called.
        url: String,
        /// Why it failed.
        reason: String,
    },
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Control(e.into())
    }
}

impl ApiError {
    /// A bad request naming the field.
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param: Some(param.into()),
            code: "invalid_request",
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        use ControlError as C;
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "invalid_api_key", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::BadRequest { param, code, .. } => {
                (StatusCode::BAD_REQUEST, code, param.clone())
            }
            ApiError::Client { .. } => (StatusCode::BAD_GATEWAY, "upstream_error", None),
            ApiError::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "model_loading", None),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout", None),
            ApiError::Serve(e) => serve_parts(e),
            ApiError::Control(c) => match c {
                C::InvalidFile { .. } => {
                    (StatusCode::BAD_REQUEST, "invalid_file", Some("training_file".into()))
                }
                C::InvalidRequest { param, .. } => {
                    (StatusCode::BAD_REQUEST, "invalid_request", Some(param.clone()))
                }
                C::Stopped { .. } => (StatusCode::CONFLICT, "lease_lost", None),
                C::Eval(_) => (StatusCode::BAD_REQUEST, "invalid_golden_set", Some("file".into())),
                C::Store(s) => store_parts(s),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None),
            },
        }
    }
}

fn store_parts(s: &StoreError) -> (StatusCode, &'static str, Option<String>) {
    use StoreError as S;
    match s {
        S::NotFound { .. } | S::ArtifactMissing { .. } => {
            (StatusCode::NOT_FOUND, "not_found", None)
        }
        S::QuotaExceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", None),
        S::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "database_busy", None),
        S::Full { .. } => (StatusCode::INSUFFICIENT_STORAGE, "storage_full", None),
        S::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
        S::LeaseLost { .. } => (StatusCode::CONFLICT, "lease_lost", None),
        S::HashMismatch { .. } => (StatusCode::BAD_REQUEST, "hash_mismatch", None),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None),
    }
}

fn serve_parts(e: &forja_serve::ServeError) -> (StatusCode, &'static str, Option<String>) {
    use forja_engine::EngineError as E;
    use forja_serve::ServeError as V;
    let p = |s: &str| Some(s.to_string());
    match e {
        V::NotFound(_) => (StatusCode::NOT_FOUND, "model_not_found", p("model")),
        V::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request", p("model")),
        V::Load(_) | V::Unavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "model_unavailable", None)
        }
        V::Engine(E::PromptTooLong { .. }) => {
            (StatusCode::BAD_REQUEST, "context_length_exceeded", p("messages"))
        }
        V::Engine(E::EmptyPrompt) => (StatusCode::BAD_REQUEST, "invalid_request", p("messages")),
        V::Engine(E::Params(forja_core::CoreError::InvalidParam { name, .. })) => {
            (StatusCode::BAD_REQUEST, "invalid_request", p(name))
        }
        V::Engine(E::Tokenizer { .. } | E::NoChatTemplate | E::ChatTemplate(_)) => {
            (StatusCode::BAD_REQUEST, "invalid_request", p("messages"))
        }
        V::Engine(E::Grammar { .. }) => {
            (StatusCode::BAD_REQUEST, "invalid_grammar", p("response_format"))
        }
        V::Store(s) => store_parts(s),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None),
    }
}

impl ApiError {
    /// The status and the OpenAI-shaped error body.
    pub fn body(&self) -> (StatusCode, serde_json::Value) {
        let (status, code, param) = self.parts();
        let kind = match status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        let body = serde_json::json!({
            "error": { "message": self.to_string(), "type": kind, "param": param, "code": code }
        });
        (status, body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.body();
        if status.is_server_error() {
            tracing::error!("{self}");
        }
        let mut resp = (status, axum::Json(body)).into_response();
        let retry = match &self {
            ApiError::Control(ControlError::Store(StoreError::QuotaExceeded {
                frees_at, ..
            })) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                Some((frees_at - now).max(1))
            }
            ApiError::Control(ControlError::Store(StoreError::Busy { .. })) => Some(1),
            _ => None,
        };
        if let Some(s) = retry {
            resp.headers_mut().insert("retry-after", HeaderValue::from(s));
        }
        resp
    }
}
