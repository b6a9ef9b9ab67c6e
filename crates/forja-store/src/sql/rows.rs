//! Rows to types: the column lists, the mappers, JSON columns, and the
//! lookups every concern shares (a tenant, a job).

use crate::db::{Connection, OptionalExtension, Row};
use crate::error::{sql, Result, StoreError};
use crate::types::*;

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store types serialise")
}

pub(super) fn bad_col(idx: usize, e: impl std::error::Error) -> crate::db::Error {
    crate::db::Error::Conversion { idx, message: e.to_string() }
}

pub(super) fn col_json<T: serde::de::DeserializeOwned>(
    r: &Row<'_>,
    idx: usize,
) -> crate::db::Result<T> {
    let s: String = r.get(idx)?;
    serde_json::from_str(&s).map_err(|e| bad_col(idx, e))
}

pub(super) fn col_json_opt<T: serde::de::DeserializeOwned>(
    r: &Row<'_>,
    idx: usize,
) -> crate::db::Result<Option<T>> {
    let s: Option<String> = r.get(idx)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| bad_col(idx, e))).transpose()
}

#[derive(Debug)]
pub(super) struct BadEnum(pub String);
impl std::fmt::Display for BadEnum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown value `{}`", self.0)
    }
}
impl std::error::Error for BadEnum {}

/// Every row of `query`, mapped by `row`.
pub(super) fn rows<T>(
    c: &Connection,
    op: &'static str,
    query: &str,
    params: impl crate::db::Params,
    row: impl FnMut(&Row<'_>) -> crate::db::Result<T>,
) -> Result<Vec<T>> {
    let mut st = c.prepare(query).map_err(sql(op))?;
    let out = st.query_map(params, row).map_err(sql(op))?.collect::<crate::db::Result<_>>();
    out.map_err(sql(op))
}

pub(super) const TENANT_COLS: &str = "id, name, tier, settings, created_at";

pub(super) fn tenant_row(r: &Row<'_>) -> crate::db::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        name: r.get(1)?,
        tier: r.get(2)?,
        settings: col_json(r, 3)?,
        created_at: r.get(4)?,
    })
}

pub(super) fn get_tenant(c: &Connection, id: &str) -> Result<Tenant> {
    c.query_row(&format!("SELECT {TENANT_COLS} FROM tenants WHERE id = ?1"), [id], tenant_row)
        .optional()
        .map_err(sql("read tenant"))?
        .ok_or_else(|| StoreError::NotFound { what: "tenant", id: id.into() })
}

pub(super) const KEY_COLS: &str =
    "id, tenant_id, role, prefix, name, created_at, expires_at, revoked_at";

pub(super) fn key_row(r: &Row<'_>) -> crate::db::Result<ApiKey> {
    let role: String = r.get(2)?;
    Ok(ApiKey {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        role: Role::parse(&role).ok_or_else(|| bad_col(2, BadEnum(role)))?,
        prefix: r.get(3)?,
        name: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

pub(super) const JOB_COLS: &str =
    "id, tenant_id, model, training_file, validation_file, status, trigger, spec, \
    resolved, priority, error_code, error_message, error_param, trained_tokens, fine_tuned_model, \
    adapter_sha256, result, progress_step, progress_total, lease_worker, lease_until, attempts, \
    created_at, started_at, finished_at, mix";

pub(super) fn job_row(r: &Row<'_>) -> crate::db::Result<Job> {
    let status: String = r.get(5)?;
    let trigger: String = r.get(6)?;
    let code: Option<String> = r.get(10)?;
    Ok(Job {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        model: r.get(2)?,
        training_file: r.get(3)?,
        validation_file: r.get(4)?,
        status: JobStatus::parse(&status).ok_or_else(|| bad_col(5, BadEnum(status)))?,
        trigger: match trigger.as_str() {
            "manual" => Trigger::Manual,
            "threshold" => Trigger::Threshold,
            "cron" => Trigger::Cron,
            "federation" => Trigger::Federation,
            _ => return Err(bad_col(6, BadEnum(trigger))),
        },
        spec: col_json(r, 7)?,
        hyperparameters: col_json_opt(r, 8)?,
        priority: r.get(9)?,
        error: match code {
            Some(code) => Some(JobError { code, message: r.get(11)?, param: r.get(12)? }),
            None => None,
        },
        trained_tokens: r.get::<_, Option<i64>>(13)?.map(|t| t as u64),
        fine_tuned_model: r.get(14)?,
        adapter_sha256: r.get(15)?,
        result: col_json_opt(r, 16)?,
        progress_step: r.get::<_, i64>(17)? as u64,
        progress_total: r.get::<_, i64>(18)? as u64,
        lease_worker: r.get(19)?,
        lease_until: r.get(20)?,
        attempts: r.get::<_, i64>(21)? as u32,
        created_at: r.get(22)?,
        started_at: r.get(23)?,
        finished_at: r.get(24)?,
        mix: col_json_opt(r, 25)?,
    })
}

pub(super) fn get_job(c: &Connection, tenant: Option<&str>, id: &str) -> Result<Job> {
    let job = c
        .query_row(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"), [id], job_row)
        .optional()
        .map_err(sql("read job"))?;
    match job {
        Some(j) if tenant.is_none_or(|t| t == j.tenant_id) => Ok(j),
        _ => Err(StoreError::NotFound { what: "fine-tuning job", id: id.into() }),
    }
}

pub(super) const FILE_COLS: &str = "id, tenant_id, purpose, filename, bytes, sha256, lines, \
    status, status_details, created_at, origin";

pub(super) fn file_row(r: &Row<'_>) -> crate::db::Result<FileRow> {
    let origin: String = r.get(10)?;
    Ok(FileRow {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        purpose: r.get(2)?,
        filename: r.get(3)?,
        bytes: r.get::<_, i64>(4)? as u64,
        sha256: r.get(5)?,
        lines: r.get::<_, i64>(6)? as u64,
        status: r.get(7)?,
        status_details: r.get(8)?,
        created_at: r.get(9)?,
        origin: match origin.as_str() {
            "upload" => FileOrigin::Upload,
            "generated" => FileOrigin::Generated,
            _ => return Err(bad_col(10, BadEnum(origin))),
        },
    })
}

pub(super) fn event_row(r: &Row<'_>) -> crate::db::Result<JobEvent> {
    let level: String = r.get(3)?;
    Ok(JobEvent {
        id: r.get(0)?,
        job_id: r.get(1)?,
        created_at: r.get(2)?,
        level: match level.as_str() {
            "info" => Level::Info,
            "warn" => Level::Warn,
            "error" => Level::Error,
            _ => return Err(bad_col(3, BadEnum(level))),
        },
        kind: r.get(4)?,
        message: r.get(5)?,
        data: col_json_opt(r, 6)?,
    })
}

pub(super) fn checkpoint_row(r: &Row<'_>) -> crate::db::Result<Checkpoint> {
    Ok(Checkpoint {
        id: r.get(0)?,
        job_id: r.get(1)?,
        step: r.get::<_, i64>(2)? as u64,
        files: col_json(r, 3)?,
        metrics: col_json(r, 4)?,
        created_at: r.get(5)?,
    })
}

pub(super) fn example_row(r: &Row<'_>) -> crate::db::Result<Example> {
    let status: String = r.get(1)?;
    Ok(Example {
        id: r.get(0)?,
        status: match status.as_str() {
            "curated" => ExampleStatus::Curated,
            "rejected" => ExampleStatus::Rejected,
            "claimed" => ExampleStatus::Claimed,
            "held" => ExampleStatus::Held,
            _ => return Err(bad_col(1, BadEnum(status))),
        },
        reason: r.get(2)?,
        record: col_json_opt(r, 3)?,
        job_id: r.get(4)?,
    })
}
