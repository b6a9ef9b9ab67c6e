//! Governance endpoints: auditors (registered by an admin, listed to
//! tenants), auditors' signed votes on a tenant's versions (tenant-scoped:
//! a vote names a version of the caller's tenant), and the node's ledger
//! with its verification (admin).

use crate::auth::{AdminAuth, TenantAuth};
use crate::wire::{self, admin as wa, registry as w};
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::Json;
use forja_control::governance::SignedVote;
use serde::Deserialize;
use serde_json::{json, Value};

type Api = Result<Json<Value>, ApiError>;

/// `GET /v1/registry/auditors` and `GET /v1/admin/auditors`.
pub async fn list_auditors(State(s): State<AppState>) -> Api {
    let a = s.run(move |c| Ok(c.store.auditors()?)).await?;
    Ok(Json(json!({ "object": "list", "data": a.iter().map(w::auditor).collect::<Vec<_>>() })))
}

/// `GET /v1/registry/auditors` (any tenant may see who audits).
pub async fn tenant_auditors(s: State<AppState>, _: TenantAuth) -> Api {
    list_auditors(s).await
}

/// `GET /v1/admin/auditors`.
pub async fn admin_auditors(s: State<AppState>, _: AdminAuth) -> Api {
    list_auditors(s).await
}

/// `POST /v1/admin/auditors` `{name, public_key, reputation?}`.
pub async fn add_auditor(State(s): State<AppState>, _: AdminAuth, body: axum::body::Bytes) -> Api {
    let b: wa::AuditorBody = wire::parse(&body)?;
    let rep = b.reputation.unwrap_or(forja_store::governance::START_REPUTATION);
    let a = s.control.add_auditor(&b.name, &b.public_key, rep).await?;
    Ok(Json(w::auditor(&a)))
}

async fn set_active(s: AppState, key: &str, name: String, active: bool) -> Api {
    let actor = format!("admin:{key}");
    let a = s.run(move |c| Ok(c.store.set_auditor_active(&name, active, &actor)?)).await?;
    Ok(Json(w::auditor(&a)))
}

/// `POST /v1/admin/auditors/{name}/activate`.
pub async fn activate(
    State(s): State<AppState>,
    AdminAuth(k): AdminAuth,
    Path(name): Path<String>,
) -> Api {
    set_active(s, &k.id, name, true).await
}

/// `POST /v1/admin/auditors/{name}/deactivate`.
pub async fn deactivate(
    State(s): State<AppState>,
    AdminAuth(k): AdminAuth,
    Path(name): Path<String>,
) -> Api {
    set_active(s, &k.id, name, false).await
}

/// `GET /v1/registry/models/{id}/votes`: the votes and their count.
pub async fn audit(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let t2 = t.clone();
    let v = s.run(move |c| Ok(c.store.version_or_alias(&t2.id, &id)?)).await?;
    Ok(Json(w::audit(&s.control.audit(&t, &v.id).await?)))
}

/// `POST /v1/registry/models/{id}/votes`: an auditor's signed vote.
pub async fn vote(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Api {
    let b: w::VoteBody = wire::parse(&body)?;
    let approve = match b.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::BadRequest {
                message: format!(
                    "`decision` is `approve` or `reject`, not `{}`",
                    forja_control::clip(other, 40)
                ),
                param: Some("decision".into()),
                code: "invalid_request",
            })
        }
    };
    let vote = SignedVote {
        auditor: b.auditor,
        approve,
        report_sha256: b.report_sha256,
        signed_at: b.signed_at,
        signature: b.signature,
    };
    Ok(Json(w::audit(&s.control.vote(&t, &id, vote).await?)))
}

/// `?after=&limit=` of the ledger.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    after: Option<i64>,
    limit: Option<usize>,
}

/// `GET /v1/admin/ledger?after=&limit=` (limit 1 to 1000, default 100).
pub async fn ledger(State(s): State<AppState>, _: AdminAuth, Query(q): Query<LedgerQuery>) -> Api {
    let (after, limit) = (q.after.unwrap_or(0), q.limit.unwrap_or(100).clamp(1, 1000));
    let (entries, key) =
        s.run(move |c| Ok((c.store.ledger(after, limit)?, c.store.node_public_key()))).await?;
    Ok(Json(json!({
        "object": "list",
        "node_public_key": key,
        "data": entries.iter().map(w::ledger_entry).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/admin/ledger/verify`: the whole chain checked against the
/// node's key; `ok` false names the first broken entry.
pub async fn verify_ledger(State(s): State<AppState>, _: AdminAuth) -> Api {
    let (r, key) =
        s.run(move |c| Ok((c.store.verify_ledger(None)?, c.store.node_public_key()))).await?;
    Ok(Json(match r {
        Ok(head) => json!({ "object": "ledger.verification", "ok": true, "entries": head.entries,
            "head": head.hash, "node_public_key": key }),
        Err(why) => json!({ "object": "ledger.verification", "ok": false, "error": why,
            "node_public_key": key }),
    }))
}
