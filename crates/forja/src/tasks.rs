//! `forja tasks`: the node's scheduled tasks on its data directory. `run`
//! claims the task through the store like the node's scheduler does, so
//! it never runs beside the node's own run; tasks that need the loaded
//! model or the knowledge base (reeval, feeds) say to run them on the node.

use crate::args::{TasksArgs, TasksCommand};
use anyhow::{bail, Result};
use forja_control::tasks::{self, TaskEnv, TaskKind, TaskSet};
use std::process::ExitCode;
use std::sync::Arc;

fn task_set(at: &TasksArgs) -> Result<TaskSet> {
    let (path, named) = match &at.config {
        Some(p) => (p.clone(), true),
        None => (crate::admin::data_dir(&at.data).join("forja.toml"), false),
    };
    crate::config::tasks_of_file(&path, named)
}

/// `YYYY-MM-DD HH:MM:SS` UTC, or `-`.
fn when(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or_else(|| "-".into(), |d| d.format("%Y-%m-%d %H:%M:%S").to_string())
}

pub fn run(cmd: TasksCommand) -> Result<ExitCode> {
    match cmd {
        TasksCommand::List { json, at } => {
            let set = task_set(&at)?;
            let store = crate::admin::open(&at.data, std::time::Duration::from_secs(10))?;
            let views = tasks::overview(&store, &set, (tasks::system_clock())())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&views)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<8} {:<3} {:<14} {:<16} {:<9} {:<19} {:<9} LAST RUN",
                "TASK", "ON", "CRON", "TZ", "MISSED", "NEXT (UTC)", "OUTCOME"
            );
            for v in views {
                let missed = serde_json::to_value(v.missed)?;
                let last = v.last_run.as_ref();
                println!(
                    "{:<8} {:<3} {:<14} {:<16} {:<9} {:<19} {:<9} {}",
                    v.name,
                    if v.enabled { "yes" } else { "no" },
                    v.cron,
                    v.tz,
                    missed.as_str().unwrap_or(""),
                    when(v.next_fire),
                    last.map_or("-", |r| r.outcome.as_str()),
                    last.map_or(String::new(), |r| forja_control::clip(&r.detail, 80)),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Run { name, at } => {
            let Some(kind) = TaskKind::parse(&name) else {
                let all: Vec<&str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
                bail!("there is no task `{name}` (tasks: {})", all.join(", "));
            };
            let set = task_set(&at)?;
            let (control, rt) = crate::registry::control(&at.data)?;
            let env = TaskEnv {
                control: Arc::new(control),
                knowledge: None,
                data_dir: crate::admin::data_dir(&at.data),
                engine: Default::default(),
                log_file: None,
                completion_retention_s: Arc::new(|| 7 * 86_400),
                runtime: rt.handle().clone(),
            };
            let runner = format!("cli-{}", std::process::id());
            let clock = tasks::system_clock();
            let r = tasks::run_now(&env, set.get(kind), &runner, &clock)?;
            println!("{} {}: {}", r.name, r.outcome, r.detail);
            Ok(if r.outcome == forja_store::tasks::outcome::FAILED {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        TasksCommand::History { name, limit, json, at } => {
            if let Some(n) = &name {
                if TaskKind::parse(n).is_none() {
                    bail!("there is no task `{n}`");
                }
            }
            let store = crate::admin::open(&at.data, std::time::Duration::from_secs(10))?;
            use forja_store::Tasks;
            let runs = store.task_runs(name.as_deref(), limit)?;
            for r in runs {
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    let took = r.finished_at.map(|f| format!("{} s", f - r.started_at));
                    println!(
                        "{} {:<8} {:<9} {:>7} {}{}",
                        when(Some(r.started_at)),
                        r.name,
                        r.outcome,
                        took.unwrap_or_else(|| "-".into()),
                        if r.missed > 0 {
                            format!("({} missed) ", r.missed)
                        } else {
                            String::new()
                        },
                        r.detail
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
