//! Bearer API keys: a tenant key scopes every lookup to its tenant; a
//! worker key may only speak the worker protocol.

use crate::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use forja_store::{ApiKey, Role, Tenant};

fn bearer(parts: &Parts) -> Result<String, ApiError> {
    let h = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized)?;
    let key = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .ok_or(ApiError::Unauthorized)?;
    Ok(key.trim().to_string())
}

async fn key(parts: &Parts, state: &AppState) -> Result<ApiKey, ApiError> {
    let hash = forja_control::keys::hash(&bearer(parts)?);
    state.run(move |c| Ok(c.store.key_by_hash(&hash)?)).await?.ok_or(ApiError::Unauthorized)
}

/// The caller's tenant.
pub struct TenantAuth(pub Tenant);

impl FromRequestParts<AppState> for TenantAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let k = key(parts, state).await?;
        match (k.role, k.tenant_id) {
            (Role::Tenant, Some(t)) => {
                Ok(TenantAuth(state.run(move |c| Ok(c.store.tenant(&t)?)).await?))
            }
            _ => Err(ApiError::Forbidden("tenant endpoints (this is a worker key)")),
        }
    }
}

/// A training worker.
pub struct WorkerAuth;

impl FromRequestParts<AppState> for WorkerAuth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match key(parts, state).await?.role {
            Role::Worker => Ok(WorkerAuth),
            Role::Tenant => Err(ApiError::Forbidden("the worker protocol (this is a tenant key)")),
        }
    }
}
