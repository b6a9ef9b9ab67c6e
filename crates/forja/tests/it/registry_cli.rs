//! The model registry over HTTP and the CLI, against a real `forja serve`:
//! golden sets (bad ones refused with the line), jobs evaluated after
//! training, versions with lineage and per-example reports, the gate's
//! refusal without `force`, promotion and rollback through the API and the
//! CLI, and tenant isolation of versions.

use crate::common;

use common::server::*;
use common::{forja, stderr, tiny_gguf};
use serde_json::{json, Value};
use std::time::Duration;

/// Keyword → answer chat lines (the tiny model learns them in seconds).
fn lines(range: std::ops::Range<usize>) -> String {
    let keys = [("fox", "dog"), ("budget", "council"), ("votes", "minutes"), ("hello", "forja")];
    range
        .map(|i| {
            let (w, a) = keys[i % keys.len()];
            json!({"messages": [
                {"role": "user", "content": format!("{w} {i}")},
                {"role": "assistant", "content": a},
            ]})
            .to_string()
                + "\n"
        })
        .collect()
}

fn post_raw(s: &Server, path: &str, key: &str, body: &str) -> (u16, Value) {
    let (st, v, _) =
        call(s, "POST", path, key, Some(body.as_bytes().to_vec()), "application/jsonl");
    (st, v)
}

/// Trains one job through the API and waits for its registered version.
fn train_version(s: &Server, key: &str) -> Value {
    let (st, f) = upload(s, key, "train.jsonl", &lines(0..24));
    assert_eq!(st, 200, "{f}");
    let body = json!({"model": "tiny.gguf", "training_file": f["id"],
        "hyperparameters": {"n_epochs": 4, "batch_size": 8, "learning_rate_multiplier": 25}});
    let (st, j, _) = post(s, "/v1/fine_tuning/jobs", key, body);
    assert_eq!(st, 200, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    wait_job(s, key, &id, "succeeded", Duration::from_secs(120));
    let mut found = Value::Null;
    wait_for(
        Duration::from_secs(30),
        || {
            let (_, l) = get(s, "/v1/registry/models", key);
            found = l["data"]
                .as_array()
                .and_then(|d| d.iter().find(|v| v["job_id"] == id.as_str()).cloned())
                .unwrap_or(Value::Null);
            !found.is_null()
        },
        "the job's model version",
    );
    found
}

#[test]
fn versions_are_evaluated_gated_promoted_and_rolled_back() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let kb = key(&data, &["--tenant", "beta"]);
    // Manual promotion only: the gate's verdict is recorded, nothing moves.
    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, "auto_promote = false\nmax_regression = 0.5\n").unwrap();
    let d = data.to_str().unwrap();
    let flags = ["--gate-policy", policy.to_str().unwrap(), "--allow-forced-promotion", "true"];
    set_tenant(&data, "acme", &flags);
    let s = serve(&data, &model, &["--embedding-model", "none"], &[]);

    let (st, e) = post_raw(&s, "/v1/registry/golden?name=g.jsonl", &k, "{\"prompt\": \"x\"}\n");
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("invalid_golden_set")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("g.jsonl: line 1"), "{e}");
    let (st, g) = post_raw(&s, "/v1/registry/golden?name=g.jsonl", &k, &lines(100..108));
    assert_eq!((st, g["version"].as_i64(), g["examples"].as_u64()), (200, Some(1), Some(8)), "{g}");

    let v1 = train_version(&s, &k);
    let id1 = v1["id"].as_str().unwrap().to_string();
    assert_eq!(v1["golden_set_id"], g["id"]);
    assert!(v1["eval"]["summary"]["candidate"]["metrics"]["wer"].is_number(), "{v1}");
    assert!(v1["gate"]["outcome"].is_string(), "{v1}");
    assert!(v1["aliases"].as_array().unwrap().contains(&json!("candidate")));
    // The full report has a row per golden example, for before/after diffs.
    let (st, rep) = get(&s, &format!("/v1/registry/models/{id1}/eval"), &k);
    assert_eq!(st, 200, "{rep}");
    assert_eq!(rep["candidate"]["examples"].as_array().unwrap().len(), 8);
    assert_eq!(rep["baseline"]["examples"].as_array().unwrap().len(), 8);
    // Lineage reaches the job and its training file.
    let (_, l) = get(&s, &format!("/v1/registry/models/{id1}/lineage"), &k);
    assert_eq!(l["job"]["id"], v1["job_id"]);
    assert_eq!(l["training_file"]["sha256"], v1["dataset_sha256"]);
    // Another tenant cannot see or promote it.
    assert_eq!(get(&s, &format!("/v1/registry/models/{id1}"), &kb).0, 404);
    assert_eq!(post(&s, &format!("/v1/registry/models/{id1}/promote"), &kb, json!({})).0, 404);

    let promote = |id: &str| {
        post(&s, &format!("/v1/registry/models/{id}/promote"), &k, json!({"force": true}))
    };
    let (st, m, _) = promote(&id1);
    assert_eq!((st, m["version"].as_str()), (200, Some(id1.as_str())), "{m}");
    let v2 = train_version(&s, &k);
    let id2 = v2["id"].as_str().unwrap().to_string();
    assert_eq!(v2["parent_id"].as_str(), Some(id1.as_str()), "trained to replace the champion");
    let (st, m, _) = promote(&id2);
    assert_eq!((st, m["previous"].as_str()), (200, Some(id1.as_str())), "{m}");
    let (_, status) = get(&s, "/v1/learning/status", &k);
    assert_eq!(status["champion"]["id"].as_str(), Some(id2.as_str()), "{status}");

    // Rollback through the CLI; the API sees it.
    let o = forja(
        &["models", "rollback", "--tenant", "acme", "--reason", "test", "--data-dir", d],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, champ) = get(&s, "/v1/registry/models/champion", &k);
    assert_eq!(champ["id"].as_str(), Some(id1.as_str()));
    let (_, v2now) = get(&s, &format!("/v1/registry/models/{id2}"), &k);
    assert_eq!(v2now["status"], "archived");
    let (st, e, _) = post(&s, "/v1/registry/rollback", &k, json!({"reason": "again"}));
    assert_eq!(st, 409, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("no previous promoted version"),
        "{e}"
    );
    let (_, log) = get(&s, "/v1/registry/log", &k);
    let kinds: Vec<&str> =
        log["data"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["registered", "promoted", "registered", "promoted", "rolled_back"]);

    let o = forja(&["models", "lineage", "--tenant", "acme", "champion", "--data-dir", d], None);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && text.contains(&id1)
            && text.contains("job ")
            && text.contains("golden "),
        "{text}"
    );
    let o = forja(&["models", "list", "--tenant", "acme", "--data-dir", d], None);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&id2) && text.contains("archived") && text.contains("champion"),
        "{text}"
    );
}
