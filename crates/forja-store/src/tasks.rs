//! The node's scheduled tasks, durably: which fire of each task was last
//! claimed, a lease so that one runner at a time works on a task across
//! every process sharing the store, and the record of each run. When a
//! task is due, and whether missed fires are caught up or skipped, is
//! decided by the caller (forja-control's `tasks`); the store applies a
//! claim by compare-and-set on the last fire, so two schedulers seeing the
//! same fire start it once. The maintenance the tasks need of the store
//! itself (a consistent copy, compaction, the artifact addresses it
//! mentions) is here too.

use crate::{Result, Timestamp};
use std::collections::HashSet;
use std::path::Path;

/// What a run came to.
pub mod outcome {
    /// Still running (or its runner died: see [`ABANDONED`]).
    pub const RUNNING: &str = "running";
    /// Finished.
    pub const OK: &str = "ok";
    /// Finished with an error.
    pub const FAILED: &str = "failed";
    /// A missed fire the task's policy skips.
    pub const SKIPPED: &str = "skipped";
    /// Ran, and found something a person must look at (a champion that
    /// drifted on its golden set).
    pub const WARNING: &str = "warning";
    /// Its runner's lease ran out before it finished (the process died).
    pub const ABANDONED: &str = "abandoned";
}

/// A claim on one fire of a task (or a run by hand).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskClaim<'a> {
    /// The task.
    pub name: &'a str,
    /// The fire the caller saw as the last claimed (compare-and-set).
    pub last: Option<Timestamp>,
    /// The fire claimed; `None`: a run by hand, which leaves the schedule
    /// alone.
    pub fire: Option<Timestamp>,
    /// Who runs it.
    pub runner: &'a str,
    /// The caller's clock (the scheduler's, which tests accelerate).
    pub now: Timestamp,
    /// Seconds the lease lasts without renewal.
    pub lease_s: i64,
    /// Fires that passed unrun before this one.
    pub missed: u32,
    /// Record the fire as skipped instead of running it (no lease).
    pub skip: bool,
    /// Why it is skipped.
    pub detail: &'a str,
}

/// A task's durable state.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    /// The task.
    pub name: String,
    /// The last claimed fire.
    pub last_fire: Option<Timestamp>,
    /// Who holds the lease, if it has not run out.
    pub holder: Option<String>,
    /// When the lease runs out.
    pub lease_until: Timestamp,
}

/// One run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskRun {
    /// `run-…`.
    pub id: String,
    /// The task.
    pub name: String,
    /// The fire it ran for (`None`: by hand).
    pub scheduled_for: Option<Timestamp>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
    /// One of [`outcome`].
    pub outcome: String,
    /// What it did, or why it failed.
    pub detail: String,
    /// Who ran it.
    pub runner: String,
    /// Fires that passed unrun before this one.
    pub missed: u32,
}

/// Scheduled tasks and the store maintenance they do.
pub trait Tasks {
    /// Claims a fire (or a run by hand) in one transaction: `None` when
    /// another runner holds the task's lease, or (scheduled) when the last
    /// fire is no longer `claim.last`. A run whose runner's lease ran out
    /// unfinished is marked [`outcome::ABANDONED`] first. Returns the run's
    /// id (a skipped fire's run is recorded finished).
    fn claim_task(&self, claim: &TaskClaim<'_>) -> Result<Option<String>>;
    /// Starts a task's schedule at `fire` if it has none yet (a new task
    /// does not run the fires before it existed); `false` if it had one.
    fn init_task(&self, name: &str, fire: Timestamp) -> Result<bool>;
    /// Extends the lease of a running task (`false`: no longer held).
    fn renew_task(&self, name: &str, runner: &str, until: Timestamp) -> Result<bool>;
    /// Records a run's end and releases the lease.
    fn finish_task(
        &self,
        run_id: &str,
        runner: &str,
        now: Timestamp,
        outcome: &str,
        detail: &str,
    ) -> Result<()>;
    /// Every task's state, by name.
    fn task_states(&self) -> Result<Vec<TaskState>>;
    /// Runs, newest first (of `name` when given), at most `limit`.
    fn task_runs(&self, name: Option<&str>, limit: usize) -> Result<Vec<TaskRun>>;
    /// Deletes finished runs that started before `before`; returns how many.
    fn purge_task_runs(&self, before: Timestamp) -> Result<u64>;

    /// Writes a consistent copy of the whole store to `dest` (which must
    /// not exist) while writers go on; returns its size in bytes.
    fn backup_to(&self, dest: &Path) -> Result<u64>;
    /// Compacts the store (writers wait while it runs); returns the bytes
    /// it gave back.
    fn compact(&self) -> Result<u64>;
    /// Every artifact address (64 lowercase hex digits) written anywhere in
    /// the store, in any column of any row: what garbage collection must
    /// keep. Read from a snapshot, without holding writers.
    fn artifact_references(&self) -> Result<HashSet<String>>;
    /// What happened from `from` (inclusive) to `to` (exclusive), for the
    /// node's report: counts by section, then by label.
    fn activity(&self, from: Timestamp, to: Timestamp) -> Result<Activity>;
}

/// Counts of what happened in a period, by section (`completions`,
/// `feedback`, `jobs finished`, …) and label (a tenant, a status).
pub type Activity = std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>;
