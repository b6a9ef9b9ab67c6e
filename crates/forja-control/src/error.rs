//! The one error type of forja-control.

/// Errors raised by the control plane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The store failed (busy, full, not found, quota, lease lost, …).
    #[error(transparent)]
    Store(#[from] forja_store::StoreError),
    /// A training file is not usable: the line and why.
    #[error("{file}: line {line}: {reason}")]
    InvalidFile {
        /// File name or id.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A request field is wrong.
    #[error("`{param}`: {reason}")]
    InvalidRequest {
        /// The field.
        param: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Training or model loading failed.
    #[error(transparent)]
    Engine(#[from] forja_engine::EngineError),
    /// Evaluation (golden set, metrics, gate policy) failed.
    #[error(transparent)]
    Eval(#[from] forja_eval::EvalError),
    /// Federation (aggregation, a delta package) failed.
    #[error(transparent)]
    Fed(#[from] forja_fed::FedError),
    /// The curation library failed.
    #[error(transparent)]
    Data(#[from] forja_data::DataError),
    /// An HTTP call (worker link, webhook) failed.
    #[error("{url}: {reason}")]
    Http {
        /// What was called.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An uploaded document could not be read (not a DOCX, encrypted, a
    /// zip bomb, malformed XML…).
    #[error("{file}: {source}")]
    Document {
        /// The multipart field or file name.
        file: String,
        /// What the reader said.
        source: forja_docs::DocsError,
    },
    /// The caller may not do this (a tenant key forcing a promotion).
    #[error("{0}")]
    Forbidden(String),
    /// A bug: a panic in a background task, a broken invariant. The detail
    /// is logged; clients are told only that something failed inside.
    #[error("internal error: {0}")]
    Internal(String),
    /// The job was cancelled or its lease lost while a worker ran it.
    #[error("job {job} stopped: {why}")]
    Stopped {
        /// The job.
        job: String,
        /// Why.
        why: String,
    },
}

impl ControlError {
    /// A bad request field.
    pub fn invalid(param: impl Into<String>, reason: impl Into<String>) -> Self {
        ControlError::InvalidRequest { param: param.into(), reason: reason.into() }
    }

    /// A state conflict (the store's `Conflict`: 409).
    pub fn conflict(why: impl Into<String>) -> Self {
        ControlError::Store(forja_store::StoreError::Conflict(why.into()))
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ControlError::Io { path: path.to_path_buf(), source }
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, ControlError>;
