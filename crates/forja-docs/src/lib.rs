//! forja's documents: what turns a corrected Word file into training
//! signal.
//!
//! - [`docx`]: writes generated minutes as DOCX with a hidden chunk id per
//!   paragraph and reads any DOCX (Word, LibreOffice, Google Docs) back
//!   into [`Block`]s, tracked changes accepted.
//! - [`diff`]: generated vs final, paragraph by paragraph, with moves,
//!   splits and merges, and word-level edits.
//! - [`entity`]: whether an edit is only a name's spelling (dictionary) or
//!   a change of meaning (training).
//! - [`learn`]: what each paragraph of a delta teaches (nothing, a
//!   dictionary entry or a training pair).
//! - [`align`]: hand-written minutes against a long transcript.
//! - [`itn`]: spoken numbers, amounts, dates and times of Spanish
//!   transcripts written as digits before a model sees them.
//!
//! Pure functions over bytes and strings: no I/O, HTTP or SQL here.

pub mod align;
pub mod diff;
pub mod docx;
pub mod entity;
mod error;
pub mod itn;
pub mod learn;
mod model;
pub mod text;

pub use error::DocsError;
pub use model::{Block, BlockKind, Document};
