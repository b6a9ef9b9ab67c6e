//! The store's traits, one per concern. Methods are synchronous and short;
//! async callers run them on a blocking thread. `tenant` arguments scope a
//! lookup: a row of another tenant is `NotFound`, never returned.

use crate::completions::CompletionLog;
use crate::registry::Registry;
use crate::types::*;
use crate::Result;
use std::collections::BTreeMap;

/// The control plane's durable state: every concern, and the clock.
pub trait Store:
    Tenants
    + Examples
    + Files
    + Jobs
    + Schedules
    + Registry
    + CompletionLog
    + crate::Documents
    + crate::Conversations
    + crate::Governance
    + crate::Federation
    + crate::Knowledge
    + crate::Memory
    + crate::Tasks
    + Send
    + Sync
{
    /// The store's clock (unix seconds).
    fn now(&self) -> Timestamp;
    /// Counts across every tenant, for the node's metrics (a few
    /// aggregate queries; bounded by the number of tenants and running
    /// jobs, not by rows).
    fn node_stats(&self) -> Result<NodeStats>;
    /// Whether the database is the embedded SQLite file (its backup is
    /// forja's to take) rather than a server (Postgres: its own tools back
    /// it up).
    fn embedded(&self) -> bool;
}

/// Tenants and their API keys.
pub trait Tenants {
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
    /// Edits a tenant's settings in one transaction (read, `edit`, write),
    /// so a concurrent change to another field is not lost.
    fn edit_settings(
        &self,
        id: &str,
        edit: &mut (dyn FnMut(&mut TenantSettings) + Send),
    ) -> Result<Tenant>;
    /// Bytes a tenant stores now and its quota.
    fn storage(&self, tenant_id: &str) -> Result<StorageUsage>;

    /// Stores a key's hash. A tenant key names an existing tenant
    /// (`NotFound` otherwise); worker and admin keys name none.
    fn create_key(&self, key: &NewKey) -> Result<ApiKey>;
    /// The live key (not revoked, not expired) with this hash.
    fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>>;
    /// A key by id (live or not); of `tenant` when given.
    fn key(&self, tenant: Option<&str>, id: &str) -> Result<ApiKey>;
    /// Keys (of `tenant` when given), newest first, revoked and expired ones
    /// included.
    fn keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>>;
    /// Revokes a key now (idempotent).
    fn revoke_key(&self, tenant: Option<&str>, id: &str) -> Result<ApiKey>;
    /// Makes a key expire at `at` (or sooner, if it already expires sooner).
    fn expire_key(&self, id: &str, at: Timestamp) -> Result<ApiKey>;
}

/// Curated feedback waiting for training, and the triggers that claim it.
pub trait Examples {
    /// Appends examples (curated or refused, exact duplicates of pending,
    /// held or claimed ones refused) and, in the same transaction, creates
    /// the threshold job if the tenant's pending count reached its
    /// threshold and its quota allows: the job claims every pending
    /// example, so concurrent appends create exactly one job per crossing.
    /// `StorageQuota` if the tenant's storage would exceed its quota.
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
    /// A tenant's examples already trained on: claimed by a job that
    /// succeeded (other than `except_job`), oldest first, at most `limit`
    /// of the newest. What continual learning replays.
    fn trained_examples(
        &self,
        tenant_id: &str,
        except_job: &str,
        limit: usize,
    ) -> Result<Vec<Example>>;
    /// Creates a job from the tenant's pending examples if there are at
    /// least `min` and the quota allows (cron, manual "train now", and the
    /// threshold retried after the quota frees). With `include_held` (a
    /// deliberate "train now") held examples are claimed too. `Ok(None)`:
    /// too few.
    fn job_from_pending(&self, new: &NewJob, min: u64, include_held: bool) -> Result<Option<Job>>;
    /// Returns a tenant's held examples to the pool; how many.
    fn release_held(&self, tenant_id: &str) -> Result<u64>;
}

/// Uploaded and generated files (their bytes are in the artifact store).
pub trait Files {
    /// Stores a file's metadata. An upload counts toward the tenant's
    /// storage quota (`StorageQuota` when it would exceed it); a file the
    /// control plane generated does not.
    fn insert_file(&self, file: &FileRow) -> Result<()>;
    /// A tenant's file.
    fn file(&self, tenant_id: &str, id: &str) -> Result<FileRow>;
    /// A tenant's files, newest first.
    fn files(&self, tenant_id: &str) -> Result<Vec<FileRow>>;
    /// Deletes a tenant's file record (its storage is no longer counted).
    fn delete_file(&self, tenant_id: &str, id: &str) -> Result<FileRow>;
}

/// A job a worker leased, and the secret that proves it holds the lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Leased {
    /// The job, now `running`.
    pub job: Job,
    /// Sent with every call about the job; only its sha256 is stored.
    pub token: String,
}

/// Who acts on a leased job: the worker's name, the key it authenticated
/// with, and the lease's token. All three must match the lease.
#[derive(Debug, Clone, Copy)]
pub struct LeaseRef<'a> {
    /// The worker's name (shown in events).
    pub worker: &'a str,
    /// The id of the API key that took the lease (`local` for in-process workers).
    pub key: &'a str,
    /// The token [`Jobs::lease`] returned.
    pub token: &'a str,
}

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

/// The job lifecycle: creation, validation, leases, progress, the end.
pub trait Jobs {
    /// Creates a job in `validating_files`; `QuotaExceeded` if the tenant
    /// used its trainings for the window.
    fn create_job(&self, new: &NewJob) -> Result<Job>;
    /// A job (of `tenant`, when given).
    fn job(&self, tenant: Option<&str>, id: &str) -> Result<Job>;
    /// Jobs newest first (of `tenant`, when given), after the job `after`.
    fn jobs(&self, tenant: Option<&str>, after: Option<&str>, limit: usize) -> Result<Vec<Job>>;
    /// How many jobs are in each state, node-wide (`queued` → 3, …).
    fn job_counts(&self) -> Result<BTreeMap<String, u64>>;
    /// Jobs in a state, oldest first.
    fn jobs_in(&self, status: JobStatus) -> Result<Vec<Job>>;
    /// A tenant's quota use now.
    fn quota(&self, tenant_id: &str) -> Result<QuotaUsage>;
    /// `validating_files` → `queued` with its files (none for a job that
    /// evaluates an imported adapter), hyperparameters and (triggered jobs)
    /// training mix.
    fn job_validated(
        &self,
        id: &str,
        training_file: Option<&str>,
        validation_file: Option<&str>,
        hyper: &Hyperparameters,
        mix: Option<&TrainingMix>,
    ) -> Result<Job>;
    /// A non-terminal job fails (validation, or the control plane gives up).
    fn fail_job(&self, id: &str, error: &JobError) -> Result<Job>;
    /// Cancels a job; `Conflict` if it already ended. The examples it
    /// claimed are held back (not re-triggered) until released.
    fn cancel_job(&self, tenant: Option<&str>, id: &str) -> Result<Job>;
    /// Gives the highest-priority queued job that fits `cap` to `worker`
    /// (authenticated by the key `key`) for `ttl_s` seconds.
    fn lease(&self, worker: &str, key: &str, cap: &Capacity, ttl_s: i64) -> Result<Option<Leased>>;
    /// Renews a lease and records progress; `LeaseLost` unless `by` holds
    /// the job (expired and re-leased, cancelled, or another key or token).
    fn heartbeat(
        &self,
        id: &str,
        by: &LeaseRef<'_>,
        ttl_s: i64,
        progress: (u64, u64),
    ) -> Result<Job>;
    /// Returns jobs whose lease expired to the queue (or fails them after
    /// `max_attempts` leases).
    fn reap_expired(&self, max_attempts: u32) -> Result<Vec<Job>>;
    /// The lease holder ends a job.
    fn finish(&self, id: &str, by: &LeaseRef<'_>, outcome: &Finish) -> Result<Job>;
    /// The job, if `by` holds its lease; `LeaseLost` otherwise.
    fn lease_holder(&self, id: &str, by: &LeaseRef<'_>) -> Result<Job>;
    /// The lease holder appends an event (`metrics` when it has data,
    /// else `message`).
    fn worker_event(
        &self,
        job_id: &str,
        by: &LeaseRef<'_>,
        level: Level,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<JobEvent>;
    /// Events newest first, older than the event `after`.
    fn events(&self, job_id: &str, after: Option<i64>, limit: usize) -> Result<Vec<JobEvent>>;
    /// Events oldest first, newer than the event `since` (all of them
    /// without it): what a live follower has not seen yet.
    fn events_since(&self, job_id: &str, since: Option<i64>, limit: usize)
        -> Result<Vec<JobEvent>>;
    /// The lease holder records a checkpoint.
    fn add_checkpoint(
        &self,
        job_id: &str,
        by: &LeaseRef<'_>,
        step: u64,
        files: &BTreeMap<String, String>,
        metrics: &serde_json::Value,
    ) -> Result<Checkpoint>;
    /// A job's checkpoints, newest first.
    fn checkpoints(&self, job_id: &str) -> Result<Vec<Checkpoint>>;
}

/// Cron fires and webhook deliveries.
pub trait Schedules {
    /// Records that the tenant's schedule fired at `fire` if the last
    /// recorded fire is still `last` (compare-and-set: one node wins).
    fn claim_cron(&self, tenant_id: &str, last: Option<Timestamp>, fire: Timestamp)
        -> Result<bool>;
    /// The last cron fire handled.
    fn cron_last(&self, tenant_id: &str) -> Result<Option<Timestamp>>;
    /// Claims up to `limit` webhook deliveries due now for `hold_s`
    /// seconds (no other deliverer sees them meanwhile).
    fn claim_webhooks(&self, limit: usize, hold_s: i64) -> Result<Vec<Webhook>>;
    /// Records a delivery attempt: delivered, retry at `retry_at`, or given up.
    fn webhook_attempted(
        &self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        retry_at: Option<Timestamp>,
    ) -> Result<()>;
}
