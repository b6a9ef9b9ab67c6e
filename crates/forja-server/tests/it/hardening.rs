//! Regression tests of the hardening issue, over HTTP against an in-process
//! node (the real router, store, artifact directory, batcher and a tiny
//! model): each finding a hostile tenant reproduced — a crash, a stall, a
//! leak — answered with a status and a one-line JSON error, while the node
//! stays up and other tenants are served.

use crate::common;

use axum::body::Body;
use common::*;
use forja_store::TenantSettings;
use serde_json::{json, Value};

fn health(b: &Bed) {
    assert_eq!(b.get("/health", "").status, 200, "the node is down");
}

/// A schema with `n` required string properties (~38 bytes each).
fn wide_schema(n: usize) -> Value {
    let props: serde_json::Map<String, Value> =
        (0..n).map(|i| (format!("field_number_{i:05}"), json!({"type": "string"}))).collect();
    let required: Vec<String> = props.keys().cloned().collect();
    json!({"type": "object", "properties": props, "required": required})
}

/// Regression (hardening #1): a `response_format` JSON schema with ~5,000
/// required properties (a 188 KB body) overflowed a tokio worker's stack
/// while compiling and aborted the process. It is refused by size; allowed
/// by a larger limit, it compiles on a large-stack thread, and either way
/// the node stays up.
#[test]
fn a_huge_json_schema_cannot_crash_the_node() {
    let schema = wide_schema(5000);
    let rf = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}});
    let body = chat("base", "hi", json!({"response_format": rf, "max_tokens": 4}));
    assert!(body.to_string().len() > 180_000);
    let b = Bed::new(|_| {});
    let k = b.tenant("acme", TenantSettings::default());
    let r = b.post("/v1/chat/completions", &k, body.clone());
    assert_eq!(
        (r.status.as_u16(), r.code(), r.param()),
        (400, "invalid_grammar", "response_format"),
        "{}",
        r.body
    );
    assert!(r.message().contains("--max-grammar-kb"), "{}", r.body);
    health(&b);
    let big = Bed::new(|c| c.grammar.max_bytes = 4 << 20);
    let k = big.tenant("acme", TenantSettings::default());
    let r = big.post("/v1/chat/completions", &k, body);
    assert!(matches!(r.status.as_u16(), 200 | 400), "{} {}", r.status, r.body);
    assert!(!r.message().contains('\n') && r.message().len() <= 1000, "{}", r.body);
    health(&big);
    // Deep nesting is refused before any work.
    let mut deep = json!({"type": "string"});
    for _ in 0..40 {
        deep = json!({"type": "object", "properties": {"a": deep}});
    }
    let rf = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": deep}});
    let r =
        big.post("/v1/chat/completions", &k, chat("base", "hi", json!({"response_format": rf})));
    assert_eq!((r.status.as_u16(), r.code()), (400, "invalid_grammar"), "{}", r.body);
    assert!(r.message().contains("levels deep"), "{}", r.body);
}

/// Regression (hardening #2): `time_limit_s = 18446744073709551615` was
/// accepted and later panicked the trainer. Every job field is checked
/// when the job is asked for.
#[test]
fn job_fields_out_of_range_are_refused_at_the_api() {
    let b = Bed::new(|_| {});
    let k = b.tenant("acme", TenantSettings::default());
    let boundary = "b0undary";
    let file = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello there\"}]}";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.jsonl\"\r\n\r\n{file}\r\n--{boundary}--\r\n"
    );
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let f = b.call("POST", "/v1/files", &k, &[("content-type", &ctype)], Body::from(body));
    assert_eq!(f.status, 200, "{}", f.body);
    let fid = f.body["id"].as_str().unwrap();
    for (extra, param) in [
        (json!({"time_limit_s": u64::MAX}), "time_limit_s"),
        (json!({"time_limit_s": 0}), "time_limit_s"),
        (json!({"resources": {"gpus": 100000}}), "resources.gpus"),
        (json!({"suffix": "no spaces please"}), "suffix"),
        (json!({"hyperparameters": {"n_epochs": 1000}}), "hyperparameters.n_epochs"),
        (json!({"hyperparameters": {"batch_size": "lots"}}), "hyperparameters.batch_size"),
        (
            json!({"hyperparameters": {"learning_rate_multiplier": -1}}),
            "hyperparameters.learning_rate_multiplier",
        ),
        (
            json!({"metadata": (0..20).map(|i| (i.to_string(), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "metadata",
        ),
    ] {
        let mut body = json!({"model": "base", "training_file": fid});
        for (k2, v) in extra.as_object().unwrap() {
            body[k2] = v.clone();
        }
        let r = b.post("/v1/fine_tuning/jobs", &k, body.clone());
        assert_eq!((r.status.as_u16(), r.param()), (400, param), "{body} -> {}", r.body);
    }
    // An unknown field is refused by name; `base` is a model a job may use.
    let r = b.post(
        "/v1/fine_tuning/jobs",
        &k,
        json!({"model": "base", "training_file": fid, "epochs": 3}),
    );
    assert_eq!(r.status, 400);
    assert!(r.message().contains("`epochs`"), "{}", r.body);
    let r = b.post("/v1/fine_tuning/jobs", &k, json!({"model": "base", "training_file": fid}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["model"], "tiny.gguf", "the public name, not a path: {}", r.body);
    health(&b);
}

/// Regression (hardening #5): every non-inference JSON route took 512 MiB
/// bodies and a 50 MB feedback post was stored. JSON routes take ~1 MiB,
/// fields are capped, and a tenant's storage has a quota.
#[test]
fn bodies_fields_and_storage_are_bounded() {
    let b = Bed::new(|_| {});
    let k = b.tenant("acme", TenantSettings { threshold: None, ..Default::default() });
    let huge = "x".repeat(2 << 20);
    let r = b.post("/v1/feedback", &k, json!({"prompt": "hola", "correction": huge}));
    assert_eq!((r.status.as_u16(), r.code()), (413, "body_too_large"), "{}", r.body);
    let long = "palabra ".repeat(10_000);
    let r = b.post("/v1/feedback", &k, json!({"prompt": "hola", "correction": long}));
    assert_eq!((r.status.as_u16(), r.param()), (400, "correction"), "{}", r.body);
    let many: Vec<Value> =
        (0..1001).map(|i| json!({"prompt": "p", "correction": format!("c {i}")})).collect();
    let r = b.post("/v1/feedback", &k, json!({"examples": many}));
    assert_eq!((r.status.as_u16(), r.param()), (400, "examples"), "{}", r.body);
    let r = b.post(
        "/v1/feedback",
        &k,
        json!({"prompt": "hola", "correction": "Buenos días.", "colour": 1}),
    );
    assert_eq!(r.status, 400);
    assert!(r.message().contains("colour"), "{}", r.body);
    // A tenant with a 1 MiB quota fills it; the next post is 507 and says why.
    let small =
        b.tenant("small", TenantSettings { threshold: None, storage_mb: 1, ..Default::default() });
    let mut refused = None;
    for i in 0..40 {
        let text = format!("respuesta número {i}: {}", "contenido largo ".repeat(3000));
        let r = b.post(
            "/v1/feedback",
            &small,
            json!({"prompt": format!("pregunta {i}"), "correction": text}),
        );
        if r.status != 200 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the quota was never reached");
    assert_eq!((r.status.as_u16(), r.code()), (507, "storage_quota_exceeded"), "{}", r.body);
    let st = b.get("/v1/learning/status", &small).body;
    assert!(st["storage"]["used_bytes"].as_u64().unwrap() <= 1 << 20, "{st}");
    // Another tenant is not affected.
    let r = b.post("/v1/feedback", &k, json!({"prompt": "hola", "correction": "Buenos días."}));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Regression (hardening #7): panics were answered as client errors with
/// their text, and 500s carried internal messages. Internal failures are an
/// opaque 500 with a request id (also in `X-Request-Id`); client errors are
/// one line, cut to 1000 characters, even when they quote huge input.
#[test]
fn errors_are_one_line_and_internal_ones_are_opaque() {
    let b = Bed::new(|_| {});
    let k = b.tenant("acme", TenantSettings::default());
    let name = "m".repeat(200);
    let r = b.post("/v1/chat/completions", &k, chat(&name, "hi", json!({})));
    assert_eq!(r.status, 404);
    assert!(r.headers.get("x-request-id").is_some());
    let huge_model = "m".repeat(300);
    let r = b.post("/v1/chat/completions", &k, chat(&huge_model, "hi", json!({})));
    assert_eq!((r.status.as_u16(), r.param()), (400, "model"), "{}", r.body);
    let bad_lark = "start: x\nx: \"a\" | /(/\n".repeat(50);
    let rf = json!({"type": "lark", "grammar": bad_lark});
    let r = b.post("/v1/chat/completions", &k, chat("base", "hi", json!({"response_format": rf})));
    assert_eq!((r.status.as_u16(), r.code()), (400, "invalid_grammar"), "{}", r.body);
    assert!(!r.message().contains('\n') && r.message().len() <= 1001, "{}", r.body);
    // Not JSON, a wrong method, an unknown route, a bad query: JSON errors.
    let r = b.call(
        "POST",
        "/v1/feedback",
        &k,
        &[("content-type", "application/json")],
        Body::from("{nope"),
    );
    assert_eq!(r.status, 400);
    assert!(r.body["error"]["message"].is_string());
    let r = b.call("DELETE", "/v1/feedback", &k, &[], Body::empty());
    assert_eq!((r.status.as_u16(), r.code()), (405, "method_not_allowed"), "{}", r.body);
    let r = b.get("/v1/nothing/here", &k);
    assert_eq!((r.status.as_u16(), r.code()), (404, "not_found"), "{}", r.body);
    let r = b.get("/v1/fine_tuning/jobs?limit=lots", &k);
    assert_eq!(r.status, 400);
    assert!(r.body["error"]["message"].is_string(), "{}", r.body);
    // A client's request id comes back; a hostile one is replaced.
    let r = b.call("GET", "/health", "", &[("x-request-id", "abc-123")], Body::empty());
    assert_eq!(r.headers["x-request-id"], "abc-123");
    let r = b.call("GET", "/health", "", &[("x-request-id", "a b\"<x>")], Body::empty());
    assert!(r.headers["x-request-id"].to_str().unwrap().starts_with("req-"));
    // An internal error: the opaque body names the request id and nothing else.
    let e = forja_server::ApiError::Internal("secret detail /home/x/forja.db".into());
    let (status, body) = e.body();
    assert_eq!(status, 500);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("request id") && !msg.contains("secret"), "{msg}");
}

/// Regression (hardening #15): `/v1/models` listed `base` but fine-tuning
/// refused it; paths leaked into model ids. Names are consistent across
/// endpoints and no path is shown.
#[test]
fn model_names_are_consistent_and_never_paths() {
    let b = Bed::new(|_| {});
    let k = b.tenant("acme", TenantSettings::default());
    let models = b.get("/v1/models", &k).body;
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"base") && ids.contains(&"tiny.gguf"), "{ids:?}");
    assert!(ids.iter().all(|i| !i.contains('/')), "a path leaked: {ids:?}");
    for m in ["base", "tiny.gguf", "tiny"] {
        let r = b.post("/v1/chat/completions", &k, chat(m, "hi", json!({})));
        assert_eq!(r.status, 200, "{m}: {}", r.body);
        assert_eq!(r.body["model"], "tiny.gguf");
    }
}
