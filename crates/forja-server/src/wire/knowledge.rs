//! Wire types of `/v1/knowledge`: sources, searches, feeds, and the
//! citations a chat answer carries.

use super::ApiError;
use forja_control::knowledge::{Hit, Mode, Pii, MAX_K};
use forja_store::{KnowledgeFeed, KnowledgeSource};
use serde::Deserialize;
use serde_json::{json, Value};

/// `POST /v1/knowledge/sources` as JSON (text formats; DOCX goes as a
/// multipart `file`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSource {
    /// The document.
    pub text: String,
    /// `text`, `markdown` or `html` (default: from `name`, else text).
    #[serde(default)]
    pub format: Option<String>,
    /// Its title (default: its first heading, else `name`).
    #[serde(default)]
    pub title: Option<String>,
    /// A file name.
    #[serde(default)]
    pub name: Option<String>,
    /// Where it came from.
    #[serde(default)]
    pub url: Option<String>,
    /// `scrub` (default) or `keep`.
    #[serde(default)]
    pub pii: Option<String>,
}

/// `POST /v1/knowledge/search`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// What to look for.
    pub query: String,
    /// How many passages (default 5, at most 50).
    #[serde(default)]
    pub k: Option<usize>,
    /// Only these sources.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// `hybrid` (default), `bm25` or `dense`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// `POST /v1/knowledge/feeds`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddFeed {
    /// The feed's http(s) URL.
    pub url: String,
    /// Seconds between polls (default 3600, at least 60).
    #[serde(default)]
    pub interval_s: Option<u64>,
    /// `scrub` (default) or `keep`, for its entries.
    #[serde(default)]
    pub pii: Option<String>,
}

/// A PII policy field.
pub fn pii(v: Option<&str>) -> Result<Pii, ApiError> {
    match v {
        None => Ok(Pii::Scrub),
        Some(p) => Pii::parse(p).ok_or_else(|| ApiError::bad("pii", "use scrub or keep")),
    }
}

/// A retrieval mode field.
pub fn mode(v: Option<&str>) -> Result<Mode, ApiError> {
    match v {
        None => Ok(Mode::Hybrid),
        Some(m) => Mode::parse(m).ok_or_else(|| ApiError::bad("mode", "use hybrid, bm25 or dense")),
    }
}

/// A `k` field.
pub fn k(v: Option<usize>) -> Result<usize, ApiError> {
    match v.unwrap_or(5) {
        k @ 1..=MAX_K => Ok(k),
        _ => Err(ApiError::bad("k", format!("must be 1 to {MAX_K}"))),
    }
}

/// A `sources` field: at most 100 ids.
pub fn sources(v: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
    match v {
        Some(s) if s.len() > 100 || s.iter().any(|x| x.is_empty() || x.len() > 100) => {
            Err(ApiError::bad("sources", "up to 100 source ids"))
        }
        v => Ok(v),
    }
}

/// A source.
pub fn source(s: &KnowledgeSource) -> Value {
    json!({
        "id": s.id, "object": "knowledge.source", "kind": s.kind, "title": s.title, "url": s.url,
        "format": s.format, "lang": s.lang, "pii": s.pii, "feed_id": s.feed_id,
        "sha256": s.content_sha, "chunks": s.chunks, "duplicates": s.duplicates,
        "bytes": s.bytes, "created_at": s.created_at,
    })
}

/// A search hit.
pub fn hit(h: &Hit) -> Value {
    let c = &h.chunk;
    json!({
        "object": "knowledge.passage", "chunk_id": c.seq, "source_id": c.source_id,
        "title": c.title, "url": c.url, "heading": c.chunk.heading, "text": c.chunk.text,
        "span": {"start": c.chunk.start, "end": c.chunk.end}, "score": h.score,
        "bm25_rank": h.bm25_rank, "dense_rank": h.dense_rank,
    })
}

/// A citation of a chat answer: passage `n` of the prompt.
pub fn citation(n: usize, h: &Hit) -> Value {
    let c = &h.chunk;
    json!({
        "index": n, "chunk_id": c.seq, "source_id": c.source_id, "title": c.title, "url": c.url,
        "heading": c.chunk.heading, "span": {"start": c.chunk.start, "end": c.chunk.end},
        "score": h.score,
    })
}

/// A feed.
pub fn feed(f: &KnowledgeFeed) -> Value {
    json!({
        "id": f.id, "object": "knowledge.feed", "url": f.url, "title": f.title,
        "interval_s": f.interval_s, "pii": f.pii, "next_poll_at": f.next_at,
        "last_polled_at": f.last_polled_at, "last_status": f.last_status, "items": f.items,
        "failures": f.failures, "created_at": f.created_at,
    })
}
