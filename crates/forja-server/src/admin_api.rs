//! The admin API (admin keys only): the node's state, API keys (list,
//! create, revoke, rotate) and tenants (list, create, show, change
//! settings). A key's text
//! is answered once, at creation or rotation; keys never create tenants.

use crate::auth::AdminAuth;
use crate::wire::{self, admin as w};
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::Json;
use forja_control::keys::{self, KeySpec};
use forja_store::{Role, TenantSettings, Tier};
use serde::Deserialize;
use serde_json::{json, Value};

type Api = Result<Json<Value>, ApiError>;

/// Resident memory of this process, from `/proc/self/statm` (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// `GET /v1/admin/node`: the model, workers, the serving queue, jobs by
/// state, tenants, uptime and memory.
pub async fn node(State(s): State<AppState>, _: AdminAuth) -> Api {
    let (jobs, tenants) = s.run(|c| Ok((c.store.job_counts()?, c.store.tenants()?.len()))).await?;
    let sv = s.serving.get();
    let m = &s.metrics;
    Ok(Json(json!({
        "object": "node",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.started.elapsed().as_secs(),
        "ready": s.ready.load(std::sync::atomic::Ordering::SeqCst),
        "model": sv.map(|v| v.base_name().to_string()),
        "embedding_models": s.embedder.as_ref().map(|e| e.names.clone()).unwrap_or_default(),
        "workers": s.workers,
        "serving": {
            "active": m.active.get(),
            "queued": m.queued.get(),
            "batch_live": m.batch_live.get(),
            "weights": sv.map(|v| v.engine().model().weight_formats()),
        },
        "jobs": jobs,
        "tenants": tenants,
        "memory": {"rss_bytes": rss_bytes()},
        "metrics_url": "/metrics",
    })))
}

/// `?tenant=NAME`.
#[derive(Debug, Deserialize)]
pub struct KeyQuery {
    tenant: Option<String>,
}

/// `GET /v1/admin/keys[?tenant=NAME]`.
pub async fn list_keys(State(s): State<AppState>, _: AdminAuth, Query(q): Query<KeyQuery>) -> Api {
    let data = s
        .run(move |c| {
            let tid = q.tenant.map(|n| c.store.tenant_by_name(&n).map(|t| t.id)).transpose()?;
            let now = c.store.now();
            Ok(c.store.keys(tid.as_deref())?.iter().map(|k| w::key(k, now)).collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `POST /v1/admin/keys` `{"role", "tenant", "name", "expires_in_s"}`: the
/// key's text is in the answer, once.
pub async fn create_key(
    State(s): State<AppState>,
    AdminAuth(_): AdminAuth,
    body: axum::body::Bytes,
) -> Api {
    let b: w::CreateKey = wire::parse(&body)?;
    let role = Role::parse(&b.role)
        .ok_or_else(|| ApiError::bad("role", "`role` is tenant, worker or admin"))?;
    if b.name.as_ref().is_some_and(|n| n.len() > 100) {
        return Err(ApiError::bad("name", "at most 100 characters"));
    }
    let out = s
        .run(move |c| {
            let tenant_id = match (role, &b.tenant) {
                (Role::Tenant, Some(name)) => Some(c.store.tenant_by_name(name)?.id),
                (Role::Tenant, None) => {
                    return Err(ApiError::bad("tenant", "a tenant key names its tenant"))
                }
                (_, Some(_)) => {
                    return Err(ApiError::bad("tenant", "worker and admin keys have no tenant"))
                }
                (_, None) => None,
            };
            let now = c.store.now();
            let expires_at =
                b.expires_in_s.map(|s| now.saturating_add(s.min(i64::MAX as u64) as i64));
            let (text, k) =
                keys::create(&*c.store, role, &KeySpec { tenant_id, name: b.name, expires_at })?;
            let mut v = w::key(&k, now);
            v["key"] = json!(text);
            Ok(v)
        })
        .await?;
    Ok(Json(out))
}

/// `POST /v1/admin/keys/{id}/revoke`.
pub async fn revoke_key(
    State(s): State<AppState>,
    AdminAuth(me): AdminAuth,
    Path(id): Path<String>,
) -> Api {
    if id == me.id {
        return Err(ApiError::bad(
            "id",
            "an admin key cannot revoke itself; use another admin key",
        ));
    }
    let k = s
        .run(move |c| {
            let k = c.store.revoke_key(None, &id)?;
            Ok(w::key(&k, c.store.now()))
        })
        .await?;
    Ok(Json(k))
}

/// `POST /v1/admin/keys/{id}/rotate` `{"grace_s": N}`: a new key with the
/// same role, tenant and name; the old one works for `grace_s` more
/// seconds (0: revoked now).
pub async fn rotate_key(
    State(s): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Api {
    let b: w::RotateKey = wire::parse_opt(&body)?;
    let grace = b.grace_s.unwrap_or(0).min(365 * 86_400) as i64;
    let out = s
        .run(move |c| {
            let (text, new, old) = keys::rotate(&*c.store, None, &id, grace)?;
            let now = c.store.now();
            let mut v = w::key(&new, now);
            v["key"] = json!(text);
            v["replaces"] = w::key(&old, now);
            Ok(v)
        })
        .await?;
    Ok(Json(out))
}

/// `GET /v1/admin/tenants`.
pub async fn list_tenants(State(s): State<AppState>, _: AdminAuth) -> Api {
    let data =
        s.run(move |c| Ok(c.store.tenants()?.iter().map(w::tenant).collect::<Vec<_>>())).await?;
    Ok(Json(json!({"object": "list", "data": data})))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad("name", "1-64 letters, digits, `-`, `_` or `.`"))
    }
}

/// `POST /v1/admin/tenants` `{"name", "tier", "settings"}`.
pub async fn create_tenant(
    State(s): State<AppState>,
    _: AdminAuth,
    body: axum::body::Bytes,
) -> Api {
    let b: w::CreateTenant = wire::parse(&body)?;
    check_name(&b.name)?;
    let tier = match b.tier.as_deref() {
        None => Tier::Standard,
        Some(t) => Tier::parse(t).ok_or_else(|| ApiError::bad("tier", "free, standard or pro"))?,
    };
    let settings = b
        .settings
        .unwrap_or_default()
        .apply(TenantSettings::for_tier(tier))
        .map_err(|(p, m)| ApiError::bad(&format!("settings.{p}"), m))?;
    let t = s.run(move |c| Ok(c.store.create_tenant(&b.name, tier.name(), &settings)?)).await?;
    Ok(Json(w::tenant(&t)))
}

/// `GET /v1/admin/tenants/{name}`.
pub async fn get_tenant(State(s): State<AppState>, _: AdminAuth, Path(name): Path<String>) -> Api {
    let t = s.run(move |c| Ok(c.store.tenant_by_name(&name)?)).await?;
    Ok(Json(w::tenant(&t)))
}

/// `PATCH /v1/admin/tenants/{name}` (settings to change).
pub async fn update_tenant(
    State(s): State<AppState>,
    _: AdminAuth,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Api {
    let patch: w::SettingsPatch = wire::parse(&body)?;
    let t = s
        .run(move |c| {
            let t = c.store.tenant_by_name(&name)?;
            let settings =
                patch.apply(t.settings.clone()).map_err(|(p, m)| ApiError::bad(&p, m))?;
            Ok(c.store.update_settings(&t.id, &settings)?)
        })
        .await?;
    Ok(Json(w::tenant(&t)))
}
