//! Continual learning survives kill -9: a real `forja serve` with its
//! in-process worker runs two loop iterations; the server is killed during
//! the second iteration's training and again during its evaluation. The
//! loop resumes each time, the job keeps the mix it was validated with,
//! and no example is lost or trained on as new twice.

use crate::common;

use common::server::*;
use common::tiny_gguf;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const WORDS: [&str; 4] = ["hello", "world", "forja", "tokenizer"];

fn feedback(s: &Server, k: &str, first: usize, n: usize) {
    let examples: Vec<Value> = (first..first + n)
        .map(|i| {
            json!({"prompt": format!("{} number {i}", WORDS[i % 4]), "correction": format!("{} {}", WORDS[(i + 1) % 4], WORDS[(i + 2) % 4])})
        })
        .collect();
    let (st, r, _) = post(s, "/v1/feedback", k, json!({ "examples": examples }));
    assert_eq!(st, 200, "{r}");
}

fn train_now(s: &Server, k: &str) -> String {
    let (st, j, _) = post(s, "/v1/learning/train", k, json!({}));
    assert_eq!(st, 200, "{j}");
    j["id"].as_str().unwrap().to_string()
}

fn version(s: &Server, k: &str, job: &str) -> Option<Value> {
    let (_, l) = get(s, "/v1/registry/models", k);
    l["data"].as_array()?.iter().find(|v| v["job_id"] == job).cloned()
}

fn wait_version(s: &Server, k: &str, job: &str) -> Value {
    let mut v = None;
    wait_for(
        Duration::from_secs(600),
        || {
            v = version(s, k, job);
            v.is_some()
        },
        "the job's version",
    );
    v.unwrap()
}

fn ids(v: &Value) -> BTreeSet<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

#[test]
fn kill_9_during_an_iterations_training_and_evaluation_loses_and_repeats_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let policy = tmp.path().join("gate.toml");
    std::fs::write(
        &policy,
        "primary_metric = \"loss\"\nguarded = []\nprobe_max_drop = 1.0\nprobe_max_logprob_drop = 100.0\n",
    )
    .unwrap();
    let spec = r#"{"hyperparameters": {"n_epochs": 30, "batch_size": 1, "lora_r": 4, "lora_targets": "q_proj,v_proj"}, "seed": 7}"#;
    set_tenant(&data, "acme", &["--job-spec", spec, "--gate-policy", policy.to_str().unwrap()]);
    // A golden set whose evaluation takes a while (long references).
    let golden: String = (0..100)
        .map(|i| {
            let reference = (0..48).map(|j| WORDS[(i + j) % 4]).collect::<Vec<_>>().join(" ");
            json!({"id": format!("g{i}"), "prompt": format!("golden {i}"), "reference": reference})
                .to_string()
                + "\n"
        })
        .collect();
    let args = ["--workers", "1", "--lease-ttl", "2"];
    let mut s = serve(&data, &model, &args, &[]);
    let (st, g, _) = call(
        &s,
        "POST",
        "/v1/registry/golden?name=g.jsonl",
        &k,
        Some(golden.into_bytes()),
        "application/jsonl",
    );
    assert_eq!(st, 200, "{g}");

    // Iteration 1, undisturbed.
    feedback(&s, &k, 0, 16);
    let j1 = train_now(&s, &k);
    let v1 = wait_version(&s, &k, &j1);
    assert_eq!(v1["status"], "promoted", "{}", v1["status_reason"]);

    // Iteration 2: killed while it trains...
    feedback(&s, &k, 100, 16);
    let j2 = train_now(&s, &k);
    let ck = format!("/v1/fine_tuning/jobs/{j2}/checkpoints");
    wait_for(
        Duration::from_secs(300),
        || !get(&s, &ck, &k).1["data"].as_array().unwrap().is_empty(),
        "a checkpoint",
    );
    let mix_before = job_status(&s, &k, &j2)["training_mix"].clone();
    assert_eq!(mix_before["warm_start_from"], v1["id"], "{mix_before}");
    assert_eq!(mix_before["replay_examples"], 8, "{mix_before}");
    assert_eq!(job_status(&s, &k, &j2)["status"], "running");
    drop(s); // SIGKILL
    s = serve(&data, &model, &args, &[]);
    // ...and again while it evaluates.
    let t = std::time::Instant::now();
    while !events(&s, &k, &j2).iter().any(|m| m.starts_with("Reusing the evaluation")) {
        assert!(t.elapsed() < Duration::from_secs(600), "the evaluation did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(s); // SIGKILL
    s = serve(&data, &model, &args, &[]);
    let j = wait_job(&s, &k, &j2, "succeeded", Duration::from_secs(600));
    assert_eq!(j["attempts"], 3, "{:#?}", events(&s, &k, &j2));
    assert_eq!(j["training_mix"], mix_before, "the resumed job trains on the same mix");
    let ev = events(&s, &k, &j2);
    let count = |p: &str| ev.iter().filter(|m| m.starts_with(p)).count();
    assert!(count("Resuming from the checkpoint") >= 2, "{ev:#?}");
    // The evaluation was interrupted and done again.
    assert_eq!(count("Reusing the evaluation"), 2, "{ev:#?}");
    assert_eq!(count("General probe"), 1, "{ev:#?}");
    let v2 = wait_version(&s, &k, &j2);

    // Every example was trained on as new exactly once; replay is of
    // iteration 1's examples only.
    let (new1, new2) = (ids(&v1["manifest"]["example_ids"]), ids(&v2["manifest"]["example_ids"]));
    assert_eq!((new1.len(), new2.len()), (16, 16));
    assert!(new1.is_disjoint(&new2));
    assert!(ids(&v2["manifest"]["mix"]["replay_example_ids"]).is_subset(&new1));
    let (_, status) = get(&s, "/v1/learning/status", &k);
    assert_eq!(status["pending"]["curated"], 0, "{status}");
    assert_eq!(status["pending"]["claimed"], 32, "{status}");
    let (_, jobs) = get(&s, "/v1/fine_tuning/jobs", &k);
    assert_eq!(jobs["data"].as_array().unwrap().len(), 2, "no job lost or duplicated: {jobs}");
    let (_, files) = get(&s, "/v1/files", &k);
    let train_files = files["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["filename"].as_str().unwrap().ends_with(&format!("{j2}-train.jsonl")))
        .count();
    assert_eq!(train_files, 1, "the mix was built once: {files}");
}
