//! The one error type of forja-core.

/// Errors raised by forja-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A generation or sampling parameter is out of range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParam {
        /// The parameter's name as the user spells it (`temperature`, `top_p`, ...).
        name: &'static str,
        /// What is wrong and what range is accepted.
        reason: String,
    },
    /// A chat role that forja does not know.
    #[error("unknown chat role `{0}`: expected system, user, assistant or tool")]
    UnknownRole(String),
    /// A model name that is not in the built-in catalog.
    #[error("unknown built-in model `{0}`: run `forja models` to list them, or pass a path")]
    UnknownModel(String),
    /// A key file, public key or signature that cannot be used.
    #[error("{0}")]
    Identity(String),
}

/// Result alias for forja-core.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
