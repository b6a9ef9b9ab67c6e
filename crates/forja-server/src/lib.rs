//! forja's HTTP API (axum), OpenAI-compatible where OpenAI has the
//! endpoint: chat completions, completions, models and embeddings served
//! per tenant (base, version or `name@alias`), files and fine-tuning jobs
//! (with events and checkpoints), the model registry, `/metrics`, plus
//! forja's feedback and learning status, the admin API (keys, tenants),
//! the worker protocol, and signed artifact downloads.
//! [`client::RemoteLink`] is the worker side of that protocol, and
//! [`node`] assembles a whole node (store, control plane, serving,
//! workers, background tasks) around [`router`].
//!
//! Handlers authenticate, read JSON into the server's own wire types
//! ([`wire`], `infer_wire`), call the control plane or serving, and build
//! the response objects by hand; every decision is made in forja-control,
//! forja-serve and forja-store. Every route has a body limit; every error
//! is one JSON line; a panic in a handler is an opaque 500 with a request
//! id, never a dropped connection or a crashed node.
//!
//! ```no_run
//! # async fn demo(state: forja_server::AppState) {
//! use tower::ServiceExt;
//! let app = forja_server::router(state);
//! let req = axum::http::Request::get("/health").body(axum::body::Body::empty()).unwrap();
//! let resp = app.oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), 200);
//! # }
//! ```

mod admin_api;
mod api;
mod auth;
mod charts;
pub mod client;
mod conversations_api;
mod documents_api;
mod error;
mod follow;
mod governance_api;
mod hub_api;
pub mod hub_client;
mod infer_wire;
mod inference;
mod knowledge_api;
pub mod live_config;
mod logprobs;
mod memory;
mod memory_api;
mod middleware;
pub mod node;
mod node_metrics;
mod ops_api;
mod rag;
mod registry_api;
pub mod supervisor;
pub mod web;
pub mod wire;
mod worker_api;

pub use auth::TENANT_HEADER;
pub use error::{request_id, ApiError};
pub use follow::Followers;

use axum::routing::{get, post, put};
use axum::Router;
use forja_control::Control;
use forja_serve::{Metrics, Serving};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Limits on requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest `max_tokens` accepted (also the default).
    pub max_tokens_cap: usize,
    /// A generation still running after this is cancelled (504).
    pub request_timeout: Duration,
    /// Largest inference request body, bytes.
    pub max_body: usize,
    /// Largest JSON body of every other route, bytes.
    pub max_json: usize,
    /// Largest upload (files, golden sets, worker artifacts), bytes.
    pub max_upload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tokens_cap: 2048,
            request_timeout: Duration::from_secs(300),
            max_body: 4 << 20,
            max_json: 1 << 20,
            max_upload: 512 << 20,
        }
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    /// A bearer token that reads the metrics (Prometheus' `bearer_token`).
    pub token: Option<String>,
    /// Series carry tenant names: then only the token or an admin key
    /// reads them, even without a token configured.
    pub tenant_labels: bool,
}

/// The sentence embedder behind `/v1/embeddings` and the names that select it.
#[derive(Debug, Clone)]
pub struct EmbeddingModel {
    /// The model.
    pub embedder: Arc<forja_engine::Embedder>,
    /// Names a request may use (`model`), compared case-insensitively.
    pub names: Vec<String>,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// The control plane.
    pub control: Arc<Control>,
    /// Set once the model is loaded (`/ready`).
    pub ready: Arc<AtomicBool>,
    /// Serving, once the model is loaded.
    pub serving: Arc<OnceLock<Arc<Serving>>>,
    /// Serving metrics (exported even before the model is loaded).
    pub metrics: Metrics,
    /// Request limits.
    pub limits: Limits,
    /// `/v1/embeddings`, when an embedder is configured.
    pub embedder: Option<EmbeddingModel>,
    /// The URL workers reach this node at (signed download URLs name it;
    /// never taken from a request's `Host`).
    pub public_url: String,
    /// Who may read `/metrics`.
    pub metrics_access: MetricsAccess,
    /// Open job event streams, per tenant.
    pub followers: Followers,
    /// When the node started (the admin view's uptime).
    pub started: std::time::Instant,
    /// In-process training workers.
    pub workers: usize,
    /// The federation hub, when this node is one.
    pub hub: Option<Arc<forja_control::hub::Hub>>,
    /// The tenants' knowledge bases.
    pub knowledge: Arc<forja_control::knowledge::Knowledge>,
    /// Chat turns waiting for entity-memory extraction.
    pub memory: memory::Extractor,
    /// The node's own metrics (derived from the store at scrape time).
    pub node_metrics: Arc<node_metrics::NodeMetrics>,
    /// Settings a configuration reload changes.
    pub live: Arc<live_config::LiveConfig>,
    /// Crashes of the node's background work.
    pub health: Arc<supervisor::Health>,
    /// The task scheduler (`forja tasks run` through the API).
    pub scheduler: Arc<forja_control::tasks::Scheduler>,
}

impl AppState {
    /// Runs `f` on a blocking thread (store calls may wait for a lock); a
    /// panic there is an internal error.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Control) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let c = self.control.clone();
        tokio::task::spawn_blocking(move || f(&c))
            .await
            .unwrap_or_else(|e| Err(ApiError::Internal(format!("a request task failed: {e}"))))
    }
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    use axum::extract::DefaultBodyLimit;
    let l = &state.limits;
    let inference = Router::new()
        .route("/v1/chat/completions", post(inference::chat))
        .route("/v1/completions", post(inference::completions))
        .route("/v1/embeddings", post(inference::embeddings))
        .route("/v1/models", get(inference::models))
        .layer(DefaultBodyLimit::max(l.max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), inference::track));
    let uploads = Router::new()
        .route("/v1/files", post(api::upload_file).get(api::list_files))
        .route("/v1/registry/golden", post(registry_api::add_golden).get(registry_api::list_golden))
        .route("/v1/worker/jobs/{id}/artifacts", put(worker_api::upload))
        .route("/v1/federation/blobs/{sha}", put(hub_api::put_chunk).get(hub_api::get_blob))
        .layer(DefaultBodyLimit::max(l.max_upload));
    let knowledge_upload = Router::new()
        .route(
            "/v1/knowledge/sources",
            post(knowledge_api::add_source).get(knowledge_api::list_sources),
        )
        .layer(DefaultBodyLimit::max(forja_knowledge::extract::MAX_DOCUMENT_BYTES + (64 << 10)));
    let documents = Router::new()
        .route("/v1/corrections", post(documents_api::corrections))
        .layer(DefaultBodyLimit::max(forja_control::documents::MAX_DOCUMENT_BYTES + (64 << 10)));
    let json = Router::new()
        .route("/metrics", get(inference::metrics))
        .route("/health", get(|| async { "ok" }))
        .route("/", get(web::index))
        .route("/assets/{*path}", get(web::asset))
        .route("/favicon.svg", get(web::favicon))
        .route("/ready", get(ready))
        .route("/v1/files/{id}", get(api::get_file).delete(api::delete_file))
        .route("/v1/files/{id}/content", get(api::file_content))
        .route("/v1/fine_tuning/jobs", post(api::create_job).get(api::list_jobs))
        .route("/v1/fine_tuning/jobs/{id}", get(api::get_job))
        .route("/v1/fine_tuning/jobs/{id}/cancel", post(api::cancel_job))
        .route("/v1/fine_tuning/jobs/{id}/events", get(api::job_events))
        .route("/v1/fine_tuning/jobs/{id}/events/stream", get(follow::job_events))
        .route("/v1/whoami", get(api::whoami))
        .route("/v1/conversations", get(conversations_api::list).post(conversations_api::create))
        .route(
            "/v1/conversations/{id}",
            get(conversations_api::get)
                .patch(conversations_api::update)
                .delete(conversations_api::delete),
        )
        .route("/v1/conversations/{id}/messages", post(conversations_api::append))
        .route(
            "/v1/knowledge/sources/{id}",
            get(knowledge_api::get_source).delete(knowledge_api::delete_source),
        )
        .route("/v1/knowledge/sources/{id}/content", get(knowledge_api::source_content))
        .route("/v1/knowledge/search", post(knowledge_api::search))
        .route("/v1/knowledge/feeds", post(knowledge_api::add_feed).get(knowledge_api::list_feeds))
        .route("/v1/knowledge/feeds/{id}", axum::routing::delete(knowledge_api::delete_feed))
        .route("/v1/knowledge/feeds/{id}/poll", post(knowledge_api::poll_feed))
        .route("/v1/memory/facts", get(memory_api::list).post(memory_api::add))
        .route(
            "/v1/memory/facts/{id}",
            get(memory_api::get).patch(memory_api::edit).delete(memory_api::delete),
        )
        .route("/v1/memory/forget", post(memory_api::forget))
        .route("/v1/memory/extract", post(memory_api::extract))
        .route("/v1/memory/rejections", get(memory_api::rejections))
        .route("/v1/conversations/{id}/export", get(conversations_api::export))
        .route(
            "/v1/modes",
            get(conversations_api::modes)
                .put(conversations_api::save_modes)
                .delete(conversations_api::reset_modes),
        )
        .route("/v1/fine_tuning/jobs/{id}/checkpoints", get(api::job_checkpoints))
        .route("/v1/fine_tuning/jobs/{id}/loss.png", get(charts::job_loss))
        .route("/v1/registry/models/{id}/loss.png", get(charts::version_loss))
        .route("/v1/registry/metrics.png", get(charts::version_metrics))
        .route("/v1/feedback", post(api::feedback))
        .route("/v1/documents", get(documents_api::list).post(documents_api::create))
        .route("/v1/documents/{id}", get(documents_api::get).delete(documents_api::delete))
        .route("/v1/documents/{id}/content", get(documents_api::content))
        .route("/v1/dictionary", get(documents_api::dictionary).post(documents_api::add))
        .route("/v1/dictionary/{wrong}", axum::routing::delete(documents_api::remove))
        .route("/v1/learning/status", get(api::learning_status))
        .route("/v1/learning/train", post(api::train_now))
        .route("/v1/learning/release", post(api::release_held))
        .route("/v1/registry/golden/{id}", get(registry_api::get_golden))
        .route("/v1/registry/models", get(registry_api::list_versions))
        .route("/v1/registry/models/{id}", get(registry_api::get_version))
        .route("/v1/registry/models/{id}/lineage", get(registry_api::lineage))
        .route("/v1/registry/models/{id}/eval", get(registry_api::eval_report))
        .route("/v1/registry/models/{id}/promote", post(registry_api::promote))
        .route("/v1/registry/rollback", post(registry_api::rollback))
        .route("/v1/registry/aliases", get(registry_api::list_aliases))
        .route("/v1/registry/aliases/{name}", put(registry_api::set_alias))
        .route("/v1/registry/log", get(registry_api::log))
        .route("/v1/registry/auditors", get(governance_api::tenant_auditors))
        .route(
            "/v1/registry/models/{id}/votes",
            get(governance_api::audit).post(governance_api::vote),
        )
        .route(
            "/v1/admin/auditors",
            get(governance_api::admin_auditors).post(governance_api::add_auditor),
        )
        .route("/v1/admin/auditors/{name}/activate", post(governance_api::activate))
        .route("/v1/admin/auditors/{name}/deactivate", post(governance_api::deactivate))
        .route("/v1/admin/ledger", get(governance_api::ledger))
        .route("/v1/admin/ledger/verify", get(governance_api::verify_ledger))
        .route("/v1/federation/hub", get(hub_api::describe))
        .route("/v1/federation/join", post(hub_api::join))
        .route("/v1/federation/whoami", get(hub_api::whoami))
        .route("/v1/federation/blobs/{sha}/status", get(hub_api::blob_status))
        .route("/v1/federation/deltas", post(hub_api::submit))
        .route("/v1/federation/rounds", get(hub_api::rounds))
        .route("/v1/admin/federation/nodes", get(hub_api::list_nodes))
        .route("/v1/admin/federation/nodes/{key}/approve", post(hub_api::approve))
        .route("/v1/admin/federation/nodes/{key}/revoke", post(hub_api::revoke))
        .route("/v1/admin/node", get(admin_api::node))
        .route("/v1/admin/config", get(ops_api::config))
        .route("/v1/admin/config/reload", post(ops_api::reload))
        .route("/v1/admin/tasks", get(ops_api::tasks))
        .route("/v1/admin/tasks/{name}/runs", get(ops_api::runs))
        .route("/v1/admin/tasks/{name}/run", post(ops_api::run_task))
        .route("/v1/admin/keys", get(admin_api::list_keys).post(admin_api::create_key))
        .route("/v1/admin/keys/{id}/revoke", post(admin_api::revoke_key))
        .route("/v1/admin/keys/{id}/rotate", post(admin_api::rotate_key))
        .route("/v1/admin/tenants", get(admin_api::list_tenants).post(admin_api::create_tenant))
        .route(
            "/v1/admin/tenants/{name}",
            get(admin_api::get_tenant).patch(admin_api::update_tenant),
        )
        .route("/v1/worker/lease", post(worker_api::lease))
        .route("/v1/worker/jobs/{id}/heartbeat", post(worker_api::heartbeat))
        .route("/v1/worker/jobs/{id}/events", post(worker_api::event))
        .route("/v1/worker/jobs/{id}/checkpoints", post(worker_api::checkpoint))
        .route("/v1/worker/jobs/{id}/finish", post(worker_api::finish))
        .route("/v1/artifacts/{sha}", get(worker_api::download))
        .layer(DefaultBodyLimit::max(l.max_json));
    middleware::harden(
        Router::new()
            .merge(json)
            .merge(uploads)
            .merge(documents)
            .merge(knowledge_upload)
            .merge(inference),
    )
    .with_state(state)
}

async fn ready(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(why) = s.health.degraded() {
        ApiError::Degraded(why).into_response()
    } else if s.ready.load(Ordering::SeqCst) {
        "ready".into_response()
    } else {
        ApiError::NotReady.into_response()
    }
}
