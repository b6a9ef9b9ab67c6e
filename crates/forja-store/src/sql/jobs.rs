//! [`Jobs`] in SQL (SQLite and Postgres): creation under the tenant's quota, validation,
//! leases bound to the key that took them and a secret token (fencing),
//! heartbeats, expiry, events, checkpoints, and the end of a job (its
//! examples released or held, its webhook queued, in the same
//! transaction).

use super::rows::{
    checkpoint_row, event_row, get_job, get_tenant, job_row, rows, to_json, JOB_COLS,
};
use super::{new_id, SqliteStore};
use crate::db::{params, Connection};
use crate::error::{sql, Result, StoreError};
use crate::store::{Finish, LeaseRef, Leased};
use crate::types::*;
use crate::{sha256_hex, Jobs};
use std::collections::BTreeMap;

pub(super) fn add_event(
    c: &Connection,
    now: Timestamp,
    job_id: &str,
    level: Level,
    kind: &str,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Result<JobEvent> {
    let id = c.insert_id(
        "INSERT INTO job_events (job_id, created_at, level, kind, message, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![job_id, now, level.as_str(), kind, message, data.map(to_json)],
    )
    .map_err(sql("add event"))?;
    Ok(JobEvent {
        id,
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
            params![tenant.id, now.saturating_sub(s.quota_window_s)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql("count trainings"))?;
    let used = used as u32;
    let frees_at =
        (used >= s.max_trainings).then(|| oldest.unwrap_or(now).saturating_add(s.quota_window_s));
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

/// Creates the job and claims every pending example (and the held ones,
/// with `include_held`), inside a transaction.
pub(super) fn job_claiming(
    c: &Connection,
    now: Timestamp,
    tenant: &Tenant,
    new: &NewJob,
    include_held: bool,
) -> Result<Job> {
    let job = insert_job(c, now, tenant, new)?;
    let statuses = if include_held { "'curated', 'held'" } else { "'curated'" };
    let n = c
        .execute(
            &format!(
                "UPDATE examples SET status = 'claimed', job_id = ?1 \
                 WHERE tenant_id = ?2 AND status IN ({statuses})"
            ),
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

/// Ends a job: state, time, the lease dropped, its examples back to the
/// pool (failed) or held back (cancelled: a cancel must not re-trigger at
/// once), and the webhook queued.
fn end_job(c: &Connection, now: Timestamp, job: &Job, status: JobStatus) -> Result<()> {
    c.execute(
        "UPDATE jobs SET status = ?1, finished_at = ?2, lease_until = NULL, lease_token = NULL WHERE id = ?3",
        params![status.as_str(), now, job.id],
    )
    .map_err(sql("end job"))?;
    let back = match status {
        JobStatus::Succeeded => None,
        JobStatus::Cancelled => Some("held"),
        _ => Some("curated"),
    };
    if let Some(to) = back {
        let n = c
            .execute(
                "UPDATE examples SET status = ?1, job_id = NULL WHERE job_id = ?2 AND status = 'claimed'",
                params![to, job.id],
            )
            .map_err(sql("release examples"))?;
        if to == "held" && n > 0 {
            add_event(
                c,
                now,
                &job.id,
                Level::Info,
                "message",
                &format!(
                    "{n} examples are held back; POST /v1/learning/release returns them to the pool, \
                     POST /v1/learning/train trains on them now"
                ),
                None,
            )?;
        }
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

/// The job if `by` holds its lease: running, leased by `by.worker` with
/// the key `by.key`, and `by.token` hashes to the lease's token.
fn held(c: &Connection, id: &str, by: &LeaseRef<'_>) -> Result<Job> {
    let job = get_job(c, None, id)?;
    let lost =
        |why: String| StoreError::LeaseLost { job: id.into(), worker: by.worker.into(), why };
    let (key, token): (Option<String>, Option<String>) = c
        .query_row("SELECT lease_key, lease_token FROM jobs WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(sql("read lease"))?;
    match (job.status, job.lease_worker.as_deref()) {
        (JobStatus::Running, Some(w)) => {
            let token_ok =
                token.as_deref().is_some_and(|t| constant_eq(t, &sha256_hex(by.token.as_bytes())));
            if w == by.worker && key.as_deref() == Some(by.key) && token_ok {
                Ok(job)
            } else if w == by.worker {
                Err(lost("this lease belongs to another key or token".into()))
            } else {
                Err(lost("its lease expired and was given to another worker".into()))
            }
        }
        (JobStatus::Queued, _) => {
            Err(lost("its lease expired and was given to another worker".into()))
        }
        (s, _) => Err(lost(format!("the job is {}", s.as_str()))),
    }
}

fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Jobs for SqliteStore {
    fn create_job(&self, new: &NewJob) -> Result<Job> {
        self.tx("create job", |c, now| {
            let tenant = get_tenant(c, &new.tenant_id)?;
            insert_job(c, now, &tenant, new)
        })
    }

    fn job(&self, tenant: Option<&str>, id: &str) -> Result<Job> {
        self.read(|c, _| get_job(c, tenant, id))
    }

    fn job_counts(&self) -> Result<BTreeMap<String, u64>> {
        self.read(|c, _| {
            let pairs = rows(
                c,
                "count jobs",
                "SELECT status, COUNT(*) FROM jobs GROUP BY status",
                params![],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
            )?;
            Ok(pairs.into_iter().collect())
        })
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
            rows(
                c,
                "list jobs",
                &format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE (CAST(?1 AS TEXT) IS NULL OR tenant_id = ?1) \
                     AND (CAST(?2 AS BIGINT) IS NULL OR (created_at, id) < (CAST(?2 AS BIGINT), CAST(?3 AS TEXT))) ORDER BY created_at DESC, id DESC LIMIT ?4"
                ),
                params![tenant, ca, ia, limit as i64],
                job_row,
            )
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
        training_file: Option<&str>,
        validation_file: Option<&str>,
        hyper: &Hyperparameters,
        mix: Option<&TrainingMix>,
    ) -> Result<Job> {
        self.tx("queue job", |c, now| {
            let job = get_job(c, None, id)?;
            if job.status != JobStatus::ValidatingFiles {
                return Err(StoreError::Conflict(format!(
                    "job `{id}` is {}, not validating_files",
                    job.status.as_str()
                )));
            }
            c.execute(
                "UPDATE jobs SET status = 'queued', training_file = ?1, validation_file = ?2, resolved = ?3, mix = ?4 WHERE id = ?5",
                params![training_file, validation_file, to_json(hyper), mix.map(to_json), id],
            )
            .map_err(sql("queue job"))?;
            let data = serde_json::to_value(hyper).expect("json");
            let what = if training_file.is_some() {
                "Validated training file; job queued"
            } else {
                "Validated the adapter to evaluate; job queued"
            };
            add_event(c, now, id, Level::Info, "message", what, Some(&data))?;
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
            let msg = format!("Job failed: {}", error.message);
            add_event(c, now, id, Level::Error, "message", &msg, None)?;
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

    fn lease(&self, worker: &str, key: &str, cap: &Capacity, ttl_s: i64) -> Result<Option<Leased>> {
        self.tx("lease job", |c, now| {
            let queued: Vec<Job> = rows(
                c,
                "lease job",
                &format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE status = 'queued' ORDER BY priority DESC, created_at, id"
                ),
                params![],
                job_row,
            )?;
            let fits = |j: &Job| {
                j.spec.resources.gpus <= cap.gpus
                    && j.spec.resources.memory_gb <= cap.memory_gb
                    && cap.models.as_ref().is_none_or(|m| m.contains(&j.model))
            };
            let Some(job) = queued.into_iter().find(fits) else { return Ok(None) };
            let token = hex::encode(rand::random::<[u8; 16]>());
            c.execute(
                "UPDATE jobs SET status = 'running', lease_worker = ?1, lease_until = ?2, attempts = attempts + 1, \
                 started_at = COALESCE(started_at, ?3), lease_key = ?4, lease_token = ?5 WHERE id = ?6",
                params![worker, now.saturating_add(ttl_s), now, key, sha256_hex(token.as_bytes()), job.id],
            )
            .map_err(sql("lease job"))?;
            let msg = format!("Worker {worker} started the job (attempt {})", job.attempts + 1);
            add_event(c, now, &job.id, Level::Info, "message", &msg, None)?;
            Ok(Some(Leased { job: get_job(c, None, &job.id)?, token }))
        })
    }

    fn heartbeat(
        &self,
        id: &str,
        by: &LeaseRef<'_>,
        ttl_s: i64,
        progress: (u64, u64),
    ) -> Result<Job> {
        self.tx("renew lease", |c, now| {
            held(c, id, by)?;
            c.execute(
                "UPDATE jobs SET lease_until = ?1, progress_step = ?2, progress_total = ?3 WHERE id = ?4",
                params![
                    now.saturating_add(ttl_s),
                    progress.0.min(i64::MAX as u64) as i64,
                    progress.1.min(i64::MAX as u64) as i64,
                    id
                ],
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
            let expired: Vec<Job> = rows(
                c,
                "reap leases",
                &format!("SELECT {JOB_COLS} FROM jobs WHERE status = 'running' AND lease_until < ?1"),
                [now],
                job_row,
            )?;
            let mut out = Vec::new();
            for job in expired {
                let worker = job.lease_worker.clone().unwrap_or_default();
                if job.attempts >= max_attempts {
                    let msg = format!(
                        "worker {worker} stopped renewing its lease and the job had {} attempts; giving up",
                        job.attempts
                    );
                    c.execute(
                        "UPDATE jobs SET error_code = 'worker_lost', error_message = ?1 WHERE id = ?2",
                        params![msg, job.id],
                    )
                    .map_err(sql("reap leases"))?;
                    end_job(c, now, &job, JobStatus::Failed)?;
                    add_event(c, now, &job.id, Level::Error, "message", &msg, None)?;
                } else {
                    c.execute(
                        "UPDATE jobs SET status = 'queued', lease_worker = NULL, lease_until = NULL, \
                         lease_key = NULL, lease_token = NULL WHERE id = ?1",
                        [&job.id],
                    )
                    .map_err(sql("reap leases"))?;
                    let msg = format!(
                        "Worker {worker} stopped renewing its lease; job requeued, it resumes from its last checkpoint"
                    );
                    add_event(c, now, &job.id, Level::Warn, "message", &msg, None)?;
                }
                out.push(get_job(c, None, &job.id)?);
            }
            Ok(out)
        })
    }

    fn finish(&self, id: &str, by: &LeaseRef<'_>, outcome: &Finish) -> Result<Job> {
        self.tx("finish job", |c, now| {
            let job = held(c, id, by)?;
            match outcome {
                Finish::Succeeded { trained_tokens, fine_tuned_model, adapter_sha256, result } => {
                    c.execute(
                        &format!(
                            "UPDATE jobs SET trained_tokens = ?1, fine_tuned_model = ?2, adapter_sha256 = ?3, \
                             result = ?4, progress_step = ?5, progress_total = {}(progress_total, ?5) WHERE id = ?6",
                            c.greatest()
                        ),
                        params![
                            (*trained_tokens).min(i64::MAX as u64) as i64,
                            fine_tuned_model,
                            adapter_sha256,
                            to_json(result),
                            result.steps.min(i64::MAX as u64) as i64,
                            id
                        ],
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
                    let msg = format!("Job failed: {}", e.message);
                    add_event(c, now, id, Level::Error, "message", &msg, None)?;
                }
            }
            get_job(c, None, id)
        })
    }

    fn lease_holder(&self, id: &str, by: &LeaseRef<'_>) -> Result<Job> {
        self.read(|c, _| held(c, id, by))
    }

    fn worker_event(
        &self,
        job_id: &str,
        by: &LeaseRef<'_>,
        level: Level,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<JobEvent> {
        self.tx("add event", |c, now| {
            held(c, job_id, by)?;
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
                     WHERE job_id = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
                params![job_id, after, limit as i64],
                event_row,
            )
        })
    }

    fn events_since(
        &self,
        job_id: &str,
        since: Option<i64>,
        limit: usize,
    ) -> Result<Vec<JobEvent>> {
        self.read(|c, _| {
            rows(
                c,
                "follow events",
                "SELECT id, job_id, created_at, level, kind, message, data FROM job_events \
                     WHERE job_id = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR id > ?2) ORDER BY id ASC LIMIT ?3",
                params![job_id, since, limit as i64],
                event_row,
            )
        })
    }

    fn add_checkpoint(
        &self,
        job_id: &str,
        by: &LeaseRef<'_>,
        step: u64,
        files: &BTreeMap<String, String>,
        metrics: &serde_json::Value,
    ) -> Result<Checkpoint> {
        self.tx("add checkpoint", |c, now| {
            held(c, job_id, by)?;
            let id = new_id("ftckpt");
            let step = step.min(i64::MAX as u64) as i64;
            c.execute(
                "INSERT INTO checkpoints (id, job_id, step, files, metrics, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (job_id, step) DO UPDATE SET files = excluded.files, metrics = excluded.metrics",
                params![id, job_id, step, to_json(files), to_json(metrics), now],
            )
            .map_err(sql("add checkpoint"))?;
            let msg = format!("Checkpoint saved at step {step}");
            add_event(c, now, job_id, Level::Info, "message", &msg, None)?;
            c.query_row(
                "SELECT id, job_id, step, files, metrics, created_at FROM checkpoints WHERE job_id = ?1 AND step = ?2",
                params![job_id, step],
                checkpoint_row,
            )
            .map_err(sql("add checkpoint"))
        })
    }

    fn checkpoints(&self, job_id: &str) -> Result<Vec<Checkpoint>> {
        self.read(|c, _| {
            rows(
                c,
                "list checkpoints",
                "SELECT id, job_id, step, files, metrics, created_at FROM checkpoints WHERE job_id = ?1 ORDER BY step DESC",
                [job_id],
                checkpoint_row,
            )
        })
    }
}
