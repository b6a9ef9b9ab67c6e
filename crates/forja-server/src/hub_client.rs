//! [`HubClient`]: a node's side of the federation protocol, over HTTP and
//! optionally a SOCKS5 proxy (`socks5h://127.0.0.1:9050` for Tor: the
//! proxy resolves the hub's name). Every request is signed with the node's
//! key. Transport errors, 429 and 5xx are retried with exponential backoff
//! and full jitter; uploads are chunked and resume from what the hub holds,
//! so a node or hub that dies mid-upload loses at most one chunk.

use forja_control::{ControlError, Result};
use forja_core::identity::NodeKey;
use forja_fed::protocol::{self, NODE_HEADER, SIGNATURE_HEADER, TIME_HEADER};
use serde_json::Value;
use std::time::Duration;

/// How requests are retried.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Attempts per request (1: no retry).
    pub attempts: u32,
    /// The first backoff; it doubles each attempt, with full jitter.
    pub base: Duration,
    /// The longest backoff.
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 6, base: Duration::from_millis(250), max: Duration::from_secs(15) }
    }
}

/// What an upload did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Uploaded {
    /// Bytes the hub already held when it started (a resumed upload).
    pub resumed_from: u64,
    /// Chunks sent.
    pub chunks: u64,
    /// Whether the hub had the whole file already.
    pub already_there: bool,
}

/// A node's connection to a hub.
pub struct HubClient {
    base: String,
    key: NodeKey,
    agent: ureq::Agent,
    retry: Retry,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HubClient({} as {})", self.base, self.key.public_hex())
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl HubClient {
    /// A client of the hub at `base`, signing with `key`, through `proxy`
    /// (`socks5h://host:port`, `socks5://…`, `http://…`) when given.
    pub fn new(base: &str, key: NodeKey, proxy: Option<&str>, retry: Retry) -> Result<HubClient> {
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_global(Some(Duration::from_secs(600)));
        if let Some(p) = proxy {
            let p = ureq::Proxy::new(p).map_err(|e| {
                ControlError::invalid("proxy", format!("`{p}`: {e} (use socks5h://host:port)"))
            })?;
            cfg = cfg.proxy(Some(p));
        }
        Ok(HubClient {
            base: base.trim_end_matches('/').to_string(),
            key,
            agent: cfg.build().into(),
            retry,
        })
    }

    /// The node's public key.
    pub fn public_key(&self) -> String {
        self.key.public_hex()
    }

    fn http(&self, path: &str, reason: String) -> ControlError {
        ControlError::Http { url: format!("{}{path}", self.base), reason }
    }

    /// One signed request, retried on transport errors, 429 and 5xx:
    /// the status and body of the last answer.
    fn send(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        for attempt in 0..self.retry.attempts.max(1) {
            if attempt > 0 {
                let cap =
                    self.retry.base.saturating_mul(1 << (attempt - 1).min(16)).min(self.retry.max);
                let jittered = cap.mul_f64(rand::random::<f64>());
                std::thread::sleep(jittered);
            }
            let time = now();
            let sig = self.key.sign_hex(&protocol::request_message(method, path, time, body));
            let (node, t) = (self.key.public_hex(), time.to_string());
            let sent = match method {
                "GET" => self
                    .agent
                    .get(&url)
                    .header(NODE_HEADER, &node)
                    .header(TIME_HEADER, &t)
                    .header(SIGNATURE_HEADER, &sig)
                    .call(),
                "PUT" => self
                    .agent
                    .put(&url)
                    .header(NODE_HEADER, &node)
                    .header(TIME_HEADER, &t)
                    .header(SIGNATURE_HEADER, &sig)
                    .header("content-type", "application/octet-stream")
                    .send(body),
                _ => self
                    .agent
                    .post(&url)
                    .header(NODE_HEADER, &node)
                    .header(TIME_HEADER, &t)
                    .header(SIGNATURE_HEADER, &sig)
                    .header("content-type", "application/json")
                    .send(body),
            };
            match sent {
                Err(e) => last = e.to_string(),
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let bytes = resp
                        .body_mut()
                        .with_config()
                        .limit(1 << 30)
                        .read_to_vec()
                        .map_err(|e| self.http(path, e.to_string()))?;
                    if status == 429 || status >= 500 {
                        last = format!("the hub answered {status}");
                        continue;
                    }
                    return Ok((status, bytes));
                }
            }
        }
        Err(self
            .http(path, format!("gave up after {} attempts: {last}", self.retry.attempts.max(1))))
    }

    /// A JSON answer, or the hub's error message.
    fn json(&self, method: &str, path: &str, body: &[u8]) -> Result<Value> {
        let (status, bytes) = self.send(method, path, body)?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status != 200 {
            let msg = v["error"]["message"].as_str().unwrap_or("no error message");
            return Err(self.http(path, format!("the hub answered {status}: {msg}")));
        }
        Ok(v)
    }

    /// The hub's key and policy (unauthenticated).
    pub fn describe(&self) -> Result<Value> {
        self.json("GET", "/v1/federation/hub", b"")
    }

    /// Asks to join as `name`; the node is `pending` until an admin approves.
    pub fn join(&self, name: &str) -> Result<Value> {
        let pk = self.key.public_hex();
        let body = serde_json::json!({
            "name": name, "public_key": pk,
            "signature": self.key.sign_hex(&protocol::join_message(name, &pk)),
        });
        self.json("POST", "/v1/federation/join", body.to_string().as_bytes())
    }

    /// This node as the hub sees it (refused unless approved).
    pub fn whoami(&self) -> Result<Value> {
        self.json("GET", "/v1/federation/whoami", b"")
    }

    /// Uploads `bytes` (whose sha256 is `sha`) in chunks of `chunk` bytes,
    /// from what the hub holds already.
    pub fn upload(&self, sha: &str, bytes: &[u8], chunk: usize) -> Result<Uploaded> {
        let status = self.json("GET", &format!("/v1/federation/blobs/{sha}/status"), b"")?;
        if status["complete"] == true {
            return Ok(Uploaded { already_there: true, ..Default::default() });
        }
        let mut offset = status["received"].as_u64().unwrap_or(0);
        let mut out = Uploaded { resumed_from: offset, ..Default::default() };
        let total = bytes.len() as u64;
        let mut restarts = 0;
        while offset < total {
            let end = (offset + chunk.max(1) as u64).min(total);
            let path = format!("/v1/federation/blobs/{sha}?offset={offset}&total={total}");
            let (st, body) = self.send("PUT", &path, &bytes[offset as usize..end as usize])?;
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match st {
                200 => {
                    out.chunks += 1;
                    if v["complete"] == true {
                        return Ok(out);
                    }
                    offset = v["received"].as_u64().unwrap_or(end);
                }
                409 if restarts < 3 => {
                    // The hub holds another amount (a chunk retried after
                    // it landed, or a verification failure): ask again.
                    restarts += 1;
                    let s = self.json("GET", &format!("/v1/federation/blobs/{sha}/status"), b"")?;
                    if s["complete"] == true {
                        return Ok(out);
                    }
                    offset = s["received"].as_u64().unwrap_or(0);
                }
                _ => {
                    let msg = v["error"]["message"].as_str().unwrap_or("no error message");
                    return Err(self.http(&path, format!("the hub answered {st}: {msg}")));
                }
            }
        }
        Ok(out)
    }

    /// Submits a signed manifest whose files are uploaded.
    pub fn submit(&self, manifest: &[u8], signature: &str) -> Result<Value> {
        let body = serde_json::json!({
            "manifest": String::from_utf8_lossy(manifest), "signature": signature,
        });
        self.json("POST", "/v1/federation/deltas", body.to_string().as_bytes())
    }

    /// Rounds, newest first.
    pub fn rounds(&self, limit: usize) -> Result<Value> {
        self.json("GET", &format!("/v1/federation/rounds?limit={limit}"), b"")
    }

    /// A file of a published round, checked against its sha256.
    pub fn file(&self, sha: &str) -> Result<Vec<u8>> {
        let path = format!("/v1/federation/blobs/{sha}");
        let (st, bytes) = self.send("GET", &path, b"")?;
        if st != 200 {
            return Err(self.http(&path, format!("the hub answered {st}")));
        }
        let got = forja_store::sha256_hex(&bytes);
        if got != sha {
            return Err(self.http(&path, format!("the bytes hash to {got}, not {sha}")));
        }
        Ok(bytes)
    }
}
