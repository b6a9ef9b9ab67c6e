//! forja's knowledge base, without HTTP or SQL: what a tenant's documents
//! and feeds become so that chat can answer from them.
//!
//! - [`extract`](mod@extract): document bytes (text, Markdown, HTML, DOCX) → paragraphs
//!   under heading paths, with byte spans in a canonical text.
//! - [`chunk`](mod@chunk): paragraphs → passages that never cross a heading, with
//!   overlap.
//! - [`lexical`]: BM25 over one tantivy index per node (Spanish and
//!   English analyzers), tenant-filtered, recording how far it has
//!   applied the store's changes.
//! - [`dense`]: exact search over a tenant's passage embeddings.
//! - [`fuse`]: reciprocal rank fusion of the two.
//! - [`context`]: passages rendered for a prompt as quoted data.
//!
//! The store (forja-store) holds the passages; forja-control ties them
//! together (`knowledge.rs`).
#![warn(missing_docs)]

pub mod chunk;
pub mod context;
pub mod dense;
pub mod extract;
pub mod fuse;
pub mod lexical;

pub use chunk::{chunk, Chunk, ChunkConfig};
pub use dense::Vectors;
pub use extract::{extract, DocFormat, Extracted};
pub use fuse::rrf;
pub use lexical::{Lang, LexDoc, Lexical, Marker};

use std::path::Path;

/// What can go wrong in the knowledge base.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// A document could not be read; the message says why and what to do.
    #[error("{0}")]
    Document(String),
    /// The index failed (I/O, a corrupt segment).
    #[error("knowledge index: {0}")]
    Index(String),
    /// Another process holds the index's writer.
    #[error("the knowledge index is held by another forja process (a running `forja serve`?); add through its API, or stop it")]
    Busy,
    /// A file or directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// Which.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl KnowledgeError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> KnowledgeError {
        KnowledgeError::Io { path: path.display().to_string(), source }
    }
}

/// Result with [`KnowledgeError`].
pub type Result<T> = std::result::Result<T, KnowledgeError>;
