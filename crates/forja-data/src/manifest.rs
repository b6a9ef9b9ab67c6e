//! What a run reports: counts per stage, files with their hashes, the
//! configuration, timings. Written as `manifest.json` beside the data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Records counted at each stage. Every record read ends in exactly one of
/// `malformed`, `license`, `quality`, `exact_dups`, `near_dups` or `kept`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Items read (records and rejected ones).
    pub read: u64,
    /// Rejected by a reader (quarantined).
    pub malformed: u64,
    /// Dropped by the license allow-list.
    pub license: u64,
    /// Dropped by a quality rule.
    pub quality: u64,
    /// Exact duplicates dropped.
    pub exact_dups: u64,
    /// Near duplicates dropped.
    pub near_dups: u64,
    /// Records written.
    pub kept: u64,
    /// Kept records in which PII was found.
    pub records_with_pii: u64,
    /// PII replacements by kind.
    pub pii: BTreeMap<String, u64>,
    /// Records written per split (replay included).
    pub splits: BTreeMap<String, u64>,
    /// Replay examples mixed into the training split.
    pub replay: u64,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the output directory.
    pub path: String,
    /// sha256, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Records (lines or rows), for data files.
    pub records: Option<u64>,
}

/// The manifest of a finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// forja's version.
    pub forja_version: String,
    /// The configuration, as run.
    pub config: serde_json::Value,
    /// Input files (or URLs) with their hashes.
    pub inputs: Vec<FileEntry>,
    /// Data shards.
    pub outputs: Vec<FileEntry>,
    /// sha256 over the data shards' names and hashes: one id for the dataset.
    pub dataset_sha256: String,
    /// Counts per stage.
    pub counts: Counts,
    /// The LSH banding used.
    pub lsh: crate::Banding,
    /// Records in the dedup index from earlier runs.
    pub index_previous: u64,
    /// The index segment holding this run's kept records (removed again when
    /// the dataset is replaced with `--restart`).
    pub index_segment: Option<String>,
    /// PII audit findings (0 for a usable dataset).
    pub audit_findings: Option<u64>,
    /// Seconds spent per stage (the only field that differs between identical runs).
    pub timings_s: BTreeMap<String, f64>,
}
