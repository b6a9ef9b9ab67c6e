//! `forja redteam`: attack a model on this machine, check the log's chain,
//! write the weekly report. The log and the grown corpus are the data
//! directory's `redteam/`, the same the node's gate and scheduled task use.

use crate::args::RedteamCommand;
use anyhow::Result;
use forja_control::redteam::{self, log::Log, RedTeamOptions, Severity};
use std::process::ExitCode;
use std::sync::Arc;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn run(cmd: RedteamCommand) -> Result<ExitCode> {
    match cmd {
        RedteamCommand::Run { model, adapter, max_probes, seed, threads, json, data } => {
            let dir = crate::admin::data_dir(&data).join("redteam");
            let opts = forja_engine::LoadOptions { threads, ..Default::default() };
            let engine = Arc::new(crate::run::load_with(&crate::models::resolve(&model)?, &opts)?);
            let loaded =
                adapter.as_ref().map(|d| engine.load_adapter(d)).transpose()?.map(Arc::new);
            let target = match &adapter {
                Some(d) => format!("{model} + {}", d.display()),
                None => model.clone(),
            };
            let opts = RedTeamOptions {
                max_probes,
                seed,
                corpus: Some(dir.join("corpus.jsonl")),
                ..Default::default()
            };
            let report = redteam::attack(&engine, loaded, &target, &opts)?;
            let head = Log::new(&dir).record(&report, now())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{:<26} {:>7} {:>9}", "FAMILY", "PROBES", "FINDINGS");
                for (f, c) in &report.by_family {
                    println!("{:<26} {:>7} {:>9}", f.as_str(), c.probes, c.findings);
                }
                for f in &report.findings {
                    let sev = if f.severity == Severity::Critical { "CRITICAL" } else { "high" };
                    println!(
                        "{sev:<8} {:<14} {:<32} {}",
                        f.detector,
                        f.probe,
                        forja_control::clip(&f.evidence, 90)
                    );
                }
                println!("{}", report.line());
            }
            eprintln!(
                "forja: logged as run {} (log line {}, mac {}); {} mutated probe(s) joined the corpus",
                report.run,
                head.seq,
                &head.mac[..16],
                report.grown
            );
            Ok(ExitCode::SUCCESS)
        }
        RedteamCommand::Verify { data } => {
            let log = Log::new(crate::admin::data_dir(&data).join("redteam"));
            let head = log.verify()?;
            println!(
                "{}: {} line(s), chain intact; last mac {}",
                log.path().display(),
                head.seq,
                head.mac
            );
            Ok(ExitCode::SUCCESS)
        }
        RedteamCommand::Report { data } => {
            let dir = crate::admin::data_dir(&data);
            let log = Log::new(dir.join("redteam"));
            let md = redteam::weekly::write(&log, &dir.join("reports").join("redteam"), now())?;
            print!("{}", std::fs::read_to_string(&md)?);
            eprintln!("forja: written to {} (and .json)", md.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
