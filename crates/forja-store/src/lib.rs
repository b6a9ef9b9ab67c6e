//! forja's durable state.
//!
//! [`Store`] is the seam: tenants, API keys, pending examples, files, jobs,
//! job events, checkpoints, webhook deliveries. Every state change is one
//! transaction, so a process killed at any point leaves the database at the
//! state before or after it. [`SqliteStore`] is the embedded default (WAL
//! mode, one file in the data directory); a Postgres implementation plugs
//! in behind the same trait (the SQL keeps to what both accept: row-value
//! comparisons, partial indexes, JSON in text columns).
//!
//! [`Artifacts`] keeps datasets, checkpoints and adapters in an
//! `object_store` (a local directory, or S3-compatible storage), addressed
//! by sha256 and verified on every read.

mod artifacts;
pub mod completions;
mod error;
pub mod registry;
mod sqlite;
mod types;

pub use artifacts::{sha256_file, sha256_hex, ArtifactConfig, Artifacts};
pub use completions::{CompletionLog, CompletionRecord};
pub use error::{Result, StoreError};
pub use registry::{
    Alias, AliasMove, GoldenSetRow, ModelVersion, NewVersion, Registry, RegistryEntry,
    VersionStatus, CANDIDATE, CHAMPION,
};
pub use sqlite::{new_id, SqliteStore};
pub use types::*;

use std::collections::BTreeMap;

/// How a worker ends a job it holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// An adapter was produced.
    Succeeded {
        /// Tokens trained on.
        trained_tokens: u64,
        /// Name of the adapter.
        fine_tuned_model: String,
        /// sha256 of its weights file.
        adapter_sha256: String,
        /// Details.
        result: Box<JobResult>,
    },
    /// It could not be trained.
    Failed(JobError),
}

/// The control plane's durable state. Methods are synchronous and short;
/// async callers run them on a blocking thread. `tenant` arguments scope a
/// lookup: a row of another tenant is `NotFound`, never returned.
pub trait Store: Registry + CompletionLog + Send + Sync {
    /// The store's clock (unix seconds).
    fn now(&self) -> Timestamp;

    /// Creates a tenant; `Conflict` if the name is taken.
    fn create_tenant(&self, name: &str, tier: &str, settings: &TenantSettings) -> Result<Tenant>;
    /// A tenant by id.
    fn tenant(&self, id: &str) -> Result<Tenant>;
    /// A tenant by name.
    fn tenant_by_name(&self, name: &str) -> Result<Tenant>;
    /// All tenants, by name.
    fn tenants(&self) -> Result<Vec<Tenant>>;
    /// Replaces a tenant's settings.
    fn update_settings(&self, id: &str, settings: &TenantSettings) -> Result<Tenant>;
    /// Stores a key's hash.
    fn create_key(
        &self,
        tenant_id: Option<&str>,
        role: Role,
        hash: &str,
        prefix: &str,
    ) -> Result<ApiKey>;
    /// The live key with this hash.
    fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>>;

    /// Appends examples (curated or refused, exact duplicates of pending or
    /// claimed ones refused) and, in the same transaction, creates the
    /// threshold job if the tenant's pending count reached its threshold
    /// and its quota allows: the job claims every pending example, so
    /// concurrent appends create exactly one job per crossing.
    fn append_examples(
        &self,
        tenant_id: &str,
        examples: &[NewExample],
        default_model: &str,
    ) -> Result<Appended>;
    /// Counts of a tenant's examples.
    fn pending(&self, tenant_id: &str) -> Result<PendingCounts>;
    /// The examples a job claimed, in order.
    fn job_examples(&self, job_id: &str) -> Result<Vec<Example>>;
    /// Creates a job from the tenant's pending examples if there are at
    /// least `min` and the quota allows (cron, manual "train now", and the
    /// threshold retried after the quota frees). `Ok(None)`: too few.
    fn job_from_pending(&self, new: &NewJob, min: u64) -> Result<Option<Job>>;

    /// Stores a file's metadata (its bytes are in the artifact store).
    fn insert_file(&self, file: &FileRow) -> Result<()>;
    /// A tenant's file.
    fn file(&self, tenant_id: &str, id: &str) -> Result<FileRow>;
    /// A tenant's files, newest first.
    fn files(&self, tenant_id: &str) -> Result<Vec<FileRow>>;

    /// Creates a job in `validating_files`; `QuotaExceeded` if the tenant
    /// used its trainings for the window.
    fn create_job(&self, new: &NewJob) -> Result<Job>;
    /// A job (of `tenant`, when given).
    fn job(&self, tenant: Option<&str>, id: &str) -> Result<Job>;
    /// Jobs newest first (of `tenant`, when given), after the job `after`.
    fn jobs(&self, tenant: Option<&str>, after: Option<&str>, limit: usize) -> Result<Vec<Job>>;
    /// Jobs in a state, oldest first.
    fn jobs_in(&self, status: JobStatus) -> Result<Vec<Job>>;
    /// A tenant's quota use now.
    fn quota(&self, tenant_id: &str) -> Result<QuotaUsage>;
    /// `validating_files` → `queued` with its files and hyperparameters.
    fn job_validated(
        &self,
        id: &str,
        training_file: &str,
        validation_file: Option<&str>,
        hyper: &Hyperparameters,
    ) -> Result<Job>;
    /// A non-terminal job fails (validation, or the control plane gives up).
    fn fail_job(&self, id: &str, error: &JobError) -> Result<Job>;
    /// Cancels a job; `Conflict` if it already ended.
    fn cancel_job(&self, tenant: Option<&str>, id: &str) -> Result<Job>;
    /// Gives the highest-priority queued job that fits `cap` to `worker`
    /// for `ttl_s` seconds.
    fn lease(&self, worker: &str, cap: &Capacity, ttl_s: i64) -> Result<Option<Job>>;
    /// Renews a lease and records progress; `LeaseLost` if the worker no
    /// longer holds the job (expired and re-leased, or cancelled).
    fn heartbeat(&self, id: &str, worker: &str, ttl_s: i64, progress: (u64, u64)) -> Result<Job>;
    /// Returns jobs whose lease expired to the queue (or fails them after
    /// `max_attempts` leases).
    fn reap_expired(&self, max_attempts: u32) -> Result<Vec<Job>>;
    /// The lease holder ends a job.
    fn finish(&self, id: &str, worker: &str, outcome: &Finish) -> Result<Job>;

    /// The job, if `worker` holds its lease; `LeaseLost` otherwise.
    fn lease_holder(&self, id: &str, worker: &str) -> Result<Job>;
    /// The lease holder appends an event (`metrics` when it has data,
    /// else `message`).
    fn worker_event(
        &self,
        job_id: &str,
        worker: &str,
        level: Level,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<JobEvent>;
    /// Events newest first, older than the event `after`.
    fn events(&self, job_id: &str, after: Option<i64>, limit: usize) -> Result<Vec<JobEvent>>;
    /// The lease holder records a checkpoint.
    fn add_checkpoint(
        &self,
        job_id: &str,
        worker: &str,
        step: u64,
        files: &BTreeMap<String, String>,
        metrics: &serde_json::Value,
    ) -> Result<Checkpoint>;
    /// A job's checkpoints, newest first.
    fn checkpoints(&self, job_id: &str) -> Result<Vec<Checkpoint>>;

    /// Records that the tenant's schedule fired at `fire` if the last
    /// recorded fire is still `last` (compare-and-set: one node wins).
    fn claim_cron(&self, tenant_id: &str, last: Option<Timestamp>, fire: Timestamp)
        -> Result<bool>;
    /// The last cron fire handled.
    fn cron_last(&self, tenant_id: &str) -> Result<Option<Timestamp>>;

    /// Webhook deliveries due now.
    fn due_webhooks(&self, limit: usize) -> Result<Vec<Webhook>>;
    /// Records a delivery attempt: delivered, retry at `retry_at`, or given up.
    fn webhook_attempted(
        &self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        retry_at: Option<Timestamp>,
    ) -> Result<()>;
}
