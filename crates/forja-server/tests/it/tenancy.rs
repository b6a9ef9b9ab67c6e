//! Identity, privilege and privacy over HTTP against an in-process node:
//! keys with roles, expiry, revocation and rotation (CLI and admin API),
//! forced promotions, secrets at rest, what `/metrics` and errors reveal,
//! webhook targets and delivery, personal data at rest, and examples held
//! back after a cancel.

use crate::common;

use axum::body::Body;
use common::*;
use forja_control::keys::{self, KeySpec};
use forja_store::{Role, TenantSettings};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

/// Regression (hardening #9): keys could not be listed, revoked, expired
/// or rotated, and only tenant keys existed. The admin API manages them;
/// tenant and worker keys cannot reach it; an admin acts for a tenant only
/// by naming it.
#[test]
fn keys_are_managed_by_admins_and_roles_are_enforced() {
    let b = Bed::new(|_| {});
    let k = b.tenant("acme", TenantSettings::default());
    let (worker, _) = keys::create(&*b.node.store, Role::Worker, &KeySpec::default()).unwrap();
    for key in [&k, &worker] {
        assert_eq!(b.get("/v1/admin/keys", key).status, 403);
    }
    assert_eq!(b.get("/v1/admin/keys", "").status, 401);
    // Create, use, rotate with grace, revoke.
    let r = b.post(
        "/v1/admin/tenants",
        &b.admin,
        json!({"name": "beta", "tier": "pro", "settings": {"threshold": 5}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["settings"]["threshold"], 5);
    let r = b.post("/v1/admin/keys", &b.admin, json!({"role": "tenant", "tenant": "nobody"}));
    assert_eq!(r.status, 404, "keys never create tenants: {}", r.body);
    let r = b.post(
        "/v1/admin/keys",
        &b.admin,
        json!({"role": "tenant", "tenant": "beta", "name": "ci", "expires_in_s": 3600}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (kb, kid) =
        (r.body["key"].as_str().unwrap().to_string(), r.body["id"].as_str().unwrap().to_string());
    assert!(r.body["expires_at"].is_i64());
    assert_eq!(b.get("/v1/learning/status", &kb).status, 200);
    let listed = b.get("/v1/admin/keys?tenant=beta", &b.admin).body;
    assert!(!listed.to_string().contains(&kb), "a listing shows a key's text: {listed}");
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let r = b.post(&format!("/v1/admin/keys/{kid}/rotate"), &b.admin, json!({"grace_s": 3600}));
    assert_eq!(r.status, 200, "{}", r.body);
    let kb2 = r.body["key"].as_str().unwrap().to_string();
    assert_eq!(
        b.get("/v1/learning/status", &kb).status,
        200,
        "the old key works during the grace period"
    );
    assert_eq!(b.get("/v1/learning/status", &kb2).status, 200);
    let new_id = r.body["id"].as_str().unwrap().to_string();
    for id in [&kid, &new_id] {
        assert_eq!(b.post(&format!("/v1/admin/keys/{id}/revoke"), &b.admin, json!({})).status, 200);
    }
    assert_eq!(b.get("/v1/learning/status", &kb).status, 401);
    assert_eq!(b.get("/v1/learning/status", &kb2).status, 401);
    // An admin acts for a tenant by naming it, and only then.
    let r = b.get("/v1/learning/status", &b.admin);
    assert_eq!((r.status.as_u16(), r.param()), (400, "x-forja-tenant"), "{}", r.body);
    let r = b.call(
        "GET",
        "/v1/learning/status",
        &b.admin,
        &[("x-forja-tenant", "acme")],
        Body::empty(),
    );
    assert_eq!((r.status.as_u16(), r.body["tenant"].as_str()), (200, Some("acme")), "{}", r.body);
    // An expired key stops working.
    let spec = KeySpec {
        expires_at: Some(b.node.store.now() - 1),
        ..KeySpec {
            tenant_id: Some(b.node.store.tenant_by_name("acme").unwrap().id),
            ..Default::default()
        }
    };
    let (old, _) = keys::create(&*b.node.store, Role::Tenant, &spec).unwrap();
    assert_eq!(b.get("/v1/learning/status", &old).status, 401);
    // Tenant settings through the admin API; a bad field names itself.
    let r = b.call(
        "PATCH",
        "/v1/admin/tenants/acme",
        &b.admin,
        &[("content-type", "application/json")],
        Body::from(
            json!({"pii_deny": ["Ana Ruiz"], "storage_mb": 5, "webhook_secret": "s"}).to_string(),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["settings"]["pii_deny"], json!(["Ana Ruiz"]));
    assert_eq!(r.body["settings"]["webhook_secret_set"], true);
    assert!(!r.body.to_string().contains("\"s\""), "the webhook secret is never shown: {}", r.body);
    let r = b.call(
        "PATCH",
        "/v1/admin/tenants/acme",
        &b.admin,
        &[("content-type", "application/json")],
        Body::from(json!({"cron": "every day"}).to_string()),
    );
    assert_eq!((r.status.as_u16(), r.param()), (400, "cron"), "{}", r.body);
}

/// Regression (hardening #10): `url-signing.key`, `forja.db` and the data
/// directory were created 0644/0755. They are owner-only, and a data
/// directory made more open by hand is tightened at start.
#[cfg(unix)]
#[test]
fn secrets_at_rest_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let b = Bed::new(|_| {});
    if b.on_postgres() {
        return; // the database file is SQLite's
    }
    let dir = b.tmp.path().join("data");
    assert_eq!(mode(&dir), 0o700);
    for f in ["url-signing.key", "forja.db"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&dir.join("artifacts")), 0o700);
    let model = b.model.clone();
    drop(b);
    // Someone opened them up; the next start closes them again.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("url-signing.key"), [7u8; 32]).unwrap();
    std::fs::set_permissions(data.join("url-signing.key"), std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let src = forja_server::node::ModelSource::new(model.to_str().unwrap(), &model, &[]);
    let mut cfg = forja_server::node::NodeConfig::new(data.clone(), src);
    cfg.workers = 0;
    let node = forja_server::node::Node::start(cfg).unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("url-signing.key")), 0o600);
    node.stop();
}

/// Regression (hardening #11): `/metrics` was public and named tenants
/// with their token counts. Tenant labels are off by default; turned on,
/// or with a metrics token, `/metrics` needs the token or an admin key.
#[test]
fn metrics_reveal_no_tenant_unless_asked_and_then_need_a_token() {
    let b = Bed::new(|_| {});
    let k = b.tenant("acme-secret-customer", TenantSettings::default());
    assert_eq!(b.post("/v1/chat/completions", &k, chat("base", "hi", json!({}))).status, 200);
    let m = b.get("/metrics", "");
    assert_eq!(m.status, 200);
    let text = m.body.as_str().unwrap();
    assert!(
        !text.contains("acme-secret-customer") && text.contains("forja_requests_total"),
        "{text}"
    );
    let b = Bed::new(|c| {
        c.metrics.tenant_labels = true;
        c.metrics.token = Some("scrape-me".into());
    });
    let k = b.tenant("acme", TenantSettings::default());
    assert_eq!(b.post("/v1/chat/completions", &k, chat("base", "hi", json!({}))).status, 200);
    assert_eq!(b.get("/metrics", "").status, 401);
    assert_eq!(b.get("/metrics", &k).status, 403);
    for key in ["scrape-me", b.admin.as_str()] {
        let m = b.get("/metrics", key);
        assert_eq!(m.status, 200, "{key}");
        assert!(m.body.as_str().unwrap().contains("tenant=\"acme\""));
    }
}

/// A receiver on loopback: each request's body is sent to `tx` after
/// `delay`, then answered 200.
/// One whole HTTP request: the headers and `content-length` bytes of body
/// (a client may send them in separate writes, so one `read` is not enough).
fn read_request(s: &mut std::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let want = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            if got.len() >= end + 4 + want {
                return text;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn receiver(delay: Duration) -> (String, std::sync::mpsc::Receiver<String>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let (mut s, tx) = (s.unwrap(), tx.clone());
            std::thread::spawn(move || {
                let request = read_request(&mut s);
                std::thread::sleep(delay);
                let _ = tx.send(request);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    (url, rx)
}

fn set_hook(b: &Bed, tenant: &str, url: &str) {
    let r = b.call(
        "PATCH",
        &format!("/v1/admin/tenants/{tenant}"),
        &b.admin,
        &[("content-type", "application/json")],
        Body::from(json!({"webhook_url": url}).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Ends a job of the tenant at once (a cancel is a terminal state: its
/// webhook is queued).
fn cancelled_job(b: &Bed, key: &str) {
    for i in 0..2 {
        let r = b.post(
            "/v1/feedback",
            key,
            json!({"prompt": format!("p{i}"), "correction": format!("respuesta número {i}")}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let j = b.post("/v1/learning/train", key, json!({}));
    assert_eq!(j.status, 200, "{}", j.body);
    let id = j.body["id"].as_str().unwrap();
    assert_eq!(b.post(&format!("/v1/fine_tuning/jobs/{id}/cancel"), key, json!({})).status, 200);
}

/// Regression (hardening #12): webhook delivery ran inside the control
/// plane's tick, so a slow receiver of one tenant delayed another tenant
/// by its timeout; and nothing stopped a webhook from targeting a private
/// address. Deliveries run on their own task in parallel, and with
/// `--webhook-deny-private` a private target is refused.
#[test]
fn a_slow_webhook_receiver_delays_no_one_and_private_targets_can_be_refused() {
    let b = Bed::new(|c| c.webhooks.timeout = Duration::from_secs(30));
    let (slow_url, slow) = receiver(Duration::from_secs(8));
    let (fast_url, fast) = receiver(Duration::ZERO);
    let ka = b.tenant("slow", TenantSettings { threshold: None, ..Default::default() });
    let kb = b.tenant("fast", TenantSettings { threshold: None, ..Default::default() });
    set_hook(&b, "slow", &slow_url);
    set_hook(&b, "fast", &fast_url);
    cancelled_job(&b, &ka);
    std::thread::sleep(Duration::from_millis(600));
    cancelled_job(&b, &kb);
    let got = fast.recv_timeout(Duration::from_secs(20)).expect("the fast tenant's webhook");
    assert!(got.contains("fine_tuning.job.cancelled"), "{got}");
    assert!(
        slow.try_recv().is_err(),
        "the slow receiver answered first: delivery was not parallel"
    );
    // Private targets refused.
    let b = Bed::new(|c| c.webhooks.deny_private = true);
    let (url, rx) = receiver(Duration::ZERO);
    let k = b.tenant("acme", TenantSettings { threshold: None, ..Default::default() });
    set_hook(&b, "acme", &url);
    cancelled_job(&b, &k);
    std::thread::sleep(Duration::from_secs(2));
    assert!(rx.try_recv().is_err(), "a loopback webhook was delivered");
}

/// Regression (hardening #13): `examples.input` kept the raw feedback
/// (names, DNI, phones); uploads and the completion log were stored as
/// sent. What is stored is scrubbed, with the tenant's deny list.
#[test]
fn personal_data_is_scrubbed_before_it_is_stored() {
    let b = Bed::new(|_| {});
    let k = b.tenant(
        "acme",
        TenantSettings { threshold: None, pii_deny: vec!["Ana Ruiz".into()], ..Default::default() },
    );
    let r = b.post(
        "/v1/feedback",
        &k,
        json!({
            "prompt": "El vecino con DNI 12345678Z pregunta por Ana Ruiz",
            "output": "no sé",
            "correction": "Ana Ruiz atiende los lunes; llame al +34 612 345 678.",
        }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let boundary = "b0undary";
    let file = "{\"prompt\": \"mi correo es vecino@example.org\", \"completion\": \"Gracias, Ana Ruiz le responde.\"}";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.jsonl\"\r\n\r\n{file}\r\n--{boundary}--\r\n"
    );
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let f = b.call("POST", "/v1/files", &k, &[("content-type", &ctype)], Body::from(body));
    assert_eq!(f.status, 200, "{}", f.body);
    assert!(
        f.body["status_details"].as_str().unwrap().contains("personal data scrubbed"),
        "{}",
        f.body
    );
    let id = f.body["id"].as_str().unwrap();
    let content = b.get(&format!("/v1/files/{id}/content"), &k).body.to_string();
    assert!(!content.contains("vecino@example.org") && !content.contains("Ana Ruiz"), "{content}");
    let r =
        b.post("/v1/chat/completions", &k, chat("base", "Soy Ana Ruiz, DNI 12345678Z", json!({})));
    assert_eq!(r.status, 200);
    // Nothing of it is in the database file or its write-ahead log.
    b.wait(Duration::from_secs(10), "the completion to be logged", || {
        let c = b.node.store.completion(
            &b.node.store.tenant_by_name("acme").unwrap().id,
            r.body["id"].as_str().unwrap(),
        );
        c.is_ok()
    });
    let all = if b.on_postgres() {
        // Every text column of the tables that hold what tenants send.
        b.db_rows(
            "SELECT concat_ws(' ', input, record) FROM examples UNION ALL \
             SELECT concat_ws(' ', messages, output) FROM completions UNION ALL \
             SELECT concat_ws(' ', message, data) FROM job_events",
        )
        .join("\n")
    } else {
        let dir = b.tmp.path().join("data");
        let mut all = Vec::new();
        for f in ["forja.db", "forja.db-wal"] {
            all.extend(std::fs::read(dir.join(f)).unwrap_or_default());
        }
        String::from_utf8_lossy(&all).into_owned()
    };
    for secret in ["12345678Z", "612 345 678", "vecino@example.org"] {
        assert!(!all.contains(secret), "`{secret}` is at rest in the database");
    }
    // The deny-listed name is stored only as the tenant's setting.
    let stored = b.db_rows(
        "SELECT input || COALESCE(record, '') FROM examples UNION ALL SELECT messages || output FROM completions",
    );
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|s| !s.contains("Ana Ruiz")), "{stored:?}");
}

/// Regression (hardening #14): cancelling a threshold job returned its
/// examples to the pool and the next tick triggered a new job at once.
/// They are held back until released (or trained on deliberately).
#[test]
fn a_cancel_holds_its_examples_back_until_released() {
    let b = Bed::new(|_| {});
    let k = b.tenant("acme", TenantSettings { threshold: Some(3), ..Default::default() });
    let mut job = Value::Null;
    for i in 0..3 {
        let r = b.post(
            "/v1/feedback",
            &k,
            json!({"prompt": format!("p{i}"), "correction": format!("respuesta {i}")}),
        );
        job = r.body["job"].clone();
    }
    let id = job["id"].as_str().expect("the threshold triggered a job").to_string();
    assert_eq!(b.post(&format!("/v1/fine_tuning/jobs/{id}/cancel"), &k, json!({})).status, 200);
    std::thread::sleep(Duration::from_millis(800)); // several ticks
    let st = b.get("/v1/learning/status", &k).body;
    assert_eq!(st["pending"]["held"], 3, "{st}");
    let jobs = b.get("/v1/fine_tuning/jobs", &k).body;
    assert_eq!(jobs["data"].as_array().unwrap().len(), 1, "the cancel re-triggered: {jobs}");
    assert!(st["next_trigger"].as_str().unwrap().contains("held back"), "{st}");
    let r = b.post("/v1/learning/release", &k, json!({}));
    assert_eq!((r.status.as_u16(), r.body["released"].as_u64()), (200, Some(3)), "{}", r.body);
    b.wait(Duration::from_secs(10), "the released examples to trigger", || {
        b.get("/v1/fine_tuning/jobs", &k).body["data"].as_array().unwrap().len() == 2
    });
}

/// Regression (hardening #9): a forced junk champion stayed champion, and
/// any tenant key could force a promotion the gate refused.
#[test]
fn forcing_needs_an_admin_and_a_first_champion_can_be_demoted() {
    let b = Bed::new(|_| {});
    let k = b.tenant("acme", TenantSettings::default());
    let c = &b.node.control;
    let t = c.store.tenant_by_name("acme").unwrap();
    let sha = b.node.block_on(c.artifacts.put(b"not really weights".to_vec().into())).unwrap();
    let v = c
        .store
        .register_version(
            &forja_store::NewVersion::candidate(
                &t.id,
                "tiny.gguf",
                [("adapter_model.safetensors".to_string(), sha)].into(),
            ),
            "test",
        )
        .unwrap()
        .0
        .id;
    let path = format!("/v1/registry/models/{v}/promote");
    let r = b.post(&path, &k, json!({"force": true}));
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"), "{}", r.body);
    let r = b.call(
        "POST",
        &path,
        &b.admin,
        &[("x-forja-tenant", "acme"), ("content-type", "application/json")],
        Body::from("{\"force\": true}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = b.post("/v1/registry/rollback", &k, json!({"reason": "junk"}));
    assert_eq!(r.status, 409, "nothing to roll back to: {}", r.body);
    let r = b.post("/v1/registry/rollback", &k, json!({"reason": "junk", "to_base": true}));
    assert_eq!((r.status.as_u16(), r.body["version"].clone()), (200, Value::Null), "{}", r.body);
    assert_eq!(b.get("/v1/registry/models/champion", &k).status, 404);
    let r = b.post("/v1/chat/completions", &k, chat("tiny@champion", "hi", json!({})));
    assert_eq!((r.status.as_u16(), r.body["model"].as_str()), (200, Some("tiny.gguf")));
}
