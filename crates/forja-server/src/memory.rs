//! Entity memory in chat: recall before an answer, extraction after it.
//!
//! - **Recall**: the request's `memory` (or the tenant's default) looks up
//!   the current facts about what the last user message mentions and puts
//!   the ones that fit the context into that user turn, quoted, beside any
//!   retrieved passages (never in the system prompt). The answer lists
//!   them as `memory_facts`.
//! - **Extraction**: after an answer, the user's last message goes to a
//!   bounded queue; one task takes it, asks the base model for the facts
//!   under the memory schema (through the batcher, like any request of
//!   that tenant) and has forja-control check and store them. A full queue
//!   (64 messages, 8 of one tenant) drops the message with a recorded
//!   reason: extraction never slows an answer, and one tenant's burst
//!   cannot crowd out the others.

use crate::infer_wire::MemoryAsk;
use crate::wire::memory as wire;
use crate::{ApiError, AppState};
use forja_control::memory::{self, Source};
use forja_control::Control;
use forja_core::{ChatMessage, GenerationParams, Role};
use forja_engine::Grammar;
use forja_knowledge::context;
use forja_serve::{GenEvent, GenRequest, Serving};
use forja_store::{Remembered, Tenant};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Messages waiting for extraction, node-wide.
pub const QUEUE: usize = 64;
/// Messages of one tenant waiting for extraction: one tenant's burst of
/// chats cannot fill the queue for the others.
pub const PER_TENANT: usize = 8;
/// Most tokens of one extraction's answer.
const MAX_TOKENS: usize = 192;

/// What memory does for one chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUse {
    /// Facts to recall (0: none).
    pub k: usize,
    /// Extract facts from the user's message afterwards.
    pub remember: bool,
}

/// The request's `memory`, else the tenant's setting.
pub fn effective(asked: Option<Option<MemoryAsk>>, t: &Tenant) -> MemoryUse {
    let d = t.settings.memory.as_ref();
    let default_k = d.map_or(8, |d| d.k as usize);
    match asked {
        None => d.map_or(MemoryUse::default(), |d| MemoryUse {
            k: if d.recall { d.k as usize } else { 0 },
            remember: d.extract,
        }),
        Some(None) => MemoryUse::default(),
        Some(Some(a)) => MemoryUse {
            k: a.k.unwrap_or(default_k).min(memory::MAX_RECALL),
            remember: a.remember.unwrap_or(d.is_some_and(|d| d.extract)),
        },
    }
}

/// The last user message's text.
pub fn last_user(messages: &[ChatMessage]) -> Option<&str> {
    messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.as_str())
}

/// The messages with the recalled facts that fit in the last user turn,
/// and those facts as the answer lists them. `about` is the user's own
/// message (before retrieval added passages to it).
pub async fn recall(
    s: &AppState,
    sv: &Arc<Serving>,
    t: &Tenant,
    mut messages: Vec<ChatMessage>,
    about: String,
    k: usize,
    max_tokens: usize,
) -> Result<(Vec<ChatMessage>, Value), ApiError> {
    let Some(last) = messages.iter().rposition(|m| m.role == Role::User) else {
        return Ok((messages, Value::Array(Vec::new())));
    };
    let tenant = t.clone();
    let facts = s.run(move |c| Ok(c.recall(&tenant, &about, k)?)).await?;
    if facts.is_empty() {
        return Ok((messages, Value::Array(Vec::new())));
    }
    let engine = sv.engine().clone();
    let base = messages.clone();
    let (block, used) = tokio::task::spawn_blocking(move || {
        let specials = engine.tokenizer().special_texts();
        let kept = crate::rag::fitting(
            &engine,
            &base,
            max_tokens,
            context::FACTS_PREAMBLE,
            facts,
            |_, f| (context::render_fact(&memory::fact_line(f), &specials), 0),
        )?;
        let lines: Vec<String> = kept.iter().map(memory::fact_line).collect();
        Ok::<_, ApiError>((context::render_facts(&lines, &specials), kept))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("a recall task failed: {e}")))??;
    if used.is_empty() {
        return Ok((messages, Value::Array(Vec::new())));
    }
    messages[last].content = context::user_turn(&block, &messages[last].content);
    let listed = used.iter().enumerate().map(|(i, f)| wire::used(i + 1, f)).collect();
    Ok((messages, Value::Array(listed)))
}

/// One message to extract facts from.
#[derive(Debug)]
pub struct Job {
    tenant: Tenant,
    text: String,
    source: Source,
}

/// The extraction queue's sending side.
#[derive(Debug, Clone)]
pub struct Extractor {
    tx: mpsc::Sender<Job>,
    /// Messages waiting, by tenant id.
    waiting: Arc<Mutex<HashMap<String, usize>>>,
}

impl Extractor {
    /// A queue and its receiving end (for [`run`]).
    pub fn new() -> (Extractor, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Extractor { tx, waiting: Arc::default() }, rx)
    }

    /// Counts a message of `tenant` in (`true`) unless it has
    /// [`PER_TENANT`] waiting.
    fn enter(&self, tenant: &str) -> bool {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let n = w.entry(tenant.to_string()).or_default();
        if *n >= PER_TENANT {
            return false;
        }
        *n += 1;
        true
    }

    /// Counts a message of `tenant` out (taken, or never queued).
    fn leave(&self, tenant: &str) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = w.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                w.remove(tenant);
            }
        }
    }

    /// Queues `text` (a user's message in completion `id`); a full queue
    /// records the refusal instead.
    pub fn submit(
        &self,
        control: &Arc<Control>,
        metrics: &forja_serve::Metrics,
        tenant: &Tenant,
        text: &str,
        id: &str,
    ) {
        let job = Job {
            tenant: tenant.clone(),
            text: text.chars().take(memory::MAX_TEXT).collect(),
            source: Source::Conversation(id.to_string()),
        };
        let why = if !self.enter(&tenant.id) {
            format!("this tenant already had {PER_TENANT} messages waiting for extraction")
        } else {
            match self.tx.try_send(job) {
                Ok(()) => return,
                Err(_) => {
                    self.leave(&tenant.id);
                    format!("the extraction queue was full ({QUEUE} messages waiting)")
                }
            }
        };
        metrics.memory_extractions.with_label_values(&["dropped"]).inc();
        let control = control.clone();
        let (tenant, source) = (tenant.clone(), Source::Conversation(id.to_string()));
        tokio::task::spawn_blocking(move || {
            if let Err(e) = control.reject(&tenant, &source, "", &why) {
                tracing::warn!(error = %e, "cannot record a memory refusal");
            }
        });
    }
}

/// Takes queued messages one at a time until the queue closes.
pub async fn run(s: AppState, mut rx: mpsc::Receiver<Job>) {
    while let Some(job) = rx.recv().await {
        s.memory.leave(&job.tenant.id);
        let Some(sv) = s.serving.get().cloned() else {
            // Not serving yet: nothing can extract; the message is dropped
            // with its reason.
            let (c, t, src) = (s.control.clone(), job.tenant, job.source);
            let _ =
                s.run(move |_| Ok(c.reject(&t, &src, "", "the model was not loaded yet")?)).await;
            continue;
        };
        let outcome = match extract(&s, &sv, &job.tenant, &job.text, job.source.clone()).await {
            Ok(_) => "done",
            Err(e) => {
                tracing::warn!(tenant = %job.tenant.name, error = %e, "memory extraction failed");
                "failed"
            }
        };
        s.metrics.memory_extractions.with_label_values(&[outcome]).inc();
    }
}

/// Extracts and remembers the facts of `text` now.
pub async fn extract(
    s: &AppState,
    sv: &Arc<Serving>,
    t: &Tenant,
    text: &str,
    source: Source,
) -> Result<forja_control::memory::Outcome, ApiError> {
    let target = sv.resolve(t, sv.base_name()).await?;
    let prompt = sv.chat_prompt(memory::extraction_messages(text)).await?;
    let mut params = GenerationParams { max_tokens: MAX_TOKENS, ..Default::default() };
    params.sampling.temperature = 0.0;
    let req = GenRequest {
        prompts: vec![prompt],
        params,
        n: 1,
        grammar: Some(Grammar::JsonSchema(memory::schema())),
    };
    let mut stream = sv.generate(t, &target, req).await?;
    let mut out = None;
    while let Some((_, ev)) = stream.recv().await {
        if let GenEvent::Done(r) = ev {
            out = Some(r.map_err(crate::inference::engine_err)?);
            break;
        }
    }
    let out = out.ok_or_else(|| ApiError::Internal("the generation thread stopped".into()))?;
    let (tenant, text) = (t.clone(), text.to_string());
    let (o, unparsed) = s
        .run(move |c| {
            let (facts, unparsed) = match memory::parse(&out.text) {
                Ok(f) => (f, 0),
                Err(why) => {
                    c.reject(&tenant, &source, &out.text, &why)?;
                    (Vec::new(), 1)
                }
            };
            Ok((c.remember(&tenant, &facts, &source, Some(&text))?, unparsed))
        })
        .await?;
    let m = &s.metrics.memory_facts;
    for r in &o.stored {
        match r {
            Remembered::New { superseded, .. } => {
                m.with_label_values(&["new"]).inc();
                m.with_label_values(&["superseded"]).inc_by(superseded.len() as u64);
            }
            Remembered::Merged(_) => m.with_label_values(&["merged"]).inc(),
        }
    }
    m.with_label_values(&["rejected"]).inc_by((o.rejected.len() + unparsed) as u64);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tenant_cannot_hold_more_than_its_share_of_the_queue() {
        let (x, _rx) = Extractor::new();
        for _ in 0..PER_TENANT {
            assert!(x.enter("a"));
        }
        assert!(!x.enter("a"), "a ninth message of one tenant is refused");
        assert!(x.enter("b"), "another tenant still gets in");
        x.leave("a");
        assert!(x.enter("a"));
        for _ in 0..PER_TENANT + 3 {
            x.leave("b");
        }
        assert!(!x.waiting.lock().unwrap().contains_key("b"));
    }
}
