//! The configuration of a Llama-family model: Hugging Face `config.json`
//! field names, per-family defaults and switches, RoPE scaling. Shared by
//! the GGUF reader (which builds one from metadata) and the model (which
//! is built from one), so neither imports the other.

use crate::{EngineError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which member of the family; decides the defaults and per-family switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama 2/3 and look-alikes (SmolLM2, TinyLlama, ...).
    Llama,
    /// Mistral (sliding-window attention).
    Mistral,
    /// Qwen2 / Qwen2.5 (bias on q, k, v).
    Qwen2,
    /// Qwen3 (RMS norm on each query and key head).
    Qwen3,
}

impl Family {
    /// The names forja accepts (HF `model_type` and GGUF `general.architecture`).
    pub const SUPPORTED: &'static str = "llama, mistral, qwen2, qwen3";

    /// Parses an HF `model_type` or GGUF architecture name.
    pub fn from_name(name: &str) -> Option<Family> {
        match name {
            "llama" | "smollm" | "smollm2" => Some(Family::Llama),
            "mistral" => Some(Family::Mistral),
            "qwen2" => Some(Family::Qwen2),
            "qwen3" => Some(Family::Qwen3),
            _ => None,
        }
    }
}

/// One id or a list of ids (HF configs use both for `eos_token_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a vector.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// `rope_scaling` of an HF config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// `default`, `linear` or `llama3` (`type` in older configs).
    #[serde(alias = "type")]
    pub rope_type: String,
    /// Scaling factor.
    #[serde(default = "one")]
    pub factor: f64,
    /// llama3: low-frequency factor.
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    /// llama3: high-frequency factor.
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    /// llama3: the context length the model was pre-trained with.
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}
fn default_model_type() -> String {
    "llama".into()
}

/// Hyper-parameters of a Llama-family model (HF `config.json` field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// HF `model_type`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// RMS norm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// RoPE scaling, if any.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// Longest context the model supports.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Output projection shares the embedding table.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v (Qwen2 has it without saying so).
    #[serde(default)]
    pub attention_bias: Option<bool>,
    /// Mistral's sliding window.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Qwen2 turns its sliding window on with this.
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    /// Beginning-of-sequence id(s).
    #[serde(default)]
    pub bos_token_id: Option<TokenIds>,
    /// End-of-sequence id(s).
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
}

impl LlamaConfig {
    /// The family this config belongs to (validated by [`LlamaConfig::validate`]).
    pub fn family(&self) -> Family {
        Family::from_name(&self.model_type).unwrap_or(Family::Llama)
    }
    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
    pub(crate) fn qkv_bias(&self) -> bool {
        self.attention_bias.unwrap_or(self.family() == Family::Qwen2)
    }
    pub(crate) fn window(&self) -> Option<usize> {
        // Mistral GGUF files say `llama` and carry the window in the metadata.
        match self.family() {
            Family::Llama | Family::Mistral => self.sliding_window,
            Family::Qwen2 if self.use_sliding_window == Some(true) => self.sliding_window,
            _ => None,
        }
    }

    /// Checks that the numbers describe a model forja can build.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if Family::from_name(&self.model_type).is_none() {
            return Err(EngineError::UnsupportedArchitecture {
                path: path.into(),
                arch: self.model_type.clone(),
                supported: Family::SUPPORTED,
            });
        }
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("vocab_size", self.vocab_size),
            ("head_dim", self.head_dim()),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(EngineError::field(path, field, "must be a positive integer"));
            }
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(EngineError::field(
                path,
                "num_key_value_heads",
                format!(
                    "({}) must divide num_attention_heads ({})",
                    self.kv_heads(),
                    self.num_attention_heads
                ),
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(EngineError::field(path, "head_dim", "must be even for rotary embeddings"));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(EngineError::field(path, "rope_theta", "must be a positive number"));
        }
        if let Some(s) = &self.rope_scaling {
            if !matches!(s.rope_type.as_str(), "default" | "linear" | "llama3") {
                return Err(EngineError::field(
                    path,
                    "rope_scaling.rope_type",
                    format!(
                        "`{}` is not supported (supported: default, linear, llama3)",
                        s.rope_type
                    ),
                ));
            }
            if !(s.factor.is_finite() && s.factor > 0.0) {
                return Err(EngineError::field(
                    path,
                    "rope_scaling.factor",
                    "must be a positive number",
                ));
            }
        }
        Ok(())
    }

    /// RoPE inverse frequencies (length `head_dim / 2`), after scaling.
    pub(crate) fn inv_freq(&self, freq_factors: Option<&[f32]>) -> Vec<f32> {
        let d = self.head_dim();
        let mut inv: Vec<f64> =
            (0..d / 2).map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f64 / d as f64)).collect();
        if let Some(s) = &self.rope_scaling {
            match s.rope_type.as_str() {
                "linear" => inv.iter_mut().for_each(|f| *f /= s.factor),
                "llama3" => {
                    let orig = s.original_max_position_embeddings.unwrap_or(8192) as f64;
                    let (lo, hi) = (orig / s.low_freq_factor, orig / s.high_freq_factor);
                    for f in inv.iter_mut() {
                        let wavelen = 2.0 * std::f64::consts::PI / *f;
                        if wavelen > lo {
                            *f /= s.factor;
                        } else if wavelen >= hi {
                            let smooth = (orig / wavelen - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(ff) = freq_factors {
            inv.iter_mut().zip(ff).for_each(|(f, &k)| *f /= k as f64);
        }
        inv.into_iter().map(|f| f as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> LlamaConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn llama3_rope_scaling_matches_transformers() {
        // Llama 3.1 8B's rope_scaling; expected values from transformers'
        // `_compute_llama3_parameters` formula.
        let cfg = config(serde_json::json!({
            "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 1,
            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
            "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        }));
        cfg.validate(Path::new("config.json")).unwrap();
        let inv = cfg.inv_freq(None);
        assert_eq!(inv.len(), 64);
        for (i, want) in [
            (0, 1.0),
            (20, 0.016560440080994446),   // high frequency: unchanged
            (28, 0.0032114459947525913),  // high frequency: unchanged
            (29, 0.002166570763503359),   // medium: smoothed
            (33, 0.00031269375038406517), // medium: smoothed
            (35, 9.556212353964683e-05),  // low frequency: divided by 8
            (63, 3.068925988914511e-07),
        ] {
            let rel = ((inv[i] as f64 - want) / want).abs();
            assert!(rel < 1e-5, "inv_freq[{i}] = {} want {want}", inv[i]);
        }
    }

    #[test]
    fn linear_scaling_and_freq_factors_divide() {
        let base = serde_json::json!({
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
            "num_attention_heads": 4, "vocab_size": 10,
        });
        let plain = config(base.clone()).inv_freq(None);
        let mut scaled = base.clone();
        scaled["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 4.0});
        let linear = config(scaled).inv_freq(None);
        let factors = vec![2.0f32; plain.len()];
        let by_factors = config(base).inv_freq(Some(&factors));
        for i in 0..plain.len() {
            assert!((linear[i] * 4.0 - plain[i]).abs() <= plain[i] * 1e-6);
            assert!((by_factors[i] * 2.0 - plain[i]).abs() <= plain[i] * 1e-6);
        }
    }

    #[test]
    fn config_validation_names_the_field() {
        let check = |edit: serde_json::Value, want: &str| {
            let mut j = serde_json::json!({
                "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                "num_attention_heads": 4, "vocab_size": 10,
            });
            for (k, v) in edit.as_object().unwrap() {
                j[k] = v.clone();
            }
            let e = config(j).validate(Path::new("c.json")).unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        };
        check(
            serde_json::json!({"num_hidden_layers": 0}),
            "`num_hidden_layers` must be a positive",
        );
        check(serde_json::json!({"num_key_value_heads": 3}), "must divide num_attention_heads");
        check(serde_json::json!({"head_dim": 15}), "`head_dim` must be even");
        check(serde_json::json!({"rope_theta": -1.0}), "`rope_theta`");
        check(serde_json::json!({"model_type": "gpt2"}), "unsupported architecture `gpt2`");
        check(
            serde_json::json!({"rope_scaling": {"type": "yarn", "factor": 4.0}}),
            "`yarn` is not supported",
        );
    }
}
