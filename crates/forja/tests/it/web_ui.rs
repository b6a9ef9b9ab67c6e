//! The web UI in a real browser: `scripts/web-e2e.py` drives Debian's
//! chromium with Playwright against a real `forja serve` on loopback with a
//! tiny model, through the whole loop (sign in, streamed chat, correction,
//! pending count, train, live progress to 100 %, promotion, the new version
//! answering, a corrected DOCX and its delta, rollback), checks the UI's security properties, and saves a
//! screenshot of each view under `target/web-e2e/`. The API key must never
//! appear in the server's log.

use crate::common;

use candle_core::quantized::GgmlDType;
use common::server::*;
use forja_engine::fixtures::{self, Spec};
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The Python path with Playwright and Debian's chromium; `None` (the
/// test is skipped, or fails when test data is required) without them or
/// without the UI built in.
fn browser() -> Option<(String, String)> {
    if !forja_server::web::embedded() {
        fixtures::skip_unless_required("the web UI is not built into this binary (make web)");
        return None;
    }
    let py = common::python_path_with("playwright")?;
    let chromium = std::env::var("FORJA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        fixtures::skip_unless_required(&format!("{chromium} is missing (apt install chromium)"));
        return None;
    }
    Some((py, chromium))
}

/// A golden set of six `fox N` → `quick dog` examples and `n` corrections
/// of the same kind for the tenant of `key`.
fn seed(s: &Server, key: &str, n: usize) {
    let golden: String = (0..6)
        .map(|i| {
            json!({"messages": [{"role": "user", "content": format!("fox {}", 100 + i)},
                {"role": "assistant", "content": "quick dog"}]})
            .to_string()
                + "\n"
        })
        .collect();
    let (st, g, _) = call(
        s,
        "POST",
        "/v1/registry/golden?name=g.jsonl",
        key,
        Some(golden.into_bytes()),
        "application/jsonl",
    );
    assert_eq!(st, 200, "{g}");
    let examples: Vec<_> = (0..n)
        .map(|i| json!({"messages": [{"role": "user", "content": format!("fox {}", 20 + i)}], "correction": "quick dog"}))
        .collect();
    let (st, r, _) = post(s, "/v1/feedback", key, json!({ "examples": examples }));
    assert_eq!(st, 200, "{r}");
}

#[test]
fn a_person_drives_the_whole_loop_from_the_browser() {
    let Some((py, chromium)) = browser() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // The chat asks for up to 512 tokens: a context with room for them.
    let spec = Spec { context: 1024, ..Spec::llama() };
    let model = tmp.path().join("tiny.gguf");
    fixtures::write_gguf(&model, &spec, &fixtures::weights(&spec, 1), GgmlDType::Q8_0);
    let data = tmp.path().join("data");
    let other = key(&data, &["--tenant", "globex"]);
    let admin = key(&data, &["--admin"]);
    let key = key(&data, &["--tenant", "acme"]);
    let spec = r#"{"hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 25, "lora_r": 4}}"#;
    let d = data.to_str().unwrap();
    set_tenant(&data, "acme", &["--job-spec", spec, "--allow-forced-promotion", "true"]);

    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let mut args = vec!["serve", "--port", "0", "--data-dir", d, "--model"];
    let m = model.to_str().unwrap().to_string();
    args.extend([m.as_str(), "--tick-ms", "200", "-t", "1", "--workers", "1"]);
    args.extend(["--embedding-model", "none"]);
    let s = spawn(&args, &[], move |l| sink.lock().unwrap().push_str(l));
    wait_for(std::time::Duration::from_secs(60), || get_status(&s, "/ready", "") == 200, "ready");

    // Data the training needs: a golden set and some corrections already in.
    seed(&s, &key, 11);
    // Another tenant's history, which acme's UI must never list.
    let (st, r, _) = post(
        &s,
        "/v1/conversations",
        &other,
        json!({"title": "globex secret plans", "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(st, 200, "{r}");

    // A draft the node writes, corrected the way a secretary would: the
    // first paragraph rewritten, the second moved to the end. And one
    // dictionary entry added by hand.
    let (st, draft, _) = post(
        &s,
        "/v1/documents",
        &key,
        json!({"transcript": "punto primero el presupuesto\nse aprueba por unanimidad\nse levanta la sesion",
            "session": "pleno-e2e", "max_tokens": 8}),
    );
    assert_eq!(st, 200, "{draft}");
    let id = draft["id"].as_str().unwrap();
    let (st, bytes) = get_bytes(&s, &format!("/v1/documents/{id}/content"), &key);
    assert_eq!(st, 200);
    let doc = forja_docs::docx::read_docx(&bytes, &Default::default()).unwrap();
    let mut blocks = doc.blocks.clone();
    blocks[0].text = "Punto 1. Presupuesto municipal de 2027.".into();
    let second = blocks.remove(1);
    blocks.push(second);
    let meta = forja_docs::docx::DraftMeta { title: None, document_id: doc.document_id.as_deref() };
    let corrected = tmp.path().join("acta-final.docx");
    std::fs::write(&corrected, forja_docs::docx::write_docx(&blocks, &meta).unwrap()).unwrap();
    let (st, r, _) =
        post(&s, "/v1/dictionary", &key, json!({"entries": [{"wrong": "Jhon", "right": "John"}]}));
    assert_eq!(st, 200, "{r}");

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/web-e2e");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/web-e2e.py");
    let o = std::process::Command::new("python3")
        .arg(script)
        .args([s.url.as_str(), key.as_str(), "globex secret plans", out.to_str().unwrap()])
        .arg(&corrected)
        .arg(&admin)
        .env("PYTHONPATH", py)
        .env("FORJA_CHROMIUM", &chromium)
        .output()
        .unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{report}");
    assert!(report.contains("web e2e: ok"), "{report}");
    for shot in ["signin", "chat", "learning", "models", "documents", "node", "phone-dark-es"] {
        assert!(out.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
    let log = log.lock().unwrap();
    assert!(!log.contains(&key) && !log.contains(&admin), "an API key is in the server's log");
}

/// An auditor votes in the browser: a tenant whose policy requires one
/// auditor's approval trains a version that waits in `awaiting_audit`; a
/// vote sent from the CLI over HTTP with a key that is not an auditor's is
/// refused; the auditor loads its key file in the page (signed with
/// WebCrypto, never uploaded) and approves; the version becomes the
/// champion and the vote is in the node's ledger.
#[test]
fn an_auditor_approves_a_version_from_the_browser() {
    let Some((py, chromium)) = browser() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec::llama();
    let model = tmp.path().join("tiny.gguf");
    fixtures::write_gguf(&model, &spec, &fixtures::weights(&spec, 1), GgmlDType::Q8_0);
    let data = tmp.path().join("data");
    let admin = key(&data, &["--admin"]);
    let key = key(&data, &["--tenant", "acme"]);
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        // A gate the random tiny model always passes (exact match cannot
        // fall below the base model's 0), so the test is about the audit.
        "primary_metric = \"exact_match\"\nguarded = []\nprobe_max_drop = 1.0\nprobe_max_logprob_drop = 100.0\n[audit]\nrequired = true\nmin_votes = 1\n",
    )
    .unwrap();
    let job = r#"{"hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 25, "lora_r": 4}}"#;
    set_tenant(&data, "acme", &["--job-spec", job, "--gate-policy", policy.to_str().unwrap()]);
    let d = data.to_str().unwrap();
    let m = model.to_str().unwrap();
    let args =
        ["serve", "--port", "0", "--data-dir", d, "--model", m, "--tick-ms", "200", "-t", "1"];
    let s =
        spawn(&[&args[..], &["--workers", "1", "--embedding-model", "none"]].concat(), &[], |_| {});
    wait_for(std::time::Duration::from_secs(60), || get_status(&s, "/ready", "") == 200, "ready");

    seed(&s, &key, 12);
    let (st, j, _) = post(&s, "/v1/learning/train", &key, json!({}));
    assert_eq!(st, 200, "{j}");
    let mut status = serde_json::Value::Null;
    wait_for(
        std::time::Duration::from_secs(300),
        || {
            let (_, l) = get(&s, "/v1/registry/models", &key);
            status = l["data"][0]["status"].clone();
            !status.is_null()
        },
        "the job's version",
    );
    assert_eq!(status, "awaiting_audit", "the gate must pass it to the auditors");

    let auditor = forja_core::identity::NodeKey::generate();
    let key_file = tmp.path().join("ana.key");
    auditor.save(&key_file).unwrap();
    let (st, a, _) = post(
        &s,
        "/v1/admin/auditors",
        &admin,
        json!({"name": "ana", "public_key": auditor.public_hex()}),
    );
    assert_eq!(st, 200, "{a}");

    // Over HTTP from the CLI: a key that is not a registered auditor is refused.
    let (_, l) = get(&s, "/v1/registry/models", &key);
    let vid = l["data"][0]["id"].as_str().unwrap().to_string();
    let stranger = tmp.path().join("eve.key");
    forja_core::identity::NodeKey::generate().save(&stranger).unwrap();
    let o = common::forja(
        &[
            "audit",
            "vote",
            &vid,
            "--key",
            stranger.to_str().unwrap(),
            "--approve",
            "--url",
            &s.url,
            "--api-key",
            &key,
        ],
        None,
    );
    common::check_user_error(&o, "is not a registered auditor");

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/web-e2e");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/web-audit-e2e.py");
    let o = std::process::Command::new("python3")
        .arg(script)
        .args([s.url.as_str(), key.as_str(), key_file.to_str().unwrap(), out.to_str().unwrap()])
        .env("PYTHONPATH", py)
        .env("FORJA_CHROMIUM", &chromium)
        .output()
        .unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && report.contains("web audit e2e: ok"), "{report}");
    let (_, l) = get(&s, "/v1/admin/ledger?limit=100", &admin);
    let kinds: Vec<&str> =
        l["data"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"vote") && kinds.contains(&"promoted"), "{kinds:?}");
}
