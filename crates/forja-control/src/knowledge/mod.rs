//! A node's knowledge base: documents and feed entries become passages in
//! the store (the truth), the node's BM25 index and each tenant's
//! embeddings in memory (both derived, replayed from the store), and
//! searches fuse the two.
//!
//! Adding a source: extract ▶ scrub (the source's PII policy, the
//! tenant's scrubber) ▶ chunk ▶ dedup against the tenant's passages and
//! the source's own (exact hash, then MinHash-LSH) ▶ embed ▶ one store
//! transaction ▶ the index and the tenant's vectors catch up from the
//! store. A crash anywhere loses nothing committed: the index's commit
//! records how far it got and the next search replays the rest. Another
//! process (the CLI beside a running server) may add to the store; this
//! one picks it up at its next search.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use forja_data::pii::DocScrub;
use forja_data::{Banding, MinHashParams, MinHasher, Signature};
use forja_engine::Embedder;
use forja_knowledge::{
    chunk, extract, rrf, ChunkConfig, DocFormat, Lang, LexDoc, Lexical, Marker, Vectors,
};
use forja_store::{KnowledgeSource, NewChunk, NewSource, StoredChunk, Tenant};
use sha2::Digest;

use crate::{Control, ControlError, Result};

mod feeds;
pub use feeds::{check_url, FeedPolicy, MIN_INTERVAL_S};

/// Passages read from the store per batch when catching up.
const BATCH: usize = 2000;
/// Jaccard similarity above which a passage is a near duplicate.
pub const NEAR_THRESHOLD: f64 = 0.8;
/// Most passages a search returns.
pub const MAX_K: usize = 50;
/// Candidates each side contributes to fusion (at least `k`):
/// Elasticsearch's default window. A wider one lets passages both sides
/// rank in the middle outvote one side's confident first hit; on the demo
/// minutes a window of 64 cut hybrid hit@5 from 0.79 to 0.63
/// (BENCHMARKS.md).
const RRF_WINDOW: usize = 10;

/// How personal data in a source is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pii {
    /// Scrubbed with the tenant's scrubber before anything is stored (the
    /// default).
    Scrub,
    /// Kept as written (public documents: ordinances, published minutes).
    Keep,
}

impl Pii {
    /// `scrub` or `keep`.
    pub fn parse(s: &str) -> Option<Pii> {
        match s {
            "scrub" => Some(Pii::Scrub),
            "keep" => Some(Pii::Keep),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Pii::Scrub => "scrub",
            Pii::Keep => "keep",
        }
    }
}

/// A document to add.
#[derive(Debug, Clone)]
pub struct AddSource {
    /// Its title (else the document's first heading, else `name`).
    pub title: Option<String>,
    /// A file name (names the format when `format` is `None`).
    pub name: String,
    /// Where it came from.
    pub url: Option<String>,
    /// Its format.
    pub format: Option<DocFormat>,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// PII policy.
    pub pii: Pii,
    /// `document` or `feed_item`.
    pub kind: &'static str,
    /// A feed entry's key.
    pub origin: Option<String>,
    /// The feed it came from.
    pub feed_id: Option<String>,
}

/// What adding a source did.
#[derive(Debug, Clone)]
pub struct Added {
    /// The stored source.
    pub source: KnowledgeSource,
    /// The passages it duplicated (`seq` of the kept passage, or `None`
    /// for a repeat within the source itself), one per duplicate.
    pub duplicate_of: Vec<Option<i64>>,
}

/// Which retrievers a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// BM25 only.
    Bm25,
    /// Embeddings only.
    Dense,
    /// Both, fused by reciprocal rank.
    Hybrid,
}

impl Mode {
    /// `bm25`, `dense` or `hybrid`.
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "bm25" | "lexical" => Mode::Bm25,
            "dense" | "vector" => Mode::Dense,
            "hybrid" => Mode::Hybrid,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Bm25 => "bm25",
            Mode::Dense => "dense",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// A search.
#[derive(Debug, Clone)]
pub struct Query {
    /// The text.
    pub text: String,
    /// How many passages (1 to [`MAX_K`]).
    pub k: usize,
    /// Only these sources (`None`: all).
    pub sources: Option<Vec<String>>,
    /// Which retrievers; hybrid falls back to BM25 without an embedder.
    pub mode: Mode,
}

/// A passage found.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The passage and its source.
    pub chunk: StoredChunk,
    /// Its fused (or single-retriever) score.
    pub score: f32,
    /// Its rank by BM25 (1-based), when BM25 found it.
    pub bm25_rank: Option<usize>,
    /// Its rank by embedding similarity, when the dense side found it.
    pub dense_rank: Option<usize>,
}

impl Hit {
    /// The passage as a prompt shows it.
    pub fn passage(&self) -> forja_knowledge::context::Passage<'_> {
        forja_knowledge::context::Passage {
            title: &self.chunk.title,
            heading: &self.chunk.chunk.heading,
            text: &self.chunk.chunk.text,
        }
    }
}

/// Exact and near-duplicate lookup over a tenant's passages, with removal
/// (forja-data's `Deduper` is append-only, built for one curation run).
///
/// A passage is a duplicate of another in the same context (its source's
/// title and heading path): the same normalised text (the exact hash
/// covers the context too), or a MinHash Jaccard ≥ [`NEAR_THRESHOLD`]. The
/// same sentence under another title or heading ("the session closed at
/// 21:00" in two sessions' minutes) is different knowledge and is kept.
#[derive(Default)]
struct DupIndex {
    exact: HashMap<String, i64>,
    sigs: HashMap<i64, (u64, Signature)>,
    buckets: Vec<HashMap<u64, Vec<i64>>>,
}

/// The context key of a passage.
fn context_key(title: &str, heading: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(format!("{}\n{}", title.trim(), heading.trim()).as_bytes())
}

/// The exact key: context and normalised text.
fn exact_key(context: u64, text: &str) -> String {
    let norm = forja_data::normalize(text, forja_data::Kind::Text).to_lowercase();
    format!("{context:016x}{:032x}", forja_data::content_hash(&norm))
}

impl DupIndex {
    fn find(&self, banding: &Banding, hash: &str, context: u64, sig: &Signature) -> Option<i64> {
        if let Some(&s) = self.exact.get(hash) {
            return Some(s);
        }
        let mut best: Option<(f64, i64)> = None;
        for (band, key) in banding.band_keys(sig).enumerate() {
            let Some(cands) = self.buckets.get(band).and_then(|b| b.get(&key)) else { continue };
            for c in cands {
                let Some((_, other)) = self.sigs.get(c).filter(|(ctx, _)| *ctx == context) else {
                    continue;
                };
                let j = other.jaccard(sig);
                if j >= NEAR_THRESHOLD && best.is_none_or(|(bj, bs)| j > bj || (j == bj && *c < bs))
                {
                    best = Some((j, *c));
                }
            }
        }
        best.map(|b| b.1)
    }

    fn insert(&mut self, banding: &Banding, seq: i64, hash: &str, context: u64, sig: Signature) {
        self.exact.entry(hash.to_string()).or_insert(seq);
        if self.buckets.len() < banding.bands {
            self.buckets.resize_with(banding.bands, HashMap::new);
        }
        for (band, key) in banding.band_keys(&sig).enumerate() {
            self.buckets[band].entry(key).or_default().push(seq);
        }
        self.sigs.insert(seq, (context, sig));
    }
}

/// One tenant's in-memory state, derived from the store.
#[derive(Default)]
struct Mem {
    vectors: Vectors,
    dups: DupIndex,
    /// Which source each passage belongs to (removals drop them).
    by_source: HashMap<String, Vec<(i64, String)>>,
    marker: Marker,
}

struct TenantState {
    /// Serialises adds (dedup sees every earlier passage).
    ingest: Mutex<()>,
    mem: Mutex<Mem>,
}

/// The knowledge base of a node.
pub struct Knowledge {
    control: Arc<Control>,
    embedder: Option<Arc<Embedder>>,
    lexical: Lexical,
    /// Serialises index catch-up.
    sync: Mutex<()>,
    tenants: Mutex<HashMap<String, Arc<TenantState>>>,
    hasher: MinHasher,
    banding: Banding,
    chunking: ChunkConfig,
    feeds: FeedPolicy,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knowledge").finish_non_exhaustive()
    }
}

fn kerr(e: forja_knowledge::KnowledgeError) -> ControlError {
    match e {
        forja_knowledge::KnowledgeError::Document(m) => ControlError::invalid("document", m),
        forja_knowledge::KnowledgeError::Busy => ControlError::conflict(e.to_string()),
        e => ControlError::Internal(e.to_string()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn words(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// What is embedded and indexed of a passage: its title, heading path and
/// text (a passage deep in a document still carries what it is about).
pub fn passage_text(title: &str, heading: &str, text: &str) -> String {
    let mut s = String::with_capacity(title.len() + heading.len() + text.len() + 4);
    for part in [title, heading] {
        if !part.is_empty() && !s.contains(part) {
            s.push_str(part);
            s.push('\n');
        }
    }
    s.push_str(text);
    s
}

impl Knowledge {
    /// Opens the node's index in `dir` (created when new) and catches it
    /// up with the store.
    pub fn open(
        control: Arc<Control>,
        dir: PathBuf,
        embedder: Option<Arc<Embedder>>,
        feeds: FeedPolicy,
    ) -> Result<Knowledge> {
        let lexical = Lexical::open(&dir).map_err(kerr)?;
        let params = MinHashParams { num_perm: 64, ngram: 5, seed: 1 };
        let k = Knowledge {
            control,
            embedder,
            lexical,
            sync: Mutex::new(()),
            tenants: Mutex::default(),
            hasher: MinHasher::new(&params),
            banding: Banding::optimal(NEAR_THRESHOLD, params.num_perm),
            chunking: ChunkConfig::default(),
            agent: feeds::agent(&feeds),
            feeds,
        };
        k.sync_index()?;
        Ok(k)
    }

    /// The control plane it stores through.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Whether searches can use embeddings.
    pub fn has_embedder(&self) -> bool {
        self.embedder.is_some()
    }

    fn tenant(&self, id: &str) -> Arc<TenantState> {
        lock(&self.tenants)
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(TenantState {
                    ingest: Mutex::new(()),
                    mem: Mutex::new(Mem {
                        vectors: Vectors::new(self.embedder.as_ref().map_or(0, |e| e.dim())),
                        ..Mem::default()
                    }),
                })
            })
            .clone()
    }

    /// Applies to the node's index what the store has beyond its marker.
    /// `Conflict` (busy) when another process holds the index: then the
    /// committed index is searched as it is.
    pub fn sync_index(&self) -> Result<()> {
        let _g = lock(&self.sync);
        let store = &self.control.store;
        let (chunks, removals) = store.knowledge_marker()?;
        let mut m = self.lexical.marker().map_err(kerr)?;
        if m.chunks >= chunks && m.removals >= removals {
            return Ok(());
        }
        loop {
            let gone = store.knowledge_removals_after(None, m.removals, BATCH)?;
            let added = store.knowledge_chunks_after(None, m.chunks, BATCH)?;
            if gone.is_empty() && added.is_empty() {
                break;
            }
            let next = Marker {
                chunks: added.last().map_or(m.chunks, |c| c.seq),
                removals: gone.last().map_or(m.removals, |r| r.seq),
            };
            let texts: Vec<String> = added
                .iter()
                .map(|c| passage_text(&c.title, &c.chunk.heading, &c.chunk.text))
                .collect();
            let docs: Vec<LexDoc<'_>> = added
                .iter()
                .zip(&texts)
                .map(|(c, t)| LexDoc {
                    seq: c.seq,
                    tenant: &c.tenant_id,
                    source: &c.source_id,
                    text: t,
                    lang: Lang::from_code(&c.lang),
                })
                .collect();
            let removed: Vec<&str> = gone.iter().map(|r| r.source_id.as_str()).collect();
            match self.lexical.apply(&docs, &removed, next) {
                Ok(()) => m = next,
                Err(forja_knowledge::KnowledgeError::Busy) => {
                    return self.lexical.refresh().map_err(kerr);
                }
                Err(e) => return Err(kerr(e)),
            }
        }
        Ok(())
    }

    /// Brings a tenant's vectors and dedup index up to the store.
    fn catch_up(&self, tenant: &str, mem: &mut Mem) -> Result<()> {
        let store = &self.control.store;
        loop {
            let gone = store.knowledge_removals_after(Some(tenant), mem.marker.removals, BATCH)?;
            for r in &gone {
                mem.vectors.remove_source(&r.source_id);
                for (seq, hash) in mem.by_source.remove(&r.source_id).unwrap_or_default() {
                    mem.dups.sigs.remove(&seq);
                    if mem.dups.exact.get(&hash) == Some(&seq) {
                        mem.dups.exact.remove(&hash);
                    }
                }
                mem.marker.removals = r.seq;
            }
            let added = store.knowledge_chunks_after(Some(tenant), mem.marker.chunks, BATCH)?;
            for c in &added {
                mem.vectors.add(c.seq, &c.source_id, &floats(&c.chunk.embedding));
                mem.dups.insert(
                    &self.banding,
                    c.seq,
                    &c.chunk.content_hash,
                    context_key(&c.title, &c.chunk.heading),
                    Signature(words(&c.chunk.signature)),
                );
                mem.by_source
                    .entry(c.source_id.clone())
                    .or_default()
                    .push((c.seq, c.chunk.content_hash.clone()));
                mem.marker.chunks = c.seq;
            }
            if gone.len() < BATCH && added.len() < BATCH {
                return Ok(());
            }
        }
    }

    /// Adds a document (or feed entry) to a tenant's knowledge base. CPU
    /// work: call it off the async runtime.
    pub fn add(&self, tenant: &Tenant, a: AddSource) -> Result<Added> {
        let added = self.add_unsynced(tenant, a)?;
        // The index lags only until the next search when this fails.
        if let Err(e) = self.sync_index() {
            tracing::warn!("knowledge index not updated yet: {e}");
        }
        Ok(added)
    }

    /// [`Knowledge::add`] without the index commit: for many documents in
    /// a row, followed by one [`Knowledge::sync_index`] (a search also
    /// syncs first). The source is durable when this returns.
    pub fn add_unsynced(&self, tenant: &Tenant, a: AddSource) -> Result<Added> {
        let format = a.format.or_else(|| DocFormat::from_name(&a.name)).ok_or_else(|| {
            ControlError::invalid(
                "format",
                format!(
                    "cannot tell the format of `{}`: name it (text, markdown, html or docx)",
                    a.name
                ),
            )
        })?;
        let mut doc = extract(format, &a.bytes).map_err(|e| match e {
            forja_knowledge::KnowledgeError::Document(m) => {
                ControlError::invalid("document", format!("{}: {m}", a.name))
            }
            e => kerr(e),
        })?;
        if a.pii == Pii::Scrub {
            let scrubber = self.control.curator.scrubber(tenant)?;
            let mut state = DocScrub::default();
            doc = doc.rewrite(|s| scrubber.scrub(s, &mut state).text);
        }
        if doc.paragraphs.is_empty() {
            return Err(ControlError::invalid("document", format!("{}: no text in it", a.name)));
        }
        let title = a
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| doc.title.clone())
            .unwrap_or_else(|| a.name.clone());
        let lang = Lang::detect(&doc.text);
        let pieces = chunk(&doc, &self.chunking);
        if pieces.len() >= self.chunking.max_chunks {
            return Err(ControlError::invalid(
                "document",
                format!(
                    "{}: makes more than {} passages; split it into smaller documents",
                    a.name,
                    self.chunking.max_chunks - 1
                ),
            ));
        }

        let state = self.tenant(&tenant.id);
        let _ingest = lock(&state.ingest);
        // Dedup: against the tenant's passages, then the source's own.
        let mut local = DupIndex::default();
        let mut kept = Vec::new();
        let mut duplicate_of = Vec::new();
        {
            let mut mem = lock(&state.mem);
            self.catch_up(&tenant.id, &mut mem)?;
            for (i, p) in pieces.iter().enumerate() {
                let text = &doc.text[p.start..p.end];
                let ctx = context_key(&title, &p.heading);
                let hash = exact_key(ctx, text);
                let sig = self.hasher.signature(&text.to_lowercase());
                if let Some(seq) = mem.dups.find(&self.banding, &hash, ctx, &sig) {
                    duplicate_of.push(Some(seq));
                } else if local.find(&self.banding, &hash, ctx, &sig).is_some() {
                    duplicate_of.push(None);
                } else {
                    local.insert(&self.banding, i as i64, &hash, ctx, sig.clone());
                    kept.push((p, hash, sig));
                }
            }
        }
        let texts: Vec<String> = kept
            .iter()
            .map(|(p, ..)| passage_text(&title, &p.heading, &doc.text[p.start..p.end]))
            .collect();
        let embeddings = match &self.embedder {
            Some(e) if !texts.is_empty() => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                e.embed(&refs)?
            }
            _ => vec![Vec::new(); texts.len()],
        };
        let chunks: Vec<NewChunk> = kept
            .iter()
            .zip(embeddings)
            .enumerate()
            .map(|(i, ((p, hash, sig), emb))| NewChunk {
                ordinal: i as u32,
                heading: p.heading.clone(),
                text: doc.text[p.start..p.end].to_string(),
                start: p.start as u64,
                end: p.end as u64,
                content_hash: hash.clone(),
                signature: sig.0.iter().flat_map(|w| w.to_le_bytes()).collect(),
                embedding: emb.iter().flat_map(|f| f.to_le_bytes()).collect(),
            })
            .collect();
        let source = NewSource {
            kind: a.kind.to_string(),
            title,
            url: a.url,
            format: format.name().to_string(),
            lang: lang.code().to_string(),
            pii: a.pii.name().to_string(),
            origin: a.origin,
            feed_id: a.feed_id,
            content_sha: hex::encode(sha2::Sha256::digest(doc.text.as_bytes())),
            text: doc.text,
            duplicates: duplicate_of.len() as u64,
        };
        let source = self.control.store.add_knowledge_source(&tenant.id, &source, &chunks)?;
        self.catch_up(&tenant.id, &mut lock(&state.mem))?;
        Ok(Added { source, duplicate_of })
    }

    /// Removes a source (its passages leave the index and the vectors).
    pub fn remove(&self, tenant: &Tenant, id: &str) -> Result<KnowledgeSource> {
        let s = self.control.store.remove_knowledge_source(&tenant.id, id)?;
        self.refresh(tenant)?;
        Ok(s)
    }

    /// Brings the tenant's vectors and the node's index up to the store.
    fn refresh(&self, tenant: &Tenant) -> Result<()> {
        let state = self.tenant(&tenant.id);
        self.catch_up(&tenant.id, &mut lock(&state.mem))?;
        if let Err(e) = self.sync_index() {
            tracing::warn!("knowledge index not updated yet: {e}");
        }
        Ok(())
    }

    /// The retrievers a search asking for `mode` uses: hybrid is BM25 on a
    /// node without an embedder; dense there is refused.
    pub fn mode(&self, mode: Mode) -> Result<Mode> {
        match (mode, &self.embedder) {
            (Mode::Dense, None) => Err(ControlError::invalid(
                "mode",
                "dense search needs an embedding model: start the node with --embedding-model",
            )),
            (Mode::Hybrid, None) => Ok(Mode::Bm25),
            (m, _) => Ok(m),
        }
    }

    /// Searches a tenant's knowledge base. CPU work: call it off the async
    /// runtime.
    pub fn search(&self, tenant: &Tenant, q: &Query) -> Result<Vec<Hit>> {
        let k = q.k.clamp(1, MAX_K);
        if q.text.trim().is_empty() {
            return Err(ControlError::invalid("query", "is empty: say what to look for"));
        }
        if q.text.len() > 8192 {
            return Err(ControlError::invalid("query", "is over 8192 bytes: shorten it"));
        }
        if let Err(e) = self.sync_index() {
            tracing::warn!("knowledge index behind the store: {e}");
        }
        let mode = self.mode(q.mode)?;
        let sources = q.sources.as_deref();
        let wide = if mode == Mode::Hybrid { RRF_WINDOW.max(k) } else { k };
        let bm25 = if mode != Mode::Dense {
            self.lexical.search(&tenant.id, &q.text, sources, wide).map_err(kerr)?
        } else {
            Vec::new()
        };
        let dense = match (&self.embedder, mode) {
            (Some(e), Mode::Dense | Mode::Hybrid) => {
                let v = e.embed(&[q.text.as_str()])?.pop().unwrap_or_default();
                let state = self.tenant(&tenant.id);
                let mut mem = lock(&state.mem);
                self.catch_up(&tenant.id, &mut mem)?;
                mem.vectors.search(&v, sources, wide)
            }
            _ => Vec::new(),
        };
        let fused = match mode {
            Mode::Bm25 => bm25.clone(),
            Mode::Dense => dense.clone(),
            Mode::Hybrid => rrf(&[&bm25, &dense], k),
        };
        let fused: Vec<(i64, f32)> = fused.into_iter().take(k).collect();
        let seqs: Vec<i64> = fused.iter().map(|f| f.0).collect();
        let rank =
            |list: &[(i64, f32)], seq: i64| list.iter().position(|x| x.0 == seq).map(|p| p + 1);
        let found = self.control.store.knowledge_chunks(&tenant.id, &seqs)?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let score = fused.iter().find(|f| f.0 == c.seq)?.1;
                Some(Hit {
                    bm25_rank: rank(&bm25, c.seq),
                    dense_rank: rank(&dense, c.seq),
                    score,
                    chunk: c,
                })
            })
            .collect())
    }
}
