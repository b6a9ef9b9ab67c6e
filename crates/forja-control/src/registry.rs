//! The model registry's operations: golden sets, registering what a job
//! produced with its lineage, the promotion gate, promotion, rollback,
//! lineage, and republishing registry moves made by other processes.
//!
//! Every operation takes the tenant and the store refuses versions of
//! another tenant, so isolation holds whatever the caller.

use crate::events::Event;
use crate::{Control, ControlError, Result};
use forja_eval::{decide, Decision, EvalReport, GatePolicy, Outcome};
use forja_store::*;
use serde::Serialize;
use std::collections::HashMap;

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
        let set = forja_eval::parse_golden(name, &bytes)?;
        let keys: Vec<String> = set.examples.iter().map(|e| e.prompt_key()).collect();
        let sha = self.artifacts.put(bytes).await?;
        let (store, tid, name) = (self.store.clone(), tenant.id.clone(), name.to_string());
        let n = set.examples.len() as u64;
        crate::control::blocking(move || Ok(store.add_golden_set(&tid, &name, &sha, n, &keys)?))
            .await
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
            Ok(id.as_deref().map(|f| self.store.file(&job.tenant_id, f)).transpose()?)
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
                let d = self.gate(&policy, e).await;
                let reason = match d.outcome {
                    Outcome::Promoted => "passed the gate".to_string(),
                    Outcome::Ready => "passed the gate; waiting for a manual promotion".into(),
                    Outcome::Rejected => format!("rejected by the gate: {}", d.reasons.join("; ")),
                };
                let status = match d.outcome {
                    Outcome::Promoted => VersionStatus::Promoted,
                    Outcome::Ready => VersionStatus::Candidate,
                    Outcome::Rejected => VersionStatus::Rejected,
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
            self.published(
                &job.tenant_id,
                &m,
                Event::ModelPromoted {
                    tenant: job.tenant_id.clone(),
                    version: m.version.id.clone(),
                    alias: CHAMPION.into(),
                    previous: m.previous_id.clone(),
                },
            );
        }
        Ok(())
    }

    /// The gate's decision on a job's evaluation, after checking that the
    /// adapter it would promote is intact.
    async fn gate(&self, policy: &GatePolicy, e: &JobEval) -> Decision {
        let parse = |k: &str| serde_json::from_value::<EvalReport>(e.summary[k].clone());
        let (cand, base) = match (parse("candidate"), parse("baseline")) {
            (Ok(c), Ok(b)) => (c, b),
            _ => return Decision::rejected("the evaluation summary is unreadable"),
        };
        // The per-example reports: the structured-output hard rule needs them.
        let full = match &e.report_sha256 {
            Some(sha) => match self.artifacts.get(sha).await {
                Ok(b) => serde_json::from_slice::<serde_json::Value>(&b).ok(),
                Err(err) => return Decision::rejected(format!("the evaluation report: {err}")),
            },
            None => None,
        };
        let cand = full
            .as_ref()
            .and_then(|f| serde_json::from_value::<EvalReport>(f["candidate"].clone()).ok())
            .unwrap_or(cand);
        decide(policy, &cand, &base)
    }

    /// Reads every file of a version's adapter (each read re-hashes it):
    /// a corrupted artifact refuses the promotion.
    async fn verify_adapter(&self, v: &ModelVersion) -> Result<()> {
        for (name, sha) in &v.lineage.adapter_files {
            self.artifacts.get(sha).await.map_err(|e| {
                ControlError::invalid("version", format!("adapter file {name} of {}: {e}", v.id))
            })?;
        }
        Ok(())
    }

    /// Promotes a version to `champion`. A version the gate did not pass
    /// (no golden set, evaluation failed, rejected) needs `force`.
    pub async fn promote(
        &self,
        tenant: &Tenant,
        version: &str,
        actor: &str,
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
        self.verify_adapter(&v).await?;
        let reason =
            if passed { "promoted" } else { "promoted by force, without passing the gate" };
        let (store, tid, id, who) =
            (self.store.clone(), tenant.id.clone(), version.to_string(), actor.to_string());
        let m =
            crate::control::blocking(move || Ok(store.promote(&tid, &id, &who, reason)?)).await?;
        self.published(
            &tenant.id,
            &m,
            Event::ModelPromoted {
                tenant: tenant.id.clone(),
                version: m.version.id.clone(),
                alias: CHAMPION.into(),
                previous: m.previous_id.clone(),
            },
        );
        Ok(m)
    }

    /// Points `champion` back at the previously promoted version.
    pub async fn rollback(&self, tenant: &Tenant, actor: &str, reason: &str) -> Result<AliasMove> {
        let (store, tid, who, why) =
            (self.store.clone(), tenant.id.clone(), actor.to_string(), reason.to_string());
        let m = crate::control::blocking(move || Ok(store.rollback(&tid, &who, &why)?)).await?;
        self.published(
            &tenant.id,
            &m,
            Event::ModelRolledBack {
                tenant: tenant.id.clone(),
                version: m.version.id.clone(),
                from: m.previous_id.clone().unwrap_or_default(),
                alias: CHAMPION.into(),
            },
        );
        Ok(m)
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
            Ok(id.map(|f| self.store.file(&tenant.id, f)).transpose()?)
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
    pub(crate) fn poll_registry(&self) -> Result<()> {
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
                        version: v,
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
