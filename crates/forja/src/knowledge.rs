//! `forja knowledge add|search|list|remove|follow|feeds|unfollow --tenant`:
//! a tenant's knowledge base straight on the data directory. Beside a
//! running `forja serve` the store takes the change and the server's index
//! catches up at its next search (this process cannot take the index's
//! writer then, and searches the index as the server last committed it).

use crate::admin;
use crate::args::{KnowledgeArgs, KnowledgeCommand};
use anyhow::{bail, Context, Result};
use forja_control::knowledge::{AddSource, FeedPolicy, Knowledge, Mode, Pii, Query};
use forja_knowledge::DocFormat;
use forja_store::prelude::*;
use forja_store::Knowledge as _;
use std::process::ExitCode;
use std::sync::Arc;

/// The tenant `--tenant` names (by name, else by id).
pub(crate) fn tenant(store: &dyn Store, name: &str) -> Result<forja_store::Tenant> {
    store
        .tenant_by_name(name)
        .or_else(|_| store.tenant(name))
        .with_context(|| format!("no tenant `{name}`: `forja tenants list` shows them"))
}

fn open(kb: &KnowledgeArgs) -> Result<(Knowledge, forja_store::Tenant)> {
    let (control, _rt) = crate::registry::control(&kb.data)?;
    let tenant = tenant(&*control.store, &kb.tenant)?;
    let embedder = crate::models::embedder(&kb.embedding_model)?;
    let dir = admin::data_dir(&kb.data).join("knowledge");
    let k = Knowledge::open(Arc::new(control), dir, embedder, FeedPolicy::default())?;
    Ok((k, tenant))
}

fn pii(s: &str) -> Result<Pii> {
    Pii::parse(s).with_context(|| format!("--pii {s}: use scrub or keep"))
}

/// Runs a `forja knowledge` subcommand.
pub fn run(cmd: KnowledgeCommand) -> Result<ExitCode> {
    match cmd {
        KnowledgeCommand::Add { files, title, url, format, pii: p, kb } => {
            if title.is_some() && files.len() > 1 {
                bail!("--title names one document: pass one file with it");
            }
            let format =
                match format.as_deref() {
                    None => None,
                    Some(f) => Some(DocFormat::parse(f).with_context(|| {
                        format!("--format {f}: use text, markdown, html or docx")
                    })?),
                };
            let pii = pii(&p)?;
            let (k, t) = open(&kb)?;
            let mut failed = false;
            for (i, f) in files.into_iter().enumerate() {
                // One index commit per 100 documents (each is durable in
                // the store as soon as it is printed).
                if i > 0 && i % 100 == 0 {
                    k.sync_index()?;
                }
                let bytes = match std::fs::read(&f) {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("{}: {e}", f.display());
                        failed = true;
                        continue;
                    }
                };
                let add = AddSource {
                    title: title.clone(),
                    name: f.display().to_string(),
                    url: url.clone(),
                    format,
                    bytes,
                    pii,
                    kind: "document",
                    origin: None,
                    feed_id: None,
                };
                match k.add_unsynced(&t, add) {
                    Ok(a) => println!(
                        "{}  {} passages, {} duplicates  {}",
                        a.source.id, a.source.chunks, a.source.duplicates, a.source.title
                    ),
                    Err(e) => {
                        eprintln!("{}: {e}", f.display());
                        failed = true;
                    }
                }
            }
            k.sync_index()?;
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        KnowledgeCommand::Search { query, k: n, mode, sources, json, kb } => {
            let mode = Mode::parse(&mode)
                .with_context(|| format!("--mode {mode}: use hybrid, bm25 or dense"))?;
            let (k, t) = open(&kb)?;
            let q = Query {
                text: query,
                k: n,
                sources: (!sources.is_empty()).then_some(sources),
                mode,
            };
            for (i, h) in k.search(&t, &q)?.iter().enumerate() {
                let c = &h.chunk;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "rank": i + 1, "chunk_id": c.seq, "source_id": c.source_id,
                            "title": c.title, "url": c.url, "heading": c.chunk.heading,
                            "text": c.chunk.text, "span": [c.chunk.start, c.chunk.end],
                            "score": h.score, "bm25_rank": h.bm25_rank, "dense_rank": h.dense_rank,
                        })
                    );
                } else {
                    let text: String = c.chunk.text.chars().take(160).collect();
                    println!(
                        "{:>2}. {}  {}  ({:.4})\n    {text}",
                        i + 1,
                        c.source_id,
                        c.title,
                        h.score
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KnowledgeCommand::List { json, kb } => {
            let store = admin::open(&kb.data, std::time::Duration::from_secs(5))?;
            let t = tenant(&store, &kb.tenant)?;
            for s in store.knowledge_sources(&t.id, 100_000)? {
                if json {
                    // The API's source object, one per line.
                    println!("{}", forja_server::wire::knowledge::source(&s));
                } else {
                    println!(
                        "{}  {:<9} {:<8} {:>5} passages  {}",
                        s.id, s.kind, s.format, s.chunks, s.title
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KnowledgeCommand::Remove { id, kb } => {
            let (k, t) = open(&kb)?;
            let s = k.remove(&t, &id)?;
            println!("removed {} ({} passages)", s.id, s.chunks);
            Ok(ExitCode::SUCCESS)
        }
        KnowledgeCommand::Follow { url, interval_s, pii: p, now, kb } => {
            forja_control::knowledge::check_url(&url)?;
            if interval_s < forja_control::knowledge::MIN_INTERVAL_S {
                bail!("--interval-s must be at least {}", forja_control::knowledge::MIN_INTERVAL_S);
            }
            let pii = pii(&p)?;
            let (k, t) = open(&kb)?;
            let f = k.control().store.add_knowledge_feed(&t.id, &url, interval_s, pii.name())?;
            println!("{}  every {interval_s} s  {url}", f.id);
            if now {
                let poll = k.poll_feed(&f)?;
                println!("{}", poll.status);
                if poll.failed {
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KnowledgeCommand::Feeds { kb } => {
            let store = admin::open(&kb.data, std::time::Duration::from_secs(5))?;
            let t = tenant(&store, &kb.tenant)?;
            for f in store.knowledge_feeds(&t.id)? {
                println!(
                    "{}  every {} s  {} entries  {}  {}",
                    f.id,
                    f.interval_s,
                    f.items,
                    f.last_status.as_deref().unwrap_or("not polled yet"),
                    f.url
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        KnowledgeCommand::Unfollow { id, kb } => {
            let (k, t) = open(&kb)?;
            let f = k.remove_feed(&t, &id)?;
            println!("unfollowed {} ({} entries removed)", f.url, f.items);
            Ok(ExitCode::SUCCESS)
        }
    }
}
