//! [`Examples`] in SQL (SQLite and Postgres): curated feedback, exact dedup per tenant, the
//! threshold trigger (in the appending transaction), jobs from pending
//! examples, and examples held back after a cancel.

use super::jobs::job_claiming;
use super::rows::{example_row, get_tenant, rows, to_json};
use super::tenants::charge;
use super::SqliteStore;
use crate::db::{params, Connection, OptionalExtension};
use crate::error::{sql, Result, StoreError};
use crate::types::*;
use crate::Examples;

fn count(c: &Connection, tenant_id: &str, statuses: &str) -> Result<u64> {
    c.query_row(
        &format!("SELECT COUNT(*) FROM examples WHERE tenant_id = ?1 AND status IN ({statuses})"),
        [tenant_id],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(sql("count pending examples"))
}

/// Examples a trigger may claim: curated (and held, for a deliberate job).
fn claimable(include_held: bool) -> &'static str {
    if include_held {
        "'curated', 'held'"
    } else {
        "'curated'"
    }
}

impl Examples for SqliteStore {
    fn append_examples(
        &self,
        tenant_id: &str,
        examples: &[NewExample],
        default_model: &str,
    ) -> Result<Appended> {
        self.tx("append examples", |c, now| {
            let tenant = get_tenant(c, tenant_id)?;
            let mut out = Vec::with_capacity(examples.len());
            let mut bytes = 0u64;
            for ex in examples {
                let input = to_json(&ex.input);
                let (status, reason, record, hash) = match &ex.curated {
                    Err(why) => (ExampleStatus::Rejected, Some(why.clone()), None, None),
                    Ok(cur) => {
                        let dup: Option<i64> = c
                            .query_row(
                                "SELECT id FROM examples WHERE tenant_id = ?1 AND content_hash = ?2 \
                                 AND status IN ('curated', 'claimed', 'held')",
                                params![tenant_id, cur.content_hash],
                                |r| r.get(0),
                            )
                            .optional()
                            .map_err(sql("dedup example"))?;
                        match dup {
                            Some(d) => (
                                ExampleStatus::Rejected,
                                Some(format!("exact duplicate of example {d}")),
                                None,
                                None,
                            ),
                            None => (
                                ExampleStatus::Curated,
                                None,
                                Some(cur.record.clone()),
                                Some(cur.content_hash.clone()),
                            ),
                        }
                    }
                };
                let record_json = record.as_ref().map(to_json);
                bytes += (input.len() + record_json.as_ref().map_or(0, String::len)) as u64;
                let id = c.insert_id(
                    "INSERT INTO examples (tenant_id, created_at, source, input, record, content_hash, status, reason) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![tenant_id, now, ex.source, input, record_json, hash, status.as_str(), reason],
                )
                .map_err(sql("append example"))?;
                out.push(Example { id, status, reason, record, job_id: None });
            }
            charge(c, &tenant, bytes)?;
            let (mut job, mut held) = (None, None);
            if let Some(threshold) = tenant.settings.threshold {
                if count(c, tenant_id, claimable(false))? >= threshold as u64 {
                    let new = NewJob {
                        tenant_id: tenant_id.into(),
                        model: tenant
                            .settings
                            .base_model
                            .clone()
                            .unwrap_or_else(|| default_model.into()),
                        training_file: None,
                        validation_file: None,
                        trigger: Trigger::Threshold,
                        spec: tenant.settings.triggered_spec(),
                    };
                    match job_claiming(c, now, &tenant, &new, false) {
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
                    "held" => p.held = n,
                    _ => p.claimed = n,
                }
            }
            Ok(p)
        })
    }

    fn job_examples(&self, job_id: &str) -> Result<Vec<Example>> {
        self.read(|c, _| {
            rows(
                c,
                "read examples",
                "SELECT id, status, reason, record, job_id FROM examples WHERE job_id = ?1 ORDER BY id",
                [job_id],
                example_row,
            )
        })
    }

    fn trained_examples(
        &self,
        tenant_id: &str,
        except_job: &str,
        limit: usize,
    ) -> Result<Vec<Example>> {
        self.read(|c, _| {
            let mut v = rows(
                c,
                "read trained examples",
                "SELECT e.id, e.status, e.reason, e.record, e.job_id FROM examples e \
                 JOIN jobs j ON j.id = e.job_id \
                 WHERE e.tenant_id = ?1 AND e.status = 'claimed' AND j.status = 'succeeded' \
                 AND e.job_id <> ?2 ORDER BY e.id DESC LIMIT ?3",
                params![tenant_id, except_job, limit.min(i64::MAX as usize) as i64],
                example_row,
            )?;
            v.reverse();
            Ok(v)
        })
    }

    fn job_from_pending(&self, new: &NewJob, min: u64, include_held: bool) -> Result<Option<Job>> {
        // Called for every tenant on every tick: decide "too few" without
        // taking the write lock (the transaction checks again).
        let which = claimable(include_held);
        if self.read(|c, _| count(c, &new.tenant_id, which))? < min.max(1) {
            return Ok(None);
        }
        self.tx("create job from pending examples", |c, now| {
            let tenant = get_tenant(c, &new.tenant_id)?;
            if count(c, &tenant.id, which)? < min.max(1) {
                return Ok(None);
            }
            job_claiming(c, now, &tenant, new, include_held).map(Some)
        })
    }

    fn release_held(&self, tenant_id: &str) -> Result<u64> {
        self.tx("release held examples", |c, _| {
            get_tenant(c, tenant_id)?;
            let n = c
                .execute(
                    "UPDATE examples SET status = 'curated' WHERE tenant_id = ?1 AND status = 'held'",
                    [tenant_id],
                )
                .map_err(sql("release held examples"))?;
            Ok(n as u64)
        })
    }
}
