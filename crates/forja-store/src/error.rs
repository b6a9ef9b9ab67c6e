//! The one error type of forja-store.
//!
//! Variants a caller acts on (not found, quota, lease lost, busy, full) are
//! distinct; each message is one line that says what to do.

use std::path::PathBuf;

/// Errors raised by the store and the artifact store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer held the database longer than the busy timeout.
    #[error("the database is busy ({op}); retry shortly")]
    Busy {
        /// What was being done.
        op: &'static str,
    },
    /// The disk (or the database's size limit) is full.
    #[error("the database is full ({op}): free disk space under the data directory")]
    Full {
        /// What was being done.
        op: &'static str,
    },
    /// No such row (or not the caller's).
    #[error("no {what} `{id}`")]
    NotFound {
        /// `tenant`, `file`, `job`, …
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The tenant used its trainings for the window.
    #[error("tenant `{tenant}` has used its {limit} trainings per {window}; the next one frees at unix time {frees_at}")]
    QuotaExceeded {
        /// The tenant's name.
        tenant: String,
        /// Trainings allowed per window.
        limit: u32,
        /// The window, for humans (`7 days`).
        window: String,
        /// When a training leaves the window.
        frees_at: i64,
    },
    /// The tenant's stored data would exceed its storage quota.
    #[error("tenant `{tenant}` would store {needed} bytes, over its quota of {limit} bytes (uses {used}); delete files (DELETE /v1/files/ID) or ask the operator for a larger quota (forja tenants set --storage-mb)")]
    StorageQuota {
        /// The tenant's name.
        tenant: String,
        /// Bytes stored now.
        used: u64,
        /// Bytes after the write.
        needed: u64,
        /// The quota in bytes.
        limit: u64,
    },
    /// The worker no longer holds the job's lease (expired, or cancelled).
    #[error("worker `{worker}` no longer holds job `{job}` ({why})")]
    LeaseLost {
        /// The job.
        job: String,
        /// The worker.
        worker: String,
        /// What happened.
        why: String,
    },
    /// The database file could not be opened or migrated.
    #[error("{}: {reason}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What went wrong and what to do.
        reason: String,
    },
    /// The database cannot be reached: Postgres down, restarting or
    /// failing over. Retry; nothing was written.
    #[error("the database is unavailable ({op}): {message}; retry shortly")]
    Unavailable {
        /// What was being done.
        op: &'static str,
        /// What the connection said.
        message: String,
    },
    /// Any other database error.
    #[error("database error ({op}): {message}")]
    Database {
        /// What was being done.
        op: &'static str,
        /// What the database said.
        message: String,
    },
    /// A stored value does not parse (a bug or a hand-edited database).
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// The row or column.
        what: String,
        /// The parse error.
        reason: String,
    },
    /// No artifact with that hash.
    #[error("artifact sha256:{sha256} is not in the artifact store")]
    ArtifactMissing {
        /// The address.
        sha256: String,
    },
    /// Content does not hash to its address.
    #[error("artifact sha256 mismatch: expected {expected}, got {actual}; the upload or the stored object is corrupt, upload it again")]
    HashMismatch {
        /// The address (or the declared hash).
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The object store failed.
    #[error("artifact store: {0}")]
    Object(#[from] object_store::Error),
    /// A bad artifact-store configuration.
    #[error("artifact store configuration: {0}")]
    Config(String),
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Maps a database error to the variants callers act on.
pub(crate) fn sql<E: Into<crate::db::Error>>(op: &'static str) -> impl Fn(E) -> StoreError {
    move |e| {
        use crate::db::Error as E;
        use rusqlite::ErrorCode;
        match e.into() {
            E::Sqlite(e) => match e.sqlite_error_code() {
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                    StoreError::Busy { op }
                }
                Some(ErrorCode::DiskFull) => StoreError::Full { op },
                _ => StoreError::Database { op, message: e.to_string() },
            },
            E::Postgres(e) => {
                let code = e.as_db_error().map(|d| d.code().code().to_string());
                match code.as_deref() {
                    // disk_full, out_of_memory, too_many_connections … (class 53)
                    Some("53100") => StoreError::Full { op },
                    // deadlock_detected, lock_not_available, serialization_failure
                    Some("40P01" | "55P03" | "40001") => StoreError::Busy { op },
                    _ => StoreError::Database {
                        op,
                        message: crate::db::Error::Postgres(e).to_string(),
                    },
                }
            }
            E::Unavailable(message) => StoreError::Unavailable { op, message },
            other => StoreError::Database { op, message: other.to_string() },
        }
    }
}
