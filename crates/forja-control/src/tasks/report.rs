//! The node's daily report: what it served, learnt, promoted and ran since
//! the last report, as JSON (for machines) and Markdown (for people), in
//! `reports/daily/`.

use super::run::{Done, TaskEnv};
use crate::{ControlError, Result};
use forja_store::tasks::outcome;
use forja_store::{Timestamp, CHAMPION};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where reports are written.
pub fn reports_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("reports").join("daily")
}

fn utc(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// Writes the report for the period that ends at `now` (it starts at the
/// previous report's, or a day before), keeping the newest `keep` days.
pub(super) fn daily(env: &TaskEnv, now: Timestamp, keep: usize) -> Result<Done> {
    let store = &env.control.store;
    let from = store
        .task_runs(Some("report"), 20)?
        .into_iter()
        .filter(|r| r.outcome == outcome::OK)
        .map(|r| r.scheduled_for.unwrap_or(r.started_at))
        .find(|&t| t < now)
        .unwrap_or(now - 86_400);
    let activity = store.activity(from, now)?;
    let mut champions = serde_json::Map::new();
    for t in store.tenants()? {
        let v = store.resolve_alias(&t.id, CHAMPION).ok();
        champions.insert(t.name.clone(), json!(v.map(|v| v.id)));
    }
    let mut last_runs = serde_json::Map::new();
    for k in super::TaskKind::ALL {
        let runs = store.task_runs(Some(k.as_str()), 2)?;
        if let Some(r) = runs.into_iter().find(|r| r.outcome != outcome::RUNNING) {
            last_runs.insert(
                k.as_str().into(),
                json!({"outcome": r.outcome, "started_at": r.started_at, "detail": r.detail}),
            );
        }
    }
    let report = json!({
        "from": from,
        "to": now,
        "activity": activity,
        "champions": champions,
        "tasks": last_runs,
    });
    let mut md = format!("# forja daily report\n\n{} to {}\n", utc(from), utc(now));
    for (section, counts) in &activity {
        let _ = write!(md, "\n## {}\n\n", capitalised(section));
        if counts.is_empty() {
            md.push_str("None.\n");
        }
        for (label, n) in counts {
            let _ = writeln!(md, "- {label}: {n}");
        }
    }
    md.push_str("\n## Champions\n\n");
    if champions.is_empty() {
        md.push_str("No tenants.\n");
    }
    for (tenant, v) in &champions {
        let _ = writeln!(md, "- {tenant}: {}", v.as_str().unwrap_or("the base model"));
    }
    md.push_str("\n## Tasks (last finished run)\n\n| task | outcome | started | what it did |\n|---|---|---|---|\n");
    for (task, r) in &last_runs {
        let _ = writeln!(
            md,
            "| {task} | {} | {} | {} |",
            r["outcome"].as_str().unwrap_or(""),
            utc(r["started_at"].as_i64().unwrap_or(0)),
            r["detail"].as_str().unwrap_or("").replace('|', "\\|")
        );
    }
    let dir = reports_dir(&env.data_dir);
    let io = |e: std::io::Error| {
        ControlError::Internal(format!("report: cannot write in {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let day = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default().format("%Y-%m-%d");
    let body = serde_json::to_vec_pretty(&report).expect("a report serialises");
    write_atomic(&dir.join(format!("{day}.json")), &body).map_err(io)?;
    write_atomic(&dir.join(format!("{day}.md")), md.as_bytes()).map_err(io)?;
    let mut days: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    days.sort();
    while days.len() > keep.max(1) {
        let old = days.remove(0);
        let _ = std::fs::remove_file(old.with_extension("md"));
        std::fs::remove_file(&old).map_err(io)?;
    }
    let served: u64 = activity.get("completions served").map_or(0, |m| m.values().sum());
    Ok(Done::ok(format!(
        "{} written ({served} completion(s) served since {})",
        dir.join(format!("{day}.md")).display(),
        utc(from)
    )))
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// Writes `bytes` to a temporary file beside `path` and renames it over
/// `path`: a reader sees the old report or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}
