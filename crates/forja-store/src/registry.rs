//! The model registry's part of the store: golden sets, model versions
//! with their lineage, per-tenant aliases, and the registry log that
//! promotion, rollback and alias moves append to.
//!
//! Every lookup takes the tenant: a version of another tenant is
//! `NotFound`, so nothing can resolve or load it for the wrong tenant
//! (fail-closed in the library, not only in the API).

use crate::{Job, Result, StoreError, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The alias serving uses by default; moved only by promote and rollback.
pub const CHAMPION: &str = "champion";
/// The alias of the newest registered version.
pub const CANDIDATE: &str = "candidate";

/// A stored golden set version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenSetRow {
    /// `gold-…`.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// 1, 2, … per tenant.
    pub version: i64,
    /// File name it was uploaded as.
    pub name: String,
    /// sha256 of the JSONL (its artifact address).
    pub sha256: String,
    /// Number of examples.
    pub examples: u64,
    /// Prompt keys of its examples (kept out of training).
    pub prompt_keys: Vec<String>,
    /// Upload time.
    pub created_at: Timestamp,
}

/// Lifecycle of a model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Registered; not (yet) promoted.
    Candidate,
    /// Passed the gate; waits for a quorum of auditors' votes.
    AwaitingAudit,
    /// Promoted at least once and not rolled back.
    Promoted,
    /// The gate (or a person) refused it.
    Rejected,
    /// Rolled back or retired.
    Archived,
    /// Could not be loaded or smoke-checked in serving.
    Failed,
}

impl VersionStatus {
    /// Its spelling in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Candidate => "candidate",
            VersionStatus::AwaitingAudit => "awaiting_audit",
            VersionStatus::Promoted => "promoted",
            VersionStatus::Rejected => "rejected",
            VersionStatus::Archived => "archived",
            VersionStatus::Failed => "failed",
        }
    }

    /// Parses [`VersionStatus::as_str`].
    pub fn parse(s: &str) -> Option<VersionStatus> {
        [
            Self::Candidate,
            Self::AwaitingAudit,
            Self::Promoted,
            Self::Rejected,
            Self::Archived,
            Self::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What a new model version records (its lineage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewVersion {
    /// Owner.
    pub tenant_id: String,
    /// The training job that produced it.
    pub job_id: Option<String>,
    /// The champion it was trained to replace.
    pub parent_id: Option<String>,
    /// Base model name.
    pub base_model: String,
    /// sha256 of the base model's weights file, when known.
    pub base_sha256: Option<String>,
    /// sha256 of `adapter_model.safetensors`.
    pub adapter_sha256: String,
    /// Every adapter file: name → sha256.
    pub adapter_files: BTreeMap<String, String>,
    /// sha256 of the training file.
    pub dataset_sha256: Option<String>,
    /// What the data was: files, counts, example ids.
    pub manifest: serde_json::Value,
    /// forja's commit that trained it.
    pub code_commit: Option<String>,
    /// Resolved hyperparameters.
    pub hyperparameters: Option<serde_json::Value>,
    /// The golden set it was evaluated on.
    pub golden_set_id: Option<String>,
    /// Evaluation summary (candidate, baseline, checkpoints).
    pub eval: Option<serde_json::Value>,
    /// sha256 of the full evaluation report (per-example results).
    pub eval_sha256: Option<String>,
    /// The gate's decision.
    pub gate: Option<serde_json::Value>,
    /// Initial status: candidate, rejected, or promoted (registered and
    /// promoted at once).
    pub status: VersionStatus,
    /// Why it has that status, for people.
    pub status_reason: Option<String>,
}

impl NewVersion {
    /// A candidate known only by its base model and adapter files (name →
    /// sha256, `adapter_model.safetensors` among them): no job, parent,
    /// data, evaluation or gate. Fill in the rest with struct update syntax.
    pub fn candidate(
        tenant_id: &str,
        base_model: &str,
        adapter_files: BTreeMap<String, String>,
    ) -> NewVersion {
        NewVersion {
            tenant_id: tenant_id.to_string(),
            job_id: None,
            parent_id: None,
            base_model: base_model.to_string(),
            base_sha256: None,
            adapter_sha256: adapter_files
                .get("adapter_model.safetensors")
                .cloned()
                .unwrap_or_default(),
            adapter_files,
            dataset_sha256: None,
            manifest: serde_json::json!({}),
            code_commit: None,
            hyperparameters: None,
            golden_set_id: None,
            eval: None,
            eval_sha256: None,
            gate: None,
            status: VersionStatus::Candidate,
            status_reason: None,
        }
    }
}

/// A registered model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// A UUID.
    pub id: String,
    /// What was recorded at registration.
    #[serde(flatten)]
    pub lineage: NewVersion,
    /// Registration time.
    pub created_at: Timestamp,
    /// Last promotion time.
    pub promoted_at: Option<Timestamp>,
    /// Who promoted it last.
    pub promoted_by: Option<String>,
}

impl ModelVersion {
    /// Its status.
    pub fn status(&self) -> VersionStatus {
        self.lineage.status
    }
}

/// A tenant's alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    /// `champion`, `candidate`, or a user's name.
    pub name: String,
    /// The version it points at.
    pub version_id: String,
    /// Last move.
    pub updated_at: Timestamp,
    /// Who moved it.
    pub updated_by: String,
}

/// One registry change, in order (`id` grows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// Sequence number.
    pub id: i64,
    /// Owner.
    pub tenant_id: String,
    /// `registered`, `promoted`, `rolled_back`, `rejected`, `alias_set`.
    pub kind: String,
    /// The version concerned (the new champion for promote/rollback).
    pub version_id: Option<String>,
    /// The version it replaced, for promote/rollback.
    pub previous_id: Option<String>,
    /// The alias moved.
    pub alias: Option<String>,
    /// Who did it.
    pub actor: String,
    /// Why, for people.
    pub reason: Option<String>,
    /// When.
    pub created_at: Timestamp,
}

/// What a promotion, rollback or demotion changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasMove {
    /// The version the alias now points at (`None`: the alias was removed
    /// and the base model serves).
    pub version: Option<ModelVersion>,
    /// The version it pointed at before.
    pub previous_id: Option<String>,
    /// The tenant's model generation after the move.
    pub generation: i64,
    /// The registry log entry.
    pub entry_id: i64,
}

/// The registry: implemented by every store (a supertrait of [`crate::Store`]).
pub trait Registry: Send + Sync {
    /// Stores a new golden set version for a tenant (its `bytes` count
    /// toward the tenant's storage quota).
    fn add_golden_set(
        &self,
        tenant_id: &str,
        name: &str,
        sha256: &str,
        examples: u64,
        bytes: u64,
        prompt_keys: &[String],
    ) -> Result<GoldenSetRow>;
    /// A tenant's golden sets, newest first.
    fn golden_sets(&self, tenant_id: &str) -> Result<Vec<GoldenSetRow>>;

    /// Registers a version and points `candidate` at it; `Conflict` if its
    /// job was already registered. With status `Promoted` it is also
    /// promoted, in the same transaction.
    fn register_version(
        &self,
        new: &NewVersion,
        actor: &str,
    ) -> Result<(ModelVersion, Option<AliasMove>)>;
    /// Succeeded jobs not registered yet, oldest first.
    fn unregistered_jobs(&self, limit: usize) -> Result<Vec<Job>>;
    /// A version of `tenant_id` (`NotFound` for another tenant's).
    fn model_version(&self, tenant_id: &str, id: &str) -> Result<ModelVersion>;
    /// The version a rollback would go back to now (`None`: no champion,
    /// or nothing before it).
    fn previous_champion(&self, tenant_id: &str) -> Result<Option<String>>;
    /// A tenant's versions, newest first.
    fn model_versions(&self, tenant_id: &str) -> Result<Vec<ModelVersion>>;
    /// The version a job produced, if registered.
    fn version_of_job(&self, tenant_id: &str, job_id: &str) -> Result<Option<ModelVersion>>;
    /// Sets a non-promoted version's status (gate outcome, manual reject).
    fn set_version_status(
        &self,
        tenant_id: &str,
        id: &str,
        status: VersionStatus,
        reason: &str,
        actor: &str,
    ) -> Result<ModelVersion>;

    /// Points `champion` at a version (status `promoted`), in one
    /// transaction; `Conflict` for an archived version or the champion.
    fn promote(&self, tenant_id: &str, id: &str, actor: &str, reason: &str) -> Result<AliasMove>;
    /// Archives the champion and points `champion` at the previously
    /// promoted version, in one transaction; `Conflict` when there is none.
    fn rollback(&self, tenant_id: &str, actor: &str, reason: &str) -> Result<AliasMove>;
    /// Removes `champion` (the base model serves again) and archives the
    /// version it pointed at, in one transaction; `Conflict` when the
    /// tenant has no champion. For a first champion that must go, which
    /// rollback cannot replace.
    fn demote(&self, tenant_id: &str, actor: &str, reason: &str) -> Result<AliasMove>;
    /// Points a user alias at a version (not `champion`: promote for that).
    fn set_alias(&self, tenant_id: &str, name: &str, id: &str, actor: &str) -> Result<Alias>;
    /// A tenant's aliases, by name.
    fn aliases(&self, tenant_id: &str) -> Result<Vec<Alias>>;
    /// The version an alias points at.
    fn resolve_alias(&self, tenant_id: &str, name: &str) -> Result<ModelVersion>;
    /// A tenant's registry log, oldest first, after entry `after`.
    fn registry_log(&self, tenant_id: &str, after: i64) -> Result<Vec<RegistryEntry>>;
    /// Every tenant's model generation (bumped by each champion move): the
    /// NEW_MODEL_AVAILABLE flag any process can poll.
    fn model_generations(&self) -> Result<Vec<(String, i64)>>;

    /// The version an alias points at, `None` when the alias is not set.
    fn find_alias(&self, tenant_id: &str, name: &str) -> Result<Option<ModelVersion>> {
        match self.resolve_alias(tenant_id, name) {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A version by id, or by one of the tenant's aliases.
    fn version_or_alias(&self, tenant_id: &str, key: &str) -> Result<ModelVersion> {
        match self.model_version(tenant_id, key) {
            Err(StoreError::NotFound { .. }) => self.find_alias(tenant_id, key)?.ok_or_else(|| {
                StoreError::NotFound { what: "model version or alias", id: key.into() }
            }),
            r => r,
        }
    }
}
