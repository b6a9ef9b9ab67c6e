//! [`SqliteStore`]: the embedded [`Store`], one SQLite file in WAL mode.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction: it takes the write
//! lock before reading, so a read-decide-write (the threshold trigger, the
//! quota check, a lease) cannot interleave with another connection's, in
//! this process or another. `synchronous = FULL`: a committed transaction
//! survives a kill -9 and a power cut.

use crate::error::{sql, Result, StoreError};
use crate::types::*;
use crate::{Finish, Store};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod completions;
mod registry;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_registry.sql")),
    (3, include_str!("../migrations/sqlite/0003_completions.sql")),
];

type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    clock: Clock,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn system_now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A random id with a prefix (`ftjob-…`): 96 bits, hex.
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 12] = rand::random();
    format!("{prefix}-{}", hex::encode(bytes))
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`. Writers wait
    /// up to `busy_timeout` for another connection's lock before `Busy`.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<SqliteStore> {
        let fail = |reason: String| StoreError::Open { path: path.to_path_buf(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
        }
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        conn.busy_timeout(busy_timeout).map_err(|e| fail(e.to_string()))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(|e| fail(format!("cannot set up the database ({e}); is it a forja database?")))?;
        let mut store = SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            clock: Arc::new(system_now),
        };
        store.migrate().map_err(|e| fail(e.to_string()))?;
        Ok(store)
    }

    /// Replaces the clock (tests of quotas, leases and schedules).
    pub fn with_clock(mut self, clock: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Caps the database size in pages (a full disk, for tests and for
    /// operators who want a hard limit).
    pub fn set_max_pages(&self, pages: u64) -> Result<()> {
        self.lock()
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(sql("set max_page_count"))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<()> {
        let conn = self.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .map_err(sql("create schema_migrations"))?;
        let current: i64 = conn
            .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
            .map_err(sql("read schema version"))?;
        let newest = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > newest {
            return Err(StoreError::Conflict(format!(
                "the database has schema version {current}, newer than this forja knows ({newest}); upgrade forja"
            )));
        }
        for (version, script) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql("begin migration"))?;
            tx.execute_batch(script).map_err(sql("migrate"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, system_now()],
            )
            .map_err(sql("record migration"))?;
            tx.commit().map_err(sql("commit migration"))?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the connection cannot leave a transaction
        // open (rusqlite rolls back on drop), so the connection is usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in one immediate transaction.
    fn tx<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Transaction<'_>, Timestamp) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(op))?;
        let out = f(&tx, (self.clock)())?;
        tx.commit().map_err(sql(op))?;
        Ok(out)
    }

    /// Runs a read.
    fn read<T>(&self, f: impl FnOnce(&Connection, Timestamp) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&conn, (self.clock)())
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store types serialise")
}

fn bad_col(idx: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
}

fn col_json<T: serde::de::DeserializeOwned>(r: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let s: String = r.get(idx)?;
    serde_json::from_str(&s).map_err(|e| bad_col(idx, e))
}

fn col_json_opt<T: serde::de::DeserializeOwned>(
    r: &Row<'_>,
    idx: usize,
) -> rusqlite::Result<Option<T>> {
    let s: Option<String> = r.get(idx)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| bad_col(idx, e))).transpose()
}

#[derive(Debug)]
struct BadEnum(String);
impl std::fmt::Display for BadEnum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown value `{}`", self.0)
    }
}
impl std::error::Error for BadEnum {}

const TENANT_COLS: &str = "id, name, tier, settings, created_at";

fn tenant_row(r: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        name: r.get(1)?,
        tier: r.get(2)?,
        settings: col_json(r, 3)?,
        created_at: r.get(4)?,
    })
}

const JOB_COLS: &str =
    "id, tenant_id, model, training_file, validation_file, status, trigger, spec, \
    resolved, priority, error_code, error_message, error_param, trained_tokens, fine_tuned_model, \
    adapter_sha256, result, progress_step, progress_total, lease_worker, lease_until, attempts, \
    created_at, started_at, finished_at";

fn job_row(r: &Row<'_>) -> rusqlite::Result<Job> {
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
    })
}

const FILE_COLS: &str =
    "id, tenant_id, purpose, filename, bytes, sha256, lines, status, status_details, created_at";

fn file_row(r: &Row<'_>) -> rusqlite::Result<FileRow> {
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
    })
}

fn event_row(r: &Row<'_>) -> rusqlite::Result<JobEvent> {
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

fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        id: r.get(0)?,
        job_id: r.get(1)?,
        step: r.get::<_, i64>(2)? as u64,
        files: col_json(r, 3)?,
        metrics: col_json(r, 4)?,
        created_at: r.get(5)?,
    })
}

fn example_row(r: &Row<'_>) -> rusqlite::Result<Example> {
    let status: String = r.get(1)?;
    Ok(Example {
        id: r.get(0)?,
        status: match status.as_str() {
            "curated" => ExampleStatus::Curated,
            "rejected" => ExampleStatus::Rejected,
            "claimed" => ExampleStatus::Claimed,
            _ => return Err(bad_col(1, BadEnum(status))),
        },
        reason: r.get(2)?,
        record: col_json_opt(r, 3)?,
        job_id: r.get(4)?,
    })
}

/// Every row of `query`, mapped by `row`.
fn rows<T>(
    c: &Connection,
    op: &'static str,
    query: &str,
    params: impl rusqlite::Params,
    row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut st = c.prepare(query).map_err(sql(op))?;
    let out = st.query_map(params, row).map_err(sql(op))?.collect::<rusqlite::Result<_>>();
    out.map_err(sql(op))
}

fn get_tenant(c: &Connection, id: &str) -> Result<Tenant> {
    c.query_row(&format!("SELECT {TENANT_COLS} FROM tenants WHERE id = ?1"), [id], tenant_row)
        .optional()
        .map_err(sql("read tenant"))?
        .ok_or_else(|| StoreError::NotFound { what: "tenant", id: id.into() })
}

fn get_job(c: &Connection, tenant: Option<&str>, id: &str) -> Result<Job> {
    let job = c
        .query_row(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"), [id], job_row)
        .optional()
        .map_err(sql("read job"))?;
    match job {
        Some(j) if tenant.is_none_or(|t| t == j.tenant_id) => Ok(j),
        _ => Err(StoreError::NotFound { what: "fine-tuning job", id: id.into() }),
    }
}

fn add_event(
    c: &Connection,
    now: Timestamp,
    job_id: &str,
    level: Level,
    kind: &str,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Result<JobEvent> {
    c.execute(
        "INSERT INTO job_events (job_id, created_at, level, kind, message, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![job_id, now, level.as_str(), kind, message, data.map(to_json)],
    )
    .map_err(sql("add event"))?;
    Ok(JobEvent {
        id: c.last_insert_rowid(),
        job_id: job_id.into(),
        created_at: now,
        level,
        kind: kind.into(),
        message: message.into(),
        data: data.cloned(),
    })
}

fn quota(c: &Connection, now: Timestamp, tenant: &Tenant) -> Result<QuotaUsage> {
    let s = &tenant.settings;
    let (used, oldest): (i64, Option<i64>) = c
        .query_row(
            "SELECT COUNT(*), MIN(created_at) FROM jobs WHERE tenant_id = ?1 AND created_at > ?2 \
             AND NOT (status IN ('failed', 'cancelled') AND started_at IS NULL)",
            params![tenant.id, now - s.quota_window_s],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql("count trainings"))?;
    let used = used as u32;
    let frees_at = (used >= s.max_trainings).then(|| oldest.unwrap_or(now) + s.quota_window_s);
    Ok(QuotaUsage { used, limit: s.max_trainings, frees_at })
}

fn window_text(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

fn check_quota(c: &Connection, now: Timestamp, tenant: &Tenant) -> Result<()> {
    let q = quota(c, now, tenant)?;
    match q.frees_at {
        Some(frees_at) => Err(StoreError::QuotaExceeded {
            tenant: tenant.name.clone(),
            limit: q.limit,
            window: window_text(tenant.settings.quota_window_s),
            frees_at,
        }),
        None => Ok(()),
    }
}

fn insert_job(c: &Connection, now: Timestamp, tenant: &Tenant, new: &NewJob) -> Result<Job> {
    check_quota(c, now, tenant)?;
    let id = new_id("ftjob");
    c.execute(
        "INSERT INTO jobs (id, tenant_id, model, training_file, validation_file, status, trigger, spec, priority, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'validating_files', ?6, ?7, ?8, ?9)",
        params![
            id,
            tenant.id,
            new.model,
            new.training_file,
            new.validation_file,
            new.trigger.as_str(),
            to_json(&new.spec),
            tenant.settings.priority,
            now
        ],
    )
    .map_err(sql("create job"))?;
    add_event(
        c,
        now,
        &id,
        Level::Info,
        "message",
        &format!("Created fine-tuning job ({} trigger)", new.trigger.as_str()),
        None,
    )?;
    get_job(c, None, &id)
}

fn count_curated(c: &Connection, tenant_id: &str) -> Result<u64> {
    c.query_row(
        "SELECT COUNT(*) FROM examples WHERE tenant_id = ?1 AND status = 'curated'",
        [tenant_id],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(sql("count pending examples"))
}

/// Creates the job and claims every pending example (inside a transaction).
fn job_claiming(c: &Connection, now: Timestamp, tenant: &Tenant, new: &NewJob) -> Result<Job> {
    let job = insert_job(c, now, tenant, new)?;
    let n = c
        .execute(
            "UPDATE examples SET status = 'claimed', job_id = ?1 WHERE tenant_id = ?2 AND status = 'curated'",
            params![job.id, tenant.id],
        )
        .map_err(sql("claim examples"))?;
    add_event(
        c,
        now,
        &job.id,
        Level::Info,
        "message",
        &format!("Claimed {n} pending examples"),
        None,
    )?;
    Ok(job)
}

/// Ends a job: state, time, examples back to pending unless it succeeded,
/// webhook queued.
fn end_job(c: &Connection, now: Timestamp, job: &Job, status: JobStatus) -> Result<()> {
    c.execute(
        "UPDATE jobs SET status = ?1, finished_at = ?2, lease_until = NULL WHERE id = ?3",
        params![status.as_str(), now, job.id],
    )
    .map_err(sql("end job"))?;
    if status != JobStatus::Succeeded {
        c.execute(
            "UPDATE examples SET status = 'curated', job_id = NULL WHERE job_id = ?1 AND status = 'claimed'",
            [&job.id],
        )
        .map_err(sql("release examples"))?;
    }
    let tenant = get_tenant(c, &job.tenant_id)?;
    if let Some(url) = tenant.settings.webhook_url {
        c.execute(
            "INSERT INTO webhooks (tenant_id, job_id, url, event, next_at, status) VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
            params![job.tenant_id, job.id, url, format!("fine_tuning.job.{}", status.as_str()), now],
        )
        .map_err(sql("queue webhook"))?;
    }
    Ok(())
}

/// The job if `worker` holds its lease.
fn held(c: &Connection, id: &str, worker: &str) -> Result<Job> {
    let job = get_job(c, None, id)?;
    let lost = |why: String| StoreError::LeaseLost { job: id.into(), worker: worker.into(), why };
    match (job.status, job.lease_worker.as_deref()) {
        (JobStatus::Running, Some(w)) if w == worker => Ok(job),
        (JobStatus::Running, _) | (JobStatus::Queued, _) => {
            Err(lost("its lease expired and was given to another worker".into()))
        }
        (s, _) => Err(lost(format!("the job is {}", s.as_str()))),
    }
}

impl Store for SqliteStore {
    fn now(&self) -> Timestamp {
        (self.clock)()
    }

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
                [],
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

    fn create_key(
        &self,
        tenant_id: Option<&str>,
        role: Role,
        hash: &str,
        prefix: &str,
    ) -> Result<ApiKey> {
        self.tx("create key", |c, now| {
            if let Some(t) = tenant_id {
                get_tenant(c, t)?;
            }
            let id = new_id("key");
            c.execute(
                "INSERT INTO api_keys (id, tenant_id, role, hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, tenant_id, role.as_str(), hash, prefix, now],
            )
            .map_err(sql("create key"))?;
            Ok(ApiKey { id, tenant_id: tenant_id.map(Into::into), role, prefix: prefix.into(), created_at: now })
        })
    }

    fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        self.read(|c, _| {
            c.query_row(
                "SELECT id, tenant_id, role, prefix, created_at FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL",
                [hash],
                |r| {
                    let role: String = r.get(2)?;
                    Ok(ApiKey {
                        id: r.get(0)?,
                        tenant_id: r.get(1)?,
                        role: if role == "worker" { Role::Worker } else { Role::Tenant },
                        prefix: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(sql("read key"))
        })
    }

    fn append_examples(
        &self,
        tenant_id: &str,
        examples: &[NewExample],
        default_model: &str,
    ) -> Result<Appended> {
        self.tx("append examples", |c, now| {
            let tenant = get_tenant(c, tenant_id)?;
            let mut out = Vec::with_capacity(examples.len());
            for ex in examples {
                let input = to_json(&ex.input);
                let (status, reason, record, hash) = match &ex.curated {
                    Err(why) => (ExampleStatus::Rejected, Some(why.clone()), None, None),
                    Ok(cur) => {
                        let dup: Option<i64> = c
                            .query_row(
                                "SELECT id FROM examples WHERE tenant_id = ?1 AND content_hash = ?2 AND status IN ('curated', 'claimed')",
                                params![tenant_id, cur.content_hash],
                                |r| r.get(0),
                            )
                            .optional()
                            .map_err(sql("dedup example"))?;
                        match dup {
                            Some(d) => (ExampleStatus::Rejected, Some(format!("exact duplicate of example {d}")), None, None),
                            None => (ExampleStatus::Curated, None, Some(cur.record.clone()), Some(cur.content_hash.clone())),
                        }
                    }
                };
                let status_s = match status {
                    ExampleStatus::Curated => "curated",
                    _ => "rejected",
                };
                c.execute(
                    "INSERT INTO examples (tenant_id, created_at, source, input, record, content_hash, status, reason) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![tenant_id, now, ex.source, input, record.as_ref().map(to_json), hash, status_s, reason],
                )
                .map_err(sql("append example"))?;
                out.push(Example { id: c.last_insert_rowid(), status, reason, record, job_id: None });
            }
            let (mut job, mut held) = (None, None);
            if let Some(threshold) = tenant.settings.threshold {
                if count_curated(c, tenant_id)? >= threshold as u64 {
                    let new = NewJob {
                        tenant_id: tenant_id.into(),
                        model: tenant.settings.base_model.clone().unwrap_or_else(|| default_model.into()),
                        training_file: None,
                        validation_file: None,
                        trigger: Trigger::Threshold,
                        spec: tenant.settings.triggered_spec(),
                    };
                    match job_claiming(c, now, &tenant, &new) {
                        Ok(j) => {
                            for e in out.iter_mut().filter(|e| e.status == ExampleStatus::Curated) {
                                e.status = ExampleStatus::Claimed;
                                e.job_id = Some(j.id.clone());
                            }
                            job = Some(j);
                        }
                        Err(e @ StoreError::QuotaExceeded { .. }) => held = Some(e.to_string()),
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(Appended { examples: out, job, held })
        })
    }

    fn pending(&self, tenant_id: &str) -> Result<PendingCounts> {
        self.read(|c, _| {
            let counts = rows(
                c,
                "count examples",
                "SELECT status, COUNT(*) FROM examples WHERE tenant_id = ?1 GROUP BY status",
                [tenant_id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
            )?;
            let mut p = PendingCounts::default();
            for (s, n) in counts {
                match s.as_str() {
                    "curated" => p.curated = n,
                    "rejected" => p.rejected = n,
                    _ => p.claimed = n,
                }
            }
            Ok(p)
        })
    }

    fn job_examples(&self, job_id: &str) -> Result<Vec<Example>> {
        self.read(|c, _| {
            rows(c, "read examples", "SELECT id, status, reason, record, job_id FROM examples WHERE job_id = ?1 ORDER BY id", [job_id], example_row)
        })
    }

    fn job_from_pending(&self, new: &NewJob, min: u64) -> Result<Option<Job>> {
        // Called for every tenant on every tick: decide "too few" without
        // taking the write lock (the transaction checks again).
        if self.read(|c, _| count_curated(c, &new.tenant_id))? < min.max(1) {
            return Ok(None);
        }
        self.tx("create job from pending examples", |c, now| {
            let tenant = get_tenant(c, &new.tenant_id)?;
            if count_curated(c, &tenant.id)? < min.max(1) {
                return Ok(None);
            }
            job_claiming(c, now, &tenant, new).map(Some)
        })
    }

    fn insert_file(&self, f: &FileRow) -> Result<()> {
        self.tx("store file", |c, _| {
            c.execute(
                &format!("INSERT INTO files ({FILE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    f.id,
                    f.tenant_id,
                    f.purpose,
                    f.filename,
                    f.bytes as i64,
                    f.sha256,
                    f.lines as i64,
                    f.status,
                    f.status_details,
                    f.created_at
                ],
            )
            .map_err(sql("store file"))?;
            Ok(())
        })
    }

    fn file(&self, tenant_id: &str, id: &str) -> Result<FileRow> {
        self.read(|c, _| {
            c.query_row(
                &format!("SELECT {FILE_COLS} FROM files WHERE id = ?1 AND tenant_id = ?2"),
                [id, tenant_id],
                file_row,
            )
            .optional()
            .map_err(sql("read file"))?
            .ok_or_else(|| StoreError::NotFound { what: "file", id: id.into() })
        })
    }

    fn files(&self, tenant_id: &str) -> Result<Vec<FileRow>> {
        self.read(|c, _| {
            rows(c, "list files", &format!("SELECT {FILE_COLS} FROM files WHERE tenant_id = ?1 ORDER BY created_at DESC, id DESC"), [tenant_id], file_row)
        })
    }

    fn create_job(&self, new: &NewJob) -> Result<Job> {
        self.tx("create job", |c, now| {
            let tenant = get_tenant(c, &new.tenant_id)?;
            insert_job(c, now, &tenant, new)
        })
    }

    fn job(&self, tenant: Option<&str>, id: &str) -> Result<Job> {
        self.read(|c, _| get_job(c, tenant, id))
    }

    fn jobs(&self, tenant: Option<&str>, after: Option<&str>, limit: usize) -> Result<Vec<Job>> {
        self.read(|c, _| {
            let cursor = match after {
                Some(a) => {
                    let j = get_job(c, tenant, a)?;
                    Some((j.created_at, j.id))
                }
                None => None,
            };
            let (ca, ia) = cursor.unzip();
            rows(c, "list jobs", &format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE (?1 IS NULL OR tenant_id = ?1) \
                     AND (?2 IS NULL OR (created_at, id) < (?2, ?3)) ORDER BY created_at DESC, id DESC LIMIT ?4"
                ), params![tenant, ca, ia, limit as i64], job_row)
        })
    }

    fn jobs_in(&self, status: JobStatus) -> Result<Vec<Job>> {
        self.read(|c, _| {
            rows(
                c,
                "list jobs",
                &format!("SELECT {JOB_COLS} FROM jobs WHERE status = ?1 ORDER BY created_at, id"),
                [status.as_str()],
                job_row,
            )
        })
    }

    fn quota(&self, tenant_id: &str) -> Result<QuotaUsage> {
        self.read(|c, now| quota(c, now, &get_tenant(c, tenant_id)?))
    }

    fn job_validated(
        &self,
        id: &str,
        training_file: &str,
        validation_file: Option<&str>,
        hyper: &Hyperparameters,
    ) -> Result<Job> {
        self.tx("queue job", |c, now| {
            let job = get_job(c, None, id)?;
            if job.status != JobStatus::ValidatingFiles {
                return Err(StoreError::Conflict(format!("job `{id}` is {}, not validating_files", job.status.as_str())));
            }
            c.execute(
                "UPDATE jobs SET status = 'queued', training_file = ?1, validation_file = ?2, resolved = ?3 WHERE id = ?4",
                params![training_file, validation_file, to_json(hyper), id],
            )
            .map_err(sql("queue job"))?;
            add_event(c, now, id, Level::Info, "message", "Validated training file; job queued", Some(&serde_json::to_value(hyper).expect("json")))?;
            get_job(c, None, id)
        })
    }

    fn fail_job(&self, id: &str, error: &JobError) -> Result<Job> {
        self.tx("fail job", |c, now| {
            let job = get_job(c, None, id)?;
            if job.status.is_terminal() {
                return Ok(job);
            }
            c.execute(
                "UPDATE jobs SET error_code = ?1, error_message = ?2, error_param = ?3 WHERE id = ?4",
                params![error.code, error.message, error.param, id],
            )
            .map_err(sql("fail job"))?;
            end_job(c, now, &job, JobStatus::Failed)?;
            add_event(c, now, id, Level::Error, "message", &format!("Job failed: {}", error.message), None)?;
            get_job(c, None, id)
        })
    }

    fn cancel_job(&self, tenant: Option<&str>, id: &str) -> Result<Job> {
        self.tx("cancel job", |c, now| {
            let job = get_job(c, tenant, id)?;
            if job.status.is_terminal() {
                return Err(StoreError::Conflict(format!(
                    "job `{id}` already {}; only unfinished jobs can be cancelled",
                    job.status.as_str()
                )));
            }
            end_job(c, now, &job, JobStatus::Cancelled)?;
            add_event(c, now, id, Level::Info, "message", "Job cancelled", None)?;
            get_job(c, None, id)
        })
    }

    fn lease(&self, worker: &str, cap: &Capacity, ttl_s: i64) -> Result<Option<Job>> {
        self.tx("lease job", |c, now| {
            let queued: Vec<Job> = rows(c, "lease job", &format!("SELECT {JOB_COLS} FROM jobs WHERE status = 'queued' ORDER BY priority DESC, created_at, id"), [], job_row)?;
            let fits = |j: &Job| {
                j.spec.resources.gpus <= cap.gpus
                    && j.spec.resources.memory_gb <= cap.memory_gb
                    && cap.models.as_ref().is_none_or(|m| m.contains(&j.model))
            };
            let Some(job) = queued.into_iter().find(fits) else { return Ok(None) };
            c.execute(
                "UPDATE jobs SET status = 'running', lease_worker = ?1, lease_until = ?2, attempts = attempts + 1, \
                 started_at = COALESCE(started_at, ?3) WHERE id = ?4",
                params![worker, now + ttl_s, now, job.id],
            )
            .map_err(sql("lease job"))?;
            add_event(c, now, &job.id, Level::Info, "message", &format!("Worker {worker} started the job (attempt {})", job.attempts + 1), None)?;
            get_job(c, None, &job.id).map(Some)
        })
    }

    fn heartbeat(&self, id: &str, worker: &str, ttl_s: i64, progress: (u64, u64)) -> Result<Job> {
        self.tx("renew lease", |c, now| {
            held(c, id, worker)?;
            c.execute(
                "UPDATE jobs SET lease_until = ?1, progress_step = ?2, progress_total = ?3 WHERE id = ?4",
                params![now + ttl_s, progress.0 as i64, progress.1 as i64, id],
            )
            .map_err(sql("renew lease"))?;
            get_job(c, None, id)
        })
    }

    fn reap_expired(&self, max_attempts: u32) -> Result<Vec<Job>> {
        // Called on every tick; most find nothing, without the write lock.
        let any: bool = self.read(|c, now| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'running' AND lease_until < ?1)",
                [now],
                |r| r.get(0),
            )
            .map_err(sql("reap leases"))
        })?;
        if !any {
            return Ok(Vec::new());
        }
        self.tx("reap leases", |c, now| {
            let expired: Vec<Job> = rows(c, "reap leases", &format!("SELECT {JOB_COLS} FROM jobs WHERE status = 'running' AND lease_until < ?1"), [now], job_row)?;
            let mut out = Vec::new();
            for job in expired {
                let worker = job.lease_worker.clone().unwrap_or_default();
                if job.attempts >= max_attempts {
                    let msg = format!("worker {worker} stopped renewing its lease and the job had {} attempts; giving up", job.attempts);
                    c.execute(
                        "UPDATE jobs SET error_code = 'worker_lost', error_message = ?1 WHERE id = ?2",
                        params![msg, job.id],
                    )
                    .map_err(sql("reap leases"))?;
                    end_job(c, now, &job, JobStatus::Failed)?;
                    add_event(c, now, &job.id, Level::Error, "message", &msg, None)?;
                } else {
                    c.execute(
                        "UPDATE jobs SET status = 'queued', lease_worker = NULL, lease_until = NULL WHERE id = ?1",
                        [&job.id],
                    )
                    .map_err(sql("reap leases"))?;
                    add_event(c, now, &job.id, Level::Warn, "message", &format!("Worker {worker} stopped renewing its lease; job requeued, it resumes from its last checkpoint"), None)?;
                }
                out.push(get_job(c, None, &job.id)?);
            }
            Ok(out)
        })
    }

    fn finish(&self, id: &str, worker: &str, outcome: &Finish) -> Result<Job> {
        self.tx("finish job", |c, now| {
            let job = held(c, id, worker)?;
            match outcome {
                Finish::Succeeded { trained_tokens, fine_tuned_model, adapter_sha256, result } => {
                    c.execute(
                        "UPDATE jobs SET trained_tokens = ?1, fine_tuned_model = ?2, adapter_sha256 = ?3, result = ?4, \
                         progress_step = ?5, progress_total = MAX(progress_total, ?5) WHERE id = ?6",
                        params![*trained_tokens as i64, fine_tuned_model, adapter_sha256, to_json(result), result.steps as i64, id],
                    )
                    .map_err(sql("finish job"))?;
                    end_job(c, now, &job, JobStatus::Succeeded)?;
                    add_event(c, now, id, Level::Info, "message", "The job has successfully completed", None)?;
                }
                Finish::Failed(e) => {
                    c.execute(
                        "UPDATE jobs SET error_code = ?1, error_message = ?2, error_param = ?3 WHERE id = ?4",
                        params![e.code, e.message, e.param, id],
                    )
                    .map_err(sql("finish job"))?;
                    end_job(c, now, &job, JobStatus::Failed)?;
                    add_event(c, now, id, Level::Error, "message", &format!("Job failed: {}", e.message), None)?;
                }
            }
            get_job(c, None, id)
        })
    }

    fn lease_holder(&self, id: &str, worker: &str) -> Result<Job> {
        self.read(|c, _| held(c, id, worker))
    }

    fn worker_event(
        &self,
        job_id: &str,
        worker: &str,
        level: Level,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<JobEvent> {
        self.tx("add event", |c, now| {
            held(c, job_id, worker)?;
            let kind = if data.is_some() { "metrics" } else { "message" };
            add_event(c, now, job_id, level, kind, message, data)
        })
    }

    fn events(&self, job_id: &str, after: Option<i64>, limit: usize) -> Result<Vec<JobEvent>> {
        self.read(|c, _| {
            rows(
                c,
                "list events",
                "SELECT id, job_id, created_at, level, kind, message, data FROM job_events \
                     WHERE job_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
                params![job_id, after, limit as i64],
                event_row,
            )
        })
    }

    fn add_checkpoint(
        &self,
        job_id: &str,
        worker: &str,
        step: u64,
        files: &BTreeMap<String, String>,
        metrics: &serde_json::Value,
    ) -> Result<Checkpoint> {
        self.tx("add checkpoint", |c, now| {
            held(c, job_id, worker)?;
            let id = new_id("ftckpt");
            c.execute(
                "INSERT INTO checkpoints (id, job_id, step, files, metrics, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (job_id, step) DO UPDATE SET files = excluded.files, metrics = excluded.metrics",
                params![id, job_id, step as i64, to_json(files), to_json(metrics), now],
            )
            .map_err(sql("add checkpoint"))?;
            add_event(c, now, job_id, Level::Info, "message", &format!("Checkpoint saved at step {step}"), None)?;
            c.query_row(
                "SELECT id, job_id, step, files, metrics, created_at FROM checkpoints WHERE job_id = ?1 AND step = ?2",
                params![job_id, step as i64],
                checkpoint_row,
            )
            .map_err(sql("add checkpoint"))
        })
    }

    fn checkpoints(&self, job_id: &str) -> Result<Vec<Checkpoint>> {
        self.read(|c, _| {
            rows(c, "list checkpoints", "SELECT id, job_id, step, files, metrics, created_at FROM checkpoints WHERE job_id = ?1 ORDER BY step DESC", [job_id], checkpoint_row)
        })
    }

    fn claim_cron(
        &self,
        tenant_id: &str,
        last: Option<Timestamp>,
        fire: Timestamp,
    ) -> Result<bool> {
        self.tx("claim schedule", |c, _| {
            let n = c
                .execute(
                    "UPDATE tenants SET cron_last = ?1 WHERE id = ?2 AND cron_last IS ?3",
                    params![fire, tenant_id, last],
                )
                .map_err(sql("claim schedule"))?;
            Ok(n == 1)
        })
    }

    fn cron_last(&self, tenant_id: &str) -> Result<Option<Timestamp>> {
        self.read(|c, _| {
            c.query_row("SELECT cron_last FROM tenants WHERE id = ?1", [tenant_id], |r| r.get(0))
                .optional()
                .map_err(sql("read schedule"))?
                .ok_or_else(|| StoreError::NotFound { what: "tenant", id: tenant_id.into() })
        })
    }

    fn due_webhooks(&self, limit: usize) -> Result<Vec<Webhook>> {
        self.read(|c, now| {
            rows(
                c,
                "list webhooks",
                "SELECT id, tenant_id, job_id, url, event, attempts FROM webhooks \
                     WHERE status = 'pending' AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2",
                params![now, limit as i64],
                |r| {
                    Ok(Webhook {
                        id: r.get(0)?,
                        tenant_id: r.get(1)?,
                        job_id: r.get(2)?,
                        url: r.get(3)?,
                        event: r.get(4)?,
                        attempts: r.get::<_, i64>(5)? as u32,
                    })
                },
            )
        })
    }

    fn webhook_attempted(
        &self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        retry_at: Option<Timestamp>,
    ) -> Result<()> {
        self.tx("record webhook", |c, _| {
            let status = match (delivered, retry_at) {
                (true, _) => "delivered",
                (false, Some(_)) => "pending",
                (false, None) => "failed",
            };
            c.execute(
                "UPDATE webhooks SET attempts = attempts + 1, status = ?1, last_error = ?2, next_at = COALESCE(?3, next_at) WHERE id = ?4",
                params![status, error, retry_at, id],
            )
            .map_err(sql("record webhook"))?;
            Ok(())
        })
    }
}
