//! Webhooks on terminal job states: the store queues a delivery in the
//! same transaction as the state change (so none is lost); the
//! [`Deliverer`] sends it on its own task, signed with HMAC-SHA256 like
//! Stripe's (`X-Forja-Signature: t=<unix time>,v1=<hex of HMAC(secret,
//! "<t>.<body>")>`), and retries with exponential backoff (1 s, 2 s, 4 s, …
//! for 8 attempts). Polling the job always works too.
//!
//! Deliveries run at most [`WebhookPolicy::concurrency`] at a time, each on
//! a blocking thread with a 10 s timeout, apart from the control plane's
//! tick: a slow receiver delays only its own deliveries. With
//! [`WebhookPolicy::deny_private`], a target whose name resolves to a
//! loopback, private, link-local, unique-local, shared (CGNAT),
//! unspecified or multicast address is refused; the check is made by the
//! resolver the connection itself uses, so a name cannot resolve to a
//! public address for the check and a private one for the request.

use forja_store::{Store, Webhook};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use std::sync::Arc;
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

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Refuse targets that resolve to non-public addresses.
    pub deny_private: bool,
    /// Per-delivery timeout.
    pub timeout: Duration,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        WebhookPolicy { concurrency: 4, deny_private: false, timeout: Duration::from_secs(10) }
    }
}

/// Whether `ip` is an address a public webhook receiver can have.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            !(v.is_loopback()
                || v.is_private()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_multicast()
                || v.is_broadcast()
                || v.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v) => {
            if let Some(v4) = v.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v.segments();
            !(v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

/// ureq's resolver, keeping only public addresses.
#[derive(Debug, Default)]
struct PublicOnly(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for PublicOnly {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let all = self.0.resolve(uri, config, timeout)?;
        let mut kept = self.empty();
        for a in all.iter().filter(|a| is_public(a.ip())) {
            kept.push(*a);
        }
        if kept.is_empty() {
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the URL resolves to a private, loopback or link-local address, \
                 which this node refuses (--webhook-deny-private)",
            )));
        }
        Ok(kept)
    }
}

/// An agent with `config`, resolving only to public addresses when
/// `deny_private` (webhooks, feeds: URLs a tenant chose).
pub(crate) fn agent(config: ureq::config::Config, deny_private: bool) -> ureq::Agent {
    if deny_private {
        ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            PublicOnly::default(),
        )
    } else {
        ureq::Agent::new_with_config(config)
    }
}

/// Sends queued webhooks on its own task.
pub struct Deliverer {
    store: Arc<dyn Store>,
    policy: WebhookPolicy,
    agent: ureq::Agent,
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl Deliverer {
    /// A deliverer for `store`'s outbox.
    pub fn new(store: Arc<dyn Store>, policy: WebhookPolicy) -> Arc<Deliverer> {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(policy.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build();
        let agent = agent(config, policy.deny_private);
        let slots = Arc::new(tokio::sync::Semaphore::new(policy.concurrency.max(1)));
        Arc::new(Deliverer { store, policy, agent, slots })
    }

    /// Claims due deliveries (as many as there are free slots) and sends
    /// each on a blocking thread; returns how many were started.
    pub async fn poll(self: &Arc<Self>) -> usize {
        let free = self.slots.available_permits();
        if free == 0 {
            return 0;
        }
        let hold = (self.policy.timeout.as_secs() as i64 + 5) * 2;
        let store = self.store.clone();
        let due = match tokio::task::spawn_blocking(move || store.claim_webhooks(free, hold)).await
        {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::warn!("cannot claim webhooks: {e}");
                return 0;
            }
            Err(e) => {
                tracing::warn!("webhook claim task failed: {e}");
                return 0;
            }
        };
        let n = due.len();
        for w in due {
            let Ok(permit) = self.slots.clone().acquire_owned().await else { return n };
            let me = self.clone();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                me.deliver(&w);
            });
        }
        n
    }

    /// Runs [`Deliverer::poll`] every `every` until `stop`.
    pub async fn run(self: Arc<Self>, every: Duration, stop: Arc<std::sync::atomic::AtomicBool>) {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            self.poll().await;
            tokio::time::sleep(every).await;
        }
    }

    /// One delivery attempt, recorded. Blocking.
    fn deliver(&self, w: &Webhook) {
        let store = &*self.store;
        let Some(body) = body(store, w) else { return };
        let secret = store
            .tenant(&w.tenant_id)
            .ok()
            .and_then(|t| t.settings.webhook_secret)
            .unwrap_or_default();
        let sig = signature(&secret, store.now(), &body);
        let sent = self.send(&w.url, &body, &sig);
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

    fn send(&self, url: &str, body: &str, sig: &str) -> Result<(), String> {
        let resp = self
            .agent
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for (ip, public) in [
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("224.0.0.1", false),
            ("::1", false),
            ("fe80::1", false),
            ("fd00::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("2606:4700::1111", true),
        ] {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }
}
