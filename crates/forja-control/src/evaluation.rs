//! The worker's evaluation step after training: every kept checkpoint and
//! the current model (the tenant's champion, or the base model) are
//! evaluated on the tenant's golden set; the checkpoint that is best by
//! the tenant's primary metric becomes the job's adapter, not simply the
//! last one. The full reports (per-example results) are uploaded as an
//! artifact so a dashboard can show before/after diffs.

use crate::link::{write, EvalPlan, Lease, Link};
use crate::{ControlError, Result};
use forja_engine::embed::Embedder;
use forja_engine::lora::Adapter;
use forja_engine::Engine;
use forja_eval::gate::best_index;
use forja_eval::{EvalOptions, EvalReport};
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

/// Runs the evaluation; returns the chosen adapter directory and what to
/// record. An evaluation that fails does not fail the job: the final
/// adapter is kept and the error recorded (the version stays a
/// candidate).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_job(
    link: &dyn Link,
    lease: &Lease,
    plan: &EvalPlan,
    engine: &Engine,
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
    match run(link, lease, plan, engine, embedder, dir, out) {
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

fn run(
    link: &dyn Link,
    lease: &Lease,
    plan: &EvalPlan,
    engine: &Engine,
    embedder: Option<&Embedder>,
    dir: &Path,
    out: &Path,
) -> Result<Outcome> {
    let bytes = link.download(lease, &plan.golden_sha256)?;
    let golden = forja_eval::parse_golden(&plan.golden_set_id, &bytes)?;
    let opts = EvalOptions::default();
    let eval = |adapter: Option<&Adapter>| -> Result<EvalReport> {
        Ok(engine.install(|| {
            forja_eval::evaluate(engine, adapter, &golden, &opts, embedder, &mut |_, _| {})
        })?)
    };
    let baseline_dir = dir.join("baseline");
    let baseline_adapter = if plan.baseline_files.is_empty() {
        None
    } else {
        for (name, sha) in &plan.baseline_files {
            if name.contains('/') || name.contains("..") {
                return Err(ControlError::invalid("baseline", format!("bad file name `{name}`")));
            }
            write(&baseline_dir.join(name), &link.download(lease, sha)?)?;
        }
        Some(engine.load_adapter(&baseline_dir)?)
    };
    let what = plan
        .baseline_version
        .as_deref()
        .map_or("the base model".to_string(), |v| format!("champion {v}"));
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
    let mut baseline = eval(baseline_adapter.as_ref())?;
    baseline.subject = Some(what);
    let metric = plan.policy.primary_metric;
    let mut reports = Vec::new();
    let candidates = candidate_dirs(out);
    for (name, path) in &candidates {
        let adapter = engine.load_adapter(path)?;
        let mut r = eval(Some(&adapter))?;
        r.subject = Some(name.clone());
        let shown = r.get(metric).map_or("n/a".into(), |v| format!("{v:.4}"));
        link.event(
            lease,
            Level::Info,
            &format!(
                "Checkpoint {name}: {metric}={shown} (current model {})",
                baseline.get(metric).map_or("n/a".into(), |v| format!("{v:.4}"))
            ),
            Some(serde_json::json!({ "checkpoint": name, "metrics": r.metrics })),
        )?;
        reports.push(r);
    }
    let best = best_index(metric, &reports).unwrap_or(0);
    let (chosen, path) = candidates
        .get(best)
        .cloned()
        .ok_or_else(|| ControlError::invalid("adapter", "training left no adapter to evaluate"))?;
    let summary = serde_json::json!({
        "primary_metric": metric,
        "chosen": chosen,
        "candidate": reports[best].summary(),
        "baseline": baseline.summary(),
        "checkpoints": reports.iter().map(|r| serde_json::json!({"name": r.subject, "metrics": r.metrics})).collect::<Vec<_>>(),
    });
    let full = serde_json::json!({ "candidate": reports[best], "baseline": baseline });
    let sha = link.upload(lease, serde_json::to_vec(&full).expect("reports serialise"))?;
    Ok((chosen, path, summary, sha))
}
