//! Serving under hostile load, over HTTP against an in-process node:
//! fairness between tenants and admission control (429 with Retry-After),
//! work of clients that left dropped, CPU work off the async runtime, a
//! NaN adapter that fails its requests (and its promotion) without taking
//! the node down, and OpenAI's log-probabilities and echo.

use crate::common;

use axum::body::Body;
use candle_core::Tensor;
use common::*;
use forja_engine::lora::{Adapter, LoraConfig};
use forja_engine::{Engine, LoadOptions};
use forja_store::{NewVersion, TenantSettings};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tower::ServiceExt;

fn metric(b: &Bed, name: &str) -> f64 {
    let text = b.get("/metrics", "").body.as_str().unwrap_or_default().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Regression (hardening #4): one tenant's `/v1/completions` flood (150
/// prompts × n=8) delayed another tenant's one-token chat from 0.6 s to
/// 118 s. Requests over a tenant's in-flight cap are refused at once (429
/// with Retry-After), and the batcher shares slots between tenants: the
/// quiet tenant's chat finishes while the flood is still generating.
#[test]
fn one_tenants_flood_neither_starves_another_nor_queues_without_bound() {
    let b = Bed::with_spec(&slow_spec(), |c| {
        c.max_batch = 2;
        c.admission.per_tenant = 8;
    });
    let flood = b.tenant("flood", TenantSettings::default());
    let quiet = b.tenant("quiet", TenantSettings::default());
    // prompts × n over the tenant's cap: refused outright, naming `n`.
    let big =
        json!({"model": "base", "prompt": ["a", "b", "c", "d", "e"], "n": 2, "max_tokens": 4});
    let r = b.post("/v1/completions", &flood, big);
    assert_eq!((r.status.as_u16(), r.param()), (400, "n"), "{}", r.body);
    let router = b.node.router();
    let order = b.node.block_on(async move {
        let long = json!({"model": "base", "prompt": "the council", "n": 2, "max_tokens": 2000,
            "ignore_eos": true, "temperature": 0});
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..4 {
            let (r, tx, body, k) = (router.clone(), tx.clone(), long.to_string(), flood.clone());
            tokio::spawn(async move {
                let h = [("content-type", "application/json")];
                let resp = call(r, "POST", "/v1/completions", &k, &h, Body::from(body)).await;
                let _ = tx.send((format!("flood{i}"), resp.status.as_u16(), Value::Null));
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The flood holds 8 sequences: one more is refused with Retry-After.
        let h = [("content-type", "application/json")];
        let one = json!({"model": "base", "prompt": "x", "max_tokens": 2}).to_string();
        let over =
            call(router.clone(), "POST", "/v1/completions", &flood, &h, Body::from(one)).await;
        let retry = over.headers.get("retry-after").map(|v| v.to_str().unwrap().to_string());
        let _ = tx.send(("over".into(), over.status.as_u16(), json!(retry)));
        let short = chat("base", "hola", json!({"max_tokens": 1})).to_string();
        let r = call(router.clone(), "POST", "/v1/chat/completions", &quiet, &h, Body::from(short))
            .await;
        let _ = tx.send(("quiet".into(), r.status.as_u16(), Value::Null));
        drop(tx);
        let mut order = Vec::new();
        while let Some(x) = rx.recv().await {
            order.push(x);
        }
        order
    });
    let names: Vec<&str> = order.iter().map(|o| o.0.as_str()).collect();
    let over = order.iter().find(|o| o.0 == "over").unwrap();
    assert_eq!(over.1, 429, "{order:?}");
    assert!(over.2.as_str().is_some_and(|s| s.parse::<u64>().is_ok()), "Retry-After: {order:?}");
    let quiet_at = names.iter().position(|n| *n == "quiet").unwrap();
    let first_flood = names.iter().position(|n| n.starts_with("flood")).unwrap();
    assert!(quiet_at < first_flood, "the quiet tenant waited for the flood: {names:?}");
    assert!(order.iter().all(|o| o.1 == 200 || o.0 == "over"), "{order:?}");
    assert!(metric(&b, "forja_batch_preemptions_total") >= 1.0);
    assert!(metric(&b, "forja_requests_rejected_total{reason=\"tenant_in_flight\"}") >= 1.0);
}

/// Regression (hardening #4): work whose client disconnected still ran. A
/// streaming client that goes away stops its generation.
#[test]
fn a_client_that_leaves_stops_its_generation() {
    let b = Bed::with_spec(&slow_spec(), |_| {});
    let k = b.tenant("acme", TenantSettings::default());
    let router = b.node.router();
    b.node.block_on(async move {
        let body =
            chat("base", "hi", json!({"max_tokens": 2000, "ignore_eos": true, "stream": true}));
        let req = axum::http::Request::post("/v1/chat/completions")
            .header("authorization", format!("Bearer {k}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = router.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        drop(body);
    });
    b.wait(Duration::from_secs(30), "the generation to stop", || {
        metric(&b, "forja_batch_dropped_total") >= 1.0 && metric(&b, "forja_batch_sequences") == 0.0
    });
}

/// Regression (hardening #3): grammar compilation ran on the async
/// runtime, so four slow compiles stalled `/health` for seconds. They run
/// on their own threads: `/health` answers while all four still compile.
#[test]
fn slow_grammar_compiles_do_not_stall_the_runtime() {
    let b = Bed::new(|c| c.grammar.max_bytes = 4 << 20);
    let k = b.tenant("acme", TenantSettings::default());
    let router = b.node.router();
    let order = b.node.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..4 {
            // Distinct schemas (no cache hit), each ~0.3 s to compile here.
            let props: serde_json::Map<String, Value> = (0..2000)
                .map(|j| (format!("p{i}_{j}"), json!({"type": "string", "pattern": format!("[a-z]{{{}}}", j % 20 + 1)})))
                .collect();
            let rf = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": props}}});
            let body = chat("base", "hi", json!({"response_format": rf, "max_tokens": 2})).to_string();
            let (r, tx, k) = (router.clone(), tx.clone(), k.clone());
            tokio::spawn(async move {
                let h = [("content-type", "application/json")];
                call(r, "POST", "/v1/chat/completions", &k, &h, Body::from(body)).await;
                let _ = tx.send(format!("grammar{i}"));
            });
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        let h = call(router.clone(), "GET", "/health", "", &[], Body::empty()).await;
        assert_eq!(h.status, 200);
        let _ = tx.send("health".to_string());
        drop(tx);
        let mut order = Vec::new();
        while let Some(x) = rx.recv().await {
            order.push(x);
        }
        order
    });
    assert_eq!(order[0], "health", "/health waited for grammar compiles: {order:?}");
    assert_eq!(order.len(), 5);
}

/// A random adapter of the tiny model, its weights NaN when `nan`.
fn adapter_dir(model: &std::path::Path, dir: &std::path::Path, nan: bool) {
    let e =
        Engine::load(model, &LoadOptions { threads: Some(1), ..Default::default() }, &mut |_| {})
            .unwrap();
    let a = Adapter::new(
        e.model(),
        &LoraConfig { r: 4, alpha: 8.0, ..Default::default() },
        "tiny.gguf",
        3,
    )
    .unwrap();
    for (_, v) in a.vars() {
        let vals = vec![if nan { f32::NAN } else { 0.01 }; v.elem_count()];
        v.set(&Tensor::from_vec(vals, v.shape(), v.device()).unwrap()).unwrap();
    }
    a.save(dir).unwrap();
}

/// Registers `dir` as a candidate version of `tenant`.
fn register(b: &Bed, tenant: &str, dir: &std::path::Path) -> String {
    let c = &b.node.control;
    let mut files = BTreeMap::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        let sha = b.node.block_on(c.artifacts.put(std::fs::read(&p).unwrap().into())).unwrap();
        files.insert(p.file_name().unwrap().to_string_lossy().into_owned(), sha);
    }
    let t = c.store.tenant_by_name(tenant).unwrap();
    let new = NewVersion::candidate(&t.id, "tiny.gguf", files);
    c.store.register_version(&new, "test").unwrap().0.id
}

/// Regression (hardening #6): a NaN row of logits with `min_p > 0` made
/// the sampler panic on the batcher thread, and every later request failed
/// until a restart. The request fails (an opaque 500); the next is served.
/// Promoted, the NaN adapter fails its smoke check: it is marked `failed`,
/// the first champion is demoted, and the base model keeps serving.
#[test]
fn a_nan_adapter_fails_its_requests_and_its_promotion_not_the_node() {
    let b = Bed::new(|_| {});
    let k = b.tenant("acme", TenantSettings::default());
    let dir = b.tmp.path().join("nan");
    adapter_dir(&b.model, &dir, true);
    let v = register(&b, "acme", &dir);
    for min_p in [0.0, 0.2] {
        let r = b.post(
            "/v1/chat/completions",
            &k,
            chat(&v, "hi", json!({"min_p": min_p, "temperature": 0.8})),
        );
        assert_eq!((r.status.as_u16(), r.code()), (500, "internal_error"), "{}", r.body);
        assert!(!r.message().contains("NaN"), "internal text leaked: {}", r.body);
    }
    let r = b.post("/v1/chat/completions", &k, chat("base", "hi", json!({})));
    assert_eq!(r.status, 200, "the batcher died: {}", r.body);
    // A forced promotion (admin): the swap's smoke check refuses it.
    let h = [("x-forja-tenant", "acme"), ("content-type", "application/json")];
    let r = b.call(
        "POST",
        &format!("/v1/registry/models/{v}/promote"),
        &b.admin,
        &h,
        Body::from("{\"force\": true}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = b.post("/v1/chat/completions", &k, chat("tiny@champion", "hi", json!({})));
    assert_eq!(
        (r.status.as_u16(), r.body["model"].as_str()),
        (200, Some("tiny.gguf")),
        "{}",
        r.body
    );
    b.wait(Duration::from_secs(30), "the version to be marked failed", || {
        b.get(&format!("/v1/registry/models/{v}"), &k).body["status"] == "failed"
    });
    let log = b.get("/v1/registry/log", &k).body;
    let kinds: Vec<&str> =
        log["data"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"demoted") && kinds.contains(&"failed"), "{kinds:?}");
    assert_eq!(b.get("/v1/registry/models/champion", &k).status, 404, "the junk champion stayed");
    assert_eq!(metric(&b, "forja_serving_degraded"), 1.0);
}

/// `logprobs`, `top_logprobs` and `echo` as OpenAI defines them: the
/// completions form (with the prompt's tokens first, the first one null)
/// and the chat form; a greedy token is the best of its alternatives.
#[test]
fn logprobs_and_echo_follow_openai() {
    let b = Bed::new(|_| {});
    let k = b.tenant("acme", TenantSettings::default());
    let prompt: Vec<u32> = vec![5, 17, 42, 99, 7, 63];
    let r = b.post(
        "/v1/completions",
        &k,
        json!({"model": "base", "prompt": [prompt.clone(), [9, 10, 11]], "max_tokens": 3, "temperature": 0,
               "logprobs": 2, "echo": true, "ignore_eos": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c0 = &r.body["choices"][0];
    let lp = &c0["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), prompt.len() + 3, "{lp}");
    assert!(lp["token_logprobs"][0].is_null() && lp["top_logprobs"][0].is_null());
    let offsets: Vec<u64> =
        lp["text_offset"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]) && offsets[0] == 0, "{offsets:?}");
    let text = c0["text"].as_str().unwrap();
    let joined: String = tokens.iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(text, joined, "echo: the text is the prompt and the answer");
    for i in prompt.len()..tokens.len() {
        let own = lp["token_logprobs"][i].as_f64().unwrap();
        let best = lp["top_logprobs"][i]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!((own - best).abs() < 1e-6 && own <= 0.0, "greedy token {i}: {own} vs {best}");
    }
    assert_eq!(r.body["choices"].as_array().unwrap().len(), 2);
    // Scoring only: max_tokens 0 with echo generates nothing.
    let r = b.post(
        "/v1/completions",
        &k,
        json!({"model": "base", "prompt": prompt, "max_tokens": 0, "echo": true, "logprobs": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["usage"]["completion_tokens"], 0);
    assert_eq!(r.body["choices"][0]["logprobs"]["tokens"].as_array().unwrap().len(), prompt.len());
    // Chat: `logprobs: true` with `top_logprobs`.
    let r = b.post(
        "/v1/chat/completions",
        &k,
        chat(
            "base",
            "hi",
            json!({"logprobs": true, "top_logprobs": 3, "max_tokens": 4, "ignore_eos": true}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let content = r.body["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 4);
    assert_eq!(content[0]["top_logprobs"].as_array().unwrap().len(), 3);
    assert!(content[0]["bytes"].is_array());
    // Refusals name the field.
    for (path, body, param) in [
        ("/v1/chat/completions", chat("base", "hi", json!({"top_logprobs": 2})), "top_logprobs"),
        (
            "/v1/chat/completions",
            chat("base", "hi", json!({"logprobs": true, "top_logprobs": 21})),
            "top_logprobs",
        ),
        ("/v1/completions", json!({"model": "base", "prompt": "x", "logprobs": 30}), "logprobs"),
        ("/v1/completions", json!({"model": "base", "prompt": "x", "max_tokens": 0}), "max_tokens"),
        ("/v1/completions", json!({"model": "base", "prompt": [[1, -2]]}), "prompt"),
    ] {
        let r = b.post(path, &k, body.clone());
        assert_eq!((r.status.as_u16(), r.param()), (400, param), "{body} -> {}", r.body);
    }
}
