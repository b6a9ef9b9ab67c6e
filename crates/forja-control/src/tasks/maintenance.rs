//! The store's upkeep: backups that are checked restorable before older
//! ones are pruned, and garbage collection of artifacts no row mentions.

use super::run::{Done, TaskEnv};
use crate::{ControlError, Result};
use forja_store::Timestamp;
use std::path::{Path, PathBuf};

/// `1.2 MB`.
pub(super) fn mb(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MB", bytes as f64 / (1 << 20) as f64)
    }
}

/// `7 days`, `3 h`, `40 s`.
pub(super) fn duration(s: i64) -> String {
    match s {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s >= 3600 => format!("{:.1} h", s as f64 / 3600.0),
        s => format!("{s} s"),
    }
}

/// The backups directory.
pub fn backups_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}

/// A backup's file name for the fire at `t`.
fn backup_name(t: Timestamp) -> String {
    let when = chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
    format!("forja-{}.db", when.format("%Y%m%dT%H%M%SZ"))
}

/// Copies the database into `backups/`, checks the copy opens with its
/// integrity intact and the schema this forja knows, then keeps the
/// newest `keep` copies. A copy that fails the check is deleted and the
/// run fails; older copies stay.
pub(super) fn backup(env: &TaskEnv, keep: usize, now: Timestamp) -> Result<Done> {
    if !env.control.store.embedded() {
        return Ok(Done::ok(
            "the database is Postgres: it is backed up with Postgres' own tools (pg_dump, pgBackRest, the provider's snapshots), not by this task",
        ));
    }
    let dir = backups_dir(&env.data_dir);
    let io = |what: &str, e: std::io::Error| {
        ControlError::Internal(format!("backup: cannot {what} {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("create", e))?;
    let mut dest = dir.join(backup_name(now));
    let mut n = 1;
    while dest.exists() {
        n += 1;
        dest = dir.join(backup_name(now).replace(".db", &format!("-{n}.db")));
    }
    let bytes = env.control.store.backup_to(&dest)?;
    let health = forja_store::check_database(&dest);
    let fail = |why: String| {
        let _ = std::fs::remove_file(&dest);
        Err(ControlError::Internal(format!("backup {}: {why}; copy deleted", dest.display())))
    };
    match health {
        Err(e) => return fail(format!("the copy does not open: {e}")),
        Ok(h) if h.integrity != "ok" => return fail(format!("integrity check: {}", h.integrity)),
        Ok(h) if h.schema != h.newest => {
            return fail(format!("schema {} instead of {}", h.schema, h.newest))
        }
        Ok(_) => {}
    }
    let mut copies: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| io("list", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("forja-") && n.ends_with(".db"))
        })
        .collect();
    copies.sort();
    let mut removed = 0;
    while copies.len() > keep.max(1) {
        let old = copies.remove(0);
        std::fs::remove_file(&old).map_err(|e| io("prune", e))?;
        removed += 1;
    }
    Ok(Done::ok(format!(
        "{} copied to {} (integrity ok); {} kept, {removed} older removed",
        mb(bytes),
        dest.display(),
        copies.len()
    )))
}

/// Deletes every artifact no row of the store mentions that was written
/// more than `grace` seconds before `now`. The artifacts are listed before
/// the store is read, so an artifact recorded meanwhile is seen as
/// referenced; one written and not yet recorded is younger than the grace
/// period (which must exceed the longest upload).
pub(super) fn gc(env: &TaskEnv, grace: i64, now: Timestamp) -> Result<Done> {
    let artifacts = env.control.artifacts.clone();
    let listed = env.runtime.block_on(artifacts.list())?;
    let referenced = env.control.store.artifact_references()?;
    let (mut deleted, mut freed, mut kept_ref, mut kept_young) = (0u64, 0u64, 0u64, 0u64);
    for a in listed {
        if referenced.contains(&a.sha256) {
            kept_ref += 1;
        } else if a.modified > now - grace {
            kept_young += 1;
        } else {
            env.runtime.block_on(artifacts.delete(&a.sha256))?;
            deleted += 1;
            freed += a.bytes;
        }
    }
    Ok(Done::ok(format!(
        "{deleted} unreferenced artifact(s) deleted ({}); {kept_ref} referenced kept, \
         {kept_young} unreferenced younger than {} kept",
        mb(freed),
        duration(grace)
    )))
}
