//! Evaluating a model (base, or base + LoRA adapter) on a golden set with
//! the engine: greedy, batched generation; the reference's loss under the
//! model; embedding similarity; validity; latency.

use crate::golden::{GoldenExample, GoldenSet, Prediction};
use crate::metrics::Normalization;
use crate::report::{EvalReport, ExampleResult, Metric};
use crate::{EvalError, Result};
use forja_core::{ChatMessage, GenerationParams, SamplingParams};
use forja_engine::embed::{cosine, Embedder};
use forja_engine::lora::Adapter;
use forja_engine::{Engine, Request};
use std::time::Instant;

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Examples generated together.
    pub batch_size: usize,
    /// Token cap per answer; `None`: 1.5 × the reference's tokens + 16,
    /// at most 1024 (a right answer fits; a model that rambles or loops
    /// is cut early, which is where evaluation time went).
    pub max_tokens: Option<usize>,
    /// WER/CER normalisation.
    pub normalization: Normalization,
    /// Score the reference's loss under the model.
    pub loss: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            batch_size: 8,
            max_tokens: None,
            normalization: Normalization::default(),
            loss: true,
        }
    }
}

/// Progress callback: examples done, total.
pub type OnProgress<'a> = &'a mut dyn FnMut(usize, usize);

struct Prepared {
    prompt: Vec<u32>,
    /// Prompt + reference tokens, and where the reference starts.
    scored: Vec<u32>,
    ref_start: usize,
}

fn prepare(engine: &Engine, ex: &GoldenExample) -> Result<Prepared> {
    let tok = engine.tokenizer();
    let (prompt, scored) = match (&ex.messages, &ex.prompt) {
        (Some(m), _) => {
            let p = engine.render_chat(m, true)?;
            let mut full = m.clone();
            full.push(ChatMessage::assistant(ex.reference.clone()));
            let f = engine.render_chat(&full, false)?;
            (tok.encode(&p, false)?, tok.encode(&f, false)?)
        }
        (None, p) => {
            let p = p.as_deref().unwrap_or_default();
            (tok.encode(p, true)?, tok.encode(&format!("{p}{}", ex.reference), true)?)
        }
    };
    // Templates normally render the prompt as a prefix of the full
    // conversation; when they do not, score the reference on its own.
    let (scored, ref_start) = if scored.starts_with(&prompt) && scored.len() > prompt.len() {
        (scored, prompt.len())
    } else {
        let mut s = prompt.clone();
        s.extend(tok.encode(&ex.reference, false)?);
        (s, prompt.len())
    };
    Ok(Prepared { prompt, scored, ref_start })
}

/// The default token cap for a reference of `n` tokens.
pub fn reference_cap(n: usize) -> usize {
    (n + n.div_ceil(2) + 16).min(1024)
}

/// Negative log-likelihood of `tokens[start..]` given what precedes.
pub(crate) fn reference_nll(
    engine: &Engine,
    adapter: Option<&Adapter>,
    tokens: &[u32],
    start: usize,
) -> Result<f64> {
    let positions: Vec<usize> = (start.saturating_sub(1)..tokens.len() - 1).collect();
    let logits = engine.logits_at(tokens, &positions, adapter)?;
    let mut nll = 0.0f64;
    for (row, &p) in logits.iter().zip(&positions) {
        let target = tokens[p + 1] as usize;
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = row.iter().map(|x| ((x - max) as f64).exp()).sum::<f64>().ln() + max as f64;
        nll += lse - row[target] as f64;
    }
    Ok(nll)
}

/// Evaluates `engine` (with `adapter` if given) on `golden`.
pub fn evaluate(
    engine: &Engine,
    adapter: Option<&Adapter>,
    golden: &GoldenSet,
    opts: &EvalOptions,
    embedder: Option<&Embedder>,
    progress: OnProgress<'_>,
) -> Result<EvalReport> {
    let started = Instant::now();
    let n = golden.examples.len();
    let prepared =
        golden.examples.iter().map(|e| prepare(engine, e)).collect::<Result<Vec<_>>>()?;
    let mut outputs: Vec<(String, usize)> = Vec::with_capacity(n);
    let mut gen_s = 0.0;
    for chunk in prepared.chunks(opts.batch_size.max(1)) {
        let reqs: Vec<Request> = chunk
            .iter()
            .map(|p| Request {
                prompt: p.prompt.clone(),
                params: GenerationParams {
                    max_tokens: opts
                        .max_tokens
                        .unwrap_or_else(|| reference_cap(p.scored.len() - p.ref_start)),
                    sampling: SamplingParams::greedy(),
                    ..GenerationParams::default()
                },
            })
            .collect();
        let t = Instant::now();
        let (done, _) = engine.generate_batch(&reqs, adapter, &mut |_, _| true)?;
        gen_s += t.elapsed().as_secs_f64();
        outputs.extend(done.into_iter().map(|c| (c.text.trim().to_string(), c.tokens.len())));
        progress(outputs.len(), n);
    }
    let mut examples: Vec<ExampleResult> = golden
        .examples
        .iter()
        .zip(&outputs)
        .map(|(ex, (text, _))| {
            ExampleResult::score(
                &ex.id,
                &ex.reference,
                text,
                ex.format,
                ex.schema.as_ref(),
                opts.normalization,
            )
        })
        .collect();
    for ((r, p), (_, ntok)) in examples.iter_mut().zip(&prepared).zip(&outputs) {
        r.generated_tokens = Some(*ntok);
        if opts.loss {
            r.nll = Some(reference_nll(engine, adapter, &p.scored, p.ref_start)?);
            r.reference_tokens = Some(p.scored.len() - p.ref_start);
        }
    }
    if let Some(emb) = embedder {
        add_similarity(emb, &mut examples)?;
    }
    let mut report = EvalReport::new(examples, opts.normalization, Some(gen_s));
    report.golden_sha256 = Some(golden.sha256.clone());
    report.seconds = started.elapsed().as_secs_f64();
    report.weights = Some(engine.model().weight_formats().join("+"));
    Ok(report)
}

/// Fills `similarity` on every example.
pub fn add_similarity(emb: &Embedder, examples: &mut [ExampleResult]) -> Result<()> {
    let refs: Vec<&str> = examples.iter().map(|e| e.reference.as_str()).collect();
    let preds: Vec<&str> = examples.iter().map(|e| e.prediction.as_str()).collect();
    let (r, p) = (emb.embed(&refs)?, emb.embed(&preds)?);
    for (e, (a, b)) in examples.iter_mut().zip(r.iter().zip(&p)) {
        e.similarity = Some(f64::from(cosine(a, b)));
    }
    Ok(())
}

/// Metrics that follow from predictions and references alone (what
/// [`rescore`] recomputes); similarity, loss and latency need the models.
pub const RECOMPUTED: [Metric; 5] =
    [Metric::Wer, Metric::Cer, Metric::ExactMatch, Metric::TokenF1, Metric::Validity];

/// Re-scores `report`'s predictions against `golden` (a trusted copy of
/// the golden set): the report must have one result per golden example,
/// in order, for the same ids. Word/character edits, exact match, token
/// F1 and validity are recomputed; similarity, reference loss and latency
/// (which need the models) are carried over. Then checks that the
/// report's own metrics agree with the recomputation, so a worker cannot
/// report better numbers than its predictions earn.
pub fn rescore(golden: &GoldenSet, report: &EvalReport) -> Result<EvalReport> {
    let bad = |m: String| Err(EvalError::Mismatch(m));
    if report.examples.len() != golden.examples.len() {
        return bad(format!(
            "{} results for a golden set of {} examples",
            report.examples.len(),
            golden.examples.len()
        ));
    }
    let mut examples = Vec::with_capacity(golden.examples.len());
    for (i, (g, r)) in golden.examples.iter().zip(&report.examples).enumerate() {
        if r.id != g.id {
            return bad(format!("result {i} is for example `{}`, not `{}`", r.id, g.id));
        }
        let mut e = ExampleResult::score(
            &g.id,
            &g.reference,
            &r.prediction,
            g.format,
            g.schema.as_ref(),
            report.normalization,
        );
        e.similarity = r.similarity;
        e.nll = r.nll;
        e.reference_tokens = r.reference_tokens;
        e.generated_tokens = r.generated_tokens;
        examples.push(e);
    }
    let mut out = EvalReport::new(examples, report.normalization, None);
    if let Some(l) = report.get(Metric::LatencyMs) {
        out.metrics.insert(Metric::LatencyMs.name().into(), l);
    }
    out.golden_sha256 = Some(golden.sha256.clone());
    out.subject = report.subject.clone();
    out.seconds = report.seconds;
    out.weights = report.weights.clone();
    for m in RECOMPUTED {
        match (report.get(m), out.get(m)) {
            (Some(a), Some(b)) if (a - b).abs() <= 1e-9 * a.abs().max(1.0) => {}
            (None, None) => {}
            (a, b) => {
                return bad(format!(
                    "its {m} ({}) does not follow from its predictions ({})",
                    a.map_or("none".into(), |v| format!("{v:.6}")),
                    b.map_or("none".into(), |v| format!("{v:.6}"))
                ))
            }
        }
    }
    Ok(out)
}

/// Scores precomputed predictions (no generation).
pub fn score_predictions(
    preds: &[Prediction],
    norm: Normalization,
    embedder: Option<&Embedder>,
) -> Result<EvalReport> {
    let mut examples: Vec<ExampleResult> = preds
        .iter()
        .map(|p| {
            ExampleResult::score(
                &p.id,
                &p.reference,
                &p.prediction,
                p.format,
                p.schema.as_ref(),
                norm,
            )
        })
        .collect();
    if let Some(emb) = embedder {
        add_similarity(emb, &mut examples)?;
    }
    Ok(EvalReport::new(examples, norm, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::parse_golden;

    fn report(golden: &GoldenSet, preds: &[&str]) -> EvalReport {
        let ex = golden
            .examples
            .iter()
            .zip(preds)
            .map(|(g, p)| {
                ExampleResult::score(
                    &g.id,
                    &g.reference,
                    p,
                    g.format,
                    None,
                    Normalization::Standard,
                )
            })
            .collect();
        EvalReport::new(ex, Normalization::Standard, Some(0.1))
    }

    /// Regression (hardening #8): the gate trusted the metrics a worker
    /// reported. Re-scoring recomputes them from the predictions against
    /// the control plane's own golden set and refuses a report whose
    /// numbers do not follow, or that is for other examples.
    #[test]
    fn rescoring_recomputes_and_refuses_reports_that_do_not_add_up() {
        let g = parse_golden(
            "g.jsonl",
            b"{\"id\": \"a\", \"prompt\": \"p1\", \"reference\": \"el pleno aprueba\"}\n{\"id\": \"b\", \"prompt\": \"p2\", \"reference\": \"se levanta la sesion\"}\n",
        )
        .unwrap();
        let honest = report(&g, &["el pleno aprueba", "se levanta"]);
        let r = rescore(&g, &honest).unwrap();
        assert_eq!(r.metrics["wer"], honest.metrics["wer"]);
        assert!(r.metrics.contains_key("latency_ms"));
        // A worker that claims a perfect WER for the same predictions.
        let mut lying = honest.clone();
        lying.metrics.insert("wer".into(), 0.0);
        let e = rescore(&g, &lying).unwrap_err().to_string();
        assert!(e.contains("wer") && e.contains("does not follow"), "{e}");
        // Per-example rows rewritten to match the lie: the edits are recomputed.
        let mut forged = honest.clone();
        for ex in &mut forged.examples {
            ex.words.edits = 0;
        }
        forged.metrics.insert("wer".into(), 0.0);
        assert!(rescore(&g, &forged).is_err());
        // Results for other examples, or missing ones.
        let mut other = honest.clone();
        other.examples[1].id = "z".into();
        assert!(rescore(&g, &other).unwrap_err().to_string().contains("`z`"));
        let mut short = honest;
        short.examples.pop();
        assert!(rescore(&g, &short).is_err());
    }
}
