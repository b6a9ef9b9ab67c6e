//! Training workers. One loop serves both kinds: the in-process worker of
//! the embedded default talks to the store directly ([`LocalLink`]); a
//! remote `forja worker` talks to the control plane over HTTP (the
//! server's link). Either way a worker leases a job, renews the lease from
//! a heartbeat thread while it trains, uploads each checkpoint (weights,
//! optimizer state, position in the data) as content-addressed artifacts,
//! and on success uploads the adapter. A worker that dies stops renewing;
//! the control plane requeues the job and the next worker restores the
//! last checkpoint and continues on the same loss curve.

use crate::evaluation::{evaluate_job, EvalPlan};
use crate::{ControlError, Result};
use forja_engine::embed::Embedder;
use forja_engine::lora::{parse_targets, Adapter, LoraConfig};
use forja_engine::train::{self, Event, OnBadLine, TrainConfig, Trainable};
use forja_engine::{ChatTemplate, Engine};
use forja_store::{
    Artifacts, Capacity, Checkpoint, Finish, Job, JobError, JobResult, Level, Store, StoreError,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a worker gets with a lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// The job (hyperparameters resolved).
    pub job: Job,
    /// sha256 of the training file.
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
    /// What to evaluate after training (`None`: the tenant has no golden set).
    #[serde(default)]
    pub eval: Option<EvalPlan>,
}

/// How a worker reaches the control plane.
pub trait Link: Send + Sync {
    /// Takes the next job that fits.
    fn lease(&self, cap: &Capacity) -> Result<Option<Lease>>;
    /// Fetches an artifact of the lease (verified against its hash).
    fn download(&self, lease: &Lease, sha: &str) -> Result<Vec<u8>>;
    /// Stores an artifact for `job`; returns its sha256.
    fn upload(&self, job: &str, bytes: Vec<u8>) -> Result<String>;
    /// Renews the lease; `Stopped` when the job was cancelled or the lease lost.
    fn heartbeat(&self, job: &str, progress: (u64, u64)) -> Result<()>;
    /// Appends an event.
    fn event(
        &self,
        job: &str,
        level: Level,
        message: &str,
        data: Option<serde_json::Value>,
    ) -> Result<()>;
    /// Records a checkpoint (its files already uploaded).
    fn checkpoint(
        &self,
        job: &str,
        step: u64,
        files: BTreeMap<String, String>,
        metrics: serde_json::Value,
    ) -> Result<()>;
    /// Ends the job.
    fn finish(&self, job: &str, outcome: Finish) -> Result<()>;
}

/// Leases a job from the store and gathers what a worker needs for it.
pub fn lease_from_store(
    store: &dyn Store,
    worker: &str,
    cap: &Capacity,
    ttl_s: i64,
) -> Result<Option<Lease>> {
    let Some(job) = store.lease(worker, cap, ttl_s)? else { return Ok(None) };
    let eval = eval_plan(store, &job)?;
    let sha = |id: &str| store.file(&job.tenant_id, id).map(|f| f.sha256);
    let training = job.training_file.as_deref().ok_or_else(|| {
        ControlError::invalid("training_file", format!("job {} has no training file", job.id))
    })?;
    Ok(Some(Lease {
        training_sha: sha(training)?,
        validation_sha: job.validation_file.as_deref().map(sha).transpose()?,
        checkpoint: store.checkpoints(&job.id)?.into_iter().next(),
        lease_ttl_s: ttl_s,
        urls: BTreeMap::new(),
        eval,
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
    Ok(Some(EvalPlan {
        golden_set_id: golden.id,
        golden_sha256: golden.sha256,
        baseline_version: champion.as_ref().map(|v| v.id.clone()),
        baseline_files: champion.map(|v| v.lineage.adapter_files).unwrap_or_default(),
        policy,
    }))
}

fn lost(job: &str, e: StoreError) -> ControlError {
    match e {
        StoreError::LeaseLost { why, .. } => ControlError::Stopped { job: job.into(), why },
        e => e.into(),
    }
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
    pub bus: Arc<dyn crate::EventBus>,
}

impl Link for LocalLink {
    fn lease(&self, cap: &Capacity) -> Result<Option<Lease>> {
        lease_from_store(&*self.store, &self.worker, cap, self.lease_ttl_s)
    }
    fn download(&self, _lease: &Lease, sha: &str) -> Result<Vec<u8>> {
        Ok(self.runtime.block_on(self.artifacts.get(sha))?.to_vec())
    }
    fn upload(&self, _job: &str, bytes: Vec<u8>) -> Result<String> {
        Ok(self.runtime.block_on(self.artifacts.put(bytes.into()))?)
    }
    fn heartbeat(&self, job: &str, progress: (u64, u64)) -> Result<()> {
        self.store
            .heartbeat(job, &self.worker, self.lease_ttl_s, progress)
            .map(|_| ())
            .map_err(|e| lost(job, e))
    }
    fn event(
        &self,
        job: &str,
        level: Level,
        message: &str,
        data: Option<serde_json::Value>,
    ) -> Result<()> {
        self.store
            .worker_event(job, &self.worker, level, message, data.as_ref())
            .map(|_| ())
            .map_err(|e| lost(job, e))
    }
    fn checkpoint(
        &self,
        job: &str,
        step: u64,
        files: BTreeMap<String, String>,
        metrics: serde_json::Value,
    ) -> Result<()> {
        self.store
            .add_checkpoint(job, &self.worker, step, &files, &metrics)
            .map(|_| ())
            .map_err(|e| lost(job, e))
    }
    fn finish(&self, job: &str, outcome: Finish) -> Result<()> {
        let j = self.store.finish(job, &self.worker, &outcome).map_err(|e| lost(job, e))?;
        self.bus.publish(crate::Event::JobStateChanged {
            tenant: j.tenant_id,
            job: j.id,
            status: j.status.as_str().into(),
        });
        Ok(())
    }
}

/// Loads base models by name for the worker (cached by the caller).
pub type ModelResolver = dyn Fn(&str) -> Result<Arc<Engine>> + Send + Sync;

/// A worker's settings.
pub struct WorkerConfig {
    /// Its id (shown in job events).
    pub id: String,
    /// What it can run.
    pub capacity: Capacity,
    /// Where jobs unpack their data and checkpoints.
    pub work_dir: PathBuf,
    /// How long to wait when the queue is empty.
    pub poll: Duration,
    /// Sentence embedder for the similarity metric (`None`: not measured).
    pub embedder: Option<Arc<Embedder>>,
}

/// Runs jobs until `stop` is set.
pub fn run(link: &dyn Link, models: &ModelResolver, cfg: &WorkerConfig, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match link.lease(&cfg.capacity) {
            Ok(Some(lease)) => {
                let id = lease.job.id.clone();
                tracing::info!(job = %id, worker = %cfg.id, "leased");
                match run_job(link, models, cfg, lease, stop) {
                    Ok(()) => tracing::info!(job = %id, "job done"),
                    Err(e) => tracing::warn!(job = %id, "job stopped: {e}"),
                }
            }
            Ok(None) => sleep_unless(stop, cfg.poll),
            Err(e) => {
                tracing::warn!("cannot lease a job: {e}");
                sleep_unless(stop, cfg.poll.max(Duration::from_secs(1)));
            }
        }
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50).min(d));
    }
}

/// Writes `bytes` to `path`, creating its directory.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| ControlError::io(d, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| ControlError::io(path, e))
}

/// Uploads every file under `out/<sub>` as `<sub>/<name>`.
fn upload_dir(
    link: &dyn Link,
    job: &str,
    out: &Path,
    sub: &Path,
    files: &mut BTreeMap<String, String>,
) -> Result<()> {
    let dir = out.join(sub);
    let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(()) };
    let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for p in names.into_iter().filter(|p| p.is_file()) {
        let bytes = std::fs::read(&p).map_err(|e| ControlError::io(&p, e))?;
        let rel = p.strip_prefix(out).expect("under out").to_string_lossy().replace('\\', "/");
        files.insert(rel, link.upload(job, bytes)?);
    }
    Ok(())
}

/// Keeps the lease alive until `done`; records in `stop` why the job must
/// stop when it was cancelled or the lease lost (or the control plane was
/// unreachable for a whole lease).
fn heartbeat(
    link: &dyn Link,
    job: &str,
    ttl: Duration,
    progress: &(AtomicU64, AtomicU64),
    done: &AtomicBool,
    stop: &Mutex<Option<String>>,
) {
    let every = (ttl / 3).max(Duration::from_millis(200));
    let mut last_ok = Instant::now();
    loop {
        sleep_unless(done, every);
        if done.load(Ordering::SeqCst) {
            return;
        }
        let p = (progress.0.load(Ordering::SeqCst), progress.1.load(Ordering::SeqCst));
        let why = match link.heartbeat(job, p) {
            Ok(()) => {
                last_ok = Instant::now();
                continue;
            }
            Err(ControlError::Stopped { why, .. }) => why,
            Err(e) if last_ok.elapsed() > ttl => {
                format!("the control plane was unreachable for a whole lease ({e})")
            }
            Err(e) => {
                tracing::warn!(job, "heartbeat failed, retrying: {e}");
                continue;
            }
        };
        *stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        return;
    }
}

/// Trains one leased job to the end (or until it must stop).
pub fn run_job(
    link: &dyn Link,
    models: &ModelResolver,
    cfg: &WorkerConfig,
    lease: Lease,
    shutdown: &AtomicBool,
) -> Result<()> {
    let job = lease.job.id.clone();
    let progress =
        (AtomicU64::new(lease.job.progress_step), AtomicU64::new(lease.job.progress_total));
    let done = AtomicBool::new(false);
    let stop = Mutex::new(None::<String>);
    let ttl = Duration::from_secs(lease.lease_ttl_s.max(1) as u64);
    let outcome = std::thread::scope(|s| {
        s.spawn(|| heartbeat(link, &job, ttl, &progress, &done, &stop));
        let r = train_leased(link, models, cfg, &lease, &progress, &stop, shutdown);
        done.store(true, Ordering::SeqCst);
        r
    });
    let stopped = stop.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(why) = stopped {
        // Cancelled, lease lost, or this worker is shutting down: the last
        // checkpoint is in the artifact store; whoever leases next resumes.
        return Err(ControlError::Stopped { job, why });
    }
    let dir = cfg.work_dir.join(&job);
    match outcome {
        Ok(finish) => {
            link.finish(&job, finish)?;
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        }
        Err(e) => {
            let code = match &e {
                ControlError::InvalidFile { .. } | ControlError::InvalidRequest { .. } => {
                    "invalid_file"
                }
                _ => "training_failed",
            };
            let error = JobError { code: code.into(), message: e.to_string(), param: None };
            link.finish(&job, Finish::Failed(error))?;
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

fn train_leased(
    link: &dyn Link,
    models: &ModelResolver,
    cfg: &WorkerConfig,
    lease: &Lease,
    progress: &(AtomicU64, AtomicU64),
    stop: &Mutex<Option<String>>,
    shutdown: &AtomicBool,
) -> Result<Finish> {
    let job = &lease.job;
    let hp = job.hyperparameters.clone().ok_or_else(|| {
        ControlError::invalid(
            "hyperparameters",
            format!("job {} was leased before validation", job.id),
        )
    })?;
    let dir = cfg.work_dir.join(&job.id);
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&out).map_err(|e| ControlError::io(&out, e))?;
    let resume_from = lease.checkpoint.as_ref();
    if let Some(ck) = resume_from {
        for (rel, sha) in &ck.files {
            if rel.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(ControlError::invalid("checkpoint", format!("bad file name `{rel}`")));
            }
            write(&out.join(rel), &link.download(lease, sha)?)?;
        }
        link.event(
            &job.id,
            Level::Info,
            &format!("Resuming from the checkpoint at step {}", ck.step),
            None,
        )?;
    }
    let train_path = dir.join("train.jsonl");
    write(&train_path, &link.download(lease, &lease.training_sha)?)?;
    let val_path = match &lease.validation_sha {
        Some(sha) => {
            let p = dir.join("validation.jsonl");
            write(&p, &link.download(lease, sha)?)?;
            Some(p)
        }
        None => None,
    };
    let engine = models(&job.model)?;
    let template = engine.chat_template().map(|src| ChatTemplate::new(src, "", "")).transpose()?;
    let tcfg = TrainConfig {
        epochs: hp.n_epochs as usize,
        batch_size: hp.batch_size as usize,
        lr: hp.learning_rate,
        save_every: hp.save_every as usize,
        keep_checkpoints: 2,
        seed: hp.seed,
        time_limit_secs: job.spec.time_limit_s,
        on_bad_line: OnBadLine::Fail,
        ..TrainConfig::default()
    };
    let load = |p: &Path| {
        train::load_jsonl(p, engine.tokenizer(), template.as_ref(), tcfg.max_len, tcfg.on_bad_line)
    };
    let (tr, rep) = load(&train_path)?;
    if rep.truncated > 0 {
        link.event(
            &job.id,
            Level::Warn,
            &format!("{} examples were cut to {} tokens", rep.truncated, tcfg.max_len),
            None,
        )?;
    }
    let val = match &val_path {
        Some(p) => load(p)?.0,
        None => Vec::new(),
    };
    let lcfg = LoraConfig {
        r: hp.lora_r as usize,
        alpha: hp.lora_alpha,
        targets: parse_targets(&hp.lora_targets)?,
        ..LoraConfig::default()
    };
    lcfg.validate()?;
    let adapter = engine.install(|| Adapter::new(engine.model(), &lcfg, &job.model, hp.seed))?;
    let mut last_metrics = Instant::now() - Duration::from_secs(10);
    let mut metrics = serde_json::Map::new();
    let mut on_event = |e: &Event| -> forja_engine::Result<()> {
        let r = on_train_event(link, job, &out, e, progress, &mut metrics, &mut last_metrics);
        if let Some(why) = stop.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(forja_engine::EngineError::Training(format!("stopped: {why}")));
        }
        if shutdown.load(Ordering::SeqCst) {
            *stop.lock().unwrap_or_else(|e| e.into_inner()) =
                Some("the worker is shutting down".into());
            return Err(forja_engine::EngineError::Training("stopped: shutdown".into()));
        }
        r.map_err(|e| forja_engine::EngineError::Training(e.to_string()))
    };
    let report = engine.install(|| {
        train::train(
            engine.model(),
            Trainable::Lora(&adapter),
            &tr,
            &val,
            &tcfg,
            &out,
            resume_from.is_some(),
            &mut |d| adapter.save(d),
            &mut on_event,
        )
    })?;
    let (chosen, eval) = match &lease.eval {
        Some(plan) => {
            let (path, rec) =
                evaluate_job(link, lease, plan, &engine, cfg.embedder.as_deref(), &dir, &out)?;
            (path, Some(rec))
        }
        None => (out.clone(), None),
    };
    let mut files = BTreeMap::new();
    for name in ["adapter_model.safetensors", "adapter_config.json"] {
        let p = chosen.join(name);
        let bytes = std::fs::read(&p).map_err(|e| ControlError::io(&p, e))?;
        files.insert(name.to_string(), link.upload(&job.id, bytes)?);
    }
    if report.stopped_by == "time_limit" {
        link.event(
            &job.id,
            Level::Warn,
            "Training reached the job's wall-clock limit; the best adapter so far was kept",
            None,
        )?;
    }
    let suffix = job.spec.suffix.as_deref().map(|s| format!(":{s}")).unwrap_or_default();
    Ok(Finish::Succeeded {
        trained_tokens: report.tokens as u64,
        fine_tuned_model: format!(
            "ft:{}:{}{suffix}:{}",
            job.model,
            job.tenant_id,
            job.id.trim_start_matches("ftjob-")
        ),
        adapter_sha256: files["adapter_model.safetensors"].clone(),
        result: Box::new(JobResult {
            adapter_files: files,
            steps: report.steps as u64,
            stopped_by: report.stopped_by,
            kept_step: report.kept_step as u64,
            best_val_loss: report.best_val_loss,
            first_loss: report.first_loss.is_finite().then_some(report.first_loss),
            last_loss: report.last_loss.is_finite().then_some(report.last_loss),
            seconds: report.seconds,
            eval,
            base_sha256: model_sha256(&engine.info().path),
            code_commit: Some(crate::CODE_COMMIT.to_string()),
        }),
    })
}

/// Reports one training event: progress, throttled metrics, uploaded
/// checkpoints.
fn on_train_event(
    link: &dyn Link,
    job: &Job,
    out: &Path,
    e: &Event,
    progress: &(AtomicU64, AtomicU64),
    metrics: &mut serde_json::Map<String, serde_json::Value>,
    last_metrics: &mut Instant,
) -> Result<()> {
    match e {
        Event::Start { total_steps, trainable_params, resumed_from, .. } => {
            progress.1.store(*total_steps as u64, Ordering::SeqCst);
            progress.0.store(*resumed_from as u64, Ordering::SeqCst);
            let msg = match resumed_from {
                0 => format!("Training {trainable_params} LoRA parameters for {total_steps} steps"),
                s => format!(
                    "Training {trainable_params} LoRA parameters, steps {}..{total_steps}",
                    s + 1
                ),
            };
            link.event(&job.id, Level::Info, &msg, None)?;
        }
        Event::Step { step, loss, lr, tokens, tok_per_s, .. } => {
            progress.0.store(*step as u64, Ordering::SeqCst);
            metrics.insert("step".into(), (*step).into());
            metrics.insert("train_loss".into(), (*loss).into());
            let total = progress.1.load(Ordering::SeqCst) as usize;
            if last_metrics.elapsed() >= Duration::from_millis(500) || *step == total || *step == 1
            {
                *last_metrics = Instant::now();
                let data = serde_json::json!({
                    "step": step, "train_loss": loss, "learning_rate": lr,
                    "tokens": tokens, "tokens_per_second": tok_per_s, "total_steps": total,
                });
                link.event(
                    &job.id,
                    Level::Info,
                    &format!("Step {step}/{total}: training loss={loss:.4}"),
                    Some(data),
                )?;
            }
        }
        Event::Eval { step, loss, token_accuracy, .. } => {
            metrics.insert("valid_loss".into(), (*loss).into());
            metrics.insert("valid_mean_token_accuracy".into(), (*token_accuracy).into());
            let data = serde_json::json!({ "step": step, "valid_loss": loss, "valid_mean_token_accuracy": token_accuracy });
            link.event(
                &job.id,
                Level::Info,
                &format!("Step {step}: validation loss={loss:.4}"),
                Some(data),
            )?;
        }
        Event::Checkpoint { step, path } => {
            let mut files = BTreeMap::new();
            let rel = path.strip_prefix(out).unwrap_or(path).to_path_buf();
            upload_dir(link, &job.id, out, &rel, &mut files)?;
            upload_dir(link, &job.id, out, Path::new("best"), &mut files)?;
            link.checkpoint(
                &job.id,
                *step as u64,
                files,
                serde_json::Value::Object(metrics.clone()),
            )?;
        }
        Event::Warning { message } => link.event(&job.id, Level::Warn, message, None)?,
        Event::Done { .. } => {}
    }
    Ok(())
}

/// sha256 of a model's weights: the GGUF file, or `model.safetensors` of
/// an HF directory (`None` when neither can be read).
pub fn model_sha256(path: &Path) -> Option<String> {
    let file = if path.is_dir() { path.join("model.safetensors") } else { path.to_path_buf() };
    forja_store::sha256_file(&file).ok()
}
