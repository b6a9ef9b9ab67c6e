//! [`Db`] on Postgres: a small pool of synchronous `postgres` clients,
//! `?N` placeholders rewritten to `$N`, [`Value`]s bound to whatever type
//! the server inferred for each parameter, and columns read back by their
//! type.
//!
//! The `postgres` crate drives its own Tokio runtime and refuses to run
//! inside another's; the store is called from async handlers' blocking
//! threads and from plain threads alike, so [`PgPool::with_client`] moves
//! the work to a scoped thread whenever the caller is inside a runtime.

use std::cell::RefCell;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type};
use postgres::{Client, NoTls};

use super::{Db, Dialect, Error, Result, Rows, Value};

/// Connections one store opens at most; a caller waits up to
/// [`POOL_WAIT`] for one before the database counts as unavailable.
const POOL_MAX: usize = 16;
const POOL_WAIT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the database is: a `postgres://` URL, shown without its password.
#[derive(Clone)]
pub(crate) struct PgTarget {
    config: postgres::Config,
    shown: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PgTarget {
    /// Parses a connection URL (`postgres://user:pass@host:port/db?...`, or
    /// libpq's `host=… dbname=…` form).
    pub(crate) fn parse(url: &str) -> std::result::Result<PgTarget, String> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| format!("not a Postgres connection string ({e})"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("forja");
        Ok(PgTarget { config, shown: redact(url) })
    }
}

/// The URL with its password replaced.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url
            .split_whitespace()
            .map(|kv| if kv.starts_with("password=") { "password=***" } else { kv })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A pool of clients to one database.
pub(crate) struct PgPool {
    target: PgTarget,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Client>,
    open: usize,
}

impl PgPool {
    pub(crate) fn new(target: PgTarget) -> PgPool {
        PgPool {
            target,
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
            freed: Condvar::new(),
        }
    }

    pub(crate) fn target(&self) -> &PgTarget {
        &self.target
    }

    /// Runs `f` with a client of the pool (a new connection when none is
    /// idle). A client whose connection broke is dropped, not returned.
    pub(crate) fn with_client<T: Send, E: Send>(
        &self,
        unavailable: impl FnOnce(Error) -> E + Send,
        f: impl FnOnce(&mut Client) -> std::result::Result<T, E> + Send,
    ) -> std::result::Result<T, E> {
        off_runtime(|| {
            let mut lent = Lent { pool: self, client: Some(self.take().map_err(unavailable)?) };
            f(lent.client.as_mut().expect("lent until dropped"))
        })
    }

    fn take(&self) -> Result<Client> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(c) = st.idle.pop() {
                if !c.is_closed() {
                    return Ok(c);
                }
                st.open -= 1;
                continue;
            }
            if st.open < POOL_MAX {
                st.open += 1;
                drop(st);
                return match self.target.config.connect(NoTls) {
                    Ok(c) => Ok(c),
                    Err(e) => {
                        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                        st.open -= 1;
                        self.freed.notify_one();
                        Err(Error::Unavailable(format!(
                            "cannot connect to {}: {}",
                            self.target,
                            Error::Postgres(e)
                        )))
                    }
                };
            }
            let (next, timeout) =
                self.freed.wait_timeout(st, POOL_WAIT).unwrap_or_else(|e| e.into_inner());
            st = next;
            if timeout.timed_out() && st.idle.is_empty() && st.open >= POOL_MAX {
                return Err(Error::Unavailable(format!(
                    "all {POOL_MAX} connections to {} stayed busy for {}s",
                    self.target,
                    POOL_WAIT.as_secs()
                )));
            }
        }
    }

    fn give_back(&self, client: Client) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if client.is_closed() {
            st.open -= 1;
        } else {
            st.idle.push(client);
        }
        self.freed.notify_one();
    }
}

/// A client out of the pool, returned when dropped, also when the work
/// with it panicked (its open transaction rolls back first), so a panic
/// never leaks a slot of the pool.
struct Lent<'p> {
    pool: &'p PgPool,
    client: Option<Client>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            self.pool.give_back(c);
        }
    }
}

/// Runs `f` where the `postgres` crate may block: here, or on a scoped
/// thread when this thread is inside a Tokio runtime.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// A client or one of its transactions, as a [`Db`].
pub(crate) enum PgConn<'a> {
    Client(RefCell<&'a mut Client>),
    Tx(RefCell<postgres::Transaction<'a>>),
}

impl<'a> PgConn<'a> {
    /// Begins a transaction that holds the store's write lock until it
    /// ends: writers run one at a time across every process on the
    /// database, as SQLite's `BEGIN IMMEDIATE` makes them (so a
    /// read-decide-write never interleaves with another's).
    pub(crate) fn write(client: &'a mut Client) -> Result<PgConn<'a>> {
        let mut tx = client.transaction().map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).map_err(pg_error)?;
        Ok(PgConn::Tx(RefCell::new(tx)))
    }

    pub(crate) fn commit(self) -> Result<()> {
        match self {
            PgConn::Tx(tx) => tx.into_inner().commit().map_err(pg_error),
            PgConn::Client(_) => Ok(()),
        }
    }
}

/// The channel registry moves are announced on (`NOTIFY`, with the tenant).
pub(crate) const REGISTRY_CHANNEL: &str = "forja_registry";

impl PgPool {
    /// Calls `changed` for every registry move any replica commits, from
    /// a thread with its own connection that `LISTEN`s; after a lost
    /// connection it reconnects (retrying every second) and calls
    /// `changed` once, since moves may have passed unheard. Ends when
    /// `stop` is set.
    pub(crate) fn listen_registry(
        &self,
        changed: Box<dyn Fn() + Send>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        use std::sync::atomic::Ordering;
        let config = self.target.config.clone();
        let target = self.target.clone();
        std::thread::Builder::new().name("registry-listen".into()).spawn(move || {
            let mut first = true;
            while !stop.load(Ordering::SeqCst) {
                let mut client = match config.connect(NoTls) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(database = %target, "registry listener cannot connect: {e}");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                };
                if let Err(e) = client.batch_execute(&format!("LISTEN {REGISTRY_CHANNEL}")) {
                    tracing::warn!("registry listener: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
                if !first {
                    changed();
                }
                first = false;
                loop {
                    let next = {
                        use postgres::fallible_iterator::FallibleIterator;
                        let mut n = client.notifications();
                        let mut heard = n.timeout_iter(Duration::from_millis(500));
                        heard.next()
                    };
                    match next {
                        Ok(Some(_)) => changed(),
                        Ok(None) if stop.load(Ordering::SeqCst) => return,
                        Ok(None) if client.is_closed() => break,
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!("registry listener lost its connection: {e}");
                            break;
                        }
                    }
                }
            }
        })
    }
}

/// The advisory lock key of forja's writers (`forja` in ASCII).
const WRITE_LOCK: i64 = 0x0066_6f72_6a61;

/// Postgres errors: lost connections and refused starts are "unavailable"
/// (callers answer 503 and retry), the rest keep their SQLSTATE. An error
/// the server did not send (no SQLSTATE) is the connection's.
pub(crate) fn pg_error(e: postgres::Error) -> Error {
    let code = e.as_db_error().map(|d| d.code().code().to_string());
    match code.as_deref() {
        None => Error::Unavailable(format!("the connection to Postgres failed: {e}")),
        Some(c) if c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03" => {
            Error::Unavailable(format!("Postgres is not accepting work: {}", Error::Postgres(e)))
        }
        _ => Error::Postgres(e),
    }
}

impl Db for PgConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn run(&self, sql: &str, params: Vec<Value>) -> Result<usize> {
        let sql = placeholders(sql);
        let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let st = self.prepare(&sql, &params)?;
        let n = match self {
            PgConn::Client(c) => c.borrow_mut().execute(&st, &p),
            PgConn::Tx(t) => t.borrow_mut().execute(&st, &p),
        }
        .map_err(pg_error)?;
        Ok(n as usize)
    }

    fn fetch(&self, sql: &str, params: Vec<Value>) -> Result<Rows> {
        let sql = placeholders(sql);
        let p: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let st = self.prepare(&sql, &params)?;
        let names = names(&st);
        let rows = match self {
            PgConn::Client(c) => c.borrow_mut().query(&st, &p),
            PgConn::Tx(t) => t.borrow_mut().query(&st, &p),
        }
        .map_err(pg_error)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push((0..names.len()).map(|i| decode(r, i)).collect::<Result<Vec<_>>>()?);
        }
        Ok(Rows { names, rows: out })
    }

    fn batch(&self, sql: &str) -> Result<()> {
        match self {
            PgConn::Client(c) => c.borrow_mut().batch_execute(sql),
            PgConn::Tx(t) => t.borrow_mut().batch_execute(sql),
        }
        .map_err(pg_error)
    }
}

impl PgConn<'_> {
    /// Prepares a statement, letting the server infer each parameter's
    /// type from its use; where it cannot (`?1 IS NULL OR col = ?1` alone
    /// says nothing), again with the types of the values bound (a NULL as
    /// text).
    fn prepare(&self, sql: &str, params: &[Value]) -> Result<postgres::Statement> {
        let untyped = match self {
            PgConn::Client(c) => c.borrow_mut().prepare(sql),
            PgConn::Tx(t) => t.borrow_mut().prepare(sql),
        };
        match untyped {
            Err(e)
                if e.code().is_some_and(|c| {
                    *c == postgres::error::SqlState::INDETERMINATE_DATATYPE
                        || *c == postgres::error::SqlState::AMBIGUOUS_PARAMETER
                }) =>
            {
                let types: Vec<Type> = params
                    .iter()
                    .map(|v| match v {
                        Value::Integer(_) => Type::INT8,
                        Value::Real(_) => Type::FLOAT8,
                        Value::Null | Value::Text(_) => Type::TEXT,
                        Value::Blob(_) => Type::BYTEA,
                    })
                    .collect();
                match self {
                    PgConn::Client(c) => c.borrow_mut().prepare_typed(sql, &types),
                    PgConn::Tx(t) => t.borrow_mut().prepare_typed(sql, &types),
                }
                .map_err(pg_error)
            }
            other => other.map_err(pg_error),
        }
    }
}

fn names(st: &postgres::Statement) -> Vec<String> {
    st.columns().iter().map(|c| c.name().to_string()).collect()
}

/// `?N` → `$N` and `?` → `$k` (the k-th bare one), outside string literals.
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let (mut quoted, mut bare) = (false, 0);
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            '?' if !quoted => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    while let Some(d) = chars.next_if(char::is_ascii_digit) {
                        out.push(d);
                    }
                } else {
                    bare += 1;
                    out.push_str(&bare.to_string());
                }
            }
            _ => out.push(ch),
        }
    }
    out
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        let text = |s: &str, out: &mut BytesMut| s.to_sql(&Type::TEXT, out);
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::FLOAT8 => (*n as f64).to_sql(ty, out),
                Type::FLOAT4 => (*n as f32).to_sql(ty, out),
                Type::BOOL => (*n != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    text(&n.to_string(), out)
                }
                _ => Err(format!("cannot bind an integer to a {ty} parameter").into()),
            },
            Value::Real(x) => match *ty {
                Type::FLOAT8 => x.to_sql(ty, out),
                Type::FLOAT4 => (*x as f32).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::UNKNOWN => text(&x.to_string(), out),
                _ => Err(format!("cannot bind a double to a {ty} parameter").into()),
            },
            Value::Text(s) => match *ty {
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                Type::JSONB => {
                    out.extend_from_slice(&[1]);
                    text(s, out)
                }
                Type::INT8 | Type::INT4 | Type::INT2 | Type::FLOAT8 | Type::FLOAT4 => {
                    Err(format!("cannot bind text to a {ty} parameter").into())
                }
                _ => text(s, out),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(format!("cannot bind bytes to a {ty} parameter").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A NUMERIC (what SUM and AVG return) as a number.
struct Numeric(Value);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> std::result::Result<Self, BoxError> {
        let word = |i: usize| -> std::result::Result<i16, BoxError> {
            raw.get(i..i + 2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| "a NUMERIC cut short".into())
        };
        let (ndigits, weight, sign, scale) = (word(0)?, word(2)?, word(4)? as u16, word(6)?);
        if sign == 0xC000 {
            return Ok(Numeric(Value::Real(f64::NAN)));
        }
        let (mut int, mut real, mut exact) = (0i128, 0f64, true);
        for i in 0..ndigits.max(0) as usize {
            let d = word(8 + 2 * i)? as i128;
            let power = weight as i32 - i as i32;
            real += d as f64 * 10000f64.powi(power);
            if power >= 0 && exact {
                match 10000i128.checked_pow(power as u32).and_then(|p| d.checked_mul(p)) {
                    Some(v) => int = int.saturating_add(v),
                    None => exact = false,
                }
            } else if d != 0 {
                exact = false;
            }
        }
        let neg = sign == 0x4000;
        if scale == 0 && exact {
            if let Ok(n) = i64::try_from(if neg { -int } else { int }) {
                return Ok(Numeric(Value::Integer(n)));
            }
        }
        Ok(Numeric(Value::Real(if neg { -real } else { real })))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

fn decode(row: &postgres::Row, i: usize) -> Result<Value> {
    fn get<'a, T: FromSql<'a>>(row: &'a postgres::Row, i: usize) -> Result<Option<T>> {
        row.try_get::<_, Option<T>>(i).map_err(pg_error)
    }
    let ty = row.columns()[i].type_().clone();
    let v = match ty {
        Type::VOID => None,
        Type::INT8 => get::<i64>(row, i)?.map(Value::Integer),
        Type::INT4 => get::<i32>(row, i)?.map(|n| Value::Integer(n.into())),
        Type::INT2 => get::<i16>(row, i)?.map(|n| Value::Integer(n.into())),
        Type::OID => get::<u32>(row, i)?.map(|n| Value::Integer(n.into())),
        Type::BOOL => get::<bool>(row, i)?.map(|b| Value::Integer(b.into())),
        Type::FLOAT8 => get::<f64>(row, i)?.map(Value::Real),
        Type::FLOAT4 => get::<f32>(row, i)?.map(|x| Value::Real(x.into())),
        Type::NUMERIC => get::<Numeric>(row, i)?.map(|n| n.0),
        Type::BYTEA => get::<Vec<u8>>(row, i)?.map(Value::Blob),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            get::<String>(row, i)?.map(Value::Text)
        }
        other => {
            return Err(Error::Conversion {
                idx: i,
                message: format!("column of type {other}, which the store does not read"),
            })
        }
    };
    Ok(v.unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_outside_literals() {
        assert_eq!(
            placeholders("SELECT ?1, ?12 WHERE a = '?' AND b = ?"),
            "SELECT $1, $12 WHERE a = '?' AND b = $1"
        );
        assert_eq!(placeholders("x = ? AND y = ?"), "x = $1 AND y = $2");
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact("postgres://forja:s3cret@db:5432/forja"),
            "postgres://forja:***@db:5432/forja"
        );
        assert_eq!(redact("host=db password=s3cret dbname=x"), "host=db password=*** dbname=x");
        assert!(PgTarget::parse("nonsense://").is_err());
    }
}

/// The maintenance the scheduled tasks do, on Postgres.
pub(crate) mod pg_maintenance {
    use super::{pg_error, Client, Result};

    /// `VACUUM (ANALYZE)`; returns the bytes the database shrank by.
    pub(crate) fn vacuum(client: &mut Client) -> Result<u64> {
        let size = |c: &mut Client| -> Result<i64> {
            c.query_one("SELECT pg_database_size(current_database())", &[])
                .and_then(|r| r.try_get(0))
                .map_err(pg_error)
        };
        let before = size(client)?;
        client.batch_execute("VACUUM (ANALYZE)").map_err(pg_error)?;
        Ok(before.saturating_sub(size(client)?).max(0) as u64)
    }

    /// Hands every value of every text column of the schema's tables to
    /// `visit`, all from one snapshot (a read-only repeatable-read
    /// transaction).
    pub(crate) fn scan_text(client: &mut Client, visit: &mut dyn FnMut(&str)) -> Result<()> {
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(pg_error)?;
        let cols = tx
            .query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND data_type = 'text' \
                 ORDER BY table_name, ordinal_position",
                &[],
            )
            .map_err(pg_error)?;
        let mut tables: Vec<(String, Vec<String>)> = Vec::new();
        for r in cols {
            let (t, c): (String, String) = (r.get(0), r.get(1));
            match tables.last_mut() {
                Some((last, cs)) if *last == t => cs.push(c),
                _ => tables.push((t, vec![c])),
            }
        }
        for (t, cs) in tables {
            let list: Vec<String> = cs.iter().map(|c| format!("\"{c}\"")).collect();
            let q = format!("SELECT {} FROM \"{t}\"", list.join(", "));
            for row in tx.query(&q, &[]).map_err(pg_error)? {
                for i in 0..cs.len() {
                    if let Some(s) = row.try_get::<_, Option<&str>>(i).map_err(pg_error)? {
                        visit(s);
                    }
                }
            }
        }
        tx.commit().map_err(pg_error)
    }
}
