//! The crate's one error type. A rejected record is not an error: readers and
//! stages hand those back as data (see [`crate::Rejected`]); `Err` is for I/O,
//! bad configuration and runs that must stop.

use std::path::PathBuf;

/// Everything that can stop a curation run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A Parquet file could not be opened or decoded.
    #[error("{}: not a readable Parquet file ({message}); re-export it with pyarrow or `datasets`", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// A feed could not be fetched or parsed.
    #[error("feed {source_name}: {message}")]
    Feed {
        /// The file path or URL.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// The configuration is invalid; the message names the field.
    #[error("{0}")]
    Config(String),
    /// Every input record was rejected or the inputs were empty.
    #[error("no valid records in the inputs ({read} read, {quarantined} quarantined: see {quarantine}); check the input paths and the text field")]
    NothingValid {
        /// Records read.
        read: u64,
        /// Records sent to quarantine.
        quarantined: u64,
        /// Where the quarantine file is.
        quarantine: String,
    },
    /// A malformed record with `run.fail_on_malformed` set.
    #[error(
        "{location}: {reason} (run.fail_on_malformed is set; unset it to quarantine such records)"
    )]
    Malformed {
        /// Where the record is.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The final PII audit found personal data in the output.
    #[error("PII audit failed: {count} high-confidence finding(s) in the output, first in {first}; the output was kept for inspection but must not be used")]
    AuditFailed {
        /// How many findings.
        count: usize,
        /// Where the first one is (`file:line: KIND`).
        first: String,
    },
    /// The checkpoint of a previous run does not match this run.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why it cannot be resumed.
        message: String,
    },
    /// The persistent dedup index is damaged.
    #[error("dedup index {}: {message}; delete it to start a fresh index", path.display())]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A shard of a sharded curation cannot be merged.
    #[error("shard {}: {message}", dir.display())]
    Shard {
        /// The shard's directory.
        dir: PathBuf,
        /// What is wrong with it, and what to do.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }
}
