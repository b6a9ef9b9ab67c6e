//! Retrieval for chat: the request's `rag` (or the tenant's default)
//! searches the tenant's knowledge base with the last user message, and
//! the passages that fit the context go into that user turn as quoted data
//! (forja-knowledge's `context`), never into the system prompt: a
//! retrieved document has at most the user's own say. The answer carries
//! the passages it was given as `citations`.

use crate::infer_wire::Rag;
use crate::knowledge_api::search_hits;
use crate::wire::knowledge as wire;
use crate::{ApiError, AppState};
use forja_control::knowledge::{Hit, Mode, Query};
use forja_core::{ChatMessage, Role};
use forja_knowledge::context::{self, Passage};
use forja_serve::Serving;
use forja_store::Tenant;
use serde_json::Value;
use std::sync::Arc;

/// Tokens kept free beyond the answer's `max_tokens`.
const MARGIN: usize = 16;

/// What retrieval applies to a request: its own `rag`, else the tenant's
/// default (whose `dense` becomes `hybrid`, i.e. BM25, on a node without
/// an embedder: a default must not fail every chat).
pub fn effective(asked: Option<Option<Rag>>, t: &Tenant, embedder: bool) -> Option<Rag> {
    match asked {
        Some(r) => r,
        None => t.settings.rag.as_ref().map(|d| Rag {
            k: (d.k as usize).clamp(1, forja_control::knowledge::MAX_K),
            sources: (!d.sources.is_empty()).then(|| d.sources.clone()),
            mode: match Mode::parse(&d.mode) {
                Some(Mode::Dense) if !embedder => Mode::Hybrid,
                m => m.unwrap_or(Mode::Hybrid),
            },
        }),
    }
}

/// The messages with the retrieved passages in the last user turn, and
/// the citations (`[]` when nothing was found or nothing fits).
pub async fn augment(
    s: &AppState,
    sv: &Arc<Serving>,
    t: &Tenant,
    mut messages: Vec<ChatMessage>,
    rag: Rag,
    max_tokens: usize,
) -> Result<(Vec<ChatMessage>, Value), ApiError> {
    // Nothing to search with (a conversation of system turns): no passages.
    let Some(last) = messages.iter().rposition(|m| m.role == Role::User) else {
        return Ok((messages, Value::Array(Vec::new())));
    };
    let query: String = messages[last].content.chars().take(2000).collect();
    let hits =
        search_hits(s, t, Query { text: query, k: rag.k, sources: rag.sources, mode: rag.mode })
            .await
            .or_else(|e| match e {
                // A message with no searchable word finds nothing.
                ApiError::BadRequest { param: Some(p), .. } if p == "query" => Ok(Vec::new()),
                e => Err(e),
            })?;
    if hits.is_empty() {
        return Ok((messages, Value::Array(Vec::new())));
    }
    let engine = sv.engine().clone();
    let user = messages[last].content.clone();
    let base = messages.clone();
    let (block, used) = tokio::task::spawn_blocking(move || fit(&engine, &base, &hits, max_tokens))
        .await
        .map_err(|e| ApiError::Internal(format!("a retrieval task failed: {e}")))??;
    if used.is_empty() {
        return Ok((messages, Value::Array(Vec::new())));
    }
    messages[last].content = context::user_turn(&block, &user);
    let citations = used.iter().enumerate().map(|(i, h)| wire::citation(i + 1, h)).collect();
    Ok((messages, Value::Array(citations)))
}

/// The passages, best first, that fit beside the conversation and the
/// answer in the model's context; the rendered block.
fn fit(
    engine: &forja_engine::Engine,
    messages: &[ChatMessage],
    hits: &[Hit],
    max_tokens: usize,
) -> Result<(String, Vec<Hit>), ApiError> {
    let specials = &engine.tokenizer().special_texts();
    // Each passage after the first is preceded by a blank line (2 tokens).
    let kept = fitting(engine, messages, max_tokens, context::PREAMBLE, hits.to_vec(), |i, h| {
        (context::render_one(i + 1, &h.passage(), specials), 2)
    })?;
    let passages: Vec<Passage<'_>> = kept.iter().map(Hit::passage).collect();
    Ok((context::render(&passages, specials), kept))
}

/// The leading `items` whose renderings fit, with `preamble`, beside the
/// conversation and `max_tokens` of answer in the model's context (a
/// margin of [`MARGIN`] tokens kept). `render(i, item)` is the item's text
/// as the prompt shows it and the tokens that join it to the one before.
pub(crate) fn fitting<T>(
    engine: &forja_engine::Engine,
    messages: &[ChatMessage],
    max_tokens: usize,
    preamble: &str,
    items: Vec<T>,
    render: impl Fn(usize, &T) -> (String, usize),
) -> Result<Vec<T>, ApiError> {
    let tok = engine.tokenizer();
    let count =
        |text: &str| tok.encode(text, false).map(|v| v.len()).map_err(crate::inference::engine_err);
    let rendered = engine.render_chat(messages, true).map_err(crate::inference::engine_err)?;
    let used = count(&rendered)?;
    let mut budget =
        engine.ctx_size().saturating_sub(used + max_tokens + MARGIN + count(preamble)?);
    let mut kept = Vec::new();
    for item in items {
        let (text, joint) = render(kept.len(), &item);
        let cost = count(&text)? + joint;
        if cost > budget {
            break;
        }
        budget -= cost;
        kept.push(item);
    }
    Ok(kept)
}
