//! The outbox (messages written with the change they announce, deleted once the broker has
//! them) and the retention purge of processed event ids.

use chrono::{DateTime, Utc};

use super::codec::{self, ms};
use super::db::{self, Tx};
use super::{Store, StoreError};
use crate::task::OutboxMessage;

const OUTBOX_INSERT_HEAD: &str = "INSERT INTO outbox (topic, payload, created_at)";
const OUTBOX_INSERT_COLS: usize = 3;
/// Processed event ids deleted per write transaction by the retention purge.
const PURGE_CHUNK: i64 = 5_000;

/// A message to write to the outbox.
pub(crate) struct NewMessage {
    pub topic: String,
    pub payload: Vec<u8>,
}

impl NewMessage {
    pub(crate) fn json<T: serde::Serialize>(
        topic: String,
        value: &T,
    ) -> Result<NewMessage, StoreError> {
        Ok(NewMessage {
            topic,
            payload: serde_json::to_vec(value).map_err(StoreError::Encode)?,
        })
    }
}

/// Writes `messages` in order with multi-row inserts and returns them with their ids.
pub(crate) async fn write(
    tx: &mut Tx,
    messages: Vec<NewMessage>,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let created = ms(now);
    let tail = tx.dialect().pick(db::RETURNING_ID.0, db::RETURNING_ID.1);
    let mut out = Vec::with_capacity(messages.len());
    let mut messages = messages.into_iter();
    for chunk in db::chunks(messages.len()) {
        let rows: Vec<NewMessage> = messages.by_ref().take(chunk.len()).collect();
        let sql = db::values_sql(
            tx.dialect(),
            OUTBOX_INSERT_HEAD,
            OUTBOX_INSERT_COLS,
            rows.len(),
            tail,
        );
        let mut q = tx.query_generated(sql);
        for m in &rows {
            q = q
                .bind(m.topic.as_str())
                .bind(m.payload.as_slice())
                .bind(created);
        }
        let ids = tx.insert_ids(q, rows.len()).await?;
        out.extend(ids.into_iter().zip(rows).map(|(id, m)| OutboxMessage {
            id,
            topic: m.topic,
            payload: m.payload,
            created_at: now,
        }));
    }
    Ok(out)
}

impl Store {
    /// Unsent messages, oldest first; with `created_before`, only those written before it:
    /// another publisher's orphans (a crashed replica's, or ours from before a restart). The
    /// filter is in the query because the publisher looks for orphans every second in its
    /// poll loop: reading every pending row (most of them just acknowledged, waiting for
    /// [`Store::remove_sent`]) and filtering afterwards held that loop up for milliseconds,
    /// delaying PUBACKs and new tasks.
    pub async fn pending_outbox(
        &self,
        created_before: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool
            .query(
                "SELECT id, topic, payload, created_at FROM outbox WHERE created_at < $1 \
                 ORDER BY id LIMIT $2",
            )
            .bind(created_before.map_or(i64::MAX, ms))
            .bind(limit);
        pool.fetch_all(q)
            .await?
            .iter()
            .map(|row| {
                Ok(OutboxMessage {
                    id: row.get("id")?,
                    topic: row.get("topic")?,
                    payload: row.get("payload")?,
                    created_at: codec::time(row.get("created_at")?, "outbox created_at")?,
                })
            })
            .collect()
    }

    /// Deletes messages the broker has acknowledged: the outbox keeps only what is still to
    /// publish (the tasks and their history keep the rest). Ids already gone are ignored.
    ///
    /// Acknowledgements come back nearly in id order, so the ids are deleted as runs of
    /// consecutive ids, one range delete each: a second's worth at 15,000 tasks/s is some
    /// 30,000 ids in a handful of runs, where an `IN` list of them all cost a statement as
    /// long as the list (and as many binds) on every call.
    pub async fn remove_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        let runs = consecutive_runs(ids);
        if runs.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (first, last) in runs {
            let q = tx
                .query("DELETE FROM outbox WHERE id BETWEEN $1 AND $2")
                .bind(first)
                .bind(last);
            tx.execute(q).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn outbox_pending_count(&self) -> Result<i64, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool.query("SELECT COUNT(*) AS n FROM outbox");
        let row = pool.fetch_optional(q).await?;
        Ok(row.map(|r| r.get::<i64>("n")).transpose()?.unwrap_or(0))
    }

    /// Forgets processed event ids recorded before `cutoff` (a redelivery older than the
    /// retention would then count as new). Returns how many were deleted.
    pub async fn purge_processed_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.purge_processed_in_chunks(cutoff, PURGE_CHUNK).await
    }

    /// [`purge_processed_before`](Self::purge_processed_before), `chunk` rows per write
    /// transaction: each waits its turn on the writer like a group commit, so a commit waits
    /// behind one chunk, never behind an hour's worth of deletes.
    #[doc(hidden)]
    pub async fn purge_processed_in_chunks(
        &self,
        cutoff: DateTime<Utc>,
        chunk: i64,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let mut pool = self.writer_pool();
            let q = pool
                .query(
                    "DELETE FROM processed_events WHERE (source, event_id) IN \
                     (SELECT source, event_id FROM processed_events \
                      WHERE processed_at < $1 LIMIT $2)",
                )
                .bind(ms(cutoff))
                .bind(chunk);
            let n = pool.execute(q).await?;
            deleted += n;
            if n < chunk.max(1) as u64 {
                return Ok(deleted);
            }
        }
    }
}

/// `ids` as sorted runs of consecutive values `(first, last)`, duplicates merged.
fn consecutive_runs(ids: &[i64]) -> Vec<(i64, i64)> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for id in sorted {
        match runs.last_mut() {
            Some((_, last)) if id <= *last + 1 => *last = (*last).max(id),
            _ => runs.push((id, id)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::consecutive_runs;

    #[test]
    fn acknowledged_ids_become_runs_of_consecutive_ids() {
        assert_eq!(consecutive_runs(&[]), Vec::<(i64, i64)>::new());
        assert_eq!(consecutive_runs(&[7]), vec![(7, 7)]);
        assert_eq!(
            consecutive_runs(&[5, 3, 4, 9, 10, 4, 12]),
            vec![(3, 5), (9, 10), (12, 12)]
        );
    }
}
