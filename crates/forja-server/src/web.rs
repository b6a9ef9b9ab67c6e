//! The web UI: the single-page app built from `web/` (Vite) into
//! `web/dist` and embedded in the binary at compile time, served at `/`
//! under a strict Content-Security-Policy (scripts and styles from this
//! origin only, no inline script, no framing). Hashed assets are cached
//! for a year; `index.html` is revalidated. A binary built without
//! `web/dist` answers `/` with a page that says how to build the UI.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Assets;

/// The policy every UI response carries.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>forja</title>\
    <p>This forja binary was built without its web UI. Run <code>make web</code> \
    (or <code>make build</code>) and rebuild; the API is at <code>/v1</code>.</p>";

/// Whether this binary carries the UI.
pub fn embedded() -> bool {
    Assets::get("index.html").is_some()
}

fn secure(mut r: Response, cache: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

fn file(path: &str, cache: &'static str) -> Response {
    match Assets::get(path) {
        Some(f) => {
            let mime = f.metadata.mimetype().to_string();
            secure(([(header::CONTENT_TYPE, mime)], f.data.into_owned()).into_response(), cache)
        }
        None => secure(
            (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain")], "not found")
                .into_response(),
            "no-store",
        ),
    }
}

/// `GET /`: the app.
pub async fn index() -> Response {
    if !embedded() {
        let r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], NOT_BUILT).into_response();
        return secure(r, "no-store");
    }
    file("index.html", "no-cache")
}

/// `GET /assets/{*path}`: hashed bundles.
pub async fn asset(Path(path): Path<String>) -> Response {
    if path.contains("..") {
        return file("", "no-store");
    }
    file(&format!("assets/{path}"), "public, max-age=31536000, immutable")
}

/// `GET /favicon.svg`.
pub async fn favicon() -> Response {
    file("favicon.svg", "public, max-age=86400")
}
