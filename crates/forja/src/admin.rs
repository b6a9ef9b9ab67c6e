//! `forja tenants`, `forja keys`, `forja jobs`: administration straight on
//! the data directory's database (safe while `forja serve` runs: SQLite in
//! WAL mode, every change one transaction).

use crate::args::{DataDirArgs, JobsCommand, KeysCommand, TenantFlags, TenantsCommand};
use anyhow::{bail, Context, Result};
use forja_control::{keys, schedule};
use forja_store::prelude::*;
use forja_store::{JobStatus, Role, SqliteStore, TenantSettings, Tier};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The data directory: the flag, `FORJA_DATA_DIR`, or ~/.local/share/forja.
pub fn data_dir(a: &DataDirArgs) -> PathBuf {
    a.data_dir.clone().unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".local/share/forja")
    })
}

/// Opens the node's database: `--database` (Postgres), or the data
/// directory's SQLite file.
pub fn open(a: &DataDirArgs, busy: Duration) -> Result<SqliteStore> {
    let dir = data_dir(a);
    Ok(forja_server::node::open_store(&dir, a.database.as_deref(), busy)?)
}

/// The data directory's artifact store (`FORJA_ARTIFACTS` overrides it,
/// as for `forja serve --artifacts`).
pub fn artifacts(a: &DataDirArgs) -> Result<forja_store::Artifacts> {
    let spec = std::env::var("FORJA_ARTIFACTS").ok();
    let cfg = forja_server::node::artifact_config(spec.as_deref(), &data_dir(a))?;
    Ok(forja_store::Artifacts::open(&cfg)?)
}

/// A single-threaded runtime for the commands that call async code.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Unix seconds now (what manifests and votes are stamped with).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn apply(mut s: TenantSettings, f: &TenantFlags) -> Result<TenantSettings> {
    if let Some(t) = f.threshold {
        s.threshold = (t > 0).then_some(t);
    }
    if let Some(c) = &f.cron {
        if c.trim().is_empty() {
            s.cron = None;
        } else {
            schedule::parse(c)?;
            s.cron = Some(c.clone());
        }
    }
    if let Some(m) = f.max_trainings {
        s.max_trainings = m;
    }
    if let Some(w) = f.quota_window_s {
        if w <= 0 {
            bail!("--quota-window-s must be positive");
        }
        s.quota_window_s = w;
    }
    if let Some(p) = f.priority {
        s.priority = p;
    }
    if let Some(m) = &f.base_model {
        s.base_model = Some(m.clone());
    }
    if let Some(u) = &f.webhook_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            bail!("--webhook-url must be an http(s) URL, not `{u}`");
        }
        s.webhook_url = Some(u.clone());
    }
    if let Some(k) = &f.webhook_secret {
        s.webhook_secret = Some(k.clone());
    }
    if let Some(j) = &f.job_spec {
        let w: forja_server::wire::jobs::SpecWire =
            serde_json::from_str(j).map_err(|e| anyhow::anyhow!("--job-spec: {e}"))?;
        let spec = w.spec().map_err(|(p, why)| anyhow::anyhow!("--job-spec: `{p}`: {why}"))?;
        // Fail now on a spec no job could train with.
        forja_control::hyper::check_spec(&spec).context("--job-spec")?;
        forja_control::hyper::resolve(&spec.hyperparameters, 100, 0).context("--job-spec")?;
        s.job_spec = (spec != forja_store::JobSpec::default()).then_some(spec);
    }
    if let Some(m) = f.storage_mb {
        s.storage_mb = m;
    }
    let l = &mut s.learning;
    if let Some(v) = f.start_from.as_deref().and_then(forja_store::StartFrom::parse) {
        l.start_from = v;
    }
    l.history_replay = f.history_replay.unwrap_or(l.history_replay);
    l.history_window = f.history_window.unwrap_or(l.history_window);
    l.general_replay = f.general_replay.unwrap_or(l.general_replay);
    l.validate().map_err(|why| {
        anyhow::anyhow!("--{}", why.replace('_', "-").trim_start_matches("learning."))
    })?;
    if !f.pii_deny.is_empty() {
        s.pii_deny = f.pii_deny.iter().filter(|n| !n.trim().is_empty()).cloned().collect();
        forja_data::pii::Scrubber::new(&forja_data::pii::PiiConfig {
            deny_list: s.pii_deny.clone(),
            ..Default::default()
        })
        .context("--pii-deny")?;
    }
    if let Some(a) = f.allow_forced_promotion {
        s.allow_forced_promotion = a;
    }
    match f.rag_k {
        Some(0) => s.rag = None,
        Some(k) if k as usize > forja_control::knowledge::MAX_K => {
            anyhow::bail!("--rag-k must be 0 to {}", forja_control::knowledge::MAX_K)
        }
        Some(k) => s.rag.get_or_insert_with(Default::default).k = k,
        None => {}
    }
    if let Some(m) = &f.rag_mode {
        s.rag.get_or_insert_with(Default::default).mode = m.clone();
    }
    match f.memory.as_deref() {
        Some("off") => s.memory = None,
        Some(m) => {
            let d = s.memory.get_or_insert_with(Default::default);
            (d.extract, d.recall) = (m == "on", true);
        }
        None => {}
    }
    match f.auto_rollback.as_deref() {
        Some("off") => s.auto_rollback = None,
        Some(_) => {
            s.auto_rollback.get_or_insert_with(Default::default);
        }
        None => {}
    }
    if let Some(n) = f.auto_rollback_min_served {
        if n == 0 {
            anyhow::bail!("--auto-rollback-min-served must be at least 1");
        }
        s.auto_rollback.get_or_insert_with(Default::default).min_served = n;
    }
    if let Some(w) = f.auto_rollback_window_s {
        if w < 60 {
            anyhow::bail!("--auto-rollback-window-s must be at least 60");
        }
        s.auto_rollback.get_or_insert_with(Default::default).window_s = w;
    }
    if let Some(k) = f.memory_k {
        if !(1..=forja_control::memory::MAX_RECALL as u32).contains(&k) {
            anyhow::bail!("--memory-k must be 1 to {}", forja_control::memory::MAX_RECALL);
        }
        s.memory.get_or_insert_with(Default::default).k = k;
    }
    if let Some(p) = &f.gate_policy {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        forja_eval::GatePolicy::from_toml(&text).with_context(|| p.display().to_string())?;
        s.gate_policy = Some(text);
    }
    Ok(s)
}

fn tier(name: &str) -> Result<Tier> {
    Tier::parse(name).with_context(|| format!("unknown tier `{name}`: use free, standard or pro"))
}

pub fn tenants(cmd: TenantsCommand) -> Result<ExitCode> {
    match cmd {
        TenantsCommand::Create { name, tier: t, flags, data } => {
            let store = open(&data, Duration::from_secs(5))?;
            let tr = tier(&t)?;
            let settings = apply(TenantSettings::for_tier(tr), &flags)?;
            let tenant = store.create_tenant(&name, tr.name(), &settings)?;
            println!("{}", tenant.id);
        }
        TenantsCommand::Set { name, flags, data } => {
            let store = open(&data, Duration::from_secs(5))?;
            let t = store.tenant_by_name(&name)?;
            let settings = apply(t.settings, &flags)?;
            store.update_settings(&t.id, &settings)?;
        }
        TenantsCommand::List { data } => {
            let store = open(&data, Duration::from_secs(5))?;
            println!(
                "{:<26} {:<20} {:<9} {:>9} {:>8}  schedule",
                "id", "name", "tier", "threshold", "quota"
            );
            for t in store.tenants()? {
                let s = &t.settings;
                println!(
                    "{:<26} {:<20} {:<9} {:>9} {:>8}  {}",
                    t.id,
                    t.name,
                    t.tier,
                    s.threshold.map_or("-".into(), |n| n.to_string()),
                    format!("{}/{}d", s.max_trainings, s.quota_window_s / 86_400),
                    s.cron.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn when(t: Option<i64>) -> String {
    t.map_or("-".into(), |t| t.to_string())
}

pub fn keys(cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Create { tenant, worker, admin, create_tenant, name, expires_in, data } => {
            let store = open(&data, Duration::from_secs(5))?;
            let role = match (&tenant, worker, admin) {
                (_, true, _) => Role::Worker,
                (_, _, true) => Role::Admin,
                (Some(_), false, false) => Role::Tenant,
                (None, false, false) => bail!("give --tenant NAME, --worker or --admin"),
            };
            let tenant_id = match &tenant {
                None => None,
                Some(n) => Some(match store.tenant_by_name(n) {
                    Ok(t) => t.id,
                    Err(forja_store::StoreError::NotFound { .. }) if create_tenant => {
                        let t = store.create_tenant(n, "standard", &TenantSettings::default())?;
                        eprintln!("created tenant `{n}` ({})", t.id);
                        t.id
                    }
                    Err(forja_store::StoreError::NotFound { .. }) => bail!(
                        "no tenant `{n}`: create it with `forja tenants create {n}` (or pass --create-tenant)"
                    ),
                    Err(e) => return Err(e.into()),
                }),
            };
            let expires_at =
                expires_in.map(|s| store.now().saturating_add(s.min(i64::MAX as u64) as i64));
            let spec = keys::KeySpec { tenant_id, name, expires_at };
            let (key, row) = keys::create(&store, role, &spec)?;
            eprintln!("created {} key {} (shown once)", role.as_str(), row.id);
            println!("{key}");
        }
        KeysCommand::List { tenant, data } => {
            let store = open(&data, Duration::from_secs(5))?;
            let tid = tenant.map(|n| store.tenant_by_name(&n).map(|t| t.id)).transpose()?;
            let names: std::collections::HashMap<String, String> =
                store.tenants()?.into_iter().map(|t| (t.id, t.name)).collect();
            let now = store.now();
            println!(
                "{:<28} {:<7} {:<16} {:<18} {:<12} {:>11} {:>11}  live",
                "id", "role", "tenant", "prefix", "name", "expires_at", "revoked_at"
            );
            for k in store.keys(tid.as_deref())? {
                let tenant =
                    k.tenant_id.as_ref().and_then(|t| names.get(t)).map_or("-", String::as_str);
                println!(
                    "{:<28} {:<7} {:<16} {:<18} {:<12} {:>11} {:>11}  {}",
                    k.id,
                    k.role.as_str(),
                    tenant,
                    k.prefix,
                    k.name.as_deref().unwrap_or("-"),
                    when(k.expires_at),
                    when(k.revoked_at),
                    if k.is_live(now) { "yes" } else { "no" }
                );
            }
        }
        KeysCommand::Revoke { id, data } => {
            let store = open(&data, Duration::from_secs(5))?;
            let k = store.revoke_key(None, &id)?;
            eprintln!("{} revoked at {}", k.id, when(k.revoked_at));
        }
        KeysCommand::Rotate { id, grace, data } => {
            let store = open(&data, Duration::from_secs(5))?;
            let (key, new, old) =
                keys::rotate(&store, None, &id, grace.min(i64::MAX as u64) as i64)?;
            eprintln!(
                "{} replaces {} (which {})",
                new.id,
                old.id,
                match (old.revoked_at, old.expires_at) {
                    (Some(_), _) => "is revoked".to_string(),
                    (None, Some(t)) => format!("expires at {t}"),
                    (None, None) => "stays valid".to_string(),
                }
            );
            println!("{key}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn jobs(cmd: JobsCommand) -> Result<ExitCode> {
    match cmd {
        JobsCommand::List { tenant, limit, data } => {
            let store = open(&data, Duration::from_secs(5))?;
            let tid = tenant.map(|n| store.tenant_by_name(&n).map(|t| t.id)).transpose()?;
            println!("{:<31} {:<16} {:<10} {:>11}  model", "id", "status", "trigger", "progress");
            for j in store.jobs(tid.as_deref(), None, limit)? {
                println!(
                    "{:<31} {:<16} {:<10} {:>11}  {}",
                    j.id,
                    j.status.as_str(),
                    j.trigger.as_str(),
                    format!("{}/{}", j.progress_step, j.progress_total),
                    j.model
                );
            }
        }
        JobsCommand::Show { id, data } => {
            let store = open(&data, Duration::from_secs(5))?;
            println!("{}", serde_json::to_string_pretty(&store.job(None, &id)?)?);
        }
        JobsCommand::Cancel { id, data } => {
            let store = open(&data, Duration::from_secs(5))?;
            let j = store.cancel_job(None, &id)?;
            eprintln!("{} is {}", j.id, j.status.as_str());
        }
        JobsCommand::Events { id, data } => {
            let store = open(&data, Duration::from_secs(5))?;
            store.job(None, &id)?;
            let mut evs = store.events(&id, None, 100_000)?;
            evs.reverse();
            for e in evs {
                println!("{} {:<5} {}", e.created_at, e.level.as_str(), e.message);
            }
        }
        JobsCommand::Follow { id, data } => return follow(&id, &data),
    }
    Ok(ExitCode::SUCCESS)
}

fn follow(id: &str, data: &DataDirArgs) -> Result<ExitCode> {
    let store = open(data, Duration::from_secs(5))?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {pos}/{len} steps {msg} {elapsed}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut seen = None;
    loop {
        let j = store.job(None, id)?;
        bar.set_prefix(j.status.as_str());
        bar.set_length(j.progress_total);
        bar.set_position(j.progress_step);
        for e in store.events(id, None, 50)?.into_iter().rev() {
            if seen.is_none_or(|s| e.id > s) {
                seen = Some(e.id);
                if e.kind == "message" {
                    bar.suspend(|| eprintln!("{}", e.message));
                } else {
                    bar.set_message(e.message.clone());
                }
            }
        }
        if j.status.is_terminal() {
            bar.finish_and_clear();
            eprintln!("{} {}", j.id, j.status.as_str());
            return Ok(if j.status == JobStatus::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
