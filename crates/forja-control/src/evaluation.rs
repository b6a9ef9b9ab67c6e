//! The worker's evaluation step after training: every kept checkpoint is
//! compared on a fixed subset of the tenant's golden set, and the one that
//! is best by the tenant's primary metric becomes the job's adapter (not
//! simply the last one) and is evaluated on the whole set, as is the
//! current model (the tenant's champion, or the base model) unless an
//! earlier job already evaluated it on this golden-set version (its report
//! is reused: the current model is evaluated once per version). The
//! general probe measures forgetting against the base model. Generation
//! stops at 1.5 × the reference's tokens + 16. The full reports
//! (per-example results) are uploaded as an artifact so a dashboard can
//! show before/after diffs.

use crate::link::{Cached, EvalPlan, Lease, Link};
use crate::{ControlError, Result};
use forja_engine::embed::Embedder;
use forja_engine::lora::Adapter;
use forja_engine::Engine;
use forja_eval::gate::best_index;
use forja_eval::probe::ProbeReport;
use forja_eval::{EvalOptions, EvalReport, GoldenSet};
use forja_store::{JobEval, Level};
use std::path::{Path, PathBuf};

const WEIGHTS: &str = "adapter_model.safetensors";

/// Directories under `out` holding an adapter, final one first, distinct
/// by weights: `final`, `best`, `step-N`.
pub fn candidate_dirs(out: &Path) -> Vec<(String, PathBuf)> {
    let mut found = vec![("final".to_string(), out.to_path_buf())];
    found.push(("best".into(), out.join("best")));
    let mut steps: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-"))
                })
                .collect()
        })
        .unwrap_or_default();
    steps.sort();
    for p in steps.into_iter().rev() {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        found.push((name, p));
    }
    let mut seen = std::collections::HashSet::new();
    found
        .into_iter()
        .filter(|(_, d)| match std::fs::read(d.join(WEIGHTS)) {
            Ok(b) => seen.insert(forja_store::sha256_hex(&b)),
            Err(_) => false,
        })
        .collect()
}

/// The weights an evaluation runs on.
#[derive(Clone, Copy)]
pub struct Engines<'a> {
    /// The f32 weights adapters train on: the general probe.
    pub train: &'a Engine,
    /// The weights golden-set answers are generated on: the training
    /// weights, or a quantized serving copy of the same base model (the
    /// demo's answers were identical on both; BENCHMARKS.md).
    pub generate: &'a Engine,
}

/// Runs the evaluation; returns the chosen adapter directory and what to
/// record. An evaluation that fails does not fail the job: the final
/// adapter is kept and the error recorded (the version stays a
/// candidate).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_job(
    link: &dyn Link,
    lease: &Lease,
    plan: &EvalPlan,
    engines: Engines<'_>,
    base_sha: Option<&str>,
    embedder: Option<&Embedder>,
    dir: &Path,
    out: &Path,
) -> Result<(PathBuf, JobEval)> {
    let mut record = JobEval {
        golden_set_id: plan.golden_set_id.clone(),
        baseline_version: plan.baseline_version.clone(),
        chosen: None,
        summary: serde_json::Value::Null,
        report_sha256: None,
        error: None,
    };
    match run(link, lease, plan, engines, base_sha, embedder, dir, out) {
        Ok((chosen, path, summary, sha)) => {
            record.chosen = Some(chosen);
            record.summary = summary;
            record.report_sha256 = Some(sha);
            Ok((path, record))
        }
        Err(e @ ControlError::Stopped { .. }) => Err(e),
        Err(e) => {
            link.event(lease, Level::Error, &format!("Evaluation failed: {e}"), None)?;
            record.error = Some(e.to_string());
            Ok((out.to_path_buf(), record))
        }
    }
}

type Outcome = (String, PathBuf, serde_json::Value, String);

/// The evaluation settings' fingerprint: a cached report is reused only
/// when it was made the same way (generation cap, subset, probe).
pub const SETTINGS: &str = "v2;cap=1.5ref+16;subset=16;probe=general-probe-v1";

/// Examples on which checkpoints are compared (the best one is then
/// evaluated on the whole golden set).
pub const SUBSET: usize = 16;

/// The fixed subset of `golden` checkpoints are compared on: the examples
/// whose ids hash lowest (the same ones for every job on this version).
pub fn subset(golden: &GoldenSet, n: usize) -> GoldenSet {
    let mut ranked: Vec<usize> = (0..golden.examples.len()).collect();
    ranked.sort_by_cached_key(|&i| forja_store::sha256_hex(golden.examples[i].id.as_bytes()));
    ranked.truncate(n);
    ranked.sort_unstable();
    let examples = ranked.into_iter().map(|i| golden.examples[i].clone()).collect();
    GoldenSet { examples, sha256: golden.sha256.clone() }
}

/// A report an earlier job computed, if the plan offers one for `what`
/// made with these base weights and it can be read.
fn reuse<T: serde::de::DeserializeOwned>(
    link: &dyn Link,
    lease: &Lease,
    plan: &EvalPlan,
    what: Cached,
    base_sha: Option<&str>,
) -> Option<(T, String)> {
    let c = plan.cached.iter().find(|c| c.what == what && c.base_sha256.as_deref() == base_sha)?;
    let bytes = link.download(lease, &c.report_sha256).ok()?;
    let full: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let r = serde_json::from_value(full.pointer(&c.pointer)?.clone()).ok()?;
    Some((r, c.from_version.clone()))
}

#[allow(clippy::too_many_arguments)]
fn run(
    link: &dyn Link,
    lease: &Lease,
    plan: &EvalPlan,
    engines: Engines<'_>,
    base_sha: Option<&str>,
    embedder: Option<&Embedder>,
    dir: &Path,
    out: &Path,
) -> Result<Outcome> {
    let started = std::time::Instant::now();
    let (engine, gen) = (engines.train, engines.generate);
    let weights = gen.model().weight_formats().join("+");
    if !std::ptr::eq(engine, gen) {
        link.event(
            lease,
            Level::Info,
            &format!("Golden-set answers are generated on the serving copy's {weights} weights; the general probe runs on the f32 training weights"),
            None,
        )?;
    }
    let bytes = link.download(lease, &plan.golden_sha256)?;
    let golden = forja_eval::parse_golden(&plan.golden_set_id, &bytes)?;
    let opts = EvalOptions::default();
    let mut evaluations = 0usize;
    let mut eval = |adapter: Option<&Adapter>, set: &GoldenSet| -> Result<EvalReport> {
        if set.examples.len() == golden.examples.len() {
            evaluations += 1;
        }
        Ok(gen
            .install(|| forja_eval::evaluate(gen, adapter, set, &opts, embedder, &mut |_, _| {}))?)
    };
    let what = plan
        .baseline_version
        .as_deref()
        .map_or("the base model".to_string(), |v| format!("champion {v}"));
    let mut baseline = match reuse::<EvalReport>(link, lease, plan, Cached::Baseline, base_sha)
        .filter(|(r, _)| {
            // Made on this golden set and on the same kind of weights.
            r.golden_sha256.as_deref() == Some(golden.sha256.as_str())
                && r.weights.as_deref().unwrap_or("F32") == weights
        }) {
        Some((r, from)) => {
            link.event(
                lease,
                Level::Info,
                &format!(
                    "Reusing the evaluation of {what} on golden set {} made for version {from} (the current model is evaluated once per golden-set version)",
                    plan.golden_set_id
                ),
                None,
            )?;
            r
        }
        None => {
            let baseline_adapter = if plan.baseline_files.is_empty() {
                None
            } else {
                let files = &plan.baseline_files;
                let dir = dir.join("baseline");
                Some(crate::worker::fetch_adapter(link, lease, gen, files, &dir, "baseline")?)
            };
            link.event(
                lease,
                Level::Info,
                &format!(
                    "Evaluating {what} on golden set {} ({} examples)",
                    plan.golden_set_id,
                    golden.examples.len()
                ),
                None,
            )?;
            eval(baseline_adapter.as_ref(), &golden)?
        }
    };
    baseline.subject = Some(what);
    let metric = plan.policy.primary_metric;
    let candidates = candidate_dirs(out);
    // Checkpoints are compared on a fixed subset; the best one is then
    // evaluated on the whole set (one candidate: the whole set at once).
    let small = subset(&golden, SUBSET);
    let compare_on =
        if candidates.len() > 1 && golden.examples.len() > 2 * SUBSET { &small } else { &golden };
    let mut reports = Vec::new();
    for (name, path) in &candidates {
        let adapter = gen.load_adapter(path)?;
        let mut r = eval(Some(&adapter), compare_on)?;
        r.subject = Some(name.clone());
        let shown = r.get(metric).map_or("n/a".into(), |v| format!("{v:.4}"));
        let scope = if compare_on.examples.len() < golden.examples.len() {
            format!(" on a fixed subset of {} examples", compare_on.examples.len())
        } else {
            String::new()
        };
        link.event(
            lease,
            Level::Info,
            &format!(
                "Checkpoint {name}: {metric}={shown}{scope} (current model on the whole set {})",
                baseline.get(metric).map_or("n/a".into(), |v| format!("{v:.4}"))
            ),
            Some(serde_json::json!({ "checkpoint": name, "metrics": r.metrics, "examples": compare_on.examples.len() })),
        )?;
        reports.push(r);
    }
    let best = best_index(metric, &reports).unwrap_or(0);
    let (chosen, path) = candidates
        .get(best)
        .cloned()
        .ok_or_else(|| ControlError::invalid("adapter", "training left no adapter to evaluate"))?;
    // An adapter holds its own tensors: the same one serves both engines.
    let adapter = gen.load_adapter(&path)?;
    let candidate = if compare_on.examples.len() < golden.examples.len() {
        let mut r = eval(Some(&adapter), &golden)?;
        r.subject = Some(chosen.clone());
        link.event(
            lease,
            Level::Info,
            &format!(
                "Chosen checkpoint {chosen} on the whole golden set: {metric}={}",
                r.get(metric).map_or("n/a".into(), |v| format!("{v:.4}"))
            ),
            None,
        )?;
        r
    } else {
        reports[best].clone()
    };
    // The general probe: forgetting, measured against the base model.
    let probe = forja_eval::probe::general();
    let probe_base = match reuse::<ProbeReport>(link, lease, plan, Cached::ProbeBase, base_sha)
        .filter(|(r, _)| r.sha256 == probe.sha256)
    {
        Some((r, _)) => r,
        None => engine.install(|| forja_eval::probe::run(engine, None, probe))?,
    };
    let probe_cand = engine.install(|| forja_eval::probe::run(engine, Some(&adapter), probe))?;
    link.event(
        lease,
        Level::Info,
        &format!(
            "General probe ({} questions): accuracy {:.3} (base model {:.3}), mean log-probability {:.3} (base {:.3})",
            probe.items.len(),
            probe_cand.accuracy,
            probe_base.accuracy,
            probe_cand.mean_logprob,
            probe_base.mean_logprob
        ),
        None,
    )?;
    let summary = serde_json::json!({
        "settings": SETTINGS,
        "primary_metric": metric,
        "chosen": chosen,
        "candidate": candidate.summary(),
        "baseline": baseline.summary(),
        "checkpoints": reports.iter().map(|r| serde_json::json!({"name": r.subject, "metrics": r.metrics, "examples": compare_on.examples.len()})).collect::<Vec<_>>(),
        "probe": {"base": probe_base.summary(), "candidate": probe_cand.summary()},
        "full_evaluations": evaluations,
        "weights": weights,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let full = serde_json::json!({
        "candidate": candidate,
        "baseline": baseline,
        "probe": {"base": probe_base, "candidate": probe_cand},
    });
    let sha = link.upload(lease, serde_json::to_vec(&full).expect("reports serialise"))?;
    Ok((chosen, path, summary, sha))
}
