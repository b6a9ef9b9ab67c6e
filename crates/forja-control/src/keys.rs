//! API keys: random, shown once, stored as their sha256 (they carry 192
//! bits of entropy, so a fast hash is enough; nothing to brute-force).

use forja_store::{sha256_hex, ApiKey, Role, Store};

/// A new key's text: `forja-sk-` (tenants) or `forja-wk-` (workers) and 48
/// hex digits.
fn generate(role: Role) -> String {
    let bytes: [u8; 24] = rand::random();
    let kind = match role {
        Role::Tenant => "sk",
        Role::Worker => "wk",
    };
    format!("forja-{kind}-{}", hex::encode(bytes))
}

/// The stored form of a key.
pub fn hash(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

/// Creates a key; returns its text (the only time it exists in clear).
pub fn create(
    store: &dyn Store,
    tenant_id: Option<&str>,
    role: Role,
) -> forja_store::Result<(String, ApiKey)> {
    let key = generate(role);
    let row = store.create_key(tenant_id, role, &hash(&key), &key[..16])?;
    Ok((key, row))
}
