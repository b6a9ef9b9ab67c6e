//! forja-serve: the data plane. It answers "which weights serve this
//! request?", keeps the answer fresh without downtime, and decides who is
//! served when:
//!
//! - **Resolution** ([`Serving::resolve`]): `base` (or a served base model
//!   name), a model version id, or `name@alias` (`default@champion`),
//!   optionally prefixed by the caller's tenant name (`acme/default@champion`),
//!   is looked up in the registry *for the calling tenant* on every request.
//!   Another tenant's version is simply not found: the isolation check is
//!   the lookup itself, and the adapter cache is keyed by (tenant, version).
//! - **Adapter cache** ([`adapters`]): loaded adapters, LRU under a byte
//!   budget, fetched from the artifact store with every file's sha256
//!   checked against the registry.
//! - **Hot-swap**: on `MODEL_PROMOTED`/`MODEL_ROLLED_BACK` (or when a request
//!   sees the registry ahead of what it serves) the new version is loaded in
//!   the background and smoke-checked (finite logits and a short
//!   generation); only then does the alias pointer switch. Requests hold an
//!   `Arc` of their adapter, so in-flight ones finish on the version they
//!   started with. If loading or the smoke check fails, the old version
//!   keeps serving, the champion is rolled back (or demoted to the base
//!   model when it was the first), the version is marked `failed`, and
//!   `forja_serving_degraded` is raised.
//! - **Generation** ([`Serving::generate`], the `generate` module):
//!   admission control (a cap on each tenant's sequences in flight and on
//!   the whole queue: over it, [`ServeError::Busy`] with a retry delay),
//!   grammars compiled off the async runtime on a few large-stack threads,
//!   jobs submitted to the batcher with the tenant as their fairness owner
//!   and a probe that drops them once the client is gone.
//!
//! - **Dictionary** ([`dictionary`]): each tenant's entity fixes rewrite
//!   its generated text, reloaded on `DICTIONARY_UPDATED`.
//!
//! It knows nothing of HTTP (forja-server translates the wire formats) or
//! of the control plane: it gets a store, an artifact store, the event bus
//! and a rollback callback.

pub mod adapters;
pub mod dictionary;
mod error;
mod generate;
pub mod metrics;

pub use error::{Result, ServeError};
pub use generate::{Admission, GenEvent, GenRequest, GenStream, GrammarLimits};
pub use metrics::Metrics;

use adapters::{AdapterCache, Key};
use forja_engine::lora::Adapter;
use forja_engine::{Batcher, BatcherConfig, Constraint, ConstraintCompiler, Engine, Job};
use forja_store::prelude::*;
use forja_store::{Artifacts, Event, EventBus, ModelVersion, Tenant, VersionStatus, CHAMPION};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// How long a cached dictionary is trusted without an event.
pub const DICTIONARY_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// How serving is set up.
#[derive(Debug, Clone)]
pub struct ServingConfig {
    /// Names that select the base model (`base` is always one). The first
    /// name without a `/` is what responses report.
    pub base_names: Vec<String>,
    /// Bytes of adapters the cache keeps loaded.
    pub adapter_budget: usize,
    /// Where fetched adapter files are written.
    pub adapter_dir: PathBuf,
    /// Sequences decoded together.
    pub max_batch: usize,
    /// A draft model for speculative decoding of requests decoding alone.
    pub draft: Option<(Arc<Engine>, forja_engine::speculative::SpecConfig)>,
    /// Caps on sequences in flight.
    pub admission: Admission,
    /// Caps on `response_format` grammars.
    pub grammar: GrammarLimits,
}

/// Takes a tenant's champion out after its version failed in serving:
/// rolls back to the previous champion, or demotes to the base model when
/// there is none. Called off the async runtime with the reason.
pub type Rollback = Arc<dyn Fn(&Tenant, &str) -> std::result::Result<(), String> + Send + Sync>;

/// What answers one request.
#[derive(Debug, Clone)]
pub struct Target {
    /// The id responses report: a base model name or a version id.
    pub model: String,
    /// The version, when an adapter serves.
    pub version: Option<ModelVersion>,
    /// The adapter to apply.
    pub adapter: Option<Arc<Adapter>>,
}

/// The serving state shared by every request.
pub struct Serving {
    engine: Arc<Engine>,
    batcher: Batcher,
    store: Arc<dyn Store>,
    artifacts: Artifacts,
    bus: Arc<dyn EventBus>,
    rollback: Rollback,
    cfg: ServingConfig,
    cache: Mutex<AdapterCache>,
    /// (tenant, alias) → the version id served for it now.
    pointers: Mutex<HashMap<(String, String), String>>,
    /// (tenant, version) swaps under way.
    swapping: Mutex<HashSet<Key>>,
    /// Versions that failed to load here (never tried again).
    failed: Mutex<HashSet<Key>>,
    /// Grammar compiler for the tokenizer, built on first use.
    compiler: OnceLock<std::result::Result<ConstraintCompiler, String>>,
    /// Compiled grammars by their text; requests get clones (which share
    /// the lexer tables llguidance builds while masking).
    grammars: Mutex<HashMap<String, Constraint>>,
    /// Grammar compilations running now (bounded).
    compiling: tokio::sync::Semaphore,
    /// Sequences in flight, per tenant and in all.
    inflight: Arc<generate::InFlight>,
    /// Each token's bytes (for log-probability reports), built on first use.
    pieces: OnceLock<Vec<Vec<u8>>>,
    /// Tenants' entity dictionaries, loaded on first use and dropped on
    /// `DICTIONARY_UPDATED`.
    dictionaries: Mutex<HashMap<String, (std::time::Instant, Arc<dictionary::Dictionary>)>>,
    /// Bumped on every `DICTIONARY_UPDATED`, so a load that raced with an
    /// update is not cached.
    dictionary_gen: std::sync::atomic::AtomicU64,
    /// Metrics.
    pub metrics: Metrics,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Serving({:?})", self.engine)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Serving {
    /// Starts the batcher for `engine`; adapters come from `artifacts`,
    /// the registry from `store`, promotions from `bus`.
    pub fn new(
        engine: Arc<Engine>,
        store: Arc<dyn Store>,
        artifacts: Artifacts,
        bus: Arc<dyn EventBus>,
        rollback: Rollback,
        cfg: ServingConfig,
        metrics: Metrics,
    ) -> Result<Arc<Self>> {
        let batcher = Batcher::start(
            engine.clone(),
            BatcherConfig { max_batch: cfg.max_batch.max(1), draft: cfg.draft.clone() },
        )?;
        let mut cfg = cfg;
        if !cfg.base_names.iter().any(|n| n == "base") {
            cfg.base_names.insert(0, "base".into());
        }
        Ok(Arc::new(Serving {
            cache: Mutex::new(AdapterCache::new(cfg.adapter_budget)),
            compiling: tokio::sync::Semaphore::new(cfg.grammar.max_concurrent.max(1)),
            inflight: Arc::default(),
            engine,
            batcher,
            store,
            artifacts,
            bus,
            rollback,
            cfg,
            pointers: Mutex::new(HashMap::new()),
            swapping: Mutex::new(HashSet::new()),
            failed: Mutex::new(HashSet::new()),
            compiler: OnceLock::new(),
            grammars: Mutex::new(HashMap::new()),
            pieces: OnceLock::new(),
            dictionaries: Mutex::new(HashMap::new()),
            dictionary_gen: std::sync::atomic::AtomicU64::new(0),
            metrics,
        }))
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The name responses use for the base model: the first name that is
    /// not a path (`default`, `tiny.gguf`).
    pub fn base_name(&self) -> &str {
        let names = &self.cfg.base_names;
        names.iter().find(|n| *n != "base" && !n.contains('/')).unwrap_or(&names[0])
    }

    /// Every name that selects the base model and may be shown to a
    /// client (a filesystem path never is).
    pub fn base_names(&self) -> Vec<&str> {
        self.cfg.base_names.iter().map(String::as_str).filter(|n| !n.contains('/')).collect()
    }

    /// Busy while a request is queued or generating: what background work
    /// on the same cores gives way to.
    pub fn foreground(&self) -> Arc<dyn forja_engine::Foreground> {
        self.batcher.stats().clone()
    }

    /// Queues a generation.
    fn submit(&self, job: Job) -> Result<()> {
        self.refresh_gauges();
        Ok(self.batcher.submit(job)?)
    }

    /// Copies the batcher's counters into the gauges.
    pub fn refresh_gauges(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.batcher.stats();
        self.metrics.batch_live.set(s.live.load(Relaxed) as i64);
        self.metrics.queued.set(s.queued.load(Relaxed) as i64);
        // Counters only grow: add what the batcher counted since last time.
        let m = &self.metrics;
        for (c, v) in [
            (&m.spec_drafted, &s.spec_drafted),
            (&m.spec_accepted, &s.spec_accepted),
            (&m.spec_fallbacks, &s.spec_fallbacks),
            (&m.preempted, &s.preempted),
            (&m.dropped, &s.dropped),
            (&m.panics, &s.panics),
        ] {
            c.inc_by((v.load(Relaxed) as u64).saturating_sub(c.get()));
        }
    }

    /// Which weights serve `model` for `tenant`.
    pub async fn resolve(self: &Arc<Self>, tenant: &Tenant, model: &str) -> Result<Target> {
        // A Hugging Face id (`HuggingFaceTB/SmolLM2-135M-Instruct`, also
        // with `@alias`) names the base; otherwise `owner/name` is the
        // tenant's own namespace.
        let names_base = self.is_base(model)
            || model.split_once('@').is_some_and(|(base, _)| self.is_base(base));
        let name = match model.split_once('/') {
            _ if names_base => model,
            Some((owner, rest)) if owner == tenant.name => rest,
            Some(_) => return Err(ServeError::not_found(model)),
            None => model,
        };
        if self.is_base(name) {
            return Ok(self.base_target());
        }
        if let Some((base, alias)) = name.split_once('@') {
            if !self.is_base(base) || alias.is_empty() {
                return Err(ServeError::not_found(model));
            }
            return self.resolve_alias(tenant, alias).await;
        }
        let v = self.version(tenant, name).await?.ok_or_else(|| ServeError::not_found(model))?;
        let adapter = self.adapter(tenant, &v).await?;
        Ok(Target { model: v.id.clone(), version: Some(v), adapter: Some(adapter) })
    }

    /// Whether `name` selects the base model (Hugging Face style ids
    /// compare case-insensitively, as the Hub does).
    fn is_base(&self, name: &str) -> bool {
        self.cfg
            .base_names
            .iter()
            .any(|n| n == name || (n.contains('/') && n.eq_ignore_ascii_case(name)))
    }

    fn base_target(&self) -> Target {
        Target { model: self.base_name().to_string(), version: None, adapter: None }
    }

    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> forja_store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| ServeError::Unavailable(format!("store task failed: {e}")))?
            .map_err(ServeError::from)
    }

    /// A version of `tenant` by id; `None` if the tenant has no such version.
    async fn version(&self, tenant: &Tenant, id: &str) -> Result<Option<ModelVersion>> {
        let (tid, id) = (tenant.id.clone(), id.to_string());
        match self.store(move |s| s.model_version(&tid, &id)).await {
            Ok(v) => Ok(Some(v)),
            Err(ServeError::Store(forja_store::StoreError::NotFound { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn resolve_alias(self: &Arc<Self>, tenant: &Tenant, alias: &str) -> Result<Target> {
        let (tid, name) = (tenant.id.clone(), alias.to_string());
        let current = self.store(move |s| s.find_alias(&tid, &name)).await?;
        let key = (tenant.id.clone(), alias.to_string());
        let Some(v) = current else {
            // No version promoted yet: the champion is the base model.
            if alias == CHAMPION {
                return Ok(self.base_target());
            }
            return Err(ServeError::NotFound(format!(
                "alias `{alias}` is not set for this tenant (PUT /v1/registry/aliases/{alias})"
            )));
        };
        let serving = lock(&self.pointers).get(&key).cloned();
        let failed = lock(&self.failed).contains(&(tenant.id.clone(), v.id.clone()));
        match serving {
            Some(id) if id == v.id => {}
            Some(old) => {
                // The registry moved ahead: swap in the background, serve
                // what we serve until the new version is ready.
                if !failed {
                    self.spawn_swap(tenant.clone(), alias.to_string(), v.clone());
                }
                if let Some(old) = self.version(tenant, &old).await? {
                    let adapter = self.adapter(tenant, &old).await?;
                    return Ok(Target {
                        model: old.id.clone(),
                        version: Some(old),
                        adapter: Some(adapter),
                    });
                }
            }
            None if failed => return Ok(self.base_target()),
            None => {
                // First request for this alias: load it now (checked like a swap).
                if let Err(e) = self.load_checked(tenant, &v).await {
                    self.fail(tenant, alias, &v, &e).await;
                    return Box::pin(self.resolve_alias(tenant, alias)).await;
                }
                lock(&self.pointers).insert(key, v.id.clone());
            }
        }
        let adapter = self.adapter(tenant, &v).await?;
        Ok(Target { model: v.id.clone(), version: Some(v), adapter: Some(adapter) })
    }

    /// The adapter of `v`, from the cache or the artifact store.
    async fn adapter(&self, tenant: &Tenant, v: &ModelVersion) -> Result<Arc<Adapter>> {
        if v.lineage.tenant_id != tenant.id {
            // Unreachable through the store (lookups are tenant-scoped); kept
            // so that no other path can hand out another tenant's weights.
            return Err(ServeError::not_found(&v.id));
        }
        if !self.is_base(&v.lineage.base_model) {
            return Err(ServeError::Invalid(format!(
                "version {} adapts `{}`, which this server does not serve (it serves {})",
                v.id,
                v.lineage.base_model,
                self.cfg.base_names.join(", ")
            )));
        }
        let key = (tenant.id.clone(), v.id.clone());
        if let Some(a) = lock(&self.cache).get(&key) {
            self.metrics.cache_hits.inc();
            return Ok(a);
        }
        self.metrics.cache_misses.inc();
        let a = self.fetch(v).await.inspect_err(|_| self.metrics.adapter_failures.inc())?;
        self.metrics.adapter_loads.inc();
        let mut cache = lock(&self.cache);
        let evicted = cache.insert(key, a.clone());
        self.metrics.evictions.inc_by(evicted as u64);
        self.metrics.cache_bytes.set(cache.bytes() as i64);
        Ok(a)
    }

    /// Downloads `v`'s files (each checked against its sha256) and loads them.
    async fn fetch(&self, v: &ModelVersion) -> Result<Arc<Adapter>> {
        let dir = self.cfg.adapter_dir.join(&v.id);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            ServeError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        for (name, sha) in &v.lineage.adapter_files {
            if name.contains('/') || name.contains("..") {
                return Err(ServeError::Load(format!("version {}: bad file name `{name}`", v.id)));
            }
            let path = dir.join(name);
            if path.is_file() && forja_store::sha256_file(&path).is_ok_and(|s| &s == sha) {
                continue;
            }
            let bytes = self
                .artifacts
                .get(sha)
                .await
                .map_err(|e| ServeError::Load(format!("version {}: file {name}: {e}", v.id)))?;
            // A unique temporary name: two requests may fetch the same version.
            static FETCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = FETCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
            tokio::fs::write(&tmp, &bytes)
                .await
                .and(tokio::fs::rename(&tmp, &path).await)
                .map_err(|e| {
                    ServeError::Unavailable(format!("cannot write {}: {e}", path.display()))
                })?;
        }
        let weights = v.lineage.adapter_files.get("adapter_model.safetensors");
        if weights != Some(&v.lineage.adapter_sha256) {
            return Err(ServeError::Load(format!(
                "version {}: adapter_model.safetensors does not match the registered sha256",
                v.id
            )));
        }
        let engine = self.engine.clone();
        let adapter = tokio::task::spawn_blocking(move || engine.load_adapter(&dir))
            .await
            .map_err(|e| ServeError::Load(format!("loader task failed: {e}")))?
            .map_err(|e| ServeError::Load(format!("version {}: {e}", v.id)))?;
        Ok(Arc::new(adapter))
    }

    /// Loads `v` and smoke-checks it: finite logits on a short prompt and a
    /// short greedy generation through the batcher.
    async fn load_checked(&self, tenant: &Tenant, v: &ModelVersion) -> Result<Arc<Adapter>> {
        let adapter = self.adapter(tenant, v).await?;
        let (engine, a) = (self.engine.clone(), adapter.clone());
        let prompt = smoke_prompt(&engine)?;
        let logits = {
            let prompt = prompt.clone();
            tokio::task::spawn_blocking(move || {
                let last = prompt.len() - 1;
                engine.logits_at(&prompt, &[last], Some(&a))
            })
            .await
            .map_err(|e| ServeError::Load(format!("smoke task failed: {e}")))??
        };
        if logits.iter().flatten().any(|l| !l.is_finite()) {
            return Err(ServeError::Load(format!(
                "version {}: the smoke check produced non-finite logits",
                v.id
            )));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let params = forja_core::GenerationParams {
            max_tokens: 4,
            ignore_eos: true,
            sampling: forja_core::SamplingParams::greedy(),
            ..Default::default()
        };
        let mut job = Job::new(
            forja_engine::Request { prompt, params },
            format!("smoke:{}", tenant.id),
            Box::new(move |ev| {
                if let forja_engine::JobEvent::Done(r) = ev {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(r.map(|c| c.tokens.len()));
                    }
                }
                true
            }),
        );
        job.adapter = Some(adapter.clone());
        self.submit(job)?;
        match rx.await {
            Ok(Ok(4)) => Ok(adapter),
            Ok(Ok(n)) => {
                Err(ServeError::Load(format!("smoke generation stopped after {n} tokens")))
            }
            Ok(Err(e)) => Err(ServeError::Load(format!("smoke generation failed: {e}"))),
            Err(_) => Err(ServeError::Unavailable("the batcher stopped".into())),
        }
    }

    fn spawn_swap(self: &Arc<Self>, tenant: Tenant, alias: String, v: ModelVersion) {
        let key = (tenant.id.clone(), v.id.clone());
        if !lock(&self.swapping).insert(key.clone()) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            match me.load_checked(&tenant, &v).await {
                Ok(_) => {
                    lock(&me.pointers).insert((tenant.id.clone(), alias.clone()), v.id.clone());
                    me.metrics.swaps.with_label_values(&["ok"]).inc();
                    me.metrics.set_degraded(&tenant.name, false);
                    tracing::info!(tenant = %tenant.name, %alias, version = %v.id, "hot-swapped");
                }
                Err(e) => me.fail(&tenant, &alias, &v, &e).await,
            }
            lock(&me.swapping).remove(&key);
        });
    }

    /// `v` failed to load: keep serving what we serve, take the champion
    /// out if it still points at `v` (roll back, or demote to the base
    /// model), mark `v` failed, raise the alert.
    async fn fail(&self, tenant: &Tenant, alias: &str, v: &ModelVersion, e: &ServeError) {
        tracing::error!(tenant = %tenant.name, version = %v.id, error = %e, "a promoted version failed to load; keeping the previous one");
        lock(&self.failed).insert((tenant.id.clone(), v.id.clone()));
        self.metrics.swaps.with_label_values(&["failed"]).inc();
        self.metrics.set_degraded(&tenant.name, true);
        let reason = format!("failed to load in serving: {e}");
        if alias == CHAMPION {
            let (tid, vid) = (tenant.id.clone(), v.id.clone());
            let still = self
                .store(move |s| s.find_alias(&tid, CHAMPION))
                .await
                .ok()
                .flatten()
                .is_some_and(|c| c.id == vid);
            if still {
                let (rollback, t, why) = (self.rollback.clone(), tenant.clone(), reason.clone());
                let r = tokio::task::spawn_blocking(move || rollback(&t, &why)).await;
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::warn!(error = %err, "cannot take the champion out"),
                    Err(err) => tracing::warn!(error = %err, "the rollback task failed"),
                }
            }
        }
        let (tid, vid) = (tenant.id.clone(), v.id.clone());
        let marked = self
            .store(move |s| {
                s.set_version_status(&tid, &vid, VersionStatus::Failed, &reason, "serving")
            })
            .await;
        if let Err(err) = marked {
            tracing::warn!(error = %err, "cannot mark the version as failed");
        }
    }

    /// Follows promotions and rollbacks: every alias served here whose
    /// registry target moved is swapped in the background.
    pub fn watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let mut rx = self.bus.subscribe();
        tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let (tenant, version, alias) = match ev {
                    Event::ModelPromoted { tenant, version, alias, .. } => (tenant, version, alias),
                    Event::ModelRolledBack { tenant, version: Some(version), alias, .. } => {
                        (tenant, version, alias)
                    }
                    Event::DictionaryUpdated { tenant, .. } => {
                        me.dictionary_gen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        lock(&me.dictionaries).remove(&tenant);
                        continue;
                    }
                    Event::ModelRolledBack { tenant, version: None, alias, .. } => {
                        // Demoted: the base model serves (resolution sees no alias).
                        lock(&me.pointers).remove(&(tenant, alias));
                        continue;
                    }
                    _ => continue,
                };
                let served = lock(&me.pointers).get(&(tenant.clone(), alias.clone())).cloned();
                if served.is_none() || served.as_deref() == Some(version.as_str()) {
                    continue;
                }
                let t = tenant.clone();
                let Ok(tenant) = me.store(move |s| s.tenant(&t)).await else { continue };
                if let Ok(Some(v)) = me.version(&tenant, &version).await {
                    if !lock(&me.failed).contains(&(tenant.id.clone(), v.id.clone())) {
                        me.spawn_swap(tenant, alias, v);
                    }
                }
            }
        })
    }

    /// The tenant's versions and aliases (for `/v1/models`).
    pub async fn models(
        &self,
        tenant: &Tenant,
    ) -> Result<(Vec<ModelVersion>, Vec<forja_store::Alias>)> {
        let tid = tenant.id.clone();
        self.store(move |s| Ok((s.model_versions(&tid)?, s.aliases(&tid)?))).await
    }

    /// The tenant's entity dictionary: cached until `DICTIONARY_UPDATED`
    /// (this process's changes, seen at once) and re-read after
    /// [`DICTIONARY_TTL`] (changes made by another process, such as
    /// `forja dictionary add` on the same database).
    pub async fn dictionary(&self, tenant: &Tenant) -> Result<Arc<dictionary::Dictionary>> {
        if let Some((at, d)) = lock(&self.dictionaries).get(&tenant.id) {
            if at.elapsed() < DICTIONARY_TTL {
                return Ok(d.clone());
            }
        }
        let generation = self.dictionary_gen.load(std::sync::atomic::Ordering::SeqCst);
        let tid = tenant.id.clone();
        let entries = self.store(move |s| s.dictionary(&tid)).await?;
        let pairs: Vec<(String, String)> =
            entries.into_iter().map(|e| (e.wrong, e.right)).collect();
        let d = Arc::new(dictionary::Dictionary::new(&pairs));
        let mut cache = lock(&self.dictionaries);
        if self.dictionary_gen.load(std::sync::atomic::Ordering::SeqCst) == generation {
            cache.insert(tenant.id.clone(), (std::time::Instant::now(), d.clone()));
        }
        Ok(d)
    }

    /// The version id served for `(tenant, alias)` now, if any.
    pub fn serving(&self, tenant_id: &str, alias: &str) -> Option<String> {
        lock(&self.pointers).get(&(tenant_id.to_string(), alias.to_string())).cloned()
    }
}

/// A short chat prompt for smoke checks.
fn smoke_prompt(engine: &Engine) -> Result<Vec<u32>> {
    let msgs = [forja_core::ChatMessage::user("Hello")];
    let text = match engine.render_chat(&msgs, true) {
        Ok(t) => t,
        Err(_) => "Hello".to_string(),
    };
    Ok(engine.tokenizer().encode(&text, !engine.has_chat_template())?)
}
