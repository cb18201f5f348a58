//! Durable state in SQLite or PostgreSQL: targets, tasks and their history, the processed
//! `(source, event_id)` pairs, and the outbox of messages to publish.
//!
//! - **Group commit** ([`Store::record_matches`]): a batch of matched sightings is written in
//!   one transaction with a handful of multi-row statements; the MQTT messages are acked only
//!   after it commits (docs/architecture.md).
//! - **Rules that must hold across replicas live in the database**: a primary key
//!   on `processed_events (source, event_id)`, and the partial unique index "one open task per
//!   target" on `tasks (target_id) WHERE status IN ('dispatched', 'acknowledged', 'en_route')`.
//!   Status changes are conditional updates (`... WHERE status = <old>`); escalation timers are
//!   claimed with `... WHERE ack_escalated_at IS NULL` (likewise `resolve_escalated_at`), so
//!   each fires once however many replicas poll; a consolidation proposal is keyed by its link.
//! - **Workflow** (`workflow`): escalations ([`Store::escalate_due`], [`Store::next_deadline`]),
//!   rejected tasks re-routed ([`Store::reroute`]) or escalated ([`Store::escalate_task`]),
//!   consolidation proposals, locate requests ([`Store::create_search_task`]). The `not_found`
//!   cooldown and the border dwell ([`Policy`]) are part of [`Store::record_matches`].
//! - **Outbox**: every message is written in the transaction of the change it announces and
//!   returned to the caller with its id, for immediate publication; [`Store::pending_outbox`]
//!   finds what a crash left unsent.
//! - **Two dialects, one code path**: see `db` for the small layer that lets
//!   each operation be written once; times are stored as epoch milliseconds (UTC) and nested
//!   values as JSON text, identically in both. Migrations live in `migrations/sqlite` and
//!   `migrations/postgres` and are applied by [`Store::connect`].
//! - **Audit** (`audit`): an append-only log the database keeps append-only (triggers);
//!   a status report's row is written in the report's transaction. **Tokens** (`tokens`) of
//!   the HTTP API, stored hashed.
//! - **Privacy**: only matched sightings ever reach the store.

mod audit;
mod codec;
mod db;
mod dispatch;
mod event_log;
mod outbox;
mod retention;
mod targets;
mod tasks;
mod tokens;
mod workflow;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use audit::{AuditEntry, AuditFilter, AuditRecord, AuditResult};
pub use db::Dialect;
pub use event_log::LoggedEvent;
pub use retention::{Purged, Retention};
pub use targets::target_version;
pub use tokens::StoredToken;

/// What [`Store::record_matches`] did with one matched sighting, and the kinds of history rows.
pub use crate::dispatch::plan::{MatchOutcome, TaskEventKind};

use crate::contract::model::{Sighting, TargetError};
use crate::contract::task::{OutboxMessage, Task, TaskStatus};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Why a store operation failed.
///
/// Each message holds its cause, said once (these errors are logged as one line), so no
/// variant repeats it as its `source()`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database url (scheme {scheme:?}): expected sqlite://PATH, postgres://... or postgresql://..."
    )]
    UnsupportedUrl { scheme: String },
    #[error("database: {}", describe(.0))]
    Database(sqlx::Error),
    /// The pool found no connection in time, and a fresh connection failed: this says why.
    #[error("database unreachable: {}", describe(.0))]
    Unreachable(sqlx::Error),
    #[error("database migration: {}", describe_migration(.0))]
    Migrate(sqlx::migrate::MigrateError),
    #[error("invalid target: {0}")]
    InvalidTarget(TargetError),
    #[error("stored {what} cannot be read: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("encoding JSON: {0}")]
    Encode(serde_json::Error),
    /// Another replica changed the same rows in between; the whole operation may be retried.
    #[error("concurrent change: {0}")]
    Conflict(String),
    /// The operation did not finish within [`DbLimits::operation_timeout`] and was abandoned
    /// (with its transaction, which the server then rolls back).
    #[error("no answer from the database within {0:?}")]
    TimedOut(Duration),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(error)
    }
}

impl From<TargetError> for StoreError {
    fn from(error: TargetError) -> Self {
        StoreError::InvalidTarget(error)
    }
}

/// A database error for an operator: the server's message, SQLSTATE and detail, without
/// sqlx's wording around it or the PostgreSQL source line it came from.
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(e) => {
            let mut text = e.message().to_string();
            if let Some(code) = e.code() {
                text.push_str(&format!(" (SQLSTATE {code})"));
            }
            if let Some(detail) = e
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.detail())
            {
                text.push_str(&format!(": {detail}"));
            }
            text
        }
        sqlx::Error::Io(e) => e.to_string(),
        sqlx::Error::PoolTimedOut => format!(
            "no connection within {}s (pool timed out)",
            ACQUIRE_TIMEOUT.as_secs()
        ),
        other => other.to_string(),
    }
}

/// A failed migration, with its database error as [`describe`] says it.
fn describe_migration(error: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError as M;
    match error {
        M::Execute(e) => describe(e),
        M::ExecuteMigration(e, version) => format!("migration {version}: {}", describe(e)),
        other => other.to_string(),
    }
}

impl StoreError {
    /// Whether retrying the same operation may succeed: a concurrent change, a PostgreSQL
    /// serialization failure, deadlock, lock or statement timeout, SQLite busy, a lost
    /// connection, or no answer in time.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Conflict(_) | StoreError::TimedOut(_) => true,
            StoreError::Database(sqlx::Error::Database(e)) => matches!(
                e.code().as_deref(),
                Some("40001" | "40P01" | "55P03" | "57014" | "5" | "517" | "261" | "6")
            ),
            StoreError::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed,
            )
            | StoreError::Unreachable(_) => true,
            _ => false,
        }
    }
}

/// What [`Store::apply_status`] did with a status report.
#[allow(clippy::large_enum_variant)] // one per report, short-lived
#[derive(Debug, Clone, PartialEq)]
pub enum StatusOutcome {
    /// The task moved from `previous` to `task.status`; `messages` announce it.
    Applied {
        task: Task,
        previous: TaskStatus,
        messages: Vec<OutboxMessage>,
    },
    /// Nothing changed; `reason` is for the dead letter.
    Refused { reason: String },
}

/// One entry of a task's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub at: DateTime<Utc>,
    pub kind: TaskEventKind,
    /// The task's status after the event.
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The matched sighting, for `created`, `sighting` and `reassigned` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sighting: Option<Sighting>,
    /// The task's assisting court when the event happened (the reporting court of a status
    /// report, the new court of a reassignment or reroute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub court_id: Option<String>,
}

/// Which deadline an escalation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationKind {
    /// Not acknowledged by `ack_by`.
    Ack,
    /// Not resolved by `resolve_by`.
    Resolve,
}

/// One escalation [`Store::escalate_due`] claimed (and wrote the messages of).
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub task: Task,
    pub kind: EscalationKind,
    /// The assisting court's supervisor, who got the Task on its escalations topic.
    pub supervisor_court_id: Option<String>,
}

/// What [`Store::create_search_task`] did.
#[allow(clippy::large_enum_variant)] // one per request
#[derive(Debug, Clone, PartialEq)]
pub enum SearchOutcome {
    /// A new `person_search` task, and its messages.
    Created(Task, Vec<OutboxMessage>),
    /// The target already has an open task (of any kind): this one.
    AlreadyOpen(Task),
    /// The target is unknown, not active, or expired.
    TargetInactive,
}

/// Rows sqlx's SQLite worker may hold for the caller before it waits (see [`Store::connect`]):
/// a group commit's largest result set.
const ROW_BUFFER: usize = 4096;

/// The database: cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct Store {
    pool: db::Pool,
    /// SQLite: the one connection every write uses (see [`Store::connect`]).
    writer: Option<db::Pool>,
    limits: DbLimits,
}

/// How long the database may keep the service waiting. A server or network that stops
/// answering (a half-open connection: no reply, no reset) must become an error the caller
/// retries on a fresh connection, never a wait without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbLimits {
    /// PostgreSQL `statement_timeout`: the longest one statement runs (0 = none).
    pub statement_timeout: Duration,
    /// PostgreSQL `lock_timeout`: the longest a statement waits for a lock, e.g. one still held
    /// by the transaction of a replica that died (0 = none).
    pub lock_timeout: Duration,
    /// PostgreSQL `idle_in_transaction_session_timeout`: the server ends a session whose open
    /// transaction has waited this long for its client, releasing its locks (0 = none).
    pub idle_in_transaction_timeout: Duration,
    /// The longest the service awaits one store operation it retries (a group commit, a
    /// status report) before abandoning it and its connection; SQLite included.
    pub operation_timeout: Duration,
}

impl Default for DbLimits {
    /// A statement of a group commit takes milliseconds: 10 s is far past any healthy one.
    /// Locks are held only for a commit's duration, so 5 s of waiting means their holder is
    /// stuck. 30 s idle in a transaction frees the locks of a client that vanished, well
    /// before a restarted replica gives up on them. 30 s client side covers a commit of a
    /// few statements each within its 10 s.
    fn default() -> Self {
        DbLimits {
            statement_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
            idle_in_transaction_timeout: Duration::from_secs(30),
            operation_timeout: Duration::from_secs(30),
        }
    }
}

/// Server-side TCP keepalive for PostgreSQL sessions (idle s, interval s, probes): sqlx sets
/// none on its sockets, so the server at least finds a client that vanished in about a minute.
const PG_KEEPALIVES: [(&str, u32); 3] = [
    ("tcp_keepalives_idle", 30),
    ("tcp_keepalives_interval", 10),
    ("tcp_keepalives_count", 3),
];

/// Longest a connection handed back to the pool may take to answer a ping. One abandoned
/// mid-operation (its future dropped at [`DbLimits::operation_timeout`]) may sit on a socket
/// that never answers: sqlx's own ping on release would then wait forever and hold the pool
/// slot; past this bound the connection is closed instead.
const RELEASE_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for a pooled connection (sqlx's default is 30 s). Past it the caller gets an
/// error it can act on: the pipeline retries, the HTTP API answers 503, instead of hanging
/// on a database that does not answer.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest the connection that explains a pool timeout may take: a server that does not
/// answer is then reported as such, and the caller's retry is not held up for long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Store {
    /// Connects and applies the migrations. `sqlite://PATH` (the file is created if missing;
    /// WAL, `synchronous=FULL`, 5 s busy timeout, foreign keys on) or `postgres://...` /
    /// `postgresql://...`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, DbLimits::default()).await
    }

    /// As [`Store::connect`], with these bounds on database waits.
    pub async fn connect_with(url: &str, limits: DbLimits) -> Result<Store, StoreError> {
        let mut writer = None;
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                // Checkpoint every 64 MiB of WAL rather than 4 MiB: group commits write a few
                // MiB each, and a checkpoint (with its fsync) after nearly every one halved
                // the durable task rate.
                .pragma("wal_autocheckpoint", "16384")
                // A checkpoint rewinds the WAL but leaves the file at its largest size; past
                // this it is cut back (after a long read kept the WAL from being rewound, for
                // instance). Housekeeping also truncates it to zero once an hour.
                .pragma("journal_size_limit", "67108864")
                // Reads through a memory map: no pread per page the cache does not hold.
                .pragma("mmap_size", "1073741824")
                // Statement journals in memory: every multi-row insert of a group commit keeps
                // one (so a failing row can roll back the rows before it), and past 64 KiB
                // SQLite spills it to a temporary file, a write syscall per page.
                .pragma("temp_store", "memory")
                // sqlx's SQLite thread hands rows to the caller through a channel of this
                // size and sleeps whenever it is full: with the default 50, reading a group
                // commit's ~1,500 returned rows took ~30 sleep/wake round trips between threads.
                .row_buffer_size(ROW_BUFFER)
                .statement_cache_capacity(db::STATEMENT_CACHE);
            // Every write goes through one connection, so its page cache stays valid (SQLite
            // drops a connection's cache whenever another connection has written) and may be
            // large: past a few thousand tasks the default 2 MiB re-read index pages on every
            // group commit. Writers serialize on SQLite anyway.
            // No ping before each use (sqlx's default): a SQLite connection is a thread of
            // this process, not a socket that can go stale, and the ping is one more round
            // trip to that thread at the start of every group commit.
            let write_pool = SqlitePoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                // A write that fails with the disk full (SQLITE_FULL) makes SQLite roll the
                // transaction back itself; the ROLLBACK sqlx then sends fails ("no transaction
                // is active") and sqlx keeps counting the transaction as open, so every later
                // `BEGIN IMMEDIATE` on this connection failed, even after space was freed.
                // Such a connection is closed here and the next write opens a fresh one.
                .after_release(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Connection as _;
                        if conn.is_in_transaction() {
                            // The dropped transaction's ROLLBACK is queued on the connection's
                            // thread: let it run before looking again.
                            conn.ping().await?;
                        }
                        Ok(!conn.is_in_transaction())
                    })
                })
                .connect_with(options.clone().pragma("cache_size", "-65536"))
                .await?;
            SQLITE_MIGRATOR.run(&write_pool).await?;
            writer = Some(db::Pool::Sqlite(write_pool));
            // A few connections for reads beside the writer.
            let pool = SqlitePoolOptions::new()
                .max_connections(3)
                .test_before_acquire(false)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await?;
            db::Pool::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let base = PgConnectOptions::from_str(url)?;
            // Migrations run unbounded, on a connection of their own: a large index build
            // outlasts any statement timeout, and a replica starting beside another one
            // waits for its migration lock as long as that takes.
            {
                use sqlx::Connection as _;
                let mut conn = sqlx::PgConnection::connect_with(&base).await?;
                POSTGRES_MIGRATOR.run(&mut conn).await?;
                conn.close().await?;
            }
            let millis = |d: Duration| d.as_millis().to_string();
            let options = base
                .statement_cache_capacity(db::STATEMENT_CACHE)
                // Sent with the startup packet: no extra round trip per connection.
                .options([
                    ("statement_timeout", millis(limits.statement_timeout)),
                    ("lock_timeout", millis(limits.lock_timeout)),
                    (
                        "idle_in_transaction_session_timeout",
                        millis(limits.idle_in_transaction_timeout),
                    ),
                ])
                .options(PG_KEEPALIVES);
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .after_release(|conn, _| {
                    Box::pin(async move {
                        use sqlx::Connection as _;
                        match tokio::time::timeout(RELEASE_PING_TIMEOUT, conn.ping()).await {
                            Ok(answered) => answered.map(|()| true),
                            // An error makes sqlx drop the socket without a goodbye.
                            Err(_) => Err(sqlx::Error::Io(std::io::ErrorKind::TimedOut.into())),
                        }
                    })
                })
                .connect_with(options)
                .await?;
            db::Pool::Postgres(pool)
        } else {
            // Only the scheme: the rest of a URL may hold a password.
            let scheme = url.split_once(':').map_or("", |(s, _)| s).to_string();
            return Err(StoreError::UnsupportedUrl { scheme });
        };
        Ok(Store {
            pool,
            writer,
            limits,
        })
    }

    /// Awaits one store operation for at most [`DbLimits::operation_timeout`]. Past it the
    /// operation is dropped, and with it its transaction: the pool checks the connection
    /// before reuse and closes it if it does not answer (see `RELEASE_PING_TIMEOUT`).
    pub async fn bounded<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.limits.operation_timeout;
        match tokio::time::timeout(limit, operation).await {
            Err(_) => Err(StoreError::TimedOut(limit)),
            Ok(Err(StoreError::Database(sqlx::Error::PoolTimedOut))) => {
                Err(self.why_no_connection().await)
            }
            Ok(done) => done,
        }
    }

    /// Why the pool had no connection to give: sqlx retries a refused connection until its
    /// acquire timeout and then reports only the timeout. One fresh connection says what is
    /// wrong (refused, unknown host, password), or, if it succeeds, that the pool was busy.
    async fn why_no_connection(&self) -> StoreError {
        use sqlx::Connection as _;
        let db::Pool::Postgres(pool) = &self.pool else {
            return StoreError::Database(sqlx::Error::PoolTimedOut);
        };
        let options = pool.connect_options();
        match tokio::time::timeout(PROBE_TIMEOUT, sqlx::PgConnection::connect_with(&options)).await
        {
            Ok(Err(error)) => StoreError::Unreachable(error),
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                StoreError::Database(sqlx::Error::PoolTimedOut)
            }
            Err(_) => StoreError::Unreachable(sqlx::Error::Io(std::io::ErrorKind::TimedOut.into())),
        }
    }

    /// A write transaction. On SQLite, on the one writer connection: the writers of this
    /// process queue for it in order instead of meeting at the database lock, where SQLite's
    /// busy handler retries by sleeping 1, 2, 5, ... up to 100 ms at a time (which put 100 ms
    /// stalls into the group commit whenever the outbox publisher's `remove_sent` held the
    /// lock). Other processes on the same file still meet at the lock and its busy timeout.
    pub(crate) async fn begin_write(&self) -> Result<db::Tx, sqlx::Error> {
        self.writer_pool().begin_write().await
    }

    /// The pool for statements that write outside [`Store::begin_write`].
    pub(crate) fn writer_pool(&self) -> db::Pool {
        self.writer.as_ref().unwrap_or(&self.pool).clone()
    }

    pub fn dialect(&self) -> Dialect {
        self.pool.dialect()
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut pool = self.pool.clone();
        pool.execute(pool.query("SELECT 1")).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
    }
}

/// Creates a fresh schema `lr_<uuid>` in the PostgreSQL database at `base_url` and returns a
/// URL whose connections use it (`options=-c search_path=...`), so tests can run in parallel
/// against one database without seeing each other's rows.
#[doc(hidden)]
pub async fn isolated_postgres_url(base_url: &str) -> Result<String, StoreError> {
    use sqlx::Connection as _;
    let schema = format!("lr_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(base_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let sep = if base_url.contains('?') { '&' } else { '?' };
    Ok(format!(
        "{base_url}{sep}options=-c%20search_path%3D{schema}"
    ))
}
