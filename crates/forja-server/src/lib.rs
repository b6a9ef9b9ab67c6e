//! forja's HTTP API (axum), OpenAI-compatible where OpenAI has the
//! endpoint: chat completions, completions, models and embeddings served
//! per tenant (base, version or `name@alias`), files and fine-tuning jobs
//! (with events and checkpoints), the model registry, `/metrics`, plus
//! forja's feedback and learning status, the worker protocol, and signed
//! artifact downloads. [`client::RemoteLink`] is the worker side of that
//! protocol.
//!
//! Handlers authenticate, translate JSON to the control plane's types and
//! back; every decision is made in forja-control and forja-store.

mod api;
mod auth;
pub mod client;
mod error;
mod grammar;
mod infer_wire;
mod inference;
mod registry_api;
mod wire;
mod worker_api;

pub use error::ApiError;

use axum::routing::{get, post, put};
use axum::Router;
use forja_control::Control;
use forja_serve::{Metrics, Serving};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Limits on inference requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest `max_tokens` accepted (also the default).
    pub max_tokens_cap: usize,
    /// A generation still running after this is cancelled (504).
    pub request_timeout: Duration,
    /// Largest inference request body, bytes.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tokens_cap: 2048,
            request_timeout: Duration::from_secs(300),
            max_body: 4 << 20,
        }
    }
}

/// The sentence embedder behind `/v1/embeddings` and the names that select it.
#[derive(Debug, Clone)]
pub struct EmbeddingModel {
    /// The model.
    pub embedder: Arc<forja_engine::Embedder>,
    /// Names a request may use (`model`).
    pub names: Vec<String>,
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// The control plane.
    pub control: Arc<Control>,
    /// Set once the model is loaded (`/ready`).
    pub ready: Arc<AtomicBool>,
    /// Largest upload accepted, bytes.
    pub max_upload: usize,
    /// Serving, once the model is loaded.
    pub serving: Arc<OnceLock<Arc<Serving>>>,
    /// Serving metrics (exported even before the model is loaded).
    pub metrics: Metrics,
    /// Inference limits.
    pub limits: Limits,
    /// `/v1/embeddings`, when an embedder is configured.
    pub embedder: Option<EmbeddingModel>,
}

impl AppState {
    /// Runs `f` on a blocking thread (store calls may wait for a lock).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Control) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let c = self.control.clone();
        tokio::task::spawn_blocking(move || f(&c)).await.unwrap_or_else(|e| {
            Err(ApiError::Client { url: "internal".into(), reason: e.to_string() })
        })
    }
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let max = state.max_upload;
    let inference = Router::new()
        .route("/v1/chat/completions", post(inference::chat))
        .route("/v1/completions", post(inference::completions))
        .route("/v1/embeddings", post(inference::embeddings))
        .route("/v1/models", get(inference::models))
        .layer(axum::extract::DefaultBodyLimit::max(state.limits.max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), inference::track));
    Router::new()
        .route("/metrics", get(inference::metrics))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/v1/files", post(api::upload_file).get(api::list_files))
        .route("/v1/files/{id}", get(api::get_file))
        .route("/v1/files/{id}/content", get(api::file_content))
        .route("/v1/fine_tuning/jobs", post(api::create_job).get(api::list_jobs))
        .route("/v1/fine_tuning/jobs/{id}", get(api::get_job))
        .route("/v1/fine_tuning/jobs/{id}/cancel", post(api::cancel_job))
        .route("/v1/fine_tuning/jobs/{id}/events", get(api::job_events))
        .route("/v1/fine_tuning/jobs/{id}/checkpoints", get(api::job_checkpoints))
        .route("/v1/feedback", post(api::feedback))
        .route("/v1/learning/status", get(api::learning_status))
        .route("/v1/learning/train", post(api::train_now))
        .route("/v1/registry/golden", post(registry_api::add_golden).get(registry_api::list_golden))
        .route("/v1/registry/models", get(registry_api::list_versions))
        .route("/v1/registry/models/{id}", get(registry_api::get_version))
        .route("/v1/registry/models/{id}/lineage", get(registry_api::lineage))
        .route("/v1/registry/models/{id}/eval", get(registry_api::eval_report))
        .route("/v1/registry/models/{id}/promote", post(registry_api::promote))
        .route("/v1/registry/rollback", post(registry_api::rollback))
        .route("/v1/registry/aliases", get(registry_api::list_aliases))
        .route("/v1/registry/aliases/{name}", put(registry_api::set_alias))
        .route("/v1/registry/log", get(registry_api::log))
        .route("/v1/worker/lease", post(worker_api::lease))
        .route("/v1/worker/jobs/{id}/heartbeat", post(worker_api::heartbeat))
        .route("/v1/worker/jobs/{id}/events", post(worker_api::event))
        .route("/v1/worker/jobs/{id}/artifacts", put(worker_api::upload))
        .route("/v1/worker/jobs/{id}/checkpoints", post(worker_api::checkpoint))
        .route("/v1/worker/jobs/{id}/finish", post(worker_api::finish))
        .route("/v1/artifacts/{sha}", get(worker_api::download))
        .layer(axum::extract::DefaultBodyLimit::max(max))
        .merge(inference)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn ready(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if s.ready.load(Ordering::SeqCst) {
        "ready".into_response()
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "loading the model").into_response()
    }
}
