//! A whole node as a library: the data directory (owner-only permissions,
//! checked at start), the SQLite store, the artifact store, the control
//! plane and its tick, webhook delivery, the model loaded off the async
//! runtime, serving with hot-swap, in-process training workers, and the
//! HTTP API. `forja serve` and `forja up` are [`Node::start`] +
//! [`Node::run`]; tests drive [`Node::router`] in-process with
//! `tower::ServiceExt::oneshot`, or bind a real port.

use crate::{ApiError, AppState, EmbeddingModel, Limits, MetricsAccess};
use forja_control::feedback::Curator;
use forja_control::link::LocalLink;
use forja_control::webhook::{Deliverer, WebhookPolicy};
use forja_control::worker::{self, WorkerConfig};
use forja_control::{Control, ControlConfig, ModelNames};
use forja_engine::speculative::SpecConfig;
use forja_engine::{Engine, LoadOptions};
use forja_serve::{Admission, GrammarLimits, Metrics, Serving};
use forja_store::prelude::*;
use forja_store::{ArtifactConfig, Artifacts, Capacity, EventBus, LocalBus, SqlStore, Tenant};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Result<T> = std::result::Result<T, ApiError>;

fn startup(what: impl std::fmt::Display) -> ApiError {
    ApiError::Startup(what.to_string())
}

/// The base model a node serves and fine-tunes.
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// The file or directory to load.
    pub path: PathBuf,
    /// The name responses, jobs and versions use (never a path).
    pub public: String,
    /// Every other name that selects it (what the node was started with,
    /// the file name, catalog names and the Hugging Face id).
    pub aliases: Vec<String>,
}

impl ModelSource {
    /// A model given as `given` (a built-in name or a path) that resolved to
    /// `path`; `catalog` are a built-in model's other names.
    pub fn new(given: &str, path: &Path, catalog: &[&str]) -> ModelSource {
        let mut names: Vec<String> = vec![given.to_string()];
        for n in [path.file_name(), path.file_stem()].into_iter().flatten() {
            names.push(n.to_string_lossy().into_owned());
        }
        names.extend(catalog.iter().map(|s| s.to_string()));
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        let public = if given.contains('/') || given.contains('\\') {
            names
                .iter()
                .skip(1)
                .find(|n| !n.contains('/'))
                .cloned()
                .unwrap_or_else(|| "model".into())
        } else {
            given.to_string()
        };
        let aliases = names.into_iter().filter(|n| *n != public).collect();
        ModelSource { path: path.to_path_buf(), public, aliases }
    }
}

/// The weights serving runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServingWeights {
    /// On a node that trains in-process, a serving copy (training keeps the
    /// dense weights): the file's quantized weights as stored, float ones
    /// quantized to `Q8_0`. Elsewhere the weights as stored.
    Auto,
    /// The weights as stored; a training node serves its dense training
    /// weights (one copy in memory).
    AsLoaded,
    /// Float weights quantized to this format at load (a second copy when
    /// the node trains in-process).
    Quantized(forja_engine::quant::QType),
}

impl std::str::FromStr for ServingWeights {
    type Err = String;

    /// `auto`, `none` or a block format (`q8_0`, `q4_0`, `q4_1`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(ServingWeights::Auto),
            "none" | "as-loaded" => Ok(ServingWeights::AsLoaded),
            q => q.parse().map(ServingWeights::Quantized).map_err(|e: String| {
                format!("{e}, or auto (q8_0 on a node that trains) or none (the weights as stored)")
            }),
        }
    }
}

impl ServingWeights {
    /// The format float weights are quantized to for serving, if any.
    fn quantize(self, workers: usize) -> Option<forja_engine::quant::QType> {
        match self {
            ServingWeights::Auto if workers > 0 => Some(forja_engine::quant::QType::Q8_0),
            ServingWeights::Auto | ServingWeights::AsLoaded => None,
            ServingWeights::Quantized(q) => Some(q),
        }
    }
}

/// Everything a node is started with.
#[derive(Clone)]
pub struct NodeConfig {
    /// Where the database, artifacts and keys live.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub host: String,
    /// Port (0: any free port).
    pub port: u16,
    /// The base model.
    pub model: ModelSource,
    /// A draft model for speculative decoding, and how to speculate.
    pub draft: Option<(PathBuf, SpecConfig)>,
    /// `/v1/embeddings` and the similarity metric of evaluations.
    pub embedder: Option<EmbeddingModel>,
    /// Where artifacts live.
    pub artifacts: ArtifactConfig,
    /// In-process training workers.
    pub workers: usize,
    /// Threads for training and inference (`None`: every core).
    pub threads: Option<usize>,
    /// The weights serving runs on.
    pub serving_weights: ServingWeights,
    /// What serving's KV cache stores on the CPU.
    pub kv_type: forja_engine::KvType,
    /// In-process training and evaluation give way to serving on the same
    /// cores ([`forja_engine::Yield`]); `false`: they compete as equals.
    pub training_yields: bool,
    /// In-process evaluation generates golden-set answers on the serving
    /// copy (quantized: faster) when there is one; `false`: on the f32
    /// training weights.
    pub eval_on_serving_weights: bool,
    /// Act as a federation hub with this policy (`--federation-hub`); the
    /// base model is the node's own.
    pub hub: Option<forja_control::hub::HubPolicy>,
    /// Seconds a lease lasts without a heartbeat.
    pub lease_ttl_s: i64,
    /// Leases a job may lose before it fails.
    pub max_attempts: u32,
    /// Time between background rounds.
    pub tick: Duration,
    /// Seconds a served completion is kept for feedback by id.
    pub completion_retention_s: i64,
    /// A write waits this long for another writer's lock.
    pub db_busy_timeout: Duration,
    /// A Postgres URL; `None`: SQLite in the data directory.
    pub database: Option<String>,
    /// A hard cap on the database size, in pages.
    pub db_max_pages: Option<u64>,
    /// Request limits.
    pub limits: Limits,
    /// Sequences decoded together.
    pub max_batch: usize,
    /// Bytes of LoRA adapters kept loaded.
    pub adapter_cache_bytes: usize,
    /// Caps on sequences in flight.
    pub admission: Admission,
    /// Caps on grammars.
    pub grammar: GrammarLimits,
    /// PII scrubbing of feedback, uploads and the completion log.
    pub pii: forja_data::pii::PiiConfig,
    /// The URL workers reach this node at (`None`: `http://HOST:PORT`).
    pub public_url: Option<String>,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// How webhooks are delivered.
    pub webhooks: WebhookPolicy,
    /// The scheduled tasks.
    pub tasks: forja_control::tasks::TaskSet,
    /// The scheduler's clock (`None`: the system's; tests accelerate it).
    pub scheduler_clock: Option<forja_control::tasks::Clock>,
    /// The log file the `logs` task rotates, if the node writes one.
    pub log_file: Option<Arc<forja_control::tasks::LogFile>>,
    /// The configuration file, watched for changes.
    pub config_file: Option<PathBuf>,
    /// Reads the configuration file again (hot reload).
    pub reloader: Option<crate::live_config::Reloader>,
}

impl NodeConfig {
    /// The embedded default for `model` in `data_dir`.
    pub fn new(data_dir: PathBuf, model: ModelSource) -> NodeConfig {
        NodeConfig {
            artifacts: ArtifactConfig::Local { dir: data_dir.join("artifacts") },
            data_dir,
            host: "127.0.0.1".into(),
            port: 0,
            model,
            draft: None,
            embedder: None,
            workers: 1,
            threads: None,
            serving_weights: ServingWeights::Auto,
            kv_type: forja_engine::KvType::default(),
            training_yields: true,
            eval_on_serving_weights: true,
            hub: None,
            lease_ttl_s: 30,
            max_attempts: 5,
            tick: Duration::from_secs(1),
            completion_retention_s: 7 * 86_400,
            db_busy_timeout: Duration::from_secs(5),
            database: None,
            db_max_pages: None,
            limits: Limits::default(),
            max_batch: 16,
            adapter_cache_bytes: 512 << 20,
            admission: Admission::default(),
            grammar: GrammarLimits::default(),
            pii: Default::default(),
            public_url: None,
            metrics: MetricsAccess::default(),
            webhooks: WebhookPolicy::default(),
            tasks: Default::default(),
            scheduler_clock: None,
            log_file: None,
            config_file: None,
            reloader: None,
        }
    }
}

/// This machine's name, for task runners' ids.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// Owner-only permissions for `path` (0700 for directories, 0600 for
/// files); returns the mode it had when it was more open.
#[cfg(unix)]
fn owner_only(path: &Path) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    let want = if meta.is_dir() { 0o700 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(want))?;
    Ok(Some(mode))
}

#[cfg(not(unix))]
fn owner_only(_: &Path) -> std::io::Result<Option<u32>> {
    Ok(None)
}

/// Creates `dir` if needed and makes it (and the secrets in it) readable
/// by its owner only, saying what it tightened.
fn secure(dir: &Path, files: &[&str]) -> Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| startup(format!("cannot create {}: {e}", dir.display())))?;
        // Created now: owner-only from the start, nothing to report.
        owner_only(dir).map_err(|e| startup(format!("{}: {e}", dir.display())))?;
    }
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(files.iter().map(|f| dir.join(f)).filter(|p| p.exists()));
    for p in paths {
        match owner_only(&p) {
            Ok(Some(mode)) => eprintln!(
                "forja: {} was readable by others (mode {mode:o}); made it owner-only",
                p.display()
            ),
            Ok(None) => {}
            Err(e) => {
                return Err(startup(format!(
                    "{}: cannot make it owner-only ({e}); fix its owner or run forja as its owner",
                    p.display()
                )))
            }
        }
    }
    Ok(())
}

/// The key of signed download URLs: 32 random bytes kept in the data
/// directory (so URLs survive a restart), created on first use with
/// owner-only permissions.
pub fn url_secret(dir: &Path) -> Result<Vec<u8>> {
    let p = dir.join("url-signing.key");
    if let Ok(k) = std::fs::read(&p) {
        if k.len() >= 32 {
            return Ok(k);
        }
    }
    let k: [u8; 32] = rand::random();
    let tmp = dir.join("url-signing.key.tmp");
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let write = |o: &std::fs::OpenOptions| -> std::io::Result<()> {
        use std::io::Write;
        o.open(&tmp)?.write_all(&k)?;
        std::fs::rename(&tmp, &p)
    };
    write(&o).map_err(|e| startup(format!("cannot write {}: {e}", p.display())))?;
    Ok(k.to_vec())
}

/// The artifact store of `--artifacts` (a directory or `s3://bucket/prefix`).
pub fn artifact_config(spec: Option<&str>, data_dir: &Path) -> Result<ArtifactConfig> {
    Ok(match spec {
        None => ArtifactConfig::Local { dir: data_dir.join("artifacts") },
        Some(s) if s.starts_with("s3://") => {
            let rest = &s[5..];
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(startup(format!(
                    "--artifacts {s}: name a bucket (s3://bucket/prefix)"
                )));
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

/// The in-process worker's engine for the model names this node trains.
fn resolver(
    names: ModelNames,
    engine: Arc<Engine>,
) -> impl Fn(&str) -> forja_control::Result<Arc<Engine>> + Send + Sync {
    move |m: &str| {
        check_trains(&names, m)?;
        Ok(engine.clone())
    }
}

/// Refuses a job whose base model is not this node's (the lease already
/// filters by model; this guards the resolver itself).
fn check_trains(names: &ModelNames, m: &str) -> forja_control::Result<()> {
    if names.canonical(m).is_some() {
        return Ok(());
    }
    Err(forja_control::ControlError::invalid(
        "model",
        format!("this worker trains {}, not `{m}`", names.all().join(", ")),
    ))
}

type Loader = std::thread::JoinHandle<Result<Vec<std::thread::JoinHandle<()>>>>;

/// A running node: the API on its listener, the model loading (then the
/// in-process workers) on a thread, and the background tasks.
pub struct Node {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// The data directory.
    pub dir: PathBuf,
    /// The node's database.
    pub store: Arc<dyn Store>,
    /// The control plane.
    pub control: Arc<Control>,
    /// Set once the model is loaded and requests are answered.
    pub ready: Arc<AtomicBool>,
    /// Notified to stop serving (a failed model load, or a caller done with the node).
    pub shutdown: Arc<tokio::sync::Notify>,
    rt: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    loader: Loader,
    model_path: PathBuf,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Opens a node's store: Postgres at `database` (a `postgres://` or
/// `postgresql://` URL), or SQLite at `data_dir/forja.db`. The node's key is
/// in `data_dir` either way.
pub fn open_store(data_dir: &Path, database: Option<&str>, busy: Duration) -> Result<SqlStore> {
    match database {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(SqlStore::open_postgres(url, data_dir)?)
        }
        Some(other) => Err(startup(format!(
            "--database {}: expected a postgres:// URL (leave it out for SQLite in the data directory)",
            other.split('@').next_back().unwrap_or(other)
        ))),
        None => Ok(SqlStore::open(&data_dir.join("forja.db"), busy)?),
    }
}

impl Node {
    /// Opens the data directory, binds the listener and starts loading the
    /// model; requests are answered once [`Node::run`] runs (or through
    /// [`Node::router`]).
    pub fn start(cfg: NodeConfig) -> Result<Node> {
        let dir = cfg.data_dir.clone();
        secure(&dir, &["url-signing.key", "forja.db", "forja.db-wal", "forja.db-shm"])?;
        let sql = open_store(&dir, cfg.database.as_deref(), cfg.db_busy_timeout)?;
        if let Some(pages) = cfg.db_max_pages {
            sql.set_max_pages(pages)?;
        }
        tracing::info!(database = %sql.location(), "store open");
        let sql = Arc::new(sql);
        let store: Arc<dyn Store> = sql.clone();
        if let ArtifactConfig::Local { dir: a } = &cfg.artifacts {
            secure(a, &[])?;
        }
        secure(&dir.join("adapters"), &[])?;
        secure(&dir.join("work"), &[])?;
        let artifacts = Artifacts::open(&cfg.artifacts)?;
        let mut aliases = cfg.model.aliases.clone();
        if !aliases.iter().any(|a| a == "base") {
            aliases.insert(0, "base".into());
        }
        let names = ModelNames { public: cfg.model.public.clone(), aliases };
        let bus: Arc<dyn EventBus> = Arc::new(LocalBus::default());
        let control = Arc::new(Control::new(
            store.clone(),
            artifacts.clone(),
            Curator::new(&cfg.pii)?,
            ControlConfig {
                model: names.clone(),
                lease_ttl_s: cfg.lease_ttl_s.max(1),
                max_attempts: cfg.max_attempts.max(1),
                url_secret: url_secret(&dir)?,
            },
            bus.clone(),
        ));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .worker_threads(2)
            .build()
            .map_err(|e| startup(format!("cannot start the async runtime: {e}")))?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port)))
            .map_err(|e| startup(format!("cannot listen on {}:{}: {e}", cfg.host, cfg.port)))?;
        let addr = listener.local_addr().map_err(startup)?;
        let ready = Arc::new(AtomicBool::new(false));
        let metrics = Metrics::new(cfg.metrics.tenant_labels);
        let hub = match &cfg.hub {
            None => None,
            Some(p) => {
                let base_sha256 =
                    forja_control::worker::model_sha256(&cfg.model.path).ok_or_else(|| {
                        startup(format!("cannot hash the base model {}", cfg.model.path.display()))
                    })?;
                let hc = forja_control::hub::HubConfig {
                    base_model: cfg.model.public.clone(),
                    base_path: cfg.model.path.clone(),
                    base_sha256,
                    policy: p.clone(),
                    work_dir: dir.join("federation"),
                };
                let key = forja_core::identity::NodeKey::load(&dir.join(forja_store::NODE_KEY))
                    .map_err(|e| startup(e.to_string()))?;
                Some(Arc::new(
                    forja_control::hub::Hub::new(hc, store.clone(), artifacts.clone(), key)
                        .map_err(|e| startup(format!("federation hub: {e}")))?,
                ))
            }
        };
        let knowledge = Arc::new(
            forja_control::knowledge::Knowledge::open(
                control.clone(),
                dir.join("knowledge"),
                cfg.embedder.as_ref().map(|e| e.embedder.clone()),
                forja_control::knowledge::FeedPolicy {
                    deny_private: cfg.webhooks.deny_private,
                    ..Default::default()
                },
            )
            .map_err(|e| startup(format!("knowledge base: {e}")))?,
        );
        let (extractor, extractions) = crate::memory::Extractor::new();
        let live = Arc::new(crate::live_config::LiveConfig::new(
            crate::live_config::HotSettings {
                max_tokens_cap: cfg.limits.max_tokens_cap,
                request_timeout: cfg.limits.request_timeout,
                completion_retention_s: cfg.completion_retention_s.max(0),
                tasks: cfg.tasks.clone(),
            },
            cfg.config_file.clone(),
            cfg.reloader.clone(),
        ));
        let health = Arc::new(crate::supervisor::Health::default());
        let eval_engine: Arc<std::sync::OnceLock<Arc<Engine>>> = Default::default();
        let env = Arc::new(forja_control::tasks::TaskEnv {
            control: control.clone(),
            knowledge: Some(knowledge.clone()),
            data_dir: dir.clone(),
            engine: eval_engine.clone(),
            log_file: cfg.log_file.clone(),
            completion_retention_s: {
                let live = live.clone();
                Arc::new(move || live.completion_retention_s())
            },
            runtime: rt.handle().clone(),
        });
        let clock = cfg.scheduler_clock.clone().unwrap_or_else(forja_control::tasks::system_clock);
        let scheduler = Arc::new(forja_control::tasks::Scheduler::new(
            env,
            format!("{}-{}", hostname(), std::process::id()),
            clock.clone(),
        ));
        let state = AppState {
            control: control.clone(),
            ready: ready.clone(),
            serving: Default::default(),
            metrics: metrics.clone(),
            limits: cfg.limits.clone(),
            embedder: cfg.embedder.clone(),
            public_url: cfg.public_url.clone().unwrap_or_else(|| format!("http://{addr}")),
            metrics_access: cfg.metrics.clone(),
            followers: Default::default(),
            started: std::time::Instant::now(),
            workers: cfg.workers,
            hub: hub.clone(),
            knowledge: knowledge.clone(),
            memory: extractor,
            node_metrics: Arc::new(crate::node_metrics::NodeMetrics::new(
                cfg.metrics.tenant_labels,
                dir.clone(),
            )),
            live: live.clone(),
            health: health.clone(),
            scheduler: scheduler.clone(),
        };
        rt.spawn(crate::memory::run(state.clone(), extractions));
        let stop = Arc::new(AtomicBool::new(false));
        // Replicas on Postgres hear each other's registry moves at once
        // (the control tick's poll stays, for what a listener missed).
        let heard = control.clone();
        sql.listen_registry(
            Box::new(move || {
                if let Err(e) = heard.poll_registry() {
                    tracing::warn!("registry move: {e}");
                }
            }),
            stop.clone(),
        )?;
        // A model that fails to load ends the server (it could never serve).
        let shutdown = Arc::new(tokio::sync::Notify::new());
        let loader = Self::load(
            &cfg,
            &rt,
            &state,
            &control,
            &bus,
            &stop,
            &shutdown,
            &names,
            &metrics,
            &eval_engine,
        )?;
        let tasks =
            Self::background(&cfg, &rt, &control, hub, scheduler, clock, &live, &health, &stop);
        let app = crate::router(state);
        Ok(Node {
            addr,
            dir,
            store,
            control,
            ready,
            shutdown,
            rt,
            listener,
            app,
            stop,
            tasks,
            loader,
            model_path: cfg.model.path,
        })
    }

    /// Loads the model off the async runtime, then starts serving and the
    /// in-process workers.
    #[allow(clippy::too_many_arguments)]
    fn load(
        cfg: &NodeConfig,
        rt: &tokio::runtime::Runtime,
        state: &AppState,
        control: &Arc<Control>,
        bus: &Arc<dyn EventBus>,
        stop: &Arc<AtomicBool>,
        failed: &Arc<tokio::sync::Notify>,
        names: &ModelNames,
        metrics: &Metrics,
        eval_slot: &Arc<std::sync::OnceLock<Arc<Engine>>>,
    ) -> Result<Loader> {
        let handle = rt.handle().clone();
        let (eval_slot, health) = (eval_slot.clone(), state.health.clone());
        let (stop, ready, failed) = (stop.clone(), state.ready.clone(), failed.clone());
        let (serving_slot, control, bus) = (state.serving.clone(), control.clone(), bus.clone());
        if let Some((_, spec)) = &cfg.draft {
            spec.validate().map_err(|e| startup(format!("speculative decoding: {e}")))?;
        }
        let mut base_names = vec![names.public.clone()];
        base_names.extend(names.aliases.iter().cloned());
        let mut serving_cfg = forja_serve::ServingConfig {
            base_names,
            adapter_budget: cfg.adapter_cache_bytes,
            adapter_dir: cfg.data_dir.join("adapters"),
            max_batch: cfg.max_batch,
            draft: None,
            admission: cfg.admission.clone(),
            grammar: cfg.grammar.clone(),
        };
        // Training needs dense weights. Serving runs on the weights as stored
        // (a quantized GGUF stays quantized: faster decoding, a quarter of the
        // memory for Q4), or on a copy quantized at load; a node that trains
        // and serves keeps both, so serving decodes quantized while training
        // has its dense weights.
        let quantize = cfg.serving_weights.quantize(cfg.workers);
        let serve_opts = LoadOptions {
            threads: cfg.threads,
            quantize,
            kv_type: cfg.kv_type,
            ..Default::default()
        };
        let train_opts = (cfg.workers > 0).then(|| LoadOptions {
            dequantize: true,
            quantize: None,
            ..serve_opts.clone()
        });
        let (workers, ttl, path, draft) =
            (cfg.workers, cfg.lease_ttl_s.max(1), cfg.model.path.clone(), cfg.draft.clone());
        let (training_yields, eval_on_serving) = (cfg.training_yields, cfg.eval_on_serving_weights);
        let (names, metrics) = (names.clone(), metrics.clone());
        let embedder = cfg.embedder.as_ref().map(|e| e.embedder.clone());
        let work_dir = cfg.data_dir.join("work");
        let redteam_dir = cfg.data_dir.join("redteam");
        let spawned = std::thread::Builder::new().name("forja-loader".into()).spawn(
            move || -> Result<Vec<std::thread::JoinHandle<()>>> {
                let fail = |e: ApiError| {
                    failed.notify_one();
                    e
                };
                let load = |opts: &LoadOptions| {
                    Engine::load(&path, opts, &mut |_| {}).map(Arc::new).map_err(|e| {
                        fail(startup(format!("cannot load {}: {e}", path.display())))
                    })
                };
                // A second copy only when a training node serves quantized weights.
                let engine = load(train_opts.as_ref().unwrap_or(&serve_opts))?;
                let separate = train_opts.is_some() && quantize.is_some();
                let serving_engine =
                    if separate { load(&serve_opts)? } else { engine.clone() };
                if let Some((p, spec)) = &draft {
                    let dopts = LoadOptions { threads: serve_opts.threads, ..Default::default() };
                    let d = Engine::load(p, &dopts, &mut |_| {}).map_err(|e| {
                        fail(startup(format!("cannot load the draft model {}: {e}", p.display())))
                    })?;
                    serving_cfg.draft = Some((Arc::new(d), spec.clone()));
                }
                let c = control.clone();
                let rollback: forja_serve::Rollback = Arc::new(move |t: &Tenant, why: &str| {
                    c.take_out(t, "serving", why).map(|_| ()).map_err(|e| e.to_string())
                });
                // Evaluation generates on the serving copy, if it is one.
                let eval_engine = (eval_on_serving && separate).then(|| serving_engine.clone());
                // Scheduled re-evaluation scores champions as their jobs did;
                // the red team attacks the same weights.
                let judged = eval_engine.clone().unwrap_or_else(|| engine.clone());
                let _ = eval_slot.set(judged.clone());
                let _ = control.red_team.set(forja_control::redteam::RedTeamer {
                    engine: judged,
                    dir: redteam_dir.clone(),
                });
                let serving = Serving::new(
                    serving_engine,
                    control.store.clone(),
                    control.artifacts.clone(),
                    bus.clone(),
                    rollback,
                    serving_cfg,
                    metrics,
                )
                .map_err(|e| fail(e.into()))?;
                {
                    let _rt = handle.enter();
                    serving.watch();
                }
                let foreground = serving.foreground();
                let formats = serving.engine().model().weight_formats().join("+");
                let copy = if separate { "a copy, " } else { "" };
                let _ = serving_slot.set(serving);
                ready.store(true, Ordering::SeqCst);
                eprintln!(
                    "forja: ready ({} loaded, serving {copy}{formats} weights, {workers} in-process worker(s))",
                    path.display()
                );
                let mut threads = Vec::new();
                for i in 0..workers {
                    let link = LocalLink {
                        store: control.store.clone(),
                        artifacts: control.artifacts.clone(),
                        runtime: handle.clone(),
                        worker: format!("local-{}-{i}", std::process::id()),
                        lease_ttl_s: ttl,
                        bus: bus.clone(),
                    };
                    let (engine, names, stop) = (engine.clone(), names.clone(), stop.clone());
                    let wcfg = WorkerConfig {
                        id: link.worker.clone(),
                        capacity: Capacity {
                            gpus: 0,
                            memory_gb: u32::MAX,
                            models: Some(names.all()),
                        },
                        // Stable across restarts: the general-replay answers cached
                        // there are reused by the next process.
                        work_dir: work_dir.join(format!("local-{i}")),
                        poll: Duration::from_millis(500),
                        embedder: embedder.clone(),
                        eval_models: eval_engine
                            .clone()
                            .map(|e| Arc::new(resolver(names.clone(), e)) as Arc<worker::ModelResolver>),
                        yield_to: training_yields
                            .then(|| forja_engine::Yield::new(foreground.clone())),
                        backend: worker::Backend::Native,
                    };
                    let resolve = resolver(names, engine);
                    let thread = crate::supervisor::supervise_thread(
                        health.clone(),
                        "worker",
                        stop.clone(),
                        move || {
                            if let Err(e) = worker::run(&link, &resolve, &wcfg, &stop) {
                                tracing::error!("worker stopped: {e}");
                            }
                        },
                    )
                    .map_err(|e| fail(startup(format!("cannot start a worker: {e}"))))?;
                    threads.push(thread);
                }
                Ok(threads)
            },
        );
        spawned.map_err(|e| startup(format!("cannot start the model loader: {e}")))
    }

    /// The control plane's tick, webhook delivery, the task scheduler and
    /// the configuration watcher, each on its own supervised task.
    #[allow(clippy::too_many_arguments)]
    fn background(
        cfg: &NodeConfig,
        rt: &tokio::runtime::Runtime,
        control: &Arc<Control>,
        hub: Option<Arc<forja_control::hub::Hub>>,
        scheduler: Arc<forja_control::tasks::Scheduler>,
        clock: forja_control::tasks::Clock,
        live: &Arc<crate::live_config::LiveConfig>,
        health: &Arc<crate::supervisor::Health>,
        stop: &Arc<AtomicBool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        use crate::supervisor::supervise;
        let tick = cfg.tick.max(Duration::from_millis(10));
        let handle = rt.handle();
        let ticker = {
            let (control, stop2) = (control.clone(), stop.clone());
            supervise(handle, health.clone(), "control tick", stop.clone(), move || {
                let (control, hub, stop) = (control.clone(), hub.clone(), stop2.clone());
                async move {
                    while !stop.load(Ordering::SeqCst) {
                        control.tick().await;
                        if let Some(h) = &hub {
                            if let Err(e) = h.round_tick().await {
                                tracing::warn!("federation round: {e}");
                            }
                        }
                        tokio::time::sleep(tick).await;
                    }
                }
            })
        };
        let deliverer = Deliverer::new(control.store.clone(), cfg.webhooks.clone());
        let webhooks = {
            let stop2 = stop.clone();
            supervise(handle, health.clone(), "webhooks", stop.clone(), move || {
                deliverer.clone().run(tick.min(Duration::from_millis(500)), stop2.clone())
            })
        };
        // An accelerated clock is polled more often, so that no fire is late.
        let poll = if cfg.scheduler_clock.is_some() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        let faults = Arc::new(std::sync::atomic::AtomicU32::new(
            std::env::var("FORJA_FAULT_SCHEDULER_PANICS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ));
        let schedule = {
            let (live, stop2) = (live.clone(), stop.clone());
            supervise(handle, health.clone(), "scheduler", stop.clone(), move || {
                let (s, live, stop, faults) =
                    (scheduler.clone(), live.clone(), stop2.clone(), faults.clone());
                async move {
                    while !stop.load(Ordering::SeqCst) {
                        // Fault injection for the supervision test.
                        if faults
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok()
                        {
                            panic!("injected scheduler fault (FORJA_FAULT_SCHEDULER_PANICS)");
                        }
                        let (s, tasks) = (s.clone(), live.tasks());
                        match tokio::task::spawn_blocking(move || s.round(&tasks)).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => tracing::warn!("scheduler: {e}"),
                            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                            Err(_) => return,
                        }
                        tokio::time::sleep(poll).await;
                    }
                }
            })
        };
        let watcher =
            rt.spawn(crate::live_config::watch(live.clone(), stop.clone(), move || clock()));
        vec![ticker, webhooks, schedule, watcher]
    }

    /// The API, for in-process requests (`tower::ServiceExt::oneshot`).
    pub fn router(&self) -> axum::Router {
        self.app.clone()
    }

    /// Runs `f` on the node's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Waits until the model is loaded (`false` after `limit`, or if
    /// loading failed).
    pub fn wait_ready(&self, limit: Duration) -> bool {
        let t = std::time::Instant::now();
        while !self.ready.load(Ordering::SeqCst) {
            if t.elapsed() > limit
                || self.loader.is_finished() && !self.ready.load(Ordering::SeqCst)
            {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Serves until SIGINT/SIGTERM or [`Node::shutdown`], then stops the
    /// workers (a running job stops at its next step; its last checkpoint
    /// is already stored) and waits for them.
    pub fn run(self) -> Result<()> {
        let Node { rt, listener, app, shutdown, stop, tasks, loader, model_path, .. } = self;
        let served = rt.block_on(async {
            let stopped = async move {
                tokio::select! { _ = shutdown_signal() => {}, _ = shutdown.notified() => {} }
            };
            axum::serve(listener, app).with_graceful_shutdown(stopped).await
        });
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.abort();
        }
        served.map_err(|e| startup(format!("the HTTP server failed: {e}")))?;
        match loader.join() {
            Ok(Ok(threads)) => {
                eprintln!("forja: shutting down");
                for t in threads {
                    let _ = t.join();
                }
            }
            Ok(Err(e)) => {
                return Err(startup(format!("cannot load {}: {e}", model_path.display())))
            }
            Err(_) => return Err(startup("the model loader panicked")),
        }
        Ok(())
    }

    /// Stops the background work of a node that is not [`Node::run`]
    /// (in-process tests): workers stop at their next step.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
        if let Ok(Ok(threads)) = self.loader.join() {
            for t in threads {
                let _ = t.join();
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
