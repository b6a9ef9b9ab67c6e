//! `forja federation`: `aggregate` combines PEFT LoRA adapters of one base
//! model (trained on different nodes) into one PEFT adapter directory, with
//! the aggregation report beside it; `keygen`, `pack` and `verify` make a
//! node identity and signed delta packages and check them; `join`,
//! `publish`, `pull` and `nodes` talk to a hub (`federation_node`).

use crate::args::{AggregateArgs, FederationCommand, PackArgs};
use crate::models;
use anyhow::{bail, Context, Result};
use forja_fed::package::{self, NodeKey, PackInfo, Trust};
use std::process::ExitCode;

pub fn run(c: FederationCommand) -> Result<ExitCode> {
    match c {
        FederationCommand::Aggregate(a) => aggregate(a),
        FederationCommand::Keygen { out } => {
            if out.exists() {
                bail!("{} exists; a node key is never overwritten", out.display());
            }
            let key = NodeKey::generate();
            key.save(&out)?;
            println!("{}", key.public_hex());
            Ok(ExitCode::SUCCESS)
        }
        FederationCommand::Pack(a) => pack(a),
        FederationCommand::Join { hub, name } => crate::federation_node::join(hub, name),
        FederationCommand::Publish(a) => crate::federation_node::publish(a),
        FederationCommand::Pull { hub, tenant, model } => {
            crate::federation_node::pull(hub, tenant, model)
        }
        FederationCommand::Nodes(c) => crate::federation_node::nodes(c),
        FederationCommand::Verify { dir, trust, model } => {
            let base_sha256 = model.map(|m| base_sha(&m)).transpose()?;
            let m = package::verify(&dir, &Trust { keys: trust, base_sha256 })?;
            println!(
                "ok: signed by {}, base {} ({}), {} examples, metrics {:?}, lineage {:?}",
                m.node, m.base_model, m.base_sha256, m.examples, m.metrics, m.lineage
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// sha256 of a model's weights (the GGUF file, or an HF directory's
/// `model.safetensors`).
fn base_sha(model: &str) -> Result<String> {
    let path = models::resolve(model)?;
    forja_control::worker::model_sha256(&path)
        .with_context(|| format!("cannot hash the weights of {}", path.display()))
}

fn pack(a: PackArgs) -> Result<ExitCode> {
    let key = NodeKey::load(&a.key)?;
    let info = PackInfo {
        base_model: a.model.clone(),
        base_sha256: base_sha(&a.model)?,
        examples: a.examples,
        metrics: a.metrics.into_iter().collect(),
        lineage: a.lineage,
        created_at: crate::admin::now(),
    };
    let m = package::pack(&a.adapter, &a.out, &key, &info)?;
    println!("{}: signed by {}", a.out.display(), m.node);
    Ok(ExitCode::SUCCESS)
}

fn aggregate(a: AggregateArgs) -> Result<ExitCode> {
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
