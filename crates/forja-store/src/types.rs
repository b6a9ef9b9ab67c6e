//! The rows of the control plane, as Rust types. Wire formats (OpenAI's
//! JSON objects and request bodies) are forja-server's business: it reads
//! its own types and converts by hand. These are what the store keeps; their
//! serde forms are storage (JSON columns) and the worker protocol between
//! forja processes, never the public API.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Unix time in seconds (UTC).
pub type Timestamp = i64;

/// A tenant: whose data, keys, jobs and adapters these are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// `tn-…`.
    pub id: String,
    /// Unique, human-chosen.
    pub name: String,
    /// The tier its defaults came from (`free`, `standard`, `pro`, …).
    pub tier: String,
    /// Triggers, quota, priority, webhook.
    pub settings: TenantSettings,
    /// Creation time.
    pub created_at: Timestamp,
}

/// Per-tenant policy. Stored as JSON so a field added later needs no
/// migration; missing fields take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantSettings {
    /// Train when at least this many curated examples are pending (`None`:
    /// no threshold trigger).
    pub threshold: Option<u32>,
    /// Train on a schedule: a cron expression (5 fields, or 6 with seconds).
    pub cron: Option<String>,
    /// At most this many trainings per quota window.
    pub max_trainings: u32,
    /// The rolling quota window in seconds (a week by default).
    pub quota_window_s: i64,
    /// Higher runs first when workers are scarce.
    pub priority: i32,
    /// Base model triggered jobs train (`None`: the server's default).
    pub base_model: Option<String>,
    /// Where terminal job states are POSTed.
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key of the webhook signature.
    pub webhook_secret: Option<String>,
    /// The promotion gate policy (TOML; `None`: the default policy).
    pub gate_policy: Option<String>,
    /// What triggered (threshold, cron) jobs train with: hyperparameters,
    /// time limit, seed. `None`: everything "auto".
    pub job_spec: Option<JobSpec>,
    /// Megabytes of uploads, golden sets, examples and completion log the
    /// tenant may keep (0: no limit).
    pub storage_mb: u64,
    /// Names always masked in this tenant's data, whatever the node's
    /// allow list says (seed 002's VIP blocklist).
    pub pii_deny: Vec<String>,
    /// Whether the tenant's own keys may force a promotion the gate
    /// refused (otherwise only an admin key may).
    pub allow_forced_promotion: bool,
    /// The tenant's chat modes (empty: the built-in ones).
    pub modes: Vec<ChatMode>,
    /// What triggered jobs train on and from (continual learning).
    pub learning: LearningPolicy,
    /// Chat answers from the knowledge base unless a request says
    /// otherwise (`None`: only when a request asks).
    pub rag: Option<RagDefaults>,
    /// Entity memory (`None`: off, unless a request asks to recall).
    pub memory: Option<MemoryDefaults>,
    /// Roll a newly promoted champion back when its answers draw
    /// significantly more thumbs-down and corrections than its
    /// predecessor's (`None`: never automatically).
    pub auto_rollback: Option<AutoRollback>,
}

/// When a champion is rolled back automatically: a one-sided two-proportion
/// z-test of the share of its answers rated 1–2 or corrected, against the
/// previous champion's over the same length of time before the promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoRollback {
    /// How long after a promotion the champion is watched, and how far
    /// back its predecessor's answers are counted, seconds.
    pub window_s: i64,
    /// Answers each side needs before the test is made.
    pub min_served: u64,
    /// The z the new champion's bad share must exceed the old one's by
    /// (2.33: one-sided α = 0.01).
    pub z: f64,
}

impl Default for AutoRollback {
    fn default() -> Self {
        AutoRollback { window_s: 86_400, min_served: 30, z: 2.33 }
    }
}

/// A tenant's entity memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryDefaults {
    /// Facts are extracted from its users' chat turns.
    pub extract: bool,
    /// Facts about what a chat request mentions go into its prompt.
    pub recall: bool,
    /// Most facts recalled into one prompt.
    pub k: u32,
}

impl Default for MemoryDefaults {
    fn default() -> Self {
        MemoryDefaults { extract: true, recall: true, k: 8 }
    }
}

/// A tenant's default retrieval for chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RagDefaults {
    /// Passages per answer.
    pub k: u32,
    /// `hybrid`, `bm25` or `dense`.
    pub mode: String,
    /// Only these sources (empty: all).
    pub sources: Vec<String>,
}

impl Default for RagDefaults {
    fn default() -> Self {
        RagDefaults { k: 5, mode: "hybrid".into(), sources: Vec::new() }
    }
}

/// Where a triggered job's adapter starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// From the champion's adapter (a fresh one when there is no champion
    /// of the same base model).
    #[default]
    Champion,
    /// A fresh adapter every time.
    Base,
}

impl StartFrom {
    /// Its spelling in settings and lineage.
    pub fn as_str(self) -> &'static str {
        match self {
            StartFrom::Champion => "champion",
            StartFrom::Base => "base",
        }
    }

    /// Parses [`StartFrom::as_str`].
    pub fn parse(s: &str) -> Option<StartFrom> {
        [StartFrom::Champion, StartFrom::Base].into_iter().find(|v| v.as_str() == s)
    }
}

/// A tenant's continual-learning policy: what a triggered job's training
/// mix is. New examples (the ones the job claimed) are always in it; then
/// earlier examples of the tenant (replay against forgetting the tenant's
/// own history), then general replay rows (against forgetting what the
/// base model could do; seed 002's 20 %).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearningPolicy {
    /// Warm start from the champion, or a fresh adapter.
    pub start_from: StartFrom,
    /// Earlier examples replayed, as a multiple of the new ones (0.5: one
    /// earlier example for every two new ones). Ignored when
    /// `history_window` is set.
    pub history_replay: f64,
    /// Train on (up to) the newest this many earlier examples instead of a
    /// sample (0: sample by `history_replay`). `start_from = "base"` with
    /// a large window retrains on the whole history.
    pub history_window: u32,
    /// General replay rows as a fraction of the whole mix (0.2 = 20 %).
    pub general_replay: f64,
}

impl Default for LearningPolicy {
    fn default() -> Self {
        LearningPolicy {
            start_from: StartFrom::Champion,
            history_replay: 0.5,
            history_window: 0,
            general_replay: 0.2,
        }
    }
}

impl LearningPolicy {
    /// Checks the ranges; the error names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.history_replay.is_finite() && (0.0..=10.0).contains(&self.history_replay)) {
            return Err(format!(
                "learning.history_replay must be between 0 and 10 (a multiple of the new examples), got {}",
                self.history_replay
            ));
        }
        if !(self.general_replay.is_finite() && (0.0..0.9).contains(&self.general_replay)) {
            return Err(format!(
                "learning.general_replay must be at least 0 and below 0.9 (a fraction of the mix), got {}",
                self.general_replay
            ));
        }
        if self.history_window > 1_000_000 {
            return Err("learning.history_window must be at most 1000000 examples".into());
        }
        Ok(())
    }
}

/// What a job trains on, fixed when it is validated (a resumed job trains
/// on the same mix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainingMix {
    /// The policy it was built under.
    pub policy: LearningPolicy,
    /// New examples (the ones the job claimed) that reached training.
    pub new_examples: u64,
    /// Earlier examples of the tenant replayed, by id.
    pub replay_example_ids: Vec<i64>,
    /// General replay rows the worker adds (it records which ones).
    pub general_rows: u64,
    /// The version whose adapter training starts from (`None`: fresh).
    pub warm_start_from: Option<String>,
}

/// A chat mode: a named system prompt the tenant can edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMode {
    /// Stable id (`technical`, `minutes-es`…).
    pub id: String,
    /// Shown in the picker.
    pub name: String,
    /// The system prompt it starts a conversation with.
    pub prompt: String,
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings::for_tier(Tier::Standard)
    }
}

/// Built-in tiers: defaults for quota and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// One training a week, lowest priority.
    Free,
    /// One a day.
    Standard,
    /// Four a day, highest priority.
    Pro,
}

impl Tier {
    /// Parses a tier name.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "free" => Some(Tier::Free),
            "standard" => Some(Tier::Standard),
            "pro" => Some(Tier::Pro),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Standard => "standard",
            Tier::Pro => "pro",
        }
    }
}

/// A week in seconds.
pub const WEEK_S: i64 = 7 * 24 * 3600;

impl TenantSettings {
    /// The defaults of a tier.
    pub fn for_tier(tier: Tier) -> Self {
        let (max_trainings, priority, storage_mb) = match tier {
            Tier::Free => (1, 0, 256),
            Tier::Standard => (7, 1, 2048),
            Tier::Pro => (28, 2, 16384),
        };
        TenantSettings {
            threshold: Some(100),
            cron: None,
            max_trainings,
            quota_window_s: WEEK_S,
            priority,
            base_model: None,
            webhook_url: None,
            webhook_secret: None,
            gate_policy: None,
            job_spec: None,
            storage_mb,
            pii_deny: Vec::new(),
            allow_forced_promotion: false,
            modes: Vec::new(),
            learning: LearningPolicy::default(),
            rag: None,
            memory: None,
            auto_rollback: None,
        }
    }

    /// The spec of this tenant's triggered jobs.
    pub fn triggered_spec(&self) -> JobSpec {
        // A triggered job trains; it never imports.
        JobSpec { import: None, ..self.job_spec.clone().unwrap_or_default() }
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A tenant's key: its own models, files, jobs, feedback and registry.
    Tenant,
    /// A training worker: leases jobs of any tenant, nothing else.
    Worker,
    /// The node's operator: keys and tenants, metrics, and any tenant's
    /// endpoints when it names the tenant (`X-Forja-Tenant`).
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Tenant, Role::Worker, Role::Admin];

    /// Its name in the database, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Tenant => "tenant",
            Role::Worker => "worker",
            Role::Admin => "admin",
        }
    }

    /// Parses [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A stored key (its hash, never the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// `key-…`.
    pub id: String,
    /// The tenant (worker and admin keys have none).
    pub tenant_id: Option<String>,
    /// What it may do.
    pub role: Role,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// A name for people.
    pub name: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Not valid from then on.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// Whether it authenticates at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// A key to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKey {
    /// The tenant of a tenant key.
    pub tenant_id: Option<String>,
    /// What it may do.
    pub role: Role,
    /// sha256 of the key, hex.
    pub hash: String,
    /// Its first characters.
    pub prefix: String,
    /// A name for people.
    pub name: Option<String>,
    /// When it stops working.
    pub expires_at: Option<Timestamp>,
}

/// Bytes a tenant stores and may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageUsage {
    /// Bytes of uploads, golden sets, examples and completion log kept.
    pub used_bytes: u64,
    /// The quota (`None`: unlimited).
    pub limit_bytes: Option<u64>,
}

/// A curated example waiting for a training job, or the reason it was
/// refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewExample {
    /// `api`, `ui`, `corrections`, …
    pub source: String,
    /// What was posted.
    pub input: serde_json::Value,
    /// The curated training line (`{"messages": …}`), or why not.
    pub curated: Result<Curated, String>,
}

/// A training line and the hash that deduplicates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curated {
    /// The JSONL line as a value.
    pub record: serde_json::Value,
    /// Hash of its content (exact duplicates per tenant are refused).
    pub content_hash: String,
}

/// State of a stored example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExampleStatus {
    /// Waiting for a job.
    Curated,
    /// Refused by curation (or a duplicate).
    Rejected,
    /// Taken by a job's training file.
    Claimed,
    /// Back from a cancelled job: not counted by triggers until released
    /// or trained on deliberately.
    Held,
}

impl ExampleStatus {
    /// Its name in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ExampleStatus::Curated => "curated",
            ExampleStatus::Rejected => "rejected",
            ExampleStatus::Claimed => "claimed",
            ExampleStatus::Held => "held",
        }
    }
}

/// A stored example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Sequence number.
    pub id: i64,
    /// Its state.
    pub status: ExampleStatus,
    /// Why rejected.
    pub reason: Option<String>,
    /// The curated line.
    pub record: Option<serde_json::Value>,
    /// The job that claimed it.
    pub job_id: Option<String>,
}

/// What appending examples did.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// One per example, in order.
    pub examples: Vec<Example>,
    /// The job the threshold trigger created, if this append crossed it.
    pub job: Option<Job>,
    /// Why the threshold was reached but no job was created (quota, …).
    pub held: Option<String>,
}

/// Pending work of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PendingCounts {
    /// Curated, waiting for a job.
    pub curated: u64,
    /// Refused.
    pub rejected: u64,
    /// Already in jobs.
    pub claimed: u64,
    /// Back from cancelled jobs, waiting to be released.
    pub held: u64,
}

/// An uploaded (or generated) file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRow {
    /// `file-…`.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// `fine-tune`, …
    pub purpose: String,
    /// As uploaded.
    pub filename: String,
    /// Size.
    pub bytes: u64,
    /// Content address in the artifact store.
    pub sha256: String,
    /// Examples (non-empty lines).
    pub lines: u64,
    /// `processed` or `error`.
    pub status: String,
    /// Why `error`.
    pub status_details: Option<String>,
    /// Upload time.
    pub created_at: Timestamp,
    /// Sent by the tenant, or generated by the control plane (a triggered
    /// job's training file); only uploads count toward the storage quota.
    pub origin: FileOrigin,
}

/// Where a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOrigin {
    /// `POST /v1/files`.
    Upload,
    /// Built by the control plane from claimed examples.
    Generated,
}

impl FileOrigin {
    /// Its name in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            FileOrigin::Upload => "upload",
            FileOrigin::Generated => "generated",
        }
    }
}

/// OpenAI's job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Building and checking the training file.
    ValidatingFiles,
    /// Waiting for a worker.
    Queued,
    /// A worker holds its lease.
    Running,
    /// An adapter was produced.
    Succeeded,
    /// It stopped with an error.
    Failed,
    /// Cancelled by the user.
    Cancelled,
}

impl JobStatus {
    /// OpenAI's name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::ValidatingFiles => "validating_files",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses OpenAI's name.
    pub fn parse(s: &str) -> Option<JobStatus> {
        [
            JobStatus::ValidatingFiles,
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
        .into_iter()
        .find(|j| j.as_str() == s)
    }

    /// Whether the job is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }
}

/// What created a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// `POST /v1/fine_tuning/jobs` or the CLI.
    Manual,
    /// Pending examples reached the tenant's threshold.
    Threshold,
    /// The tenant's schedule fired.
    Cron,
    /// A federated aggregate pulled from a hub, to evaluate (no training).
    Federation,
}

impl Trigger {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Threshold => "threshold",
            Trigger::Cron => "cron",
            Trigger::Federation => "federation",
        }
    }
}

/// A hyperparameter that may be left to forja.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Auto<T> {
    /// Chosen from the dataset size.
    #[default]
    #[serde(with = "auto_str")]
    Auto,
    /// As given.
    Value(T),
}

mod auto_str {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("auto")
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let s = String::deserialize(d)?;
        if s == "auto" {
            Ok(())
        } else {
            Err(serde::de::Error::custom(format!("expected a number or \"auto\", got \"{s}\"")))
        }
    }
}

/// Hyperparameters as requested (OpenAI's names plus LoRA's). Stored as
/// JSON in a job's spec; the HTTP API reads its own wire type and converts
/// (so fields this store stops knowing are ignored, never fatal, in old rows).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HyperRequest {
    /// Passes over the data.
    pub n_epochs: Auto<u32>,
    /// Examples per step.
    pub batch_size: Auto<u32>,
    /// Multiplies forja's base learning rate.
    pub learning_rate_multiplier: Auto<f64>,
    /// LoRA rank.
    pub lora_r: Auto<u32>,
    /// LoRA alpha.
    pub lora_alpha: Auto<f64>,
    /// LoRA target modules (`q_proj,v_proj`, `all-linear`, …).
    pub lora_targets: Auto<String>,
}

/// Hyperparameters a worker trains with (every "auto" resolved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    /// Passes over the data.
    pub n_epochs: u32,
    /// Examples per step.
    pub batch_size: u32,
    /// Multiplies the base learning rate.
    pub learning_rate_multiplier: f64,
    /// The learning rate used (base × multiplier).
    pub learning_rate: f64,
    /// LoRA rank.
    pub lora_r: u32,
    /// LoRA alpha.
    pub lora_alpha: f64,
    /// LoRA target modules.
    pub lora_targets: String,
    /// Checkpoint every this many steps.
    pub save_every: u32,
    /// Seed.
    pub seed: u64,
}

/// What a job needs from a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// GPUs (0: CPU is fine).
    pub gpus: u32,
    /// Memory in GiB.
    pub memory_gb: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Resources { gpus: 0, memory_gb: 4 }
    }
}

/// Everything about a job fixed at creation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSpec {
    /// As requested.
    pub hyperparameters: HyperRequest,
    /// What the worker must have.
    pub resources: Resources,
    /// Stop training after this many seconds (the best adapter so far is kept).
    pub time_limit_s: Option<u64>,
    /// Added to the fine-tuned model's name.
    pub suffix: Option<String>,
    /// Seed (`None`: derived from the job id).
    pub seed: Option<u64>,
    /// User metadata (OpenAI's `metadata`).
    pub metadata: BTreeMap<String, String>,
    /// An adapter to evaluate instead of training one (a federated
    /// aggregate): the job goes through the gate like a trained one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportedAdapter>,
}

/// An adapter a job evaluates instead of training.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ImportedAdapter {
    /// Its files (name → sha256), in the artifact store.
    pub files: BTreeMap<String, String>,
    /// Where it came from (the hub's round, contributors), for the lineage.
    pub source: serde_json::Value,
    /// A short label for events (`round 3 of hub …`).
    pub label: String,
}

/// A job to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Owner.
    pub tenant_id: String,
    /// Base model.
    pub model: String,
    /// Training file (`None`: built from the tenant's claimed examples).
    pub training_file: Option<String>,
    /// Validation file.
    pub validation_file: Option<String>,
    /// What created it.
    pub trigger: Trigger,
    /// Fixed settings.
    pub spec: JobSpec,
}

/// A job's error, as OpenAI reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Machine-readable (`invalid_file`, `worker_lost`, `training_failed`, …).
    pub code: String,
    /// One line for a human.
    pub message: String,
    /// The request field at fault, if any.
    pub param: Option<String>,
}

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobResult {
    /// The adapter's files: relative path → sha256.
    pub adapter_files: BTreeMap<String, String>,
    /// Steps trained.
    pub steps: u64,
    /// Why training stopped (`completed`, `time_limit`, …).
    pub stopped_by: String,
    /// The step whose weights were kept.
    pub kept_step: u64,
    /// Validation loss of the kept weights.
    pub best_val_loss: Option<f64>,
    /// Training loss at the first and last step.
    pub first_loss: Option<f64>,
    /// …
    pub last_loss: Option<f64>,
    /// Wall-clock seconds of training.
    pub seconds: f64,
    /// The golden-set evaluation run after training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<JobEval>,
    /// sha256 of the base model's weights file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_sha256: Option<String>,
    /// forja's commit that trained it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_commit: Option<String>,
    /// The general replay rows the worker trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub general_replay: Option<GeneralReplayUse>,
    /// Whether training started from the warm-start adapter of the mix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_started_from: Option<String>,
}

/// The general replay rows of a job, exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GeneralReplayUse {
    /// The replay set (name and version).
    pub set: String,
    /// sha256 of the rows as trained (prompt and answer), an artifact.
    pub rows_sha256: String,
    /// Ids of the set's prompts used.
    pub row_ids: Vec<String>,
}

/// What a worker's golden-set evaluation found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEval {
    /// The golden set version used.
    pub golden_set_id: String,
    /// The champion evaluated as the baseline (`None`: the base model).
    pub baseline_version: Option<String>,
    /// The checkpoint chosen by the primary metric (`final`, `step-N`, `best`).
    pub chosen: Option<String>,
    /// Summaries: `candidate`, `baseline`, `checkpoints` (metrics only).
    pub summary: serde_json::Value,
    /// sha256 of the full reports (per-example results).
    pub report_sha256: Option<String>,
    /// Why the evaluation failed, if it did (the adapter is still kept).
    pub error: Option<String>,
}

/// A job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// `ftjob-…`.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Base model.
    pub model: String,
    /// Training file id (set once validated for triggered jobs).
    pub training_file: Option<String>,
    /// Validation file id.
    pub validation_file: Option<String>,
    /// State.
    pub status: JobStatus,
    /// What created it.
    pub trigger: Trigger,
    /// Fixed settings.
    pub spec: JobSpec,
    /// Resolved hyperparameters (after validation).
    pub hyperparameters: Option<Hyperparameters>,
    /// Queue priority.
    pub priority: i32,
    /// Why it failed.
    pub error: Option<JobError>,
    /// Tokens trained on.
    pub trained_tokens: Option<u64>,
    /// Name of the adapter it produced.
    pub fine_tuned_model: Option<String>,
    /// sha256 of the adapter's weights file.
    pub adapter_sha256: Option<String>,
    /// Details of the outcome.
    pub result: Option<JobResult>,
    /// Steps done.
    pub progress_step: u64,
    /// Steps planned.
    pub progress_total: u64,
    /// Worker holding the lease.
    pub lease_worker: Option<String>,
    /// When the lease ends unless renewed.
    pub lease_until: Option<Timestamp>,
    /// Leases given so far.
    pub attempts: u32,
    /// Creation time.
    pub created_at: Timestamp,
    /// First lease.
    pub started_at: Option<Timestamp>,
    /// Terminal state time.
    pub finished_at: Option<Timestamp>,
    /// What it trains on (triggered jobs, once validated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<TrainingMix>,
}

/// Severity of a job event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Progress.
    Info,
    /// Something to look at.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// A job event (OpenAI's `fine_tuning.job.event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// Sequence number (increasing).
    pub id: i64,
    /// The job.
    pub job_id: String,
    /// When.
    pub created_at: Timestamp,
    /// Severity.
    pub level: Level,
    /// `message` or `metrics`.
    pub kind: String,
    /// For a human.
    pub message: String,
    /// Metrics or details.
    pub data: Option<serde_json::Value>,
}

/// A kept training checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `ftckpt-…`.
    pub id: String,
    /// The job.
    pub job_id: String,
    /// Optimizer step.
    pub step: u64,
    /// Its files: relative path → sha256 in the artifact store.
    pub files: BTreeMap<String, String>,
    /// Step metrics (train loss, validation loss, …).
    pub metrics: serde_json::Value,
    /// When.
    pub created_at: Timestamp,
}

/// What a worker can run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// GPUs it has.
    pub gpus: u32,
    /// Memory in GiB.
    pub memory_gb: u32,
    /// Base models it can load (`None`: any).
    pub models: Option<Vec<String>>,
}

/// A pending webhook delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    /// Sequence number.
    pub id: i64,
    /// Owner.
    pub tenant_id: String,
    /// The job it reports.
    pub job_id: String,
    /// Where to POST.
    pub url: String,
    /// The event type (`fine_tuning.job.succeeded`, …).
    pub event: String,
    /// Deliveries tried.
    pub attempts: u32,
}

/// Trainings counted against a tenant's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUsage {
    /// Jobs in the window.
    pub used: u32,
    /// The limit.
    pub limit: u32,
    /// When the oldest counted job leaves the window (if at the limit).
    pub frees_at: Option<Timestamp>,
}

/// Counts across every tenant, for the node's metrics. Rows of `(tenant
/// name, label, count)` are per tenant; a consumer without tenant labels
/// sums them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStats {
    /// Jobs by status.
    pub jobs: Vec<(String, String, u64)>,
    /// When the oldest job still waiting for a worker was created.
    pub oldest_queued_at: Option<Timestamp>,
    /// Examples by status (`curated` = pending, `held`, `claimed`, `rejected`).
    pub examples: Vec<(String, String, u64)>,
    /// Model versions by status.
    pub versions: Vec<(String, String, u64)>,
    /// Registry log entries by kind (`registered`, `promoted`,
    /// `rolled_back`, `rejected`, …); the log only grows.
    pub registry_events: Vec<(String, String, u64)>,
    /// Per tenant: candidates rejected since its last promotion.
    pub rejected_streak: Vec<(String, u64)>,
    /// Champions rolled back automatically (live regression).
    pub auto_rollbacks: u64,
    /// Webhook deliveries by status (`pending`, `delivered`, `failed`).
    pub webhooks: Vec<(String, u64)>,
    /// Jobs failed because the final audit found personal data in their
    /// data (error code `pii_found`).
    pub pii_audit_failures: u64,
    /// Knowledge-base passages.
    pub knowledge_passages: u64,
    /// Current entity-memory facts.
    pub memory_facts: u64,
    /// Running jobs' latest training metrics.
    pub training: Vec<TrainingNow>,
    /// Store operations since the store was opened.
    pub operations: u64,
    /// Their total time, seconds (lock wait included).
    pub operation_seconds: f64,
    /// Operations that failed because the database was busy.
    pub busy_errors: u64,
    /// Scheduled tasks: name, its last finished run's outcome, and when it
    /// last finished `ok` or `warning`.
    pub tasks: Vec<(String, Option<String>, Option<Timestamp>)>,
    /// Each tenant's champion's golden-set metrics at promotion: (tenant
    /// name, metric, value).
    pub champion_metrics: Vec<(String, String, f64)>,
}

/// A running job's latest training metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingNow {
    /// The job.
    pub job_id: String,
    /// Its tenant's name.
    pub tenant: String,
    /// Optimizer steps done.
    pub step: f64,
    /// Training loss at that step.
    pub loss: f64,
    /// Training throughput.
    pub tokens_per_second: f64,
}
