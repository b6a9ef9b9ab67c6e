//! Cross-cutting HTTP layers: a request id on every request and response
//! (`X-Request-Id`, kept when the client sends a sane one), every error
//! answered as one JSON line (axum's own rejections — a body over the
//! limit, a bad path or query, a wrong method — included), and a panic in
//! a handler answered as an opaque 500 with the request id.

use crate::error::REQUEST_ID;
use crate::ApiError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const HEADER: &str = "x-request-id";

/// The layers every route gets: unknown routes as JSON 404s, every error
/// as JSON, panics as opaque 500s, a request id, tracing.
pub fn harden<S: Clone + Send + Sync + 'static>(r: axum::Router<S>) -> axum::Router<S> {
    r.fallback(not_found)
        .layer(axum::middleware::from_fn(json_errors))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(request_id))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Gives the request an id (the client's `X-Request-Id` if sane, else a
/// new one), runs it with the id in scope, and echoes it.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_string)
        .unwrap_or_else(|| format!("req-{}", uuid::Uuid::new_v4().simple()));
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

/// A handler panicked: an opaque 500 (the panic is logged with the id).
pub fn panicked(p: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = forja_core::panic_message(&*p).unwrap_or("unknown panic");
    ApiError::Internal(format!("a handler panicked: {what}")).into_response()
}

/// Unknown routes: a JSON 404.
pub async fn not_found(req: Request) -> Response {
    let message =
        format!("no route {} {}", req.method(), forja_control::clip(req.uri().path(), 200));
    let body = serde_json::json!({"error": {"message": message,
        "type": "invalid_request_error", "param": null, "code": "not_found"}});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// Turns error responses that are not JSON (axum's extractor rejections)
/// into the API's JSON error body, keeping their status.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "server_error",
        _ => "invalid_request",
    };
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this route accepts".to_string()
        }
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method".to_string(),
        _ if text.trim().is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
        _ => forja_control::clip(text.lines().next().unwrap_or_default(), 300),
    };
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    let body = serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    let mut out = Response::from_parts(parts, Body::from(body.to_string()));
    out.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    out.headers_mut().remove("content-length");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    /// Regression (hardening #7): a panic in a handler was answered as a
    /// client error carrying the panic's text. It is an opaque 500 naming
    /// the request id, and the server goes on.
    #[tokio::test]
    async fn a_panicking_handler_is_an_opaque_500_with_the_request_id() {
        let app = harden(axum::Router::new().route(
            "/boom",
            get(|| async {
                if true {
                    panic!("secret internal detail");
                }
                "unreachable"
            }),
        ));
        let req = Request::get("/boom").header(HEADER, "trace-1").body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()[HEADER], "trace-1");
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("trace-1") && !msg.contains("secret"), "{msg}");
        assert_eq!(v["error"]["code"], "internal_error");
        let again = app.oneshot(Request::get("/nope").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_FOUND);
    }
}
