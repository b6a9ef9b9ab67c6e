//! The one error type of forja-serve.

/// Errors raised while resolving or serving a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The model (base name, version, alias) does not exist for this tenant.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be served as asked.
    #[error("{0}")]
    Invalid(String),
    /// An adapter could not be fetched, verified or loaded.
    #[error("adapter failed to load: {0}")]
    Load(String),
    /// Over the admission caps: the request was refused, retry later.
    #[error("{reason}")]
    Busy {
        /// Why, for the client.
        reason: String,
        /// Seconds to wait before retrying.
        retry_after_s: u64,
    },
    /// Serving cannot answer now (a background task failed, disk full, ...).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The engine refused the request (too long, bad parameters, ...).
    #[error(transparent)]
    Engine(#[from] forja_engine::EngineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] forja_store::StoreError),
}

impl ServeError {
    /// `model` is not one this tenant can use.
    pub fn not_found(model: &str) -> ServeError {
        ServeError::NotFound(format!(
            "model `{model}` does not exist: use `base`, a model version id, or `<base>@<alias>` (GET /v1/models lists them)"
        ))
    }
}

/// Results of forja-serve.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;
