//! `forja serve` (a node: forja_server::node) and `forja worker` (a remote
//! worker): flags in, a node config or a worker loop out.

use crate::admin;
use crate::args::{ServeArgs, WorkerArgs};
use anyhow::{Context, Result};
use forja_control::worker::{self, ModelResolver, WorkerConfig};
use forja_engine::{Engine, LoadOptions};
use forja_server::client::RemoteLink;
use forja_server::node::{ModelSource, Node, NodeConfig};
use forja_server::{EmbeddingModel, Limits, MetricsAccess};
use forja_store::Capacity;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The model a `--model`/`--embedding-model` value names, with every name
/// that selects it.
pub(crate) fn model_source(given: &str) -> Result<ModelSource> {
    let path = crate::models::resolve(given)?;
    let catalog = forja_core::catalog::find(given).map(|m| m.names()).unwrap_or_default();
    Ok(ModelSource::new(given, &path, &catalog))
}

/// The node a `forja serve` / `forja up` starts.
pub(crate) fn node_config(a: &ServeArgs, applied: &crate::config::Applied) -> Result<NodeConfig> {
    let dir = admin::data_dir(&a.data);
    let mut cfg = NodeConfig::new(dir.clone(), model_source(&a.model)?);
    cfg.database = a.data.database.clone();
    cfg.host = a.host.clone();
    cfg.port = a.port;
    cfg.artifacts = forja_server::node::artifact_config(a.artifacts.as_deref(), &dir)?;
    if let Some(d) = &a.draft_model {
        let spec = forja_engine::speculative::SpecConfig {
            k: a.spec_k,
            min_acceptance: a.spec_min_acceptance,
            ..Default::default()
        };
        spec.validate()?;
        cfg.draft = Some((crate::models::resolve(d)?, spec));
    }
    cfg.embedder = crate::models::embedder(&a.embedding_model)?.map(|e| {
        let mut names = vec![e.name()];
        let builtin = if a.embedding_model == "auto" { "minilm" } else { &a.embedding_model };
        if let Ok(m) = forja_core::catalog::find(builtin) {
            names.extend(m.names().iter().map(|s| s.to_string()));
        }
        // A name a request may use, never a filesystem path.
        let given = &a.embedding_model;
        if !["auto", "none"].contains(&given.as_str()) && !std::path::Path::new(given).exists() {
            names.push(given.clone());
        }
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.to_ascii_lowercase()));
        EmbeddingModel { embedder: e, names }
    });
    cfg.workers = a.workers;
    cfg.threads = a.threads;
    cfg.serving_weights = a.serving_weights;
    cfg.kv_type = a.kv_cache_type;
    cfg.training_yields = a.training_priority == "background";
    cfg.eval_on_serving_weights = a.eval_weights == "serving";
    if a.federation_hub {
        cfg.hub = Some(forja_control::hub::HubPolicy {
            min_nodes: a.hub_min_nodes.max(1),
            deadline_s: a.hub_round_deadline_s.max(1),
            max_norm: a.hub_max_norm,
            golden: a.hub_golden.clone(),
            max_wer_regression: a.hub_max_wer_regression.max(0.0),
            aggregation: forja_fed::Options {
                method: a.hub_method,
                rank: a.hub_rank,
                weights: None,
                clip: (a.hub_clip > 0.0).then_some(a.hub_clip),
            },
            max_file_bytes: (a.max_upload_mb.max(1) as u64) << 20,
        });
    }
    cfg.lease_ttl_s = a.lease_ttl.max(1);
    cfg.max_attempts = a.max_attempts.max(1);
    cfg.tick = Duration::from_millis(a.tick_ms.max(10));
    cfg.completion_retention_s = a.completion_retention_days.max(0) * 86_400;
    cfg.db_busy_timeout = Duration::from_millis(a.db_busy_timeout_ms);
    if let Ok(pages) = std::env::var("FORJA_DB_MAX_PAGES") {
        // A hard cap on the database size (operators; the tests' full disk).
        cfg.db_max_pages = Some(pages.parse().context("FORJA_DB_MAX_PAGES must be a number")?);
    }
    cfg.limits = Limits {
        max_tokens_cap: a.max_tokens_cap.max(1),
        request_timeout: Duration::from_secs(a.request_timeout_s.max(1)),
        max_body: a.max_request_kb.max(1) << 10,
        max_json: a.max_json_kb.max(1) << 10,
        max_upload: a.max_upload_mb.max(1) << 20,
    };
    cfg.max_batch = a.max_batch.max(1);
    cfg.adapter_cache_bytes = a.adapter_cache_mb << 20;
    cfg.admission = forja_serve::Admission {
        per_tenant: a.tenant_max_inflight.max(1),
        max_queue: a.max_queue.max(1),
    };
    cfg.grammar.max_bytes = a.max_grammar_kb.max(1) << 10;
    cfg.pii = a.pii_config()?;
    cfg.public_url = a.public_url.clone();
    cfg.metrics =
        MetricsAccess { token: a.metrics_token.clone(), tenant_labels: a.metrics_tenant_labels };
    cfg.webhooks.deny_private = a.webhook_deny_private;
    cfg.webhooks.concurrency = a.webhook_concurrency.max(1);
    cfg.tasks = crate::config::tasks(applied)?;
    cfg.scheduler_clock = scheduler_clock()?;
    cfg.log_file = crate::LOG_FILE.get().cloned();
    if let Some(f) = &applied.file {
        cfg.config_file = Some(f.clone());
        cfg.reloader = Some(crate::config::reloader(std::env::args_os().collect(), applied)?);
    }
    Ok(cfg)
}

/// `FORJA_SCHEDULER_CLOCK=START[xSPEED]` (START: unix seconds or `now`):
/// the scheduler's clock starts there and runs SPEED times faster, for
/// tests of the schedule. Only the scheduler sees it.
fn scheduler_clock() -> Result<Option<forja_control::tasks::Clock>> {
    let Ok(v) = std::env::var("FORJA_SCHEDULER_CLOCK") else { return Ok(None) };
    let bad = || {
        anyhow::anyhow!(
            "FORJA_SCHEDULER_CLOCK={v}: expected START[xSPEED], START unix seconds or `now`"
        )
    };
    let (start, speed) = v.split_once('x').unwrap_or((&v, "1"));
    let start = match start {
        "now" => chrono::Utc::now().timestamp(),
        s => s.parse().map_err(|_| bad())?,
    };
    let speed: f64 =
        speed.parse().ok().filter(|s: &f64| s.is_finite() && *s > 0.0).ok_or_else(bad)?;
    Ok(Some(forja_control::tasks::accelerated(start, speed)))
}

pub fn serve(a: ServeArgs, applied: &crate::config::Applied) -> Result<ExitCode> {
    let node = Node::start(node_config(&a, applied)?)?;
    eprintln!("forja: listening on http://{} (data: {})", node.addr, node.dir.display());
    node.run()?;
    Ok(ExitCode::SUCCESS)
}

pub fn worker_cmd(a: WorkerArgs) -> Result<ExitCode> {
    let id = a.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let host = if host.trim().is_empty() { "worker" } else { host.trim() };
        format!("{host}-{}", std::process::id())
    });
    let link = RemoteLink::new(&a.control, &a.token, &id);
    let scratch;
    let work_dir = match &a.work_dir {
        Some(d) => d.clone(),
        None => {
            scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
            scratch.path().to_path_buf()
        }
    };
    let backend = worker_backend(&a)?;
    let cache: Mutex<HashMap<String, Arc<Engine>>> = Mutex::new(HashMap::new());
    let threads = a.threads;
    // The TRL backend trains in Python: forja's copy of the model only
    // tokenizes and evaluates, so it stays quantized (an 8B model in f32
    // would take 32 GB).
    // The native trainer loads dense weights on --device; the TRL backend's
    // copy stays quantized on the CPU.
    let (dequantize, device) = match backend {
        worker::Backend::Native => (true, a.device.clone()),
        worker::Backend::Trl(_) => (false, "cpu".to_string()),
    };
    // Each --model with every name that selects it (a job names its base
    // model by the control plane's public name: `default`, `tiny.gguf`).
    let allowed: Vec<ModelSource> =
        a.model.iter().map(|m| model_source(m)).collect::<Result<_>>()?;
    let advertised: Vec<String> = allowed
        .iter()
        .flat_map(|s| std::iter::once(s.public.clone()).chain(s.aliases.iter().cloned()))
        .collect();
    let resolve = move |m: &str| -> forja_control::Result<Arc<Engine>> {
        let path = if allowed.is_empty() {
            crate::models::resolve(m)
                .map_err(|e| forja_control::ControlError::invalid("model", e.to_string()))?
        } else {
            let found = allowed.iter().find(|s| s.public == m || s.aliases.iter().any(|a| a == m));
            let names: Vec<&str> = allowed.iter().map(|s| s.public.as_str()).collect();
            found.map(|s| s.path.clone()).ok_or_else(|| {
                forja_control::ControlError::invalid(
                    "model",
                    format!("this worker trains {}, not `{m}`", names.join(", ")),
                )
            })?
        };
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = c.get(m) {
            return Ok(e.clone());
        }
        let opts =
            LoadOptions { threads, dequantize, device: device.clone(), ..Default::default() };
        let e = Arc::new(Engine::load(&path, &opts, &mut |_| {})?);
        c.insert(m.to_string(), e.clone());
        Ok(e)
    };
    let resolve: &ModelResolver = &resolve;
    let cfg = WorkerConfig {
        id: id.clone(),
        capacity: Capacity {
            gpus: a.gpus,
            memory_gb: a.memory_gb,
            models: (!advertised.is_empty()).then_some(advertised),
        },
        work_dir,
        poll: Duration::from_secs(1),
        embedder: crate::models::embedder(&a.embedding_model)?,
        eval_models: None,
        yield_to: None,
        backend,
    };
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone());
    eprintln!("forja worker {id}: polling {}", a.control);
    worker::run(&link, resolve, &cfg, &stop).context("the worker stops")?;
    Ok(ExitCode::SUCCESS)
}

/// The worker's training backend from its flags, checked before it leases
/// anything: the TRL backend's Python must import its packages and see
/// the GPUs asked for.
fn worker_backend(a: &WorkerArgs) -> Result<worker::Backend> {
    let bad_device = || anyhow::anyhow!("--device {}: expected cpu, cuda or cuda:N", a.device);
    let gpu = match forja_engine::device::parse(&a.device).map_err(|_| bad_device())? {
        Some(n) => Some(u32::try_from(n).map_err(|_| bad_device())?),
        None => None,
    };
    if a.backend == "native" {
        if a.gpus > 1 {
            anyhow::bail!("--gpus {}: forja's native trainer uses one device; train on several GPUs with --backend trl", a.gpus);
        }
        if gpu.is_some() {
            // Checked now (a forja built without CUDA, no such GPU), not
            // on the first job.
            forja_engine::device::open(&a.device)?;
        }
        if let Some(flag) = [
            (a.deepspeed.is_some(), "--deepspeed"),
            (a.load_in_4bit, "--load-in-4bit"),
            (a.trainer.is_some(), "--trainer"),
        ]
        .iter()
        .find_map(|&(set, flag)| set.then_some(flag))
        {
            anyhow::bail!("{flag} applies to --backend trl only");
        }
        return Ok(worker::Backend::Native);
    }
    if a.gpus > 0 && gpu.is_none() {
        anyhow::bail!(
            "--gpus {} with --device cpu: pass --device cuda (or cuda:N, the first GPU of the job)",
            a.gpus
        );
    }
    if let Some(p) = a.trainer.iter().chain(&a.deepspeed).find(|p| !p.is_file()) {
        anyhow::bail!("{}: no such file", p.display());
    }
    let be = worker::TrlBackend {
        python: a.python.clone(),
        script: a.trainer.clone(),
        gpu,
        processes: a.gpus.max(1),
        deepspeed: a.deepspeed.clone(),
        load_in_4bit: a.load_in_4bit,
    };
    let versions = be.probe().map_err(|e| anyhow::anyhow!("--backend trl: {e}"))?;
    eprintln!("forja worker: TRL backend on {} ({versions})", be.device());
    Ok(worker::Backend::Trl(be))
}

/// Sets `stop` on SIGINT/SIGTERM (the running job stops at its next step;
/// its last checkpoint is already uploaded).
fn stop_on_signal(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        if let Ok(rt) = rt {
            rt.block_on(forja_server::node::shutdown_signal());
            stop.store(true, Ordering::SeqCst);
        }
    });
}
