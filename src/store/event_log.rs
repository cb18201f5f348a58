//! The event log: every task, update, alert and escalation the outbox publishes, kept for a
//! while with the court it is addressed to, for the console's live stream
//! (`GET /api/v1/events`). Its rows are written by [`write`] in the transaction of the outbox
//! row that carries the same messages, so a message is in both or in neither.
//!
//! # Ids in commit order
//!
//! A stream reads `id > last id sent`, so an event must never become visible after one with
//! a higher id. SQLite has one writer at a time. On PostgreSQL, concurrent transactions take
//! ids in insert order but may commit in another; so each transaction that logs events first
//! takes [`COMMIT_ORDER_LOCK`] (a transaction-level advisory lock, released at its commit or
//! rollback). The log insert is the last or next-to-last statement of every transaction that
//! writes one, so the lock serializes only those inserts and their commits.

use chrono::{DateTime, Utc};

use super::codec::ms;
use super::db::{self, Row, Tx};
use super::{Store, StoreError};
use crate::contract::task::MessageKind;

const INSERT_HEAD: &str = "INSERT INTO event_log (kind, court, topic, payload, created_at)";
const INSERT_COLS: usize = 5;
/// The advisory lock key that orders the log's writers on PostgreSQL ("lr_event" in ASCII).
const COMMIT_ORDER_LOCK: i64 = 0x6c72_5f65_7665_6e74;
/// Rows deleted per write by the retention purge.
const PURGE_CHUNK: i64 = 5_000;

/// One logged message, as the stream sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// The stream's event id: increasing in order of writing.
    pub id: i64,
    /// `task`, `update`, `alert` or `escalation`.
    pub kind: String,
    /// The court the message is addressed to.
    pub court: String,
    pub topic: String,
    /// The MQTT payload, byte for byte.
    pub payload: Vec<u8>,
}

/// The court a message's topic is addressed to: `…/dispatch/{court}/{tasks|updates|escalations}`
/// or `…/alerts/{court}`; `None` for a dead letter (addressed to no court).
fn addressee(kind: MessageKind, topic: &str) -> Option<&str> {
    let mut segments = topic.rsplit('/');
    match kind {
        MessageKind::Alert => segments.next(),
        MessageKind::Task | MessageKind::Update | MessageKind::Escalation => segments.nth(1),
        MessageKind::DeadLetter => None,
    }
    .filter(|court| !court.is_empty())
}

/// A message as the outbox writes it.
pub(crate) struct Published<'a> {
    pub kind: MessageKind,
    pub topic: &'a str,
    pub payload: &'a [u8],
}

/// Logs `messages` (those addressed to a court) in `tx`, the transaction that writes them to
/// the outbox.
pub(crate) async fn write(
    tx: &mut Tx,
    messages: impl Iterator<Item = Published<'_>>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let logged: Vec<(Published<'_>, &str)> = messages
        .filter_map(|m| addressee(m.kind, m.topic).map(|court| (m, court)))
        .collect();
    if logged.is_empty() {
        return Ok(());
    }
    if tx.dialect() == db::Dialect::Postgres {
        let q = tx
            .query("SELECT pg_advisory_xact_lock($1)")
            .bind(COMMIT_ORDER_LOCK);
        tx.execute(q).await?;
    }
    let created = ms(now);
    for chunk in db::chunks(logged.len()) {
        let sql = db::values_sql(tx.dialect(), INSERT_HEAD, INSERT_COLS, chunk.len(), "");
        let mut q = tx.query_generated(sql);
        for (m, court) in &logged[chunk] {
            q = q
                .bind(m.kind.as_str())
                .bind(court.to_string())
                .bind(m.topic.to_string())
                .bind(m.payload.to_vec())
                .bind(created);
        }
        tx.execute(q).await?;
    }
    Ok(())
}

fn event_from_row(row: &Row) -> Result<LoggedEvent, StoreError> {
    Ok(LoggedEvent {
        id: row.get("id")?,
        kind: row.get("kind")?,
        court: row.get("court")?,
        topic: row.get("topic")?,
        payload: row.get("payload")?,
    })
}

impl Store {
    /// Up to `limit` logged events with an id above `after`, oldest first; only those
    /// addressed to `court` when one is given.
    pub async fn events_after(
        &self,
        after: i64,
        court: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool
            .query(
                "SELECT id, kind, court, topic, payload FROM event_log \
                 WHERE id > $1 AND ($2 IS NULL OR court = $2) ORDER BY id LIMIT $3",
            )
            .bind(after)
            .bind(court.map(str::to_string))
            .bind(limit);
        let rows = self
            .bounded(async { pool.fetch_all(q).await.map_err(StoreError::from) })
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The id of the newest logged event (0 when there is none): where a stream that asks for
    /// no past events starts.
    pub async fn latest_event_id(&self) -> Result<i64, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool.query("SELECT COALESCE(MAX(id), 0) AS id FROM event_log");
        let row = self
            .bounded(async { pool.fetch_optional(q).await.map_err(StoreError::from) })
            .await?;
        match row {
            Some(row) => Ok(row.get("id")?),
            None => Ok(0),
        }
    }

    /// Deletes logged events written before `before`, in chunks; returns how many.
    pub async fn purge_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut pool = self.writer_pool();
        let mut deleted = 0;
        loop {
            let q = pool
                .query(
                    "DELETE FROM event_log WHERE id IN \
                     (SELECT id FROM event_log WHERE created_at < $1 ORDER BY id LIMIT $2)",
                )
                .bind(ms(before))
                .bind(PURGE_CHUNK);
            let n = self
                .bounded(async { pool.execute(q).await.map_err(StoreError::from) })
                .await?;
            deleted += n;
            if n < PURGE_CHUNK as u64 {
                return Ok(deleted);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_to(topic: &str) -> Published<'_> {
        Published {
            kind: MessageKind::Task,
            topic,
            payload: b"{}",
        }
    }

    /// Two writers on PostgreSQL, the first still open when the second commits: a stream must
    /// not see the second's event (the higher id) before the first's, or it would never send
    /// the first's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgresql_no_event_is_visible_before_a_lower_id_is() {
        let Ok(url) = std::env::var("LEADRELAY_TEST_DATABASE_URL") else {
            eprintln!("LEADRELAY_TEST_DATABASE_URL not set: skipped");
            return;
        };
        let url = crate::store::isolated_postgres_url(&url).await.unwrap();
        let store = Store::connect(&url).await.unwrap();
        let mut first = store.begin_write().await.unwrap();
        write(
            &mut first,
            [task_to("dispatch/cixi/tasks")].into_iter(),
            Utc::now(),
        )
        .await
        .unwrap();
        let other = store.clone();
        let second = tokio::spawn(async move {
            let mut tx = other.begin_write().await?;
            write(
                &mut tx,
                [task_to("dispatch/yuyao/tasks")].into_iter(),
                Utc::now(),
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)
        });
        // Real time for the second writer to get as far as it can while the first is open.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let early = store.events_after(0, None, 10).await.unwrap();
        assert!(
            early.is_empty(),
            "visible before the first commit: {early:?}"
        );
        first.commit().await.unwrap();
        second.await.unwrap().unwrap();
        let all = store.events_after(0, None, 10).await.unwrap();
        let courts: Vec<&str> = all.iter().map(|e| e.court.as_str()).collect();
        assert_eq!(courts, ["cixi", "yuyao"]);
        store.close().await;
    }

    #[test]
    fn the_addressee_is_read_from_the_topic_under_any_prefix() {
        let cases = [
            (MessageKind::Task, "p/x/dispatch/cixi/tasks", Some("cixi")),
            (MessageKind::Update, "dispatch/yuyao/updates", Some("yuyao")),
            (
                MessageKind::Escalation,
                "a/dispatch/ningbo/escalations",
                Some("ningbo"),
            ),
            (MessageKind::Alert, "p/alerts/yuyao", Some("yuyao")),
            (MessageKind::DeadLetter, "p/deadletter/sightings", None),
            (MessageKind::Alert, "alerts/", None),
        ];
        for (kind, topic, court) in cases {
            assert_eq!(addressee(kind, topic), court, "{topic}");
        }
    }
}
