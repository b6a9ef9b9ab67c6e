//! [`CompletionLog`] in SQL (SQLite and Postgres).

use super::rows::{col_json, get_tenant, to_json};
use super::tenants::{charge, refund};
use super::SqliteStore;
use crate::completions::{CompletionLog, CompletionRecord, LiveSignals};
use crate::db::{params, OptionalExtension};
use crate::error::{sql, Result, StoreError};
use crate::Timestamp;

impl CompletionLog for SqliteStore {
    fn record_completion(&self, c: &CompletionRecord) -> Result<()> {
        self.tx("record completion", |tx, now| {
            let tenant = get_tenant(tx, &c.tenant_id)?;
            let messages = to_json(&c.messages);
            charge(tx, &tenant, (messages.len() + c.output.len()) as u64)?;
            tx.execute(
                "INSERT INTO completions (id, tenant_id, model, messages, output, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![c.id, c.tenant_id, c.model, messages, c.output, now],
            )
            .map_err(sql("record completion"))?;
            Ok(())
        })
    }

    fn completion(&self, tenant_id: &str, id: &str) -> Result<CompletionRecord> {
        self.read(|c, _| {
            c.query_row(
                "SELECT id, tenant_id, model, messages, output, created_at FROM completions
                 WHERE id = ?1 AND tenant_id = ?2",
                params![id, tenant_id],
                |r| {
                    Ok(CompletionRecord {
                        id: r.get(0)?,
                        tenant_id: r.get(1)?,
                        model: r.get(2)?,
                        messages: col_json(r, 3)?,
                        output: r.get(4)?,
                        created_at: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(sql("read completion"))?
            .ok_or_else(|| StoreError::NotFound { what: "completion", id: id.into() })
        })
    }

    fn live_signals(
        &self,
        tenant_id: &str,
        model: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<LiveSignals> {
        self.read(|c, _| {
            let served: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM completions WHERE tenant_id = ?1 AND model = ?2 \
                     AND created_at >= ?3 AND created_at < ?4",
                    params![tenant_id, model, from, to],
                    |r| r.get(0),
                )
                .map_err(sql("live signals"))?;
            // Feedback names its completion in the example's input; it is
            // given after the answer, so only examples from `from` on count.
            // The input is JSON text: SQLite reads it with json_extract,
            // Postgres with its json operators (a rating that is not a
            // number counts as none).
            let (id, rating, correction) = if c.is_postgres() {
                (
                    "(e.input::json ->> 'completion_id')",
                    "(CASE WHEN json_typeof(e.input::json -> 'rating') = 'number' \
                      THEN (e.input::json ->> 'rating')::float8 END)",
                    "(e.input::json ->> 'correction')",
                )
            } else {
                (
                    "json_extract(e.input, '$.completion_id')",
                    "json_extract(e.input, '$.rating')",
                    "json_extract(e.input, '$.correction')",
                )
            };
            let bad: i64 = c
                .query_row(
                    &format!(
                        "SELECT COUNT(DISTINCT k.id) FROM completions k JOIN examples e \
                           ON e.tenant_id = k.tenant_id AND e.created_at >= ?3 AND {id} = k.id \
                         WHERE k.tenant_id = ?1 AND k.model = ?2 AND k.created_at >= ?3 AND k.created_at < ?4 \
                           AND ({rating} <= 2 OR length(trim(COALESCE({correction}, ''))) > 0)"
                    ),
                    params![tenant_id, model, from, to],
                    |r| r.get(0),
                )
                .map_err(sql("live signals"))?;
            Ok(LiveSignals { served: served as u64, bad: bad as u64 })
        })
    }

    fn purge_completions(&self, before: Timestamp) -> Result<usize> {
        self.tx("purge completions", |tx, _| {
            let freed = super::rows::rows(
                tx,
                "purge completions",
                "SELECT tenant_id, SUM(length(messages) + length(output)) FROM completions \
                 WHERE created_at < ?1 GROUP BY tenant_id",
                params![before],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )?;
            for (tenant, bytes) in freed {
                refund(tx, &tenant, bytes.max(0) as u64)?;
            }
            tx.execute("DELETE FROM completions WHERE created_at < ?1", params![before])
                .map_err(sql("purge completions"))
        })
    }
}
