//! The registry's objects (model versions, lineage, golden sets, aliases,
//! the log, alias moves) and the learning status, built field by field.

use super::jobs;
use forja_control::{LearningStatus, Lineage};
use forja_store::{Alias, AliasMove, GoldenSetRow, ModelVersion, RegistryEntry, CHAMPION};
use serde::Deserialize;
use serde_json::{json, Value};

/// A model version with the tenant's aliases pointing at it.
pub fn version(v: &ModelVersion, aliases: &[String]) -> Value {
    let l = &v.lineage;
    json!({
        "object": "model.version",
        "id": v.id,
        "tenant_id": l.tenant_id,
        "job_id": l.job_id,
        "parent_id": l.parent_id,
        "base_model": l.base_model,
        "base_sha256": l.base_sha256,
        "adapter_sha256": l.adapter_sha256,
        "adapter_files": l.adapter_files,
        "dataset_sha256": l.dataset_sha256,
        "manifest": l.manifest,
        "code_commit": l.code_commit,
        "hyperparameters": l.hyperparameters,
        "golden_set_id": l.golden_set_id,
        "eval": l.eval,
        "eval_sha256": l.eval_sha256,
        "gate": l.gate,
        "status": l.status.as_str(),
        "status_reason": l.status_reason,
        "created_at": v.created_at,
        "promoted_at": v.promoted_at,
        "promoted_by": v.promoted_by,
        "aliases": aliases,
        "charts": charts(v),
    })
}

/// Where a version's charts are drawn (`loss` only for a version trained
/// here).
pub fn charts(v: &ModelVersion) -> Value {
    json!({
        "loss": v.lineage.job_id.as_ref().map(|_| format!("/v1/registry/models/{}/loss.png", v.id)),
        "metrics": "/v1/registry/metrics.png?metric=wer",
    })
}

/// A golden set version.
pub fn golden(g: &GoldenSetRow) -> Value {
    json!({ "object": "golden_set", "id": g.id, "version": g.version, "name": g.name,
        "sha256": g.sha256, "examples": g.examples, "created_at": g.created_at })
}

/// One golden example, for people to inspect.
pub fn golden_example(e: &forja_eval::GoldenExample) -> Value {
    json!({
        "id": e.id,
        "prompt": e.prompt,
        "messages": e.messages.as_ref().map(|ms| ms.iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect::<Vec<_>>()),
        "reference": e.reference,
        "schema": e.schema,
    })
}

/// An alias.
pub fn alias(a: &Alias) -> Value {
    json!({ "object": "alias", "name": a.name, "version_id": a.version_id,
        "updated_at": a.updated_at, "updated_by": a.updated_by })
}

/// A registry log entry.
pub fn entry(e: &RegistryEntry) -> Value {
    json!({ "object": "registry.entry", "id": e.id, "kind": e.kind, "version_id": e.version_id,
        "previous_id": e.previous_id, "alias": e.alias, "actor": e.actor, "reason": e.reason,
        "created_at": e.created_at })
}

/// What a promotion, rollback or demotion moved (`version` null: the base
/// model serves).
pub fn moved(m: &AliasMove) -> Value {
    json!({ "object": "alias.move", "alias": CHAMPION,
        "version": m.version.as_ref().map(|v| v.id.clone()),
        "previous": m.previous_id, "generation": m.generation })
}

/// A version's lineage: the version, its ancestors, the job, its files,
/// the golden set, its aliases.
pub fn lineage(l: &Lineage) -> Value {
    let file = |f: &forja_store::FileRow| {
        let mut v = jobs::file(f);
        v["sha256"] = json!(f.sha256);
        v
    };
    json!({
        "object": "model.lineage",
        "version": version(&l.version, &l.aliases),
        "ancestors": l.ancestors.iter().map(|a| version(a, &[])).collect::<Vec<_>>(),
        "job": l.job.as_ref().map(jobs::job),
        "training_file": l.training_file.as_ref().map(file),
        "validation_file": l.validation_file.as_ref().map(file),
        "golden_set": l.golden_set.as_ref().map(golden),
        "aliases": l.aliases,
    })
}

/// `GET /v1/learning/status`.
pub fn status(s: &LearningStatus) -> Value {
    let v = |v: &Option<ModelVersion>| v.as_ref().map(|v| version(v, &[]));
    json!({
        "object": "learning.status",
        "tenant": s.tenant,
        "pending": { "curated": s.pending.curated, "rejected": s.pending.rejected,
            "claimed": s.pending.claimed, "held": s.pending.held },
        "threshold": s.threshold,
        "schedule": s.schedule,
        "next_trigger": s.next_trigger,
        "next_scheduled_at": s.next_scheduled_at,
        "quota": { "used": s.quota.used, "limit": s.quota.limit, "frees_at": s.quota.frees_at },
        "storage": { "used_bytes": s.storage.used_bytes, "limit_bytes": s.storage.limit_bytes },
        "running": s.running.as_ref().map(|r| json!({ "id": r.id, "step": r.step,
            "total_steps": r.total_steps, "progress_percent": r.progress_percent })),
        "recent_jobs": s.recent_jobs.iter().map(jobs::job).collect::<Vec<_>>(),
        "champion": v(&s.champion),
        "candidate": v(&s.candidate),
    })
}

/// Body of `POST /v1/registry/models/{id}/promote`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    /// Promote a version the gate did not pass (admin, or tenant consent).
    #[serde(default)]
    pub force: bool,
}

/// Body of `POST /v1/registry/rollback`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// Why, for the log.
    #[serde(default)]
    pub reason: Option<String>,
    /// Remove `champion` instead: the base model serves.
    #[serde(default)]
    pub to_base: bool,
}

/// Body of `PUT /v1/registry/aliases/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasBody {
    /// A version id or another alias.
    pub version: String,
}

/// Body of `POST /v1/registry/models/{id}/votes`: an auditor's signed vote.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    /// The auditor: id, name or public key.
    pub auditor: String,
    /// `approve` or `reject`.
    pub decision: String,
    /// sha256 of the evaluation report reviewed.
    pub report_sha256: String,
    /// Unix seconds when signed.
    pub signed_at: i64,
    /// Ed25519 signature of the vote message, hex.
    pub signature: String,
}

/// An auditor, as anyone on the node may see it.
pub fn auditor(a: &forja_store::Auditor) -> Value {
    json!({ "object": "auditor", "id": a.id, "name": a.name, "public_key": a.public_key,
        "reputation": a.reputation, "active": a.active, "created_at": a.created_at,
        "updated_at": a.updated_at })
}

/// A version's audit: its votes and their count.
pub fn audit(a: &forja_control::governance::Audit) -> Value {
    let t = &a.tally;
    json!({
        "object": "model.audit",
        "version": a.version.id,
        "status": a.version.status().as_str(),
        "status_reason": a.version.lineage.status_reason,
        "report_sha256": a.version.lineage.eval_sha256,
        "votes": a.votes.iter().map(|v| json!({
            "auditor": v.auditor, "auditor_id": v.vote.auditor_id,
            "decision": if v.vote.approve { "approve" } else { "reject" },
            "report_sha256": v.vote.report_sha256, "signed_at": v.vote.signed_at,
            "signature": v.vote.signature, "reputation": v.reputation, "created_at": v.created_at,
        })).collect::<Vec<_>>(),
        "tally": { "votes": t.votes, "approvals": t.approvals, "min_votes": t.min_votes,
            "approve_share": t.approve_share, "approve_fraction": t.approve_fraction,
            "weighted": t.weighted, "outstanding": t.outstanding, "deadline": t.deadline,
            "verdict": t.verdict },
    })
}

/// A ledger entry (its body parsed back to JSON).
pub fn ledger_entry(e: &forja_store::LedgerEntry) -> Value {
    json!({ "object": "ledger.entry", "seq": e.seq, "kind": e.kind, "tenant_id": e.tenant_id,
        "body": serde_json::from_str::<Value>(&e.body).unwrap_or(Value::Null),
        "body_text": e.body, "created_at": e.created_at, "prev_hash": e.prev_hash,
        "hash": e.hash, "signer": e.signer, "signature": e.signature })
}
