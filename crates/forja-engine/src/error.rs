//! The one error type of forja-engine.
//!
//! Every variant that comes from user input names the file, tensor, field
//! or value at fault and says what to do, so front ends can print it as a
//! single line.

use std::path::PathBuf;

/// Errors raised by forja-engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The model path does not exist.
    #[error("model not found at {}: pass a GGUF file or a Hugging Face model directory (or `default` after `forja models install`)", path.display())]
    ModelNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A model file is malformed (bad GGUF header, truncated data, invalid JSON, ...).
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A required metadata key or config field is missing or has the wrong type.
    #[error("{}: field `{field}` {reason}", path.display())]
    Field {
        /// The file holding the metadata.
        path: PathBuf,
        /// The key (`llama.block_count`, `num_attention_heads`, ...).
        field: String,
        /// What is wrong (`is missing`, `must be a positive integer`, ...).
        reason: String,
    },
    /// The model architecture is not one forja implements.
    #[error("{}: unsupported architecture `{arch}` (supported: {supported})", path.display())]
    UnsupportedArchitecture {
        /// The model file.
        path: PathBuf,
        /// The architecture named by the file.
        arch: String,
        /// What forja supports.
        supported: &'static str,
    },
    /// A tensor is stored in a format forja cannot compute with.
    #[error("{}: tensor `{tensor}` has unsupported type {dtype} (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K)", path.display())]
    UnsupportedDType {
        /// The model file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// Its stored type.
        dtype: String,
    },
    /// A tensor the model needs is absent.
    #[error("{}: tensor `{tensor}` is missing; is this checkpoint complete and of the architecture its config claims?", path.display())]
    MissingTensor {
        /// The model file or directory.
        path: PathBuf,
        /// The tensor's name in that file.
        tensor: String,
    },
    /// A tensor has a shape other than the config implies.
    #[error("{}: tensor `{tensor}` has shape {got:?}, expected {expected:?} from the model config", path.display())]
    ShapeMismatch {
        /// The model file or directory.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },
    /// The tokenizer could not be built or used.
    #[error("tokenizer ({source_desc}): {reason}")]
    Tokenizer {
        /// Where the tokenizer came from (a path, or "GGUF metadata of ...").
        source_desc: String,
        /// What went wrong.
        reason: String,
    },
    /// The chat template failed to compile or render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// The model has no chat template and chat was requested.
    #[error("the model has no chat template: use raw generation (`forja generate`) or a model with `tokenizer.chat_template`")]
    NoChatTemplate,
    /// The prompt does not fit in the context window.
    #[error("prompt has {prompt_tokens} tokens but the context window is {context} tokens: shorten the prompt or raise --ctx-size (the model allows up to {model_max})")]
    PromptTooLong {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// The configured context size.
        context: usize,
        /// The largest context the model supports.
        model_max: usize,
    },
    /// The prompt is empty after tokenization.
    #[error("the prompt is empty: give at least one token of input")]
    EmptyPrompt,
    /// A caller-supplied parameter is out of range.
    #[error(transparent)]
    Params(#[from] forja_core::CoreError),
    /// Training data cannot be used (names the file and line).
    #[error("{0}")]
    Data(String),
    /// Training stopped (non-finite loss, checkpoint mismatch, ...); says why
    /// and what was kept.
    #[error("training stopped: {0}")]
    Training(String),
    /// The requested device is not available in this build or on this machine.
    #[error("device `{device}` is unavailable: {reason}")]
    Device {
        /// The device spec (`cuda:0`, ...).
        device: String,
        /// Why.
        reason: String,
    },
    /// A forward pass shared by several requests failed; each of them gets
    /// this, with the cause.
    #[error("generation failed: {0}")]
    Generation(String),
    /// A grammar, JSON Schema or regular expression for constrained
    /// decoding does not compile.
    #[error("invalid grammar: {reason}")]
    Grammar {
        /// What is wrong with it, as the grammar compiler says.
        reason: String,
    },
    /// Constrained decoding failed while generating: a token the grammar
    /// forbids was accepted, or the parser gave up (a bug or a limit).
    #[error("constrained decoding: {reason}")]
    Constraint {
        /// What happened.
        reason: String,
    },
    /// A draft model cannot speculate for its target (different vocabulary
    /// or tokenizer), or a speculative step was called out of order.
    #[error("speculative decoding: {0}")]
    Speculative(String),
    /// An error from the tensor library (a bug in forja if it reaches users).
    #[error("tensor error: {0}")]
    Candle(String),
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Candle(candle_text(&e))
    }
}

/// A candle error as one line: backtraces dropped, context joined with `: `.
pub(crate) fn candle_text(e: &candle_core::Error) -> String {
    use candle_core::Error as E;
    match e {
        E::WithBacktrace { inner, .. } => candle_text(inner),
        E::Context { inner, context } => format!("{context}: {}", candle_text(inner)),
        E::WithPath { inner, path } => format!("{}: {}", path.display(), candle_text(inner)),
        other => other.to_string().replace('\n', " "),
    }
}

/// Result alias for forja-engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io { path: path.into(), source }
    }
    pub(crate) fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        EngineError::Malformed { path: path.into(), reason: reason.into() }
    }
    pub(crate) fn field(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        EngineError::Field { path: path.into(), field: field.into(), reason: reason.into() }
    }
}
