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
        use StoreError as S;
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "invalid_api_key", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::BadRequest { param, code, .. } => {
                (StatusCode::BAD_REQUEST, code, param.clone())
            }
            ApiError::Client { .. } => (StatusCode::BAD_GATEWAY, "upstream_error", None),
            ApiError::Control(c) => match c {
                C::InvalidFile { .. } => {
                    (StatusCode::BAD_REQUEST, "invalid_file", Some("training_file".into()))
                }
                C::InvalidRequest { param, .. } => {
                    (StatusCode::BAD_REQUEST, "invalid_request", Some(param.clone()))
                }
                C::Stopped { .. } => (StatusCode::CONFLICT, "lease_lost", None),
                C::Eval(_) => (StatusCode::BAD_REQUEST, "invalid_golden_set", Some("file".into())),
                C::Store(s) => match s {
                    S::NotFound { .. } | S::ArtifactMissing { .. } => {
                        (StatusCode::NOT_FOUND, "not_found", None)
                    }
                    S::QuotaExceeded { .. } => {
                        (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", None)
                    }
                    S::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "database_busy", None),
                    S::Full { .. } => (StatusCode::INSUFFICIENT_STORAGE, "storage_full", None),
                    S::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
                    S::LeaseLost { .. } => (StatusCode::CONFLICT, "lease_lost", None),
                    S::HashMismatch { .. } => (StatusCode::BAD_REQUEST, "hash_mismatch", None),
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None),
                },
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, param) = self.parts();
        if status.is_server_error() {
            tracing::error!("{self}");
        }
        let kind = match status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        let body = serde_json::json!({
            "error": { "message": self.to_string(), "type": kind, "param": param, "code": code }
        });
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
