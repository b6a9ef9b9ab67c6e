//! Running one task: what each needs ([`TaskEnv`]), the dispatch, and the
//! record of its outcome. A task's error, or a panic inside it, becomes a
//! `failed` run with the reason; it never takes the scheduler down.

use super::{maintenance, reeval, report, Clock, Task, TaskKind};
use crate::knowledge::Knowledge;
use crate::{Control, Result};
use forja_engine::Engine;
use forja_store::tasks::outcome;
use forja_store::{NewJob, Timestamp, Trigger};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What the tasks work on.
pub struct TaskEnv {
    /// The control plane (store, artifacts).
    pub control: Arc<Control>,
    /// Knowledge feeds (`None`: the feeds task has nothing to poll).
    pub knowledge: Option<Arc<Knowledge>>,
    /// The data directory (backups/, reports/ are made in it).
    pub data_dir: PathBuf,
    /// The engine champions are re-evaluated on, once loaded (unset:
    /// reeval says so).
    pub engine: Arc<std::sync::OnceLock<Arc<Engine>>>,
    /// The node's log file, if it writes one.
    pub log_file: Option<Arc<LogFile>>,
    /// Seconds completions are kept by default (read at each run: a
    /// reloaded configuration changes it).
    pub completion_retention_s: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// For the artifact store's async calls.
    pub runtime: tokio::runtime::Handle,
}

/// What one run did: its outcome and a line saying what happened.
pub(super) struct Done {
    pub outcome: &'static str,
    pub detail: String,
}

impl Done {
    pub fn ok(detail: impl Into<String>) -> Done {
        Done { outcome: outcome::OK, detail: detail.into() }
    }

    /// Ran, and found something a person must look at (a champion that
    /// drifted).
    pub fn warning(detail: impl Into<String>) -> Done {
        Done { outcome: outcome::WARNING, detail: detail.into() }
    }
}

/// Runs `task` for the claimed run `run_id` and records the outcome, after
/// what the claim said of it (`claimed`: missed fires caught up, …).
pub(super) fn finish(
    env: &TaskEnv,
    task: &Task,
    run_id: &str,
    claimed: &str,
    runner: &str,
    clock: &Clock,
    fire: Option<Timestamp>,
) {
    let started = std::time::Instant::now();
    let name = task.kind.as_str();
    let done =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(env, task, clock, fire)));
    let done = match done {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => Done { outcome: outcome::FAILED, detail: e.to_string() },
        Err(p) => {
            let what = forja_core::panic_message(&*p).unwrap_or("a panic");
            Done { outcome: outcome::FAILED, detail: format!("the task crashed: {what}") }
        }
    };
    let mut detail = format!("{} ({:.1} s)", done.detail, started.elapsed().as_secs_f64());
    if !claimed.is_empty() {
        detail = format!("{claimed}; {detail}");
    }
    match done.outcome {
        // Every minute: only when asked for.
        outcome::OK if task.kind == TaskKind::Feeds => tracing::debug!(task = name, "{detail}"),
        outcome::OK => tracing::info!(task = name, "{detail}"),
        _ => tracing::warn!(task = name, outcome = done.outcome, "{detail}"),
    }
    if let Err(e) = env.control.store.finish_task(run_id, runner, clock(), done.outcome, &detail) {
        tracing::warn!(task = name, "cannot record the run's end: {e}");
    }
}

fn execute(env: &TaskEnv, task: &Task, clock: &Clock, fire: Option<Timestamp>) -> Result<Done> {
    let spec = &task.spec;
    let now = fire.unwrap_or_else(|| clock());
    match task.kind {
        TaskKind::Feeds => match &env.knowledge {
            None => Ok(Done::ok(
                "no knowledge base in this process (run it on the node: POST /v1/admin/tasks/feeds/run)",
            )),
            Some(k) => {
                let mut polled = 0;
                loop {
                    let n = k.poll_due(16)?;
                    polled += n;
                    if n < 16 || polled >= 1024 {
                        break;
                    }
                }
                Ok(Done::ok(format!("{polled} feed(s) polled")))
            }
        },
        TaskKind::Train => train(env, spec.min_examples.unwrap_or(32)),
        TaskKind::Reeval => reeval::run(env, spec.tolerance.unwrap_or(0.02)),
        TaskKind::Backup => maintenance::backup(env, spec.keep.unwrap_or(7) as usize, now),
        TaskKind::Compact => {
            let freed = env.control.store.compact()?;
            Ok(Done::ok(format!("database compacted, {} freed", maintenance::mb(freed))))
        }
        TaskKind::Gc => {
            let grace = (spec.grace_hours.unwrap_or(24.0) * 3600.0) as i64;
            maintenance::gc(env, grace, clock())
        }
        TaskKind::Purge => {
            let keep = spec
                .retention_days
                .map_or((env.completion_retention_s)(), |d| (d * 86_400.0) as i64);
            let store = &env.control.store;
            let completions = store.purge_completions(store.now() - keep)?;
            let runs = store.purge_task_runs(clock() - 30 * 86_400)?;
            Ok(Done::ok(format!(
                "{completions} completion(s) older than {} purged, {runs} task run(s) older than 30 days",
                maintenance::duration(keep)
            )))
        }
        TaskKind::Logs => match &env.log_file {
            None => Ok(Done::ok("no log file to rotate (the node logs to stderr; see --log-file)")),
            Some(f) => f.rotate(spec.keep.unwrap_or(7), spec.max_mb.unwrap_or(0) << 20),
        },
        TaskKind::Report => report::daily(env, now, spec.keep.unwrap_or(30) as usize),
        TaskKind::RedTeam => red_team(env, spec.max_probes.unwrap_or(72) as usize, now),
    }
}

/// Attacks the base model and every tenant's champion, logs each run, and
/// writes the weekly report; a critical finding on a champion or the base
/// model makes the run a `warning`.
fn red_team(env: &TaskEnv, max_probes: usize, now: Timestamp) -> Result<Done> {
    let Some(rt) = env.control.red_team.get() else {
        return Ok(Done::ok(
            "no model loaded in this process (run it on the node: POST /v1/admin/tasks/redteam/run)",
        ));
    };
    let control = &env.control;
    let base = rt.run(None, &control.cfg.model.public, max_probes, now)?;
    let mut critical = base.critical();
    let mut lines = vec![format!("base: {}", base.line())];
    for t in control.store.tenants()? {
        let Ok(v) = control.store.resolve_alias(&t.id, forja_store::CHAMPION) else { continue };
        let dir =
            env.runtime.block_on(control.adapter_in_temp_dir(&v.lineage.adapter_files, &v.id))?;
        let adapter = rt.engine.load_adapter(dir.path())?;
        let r = rt.run(
            Some(Arc::new(adapter)),
            &format!("{} champion {}", t.name, v.id),
            max_probes,
            now,
        )?;
        critical += r.critical();
        lines.push(format!("{}: {}", t.name, r.line()));
    }
    let week = crate::redteam::weekly::write(
        &crate::redteam::log::Log::new(&rt.dir),
        &env.data_dir.join("reports").join("redteam"),
        now,
    )?;
    let detail = format!("{}; {} written", lines.join("; "), week.display());
    Ok(if critical > 0 { Done::warning(detail) } else { Done::ok(detail) })
}

/// Starts a job for each tenant with at least `min` pending examples
/// (held ones stay held; quotas apply as for any trigger).
fn train(env: &TaskEnv, min: u64) -> Result<Done> {
    let control = &env.control;
    let mut started = Vec::new();
    for t in control.store.tenants()? {
        let model = match control.check_model(&control.triggered_model(&t)) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(tenant = %t.name, "train task: {e}");
                continue;
            }
        };
        let new = NewJob {
            tenant_id: t.id.clone(),
            model,
            training_file: None,
            validation_file: None,
            trigger: Trigger::Cron,
            spec: t.settings.triggered_spec(),
        };
        match control.store.job_from_pending(&new, min.max(1), false) {
            Ok(Some(job)) => {
                control.job_changed(&job);
                started.push(format!("{} ({})", t.name, job.id));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(tenant = %t.name, "train task: {e}"),
        }
    }
    Ok(Done::ok(if started.is_empty() {
        format!("no tenant has {min} pending example(s)")
    } else {
        format!("training started for {}", started.join(", "))
    }))
}

/// A log file the node appends to, which the `logs` task rotates: the
/// current file moves to `NAME.1` (`NAME.1` to `NAME.2`, …, the oldest
/// beyond `keep` is dropped) and writing goes on in a new `NAME`.
pub struct LogFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl LogFile {
    /// Opens (creating) `path` for appending.
    pub fn open(path: PathBuf) -> std::io::Result<LogFile> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(LogFile { path, file: Mutex::new(file) })
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends `buf` (one log line).
    pub fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).write_all(buf)
    }

    fn numbered(&self, i: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{i}"));
        PathBuf::from(s)
    }

    /// Rotates if the file holds at least `min_bytes` (0: any non-empty
    /// file), keeping `keep` old files.
    pub(super) fn rotate(&self, keep: u32, min_bytes: u64) -> Result<Done> {
        let io = |e: std::io::Error| {
            crate::ControlError::Internal(format!("cannot rotate {}: {e}", self.path.display()))
        };
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let size = file.metadata().map_err(io)?.len();
        if size == 0 || size < min_bytes {
            return Ok(Done::ok(format!(
                "{} holds {}; not rotated",
                self.path.display(),
                mb(size)
            )));
        }
        let keep = keep.max(1);
        for i in (1..keep).rev() {
            let from = self.numbered(i);
            if from.exists() {
                std::fs::rename(&from, self.numbered(i + 1)).map_err(io)?;
            }
        }
        std::fs::rename(&self.path, self.numbered(1)).map_err(io)?;
        *file =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
        let _ = std::fs::remove_file(self.numbered(keep + 1));
        let old = (1..=keep).filter(|&i| self.numbered(i).exists()).count();
        Ok(Done::ok(format!(
            "{} rotated ({}); {old} old file(s) kept (at most {keep})",
            self.path.display(),
            mb(size)
        )))
    }
}

fn mb(bytes: u64) -> String {
    maintenance::mb(bytes)
}
