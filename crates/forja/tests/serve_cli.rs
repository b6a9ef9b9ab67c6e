//! `forja serve`, `forja worker`, `forja keys`/`tenants`/`jobs` end to end:
//! a real server on loopback with its SQLite file, real worker processes
//! training a tiny model, kill -9 of a worker and of the server.

mod common;

use common::{forja, forja_cmd, stderr, tiny_gguf};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running `forja serve`, killed on drop.
struct Server {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, model: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut args = vec![
        "serve",
        "--port",
        "0",
        "--data-dir",
        data.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--tick-ms",
        "200",
        "-t",
        "1",
    ];
    args.extend(extra);
    let mut cmd = forja_cmd(&args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut url = None;
    let mut line = String::new();
    while url.is_none() {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("forja serve exited: {line}");
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            url = Some(rest.split_whitespace().next().unwrap().to_string());
        }
    }
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    let s = Server { child, url: url.unwrap(), data: data.to_path_buf() };
    wait_for(Duration::from_secs(60), || get_status(&s, "/ready", "") == 200, "the server to be ready");
    s
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn call(s: &Server, method: &str, path: &str, key: &str, body: Option<Vec<u8>>, ctype: &str) -> (u16, Value, Option<String>) {
    let url = format!("{}{path}", s.url);
    let a = agent();
    let auth = format!("Bearer {key}");
    let mut resp = match (method, body) {
        ("GET", _) => a.get(&url).header("authorization", &auth).call(),
        (_, b) => a.post(&url).header("authorization", &auth).header("content-type", ctype).send(&b.unwrap_or_default()[..]),
    }
    .unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), retry)
}

fn get_status(s: &Server, path: &str, key: &str) -> u16 {
    let a = agent();
    a.get(format!("{}{path}", s.url)).header("authorization", format!("Bearer {key}")).call().map_or(0, |r| r.status().as_u16())
}

fn get(s: &Server, path: &str, key: &str) -> (u16, Value) {
    let (st, v, _) = call(s, "GET", path, key, None, "");
    (st, v)
}

fn post(s: &Server, path: &str, key: &str, body: Value) -> (u16, Value, Option<String>) {
    call(s, "POST", path, key, Some(body.to_string().into_bytes()), "application/json")
}

fn upload(s: &Server, key: &str, name: &str, content: &str) -> (u16, Value) {
    let boundary = "forjaboundary7";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/jsonl\r\n\r\n{content}\r\n--{boundary}--\r\n"
    );
    let (st, v, _) = call(s, "POST", "/v1/files", key, Some(body.into_bytes()), &format!("multipart/form-data; boundary={boundary}"));
    (st, v)
}

fn key(data: &Path, args: &[&str]) -> String {
    let mut a = vec!["keys", "create", "--data-dir", data.to_str().unwrap()];
    a.extend(args);
    let o = forja(&a, None);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn tenant(data: &Path, name: &str, flags: &[&str]) {
    let mut a = vec!["tenants", "create", name, "--data-dir", data.to_str().unwrap()];
    a.extend(flags);
    let o = forja(&a, None);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Chat examples the tiny model learns in a few steps.
fn chat_jsonl(n: usize) -> String {
    let words = ["hello", "world", "forja", "tokenizer"];
    (0..n)
        .map(|i| {
            json!({"messages": [
                {"role": "user", "content": format!("{} {}", words[i % 4], words[(i / 4) % 4])},
                {"role": "assistant", "content": format!("{} {}", words[(i + 1) % 4], words[(i + 2) % 4])},
            ]})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn job_status(s: &Server, key: &str, id: &str) -> Value {
    let (st, j) = get(s, &format!("/v1/fine_tuning/jobs/{id}"), key);
    assert_eq!(st, 200, "{j}");
    j
}

fn wait_job(s: &Server, key: &str, id: &str, want: &str, limit: Duration) -> Value {
    let mut last = Value::Null;
    wait_for(
        limit,
        || {
            last = job_status(s, key, id);
            last["status"] == want
        },
        &format!("job {id} to be {want}"),
    );
    last
}

#[test]
fn files_jobs_and_isolation_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let ka = key(&data, &["--tenant", "acme"]);
    let kb = key(&data, &["--tenant", "beta"]);
    let kw = key(&data, &["--worker"]);
    assert!(ka.starts_with("forja-sk-") && kw.starts_with("forja-wk-"), "{ka} {kw}");
    let s = serve(&data, &model, &["--workers", "1"], &[]);

    // Auth: no key, a bad key, a worker key on tenant routes.
    assert_eq!(get(&s, "/v1/fine_tuning/jobs", "").0, 401);
    assert_eq!(get(&s, "/v1/fine_tuning/jobs", "forja-sk-nope").0, 401);
    assert_eq!(get(&s, "/v1/fine_tuning/jobs", &kw).0, 403);
    assert_eq!(post(&s, "/v1/worker/lease", &ka, json!({"worker": "x", "capacity": {"gpus": 0, "memory_gb": 1, "models": null}})).0, 403);

    // An invalid JSONL upload names the line and the reason.
    let (st, e) = upload(&s, &ka, "bad.jsonl", &format!("{}\n{{\"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}]}}", chat_jsonl(1)));
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["error"]["code"], "invalid_file");
    assert!(e["error"]["message"].as_str().unwrap().contains("bad.jsonl: line 2: no assistant message"), "{e}");

    let (st, f) = upload(&s, &ka, "train.jsonl", &chat_jsonl(24));
    assert_eq!((st, f["object"].as_str()), (200, Some("file")), "{f}");
    let fid = f["id"].as_str().unwrap();

    // Unknown base model and bad hyperparameters are refused up front.
    let (st, e, _) = post(&s, "/v1/fine_tuning/jobs", &ka, json!({"model": "gpt-9", "training_file": fid}));
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("model")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("unknown base model `gpt-9`"), "{e}");
    let (st, e, _) = post(&s, "/v1/fine_tuning/jobs", &ka, json!({"model": model, "training_file": fid, "hyperparameters": {"n_epochs": 0}}));
    assert_eq!(st, 400, "{e}");
    let (st, e, _) = post(&s, "/v1/fine_tuning/jobs", &ka, json!({"model": model, "training_file": "file-nope"}));
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("training_file")), "{e}");

    let (st, j, _) = post(
        &s,
        "/v1/fine_tuning/jobs",
        &ka,
        json!({"model": model, "training_file": fid, "suffix": "demo", "hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 10}}),
    );
    assert_eq!(st, 200, "{j}");
    let id = j["id"].as_str().unwrap().to_string();
    assert_eq!(j["status"], "validating_files");

    // Tenant B sees none of it.
    assert_eq!(get(&s, &format!("/v1/fine_tuning/jobs/{id}"), &kb).0, 404);
    assert_eq!(get(&s, &format!("/v1/fine_tuning/jobs/{id}/events"), &kb).0, 404);
    assert_eq!(get(&s, &format!("/v1/files/{fid}"), &kb).0, 404);
    assert_eq!(post(&s, &format!("/v1/fine_tuning/jobs/{id}/cancel"), &kb, json!({})).0, 404);
    let (_, l) = get(&s, "/v1/fine_tuning/jobs", &kb);
    assert_eq!(l["data"].as_array().unwrap().len(), 0);
    let (st, e, _) = post(&s, "/v1/fine_tuning/jobs", &kb, json!({"model": model, "training_file": fid}));
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("training_file")), "{e}");

    let j = wait_job(&s, &ka, &id, "succeeded", Duration::from_secs(300));
    assert!(j["fine_tuned_model"].as_str().unwrap().contains(":demo:"), "{j}");
    assert!(j["trained_tokens"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["hyperparameters"]["n_epochs"], 2);
    let (_, ev) = get(&s, &format!("/v1/fine_tuning/jobs/{id}/events?limit=100"), &ka);
    let msgs: Vec<&str> = ev["data"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert!(msgs.iter().any(|m| m.starts_with("Step ")), "{msgs:?}");
    assert!(msgs[0].contains("successfully completed"), "{msgs:?}");
    let (_, ck) = get(&s, &format!("/v1/fine_tuning/jobs/{id}/checkpoints"), &ka);
    assert!(!ck["data"].as_array().unwrap().is_empty(), "{ck}");
    // The adapter is in the artifact store under its hash.
    let sha = j["adapter_sha256"].as_str().unwrap();
    assert!(data.join("artifacts/sha256").join(&sha[..2]).join(sha).is_file());
    // Cancelling a finished job is a conflict, not a silent success.
    assert_eq!(post(&s, &format!("/v1/fine_tuning/jobs/{id}/cancel"), &ka, json!({})).0, 409);
    // The CLI sees the same state.
    let o = forja(&["jobs", "list", "--data-dir", data.to_str().unwrap()], None);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&id));
}
