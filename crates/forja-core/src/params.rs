//! Generation and sampling parameters, validated in one place.

use crate::{CoreError, Result};
use serde::{Deserialize, Serialize};

/// How the next token is picked from the logits.
///
/// The defaults follow llama.cpp's: temperature 0.8, top-k 40, top-p 0.95,
/// min-p 0.05, no repetition penalty. `temperature == 0` means greedy
/// (arg-max) decoding, and then every other field is ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Softmax temperature; 0 selects greedy decoding.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 disables.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability mass reaches `top_p`; 1 disables.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the best one's; 0 disables.
    pub min_p: f32,
    /// Penalise tokens seen in the last `repeat_last_n` tokens (llama.cpp rule); 1 disables.
    pub repetition_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the sampler's random generator; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            repeat_last_n: 64,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding: always the arg-max token.
    pub fn greedy() -> Self {
        SamplingParams { temperature: 0.0, ..Default::default() }
    }

    /// True when decoding is deterministic arg-max.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| Err(CoreError::InvalidParam { name, reason: reason.into() });
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature", "must be a finite number >= 0 (0 means greedy)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", "must be in [0, 1]");
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            return bad("repetition_penalty", "must be a finite number > 0 (1 disables it)");
        }
        Ok(())
    }
}

/// Everything a caller controls about one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationParams {
    /// Upper bound on generated tokens.
    pub max_tokens: usize,
    /// Generation stops before the first occurrence of any of these strings.
    pub stop: Vec<String>,
    /// Keep generating past end-of-sequence tokens (benchmarks use this).
    pub ignore_eos: bool,
    /// How tokens are picked.
    pub sampling: SamplingParams,
    /// Report each generated token's log-probability under the model, with
    /// this many most likely alternatives (0: the token's alone).
    pub logprobs: Option<usize>,
    /// Report each prompt token's log-probability given the tokens before
    /// it (OpenAI's `echo` with `logprobs`), with this many alternatives.
    pub prompt_logprobs: Option<usize>,
}

/// Most alternatives a log-probability report may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            max_tokens: 256,
            stop: Vec::new(),
            ignore_eos: false,
            sampling: SamplingParams::default(),
            logprobs: None,
            prompt_logprobs: None,
        }
    }
}

impl GenerationParams {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        if self.max_tokens == 0 && self.prompt_logprobs.is_none() {
            return Err(CoreError::InvalidParam {
                name: "max_tokens",
                reason: "must be at least 1 (0 only to score an echoed prompt)".into(),
            });
        }
        for (name, n) in [("logprobs", self.logprobs), ("top_logprobs", self.prompt_logprobs)] {
            if n.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
                return Err(CoreError::InvalidParam {
                    name,
                    reason: format!("at most {MAX_TOP_LOGPROBS} alternatives"),
                });
            }
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(CoreError::InvalidParam {
                name: "stop",
                reason: "stop strings must not be empty".into(),
            });
        }
        self.sampling.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(edit: impl FnOnce(&mut GenerationParams), expected: Option<&str>) {
        let mut p = GenerationParams::default();
        edit(&mut p);
        match (p.validate(), expected) {
            (Ok(()), None) => {}
            (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{e} !~ {want}"),
            (got, want) => panic!("validate() = {got:?}, expected error {want:?}"),
        }
    }

    #[test]
    fn validation() {
        check(|_| {}, None);
        check(|p| p.sampling = SamplingParams::greedy(), None);
        check(|p| p.max_tokens = 0, Some("`max_tokens`"));
        check(|p| p.stop = vec![String::new()], Some("`stop`"));
        check(|p| p.sampling.temperature = -1.0, Some("`temperature`"));
        check(|p| p.sampling.temperature = f32::NAN, Some("`temperature`"));
        check(|p| p.sampling.top_p = 0.0, Some("`top_p`"));
        check(|p| p.sampling.top_p = 1.5, Some("`top_p`"));
        check(|p| p.sampling.min_p = 2.0, Some("`min_p`"));
        check(|p| p.sampling.repetition_penalty = 0.0, Some("`repetition_penalty`"));
    }

    #[test]
    fn missing_json_fields_take_defaults() {
        let p: GenerationParams = serde_json::from_str(r#"{"max_tokens": 3}"#).unwrap();
        assert_eq!(p.max_tokens, 3);
        assert_eq!(p.sampling, SamplingParams::default());
    }
}
