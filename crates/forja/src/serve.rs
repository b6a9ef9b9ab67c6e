//! `forja serve` (the API and in-process workers) and `forja worker` (a
//! remote worker): wiring of store, artifacts, control plane, server and
//! engine.

use crate::admin;
use crate::args::{ServeArgs, WorkerArgs};
use anyhow::{bail, Context, Result};
use forja_control::feedback::Curator;
use forja_control::worker::{self, LocalLink, ModelResolver, WorkerConfig};
use forja_control::{Control, ControlConfig, EventBus, LocalBus};
use forja_engine::{Engine, LoadOptions};
use forja_server::client::RemoteLink;
use forja_server::AppState;
use forja_store::{ArtifactConfig, Artifacts, Capacity, SqliteStore, Store};
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The key of signed download URLs: 32 random bytes kept in the data
/// directory (so URLs survive a restart), created on first use.
pub(crate) fn url_secret(dir: &Path) -> Result<Vec<u8>> {
    let p = dir.join("url-signing.key");
    if let Ok(k) = std::fs::read(&p) {
        if k.len() >= 32 {
            return Ok(k);
        }
    }
    let k: [u8; 32] = rand::random();
    let tmp = dir.join("url-signing.key.tmp");
    std::fs::write(&tmp, k).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(k.to_vec())
}

pub(crate) fn artifact_config(spec: Option<&str>, data_dir: &Path) -> Result<ArtifactConfig> {
    Ok(match spec {
        None => ArtifactConfig::Local { dir: data_dir.join("artifacts") },
        Some(s) if s.starts_with("s3://") => {
            let rest = &s[5..];
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("--artifacts {s}: name a bucket (s3://bucket/prefix)");
            }
            let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
            ArtifactConfig::S3 {
                bucket: bucket.into(),
                allow_http: endpoint.as_deref().is_some_and(|e| e.starts_with("http://")),
                endpoint,
                region: std::env::var("AWS_REGION").ok(),
                prefix: prefix.into(),
            }
        }
        Some(dir) => ArtifactConfig::Local { dir: dir.into() },
    })
}

/// The names a job may use for the served base model: as given, and the
/// file or directory name.
fn model_names(given: &str, path: &Path) -> Vec<String> {
    let mut names = vec![given.to_string()];
    for n in [path.file_name(), path.file_stem()].into_iter().flatten() {
        let n = n.to_string_lossy().into_owned();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// Refuses a job whose base model is not one of `names` (the lease
/// already filters by model; this guards the resolver itself).
fn check_trains(names: &[String], m: &str) -> forja_control::Result<()> {
    if names.iter().any(|n| n == m) {
        return Ok(());
    }
    Err(forja_control::ControlError::invalid(
        "model",
        format!("this worker trains {}, not `{m}`", names.join(", ")),
    ))
}

/// A running node: the API on its listener, the model loading (then the
/// in-process workers) on a thread, and the control plane's ticker.
pub(crate) struct Node {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// The data directory.
    pub dir: std::path::PathBuf,
    /// The node's database.
    pub store: Arc<dyn Store>,
    /// Set once the model is loaded and requests are answered.
    pub ready: Arc<AtomicBool>,
    /// Notified to stop serving (a failed model load, or a caller done with the node).
    pub shutdown: Arc<tokio::sync::Notify>,
    rt: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stop: Arc<AtomicBool>,
    ticker: tokio::task::JoinHandle<()>,
    loader: std::thread::JoinHandle<Result<Vec<std::thread::JoinHandle<()>>>>,
    model_path: std::path::PathBuf,
}

pub fn serve(a: ServeArgs) -> Result<ExitCode> {
    let node = Node::start(&a)?;
    eprintln!("forja: listening on http://{} (data: {})", node.addr, node.dir.display());
    node.run()?;
    Ok(ExitCode::SUCCESS)
}

impl Node {
    /// Opens the data directory, binds the listener and starts loading the
    /// model; requests are answered once [`Node::run`] runs.
    pub fn start(a: &ServeArgs) -> Result<Node> {
        let dir = admin::data_dir(&a.data);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let sqlite =
            SqliteStore::open(&dir.join("forja.db"), Duration::from_millis(a.db_busy_timeout_ms))?;
        if let Ok(pages) = std::env::var("FORJA_DB_MAX_PAGES") {
            // A hard cap on the database size (operators; the tests' full disk).
            sqlite.set_max_pages(pages.parse().context("FORJA_DB_MAX_PAGES must be a number")?)?;
        }
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let artifacts = Artifacts::open(&artifact_config(a.artifacts.as_deref(), &dir)?)?;
        let model_path = crate::models::resolve(&a.model)?;
        let names = model_names(&a.model, &model_path);
        let bus: Arc<dyn EventBus> = Arc::new(LocalBus::default());
        let control = Arc::new(Control::new(
            store.clone(),
            artifacts.clone(),
            Curator::new(&a.pii_config()?)?,
            ControlConfig {
                default_model: a.model.clone(),
                models: names.clone(),
                lease_ttl_s: a.lease_ttl.max(1),
                max_attempts: a.max_attempts.max(1),
                url_secret: url_secret(&dir)?,
            },
            bus.clone(),
        ));
        let embedder = crate::models::embedder(&a.embedding_model)?;
        let embedding_model = embedder.clone().map(|e| {
            let mut names = vec![e.name(), "minilm".to_string()];
            if !["auto", "none"].contains(&a.embedding_model.as_str()) {
                names.push(a.embedding_model.clone());
            }
            names.dedup();
            forja_server::EmbeddingModel { embedder: e, names }
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .worker_threads(2)
            .build()
            .context("cannot start the async runtime")?;
        let ready = Arc::new(AtomicBool::new(false));
        let metrics = forja_serve::Metrics::new();
        let state = AppState {
            control: control.clone(),
            ready: ready.clone(),
            max_upload: a.max_upload_mb << 20,
            serving: Default::default(),
            metrics: metrics.clone(),
            limits: forja_server::Limits {
                max_tokens_cap: a.max_tokens_cap.max(1),
                request_timeout: Duration::from_secs(a.request_timeout_s.max(1)),
                max_body: a.max_request_kb << 10,
            },
            embedder: embedding_model,
        };
        let listener = rt
            .block_on(tokio::net::TcpListener::bind((a.host.as_str(), a.port)))
            .with_context(|| format!("cannot listen on {}:{}", a.host, a.port))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        // A model that fails to load ends the server (it could never train).
        let shutdown = Arc::new(tokio::sync::Notify::new());

        // Load the model off the async runtime, then start the workers.
        let handle = rt.handle().clone();
        let loader = {
            let (stop, ready, store, artifacts, bus) =
                (stop.clone(), ready.clone(), store.clone(), artifacts.clone(), bus.clone());
            let (serving_slot, control) = (state.serving.clone(), control.clone());
            let draft_path = a.draft_model.as_deref().map(crate::models::resolve).transpose()?;
            let spec_cfg = forja_engine::speculative::SpecConfig {
                k: a.spec_k,
                min_acceptance: a.spec_min_acceptance,
                ..Default::default()
            };
            spec_cfg.validate()?;
            let mut serving_cfg = forja_serve::ServingConfig {
                base_names: names.clone(),
                adapter_budget: a.adapter_cache_mb << 20,
                adapter_dir: dir.join("adapters"),
                max_batch: a.max_batch,
                draft: None,
            };
            // Training needs dense weights; a serving-only node keeps them quantized
            // (faster decoding, a quarter of the memory for Q4 files).
            let opts =
                LoadOptions { threads: a.threads, dequantize: a.workers > 0, ..Default::default() };
            let (workers, ttl, path) = (a.workers, a.lease_ttl.max(1), model_path.clone());
            let failed = shutdown.clone();
            std::thread::spawn(move || -> Result<Vec<std::thread::JoinHandle<()>>> {
                let engine = match Engine::load(&path, &opts, &mut |_| {}) {
                    Ok(e) => Arc::new(e),
                    Err(e) => {
                        failed.notify_one();
                        return Err(e.into());
                    }
                };
                if let Some(p) = &draft_path {
                    let dopts = LoadOptions { threads: opts.threads, ..Default::default() };
                    match Engine::load(p, &dopts, &mut |_| {}) {
                        Ok(d) => serving_cfg.draft = Some((Arc::new(d), spec_cfg)),
                        Err(e) => {
                            failed.notify_one();
                            return Err(anyhow::Error::from(e)
                                .context(format!("cannot load the draft model {}", p.display())));
                        }
                    }
                }
                let serving = match forja_serve::Serving::new(
                    engine.clone(),
                    control,
                    serving_cfg,
                    metrics,
                ) {
                    Ok(s) => s,
                    Err(e) => {
                        failed.notify_one();
                        return Err(e.into());
                    }
                };
                {
                    let _rt = handle.enter();
                    serving.watch();
                }
                let _ = serving_slot.set(serving);
                ready.store(true, Ordering::SeqCst);
                eprintln!(
                    "forja: ready ({} loaded, {workers} in-process worker(s))",
                    path.display()
                );
                let mut threads = Vec::new();
                for i in 0..workers {
                    let link = LocalLink {
                        store: store.clone(),
                        artifacts: artifacts.clone(),
                        runtime: handle.clone(),
                        worker: format!("local-{}-{i}", std::process::id()),
                        lease_ttl_s: ttl,
                        bus: bus.clone(),
                    };
                    let (engine, names, stop) = (engine.clone(), names.clone(), stop.clone());
                    let cfg = WorkerConfig {
                        id: link.worker.clone(),
                        capacity: Capacity {
                            gpus: 0,
                            memory_gb: u32::MAX,
                            models: Some(names.clone()),
                        },
                        work_dir: std::env::temp_dir().join(format!("forja-work-{}", link.worker)),
                        poll: Duration::from_millis(500),
                        embedder: embedder.clone(),
                    };
                    threads.push(std::thread::spawn(move || {
                        let resolve = move |m: &str| -> forja_control::Result<Arc<Engine>> {
                            check_trains(&names, m)?;
                            Ok(engine.clone())
                        };
                        worker::run(&link, &resolve, &cfg, &stop);
                    }));
                }
                Ok(threads)
            })
        };

        let tick = Duration::from_millis(a.tick_ms.max(10));
        let retention = a.completion_retention_days.max(0) * 86_400;
        let ticker = {
            let (control, stop) = (control.clone(), stop.clone());
            rt.spawn(async move {
                let mut purged = std::time::Instant::now() - Duration::from_secs(3600);
                while !stop.load(Ordering::SeqCst) {
                    control.tick().await;
                    if purged.elapsed() > Duration::from_secs(600) {
                        purged = std::time::Instant::now();
                        let store = control.store.clone();
                        let before = store.now() - retention;
                        let _ =
                            tokio::task::spawn_blocking(move || store.purge_completions(before))
                                .await;
                    }
                    tokio::time::sleep(tick).await;
                }
            })
        };
        let app = forja_server::router(state);
        Ok(Node {
            ready,
            addr,
            dir,
            store,
            shutdown,
            rt,
            listener,
            app,
            stop,
            ticker,
            loader,
            model_path,
        })
    }

    /// Serves until SIGINT/SIGTERM or [`Node::shutdown`], then stops the
    /// workers (a running job stops at its next step; its last checkpoint
    /// is already stored) and waits for them.
    pub fn run(self) -> Result<()> {
        let Node { rt, listener, app, shutdown, stop, ticker, loader, model_path, .. } = self;
        let served = rt.block_on(async {
            let stopped = async move {
                tokio::select! { _ = shutdown_signal() => {}, _ = shutdown.notified() => {} }
            };
            axum::serve(listener, app).with_graceful_shutdown(stopped).await
        });
        stop.store(true, Ordering::SeqCst);
        ticker.abort();
        served.context("the HTTP server failed")?;
        match loader.join() {
            Ok(Ok(threads)) => {
                eprintln!("forja: shutting down");
                for t in threads {
                    let _ = t.join();
                }
            }
            Ok(Err(e)) => return Err(e.context(format!("cannot load {}", model_path.display()))),
            Err(_) => bail!("the model loader panicked"),
        }
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
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
    let cache: Mutex<HashMap<String, Arc<Engine>>> = Mutex::new(HashMap::new());
    let threads = a.threads;
    let allowed = a.model.clone();
    let resolve = move |m: &str| -> forja_control::Result<Arc<Engine>> {
        if !allowed.is_empty() {
            check_trains(&allowed, m)?;
        }
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = c.get(m) {
            return Ok(e.clone());
        }
        let path = crate::models::resolve(m)
            .map_err(|e| forja_control::ControlError::invalid("model", e.to_string()))?;
        let opts = LoadOptions { threads, dequantize: true, ..Default::default() };
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
            models: (!a.model.is_empty()).then(|| a.model.clone()),
        },
        work_dir,
        poll: Duration::from_secs(1),
        embedder: crate::models::embedder(&a.embedding_model)?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone());
    eprintln!("forja worker {id}: polling {}", a.control);
    worker::run(&link, resolve, &cfg, &stop);
    Ok(ExitCode::SUCCESS)
}

/// Sets `stop` on SIGINT/SIGTERM (the running job stops at its next step;
/// its last checkpoint is already uploaded).
fn stop_on_signal(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        if let Ok(rt) = rt {
            rt.block_on(shutdown_signal());
            stop.store(true, Ordering::SeqCst);
        }
    });
}
