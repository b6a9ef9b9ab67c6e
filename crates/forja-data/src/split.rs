//! Deterministic, leakage-free splits: a record's split is a hash of its
//! group (or of its id when it has none), so every record of a document or
//! session lands in the same split, on every run and machine.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A split of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data.
    Validation,
    /// Held-out test data.
    Test,
}

impl Split {
    /// All splits, in output order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// The file-name prefix `datasets` recognises.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// Split settings (`[split]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// Share of groups in validation.
    pub validation: f64,
    /// Share of groups in test.
    pub test: f64,
    /// Seed of the assignment hash.
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig { validation: 0.1, test: 0.0, seed: 0 }
    }
}

impl SplitConfig {
    /// Checks the ratios.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |x: f64| (0.0..1.0).contains(&x);
        if !ok(self.validation) || !ok(self.test) || self.validation + self.test >= 1.0 {
            return Err(format!(
                "split.validation ({}) and split.test ({}) must be in [0, 1) and leave some data for training",
                self.validation, self.test
            ));
        }
        Ok(())
    }

    /// The split of a record of `group`.
    pub fn assign(&self, group: &str) -> Split {
        let u = (xxh3_64_with_seed(group.as_bytes(), self.seed) >> 11) as f64 / (1u64 << 53) as f64;
        if u < self.validation {
            Split::Validation
        } else if u < self.validation + self.test {
            Split::Test
        } else {
            Split::Train
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_hold_and_groups_stay_together() {
        let cfg = SplitConfig { validation: 0.2, test: 0.1, seed: 7 };
        let mut counts = [0usize; 3];
        for g in 0..20_000 {
            let s = cfg.assign(&format!("session-{g}"));
            assert_eq!(s, cfg.assign(&format!("session-{g}")));
            counts[s as usize] += 1;
        }
        let share = |i: usize| counts[i] as f64 / 20_000.0;
        assert!((share(1) - 0.2).abs() < 0.015 && (share(2) - 0.1).abs() < 0.015, "{counts:?}");
        assert!(SplitConfig { validation: 0.6, test: 0.4, seed: 0 }.validate().is_err());
        assert!(SplitConfig { validation: -0.1, test: 0.0, seed: 0 }.validate().is_err());
    }
}
