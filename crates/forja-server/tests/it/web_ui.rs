//! The embedded web UI as the router serves it, and the UI's API client
//! kept in sync with the router: every (method, path) that
//! `web/src/api.ts` calls is a route here (not the router's "no route"
//! 404, not a 405).

use crate::common;

use axum::body::Body;
use common::*;
use forja_store::TenantSettings;

/// `(method, path)` of each call in api.ts, with `${…}` as `x`.
fn client_calls() -> Vec<(String, String)> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/src/api.ts"))
        .expect("web/src/api.ts");
    let mut out = Vec::new();
    for method in ["GET", "POST", "PATCH", "DELETE", "PUT"] {
        let needle = format!("\"{method}\",");
        let mut rest = src.as_str();
        while let Some(at) = rest.find(&needle) {
            rest = &rest[at + needle.len()..];
            let t = rest.trim_start();
            let Some(q) = t.chars().next().filter(|c| *c == '"' || *c == '`') else { continue };
            let body = &t[1..];
            let Some(end) = body.find(q) else { continue };
            let mut path = body[..end].to_string();
            while let Some(s) = path.find("${") {
                let e = path[s..].find('}').map_or(path.len(), |e| s + e + 1);
                path.replace_range(s..e, "x");
            }
            let path = path.split('?').next().unwrap_or_default().to_string();
            if path.starts_with("/v1/") {
                out.push((method.to_string(), path));
            }
        }
    }
    out
}

#[test]
fn every_call_of_the_ui_client_is_a_route() {
    let b = Bed::new(|_| {});
    let key = b.tenant("acme", TenantSettings::default());
    let calls = client_calls();
    assert!(calls.len() >= 15, "{calls:?}");
    for (method, path) in calls {
        let r =
            b.call(&method, &path, &key, &[("content-type", "application/json")], Body::from("{}"));
        assert!(
            !(r.status == 404 && r.message().starts_with("no route")) && r.status != 405,
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
    }
}

#[test]
fn the_ui_is_served_with_a_strict_policy_and_no_key() {
    let b = Bed::new(|_| {});
    let r = b.get("/", "");
    assert_eq!(r.status, 200);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    let html = r.body.as_str().unwrap_or_default().to_string();
    assert!(html.contains("<title>forja</title>"), "{html}");
    if !forja_server::web::embedded() {
        assert!(html.contains("make web"), "{html}");
        return forja_engine::fixtures::skip_unless_required("the web UI is not built (make web)");
    }
    // No inline script: every <script> names a file of this origin.
    for tag in html.split("<script").skip(1) {
        let tag = &tag[..tag.find('>').unwrap()];
        assert!(tag.contains("src=\"/assets/"), "an inline or foreign script: {tag}");
    }
    let js = html.split("src=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().to_string();
    let a = b.get(&js, "");
    assert_eq!(a.status, 200, "{js}");
    assert!(a.headers["content-type"].to_str().unwrap().contains("javascript"));
    assert!(a.headers["cache-control"].to_str().unwrap().contains("immutable"));
    assert_eq!(b.get("/assets/nope.js", "").status, 404);
    assert_eq!(b.get("/assets/..%2F..%2FCargo.toml", "").status, 404);
    // The API's unknown routes still answer JSON.
    assert_eq!(b.get("/v1/nope", "").code(), "not_found");
}
