//! [`SqlStore`]: the [`Store`] on SQL, over one of two backends: SQLite
//! (the embedded default, one file in WAL mode) or Postgres (a pool of
//! connections, for replicas on many machines). The concerns' statements
//! are written once, against [`crate::db`].
//!
//! Every write is one transaction that holds the database's write lock from
//! its first statement: SQLite's `BEGIN IMMEDIATE`, or on Postgres a
//! transaction-scoped advisory lock every forja writer takes. So a
//! read-decide-write (the threshold trigger, the quota check, a lease, a
//! task's claim) cannot interleave with another connection's, in this
//! process or another, on this machine or another. SQLite runs with
//! `synchronous = FULL`: a committed transaction survives a kill -9 and a
//! power cut; Postgres commits durably by default.
//!
//! One file per concern implements one of the store's traits: `tenants`
//! (tenants, keys, storage accounting), `examples`, `files`, `jobs`
//! (lifecycle, leases, events, checkpoints), `schedules` (cron, webhooks),
//! `registry`, `completions`, `documents` (documents, their chunks, the
//! entity dictionary), `governance` (auditors, votes, the ledger),
//! `federation` (a hub's nodes, deltas, rounds); `rows`
//! maps rows to types. The ledger is signed with the node's key,
//! [`NODE_KEY`] beside the database, created on first open.

use crate::db::{params, Connection, PgPool, PgTarget};
use crate::error::{sql, Result, StoreError};
use crate::types::*;
use crate::Store;
use forja_core::identity::NodeKey;
use rusqlite::TransactionBehavior;
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

/// SQLite's migrations, one per schema version.
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

/// Postgres' migrations: the first brings an empty database to its
/// version in one step; each later one is the same version as SQLite's.
const PG_MIGRATIONS: &[(i64, &str)] =
    &[(12, include_str!("../../migrations/postgres/0012_baseline.sql"))];

/// The node's key file, beside the database: it signs the ledger (and
/// identifies the node to a federation hub).
pub const NODE_KEY: &str = "node.key";

type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The store on SQL: SQLite or Postgres.
pub struct SqlStore {
    backend: Backend,
    clock: Clock,
    /// Signs the ledger: `node.key` in the data directory.
    key: Arc<NodeKey>,
    /// Operations run, their time, and busy errors.
    ops: OpCounters,
}

/// The store as the embedded default knows it.
pub type SqliteStore = SqlStore;

enum Backend {
    Sqlite { conn: Mutex<rusqlite::Connection>, path: PathBuf },
    Postgres { pool: Box<PgPool> },
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
        if matches!(out, Err(StoreError::Busy { .. } | StoreError::Unavailable { .. })) {
            self.busy.fetch_add(1, Relaxed);
        }
    }
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Sqlite { path, .. } => write!(f, "SqlStore(sqlite {})", path.display()),
            Backend::Postgres { pool } => write!(f, "SqlStore({})", pool.target()),
        }
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

impl SqlStore {
    /// Opens (creating and migrating) the SQLite database at `path`.
    /// Writers wait up to `busy_timeout` for another connection's lock
    /// before `Busy`. A database file it creates is readable by its owner
    /// only; the node's key is beside it.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<SqlStore> {
        let fail = |reason: String| StoreError::Open { path: path.to_path_buf(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
        }
        let existed = path.exists();
        let conn = rusqlite::Connection::open(path).map_err(|e| fail(e.to_string()))?;
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
        let mut store = SqlStore {
            backend: Backend::Sqlite { conn: Mutex::new(conn), path: path.to_path_buf() },
            clock: Arc::new(system_now),
            ops: OpCounters::default(),
            key: Arc::new(key),
        };
        store.migrate_sqlite().map_err(|e| fail(e.to_string()))?;
        Ok(store)
    }

    /// Opens (migrating) the Postgres database at `url`
    /// (`postgres://user:password@host:port/database`). The node's key is
    /// `node.key` in `data_dir`, which every replica of one node shares
    /// (copy it, or mount it as a secret).
    pub fn open_postgres(url: &str, data_dir: &Path) -> Result<SqlStore> {
        let target = PgTarget::parse(url)
            .map_err(|reason| StoreError::Open { path: PathBuf::from("--database"), reason })?;
        let fail =
            |reason: String| StoreError::Open { path: PathBuf::from(target.to_string()), reason };
        std::fs::create_dir_all(data_dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", data_dir.display())))?;
        let key =
            NodeKey::load_or_create(&data_dir.join(NODE_KEY)).map_err(|e| fail(e.to_string()))?;
        let store = SqlStore {
            backend: Backend::Postgres { pool: Box::new(PgPool::new(target.clone())) },
            clock: Arc::new(system_now),
            ops: OpCounters::default(),
            key: Arc::new(key),
        };
        store.migrate_postgres().map_err(|e| fail(e.to_string()))?;
        Ok(store)
    }

    /// Replaces the clock (tests of quotas, leases and schedules).
    pub fn with_clock(mut self, clock: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Caps a SQLite database's size in pages (a full disk, for tests and
    /// for operators who want a hard limit).
    pub fn set_max_pages(&self, pages: u64) -> Result<()> {
        let Backend::Sqlite { conn, .. } = &self.backend else {
            return Err(StoreError::Config(
                "a page limit is SQLite's; Postgres has its own quotas".into(),
            ));
        };
        lock(conn)
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(sql("set max_page_count"))
    }

    /// The SQLite database file; `None` on Postgres.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite { path, .. } => Some(path),
            Backend::Postgres { .. } => None,
        }
    }

    /// Where the database is, for humans: its file, or its URL without the password.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite { path, .. } => path.display().to_string(),
            Backend::Postgres { pool } => pool.target().to_string(),
        }
    }

    /// On Postgres, calls `changed` (from a thread of its own) whenever
    /// any replica commits a registry move, and once after each reconnect;
    /// on SQLite there is no one to hear from (`None`): the control tick's
    /// poll of the model generations is the way.
    pub fn listen_registry(
        &self,
        changed: Box<dyn Fn() + Send>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Option<std::thread::JoinHandle<()>>> {
        match &self.backend {
            Backend::Sqlite { .. } => Ok(None),
            Backend::Postgres { pool } => {
                pool.listen_registry(changed, stop).map(Some).map_err(|e| {
                    StoreError::Config(format!("cannot start the registry listener: {e}"))
                })
            }
        }
    }

    /// Whether this store is on Postgres.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    /// The database's own consistency check: SQLite's `PRAGMA
    /// integrity_check` (`ok`, or what is wrong); on Postgres, `ok` once it
    /// answers (its checks are its own: amcheck, checksums).
    pub fn integrity_check(&self) -> Result<String> {
        match &self.backend {
            Backend::Sqlite { conn, .. } => {
                let c = lock(conn);
                let rows =
                    rows::rows(&*c, "integrity check", "PRAGMA integrity_check", params![], |r| {
                        r.get::<_, String>(0)
                    })?;
                Ok(rows.join("; "))
            }
            Backend::Postgres { .. } => {
                self.read(|c, _| {
                    c.query_row("SELECT 1", params![], |_| Ok(())).map_err(sql("integrity check"))
                })?;
                Ok("ok".into())
            }
        }
    }

    /// Applies the migrations this database lacks, each in one transaction
    /// with foreign keys off (table rebuilds) and checked before commit.
    fn migrate_sqlite(&mut self) -> Result<()> {
        let Backend::Sqlite { conn, .. } = &mut self.backend else { unreachable!("sqlite") };
        let conn = conn.get_mut().unwrap_or_else(|e| e.into_inner());
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .map_err(sql("create schema_migrations"))?;
        let current: i64 = conn
            .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
            .map_err(sql("read schema version"))?;
        let newest = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > newest {
            return Err(newer_schema(current, newest));
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
                let mut st = tx.prepare("PRAGMA foreign_key_check").map_err(sql("migrate"))?;
                let broken: Option<String> = st
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(sql("migrate"))?
                    .next()
                    .transpose()
                    .map_err(sql("migrate"))?;
                drop(st);
                if let Some(table) = broken {
                    return Err(StoreError::Corrupt {
                        what: format!("migration {version}"),
                        reason: format!("a foreign key of table {table} points nowhere"),
                    });
                }
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                    rusqlite::params![version, system_now()],
                )
                .map_err(sql("record migration"))?;
                tx.commit().map_err(sql("commit migration"))?;
            }
            Ok(())
        })();
        conn.execute_batch("PRAGMA foreign_keys = ON").map_err(sql("migrate"))?;
        out
    }

    /// Brings a Postgres database to the newest schema under the writers'
    /// lock (replicas starting together migrate once): an empty one in one
    /// step, an older one version by version.
    fn migrate_postgres(&self) -> Result<()> {
        let newest = PG_MIGRATIONS.last().map_or(0, |m| m.0);
        self.tx("migrate", |c, _| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .map_err(sql("create schema_migrations"))?;
            let current: i64 = c
                .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", params![], |r| r.get(0))
                .map_err(sql("read schema version"))?;
            if current > newest {
                return Err(newer_schema(current, newest));
            }
            let first = PG_MIGRATIONS[0].0;
            if current > 0 && current < first {
                return Err(StoreError::Conflict(format!(
                    "the database has schema version {current}, older than any this forja can migrate (from {first})"
                )));
            }
            for (version, script) in PG_MIGRATIONS.iter().filter(|m| m.0 > current) {
                c.execute_batch(script).map_err(sql("migrate"))?;
                let from = if current == 0 && *version == first { 1 } else { *version };
                for v in from..=*version {
                    c.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                        params![v, system_now()],
                    )
                    .map_err(sql("record migration"))?;
                }
            }
            Ok(())
        })
    }

    /// Runs `f` in one transaction that holds the write lock.
    fn tx<T: Send>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection, Timestamp) -> Result<T> + Send,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        // The clock is read once the write lock is held, so that writers'
        // times follow the order they wrote in.
        let clock = &self.clock;
        let out = match &self.backend {
            Backend::Sqlite { conn, .. } => (|| {
                let mut conn = lock(conn);
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql(op))?;
                let out = f(&*tx, clock())?;
                tx.commit().map_err(sql(op))?;
                Ok(out)
            })(),
            Backend::Postgres { pool } => pool.with_client(sql(op), |client| {
                let tx = crate::db::PgConn::write(client).map_err(sql(op))?;
                let out = f(&tx, clock())?;
                tx.commit().map_err(sql(op))?;
                Ok(out)
            }),
        };
        self.ops.record(started, &out);
        out
    }

    /// Runs a read (each statement sees a committed state).
    fn read<T: Send>(
        &self,
        f: impl FnOnce(&Connection, Timestamp) -> Result<T> + Send,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let clock = &self.clock;
        let out = match &self.backend {
            Backend::Sqlite { conn, .. } => {
                let c = lock(conn);
                f(&*c, clock())
            }
            Backend::Postgres { pool } => pool.with_client(sql("read"), |client| {
                f(&crate::db::PgConn::Client(std::cell::RefCell::new(client)), clock())
            }),
        };
        self.ops.record(started, &out);
        out
    }
}

fn lock(conn: &Mutex<rusqlite::Connection>) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
    // A panic while holding the connection cannot leave a transaction
    // open (rusqlite rolls back on drop), so the connection is usable.
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

fn newer_schema(current: i64, newest: i64) -> StoreError {
    StoreError::Conflict(format!(
        "the database has schema version {current}, newer than this forja knows ({newest}); upgrade forja"
    ))
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

/// Checks the Postgres database at `url` without changing it: the
/// server answers, is a primary (a standby in recovery cannot take
/// writes), and the schema version (`0`: not migrated yet). `integrity`
/// is `ok` or what is wrong; the server's version is in `server`.
pub fn check_postgres(url: &str) -> Result<(DbHealth, String)> {
    let target = PgTarget::parse(url)
        .map_err(|reason| StoreError::Open { path: PathBuf::from("--database"), reason })?;
    let pool = PgPool::new(target);
    let newest = PG_MIGRATIONS.last().map_or(0, |m| m.0);
    pool.with_client(sql("connect"), |c| {
        let one = |c: &mut postgres::Client, q: &str| {
            c.query_one(q, &[]).map_err(|e| sql("check")(crate::db::pg_error(e)))
        };
        let server: String = one(c, "SHOW server_version")?.get(0);
        let standby: bool = one(c, "SELECT pg_is_in_recovery()")?.get(0);
        let migrated: bool = one(c, "SELECT to_regclass('schema_migrations') IS NOT NULL")?.get(0);
        let schema: i64 = if migrated {
            one(c, "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations")?.get(0)
        } else {
            0
        };
        let integrity = if standby {
            "a standby in recovery (read-only): point --database at the primary".to_string()
        } else {
            "ok".to_string()
        };
        Ok((DbHealth { integrity, schema, newest }, server))
    })
}

/// Opens the database at `path` read-only and checks it (`PRAGMA
/// integrity_check`, at most 10 problems reported) and its schema version.
pub fn check_database(path: &Path) -> Result<DbHealth> {
    use rusqlite::OpenFlags;
    let c = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
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

impl Store for SqlStore {
    fn now(&self) -> Timestamp {
        (self.clock)()
    }

    fn embedded(&self) -> bool {
        !self.is_postgres()
    }

    fn node_stats(&self) -> Result<NodeStats> {
        let mut s = self.read(|c, _| stats::node_stats(c))?;
        s.operations = self.ops.count.load(Relaxed);
        s.operation_seconds = self.ops.micros.load(Relaxed) as f64 / 1e6;
        s.busy_errors = self.ops.busy.load(Relaxed);
        Ok(s)
    }
}
