//! The learning loop for HTTP tests: a tiny model pre-trained by the test
//! (seconds) that knows the general probe's answers, a golden set, and one
//! loop iteration (feedback, "train now", the registered version).

use super::Bed;
use forja_store::TenantSettings;
use serde_json::{json, Value};
use std::time::Duration;

/// A tiny model pre-trained on the probe's answers and on short chat
/// answers to the general replay prompts (shared by the tests).
pub fn pretrained() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let mut docs = Vec::new();
        for it in &forja_eval::probe::general().items {
            for _ in 0..3 {
                docs.push(format!("Question: {}\nAnswer: {}", it.question, it.choices[it.answer]));
            }
        }
        for (i, p) in forja_control::replay::prompts().iter().enumerate() {
            let answer =
                ["Here is a short answer.", "Aquí tienes una respuesta breve.", "Sure."][i % 3];
            docs.push(format!(
                "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n",
                p.prompt
            ));
        }
        let cfg = forja_engine::train::pretrain::PretrainConfig {
            vocab_size: 512,
            hidden: 64,
            intermediate: 128,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            seq_len: 64,
            ..Default::default()
        };
        let tcfg = forja_engine::train::TrainConfig {
            epochs: 6,
            batch_size: 8,
            lr: 3e-3,
            save_every: 0,
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap().keep().join("pretrained");
        forja_engine::train::pretrain::pretrain(&docs, &cfg, &tcfg, &dir, false, &mut |_| Ok(()))
            .unwrap();
        dir
    })
}

pub const KEYS: [(&str, &str); 4] =
    [("fox", "dog"), ("budget", "council"), ("votes", "minutes"), ("hello", "forja")];

pub fn golden() -> String {
    (0..12)
        .map(|i| {
            let (w, a) = KEYS[i % KEYS.len()];
            json!({"id": format!("g{i}"), "prompt": format!("{w} golden {i}"), "reference": format!("the answer is {a}")})
                .to_string()
                + "\n"
        })
        .collect()
}

pub fn upload_golden(b: &Bed, key: &str) {
    let r = b.call(
        "POST",
        "/v1/registry/golden?name=g.jsonl",
        key,
        &[("content-type", "application/jsonl")],
        golden().into(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// One iteration: `n` new examples from `first`, trained now; the job's
/// id once its version is registered.
pub fn iteration(b: &Bed, key: &str, first: usize, n: usize) -> String {
    let examples: Vec<Value> = (first..first + n)
        .map(|i| {
            let (w, a) = KEYS[i % KEYS.len()];
            json!({"prompt": format!("{w} {i}"), "correction": format!("the answer is {a}")})
        })
        .collect();
    let r = b.post("/v1/feedback", key, json!({ "examples": examples }));
    assert_eq!(r.status, 200, "{}", r.body);
    let j = b.post("/v1/learning/train", key, json!({}));
    assert_eq!(j.status, 200, "{}", j.body);
    let id = j.body["id"].as_str().unwrap().to_string();
    b.wait(Duration::from_secs(300), "the job's version", || version_of(b, key, &id).is_some());
    id
}

pub fn version_of(b: &Bed, key: &str, job: &str) -> Option<Value> {
    let r = b.get("/v1/registry/models", key);
    r.body["data"].as_array()?.iter().find(|v| v["job_id"] == job).cloned()
}

pub fn messages(b: &Bed, key: &str, job: &str) -> Vec<String> {
    let r = b.get(&format!("/v1/fine_tuning/jobs/{job}/events?limit=500"), key);
    r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

pub fn settings(policy: Option<&str>, epochs: u32, lr: f64) -> TenantSettings {
    let mut s = TenantSettings {
        threshold: None,
        max_trainings: 100,
        gate_policy: policy.map(str::to_string),
        ..Default::default()
    };
    s.job_spec = Some(forja_store::JobSpec {
        hyperparameters: forja_store::HyperRequest {
            n_epochs: forja_store::Auto::Value(epochs),
            batch_size: forja_store::Auto::Value(8),
            learning_rate_multiplier: forja_store::Auto::Value(lr),
            ..Default::default()
        },
        seed: Some(3),
        ..Default::default()
    });
    s
}
