//! The model registry's operations: golden sets, registering what a job
//! produced with its lineage, the promotion gate, promotion, rollback,
//! demotion, lineage, and republishing registry moves made by other
//! processes.
//!
//! Every operation takes the tenant and the store refuses versions of
//! another tenant, so isolation holds whatever the caller.
//!
//! The gate trusts nothing a worker reported that it can check: the
//! adapter's files are re-read (each read re-hashes them), and the
//! evaluation is re-scored from the worker's predictions against the
//! control plane's own copy of the golden set (forja-eval's `rescore`), so
//! a report whose metrics do not follow from its predictions is rejected.
//! Predictions themselves are trusted from the worker holding the lease
//! (a lease answers only to the key and token that took it).

use crate::{Control, ControlError, Result};
use forja_eval::probe::ProbeReport;
use forja_eval::{decide, Decision, EvalReport, GatePolicy, Outcome};
use forja_store::prelude::*;
use forja_store::*;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// The actor name the gate's automatic promotions are recorded under.
pub const GATE_ACTOR: &str = "gate";

/// A tenant's gate policy (the default when it has none or it is unreadable).
pub fn policy_of(tenant: &Tenant) -> GatePolicy {
    match tenant.settings.gate_policy.as_deref().map(GatePolicy::from_toml) {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            tracing::warn!(tenant = %tenant.name, "stored gate policy unreadable, using the default: {e}");
            GatePolicy::default()
        }
        None => GatePolicy::default(),
    }
}

/// A lookup whose row may have been deleted since (a file): `None` then.
fn present<T>(r: std::result::Result<Option<T>, StoreError>) -> Result<Option<T>> {
    match r {
        Err(StoreError::NotFound { .. }) => Ok(None),
        r => Ok(r?),
    }
}

/// The tenant's champion when it is an adapter of the job's base model:
/// what a job is evaluated against and trained to replace.
pub fn champion_for(store: &dyn Store, job: &Job) -> Result<Option<ModelVersion>> {
    Ok(store.find_alias(&job.tenant_id, CHAMPION)?.filter(|v| v.lineage.base_model == job.model))
}

/// A version and everything it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    /// The version.
    pub version: ModelVersion,
    /// Its parents, nearest first.
    pub ancestors: Vec<ModelVersion>,
    /// The job that trained it.
    pub job: Option<Job>,
    /// The file it trained on.
    pub training_file: Option<FileRow>,
    /// The file it validated on.
    pub validation_file: Option<FileRow>,
    /// The golden set it was evaluated on.
    pub golden_set: Option<GoldenSetRow>,
    /// The tenant's aliases pointing at it.
    pub aliases: Vec<String>,
}

/// Where registry polling stands: per tenant, the generation and log
/// entry already published.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    generation: HashMap<String, i64>,
    entry: HashMap<String, i64>,
    primed: bool,
}

/// Who moves the registry: a name for the log, and whether it may force a
/// promotion the gate refused (admin keys and the CLI on the data
/// directory may; tenant keys only when the tenant's settings allow it).
#[derive(Debug, Clone)]
pub struct Actor {
    /// Recorded in the registry log (`api:acme`, `cli`, `gate`).
    pub name: String,
    /// An operator, not a tenant's key.
    pub admin: bool,
}

impl Actor {
    /// A tenant's own key.
    pub fn tenant(t: &Tenant) -> Actor {
        Actor { name: format!("api:{}", t.name), admin: false }
    }
}

fn file_json(f: &FileRow) -> serde_json::Value {
    serde_json::json!({ "id": f.id, "filename": f.filename, "sha256": f.sha256, "lines": f.lines })
}

impl Control {
    /// Checks and stores a new golden set version for a tenant.
    pub async fn add_golden(
        &self,
        tenant: &Tenant,
        name: &str,
        bytes: bytes::Bytes,
    ) -> Result<GoldenSetRow> {
        let (n2, b2) = (name.to_string(), bytes.clone());
        let (keys, n) = crate::control::blocking(move || {
            let set = forja_eval::parse_golden(&n2, &b2)?;
            let keys: Vec<String> = set.examples.iter().map(|e| e.prompt_key()).collect();
            Ok((keys, set.examples.len() as u64))
        })
        .await?;
        let size = bytes.len() as u64;
        let sha = self.artifacts.put(bytes).await?;
        let (store, tid, name) = (self.store.clone(), tenant.id.clone(), name.to_string());
        crate::control::blocking(move || {
            Ok(store.add_golden_set(&tid, &name, &sha, n, size, &keys)?)
        })
        .await
    }

    /// A tenant's golden set and `limit` of its examples from `offset`,
    /// with the total count (parsed again from the stored file, off the
    /// runtime).
    pub async fn golden_examples(
        &self,
        tenant: &Tenant,
        id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(GoldenSetRow, Vec<forja_eval::GoldenExample>, usize)> {
        let (store, tid, gid) = (self.store.clone(), tenant.id.clone(), id.to_string());
        let set = crate::control::blocking(move || {
            let sets = store.golden_sets(&tid)?;
            sets.into_iter().find(|g| g.id == gid).ok_or_else(|| {
                ControlError::Store(forja_store::StoreError::NotFound {
                    what: "golden set",
                    id: gid,
                })
            })
        })
        .await?;
        let bytes = self.artifacts.get(&set.sha256).await?;
        let name = set.name.clone();
        let (examples, total) = crate::control::blocking(move || {
            let parsed = forja_eval::parse_golden(&name, &bytes)?;
            let total = parsed.examples.len();
            Ok((parsed.examples.into_iter().skip(offset).take(limit).collect(), total))
        })
        .await?;
        Ok((set, examples, total))
    }

    /// Registers succeeded jobs' adapters as model versions and runs the
    /// gate on each (promoting the ones it passes). Returns how many.
    pub async fn register_finished(&self) -> Result<usize> {
        let store = self.store.clone();
        let jobs = crate::control::blocking(move || Ok(store.unregistered_jobs(16)?)).await?;
        let n = jobs.len();
        for job in jobs {
            if let Err(e) = self.register(&job).await {
                tracing::warn!(job = %job.id, "registration will be retried: {e}");
            }
        }
        Ok(n)
    }

    async fn register(&self, job: &Job) -> Result<()> {
        let tenant = self.store.tenant(&job.tenant_id)?;
        let result = job.result.clone().unwrap_or_default();
        let file = |id: &Option<String>| -> Result<Option<FileRow>> {
            present(id.as_deref().map(|f| self.store.file(&job.tenant_id, f)).transpose())
        };
        let (train, val) = (file(&job.training_file)?, file(&job.validation_file)?);
        let examples: Vec<i64> = self.store.job_examples(&job.id)?.iter().map(|e| e.id).collect();
        let manifest = serde_json::json!({
            "job": job.id,
            "trigger": job.trigger.as_str(),
            "training_file": train.as_ref().map(file_json),
            "validation_file": val.as_ref().map(file_json),
            "examples": examples.len(),
            "example_ids": examples,
            "mix": job.mix.as_ref().map(|m| serde_json::json!({
                "policy": m.policy,
                "new_examples": m.new_examples,
                "replay_examples": m.replay_example_ids.len(),
                "replay_example_ids": m.replay_example_ids,
                "general_rows_asked": m.general_rows,
                "warm_start_from": m.warm_start_from,
            })),
            "general_replay": result.general_replay,
            "warm_started_from": result.warm_started_from,
            "imported": job.spec.import.as_ref().map(|i| serde_json::json!({
                "label": i.label, "source": i.source,
            })),
        });
        let adapter_sha = job.adapter_sha256.clone().unwrap_or_default();
        let eval = result.eval.clone();
        let parent = match eval.as_ref().and_then(|e| e.baseline_version.clone()) {
            Some(v) => Some(v),
            None => champion_for(&*self.store, job)?.map(|v| v.id),
        };
        let policy = policy_of(&tenant);
        let (status, reason, decision) = match &eval {
            None => (
                VersionStatus::Candidate,
                "no golden set: promotion is refused until the tenant has one \
                 (forja golden add, or POST /v1/registry/golden)"
                    .to_string(),
                None,
            ),
            Some(e) if e.error.is_some() => (
                VersionStatus::Candidate,
                format!("evaluation failed: {}", e.error.as_deref().unwrap_or_default()),
                None,
            ),
            Some(e) => {
                let d = self.gate(job, &result, &policy, e).await;
                let reason = match d.outcome {
                    Outcome::Promoted => "passed the gate".to_string(),
                    Outcome::Ready => "passed the gate; waiting for a manual promotion".into(),
                    Outcome::Rejected => format!("rejected by the gate: {}", d.reasons.join("; ")),
                };
                let status = match d.outcome {
                    Outcome::Rejected => VersionStatus::Rejected,
                    _ if policy.audit.required => VersionStatus::AwaitingAudit,
                    Outcome::Promoted => VersionStatus::Promoted,
                    Outcome::Ready => VersionStatus::Candidate,
                };
                let reason = if status == VersionStatus::AwaitingAudit {
                    let a = &policy.audit;
                    format!(
                        "passed the gate; awaiting audit: {} votes of active auditors, {:.0}% approving{}, within {} s",
                        a.min_votes,
                        100.0 * a.approve_fraction,
                        if a.weighted { " by reputation" } else { "" },
                        a.deadline_s
                    )
                } else {
                    reason
                };
                (status, reason, Some(d))
            }
        };
        let new = NewVersion {
            tenant_id: job.tenant_id.clone(),
            job_id: Some(job.id.clone()),
            parent_id: parent,
            base_model: job.model.clone(),
            base_sha256: result.base_sha256.clone(),
            adapter_sha256: adapter_sha,
            adapter_files: result.adapter_files.clone(),
            dataset_sha256: train.as_ref().map(|f| f.sha256.clone()),
            manifest,
            code_commit: result.code_commit.clone(),
            hyperparameters: job.hyperparameters.as_ref().map(|h| serde_json::json!(h)),
            golden_set_id: eval.as_ref().map(|e| e.golden_set_id.clone()),
            eval: eval.as_ref().map(|e| serde_json::json!(e)),
            eval_sha256: eval.as_ref().and_then(|e| e.report_sha256.clone()),
            gate: decision.as_ref().map(|d| serde_json::json!(d)),
            status,
            status_reason: Some(reason),
        };
        let store = self.store.clone();
        let (v, moved) =
            crate::control::blocking(move || Ok(store.register_version(&new, GATE_ACTOR)?)).await?;
        tracing::info!(job = %job.id, version = %v.id, status = v.status().as_str(), "registered");
        if let Some(m) = moved {
            self.published_move(&job.tenant_id, &m, true);
        }
        Ok(())
    }

    /// The gate's decision on a job's evaluation: the adapter's files must
    /// be intact, and both reports are re-scored from their predictions
    /// against the golden set the store holds (a worker's summary is never
    /// taken as is).
    async fn gate(
        &self,
        job: &Job,
        result: &JobResult,
        policy: &GatePolicy,
        e: &JobEval,
    ) -> Decision {
        let mut d = match self.verified_reports(job, result, e).await {
            Ok((cand, base, probe)) => {
                let mut d = decide(policy, &cand, &base);
                match probe {
                    Some((c, b)) => forja_eval::gate::decide_probe(policy, &c, &b, &mut d),
                    None => {
                        d.reasons.push(
                            "the evaluation has no general probe results: forgetting was not measured"
                                .into(),
                        );
                        d.outcome = Outcome::Rejected;
                    }
                }
                d
            }
            Err(why) => Decision::rejected(why),
        };
        // Only a candidate that would otherwise pass is worth the attack.
        if policy.red_team && d.outcome != Outcome::Rejected {
            if let Err(why) = self.red_team_gate(job, result).await {
                d.reasons.push(why);
                d.outcome = Outcome::Rejected;
            }
        }
        d
    }

    /// The red team on a job's adapter (the files the store holds, not what
    /// a worker says of them): `Err` with the reason when it must be
    /// rejected.
    async fn red_team_gate(
        &self,
        job: &Job,
        result: &JobResult,
    ) -> std::result::Result<(), String> {
        let Some(rt) = self.red_team.get().cloned() else {
            return Err("the tenant's policy asks for the red team and this node has no model loaded to run it".into());
        };
        let dir = self
            .adapter_in_temp_dir(&result.adapter_files, &job.id)
            .await
            .map_err(|e| format!("the red team could not run: {e}"))?;
        let (target, at) = (format!("{} (job {})", job.model, job.id), self.store.now());
        let report = crate::control::blocking(move || {
            let adapter = rt.engine.load_adapter(dir.path())?;
            rt.run(Some(Arc::new(adapter)), &target, 72, at)
        })
        .await
        .map_err(|e| format!("the red team could not run: {e}"))?;
        tracing::info!(job = %job.id, "{}", report.line());
        if report.critical() > 0 {
            return Err(report.line());
        }
        Ok(())
    }

    /// The candidate and baseline reports, re-scored; or why they cannot
    /// be trusted.
    async fn verified_reports(
        &self,
        job: &Job,
        result: &JobResult,
        e: &JobEval,
    ) -> std::result::Result<(EvalReport, EvalReport, Option<(ProbeReport, ProbeReport)>), String>
    {
        if result.adapter_files.get("adapter_model.safetensors") != job.adapter_sha256.as_ref() {
            return Err("the adapter's weights file is not the one the job reported".into());
        }
        for (name, sha) in &result.adapter_files {
            self.artifacts.get(sha).await.map_err(|err| format!("adapter file {name}: {err}"))?;
        }
        let sha = e
            .report_sha256
            .as_deref()
            .ok_or("the worker uploaded no evaluation report to check")?;
        let full =
            self.artifacts.get(sha).await.map_err(|err| format!("the evaluation report: {err}"))?;
        let full: serde_json::Value =
            serde_json::from_slice(&full).map_err(|err| format!("the evaluation report: {err}"))?;
        let report = |k: &str| {
            serde_json::from_value::<EvalReport>(full[k].clone())
                .map_err(|err| format!("the evaluation report's {k}: {err}"))
        };
        let (cand, base) = (report("candidate")?, report("baseline")?);
        let probe = match full.get("probe") {
            None => None,
            Some(p) => {
                let side = |k: &str| {
                    serde_json::from_value::<ProbeReport>(p[k].clone())
                        .map_err(|err| format!("the evaluation report's probe {k}: {err}"))
                        .and_then(|r| {
                            forja_eval::probe::rescore(forja_eval::probe::general(), &r)
                                .map_err(|err| err.to_string())
                        })
                };
                let (c, b) = (side("candidate")?, side("base")?);
                let shown = e.summary["probe"]["candidate"]["accuracy"].as_f64();
                if shown.is_some_and(|a| (a - c.accuracy).abs() > 1e-9) {
                    return Err(
                        "the evaluation summary's probe accuracy does not match its report".into(),
                    );
                }
                Some((c, b))
            }
        };
        let golden = self
            .store
            .golden_sets(&job.tenant_id)
            .map_err(|err| err.to_string())?
            .into_iter()
            .find(|g| g.id == e.golden_set_id)
            .ok_or_else(|| format!("golden set {} is not this tenant's", e.golden_set_id))?;
        let bytes = self.artifacts.get(&golden.sha256).await.map_err(|err| err.to_string())?;
        let set = forja_eval::parse_golden(&golden.name, &bytes).map_err(|err| err.to_string())?;
        let (cand, base) = crate::control::blocking(move || {
            let c = forja_eval::rescore(&set, &cand)?;
            let b = forja_eval::rescore(&set, &base)?;
            Ok((c, b))
        })
        .await
        .map_err(|err| err.to_string())?;
        // The summary recorded with the version must say what the reports say.
        let summary = serde_json::from_value::<EvalReport>(e.summary["candidate"].clone())
            .map_err(|_| "the evaluation summary is unreadable".to_string())?;
        for m in forja_eval::run::RECOMPUTED {
            let (a, b) = (summary.get(m), cand.get(m));
            if a.zip(b).is_some_and(|(a, b)| (a - b).abs() > 1e-9 * a.abs().max(1.0))
                || a.is_some() != b.is_some()
            {
                return Err(format!("the evaluation summary's {m} does not match its report"));
            }
        }
        Ok((cand, base, probe))
    }

    /// Reads every file of a version's adapter (each read re-hashes it):
    /// a corrupted artifact refuses the promotion.
    pub(crate) async fn verify_adapter(&self, v: &ModelVersion) -> Result<()> {
        for (name, sha) in &v.lineage.adapter_files {
            self.artifacts.get(sha).await.map_err(|e| {
                ControlError::invalid("version", format!("adapter file {name} of {}: {e}", v.id))
            })?;
        }
        Ok(())
    }

    /// Promotes a version to `champion`. A version the gate did not pass
    /// (no golden set, evaluation failed, rejected) needs `force`, and
    /// forcing needs an admin (or a tenant whose settings allow it).
    pub async fn promote(
        &self,
        tenant: &Tenant,
        version: &str,
        actor: &Actor,
        force: bool,
    ) -> Result<AliasMove> {
        let v = self.store.model_version(&tenant.id, version)?;
        let passed = v
            .lineage
            .gate
            .as_ref()
            .and_then(|g| serde_json::from_value::<Decision>(g.clone()).ok())
            .is_some_and(|d| d.outcome != Outcome::Rejected);
        if !passed && !force {
            return Err(ControlError::Store(StoreError::Conflict(format!(
                "version {version} did not pass the gate ({}); pass force to promote it anyway",
                v.lineage.status_reason.as_deref().unwrap_or("no gate decision")
            ))));
        }
        if !passed && !actor.admin && !tenant.settings.allow_forced_promotion {
            return Err(ControlError::Forbidden(format!(
                "version {version} did not pass the gate; forcing it needs an admin key \
                 (or the tenant setting allow_forced_promotion)"
            )));
        }
        if v.status() == VersionStatus::AwaitingAudit && !(force && actor.admin) {
            return Err(ControlError::Store(StoreError::Conflict(format!(
                "version {version} awaits its auditors' votes; it is promoted when the quorum \
                 approves (an admin may force it)"
            ))));
        }
        if v.status() == VersionStatus::Failed {
            return Err(ControlError::Store(StoreError::Conflict(format!(
                "version {version} failed to load in serving; it cannot be promoted"
            ))));
        }
        self.verify_adapter(&v).await?;
        let reason =
            if passed { "promoted" } else { "promoted by force, without passing the gate" };
        let (store, tid, id, who) =
            (self.store.clone(), tenant.id.clone(), version.to_string(), actor.name.clone());
        let m =
            crate::control::blocking(move || Ok(store.promote(&tid, &id, &who, reason)?)).await?;
        self.published_move(&tenant.id, &m, true);
        Ok(m)
    }

    /// Points `champion` back at the previously promoted version (with
    /// `to_base`, removes it: the base model serves again).
    pub async fn rollback(
        &self,
        tenant: &Tenant,
        actor: &str,
        reason: &str,
        to_base: bool,
    ) -> Result<AliasMove> {
        let (store, tid, who, why) =
            (self.store.clone(), tenant.id.clone(), actor.to_string(), reason.to_string());
        let m = crate::control::blocking(move || {
            Ok(if to_base {
                store.demote(&tid, &who, &why)?
            } else {
                store.rollback(&tid, &who, &why)?
            })
        })
        .await?;
        self.published_move(&tenant.id, &m, false);
        Ok(m)
    }

    /// Takes a champion that failed in serving out, now (for serving's
    /// rollback callback, off the runtime): back to the previous champion,
    /// or to the base model when it was the first.
    pub fn take_out(&self, tenant: &Tenant, actor: &str, reason: &str) -> Result<AliasMove> {
        let m = match self.store.rollback(&tenant.id, actor, reason) {
            Err(StoreError::Conflict(_)) => self.store.demote(&tenant.id, actor, reason)?,
            r => r?,
        };
        self.published_move(&tenant.id, &m, false);
        Ok(m)
    }

    pub(crate) fn published_move(&self, tenant: &str, m: &AliasMove, promoted: bool) {
        let event = if promoted {
            Event::ModelPromoted {
                tenant: tenant.to_string(),
                version: m.version.as_ref().map(|v| v.id.clone()).unwrap_or_default(),
                alias: CHAMPION.into(),
                previous: m.previous_id.clone(),
            }
        } else {
            Event::ModelRolledBack {
                tenant: tenant.to_string(),
                version: m.version.as_ref().map(|v| v.id.clone()),
                from: m.previous_id.clone().unwrap_or_default(),
                alias: CHAMPION.into(),
            }
        };
        self.published(tenant, m, event);
    }

    /// A version's lineage: parents, job, data files, golden set, aliases.
    pub fn lineage(&self, tenant: &Tenant, version: &str) -> Result<Lineage> {
        let v = self.store.model_version(&tenant.id, version)?;
        let mut ancestors = Vec::new();
        let mut next = v.lineage.parent_id.clone();
        while let Some(p) = next.take() {
            if ancestors.len() > 1000 {
                break;
            }
            let pv = self.store.model_version(&tenant.id, &p)?;
            next = pv.lineage.parent_id.clone();
            ancestors.push(pv);
        }
        let job =
            v.lineage.job_id.as_deref().map(|j| self.store.job(Some(&tenant.id), j)).transpose()?;
        let file = |id: Option<&str>| -> Result<Option<FileRow>> {
            present(id.map(|f| self.store.file(&tenant.id, f)).transpose())
        };
        let training_file = file(job.as_ref().and_then(|j| j.training_file.as_deref()))?;
        let validation_file = file(job.as_ref().and_then(|j| j.validation_file.as_deref()))?;
        let golden_set = match &v.lineage.golden_set_id {
            Some(g) => self.store.golden_sets(&tenant.id)?.into_iter().find(|s| &s.id == g),
            None => None,
        };
        let aliases = self
            .store
            .aliases(&tenant.id)?
            .into_iter()
            .filter(|a| a.version_id == v.id)
            .map(|a| a.name)
            .collect();
        Ok(Lineage {
            version: v,
            ancestors,
            job,
            training_file,
            validation_file,
            golden_set,
            aliases,
        })
    }

    /// Publishes a move made here and marks it seen, so polling does not
    /// publish it again.
    fn published(&self, tenant: &str, m: &AliasMove, event: Event) {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let g = seen.generation.entry(tenant.to_string()).or_default();
            *g = (*g).max(m.generation);
            let e = seen.entry.entry(tenant.to_string()).or_default();
            *e = (*e).max(m.entry_id);
        }
        self.bus.publish(event);
    }

    /// Publishes champion moves other processes made (the CLI, another
    /// node): the polling side of NEW_MODEL_AVAILABLE.
    pub fn poll_registry(&self) -> Result<()> {
        let gens = self.store.model_generations()?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.primed {
            // Start from now: moves before this process started are state,
            // not news.
            for (t, g) in gens {
                let last = self.store.registry_log(&t, 0)?.last().map_or(0, |e| e.id);
                seen.generation.insert(t.clone(), g);
                seen.entry.insert(t, last);
            }
            seen.primed = true;
            return Ok(());
        }
        for (t, g) in gens {
            if seen.generation.get(&t).copied().unwrap_or(0) >= g {
                continue;
            }
            let after = seen.entry.get(&t).copied().unwrap_or(0);
            for e in self.store.registry_log(&t, after)? {
                if e.kind == "demoted" {
                    self.bus.publish(Event::ModelRolledBack {
                        tenant: t.clone(),
                        version: None,
                        from: e.previous_id.clone().unwrap_or_default(),
                        alias: e.alias.clone().unwrap_or_else(|| CHAMPION.into()),
                    });
                    seen.entry.insert(t.clone(), e.id);
                    continue;
                }
                let (Some(v), Some(alias)) = (e.version_id.clone(), e.alias.clone()) else {
                    seen.entry.insert(t.clone(), e.id);
                    continue;
                };
                let event = match e.kind.as_str() {
                    "promoted" => Some(Event::ModelPromoted {
                        tenant: t.clone(),
                        version: v,
                        alias,
                        previous: e.previous_id,
                    }),
                    "rolled_back" => Some(Event::ModelRolledBack {
                        tenant: t.clone(),
                        version: Some(v),
                        from: e.previous_id.unwrap_or_default(),
                        alias,
                    }),
                    _ => None,
                };
                if let Some(ev) = event {
                    self.bus.publish(ev);
                }
                seen.entry.insert(t.clone(), e.id);
            }
            seen.generation.insert(t, g);
        }
        Ok(())
    }
}
