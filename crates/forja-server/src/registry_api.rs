//! Registry endpoints (tenant-scoped): golden sets, model versions, their
//! lineage and evaluation reports, aliases, promotion, rollback and
//! demotion.

use crate::auth::TenantAuth;
use crate::wire::{self, registry as w};
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::Json;
use forja_store::{ModelVersion, Store, StoreError, Tenant};
use serde::Deserialize;
use serde_json::{json, Value};

type Api = Result<Json<Value>, ApiError>;

fn with_aliases(store: &dyn Store, t: &Tenant, v: &ModelVersion) -> Result<Value, ApiError> {
    let aliases: Vec<String> = store
        .aliases(&t.id)?
        .into_iter()
        .filter(|a| a.version_id == v.id)
        .map(|a| a.name)
        .collect();
    Ok(w::version(v, &aliases))
}

/// Query of `POST /v1/registry/golden`.
#[derive(Debug, Deserialize)]
pub struct GoldenQuery {
    name: Option<String>,
}

/// `POST /v1/registry/golden?name=…` (body: the golden set JSONL).
pub async fn add_golden(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Query(q): Query<GoldenQuery>,
    body: axum::body::Bytes,
) -> Api {
    let name = forja_control::clip(&q.name.unwrap_or_else(|| "golden.jsonl".into()), 200);
    let g = s.control.add_golden(&t, &name, body).await?;
    Ok(Json(w::golden(&g)))
}

/// `GET /v1/registry/golden`.
pub async fn list_golden(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    let sets = s.run(move |c| Ok(c.store.golden_sets(&t.id)?)).await?;
    Ok(Json(json!({ "object": "list", "data": sets.iter().map(w::golden).collect::<Vec<_>>() })))
}

/// `?offset=&limit=` of a golden set's examples.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExamplesQuery {
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `GET /v1/registry/golden/{id}`: the set and a page of its examples
/// (`limit` 1 to 200, default 50).
pub async fn get_golden(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
    Query(q): Query<ExamplesQuery>,
) -> Api {
    let (offset, limit) = (q.offset.unwrap_or(0), q.limit.unwrap_or(50).clamp(1, 200));
    let (set, examples, total) = s.control.golden_examples(&t, &id, offset, limit).await?;
    let mut v = w::golden(&set);
    v["offset"] = json!(offset);
    v["total"] = json!(total);
    v["data"] = examples.iter().map(w::golden_example).collect();
    Ok(Json(v))
}

/// `GET /v1/registry/models`.
pub async fn list_versions(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    let data = s
        .run(move |c| {
            let vs = c.store.model_versions(&t.id)?;
            vs.iter().map(|v| with_aliases(&*c.store, &t, v)).collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `GET /v1/registry/models/{id}` (an id or an alias).
pub async fn get_version(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let v = s
        .run(move |c| {
            let v = c.store.version_or_alias(&t.id, &id)?;
            with_aliases(&*c.store, &t, &v)
        })
        .await?;
    Ok(Json(v))
}

/// `GET /v1/registry/models/{id}/lineage`.
pub async fn lineage(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let l = s
        .run(move |c| {
            let v = c.store.version_or_alias(&t.id, &id)?;
            Ok(c.lineage(&t, &v.id)?)
        })
        .await?;
    Ok(Json(w::lineage(&l)))
}

/// `GET /v1/registry/models/{id}/eval`: the full evaluation reports
/// (candidate and current model, per example).
pub async fn eval_report(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let v = s.run(move |c| Ok(c.store.version_or_alias(&t.id, &id)?)).await?;
    let Some(sha) = v.lineage.eval_sha256.clone() else {
        return Err(StoreError::NotFound { what: "evaluation report of version", id: v.id }.into());
    };
    let bytes = s.control.artifacts.get(&sha).await?;
    let mut out: Value = tokio::task::spawn_blocking(move || serde_json::from_slice(&bytes))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(format!("stored report {sha} is unreadable: {e}")))?;
    out["object"] = json!("model.eval_report");
    out["version"] = json!(v.id);
    out["gate"] = v.lineage.gate.clone().unwrap_or(Value::Null);
    out["charts"] = w::charts(&v);
    Ok(Json(out))
}

/// `POST /v1/registry/models/{id}/promote` (`{"force": true}` for a version
/// that did not pass the gate: an admin key, or a tenant whose settings
/// allow it).
pub async fn promote(
    State(s): State<AppState>,
    TenantAuth(t, a): TenantAuth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Api {
    let b: w::PromoteBody = wire::parse_opt(&body)?;
    let t2 = t.clone();
    let v = s.run(move |c| Ok(c.store.version_or_alias(&t2.id, &id)?)).await?;
    Ok(Json(w::moved(&s.control.promote(&t, &v.id, &a.actor(&t), b.force).await?)))
}

/// `POST /v1/registry/rollback` (`{"to_base": true}` takes the champion
/// out: the base model serves again).
pub async fn rollback(
    State(s): State<AppState>,
    TenantAuth(t, a): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let b: w::RollbackBody = wire::parse_opt(&body)?;
    let reason =
        forja_control::clip(&b.reason.unwrap_or_else(|| "rolled back through the API".into()), 500);
    let actor = a.actor(&t).name;
    Ok(Json(w::moved(&s.control.rollback(&t, &actor, &reason, b.to_base).await?)))
}

/// `GET /v1/registry/aliases`.
pub async fn list_aliases(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    let a = s.run(move |c| Ok(c.store.aliases(&t.id)?)).await?;
    Ok(Json(json!({ "object": "list", "data": a.iter().map(w::alias).collect::<Vec<_>>() })))
}

/// `PUT /v1/registry/aliases/{name}` (not `champion`: promote for that).
pub async fn set_alias(
    State(s): State<AppState>,
    TenantAuth(t, a): TenantAuth,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Api {
    let b: w::AliasBody = wire::parse(&body)?;
    let actor = a.actor(&t).name;
    let a = s
        .run(move |c| {
            let v = c.store.version_or_alias(&t.id, &b.version)?;
            Ok(c.store.set_alias(&t.id, &name, &v.id, &actor)?)
        })
        .await?;
    Ok(Json(w::alias(&a)))
}

/// `GET /v1/registry/log?after=N`: the tenant's registry changes, in order.
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    after: Option<i64>,
}

/// `GET /v1/registry/log`.
pub async fn log(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Query(q): Query<LogQuery>,
) -> Api {
    let entries = s.run(move |c| Ok(c.store.registry_log(&t.id, q.after.unwrap_or(0))?)).await?;
    Ok(Json(json!({ "object": "list", "data": entries.iter().map(w::entry).collect::<Vec<_>>() })))
}
