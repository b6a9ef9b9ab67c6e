//! How a worker reaches the control plane: the [`Link`] trait, what a
//! lease hands a worker ([`Lease`], with its [`EvalPlan`]), building a
//! lease from the store ([`lease_from_store`]), and [`LocalLink`], the
//! in-process link of the embedded default. The HTTP link is
//! forja-server's `RemoteLink`.
//!
//! Every call about a leased job carries the lease (its job id and secret
//! token): the store answers only the key and token that took the lease.

use crate::{ControlError, Result};
use forja_eval::GatePolicy;
use forja_store::prelude::*;
use forja_store::{
    Artifacts, Capacity, Checkpoint, EventBus, Finish, Job, LeaseRef, Level, StoreError,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use crate::control::named;

/// The key id in-process workers act under (no API key is involved; real
/// key ids are `key-…`, so no remote worker can claim it).
pub const LOCAL_KEY: &str = "local";

/// What the golden set and the current model are, in a lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPlan {
    /// The golden set version.
    pub golden_set_id: String,
    /// Its sha256.
    pub golden_sha256: String,
    /// The champion to compare with (`None`: the base model).
    pub baseline_version: Option<String>,
    /// The champion's adapter files (name → sha256).
    #[serde(default)]
    pub baseline_files: BTreeMap<String, String>,
    /// The tenant's gate policy (its primary metric picks the checkpoint).
    #[serde(default)]
    pub policy: GatePolicy,
    /// Reports computed by earlier jobs that this one may reuse (the
    /// champion's on this golden-set version, the base model's probe).
    #[serde(default)]
    pub cached: Vec<CachedReport>,
}

/// What a cached report stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cached {
    /// The current model's report on the golden set.
    Baseline,
    /// The base model's general probe.
    ProbeBase,
}

/// A report an earlier job computed, inside its uploaded full report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedReport {
    /// What it is.
    pub what: Cached,
    /// The full report's artifact.
    pub report_sha256: String,
    /// Where in it (a JSON pointer: `/candidate`, `/baseline`, `/probe/base`).
    pub pointer: String,
    /// The version whose evaluation computed it.
    pub from_version: String,
    /// The base model's weights it was computed with (a worker with other
    /// weights evaluates again).
    pub base_sha256: Option<String>,
}

/// What a worker gets with a lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// The job (hyperparameters resolved).
    pub job: Job,
    /// The lease's secret: sent back with every call about the job.
    pub token: String,
    /// sha256 of the training file (empty for a job that evaluates an
    /// imported adapter: [`Lease::init`] is that adapter).
    pub training_sha: String,
    /// sha256 of the validation file.
    pub validation_sha: Option<String>,
    /// The newest checkpoint to resume from.
    pub checkpoint: Option<Checkpoint>,
    /// Renew the lease well within this many seconds.
    pub lease_ttl_s: i64,
    /// Short-lived signed download URLs by sha256 (remote workers).
    #[serde(default)]
    pub urls: BTreeMap<String, String>,
    /// The same artifacts as S3-presigned URLs when the node's artifact
    /// store is S3: a worker downloads from the bucket directly and falls
    /// back to [`Lease::urls`] when it cannot reach it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub direct_urls: BTreeMap<String, String>,
    /// What to evaluate after training (`None`: the tenant has no golden set).
    #[serde(default)]
    pub eval: Option<EvalPlan>,
    /// The adapter training starts from (a warm start from the champion).
    #[serde(default)]
    pub init: Option<InitAdapter>,
}

/// An adapter a job's training starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitAdapter {
    /// Its model version.
    pub version: String,
    /// Its files (name → sha256).
    pub files: BTreeMap<String, String>,
}

impl Lease {
    /// The job's id.
    pub fn id(&self) -> &str {
        &self.job.id
    }
}

/// How a worker reaches the control plane.
pub trait Link: Send + Sync {
    /// Takes the next job that fits.
    fn lease(&self, cap: &Capacity) -> Result<Option<Lease>>;
    /// Fetches an artifact of the lease (verified against its hash).
    fn download(&self, lease: &Lease, sha: &str) -> Result<Vec<u8>>;
    /// Stores an artifact for the leased job; returns its sha256.
    fn upload(&self, lease: &Lease, bytes: Vec<u8>) -> Result<String>;
    /// Renews the lease; `Stopped` when the job was cancelled or the lease lost.
    fn heartbeat(&self, lease: &Lease, progress: (u64, u64)) -> Result<()>;
    /// Appends an event.
    fn event(
        &self,
        lease: &Lease,
        level: Level,
        message: &str,
        data: Option<serde_json::Value>,
    ) -> Result<()>;
    /// Records a checkpoint (its files already uploaded).
    fn checkpoint(
        &self,
        lease: &Lease,
        step: u64,
        files: BTreeMap<String, String>,
        metrics: serde_json::Value,
    ) -> Result<()>;
    /// Ends the job.
    fn finish(&self, lease: &Lease, outcome: Finish) -> Result<()>;
}

/// Leases a job from the store for `worker` (authenticated by the key
/// `key`) and gathers what a worker needs for it.
pub fn lease_from_store(
    store: &dyn Store,
    worker: &str,
    key: &str,
    cap: &Capacity,
    ttl_s: i64,
) -> Result<Option<Lease>> {
    let Some(leased) = store.lease(worker, key, cap, ttl_s)? else { return Ok(None) };
    let job = leased.job;
    let eval = eval_plan(store, &job)?;
    let init = match job.mix.as_ref().and_then(|m| m.warm_start_from.as_deref()) {
        Some(v) => match store.model_version(&job.tenant_id, v) {
            Ok(v) => Some(InitAdapter { version: v.id, files: v.lineage.adapter_files }),
            // Deleted since the job was validated: train a fresh adapter.
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    // A job that evaluates an imported adapter starts from it and trains nothing.
    let init = match &job.spec.import {
        Some(i) => Some(InitAdapter { version: i.label.clone(), files: i.files.clone() }),
        None => init,
    };
    let sha = |id: &str| store.file(&job.tenant_id, id).map(|f| f.sha256);
    let training_sha = match (&job.training_file, &job.spec.import) {
        (Some(t), _) => sha(t)?,
        (None, Some(_)) => String::new(),
        (None, None) => {
            return Err(ControlError::invalid(
                "training_file",
                format!("job {} has no training file", job.id),
            ))
        }
    };
    Ok(Some(Lease {
        training_sha,
        validation_sha: job.validation_file.as_deref().map(sha).transpose()?,
        checkpoint: store.checkpoints(&job.id)?.into_iter().next(),
        lease_ttl_s: ttl_s,
        urls: BTreeMap::new(),
        direct_urls: BTreeMap::new(),
        eval,
        init,
        token: leased.token,
        job,
    }))
}

/// The golden set, the champion to compare with (when it is an adapter of
/// the same base model) and the gate policy of a job's tenant.
fn eval_plan(store: &dyn Store, job: &Job) -> Result<Option<EvalPlan>> {
    let Some(golden) = store.golden_sets(&job.tenant_id)?.into_iter().next() else {
        return Ok(None);
    };
    let tenant = store.tenant(&job.tenant_id)?;
    let policy = crate::registry::policy_of(&tenant);
    let champion = crate::registry::champion_for(store, job)?;
    let cached = cached_reports(store, job, &golden.id, champion.as_ref())?;
    Ok(Some(EvalPlan {
        golden_set_id: golden.id,
        golden_sha256: golden.sha256,
        baseline_version: champion.as_ref().map(|v| v.id.clone()),
        baseline_files: champion.map(|v| v.lineage.adapter_files).unwrap_or_default(),
        policy,
        cached,
    }))
}

/// Reports of the tenant's earlier evaluations a job can reuse: the
/// champion's own evaluation on this golden-set version (the model the job
/// compares with is the one that was evaluated then), else the base
/// model's as an earlier job's baseline; and the base model's probe. Only
/// evaluations made with today's settings count.
fn cached_reports(
    store: &dyn Store,
    job: &Job,
    golden: &str,
    champion: Option<&forja_store::ModelVersion>,
) -> Result<Vec<CachedReport>> {
    use crate::evaluation::SETTINGS;
    let usable = |v: &forja_store::ModelVersion| {
        let e = v.lineage.eval.as_ref()?;
        let ok = v.lineage.base_model == job.model
            && e["summary"]["settings"].as_str() == Some(SETTINGS)
            && e["error"].is_null();
        ok.then(|| v.lineage.eval_sha256.clone()).flatten()
    };
    let entry = |what, v: &forja_store::ModelVersion, sha: String, pointer: &str| CachedReport {
        what,
        report_sha256: sha,
        pointer: pointer.into(),
        from_version: v.id.clone(),
        base_sha256: v.lineage.base_sha256.clone(),
    };
    let versions = store.model_versions(&job.tenant_id)?;
    let mut out = Vec::new();
    let same_golden =
        |v: &forja_store::ModelVersion| v.lineage.golden_set_id.as_deref() == Some(golden);
    match champion {
        Some(c) => {
            if let Some(sha) = usable(c).filter(|_| same_golden(c)) {
                out.push(entry(Cached::Baseline, c, sha, "/candidate"));
            }
        }
        None => {
            let earlier = versions.iter().find_map(|v| {
                let base_was_baseline = v.lineage.eval.as_ref()?["baseline_version"].is_null();
                (same_golden(v) && base_was_baseline).then(|| usable(v).map(|s| (v, s))).flatten()
            });
            if let Some((v, sha)) = earlier {
                out.push(entry(Cached::Baseline, v, sha, "/baseline"));
            }
        }
    }
    let probed = versions.iter().find_map(|v| {
        let has = !v.lineage.eval.as_ref()?["summary"]["probe"]["base"].is_null();
        has.then(|| usable(v).map(|s| (v, s))).flatten()
    });
    if let Some((v, sha)) = probed {
        out.push(entry(Cached::ProbeBase, v, sha, "/probe/base"));
    }
    Ok(out)
}

/// A store error from a worker call: a lost lease means "stop".
pub fn lost(job: &str, e: StoreError) -> ControlError {
    match e {
        StoreError::LeaseLost { why, .. } => ControlError::Stopped { job: job.into(), why },
        e => e.into(),
    }
}

/// Whether `rel` is a relative path that stays below the directory it is
/// joined to (no `..`, no empty component, so no leading `/`).
pub(crate) fn stays_below(rel: &str) -> bool {
    !rel.split('/').any(|c| c == ".." || c.is_empty())
}

/// Writes `bytes` to `path`, creating its directory.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| ControlError::io(d, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| ControlError::io(path, e))
}

/// The in-process link: the store and artifact store directly.
pub struct LocalLink {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The artifact store.
    pub artifacts: Artifacts,
    /// Runs the artifact store's futures from worker threads.
    pub runtime: tokio::runtime::Handle,
    /// This worker's id.
    pub worker: String,
    /// Lease length in seconds.
    pub lease_ttl_s: i64,
    /// Where job state changes are published.
    pub bus: Arc<dyn EventBus>,
}

impl LocalLink {
    fn by<'a>(&'a self, lease: &'a Lease) -> LeaseRef<'a> {
        LeaseRef { worker: &self.worker, key: LOCAL_KEY, token: &lease.token }
    }
}

impl Link for LocalLink {
    fn lease(&self, cap: &Capacity) -> Result<Option<Lease>> {
        lease_from_store(&*self.store, &self.worker, LOCAL_KEY, cap, self.lease_ttl_s)
    }
    fn download(&self, _lease: &Lease, sha: &str) -> Result<Vec<u8>> {
        Ok(self.runtime.block_on(self.artifacts.get(sha))?.to_vec())
    }
    fn upload(&self, _lease: &Lease, bytes: Vec<u8>) -> Result<String> {
        Ok(self.runtime.block_on(self.artifacts.put(bytes.into()))?)
    }
    fn heartbeat(&self, lease: &Lease, progress: (u64, u64)) -> Result<()> {
        self.store
            .heartbeat(lease.id(), &self.by(lease), self.lease_ttl_s, progress)
            .map(|_| ())
            .map_err(|e| lost(lease.id(), e))
    }
    fn event(
        &self,
        lease: &Lease,
        level: Level,
        message: &str,
        data: Option<serde_json::Value>,
    ) -> Result<()> {
        self.store
            .worker_event(lease.id(), &self.by(lease), level, message, data.as_ref())
            .map(|_| ())
            .map_err(|e| lost(lease.id(), e))
    }
    fn checkpoint(
        &self,
        lease: &Lease,
        step: u64,
        files: BTreeMap<String, String>,
        metrics: serde_json::Value,
    ) -> Result<()> {
        self.store
            .add_checkpoint(lease.id(), &self.by(lease), step, &files, &metrics)
            .map(|_| ())
            .map_err(|e| lost(lease.id(), e))
    }
    fn finish(&self, lease: &Lease, outcome: Finish) -> Result<()> {
        let tenant = self.store.tenant(&lease.job.tenant_id)?;
        let outcome = named(outcome, &lease.job, &tenant);
        let j = self
            .store
            .finish(lease.id(), &self.by(lease), &outcome)
            .map_err(|e| lost(lease.id(), e))?;
        self.bus.publish(forja_store::Event::JobStateChanged {
            tenant: j.tenant_id,
            job: j.id,
            status: j.status.as_str().into(),
        });
        Ok(())
    }
}
