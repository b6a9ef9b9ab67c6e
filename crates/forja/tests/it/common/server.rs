//! A real `forja serve` on loopback for end-to-end tests, and small HTTP
//! and CLI helpers around it.
#![allow(dead_code)]

use super::{forja, forja_cmd, stderr};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines of a server's stderr kept for a failing test's message.
const LOG_LINES: usize = 200;

/// A running `forja serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The last [`LOG_LINES`] lines of its stderr.
    log: Arc<Mutex<std::collections::VecDeque<String>>>,
}

impl Server {
    /// Whether it still runs, and the tail of its stderr: what a test says
    /// when the server did not do what it waited for.
    pub fn report(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(Some(st)) => format!("exited ({st})"),
            Ok(None) => "still running".to_string(),
            Err(e) => format!("state unknown: {e}"),
        };
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let lines: Vec<&str> = log.iter().map(|l| l.trim_end()).collect();
        format!("forja {state}; its stderr (last {} lines):\n{}", lines.len(), lines.join("\n"))
    }

    /// [`wait_for`], with the server's state and stderr in the message if
    /// it times out.
    pub fn wait(&mut self, limit: Duration, mut f: impl FnMut(&Server) -> bool, what: &str) {
        let t = Instant::now();
        while !f(self) {
            if t.elapsed() >= limit {
                panic!("timed out waiting for {what}; {}", self.report());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(data: &Path, model: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
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
    let mut s = spawn(&args, env, |_| {});
    s.wait(
        Duration::from_secs(60),
        |s| get_status(s, "/ready", "") == 200,
        "the server to be ready",
    );
    s
}

/// Starts `forja ARGS` (a `serve` or `up`), waits for its "listening on"
/// line and hands every later stderr line to `lines` (on a thread that
/// keeps draining stderr so the process never blocks on a full pipe); the
/// last lines are also kept for [`Server::report`].
pub fn spawn(
    args: &[&str],
    env: &[(&str, &str)],
    mut lines: impl FnMut(&str) + Send + 'static,
) -> Server {
    let mut cmd = forja_cmd(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let log = Arc::new(Mutex::new(std::collections::VecDeque::new()));
    let keep = {
        let log = log.clone();
        move |line: &str| {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(line.to_string());
        }
    };
    let mut url = None;
    let mut line = String::new();
    while url.is_none() {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            let log = log.lock().unwrap_or_else(|e| e.into_inner());
            let log: Vec<&str> = log.iter().map(|l| l.trim_end()).collect();
            panic!("forja {} exited before listening:\n{}", args[0], log.join("\n"));
        }
        keep(&line);
        if let Some(rest) = line.split("listening on ").nth(1) {
            let u = rest.split_whitespace().next().unwrap_or_default();
            let port = u.strip_prefix("http://").and_then(|a| a.rsplit_once(':'));
            assert!(
                port.is_some_and(|(_, p)| p.parse::<u16>().is_ok()),
                "forja {} printed a broken address line: {line:?}",
                args[0]
            );
            url = Some(u.to_string());
        }
    }
    std::thread::spawn(move || {
        let mut line = String::new();
        while matches!(err.read_line(&mut line), Ok(n) if n > 0) {
            keep(&line);
            lines(&line);
            line.clear();
        }
    });
    Server { child, url: url.unwrap(), log }
}

pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

pub fn call(
    s: &Server,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Vec<u8>>,
    ctype: &str,
) -> (u16, Value, Option<String>) {
    let url = format!("{}{path}", s.url);
    let a = agent();
    let auth = format!("Bearer {key}");
    let mut resp = match (method, body) {
        ("GET", _) => a.get(&url).header("authorization", &auth).call(),
        ("DELETE", _) => a.delete(&url).header("authorization", &auth).call(),
        ("PATCH", b) => a
            .patch(&url)
            .header("authorization", &auth)
            .header("content-type", ctype)
            .send(&b.unwrap_or_default()[..]),
        (_, b) => a
            .post(&url)
            .header("authorization", &auth)
            .header("content-type", ctype)
            .send(&b.unwrap_or_default()[..]),
    }
    .unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), retry)
}

/// POSTs a streaming request; the `data:` payloads of its events, in order
/// (the status must be 200).
pub fn sse(s: &Server, path: &str, key: &str, body: Value) -> Vec<String> {
    let (st, v, _) = post(s, path, key, body);
    assert_eq!(st, 200, "{v}");
    let text = v.as_str().expect("an event stream is not JSON").to_string();
    text.lines().filter_map(|l| l.strip_prefix("data: ").map(str::to_string)).collect()
}

pub fn get_status(s: &Server, path: &str, key: &str) -> u16 {
    let a = agent();
    a.get(format!("{}{path}", s.url))
        .header("authorization", format!("Bearer {key}"))
        .call()
        .map_or(0, |r| r.status().as_u16())
}

/// A GET whose body is bytes (a download).
pub fn get_bytes(s: &Server, path: &str, key: &str) -> (u16, Vec<u8>) {
    let mut resp = agent()
        .get(format!("{}{path}", s.url))
        .header("authorization", format!("Bearer {key}"))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap())
}

pub fn get(s: &Server, path: &str, key: &str) -> (u16, Value) {
    let (st, v, _) = call(s, "GET", path, key, None, "");
    (st, v)
}

pub fn post(s: &Server, path: &str, key: &str, body: Value) -> (u16, Value, Option<String>) {
    call(s, "POST", path, key, Some(body.to_string().into_bytes()), "application/json")
}

pub fn upload(s: &Server, key: &str, name: &str, content: &str) -> (u16, Value) {
    let boundary = "forjaboundary7";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/jsonl\r\n\r\n{content}\r\n--{boundary}--\r\n"
    );
    let (st, v, _) = call(
        s,
        "POST",
        "/v1/files",
        key,
        Some(body.into_bytes()),
        &format!("multipart/form-data; boundary={boundary}"),
    );
    (st, v)
}

/// A key from `forja keys create ARGS` (a tenant key creates its tenant
/// with `--create-tenant`: keys never create tenants silently).
pub fn key(data: &Path, args: &[&str]) -> String {
    let mut a = vec!["keys", "create", "--data-dir", data.to_str().unwrap()];
    a.extend(args);
    if args.contains(&"--tenant") {
        a.push("--create-tenant");
    }
    let o = forja(&a, None);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

pub fn tenant(data: &Path, name: &str, flags: &[&str]) {
    let mut a = vec!["tenants", "create", name, "--data-dir", data.to_str().unwrap()];
    a.extend(flags);
    let o = forja(&a, None);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `forja tenants set NAME FLAGS` on the data directory; it must succeed.
pub fn set_tenant(data: &Path, name: &str, flags: &[&str]) {
    let mut a = vec!["tenants", "set", name, "--data-dir", data.to_str().unwrap()];
    a.extend(flags);
    let o = forja(&a, None);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `forja worker` leasing from `s` with `token`, training `model` under
/// `name`, one thread, plus `extra` flags (output not captured).
pub fn worker_cmd(
    s: &Server,
    token: &str,
    model: &Path,
    name: &str,
    extra: &[&str],
) -> std::process::Command {
    let mut args = vec!["worker", "--control", &s.url, "--token", token];
    args.extend(["--model", model.to_str().unwrap(), "--name", name, "-t", "1"]);
    args.extend(extra);
    let mut cmd = crate::common::forja_cmd(&args);
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    cmd
}

/// Chat examples the tiny model learns in a few steps.
pub fn chat_jsonl(n: usize) -> String {
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

pub fn job_status(s: &Server, key: &str, id: &str) -> Value {
    let (st, j) = get(s, &format!("/v1/fine_tuning/jobs/{id}"), key);
    assert_eq!(st, 200, "{j}");
    j
}

pub fn wait_job(s: &Server, key: &str, id: &str, want: &str, limit: Duration) -> Value {
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

/// A job's event messages, oldest first.
pub fn events(s: &Server, key: &str, id: &str) -> Vec<String> {
    let (_, ev) = get(s, &format!("/v1/fine_tuning/jobs/{id}/events?limit=1000"), key);
    ev["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}
