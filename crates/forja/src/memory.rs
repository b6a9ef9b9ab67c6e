//! `forja memory list|add|edit|forget|rejections --tenant`: a tenant's
//! entity memory straight on the data directory (the store is shared with
//! a running `forja serve`, which sees every change at its next request).

use crate::args::{MemoryArgs, MemoryCommand};
use anyhow::Result;
use forja_control::memory::{fact_line, RawFact};
use forja_control::Control;
use forja_store::{Fact, Remembered, Tenant};
use serde_json::json;
use std::process::ExitCode;

fn open(m: &MemoryArgs) -> Result<(Control, Tenant, tokio::runtime::Runtime)> {
    let (control, rt) = crate::registry::control(&m.data)?;
    let t = crate::knowledge::tenant(&*control.store, &m.tenant)?;
    Ok((control, t, rt))
}

fn show(f: &Fact) -> String {
    let state = if f.is_current() { "current" } else { "superseded" };
    format!("{}  {state:<10}  {}", f.id, fact_line(f))
}

/// Runs a `forja memory` subcommand.
pub fn run(cmd: MemoryCommand) -> Result<ExitCode> {
    match cmd {
        MemoryCommand::List { entity, history, limit, json, mem } => {
            let (c, t, _rt) = open(&mem)?;
            for f in c.facts(&t, entity.as_deref(), history, limit.clamp(1, 100_000))? {
                if json {
                    let v = json!({
                        "id": f.id, "subject": f.subject, "verb": f.verb, "object": f.object,
                        "since": f.since, "source": {"kind": f.source_kind, "ref": f.source_ref},
                        "confidence": f.confidence, "mentions": f.mentions,
                        "current": f.is_current(), "superseded_by": f.superseded_by,
                        "updated_at": f.updated_at,
                    });
                    println!("{v}");
                } else {
                    println!("{}", show(&f));
                }
            }
        }
        MemoryCommand::Add { subject, verb, object, since, mem } => {
            let (c, t, _rt) = open(&mem)?;
            match c.add_fact(&t, &RawFact { subject, verb, object, since })? {
                Remembered::New { fact, superseded } => {
                    println!("{}", show(&fact));
                    for s in superseded {
                        println!("  supersedes {}", show(&s));
                    }
                }
                Remembered::Merged(f) => {
                    println!("{}  (already known; {} mentions)", show(&f), f.mentions)
                }
            }
        }
        MemoryCommand::Edit { id, subject, verb, object, since, mem } => {
            let (c, t, _rt) = open(&mem)?;
            println!("{}", show(&c.edit_fact(&t, &id, &RawFact { subject, verb, object, since })?));
        }
        MemoryCommand::Forget { id, entity, mem } => {
            let (c, t, _rt) = open(&mem)?;
            match (id, entity) {
                (_, Some(e)) => {
                    let f = c.forget_entity(&t, &e)?;
                    println!(
                        "forgot {} facts and {} refusals naming {e:?} ({} facts they had superseded are current again)",
                        f.facts, f.rejections, f.restored
                    );
                }
                (Some(id), None) => {
                    let f = c.store.forget_memory_fact(&t.id, &id)?;
                    println!("forgot {}", show(&f));
                }
                (None, None) => anyhow::bail!("name a fact id or --entity NAME"),
            }
        }
        MemoryCommand::Rejections { limit, mem } => {
            let (c, t, _rt) = open(&mem)?;
            for r in c.store.memory_rejections(&t.id, limit.clamp(1, 1000))? {
                let src = r.source_ref.as_deref().unwrap_or("-");
                println!("{}  {} {src}: {}  [{}]", r.created_at, r.source_kind, r.reason, r.text);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
