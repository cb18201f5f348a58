//! The two SQL dialects behind one small interface, so each store operation is written once.
//!
//! The `any` driver is not used: [`Query`], [`Row`], [`Tx`] and [`Pool`] are enums over the
//! concrete SQLite and PostgreSQL types, and [`Query::bind`] / [`Row::get`] accept any Rust type
//! both drivers encode and decode. Placeholders are `$1`, `$2`, ... in both dialects (sqlx's
//! SQLite driver binds `$N` by number). Where the dialects differ, callers pick the SQL with
//! [`Dialect::pick`].
//!
//! Multi-row statements (`VALUES (..), (..)` and `IN (..)` lists) are generated for a few fixed
//! chunk sizes ([`chunks`]), so a batch of any length costs a handful of round trips and the
//! per-connection statement caches see a bounded set of statements.

use std::ops::Range;

use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::Query as SqlxQuery;
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Decode, Encode, Postgres, Row as _, Sqlite, Type};

/// Which database a [`crate::store::Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// The SQL for this dialect, where the two disagree.
    pub(crate) fn pick(self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A statement with its arguments, for one dialect.
pub(crate) enum Query {
    Sqlite(SqlxQuery<'static, Sqlite, SqliteArguments>),
    Postgres(SqlxQuery<'static, Postgres, PgArguments>),
}

impl Query {
    fn new(dialect: Dialect, sql: impl sqlx::SqlSafeStr) -> Query {
        match dialect {
            Dialect::Sqlite => Query::Sqlite(sqlx::query(sql)),
            Dialect::Postgres => Query::Postgres(sqlx::query(sql)),
        }
    }

    /// Binds the next `$N`.
    pub(crate) fn bind<'t, T>(self, value: T) -> Query
    where
        T: Encode<'t, Sqlite> + Type<Sqlite> + Encode<'t, Postgres> + Type<Postgres>,
    {
        match self {
            Query::Sqlite(q) => Query::Sqlite(q.bind(value)),
            Query::Postgres(q) => Query::Postgres(q.bind(value)),
        }
    }
}

/// A result row of either dialect.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    /// The value of column `col`, decoded as `T`.
    pub(crate) fn get<'r, T>(&'r self, col: &str) -> Result<T, sqlx::Error>
    where
        T: Decode<'r, Sqlite> + Type<Sqlite> + Decode<'r, Postgres> + Type<Postgres>,
    {
        match self {
            Row::Sqlite(r) => r.try_get(col),
            Row::Postgres(r) => r.try_get(col),
        }
    }
}

/// A connection pool of either dialect.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction of either dialect; dropped without [`Tx::commit`] it rolls back.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

fn mismatch() -> sqlx::Error {
    sqlx::Error::Protocol("leadrelay store: statement built for the other dialect".into())
}

/// `execute`, `fetch_all` and `fetch_optional` for [`Pool`] and [`Tx`], which differ only in
/// how the executor is borrowed.
macro_rules! executor_methods {
    ($ty:ident, |$x:ident| $exec:expr) => {
        impl $ty {
            pub(crate) fn dialect(&self) -> Dialect {
                match self {
                    $ty::Sqlite(_) => Dialect::Sqlite,
                    $ty::Postgres(_) => Dialect::Postgres,
                }
            }

            /// A statement whose text is a constant.
            pub(crate) fn query(&self, sql: &'static str) -> Query {
                Query::new(self.dialect(), sql)
            }

            /// Runs a statement; returns the number of rows it affected.
            pub(crate) async fn execute(&mut self, q: Query) -> Result<u64, sqlx::Error> {
                match (self, q) {
                    ($ty::Sqlite($x), Query::Sqlite(q)) => {
                        Ok(q.execute($exec).await?.rows_affected())
                    }
                    ($ty::Postgres($x), Query::Postgres(q)) => {
                        Ok(q.execute($exec).await?.rows_affected())
                    }
                    _ => Err(mismatch()),
                }
            }

            pub(crate) async fn fetch_all(&mut self, q: Query) -> Result<Vec<Row>, sqlx::Error> {
                match (self, q) {
                    ($ty::Sqlite($x), Query::Sqlite(q)) => Ok(q
                        .fetch_all($exec)
                        .await?
                        .into_iter()
                        .map(Row::Sqlite)
                        .collect()),
                    ($ty::Postgres($x), Query::Postgres(q)) => Ok(q
                        .fetch_all($exec)
                        .await?
                        .into_iter()
                        .map(Row::Postgres)
                        .collect()),
                    _ => Err(mismatch()),
                }
            }

            pub(crate) async fn fetch_optional(
                &mut self,
                q: Query,
            ) -> Result<Option<Row>, sqlx::Error> {
                match (self, q) {
                    ($ty::Sqlite($x), Query::Sqlite(q)) => {
                        Ok(q.fetch_optional($exec).await?.map(Row::Sqlite))
                    }
                    ($ty::Postgres($x), Query::Postgres(q)) => {
                        Ok(q.fetch_optional($exec).await?.map(Row::Postgres))
                    }
                    _ => Err(mismatch()),
                }
            }
        }
    };
}

executor_methods!(Pool, |x| &*x);
executor_methods!(Tx, |x| &mut **x);

impl Pool {
    /// A transaction for reading and writing. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before it writes waits for a concurrent
    /// writer (busy timeout) instead of failing on a stale snapshot.
    pub(crate) async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    pub(crate) async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

impl Tx {
    /// A statement whose text was generated: placeholder lists only, never values.
    pub(crate) fn query_generated(&self, sql: String) -> Query {
        Query::new(self.dialect(), AssertSqlSafe(sql))
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Row counts per multi-row statement. Any batch length splits into these, so a table sees at
/// most `CHUNK_SIZES.len()` distinct generated statements (the statement caches hold 100).
const CHUNK_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// Splits `0..len` into consecutive ranges whose lengths are [`CHUNK_SIZES`] entries.
pub(crate) fn chunks(len: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for size in CHUNK_SIZES {
        while len - start >= size {
            out.push(start..start + size);
            start += size;
        }
    }
    out
}

/// `head VALUES ($1, .., $cols), (..), .. tail` for `rows` rows.
pub(crate) fn values_sql(head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * cols * 6 + 8);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..cols {
            if col > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// `head ($first, .., $(first + n - 1)) tail`: an `IN` list of `n` placeholders.
pub(crate) fn in_list_sql(head: &str, first: usize, n: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + n * 7 + 4);
    sql.push_str(head);
    sql.push_str(" (");
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('$');
        sql.push_str(&(first + i).to_string());
    }
    sql.push_str(") ");
    sql.push_str(tail);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_length_with_few_sizes() {
        for len in 0..1000 {
            let cs = chunks(len);
            assert_eq!(cs.iter().map(|r| r.len()).sum::<usize>(), len);
            assert!(cs.windows(2).all(|w| w[0].end == w[1].start));
            assert!(cs.iter().all(|r| CHUNK_SIZES.contains(&r.len())));
        }
        assert_eq!(chunks(500).len(), 1 + 3 + 3 + 1);
    }

    #[test]
    fn generated_sql_numbers_placeholders() {
        assert_eq!(
            values_sql("INSERT INTO t (a, b)", 2, 2, "RETURNING a"),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) RETURNING a"
        );
        assert_eq!(
            in_list_sql("SELECT 1 FROM t WHERE a IN", 2, 3, ""),
            "SELECT 1 FROM t WHERE a IN ($2, $3, $4) "
        );
    }
}
