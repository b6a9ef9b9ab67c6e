//! The worker protocol: lease, heartbeat, events, artifact upload (hash
//! checked), checkpoints, finish; and signed, expiring artifact downloads.
//!
//! A lease answers only to the worker key that took it and the secret
//! token it came with (`X-Forja-Lease` on every call about the job): a
//! second worker key using the first worker's name is refused with 409.
//! Download URLs name the node's configured public URL, never the
//! request's `Host`.

use crate::auth::WorkerAuth;
use crate::wire::parse;
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use forja_control::link::lease_from_store;
use forja_store::{Capacity, Finish, LeaseRef, Level, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Seconds a signed download URL stays valid.
const URL_TTL_S: i64 = 600;

/// The header that carries a lease's token.
pub const LEASE_HEADER: &str = "x-forja-lease";

fn token(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get(LEASE_HEADER)
        .and_then(|h| h.to_str().ok())
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad(LEASE_HEADER, "the lease's token (X-Forja-Lease) is required"))
}

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
    WorkerAuth(key): WorkerAuth,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: LeaseRequest = parse(&body)?;
    if req.worker.is_empty() || req.worker.len() > 128 {
        return Err(ApiError::bad("worker", "a worker name of 1 to 128 characters"));
    }
    let ttl = s.control.cfg.lease_ttl_s;
    let mut cap = req.capacity;
    if let Some(models) = &mut cap.models {
        // A worker names models as it loads them (a path, a file name, a
        // catalog name); jobs name this node's base model by its public name.
        for m in models.iter_mut() {
            if let Some(public) = s.control.cfg.model.canonical(m) {
                *m = public.to_string();
            }
        }
    }
    let lease =
        s.run(move |c| Ok(lease_from_store(&*c.store, &req.worker, &key, &cap, ttl)?)).await?;
    let Some(mut lease) = lease else { return Ok(StatusCode::NO_CONTENT.into_response()) };
    let base = s.public_url.trim_end_matches('/').to_string();
    let expires = s.control.store.now() + URL_TTL_S;
    let mut shas = vec![lease.training_sha.clone()];
    shas.extend(lease.validation_sha.clone());
    shas.extend(lease.checkpoint.iter().flat_map(|c| c.files.values().cloned()));
    if let Some(plan) = &lease.eval {
        shas.push(plan.golden_sha256.clone());
        shas.extend(plan.baseline_files.values().cloned());
        shas.extend(plan.cached.iter().map(|c| c.report_sha256.clone()));
    }
    if let Some(init) = &lease.init {
        shas.extend(init.files.values().cloned());
    }
    let ttl = std::time::Duration::from_secs(URL_TTL_S as u64);
    for sha in shas.into_iter().filter(|s| !s.is_empty()) {
        let sig = s.control.sign(&sha, expires);
        // An S3 store also hands out presigned URLs: the bytes then go from
        // the bucket to the worker without passing through this node.
        match s.control.artifacts.presigned_get(&sha, ttl).await {
            Ok(Some(url)) => {
                lease.direct_urls.insert(sha.clone(), url);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot presign sha256:{sha}: {e}"),
        }
        lease
            .urls
            .insert(sha.clone(), format!("{base}/v1/artifacts/{sha}?expires={expires}&sig={sig}"));
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
            "this artifact: the signed URL is invalid or expired; lease again".into(),
        ));
    }
    let bytes = s.control.artifacts.get(&sha).await?;
    Ok(([("content-type", "application/octet-stream")], bytes).into_response())
}

/// `POST /v1/worker/jobs/{id}/heartbeat`.
pub async fn heartbeat(
    State(s): State<AppState>,
    WorkerAuth(key): WorkerAuth,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: HeartbeatRequest = parse(&body)?;
    let tok = token(&headers)?;
    let ttl = s.control.cfg.lease_ttl_s;
    let j = s
        .run(move |c| {
            let by = LeaseRef { worker: &r.worker, key: &key, token: &tok };
            Ok(c.store.heartbeat(&id, &by, ttl, (r.step, r.total_steps))?)
        })
        .await?;
    Ok(Json(json!({"status": j.status.as_str(), "lease_until": j.lease_until})))
}

/// `POST /v1/worker/jobs/{id}/events` (a message of at most 2000
/// characters: tenants read these).
pub async fn event(
    State(s): State<AppState>,
    WorkerAuth(key): WorkerAuth,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: EventRequest = parse(&body)?;
    let tok = token(&headers)?;
    let message = forja_control::clip(&r.message, 2000);
    s.run(move |c| {
        let by = LeaseRef { worker: &r.worker, key: &key, token: &tok };
        Ok(c.store.worker_event(&id, &by, r.level, &message, r.data.as_ref())?)
    })
    .await?;
    Ok(Json(json!({"ok": true})))
}

/// `PUT /v1/worker/jobs/{id}/artifacts` with `X-Forja-Sha256`: the body
/// must hash to it, or nothing is stored.
pub async fn upload(
    State(s): State<AppState>,
    WorkerAuth(key): WorkerAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let tok = token(&headers)?;
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
    s.run(move |c| {
        let by = LeaseRef { worker: &worker, key: &key, token: &tok };
        Ok(c.store.lease_holder(&id, &by)?)
    })
    .await?;
    let sha = s.control.artifacts.put_verified(body, &declared).await?;
    Ok(Json(json!({"sha256": sha})))
}

/// `POST /v1/worker/jobs/{id}/checkpoints`.
pub async fn checkpoint(
    State(s): State<AppState>,
    WorkerAuth(key): WorkerAuth,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: CheckpointRequest = parse(&body)?;
    let tok = token(&headers)?;
    if r.files.len() > 256 {
        return Err(ApiError::bad("files", "at most 256 files per checkpoint"));
    }
    let (i2, k2, t2, w2) = (id.clone(), key.clone(), tok.clone(), r.worker.clone());
    s.run(move |c| {
        let by = LeaseRef { worker: &w2, key: &k2, token: &t2 };
        Ok(c.store.lease_holder(&i2, &by)?)
    })
    .await?;
    for sha in r.files.values() {
        if !s.control.artifacts.contains(sha).await? {
            return Err(StoreError::ArtifactMissing { sha256: sha.clone() }.into());
        }
    }
    let ck = s
        .run(move |c| {
            let by = LeaseRef { worker: &r.worker, key: &key, token: &tok };
            Ok(c.store.add_checkpoint(&id, &by, r.step, &r.files, &r.metrics)?)
        })
        .await?;
    Ok(Json(json!({"id": ck.id})))
}

/// `POST /v1/worker/jobs/{id}/finish`.
pub async fn finish(
    State(s): State<AppState>,
    WorkerAuth(key): WorkerAuth,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: FinishRequest = parse(&body)?;
    let tok = token(&headers)?;
    let (i2, k2, t2, w2) = (id.clone(), key.clone(), tok.clone(), r.worker.clone());
    s.run(move |c| {
        let by = LeaseRef { worker: &w2, key: &k2, token: &t2 };
        Ok(c.store.lease_holder(&i2, &by)?)
    })
    .await?;
    if let FinishWire::Succeeded { result, adapter_sha256, .. } = &r.outcome {
        if result.adapter_files.len() > 64 {
            return Err(ApiError::bad("outcome", "at most 64 adapter files"));
        }
        for sha in result.adapter_files.values().chain([adapter_sha256]) {
            if !s.control.artifacts.contains(sha).await? {
                return Err(StoreError::ArtifactMissing { sha256: sha.clone() }.into());
            }
        }
    }
    let j = s
        .run(move |c| {
            let by = LeaseRef { worker: &r.worker, key: &key, token: &tok };
            let job = c.store.lease_holder(&id, &by)?;
            let tenant = c.store.tenant(&job.tenant_id)?;
            // The control plane names the adapter, not the worker.
            let outcome = forja_control::link::named(r.outcome.into(), &job, &tenant);
            Ok(c.store.finish(&id, &by, &outcome)?)
        })
        .await?;
    s.control.job_changed(&j);
    Ok(Json(json!({"status": j.status.as_str()})))
}
