//! Forgetting on time. A closed task keeps where its target was seen (coordinates, the plate
//! as read, the camera) only for a while, and the task itself with its history for longer;
//! open tasks are never touched. Unmatched sightings are never stored at all.
//!
//! Both steps run in chunks, each its own short write, so a group commit waits behind one
//! chunk at most, and each is idempotent: a crash between chunks leaves nothing half-done that
//! the next run would not finish.

use chrono::{DateTime, Utc};

use crate::store::codec::ms;
use crate::store::{Dialect, Store, StoreError};

/// How long closed tasks keep what they hold, counted from their resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// After this a closed task's sighting details are cleared: the task's and its history's
    /// positions, the plate as read and the source.
    pub sighting_details: chrono::Duration,
    /// After this a closed task and its history are deleted.
    pub closed_tasks: chrono::Duration,
    /// After this many days audit rows are deleted (the database refuses fewer than 30).
    pub audit_days: u32,
    /// After this the console stream's logged events are deleted (counted from their
    /// writing); a reconnect can resume from an event only as old as this.
    pub events: chrono::Duration,
}

impl Default for Retention {
    /// 30 days of sighting details, a year of closed tasks, five years of audit, a day of
    /// logged events.
    fn default() -> Self {
        Retention {
            sighting_details: chrono::Duration::days(30),
            closed_tasks: chrono::Duration::days(365),
            audit_days: 5 * 365,
            events: chrono::Duration::days(1),
        }
    }
}

/// What one run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Closed tasks whose sighting details were cleared.
    pub reduced: u64,
    /// Closed tasks deleted with their history.
    pub deleted: u64,
}

/// Rows per write.
const CHUNK: i64 = 1_000;

/// A closed task resolved before `$1`.
const CLOSED_BEFORE: &str = "resolved_at IS NOT NULL AND resolved_at < $1 \
     AND status NOT IN ('dispatched', 'acknowledged', 'en_route')";

impl Store {
    /// Applies `retention` as of `now`.
    pub async fn apply_retention(
        &self,
        now: DateTime<Utc>,
        retention: &Retention,
    ) -> Result<Purged, StoreError> {
        let reduce_before = ms(now - retention.sighting_details);
        let delete_before = ms(now - retention.closed_tasks);
        let mut purged = Purged::default();
        loop {
            let n = self.reduce_chunk(reduce_before).await?;
            purged.reduced += n;
            if n < CHUNK as u64 {
                break;
            }
        }
        loop {
            let n = self.delete_chunk(delete_before).await?;
            purged.deleted += n;
            if n < CHUNK as u64 {
                break;
            }
        }
        Ok(purged)
    }

    /// Clears the sighting details of up to [`CHUNK`] closed tasks; returns how many tasks.
    async fn reduce_chunk(&self, before: i64) -> Result<u64, StoreError> {
        let history = format!(
            "UPDATE task_events SET sighting = NULL WHERE sighting IS NOT NULL AND task_id IN \
             (SELECT task_id FROM tasks WHERE {CLOSED_BEFORE} \
              AND (sighting IS NOT NULL OR read_plate IS NOT NULL) LIMIT $2)"
        );
        let tasks = format!(
            "UPDATE tasks SET sighting = NULL, read_plate = NULL WHERE task_id IN \
             (SELECT task_id FROM tasks WHERE {CLOSED_BEFORE} \
              AND (sighting IS NOT NULL OR read_plate IS NOT NULL) LIMIT $2)"
        );
        // History first: the task's own columns select the chunk, so until they are cleared
        // a crash leaves the same chunk to do again.
        self.write(history, before).await?;
        self.write(tasks, before).await
    }

    /// Deletes up to [`CHUNK`] closed tasks with their history; returns how many tasks.
    async fn delete_chunk(&self, before: i64) -> Result<u64, StoreError> {
        let history = format!(
            "DELETE FROM task_events WHERE task_id IN \
             (SELECT task_id FROM tasks WHERE {CLOSED_BEFORE} LIMIT $2)"
        );
        let tasks = format!(
            "DELETE FROM tasks WHERE task_id IN \
             (SELECT task_id FROM tasks WHERE {CLOSED_BEFORE} AND NOT EXISTS \
              (SELECT 1 FROM task_events e WHERE e.task_id = tasks.task_id) LIMIT $2)"
        );
        self.write(history, before).await?;
        self.write(tasks, before).await
    }

    /// On SQLite, checkpoints the whole WAL into the database and truncates the WAL file to
    /// zero bytes, so that it does not keep the size of its busiest hour for good. Nothing
    /// happens while a reader holds an old snapshot (the next run tries again); PostgreSQL
    /// manages its own WAL.
    pub async fn truncate_journal(&self) -> Result<(), StoreError> {
        if self.dialect() != Dialect::Sqlite {
            return Ok(());
        }
        let mut pool = self.writer_pool();
        let q = pool.query("PRAGMA wal_checkpoint(TRUNCATE)");
        self.bounded(async { pool.execute(q).await.map_err(StoreError::from) })
            .await
            .map(|_| ())
    }

    async fn write(&self, sql: String, before: i64) -> Result<u64, StoreError> {
        let mut pool = self.writer_pool();
        // Generated from constants only: the cutoff and the chunk are bound.
        let q = pool.query_generated(sql).bind(before).bind(CHUNK);
        self.bounded(async { pool.execute(q).await.map_err(StoreError::from) })
            .await
    }
}
