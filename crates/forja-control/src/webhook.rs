//! Webhooks on terminal job states: the store queues a delivery in the
//! same transaction as the state change (so none is lost); this sends it,
//! signed with HMAC-SHA256 like Stripe's (`X-Forja-Signature:
//! t=<unix time>,v1=<hex of HMAC(secret, "<t>.<body>")>`), and retries with
//! exponential backoff (1 s, 2 s, 4 s, … for 8 attempts). Polling the job
//! always works too.

use forja_store::{Store, Webhook};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 8;

/// Hex HMAC-SHA256 of `msg` under `key`.
pub fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// Compares secrets without leaking where they differ.
pub fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The signature header value for `body` sent at `t`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    format!("t={t},v1={}", hmac_hex(secret.as_bytes(), format!("{t}.{body}").as_bytes()))
}

/// Checks a signature header (receivers can use this; the tests do).
pub fn verify(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    match (t, v1) {
        (Some(t), Some(v1)) => constant_eq(&signature(secret, t, body), &format!("t={t},v1={v1}")),
        _ => false,
    }
}

fn body(store: &dyn Store, w: &Webhook) -> Option<String> {
    let job = store.job(None, &w.job_id).ok()?;
    Some(
        serde_json::json!({
            "id": format!("evt_{}", w.id),
            "object": "event",
            "type": w.event,
            "created_at": job.finished_at.unwrap_or(job.created_at),
            "data": {
                "id": job.id,
                "status": job.status.as_str(),
                "model": job.model,
                "fine_tuned_model": job.fine_tuned_model,
                "trained_tokens": job.trained_tokens,
                "error": job.error,
            }
        })
        .to_string(),
    )
}

/// Sends every due delivery once. Blocking (store and HTTP calls): async
/// callers run it on a blocking thread.
pub fn deliver_due(store: &dyn Store) {
    let due = match store.due_webhooks(32) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("cannot list webhooks: {e}");
            return;
        }
    };
    for w in due {
        let Some(body) = body(store, &w) else { continue };
        let secret = store
            .tenant(&w.tenant_id)
            .ok()
            .and_then(|t| t.settings.webhook_secret)
            .unwrap_or_default();
        let sig = signature(&secret, store.now(), &body);
        let sent = send(&w.url, &body, &sig);
        let attempts = w.attempts + 1;
        let r = match sent {
            Ok(()) => store.webhook_attempted(w.id, true, None, None),
            Err(e) => {
                let retry =
                    (attempts < MAX_ATTEMPTS).then(|| store.now() + (1i64 << (attempts - 1)));
                tracing::warn!(url = %w.url, attempts, "webhook failed: {e}");
                store.webhook_attempted(w.id, false, Some(&e), retry)
            }
        };
        if let Err(e) = r {
            tracing::warn!("cannot record a webhook attempt: {e}");
        }
    }
}

fn send(url: &str, body: &str, sig: &str) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(url)
        .header("content-type", "application/json")
        .header("x-forja-signature", sig)
        .send(body)
        .map_err(|e| e.to_string())?;
    match resp.status().as_u16() {
        200..=299 => Ok(()),
        s => Err(format!("HTTP {s}")),
    }
}
