//! The weekly report: the last seven days of the log against the seven
//! before, per family (probes sent, findings, critical ones) with the
//! change, as Markdown and JSON in `reports/redteam/`.

use super::log::Log;
use super::Family;
use crate::{ControlError, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    runs: u64,
    probes: u64,
    findings: u64,
    critical: u64,
}

fn week(log: &Log, from: i64, to: i64) -> Result<(Counts, BTreeMap<String, Counts>)> {
    let mut total = Counts::default();
    let mut fam: BTreeMap<String, Counts> =
        Family::ALL.iter().map(|f| (f.as_str().to_string(), Counts::default())).collect();
    for e in log.entries()?.into_iter().filter(|e| e.at >= from && e.at < to) {
        match e.kind.as_str() {
            "run" => {
                total.runs += 1;
                if let Some(m) = e.body["by_family"].as_object() {
                    for (f, v) in m {
                        let c = fam.entry(f.clone()).or_default();
                        c.probes += v["probes"].as_u64().unwrap_or(0);
                        total.probes += v["probes"].as_u64().unwrap_or(0);
                    }
                }
            }
            "finding" => {
                let c =
                    fam.entry(e.body["family"].as_str().unwrap_or("?").to_string()).or_default();
                let critical = e.body["severity"] == "critical";
                c.findings += 1;
                c.critical += u64::from(critical);
                total.findings += 1;
                total.critical += u64::from(critical);
            }
            _ => {}
        }
    }
    Ok((total, fam))
}

fn rate(c: &Counts) -> f64 {
    if c.probes == 0 {
        0.0
    } else {
        c.findings as f64 / c.probes as f64
    }
}

fn trend(now: f64, before: f64) -> &'static str {
    match now - before {
        d if d > 1e-9 => "worse",
        d if d < -1e-9 => "better",
        _ => "same",
    }
}

/// Writes the report for the week ending at `now` into `dir`; returns the
/// Markdown file.
pub fn write(log: &Log, dir: &Path, now: i64) -> Result<PathBuf> {
    const WEEK: i64 = 7 * 86_400;
    let (this, fam) = week(log, now - WEEK, now)?;
    let (last, fam_last) = week(log, now - 2 * WEEK, now - WEEK)?;
    let when = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
    let name = when.format("%G-W%V").to_string();
    let mut md = format!(
        "# forja red team, week {name}\n\n{} run(s), {} probes, {} findings ({} critical); \
         finding rate {:.1}% ({} than the week before: {:.1}%)\n\n\
         | family | probes | findings | critical | rate | week before | trend |\n|---|---|---|---|---|---|---|\n",
        this.runs,
        this.probes,
        this.findings,
        this.critical,
        100.0 * rate(&this),
        trend(rate(&this), rate(&last)),
        100.0 * rate(&last),
    );
    let mut families = serde_json::Map::new();
    for (f, c) in &fam {
        let b = fam_last.get(f).copied().unwrap_or_default();
        let _ = writeln!(
            md,
            "| {f} | {} | {} | {} | {:.1}% | {:.1}% | {} |",
            c.probes,
            c.findings,
            c.critical,
            100.0 * rate(c),
            100.0 * rate(&b),
            trend(rate(c), rate(&b))
        );
        families.insert(
            f.clone(),
            json!({"probes": c.probes, "findings": c.findings, "critical": c.critical,
                   "rate": rate(c), "rate_week_before": rate(&b), "trend": trend(rate(c), rate(&b))}),
        );
    }
    let report = json!({
        "week": name, "from": now - WEEK, "to": now,
        "runs": this.runs, "probes": this.probes, "findings": this.findings, "critical": this.critical,
        "rate": rate(&this), "week_before": {"runs": last.runs, "probes": last.probes,
            "findings": last.findings, "critical": last.critical, "rate": rate(&last)},
        "trend": trend(rate(&this), rate(&last)),
        "families": families,
    });
    let io = |e: std::io::Error| {
        ControlError::Internal(format!("red team report in {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let md_path = dir.join(format!("{name}.md"));
    crate::tasks::write_atomic(
        &dir.join(format!("{name}.json")),
        &serde_json::to_vec_pretty(&report).expect("serialises"),
    )
    .map_err(io)?;
    crate::tasks::write_atomic(&md_path, md.as_bytes()).map_err(io)?;
    Ok(md_path)
}
