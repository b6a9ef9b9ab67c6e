//! [`RemoteLink`]: the worker side of the worker protocol, over HTTP. A
//! 409 (`lease_lost`) means the job was cancelled or given to another
//! worker: the worker stops and leaves it.

use crate::worker_api::{
    CheckpointRequest, EventRequest, FinishRequest, HeartbeatRequest, LeaseRequest, LEASE_HEADER,
};
use forja_control::link::{Lease, Link};
use forja_control::{ControlError, Result};
use forja_store::{sha256_hex, Capacity, Finish, Level};
use std::collections::BTreeMap;
use std::time::Duration;

/// A worker's connection to a control plane.
pub struct RemoteLink {
    base: String,
    token: String,
    worker: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for RemoteLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteLink({} as {})", self.base, self.worker)
    }
}

impl RemoteLink {
    /// Connects to the control plane at `base` (`http://host:port`).
    pub fn new(base: &str, token: &str, worker: &str) -> RemoteLink {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(300)))
            .http_status_as_error(false)
            .build()
            .into();
        RemoteLink {
            base: base.trim_end_matches('/').to_string(),
            token: token.into(),
            worker: worker.into(),
            agent,
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let fail = |reason: String| ControlError::Http { url: url.clone(), reason };
        let auth = format!("Bearer {}", self.token);
        let mut resp = match method {
            "GET" => self.agent.get(&url).header("authorization", &auth).call(),
            m => {
                let mut req = if m == "PUT" { self.agent.put(&url) } else { self.agent.post(&url) };
                req = req.header("authorization", &auth).header("content-type", "application/json");
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                req.send(&body[..])
            }
        }
        .map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(4 << 30)
            .read_to_vec()
            .map_err(|e| fail(e.to_string()))?;
        match status {
            200..=299 => Ok((status, bytes)),
            409 => Err(ControlError::Stopped { job: path.into(), why: message(&bytes) }),
            s => Err(fail(format!("HTTP {s}: {}", message(&bytes)))),
        }
    }

    /// A GET of a presigned URL (no credentials of ours go with it).
    fn get_direct(&self, url: &str) -> std::result::Result<Vec<u8>, String> {
        let mut resp = self.agent.get(url).call().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        resp.body_mut().with_config().limit(4 << 30).read_to_vec().map_err(|e| e.to_string())
    }

    /// A call about a leased job (its token in `X-Forja-Lease`).
    fn post<T: serde::Serialize>(&self, lease: &Lease, path: &str, body: &T) -> Result<Vec<u8>> {
        let h = [(LEASE_HEADER, lease.token.as_str())];
        Ok(self.call("POST", path, serde_json::to_vec(body).expect("json"), &h)?.1)
    }
}

fn message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}

impl Link for RemoteLink {
    fn lease(&self, cap: &Capacity) -> Result<Option<Lease>> {
        let req = LeaseRequest { worker: self.worker.clone(), capacity: cap.clone() };
        let (status, body) =
            self.call("POST", "/v1/worker/lease", serde_json::to_vec(&req).expect("json"), &[])?;
        if status == 204 {
            return Ok(None);
        }
        serde_json::from_slice(&body).map(Some).map_err(|e| ControlError::Http {
            url: format!("{}/v1/worker/lease", self.base),
            reason: format!("unexpected answer: {e}"),
        })
    }

    fn download(&self, lease: &Lease, sha: &str) -> Result<Vec<u8>> {
        if let Some(direct) = lease.direct_urls.get(sha) {
            // Straight from the bucket; the node's URL when that fails.
            match self.get_direct(direct) {
                Ok(bytes) if sha256_hex(&bytes) == sha => return Ok(bytes),
                Ok(_) => tracing::warn!(
                    "sha256:{sha} from the bucket does not hash to its address; asking the node"
                ),
                Err(e) => {
                    tracing::warn!("sha256:{sha}: the bucket's URL failed ({e}); asking the node")
                }
            }
        }
        let url = lease.urls.get(sha).ok_or_else(|| ControlError::Http {
            url: self.base.clone(),
            reason: format!("the lease has no download URL for sha256:{sha}"),
        })?;
        // The signed URL names the server as the worker reached it.
        let path = url.find("/v1/").map_or(url.as_str(), |i| &url[i..]);
        let (_, bytes) = self.call("GET", path, Vec::new(), &[])?;
        let actual = sha256_hex(&bytes);
        if actual != sha {
            return Err(ControlError::Store(forja_store::StoreError::HashMismatch {
                expected: sha.into(),
                actual,
            }));
        }
        Ok(bytes)
    }

    fn upload(&self, lease: &Lease, bytes: Vec<u8>) -> Result<String> {
        let sha = sha256_hex(&bytes);
        let headers = [
            ("x-forja-sha256", sha.as_str()),
            ("x-forja-worker", self.worker.as_str()),
            (LEASE_HEADER, lease.token.as_str()),
        ];
        let job = lease.id();
        self.call("PUT", &format!("/v1/worker/jobs/{job}/artifacts"), bytes, &headers)?;
        Ok(sha)
    }

    fn heartbeat(&self, lease: &Lease, progress: (u64, u64)) -> Result<()> {
        let r = HeartbeatRequest {
            worker: self.worker.clone(),
            step: progress.0,
            total_steps: progress.1,
        };
        self.post(lease, &format!("/v1/worker/jobs/{}/heartbeat", lease.id()), &r).map(|_| ())
    }

    fn event(
        &self,
        lease: &Lease,
        level: Level,
        message: &str,
        data: Option<serde_json::Value>,
    ) -> Result<()> {
        let r = EventRequest { worker: self.worker.clone(), level, message: message.into(), data };
        self.post(lease, &format!("/v1/worker/jobs/{}/events", lease.id()), &r).map(|_| ())
    }

    fn checkpoint(
        &self,
        lease: &Lease,
        step: u64,
        files: BTreeMap<String, String>,
        metrics: serde_json::Value,
    ) -> Result<()> {
        let r = CheckpointRequest { worker: self.worker.clone(), step, files, metrics };
        self.post(lease, &format!("/v1/worker/jobs/{}/checkpoints", lease.id()), &r).map(|_| ())
    }

    fn finish(&self, lease: &Lease, outcome: Finish) -> Result<()> {
        let r = FinishRequest { worker: self.worker.clone(), outcome: outcome.into() };
        self.post(lease, &format!("/v1/worker/jobs/{}/finish", lease.id()), &r).map(|_| ())
    }
}
