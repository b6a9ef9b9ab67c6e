//! forja's data curation: turn raw corpora and captured feedback into clean,
//! deduplicated, PII-free instruction data with leakage-free splits.
//!
//! The pipeline is a sequence of stages over a stream of [`Record`]s:
//! read → normalise → exact dedup → near dedup (MinHash + LSH) → quality and
//! license filters → PII scrubbing → formatting → split → write. Each stage
//! keeps records or rejects them with a reason; nothing is dropped silently.
//! [`curate`] runs the whole pipeline with checkpoints so a killed run
//! resumes and produces byte-identical output. [`curate_shard`] runs the
//! independent work on one slice of the inputs on many machines, and
//! [`merge`] dedups across the slices into the dataset a single run writes.
//!
//! ```
//! use forja_data::{MinHasher, MinHashParams};
//! let h = MinHasher::new(&MinHashParams { num_perm: 64, ngram: 2, seed: 1 });
//! let a = h.signature("the quick brown fox jumps over the lazy dog");
//! let b = h.signature("the quick brown fox jumps over the lazy cat");
//! let j = a.jaccard(&b);
//! assert!(j > 0.4 && j < 1.0, "{j}");
//! ```
#![warn(missing_docs)]

mod config;
mod dedup;
mod error;
mod format;
mod license;
mod manifest;
mod minhash;
mod normalize;
mod parquet_out;
pub mod pii;
mod pipeline;
mod quality;
pub mod read;
mod record;
mod shard;
mod split;

pub use config::{CurateConfig, FileFormat, OutputConfig, ReplayConfig, RunConfig};
pub use dedup::{content_hash, DedupConfig, Deduper, Verdict};
pub use error::{DataError, Result};
pub use format::{FormatConfig, OutputFormat};
pub use license::LicenseConfig;
pub use manifest::{Counts, FileEntry, Manifest};
pub use minhash::{Banding, MinHashParams, MinHasher, Signature};
pub use normalize::normalize;
pub use pipeline::{curate, NoProgress, Progress, RunOptions, Stage};
pub use quality::{CodeQuality, QualityConfig, TextQuality};
pub use record::{Body, Kind, Loc, Meta, Origin, Record, Rejected};
pub use shard::{curate_shard, merge, read_shards, shard_dirs, ShardManifest, ShardSpec};
pub use split::{Split, SplitConfig};
