//! Documents and the entity dictionary: a tenant's transcripts, the minutes
//! forja generated from them and the corrected finals, linked by lineage
//! (transcript → generated V1/V2… → final); the source of every chunk of a
//! generated document; and the spelling fixes the tenant's serving applies.

use crate::{Result, Timestamp};

/// What a document is in the lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// An ASR transcript (segments, maybe with times).
    Transcript,
    /// Minutes forja generated (DOCX with chunk ids).
    Generated,
    /// A corrected version of a generated document.
    Final,
}

impl DocKind {
    /// `transcript`, `generated` or `final`.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Transcript => "transcript",
            DocKind::Generated => "generated",
            DocKind::Final => "final",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<DocKind> {
        match s {
            "transcript" => Some(DocKind::Transcript),
            "generated" => Some(DocKind::Generated),
            "final" => Some(DocKind::Final),
            _ => None,
        }
    }
}

/// One stored document (its bytes live in the artifact store).
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRow {
    /// `doc-…`.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Its place in the lineage.
    pub kind: DocKind,
    /// Generated: its transcript; final: the generated document it corrects.
    pub parent_id: Option<String>,
    /// The meeting it belongs to.
    pub session: Option<String>,
    /// Generated documents of one session count 1, 2… (a cloned session's
    /// V2); others 1.
    pub version: u32,
    /// As uploaded or written.
    pub filename: String,
    /// sha256 of the bytes in the artifact store.
    pub sha256: String,
    /// Size.
    pub bytes: u64,
    /// Generated: the model that wrote it.
    pub model: Option<String>,
    /// Set by the store.
    pub created_at: Timestamp,
}

/// Where one chunk of a generated document came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkSource {
    /// The chunk id in the DOCX.
    pub chunk_id: String,
    /// The transcript text it was generated from.
    pub source: String,
    /// Audio span start, seconds.
    pub start_s: Option<f64>,
    /// Audio span end, seconds.
    pub end_s: Option<f64>,
}

/// One spelling fix in a tenant's dictionary.
#[derive(Debug, Clone, PartialEq)]
pub struct DictionaryEntry {
    /// As the model writes it.
    pub wrong: String,
    /// As it should be written.
    pub right: String,
    /// The final document the fix was learnt from (`None`: added by hand).
    pub source_document: Option<String>,
    /// The paragraph's chunk id in it.
    pub source_chunk: Option<String>,
    /// Set by the store.
    pub created_at: Timestamp,
}

/// Storage of documents and dictionaries (part of every [`crate::Store`]).
pub trait Documents {
    /// Stores a document and, for a generated one, its chunk sources,
    /// charged to the tenant's storage quota. The parent must be the
    /// tenant's (`NotFound` otherwise). `created_at` is set here.
    fn insert_document(&self, doc: &DocumentRow, chunks: &[ChunkSource]) -> Result<DocumentRow>;
    /// A tenant's document; another tenant's is `NotFound`.
    fn document(&self, tenant_id: &str, id: &str) -> Result<DocumentRow>;
    /// A tenant's documents, newest first.
    fn documents(&self, tenant_id: &str) -> Result<Vec<DocumentRow>>;
    /// The chunk sources of a tenant's generated document.
    fn document_chunks(&self, tenant_id: &str, id: &str) -> Result<Vec<ChunkSource>>;
    /// The newest generated document of a session (the one a final of that
    /// session is compared with: V2 after a clone, never V1).
    fn latest_generated(&self, tenant_id: &str, session: &str) -> Result<Option<DocumentRow>>;
    /// Deletes a tenant's document and its chunk sources; documents that
    /// descend from it lose their parent link. Its storage is refunded.
    fn delete_document(&self, tenant_id: &str, id: &str) -> Result<DocumentRow>;
    /// A tenant's dictionary, by `wrong`.
    fn dictionary(&self, tenant_id: &str) -> Result<Vec<DictionaryEntry>>;
    /// Adds or replaces entries (by `wrong`) in one transaction; returns the
    /// dictionary's size after.
    fn upsert_dictionary(&self, tenant_id: &str, entries: &[DictionaryEntry]) -> Result<usize>;
    /// Removes the entry for `wrong`.
    fn remove_dictionary(&self, tenant_id: &str, wrong: &str) -> Result<DictionaryEntry>;
}
