//! The one error type of forja-eval.

/// Errors raised while reading golden sets, scoring or gating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A line of a golden set or predictions file is not usable.
    #[error("{file}: line {line}: {reason}")]
    InvalidLine {
        /// File name.
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The golden set has no examples.
    #[error("{file}: the golden set is empty; add JSONL lines with a prompt and a reference")]
    EmptyGolden {
        /// File name.
        file: String,
    },
    /// A gate policy is not usable.
    #[error("gate policy: {0}")]
    Policy(String),
    /// A metric name is unknown.
    #[error("unknown metric `{0}` (known: wer, cer, exact_match, token_f1, validity, similarity, loss, perplexity, latency_ms)")]
    UnknownMetric(String),
    /// A report does not belong to its golden set, or its metrics do not
    /// follow from its own predictions.
    #[error("evaluation report: {0}")]
    Mismatch(String),
    /// A metric needs something that was not given.
    #[error("{0}")]
    Unavailable(String),
    /// A chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
    /// The engine failed (generation, adapter, embedder).
    #[error(transparent)]
    Engine(#[from] forja_engine::EngineError),
    /// A local file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `Result` with [`EvalError`].
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
