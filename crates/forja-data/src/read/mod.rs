//! Streaming readers: JSONL, Parquet, CSV, plain-text directories and RSS/Atom
//! feeds, each turned into a stream of [`Item`]s (a record, or a rejected
//! record with its location and reason) in a deterministic order.
//!
//! Readers hold one record (or one Parquet row group) at a time. A reader can
//! be opened past the first `skip` items, which is how a resumed run continues
//! where the killed one stopped.

mod csv;
mod feed;
mod fields;
mod jsonl;
mod parquet;
mod text;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{DataError, Kind, Record, Rejected, Result};

pub(crate) use fields::Mapper;
pub use text::is_code_path;
pub(crate) use text::walk;

/// One input of a curation run, as written in the `[[input]]` tables of the config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputSpec {
    /// A file, a directory (plain text) or an `http(s)://` feed URL.
    pub path: String,
    /// The format; guessed from the extension when absent.
    pub format: Option<Format>,
    /// The field with the text (default: the first of `text`, `content`, `code`).
    pub text_field: Option<String>,
    /// The field with chat messages (default `messages`, or ShareGPT `conversations`).
    pub messages_field: Option<String>,
    /// The fields of an instruction pair (default `prompt`/`completion`, or
    /// Alpaca `instruction` (+ `input`) / `output`).
    pub prompt_field: Option<String>,
    /// See `prompt_field`.
    pub completion_field: Option<String>,
    /// The record id field (default `id`).
    pub id_field: Option<String>,
    /// The group field: document, session or repository (default `group`).
    pub group_field: Option<String>,
    /// The license field (default `license`).
    pub license_field: Option<String>,
    /// The language field (default `lang`, then `language`).
    pub lang_field: Option<String>,
    /// Text, code, or guess per record from its path (default).
    pub kind: Option<Kind>,
    /// License of records that do not name one.
    pub license: Option<String>,
}

/// An input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet (as written by `datasets` / pyarrow).
    Parquet,
    /// Comma-separated values with a header row.
    Csv,
    /// A directory (or a single file) of plain text: one record per file.
    Text,
    /// RSS or Atom, from a file or a URL.
    Feed,
}

impl InputSpec {
    /// The format: the configured one, else guessed from the path.
    pub fn format(&self) -> Format {
        if let Some(f) = self.format {
            return f;
        }
        let p = self.path.to_ascii_lowercase();
        let ext = Path::new(&p).extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "jsonl" | "ndjson" => Format::Jsonl,
            "json" if is_url(&p) => Format::Feed,
            "parquet" | "pq" => Format::Parquet,
            "csv" => Format::Csv,
            "rss" | "atom" | "xml" => Format::Feed,
            _ if is_url(&p) => Format::Feed,
            _ => Format::Text,
        }
    }
}

pub(crate) fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// What a reader yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A record.
    Record(Record),
    /// A record that could not be read.
    Rejected(Rejected),
}

/// A stream of items; `Err` only for failures that stop the run (I/O).
pub type Items = Box<dyn Iterator<Item = Result<Item>> + Send>;

/// Opens an input, skipping its first `skip` items.
pub fn open(spec: &InputSpec, skip: u64) -> Result<Items> {
    let mapper = Mapper::new(spec);
    match spec.format() {
        Format::Jsonl => jsonl::open(&spec.path, mapper, skip),
        Format::Csv => csv::open(&spec.path, mapper, skip),
        Format::Parquet => parquet::open(&spec.path, mapper, skip),
        Format::Text => text::open(&spec.path, mapper, skip),
        Format::Feed => feed::open(&spec.path, mapper, skip),
    }
}

/// Checks that an input exists (or is a URL) before a run starts.
pub fn check(spec: &InputSpec) -> Result<()> {
    if spec.path.is_empty() {
        return Err(DataError::Config(
            "input.path is empty: name a file, directory or feed URL".into(),
        ));
    }
    if is_url(&spec.path) {
        if spec.format() != Format::Feed {
            return Err(DataError::Config(format!(
                "input {}: only feeds (format = \"feed\") can be read from a URL",
                spec.path
            )));
        }
        return Ok(());
    }
    std::fs::metadata(&spec.path).map_err(|e| DataError::io(&spec.path, e))?;
    Ok(())
}

/// Reads a whole in-memory document of `format` (the entry point of the fuzz
/// targets; the pipeline streams from files instead). A plain-text document
/// is one record.
pub fn read_bytes(spec: &InputSpec, format: Format, bytes: Vec<u8>) -> Result<Vec<Item>> {
    let mapper = Mapper::new(spec);
    let name = if spec.path.is_empty() { "<bytes>" } else { spec.path.as_str() };
    match format {
        Format::Jsonl => jsonl::items(name, std::io::Cursor::new(bytes), mapper, 0).collect(),
        Format::Csv => csv::items(name, std::io::Cursor::new(bytes), mapper, 0).collect(),
        Format::Parquet => parquet::items_from_bytes(name, bytes, mapper)?.collect(),
        Format::Feed => feed::items(name, &bytes, &mapper),
        Format::Text => Ok(vec![text::from_bytes(name, bytes, &mapper)]),
    }
}
