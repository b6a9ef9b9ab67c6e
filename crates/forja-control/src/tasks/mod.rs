//! The node's proactive schedule: declarative tasks with cron expressions
//! in a time zone, a policy for fires missed while the node was down, one
//! runner per fire across every process sharing the store (the store's
//! claim), and a record of every run.
//!
//! The tasks are fixed (one of each [`TaskKind`]); the configuration
//! (`[tasks.<kind>]` in the node's file) sets when and how they run, or
//! turns them off. [`Scheduler::round`] decides what is due with
//! [`due`], claims it, and runs it on its own thread ([`run`] holds the
//! tasks themselves).

mod maintenance;
mod reeval;
mod report;
pub mod run;

pub use report::write_atomic;
pub use run::{LogFile, TaskEnv};

use crate::{ControlError, Result};
use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::Cron;
use forja_store::{TaskClaim, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Seconds a fire may be late and still count as on time (a node busy or
/// restarting for a moment has not "missed" it).
pub const ON_TIME_S: i64 = 15 * 60;

/// Seconds a runner's lease lasts between renewals.
pub const LEASE_S: i64 = 600;

/// The node's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskKind {
    /// Polls the knowledge feeds that are due.
    Feeds,
    /// Starts training for tenants with enough pending examples.
    Train,
    /// Re-evaluates each champion on its tenant's golden set (drift).
    Reeval,
    /// A consistent copy of the database, the oldest copies pruned.
    Backup,
    /// Compacts the database (`VACUUM`).
    Compact,
    /// Deletes artifacts nothing references, after a grace period.
    Gc,
    /// Purges the completion log and old task runs.
    Purge,
    /// Rotates the node's log file.
    Logs,
    /// Writes a report (Markdown and JSON) of what the node did.
    Report,
    /// Attacks the base model and each champion; writes the weekly report.
    RedTeam,
}

impl TaskKind {
    /// Every task.
    pub const ALL: [TaskKind; 10] = [
        TaskKind::Feeds,
        TaskKind::Train,
        TaskKind::Reeval,
        TaskKind::Backup,
        TaskKind::Compact,
        TaskKind::Gc,
        TaskKind::Purge,
        TaskKind::Logs,
        TaskKind::Report,
        TaskKind::RedTeam,
    ];

    /// Its name in the configuration, the CLI and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Feeds => "feeds",
            TaskKind::Train => "train",
            TaskKind::Reeval => "reeval",
            TaskKind::Backup => "backup",
            TaskKind::Compact => "compact",
            TaskKind::Gc => "gc",
            TaskKind::Purge => "purge",
            TaskKind::Logs => "logs",
            TaskKind::Report => "report",
            TaskKind::RedTeam => "redteam",
        }
    }

    /// Parses [`TaskKind::as_str`].
    pub fn parse(s: &str) -> Option<TaskKind> {
        TaskKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// What it does, for `forja tasks list`.
    pub fn describe(self) -> &'static str {
        match self {
            TaskKind::Feeds => "polls the knowledge feeds that are due",
            TaskKind::Train => "starts training for tenants with at least min_examples pending",
            TaskKind::Reeval => "re-evaluates each champion on its golden set; warns on drift",
            TaskKind::Backup => "a consistent copy of the database in backups/, keep newest",
            TaskKind::Compact => "compacts the database (VACUUM; writers wait)",
            TaskKind::Gc => "deletes artifacts no row references, older than grace_hours",
            TaskKind::Purge => "purges the completion log and task runs past retention",
            TaskKind::Logs => "rotates the log file (--log-file), keep newest",
            TaskKind::Report => "writes reports/daily/DATE.md and .json of what the node did",
            TaskKind::RedTeam => {
                "attacks the base model and each champion; reports/redteam/WEEK.md"
            }
        }
    }

    /// Built-in schedule, missed-run policy and whether it runs.
    fn defaults(self) -> (&'static str, Missed, bool) {
        match self {
            TaskKind::Feeds => ("* * * * *", Missed::Skip, true),
            TaskKind::Train => ("0 2 * * *", Missed::CatchUp, false),
            TaskKind::Reeval => ("30 2 * * *", Missed::CatchUp, true),
            TaskKind::Backup => ("0 3 * * *", Missed::CatchUp, true),
            TaskKind::Compact => ("0 4 * * 0", Missed::Skip, true),
            TaskKind::Gc => ("30 4 * * *", Missed::CatchUp, true),
            TaskKind::Purge => ("0 * * * *", Missed::CatchUp, true),
            TaskKind::Logs => ("0 0 * * *", Missed::CatchUp, true),
            TaskKind::Report => ("55 23 * * *", Missed::CatchUp, true),
            TaskKind::RedTeam => ("0 5 * * 1", Missed::CatchUp, true),
        }
    }

    /// The options it takes besides cron, tz, missed and enabled.
    fn options(self) -> &'static [&'static str] {
        match self {
            TaskKind::Feeds | TaskKind::Compact => &[],
            TaskKind::Train => &["min_examples"],
            TaskKind::Reeval => &["tolerance"],
            TaskKind::Backup | TaskKind::Report => &["keep"],
            TaskKind::Gc => &["grace_hours"],
            TaskKind::Purge => &["retention_days"],
            TaskKind::Logs => &["keep", "max_mb"],
            TaskKind::RedTeam => &["max_probes"],
        }
    }
}

/// What to do with fires that passed while the node was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Run once for the latest missed fire.
    CatchUp,
    /// Record the missed fires as skipped and wait for the next.
    Skip,
}

/// A task as written in the configuration (every field optional: the
/// built-in default stands).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Cron expression (5 fields, or 6 with seconds).
    pub cron: Option<String>,
    /// IANA time zone the expression is read in (default UTC).
    pub tz: Option<String>,
    /// `catch_up` or `skip`.
    pub missed: Option<Missed>,
    /// `false` turns it off.
    pub enabled: Option<bool>,
    /// Copies (backup), rotated files (logs) or days of reports kept.
    pub keep: Option<u32>,
    /// Hours an unreferenced artifact is kept (gc).
    pub grace_hours: Option<f64>,
    /// Days completions are kept (purge; default: the node's retention).
    pub retention_days: Option<f64>,
    /// Pending examples a tenant needs to be trained (train).
    pub min_examples: Option<u64>,
    /// How much worse a champion's primary metric may get (reeval).
    pub tolerance: Option<f64>,
    /// Rotate only past this size (logs; 0: every fire).
    pub max_mb: Option<u64>,
    /// Probes sent to each model attacked (redteam).
    pub max_probes: Option<u32>,
}

impl TaskSpec {
    fn given_options(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let pairs: [(&str, bool); 7] = [
            ("keep", self.keep.is_some()),
            ("grace_hours", self.grace_hours.is_some()),
            ("retention_days", self.retention_days.is_some()),
            ("min_examples", self.min_examples.is_some()),
            ("tolerance", self.tolerance.is_some()),
            ("max_mb", self.max_mb.is_some()),
            ("max_probes", self.max_probes.is_some()),
        ];
        for (k, given) in pairs {
            if given {
                v.push(k);
            }
        }
        v
    }
}

/// A task ready to schedule.
#[derive(Debug, Clone)]
pub struct Task {
    /// Which.
    pub kind: TaskKind,
    /// The expression, as written.
    pub cron_text: String,
    cron: Cron,
    /// Its time zone.
    pub tz: Tz,
    /// Missed-run policy.
    pub missed: Missed,
    /// Whether it runs on schedule (`forja tasks run` runs it anyway).
    pub enabled: bool,
    /// Its options as configured.
    pub spec: TaskSpec,
}

impl Task {
    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let from = self.tz.from_utc_datetime(&DateTime::from_timestamp(t, 0)?.naive_utc());
        self.cron.find_next_occurrence(&from, false).ok().map(|d| d.timestamp())
    }
}

/// The node's tasks, validated, by kind.
#[derive(Debug, Clone)]
pub struct TaskSet {
    tasks: BTreeMap<TaskKind, Task>,
}

impl PartialEq for TaskSet {
    fn eq(&self, other: &Self) -> bool {
        self.tasks.len() == other.tasks.len()
            && self.tasks.values().zip(other.tasks.values()).all(|(a, b)| {
                (a.kind, &a.cron_text, a.tz, a.missed, a.enabled, &a.spec)
                    == (b.kind, &b.cron_text, b.tz, b.missed, b.enabled, &b.spec)
            })
    }
}

impl Default for TaskSet {
    fn default() -> Self {
        TaskSet::new(&BTreeMap::new()).expect("the built-in schedule is valid")
    }
}

impl TaskSet {
    /// The built-in tasks with `specs` (by task name) applied; an error
    /// names `tasks.<name>` and the field.
    pub fn new(specs: &BTreeMap<String, TaskSpec>) -> Result<TaskSet> {
        for name in specs.keys() {
            if TaskKind::parse(name).is_none() {
                let all: Vec<&str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(ControlError::invalid(
                    format!("tasks.{name}"),
                    format!("there is no task `{name}` (tasks: {})", all.join(", ")),
                ));
            }
        }
        let mut tasks = BTreeMap::new();
        for kind in TaskKind::ALL {
            let name = kind.as_str();
            let spec = specs.get(name).cloned().unwrap_or_default();
            let field = |f: &str| format!("tasks.{name}.{f}");
            for o in spec.given_options() {
                if !kind.options().contains(&o) {
                    return Err(ControlError::invalid(
                        field(o),
                        format!(
                            "`{o}` is not an option of {name} (its options: cron, tz, missed, enabled{})",
                            kind.options().iter().map(|o| format!(", {o}")).collect::<String>()
                        ),
                    ));
                }
            }
            let (cron_default, missed_default, enabled_default) = kind.defaults();
            let cron_text = spec.cron.clone().unwrap_or_else(|| cron_default.to_string());
            let cron = crate::schedule::parse(&cron_text)
                .map_err(|e| ControlError::invalid(field("cron"), e.to_string()))?;
            let tz: Tz = match &spec.tz {
                None => Tz::UTC,
                Some(z) => z.parse().map_err(|_| {
                    ControlError::invalid(
                        field("tz"),
                        format!("`{z}` is not an IANA time zone (e.g. Europe/Madrid, UTC)"),
                    )
                })?,
            };
            let checks: [(&str, Option<f64>, f64, f64); 6] = [
                ("keep", spec.keep.map(f64::from), 1.0, 10_000.0),
                ("grace_hours", spec.grace_hours, 0.0, 24.0 * 365.0),
                ("retention_days", spec.retention_days, 0.0, 3650.0),
                ("tolerance", spec.tolerance, 0.0, 1e9),
                ("max_mb", spec.max_mb.map(|v| v as f64), 0.0, 1e6),
                ("max_probes", spec.max_probes.map(f64::from), 1.0, 10_000.0),
            ];
            for (k, v, lo, hi) in checks {
                if let Some(v) = v.filter(|v| !(v.is_finite() && (lo..=hi).contains(v))) {
                    return Err(ControlError::invalid(
                        field(k),
                        format!("{v} is out of range ({lo}..={hi})"),
                    ));
                }
            }
            let task = Task {
                kind,
                cron_text,
                cron,
                tz,
                missed: spec.missed.unwrap_or(missed_default),
                enabled: spec.enabled.unwrap_or(enabled_default),
                spec,
            };
            tasks.insert(kind, task);
        }
        Ok(TaskSet { tasks })
    }

    /// The task of `kind`.
    pub fn get(&self, kind: TaskKind) -> &Task {
        &self.tasks[&kind]
    }

    /// Every task, by kind.
    pub fn iter(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }
}

/// What [`due`] decided for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing to do before this fire (`None`: the expression never fires).
    NotYet(Option<Timestamp>),
    /// Run for `fire`; `missed` earlier fires passed unrun.
    Run { fire: Timestamp, missed: u32 },
    /// Record `fire` (and `missed` before it) as skipped.
    Skip { fire: Timestamp, missed: u32 },
}

/// Whether `task`, last fired at `last`, is due at `now`: the fires
/// after `last` up to `now` are counted; the latest runs if it is on time
/// ([`ON_TIME_S`]) or the policy catches up (once, whatever the count),
/// and is skipped otherwise.
pub fn due(task: &Task, last: Timestamp, now: Timestamp) -> Due {
    let mut latest = None;
    let mut count = 0u32;
    let mut t = last;
    // A seconds-resolution expression after a long outage has many fires:
    // past 100,000 the count jumps to the last day (the decision is the
    // same; the count is then a lower bound).
    while let Some(next) = task.next_after(t).filter(|&n| n <= now) {
        latest = Some(next);
        count += 1;
        t = next;
        if count == 100_000 {
            t = t.max(now - 86_400);
        }
    }
    match latest {
        None => Due::NotYet(task.next_after(now)),
        Some(fire) if now - fire <= ON_TIME_S || task.missed == Missed::CatchUp => {
            Due::Run { fire, missed: count - 1 }
        }
        Some(fire) => Due::Skip { fire, missed: count - 1 },
    }
}

/// The scheduler's clock: unix seconds, accelerated in tests.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A clock that starts at `start` and runs `speed` times faster than the
/// system's (for tests of schedules: `speed` 3600 makes a day pass in 24
/// seconds).
pub fn accelerated(start: Timestamp, speed: f64) -> Clock {
    let t0 = std::time::Instant::now();
    Arc::new(move || start + (t0.elapsed().as_secs_f64() * speed) as Timestamp)
}

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp())
}

/// Runs the node's tasks when they are due.
pub struct Scheduler {
    env: Arc<TaskEnv>,
    runner: String,
    clock: Clock,
    running: Mutex<HashMap<TaskKind, std::thread::JoinHandle<()>>>,
}

impl Scheduler {
    /// A scheduler that runs tasks as `runner` (unique per process).
    pub fn new(env: Arc<TaskEnv>, runner: String, clock: Clock) -> Scheduler {
        Scheduler { env, runner, clock, running: Mutex::default() }
    }

    /// The scheduler's time now.
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// One round under `tasks`: renews the leases of tasks still running,
    /// and claims and starts every enabled task that is due (each on its
    /// own thread). A task seen for the first time starts from now (a new
    /// node does not run a day of missed fires). Returns the names started.
    pub fn round(&self, tasks: &TaskSet) -> Result<Vec<&'static str>> {
        let now = self.now();
        let store = &self.env.control.store;
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|_, h| !h.is_finished());
        for kind in running.keys() {
            store.renew_task(kind.as_str(), &self.runner, now + LEASE_S)?;
        }
        let states: HashMap<String, Option<Timestamp>> =
            store.task_states()?.into_iter().map(|s| (s.name, s.last_fire)).collect();
        let mut started = Vec::new();
        for task in tasks.iter().filter(|t| t.enabled) {
            let name = task.kind.as_str();
            if running.contains_key(&task.kind) {
                continue;
            }
            let Some(last) = states.get(name).copied().flatten() else {
                // First sight: the schedule starts now.
                store.init_task(name, now)?;
                continue;
            };
            let (fire, missed, skip) = match due(task, last, now) {
                Due::NotYet(_) => continue,
                Due::Run { fire, missed } => (fire, missed, false),
                Due::Skip { fire, missed } => (fire, missed, true),
            };
            let detail = match (skip, missed, task.missed) {
                (true, _, _) => {
                    format!("missed by {} s; the policy skips missed fires", now - fire)
                }
                (false, 0, _) => String::new(),
                (false, n, Missed::CatchUp) => format!("caught up once for {} missed fires", n + 1),
                (false, n, Missed::Skip) => format!("{n} missed fires skipped"),
            };
            let claim = TaskClaim {
                name,
                last: Some(last),
                fire: Some(fire),
                runner: &self.runner,
                now,
                lease_s: LEASE_S,
                missed,
                skip,
                detail: &detail,
            };
            let Some(run_id) = store.claim_task(&claim)? else { continue };
            if skip {
                continue;
            }
            let (env, task, runner, clock) =
                (self.env.clone(), task.clone(), self.runner.clone(), self.clock.clone());
            let handle = std::thread::Builder::new()
                .name(format!("task-{name}"))
                .spawn(move || {
                    run::finish(&env, &task, &run_id, &detail, &runner, &clock, Some(fire))
                })
                .map_err(|e| ControlError::Internal(format!("cannot start task {name}: {e}")))?;
            running.insert(task_kind(name), handle);
            started.push(name);
        }
        Ok(started)
    }

    /// Runs `task` now on this thread (see [`run_now`]).
    pub fn run_now(&self, task: &Task) -> Result<forja_store::TaskRun> {
        run_now(&self.env, task, &self.runner, &self.clock)
    }

    /// The store the runs are recorded in.
    pub fn store(&self) -> &std::sync::Arc<dyn forja_store::Store> {
        &self.env.control.store
    }

    /// Waits for the tasks this scheduler started.
    pub fn join(&self) {
        let handles: Vec<_> = {
            let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
            r.drain().map(|(_, h)| h).collect()
        };
        for h in handles {
            let _ = h.join();
        }
    }
}

fn task_kind(name: &str) -> TaskKind {
    TaskKind::parse(name).expect("a task's own name")
}

/// Runs `task` now, by hand, on this thread: claims it (refused while
/// another runner holds it), runs it and records the outcome. Returns the
/// run.
pub fn run_now(
    env: &TaskEnv,
    task: &Task,
    runner: &str,
    clock: &Clock,
) -> Result<forja_store::TaskRun> {
    let store = &env.control.store;
    let name = task.kind.as_str();
    let claim = TaskClaim {
        name,
        last: None,
        fire: None,
        runner,
        now: clock(),
        lease_s: LEASE_S,
        missed: 0,
        skip: false,
        detail: "",
    };
    let Some(id) = store.claim_task(&claim)? else {
        return Err(ControlError::conflict(format!(
            "task {name} is running elsewhere (its lease has not run out); try again later"
        )));
    };
    run::finish(env, task, &id, "", runner, clock, None);
    store
        .task_runs(Some(name), 50)?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ControlError::Internal(format!("run {id} vanished")))
}

/// A task as `forja tasks list` and `GET /v1/admin/tasks` show it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// Its name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Whether it runs on schedule.
    pub enabled: bool,
    /// Its cron expression.
    pub cron: String,
    /// The time zone the expression is read in.
    pub tz: String,
    /// Missed-run policy.
    pub missed: Missed,
    /// Its options as configured (unset ones take the defaults).
    pub options: TaskSpec,
    /// The last claimed fire.
    pub last_fire: Option<Timestamp>,
    /// The next fire.
    pub next_fire: Option<Timestamp>,
    /// Who is running it now.
    pub running_on: Option<String>,
    /// Its newest run.
    pub last_run: Option<forja_store::TaskRun>,
}

/// Every task with its schedule, state and newest run, at `now`.
pub fn overview(
    store: &dyn forja_store::Store,
    tasks: &TaskSet,
    now: Timestamp,
) -> Result<Vec<TaskView>> {
    let states: HashMap<String, forja_store::TaskState> =
        store.task_states()?.into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut out = Vec::new();
    for t in tasks.iter() {
        let name = t.kind.as_str();
        let st = states.get(name);
        let last_fire = st.and_then(|s| s.last_fire);
        out.push(TaskView {
            name,
            description: t.kind.describe(),
            enabled: t.enabled,
            cron: t.cron_text.clone(),
            tz: t.tz.name().to_string(),
            missed: t.missed,
            options: TaskSpec {
                cron: None,
                tz: None,
                missed: None,
                enabled: None,
                ..t.spec.clone()
            },
            last_fire,
            next_fire: t.enabled.then(|| t.next_after(last_fire.unwrap_or(now).max(now))).flatten(),
            running_on: st.filter(|s| s.lease_until > now).and_then(|s| s.holder.clone()),
            last_run: store.task_runs(Some(name), 1)?.into_iter().next(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
