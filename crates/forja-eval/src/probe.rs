//! The general-capability probe: forgetting measured, not assumed. A
//! fixed local set of short multiple-choice questions (general knowledge,
//! arithmetic, word sense, translation; English and Spanish; written for
//! forja, shipped in `data/general-probe-v1.jsonl`) is scored by
//! log-likelihood, as lm-eval scores multiple choice: each choice is the
//! continuation of `Question: …\nAnswer:` (plain text, no chat template:
//! the probe measures what the language model knows, which a LoRA update
//! can erode whatever format it was trained in); the choice with the
//! highest mean log-probability per token is the model's answer. A report carries, per item, the choice made and the mean
//! log-probability of the right one, so the gate can recompute the
//! accuracy from the answer key it holds itself.

use crate::{EvalError, Result};
use forja_engine::lora::Adapter;
use forja_engine::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// One question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeItem {
    /// Stable id.
    pub id: String,
    /// Asked as the user's message.
    pub question: String,
    /// Possible answers.
    pub choices: Vec<String>,
    /// Index of the right one.
    pub answer: usize,
}

/// A probe set.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Name and version.
    pub name: String,
    /// sha256 of its JSONL.
    pub sha256: String,
    /// The questions.
    pub items: Vec<ProbeItem>,
}

const GENERAL: &str = include_str!("../data/general-probe-v1.jsonl");

/// The built-in general probe (60 questions).
pub fn general() -> &'static Probe {
    static P: OnceLock<Probe> = OnceLock::new();
    P.get_or_init(|| {
        parse("general-probe-v1", GENERAL.as_bytes()).expect("the built-in probe parses")
    })
}

/// Parses a probe (JSONL of [`ProbeItem`]).
pub fn parse(name: &str, bytes: &[u8]) -> Result<Probe> {
    let bad = |line, reason: String| EvalError::InvalidLine { file: name.into(), line, reason };
    let text = std::str::from_utf8(bytes).map_err(|_| bad(1, "not UTF-8 text".into()))?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let item: ProbeItem = serde_json::from_str(line)
            .map_err(|e| bad(i + 1, format!("not a probe item ({e})")))?;
        if item.choices.len() < 2 || item.answer >= item.choices.len() {
            return Err(bad(i + 1, "needs two or more choices and an answer among them".into()));
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(bad(1, "the probe has no items".into()));
    }
    Ok(Probe { name: name.into(), sha256: hex::encode(Sha256::digest(bytes)), items })
}

/// What the model answered to one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The item.
    pub id: String,
    /// The choice it prefers.
    pub chosen: usize,
    /// Mean log-probability per token of the right choice.
    pub logprob: f64,
}

/// A model's probe results and their summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The probe's name.
    pub probe: String,
    /// Its sha256.
    pub sha256: String,
    /// Share of items answered right.
    pub accuracy: f64,
    /// Mean over items of the right choice's mean log-probability per token.
    pub mean_logprob: f64,
    /// Per item, in the probe's order.
    pub items: Vec<ProbeResult>,
}

impl ProbeReport {
    /// A report of `items` for `probe`, with its summary computed.
    pub fn new(probe: &Probe, items: Vec<ProbeResult>) -> ProbeReport {
        let n = items.len().max(1) as f64;
        let right = probe.items.iter().zip(&items).filter(|(p, r)| p.answer == r.chosen).count();
        ProbeReport {
            probe: probe.name.clone(),
            sha256: probe.sha256.clone(),
            accuracy: right as f64 / n,
            mean_logprob: items.iter().map(|r| r.logprob).sum::<f64>() / n,
            items,
        }
    }

    /// The summary without per-item rows.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "probe": self.probe, "accuracy": self.accuracy,
            "mean_logprob": self.mean_logprob, "items": self.items.len(),
        })
    }
}

/// Mean log-probability per token of `answer` after `context`.
fn answer_logprob(
    engine: &Engine,
    adapter: Option<&Adapter>,
    context: &[u32],
    answer: &str,
) -> Result<f64> {
    let mut tokens = context.to_vec();
    tokens.extend(engine.tokenizer().encode(&format!(" {answer}"), false)?);
    let start = context.len().max(1);
    let nll = crate::run::reference_nll(engine, adapter, &tokens, start)?;
    Ok(-nll / tokens.len().saturating_sub(start).max(1) as f64)
}

/// Runs `probe` on `engine` (with `adapter` if given).
pub fn run(engine: &Engine, adapter: Option<&Adapter>, probe: &Probe) -> Result<ProbeReport> {
    let mut items = Vec::with_capacity(probe.items.len());
    for it in &probe.items {
        let context =
            engine.tokenizer().encode(&format!("Question: {}\nAnswer:", it.question), true)?;
        let scores = it
            .choices
            .iter()
            .map(|c| answer_logprob(engine, adapter, &context, c))
            .collect::<Result<Vec<f64>>>()?;
        let chosen = (0..scores.len()).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
        items.push(ProbeResult { id: it.id.clone(), chosen, logprob: scores[it.answer] });
    }
    Ok(ProbeReport::new(probe, items))
}

/// Recomputes a worker's report against `probe` (a trusted copy): one
/// result per item, in order, choices in range; the accuracy follows from
/// the choices and the mean log-probability from the items.
pub fn rescore(probe: &Probe, report: &ProbeReport) -> Result<ProbeReport> {
    let bad = |m: String| Err(EvalError::Mismatch(format!("probe: {m}")));
    if report.sha256 != probe.sha256 {
        return bad(format!("the report is for probe {}, not {}", report.probe, probe.name));
    }
    if report.items.len() != probe.items.len() {
        return bad(format!("{} results for {} items", report.items.len(), probe.items.len()));
    }
    for (p, r) in probe.items.iter().zip(&report.items) {
        if p.id != r.id || r.chosen >= p.choices.len() || !r.logprob.is_finite() || r.logprob > 0.0
        {
            return bad(format!("the result for item `{}` is not valid", r.id));
        }
    }
    let out = ProbeReport::new(probe, report.items.clone());
    if (out.accuracy - report.accuracy).abs() > 1e-9
        || (out.mean_logprob - report.mean_logprob).abs() > 1e-9
    {
        return bad("its summary does not follow from its items".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_probe_is_well_formed() {
        let p = general();
        assert_eq!(p.items.len(), 60);
        let ids: std::collections::HashSet<_> = p.items.iter().map(|i| &i.id).collect();
        assert_eq!(ids.len(), 60);
        // Right answers are spread over positions (no position bias to learn).
        for pos in 0..3 {
            let n = p.items.iter().filter(|i| i.answer == pos).count();
            assert!((15..=25).contains(&n), "position {pos}: {n}");
        }
    }

    #[test]
    fn parsing_names_the_bad_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "{\"id\": \"a\", \"question\": \"q\", \"choices\": [\"x\"], \"answer\": 0}",
                1,
                "two or more",
            ),
            (
                "{\"id\": \"a\", \"question\": \"q\", \"choices\": [\"x\", \"y\"], \"answer\": 2}",
                1,
                "two or more",
            ),
            ("\n{\"id\": \"a\"}", 2, "not a probe item"),
            ("", 1, "no items"),
        ];
        for (text, line, part) in cases {
            match parse("p.jsonl", text.as_bytes()) {
                Err(EvalError::InvalidLine { line: l, reason, .. }) => {
                    assert_eq!((*line, reason.contains(part)), (l, true), "{text}: {reason}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn rescoring_refuses_reports_that_do_not_add_up() {
        let p = general();
        let items: Vec<ProbeResult> = p
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| ProbeResult {
                id: it.id.clone(),
                chosen: if i % 2 == 0 { it.answer } else { (it.answer + 1) % it.choices.len() },
                logprob: -1.5,
            })
            .collect();
        let honest = ProbeReport::new(p, items);
        assert_eq!(honest.accuracy, 0.5);
        assert_eq!(rescore(p, &honest).unwrap(), honest);
        let mut lying = honest.clone();
        lying.accuracy = 0.9;
        assert!(rescore(p, &lying).unwrap_err().to_string().contains("does not follow"));
        let mut out_of_range = honest.clone();
        out_of_range.items[0].chosen = 7;
        assert!(rescore(p, &out_of_range).is_err());
        let mut short = honest;
        short.items.pop();
        assert!(rescore(p, &short).is_err());
    }
}
