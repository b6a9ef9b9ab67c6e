//! The knowledge base's durable half: a tenant's sources (documents, feed
//! entries) with their canonical text, their passages (text, span, dedup
//! keys, embedding), removals, and the feeds polled for new entries.
//! Passages and removals carry node-wide sequence numbers that never
//! repeat, so a derived index can replay what it has not applied.

use crate::{Result, Timestamp};

/// A source in a tenant's knowledge base.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeSource {
    /// `ksrc-…`.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// `document`, `feed_item` or `minutes` (a corrected final).
    pub kind: String,
    /// Its title.
    pub title: String,
    /// Where it came from, when known.
    pub url: Option<String>,
    /// `text`, `markdown`, `html` or `docx`.
    pub format: String,
    /// `es`, `en` or `other`.
    pub lang: String,
    /// `scrub` or `keep`.
    pub pii: String,
    /// The feed it came from.
    pub feed_id: Option<String>,
    /// sha256 of the canonical text.
    pub content_sha: String,
    /// Passages indexed.
    pub chunks: u64,
    /// Passages left out as duplicates of indexed ones.
    pub duplicates: u64,
    /// Bytes charged to the tenant's quota.
    pub bytes: u64,
    /// Set by the store.
    pub created_at: Timestamp,
}

/// A source to add.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSource {
    /// `document` or `feed_item`.
    pub kind: String,
    /// Its title.
    pub title: String,
    /// Where it came from.
    pub url: Option<String>,
    /// Its format.
    pub format: String,
    /// Its language.
    pub lang: String,
    /// `scrub` or `keep`.
    pub pii: String,
    /// A feed entry's key (feed id + entry id): added once per tenant.
    pub origin: Option<String>,
    /// The feed it came from.
    pub feed_id: Option<String>,
    /// sha256 of `text`.
    pub content_sha: String,
    /// The canonical text (already scrubbed when `pii` is `scrub`).
    pub text: String,
    /// Passages left out as duplicates.
    pub duplicates: u64,
}

/// A passage to add.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    /// Position in its source.
    pub ordinal: u32,
    /// Heading path.
    pub heading: String,
    /// The passage.
    pub text: String,
    /// Byte span in the source's text.
    pub start: u64,
    /// End of the span.
    pub end: u64,
    /// Content hash (hex) for exact dedup.
    pub content_hash: String,
    /// MinHash signature, u32 little-endian.
    pub signature: Vec<u8>,
    /// Embedding, f32 little-endian (empty without an embedder).
    pub embedding: Vec<u8>,
}

/// A stored passage, with what a citation and the index need of its
/// source.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    /// Node-wide sequence number.
    pub seq: i64,
    /// Owner.
    pub tenant_id: String,
    /// Its source.
    pub source_id: String,
    /// Its source's title.
    pub title: String,
    /// Its source's URL.
    pub url: Option<String>,
    /// Its source's language.
    pub lang: String,
    /// The passage and its keys.
    pub chunk: NewChunk,
}

/// A removed source, for the index to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeRemoval {
    /// Node-wide sequence number.
    pub seq: i64,
    /// Owner.
    pub tenant_id: String,
    /// The source removed.
    pub source_id: String,
}

/// A feed polled for new entries.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeFeed {
    /// `kfd-…`.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Its URL.
    pub url: String,
    /// Its title, once read.
    pub title: Option<String>,
    /// Seconds between polls.
    pub interval_s: u64,
    /// `scrub` or `keep`, for its entries.
    pub pii: String,
    /// When it is polled next.
    pub next_at: Timestamp,
    /// The last poll.
    pub last_polled_at: Option<Timestamp>,
    /// What it did, or why it failed.
    pub last_status: Option<String>,
    /// Entries added so far.
    pub items: u64,
    /// Consecutive failed polls.
    pub failures: u64,
    /// Set by the store.
    pub created_at: Timestamp,
}

/// The result of a poll.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPoll {
    /// `Some(title)` once the feed names itself.
    pub title: Option<String>,
    /// Entries added.
    pub added: u64,
    /// What happened (one line).
    pub status: String,
    /// Whether the poll failed.
    pub failed: bool,
    /// When to poll next.
    pub next_at: Timestamp,
}

/// Storage of knowledge (part of every [`crate::Store`]).
pub trait Knowledge {
    /// Adds a source and its passages in one transaction, charged to the
    /// tenant's quota; `Conflict` when `origin` was added before.
    fn add_knowledge_source(
        &self,
        tenant_id: &str,
        source: &NewSource,
        chunks: &[NewChunk],
    ) -> Result<KnowledgeSource>;
    /// A tenant's sources, newest first.
    fn knowledge_sources(&self, tenant_id: &str, limit: usize) -> Result<Vec<KnowledgeSource>>;
    /// One source; another tenant's is `NotFound`.
    fn knowledge_source(&self, tenant_id: &str, id: &str) -> Result<KnowledgeSource>;
    /// A source's canonical text.
    fn knowledge_source_text(&self, tenant_id: &str, id: &str) -> Result<String>;
    /// Whether a feed entry's key was added.
    fn knowledge_origin_exists(&self, tenant_id: &str, origin: &str) -> Result<bool>;
    /// Removes a source and its passages (refunded) and records the
    /// removal.
    fn remove_knowledge_source(&self, tenant_id: &str, id: &str) -> Result<KnowledgeSource>;
    /// The highest passage and removal sequence numbers (every tenant).
    fn knowledge_marker(&self) -> Result<(i64, i64)>;
    /// Passages after `after` in sequence order, of one tenant or all.
    fn knowledge_chunks_after(
        &self,
        tenant_id: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredChunk>>;
    /// Removals after `after`, of one tenant or all.
    fn knowledge_removals_after(
        &self,
        tenant_id: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<KnowledgeRemoval>>;
    /// The tenant's passages among `seqs` in that order, without their
    /// signature and embedding (a passage since removed, or another
    /// tenant's, is left out).
    fn knowledge_chunks(&self, tenant_id: &str, seqs: &[i64]) -> Result<Vec<StoredChunk>>;
    /// Adds a feed, first polled now; `Conflict` when the tenant has it.
    fn add_knowledge_feed(
        &self,
        tenant_id: &str,
        url: &str,
        interval_s: u64,
        pii: &str,
    ) -> Result<KnowledgeFeed>;
    /// A tenant's feeds.
    fn knowledge_feeds(&self, tenant_id: &str) -> Result<Vec<KnowledgeFeed>>;
    /// One feed; another tenant's is `NotFound`.
    fn knowledge_feed(&self, tenant_id: &str, id: &str) -> Result<KnowledgeFeed>;
    /// Removes a feed and every source it added.
    fn remove_knowledge_feed(&self, tenant_id: &str, id: &str) -> Result<KnowledgeFeed>;
    /// Feeds of every tenant due by `now`, most overdue first.
    fn due_knowledge_feeds(&self, now: Timestamp, limit: usize) -> Result<Vec<KnowledgeFeed>>;
    /// Records a poll.
    fn knowledge_feed_polled(&self, id: &str, poll: &FeedPoll) -> Result<()>;
}
