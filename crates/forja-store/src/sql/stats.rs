//! [`NodeStats`] in SQL (SQLite and Postgres): aggregate queries over every tenant, for the
//! node's metrics.

use super::rows::rows;
use crate::db::{params, Connection};
use crate::error::{sql, Result};
use crate::types::{NodeStats, TrainingNow};

/// `(tenant name, label, count)` rows of `table` grouped by `column`.
fn by_tenant(c: &Connection, table: &str, column: &str) -> Result<Vec<(String, String, u64)>> {
    rows(
        c,
        "node stats",
        &format!(
            "SELECT t.name, x.{column}, COUNT(*) FROM {table} x JOIN tenants t ON t.id = x.tenant_id \
             GROUP BY t.name, x.{column}"
        ),
        params![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)),
    )
}

fn count(c: &Connection, q: &str) -> Result<u64> {
    c.query_row(q, params![], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(sql("node stats"))
}

pub(super) fn node_stats(c: &Connection) -> Result<NodeStats> {
    let oldest_queued_at = c
        .query_row(
            "SELECT MIN(created_at) FROM jobs WHERE status IN ('validating_files', 'queued')",
            params![],
            |r| r.get(0),
        )
        .map_err(sql("node stats"))?;
    let rejected_streak = rows(
        c,
        "node stats",
        "SELECT t.name, (SELECT COUNT(*) FROM registry_log l WHERE l.tenant_id = t.id \
           AND l.kind = 'rejected' AND l.id > COALESCE((SELECT MAX(p.id) FROM registry_log p \
             WHERE p.tenant_id = t.id AND p.kind = 'promoted'), 0)) FROM tenants t",
        params![],
        |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
    )?;
    let webhooks = rows(
        c,
        "node stats",
        "SELECT status, COUNT(*) FROM webhooks GROUP BY status",
        params![],
        |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
    )?;
    let training = rows(
        c,
        "node stats",
        "SELECT j.id, t.name, e.data FROM jobs j JOIN tenants t ON t.id = j.tenant_id \
         JOIN job_events e ON e.id = (SELECT MAX(id) FROM job_events \
           WHERE job_id = j.id AND kind = 'metrics') \
         WHERE j.status = 'running'",
        params![],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?)),
    )?
    .into_iter()
    .map(|(job_id, tenant, data)| {
        let v: serde_json::Value =
            data.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default();
        let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        TrainingNow {
            job_id,
            tenant,
            step: f("step"),
            loss: f("train_loss"),
            tokens_per_second: f("tokens_per_second"),
        }
    })
    .collect();
    let champion_metrics = rows(
        c,
        "node stats",
        "SELECT t.name, v.eval FROM aliases a JOIN model_versions v ON v.id = a.version_id \
         JOIN tenants t ON t.id = a.tenant_id WHERE a.name = 'champion' AND v.eval IS NOT NULL",
        params![],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
    )?
    .into_iter()
    .flat_map(|(tenant, eval)| {
        let v: serde_json::Value = serde_json::from_str(&eval).unwrap_or_default();
        let metrics = v["summary"]["candidate"]["metrics"].as_object().cloned().unwrap_or_default();
        metrics
            .into_iter()
            .filter_map(|(m, x)| Some((tenant.clone(), m, x.as_f64()?)))
            .collect::<Vec<_>>()
    })
    .collect();
    Ok(NodeStats {
        champion_metrics,
        jobs: by_tenant(c, "jobs", "status")?,
        oldest_queued_at,
        examples: by_tenant(c, "examples", "status")?,
        versions: by_tenant(c, "model_versions", "status")?,
        registry_events: by_tenant(c, "registry_log", "kind")?,
        rejected_streak,
        webhooks,
        auto_rollbacks: count(
            c,
            "SELECT COUNT(*) FROM registry_log WHERE kind = 'rolled_back' AND actor = 'auto-rollback'",
        )?,
        pii_audit_failures: count(c, "SELECT COUNT(*) FROM jobs WHERE error_code = 'pii_found'")?,
        knowledge_passages: count(c, "SELECT COUNT(*) FROM knowledge_chunks")?,
        memory_facts: count(c, "SELECT COUNT(*) FROM memory_facts WHERE superseded_at IS NULL")?,
        training,
        tasks: rows(
            c,
            "node stats",
            "SELECT s.name, \
               (SELECT outcome FROM task_runs r WHERE r.name = s.name AND r.outcome != 'running' \
                ORDER BY r.started_at DESC, r.rowid DESC LIMIT 1), \
               (SELECT MAX(finished_at) FROM task_runs r WHERE r.name = s.name \
                AND r.outcome IN ('ok', 'warning')) \
             FROM task_state s ORDER BY s.name",
            params![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?,
        ..Default::default()
    })
}
