//! `forja serve`, `forja worker`, `forja keys`/`tenants`/`jobs` end to end:
//! a real server on loopback with its SQLite file, real worker processes
//! training a tiny model, kill -9 of a worker and of the server.

use crate::common;

use common::server::*;
use common::{forja, tiny_gguf};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

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
    assert_eq!(
        post(
            &s,
            "/v1/worker/lease",
            &ka,
            json!({"worker": "x", "capacity": {"gpus": 0, "memory_gb": 1, "models": null}})
        )
        .0,
        403
    );

    // An invalid JSONL upload names the line and the reason.
    let (st, e) = upload(
        &s,
        &ka,
        "bad.jsonl",
        &format!(
            "{}\n{{\"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}]}}",
            chat_jsonl(1)
        ),
    );
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["error"]["code"], "invalid_file");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("bad.jsonl: line 2: no assistant message"),
        "{e}"
    );

    let (st, f) = upload(&s, &ka, "train.jsonl", &chat_jsonl(24));
    assert_eq!((st, f["object"].as_str()), (200, Some("file")), "{f}");
    let fid = f["id"].as_str().unwrap();

    // Unknown base model and bad hyperparameters are refused up front.
    let (st, e, _) =
        post(&s, "/v1/fine_tuning/jobs", &ka, json!({"model": "gpt-9", "training_file": fid}));
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("model")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("unknown base model `gpt-9`"), "{e}");
    let (st, e, _) = post(
        &s,
        "/v1/fine_tuning/jobs",
        &ka,
        json!({"model": model, "training_file": fid, "hyperparameters": {"n_epochs": 0}}),
    );
    assert_eq!(st, 400, "{e}");
    let (st, e, _) = post(
        &s,
        "/v1/fine_tuning/jobs",
        &ka,
        json!({"model": model, "training_file": "file-nope"}),
    );
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
    let (st, e, _) =
        post(&s, "/v1/fine_tuning/jobs", &kb, json!({"model": model, "training_file": fid}));
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("training_file")), "{e}");

    let j = wait_job(&s, &ka, &id, "succeeded", Duration::from_secs(300));
    assert!(j["fine_tuned_model"].as_str().unwrap().contains(":demo:"), "{j}");
    assert!(j["trained_tokens"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["hyperparameters"]["n_epochs"], 2);
    let (_, ev) = get(&s, &format!("/v1/fine_tuning/jobs/{id}/events?limit=100"), &ka);
    let msgs: Vec<&str> =
        ev["data"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert!(msgs.iter().any(|m| m.starts_with("Step ")), "{msgs:?}");
    assert!(msgs[0].contains("successfully completed"), "{msgs:?}");
    let (_, ck) = get(&s, &format!("/v1/fine_tuning/jobs/{id}/checkpoints"), &ka);
    assert!(!ck["data"].as_array().unwrap().is_empty(), "{ck}");
    // The loss chart, drawn from the job's events.
    let (st, png) = get_bytes(&s, &format!("/v1/fine_tuning/jobs/{id}/loss.png"), &ka);
    assert_eq!((st, &png[..8]), (200, &b"\x89PNG\r\n\x1a\n"[..]));
    assert_eq!(get_bytes(&s, &format!("/v1/fine_tuning/jobs/{id}/loss.png"), &kb).0, 404);

    // The adapter is in the artifact store under its hash.
    let sha = j["adapter_sha256"].as_str().unwrap();
    assert!(data.join("artifacts/sha256").join(&sha[..2]).join(sha).is_file());
    // Cancelling a finished job is a conflict, not a silent success.
    assert_eq!(post(&s, &format!("/v1/fine_tuning/jobs/{id}/cancel"), &ka, json!({})).0, 409);
    // The CLI sees the same state.
    let o = forja(&["jobs", "list", "--data-dir", data.to_str().unwrap()], None);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&id));
}

#[test]
fn threshold_trigger_creates_exactly_one_job_per_crossing_under_concurrent_posts() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    tenant(&data, "acme", &["--threshold", "20"]);
    let k = key(&data, &["--tenant", "acme"]);
    let s = serve(&data, &model, &["--workers", "0"], &[]);
    let (threads, per) = (8, 10);
    let url = s.url.clone();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (url, k) = (url.clone(), k.clone());
            std::thread::spawn(move || {
                let a = agent();
                let mut jobs = Vec::new();
                for i in 0..per {
                    let body = json!({"prompt": format!("resume la sesión {t}-{i}"), "correction": format!("El pleno aprobó el punto {t}-{i} por unanimidad.")});
                    let mut r = a
                        .post(format!("{url}/v1/feedback"))
                        .header("authorization", format!("Bearer {k}"))
                        .header("content-type", "application/json")
                        .send(body.to_string().as_bytes())
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
                    if let Some(id) = v["job"]["id"].as_str() {
                        jobs.push(id.to_string());
                    }
                }
                jobs
            })
        })
        .collect();
    let created: Vec<String> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(created.len(), threads * per / 20, "{created:?}");
    let (_, st) = get(&s, "/v1/learning/status", &k);
    assert_eq!(
        st["pending"],
        json!({"curated": 0, "rejected": 0, "claimed": 80, "held": 0}),
        "{st}"
    );
    assert_eq!(st["recent_jobs"].as_array().unwrap().len(), 4, "{st}");
    // Each job is validated into a training file of its own 20 examples.
    for id in &created {
        let j = wait_job(&s, &k, id, "queued", Duration::from_secs(30));
        assert_eq!(j["trigger"], "threshold");
        let f = j["training_file"].as_str().unwrap();
        let lines = get(&s, &format!("/v1/files/{f}"), &k).1["bytes"].as_u64().unwrap();
        assert!(lines > 0);
    }
    // A refused example is kept with its reason and not counted.
    let (st, v, _) =
        post(&s, "/v1/feedback", &k, json!({"prompt": "hola", "output": "x", "rating": 1}));
    assert_eq!(st, 200);
    assert_eq!(v["data"][0]["status"], "rejected", "{v}");
    let (st, e, _) = post(&s, "/v1/feedback", &k, json!({"prompt": "hola", "rating": 7}));
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("rating")), "{e}");
}

#[test]
fn quota_blocks_with_429_and_frees() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    tenant(&data, "acme", &["--max-trainings", "1", "--quota-window-s", "3"]);
    let k = key(&data, &["--tenant", "acme"]);
    let s = serve(&data, &model, &["--workers", "0"], &[]);
    let fid = upload(&s, &k, "t.jsonl", &chat_jsonl(4)).1["id"].as_str().unwrap().to_string();
    let job = json!({"model": model, "training_file": fid});
    assert_eq!(post(&s, "/v1/fine_tuning/jobs", &k, job.clone()).0, 200);
    let (st, e, retry) = post(&s, "/v1/fine_tuning/jobs", &k, job.clone());
    assert_eq!((st, e["error"]["code"].as_str()), (429, Some("quota_exceeded")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("1 trainings per 3 seconds"), "{e}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    let (_, st) = get(&s, "/v1/learning/status", &k);
    assert_eq!(st["quota"]["used"], 1, "{st}");
    std::thread::sleep(Duration::from_secs(retry + 1));
    let (st, j, _) = post(&s, "/v1/fine_tuning/jobs", &k, job);
    assert_eq!(st, 200, "the quota freed: {j}");
}

fn spawn_worker(s: &Server, token: &str, model: &Path, name: &str) -> Child {
    worker_cmd(s, token, model, name, &[]).spawn().unwrap()
}

/// Steps of [`long_job`].
const LONG_STEPS: u64 = 64 * 40;

/// A job long enough to be interrupted: 64 examples, batch 1, 40 epochs.
fn long_job(s: &Server, k: &str, model: &Path) -> String {
    let fid = upload(s, k, "t.jsonl", &chat_jsonl(64)).1["id"].as_str().unwrap().to_string();
    let (st, j, _) = post(
        s,
        "/v1/fine_tuning/jobs",
        k,
        json!({"model": model, "training_file": fid, "hyperparameters": {"n_epochs": 40, "batch_size": 1, "lora_r": 4, "lora_targets": "q_proj,v_proj"}}),
    );
    assert_eq!(st, 200, "{j}");
    j["id"].as_str().unwrap().to_string()
}

#[test]
fn a_killed_remote_worker_is_replaced_and_the_job_resumes_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let kw = key(&data, &["--worker"]);
    let s = serve(&data, &model, &["--workers", "0", "--lease-ttl", "2"], &[]);
    let id = long_job(&s, &k, &model);
    let mut a = spawn_worker(&s, &kw, &model, "worker-a");
    let ck_path = format!("/v1/fine_tuning/jobs/{id}/checkpoints");
    wait_for(
        Duration::from_secs(120),
        || !get(&s, &ck_path, &k).1["data"].as_array().unwrap().is_empty(),
        "a checkpoint",
    );
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    let at_kill = job_status(&s, &k, &id);
    assert_eq!(at_kill["status"], "running", "{at_kill}");
    let step_at_kill = get(&s, &ck_path, &k).1["data"][0]["step_number"].as_u64().unwrap();
    let mut b = spawn_worker(&s, &kw, &model, "worker-b");
    let j = wait_job(&s, &k, &id, "succeeded", Duration::from_secs(600));
    let _ = b.kill();
    let _ = b.wait();
    assert_eq!(j["attempts"], 2, "{j}");
    let ev = events(&s, &k, &id);
    let pos = |p: &str| {
        ev.iter().position(|m| m.contains(p)).unwrap_or_else(|| panic!("no `{p}` in {ev:#?}"))
    };
    assert!(pos("Worker worker-a started") < pos("stopped renewing its lease"));
    assert!(pos("stopped renewing its lease") < pos("Worker worker-b started the job (attempt 2)"));
    let resumed = &ev[pos("Resuming from the checkpoint at step")];
    let step: u64 = resumed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(step >= step_at_kill, "{resumed} vs {step_at_kill}");
    assert!(ev.iter().any(|m| m.contains(&format!("steps {}..{LONG_STEPS}", step + 1))), "{ev:#?}");
    assert_eq!(j["progress"]["step"], LONG_STEPS, "{j}");
}

#[test]
fn kill_9_of_the_server_during_a_run_ends_consistently() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let s = serve(&data, &model, &["--workers", "1", "--lease-ttl", "2"], &[]);
    let id = long_job(&s, &k, &model);
    let ck_path = format!("/v1/fine_tuning/jobs/{id}/checkpoints");
    wait_for(
        Duration::from_secs(120),
        || !get(&s, &ck_path, &k).1["data"].as_array().unwrap().is_empty(),
        "a checkpoint",
    );
    drop(s); // SIGKILL, mid-run
    let s = serve(&data, &model, &["--workers", "1", "--lease-ttl", "2"], &[]);
    let j = wait_job(&s, &k, &id, "succeeded", Duration::from_secs(600));
    assert_eq!(j["attempts"], 2, "{j}");
    assert!(events(&s, &k, &id).iter().any(|m| m.contains("Resuming from the checkpoint")));
    let (_, l) = get(&s, "/v1/fine_tuning/jobs", &k);
    assert_eq!(l["data"].as_array().unwrap().len(), 1, "no job lost or duplicated: {l}");
}

/// A one-connection-at-a-time HTTP receiver: answers each request with the
/// next status and reports (signature header, body).
fn webhook_receiver(statuses: Vec<u16>) -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for status in statuses {
            let (mut c, _) = l.accept().unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            let (mut sig, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    match k.to_ascii_lowercase().as_str() {
                        "x-forja-signature" => sig = v.trim().to_string(),
                        "content-length" => len = v.trim().parse().unwrap(),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            use std::io::Write as _;
            write!(c, "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            tx.send((sig, String::from_utf8(body).unwrap())).unwrap();
        }
    });
    (url, rx)
}

#[test]
fn terminal_states_are_posted_to_a_signed_webhook_with_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let (hook, rx) = webhook_receiver(vec![500, 200]);
    tenant(&data, "acme", &["--webhook-url", &hook, "--webhook-secret", "s3cret"]);
    let k = key(&data, &["--tenant", "acme"]);
    let s = serve(&data, &model, &["--workers", "0"], &[]);
    let fid = upload(&s, &k, "t.jsonl", &chat_jsonl(4)).1["id"].as_str().unwrap().to_string();
    let id = post(&s, "/v1/fine_tuning/jobs", &k, json!({"model": model, "training_file": fid})).1
        ["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        post(&s, &format!("/v1/fine_tuning/jobs/{id}/cancel"), &k, json!({})).1["status"],
        "cancelled"
    );
    let first = rx.recv_timeout(Duration::from_secs(30)).expect("a delivery");
    let second = rx.recv_timeout(Duration::from_secs(30)).expect("a retry after the 500");
    assert_eq!(first.1, second.1, "the retry sends the same event");
    for (sig, body) in [&first, &second] {
        assert!(forja_control::webhook::verify("s3cret", sig, body), "{sig} {body}");
        assert!(!forja_control::webhook::verify("other", sig, body));
    }
    let v: Value = serde_json::from_str(&second.1).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["data"]["id"].as_str()),
        (Some("fine_tuning.job.cancelled"), Some(id.as_str()))
    );
}

#[test]
fn a_busy_database_answers_503_and_a_full_one_507() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let s = serve(
        &data,
        &model,
        &["--workers", "0", "--db-busy-timeout-ms", "300"],
        // Room for the schema (12 migrations: 108 pages), the scheduler's
        // task states and a few examples.
        &[("FORJA_DB_MAX_PAGES", "134")],
    );
    let words = [
        "el",
        "pleno",
        "aprobó",
        "moción",
        "concejal",
        "votos",
        "favor",
        "acta",
        "sesión",
        "punto",
        "orden",
        "día",
        "alcaldía",
        "propuesta",
        "presupuesto",
        "obras",
    ];
    let fb = |i: usize| {
        let text: Vec<&str> =
            (0..6000).map(|j| words[(i * 7 + j * j * 31 + j / 3) % words.len()]).collect();
        json!({"prompt": format!("p{i}"), "correction": text.join(" ")})
    };
    {
        let mut lock = std::process::Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import sqlite3,time\nc=sqlite3.connect({:?},isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\nprint('locked',flush=True)\ntime.sleep(60)",
                data.join("forja.db").display().to_string()
            ))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(lock.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let (st, e, retry) = post(&s, "/v1/feedback", &k, fb(0));
        let _ = lock.kill();
        let _ = lock.wait();
        assert_eq!(
            (st, e["error"]["code"].as_str(), retry.as_deref()),
            (503, Some("database_busy"), Some("1")),
            "{e}"
        );
    }
    let mut full = None;
    for i in 1..100 {
        let (st, e, _) = post(&s, "/v1/feedback", &k, fb(i));
        if st != 200 {
            full = Some((st, e));
            break;
        }
    }
    let (st, e) = full.expect("the capped database fills up");
    assert_eq!((st, e["error"]["code"].as_str()), (507, Some("storage_full")), "{e}");
    // Nothing half-written: every stored example is whole and counted.
    let (_, status) = get(&s, "/v1/learning/status", &k);
    assert!(status["pending"]["curated"].as_u64().unwrap() >= 1, "{status}");
}

/// A POST with extra headers: (status, body).
fn post_with(
    s: &Server,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, Value) {
    let mut req = agent()
        .post(format!("{}{path}", s.url))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send(body.to_string()).unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Regression (hardening #8): a second worker key using the first worker's
/// name could heartbeat, inject an event the tenant read, and finish the
/// job. A lease answers only to its key and its token; the artifact
/// upload checks the hash; signed URLs name the configured public URL.
#[test]
fn a_worker_cannot_store_an_artifact_under_a_wrong_hash_or_act_without_the_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let kw = key(&data, &["--worker"]);
    let kw2 = key(&data, &["--worker"]);
    let s = serve(
        &data,
        &model,
        &["--workers", "0", "--public-url", "http://forja.internal:1234"],
        &[],
    );
    let fid = upload(&s, &k, "t.jsonl", &chat_jsonl(4)).1["id"].as_str().unwrap().to_string();
    let id = post(&s, "/v1/fine_tuning/jobs", &k, json!({"model": model, "training_file": fid})).1
        ["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_job(&s, &k, &id, "queued", Duration::from_secs(30));
    let (st, lease) = post_with(
        &s,
        "/v1/worker/lease",
        &kw,
        &[("host", "evil.example")],
        json!({"worker": "probe", "capacity": {"gpus": 0, "memory_gb": 8, "models": null}}),
    );
    assert_eq!((st, lease["job"]["id"].as_str()), (200, Some(id.as_str())), "{lease}");
    let token = lease["token"].as_str().unwrap().to_string();
    // The signed URL names the public URL, never the request's Host; with
    // the node's own address it works without a key, tampered it does not.
    let url = lease["urls"][lease["training_sha"].as_str().unwrap()].as_str().unwrap().to_string();
    assert!(url.starts_with("http://forja.internal:1234/v1/artifacts/"), "{url}");
    let url = url.replace("http://forja.internal:1234", &s.url);
    assert_eq!(agent().get(&url).call().unwrap().status().as_u16(), 200);
    assert_eq!(agent().get(url.replace("sig=", "sig=0")).call().unwrap().status().as_u16(), 403);
    let put = |key: &str, worker: &str, tok: &str, sha: &str, body: &[u8]| {
        let mut r = agent()
            .put(format!("{}/v1/worker/jobs/{id}/artifacts", s.url))
            .header("authorization", format!("Bearer {key}"))
            .header("x-forja-sha256", sha)
            .header("x-forja-worker", worker)
            .header("x-forja-lease", tok)
            .send(body)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let (st, body) = put(&kw, "probe", &token, &"ab".repeat(32), b"adapter bytes");
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("hash_mismatch") && body.contains("upload it again"), "{body}");
    let sha = forja_store::sha256_hex(b"x");
    assert_eq!(put(&kw, "intruder", &token, &sha, b"x").0, 409, "another worker name");
    assert_eq!(put(&kw2, "probe", &token, &sha, b"x").0, 409, "another worker key, same name");
    assert_eq!(put(&kw, "probe", "0123", &sha, b"x").0, 409, "a wrong token");
    let lease_h = [("x-forja-lease", token.as_str())];
    let finish = json!({"worker": "probe", "outcome": {
        "status": "succeeded", "trained_tokens": 1, "fine_tuned_model": "x", "adapter_sha256": "cd".repeat(32),
        "result": {"adapter_files": {}, "steps": 1, "stopped_by": "completed", "kept_step": 1, "best_val_loss": null, "first_loss": null, "last_loss": null, "seconds": 0.0}}});
    let (st, e) =
        post_with(&s, &format!("/v1/worker/jobs/{id}/finish"), &kw, &lease_h, finish.clone());
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("not_found")),
        "an adapter that was never uploaded: {e}"
    );
    // The impersonation of the report: same name, another key, the real token.
    let hb = json!({"worker": "probe", "step": 1, "total_steps": 2});
    assert_eq!(
        post_with(&s, &format!("/v1/worker/jobs/{id}/heartbeat"), &kw2, &lease_h, hb.clone()).0,
        409
    );
    let ev = json!({"worker": "probe", "level": "info", "message": "injected by an intruder", "data": null});
    assert_eq!(
        post_with(&s, &format!("/v1/worker/jobs/{id}/events"), &kw2, &lease_h, ev.clone()).0,
        409
    );
    assert_eq!(
        post_with(&s, &format!("/v1/worker/jobs/{id}/finish"), &kw2, &lease_h, finish).0,
        409
    );
    // Without the token: a clear 400.
    let (st, e) = post_with(&s, &format!("/v1/worker/jobs/{id}/heartbeat"), &kw, &[], hb.clone());
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("x-forja-lease")), "{e}");
    assert_eq!(post_with(&s, &format!("/v1/worker/jobs/{id}/heartbeat"), &kw, &lease_h, hb).0, 200);
    let (_, events) = get(&s, &format!("/v1/fine_tuning/jobs/{id}/events?limit=100"), &k);
    assert!(!events.to_string().contains("injected"), "{events}");
    assert_eq!(job_status(&s, &k, &id)["status"], "running");
}

/// The official `openai` client (installed by `make setup-test` under
/// FORJA_HOME/py) uploads, creates a job, follows it and reads events.
#[test]
fn the_official_openai_client_fine_tunes_against_forja() {
    let Some(py) = common::python_path_with("openai") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_gguf(tmp.path());
    let data = tmp.path().join("data");
    let k = key(&data, &["--tenant", "acme"]);
    let s = serve(&data, &model, &["--workers", "1"], &[]);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openai-finetune-check.py");
    let o = std::process::Command::new("python3")
        .arg(script)
        .args([&s.url, &k, model.to_str().unwrap()])
        .env("PYTHONPATH", py)
        .output()
        .unwrap();
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}");
    assert!(out.contains("succeeded"), "{out}");
}
