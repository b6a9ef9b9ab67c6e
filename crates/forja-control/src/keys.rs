//! API keys: random, shown once, stored as their sha256 (they carry 192
//! bits of entropy, so a fast hash is enough; nothing to brute-force).
//! Keys have a role (tenant, worker, admin), an optional name and expiry;
//! they are listed, revoked, and rotated (a new key with the same role and
//! tenant, the old one expiring after a grace period).

use forja_store::{sha256_hex, ApiKey, NewKey, Role, Store, Timestamp};

/// A new key's text: `forja-sk-` (tenants), `forja-wk-` (workers) or
/// `forja-ak-` (admins) and 48 hex digits.
fn generate(role: Role) -> String {
    let bytes: [u8; 24] = rand::random();
    let kind = match role {
        Role::Tenant => "sk",
        Role::Worker => "wk",
        Role::Admin => "ak",
    };
    format!("forja-{kind}-{}", hex::encode(bytes))
}

/// The stored form of a key.
pub fn hash(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

/// What a new key is for.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    /// The tenant of a tenant key.
    pub tenant_id: Option<String>,
    /// A name for people.
    pub name: Option<String>,
    /// When it stops working (unix seconds).
    pub expires_at: Option<Timestamp>,
}

/// Creates a key; returns its text (the only time it exists in clear).
/// A tenant key names an existing tenant (`NotFound` otherwise: keys never
/// create tenants).
pub fn create(
    store: &dyn Store,
    role: Role,
    spec: &KeySpec,
) -> forja_store::Result<(String, ApiKey)> {
    let key = generate(role);
    let row = store.create_key(&NewKey {
        tenant_id: spec.tenant_id.clone(),
        role,
        hash: hash(&key),
        prefix: key[..16].to_string(),
        name: spec.name.clone(),
        expires_at: spec.expires_at,
    })?;
    Ok((key, row))
}

/// Replaces key `id` (of `tenant`, when given) with a new one of the same
/// role, tenant and name; the old one keeps working for `grace_s` seconds
/// (0: revoked now). Returns the new key's text, the new row and the old
/// row as it is now.
pub fn rotate(
    store: &dyn Store,
    tenant: Option<&str>,
    id: &str,
    grace_s: i64,
) -> forja_store::Result<(String, ApiKey, ApiKey)> {
    let old = store.key(tenant, id)?;
    if !old.is_live(store.now()) {
        return Err(forja_store::StoreError::Conflict(format!(
            "key {id} is revoked or expired; create a new one instead"
        )));
    }
    let spec = KeySpec {
        tenant_id: old.tenant_id.clone(),
        name: old.name.clone(),
        expires_at: old.expires_at,
    };
    let (text, new) = create(store, old.role, &spec)?;
    let old = if grace_s <= 0 {
        store.revoke_key(tenant, id)?
    } else {
        store.expire_key(id, store.now().saturating_add(grace_s))?
    };
    Ok((text, new, old))
}
