//! Durable state in SQLite or PostgreSQL: targets, tasks and their history, the processed
//! `(source, event_id)` pairs, and the outbox of messages to publish.
//!
//! - **Group commit** ([`Store::record_matches`]): a batch of matched sightings is written in
//!   one transaction with a handful of multi-row statements; the MQTT messages are acked only
//!   after it commits (DESIGN.md 2, 3).
//! - **Rules that must hold across replicas live in the database** (DESIGN.md 4): a primary key
//!   on `processed_events (source, event_id)`, and the partial unique index "one open task per
//!   target" on `tasks (target_id) WHERE status IN ('dispatched', 'acknowledged', 'en_route')`.
//!   Status changes are conditional updates (`... WHERE status = <old>`).
//! - **Outbox**: every message is written in the transaction of the change it announces and
//!   returned to the caller with its id, for immediate publication; [`Store::pending_outbox`]
//!   finds what a crash left unsent.
//! - **Two dialects, one code path** (DESIGN.md 9): see `db` for the small layer that lets
//!   each operation be written once; times are stored as epoch milliseconds (UTC) and nested
//!   values as JSON text, identically in both. Migrations live in `migrations/sqlite` and
//!   `migrations/postgres` and are applied by [`Store::connect`].
//! - **Privacy** (DESIGN.md 12): only matched sightings ever reach the store.

mod codec;
mod db;
mod dispatch;
mod outbox;
mod targets;
mod tasks;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use db::Dialect;

use crate::model::{Sighting, TargetError};
use crate::plate::Plate;
use crate::route::RouteDecision;
use crate::task::{OutboxMessage, Task, TaskStatus};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database url (scheme {scheme:?}): expected sqlite://PATH, postgres://... or postgresql://..."
    )]
    UnsupportedUrl { scheme: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid target: {0}")]
    InvalidTarget(#[from] TargetError),
    #[error("stored {what} cannot be read: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("encoding JSON: {0}")]
    Encode(serde_json::Error),
    /// Another replica changed the same rows in between; the whole operation may be retried.
    #[error("concurrent change: {0}")]
    Conflict(String),
}

impl StoreError {
    /// Whether retrying the same operation may succeed: a concurrent change, a PostgreSQL
    /// serialization failure or deadlock, SQLite busy, or a lost connection.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Conflict(_) => true,
            StoreError::Database(sqlx::Error::Database(e)) => matches!(
                e.code().as_deref(),
                Some("40001" | "40P01" | "5" | "517" | "261" | "6")
            ),
            StoreError::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed,
            ) => true,
            _ => false,
        }
    }
}

/// How long a command center has to acknowledge, and to resolve, a new task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub ack: chrono::Duration,
    pub resolve: chrono::Duration,
}

impl Default for Deadlines {
    /// The contract's defaults: 5 minutes to acknowledge, 30 to resolve.
    fn default() -> Self {
        Deadlines {
            ack: chrono::Duration::minutes(5),
            resolve: chrono::Duration::minutes(30),
        }
    }
}

/// A sighting that matched a flagged target, routed, ready to become a task or an update.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedSighting {
    /// Validated, WGS-84.
    pub sighting: Sighting,
    pub target_id: String,
    /// Kind, requesting and assisting court, routing, distance.
    pub route: RouteDecision,
    /// What the camera read, when it differs from the flagged plate.
    pub read_plate: Option<Plate>,
    pub fuzzy: bool,
    pub substitutions: u8,
}

/// What [`Store::record_matches`] did with one matched sighting.
// `Created` is the common, large case; boxing it would only add an allocation per task.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum MatchOutcome {
    /// A new task; its messages are among the returned outbox messages.
    Created(Task),
    /// The target's open task got a TaskUpdate (to its assisting court).
    Updated {
        task_id: String,
        assisting_court_id: String,
    },
    /// `(source, event_id)` was seen before: no effect at all.
    Duplicate,
    /// The target is not active (seized, withdrawn, expired, or unknown) in the database:
    /// no effect except that the event id is recorded.
    TargetInactive,
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

/// What kind of entry a task's history holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEventKind {
    Created,
    Sighting,
    Status,
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
    /// The matched sighting, for `created` and `sighting` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sighting: Option<Sighting>,
}

/// The database: cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct Store {
    pool: db::Pool,
}

impl Store {
    /// Connects and applies the migrations. `sqlite://PATH` (the file is created if missing;
    /// WAL, `synchronous=FULL`, 5 s busy timeout, foreign keys on) or `postgres://...` /
    /// `postgresql://...`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
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
                .statement_cache_capacity(db::STATEMENT_CACHE);
            // Writers serialize on SQLite anyway; a few connections let reads run beside them.
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await?;
            SQLITE_MIGRATOR.run(&pool).await?;
            db::Pool::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options =
                PgConnectOptions::from_str(url)?.statement_cache_capacity(db::STATEMENT_CACHE);
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .connect_with(options)
                .await?;
            POSTGRES_MIGRATOR.run(&pool).await?;
            db::Pool::Postgres(pool)
        } else {
            // Only the scheme: the rest of a URL may hold a password.
            let scheme = url.split_once(':').map_or("", |(s, _)| s).to_string();
            return Err(StoreError::UnsupportedUrl { scheme });
        };
        Ok(Store { pool })
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
