//! [`Control`]: the control plane's operations, shared by the HTTP API and
//! the CLI: files, jobs, feedback, learning status, and the periodic tick
//! that validates new jobs (with the final PII audit), requeues lost
//! leases, fires schedules, retries held thresholds and registers
//! finished jobs. Webhooks are delivered by their own task
//! ([`crate::webhook::Deliverer`]).

use crate::feedback::{Curator, Feedback, ScrubCounts};
use crate::{dataset, hyper, schedule, ControlError, Result};
use forja_data::pii::DocScrub;
use forja_store::prelude::*;
use forja_store::*;
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// The base model a node fine-tunes: the name clients see and every name
/// that selects it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelNames {
    /// The short name jobs, versions and `ft:` ids use (`default`,
    /// `tiny.gguf`); never a filesystem path.
    pub public: String,
    /// Every other name a request may use (`base`, the name it was started
    /// with, the file name, a Hugging Face id).
    pub aliases: Vec<String>,
}

impl ModelNames {
    /// The public name if `name` selects this model (names compare as
    /// given, and case-insensitively for Hugging Face style ids).
    pub fn canonical(&self, name: &str) -> Option<&str> {
        let hit = name == self.public
            || self
                .aliases
                .iter()
                .any(|a| a == name || (a.contains('/') && a.eq_ignore_ascii_case(name)));
        hit.then_some(self.public.as_str())
    }

    /// Every name, public first.
    pub fn all(&self) -> Vec<String> {
        let mut v = vec![self.public.clone()];
        v.extend(self.aliases.iter().filter(|a| **a != self.public).cloned());
        v
    }

    /// The names a client may be shown (a filesystem path never is).
    pub fn shown(&self) -> Vec<String> {
        self.all().into_iter().filter(|n| !n.starts_with('/') && !n.starts_with('.')).collect()
    }
}

/// Settings of the control plane.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// The base model this node fine-tunes.
    pub model: ModelNames,
    /// Lease length given to workers, seconds.
    pub lease_ttl_s: i64,
    /// Leases a job may lose before it fails.
    pub max_attempts: u32,
    /// Key of signed download URLs.
    pub url_secret: Vec<u8>,
}

/// A fine-tuning job request (OpenAI's fields, LoRA's extras).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobRequest {
    /// Base model.
    pub model: String,
    /// `file-…` to train on.
    pub training_file: String,
    /// `file-…` to validate on.
    pub validation_file: Option<String>,
    /// Fixed settings.
    pub spec: JobSpec,
}

/// What `GET /v1/learning/status` reports for a tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearningStatus {
    /// The tenant's name.
    pub tenant: String,
    /// Example counts.
    pub pending: PendingCounts,
    /// Threshold trigger (examples), if any.
    pub threshold: Option<u32>,
    /// Cron schedule, if any.
    pub schedule: Option<String>,
    /// What will start the next training, for a human.
    pub next_trigger: String,
    /// Next schedule fire (unix time).
    pub next_scheduled_at: Option<Timestamp>,
    /// Quota use.
    pub quota: QuotaUsage,
    /// Storage use.
    pub storage: StorageUsage,
    /// The job running now, with progress.
    pub running: Option<RunningJob>,
    /// The latest jobs.
    pub recent_jobs: Vec<Job>,
    /// The version serving uses (`None`: the base model).
    pub champion: Option<ModelVersion>,
    /// The newest registered version.
    pub candidate: Option<ModelVersion>,
}

/// A running job's progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunningJob {
    /// The job.
    pub id: String,
    /// Steps done.
    pub step: u64,
    /// Steps planned.
    pub total_steps: u64,
    /// 0–100.
    pub progress_percent: f64,
}

/// The control plane.
pub struct Control {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Artifacts.
    pub artifacts: Artifacts,
    /// Feedback curation.
    pub curator: Curator,
    /// Settings.
    pub cfg: ControlConfig,
    /// Where registry moves and job state changes are published.
    pub bus: Arc<dyn EventBus>,
    pub(crate) seen: Mutex<crate::registry::Seen>,
    /// When champions were last checked for a live regression.
    pub(crate) live_checked: std::sync::atomic::AtomicI64,
    /// The red team the gate runs when a tenant's policy asks, once this
    /// process has a model loaded (unset: such candidates are rejected).
    pub red_team: std::sync::OnceLock<crate::redteam::RedTeamer>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("model", &self.cfg.model.public).finish_non_exhaustive()
    }
}

/// Runs `f` on a blocking thread; a panic there is an internal error, not
/// the caller's fault.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ControlError::Internal(format!("a control-plane task failed: {e}")))
    })
}

/// `outcome` with the adapter's name set by the control plane (OpenAI's
/// `ft:BASE:ORG:SUFFIX:ID`, with the tenant's name as the organisation),
/// whatever a worker reported.
pub fn named(outcome: Finish, job: &Job, tenant: &Tenant) -> Finish {
    match outcome {
        Finish::Succeeded { trained_tokens, adapter_sha256, result, .. } => Finish::Succeeded {
            trained_tokens,
            fine_tuned_model: fine_tuned_name(job, tenant),
            adapter_sha256,
            result,
        },
        f => f,
    }
}

/// A job's adapter name: `ft:<base>:<tenant>[:<suffix>]:<job>`.
pub fn fine_tuned_name(job: &Job, tenant: &Tenant) -> String {
    let suffix = job.spec.suffix.as_deref().map(|s| format!(":{s}")).unwrap_or_default();
    format!("ft:{}:{}{suffix}:{}", job.model, tenant.name, job.id.trim_start_matches("ftjob-"))
}

impl Control {
    /// A control plane over `store` and `artifacts`, publishing on `bus`.
    pub fn new(
        store: Arc<dyn Store>,
        artifacts: Artifacts,
        curator: Curator,
        cfg: ControlConfig,
        bus: Arc<dyn EventBus>,
    ) -> Control {
        Control {
            store,
            artifacts,
            curator,
            cfg,
            bus,
            seen: Mutex::default(),
            live_checked: Default::default(),
            red_team: Default::default(),
        }
    }

    /// Publishes a job's new state.
    pub fn job_changed(&self, job: &Job) {
        self.bus.publish(Event::JobStateChanged {
            tenant: job.tenant_id.clone(),
            job: job.id.clone(),
            status: job.status.as_str().into(),
        });
    }

    /// Checks, scrubs and stores an uploaded file. A fine-tuning file that
    /// fails the check is refused with the line and the reason
    /// (`InvalidFile`); what is stored is the file with every string
    /// PII-scrubbed (with the tenant's deny list), and the file's details
    /// say how many items were rewritten. The work runs off the async
    /// runtime.
    pub async fn upload_file(
        &self,
        tenant: &Tenant,
        filename: &str,
        purpose: &str,
        bytes: bytes::Bytes,
    ) -> Result<FileRow> {
        let scrubber = self.curator.scrubber(tenant)?;
        let (name, fine_tune) = (filename.to_string(), purpose == "fine-tune");
        let (bytes, lines, details) = blocking(move || {
            if !fine_tune {
                let lines = bytes.iter().filter(|&&c| c == b'\n').count() as u64;
                return Ok((bytes, lines, None));
            }
            let n = dataset::check_training_file(&name, &bytes)?.examples;
            let (clean, counts) = dataset::scrub_training_file(&bytes, &scrubber);
            let details = (!counts.is_empty()).then(|| describe(&counts));
            Ok((bytes::Bytes::from(clean), n, details))
        })
        .await?;
        self.store_file(tenant, filename, purpose, bytes, lines, details, FileOrigin::Upload).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_file(
        &self,
        tenant: &Tenant,
        filename: &str,
        purpose: &str,
        bytes: bytes::Bytes,
        lines: u64,
        details: Option<String>,
        origin: FileOrigin,
    ) -> Result<FileRow> {
        let size = bytes.len() as u64;
        let sha256 = self.artifacts.put(bytes).await?;
        let row = FileRow {
            id: forja_store::new_id("file"),
            tenant_id: tenant.id.clone(),
            purpose: purpose.into(),
            filename: filename.into(),
            bytes: size,
            sha256,
            lines,
            status: "processed".into(),
            status_details: details,
            created_at: self.store.now(),
            origin,
        };
        let store = self.store.clone();
        let r = row.clone();
        blocking(move || Ok(store.insert_file(&r)?)).await?;
        Ok(row)
    }

    /// The public name of base model `model`, or which names work.
    pub fn check_model(&self, model: &str) -> Result<String> {
        if let Some(m) = self.cfg.model.canonical(model) {
            return Ok(m.to_string());
        }
        Err(ControlError::invalid(
            "model",
            format!(
                "unknown base model `{}`; this node fine-tunes: {}",
                crate::clip(model, 80),
                self.cfg.model.shown().join(", ")
            ),
        ))
    }

    /// Creates a job on an uploaded file (quota checked in the same
    /// transaction that inserts it).
    pub fn create_job(&self, tenant: &Tenant, req: &JobRequest) -> Result<Job> {
        let model = self.check_model(&req.model)?;
        hyper::check_spec(&req.spec)?;
        let file_ok = |param: &str, id: &str| -> Result<FileRow> {
            let f = self.store.file(&tenant.id, id).map_err(|e| match e {
                StoreError::NotFound { .. } => {
                    ControlError::invalid(param, format!("no file `{}`", crate::clip(id, 80)))
                }
                e => e.into(),
            })?;
            if f.purpose != "fine-tune" {
                return Err(ControlError::InvalidFile {
                    file: id.into(),
                    line: 1,
                    reason: format!("was uploaded with purpose `{}`, not `fine-tune`", f.purpose),
                });
            }
            Ok(f)
        };
        let train = file_ok("training_file", &req.training_file)?;
        if let Some(v) = &req.validation_file {
            file_ok("validation_file", v)?;
        }
        // Fail now, not in the queue, on hyperparameters that cannot work.
        hyper::resolve(&req.spec.hyperparameters, train.lines, 0)?;
        let job = self.store.create_job(&NewJob {
            tenant_id: tenant.id.clone(),
            model,
            training_file: Some(req.training_file.clone()),
            validation_file: req.validation_file.clone(),
            trigger: Trigger::Manual,
            spec: req.spec.clone(),
        })?;
        self.job_changed(&job);
        Ok(job)
    }

    /// Cancels a tenant's job (its examples are held back, not re-triggered).
    pub fn cancel_job(&self, tenant: &Tenant, id: &str) -> Result<Job> {
        let job = self.store.cancel_job(Some(&tenant.id), id)?;
        self.job_changed(&job);
        Ok(job)
    }

    /// The base model triggered jobs of `tenant` train.
    pub(crate) fn triggered_model(&self, tenant: &Tenant) -> String {
        let m = tenant.settings.base_model.as_deref().unwrap_or(&self.cfg.model.public);
        self.cfg.model.canonical(m).unwrap_or(m).to_string()
    }

    /// Starts a job now on the tenant's pending examples, held ones
    /// included (a deliberate choice); `None`: none pending.
    pub fn train_now(&self, tenant: &Tenant, spec: JobSpec) -> Result<Option<Job>> {
        let model = self.check_model(&self.triggered_model(tenant))?;
        hyper::check_spec(&spec)?;
        let new = NewJob {
            tenant_id: tenant.id.clone(),
            model,
            training_file: None,
            validation_file: None,
            trigger: Trigger::Manual,
            spec,
        };
        let job = self.store.job_from_pending(&new, 1, true)?;
        if let Some(j) = &job {
            self.job_changed(j);
        }
        Ok(job)
    }

    /// Returns the tenant's held examples (from cancelled jobs) to the
    /// pool, where triggers count them again; how many.
    pub fn release_held(&self, tenant: &Tenant) -> Result<u64> {
        Ok(self.store.release_held(&tenant.id)?)
    }

    /// Curates and appends feedback (one transaction; it may create the
    /// threshold job).
    pub fn feedback(&self, tenant: &Tenant, items: &[Feedback]) -> Result<Appended> {
        if items.is_empty() {
            return Err(ControlError::invalid("examples", "no examples given"));
        }
        let mut new = Vec::with_capacity(items.len());
        for (i, f) in items.iter().enumerate() {
            let at = |e| match e {
                ControlError::InvalidRequest { param, reason } if items.len() > 1 => {
                    ControlError::InvalidRequest { param: format!("examples[{i}].{param}"), reason }
                }
                e => e,
            };
            let f = self.with_completion(tenant, f).map_err(at)?;
            new.push(self.curator.curate(&f, tenant).map_err(at)?);
        }
        let appended =
            self.store.append_examples(&tenant.id, &new, &self.triggered_model(tenant))?;
        // Curated lines the store kept, and those it refused as duplicates.
        use std::sync::atomic::Ordering::Relaxed;
        for (e, _) in appended.examples.iter().zip(&new).filter(|(_, n)| n.curated.is_ok()) {
            let c = if e.status == ExampleStatus::Rejected {
                &self.curator.stats.duplicates
            } else {
                &self.curator.stats.kept
            };
            c.fetch_add(1, Relaxed);
        }
        Ok(appended)
    }

    /// `f` with the conversation and output of the completion it names.
    fn with_completion(&self, tenant: &Tenant, f: &Feedback) -> Result<Feedback> {
        let mut f = f.clone();
        let Some(id) = f.completion_id.clone() else { return Ok(f) };
        let c = self.store.completion(&tenant.id, &id).map_err(|e| match e {
            StoreError::NotFound { .. } => ControlError::invalid(
                "completion_id",
                format!(
                    "no completion `{}` (completions are kept for a limited time)",
                    crate::clip(&id, 80)
                ),
            ),
            e => e.into(),
        })?;
        if f.messages.is_none() && f.prompt.is_none() {
            f.messages = Some(c.messages);
        }
        f.output.get_or_insert(c.output);
        f.metadata.entry("model".into()).or_insert(c.model.into());
        Ok(f)
    }

    /// A served completion scrubbed for the completion log (the tenant's
    /// scrubber over the conversation and the answer).
    pub fn scrub_completion(&self, tenant: &Tenant, rec: &mut CompletionRecord) -> Result<()> {
        let s = self.curator.scrubber(tenant)?;
        let mut doc = DocScrub::default();
        for m in &mut rec.messages {
            m.content = s.scrub(&m.content, &mut doc).text;
        }
        rec.output = s.scrub(&rec.output, &mut doc).text;
        Ok(())
    }

    /// The tenant's learning status.
    pub fn status(&self, tenant: &Tenant) -> Result<LearningStatus> {
        let pending = self.store.pending(&tenant.id)?;
        let quota = self.store.quota(&tenant.id)?;
        let storage = self.store.storage(&tenant.id)?;
        let recent_jobs = self.store.jobs(Some(&tenant.id), None, 5)?;
        let running =
            recent_jobs.iter().find(|j| j.status == JobStatus::Running).map(|j| RunningJob {
                id: j.id.clone(),
                step: j.progress_step,
                total_steps: j.progress_total,
                progress_percent: if j.progress_total == 0 {
                    0.0
                } else {
                    100.0 * j.progress_step as f64 / j.progress_total as f64
                },
            });
        let s = &tenant.settings;
        let now = self.store.now();
        let next_scheduled_at = match &s.cron {
            Some(expr) => schedule::next_after(expr, now)?,
            None => None,
        };
        let mut parts = Vec::new();
        if let Some(t) = s.threshold {
            let missing = (t as u64).saturating_sub(pending.curated);
            parts.push(if missing == 0 {
                format!("threshold of {t} examples reached")
            } else {
                format!("{missing} more curated examples (threshold {t})")
            });
        }
        if let (Some(expr), Some(at)) = (&s.cron, next_scheduled_at) {
            parts.push(format!("schedule `{expr}` at unix time {at}"));
        }
        if parts.is_empty() {
            parts.push("manual only".into());
        }
        let mut next_trigger = parts.join("; or ");
        if let Some(f) = quota.frees_at {
            next_trigger
                .push_str(&format!(" (quota used: the next training can start at unix time {f})"));
        }
        if pending.held > 0 {
            next_trigger.push_str(&format!(
                " ({} examples held back after a cancel: POST /v1/learning/release)",
                pending.held
            ));
        }
        let champion = self.store.find_alias(&tenant.id, CHAMPION)?;
        let candidate = self.store.find_alias(&tenant.id, CANDIDATE)?;
        Ok(LearningStatus {
            champion,
            candidate,
            tenant: tenant.name.clone(),
            pending,
            threshold: s.threshold,
            schedule: s.cron.clone(),
            next_trigger,
            next_scheduled_at,
            quota,
            storage,
            running,
            recent_jobs,
        })
    }

    /// Validates jobs waiting in `validating_files`: builds the training
    /// file of triggered jobs from their examples, resolves "auto"
    /// hyperparameters, audits the final data for personal data, and
    /// queues them (or fails them with `invalid_file`, or `pii_found` when
    /// the final audit found personal data).
    pub async fn validate_jobs(&self) -> Result<usize> {
        let store = self.store.clone();
        let jobs = blocking(move || Ok(store.jobs_in(JobStatus::ValidatingFiles)?)).await?;
        let n = jobs.len();
        for job in jobs {
            if let Err(e) = self.validate(&job).await {
                let code = match &e {
                    ControlError::InvalidFile { reason, .. }
                        if reason.starts_with(crate::dataset::PII_AUDIT) =>
                    {
                        "pii_found"
                    }
                    ControlError::InvalidFile { .. } => "invalid_file",
                    ControlError::InvalidRequest { .. } => "invalid_request",
                    _ => {
                        tracing::warn!(job = %job.id, "validation will be retried: {e}");
                        continue;
                    }
                };
                let err = JobError { code: code.into(), message: e.to_string(), param: None };
                let store = self.store.clone();
                let failed = blocking(move || Ok(store.fail_job(&job.id, &err)?)).await?;
                self.job_changed(&failed);
            }
        }
        Ok(n)
    }

    async fn validate(&self, job: &Job) -> Result<()> {
        if self.cfg.model.canonical(&job.model).is_none() {
            return Err(ControlError::invalid(
                "model",
                format!(
                    "this node fine-tunes {}, not `{}` (the tenant's base_model setting?)",
                    self.cfg.model.public, job.model
                ),
            ));
        }
        if let Some(import) = &job.spec.import {
            return self.validate_import(job, import).await;
        }
        let store = self.store.clone();
        let tenant = self.store.tenant(&job.tenant_id)?;
        let mut mix = None;
        let (train_id, val_id, n) = match &job.training_file {
            Some(t) => {
                let f = store.file(&job.tenant_id, t)?;
                let bytes = self.artifacts.get(&f.sha256).await?;
                let golden = self.golden_keys(&job.tenant_id)?;
                let (name, audit) = (f.filename.clone(), self.curator.auditor(&tenant)?);
                let n = blocking(move || {
                    let n = dataset::check_training_file(&name, &bytes)?.examples;
                    dataset::check_no_golden(&name, &bytes, &golden)?;
                    dataset::audit_file(&name, &bytes, &audit)?;
                    Ok(n)
                })
                .await?;
                if let Some(v) = &job.validation_file {
                    let f = store.file(&job.tenant_id, v)?;
                    let bytes = self.artifacts.get(&f.sha256).await?;
                    let (name, audit) = (f.filename.clone(), self.curator.auditor(&tenant)?);
                    blocking(move || dataset::audit_file(&name, &bytes, &audit)).await?;
                }
                (t.clone(), job.validation_file.clone(), n)
            }
            None => {
                let j = job.id.clone();
                let examples = blocking(move || Ok(store.job_examples(&j)?)).await?;
                let records: Vec<_> = examples.into_iter().filter_map(|e| e.record).collect();
                let golden = self.golden_keys(&job.tenant_id)?;
                let before = records.len();
                let records: Vec<_> =
                    records.into_iter().filter(|r| !dataset::is_golden(r, &golden)).collect();
                if records.len() < before {
                    tracing::info!(job = %job.id, dropped = before - records.len(), "examples whose prompt is in the golden set were kept out of training");
                }
                if records.is_empty() {
                    return Err(ControlError::InvalidFile {
                        file: job.id.clone(),
                        line: 1,
                        reason: "the job claimed no curated examples".into(),
                    });
                }
                // Continual learning: replay earlier examples, warm start.
                let (s2, tid, jid) = (self.store.clone(), job.tenant_id.clone(), job.id.clone());
                let history = blocking(move || {
                    Ok(s2.trained_examples(&tid, &jid, crate::continual::MAX_HISTORY)?)
                })
                .await?;
                let history: Vec<_> = history
                    .into_iter()
                    .filter(|e| e.record.as_ref().is_some_and(|r| !dataset::is_golden(r, &golden)))
                    .collect();
                let champion = crate::registry::champion_for(&*self.store, job)?.map(|v| v.id);
                let planned = crate::continual::plan(
                    &tenant.settings.learning,
                    &job.id,
                    records.len() as u64,
                    &history,
                    champion.as_deref(),
                );
                let replay: Vec<_> =
                    planned.replay.iter().filter_map(|e| e.record.clone()).collect();
                mix = Some(planned.mix);
                let (train, val) = dataset::build_files(&records, &replay);
                let audit = self.curator.auditor(&tenant)?;
                let (t_name, v_name) =
                    (format!("{}-train.jsonl", job.id), format!("{}-validation.jsonl", job.id));
                let (tb, vb) = (train.clone(), val.clone());
                let (tn, vn) = (t_name.clone(), v_name.clone());
                blocking(move || {
                    dataset::audit_file(&tn, &tb, &audit)?;
                    if let Some(v) = &vb {
                        dataset::audit_file(&vn, v, &audit)?;
                    }
                    Ok(())
                })
                .await?;
                let lines = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count() as u64;
                let n = lines(&train);
                let t = self
                    .store_file(
                        &tenant,
                        &t_name,
                        "fine-tune",
                        train.into(),
                        n,
                        None,
                        FileOrigin::Generated,
                    )
                    .await?;
                let v = match val {
                    Some(v) => {
                        let n = lines(&v);
                        Some(
                            self.store_file(
                                &tenant,
                                &v_name,
                                "fine-tune",
                                v.into(),
                                n,
                                None,
                                FileOrigin::Generated,
                            )
                            .await?
                            .id,
                        )
                    }
                    None => None,
                };
                (t.id, v, t.lines)
            }
        };
        let seed = job.spec.seed.unwrap_or_else(|| seed_of(&job.id));
        let hp = hyper::resolve(&job.spec.hyperparameters, n, seed)?;
        let (store, id) = (self.store.clone(), job.id.clone());
        let queued = blocking(move || {
            Ok(store.job_validated(&id, Some(&train_id), val_id.as_deref(), &hp, mix.as_ref())?)
        })
        .await?;
        self.job_changed(&queued);
        Ok(())
    }

    /// A job that evaluates an imported adapter: its files must be in the
    /// artifact store (each read re-hashes them); nothing is trained.
    async fn validate_import(&self, job: &Job, import: &ImportedAdapter) -> Result<()> {
        for name in ["adapter_config.json", "adapter_model.safetensors"] {
            let sha = import.files.get(name).ok_or_else(|| {
                ControlError::invalid("import", format!("the imported adapter has no {name}"))
            })?;
            self.artifacts.get(sha).await?;
        }
        let seed = job.spec.seed.unwrap_or_else(|| seed_of(&job.id));
        let hp = hyper::resolve(&job.spec.hyperparameters, 1, seed)?;
        let (store, id) = (self.store.clone(), job.id.clone());
        let queued = blocking(move || Ok(store.job_validated(&id, None, None, &hp, None)?)).await?;
        self.job_changed(&queued);
        Ok(())
    }

    fn golden_keys(&self, tenant: &str) -> Result<std::collections::HashSet<String>> {
        Ok(self.store.golden_sets(tenant)?.into_iter().flat_map(|g| g.prompt_keys).collect())
    }

    /// One round of background work. Errors are logged, not returned: the
    /// next tick retries.
    pub async fn tick(&self) {
        let store = self.store.clone();
        let max = self.cfg.max_attempts;
        match blocking(move || Ok(store.reap_expired(max)?)).await {
            Ok(jobs) => {
                for j in jobs {
                    tracing::warn!(job = %j.id, status = j.status.as_str(), "lease expired");
                    self.job_changed(&j);
                }
            }
            Err(e) => tracing::warn!("cannot reap leases: {e}"),
        }
        let store = self.store.clone();
        let (model, public) = (self.cfg.model.clone(), self.cfg.model.public.clone());
        if let Err(e) = blocking(move || triggers(&*store, &model, &public)).await {
            tracing::warn!("triggers: {e}");
        }
        if let Err(e) = self.validate_jobs().await {
            tracing::warn!("validation: {e}");
        }
        if let Err(e) = self.register_finished().await {
            tracing::warn!("registry: {e}");
        }
        if let Err(e) = self.audit_tick().await {
            tracing::warn!("audit: {e}");
        }
        if let Err(e) = self.poll_registry() {
            tracing::warn!("registry polling: {e}");
        }
        if let Err(e) = self.check_live_regressions().await {
            tracing::warn!("live regression check: {e}");
        }
    }

    /// An adapter's files (name → sha256, as a version or a job result
    /// lists them) read from the artifact store, each re-hashed, into a new
    /// temporary directory; a file name that is not a plain name is refused.
    pub async fn adapter_in_temp_dir(
        &self,
        files: &std::collections::BTreeMap<String, String>,
        what: &str,
    ) -> Result<tempfile::TempDir> {
        let dir = tempfile::tempdir().map_err(|e| {
            ControlError::Internal(format!("cannot make a directory for {what}: {e}"))
        })?;
        for (name, sha) in files {
            crate::worker::plain_file_name(name, what)?;
            let bytes = self.artifacts.get(sha).await?;
            std::fs::write(dir.path().join(name), &bytes).map_err(|e| {
                ControlError::Internal(format!("cannot write {what}'s {name}: {e}"))
            })?;
        }
        Ok(dir)
    }

    /// Signs a download URL query for an artifact: `expires` and `sig`.
    pub fn sign(&self, sha: &str, expires: Timestamp) -> String {
        crate::webhook::hmac_hex(&self.cfg.url_secret, format!("{sha}.{expires}").as_bytes())
    }

    /// Whether a signed download URL is valid now.
    pub fn verify(&self, sha: &str, expires: Timestamp, sig: &str) -> bool {
        expires >= self.store.now() && crate::webhook::constant_eq(&self.sign(sha, expires), sig)
    }
}

/// "3 PERSON, 1 PHONE_NUMBER scrubbed".
fn describe(counts: &ScrubCounts) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!("personal data scrubbed: {}", parts.join(", "))
}

/// Cron fires and thresholds held back by the quota.
fn triggers(store: &dyn Store, names: &crate::ModelNames, default_model: &str) -> Result<()> {
    let now = store.now();
    for t in store.tenants()? {
        let m = t.settings.base_model.as_deref().unwrap_or(default_model);
        let model = names.canonical(m).unwrap_or(m).to_string();
        let new = |trigger| NewJob {
            tenant_id: t.id.clone(),
            model: model.clone(),
            training_file: None,
            validation_file: None,
            trigger,
            spec: t.settings.triggered_spec(),
        };
        let attempt = |trigger, min| match store.job_from_pending(&new(trigger), min, false) {
            Ok(Some(job)) => {
                tracing::info!(job = %job.id, tenant = %t.name, "{} trigger fired", trigger.as_str());
                Ok(())
            }
            Ok(None) | Err(StoreError::QuotaExceeded { .. }) => Ok(()),
            Err(e) => Err(e),
        };
        if let Some(expr) = &t.settings.cron {
            let last = store.cron_last(&t.id)?;
            let base = last.unwrap_or(t.created_at);
            if schedule::next_after(expr, base)?.is_some_and(|at| at <= now)
                && store.claim_cron(&t.id, last, now)?
            {
                attempt(Trigger::Cron, 1)?;
            }
        }
        if let Some(th) = t.settings.threshold {
            attempt(Trigger::Threshold, th as u64)?;
        }
    }
    Ok(())
}

fn seed_of(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x1000_0000_01b3))
}
