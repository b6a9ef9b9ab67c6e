//! [`SqliteStore`]: the embedded [`Store`], one SQLite file in WAL mode.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction: it takes the write
//! lock before reading, so a read-decide-write (the threshold trigger, the
//! quota check, a lease) cannot interleave with another connection's, in
//! this process or another. `synchronous = FULL`: a committed transaction
//! survives a kill -9 and a power cut.
//!
//! One file per concern implements one of the store's traits: `tenants`
//! (tenants, keys, storage accounting), `examples`, `files`, `jobs`
//! (lifecycle, leases, events, checkpoints), `schedules` (cron, webhooks),
//! `registry`, `completions`, `documents` (documents, their chunks, the
//! entity dictionary), `governance` (auditors, votes, the ledger),
//! `federation` (a hub's nodes, deltas, rounds); `rows`
//! maps rows to types. The ledger is signed with the node's key,
//! [`NODE_KEY`] beside the database, created on first open.

use crate::error::{sql, Result, StoreError};
use crate::types::*;
use crate::Store;
use forja_core::identity::NodeKey;
use rusqlite::{params, Connection, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod completions;
mod conversations;
mod documents;
mod examples;
mod federation;
mod files;
mod governance;
mod jobs;
mod knowledge;
mod memory;
mod registry;
mod rows;
mod schedules;
mod stats;
mod tasks;
mod tenants;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_registry.sql")),
    (3, include_str!("../../migrations/sqlite/0003_completions.sql")),
    (4, include_str!("../../migrations/sqlite/0004_hardening.sql")),
    (5, include_str!("../../migrations/sqlite/0005_documents.sql")),
    (6, include_str!("../../migrations/sqlite/0006_conversations.sql")),
    (7, include_str!("../../migrations/sqlite/0007_continual.sql")),
    (8, include_str!("../../migrations/sqlite/0008_governance.sql")),
    (9, include_str!("../../migrations/sqlite/0009_federation.sql")),
    (10, include_str!("../../migrations/sqlite/0010_knowledge.sql")),
    (11, include_str!("../../migrations/sqlite/0011_memory.sql")),
    (12, include_str!("../../migrations/sqlite/0012_tasks.sql")),
];

/// The node's key file, beside the database: it signs the ledger (and
/// identifies the node to a federation hub).
pub const NODE_KEY: &str = "node.key";

type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    clock: Clock,
    /// Signs the ledger: `node.key` beside the database.
    key: Arc<NodeKey>,
    /// Operations run, their time, and busy errors.
    ops: OpCounters,
}

/// Counters of the store's operations since it was opened.
#[derive(Debug, Default)]
struct OpCounters {
    count: AtomicU64,
    micros: AtomicU64,
    busy: AtomicU64,
}

impl OpCounters {
    fn record<T>(&self, started: std::time::Instant, out: &Result<T>) {
        self.count.fetch_add(1, Relaxed);
        self.micros.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        if matches!(out, Err(StoreError::Busy { .. })) {
            self.busy.fetch_add(1, Relaxed);
        }
    }
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

/// Makes a file we created readable by its owner only (the database holds
/// key hashes and tenants' data).
#[cfg(unix)]
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn owner_only(_: &Path) -> std::io::Result<()> {
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`. Writers wait
    /// up to `busy_timeout` for another connection's lock before `Busy`. A
    /// database file it creates is readable by its owner only.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<SqliteStore> {
        let fail = |reason: String| StoreError::Open { path: path.to_path_buf(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
        }
        let existed = path.exists();
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        if !existed {
            owner_only(path).map_err(|e| fail(format!("cannot restrict its permissions: {e}")))?;
        }
        conn.busy_timeout(busy_timeout).map_err(|e| fail(e.to_string()))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(|e| fail(format!("cannot set up the database ({e}); is it a forja database?")))?;
        let key_path = path.with_file_name(NODE_KEY);
        let key = NodeKey::load_or_create(&key_path).map_err(|e| fail(e.to_string()))?;
        let mut store = SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            clock: Arc::new(system_now),
            ops: OpCounters::default(),
            key: Arc::new(key),
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

    /// SQLite's own consistency check (`PRAGMA integrity_check`): `ok`, or
    /// what is wrong.
    pub fn integrity_check(&self) -> Result<String> {
        let rows =
            rows::rows(&self.lock(), "integrity check", "PRAGMA integrity_check", [], |r| {
                r.get::<_, String>(0)
            })?;
        Ok(rows.join("; "))
    }

    /// Applies the migrations this database lacks, each in one transaction
    /// with foreign keys off (table rebuilds) and checked before commit.
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
        let pending: Vec<_> = MIGRATIONS.iter().filter(|m| m.0 > current).collect();
        if pending.is_empty() {
            return Ok(());
        }
        // Outside any transaction: SQLite ignores this pragma inside one.
        conn.execute_batch("PRAGMA foreign_keys = OFF").map_err(sql("migrate"))?;
        let out = (|| {
            for (version, script) in pending {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql("begin migration"))?;
                tx.execute_batch(script).map_err(sql("migrate"))?;
                let broken: Option<String> =
                    tx.query_row("PRAGMA foreign_key_check", [], |r| r.get(0)).ok();
                if let Some(table) = broken {
                    return Err(StoreError::Corrupt {
                        what: format!("migration {version}"),
                        reason: format!("a foreign key of table {table} points nowhere"),
                    });
                }
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                    params![version, system_now()],
                )
                .map_err(sql("record migration"))?;
                tx.commit().map_err(sql("commit migration"))?;
            }
            Ok(())
        })();
        conn.execute_batch("PRAGMA foreign_keys = ON").map_err(sql("migrate"))?;
        out
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
        let started = std::time::Instant::now();
        let out = (|| {
            let mut conn = self.lock();
            let tx =
                conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql(op))?;
            let out = f(&tx, (self.clock)())?;
            tx.commit().map_err(sql(op))?;
            Ok(out)
        })();
        self.ops.record(started, &out);
        out
    }

    /// Runs a read.
    fn read<T>(&self, f: impl FnOnce(&Connection, Timestamp) -> Result<T>) -> Result<T> {
        let started = std::time::Instant::now();
        let out = f(&self.lock(), (self.clock)());
        self.ops.record(started, &out);
        out
    }
}

/// What `forja doctor` learns of a database without changing it.
#[derive(Debug, Clone, PartialEq)]
pub struct DbHealth {
    /// `ok`, or SQLite's first integrity problems.
    pub integrity: String,
    /// The schema version it is at.
    pub schema: i64,
    /// The newest schema this forja knows.
    pub newest: i64,
}

/// Opens the database at `path` read-only and checks it (`PRAGMA
/// integrity_check`, at most 10 problems reported) and its schema version.
pub fn check_database(path: &Path) -> Result<DbHealth> {
    use rusqlite::OpenFlags;
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sql("open database"))?;
    let problems: Vec<String> = {
        let mut st = c.prepare("PRAGMA integrity_check(10)").map_err(sql("integrity check"))?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(sql("integrity check"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql("integrity check"))?
    };
    let schema = c
        .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
        .unwrap_or(0);
    Ok(DbHealth {
        integrity: problems.join("; "),
        schema,
        newest: MIGRATIONS.last().map_or(0, |m| m.0),
    })
}

impl Store for SqliteStore {
    fn now(&self) -> Timestamp {
        (self.clock)()
    }

    fn node_stats(&self) -> Result<NodeStats> {
        let mut s = self.read(|c, _| stats::node_stats(c))?;
        s.operations = self.ops.count.load(Relaxed);
        s.operation_seconds = self.ops.micros.load(Relaxed) as f64 / 1e6;
        s.busy_errors = self.ops.busy.load(Relaxed);
        Ok(s)
    }
}
