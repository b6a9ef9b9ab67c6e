//! Federation hub endpoints (only on a node started with
//! `--federation-hub`; elsewhere they answer 404 saying so).
//!
//! Nodes authenticate each request with their ed25519 key (headers
//! `x-forja-node`, `x-forja-time`, `x-forja-signature` over method, path,
//! time and body hash), not with an API key: the key is the identity an
//! admin approved. `POST /v1/federation/join` is the one unauthenticated
//! write (it proves possession of the key; the node stays `pending`).
//! Admin routes list, approve and revoke nodes.

use crate::auth::AdminAuth;
use crate::wire;
use crate::{ApiError, AppState};
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use forja_control::hub::Hub;
use forja_control::ControlError;
use forja_fed::protocol::{NODE_HEADER, SIGNATURE_HEADER, TIME_HEADER};
use forja_store::{FedDelta, FedNode, FedRound};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type Api = Result<Json<Value>, ApiError>;

fn hub(s: &AppState) -> Result<Arc<Hub>, ApiError> {
    s.hub.clone().ok_or_else(|| {
        ApiError::Control(ControlError::Store(forja_store::StoreError::NotFound {
            what: "federation hub (this node was not started with --federation-hub)",
            id: String::new(),
        }))
    })
}

/// The approved node that signed this request.
async fn node(
    hub: &Hub,
    headers: &HeaderMap,
    method: &str,
    uri: &axum::http::Uri,
    body: &[u8],
) -> Result<FedNode, ApiError> {
    let h = |name: &str| -> Result<String, ApiError> {
        headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string).ok_or_else(|| {
            ApiError::Forbidden(format!(
                "the federation API without the `{name}` header (sign requests with the node's key)"
            ))
        })
    };
    let time = h(TIME_HEADER)?.parse::<i64>().map_err(|_| {
        ApiError::Forbidden(format!(
            "the federation API with a `{TIME_HEADER}` that is not unix seconds"
        ))
    })?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    Ok(hub.authenticate(&h(NODE_HEADER)?, time, &h(SIGNATURE_HEADER)?, method, path, body).await?)
}

fn node_json(n: &FedNode) -> Value {
    json!({ "object": "federation.node", "public_key": n.public_key, "name": n.name,
        "status": n.status, "created_at": n.created_at, "updated_at": n.updated_at })
}

fn delta_json(d: &FedDelta) -> Value {
    json!({ "object": "federation.delta", "sha256": d.sha256, "node": d.node, "round": d.round_id,
        "status": d.status, "reason": d.reason, "checks": d.checks, "created_at": d.created_at })
}

fn round_json(r: &FedRound) -> Value {
    json!({ "object": "federation.round", "id": r.id, "status": r.status, "opened_at": r.opened_at,
        "deadline": r.deadline, "closed_at": r.closed_at, "reason": r.reason,
        "manifest": r.manifest, "signature": r.signature })
}

/// `GET /v1/federation/hub`: the hub's key and policy.
pub async fn describe(State(s): State<AppState>) -> Api {
    Ok(Json(hub(&s)?.describe()))
}

/// Body of `POST /v1/federation/join`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    name: String,
    public_key: String,
    signature: String,
}

/// `POST /v1/federation/join`.
pub async fn join(State(s): State<AppState>, body: axum::body::Bytes) -> Api {
    let b: JoinBody = wire::parse(&body)?;
    let h = hub(&s)?;
    let n = h.join(&b.public_key, &b.name, &b.signature).await?;
    let mut v = node_json(&n);
    v["hub_public_key"] = json!(h.public_key());
    Ok(Json(v))
}

/// `GET /v1/federation/whoami`: the signing node, if approved.
pub async fn whoami(
    State(s): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Api {
    let h = hub(&s)?;
    Ok(Json(node_json(&node(&h, &headers, "GET", &uri, b"").await?)))
}

/// `GET /v1/federation/blobs/{sha}/status`.
pub async fn blob_status(
    State(s): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(sha): Path<String>,
) -> Api {
    let h = hub(&s)?;
    node(&h, &headers, "GET", &uri, b"").await?;
    Ok(Json(json!(h.upload_status(&sha).await?)))
}

/// `?offset=&total=` of a chunk.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkQuery {
    offset: u64,
    total: u64,
}

/// `PUT /v1/federation/blobs/{sha}?offset=&total=` (body: the chunk).
pub async fn put_chunk(
    State(s): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(sha): Path<String>,
    Query(q): Query<ChunkQuery>,
    body: axum::body::Bytes,
) -> Api {
    let h = hub(&s)?;
    node(&h, &headers, "PUT", &uri, &body).await?;
    Ok(Json(json!(h.put_chunk(&sha, q.offset, q.total, body).await?)))
}

/// `GET /v1/federation/blobs/{sha}`: a file of a published round.
pub async fn get_blob(
    State(s): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(sha): Path<String>,
) -> Result<axum::body::Bytes, ApiError> {
    let h = hub(&s)?;
    node(&h, &headers, "GET", &uri, b"").await?;
    Ok(h.round_file(&sha).await?)
}

/// Body of `POST /v1/federation/deltas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaBody {
    /// The manifest's exact text, as signed.
    manifest: String,
    /// The node's signature of it, hex.
    signature: String,
}

/// `POST /v1/federation/deltas`: submit a signed manifest whose files are
/// uploaded. The answer says accepted (and the round) or rejected (and why).
pub async fn submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: axum::body::Bytes,
) -> Api {
    let h = hub(&s)?;
    let n = node(&h, &headers, "POST", &uri, &body).await?;
    let b: DeltaBody = wire::parse(&body)?;
    Ok(Json(delta_json(&h.submit(&n, b.manifest.as_bytes(), &b.signature).await?)))
}

/// `?limit=` of the rounds list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundsQuery {
    limit: Option<usize>,
}

/// `GET /v1/federation/rounds?limit=`: rounds newest first (published ones
/// with their signed manifest).
pub async fn rounds(
    State(s): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<RoundsQuery>,
) -> Api {
    let h = hub(&s)?;
    node(&h, &headers, "GET", &uri, b"").await?;
    let r = h.rounds(q.limit.unwrap_or(20).clamp(1, 200)).await?;
    Ok(Json(json!({ "object": "list", "hub_public_key": h.public_key(),
        "data": r.iter().map(round_json).collect::<Vec<_>>() })))
}

/// `GET /v1/admin/federation/nodes`.
pub async fn list_nodes(State(s): State<AppState>, _: AdminAuth) -> Api {
    hub(&s)?;
    let n = s.run(move |c| Ok(c.store.fed_nodes()?)).await?;
    Ok(Json(json!({ "object": "list", "data": n.iter().map(node_json).collect::<Vec<_>>() })))
}

async fn set_status(s: AppState, key: String, who: &str, status: &'static str) -> Api {
    hub(&s)?;
    let actor = format!("admin:{who}");
    let n = s.run(move |c| Ok(c.store.set_node_status(&key, status, &actor)?)).await?;
    Ok(Json(node_json(&n)))
}

/// `POST /v1/admin/federation/nodes/{key}/approve`.
pub async fn approve(
    State(s): State<AppState>,
    AdminAuth(k): AdminAuth,
    Path(key): Path<String>,
) -> Api {
    set_status(s, key, &k.id, "approved").await
}

/// `POST /v1/admin/federation/nodes/{key}/revoke`.
pub async fn revoke(
    State(s): State<AppState>,
    AdminAuth(k): AdminAuth,
    Path(key): Path<String>,
) -> Api {
    set_status(s, key, &k.id, "revoked").await
}
