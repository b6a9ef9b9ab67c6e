//! `forja models list|show|lineage|promote|rollback|alias --tenant` and
//! `forja golden add|list`: a tenant's model registry, straight on the
//! data directory (a running server republishes the moves to its
//! subscribers when it next polls the model generation).

use crate::admin;
use crate::args::{DataDirArgs, GoldenCommand, ModelsCommand};
use anyhow::{Context, Result};
use forja_control::feedback::Curator;
use forja_control::registry::Actor;
use forja_control::{Control, ControlConfig, ModelNames};
use forja_store::prelude::*;
use forja_store::{LocalBus, ModelVersion};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// A control plane over the data directory, for registry commands.
pub(crate) fn control(data: &DataDirArgs) -> Result<(Control, tokio::runtime::Runtime)> {
    let dir = admin::data_dir(data);
    let store: Arc<dyn Store> = Arc::new(admin::open(data, Duration::from_secs(10))?);
    let artifacts = admin::artifacts(data)?;
    let cfg = ControlConfig {
        model: ModelNames { public: "default".into(), aliases: Vec::new() },
        lease_ttl_s: 30,
        max_attempts: 5,
        url_secret: forja_server::node::url_secret(&dir)?,
    };
    let c = Control::new(
        store,
        artifacts,
        Curator::new(&Default::default())?,
        cfg,
        Arc::new(LocalBus::default()),
    );
    Ok((c, admin::runtime()?))
}

fn wer_change(v: &ModelVersion) -> String {
    let m =
        |k: &str| v.lineage.eval.as_ref().and_then(|e| e["summary"][k]["metrics"]["wer"].as_f64());
    match (m("baseline"), m("candidate")) {
        (Some(b), Some(c)) => format!("wer {b:.3}->{c:.3}"),
        _ => "-".into(),
    }
}

/// The registry subcommands of `forja models` (`None`: not one of them).
pub fn models(cmd: &ModelsCommand) -> Option<Result<ExitCode>> {
    let run = || -> Result<ExitCode> {
        match cmd {
            ModelsCommand::List { tenant: Some(name), data } => {
                let store = admin::open(data, Duration::from_secs(5))?;
                let t = store.tenant_by_name(name)?;
                let aliases = store.aliases(&t.id)?;
                println!(
                    "{:<36} {:<10} {:<22} {:<20} {:<19} aliases",
                    "version", "status", "job", "eval", "base"
                );
                for v in store.model_versions(&t.id)? {
                    let names: Vec<&str> = aliases
                        .iter()
                        .filter(|a| a.version_id == v.id)
                        .map(|a| a.name.as_str())
                        .collect();
                    println!(
                        "{:<36} {:<10} {:<22} {:<20} {:<19} {}",
                        v.id,
                        v.status().as_str(),
                        v.lineage.job_id.as_deref().unwrap_or("-"),
                        wer_change(&v),
                        v.lineage.base_model,
                        names.join(",")
                    );
                }
            }
            ModelsCommand::Show { tenant, id: v, data } => {
                let store = admin::open(data, Duration::from_secs(5))?;
                let t = store.tenant_by_name(tenant)?;
                println!("{}", serde_json::to_string_pretty(&store.version_or_alias(&t.id, v)?)?);
            }
            ModelsCommand::Lineage { tenant, id: v, json, data } => {
                let (c, _rt) = control(data)?;
                let t = c.store.tenant_by_name(tenant)?;
                let id = c.store.version_or_alias(&t.id, v)?.id;
                let l = c.lineage(&t, &id)?;
                if *json {
                    println!("{}", serde_json::to_string_pretty(&l)?);
                } else {
                    print_lineage(&l);
                }
            }
            ModelsCommand::Promote { tenant, id: v, force, actor, data } => {
                let (c, rt) = control(data)?;
                let t = c.store.tenant_by_name(tenant)?;
                let id = c.store.version_or_alias(&t.id, v)?.id;
                // Whoever runs the CLI on the data directory is the operator.
                let who = Actor { name: actor.clone(), admin: true };
                let m = rt.block_on(c.promote(&t, &id, &who, *force))?;
                eprintln!(
                    "champion of `{tenant}`: {} (was {})",
                    m.version.map_or("the base model".into(), |v| v.id),
                    m.previous_id.as_deref().unwrap_or("the base model")
                );
            }
            ModelsCommand::Rollback { tenant, reason, to_base, actor, data } => {
                let (c, rt) = control(data)?;
                let t = c.store.tenant_by_name(tenant)?;
                let m = rt.block_on(c.rollback(&t, actor, reason, *to_base))?;
                eprintln!(
                    "champion of `{tenant}` rolled back to {} ({} archived)",
                    m.version.map_or("the base model".into(), |v| v.id),
                    m.previous_id.as_deref().unwrap_or("-")
                );
            }
            ModelsCommand::Alias { tenant, name, id: v, data } => {
                let store = admin::open(data, Duration::from_secs(5))?;
                let t = store.tenant_by_name(tenant)?;
                let id = store.version_or_alias(&t.id, v)?.id;
                store.set_alias(&t.id, name, &id, "cli")?;
            }
            _ => unreachable!("only registry commands reach here"),
        }
        Ok(ExitCode::SUCCESS)
    };
    match cmd {
        ModelsCommand::List { tenant: None, .. }
        | ModelsCommand::Install { .. }
        | ModelsCommand::Path { .. }
        | ModelsCommand::Export { .. } => None,
        _ => Some(run()),
    }
}

fn print_lineage(l: &forja_control::Lineage) {
    let v = &l.version;
    println!(
        "version    {} ({}{})",
        v.id,
        v.status().as_str(),
        if l.aliases.is_empty() { String::new() } else { format!(", {}", l.aliases.join(", ")) }
    );
    if let Some(r) = &v.lineage.status_reason {
        println!("           {r}");
    }
    println!("adapter    sha256 {}", v.lineage.adapter_sha256);
    println!(
        "base       {} (sha256 {})",
        v.lineage.base_model,
        v.lineage.base_sha256.as_deref().unwrap_or("unknown")
    );
    println!("code       {}", v.lineage.code_commit.as_deref().unwrap_or("unknown"));
    if let Some(j) = &l.job {
        println!("job        {} ({}, {})", j.id, j.trigger.as_str(), j.status.as_str());
    }
    for (what, f) in [("train", &l.training_file), ("validation", &l.validation_file)] {
        if let Some(f) = f {
            println!("{what:<10} {} {} ({} lines, sha256 {})", f.id, f.filename, f.lines, f.sha256);
        }
    }
    if let Some(g) = &l.golden_set {
        println!("golden     {} v{} {} ({} examples)", g.id, g.version, g.name, g.examples);
    }
    for (i, a) in l.ancestors.iter().enumerate() {
        println!("parent {:<3} {} ({})", i + 1, a.id, a.status().as_str());
    }
}

pub fn golden(cmd: GoldenCommand) -> Result<ExitCode> {
    match cmd {
        GoldenCommand::Add { tenant, file, data } => {
            let (c, rt) = control(&data)?;
            let t = c.store.tenant_by_name(&tenant)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = file
                .file_name()
                .map_or("golden.jsonl".into(), |n| n.to_string_lossy().into_owned());
            let g = rt.block_on(c.add_golden(&t, &name, bytes.into()))?;
            eprintln!("golden set {} v{} of `{tenant}`: {} examples", g.id, g.version, g.examples);
            println!("{}", g.id);
        }
        GoldenCommand::List { tenant, data } => {
            let store = admin::open(&data, Duration::from_secs(5))?;
            let t = store.tenant_by_name(&tenant)?;
            println!("{:<30} {:>7} {:>8}  name", "id", "version", "examples");
            for g in store.golden_sets(&t.id)? {
                println!("{:<30} {:>7} {:>8}  {}", g.id, g.version, g.examples, g.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
