//! Feedback to training lines: a posted example (a conversation or prompt,
//! the model's output, a correction, a rating) is checked, normalised,
//! quality-filtered and PII-scrubbed with forja-data before the store
//! counts it toward a trigger. Refused examples are kept with the reason.
//! What is stored of the post itself (`input`) is scrubbed the same way:
//! no personal data that curation removes stays at rest.
//!
//! Each tenant's scrubber is the node's PII configuration plus the
//! tenant's own deny list (names always masked, whatever the node's allow
//! list says), built once and cached.

use crate::{ControlError, Result};
use forja_core::{ChatMessage, Role};
use forja_data::pii::{Auditor, DocScrub, Finding, PiiConfig, Scrubber};
use forja_data::{Kind, QualityConfig};
use forja_store::{sha256_hex, Curated, NewExample, Tenant};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Most turns in one posted conversation.
pub const MAX_TURNS: usize = 256;
/// Most characters in one message, output or correction.
pub const MAX_TEXT: usize = 64 << 10;
/// Most metadata entries, and their JSON size.
pub const MAX_METADATA: (usize, usize) = (16, 4 << 10);

/// One feedback item, as the API and the CLI accept it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Feedback {
    /// The conversation up to the answer (or use `prompt`).
    pub messages: Option<Vec<ChatMessage>>,
    /// A single user turn (instead of `messages`).
    pub prompt: Option<String>,
    /// What the model answered.
    pub output: Option<String>,
    /// The answer it should have given.
    pub correction: Option<String>,
    /// 1 (bad) to 5 (good).
    pub rating: Option<u8>,
    /// Free-form metadata kept with the example.
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// Where it came from (`api` by default).
    pub source: Option<String>,
    /// A completion this server returned: its conversation and output are
    /// used unless `messages`/`prompt` and `output` are given.
    pub completion_id: Option<String>,
}

impl Feedback {
    /// Checks sizes: turns, text lengths, metadata (a request error naming
    /// the field).
    pub fn check_sizes(&self) -> Result<()> {
        let long = |param: &str, t: &str| {
            if t.chars().count() > MAX_TEXT {
                Err(ControlError::invalid(param, format!("longer than {MAX_TEXT} characters")))
            } else {
                Ok(())
            }
        };
        if let Some(m) = &self.messages {
            if m.len() > MAX_TURNS {
                return Err(ControlError::invalid(
                    "messages",
                    format!("at most {MAX_TURNS} turns per example"),
                ));
            }
            for (i, msg) in m.iter().enumerate() {
                long(&format!("messages[{i}].content"), &msg.content)?;
            }
        }
        for (param, t) in
            [("prompt", &self.prompt), ("output", &self.output), ("correction", &self.correction)]
        {
            if let Some(t) = t {
                long(param, t)?;
            }
        }
        let (n, bytes) = MAX_METADATA;
        if self.metadata.len() > n
            || serde_json::to_string(&self.metadata).map_or(0, |s| s.len()) > bytes
        {
            return Err(ControlError::invalid(
                "metadata",
                format!("at most {n} entries and {bytes} bytes of JSON"),
            ));
        }
        if self.source.as_ref().is_some_and(|s| s.len() > 64) {
            return Err(ControlError::invalid("source", "at most 64 characters"));
        }
        Ok(())
    }
}

/// Turns feedback into curated training lines.
#[derive(Debug)]
pub struct Curator {
    /// What curation did since the process started (the node's metrics).
    pub stats: CurationStats,
    pii: PiiConfig,
    node: Arc<Scrubber>,
    /// Scrubbers with a tenant's deny list, by whether they look for
    /// person names and that list.
    tenants: Mutex<HashMap<ScrubberKey, Arc<Scrubber>>>,
    quality: QualityConfig,
}

/// Counts of what feedback curation did in this process.
#[derive(Debug, Default)]
pub struct CurationStats {
    /// Examples curated into training lines and stored.
    pub kept: std::sync::atomic::AtomicU64,
    /// Examples refused (nothing to learn from, failed quality rules).
    pub rejected: std::sync::atomic::AtomicU64,
    /// Examples refused as exact duplicates of one already pending.
    pub duplicates: std::sync::atomic::AtomicU64,
    pii: Mutex<BTreeMap<String, u64>>,
}

impl CurationStats {
    /// Personal data items scrubbed from posted feedback, by kind.
    pub fn pii(&self) -> BTreeMap<String, u64> {
        self.pii.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn scrubbed(&self, counts: &ScrubCounts) {
        let mut all = self.pii.lock().unwrap_or_else(|e| e.into_inner());
        for (k, n) in counts {
            *all.entry(k.clone()).or_default() += u64::from(*n);
        }
    }
}

/// A cached scrubber: whether it looks for person names, and the deny list.
type ScrubberKey = (bool, Vec<String>);

/// How many personal data items a scrub rewrote.
pub type ScrubCounts = BTreeMap<String, u32>;

impl Curator {
    /// A curator with forja-data's PII defaults (every recognizer, replace
    /// operator) and quality rules relaxed for short answers.
    pub fn new(pii: &PiiConfig) -> Result<Curator> {
        let mut quality = QualityConfig::default();
        quality.text.min_chars = 2;
        Ok(Curator {
            stats: CurationStats::default(),
            node: Arc::new(Scrubber::new(pii)?),
            pii: pii.clone(),
            tenants: Mutex::default(),
            quality,
        })
    }

    /// The scrubber for `tenant`: the node's, plus its deny list.
    pub fn scrubber(&self, tenant: &Tenant) -> Result<Arc<Scrubber>> {
        if tenant.settings.pii_deny.is_empty() {
            return Ok(self.node.clone());
        }
        self.cached(tenant, true)
    }

    /// The scrubber for what entity memory stores: the tenant's, except
    /// that person names are kept (they are what memory is about, and
    /// forgetting a person removes them), unless on a deny list.
    pub fn memory_scrubber(&self, tenant: &Tenant) -> Result<Arc<Scrubber>> {
        self.cached(tenant, false)
    }

    fn cached(&self, tenant: &Tenant, names: bool) -> Result<Arc<Scrubber>> {
        let key = (names, tenant.settings.pii_deny.clone());
        let mut cache = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.get(&key) {
            return Ok(s.clone());
        }
        let mut cfg = self.pii.clone();
        cfg.deny_list.extend(key.1.iter().cloned());
        if !names {
            cfg.enabled.retain(|k| *k != forja_data::pii::EntityKind::Person);
        }
        let s = Arc::new(Scrubber::new(&cfg)?);
        if cache.len() >= 256 {
            cache.clear();
        }
        cache.insert(key, s.clone());
        Ok(s)
    }

    /// The final audit for `tenant`'s data (high-confidence kinds and its
    /// deny list, plus the node's).
    pub fn auditor(&self, tenant: &Tenant) -> Result<Auditor> {
        let mut deny = self.pii.deny_list.clone();
        deny.extend(tenant.settings.pii_deny.iter().cloned());
        Ok(Auditor::new(&deny)?)
    }

    /// Checks the shape and sizes (an error is the caller's mistake: a
    /// 400), then curates (a refusal is data: the example is stored as
    /// rejected). The stored input is the post, scrubbed.
    pub fn curate(&self, fb: &Feedback, tenant: &Tenant) -> Result<NewExample> {
        fb.check_sizes()?;
        let mut context = match (&fb.messages, &fb.prompt) {
            (Some(m), None) if !m.is_empty() => m.clone(),
            (None, Some(p)) if !p.trim().is_empty() => {
                vec![ChatMessage { role: Role::User, content: p.clone() }]
            }
            (Some(_), Some(_)) => {
                return Err(ControlError::invalid(
                    "messages",
                    "give `messages` or `prompt`, not both",
                ))
            }
            _ => {
                return Err(ControlError::invalid(
                    "messages",
                    "give the conversation as `messages` (or a `prompt`)",
                ))
            }
        };
        if let Some(r) = fb.rating.filter(|r| !(1..=5).contains(r)) {
            return Err(ControlError::invalid("rating", format!("{r} is not in 1..=5")));
        }
        // A conversation that ends with the model's answer carries the output.
        let mut output = fb.output.clone();
        if context.last().is_some_and(|m| m.role == Role::Assistant) && output.is_none() {
            output = context.pop().map(|m| m.content);
        }
        if !context.iter().any(|m| m.role == Role::User) {
            return Err(ControlError::invalid("messages", "the conversation has no user turn"));
        }
        let scrubber = self.scrubber(tenant)?;
        let mut input = serde_json::to_value(fb).expect("feedback serialises");
        let mut counts = ScrubCounts::new();
        scrub_strings(&scrubber, &mut input, &mut DocScrub::default(), &mut counts);
        self.stats.scrubbed(&counts);
        let source = fb.source.clone().unwrap_or_else(|| "api".into());
        let target = match (&fb.correction, fb.rating) {
            (Some(c), _) if !c.trim().is_empty() => Ok(c.clone()),
            (_, Some(r)) if r >= 4 => output.ok_or_else(|| {
                "rated well but has no `output` to learn from".to_string()
            }),
            _ => Err(
                "nothing to learn from: give a `correction`, or a `rating` of 4-5 with the `output`"
                    .to_string(),
            ),
        };
        let curated = target.and_then(|t| self.line(&scrubber, context, &t));
        if curated.is_err() {
            self.stats.rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(NewExample { source, input, curated })
    }

    fn line(
        &self,
        scrubber: &Scrubber,
        mut turns: Vec<ChatMessage>,
        target: &str,
    ) -> std::result::Result<Curated, String> {
        turns.push(ChatMessage { role: Role::Assistant, content: target.to_string() });
        let mut doc = DocScrub::default();
        for m in &mut turns {
            let text = forja_data::normalize(&m.content, Kind::Text);
            m.content = scrubber.scrub(&text, &mut doc).text;
        }
        let answer = &turns.last().expect("pushed").content;
        if let Some(why) = self.quality.check(answer, Kind::Text, None) {
            return Err(format!("the answer fails curation: {why}"));
        }
        let canonical = serde_json::to_string(&turns).expect("messages serialise");
        Ok(Curated {
            record: serde_json::json!({ "messages": turns }),
            content_hash: sha256_hex(canonical.as_bytes()),
        })
    }
}

/// Scrubs every string in `v` (object keys stay), sharing one document
/// state so a name gets the same replacement everywhere; adds what was
/// rewritten to `counts`.
pub fn scrub_strings(
    s: &Scrubber,
    v: &mut serde_json::Value,
    doc: &mut DocScrub,
    counts: &mut ScrubCounts,
) {
    use serde_json::Value;
    match v {
        Value::String(t) => {
            let out = s.scrub(t, doc);
            for (k, n) in out.counts {
                *counts.entry(k.as_str().to_string()).or_default() += n;
            }
            *t = out.text;
        }
        Value::Array(a) => a.iter_mut().for_each(|x| scrub_strings(s, x, doc, counts)),
        Value::Object(o) => o.values_mut().for_each(|x| scrub_strings(s, x, doc, counts)),
        _ => {}
    }
}

/// The high-confidence findings in every string of `v`.
pub fn audit_strings(a: &Auditor, v: &serde_json::Value) -> Vec<Finding> {
    use serde_json::Value;
    match v {
        Value::String(t) => a.audit(t),
        Value::Array(x) => x.iter().flat_map(|x| audit_strings(a, x)).collect(),
        Value::Object(o) => o.values().flat_map(|x| audit_strings(a, x)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(v: serde_json::Value) -> Feedback {
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Feedback {
            messages: v.get("messages").map(|m| serde_json::from_value(m.clone()).unwrap()),
            prompt: text("prompt"),
            output: text("output"),
            correction: text("correction"),
            rating: v.get("rating").and_then(|r| r.as_u64()).map(|r| r as u8),
            ..Feedback::default()
        }
    }

    fn tenant(deny: &[&str]) -> Tenant {
        Tenant {
            id: "tn-1".into(),
            name: "acme".into(),
            tier: "standard".into(),
            settings: forja_store::TenantSettings {
                pii_deny: deny.iter().map(|d| d.to_string()).collect(),
                ..Default::default()
            },
            created_at: 0,
        }
    }

    #[test]
    fn curation_cases() {
        let c = Curator::new(&PiiConfig::default()).unwrap();
        // (input, Ok(answer) | Err(part of the rejection), for curated lines)
        let cases = [
            (
                serde_json::json!({"prompt": "Resume el acta", "output": "mal", "correction": "El pleno aprobó la moción."}),
                Ok("El pleno aprobó la moción."),
            ),
            (
                serde_json::json!({"messages": [{"role": "user", "content": "hola"}, {"role": "assistant", "content": "Buenos días."}], "rating": 5}),
                Ok("Buenos días."),
            ),
            (
                serde_json::json!({"prompt": "hola", "output": "Buenas", "rating": 2}),
                Err("nothing to learn from"),
            ),
            (
                serde_json::json!({"prompt": "Llama a Juan", "correction": "Su teléfono es +34 612 345 678, escriba a juan.perez@example.com."}),
                Ok("PHONE"),
            ),
            (serde_json::json!({"prompt": "hola", "correction": "x"}), Err("fails curation")),
        ];
        for (input, want) in cases {
            let ex = c.curate(&fb(input.clone()), &tenant(&[])).unwrap();
            match (want, &ex.curated) {
                (Ok(part), Ok(cur)) => {
                    let msgs = cur.record["messages"].as_array().unwrap();
                    let last = msgs.last().unwrap()["content"].as_str().unwrap();
                    assert!(
                        last.contains(part) || last.contains(&format!("<{part}")),
                        "{input}: {last}"
                    );
                    assert!(
                        !last.contains("612 345 678") && !last.contains("juan.perez"),
                        "{last}"
                    );
                }
                (Err(part), Err(why)) => assert!(why.contains(part), "{input}: {why}"),
                (w, got) => panic!("{input}: wanted {w:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn shape_errors_are_request_errors() {
        let c = Curator::new(&PiiConfig::default()).unwrap();
        for (input, param) in [
            (serde_json::json!({"correction": "x"}), "messages"),
            (serde_json::json!({"prompt": "a", "messages": [], "correction": "x"}), "messages"),
            (serde_json::json!({"prompt": "a", "rating": 9}), "rating"),
            (
                serde_json::json!({"prompt": "a", "correction": "x".repeat(MAX_TEXT + 1)}),
                "correction",
            ),
            (
                serde_json::json!({"messages": [{"role": "system", "content": "s"}], "correction": "x"}),
                "messages",
            ),
        ] {
            let e = c.curate(&fb(input.clone()), &tenant(&[])).unwrap_err();
            assert!(
                matches!(&e, ControlError::InvalidRequest { param: p, .. } if p == param),
                "{input}: {e}"
            );
        }
    }

    /// Regression (hardening #13): `examples.input` kept the raw post
    /// (names, DNI, phones) that curation scrubbed from the training line.
    #[test]
    fn the_stored_input_is_scrubbed_and_a_tenant_deny_list_always_masks() {
        let c = Curator::new(&PiiConfig {
            allow_list: vec!["Ana Ruiz".into()],
            ..PiiConfig::default()
        })
        .unwrap();
        let post = serde_json::json!({
            "prompt": "El vecino con DNI 12345678Z llamó al +34 612 345 678",
            "output": "x",
            "correction": "Ana Ruiz atendió al vecino (DNI 12345678Z).",
        });
        let ex = c.curate(&fb(post.clone()), &tenant(&[])).unwrap();
        let stored = ex.input.to_string();
        assert!(!stored.contains("12345678Z") && !stored.contains("612 345"), "{stored}");
        assert!(stored.contains("Ana Ruiz"), "the node allow list keeps officials: {stored}");
        // The tenant's deny list masks the name anyway, in the input and the line.
        let ex = c.curate(&fb(post), &tenant(&["Ana Ruiz"])).unwrap();
        let line = ex.curated.unwrap().record.to_string();
        assert!(!ex.input.to_string().contains("Ana Ruiz") && !line.contains("Ana Ruiz"), "{line}");
        let audit = c.auditor(&tenant(&["Ana Ruiz"])).unwrap();
        assert_eq!(
            audit_strings(&audit, &serde_json::json!(["x", {"k": "hola Ana Ruiz"}])).len(),
            1
        );
    }
}
