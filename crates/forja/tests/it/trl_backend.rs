//! `forja worker --backend trl`: a job trained by TRL + PEFT in a Python
//! child process (torch on the CPU here) on a tiny Llama in Hugging Face
//! layout, with the same events, checkpoints and result as a native job;
//! the adapter it produced is served by the node, and forja's logits with
//! it equal PEFT's. Needs `FORJA_TRL_PYTHON`, a Python with torch,
//! transformers, trl, peft, accelerate and datasets (`make setup-trl`);
//! skipped without it, also in CI (torch is ~5 GB). The flag checks run
//! everywhere.

use crate::common;

use common::server::*;
use common::{check_user_error, forja};
use forja_engine::fixtures::{self, Spec};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

fn trl_python() -> Option<String> {
    match std::env::var("FORJA_TRL_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            eprintln!(
                "skipped: FORJA_TRL_PYTHON is not set (a Python with torch, trl and peft; `make setup-trl`)"
            );
            None
        }
    }
}

fn tiny_hf(dir: &Path) -> PathBuf {
    let spec = Spec::llama();
    let p = dir.join("tiny-hf");
    fixtures::write_hf(&p, &spec, &fixtures::weights(&spec, 1));
    p
}

#[test]
fn worker_backend_flags_are_checked_before_leasing() {
    let w = ["worker", "--control", "http://127.0.0.1:9", "--token", "forja-wk-x"];
    let run = |extra: &[&str]| forja(&[&w[..], extra].concat(), None);
    if !cfg!(feature = "cuda") {
        check_user_error(&run(&["--device", "cuda:0"]), "this forja was built without CUDA");
    }
    check_user_error(&run(&["--gpus", "2"]), "--gpus 2: forja's native trainer uses one device");
    check_user_error(&run(&["--device", "tpu"]), "--device tpu: expected cpu, cuda or cuda:N");
    check_user_error(&run(&["--load-in-4bit"]), "--load-in-4bit applies to --backend trl only");
    check_user_error(
        &run(&["--backend", "trl", "--gpus", "2"]),
        "--gpus 2 with --device cpu: pass --device cuda",
    );
    check_user_error(
        &run(&["--backend", "trl", "--python", "/nonexistent/python3"]),
        "--backend trl: `python`: /nonexistent/python3",
    );
    check_user_error(
        &run(&["--backend", "trl", "--deepspeed", "/nonexistent.json"]),
        "/nonexistent.json: no such file",
    );
    // A Python that cannot import the packages: what it said, and what to do.
    let tmp = tempfile::tempdir().unwrap();
    let py = tmp.path().join("python3");
    std::fs::write(
        &py,
        "#!/bin/sh\necho \"cannot import torch: No module named 'torch'\" >&2\nexit 1\n",
    )
    .unwrap();
    let exec = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(&py, exec).unwrap();
    check_user_error(
        &run(&["--backend", "trl", "--python", py.to_str().unwrap()]),
        "cannot import torch: No module named 'torch' (install torch, transformers, trl, peft",
    );
}

#[test]
fn a_trl_worker_trains_an_adapter_that_the_node_serves() {
    let Some(python) = trl_python() else { return };
    let Node { tmp, model, data, k, kw, s } = node("5");
    let log = tmp.path().join("worker.log");
    let mut worker = trl_worker(&s, &kw, &model, &python, "w1", &log);
    let _kill = KillOnDrop(&mut worker);

    let train =
        upload(&s, &k, "train.jsonl", &chat_jsonl(32)).1["id"].as_str().unwrap().to_string();
    let val = upload(&s, &k, "val.jsonl", &chat_jsonl(8)).1["id"].as_str().unwrap().to_string();
    let (st, j, _) = post(
        &s,
        "/v1/fine_tuning/jobs",
        &k,
        json!({"model": model, "training_file": train, "validation_file": val, "suffix": "trl",
               "hyperparameters": {"n_epochs": 4, "batch_size": 4, "learning_rate_multiplier": 10,
                                   "lora_r": 4}}),
    );
    assert_eq!(st, 200, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    let mut last = Value::Null;
    wait_for(
        Duration::from_secs(600),
        || {
            last = job_status(&s, &k, &id);
            let st = last["status"].as_str().unwrap_or_default();
            assert!(
                !matches!(st, "failed" | "cancelled"),
                "{last}\nworker log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            st == "succeeded"
        },
        "the TRL job to succeed",
    );
    let j = last;
    assert!(j["trained_tokens"].as_u64().unwrap() > 0, "{j}");
    let msgs = events(&s, &k, &id);
    assert!(
        msgs.iter().any(|m| m.starts_with("Training ") && m.contains("LoRA parameters")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("validation loss=")), "{msgs:?}");
    let losses: Vec<f64> = msgs
        .iter()
        .filter_map(|m| m.split_once("training loss=").and_then(|(_, l)| l.parse().ok()))
        .collect();
    assert!(losses.len() >= 2, "{msgs:?}");
    assert!(losses.last().unwrap() < &losses[0], "the loss falls: {losses:?}");
    let (_, ck) = get(&s, &format!("/v1/fine_tuning/jobs/{id}/checkpoints"), &k);
    assert!(!ck["data"].as_array().unwrap().is_empty(), "TRL's checkpoints are uploaded: {ck}");

    // The job's version is registered and the node serves it.
    let mut version = String::new();
    wait_for(
        Duration::from_secs(60),
        || {
            let (_, l) = get(&s, "/v1/registry/models", &k);
            let found = l["data"]
                .as_array()
                .and_then(|d| d.iter().find(|v| v["job_id"] == id.as_str()).cloned());
            version = found.map(|v| v["id"].as_str().unwrap().to_string()).unwrap_or_default();
            !version.is_empty()
        },
        "the job's registered version",
    );
    let body = json!({"model": version, "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": "hello world"}]});
    let (st, r, _) = post(&s, "/v1/chat/completions", &k, body);
    assert_eq!(st, 200, "{r}");

    // And forja computes with it what PEFT computes: the adapter's files,
    // out of the artifact store, through both.
    let adapter = tmp.path().join("adapter");
    std::fs::create_dir_all(&adapter).unwrap();
    let files = j["result_files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{j}");
    for sha in files {
        let sha = sha.as_str().unwrap();
        let name = if j["adapter_sha256"] == sha {
            "adapter_model.safetensors"
        } else {
            "adapter_config.json"
        };
        let src = data.join("artifacts/sha256").join(&sha[..2]).join(sha);
        std::fs::copy(src, adapter.join(name)).unwrap();
    }
    let ids = "1,5,9,17,33,65,129,200,7,3";
    let logits = |adapter: Option<&Path>| -> Vec<Vec<f64>> {
        let mut a = vec!["debug", "logits", "--model", model.to_str().unwrap(), "--ids", ids];
        if let Some(p) = adapter {
            a.extend(["--adapter", p.to_str().unwrap()]);
        }
        let o = forja(&a, None);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        serde_json::from_value(v["logits"].clone()).unwrap()
    };
    let ours = logits(Some(&adapter));
    let base = logits(None);
    let script = r#"
import json, sys, torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
m = PeftModel.from_pretrained(m, sys.argv[2]).eval()
ids = torch.tensor([[int(i) for i in sys.argv[3].split(",")]])
with torch.no_grad():
    print(json.dumps(m(ids).logits[0].tolist()))
"#;
    let o = Command::new(&python)
        .args(["-c", script, model.to_str().unwrap(), adapter.to_str().unwrap(), ids])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let peft: Vec<Vec<f64>> = serde_json::from_slice(&o.stdout).unwrap();
    let max_delta = |a: &[Vec<f64>], b: &[Vec<f64>]| {
        a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max)
    };
    let moved = max_delta(&ours, &base);
    let delta = max_delta(&ours, &peft);
    eprintln!(
        "TRL adapter: loss {:.3} -> {:.3}; max |forja - PEFT| {delta:.2e}, moved {moved:.3}",
        losses[0],
        losses.last().unwrap()
    );
    assert!(moved > 1e-2, "the adapter changes the logits ({moved})");
    assert!(delta < 1e-3, "forja and PEFT disagree by {delta} (the adapter moves them {moved})");
}

/// `forja worker --backend trl` on `model`, its stderr in `log`.
fn trl_worker(
    s: &Server,
    token: &str,
    model: &Path,
    python: &str,
    name: &str,
    log: &Path,
) -> Child {
    let extra = ["--backend", "trl", "--python", python, "--embedding-model", "none"];
    worker_cmd(s, token, model, name, &extra)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// A node on the tiny HF model with a tenant key and a worker key.
struct Node {
    tmp: tempfile::TempDir,
    model: PathBuf,
    data: PathBuf,
    k: String,
    kw: String,
    s: Server,
}

fn node(lease_ttl: &str) -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_hf(tmp.path());
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let kw = key(&data, &["--worker"]);
    let s = serve(&data, &model, &["--workers", "0", "--lease-ttl", lease_ttl], &[]);
    Node { tmp, model, data, k, kw, s }
}

#[test]
fn a_killed_trl_worker_is_replaced_and_the_job_resumes_from_its_checkpoint() {
    let Some(python) = trl_python() else { return };
    let Node { tmp, model, k, kw, s, .. } = node("2");
    let fid = upload(&s, &k, "t.jsonl", &chat_jsonl(64)).1["id"].as_str().unwrap().to_string();
    let (st, j, _) = post(
        &s,
        "/v1/fine_tuning/jobs",
        &k,
        json!({"model": model, "training_file": fid,
               "hyperparameters": {"n_epochs": 12, "batch_size": 1, "lora_r": 4, "lora_targets": "q_proj,v_proj"}}),
    );
    assert_eq!(st, 200, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    let total = 64 * 12;
    let log_a = tmp.path().join("a.log");
    let mut a = trl_worker(&s, &kw, &model, &python, "worker-a", &log_a);
    let ck_path = format!("/v1/fine_tuning/jobs/{id}/checkpoints");
    wait_for(
        Duration::from_secs(300),
        || !get(&s, &ck_path, &k).1["data"].as_array().unwrap().is_empty(),
        "a checkpoint",
    );
    a.kill().unwrap(); // SIGKILL: the kernel ends its trainer too
    a.wait().unwrap();
    let step_at_kill = get(&s, &ck_path, &k).1["data"][0]["step_number"].as_u64().unwrap();
    assert!(step_at_kill < total, "killed mid-run: {step_at_kill}");
    let log_b = tmp.path().join("b.log");
    let mut b = trl_worker(&s, &kw, &model, &python, "worker-b", &log_b);
    let _kill = KillOnDrop(&mut b);
    let mut last = Value::Null;
    wait_for(
        Duration::from_secs(600),
        || {
            last = job_status(&s, &k, &id);
            assert_ne!(
                last["status"],
                "failed",
                "{last}\n{}",
                std::fs::read_to_string(&log_b).unwrap()
            );
            last["status"] == "succeeded"
        },
        "the resumed job to succeed",
    );
    assert_eq!(last["attempts"], 2, "{last}");
    let ev = events(&s, &k, &id);
    let resumed = ev.iter().find(|m| m.contains("Resuming from the checkpoint at step")).unwrap();
    let step: u64 = resumed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(step >= step_at_kill, "{resumed} vs {step_at_kill}");
    // Hugging Face's Trainer restored its own state: it goes on from there.
    let from = format!("steps {}..{total}", step + 1);
    assert!(ev.iter().any(|m| m.contains(&from)), "no `{from}` in {ev:#?}");
    assert_eq!(last["progress"]["step"], total, "{last}");
}

/// A stand-in for Python that passes the worker's import check and then
/// runs `body` as the trainer (for the faults no real GPU is needed for).
fn fake_python(dir: &Path, body: &str) -> PathBuf {
    let py = dir.join("python3");
    let text = format!(
        "#!/bin/sh\nif [ \"$1\" = -c ]; then echo 'torch 0 (stand-in)'; exit 0; fi\n{body}\n"
    );
    std::fs::write(&py, text).unwrap();
    let exec = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(&py, exec).unwrap();
    py
}

#[test]
fn a_trl_worker_that_loses_its_gpu_exits_and_the_job_is_requeued_not_failed() {
    let Node { tmp, model, k, kw, s, .. } = node("2");
    let fid = upload(&s, &k, "t.jsonl", &chat_jsonl(8)).1["id"].as_str().unwrap().to_string();
    let (st, j, _) =
        post(&s, "/v1/fine_tuning/jobs", &k, json!({"model": model, "training_file": fid}));
    assert_eq!(st, 200, "{j}");
    let id = j["id"].as_str().unwrap().to_string();

    // The trainer starts, then the GPU fails: exit status 75.
    let lost = fake_python(
        tmp.path(),
        "echo 'forja-event {\"event\":\"start\",\"total_steps\":4,\"steps_per_epoch\":2,\"trainable_params\":10,\"resumed_from\":0}'\n\
         echo 'error: the GPU failed during training: CUDA error: unspecified launch failure' >&2\nexit 75",
    );
    let log = tmp.path().join("w.log");
    let o = trl_worker(&s, &kw, &model, lost.to_str().unwrap(), "w-gpu", &log).wait().unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(o.code(), Some(1), "{err}");
    assert!(
        err.lines().last().unwrap().contains("the trainer lost its GPU (the GPU failed during training: CUDA error: unspecified launch failure)"),
        "{err}"
    );
    let j = job_status(&s, &k, &id);
    assert_eq!(j["status"], "running", "left to its lease, not failed: {j}");
    wait_for(
        Duration::from_secs(30),
        || job_status(&s, &k, &id)["status"] == "queued",
        "the job to be requeued when its lease expires",
    );

    // A trainer that fails on its own fails the job with its last words
    // (the requeued job first, then a new one); progress lines that point
    // outside the job's directory are refused the same way.
    let cases = [
        (
            "echo 'ValueError: rank must be positive' >&2\nexit 1",
            "the TRL trainer exited with status 1: ValueError: rank must be positive",
        ),
        (
            "echo 'forja-event {\"event\":\"checkpoint\",\"step\":1,\"path\":\"../../x\"}'\nsleep 5",
            "printed a bad progress line: checkpoint path `../../x` is not under the output",
        ),
    ];
    let mut job = id;
    for (i, (body, want)) in cases.into_iter().enumerate() {
        if i > 0 {
            let (st, j, _) =
                post(&s, "/v1/fine_tuning/jobs", &k, json!({"model": model, "training_file": fid}));
            assert_eq!(st, 200, "{j}");
            job = j["id"].as_str().unwrap().to_string();
        }
        let dir = tmp.path().join(format!("case-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let py = fake_python(&dir, body);
        let mut w = trl_worker(&s, &kw, &model, py.to_str().unwrap(), "w-fail", &dir.join("log"));
        let _kill = KillOnDrop(&mut w);
        let j = wait_job(&s, &k, &job, "failed", Duration::from_secs(60));
        assert!(j["error"]["message"].as_str().unwrap().contains(want), "{j}");
    }
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
