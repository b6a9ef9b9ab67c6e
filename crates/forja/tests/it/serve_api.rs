//! OpenAI-compatible serving against a real `forja serve` on loopback with
//! a tiny model: chat and completions (JSON and SSE, equal under greedy
//! decoding), grammars, clear 4xx errors, feedback by completion id,
//! `/metrics`; per-tenant adapters resolved from the registry, a promotion
//! under concurrent load with zero failed requests, a broken adapter that
//! leaves the old one serving and is recorded as failed, and tenant
//! isolation.

use crate::common;

use candle_core::Tensor;
use common::server::*;
use common::tiny_gguf;
use forja_engine::lora::{Adapter, LoraConfig};
use forja_engine::{Engine, LoadOptions};
use forja_store::{ArtifactConfig, Artifacts, NewVersion, Registry, SqliteStore};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn chat(model: &str, content: &str, extra: Value) -> Value {
    let mut b = json!({"model": model, "messages": [{"role": "user", "content": content}],
        "max_tokens": 12, "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// `data:` payloads of an SSE body.
fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[test]
fn openai_endpoints_grammars_errors_feedback_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let kb = key(&data, &["--tenant", "beta"]);
    let s = serve(&data, &model, &["--embedding-model", "none", "--max-tokens-cap", "256"], &[]);

    // Chat, JSON and streamed: the same greedy answer.
    let (st, a, _) = post(&s, "/v1/chat/completions", &k, chat("base", "hello world", json!({})));
    assert_eq!(st, 200, "{a}");
    assert!(a["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(a["object"], "chat.completion");
    assert_eq!(a["model"], "tiny.gguf");
    let text = a["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(a["usage"]["prompt_tokens"].as_u64().unwrap() > 2);
    assert!(a["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    let events = sse(
        &s,
        "/v1/chat/completions",
        &k,
        chat(
            "base",
            "hello world",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    );
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, text, "streamed and whole answers differ");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["usage"], a["usage"], "{usage}");
    assert!(chunks
        .iter()
        .any(|c| c["choices"].get(0).is_some_and(|c| c["finish_reason"].is_string())));

    // Completions: two prompts × n=2, seeded sampling.
    let (st, c, _) = post(
        &s,
        "/v1/completions",
        &k,
        json!({"model": "tiny", "prompt": ["the quick brown", "hello"], "n": 2, "max_tokens": 5,
               "temperature": 0.9, "seed": 7}),
    );
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["object"], "text_completion");
    assert_eq!(c["choices"].as_array().unwrap().len(), 4);

    // Grammars: random weights, yet the output always parses.
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 4}, "votes": {"type": "integer", "minimum": 0, "maximum": 50},
        "ok": {"enum": ["yes", "no"]}}, "required": ["name", "votes", "ok"],
        "additionalProperties": false});
    let rf = json!({"type": "json_schema", "json_schema": {"name": "acta", "schema": schema}});
    // Random weights may run out of tokens mid-object (finish_reason
    // "length"), as with any model; every choice that stops must parse.
    let (st, j, _) = post(
        &s,
        "/v1/chat/completions",
        &k,
        chat(
            "base",
            "json please",
            json!({"response_format": rf, "max_tokens": 200, "n": 4,
            "temperature": 1.0, "seed": 3}),
        ),
    );
    assert_eq!(st, 200, "{j}");
    let mut parsed = 0;
    for c in j["choices"].as_array().unwrap() {
        let text = c["message"]["content"].as_str().unwrap();
        if c["finish_reason"] != "stop" {
            continue;
        }
        let out: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
        assert!(
            out["votes"].is_i64() && ["yes", "no"].contains(&out["ok"].as_str().unwrap()),
            "{out}"
        );
        parsed += 1;
    }
    assert!(parsed >= 1, "no choice finished: {j}");
    let rf = json!({"type": "regex", "regex": "[0-9]{3}-[a-z]{2}"});
    let (st, r, _) = post(
        &s,
        "/v1/completions",
        &k,
        json!({"model": "base", "prompt": "id:",
        "response_format": rf, "max_tokens": 16}),
    );
    assert_eq!(st, 200, "{r}");
    let id = r["choices"][0]["text"].as_str().unwrap();
    assert!(id.len() == 6 && id.as_bytes()[3] == b'-', "{id:?}");

    // Bad requests: one clear error each.
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (chat("nope", "x", json!({})), 404, "model_not_found", "model"),
        (chat("base", "x", json!({"max_tokens": 257})), 400, "invalid_request", "max_tokens"),
        (chat("base", "x", json!({"temperature": 3})), 400, "invalid_request", "temperature"),
        (chat("base", "x", json!({"n": 9})), 400, "invalid_request", "n"),
        (chat("base", &"tok ".repeat(3000), json!({})), 400, "context_length_exceeded", "messages"),
        (json!({"model": "base", "messages": []}), 400, "invalid_request", "messages"),
        (
            json!({"model": "base", "messages": [{"role": "wizard", "content": "x"}]}),
            400,
            "invalid_request",
            "messages[0].role",
        ),
        (
            chat("base", "x", json!({"response_format": {"type": "regex", "regex": "(("}})),
            400,
            "invalid_grammar",
            "response_format",
        ),
        (
            chat("base", "x", json!({"response_format": {"type": "json_schema"}})),
            400,
            "invalid_request",
            "response_format",
        ),
        (
            chat("base", "x", json!({"logprobs": true, "top_logprobs": 50})),
            400,
            "invalid_request",
            "top_logprobs",
        ),
    ];
    for (body, want, code, param) in cases {
        let (st, e, _) = post(&s, "/v1/chat/completions", &k, body.clone());
        assert_eq!(
            (st, error_code(&e), e["error"]["param"].as_str().unwrap_or("")),
            (want, code, param),
            "{body} -> {e}"
        );
        assert!(!e["error"]["message"].as_str().unwrap().contains('\n'));
    }
    let (st, _, _) = call(
        &s,
        "POST",
        "/v1/chat/completions",
        &k,
        Some(b"{not json".to_vec()),
        "application/json",
    );
    assert_eq!(st, 400);
    let (st, _, _) = post(&s, "/v1/chat/completions", "wrong", chat("base", "x", json!({})));
    assert_eq!(st, 401);
    let (st, e, _) = post(&s, "/v1/embeddings", &k, json!({"model": "minilm", "input": "x"}));
    assert_eq!(st, 400, "{e}");

    // Feedback by completion id: the served prompt and output become an example.
    let cid = a["id"].as_str().unwrap();
    let (st, f, _) =
        post(&s, "/v1/feedback", &k, json!({"completion_id": cid, "correction": "hello forja"}));
    assert_eq!(st, 200, "{f}");
    assert_eq!(f["data"][0]["status"], "curated", "{f}");
    let (st, f, _) = post(&s, "/v1/feedback", &kb, json!({"completion_id": cid, "rating": 5}));
    assert_eq!((st, f["error"]["param"].as_str()), (400, Some("completion_id")), "{f}");

    // Metrics: per route and status (no tenant names by default), and
    // promtool agrees when present.
    let (st, m) = get(&s, "/metrics", "");
    assert_eq!(st, 200);
    let m = m.as_str().unwrap().to_string();
    for want in [
        "forja_requests_total{route=\"/v1/chat/completions\",status=\"200\"}",
        "forja_requests_total{route=\"/v1/chat/completions\",status=\"404\"}",
        "forja_time_to_first_token_seconds_bucket",
        "forja_constrained_requests_total{kind=\"json_schema\"} 1",
        "forja_constrained_requests_total{kind=\"regex\"} 1",
        "forja_prompt_tokens_total ",
        // The node's own series, from the store.
        "forja_examples{state=\"curated\"} 1",
        "forja_jobs{state=\"queued\"} 0",
        "forja_job_queue_oldest_seconds 0",
        "forja_gate_rejected_streak 0",
        "forja_store_operations_total ",
        "forja_data_dir_available_bytes ",
        "forja_build_info{version=",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
    common::promtool_check(&m);
}

/// A random non-zero adapter for `model`, saved under `dir`.
fn make_adapter(model: &Path, dir: &Path, seed: u64) {
    let e =
        Engine::load(model, &LoadOptions { threads: Some(1), ..Default::default() }, &mut |_| {})
            .unwrap();
    let a = Adapter::new(
        e.model(),
        &LoraConfig { r: 4, alpha: 32.0, ..Default::default() },
        "tiny.gguf",
        seed,
    )
    .unwrap();
    for (i, (_, v)) in a.vars().iter().enumerate() {
        let vals: Vec<f32> = (0..v.elem_count())
            .map(|j| {
                (((j as u64 + 3) * 2654435761 + seed * 131 + i as u64) % 1009) as f32 / 1009.0 - 0.5
            })
            .collect();
        v.set(&Tensor::from_vec(vals, v.shape(), v.device()).unwrap()).unwrap();
    }
    a.save(dir).unwrap();
}

/// Uploads `dir`'s files as artifacts and registers a candidate version.
fn register(data: &Path, tenant: &str, dir: &Path) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let art = Artifacts::open(&ArtifactConfig::Local { dir: data.join("artifacts") }).unwrap();
    let mut files = BTreeMap::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let sha = rt.block_on(art.put(bytes.into())).unwrap();
        files.insert(p.file_name().unwrap().to_string_lossy().into_owned(), sha);
    }
    let store = SqliteStore::open(&data.join("forja.db"), Duration::from_secs(5)).unwrap();
    let t = forja_store::Tenants::tenant_by_name(&store, tenant).unwrap();
    let new = NewVersion::candidate(&t.id, "tiny.gguf", files);
    store.register_version(&new, "test").unwrap().0.id
}

fn promote(s: &Server, key: &str, id: &str) {
    let (st, v, _) =
        post(s, &format!("/v1/registry/models/{id}/promote"), key, json!({"force": true}));
    assert_eq!(st, 200, "{v}");
}

/// Serves `tiny@champion` until the answer comes from `want`.
fn wait_served(s: &Server, key: &str, want: &str) {
    wait_for(
        Duration::from_secs(30),
        || {
            post(
                s,
                "/v1/chat/completions",
                key,
                chat("tiny@champion", "hi", json!({"max_tokens": 2})),
            )
            .1["model"]
                == want
        },
        &format!("{want} to be served"),
    );
}

#[test]
fn adapters_hot_swap_under_load_fall_back_when_broken_and_stay_isolated() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    tenant(&data, "acme", &["--allow-forced-promotion", "true"]);
    let k = key(&data, &["--tenant", "acme"]);
    let kb = key(&data, &["--tenant", "beta"]);
    let s = serve(&data, &model, &["--embedding-model", "none", "--workers", "0"], &[]);
    let (d1, d2) = (tmp.path().join("a1"), tmp.path().join("a2"));
    make_adapter(&model, &d1, 1);
    make_adapter(&model, &d2, 2);
    let v1 = register(&data, "acme", &d1);
    let v2 = register(&data, "acme", &d2);

    // No champion yet: the alias serves the base model.
    let (st, r, _) = post(&s, "/v1/chat/completions", &k, chat("tiny@champion", "hi", json!({})));
    assert_eq!((st, r["model"].as_str()), (200, Some("tiny.gguf")), "{r}");
    let base_answer = r["choices"][0]["message"]["content"].clone();
    promote(&s, &k, &v1);
    wait_served(&s, &k, &v1);
    let (_, r1, _) = post(&s, "/v1/chat/completions", &k, chat("tiny@champion", "hi", json!({})));
    assert_ne!(r1["choices"][0]["message"]["content"], base_answer, "the adapter changes nothing");
    // By id and with the tenant prefix too; another tenant never gets it.
    let (st, _, _) = post(&s, "/v1/chat/completions", &k, chat(&v1, "hi", json!({})));
    assert_eq!(st, 200);
    let (st, _, _) =
        post(&s, "/v1/chat/completions", &k, chat("acme/tiny@champion", "hi", json!({})));
    assert_eq!(st, 200);
    for m in [v1.as_str(), "acme/tiny@champion"] {
        let (st, e, _) = post(&s, "/v1/chat/completions", &kb, chat(m, "hi", json!({})));
        assert_eq!((st, error_code(&e)), (404, "model_not_found"), "{m}: {e}");
    }
    let (_, ms) = get(&s, "/v1/models", &kb);
    assert!(!ms.to_string().contains(&v1), "beta sees acme's version: {ms}");
    let (_, ms) = get(&s, "/v1/models", &k);
    let ids: Vec<&str> =
        ms["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&"base") && ids.contains(&v1.as_str()) && ids.contains(&"tiny.gguf@champion"),
        "{ids:?}"
    );

    // Promote v2 while 4 clients keep asking: no request fails, and the
    // answers move from v1 to v2.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let url = s.url.clone();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, k, url) =
                (stop.clone(), ok.clone(), failed.clone(), k.clone(), url.clone());
            std::thread::spawn(move || {
                let a = agent();
                let mut seen = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let r = a
                        .post(format!("{url}/v1/chat/completions"))
                        .header("authorization", format!("Bearer {k}"))
                        .header("content-type", "application/json")
                        .send(chat("tiny@champion", "hello", json!({"max_tokens": 6})).to_string());
                    match r {
                        Ok(mut r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                            let v: Value =
                                serde_json::from_str(&r.body_mut().read_to_string().unwrap())
                                    .unwrap();
                            let m = v["model"].as_str().unwrap().to_string();
                            if seen.last() != Some(&m) {
                                seen.push(m);
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    promote(&s, &k, &v2);
    wait_served(&s, &k, &v2);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let seen = c.join().unwrap();
        assert_eq!(seen.last(), Some(&v2), "{seen:?}");
        assert!(seen.iter().all(|m| *m == v1 || *m == v2), "{seen:?}");
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "requests failed during the swap");
    assert!(ok.load(Ordering::SeqCst) > 8);

    // A broken adapter: its weights file is garbage (its hash is right).
    let bad = tmp.path().join("bad");
    make_adapter(&model, &bad, 3);
    std::fs::write(bad.join("adapter_model.safetensors"), b"not safetensors").unwrap();
    let v3 = register(&data, "acme", &bad);
    promote(&s, &k, &v3);
    wait_for(
        Duration::from_secs(30),
        || get(&s, &format!("/v1/registry/models/{v3}"), &k).1["status"] == "failed",
        "the broken version to be marked failed",
    );
    let (_, v) = get(&s, &format!("/v1/registry/models/{v3}"), &k);
    assert!(v["status_reason"].as_str().unwrap().contains("failed to load in serving"), "{v}");
    let (_, champ) = get(&s, "/v1/registry/models/champion", &k);
    assert_eq!(champ["id"], v2.as_str(), "the champion was not rolled back");
    let (st, r, _) = post(&s, "/v1/chat/completions", &k, chat("tiny@champion", "hi", json!({})));
    assert_eq!((st, r["model"].as_str()), (200, Some(v2.as_str())));
    let (_, m) = get(&s, "/metrics", "");
    let m = m.as_str().unwrap();
    assert!(m.contains("forja_hot_swaps_total{result=\"failed\"} 1"), "{m}");
    assert!(m.contains("forja_serving_degraded 1"), "{m}");
    assert!(m.contains("forja_hot_swaps_total{result=\"ok\"}"), "{m}");
}

/// The official `openai` client (installed by `make setup-test`) against
/// SmolLM2-135M-Instruct and all-MiniLM-L6-v2: chat, stream, completions,
/// json_schema, embeddings, errors (scripts/openai-serve-check.py).
#[test]
fn the_official_openai_client_chats_streams_and_embeds() {
    let Some(py) = common::python_path_with("openai") else { return };
    for m in ["default", "minilm"] {
        if forja_engine::fixtures::installed_model(m).is_none() {
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let s = serve(&data, Path::new("default"), &["--workers", "0", "--max-tokens-cap", "256"], &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openai-serve-check.py");
    let o = std::process::Command::new("python3")
        .arg(script)
        .args([&s.url, &k, "default@champion", "all-minilm-l6-v2"])
        .env("PYTHONPATH", py)
        .output()
        .unwrap();
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}");
    eprintln!("{out}");

    // Clients written for the Hugging Face names get the same models.
    let embed = |m: &str| {
        let (st, v, _) = post(&s, "/v1/embeddings", &k, json!({"model": m, "input": "hola"}));
        assert_eq!(st, 200, "{m}: {v}");
        v["data"][0]["embedding"].clone()
    };
    let want = embed("all-minilm-l6-v2");
    for m in ["sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"] {
        assert_eq!(embed(m), want, "{m}");
    }
    let greedy = |m: &str| {
        let body = chat(m, "hello", json!({"max_tokens": 4, "temperature": 0}));
        let (st, v, _) = post(&s, "/v1/chat/completions", &k, body);
        assert_eq!(st, 200, "{m}: {v}");
        v["choices"][0]["message"]["content"].clone()
    };
    assert_eq!(greedy("HuggingFaceTB/SmolLM2-135M-Instruct"), greedy("base"));
    let (st, v, _) =
        post(&s, "/v1/embeddings", &k, json!({"model": "all-MiniLM-L12-v2", "input": "x"}));
    assert_eq!(st, 404, "{v}");
}

/// `--draft-model`: a request decoding alone speculates, and greedy answers
/// are the ones the server gives without a draft.
#[test]
fn a_draft_model_speeds_decoding_without_changing_greedy_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let (d1, d2) = (tmp.path().join("d1"), tmp.path().join("d2"));
    let (k1, k2) = (key(&d1, &["--tenant", "acme"]), key(&d2, &["--tenant", "acme"]));
    let plain = serve(&d1, &model, &["--embedding-model", "none", "--workers", "0"], &[]);
    let draft = model.to_str().unwrap();
    let spec = serve(
        &d2,
        &model,
        &["--embedding-model", "none", "--workers", "0", "--draft-model", draft],
        &[],
    );
    for prompt in ["hello world", "the council approved the budget"] {
        let body = chat("base", prompt, json!({"max_tokens": 24, "ignore_eos": true}));
        let (_, a, _) = post(&plain, "/v1/chat/completions", &k1, body.clone());
        let (_, b, _) = post(&spec, "/v1/chat/completions", &k2, body);
        assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"], "{prompt}");
        assert_eq!(b["usage"]["completion_tokens"], 24);
    }
    let (_, m) = get(&spec, "/metrics", "");
    let m = m.as_str().unwrap();
    let drafted: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("forja_speculative_draft_tokens_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(drafted > 0.0, "{m}");
}

/// lm-eval's `local-completions` against forja and its `hf` backend on the
/// same f32 weights (scripts/lmeval-check.py): per-choice log-likelihoods
/// within 1e-3 nats, equal accuracy. Needs torch and lm-eval (the peers'
/// venv: `../shared/peers/setup.sh torch` then `pip install
/// "lm-eval[api]==0.4.13"`), named by FORJA_LMEVAL_PYTHON; skipped without.
#[test]
fn lm_eval_agrees_with_its_hf_backend() {
    let Ok(python) = std::env::var("FORJA_LMEVAL_PYTHON") else {
        eprintln!("skipped: set FORJA_LMEVAL_PYTHON to a python with lm-eval[api] and torch");
        return;
    };
    if forja_engine::fixtures::installed_model("default").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("smollm2-f32");
    let o = common::forja(&["models", "export", "default", "--out", hf.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "lm"]);
    let s = serve(&data, &hf, &["--workers", "0", "--embedding-model", "none"], &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lmeval-check.py");
    let o = std::process::Command::new(python)
        .arg(script)
        .args([&s.url, &k, "smollm2-f32", hf.to_str().unwrap()])
        .output()
        .unwrap();
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}");
    eprintln!(
        "{}",
        out.lines()
            .filter(|l| l.contains("forja_") || l.contains("lmeval-check"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A chat answered by `tiny@champion`: (completion id, the version that answered).
fn ask_champion(s: &Server, key: &str, i: usize) -> (String, String) {
    let (st, r, _) = post(
        s,
        "/v1/chat/completions",
        key,
        chat("tiny@champion", &format!("question {i}"), json!({"max_tokens": 2})),
    );
    assert_eq!(st, 200, "{r}");
    (r["id"].as_str().unwrap().to_string(), r["model"].as_str().unwrap().to_string())
}

#[test]
fn thumbs_down_on_a_new_champion_rolls_it_back_automatically() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    tenant(&data, "acme", &["--allow-forced-promotion", "true"]);
    set_tenant(&data, "acme", &["--auto-rollback", "on", "--auto-rollback-min-served", "6"]);
    let k = key(&data, &["--tenant", "acme"]);
    let s = serve(&data, &model, &["--embedding-model", "none", "--workers", "0"], &[]);
    let (d1, d2) = (tmp.path().join("a1"), tmp.path().join("a2"));
    make_adapter(&model, &d1, 1);
    make_adapter(&model, &d2, 2);
    let (v1, v2) = (register(&data, "acme", &d1), register(&data, "acme", &d2));

    // v1 serves; its answers are fine (rated 5, or not rated).
    promote(&s, &k, &v1);
    wait_served(&s, &k, &v1);
    for i in 0..8 {
        let (id, by) = ask_champion(&s, &k, i);
        assert_eq!(by, v1);
        if i % 2 == 0 {
            let (st, f, _) =
                post(&s, "/v1/feedback", &k, json!({"completion_id": id, "rating": 5}));
            assert_eq!(st, 200, "{f}");
        }
    }
    // v2 takes over (the store's clock is in seconds: let v1's answers be
    // strictly before the promotion) and every one of its answers is
    // rated 1.
    std::thread::sleep(Duration::from_millis(1100));
    promote(&s, &k, &v2);
    wait_served(&s, &k, &v2);
    let mut bad = 0;
    for i in 0..8 {
        let (id, by) = ask_champion(&s, &k, 100 + i);
        if by == v2 {
            let (st, f, _) =
                post(&s, "/v1/feedback", &k, json!({"completion_id": id, "rating": 1}));
            assert_eq!(st, 200, "{f}");
            bad += 1;
        }
    }
    assert!(bad >= 6, "{bad} answers of v2 rated");
    // The node rolls v2 back by itself (watched in the registry, not by
    // asking: more answers would dilute v2's record), and says why.
    wait_for(
        Duration::from_secs(60),
        || {
            let (_, a) = get(&s, "/v1/registry/aliases", &k);
            a["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == "champion" && x["version_id"] == v1.as_str())
        },
        "the automatic rollback to v1",
    );
    wait_served(&s, &k, &v1);
    let (_, log) = get(&s, "/v1/registry/log", &k);
    let entry = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "rolled_back")
        .unwrap_or_else(|| panic!("no rollback in {log}"))
        .clone();
    assert_eq!(entry["actor"], "auto-rollback", "{entry}");
    let why = entry["reason"].as_str().unwrap();
    assert!(why.contains(&format!("answers of {v2}")) && why.contains("z = "), "{why}");
    let (_, m) = get(&s, "/metrics", "");
    assert!(m.as_str().unwrap().contains("forja_auto_rollbacks_total 1"), "{m}");
    // Off again: the setting takes it away.
    set_tenant(&data, "acme", &["--auto-rollback", "off"]);
}
