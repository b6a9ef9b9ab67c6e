//! A fuzz-style test of every route of a running node: random shapes and
//! sizes of body (garbage bytes, wrong JSON types, huge and deep values,
//! unknown fields, mutations of valid bodies), under every kind of key
//! (none, wrong, tenant, another tenant, worker, admin, admin acting for a
//! tenant), with odd content types and path ids. Every answer must be a
//! status with a one-line JSON error for 4xx/5xx, no input may produce an
//! internal error, and the node must still serve at the end. Seeded, so a
//! failure replays.

use crate::common;

use axum::body::Body;
use common::*;
use forja_control::keys::{self, KeySpec};
use forja_store::{Role, TenantSettings};
use serde_json::{json, Value};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

fn scalar(r: &mut Rng) -> Value {
    match r.below(12) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(u64::MAX),
        4 => json!(1e308),
        5 => json!(0),
        6 => json!(""),
        7 => json!("x".repeat(r.below(5000))),
        8 => json!("auto"),
        9 => json!("\u{0000}\u{FFFF}ñ😀"),
        10 => json!(r.next() as i64),
        _ => json!(0.5),
    }
}

fn value(r: &mut Rng, depth: usize) -> Value {
    if depth == 0 {
        return scalar(r);
    }
    match r.below(4) {
        0 => Value::Array((0..r.below(4)).map(|_| value(r, depth - 1)).collect()),
        1 => {
            let keys = [
                "model",
                "messages",
                "prompt",
                "n",
                "max_tokens",
                "role",
                "content",
                "examples",
                "hyperparameters",
                "file",
                "force",
                "version",
                "name",
                "worker",
                "capacity",
                "logprobs",
                "response_format",
                "type",
                "schema",
                "settings",
                "tenant",
                "role",
                "memory",
                "subject",
                "entity",
                "facts",
                "zz_unknown",
            ];
            Value::Object(
                (0..r.below(5)).map(|_| (r.pick(&keys).to_string(), value(r, depth - 1))).collect(),
            )
        }
        _ => scalar(r),
    }
}

/// A valid-looking body for `path`, then maybe mutated.
fn body_for(r: &mut Rng, path: &str) -> Vec<u8> {
    let valid = match path {
        p if p.contains("chat/completions") => chat(
            "base",
            "hola",
            json!({"max_tokens": 4, "rag": {"k": 2, "mode": "bm25"}, "memory": {"k": 4, "remember": true}}),
        ),
        p if p.contains("memory/facts") => {
            json!({"subject": "Ana Ruiz", "verb": "es", "object": "alcaldesa", "since": "2026-06"})
        }
        p if p.contains("memory/forget") => json!({"entity": "Ana Ruiz"}),
        p if p.contains("memory/extract") => {
            json!({"text": "Ana Ruiz es la alcaldesa.", "source": "acta"})
        }
        p if p.contains("knowledge/sources") => {
            json!({"text": "# Tasas\n\nLa piscina cuesta 3 euros.", "format": "markdown", "pii": "keep"})
        }
        p if p.contains("knowledge/search") => json!({"query": "piscina", "k": 3, "mode": "bm25"}),
        p if p.contains("knowledge/feeds") => {
            json!({"url": "http://127.0.0.1:9/feed.xml", "interval_s": 600})
        }
        p if p.ends_with("/completions") => {
            json!({"model": "base", "prompt": "x", "max_tokens": 4})
        }
        p if p.contains("embeddings") => json!({"model": "minilm", "input": "x"}),
        p if p.contains("feedback") => json!({"prompt": "hola", "correction": "Buenos días."}),
        p if p.contains("fine_tuning/jobs") => json!({"model": "base", "training_file": "file-x"}),
        p if p.contains("admin/keys") => json!({"role": "tenant", "tenant": "acme"}),
        p if p.contains("admin/tenants") => json!({"name": "t", "settings": {"threshold": 3}}),
        p if p.contains("worker/lease") => {
            json!({"worker": "w", "capacity": {"gpus": 0, "memory_gb": 4, "models": null}})
        }
        p if p.contains("aliases") => json!({"version": "champion"}),
        p if p.contains("rollback") => json!({"to_base": false}),
        _ => json!({}),
    };
    match r.below(8) {
        0 => Vec::new(),
        1 => (0..r.below(3000)).map(|_| r.next() as u8).collect(),
        2 => value(r, 5).to_string().into_bytes(),
        3 => {
            // Deep nesting (past serde_json's recursion limit).
            let n = 50 + r.below(500);
            format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()
        }
        4 | 5 => {
            let mut v = valid;
            if let Some(o) = v.as_object_mut() {
                let keys: Vec<String> = o.keys().cloned().collect();
                if let Some(k) = keys.get(r.below(keys.len().max(1))) {
                    o.insert(k.clone(), value(r, 3));
                }
                if r.below(2) == 0 {
                    o.insert("zz_unknown".into(), scalar(r));
                }
            }
            v.to_string().into_bytes()
        }
        _ => valid.to_string().into_bytes(),
    }
}

#[test]
fn every_route_answers_every_shape_with_a_status_and_the_node_stays_up() {
    let b = Bed::new(|c| {
        c.limits.max_tokens_cap = 16;
        c.limits.max_upload = 256 << 10;
    });
    let tenant = b.tenant("acme", TenantSettings::default());
    let other = b.tenant("beta", TenantSettings::default());
    let (worker, _) = keys::create(&*b.node.store, Role::Worker, &KeySpec::default()).unwrap();
    let admin = b.admin.clone();
    let long = "a".repeat(300);
    let ids: Vec<&str> =
        vec!["file-x", "ftjob-0", "champion", "key-0", "../../etc/passwd", "%00", &long, "acme"];
    let routes: &[(&str, &str)] = &[
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("POST", "/v1/files"),
        ("GET", "/v1/files"),
        ("GET", "/v1/files/{id}"),
        ("DELETE", "/v1/files/{id}"),
        ("GET", "/v1/files/{id}/content"),
        ("POST", "/v1/fine_tuning/jobs"),
        ("GET", "/v1/fine_tuning/jobs"),
        ("GET", "/v1/fine_tuning/jobs/{id}"),
        ("POST", "/v1/fine_tuning/jobs/{id}/cancel"),
        ("GET", "/v1/fine_tuning/jobs/{id}/events"),
        ("GET", "/v1/fine_tuning/jobs/{id}/checkpoints"),
        ("GET", "/v1/fine_tuning/jobs/{id}/loss.png"),
        ("GET", "/v1/registry/models/{id}/loss.png"),
        ("GET", "/v1/registry/metrics.png?metric=wer,cer"),
        ("GET", "/v1/registry/metrics.png?metric=%00%ff"),
        ("GET", "/v1/fine_tuning/jobs/{id}/events/stream"),
        ("GET", "/v1/whoami"),
        ("POST", "/v1/conversations"),
        ("GET", "/v1/conversations"),
        ("GET", "/v1/conversations/{id}"),
        ("PATCH", "/v1/conversations/{id}"),
        ("DELETE", "/v1/conversations/{id}"),
        ("POST", "/v1/conversations/{id}/messages"),
        ("GET", "/v1/conversations/{id}/export"),
        ("POST", "/v1/knowledge/sources"),
        ("GET", "/v1/knowledge/sources"),
        ("GET", "/v1/knowledge/sources/{id}"),
        ("DELETE", "/v1/knowledge/sources/{id}"),
        ("GET", "/v1/knowledge/sources/{id}/content"),
        ("POST", "/v1/knowledge/search"),
        ("POST", "/v1/knowledge/feeds"),
        ("GET", "/v1/knowledge/feeds"),
        ("DELETE", "/v1/knowledge/feeds/{id}"),
        ("POST", "/v1/knowledge/feeds/{id}/poll"),
        ("POST", "/v1/memory/facts"),
        ("GET", "/v1/memory/facts"),
        ("GET", "/v1/memory/facts?entity=ana&history=true&limit=5"),
        ("GET", "/v1/memory/facts/{id}"),
        ("PATCH", "/v1/memory/facts/{id}"),
        ("DELETE", "/v1/memory/facts/{id}"),
        ("POST", "/v1/memory/forget"),
        ("POST", "/v1/memory/extract"),
        ("GET", "/v1/memory/rejections"),
        ("GET", "/v1/modes"),
        ("PUT", "/v1/modes"),
        ("DELETE", "/v1/modes"),
        ("POST", "/v1/feedback"),
        ("POST", "/v1/corrections"),
        ("GET", "/v1/documents"),
        ("GET", "/v1/documents/{id}"),
        ("DELETE", "/v1/documents/{id}"),
        ("GET", "/v1/documents/{id}/content"),
        ("GET", "/v1/dictionary"),
        ("POST", "/v1/dictionary"),
        ("DELETE", "/v1/dictionary/{id}"),
        ("GET", "/v1/learning/status"),
        ("POST", "/v1/learning/train"),
        ("POST", "/v1/learning/release"),
        ("POST", "/v1/registry/golden"),
        ("GET", "/v1/registry/golden"),
        ("GET", "/v1/registry/golden/{id}"),
        ("GET", "/v1/admin/node"),
        ("GET", "/v1/registry/models"),
        ("GET", "/v1/registry/models/{id}"),
        ("GET", "/v1/registry/models/{id}/lineage"),
        ("GET", "/v1/registry/models/{id}/eval"),
        ("POST", "/v1/registry/models/{id}/promote"),
        ("POST", "/v1/registry/rollback"),
        ("GET", "/v1/registry/aliases"),
        ("PUT", "/v1/registry/aliases/{id}"),
        ("GET", "/v1/registry/log"),
        ("GET", "/v1/admin/keys"),
        ("POST", "/v1/admin/keys"),
        ("POST", "/v1/admin/keys/{id}/revoke"),
        ("POST", "/v1/admin/keys/{id}/rotate"),
        ("GET", "/v1/admin/tenants"),
        ("POST", "/v1/admin/tenants"),
        ("GET", "/v1/admin/tenants/{id}"),
        ("PATCH", "/v1/admin/tenants/{id}"),
        ("POST", "/v1/worker/lease"),
        ("POST", "/v1/worker/jobs/{id}/heartbeat"),
        ("POST", "/v1/worker/jobs/{id}/events"),
        ("PUT", "/v1/worker/jobs/{id}/artifacts"),
        ("POST", "/v1/worker/jobs/{id}/checkpoints"),
        ("POST", "/v1/worker/jobs/{id}/finish"),
        ("GET", "/v1/artifacts/{id}"),
        ("GET", "/v1/artifacts/{id}?expires=-1&sig=zz"),
        ("POST", "/v1/nothing"),
        ("PATCH", "/v1/feedback"),
    ];
    let ctypes = [
        "application/json",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
        "application/json; charset=latin1",
    ];
    let mut r = Rng(0x5eed_f0a1_u64);
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for round in 0..6 {
        for (method, tpl) in routes {
            for key in ["", "forja-sk-wrong", &tenant, &other, &worker, &admin, "admin+acme"] {
                let id = *r.pick(&ids);
                let path = tpl.replace("{id}", &urlencoding(id));
                let body = body_for(&mut r, &path);
                let mut headers: Vec<(&str, &str)> = Vec::new();
                let ct = *r.pick(&ctypes);
                if !ct.is_empty() {
                    headers.push(("content-type", ct));
                }
                let key = if key == "admin+acme" {
                    headers.push(("x-forja-tenant", "acme"));
                    admin.as_str()
                } else {
                    key
                };
                headers.push(("x-forja-lease", "0123"));
                let resp = b.call(method, &path, key, &headers, Body::from(body.clone()));
                let s = resp.status.as_u16();
                *seen.entry(s).or_default() += 1;
                let what = format!(
                    "round {round}: {method} {path} key={} body={}",
                    &key[..key.len().min(12)],
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                );
                assert_ne!(s, 500, "{what} -> {}", resp.body);
                if s >= 400 {
                    let msg = resp.body["error"]["message"].as_str();
                    assert!(
                        msg.is_some_and(|m| !m.contains('\n') && m.len() <= 1100),
                        "{what} -> not a one-line JSON error: {}",
                        resp.body
                    );
                    assert!(resp.headers.get("x-request-id").is_some(), "{what}");
                }
            }
        }
    }
    eprintln!("statuses: {seen:?}");
    assert!(seen.keys().any(|s| *s == 200) && seen.keys().any(|s| *s == 401), "{seen:?}");
    assert_eq!(b.get("/health", "").status, 200);
    let r = b.post("/v1/chat/completions", &tenant, chat("base", "still there?", json!({})));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Percent-encodes what a path segment cannot hold.
fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
