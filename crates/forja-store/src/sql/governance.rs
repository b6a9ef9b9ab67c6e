//! [`Governance`] in SQL (SQLite and Postgres): auditors, votes, settlement (slashing) and the
//! ledger. Ledger entries are appended inside the transaction of the change
//! they record; the immediate transaction serialises appends, and the
//! sequence number is the primary key, so two writers cannot fork the chain.

use super::registry::{get_version, version_row, VERSION_COLS};
use super::rows::{rows, to_json};
use super::SqliteStore;
use crate::db::{params, Connection, OptionalExtension, Row};
use crate::error::{sql, Result, StoreError};
use crate::governance::*;
use crate::{ModelVersion, Timestamp, VersionStatus};
use forja_core::identity::NodeKey;

const AUDITOR_COLS: &str = "id, name, public_key, reputation, active, created_at, updated_at";

fn auditor_row(r: &Row<'_>) -> crate::db::Result<Auditor> {
    Ok(Auditor {
        id: r.get(0)?,
        name: r.get(1)?,
        public_key: r.get(2)?,
        reputation: r.get(3)?,
        active: r.get::<_, i64>(4)? != 0,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

const LEDGER_COLS: &str =
    "seq, kind, tenant_id, body, created_at, prev_hash, hash, signer, signature";

fn ledger_row(r: &Row<'_>) -> crate::db::Result<LedgerEntry> {
    Ok(LedgerEntry {
        seq: r.get(0)?,
        kind: r.get(1)?,
        tenant_id: r.get(2)?,
        body: r.get(3)?,
        created_at: r.get(4)?,
        prev_hash: r.get(5)?,
        hash: r.get(6)?,
        signer: r.get(7)?,
        signature: r.get(8)?,
    })
}

const VOTE_COLS: &str = "v.id, v.tenant_id, v.version_id, v.auditor_id, v.approve, \
    v.report_sha256, v.signed_at, v.signature, a.name, v.reputation, v.created_at";

fn vote_row(r: &Row<'_>) -> crate::db::Result<Vote> {
    Ok(Vote {
        id: r.get(0)?,
        vote: NewVote {
            tenant_id: r.get(1)?,
            version_id: r.get(2)?,
            auditor_id: r.get(3)?,
            approve: r.get::<_, i64>(4)? != 0,
            report_sha256: r.get(5)?,
            signed_at: r.get(6)?,
            signature: r.get(7)?,
        },
        auditor: r.get(8)?,
        reputation: r.get(9)?,
        created_at: r.get(10)?,
    })
}

/// Appends a ledger entry, hashed on the previous one and signed by `key`.
pub(super) fn ledger_in(
    c: &Connection,
    key: &NodeKey,
    kind: &str,
    tenant: Option<&str>,
    body: &serde_json::Value,
    now: Timestamp,
) -> Result<LedgerEntry> {
    let last: Option<(i64, String)> = c
        .query_row("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1", params![], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(sql("read ledger head"))?;
    let (seq, prev_hash) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_string()),
    };
    let body = to_json(body);
    let hash = entry_hash(seq, &prev_hash, now, kind, tenant, &body);
    let entry = LedgerEntry {
        seq,
        kind: kind.to_string(),
        tenant_id: tenant.map(str::to_string),
        body,
        created_at: now,
        prev_hash,
        signature: key.sign_hex(hash.as_bytes()),
        hash,
        signer: key.public_hex(),
    };
    c.execute(
        &format!("INSERT INTO ledger ({LEDGER_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            entry.seq,
            entry.kind,
            entry.tenant_id,
            entry.body,
            entry.created_at,
            entry.prev_hash,
            entry.hash,
            entry.signer,
            entry.signature
        ],
    )
    .map_err(sql("append to the ledger"))?;
    Ok(entry)
}

fn get_auditor(c: &Connection, key: &str) -> Result<Auditor> {
    c.query_row(
        &format!(
            "SELECT {AUDITOR_COLS} FROM auditors WHERE id = ?1 OR name = ?1 OR public_key = lower(?1)"
        ),
        [key],
        auditor_row,
    )
    .optional()
    .map_err(sql("read auditor"))?
    .ok_or_else(|| StoreError::NotFound { what: "auditor", id: key.into() })
}

/// Settles the votes on a version that was rolled back or demoted:
/// approvers lose [`SLASH`], rejecters gain [`REWARD`], an auditor that
/// falls below [`MIN_REPUTATION`] is deactivated; logged in the ledger.
/// Each vote is settled once.
pub(super) fn settle_in(
    c: &Connection,
    key: &NodeKey,
    tenant: &str,
    version: &str,
    now: Timestamp,
) -> Result<Vec<Settlement>> {
    let votes: Vec<(i64, String, bool)> = rows(
        c,
        "read votes to settle",
        "SELECT id, auditor_id, approve FROM audit_votes WHERE version_id = ?1 AND settled = 0 ORDER BY id",
        [version],
        |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)),
    )?;
    let mut out = Vec::new();
    for (id, auditor, approve) in votes {
        let a = get_auditor(c, &auditor)?;
        let delta = if approve { -SLASH } else { REWARD };
        let reputation = (a.reputation + delta).clamp(0, MAX_REPUTATION);
        let deactivated = a.active && reputation < MIN_REPUTATION;
        c.execute(
            "UPDATE auditors SET reputation = ?1, active = ?2, updated_at = ?3 WHERE id = ?4",
            params![reputation, (a.active && !deactivated) as i64, now, a.id],
        )
        .map_err(sql("settle votes"))?;
        c.execute("UPDATE audit_votes SET settled = 1 WHERE id = ?1", [id])
            .map_err(sql("settle votes"))?;
        out.push(Settlement {
            auditor: a.name,
            delta: reputation - a.reputation,
            reputation,
            deactivated,
        });
    }
    if !out.is_empty() {
        let body = serde_json::json!({ "version": version, "settlements": out });
        ledger_in(c, key, "slashed", Some(tenant), &body, now)?;
    }
    Ok(out)
}

impl Governance for SqliteStore {
    fn add_auditor(&self, name: &str, public_key: &str, reputation: i64) -> Result<Auditor> {
        let public_key = forja_core::identity::public_key(public_key)
            .map_err(|e| StoreError::Conflict(format!("auditor `{name}`: {e}")))?;
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(StoreError::Conflict("an auditor's name is 1-64 characters".into()));
        }
        if !(0..=MAX_REPUTATION).contains(&reputation) {
            return Err(StoreError::Conflict(format!(
                "reputation {reputation}: use 0 to {MAX_REPUTATION}"
            )));
        }
        self.tx("add auditor", |c, now| {
            let taken: Option<String> = c
                .query_row(
                    "SELECT name FROM auditors WHERE name = ?1 OR public_key = ?2",
                    params![name, public_key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("add auditor"))?;
            if let Some(t) = taken {
                return Err(StoreError::Conflict(format!(
                    "auditor `{t}` already has this name or public key"
                )));
            }
            let a = Auditor {
                id: crate::new_id("aud"),
                name: name.to_string(),
                public_key: public_key.clone(),
                reputation,
                active: reputation >= MIN_REPUTATION,
                created_at: now,
                updated_at: now,
            };
            c.execute(
                &format!(
                    "INSERT INTO auditors ({AUDITOR_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![a.id, a.name, a.public_key, a.reputation, a.active as i64, now, now],
            )
            .map_err(sql("add auditor"))?;
            let body = serde_json::json!({
                "auditor": a.id, "name": a.name, "public_key": a.public_key,
                "reputation": a.reputation, "active": a.active,
            });
            ledger_in(c, &self.key, "auditor_added", None, &body, now)?;
            Ok(a)
        })
    }

    fn auditors(&self) -> Result<Vec<Auditor>> {
        self.read(|c, _| {
            rows(
                c,
                "list auditors",
                &format!("SELECT {AUDITOR_COLS} FROM auditors ORDER BY name"),
                params![],
                auditor_row,
            )
        })
    }

    fn auditor(&self, key: &str) -> Result<Auditor> {
        self.read(|c, _| get_auditor(c, key))
    }

    fn set_auditor_active(&self, key: &str, active: bool, actor: &str) -> Result<Auditor> {
        self.tx("set auditor active", |c, now| {
            let a = get_auditor(c, key)?;
            if active && a.reputation < MIN_REPUTATION {
                return Err(StoreError::Conflict(format!(
                    "auditor `{}` has reputation {}, under {MIN_REPUTATION}: it stays inactive",
                    a.name, a.reputation
                )));
            }
            c.execute(
                "UPDATE auditors SET active = ?1, updated_at = ?2 WHERE id = ?3",
                params![active as i64, now, a.id],
            )
            .map_err(sql("set auditor active"))?;
            let kind = if active { "auditor_activated" } else { "auditor_deactivated" };
            let body = serde_json::json!({ "auditor": a.id, "name": a.name, "actor": actor });
            ledger_in(c, &self.key, kind, None, &body, now)?;
            get_auditor(c, &a.id)
        })
    }

    fn record_vote(&self, v: &NewVote) -> Result<Vote> {
        self.tx("record vote", |c, now| {
            let version = get_version(c, &v.tenant_id, &v.version_id)?;
            if version.status() != VersionStatus::AwaitingAudit {
                return Err(StoreError::Conflict(format!(
                    "version {} is {}, not awaiting audit: votes are closed",
                    v.version_id,
                    version.status().as_str()
                )));
            }
            let a = get_auditor(c, &v.auditor_id)?;
            if !a.active {
                return Err(StoreError::Conflict(format!(
                    "auditor `{}` is not active (reputation {})",
                    a.name, a.reputation
                )));
            }
            let dup: Option<i64> = c
                .query_row(
                    "SELECT id FROM audit_votes WHERE (version_id = ?1 AND auditor_id = ?2) OR signature = ?3",
                    params![v.version_id, a.id, v.signature],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("record vote"))?;
            if dup.is_some() {
                return Err(StoreError::Conflict(format!(
                    "auditor `{}` already voted on version {} (one vote each; a replayed vote is refused)",
                    a.name, v.version_id
                )));
            }
            let id = c.insert_id(
                "INSERT INTO audit_votes (tenant_id, version_id, auditor_id, approve, report_sha256, \
                 signed_at, signature, reputation, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    v.tenant_id,
                    v.version_id,
                    a.id,
                    v.approve as i64,
                    v.report_sha256,
                    v.signed_at,
                    v.signature,
                    a.reputation,
                    now
                ],
            )
            .map_err(sql("record vote"))?;
            let body = serde_json::json!({
                "version": v.version_id, "auditor": a.id, "name": a.name, "approve": v.approve,
                "report_sha256": v.report_sha256, "signed_at": v.signed_at, "signature": v.signature,
            });
            ledger_in(c, &self.key, "vote", Some(&v.tenant_id), &body, now)?;
            c.query_row(
                &format!(
                    "SELECT {VOTE_COLS} FROM audit_votes v JOIN auditors a ON a.id = v.auditor_id WHERE v.id = ?1"
                ),
                [id],
                vote_row,
            )
            .map_err(sql("record vote"))
        })
    }

    fn votes(&self, tenant_id: &str, version_id: &str) -> Result<Vec<Vote>> {
        self.read(|c, _| {
            get_version(c, tenant_id, version_id)?;
            rows(
                c,
                "list votes",
                &format!(
                    "SELECT {VOTE_COLS} FROM audit_votes v JOIN auditors a ON a.id = v.auditor_id \
                     WHERE v.tenant_id = ?1 AND v.version_id = ?2 ORDER BY v.id"
                ),
                params![tenant_id, version_id],
                vote_row,
            )
        })
    }

    fn awaiting_audit(&self) -> Result<Vec<ModelVersion>> {
        self.read(|c, _| {
            rows(
                c,
                "list versions awaiting audit",
                &format!(
                    "SELECT {VERSION_COLS} FROM model_versions WHERE status = 'awaiting_audit' \
                     ORDER BY created_at, rowid"
                ),
                params![],
                version_row,
            )
        })
    }

    fn append_ledger(
        &self,
        kind: &str,
        tenant_id: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<LedgerEntry> {
        self.tx("append to the ledger", |c, now| {
            ledger_in(c, &self.key, kind, tenant_id, body, now)
        })
    }

    fn ledger(&self, after: i64, limit: usize) -> Result<Vec<LedgerEntry>> {
        self.read(|c, _| {
            rows(
                c,
                "read the ledger",
                &format!("SELECT {LEDGER_COLS} FROM ledger WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
                params![after, limit.min(i64::MAX as usize) as i64],
                ledger_row,
            )
        })
    }

    fn node_public_key(&self) -> String {
        self.key.public_hex()
    }
}
