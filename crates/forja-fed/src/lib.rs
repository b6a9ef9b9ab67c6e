//! forja's federation: nodes pool what they learned without pooling data.
//!
//! This crate holds what does not depend on HTTP or a store:
//! [`aggregate()`], which combines LoRA adapters of one base model trained
//! on different nodes into one adapter, and [`package`], the signed delta
//! package a node publishes (ed25519 over the manifest; file hashes),
//! [`update_norm`] (what a hub bounds), and [`protocol`], what nodes and
//! hubs sign to each other (joining, requests, round manifests). The hub
//! itself lives in forja-control and forja-server.

#![warn(missing_docs)]

pub mod aggregate;
pub mod package;
pub mod protocol;

pub use aggregate::{aggregate, update_norm, Method, Options, Report};
pub use package::{Manifest, NodeKey, PackInfo, Trust};

/// What can go wrong aggregating adapters.
#[derive(Debug, thiserror::Error)]
pub enum FedError {
    /// The inputs or options do not make sense together.
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Engine(#[from] forja_engine::EngineError),
}

impl From<candle_core::Error> for FedError {
    fn from(e: candle_core::Error) -> Self {
        FedError::Engine(e.into())
    }
}

/// Result with [`FedError`].
pub type Result<T> = std::result::Result<T, FedError>;
