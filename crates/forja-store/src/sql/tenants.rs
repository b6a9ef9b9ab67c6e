//! [`Tenants`] in SQL (SQLite and Postgres): tenants, API keys, and the storage each tenant
//! uses (charged and refunded inside the transactions that store or
//! delete its data, so the count never drifts from the rows).

use super::rows::{get_tenant, key_row, rows, tenant_row, to_json, KEY_COLS, TENANT_COLS};
use super::{new_id, SqliteStore};
use crate::db::{params, Connection, OptionalExtension};
use crate::error::{sql, Result, StoreError};
use crate::types::*;
use crate::Tenants;

/// A tenant's storage quota in bytes (`None`: unlimited).
fn limit_of(t: &Tenant) -> Option<u64> {
    (t.settings.storage_mb > 0).then(|| t.settings.storage_mb.saturating_mul(1 << 20))
}

fn stored(c: &Connection, tenant_id: &str) -> Result<u64> {
    c.query_row("SELECT stored_bytes FROM tenants WHERE id = ?1", [tenant_id], |r| {
        r.get::<_, i64>(0)
    })
    .optional()
    .map_err(sql("read storage"))?
    .map(|b| b.max(0) as u64)
    .ok_or_else(|| StoreError::NotFound { what: "tenant", id: tenant_id.into() })
}

/// Adds `bytes` to the tenant's storage, refusing (`StorageQuota`) past
/// its quota. Call inside the transaction that stores the data.
pub(super) fn charge(c: &Connection, tenant: &Tenant, bytes: u64) -> Result<()> {
    let used = stored(c, &tenant.id)?;
    let needed = used.saturating_add(bytes);
    if let Some(limit) = limit_of(tenant) {
        if needed > limit && bytes > 0 {
            return Err(StoreError::StorageQuota {
                tenant: tenant.name.clone(),
                used,
                needed,
                limit,
            });
        }
    }
    c.execute(
        "UPDATE tenants SET stored_bytes = stored_bytes + ?1 WHERE id = ?2",
        params![bytes as i64, tenant.id],
    )
    .map_err(sql("charge storage"))?;
    Ok(())
}

/// Gives `bytes` back (data deleted or purged).
pub(super) fn refund(c: &Connection, tenant_id: &str, bytes: u64) -> Result<()> {
    c.execute(
        &format!(
            "UPDATE tenants SET stored_bytes = {}(0, stored_bytes - ?1) WHERE id = ?2",
            c.greatest()
        ),
        params![bytes as i64, tenant_id],
    )
    .map_err(sql("refund storage"))?;
    Ok(())
}

fn get_key(c: &Connection, tenant: Option<&str>, id: &str) -> Result<ApiKey> {
    let k = c
        .query_row(&format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1"), [id], key_row)
        .optional()
        .map_err(sql("read key"))?;
    match k {
        Some(k) if tenant.is_none_or(|t| k.tenant_id.as_deref() == Some(t)) => Ok(k),
        _ => Err(StoreError::NotFound { what: "API key", id: id.into() }),
    }
}

impl Tenants for SqliteStore {
    fn create_tenant(&self, name: &str, tier: &str, settings: &TenantSettings) -> Result<Tenant> {
        self.tx("create tenant", |c, now| {
            let exists: Option<String> = c
                .query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| r.get(0))
                .optional()
                .map_err(sql("create tenant"))?;
            if exists.is_some() {
                return Err(StoreError::Conflict(format!("a tenant named `{name}` already exists")));
            }
            let id = new_id("tn");
            c.execute(
                "INSERT INTO tenants (id, name, tier, settings, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, name, tier, to_json(settings), now],
            )
            .map_err(sql("create tenant"))?;
            get_tenant(c, &id)
        })
    }

    fn tenant(&self, id: &str) -> Result<Tenant> {
        self.read(|c, _| get_tenant(c, id))
    }

    fn tenant_by_name(&self, name: &str) -> Result<Tenant> {
        self.read(|c, _| {
            c.query_row(
                &format!("SELECT {TENANT_COLS} FROM tenants WHERE name = ?1"),
                [name],
                tenant_row,
            )
            .optional()
            .map_err(sql("read tenant"))?
            .ok_or_else(|| StoreError::NotFound { what: "tenant", id: name.into() })
        })
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        self.read(|c, _| {
            rows(
                c,
                "list tenants",
                &format!("SELECT {TENANT_COLS} FROM tenants ORDER BY name"),
                params![],
                tenant_row,
            )
        })
    }

    fn update_settings(&self, id: &str, settings: &TenantSettings) -> Result<Tenant> {
        self.tx("update tenant", |c, _| {
            let n = c
                .execute(
                    "UPDATE tenants SET settings = ?1 WHERE id = ?2",
                    params![to_json(settings), id],
                )
                .map_err(sql("update tenant"))?;
            if n == 0 {
                return Err(StoreError::NotFound { what: "tenant", id: id.into() });
            }
            get_tenant(c, id)
        })
    }

    fn edit_settings(
        &self,
        id: &str,
        edit: &mut (dyn FnMut(&mut TenantSettings) + Send),
    ) -> Result<Tenant> {
        self.tx("edit tenant settings", |c, _| {
            let mut settings = get_tenant(c, id)?.settings;
            edit(&mut settings);
            c.execute(
                "UPDATE tenants SET settings = ?1 WHERE id = ?2",
                params![to_json(&settings), id],
            )
            .map_err(sql("edit tenant settings"))?;
            get_tenant(c, id)
        })
    }

    fn storage(&self, tenant_id: &str) -> Result<StorageUsage> {
        self.read(|c, _| {
            let t = get_tenant(c, tenant_id)?;
            Ok(StorageUsage { used_bytes: stored(c, tenant_id)?, limit_bytes: limit_of(&t) })
        })
    }

    fn create_key(&self, key: &NewKey) -> Result<ApiKey> {
        self.tx("create key", |c, now| {
            match (key.role, &key.tenant_id) {
                (Role::Tenant, Some(t)) => {
                    get_tenant(c, t)?;
                }
                (Role::Tenant, None) => {
                    return Err(StoreError::Conflict("a tenant key needs a tenant".into()))
                }
                (_, Some(_)) => {
                    return Err(StoreError::Conflict(format!(
                        "a {} key belongs to no tenant",
                        key.role.as_str()
                    )))
                }
                (_, None) => {}
            }
            let id = new_id("key");
            c.execute(
                "INSERT INTO api_keys (id, tenant_id, role, hash, prefix, name, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    id,
                    key.tenant_id,
                    key.role.as_str(),
                    key.hash,
                    key.prefix,
                    key.name,
                    now,
                    key.expires_at
                ],
            )
            .map_err(sql("create key"))?;
            get_key(c, None, &id)
        })
    }

    fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        self.read(|c, now| {
            c.query_row(
                &format!(
                    "SELECT {KEY_COLS} FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL \
                     AND (expires_at IS NULL OR expires_at > ?2)"
                ),
                params![hash, now],
                key_row,
            )
            .optional()
            .map_err(sql("read key"))
        })
    }

    fn key(&self, tenant: Option<&str>, id: &str) -> Result<ApiKey> {
        self.read(|c, _| get_key(c, tenant, id))
    }

    fn keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
        self.read(|c, _| {
            rows(
                c,
                "list keys",
                &format!(
                    "SELECT {KEY_COLS} FROM api_keys WHERE (CAST(?1 AS TEXT) IS NULL OR tenant_id = ?1) \
                     ORDER BY created_at DESC, id DESC"
                ),
                [tenant],
                key_row,
            )
        })
    }

    fn revoke_key(&self, tenant: Option<&str>, id: &str) -> Result<ApiKey> {
        self.tx("revoke key", |c, now| {
            get_key(c, tenant, id)?;
            c.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1) WHERE id = ?2",
                params![now, id],
            )
            .map_err(sql("revoke key"))?;
            get_key(c, None, id)
        })
    }

    fn expire_key(&self, id: &str, at: Timestamp) -> Result<ApiKey> {
        self.tx("expire key", |c, _| {
            get_key(c, None, id)?;
            c.execute(
                &format!(
                    "UPDATE api_keys SET expires_at = {}(COALESCE(expires_at, ?1), ?1) WHERE id = ?2",
                    c.least()
                ),
                params![at, id],
            )
            .map_err(sql("expire key"))?;
            get_key(c, None, id)
        })
    }
}
