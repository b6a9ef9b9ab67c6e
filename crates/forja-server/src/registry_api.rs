//! Registry endpoints (tenant-scoped): golden sets, model versions, their
//! lineage and evaluation reports, aliases, promotion and rollback.

use crate::auth::TenantAuth;
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::Json;
use forja_store::{GoldenSetRow, ModelVersion, Store, StoreError, Tenant};
use serde::Deserialize;
use serde_json::{json, Value};

type Api = Result<Json<Value>, ApiError>;

fn with_aliases(store: &dyn Store, t: &Tenant, v: ModelVersion) -> Result<Value, ApiError> {
    let aliases: Vec<String> = store
        .aliases(&t.id)?
        .into_iter()
        .filter(|a| a.version_id == v.id)
        .map(|a| a.name)
        .collect();
    let mut out = serde_json::to_value(&v).expect("versions serialise");
    out["object"] = json!("model.version");
    out["aliases"] = json!(aliases);
    Ok(out)
}

fn golden_json(g: GoldenSetRow) -> Value {
    json!({ "object": "golden_set", "id": g.id, "version": g.version, "name": g.name,
        "sha256": g.sha256, "examples": g.examples, "created_at": g.created_at })
}

/// Query of `POST /v1/registry/golden`.
#[derive(Debug, Deserialize)]
pub struct GoldenQuery {
    name: Option<String>,
}

/// `POST /v1/registry/golden?name=…` (body: the golden set JSONL).
pub async fn add_golden(
    State(s): State<AppState>,
    TenantAuth(t): TenantAuth,
    Query(q): Query<GoldenQuery>,
    body: axum::body::Bytes,
) -> Api {
    let name = q.name.unwrap_or_else(|| "golden.jsonl".into());
    let g = s.control.add_golden(&t, &name, body).await?;
    Ok(Json(golden_json(g)))
}

/// `GET /v1/registry/golden`.
pub async fn list_golden(State(s): State<AppState>, TenantAuth(t): TenantAuth) -> Api {
    let sets = s.run(move |c| Ok(c.store.golden_sets(&t.id)?)).await?;
    let data: Vec<Value> = sets
        .into_iter()
        .map(|g| {
            json!({ "object": "golden_set", "id": g.id, "version": g.version, "name": g.name,
            "sha256": g.sha256, "examples": g.examples, "created_at": g.created_at })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `GET /v1/registry/models`.
pub async fn list_versions(State(s): State<AppState>, TenantAuth(t): TenantAuth) -> Api {
    let data = s
        .run(move |c| {
            let vs = c.store.model_versions(&t.id)?;
            vs.into_iter().map(|v| with_aliases(&*c.store, &t, v)).collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `GET /v1/registry/models/{id}` (an id or an alias).
pub async fn get_version(
    State(s): State<AppState>,
    TenantAuth(t): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let v = s
        .run(move |c| {
            let v = c.store.version_or_alias(&t.id, &id)?;
            with_aliases(&*c.store, &t, v)
        })
        .await?;
    Ok(Json(v))
}

/// `GET /v1/registry/models/{id}/lineage`.
pub async fn lineage(
    State(s): State<AppState>,
    TenantAuth(t): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let l = s
        .run(move |c| {
            let v = c.store.version_or_alias(&t.id, &id)?;
            Ok(c.lineage(&t, &v.id)?)
        })
        .await?;
    let mut out = serde_json::to_value(&l).expect("lineage serialises");
    out["object"] = json!("model.lineage");
    Ok(Json(out))
}

/// `GET /v1/registry/models/{id}/eval`: the full evaluation reports
/// (candidate and current model, per example).
pub async fn eval_report(
    State(s): State<AppState>,
    TenantAuth(t): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let v = s.run(move |c| Ok(c.store.version_or_alias(&t.id, &id)?)).await?;
    let Some(sha) = v.lineage.eval_sha256.clone() else {
        return Err(StoreError::NotFound { what: "evaluation report of version", id: v.id }.into());
    };
    let bytes = s.control.artifacts.get(&sha).await?;
    let mut out: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad("id", format!("the stored report is unreadable: {e}")))?;
    out["object"] = json!("model.eval_report");
    out["version"] = json!(v.id);
    out["gate"] = v.lineage.gate.clone().unwrap_or(Value::Null);
    Ok(Json(out))
}

/// Body of `POST /v1/registry/models/{id}/promote`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    #[serde(default)]
    force: bool,
}

fn parse_opt<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad("body", e.to_string()))
}

fn moved(m: forja_store::AliasMove) -> Value {
    json!({ "object": "alias.move", "alias": forja_store::CHAMPION, "version": m.version.id,
        "previous": m.previous_id, "generation": m.generation })
}

/// `POST /v1/registry/models/{id}/promote` (`{"force": true}` for a version
/// that did not pass the gate).
pub async fn promote(
    State(s): State<AppState>,
    TenantAuth(t): TenantAuth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Api {
    let b: PromoteBody = parse_opt(&body)?;
    let t2 = t.clone();
    let v = s.run(move |c| Ok(c.store.version_or_alias(&t2.id, &id)?)).await?;
    let actor = format!("api:{}", t.name);
    Ok(Json(moved(s.control.promote(&t, &v.id, &actor, b.force).await?)))
}

/// Body of `POST /v1/registry/rollback`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    reason: Option<String>,
}

/// `POST /v1/registry/rollback`.
pub async fn rollback(
    State(s): State<AppState>,
    TenantAuth(t): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let b: RollbackBody = parse_opt(&body)?;
    let reason = b.reason.unwrap_or_else(|| "rolled back through the API".into());
    let actor = format!("api:{}", t.name);
    Ok(Json(moved(s.control.rollback(&t, &actor, &reason).await?)))
}

/// `GET /v1/registry/aliases`.
pub async fn list_aliases(State(s): State<AppState>, TenantAuth(t): TenantAuth) -> Api {
    let a = s.run(move |c| Ok(c.store.aliases(&t.id)?)).await?;
    Ok(Json(json!({ "object": "list", "data": a })))
}

/// Body of `PUT /v1/registry/aliases/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasBody {
    version: String,
}

/// `PUT /v1/registry/aliases/{name}` (not `champion`: promote for that).
pub async fn set_alias(
    State(s): State<AppState>,
    TenantAuth(t): TenantAuth,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Api {
    let b: AliasBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad("body", e.to_string()))?;
    let a = s
        .run(move |c| {
            let v = c.store.version_or_alias(&t.id, &b.version)?;
            Ok(c.store.set_alias(&t.id, &name, &v.id, &format!("api:{}", t.name))?)
        })
        .await?;
    Ok(Json(serde_json::to_value(a).expect("aliases serialise")))
}

/// `GET /v1/registry/log?after=N`: the tenant's registry changes, in order.
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    after: Option<i64>,
}

/// `GET /v1/registry/log`.
pub async fn log(
    State(s): State<AppState>,
    TenantAuth(t): TenantAuth,
    Query(q): Query<LogQuery>,
) -> Api {
    let entries = s.run(move |c| Ok(c.store.registry_log(&t.id, q.after.unwrap_or(0))?)).await?;
    Ok(Json(json!({ "object": "list", "data": entries })))
}
