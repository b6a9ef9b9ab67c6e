//! The admin API's objects and bodies: keys (never their text, except once
//! at creation), tenants and their settings, auditors.

use super::jobs::SpecWire;
use forja_store::{ApiKey, Tenant, TenantSettings};
use serde::Deserialize;
use serde_json::{json, Value};

/// A key (its prefix, never the key).
pub fn key(k: &ApiKey, now: i64) -> Value {
    json!({
        "object": "api_key", "id": k.id, "role": k.role.as_str(), "tenant_id": k.tenant_id,
        "prefix": k.prefix, "name": k.name, "created_at": k.created_at,
        "expires_at": k.expires_at, "revoked_at": k.revoked_at, "live": k.is_live(now),
    })
}

/// A tenant and its settings (the webhook secret is never shown).
pub fn tenant(t: &Tenant) -> Value {
    let s = &t.settings;
    json!({
        "object": "tenant", "id": t.id, "name": t.name, "tier": t.tier, "created_at": t.created_at,
        "settings": {
            "threshold": s.threshold, "cron": s.cron, "max_trainings": s.max_trainings,
            "quota_window_s": s.quota_window_s, "priority": s.priority,
            "base_model": s.base_model, "webhook_url": s.webhook_url,
            "webhook_secret_set": s.webhook_secret.is_some(),
            "gate_policy": s.gate_policy, "storage_mb": s.storage_mb, "pii_deny": s.pii_deny,
            "allow_forced_promotion": s.allow_forced_promotion,
            "job_spec": s.job_spec.as_ref().map(super::jobs::job_spec),
            "learning": learning(&s.learning),
            "rag": s.rag.as_ref().map(|r| json!({"k": r.k, "mode": r.mode, "sources": r.sources})),
            "memory": s.memory.as_ref().map(|m| json!({"extract": m.extract, "recall": m.recall, "k": m.k})),
            "auto_rollback": s.auto_rollback.as_ref().map(|a| json!({"window_s": a.window_s, "min_served": a.min_served, "z": a.z})),
        },
    })
}

/// A continual-learning policy on the wire.
pub fn learning(l: &forja_store::LearningPolicy) -> Value {
    json!({
        "start_from": l.start_from.as_str(), "history_replay": l.history_replay,
        "history_window": l.history_window, "general_replay": l.general_replay,
    })
}

/// Continual-learning settings to change (absent fields keep their value).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearningPatch {
    #[serde(default)]
    start_from: Option<String>,
    #[serde(default)]
    history_replay: Option<f64>,
    #[serde(default)]
    history_window: Option<u32>,
    #[serde(default)]
    general_replay: Option<f64>,
}

impl LearningPatch {
    fn apply(
        self,
        mut l: forja_store::LearningPolicy,
    ) -> Result<forja_store::LearningPolicy, (String, String)> {
        if let Some(s) = self.start_from {
            l.start_from = forja_store::StartFrom::parse(&s).ok_or_else(|| {
                (
                    "learning.start_from".to_string(),
                    format!("`{}`: use champion or base", forja_control::clip(&s, 40)),
                )
            })?;
        }
        if let Some(v) = self.history_replay {
            l.history_replay = v;
        }
        if let Some(v) = self.history_window {
            l.history_window = v;
        }
        if let Some(v) = self.general_replay {
            l.general_replay = v;
        }
        l.validate().map_err(|why| {
            let field = why.split_whitespace().next().unwrap_or("learning").to_string();
            (field, why)
        })?;
        Ok(l)
    }
}

/// Body of `POST /v1/admin/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// `tenant`, `worker` or `admin`.
    pub role: String,
    /// The tenant's name (tenant keys).
    #[serde(default)]
    pub tenant: Option<String>,
    /// A name for people.
    #[serde(default)]
    pub name: Option<String>,
    /// Seconds until it expires.
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// Body of `POST /v1/admin/keys/{id}/rotate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// Seconds the old key keeps working (default 0: revoked now).
    #[serde(default)]
    pub grace_s: Option<u64>,
}

/// Body of `POST /v1/admin/tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique name.
    pub name: String,
    /// `free`, `standard` (default) or `pro`.
    #[serde(default)]
    pub tier: Option<String>,
    /// Settings to change from the tier's defaults.
    #[serde(default)]
    pub settings: Option<SettingsPatch>,
}

/// Settings to change (absent fields keep their value; `null` clears an
/// optional one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    #[serde(default, deserialize_with = "some")]
    threshold: Option<Option<u32>>,
    #[serde(default, deserialize_with = "some")]
    cron: Option<Option<String>>,
    #[serde(default)]
    max_trainings: Option<u32>,
    #[serde(default)]
    quota_window_s: Option<i64>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default, deserialize_with = "some")]
    base_model: Option<Option<String>>,
    #[serde(default, deserialize_with = "some")]
    webhook_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "some")]
    webhook_secret: Option<Option<String>>,
    #[serde(default)]
    storage_mb: Option<u64>,
    #[serde(default)]
    pii_deny: Option<Vec<String>>,
    #[serde(default)]
    allow_forced_promotion: Option<bool>,
    #[serde(default, deserialize_with = "some")]
    job_spec: Option<Option<SpecWire>>,
    #[serde(default)]
    learning: Option<LearningPatch>,
    /// `null` turns default retrieval off.
    #[serde(default, deserialize_with = "some")]
    rag: Option<Option<RagWire>>,
    /// `null` turns entity memory off.
    #[serde(default, deserialize_with = "some")]
    memory: Option<Option<MemoryWire>>,
    /// `null` turns automatic rollback off.
    #[serde(default, deserialize_with = "some")]
    auto_rollback: Option<Option<AutoRollbackWire>>,
}

/// A tenant's automatic rollback on the wire.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoRollbackWire {
    #[serde(default)]
    window_s: Option<i64>,
    #[serde(default)]
    min_served: Option<u64>,
    #[serde(default)]
    z: Option<f64>,
}

/// A tenant's entity memory on the wire.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryWire {
    #[serde(default)]
    extract: Option<bool>,
    #[serde(default)]
    recall: Option<bool>,
    #[serde(default)]
    k: Option<u32>,
}

/// A tenant's default retrieval on the wire.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RagWire {
    #[serde(default)]
    k: Option<u32>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    sources: Option<Vec<String>>,
}

fn some<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl SettingsPatch {
    /// `s` with the patch applied, or which field is wrong and why.
    pub fn apply(self, mut s: TenantSettings) -> Result<TenantSettings, (String, String)> {
        let bad = |p: &str, why: &str| Err((p.to_string(), why.to_string()));
        if let Some(t) = self.threshold {
            s.threshold = t.filter(|&t| t > 0);
        }
        if let Some(c) = self.cron {
            if let Some(expr) = &c {
                forja_control::schedule::parse(expr)
                    .map_err(|e| ("cron".to_string(), e.to_string()))?;
            }
            s.cron = c;
        }
        if let Some(m) = self.max_trainings {
            s.max_trainings = m;
        }
        if let Some(w) = self.quota_window_s {
            if w <= 0 {
                return bad("quota_window_s", "must be positive");
            }
            s.quota_window_s = w;
        }
        if let Some(p) = self.priority {
            s.priority = p;
        }
        if let Some(m) = self.base_model {
            s.base_model = m;
        }
        if let Some(u) = self.webhook_url {
            if let Some(u) = &u {
                if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() > 2048 {
                    return bad("webhook_url", "an http(s) URL of at most 2048 characters");
                }
            }
            s.webhook_url = u;
        }
        if let Some(k) = self.webhook_secret {
            s.webhook_secret = k;
        }
        if let Some(m) = self.storage_mb {
            s.storage_mb = m;
        }
        if let Some(d) = self.pii_deny {
            if d.len() > 10_000 || d.iter().any(|n| n.trim().is_empty() || n.len() > 200) {
                return bad("pii_deny", "up to 10000 non-empty names of at most 200 characters");
            }
            s.pii_deny = d;
        }
        if let Some(a) = self.allow_forced_promotion {
            s.allow_forced_promotion = a;
        }
        if let Some(l) = self.learning {
            s.learning = l.apply(s.learning)?;
        }
        if let Some(r) = self.rag {
            s.rag = match r {
                None => None,
                Some(w) => {
                    let d = forja_store::RagDefaults::default();
                    let k = w.k.unwrap_or(d.k);
                    if !(1..=forja_control::knowledge::MAX_K as u32).contains(&k) {
                        return bad("rag.k", "must be 1 to 50");
                    }
                    let mode = w.mode.unwrap_or(d.mode);
                    if forja_control::knowledge::Mode::parse(&mode).is_none() {
                        return bad("rag.mode", "use hybrid, bm25 or dense");
                    }
                    let sources = w.sources.unwrap_or_default();
                    if sources.len() > 100 {
                        return bad("rag.sources", "up to 100 source ids");
                    }
                    Some(forja_store::RagDefaults { k, mode, sources })
                }
            };
        }
        if let Some(a) = self.auto_rollback {
            s.auto_rollback = match a {
                None => None,
                Some(w) => {
                    let d = s.auto_rollback.clone().unwrap_or_default();
                    let r = forja_store::AutoRollback {
                        window_s: w.window_s.unwrap_or(d.window_s),
                        min_served: w.min_served.unwrap_or(d.min_served),
                        z: w.z.unwrap_or(d.z),
                    };
                    if r.window_s < 60 {
                        return bad("auto_rollback.window_s", "at least 60 seconds");
                    }
                    if r.min_served == 0 {
                        return bad("auto_rollback.min_served", "at least 1");
                    }
                    if !(r.z.is_finite() && (1.0..=10.0).contains(&r.z)) {
                        return bad(
                            "auto_rollback.z",
                            "between 1 and 10 (2.33: one-sided α = 0.01)",
                        );
                    }
                    Some(r)
                }
            };
        }
        if let Some(m) = self.memory {
            s.memory = match m {
                None => None,
                Some(w) => {
                    let d = s.memory.clone().unwrap_or_default();
                    let k = w.k.unwrap_or(d.k);
                    if !(1..=forja_control::memory::MAX_RECALL as u32).contains(&k) {
                        return bad("memory.k", "must be 1 to 32");
                    }
                    Some(forja_store::MemoryDefaults {
                        extract: w.extract.unwrap_or(d.extract),
                        recall: w.recall.unwrap_or(d.recall),
                        k,
                    })
                }
            };
        }
        if let Some(j) = self.job_spec {
            s.job_spec = match j {
                None => None,
                Some(w) => {
                    let spec = w.spec()?;
                    forja_control::hyper::check_spec(&spec)
                        .map_err(|e| ("job_spec".into(), e.to_string()))?;
                    forja_control::hyper::resolve(&spec.hyperparameters, 100, 0)
                        .map_err(|e| ("job_spec".into(), e.to_string()))?;
                    (spec != forja_store::JobSpec::default()).then_some(spec)
                }
            };
        }
        Ok(s)
    }
}

/// Body of `POST /v1/admin/auditors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditorBody {
    /// Unique name.
    pub name: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// 0–100 (default 100).
    #[serde(default)]
    pub reputation: Option<i64>,
}
