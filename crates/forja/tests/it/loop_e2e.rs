//! The closed learning loop end to end, on a real `forja up` over
//! loopback HTTP with a tiny model: corrections posted as feedback cross
//! the tenant's threshold, the triggered job trains with the tenant's job
//! spec, is evaluated on the golden set, passes the gate, is promoted and
//! hot-swapped (the next chat names the new version), and a rollback
//! brings the previous one back. Then `forja up --demo` killed with -9
//! during training: the restarted demo resumes the same job and finishes
//! the loop, with every posted example claimed exactly once.

use crate::common;

use candle_core::quantized::GgmlDType;
use common::server::*;
use common::{forja, stderr, tiny_gguf};
use forja_engine::fixtures::{self, Spec};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Keyword prompts the tiny model learns to answer in seconds; `keys`
/// limits which keywords appear.
fn feedback(range: std::ops::Range<usize>, keys: usize) -> Vec<Value> {
    let pairs = [("fox", "quick dog"), ("budget", "city council"), ("votes", "the minutes")];
    range
        .map(|i| {
            let (w, a) = pairs[i % keys];
            json!({"messages": [{"role": "user", "content": format!("{w} {i}")}], "correction": a})
        })
        .collect()
}

fn golden() -> String {
    feedback(100..109, 3)
        .into_iter()
        .map(|f| {
            let mut m = f["messages"].as_array().unwrap().clone();
            m.push(json!({"role": "assistant", "content": f["correction"]}));
            json!({ "messages": m }).to_string() + "\n"
        })
        .collect()
}

/// Starts `forja up` and returns it with the key it printed for `tenant`.
fn up(
    data: &std::path::Path,
    model: &std::path::Path,
    extra: &[&str],
) -> (Server, Arc<Mutex<String>>) {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let mut args = vec![
        "up",
        "--port",
        "0",
        "--data-dir",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--tick-ms",
        "200",
        "--lease-ttl",
        "2",
        "-t",
        "1",
        "--embedding-model",
        "none",
    ];
    args.extend(extra);
    let s = spawn(&args, &[], move |l| sink.lock().unwrap().push_str(l));
    (s, log)
}

fn printed_key(log: &Mutex<String>) -> String {
    let mut key = String::new();
    wait_for(
        Duration::from_secs(30),
        || {
            let text = log.lock().unwrap();
            key = text.split_whitespace().find(|w| w.starts_with("forja-sk-")).unwrap_or("").into();
            !key.is_empty()
        },
        "the tenant key in forja up's output",
    );
    key
}

fn chat_model(s: &Server, key: &str, model: &str) -> String {
    let body = json!({"model": model, "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": "fox 1000"}]});
    let (st, r, _) = post(s, "/v1/chat/completions", key, body);
    assert_eq!(st, 200, "{r}");
    r["model"].as_str().unwrap().to_string()
}

/// Posts one iteration's corrections; returns the job the threshold created.
fn iteration(s: &Server, key: &str, examples: Vec<Value>) -> (String, Value) {
    let (st, r, _) = post(s, "/v1/feedback", key, json!({ "examples": examples }));
    assert_eq!(st, 200, "{r}");
    assert!(r["data"].as_array().unwrap().iter().all(|e| e["status"] != "rejected"), "{r}");
    assert_eq!(r["job"]["trigger"], "threshold", "the threshold fires on the last post: {r}");
    let id = r["job"]["id"].as_str().unwrap().to_string();
    let job = wait_job(s, key, &id, "succeeded", Duration::from_secs(300));
    let mut version = Value::Null;
    wait_for(
        Duration::from_secs(60),
        || {
            let (_, l) = get(s, "/v1/registry/models", key);
            version = l["data"]
                .as_array()
                .and_then(|d| d.iter().find(|v| v["job_id"] == id.as_str()).cloned())
                .unwrap_or(Value::Null);
            !version.is_null()
        },
        "the job's registered version",
    );
    (id, json!({"job": job, "version": version}))
}

#[test]
fn feedback_triggers_training_gate_promotion_hot_swap_and_rollback_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let (s, log) = up(&data, &model, &["--tenant", "acme"]);
    let key = printed_key(&log);
    wait_for(Duration::from_secs(60), || get_status(&s, "/ready", "") == 200, "ready");
    // The tenant's policy, changed while the node runs.
    let spec = r#"{"hyperparameters": {"n_epochs": 6, "batch_size": 4, "learning_rate_multiplier": 25, "lora_r": 8}}"#;
    let d = data.to_str().unwrap();
    // The tiny fixture model answers the general probe's 60 four-way
    // questions at chance (0.25-0.35): a few points either way after
    // training is noise, and the kernels' rounding (AVX2 or AVX-512) moved
    // it past the default 5-point limit. The probe gate has its own tests
    // (forja-control's gate, the continual-learning demo); here it may
    // drop 20 points.
    let policy = tmp.path().join("gate.toml");
    std::fs::write(&policy, "probe_max_drop = 0.2\n").unwrap();
    let policy = policy.to_str().unwrap();
    let flags = [
        "--threshold",
        "24",
        "--job-spec",
        spec,
        "--allow-forced-promotion",
        "true",
        "--gate-policy",
        policy,
    ];
    set_tenant(&data, "acme", &flags);
    let bad =
        forja(&["tenants", "set", "acme", "--job-spec", r#"{"epochs": 3}"#, "--data-dir", d], None);
    assert!(stderr(&bad).contains("unknown field `epochs`"), "{}", stderr(&bad));
    let (st, g, _) = call(
        &s,
        "POST",
        "/v1/registry/golden?name=g.jsonl",
        &key,
        Some(golden().into_bytes()),
        "application/jsonl",
    );
    assert_eq!(st, 200, "{g}");
    let base = chat_model(&s, &key, "tiny@champion");

    // Iteration 1 teaches two of the three keywords; 23 posts stay pending.
    let (st, r, _) = post(&s, "/v1/feedback", &key, json!({"examples": feedback(0..23, 2)}));
    assert_eq!((st, r["job"].is_null()), (200, true), "{r}");
    let (job1, it1) = iteration(&s, &key, feedback(23..24, 2));
    let v1 = &it1["version"];
    assert_eq!(it1["job"]["hyperparameters"]["n_epochs"], 6, "the tenant's job spec: {it1}");
    assert_eq!(v1["status"], "promoted", "the gate passes a better adapter: {v1}");
    let wer =
        |v: &Value, side: &str| v["eval"]["summary"][side]["metrics"]["wer"].as_f64().unwrap();
    assert!(wer(v1, "candidate") < wer(v1, "baseline"), "{v1}");
    let id1 = v1["id"].as_str().unwrap().to_string();
    // Charts of learning, linked from the version: its job's loss, and the
    // metrics across versions.
    let png = |path: &str, k: &str| get_bytes(&s, path, k);
    let loss = v1["charts"]["loss"].as_str().unwrap();
    let (st, bytes) = png(loss, &key);
    assert_eq!((st, &bytes[..4]), (200, &b"\x89PNG"[..]), "{v1}");
    let (st, bytes) = png(v1["charts"]["metrics"].as_str().unwrap(), &key);
    assert_eq!((st, &bytes[..4]), (200, &b"\x89PNG"[..]), "{v1}");
    assert_eq!(png("/v1/registry/metrics.png?metric=", &key).0, 400);
    assert_eq!(png("/v1/registry/metrics.png?colour=red", &key).0, 400);
    // The promotion event swaps serving: the next answer comes from v1.
    wait_for(Duration::from_secs(60), || chat_model(&s, &key, "tiny@champion") == id1, "v1 served");
    assert_ne!(base, id1);
    let (_, examples) = get(&s, &format!("/v1/fine_tuning/jobs/{job1}"), &key);
    assert_eq!(examples["trigger"], "threshold");

    // Iteration 2 on new corrections, all three keywords: compared with the champion.
    let (_, it2) = iteration(&s, &key, feedback(24..48, 3));
    let v2 = &it2["version"];
    assert_eq!(v2["parent_id"].as_str(), Some(id1.as_str()), "{v2}");
    assert_eq!(v2["eval"]["summary"]["baseline"]["subject"], format!("champion {id1}"), "{v2}");
    let id2 = v2["id"].as_str().unwrap().to_string();
    // The gate decides against the champion: a worse v2 is rejected and v1
    // keeps serving; an operator can still force it (to test rollback).
    if v2["status"] != "promoted" {
        assert_eq!(v2["status"], "rejected", "{v2}");
        assert!(wer(v2, "candidate") >= wer(v2, "baseline"), "{v2}");
        assert_eq!(chat_model(&s, &key, "tiny@champion"), id1, "the champion keeps serving");
        let path = format!("/v1/registry/models/{id2}/promote");
        let (st, m, _) = post(&s, &path, &key, json!({"force": true}));
        assert_eq!(st, 200, "{m}");
    }
    wait_for(Duration::from_secs(60), || chat_model(&s, &key, "tiny@champion") == id2, "v2 served");

    // Rollback: v1 serves again.
    let (st, m, _) = post(&s, "/v1/registry/rollback", &key, json!({"reason": "e2e"}));
    assert_eq!(st, 200, "{m}");
    wait_for(Duration::from_secs(60), || chat_model(&s, &key, "tiny@champion") == id1, "v1 back");
    let (_, log) = get(&s, "/v1/registry/log", &key);
    let kinds: Vec<&str> =
        log["data"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["registered", "promoted", "registered", "promoted", "rolled_back"]);
}

#[test]
fn kill_9_of_forja_up_during_demo_training_resumes_and_completes_the_loop() {
    let tmp = tempfile::tempdir().unwrap();
    // The demo's Spanish prompts need more than the fixtures' 256 positions.
    let spec = Spec { context: 1024, ..Spec::llama() };
    let model = tmp.path().join("tiny.gguf");
    fixtures::write_gguf(&model, &spec, &fixtures::weights(&spec, 1), GgmlDType::Q8_0);
    let data = tmp.path().join("data");
    let demo = [
        "--demo",
        "--exit-after-loop",
        "--demo-corrections",
        "48",
        "--demo-golden",
        "6",
        "--demo-epochs",
        "12",
        "--demo-batch-size",
        "1",
        "--demo-lora-r",
        "4",
    ];
    let (s, _) = up(&data, &model, &demo);
    let key_file = data.join("demo").join("key");
    wait_for(Duration::from_secs(60), || key_file.exists(), "the demo tenant's key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    let mut job = String::new();
    wait_for(
        Duration::from_secs(300),
        || {
            let (_, l) = get(&s, "/v1/fine_tuning/jobs", &key);
            job = l["data"][0]["id"].as_str().unwrap_or("").into();
            !job.is_empty()
                && !get(&s, &format!("/v1/fine_tuning/jobs/{job}/checkpoints"), &key).1["data"]
                    .as_array()
                    .unwrap()
                    .is_empty()
        },
        "the demo's job to write a checkpoint",
    );
    let at_kill = job_status(&s, &key, &job);
    assert_eq!(at_kill["status"], "running", "{at_kill}");
    drop(s); // SIGKILL, mid-training

    let mut args = vec!["up", "--port", "0", "--data-dir", data.to_str().unwrap()];
    let m = model.to_str().unwrap().to_string();
    args.extend(["--model", &m, "--tick-ms", "200", "--lease-ttl", "2", "-t", "1"]);
    args.extend(["--embedding-model", "none"]);
    args.extend(demo);
    let o = common::forja_cmd(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("resuming iteration 1 (job {job})")), "{err}");

    let report: Value =
        serde_json::from_slice(&std::fs::read(data.join("demo/report.json")).unwrap()).unwrap();
    assert_eq!(report["job_id"], job.as_str(), "{report}");
    assert!(report["wer_before"].is_number() && report["wer_after"].is_number(), "{report}");
    assert!(data.join("demo/report.md").exists());

    // Nothing lost, nothing used twice: one job, attempt 2, every curated
    // example claimed by it, and its training files hold each once.
    use forja_store::prelude::*;
    let store =
        forja_store::SqliteStore::open(&data.join("forja.db"), Duration::from_secs(5)).unwrap();
    let tenant = store.tenant_by_name("demo-actas").unwrap();
    let jobs = store.jobs(Some(&tenant.id), None, 10).unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].attempts, 2);
    let claimed = store.job_examples(&job).unwrap();
    let pending = store.pending(&tenant.id).unwrap();
    assert_eq!(pending.curated, 0, "{pending:?}");
    assert_eq!(pending.claimed as usize, claimed.len(), "{pending:?}");
    assert_eq!(
        claimed.len() as u64 + pending.rejected,
        48,
        "every posted correction is stored once: {pending:?}"
    );
    let lines =
        |f: &Option<String>| f.as_deref().map_or(0, |id| store.file(&tenant.id, id).unwrap().lines);
    assert_eq!(
        lines(&jobs[0].training_file) + lines(&jobs[0].validation_file),
        claimed.len() as u64,
        "each claimed example is in the job's files once"
    );
}

/// `forja up --demo --exit-after-loop` on a tiny model with `flags`; the
/// data directory (in `tmp`).
fn demo_up(tmp: &Path, flags: &[&str]) -> PathBuf {
    let spec = Spec { context: 1024, ..Spec::llama() };
    let model = tmp.join("tiny.gguf");
    fixtures::write_gguf(&model, &spec, &fixtures::weights(&spec, 1), GgmlDType::Q8_0);
    let data = tmp.join("data");
    let m = model.to_str().unwrap().to_string();
    let mut args = vec!["up", "--port", "0", "--data-dir", data.to_str().unwrap()];
    args.extend(["--model", &m, "--tick-ms", "200", "-t", "1", "--embedding-model", "none"]);
    args.extend(["--demo", "--exit-after-loop", "--demo-golden", "4", "--demo-epochs", "1"]);
    args.extend(["--demo-lora-r", "4"]);
    args.extend(flags);
    let o = common::forja_cmd(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    data
}

#[test]
fn demo_with_corrections_as_documents_drafts_corrects_and_trains_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_up(tmp.path(), &["--demo-documents", "--demo-corrections", "24"]);

    let report: Value =
        serde_json::from_slice(&std::fs::read(data.join("demo/report.json")).unwrap()).unwrap();
    let c = &report["curation"];
    assert_eq!(c["source"], "documents", "{c}");
    assert_eq!(c["utterances"], 24, "{c}");
    let docs = c["documents"].as_u64().unwrap();
    assert!(docs >= 2, "24 utterances span more than one session: {c}");
    let a = &c["secretary"];
    let sum: u64 =
        ["kept", "rewritten", "entity_fixed"].iter().map(|k| a[k].as_u64().unwrap()).sum();
    assert_eq!(sum, 24, "every paragraph is kept, fixed or rewritten: {c}");
    let (moved, deleted) = (a["moved"].as_u64().unwrap(), a["deleted"].as_u64().unwrap());
    assert!(moved >= 1 && deleted >= 1, "{c}");
    // The node's delta sees exactly what the secretary did.
    assert_eq!(c["moved_reported_as_moved"], format!("{moved}/{moved}"), "{c}");
    assert_eq!(c["deleted_reported_as_deleted"], format!("{deleted}/{deleted}"), "{c}");
    let pairs = c["learning"]["training_pair"].as_u64().unwrap();
    assert_eq!(
        pairs,
        c["curated"].as_u64().unwrap()
            + c["duplicates"].as_u64().unwrap()
            + c["refused"].as_u64().unwrap(),
        "{c}"
    );
    assert!(c["curated"].as_u64().unwrap() >= 10, "{c}");
    assert!(report["wer_before"].is_number() && report["wer_after"].is_number(), "{report}");
    assert!(data.join("demo/report.md").exists());
    let md = std::fs::read_to_string(data.join("demo/report.md")).unwrap();
    assert!(md.contains("## Corrections as documents"), "{md}");

    // The files people open: each draft and its final, chunk ids intact.
    let dir = data.join("demo/documents");
    let mut finals = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let doc = forja_docs::docx::read_docx(&std::fs::read(&p).unwrap(), &Default::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(doc.document_id.is_some(), "{name} names its draft");
        assert!(doc.blocks.iter().filter(|b| !b.chunk_ids.is_empty()).count() >= 1, "{name}");
        finals += name.ends_with("-final.docx") as u64;
    }
    assert_eq!(finals, docs);

    // The lineage: transcript → generated → final, per session.
    use forja_store::prelude::*;
    let store =
        forja_store::SqliteStore::open(&data.join("forja.db"), Duration::from_secs(5)).unwrap();
    let tenant = store.tenant_by_name("demo-actas").unwrap();
    let rows = store.documents(&tenant.id).unwrap();
    let of = |k: &str| rows.iter().filter(|d| d.kind.as_str() == k).collect::<Vec<_>>();
    let (transcripts, generated, finals) = (of("transcript"), of("generated"), of("final"));
    assert_eq!(
        (transcripts.len(), generated.len(), finals.len()),
        (docs as usize, docs as usize, docs as usize)
    );
    for f in finals {
        let g = generated
            .iter()
            .find(|g| Some(&g.id) == f.parent_id.as_ref())
            .expect("a final's draft");
        assert!(transcripts.iter().any(|t| Some(&t.id) == g.parent_id.as_ref()), "{g:?}");
    }
    // The job trained on the document pairs.
    let jobs = store.jobs(Some(&tenant.id), None, 10).unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        store.job_examples(&jobs[0].id).unwrap().len() as u64,
        c["curated"].as_u64().unwrap()
    );
}

#[test]
fn demo_iterations_replay_earlier_corrections_and_chart_the_loop() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo_up(tmp.path(), &["--iterations", "2", "--demo-corrections", "16"]);
    let it: Value =
        serde_json::from_slice(&std::fs::read(data.join("demo/iterations.json")).unwrap()).unwrap();
    let rows = it["iterations"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{it}");
    assert_eq!(rows[0]["examples"]["replayed"], 0, "{it}");
    let new = rows[1]["examples"]["new"].as_u64().unwrap();
    assert!(new > 0, "{it}");
    // Half as many earlier corrections as new ones are replayed.
    assert_eq!(
        rows[1]["examples"]["replayed"].as_u64().unwrap(),
        (new as f64 * 0.5).round() as u64,
        "{it}"
    );
    for r in rows {
        assert!(r["serving"]["wer"].is_number() && r["probe"]["base"].is_number(), "{r}");
        assert!(r["evaluation_seconds"].is_number(), "{r}");
    }
    let png = std::fs::read(data.join("demo/iterations.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    let md = std::fs::read_to_string(data.join("demo/iterations.md")).unwrap();
    assert!(md.contains("| 2 |"), "{md}");
}
