//! The SQL seam under [`crate::SqlStore`]: one small API, shaped like the
//! part of rusqlite the store uses, over SQLite (`lite.rs`, rusqlite) and
//! Postgres (`pg.rs`, the `postgres` crate).
//!
//! Values cross it as [`Value`] (null, 64-bit integer, double, text, bytes:
//! SQLite's storage classes, which Postgres' BIGINT, DOUBLE PRECISION, TEXT
//! and BYTEA columns hold exactly), rows come back materialised, and SQL is
//! written once with `?N` placeholders (Postgres gets `$N`). Where the two
//! dialects differ the store asks [`Db::dialect`]; that is rare (JSON
//! paths, sequences, maintenance), because the schema and the queries keep
//! to what both accept.

mod lite;
mod pg;

pub(crate) use pg::{pg_error, pg_maintenance, PgConn, PgPool, PgTarget, REGISTRY_CHANNEL};

/// A value bound to or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (booleans are 0 and 1).
    Integer(i64),
    /// A double.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// Which SQL the connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// What a statement can fail with.
#[derive(Debug)]
pub(crate) enum Error {
    /// `query_row` found no row.
    QueryReturnedNoRows,
    /// A column did not hold what the caller asked for.
    Conversion { idx: usize, message: String },
    /// SQLite said so.
    Sqlite(rusqlite::Error),
    /// Postgres said so.
    Postgres(postgres::Error),
    /// The database cannot be reached (Postgres down, failing over, the
    /// pool exhausted past its wait).
    Unavailable(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::QueryReturnedNoRows => write!(f, "no row"),
            Error::Conversion { idx, message } => write!(f, "column {idx}: {message}"),
            Error::Sqlite(e) => write!(f, "{e}"),
            Error::Postgres(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
                None => write!(f, "{e}"),
            },
            Error::Unavailable(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => Error::QueryReturnedNoRows,
            e => Error::Sqlite(e),
        }
    }
}

/// Results of statements.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Something that binds as a [`Value`].
pub(crate) trait ToValue {
    fn to_value(&self) -> Value;
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Integer(*self as i64)
            }
        }
    )*};
}
int_to_value!(i64, i32, i16, i8, u64, u32, u16, u8, usize);

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Integer(*self as i64)
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl ToValue for f32 {
    fn to_value(&self) -> Value {
        Value::Real(*self as f64)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Integer(n)
    }
}

/// Something a column reads as.
pub(crate) trait FromValue: Sized {
    fn from_value(v: &Value) -> std::result::Result<Self, String>;
}

fn wrong(v: &Value, want: &str) -> String {
    let got = match v {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a double",
        Value::Text(_) => "text",
        Value::Blob(_) => "bytes",
    };
    format!("{got} where {want} was expected")
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Integer(n) => Ok(*n),
            _ => Err(wrong(v, "an integer")),
        }
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> std::result::Result<Self, String> {
                let n = i64::from_value(v)?;
                <$t>::try_from(n).map_err(|_| format!("{n} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}
int_from_value!(i32, u32, u64, usize);

impl FromValue for bool {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        i64::from_value(v).map(|n| n != 0)
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Real(x) => Ok(*x),
            Value::Integer(n) => Ok(*n as f64),
            _ => Err(wrong(v, "a number")),
        }
    }
}
impl FromValue for f32 {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        f64::from_value(v).map(|x| x as f32)
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(wrong(v, "text")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err(wrong(v, "bytes")),
        }
    }
}
impl FromValue for Value {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        Ok(v.clone())
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> std::result::Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A column by position or name.
pub(crate) trait RowIndex {
    fn index(&self, names: &[String]) -> Result<usize>;
}
impl RowIndex for usize {
    fn index(&self, names: &[String]) -> Result<usize> {
        if *self < names.len() {
            Ok(*self)
        } else {
            Err(Error::Conversion { idx: *self, message: "no such column".into() })
        }
    }
}
impl RowIndex for &str {
    fn index(&self, names: &[String]) -> Result<usize> {
        names.iter().position(|n| n == self).ok_or_else(|| Error::Conversion {
            idx: names.len(),
            message: format!("no column `{self}`"),
        })
    }
}

/// One row of a result.
pub(crate) struct Row<'a> {
    names: &'a [String],
    values: &'a [Value],
}

impl Row<'_> {
    /// Column `idx` as `T`.
    pub(crate) fn get<I: RowIndex, T: FromValue>(&self, idx: I) -> Result<T> {
        let i = idx.index(self.names)?;
        T::from_value(&self.values[i]).map_err(|message| Error::Conversion { idx: i, message })
    }
}

/// A whole result.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) names: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
}

impl Rows {
    fn row(&self, i: usize) -> Row<'_> {
        Row { names: &self.names, values: &self.rows[i] }
    }
}

/// Parameters of a statement.
pub(crate) trait Params {
    fn into_values(self) -> Vec<Value>;
}

impl<T: ToValue, const N: usize> Params for [T; N] {
    fn into_values(self) -> Vec<Value> {
        self.iter().map(ToValue::to_value).collect()
    }
}
impl<T: ToValue, const N: usize> Params for &[T; N] {
    fn into_values(self) -> Vec<Value> {
        self.iter().map(ToValue::to_value).collect()
    }
}
impl<T: ToValue> Params for &[T] {
    fn into_values(self) -> Vec<Value> {
        self.iter().map(ToValue::to_value).collect()
    }
}

/// Parameters from an iterator (a statement built at run time).
pub(crate) struct ParamsFromIter(Vec<Value>);

impl Params for ParamsFromIter {
    fn into_values(self) -> Vec<Value> {
        self.0
    }
}

pub(crate) fn params_from_iter<I>(iter: I) -> ParamsFromIter
where
    I: IntoIterator,
    I::Item: ToValue,
{
    ParamsFromIter(iter.into_iter().map(|v| v.to_value()).collect())
}

/// Positional parameters: `params![a, b]`.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::db::ToValue]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::db::ToValue),+] as &[&dyn $crate::db::ToValue]
    };
}
pub(crate) use params;

/// A connection (or a transaction on one): what the store's concerns run
/// their statements on.
pub(crate) trait Db {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; returns the rows it changed.
    fn run(&self, sql: &str, params: Vec<Value>) -> Result<usize>;
    /// Runs a query; returns every row.
    fn fetch(&self, sql: &str, params: Vec<Value>) -> Result<Rows>;
    /// Runs statements separated by `;`, without parameters.
    fn batch(&self, sql: &str) -> Result<()>;
}

/// What the store's concerns take: `&Connection`.
pub(crate) type Connection<'a> = dyn Db + 'a;

impl dyn Db + '_ {
    pub(crate) fn is_postgres(&self) -> bool {
        self.dialect() == Dialect::Postgres
    }

    /// The scalar maximum of its arguments: SQLite's `MAX(a, b)`, Postgres' `GREATEST`.
    pub(crate) fn greatest(&self) -> &'static str {
        if self.is_postgres() {
            "GREATEST"
        } else {
            "MAX"
        }
    }

    /// The scalar minimum of its arguments: SQLite's `MIN(a, b)`, Postgres' `LEAST`.
    pub(crate) fn least(&self) -> &'static str {
        if self.is_postgres() {
            "LEAST"
        } else {
            "MIN"
        }
    }

    /// A LIKE that ignores ASCII case, as SQLite's LIKE does.
    pub(crate) fn ilike(&self) -> &'static str {
        if self.is_postgres() {
            "ILIKE"
        } else {
            "LIKE"
        }
    }

    pub(crate) fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.run(sql, params.into_values())
    }

    /// Runs an INSERT into a table whose key is `id` and returns the new
    /// row's id (`RETURNING`, which both dialects speak).
    pub(crate) fn insert_id<P: Params>(&self, sql: &str, params: P) -> Result<i64> {
        self.query_row(&format!("{sql} RETURNING id"), params, |r| r.get(0))
    }

    pub(crate) fn execute_batch(&self, sql: &str) -> Result<()> {
        self.batch(sql)
    }

    /// The first row, mapped; [`Error::QueryReturnedNoRows`] when none.
    pub(crate) fn query_row<P: Params, T>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let rows = self.fetch(sql, params.into_values())?;
        if rows.rows.is_empty() {
            return Err(Error::QueryReturnedNoRows);
        }
        f(&rows.row(0))
    }

    pub(crate) fn prepare<'s>(&'s self, sql: &str) -> Result<Statement<'s>> {
        Ok(Statement { conn: self, sql: sql.to_string() })
    }
}

/// A statement to run (SQL is prepared when it runs).
pub(crate) struct Statement<'s> {
    conn: &'s dyn Db,
    sql: String,
}

impl Statement<'_> {
    /// Every row, mapped.
    pub(crate) fn query_map<P: Params, T>(
        &mut self,
        params: P,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let rows = self.conn.fetch(&self.sql, params.into_values())?;
        let out: Vec<Result<T>> = (0..rows.rows.len()).map(|i| f(&rows.row(i))).collect();
        Ok(out.into_iter())
    }

    /// Runs the statement; returns the rows it changed.
    pub(crate) fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        self.conn.run(&self.sql, params.into_values())
    }

    /// The first row, mapped.
    pub(crate) fn query_row<P: Params, T>(
        &mut self,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.conn.query_row(&self.sql, params, f)
    }
}

/// rusqlite's `optional()`: no row is `None`.
pub(crate) trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_both_ways_and_say_what_was_wrong() {
        assert_eq!(Some(3i64).to_value(), Value::Integer(3));
        assert_eq!(None::<String>.to_value(), Value::Null);
        assert_eq!(true.to_value(), Value::Integer(1));
        assert_eq!(u32::from_value(&Value::Integer(7)), Ok(7));
        assert!(u32::from_value(&Value::Integer(-1)).unwrap_err().contains("out of range"));
        assert!(String::from_value(&Value::Integer(1))
            .unwrap_err()
            .contains("an integer where text"));
        assert_eq!(Option::<i64>::from_value(&Value::Null), Ok(None));
        assert_eq!(f64::from_value(&Value::Integer(2)), Ok(2.0));
    }
}
