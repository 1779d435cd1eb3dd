//! The two databases an audit log lives in, behind one small interface: SQL with numbered parameters (`?1`),
//! rows of integers, text and nulls. SQLite holds one admin's log; PostgreSQL a team's (`audit_url`). The SQL
//! the log runs is written once, in the dialect both understand; only opening, locking and the schema differ.

use parking_lot::Mutex;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use std::collections::HashMap;

/// One value in a row or a parameter: a parameter's text is borrowed where it lies (an event's parameters can
/// be tens of megabytes, and the database copies them once anyway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val<'a> {
    Null,
    Int(i64),
    Text(std::borrow::Cow<'a, str>),
}

impl Val<'_> {
    pub fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn text(&self) -> Option<&str> {
        match self {
            Val::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl<'a> From<&'a str> for Val<'a> {
    fn from(v: &'a str) -> Self {
        Val::Text(v.into())
    }
}
impl<'a> From<&'a String> for Val<'a> {
    fn from(v: &'a String) -> Self {
        Val::Text(v.as_str().into())
    }
}
impl From<String> for Val<'_> {
    fn from(v: String) -> Self {
        Val::Text(v.into())
    }
}
impl<'a, T: Into<Val<'a>>> From<Option<T>> for Val<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// A row read back: columns by position, with typed getters that name what was wrong.
pub struct Row(Vec<Val<'static>>);

impl Row {
    pub fn int(&self, i: usize) -> Result<i64, DbError> {
        self.0.get(i).and_then(Val::int).ok_or_else(|| DbError::Type(format!("column {i} is not an integer")))
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.0.get(i) {
            Some(Val::Null) => Ok(None),
            _ => self.int(i).map(Some),
        }
    }
    pub fn text(&self, i: usize) -> Result<String, DbError> {
        self.0
            .get(i)
            .and_then(Val::text)
            .map(str::to_string)
            .ok_or_else(|| DbError::Type(format!("column {i} is not text")))
    }
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.0.get(i) {
            Some(Val::Null) => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
    /// Column `i`'s text, taken out of the row (no copy: reading a million rows makes no second string each).
    pub fn take_text(&mut self, i: usize) -> Result<String, DbError> {
        match self.0.get_mut(i) {
            Some(Val::Text(t)) => Ok(std::mem::take(t).into_owned()),
            _ => Err(DbError::Type(format!("column {i} is not text"))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
    #[error("unexpected value in the audit log: {0}")]
    Type(String),
}

/// PostgreSQL's own words for an error from the server (the generic Display says only "db error").
fn pg_message(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("PostgreSQL: {} ({})", db.message(), db.code().code());
    }
    // The causes say what failed ("invalid peer certificate: NotValidForName", "connection refused").
    let mut text = format!("PostgreSQL: {e}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

impl DbError {
    /// The role may not do this (PostgreSQL's insufficient_privilege), however the server words it.
    pub fn is_denied(&self) -> bool {
        matches!(self, DbError::Postgres(e) if e.code() == Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE))
    }

    /// A row that would repeat a unique key (an event already copied in).
    pub fn is_duplicate(&self) -> bool {
        matches!(self, DbError::Postgres(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION))
    }

    /// The connection itself failed (the server went away): worth opening a new one later.
    pub fn connection_lost(&self) -> bool {
        matches!(self, DbError::Postgres(e) if e.is_closed() || e.as_db_error().is_none())
    }
}

/// Which database holds the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Mutex<Pg>>),
}

pub struct Pg {
    /// Dropped off the runtime (`Drop`): closing the synchronous client blocks, which panics inside one.
    client: std::mem::ManuallyDrop<postgres::Client>,
    /// Statements prepared on this connection, by their SQL as the log writes it (`?1`).
    prepared: HashMap<String, postgres::Statement>,
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.prepared.clear();
        // SAFETY: the client is taken once, here, and `self` is never used again.
        let client = unsafe { std::mem::ManuallyDrop::take(&mut self.client) };
        off_runtime(move || drop(client));
    }
}

impl Pg {
    pub fn new(client: postgres::Client) -> Self {
        Pg { client: std::mem::ManuallyDrop::new(client), prepared: HashMap::new() }
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&numbered_for_postgres(sql))?;
        self.prepared.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

/// `?1` → `$1`: SQLite's numbered parameters in PostgreSQL's spelling (the log's SQL has no `?` in literals).
fn numbered_for_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// The keys of PostgreSQL advisory locks steward takes: (steward's namespace, what).
pub const LOCK_SPACE: i32 = 0x5354_5744; // "STWD"
/// Held while appending, so writers on many machines extend one chain in turn.
pub const CHAIN_LOCK: i32 = 1;
/// Held while the schema is created or migrated.
pub const SCHEMA_LOCK: i32 = 2;

impl Db {
    pub fn engine(&self) -> Engine {
        match self {
            Db::Sqlite(_) => Engine::Sqlite,
            Db::Postgres(_) => Engine::Postgres,
        }
    }

    /// Every row `sql` selects.
    pub fn rows(&self, sql: &str, params: &[Val]) -> Result<Vec<Row>, DbError> {
        match self {
            Db::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut row = Vec::with_capacity(columns);
                    for i in 0..columns {
                        row.push(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Val::Null,
                            rusqlite::types::ValueRef::Integer(n) => Val::Int(n),
                            rusqlite::types::ValueRef::Text(t) => {
                                Val::Text(String::from_utf8_lossy(t).into_owned().into())
                            }
                            other => return Err(DbError::Type(format!("column {i} holds {:?}", other.data_type()))),
                        });
                    }
                    out.push(Row(row));
                }
                Ok(out)
            }
            Db::Postgres(pg) => off_runtime(|| {
                let mut pg = pg.lock();
                let stmt = pg.statement(sql)?;
                let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = pg.client.query(&stmt, &params)?;
                rows.iter().map(pg_row).collect()
            }),
        }
    }

    /// The first row `sql` selects, if any.
    pub fn row(&self, sql: &str, params: &[Val]) -> Result<Option<Row>, DbError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    /// Runs one statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[Val]) -> Result<u64, DbError> {
        match self {
            Db::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))? as u64)
            }
            Db::Postgres(pg) => off_runtime(|| {
                let mut pg = pg.lock();
                let stmt = pg.statement(sql)?;
                let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                Ok(pg.client.execute(&stmt, &params)?)
            }),
        }
    }

    /// Runs statements without parameters (schema, transaction control).
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Db::Postgres(pg) => off_runtime(|| Ok(pg.lock().client.batch_execute(sql)?)),
        }
    }

    /// Starts the transaction that appends to the chain: it alone may read the head and add after it until it
    /// ends. SQLite: the write lock (IMMEDIATE); PostgreSQL: the chain's advisory lock, which every writer on
    /// every machine takes, released at commit or rollback.
    pub fn begin_append(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(_) => self.batch("BEGIN IMMEDIATE"),
            // One round trip for all three. Every read an append makes has an index to go by (the head, the
            // rows after a seq, the claims of a batch); on a young table, whose statistics still say it is small,
            // PostgreSQL would scan it whole instead, under the chain's lock (8-11 ms an append at 40,000 rows).
            Db::Postgres(_) => {
                let locked = self.batch(&format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({LOCK_SPACE}, {CHAIN_LOCK}); SET LOCAL enable_seqscan = off"
                ));
                if locked.is_err() {
                    let _ = self.batch("ROLLBACK");
                }
                locked
            }
        }
    }

    pub fn commit(&self) -> Result<(), DbError> {
        self.batch("COMMIT")
    }

    /// Ends a failed transaction; a connection that is gone has nothing to roll back.
    pub fn rollback(&self) {
        let _ = self.batch("ROLLBACK");
    }
}

/// A parameter as SQLite takes it, its text borrowed (SQLite makes its own copy).
impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn pg_row(r: &postgres::Row) -> Result<Row, DbError> {
    let mut row = Vec::with_capacity(r.len());
    for (i, c) in r.columns().iter().enumerate() {
        let v = match *c.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.into(),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(i64::from).into(),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(i64::from).into(),
            Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(i64::from).into(),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => r.try_get::<_, Option<String>>(i)?.into(),
            ref other => return Err(DbError::Type(format!("column {} has type {other}", c.name()))),
        };
        row.push(v);
    }
    Ok(Row(row))
}

impl ToSql for Val<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                ref other => Err(format!("an integer where PostgreSQL expects {other}").into()),
            },
            Val::Text(s) => s.as_ref().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The synchronous PostgreSQL client runs its own small runtime and must not be driven from inside another
/// (a verb reading the log from async code): there it runs on a thread of its own for the call.
pub(super) fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_take_postgres_spelling() {
        assert_eq!(numbered_for_postgres("a = ?1 AND b = ?12 OR ?"), "a = $1 AND b = $12 OR ?");
    }

    #[test]
    fn sqlite_rows_come_back_typed() {
        let db = Db::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        db.batch("CREATE TABLE t (n INTEGER, s TEXT)").unwrap();
        db.execute("INSERT INTO t VALUES (?1, ?2)", &[Val::Int(7), Val::Null]).unwrap();
        let row = db.row("SELECT n, s FROM t WHERE n = ?1", &[7.into()]).unwrap().unwrap();
        assert_eq!((row.int(0).unwrap(), row.opt_text(1).unwrap()), (7, None));
        assert!(row.text(0).is_err(), "an integer is not text");
    }
}
