//! The configuration of a curation run: what `curate.toml` holds. Every
//! section has defaults, so a config can be as short as one `[[input]]` and an
//! `[output]` directory; unknown keys are errors that name the key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::pii::PiiConfig;
use crate::read::InputSpec;
use crate::{
    DataError, DedupConfig, FormatConfig, LicenseConfig, QualityConfig, Result, SplitConfig,
};

/// A whole curation run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CurateConfig {
    /// The inputs, read in order.
    pub input: Vec<InputSpec>,
    /// Where and how to write.
    pub output: OutputConfig,
    /// Exact and near dedup.
    pub dedup: DedupConfig,
    /// Quality filters.
    pub quality: QualityConfig,
    /// License allow-list.
    pub license: LicenseConfig,
    /// PII recognizers and operators.
    pub pii: PiiConfig,
    /// Output format and prompt pools.
    pub format: FormatConfig,
    /// Train/validation/test ratios.
    pub split: SplitConfig,
    /// Generic examples mixed into the training split.
    pub replay: Option<ReplayConfig>,
    /// Pipeline switches and sizes.
    pub run: RunConfig,
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// The output directory (data shards under `data/`, reports beside).
    pub dir: PathBuf,
    /// Shard file format.
    pub files: FileFormat,
    /// Records per shard.
    pub shard_records: u64,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { dir: PathBuf::new(), files: FileFormat::Jsonl, shard_records: 100_000 }
    }
}

/// Shard file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// JSON Lines.
    #[default]
    Jsonl,
    /// Apache Parquet (written at the end of the run from the JSONL shards).
    Parquet,
}

/// `[replay]`: generic, high-quality examples mixed into training to reduce
/// forgetting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// Share of the training split that is replay data, in [0, 1).
    pub ratio: f64,
    /// Where the replay examples are (any input format).
    pub input: InputSpec,
}

/// `[run]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Scrub PII.
    pub scrub_pii: bool,
    /// Scan the output for PII at the end and fail the run on any finding.
    pub audit: bool,
    /// Records per chunk (one checkpoint per chunk).
    pub chunk_records: usize,
    /// Fail on the first malformed record instead of quarantining it.
    pub fail_on_malformed: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { scrub_pii: true, audit: true, chunk_records: 2048, fail_on_malformed: false }
    }
}

impl CurateConfig {
    /// Parses TOML; errors name the key.
    pub fn from_toml(text: &str) -> Result<CurateConfig> {
        toml::from_str(text).map_err(|e| DataError::Config(e.to_string().trim().replace('\n', " ")))
    }

    /// Checks everything a run needs before it starts.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DataError::Config(m));
        if self.input.is_empty() {
            return bad("no [[input]]: add at least one `[[input]] path = \"...\"`".into());
        }
        if self.output.dir.as_os_str().is_empty() {
            return bad("output.dir is missing: where should the curated data go?".into());
        }
        if self.output.shard_records == 0 || self.run.chunk_records == 0 {
            return bad("output.shard_records and run.chunk_records must be at least 1".into());
        }
        for input in &self.input {
            crate::read::check(input)?;
        }
        self.dedup.banding()?;
        self.split.validate().map_err(DataError::Config)?;
        self.format.validate().map_err(DataError::Config)?;
        if let Some(r) = &self.replay {
            if !(0.0..1.0).contains(&r.ratio) {
                return bad(format!("replay.ratio = {} must be in [0, 1)", r.ratio));
            }
            crate::read::check(&r.input)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_errors_name_the_key() {
        let err = CurateConfig::from_toml("[output]\ndri = \"x\"").unwrap_err().to_string();
        assert!(err.contains("unknown field `dri`"), "{err}");
        let cfg = CurateConfig::from_toml("[[input]]\npath = \"a.jsonl\"\n[output]\ndir = \"out\"")
            .unwrap();
        assert_eq!(cfg.input[0].path, "a.jsonl");
        assert_eq!(cfg.dedup.num_perm, 128);
        let err = CurateConfig::default().validate().unwrap_err().to_string();
        assert!(err.contains("no [[input]]"), "{err}");
    }
}
