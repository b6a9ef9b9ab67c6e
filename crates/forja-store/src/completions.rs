//! The completion log: what serving answered, by id, so that feedback can
//! refer to a completion (`completion_id`) and training gets the exact
//! prompt and output. Rows expire after a retention period.

use crate::{Result, Timestamp};
use forja_core::ChatMessage;
use serde::{Deserialize, Serialize};

/// One served answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRecord {
    /// The id the API returned (`chatcmpl-…`, `cmpl-…`).
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// What answered: a base model name or a model version id.
    pub model: String,
    /// The conversation before the answer (a raw prompt is one user turn).
    pub messages: Vec<ChatMessage>,
    /// The answer.
    pub output: String,
    /// When it was served.
    pub created_at: Timestamp,
}

/// Storage of [`CompletionRecord`]s (part of every [`crate::Store`]).
pub trait CompletionLog {
    /// Keeps a served answer (`created_at` is set by the store).
    fn record_completion(&self, c: &CompletionRecord) -> Result<()>;
    /// The tenant's completion `id`; another tenant's is `NotFound`.
    fn completion(&self, tenant_id: &str, id: &str) -> Result<CompletionRecord>;
    /// Deletes completions served before `before`; returns how many.
    fn purge_completions(&self, before: Timestamp) -> Result<usize>;
    /// What `model`'s answers to the tenant in `[from, to)` drew: how many
    /// were served, and how many of them got a thumbs-down (rating ≤ 2) or
    /// a correction by their completion id.
    fn live_signals(
        &self,
        tenant_id: &str,
        model: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<LiveSignals>;
}

/// A model's answers and the bad ones among them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveSignals {
    /// Answers served.
    pub served: u64,
    /// Answers rated 1–2 or corrected.
    pub bad: u64,
}
