//! [`Tasks`] in SQL (SQLite and Postgres): fires claimed by
//! compare-and-set with a lease, runs recorded. On SQLite a backup by
//! `VACUUM INTO` and the artifact reference scan both read from a second,
//! read-only connection (a WAL snapshot), so writers are not held while
//! they run; on Postgres the scan reads one repeatable-read snapshot and
//! backups are Postgres' own.

use super::rows::rows;
use super::{lock, new_id, Backend, SqlStore};
use crate::db::{params, pg_maintenance, OptionalExtension};
use crate::error::{sql, Result, StoreError};
use crate::tasks::{outcome, Activity, TaskClaim, TaskRun, TaskState, Tasks};
use crate::Timestamp;
use rusqlite::types::ValueRef;
use std::collections::HashSet;
use std::path::Path;

const RUN_COLUMNS: &str =
    "id, name, scheduled_for, started_at, finished_at, outcome, detail, runner, missed";

fn run_row(r: &crate::db::Row<'_>) -> crate::db::Result<TaskRun> {
    Ok(TaskRun {
        id: r.get(0)?,
        name: r.get(1)?,
        scheduled_for: r.get(2)?,
        started_at: r.get(3)?,
        finished_at: r.get(4)?,
        outcome: r.get(5)?,
        detail: r.get(6)?,
        runner: r.get(7)?,
        missed: r.get::<_, i64>(8)? as u32,
    })
}

/// Adds every 64-hex-digit window of `s`'s lowercase hex runs to `out`.
fn addresses_in(s: &str, out: &mut HashSet<String>) {
    let b = s.as_bytes();
    let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    let mut i = 0;
    while i < b.len() {
        if !hex(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && hex(b[i]) {
            i += 1;
        }
        if i - start >= 64 {
            for w in start..=i - 64 {
                out.insert(s[w..w + 64].to_string());
            }
        }
    }
}

/// A second, read-only connection to a SQLite file: reads from it see one
/// WAL snapshot and hold no writer.
fn snapshot(path: &Path, op: &'static str) -> Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sql(op))
}

impl SqlStore {
    fn file_bytes(c: &rusqlite::Connection) -> Result<u64> {
        let pages: i64 =
            c.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(sql("compact"))?;
        let size: i64 =
            c.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(sql("compact"))?;
        Ok((pages * size) as u64)
    }
}

impl Tasks for SqlStore {
    fn claim_task(&self, claim: &TaskClaim<'_>) -> Result<Option<String>> {
        self.tx("claim task", |c, _| {
            let now = claim.now;
            c.execute(
                "INSERT INTO task_state (name) VALUES (?1) ON CONFLICT (name) DO NOTHING",
                [claim.name],
            )
            .map_err(sql("claim task"))?;
            let (last, holder, until): (Option<Timestamp>, Option<String>, Timestamp) = c
                .query_row(
                    "SELECT last_fire, holder, lease_until FROM task_state WHERE name = ?1",
                    [claim.name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(sql("claim task"))?;
            if claim.fire.is_some() && last != claim.last {
                return Ok(None);
            }
            let held = holder.is_some() && until > now;
            if held && !claim.skip {
                return Ok(None);
            }
            if !held {
                c.execute(
                    "UPDATE task_runs SET outcome = ?1, finished_at = ?2, \
                       detail = 'its runner stopped before it finished' \
                     WHERE name = ?3 AND outcome = ?4",
                    params![outcome::ABANDONED, now, claim.name, outcome::RUNNING],
                )
                .map_err(sql("claim task"))?;
            }
            if let Some(fire) = claim.fire {
                c.execute(
                    "UPDATE task_state SET last_fire = ?1 WHERE name = ?2",
                    params![fire, claim.name],
                )
                .map_err(sql("claim task"))?;
            }
            let id = new_id("run");
            let (state, finished) =
                if claim.skip { (outcome::SKIPPED, Some(now)) } else { (outcome::RUNNING, None) };
            c.execute(
                "INSERT INTO task_runs (id, name, scheduled_for, started_at, finished_at, outcome, \
                   detail, runner, missed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    claim.name,
                    claim.fire,
                    now,
                    finished,
                    state,
                    claim.detail,
                    claim.runner,
                    claim.missed
                ],
            )
            .map_err(sql("claim task"))?;
            if !claim.skip {
                c.execute(
                    "UPDATE task_state SET holder = ?1, lease_until = ?2 WHERE name = ?3",
                    params![claim.runner, now + claim.lease_s.max(1), claim.name],
                )
                .map_err(sql("claim task"))?;
            }
            Ok(Some(id))
        })
    }

    fn init_task(&self, name: &str, fire: Timestamp) -> Result<bool> {
        self.tx("init task", |c, _| {
            let n = c
                .execute(
                    "INSERT INTO task_state (name, last_fire) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET last_fire = ?2 WHERE task_state.last_fire IS NULL",
                    params![name, fire],
                )
                .map_err(sql("init task"))?;
            Ok(n == 1)
        })
    }

    fn renew_task(&self, name: &str, runner: &str, until: Timestamp) -> Result<bool> {
        self.tx("renew task", |c, _| {
            let n = c
                .execute(
                    "UPDATE task_state SET lease_until = ?1 WHERE name = ?2 AND holder = ?3",
                    params![until, name, runner],
                )
                .map_err(sql("renew task"))?;
            Ok(n == 1)
        })
    }

    fn finish_task(
        &self,
        run_id: &str,
        runner: &str,
        now: Timestamp,
        state: &str,
        detail: &str,
    ) -> Result<()> {
        self.tx("finish task", |c, _| {
            let name: Option<String> = c
                .query_row("SELECT name FROM task_runs WHERE id = ?1", [run_id], |r| r.get(0))
                .optional()
                .map_err(sql("finish task"))?;
            let name = name.ok_or_else(|| StoreError::NotFound { what: "task run", id: run_id.into() })?;
            c.execute(
                "UPDATE task_runs SET outcome = ?1, detail = ?2, finished_at = ?3 WHERE id = ?4",
                params![state, detail, now, run_id],
            )
            .map_err(sql("finish task"))?;
            c.execute(
                "UPDATE task_state SET holder = NULL, lease_until = 0 WHERE name = ?1 AND holder = ?2",
                params![name, runner],
            )
            .map_err(sql("finish task"))?;
            Ok(())
        })
    }

    fn task_states(&self) -> Result<Vec<TaskState>> {
        self.read(|c, _| {
            rows(
                c,
                "list tasks",
                "SELECT name, last_fire, holder, lease_until FROM task_state ORDER BY name",
                params![],
                |r| {
                    Ok(TaskState {
                        name: r.get(0)?,
                        last_fire: r.get(1)?,
                        holder: r.get(2)?,
                        lease_until: r.get(3)?,
                    })
                },
            )
        })
    }

    fn task_runs(&self, name: Option<&str>, limit: usize) -> Result<Vec<TaskRun>> {
        self.read(|c, _| {
            rows(
                c,
                "list task runs",
                &format!(
                    "SELECT {RUN_COLUMNS} FROM task_runs WHERE CAST(?1 AS TEXT) IS NULL OR name = ?1 \
                     ORDER BY started_at DESC, rowid DESC LIMIT ?2"
                ),
                params![name, limit.min(100_000) as i64],
                run_row,
            )
        })
    }

    fn purge_task_runs(&self, before: Timestamp) -> Result<u64> {
        self.tx("purge task runs", |c, _| {
            let n = c
                .execute(
                    "DELETE FROM task_runs WHERE started_at < ?1 AND outcome != ?2",
                    params![before, outcome::RUNNING],
                )
                .map_err(sql("purge task runs"))?;
            Ok(n as u64)
        })
    }

    fn backup_to(&self, dest: &Path) -> Result<u64> {
        if dest.exists() {
            return Err(StoreError::Conflict(format!("{} exists", dest.display())));
        }
        let Some(path) = self.path() else {
            return Err(StoreError::Config(
                "a Postgres store is backed up with Postgres' own tools (pg_dump, pgBackRest, the provider's snapshots), not by forja's backup task".into(),
            ));
        };
        let c = snapshot(path, "backup")?;
        let target = dest
            .to_str()
            .ok_or_else(|| StoreError::Config(format!("{} is not a UTF-8 path", dest.display())))?;
        c.execute("VACUUM INTO ?1", [target]).map_err(sql("backup"))?;
        super::owner_only(dest)
            .map_err(|e| StoreError::Config(format!("cannot restrict {}: {e}", dest.display())))?;
        Ok(std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0))
    }

    fn compact(&self) -> Result<u64> {
        let started = std::time::Instant::now();
        let out = match &self.backend {
            Backend::Sqlite { conn, .. } => (|| {
                let c = lock(conn);
                let before = Self::file_bytes(&c)?;
                c.execute_batch(
                    "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
                )
                .map_err(sql("compact"))?;
                Ok(before.saturating_sub(Self::file_bytes(&c)?))
            })(),
            Backend::Postgres { pool } => pool.with_client(sql("compact"), |client| {
                pg_maintenance::vacuum(client).map_err(sql("compact"))
            }),
        };
        self.ops.record(started, &out);
        out
    }

    fn artifact_references(&self) -> Result<HashSet<String>> {
        let op = "artifact references";
        let mut out = HashSet::new();
        let mut visit = |text: &str| {
            if text.len() >= 64 {
                addresses_in(text, &mut out);
            }
        };
        let path = match &self.backend {
            Backend::Sqlite { path, .. } => path,
            Backend::Postgres { pool } => {
                pool.with_client(sql(op), |client| {
                    pg_maintenance::scan_text(client, &mut visit).map_err(sql(op))
                })?;
                return Ok(out);
            }
        };
        let c = snapshot(path, op)?;
        // One read transaction: every table from the same snapshot.
        c.execute_batch("BEGIN").map_err(sql(op))?;
        let tables: Vec<String> = {
            let mut st = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .map_err(sql(op))?;
            let names = st.query_map([], |r| r.get::<_, String>(0)).map_err(sql(op))?;
            names.collect::<rusqlite::Result<_>>().map_err(sql(op))?
        };
        for t in tables {
            let mut st = c.prepare(&format!("SELECT * FROM \"{t}\"")).map_err(sql(op))?;
            let n = st.column_count();
            let mut q = st.query([]).map_err(sql(op))?;
            while let Some(row) = q.next().map_err(sql(op))? {
                for i in 0..n {
                    if let ValueRef::Text(b) = row.get_ref(i).map_err(sql(op))? {
                        if b.len() >= 64 {
                            visit(&String::from_utf8_lossy(b));
                        }
                    }
                }
            }
        }
        c.execute_batch("COMMIT").map_err(sql(op))?;
        Ok(out)
    }

    fn activity(&self, from: Timestamp, to: Timestamp) -> Result<Activity> {
        const SECTIONS: &[(&str, &str)] = &[
            (
                "completions served",
                "SELECT t.name, COUNT(*) FROM completions x JOIN tenants t ON t.id = x.tenant_id \
                 WHERE x.created_at >= ?1 AND x.created_at < ?2 GROUP BY t.name",
            ),
            (
                "feedback",
                "SELECT t.name || ' ' || x.status, COUNT(*) FROM examples x \
                 JOIN tenants t ON t.id = x.tenant_id \
                 WHERE x.created_at >= ?1 AND x.created_at < ?2 GROUP BY 1",
            ),
            (
                "jobs finished",
                "SELECT status, COUNT(*) FROM jobs WHERE finished_at >= ?1 AND finished_at < ?2 \
                 GROUP BY status",
            ),
            (
                "registry",
                "SELECT kind, COUNT(*) FROM registry_log WHERE created_at >= ?1 AND created_at < ?2 \
                 GROUP BY kind",
            ),
            (
                "knowledge sources added",
                "SELECT t.name, COUNT(*) FROM knowledge_sources x JOIN tenants t ON t.id = x.tenant_id \
                 WHERE x.created_at >= ?1 AND x.created_at < ?2 GROUP BY t.name",
            ),
            (
                "memory facts added",
                "SELECT t.name, COUNT(*) FROM memory_facts x JOIN tenants t ON t.id = x.tenant_id \
                 WHERE x.created_at >= ?1 AND x.created_at < ?2 GROUP BY t.name",
            ),
            (
                "task runs",
                "SELECT name || ' ' || outcome, COUNT(*) FROM task_runs \
                 WHERE started_at >= ?1 AND started_at < ?2 GROUP BY 1",
            ),
        ];
        self.read(|c, _| {
            let mut out = Activity::new();
            for (section, q) in SECTIONS {
                let counts = rows(c, "activity", q, params![from, to], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?;
                out.insert(section.to_string(), counts.into_iter().collect());
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::addresses_in;
    use std::collections::HashSet;

    #[test]
    fn addresses_are_found_in_any_text() {
        let a = "a".repeat(63) + "b";
        let mut out = HashSet::new();
        addresses_in(&format!("{{\"adapter\":\"{a}\",\"x\":\"{}\"}}", "f".repeat(63)), &mut out);
        assert_eq!(out, HashSet::from([a.clone()]));
        out.clear();
        addresses_in(&format!("{a}0"), &mut out); // a longer run: every window
        assert!(out.contains(&a) && out.len() == 2, "{out:?}");
        out.clear();
        addresses_in(&a.to_uppercase(), &mut out);
        assert!(out.is_empty());
    }
}
