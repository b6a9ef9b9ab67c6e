//! Metric names, per-example results, and the report that sums them up.

use crate::metrics::{self, EditCount, Normalization};
use crate::validity::{self, compile_schema, Format};
use crate::{EvalError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A metric of an [`EvalReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Word error rate (corpus: total edits / total reference words).
    Wer,
    /// Character error rate.
    Cer,
    /// Share of outputs equal to the reference after normalisation.
    ExactMatch,
    /// Mean SQuAD-style token F1.
    TokenF1,
    /// Share of structured outputs that are valid (JSON, schema, XML).
    Validity,
    /// Mean cosine of MiniLM embeddings of output and reference.
    Similarity,
    /// Mean negative log-likelihood per reference token.
    Loss,
    /// `exp(loss)`.
    Perplexity,
    /// Mean generation time per example, milliseconds.
    LatencyMs,
    /// F1 of the reference's facts (numbers, dates, times, names) found
    /// in the outputs, over the corpus.
    FactFidelity,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 10] = [
        Metric::Wer,
        Metric::Cer,
        Metric::ExactMatch,
        Metric::TokenF1,
        Metric::Validity,
        Metric::Similarity,
        Metric::Loss,
        Metric::Perplexity,
        Metric::LatencyMs,
        Metric::FactFidelity,
    ];

    /// Its name in reports, flags and policies.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Wer => "wer",
            Metric::Cer => "cer",
            Metric::ExactMatch => "exact_match",
            Metric::TokenF1 => "token_f1",
            Metric::Validity => "validity",
            Metric::Similarity => "similarity",
            Metric::Loss => "loss",
            Metric::Perplexity => "perplexity",
            Metric::LatencyMs => "latency_ms",
            Metric::FactFidelity => "fact_fidelity",
        }
    }

    /// Whether a larger value is better.
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::ExactMatch
                | Metric::TokenF1
                | Metric::Validity
                | Metric::Similarity
                | Metric::FactFidelity
        )
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s.trim())
            .ok_or_else(|| EvalError::UnknownMetric(s.to_string()))
    }
}

/// Parses a comma-separated metric list (`wer,cer`).
pub fn parse_metrics(list: &str) -> Result<Vec<Metric>> {
    list.split(',').filter(|s| !s.trim().is_empty()).map(str::parse).collect()
}

/// How one example scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleResult {
    /// The example's id.
    pub id: String,
    /// The expected answer.
    pub reference: String,
    /// What the model answered.
    pub prediction: String,
    /// Word edits.
    pub words: EditCount,
    /// Character edits.
    pub chars: EditCount,
    /// Equal after normalisation.
    pub exact_match: bool,
    /// Token F1.
    pub token_f1: f64,
    /// The reference's facts found in the output.
    #[serde(default)]
    pub facts: metrics::FactCount,
    /// For structured examples: whether the output is valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    /// Why it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// Embedding cosine with the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
    /// Summed negative log-likelihood of the reference tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nll: Option<f64>,
    /// Reference tokens scored for `nll`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_tokens: Option<usize>,
    /// Tokens generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_tokens: Option<usize>,
}

impl ExampleResult {
    /// Scores one output against its reference (no loss, no similarity).
    pub fn score(
        id: &str,
        reference: &str,
        prediction: &str,
        format: Format,
        schema: Option<&serde_json::Value>,
        norm: Normalization,
    ) -> ExampleResult {
        let (valid, invalid_reason) = if format.is_structured() || schema.is_some() {
            let format = if schema.is_some() { Format::Json } else { format };
            let compiled = schema.map(compile_schema).transpose();
            match compiled.and_then(|s| validity::check(prediction, format, s.as_ref())) {
                Ok(()) => (Some(true), None),
                Err(e) => (Some(false), Some(e)),
            }
        } else {
            (None, None)
        };
        ExampleResult {
            id: id.to_string(),
            reference: reference.to_string(),
            prediction: prediction.to_string(),
            words: metrics::word_edits(reference, prediction, norm),
            chars: metrics::char_edits(reference, prediction, norm),
            exact_match: metrics::exact_match(reference, prediction),
            token_f1: metrics::token_f1(reference, prediction),
            facts: metrics::fact_count(reference, prediction),
            valid,
            invalid_reason,
            similarity: None,
            nll: None,
            reference_tokens: None,
            generated_tokens: None,
        }
    }
}

/// The result of evaluating one model (or one file of predictions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Metric values by name (only those that could be computed).
    pub metrics: BTreeMap<String, f64>,
    /// Per-example results, in golden-set order.
    pub examples: Vec<ExampleResult>,
    /// Normalisation used for WER/CER.
    pub normalization: Normalization,
    /// sha256 of the golden set, when one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub golden_sha256: Option<String>,
    /// What was evaluated (base model name, adapter), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Wall-clock seconds the evaluation took.
    #[serde(default)]
    pub seconds: f64,
    /// Storage formats of the base weights it generated on (`F32`,
    /// `Q4_1+Q8_0`); absent in reports made before it was recorded (f32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
}

impl EvalReport {
    /// Sums the examples up into [`EvalReport::metrics`]; `generation_s`
    /// is the time spent generating (for `latency_ms`).
    pub fn new(
        examples: Vec<ExampleResult>,
        normalization: Normalization,
        generation_s: Option<f64>,
    ) -> EvalReport {
        let mut m = BTreeMap::new();
        let n = examples.len();
        if n > 0 {
            let (mut w, mut c) = (EditCount::default(), EditCount::default());
            for e in &examples {
                w.add(e.words);
                c.add(e.chars);
            }
            m.insert("wer".into(), w.rate());
            m.insert("cer".into(), c.rate());
            let mean =
                |f: &dyn Fn(&ExampleResult) -> f64| examples.iter().map(f).sum::<f64>() / n as f64;
            m.insert("exact_match".into(), mean(&|e| f64::from(u8::from(e.exact_match))));
            m.insert("token_f1".into(), mean(&|e| e.token_f1));
            let mut facts = metrics::FactCount::default();
            examples.iter().for_each(|e| facts.add(e.facts));
            if facts.reference + facts.output > 0 {
                let (recall, precision, f1) = facts.scores();
                m.insert("fact_fidelity".into(), f1);
                m.insert("fact_recall".into(), recall);
                m.insert("fact_precision".into(), precision);
            }
            let structured: Vec<bool> = examples.iter().filter_map(|e| e.valid).collect();
            if !structured.is_empty() {
                let ok = structured.iter().filter(|v| **v).count();
                m.insert("validity".into(), ok as f64 / structured.len() as f64);
            }
            let sims: Vec<f64> = examples.iter().filter_map(|e| e.similarity).collect();
            if sims.len() == n {
                m.insert("similarity".into(), sims.iter().sum::<f64>() / n as f64);
            }
            let (nll, toks) = examples.iter().fold((0.0, 0usize), |(a, t), e| {
                (a + e.nll.unwrap_or(0.0), t + e.reference_tokens.unwrap_or(0))
            });
            if toks > 0 && examples.iter().all(|e| e.nll.is_some()) {
                let loss = nll / toks as f64;
                m.insert("loss".into(), loss);
                m.insert("perplexity".into(), loss.exp());
            }
            if let Some(s) = generation_s {
                m.insert("latency_ms".into(), s * 1000.0 / n as f64);
            }
        }
        EvalReport {
            metrics: m,
            examples,
            normalization,
            golden_sha256: None,
            subject: None,
            seconds: 0.0,
            weights: None,
        }
    }

    /// A metric's value, if computed.
    pub fn get(&self, m: Metric) -> Option<f64> {
        self.metrics.get(m.name()).copied()
    }

    /// The report without per-example rows (for summaries and gates).
    pub fn summary(&self) -> EvalReport {
        EvalReport { examples: Vec::new(), ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_rates_are_totals_not_means() {
        let n = Normalization::None;
        let ex = vec![
            ExampleResult::score("1", "a b c d", "a b c d", Format::Text, None, n),
            ExampleResult::score("2", "a", "b", Format::Text, None, n),
            ExampleResult::score("3", "{}", "{", Format::Json, None, n),
        ];
        let r = EvalReport::new(ex, n, Some(0.3));
        // 0 + 1 + 1 edits over 4 + 1 + 1 words.
        assert!((r.metrics["wer"] - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(r.metrics["validity"], 0.0);
        assert!((r.metrics["latency_ms"] - 100.0).abs() < 1e-9);
        assert!(!r.metrics.contains_key("loss"));
        assert!(r.examples[2].invalid_reason.as_deref().unwrap().starts_with("not JSON"));
    }

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(m.name().parse::<Metric>().unwrap(), m);
        }
        assert!(parse_metrics("wer,bleu").unwrap_err().to_string().contains("`bleu`"));
    }
}
