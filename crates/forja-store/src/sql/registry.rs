//! [`Registry`] in SQL (SQLite and Postgres): golden sets, versions, aliases and the log.
//! Promote and rollback are each one immediate transaction, so concurrent
//! moves are serialised and the champion always points at a promoted
//! version of its own tenant.

use super::governance::{ledger_in, settle_in};
use super::rows::{
    bad_col, col_json, col_json_opt, get_tenant, job_row, rows, to_json, BadEnum, JOB_COLS,
};
use super::tenants::charge;
use super::SqliteStore;
use crate::db::{params, Connection, OptionalExtension, Row};
use crate::error::{sql, Result, StoreError};
use crate::registry::*;
use crate::{Job, Timestamp};
use forja_core::identity::NodeKey;

pub(super) const VERSION_COLS: &str = "id, tenant_id, job_id, parent_id, base_model, base_sha256, \
    adapter_sha256, adapter_files, dataset_sha256, manifest, code_commit, hyperparameters, \
    golden_set_id, eval, eval_sha256, gate, status, status_reason, created_at, promoted_at, \
    promoted_by";

pub(super) fn version_row(r: &Row<'_>) -> crate::db::Result<ModelVersion> {
    let status: String = r.get(16)?;
    Ok(ModelVersion {
        id: r.get(0)?,
        lineage: NewVersion {
            tenant_id: r.get(1)?,
            job_id: r.get(2)?,
            parent_id: r.get(3)?,
            base_model: r.get(4)?,
            base_sha256: r.get(5)?,
            adapter_sha256: r.get(6)?,
            adapter_files: col_json(r, 7)?,
            dataset_sha256: r.get(8)?,
            manifest: col_json(r, 9)?,
            code_commit: r.get(10)?,
            hyperparameters: col_json_opt(r, 11)?,
            golden_set_id: r.get(12)?,
            eval: col_json_opt(r, 13)?,
            eval_sha256: r.get(14)?,
            gate: col_json_opt(r, 15)?,
            status: VersionStatus::parse(&status).ok_or_else(|| bad_col(16, BadEnum(status)))?,
            status_reason: r.get(17)?,
        },
        created_at: r.get(18)?,
        promoted_at: r.get(19)?,
        promoted_by: r.get(20)?,
    })
}

fn golden_row(r: &Row<'_>) -> crate::db::Result<GoldenSetRow> {
    Ok(GoldenSetRow {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        version: r.get(2)?,
        name: r.get(3)?,
        sha256: r.get(4)?,
        examples: r.get::<_, i64>(5)? as u64,
        prompt_keys: col_json(r, 6)?,
        created_at: r.get(7)?,
    })
}

fn entry_row(r: &Row<'_>) -> crate::db::Result<RegistryEntry> {
    Ok(RegistryEntry {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        kind: r.get(2)?,
        version_id: r.get(3)?,
        previous_id: r.get(4)?,
        alias: r.get(5)?,
        actor: r.get(6)?,
        reason: r.get(7)?,
        created_at: r.get(8)?,
    })
}

pub(super) fn get_version(c: &Connection, tenant: &str, id: &str) -> Result<ModelVersion> {
    c.query_row(
        &format!("SELECT {VERSION_COLS} FROM model_versions WHERE id = ?1 AND tenant_id = ?2"),
        params![id, tenant],
        version_row,
    )
    .optional()
    .map_err(sql("read model version"))?
    .ok_or_else(|| StoreError::NotFound { what: "model version", id: id.into() })
}

fn alias_target(c: &Connection, tenant: &str, name: &str) -> Result<Option<String>> {
    c.query_row(
        "SELECT version_id FROM aliases WHERE tenant_id = ?1 AND name = ?2",
        params![tenant, name],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql("read alias"))
}

fn put_alias(
    c: &Connection,
    tenant: &str,
    name: &str,
    id: &str,
    actor: &str,
    now: Timestamp,
) -> Result<()> {
    c.execute(
        "INSERT INTO aliases (tenant_id, name, version_id, updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (tenant_id, name) DO UPDATE SET version_id = excluded.version_id, \
         updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        params![tenant, name, id, now, actor],
    )
    .map_err(sql("set alias"))?;
    Ok(())
}

struct Log<'a> {
    tenant: &'a str,
    kind: &'a str,
    version: Option<&'a str>,
    previous: Option<&'a str>,
    alias: Option<&'a str>,
    actor: &'a str,
    reason: Option<&'a str>,
}

fn log(c: &Connection, l: Log<'_>, now: Timestamp) -> Result<i64> {
    if c.is_postgres() {
        // Delivered to every listening replica when the move commits.
        c.query_row(
            "SELECT pg_notify(?1, ?2)",
            params![crate::db::REGISTRY_CHANNEL, l.tenant],
            |_| Ok(()),
        )
        .map_err(sql("notify registry move"))?;
    }
    c.insert_id(
        "INSERT INTO registry_log (tenant_id, kind, version_id, previous_id, alias, actor, reason, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![l.tenant, l.kind, l.version, l.previous, l.alias, l.actor, l.reason, now],
    )
    .map_err(sql("append registry log"))
}

fn bump_generation(c: &Connection, tenant: &str) -> Result<i64> {
    c.query_row(
        "UPDATE tenants SET model_generation = model_generation + 1 WHERE id = ?1 RETURNING model_generation",
        [tenant],
        |r| r.get(0),
    )
    .map_err(sql("bump model generation"))
}

fn check_alias_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "alias `{name}`: use 1-64 letters, digits, `-`, `_` or `.`"
        )))
    }
}

fn promote_in(
    c: &Connection,
    key: &NodeKey,
    tenant_id: &str,
    id: &str,
    actor: &str,
    reason: &str,
    now: Timestamp,
) -> Result<AliasMove> {
    let v = get_version(c, tenant_id, id)?;
    if v.status() == VersionStatus::Archived {
        return Err(StoreError::Conflict(format!(
            "version {id} is archived (rolled back); register a new version instead"
        )));
    }
    let previous = alias_target(c, tenant_id, CHAMPION)?;
    if previous.as_deref() == Some(id) {
        return Err(StoreError::Conflict(format!("version {id} is already the champion")));
    }
    c.execute(
        "UPDATE model_versions SET status = 'promoted', status_reason = ?1, promoted_at = ?2, \
         promoted_by = ?3 WHERE id = ?4",
        params![reason, now, actor, id],
    )
    .map_err(sql("promote"))?;
    put_alias(c, tenant_id, CHAMPION, id, actor, now)?;
    let l = Log {
        tenant: tenant_id,
        kind: "promoted",
        version: Some(id),
        previous: previous.as_deref(),
        alias: Some(CHAMPION),
        actor,
        reason: Some(reason),
    };
    let entry_id = log(c, l, now)?;
    let generation = bump_generation(c, tenant_id)?;
    let body = serde_json::json!({
        "version": id, "previous": previous, "actor": actor, "reason": reason,
        "adapter_sha256": v.lineage.adapter_sha256, "eval_sha256": v.lineage.eval_sha256,
    });
    ledger_in(c, key, "promoted", Some(tenant_id), &body, now)?;
    Ok(AliasMove {
        version: Some(get_version(c, tenant_id, id)?),
        previous_id: previous,
        generation,
        entry_id,
    })
}

/// Archives the champion `current` and points the alias at `to` (a
/// rollback) or removes it (a demotion: the base model serves), logged and
/// with the tenant's generation bumped; the votes that let `current`
/// through are settled.
fn replace_champion(
    c: &Connection,
    key: &NodeKey,
    tenant_id: &str,
    current: String,
    to: Option<String>,
    (actor, reason): (&str, &str),
    now: Timestamp,
) -> Result<AliasMove> {
    archive(c, &current, actor, reason)?;
    match &to {
        Some(v) => put_alias(c, tenant_id, CHAMPION, v, actor, now)?,
        None => {
            c.execute(
                "DELETE FROM aliases WHERE tenant_id = ?1 AND name = ?2",
                params![tenant_id, CHAMPION],
            )
            .map_err(sql("demote"))?;
        }
    }
    let l = Log {
        tenant: tenant_id,
        kind: if to.is_some() { "rolled_back" } else { "demoted" },
        version: to.as_deref(),
        previous: Some(&current),
        alias: Some(CHAMPION),
        actor,
        reason: Some(reason),
    };
    let entry_id = log(c, l, now)?;
    let generation = bump_generation(c, tenant_id)?;
    let kind = if to.is_some() { "rolled_back" } else { "demoted" };
    let body = serde_json::json!({
        "version": to, "from": current, "actor": actor, "reason": reason,
    });
    ledger_in(c, key, kind, Some(tenant_id), &body, now)?;
    // The auditors who let it through answer for it.
    settle_in(c, key, tenant_id, &current, now)?;
    let version = to.map(|v| get_version(c, tenant_id, &v)).transpose()?;
    Ok(AliasMove { version, previous_id: Some(current), generation, entry_id })
}

fn archive(c: &Connection, id: &str, actor: &str, reason: &str) -> Result<()> {
    c.execute(
        "UPDATE model_versions SET status = 'archived', status_reason = ?1 WHERE id = ?2",
        params![format!("rolled back by {actor}: {reason}"), id],
    )
    .map_err(sql("rollback"))?;
    Ok(())
}

/// The version a rollback of `current` goes back to: the newest promotion
/// of a version still promoted, other than `current` (the one it replaced,
/// or after several rollbacks the one before).
fn previous_of(c: &Connection, tenant_id: &str, current: &str) -> Result<Option<String>> {
    c.query_row(
        "SELECT l.version_id FROM registry_log l JOIN model_versions v ON v.id = l.version_id \
         WHERE l.tenant_id = ?1 AND l.kind IN ('promoted', 'rolled_back') AND v.status = 'promoted' \
         AND v.id <> ?2 ORDER BY l.id DESC LIMIT 1",
        params![tenant_id, current],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql("previous champion"))
}

impl Registry for SqliteStore {
    fn add_golden_set(
        &self,
        tenant_id: &str,
        name: &str,
        sha256: &str,
        examples: u64,
        bytes: u64,
        prompt_keys: &[String],
    ) -> Result<GoldenSetRow> {
        self.tx("add golden set", |c, now| {
            let tenant = get_tenant(c, tenant_id)?;
            charge(c, &tenant, bytes)?;
            let version: i64 = c
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM golden_sets WHERE tenant_id = ?1",
                    [tenant_id],
                    |r| r.get(0),
                )
                .map_err(sql("add golden set"))?;
            let id = crate::new_id("gold");
            c.execute(
                "INSERT INTO golden_sets (id, tenant_id, version, name, sha256, examples, prompt_keys, created_at, bytes) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![id, tenant_id, version, name, sha256, examples as i64, to_json(&prompt_keys), now, bytes as i64],
            )
            .map_err(sql("add golden set"))?;
            Ok(GoldenSetRow {
                id,
                tenant_id: tenant_id.into(),
                version,
                name: name.into(),
                sha256: sha256.into(),
                examples,
                prompt_keys: prompt_keys.to_vec(),
                created_at: now,
            })
        })
    }

    fn golden_sets(&self, tenant_id: &str) -> Result<Vec<GoldenSetRow>> {
        self.read(|c, _| {
            rows(
                c,
                "list golden sets",
                "SELECT id, tenant_id, version, name, sha256, examples, prompt_keys, created_at \
                 FROM golden_sets WHERE tenant_id = ?1 ORDER BY version DESC",
                [tenant_id],
                golden_row,
            )
        })
    }

    fn register_version(
        &self,
        new: &NewVersion,
        actor: &str,
    ) -> Result<(ModelVersion, Option<AliasMove>)> {
        self.tx("register model version", |c, now| {
            get_tenant(c, &new.tenant_id)?;
            if let Some(job) = &new.job_id {
                let dup: Option<String> = c
                    .query_row("SELECT id FROM model_versions WHERE job_id = ?1", [job], |r| r.get(0))
                    .optional()
                    .map_err(sql("register model version"))?;
                if let Some(v) = dup {
                    return Err(StoreError::Conflict(format!(
                        "job `{job}` is already registered as version {v}"
                    )));
                }
            }
            if let Some(p) = &new.parent_id {
                get_version(c, &new.tenant_id, p)?;
            }
            let id = uuid::Uuid::new_v4().to_string();
            // A version the gate promotes is registered and promoted in one
            // transaction: a crash cannot leave it approved but not served.
            let initial = match new.status {
                VersionStatus::Promoted => VersionStatus::Candidate,
                s => s,
            };
            c.execute(
                &format!(
                    "INSERT INTO model_versions ({VERSION_COLS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, NULL, NULL)"
                ),
                params![
                    id,
                    new.tenant_id,
                    new.job_id,
                    new.parent_id,
                    new.base_model,
                    new.base_sha256,
                    new.adapter_sha256,
                    to_json(&new.adapter_files),
                    new.dataset_sha256,
                    to_json(&new.manifest),
                    new.code_commit,
                    new.hyperparameters.as_ref().map(to_json),
                    new.golden_set_id,
                    new.eval.as_ref().map(to_json),
                    new.eval_sha256,
                    new.gate.as_ref().map(to_json),
                    initial.as_str(),
                    new.status_reason,
                    now
                ],
            )
            .map_err(sql("register model version"))?;
            put_alias(c, &new.tenant_id, CANDIDATE, &id, actor, now)?;
            let l = Log {
                tenant: &new.tenant_id,
                kind: "registered",
                version: Some(&id),
                previous: None,
                alias: Some(CANDIDATE),
                actor,
                reason: new.status_reason.as_deref(),
            };
            log(c, l, now)?;
            if initial == VersionStatus::AwaitingAudit {
                let body = serde_json::json!({
                    "version": id, "eval_sha256": new.eval_sha256,
                    "adapter_sha256": new.adapter_sha256, "reason": new.status_reason,
                });
                ledger_in(c, &self.key, "audit_opened", Some(&new.tenant_id), &body, now)?;
            }
            let moved = match new.status {
                VersionStatus::Promoted => {
                    let why = new.status_reason.as_deref().unwrap_or("passed the gate");
                    Some(promote_in(c, &self.key, &new.tenant_id, &id, actor, why, now)?)
                }
                _ => None,
            };
            Ok((get_version(c, &new.tenant_id, &id)?, moved))
        })
    }

    fn unregistered_jobs(&self, limit: usize) -> Result<Vec<Job>> {
        self.read(|c, _| {
            rows(
                c,
                "list unregistered jobs",
                &format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE status = 'succeeded' AND id NOT IN \
                     (SELECT job_id FROM model_versions WHERE job_id IS NOT NULL) \
                     ORDER BY finished_at, id LIMIT ?1"
                ),
                [limit as i64],
                job_row,
            )
        })
    }

    fn model_version(&self, tenant_id: &str, id: &str) -> Result<ModelVersion> {
        self.read(|c, _| get_version(c, tenant_id, id))
    }

    fn model_versions(&self, tenant_id: &str) -> Result<Vec<ModelVersion>> {
        self.read(|c, _| {
            rows(
                c,
                "list model versions",
                &format!(
                    "SELECT {VERSION_COLS} FROM model_versions WHERE tenant_id = ?1 \
                     ORDER BY created_at DESC, rowid DESC"
                ),
                [tenant_id],
                version_row,
            )
        })
    }

    fn version_of_job(&self, tenant_id: &str, job_id: &str) -> Result<Option<ModelVersion>> {
        self.read(|c, _| {
            c.query_row(
                &format!("SELECT {VERSION_COLS} FROM model_versions WHERE job_id = ?1 AND tenant_id = ?2"),
                params![job_id, tenant_id],
                version_row,
            )
            .optional()
            .map_err(sql("read model version"))
        })
    }

    fn set_version_status(
        &self,
        tenant_id: &str,
        id: &str,
        status: VersionStatus,
        reason: &str,
        actor: &str,
    ) -> Result<ModelVersion> {
        self.tx("set version status", |c, now| {
            let v = get_version(c, tenant_id, id)?;
            if alias_target(c, tenant_id, CHAMPION)?.as_deref() == Some(id) {
                return Err(StoreError::Conflict(format!(
                    "version {id} is the champion; roll back or promote another version first"
                )));
            }
            if status == VersionStatus::Promoted {
                return Err(StoreError::Conflict("use promote to promote a version".into()));
            }
            c.execute(
                "UPDATE model_versions SET status = ?1, status_reason = ?2 WHERE id = ?3",
                params![status.as_str(), reason, id],
            )
            .map_err(sql("set version status"))?;
            let kind = match status {
                VersionStatus::Rejected => "rejected",
                VersionStatus::Failed => "failed",
                _ => "status",
            };
            let l = Log {
                tenant: tenant_id,
                kind,
                version: Some(&v.id),
                previous: None,
                alias: None,
                actor,
                reason: Some(reason),
            };
            log(c, l, now)?;
            if v.status() == VersionStatus::AwaitingAudit {
                let body = serde_json::json!({
                    "version": id, "status": status.as_str(), "actor": actor, "reason": reason,
                });
                ledger_in(c, &self.key, "audit_closed", Some(tenant_id), &body, now)?;
            }
            get_version(c, tenant_id, id)
        })
    }

    fn promote(&self, tenant_id: &str, id: &str, actor: &str, reason: &str) -> Result<AliasMove> {
        self.tx("promote", |c, now| promote_in(c, &self.key, tenant_id, id, actor, reason, now))
    }

    fn previous_champion(&self, tenant_id: &str) -> Result<Option<String>> {
        self.read(|c, _| match alias_target(c, tenant_id, CHAMPION)? {
            Some(current) => previous_of(c, tenant_id, &current),
            None => Ok(None),
        })
    }

    fn rollback(&self, tenant_id: &str, actor: &str, reason: &str) -> Result<AliasMove> {
        self.tx("rollback", |c, now| {
            get_tenant(c, tenant_id)?;
            let current = alias_target(c, tenant_id, CHAMPION)?.ok_or_else(|| {
                StoreError::Conflict("nothing to roll back: the tenant has no champion yet".into())
            })?;
            let Some(previous) = previous_of(c, tenant_id, &current)? else {
                return Err(StoreError::Conflict(format!(
                    "no previous promoted version to roll back to (the champion {current} is the first)"
                )));
            };
            replace_champion(c, &self.key, tenant_id, current, Some(previous), (actor, reason), now)
        })
    }

    fn demote(&self, tenant_id: &str, actor: &str, reason: &str) -> Result<AliasMove> {
        self.tx("demote", |c, now| {
            get_tenant(c, tenant_id)?;
            let current = alias_target(c, tenant_id, CHAMPION)?.ok_or_else(|| {
                StoreError::Conflict("nothing to demote: the tenant has no champion".into())
            })?;
            replace_champion(c, &self.key, tenant_id, current, None, (actor, reason), now)
        })
    }

    fn set_alias(&self, tenant_id: &str, name: &str, id: &str, actor: &str) -> Result<Alias> {
        check_alias_name(name)?;
        if name == CHAMPION {
            return Err(StoreError::Conflict(
                "`champion` moves only by promote or rollback".into(),
            ));
        }
        self.tx("set alias", |c, now| {
            get_version(c, tenant_id, id)?;
            put_alias(c, tenant_id, name, id, actor, now)?;
            let l = Log {
                tenant: tenant_id,
                kind: "alias_set",
                version: Some(id),
                previous: None,
                alias: Some(name),
                actor,
                reason: None,
            };
            log(c, l, now)?;
            Ok(Alias {
                name: name.into(),
                version_id: id.into(),
                updated_at: now,
                updated_by: actor.into(),
            })
        })
    }

    fn aliases(&self, tenant_id: &str) -> Result<Vec<Alias>> {
        self.read(|c, _| {
            rows(
                c,
                "list aliases",
                "SELECT name, version_id, updated_at, updated_by FROM aliases WHERE tenant_id = ?1 ORDER BY name",
                [tenant_id],
                |r| {
                    Ok(Alias {
                        name: r.get(0)?,
                        version_id: r.get(1)?,
                        updated_at: r.get(2)?,
                        updated_by: r.get(3)?,
                    })
                },
            )
        })
    }

    fn resolve_alias(&self, tenant_id: &str, name: &str) -> Result<ModelVersion> {
        self.read(|c, _| {
            let id = alias_target(c, tenant_id, name)?
                .ok_or_else(|| StoreError::NotFound { what: "alias", id: name.into() })?;
            get_version(c, tenant_id, &id)
        })
    }

    fn registry_log(&self, tenant_id: &str, after: i64) -> Result<Vec<RegistryEntry>> {
        self.read(|c, _| {
            rows(
                c,
                "read registry log",
                "SELECT id, tenant_id, kind, version_id, previous_id, alias, actor, reason, created_at \
                 FROM registry_log WHERE tenant_id = ?1 AND id > ?2 ORDER BY id",
                params![tenant_id, after],
                entry_row,
            )
        })
    }

    fn model_generations(&self) -> Result<Vec<(String, i64)>> {
        self.read(|c, _| {
            rows(
                c,
                "read model generations",
                "SELECT id, model_generation FROM tenants ORDER BY id",
                params![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }
}
