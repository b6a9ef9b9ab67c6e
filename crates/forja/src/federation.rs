//! `forja federation aggregate`: combine PEFT LoRA adapters of one base
//! model (trained on different nodes) into one PEFT adapter directory, with
//! the aggregation report beside it.

use crate::args::AggregateArgs;
use crate::models;
use anyhow::{Context, Result};
use std::process::ExitCode;

pub fn aggregate(a: AggregateArgs) -> Result<ExitCode> {
    // The base model checks every adapter's modules and shapes.
    let opts = forja_engine::LoadOptions { threads: Some(1), ..Default::default() };
    let engine = crate::run::load_with(&models::resolve(&a.model)?, &opts)?;
    let adapters = a
        .adapters
        .iter()
        .map(|d| {
            engine.load_adapter(d).with_context(|| format!("cannot load adapter {}", d.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&forja_engine::lora::Adapter> = adapters.iter().collect();
    let options = forja_fed::Options {
        method: a.method,
        rank: a.rank,
        weights: a.weights.clone(),
        clip: a.clip,
    };
    let (out, report) = forja_fed::aggregate(&refs, &options)?;
    out.save(&a.out).with_context(|| format!("cannot write {}", a.out.display()))?;
    let mut json = serde_json::to_value(&report)?;
    json["adapters"] = a.adapters.iter().map(|d| d.display().to_string()).collect();
    let path = a.out.join("aggregation.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if a.json {
        println!("{json}");
    } else {
        println!(
            "{} adapters → {} ({}, rank {}, {} modules)",
            report.inputs,
            a.out.display(),
            report.method.name(),
            report.rank,
            report.modules
        );
        for (k, (w, n)) in report.weights.iter().zip(&report.norms).enumerate() {
            let clip =
                report.clipped.iter().find(|c| c.0 == k).map(|c| format!(", clipped ×{:.3}", c.1));
            println!(
                "  {}: weight {w:.3}, update norm {n:.4}{}",
                a.adapters[k].display(),
                clip.unwrap_or_default()
            );
        }
        if let Some(e) = report.truncation_error {
            let mean = report.mean_truncation_error.unwrap_or(e);
            println!("  rank cut: relative error {mean:.4} mean, {e:.4} worst module");
        }
    }
    Ok(ExitCode::SUCCESS)
}
