//! [`Api`]: a small JSON client of a node's HTTP API with an API key (the
//! demo drives its node through it, `forja audit vote --url` votes
//! through it). A call that must succeed fails with the node's error
//! message on one line.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;
use std::time::Duration;

/// A small JSON client of the node's API.
pub struct Api {
    base: String,
    key: String,
    tenant: Option<String>,
    agent: ureq::Agent,
}

impl Api {
    /// A client of the node at `base` (`http://host:port`) with the API
    /// key `key`; each call may take up to `timeout`.
    pub fn new(base: &str, key: &str, timeout: Duration) -> Api {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Api {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            tenant: None,
            agent,
        }
    }

    /// Acts for `tenant` (an admin key names the tenant it acts for).
    pub fn for_tenant(mut self, tenant: Option<&str>) -> Api {
        self.tenant = tenant.map(str::to_string);
        self
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.key)
    }

    /// `r` with the key and, when acting for one, the tenant.
    fn authed<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let r = r.header("Authorization", &self.auth());
        match &self.tenant {
            Some(t) => r.header(forja_server::TENANT_HEADER, t),
            None => r,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Body>) -> Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let resp = match (method, body) {
            ("GET", _) => self.authed(self.agent.get(&url)).call(),
            (_, Some(Body::Json(v))) => self
                .authed(self.agent.post(&url))
                .header("Content-Type", "application/json")
                .send(v.to_string().as_bytes()),
            (_, Some(Body::Bytes(b, content_type))) => self
                .authed(self.agent.post(&url))
                .header("Content-Type", &content_type)
                .send(&b[..]),
            (_, None) => self.authed(self.agent.post(&url)).send_empty(),
        };
        let mut resp = resp.map_err(|e| anyhow!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    /// A call that must succeed.
    pub fn ok(&self, method: &str, path: &str, body: Option<Body>) -> Result<Value> {
        let (status, v) = self.call(method, path, body)?;
        if !(200..300).contains(&status) {
            let msg = v["error"]["message"].as_str().map_or_else(|| v.to_string(), String::from);
            bail!("{method} {path}: HTTP {status}: {msg}");
        }
        Ok(v)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.ok("GET", path, None)
    }

    /// The raw body of a GET that must succeed.
    pub fn bytes(&self, path: &str) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let mut resp =
            self.authed(self.agent.get(&url)).call().map_err(|e| anyhow!("GET {path}: {e}"))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            bail!("GET {path}: HTTP {status}");
        }
        resp.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| anyhow!("GET {path}: {e}"))
    }

    /// A multipart/form-data POST that must succeed: `(name, filename, bytes)`.
    pub fn multipart(&self, path: &str, fields: &[(&str, Option<&str>, &[u8])]) -> Result<Value> {
        let boundary = "forja-demo-6f1c2b9e4d";
        let mut body = Vec::new();
        for (name, filename, bytes) in fields {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let disposition = match filename {
                Some(f) => format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document\r\n\r\n"
                ),
                None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
            };
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        self.ok("POST", path, Some(Body::Bytes(body, content_type)))
    }

    pub fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.ok("POST", path, Some(Body::Json(body)))
    }
}

pub enum Body {
    Json(Value),
    /// Bytes and their content type.
    Bytes(Vec<u8>, String),
}
