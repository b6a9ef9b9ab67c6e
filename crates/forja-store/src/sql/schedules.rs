//! [`Schedules`] in SQL (SQLite and Postgres): cron fires claimed by compare-and-set, and
//! webhook deliveries claimed for a while so that concurrent deliverers
//! (tasks, nodes) never send one twice at once.

use super::rows::rows;
use super::SqliteStore;
use crate::db::{params, OptionalExtension};
use crate::error::{sql, Result, StoreError};
use crate::types::*;
use crate::Schedules;

impl Schedules for SqliteStore {
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

    fn claim_webhooks(&self, limit: usize, hold_s: i64) -> Result<Vec<Webhook>> {
        // Polled often; most polls find nothing, without the write lock.
        let any: bool = self.read(|c, now| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM webhooks WHERE status = 'pending' AND next_at <= ?1)",
                [now],
                |r| r.get(0),
            )
            .map_err(sql("list webhooks"))
        })?;
        if !any {
            return Ok(Vec::new());
        }
        self.tx("claim webhooks", |c, now| {
            let due = rows(
                c,
                "claim webhooks",
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
            )?;
            for w in &due {
                c.execute(
                    "UPDATE webhooks SET next_at = ?1 WHERE id = ?2",
                    params![now.saturating_add(hold_s), w.id],
                )
                .map_err(sql("claim webhooks"))?;
            }
            Ok(due)
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
                "UPDATE webhooks SET attempts = attempts + 1, status = ?1, last_error = ?2, \
                 next_at = COALESCE(?3, next_at) WHERE id = ?4",
                params![status, error, retry_at, id],
            )
            .map_err(sql("record webhook"))?;
            Ok(())
        })
    }
}
