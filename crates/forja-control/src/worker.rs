//! Training workers. One loop serves both kinds: the in-process worker of
//! the embedded default talks to the store directly
//! ([`crate::link::LocalLink`]); a remote `forja worker` talks to the
//! control plane over HTTP (the server's link). Either way a worker leases
//! a job, renews the lease from a heartbeat thread while it trains,
//! uploads each checkpoint (weights, optimizer state, position in the
//! data) as content-addressed artifacts, and on success uploads the
//! adapter. A worker that dies stops renewing; the control plane requeues
//! the job and the next worker restores the last checkpoint and continues
//! on the same loss curve. A training run that panics ends its heartbeat
//! and fails its job (`internal_error`); the worker goes on to the next.

use crate::evaluation::evaluate_job;
use crate::link::{write, Lease, Link};
pub use crate::trl::{Backend, TrlBackend};
use crate::{ControlError, Result};
use forja_engine::embed::Embedder;
use forja_engine::train::{self, Event, LoraData};
use forja_engine::Engine;
use forja_store::{Capacity, Finish, GeneralReplayUse, JobError, JobEval, JobResult, Level};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The weights evaluation generates golden-set answers on, by model
    /// name (a node's quantized serving copy); `None`: the training weights.
    pub eval_models: Option<Arc<ModelResolver>>,
    /// Serving on the same cores that training and evaluation give way to
    /// (an in-process worker); `None`: they run flat out.
    pub yield_to: Option<forja_engine::Yield>,
    /// What runs the optimisation loop: forja's engine or TRL.
    pub backend: Backend,
}

/// Runs jobs until `stop` is set. Returns early with the reason when this
/// worker cannot go on: its GPU is gone (the job it ran is requeued; a
/// worker that kept leasing would bounce every job).
pub fn run(
    link: &dyn Link,
    models: &ModelResolver,
    cfg: &WorkerConfig,
    stop: &AtomicBool,
) -> Result<()> {
    while !stop.load(Ordering::SeqCst) {
        match link.lease(&cfg.capacity) {
            Ok(Some(lease)) => {
                let id = lease.job.id.clone();
                tracing::info!(job = %id, worker = %cfg.id, "leased");
                match run_job(link, models, cfg, lease, stop) {
                    Ok(()) => tracing::info!(job = %id, "job done"),
                    Err(e @ ControlError::Stopped { .. }) if crate::trl::lost_gpu(&e) => {
                        return Err(e)
                    }
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
    Ok(())
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50).min(d));
    }
}

/// Uploads every file under `out/<sub>` as `<sub>/<name>`.
fn upload_dir(
    link: &dyn Link,
    job: &Lease,
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
    job: &Lease,
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
                tracing::warn!(job = job.id(), "heartbeat failed, retrying: {e}");
                continue;
            }
        };
        *stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        return;
    }
}

/// Sets its flag when dropped: the heartbeat thread stops even when the
/// training thread unwinds.
struct Done<'a>(&'a AtomicBool);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
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
        s.spawn(|| heartbeat(link, &lease, ttl, &progress, &done, &stop));
        let _done = Done(&done);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let work = || train_leased(link, models, cfg, &lease, &progress, &stop, shutdown);
            match &cfg.yield_to {
                Some(y) => {
                    let before = y.paused();
                    let r = y.run(work);
                    let paused = (y.paused() - before).as_secs_f64();
                    if paused >= 1.0 {
                        tracing::info!(job = %job, "gave way to serving for {paused:.1} s");
                    }
                    r
                }
                None => work(),
            }
        }))
        .unwrap_or_else(|p| {
            let what = forja_core::panic_message(&*p).unwrap_or("unknown panic");
            tracing::error!(job = %job, panic = %what, "training panicked");
            Err(ControlError::Internal(format!("training panicked: {what}")))
        })
    });
    let stopped = stop.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(why) = stopped {
        // Cancelled, lease lost, or this worker is shutting down: the last
        // checkpoint is in the artifact store; whoever leases next resumes.
        return Err(ControlError::Stopped { job, why });
    }
    let dir = cfg.work_dir.join(&job);
    match outcome {
        // The trainer lost its GPU: not the job's fault; its lease expires
        // and it is requeued from its last checkpoint.
        Err(e @ ControlError::Stopped { .. }) => Err(e),
        Ok(finish) => {
            link.finish(&lease, finish)?;
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        }
        Err(e) => {
            let (code, message) = match &e {
                ControlError::InvalidFile { .. } | ControlError::InvalidRequest { .. } => {
                    ("invalid_file", e.to_string())
                }
                // The panic's text is in the worker's log, not in the job.
                ControlError::Internal(_) => (
                    "internal_error",
                    "training stopped on an internal error; the worker logged the details".into(),
                ),
                _ => ("training_failed", e.to_string()),
            };
            let error = JobError { code: code.into(), message, param: None };
            link.finish(&lease, Finish::Failed(error))?;
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
    let plan = crate::hyper::plan(&hp, &job.spec)?;
    let dir = cfg.work_dir.join(&job.id);
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&out).map_err(|e| ControlError::io(&out, e))?;
    if job.spec.import.is_some() {
        return evaluate_imported(link, models, cfg, lease, &dir, &out);
    }
    let resume_from = lease.checkpoint.as_ref();
    if let Some(ck) = resume_from {
        for (rel, sha) in &ck.files {
            if !crate::link::stays_below(rel) {
                return Err(ControlError::invalid("checkpoint", format!("bad file name `{rel}`")));
            }
            write(&out.join(rel), &link.download(lease, sha)?)?;
        }
        link.event(
            lease,
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
    // Hashed once: the replay cache, the evaluation's reuse and the lineage use it.
    let base_sha = model_sha256(&engine.info().path);
    let general = add_general_rows(link, lease, &engine, cfg, base_sha.as_deref(), &train_path)?;
    let init = match &lease.init {
        Some(init) => {
            let adapter =
                fetch_adapter(link, lease, &engine, &init.files, &dir.join("init"), "init")?;
            if resume_from.is_none() {
                link.event(
                    lease,
                    Level::Info,
                    &format!(
                        "Warm start: training continues from version {} (LoRA rank {})",
                        init.version,
                        adapter.config().r
                    ),
                    None,
                )?;
            }
            Some(adapter)
        }
        None => None,
    };
    let data = LoraData::load(&engine, &plan, &train_path, val_path.as_deref())?;
    let truncated: usize = data.reports.iter().map(|r| r.truncated).sum();
    if truncated > 0 {
        link.event(
            lease,
            Level::Warn,
            &format!("{truncated} examples were cut to {} tokens", plan.train.max_len),
            None,
        )?;
    }
    let mut last_metrics = Instant::now() - Duration::from_secs(10);
    let mut metrics = serde_json::Map::new();
    let mut on_event = |e: &Event| -> forja_engine::Result<()> {
        let r = on_train_event(link, lease, &out, e, progress, &mut metrics, &mut last_metrics);
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
    let report = match &cfg.backend {
        Backend::Native => {
            let resume = resume_from.is_some();
            let base = &job.model;
            train::fine_tune(&engine, &plan, &data, base, &out, resume, init, &mut on_event)?.1
        }
        Backend::Trl(be) => {
            let init_dir = dir.join("init");
            let run = crate::trl::Run {
                job: &job.id,
                base: &job.model,
                model: &engine.info().path,
                pad_token_id: engine.tokenizer().eos().unwrap_or(0),
                plan: &plan,
                data: &data,
                dir: &dir,
                out: &out,
                resume: resume_from.is_some(),
                init: lease.init.as_ref().map(|_| init_dir.as_path()),
            };
            let stopped = || {
                if shutdown.load(Ordering::SeqCst) {
                    let mut s = stop.lock().unwrap_or_else(|e| e.into_inner());
                    s.get_or_insert_with(|| "the worker is shutting down".into());
                }
                stop.lock().unwrap_or_else(|e| e.into_inner()).is_some()
            };
            crate::trl::fine_tune(be, &run, &stopped, &mut |e| Ok(on_event(e)?))?
        }
    };
    let (chosen, eval) = evaluate(link, cfg, lease, &engine, base_sha.as_deref(), &dir, &out)?;
    let files = upload_adapter(link, lease, &chosen)?;
    if report.stopped_by == "time_limit" {
        link.event(
            lease,
            Level::Warn,
            "Training reached the job's wall-clock limit; the best adapter so far was kept",
            None,
        )?;
    }
    Ok(Finish::Succeeded {
        trained_tokens: report.tokens as u64,
        // The control plane names the adapter (`ft:BASE:TENANT:…`).
        fine_tuned_model: String::new(),
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
            base_sha256: base_sha,
            code_commit: Some(crate::CODE_COMMIT.to_string()),
            general_replay: general,
            warm_started_from: lease.init.as_ref().map(|i| i.version.clone()),
        }),
    })
}

/// The job's evaluation when its tenant has a golden set: the adapter
/// directory to keep (the best checkpoint) and the record; `out` and none
/// otherwise.
fn evaluate(
    link: &dyn Link,
    cfg: &WorkerConfig,
    lease: &Lease,
    engine: &Arc<Engine>,
    base_sha: Option<&str>,
    dir: &Path,
    out: &Path,
) -> Result<(PathBuf, Option<JobEval>)> {
    let Some(ep) = &lease.eval else { return Ok((out.to_path_buf(), None)) };
    let generate = match &cfg.eval_models {
        Some(resolve) => resolve(&lease.job.model)?,
        None => engine.clone(),
    };
    let engines = crate::evaluation::Engines { train: engine, generate: &generate };
    let (path, rec) =
        evaluate_job(link, lease, ep, engines, base_sha, cfg.embedder.as_deref(), dir, out)?;
    Ok((path, Some(rec)))
}

/// Uploads the adapter in `dir`; its files by name → sha256.
fn upload_adapter(link: &dyn Link, lease: &Lease, dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for name in ["adapter_model.safetensors", "adapter_config.json"] {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| ControlError::io(&p, e))?;
        files.insert(name.to_string(), link.upload(lease, bytes)?);
    }
    Ok(files)
}

/// A job that evaluates an imported adapter (a federated aggregate): the
/// adapter is the job's output as is, evaluated like a trained one, so the
/// gate (and the tenant's auditors) judge it the same way.
fn evaluate_imported(
    link: &dyn Link,
    models: &ModelResolver,
    cfg: &WorkerConfig,
    lease: &Lease,
    dir: &Path,
    out: &Path,
) -> Result<Finish> {
    let job = &lease.job;
    let started = Instant::now();
    let init = lease
        .init
        .as_ref()
        .ok_or_else(|| ControlError::invalid("import", "the lease names no adapter to evaluate"))?;
    let engine = models(&job.model)?;
    let base_sha = model_sha256(&engine.info().path);
    let adapter = fetch_adapter(link, lease, &engine, &init.files, out, "import")?;
    link.event(
        lease,
        Level::Info,
        &format!(
            "Evaluating the imported adapter ({}, LoRA rank {}); nothing is trained",
            init.version,
            adapter.config().r
        ),
        None,
    )?;
    let (_, eval) = evaluate(link, cfg, lease, &engine, base_sha.as_deref(), dir, out)?;
    let files = upload_adapter(link, lease, out)?;
    Ok(Finish::Succeeded {
        trained_tokens: 0,
        fine_tuned_model: String::new(),
        adapter_sha256: files["adapter_model.safetensors"].clone(),
        result: Box::new(JobResult {
            adapter_files: files,
            steps: 0,
            stopped_by: "imported".into(),
            kept_step: 0,
            best_val_loss: None,
            first_loss: None,
            last_loss: None,
            seconds: started.elapsed().as_secs_f64(),
            eval,
            base_sha256: base_sha,
            code_commit: Some(crate::CODE_COMMIT.to_string()),
            general_replay: None,
            warm_started_from: None,
        }),
    })
}

/// Appends the job's general replay rows (as many as its mix asks, chosen
/// by its seed) to its training file; what was added, for the lineage
/// (the rows are uploaded as an artifact). `None`: the mix asks for none.
fn add_general_rows(
    link: &dyn Link,
    lease: &Lease,
    engine: &Engine,
    cfg: &WorkerConfig,
    base_sha: Option<&str>,
    train_path: &Path,
) -> Result<Option<GeneralReplayUse>> {
    let n = lease.job.mix.as_ref().map_or(0, |m| m.general_rows);
    let seed = lease.job.hyperparameters.as_ref().map_or(0, |h| h.seed);
    if n == 0 {
        return Ok(None);
    }
    let t = Instant::now();
    let cache = cfg.work_dir.join("replay-cache");
    let rows =
        crate::replay::rows(engine, base_sha.unwrap_or("unknown"), n as usize, seed, &cache)?;
    let mut bytes = Vec::new();
    for l in &rows.lines {
        bytes.extend_from_slice(l.to_string().as_bytes());
        bytes.push(b'\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(train_path)
        .map_err(|e| ControlError::io(train_path, e))?;
    std::io::Write::write_all(&mut file, &bytes).map_err(|e| ControlError::io(train_path, e))?;
    let (level, short) = if (rows.lines.len() as u64) < n {
        (Level::Warn, format!(" (of {n} asked: the set has no more usable answers)"))
    } else {
        (Level::Info, String::new())
    };
    link.event(
        lease,
        level,
        &format!(
            "Added {} general replay rows{short} from {} ({:.0} s)",
            rows.lines.len(),
            crate::replay::SET,
            t.elapsed().as_secs_f64()
        ),
        None,
    )?;
    Ok(Some(GeneralReplayUse {
        set: crate::replay::SET.into(),
        rows_sha256: link.upload(lease, bytes)?,
        row_ids: rows.ids,
    }))
}

/// Refuses an adapter file name that is not a plain name (`what` names the
/// adapter in the error): its files are written under a directory.
pub(crate) fn plain_file_name(name: &str, what: &str) -> Result<()> {
    if name.contains('/') || name.contains("..") {
        return Err(ControlError::invalid(what, format!("bad file name `{name}`")));
    }
    Ok(())
}

/// Downloads an adapter's files (name → sha256) into `dir` and loads it;
/// `what` names it in the error for a file name that is not a plain name.
pub(crate) fn fetch_adapter(
    link: &dyn Link,
    lease: &Lease,
    engine: &Engine,
    files: &BTreeMap<String, String>,
    dir: &Path,
    what: &str,
) -> Result<forja_engine::lora::Adapter> {
    for (name, sha) in files {
        plain_file_name(name, what)?;
        write(&dir.join(name), &link.download(lease, sha)?)?;
    }
    Ok(engine.load_adapter(dir)?)
}

/// Reports one training event: progress, throttled metrics, uploaded
/// checkpoints.
fn on_train_event(
    link: &dyn Link,
    job: &Lease,
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
            link.event(job, Level::Info, &msg, None)?;
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
                    job,
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
                job,
                Level::Info,
                &format!("Step {step}: validation loss={loss:.4}"),
                Some(data),
            )?;
        }
        Event::Checkpoint { step, path } => {
            let mut files = BTreeMap::new();
            let rel = path.strip_prefix(out).unwrap_or(path).to_path_buf();
            upload_dir(link, job, out, &rel, &mut files)?;
            upload_dir(link, job, out, Path::new("best"), &mut files)?;
            link.checkpoint(job, *step as u64, files, serde_json::Value::Object(metrics.clone()))?;
        }
        Event::Warning { message } => link.event(job, Level::Warn, message, None)?,
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
