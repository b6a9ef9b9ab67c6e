//! The worker protocol: lease, heartbeat, events, artifact upload (hash
//! checked), checkpoints, finish; and signed, expiring artifact downloads.

use crate::api::parse;
use crate::auth::WorkerAuth;
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use forja_control::worker::lease_from_store;
use forja_store::{Capacity, Finish, Level, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Seconds a signed download URL stays valid.
const URL_TTL_S: i64 = 600;

/// `POST /v1/worker/lease` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// The worker's id.
    pub worker: String,
    /// What it can run.
    pub capacity: Capacity,
}

/// Heartbeat body.
#[derive(Debug, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// The worker's id.
    pub worker: String,
    /// Steps done.
    pub step: u64,
    /// Steps planned.
    pub total_steps: u64,
}

/// Event body.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventRequest {
    /// The worker's id.
    pub worker: String,
    /// Severity.
    pub level: Level,
    /// Text.
    pub message: String,
    /// Metrics.
    pub data: Option<Value>,
}

/// Checkpoint body.
#[derive(Debug, Serialize, Deserialize)]
pub struct CheckpointRequest {
    /// The worker's id.
    pub worker: String,
    /// Step.
    pub step: u64,
    /// Files (already uploaded): path → sha256.
    pub files: BTreeMap<String, String>,
    /// Metrics.
    pub metrics: Value,
}

/// Finish body.
#[derive(Debug, Serialize, Deserialize)]
pub struct FinishRequest {
    /// The worker's id.
    pub worker: String,
    /// Outcome.
    pub outcome: FinishWire,
}

/// [`Finish`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum FinishWire {
    /// An adapter.
    Succeeded {
        /// Tokens.
        trained_tokens: u64,
        /// Name.
        fine_tuned_model: String,
        /// Weights hash.
        adapter_sha256: String,
        /// Details.
        result: Box<forja_store::JobResult>,
    },
    /// An error.
    Failed {
        /// The error.
        error: forja_store::JobError,
    },
}

impl From<Finish> for FinishWire {
    fn from(f: Finish) -> Self {
        match f {
            Finish::Succeeded { trained_tokens, fine_tuned_model, adapter_sha256, result } => {
                FinishWire::Succeeded { trained_tokens, fine_tuned_model, adapter_sha256, result }
            }
            Finish::Failed(error) => FinishWire::Failed { error },
        }
    }
}

impl From<FinishWire> for Finish {
    fn from(f: FinishWire) -> Self {
        match f {
            FinishWire::Succeeded { trained_tokens, fine_tuned_model, adapter_sha256, result } => {
                Finish::Succeeded { trained_tokens, fine_tuned_model, adapter_sha256, result }
            }
            FinishWire::Failed { error } => Finish::Failed(error),
        }
    }
}

/// `POST /v1/worker/lease`: 200 with the lease (signed URLs for its
/// artifacts), or 204 when nothing fits.
pub async fn lease(
    State(s): State<AppState>,
    _: WorkerAuth,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: LeaseRequest = parse(&body)?;
    let ttl = s.control.cfg.lease_ttl_s;
    let lease =
        s.run(move |c| Ok(lease_from_store(&*c.store, &req.worker, &req.capacity, ttl)?)).await?;
    let Some(mut lease) = lease else { return Ok(StatusCode::NO_CONTENT.into_response()) };
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let expires = s.control.store.now() + URL_TTL_S;
    let mut shas = vec![lease.training_sha.clone()];
    shas.extend(lease.validation_sha.clone());
    shas.extend(lease.checkpoint.iter().flat_map(|c| c.files.values().cloned()));
    if let Some(plan) = &lease.eval {
        shas.push(plan.golden_sha256.clone());
        shas.extend(plan.baseline_files.values().cloned());
    }
    for sha in shas {
        let sig = s.control.sign(&sha, expires);
        lease.urls.insert(
            sha.clone(),
            format!("http://{host}/v1/artifacts/{sha}?expires={expires}&sig={sig}"),
        );
    }
    Ok(Json(lease).into_response())
}

/// Signed download query.
#[derive(Debug, Deserialize)]
pub struct Signed {
    expires: i64,
    sig: String,
}

/// `GET /v1/artifacts/{sha}?expires=&sig=`.
pub async fn download(
    State(s): State<AppState>,
    Path(sha): Path<String>,
    Query(q): Query<Signed>,
) -> Result<Response, ApiError> {
    if !s.control.verify(&sha, q.expires, &q.sig) {
        return Err(ApiError::Forbidden(
            "this artifact: the signed URL is invalid or expired; lease again",
        ));
    }
    let bytes = s.control.artifacts.get(&sha).await?;
    Ok(([("content-type", "application/octet-stream")], bytes).into_response())
}

/// `POST /v1/worker/jobs/{id}/heartbeat`.
pub async fn heartbeat(
    State(s): State<AppState>,
    _: WorkerAuth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: HeartbeatRequest = parse(&body)?;
    let ttl = s.control.cfg.lease_ttl_s;
    let j = s
        .run(move |c| Ok(c.store.heartbeat(&id, &r.worker, ttl, (r.step, r.total_steps))?))
        .await?;
    Ok(Json(json!({"status": j.status.as_str(), "lease_until": j.lease_until})))
}

/// `POST /v1/worker/jobs/{id}/events`.
pub async fn event(
    State(s): State<AppState>,
    _: WorkerAuth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: EventRequest = parse(&body)?;
    s.run(move |c| {
        Ok(c.store.worker_event(&id, &r.worker, r.level, &r.message, r.data.as_ref())?)
    })
    .await?;
    Ok(Json(json!({"ok": true})))
}

/// `PUT /v1/worker/jobs/{id}/artifacts` with `X-Forja-Sha256`: the body
/// must hash to it, or nothing is stored.
pub async fn upload(
    State(s): State<AppState>,
    _: WorkerAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let declared = headers
        .get("x-forja-sha256")
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| {
            ApiError::bad(
                "x-forja-sha256",
                "the header X-Forja-Sha256 (hex sha256 of the body) is required",
            )
        })?
        .to_string();
    let worker =
        headers.get("x-forja-worker").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    s.run(move |c| Ok(c.store.lease_holder(&id, &worker)?)).await?;
    let sha = s.control.artifacts.put_verified(body, &declared).await?;
    Ok(Json(json!({"sha256": sha})))
}

/// `POST /v1/worker/jobs/{id}/checkpoints`.
pub async fn checkpoint(
    State(s): State<AppState>,
    _: WorkerAuth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: CheckpointRequest = parse(&body)?;
    for sha in r.files.values() {
        if !s.control.artifacts.contains(sha).await? {
            return Err(StoreError::ArtifactMissing { sha256: sha.clone() }.into());
        }
    }
    let ck = s
        .run(move |c| Ok(c.store.add_checkpoint(&id, &r.worker, r.step, &r.files, &r.metrics)?))
        .await?;
    Ok(Json(json!({"id": ck.id})))
}

/// `POST /v1/worker/jobs/{id}/finish`.
pub async fn finish(
    State(s): State<AppState>,
    _: WorkerAuth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: FinishRequest = parse(&body)?;
    if let FinishWire::Succeeded { result, adapter_sha256, .. } = &r.outcome {
        for sha in result.adapter_files.values().chain([adapter_sha256]) {
            if !s.control.artifacts.contains(sha).await? {
                return Err(StoreError::ArtifactMissing { sha256: sha.clone() }.into());
            }
        }
    }
    let j = s.run(move |c| Ok(c.store.finish(&id, &r.worker, &r.outcome.into())?)).await?;
    s.control.job_changed(&j);
    Ok(Json(json!({"status": j.status.as_str()})))
}
