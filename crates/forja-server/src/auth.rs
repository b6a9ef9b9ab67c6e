//! Bearer API keys and their roles. A tenant key scopes every lookup to
//! its tenant; an admin key manages keys and tenants, reads metrics, and
//! may act on any tenant's endpoints by naming it (`X-Forja-Tenant`); a
//! worker key may only speak the worker protocol, and only about the
//! leases it took.

use crate::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use forja_store::{ApiKey, Role, Tenant};

/// The header an admin key names the tenant it acts for with.
pub const TENANT_HEADER: &str = "x-forja-tenant";

pub(crate) fn bearer(parts: &Parts) -> Option<String> {
    let h = parts.headers.get("authorization").and_then(|v| v.to_str().ok())?;
    let key = h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))?;
    Some(key.trim().to_string())
}

pub(crate) async fn key(parts: &Parts, state: &AppState) -> Result<ApiKey, ApiError> {
    let text = bearer(parts).ok_or(ApiError::Unauthorized)?;
    if text.is_empty() || text.len() > 256 {
        return Err(ApiError::Unauthorized);
    }
    let hash = forja_control::keys::hash(&text);
    state.run(move |c| Ok(c.store.key_by_hash(&hash)?)).await?.ok_or(ApiError::Unauthorized)
}

/// The caller's tenant, and whether an admin key is acting for it.
pub struct TenantAuth(pub Tenant, pub Access);

/// Who is behind a tenant request.
#[derive(Debug, Clone)]
pub struct Access {
    /// An admin key acting for the tenant.
    pub admin: bool,
    /// The key's id.
    pub key_id: String,
}

impl Access {
    /// The registry actor of this caller.
    pub fn actor(&self, t: &Tenant) -> forja_control::registry::Actor {
        if self.admin {
            forja_control::registry::Actor { name: format!("admin:{}", self.key_id), admin: true }
        } else {
            forja_control::registry::Actor::tenant(t)
        }
    }
}

impl FromRequestParts<AppState> for TenantAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let k = key(parts, state).await?;
        TenantAuth::of_key(k, parts, state).await
    }
}

impl TenantAuth {
    /// The tenant a looked-up key acts for: its own, or for an admin key
    /// the one the request names.
    pub(crate) async fn of_key(
        k: ApiKey,
        parts: &Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let access = Access { admin: k.role == Role::Admin, key_id: k.id.clone() };
        let named =
            parts.headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        match (k.role, k.tenant_id) {
            (Role::Tenant, Some(t)) => {
                Ok(TenantAuth(state.run(move |c| Ok(c.store.tenant(&t)?)).await?, access))
            }
            (Role::Admin, _) => {
                let Some(name) = named else {
                    return Err(ApiError::bad(
                        TENANT_HEADER,
                        "an admin key names the tenant it acts for with the X-Forja-Tenant header",
                    ));
                };
                Ok(TenantAuth(
                    state.run(move |c| Ok(c.store.tenant_by_name(&name)?)).await?,
                    access,
                ))
            }
            _ => Err(ApiError::Forbidden("tenant endpoints (this is a worker key)".into())),
        }
    }
}

/// A training worker: the id of the key it authenticated with (its
/// leases are bound to it).
pub struct WorkerAuth(pub String);

impl FromRequestParts<AppState> for WorkerAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let k = key(parts, state).await?;
        match k.role {
            Role::Worker => Ok(WorkerAuth(k.id)),
            _ => Err(ApiError::Forbidden("the worker protocol (this is not a worker key)".into())),
        }
    }
}

/// The node's operator.
pub struct AdminAuth(pub ApiKey);

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let k = key(parts, state).await?;
        match k.role {
            Role::Admin => Ok(AdminAuth(k)),
            _ => Err(ApiError::Forbidden("the admin API (this is not an admin key)".into())),
        }
    }
}
