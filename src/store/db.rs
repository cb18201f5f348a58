//! The two SQL dialects behind one small interface, so each store operation is written once.
//!
//! The `any` driver is not used: [`Query`], [`Row`], [`Tx`] and [`Pool`] are enums over the
//! concrete SQLite and PostgreSQL types, and [`Query::bind`] / [`Row::get`] accept any Rust type
//! both drivers encode and decode. Placeholders are `$1`, `$2`, ... in both dialects (sqlx's
//! SQLite driver binds `$N` by number). Where the dialects differ, callers pick the SQL with
//! [`Dialect::pick`].
//!
//! Multi-row statements (`VALUES (..), (..)` and `IN (..)` lists) are generated ([`Sql`]) for a
//! few fixed chunk sizes ([`chunks`]), so a batch of any length costs a handful of round trips
//! and the per-connection statement caches see a bounded set of statements.

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

            /// A statement whose text was generated: placeholder lists only, never values.
            pub(crate) fn query_generated(&self, sql: String) -> Query {
                Query::new(self.dialect(), AssertSqlSafe(sql))
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
    /// SQLite only: runs a list of statements in one hand-off to the connection's thread;
    /// returns the rows they affected in all and the rowid the last insert gave.
    pub(crate) async fn execute_sqlite_list(
        &mut self,
        q: Query,
    ) -> Result<(u64, i64), sqlx::Error> {
        match (self, q) {
            (Tx::Sqlite(tx), Query::Sqlite(q)) => {
                let done = q.execute(&mut **tx).await?;
                Ok((done.rows_affected(), done.last_insert_rowid()))
            }
            _ => Err(mismatch()),
        }
    }

    /// Runs a multi-row `INSERT` of `rows` rows into a table keyed by an identity column `id`
    /// and returns the new ids in `VALUES` order. On PostgreSQL the statement must end in
    /// `RETURNING id` (SQLite gives the last id of the insert itself).
    ///
    /// SQLite: the transaction holds the write lock and `AUTOINCREMENT` gives the rows of one
    /// statement consecutive ids in `VALUES` order, so they end at `last_insert_rowid` (no rows
    /// travel back). PostgreSQL: `RETURNING id`, whose row order is not promised, sorted;
    /// identity values are drawn in `VALUES` order.
    pub(crate) async fn insert_ids(
        &mut self,
        q: Query,
        rows: usize,
    ) -> Result<Vec<i64>, sqlx::Error> {
        let ids: Vec<i64> = match (self, q) {
            (Tx::Sqlite(tx), Query::Sqlite(q)) => {
                let done = q.execute(&mut **tx).await?;
                let last = done.last_insert_rowid();
                let n = i64::try_from(done.rows_affected()).unwrap_or(i64::MAX);
                (last - n + 1..=last).collect()
            }
            (Tx::Postgres(tx), Query::Postgres(q)) => {
                let mut ids = q
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<i64, _>("id"))
                    .collect::<Result<Vec<_>, _>>()?;
                ids.sort_unstable();
                ids
            }
            _ => return Err(mismatch()),
        };
        if ids.len() != rows {
            return Err(sqlx::Error::Protocol(format!(
                "leadrelay store: {} ids for {rows} inserted rows",
                ids.len()
            )));
        }
        Ok(ids)
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Row counts per multi-row statement: powers of two, so a batch of n rows takes at most
/// log2(n) + 1 statements, and each table sees at most `CHUNK_SIZES.len()` distinct generated
/// statements (the statement caches are sized for that: [`STATEMENT_CACHE`]). 512 rows of the
/// widest table (19 columns) stay well below both dialects' limits on bound parameters.
const CHUNK_SIZES: [usize; 10] = [512, 256, 128, 64, 32, 16, 8, 4, 2, 1];

/// Prepared statements kept per connection: the generated ones (10 sizes × 7 statements) and
/// the constant ones.
pub(crate) const STATEMENT_CACHE: usize = 256;

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

/// Text of a generated statement, with its placeholders numbered in order of appearance.
///
/// PostgreSQL gets `$1, $2, ...`; SQLite gets anonymous `?`, which it numbers the same way.
/// Not `$N` on SQLite: looking up a named parameter is a linear scan there, so binding the
/// thousands of parameters of a multi-row statement by name would cost quadratic time.
pub(crate) struct Sql {
    dialect: Dialect,
    text: String,
    params: usize,
}

impl Sql {
    pub(crate) fn new(dialect: Dialect, head: &str) -> Sql {
        let mut text = String::with_capacity(head.len() + 256);
        text.push_str(head);
        Sql {
            dialect,
            text,
            params: 0,
        }
    }

    pub(crate) fn push(&mut self, s: &str) -> &mut Sql {
        self.text.push_str(s);
        self
    }

    /// One placeholder.
    pub(crate) fn param(&mut self) -> &mut Sql {
        self.params += 1;
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.params.to_string());
            }
        }
        self
    }

    /// `(p, .., p)` with `n` placeholders.
    pub(crate) fn tuple(&mut self, n: usize) -> &mut Sql {
        self.text.push('(');
        for i in 0..n {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.param();
        }
        self.text.push(')');
        self
    }

    /// ` VALUES (..), (..)`: `rows` tuples of `cols` placeholders.
    pub(crate) fn values(&mut self, cols: usize, rows: usize) -> &mut Sql {
        self.text.push_str(" VALUES ");
        for row in 0..rows {
            if row > 0 {
                self.text.push_str(", ");
            }
            self.tuple(cols);
        }
        self
    }

    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

/// `head VALUES (..), .. tail` for `rows` rows of `cols` values.
pub(crate) fn values_sql(
    dialect: Dialect,
    head: &str,
    cols: usize,
    rows: usize,
    tail: &str,
) -> String {
    Sql::new(dialect, head)
        .values(cols, rows)
        .push(" ")
        .push(tail)
        .finish()
}

/// `head (p, .., p) tail`: an `IN` list of `n` placeholders (the statement's only ones).
pub(crate) fn in_list_sql(dialect: Dialect, head: &str, n: usize, tail: &str) -> String {
    Sql::new(dialect, head)
        .push(" ")
        .tuple(n)
        .push(" ")
        .push(tail)
        .finish()
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
        // 256 + 128 + 64 + 32 + 16 + 4
        assert_eq!(chunks(500).len(), 6);
    }

    #[test]
    fn generated_sql_numbers_placeholders() {
        assert_eq!(
            values_sql(
                Dialect::Postgres,
                "INSERT INTO t (a, b)",
                2,
                2,
                "RETURNING a"
            ),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) RETURNING a"
        );
        assert_eq!(
            values_sql(Dialect::Sqlite, "INSERT INTO t (a)", 1, 2, ""),
            "INSERT INTO t (a) VALUES (?), (?) "
        );
        assert_eq!(
            in_list_sql(Dialect::Postgres, "SELECT 1 FROM t WHERE a IN", 3, ""),
            "SELECT 1 FROM t WHERE a IN ($1, $2, $3) "
        );
        let mut sql = Sql::new(Dialect::Postgres, "UPDATE t SET x = ");
        sql.param().push(" WHERE id IN ").tuple(2);
        assert_eq!(sql.finish(), "UPDATE t SET x = $1 WHERE id IN ($2, $3)");
    }
}
