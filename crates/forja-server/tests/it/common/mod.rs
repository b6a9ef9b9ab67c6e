//! An in-process node for HTTP tests: a tiny random model written by the
//! test, a real SQLite file and artifact directory, the real router driven
//! with `tower::ServiceExt::oneshot` (no sockets), and helpers to make
//! tenants, keys and requests.
#![allow(dead_code)]

pub mod learning;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use candle_core::quantized::GgmlDType;
use forja_control::keys::{self, KeySpec};
use forja_engine::fixtures::{self, Spec};
use forja_server::node::{ModelSource, Node, NodeConfig};
use forja_store::{Role, TenantSettings};
use http_body_util::BodyExt;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use tower::ServiceExt;

/// A node on a tiny model, with an admin key.
pub struct Bed {
    pub node: Node,
    pub admin: String,
    pub model: PathBuf,
    pub tmp: tempfile::TempDir,
}

/// A response: status, headers, body (JSON when it parses, else a string).
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
    /// The error message of an error body.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
    /// The error param of an error body.
    pub fn param(&self) -> &str {
        self.body["error"]["param"].as_str().unwrap_or_default()
    }
}

/// Writes a model the beds serve (Q8_0 GGUF).
pub fn tiny_model(dir: &std::path::Path, spec: &Spec) -> PathBuf {
    let p = dir.join("tiny.gguf");
    fixtures::write_gguf(&p, spec, &fixtures::weights(spec, 1), GgmlDType::Q8_0);
    p
}

/// A model slow and long enough for generations that outlast a test's
/// other requests (a 4096-token context, wider layers).
pub fn slow_spec() -> Spec {
    Spec {
        hidden: 256,
        inter: 512,
        layers: 4,
        heads: 8,
        kv_heads: 4,
        head_dim: 32,
        context: 4096,
        ..Spec::llama()
    }
}

impl Bed {
    /// A ready node on the tiny model (no in-process workers unless `edit` asks).
    pub fn new(edit: impl FnOnce(&mut NodeConfig)) -> Bed {
        Bed::with_spec(&Spec::llama(), edit)
    }

    /// A ready node on a model of `spec`.
    pub fn with_spec(spec: &Spec, edit: impl FnOnce(&mut NodeConfig)) -> Bed {
        let tmp = tempfile::tempdir().unwrap();
        let model = tiny_model(tmp.path(), spec);
        Bed::on(tmp, model, edit)
    }

    /// A ready node on the model at `model` (a GGUF file or an HF directory).
    pub fn with_model(model: &std::path::Path, edit: impl FnOnce(&mut NodeConfig)) -> Bed {
        Bed::on(tempfile::tempdir().unwrap(), model.to_path_buf(), edit)
    }

    fn on(tmp: tempfile::TempDir, model: PathBuf, edit: impl FnOnce(&mut NodeConfig)) -> Bed {
        let src = ModelSource::new(model.to_str().unwrap(), &model, &[]);
        let mut cfg = NodeConfig::new(tmp.path().join("data"), src);
        cfg.workers = 0;
        cfg.threads = Some(1);
        cfg.tick = Duration::from_millis(100);
        // FORJA_TEST_POSTGRES=1: the whole suite on a Postgres database
        // (one per test directory, so a restart finds its data again).
        if std::env::var_os("FORJA_TEST_POSTGRES").is_some() {
            let server = crate::pg::server().expect("FORJA_TEST_POSTGRES needs Postgres installed");
            cfg.database = Some(server.database(&crate::pg::name_for(tmp.path())));
        }
        edit(&mut cfg);
        let node = Node::start(cfg).unwrap();
        assert!(node.wait_ready(Duration::from_secs(60)), "the model did not load");
        let (admin, _) = keys::create(&*node.store, Role::Admin, &KeySpec::default()).unwrap();
        Bed { node, admin, model, tmp }
    }

    /// Stops the node and starts another on the same data directory and
    /// model (keys and tenants survive; a new admin key is made).
    pub fn restart(self, edit: impl FnOnce(&mut NodeConfig)) -> Bed {
        let Bed { node, model, tmp, .. } = self;
        node.stop();
        Bed::on(tmp, model, edit)
    }

    /// Whether the node runs on the test Postgres (`FORJA_TEST_POSTGRES`).
    pub fn on_postgres(&self) -> bool {
        std::env::var_os("FORJA_TEST_POSTGRES").is_some()
    }

    /// The first column of each row of `sql`, run on the node's database
    /// behind its back (its SQLite file, or its Postgres database).
    pub fn db_rows(&self, sql: &str) -> Vec<String> {
        if self.on_postgres() {
            let name = crate::pg::name_for(self.tmp.path());
            return crate::pg::server().unwrap().rows(&name, sql);
        }
        let db = rusqlite::Connection::open(self.tmp.path().join("data/forja.db")).unwrap();
        let mut st = db.prepare(sql).unwrap();
        let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    /// Runs an UPDATE or DELETE on the node's database behind its back;
    /// returns the rows it changed.
    pub fn db_exec(&self, sql: &str) -> usize {
        if self.on_postgres() {
            let counted =
                format!("WITH changed AS ({sql} RETURNING 1) SELECT count(*)::text FROM changed");
            return self.db_rows(&counted)[0].parse().unwrap();
        }
        let db = rusqlite::Connection::open(self.tmp.path().join("data/forja.db")).unwrap();
        db.execute(sql, []).unwrap()
    }

    /// A tenant and one of its keys.
    pub fn tenant(&self, name: &str, settings: TenantSettings) -> String {
        let t = self.node.store.create_tenant(name, "standard", &settings).unwrap();
        let spec = KeySpec { tenant_id: Some(t.id), ..Default::default() };
        keys::create(&*self.node.store, Role::Tenant, &spec).unwrap().0
    }

    /// Sends one request through the router.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Resp {
        self.node.block_on(call(self.node.router(), method, path, key, headers, body))
    }

    pub fn get(&self, path: &str, key: &str) -> Resp {
        self.call("GET", path, key, &[], Body::empty())
    }

    pub fn post(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call(
            "POST",
            path,
            key,
            &[("content-type", "application/json")],
            Body::from(body.to_string()),
        )
    }

    /// Waits (polling every 50 ms) until `f` is true.
    pub fn wait(&self, limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let t = std::time::Instant::now();
        while !f() {
            assert!(t.elapsed() < limit, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One request through `router` (for concurrent tests on the node's runtime).
pub async fn call(
    router: axum::Router,
    method: &str,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Resp {
    let mut req =
        Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(path);
    if !key.is_empty() {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router.oneshot(req.body(body).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// A chat request body.
pub fn chat(model: &str, content: &str, extra: Value) -> Value {
    let mut b = serde_json::json!({"model": model, "messages": [{"role": "user", "content": content}],
        "max_tokens": 8, "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}
