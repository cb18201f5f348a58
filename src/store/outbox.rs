//! The outbox (messages written with the change they announce, deleted once the broker has
//! them) and the retention purge of processed event ids.
//!
//! # One row per transaction
//!
//! A transaction's messages are one row: `payload` holds them framed one after another
//! ([`frame`]) and `frames` says how many. A group commit of 2,000 new tasks writes one row
//! instead of 4,000 (a Task and an Alert each); in `cargo bench --bench store` one row per
//! message costs a third of the commit's time, and it is the rows, not their bytes
//! (benches/DECISIONS.md). A message's id is its row's id times [`MAX_FRAMES`] plus its place in
//! the row, so ids still order messages as they were written and are never reused.
//!
//! The broker acknowledges messages one by one: [`Store::remove_sent`] marks a row's
//! acknowledged places in `acked` (a bitmap, with `acked_count` beside it for the gauge) and
//! deletes the row once every place is marked. Rows written before migration 0004 have
//! `frames` NULL: one message, `topic` and `payload` as they are.
//!
//! Each frame also holds the message's kind and task id ([`FRAME_VERSION`]), so a message
//! re-read after a crash is as typed as when it was written. Rows from before migration 0005
//! (`frame_version` NULL) lack them; only for those is the kind derived from the topic.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::codec::{self, ms};
use super::db::{self, Tx};
use super::event_log;
use super::{Store, StoreError};
use crate::contract::task::{MessageKind, OutboxMessage, Task};
use crate::dispatch::notify::{Body, Outgoing};

/// Most messages in one row; also the factor between a row's id and its messages' ids.
const MAX_FRAMES: i64 = 1 << 16;
/// The outbox insert's head: the columns [`bind_row`] binds, in its order.
macro_rules! outbox_insert_head {
    () => {
        "INSERT INTO outbox (topic, payload, created_at, frames, frame_version)"
    };
}
const OUTBOX_INSERT: (&str, &str) = (
    concat!(outbox_insert_head!(), " VALUES ($1, $2, $3, $4, $5)"),
    concat!(
        outbox_insert_head!(),
        " VALUES ($1, $2, $3, $4, $5) RETURNING id"
    ),
);
const OUTBOX_ACKED_HEAD: &str = "SELECT id, frames, acked FROM outbox WHERE id IN";
/// Rows read per statement by [`Store::pending_outbox`]: a row may hold thousands of messages.
const PENDING_ROWS_PER_READ: i64 = 16;
/// Processed event ids deleted per write transaction by the retention purge.
const PURGE_CHUNK: i64 = 5_000;

/// The framing of the rows this version writes: per message its kind, task id (empty for
/// none), topic and payload.
const FRAME_VERSION: i64 = 2;

/// A message to write to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewMessage {
    pub kind: MessageKind,
    pub task_id: Option<String>,
    pub topic: String,
    pub payload: Vec<u8>,
}

impl NewMessage {
    /// Serializes a planned message; `new_tasks` holds the bodies of [`Body::NewTask`].
    pub(crate) fn encode(out: Outgoing, new_tasks: &[Task]) -> Result<NewMessage, StoreError> {
        // Sized for a Task (~700 bytes as JSON), so building one does not regrow it six times.
        let mut payload = Vec::with_capacity(1024);
        let written = match &out.body {
            Body::NewTask(k) => {
                let task = new_tasks.get(*k).ok_or_else(|| StoreError::Corrupt {
                    what: "planned message",
                    detail: format!("no new task {k}"),
                })?;
                serde_json::to_writer(&mut payload, task)
            }
            Body::Task(task) => serde_json::to_writer(&mut payload, task),
            Body::Update(update) => serde_json::to_writer(&mut payload, update),
            Body::Alert(alert) => serde_json::to_writer(&mut payload, alert),
        };
        written.map_err(StoreError::Encode)?;
        Ok(NewMessage {
            kind: out.kind,
            task_id: out.task_id(new_tasks).map(str::to_string),
            topic: out.topic,
            payload,
        })
    }

    /// Serializes planned messages that carry no [`Body::NewTask`].
    pub(crate) fn encode_all(outs: Vec<Outgoing>) -> Result<Vec<NewMessage>, StoreError> {
        outs.into_iter()
            .map(|o| NewMessage::encode(o, &[]))
            .collect()
    }
}

/// Writes `messages` in order, one row per [`MAX_FRAMES`] of them, and returns them with their
/// ids.
pub(crate) async fn write(
    tx: &mut Tx,
    messages: Vec<NewMessage>,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let created = ms(now);
    let sql = tx.dialect().pick(OUTBOX_INSERT.0, OUTBOX_INSERT.1);
    let mut out = Vec::with_capacity(messages.len());
    let mut messages = messages.into_iter().peekable();
    while messages.peek().is_some() {
        let row: Vec<NewMessage> = messages.by_ref().take(MAX_FRAMES as usize).collect();
        let q = bind_row(tx.query(sql), &row, created);
        let row_id = tx.insert_ids(q, 1).await?[0];
        log_events(tx, &row, now).await?;
        out.extend(with_ids(row_id, row, now));
    }
    Ok(out)
}

/// Logs `messages` for the console stream, in `tx`: the transaction of their outbox row.
pub(crate) async fn log_events(
    tx: &mut Tx,
    messages: &[NewMessage],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let published = messages.iter().map(|m| event_log::Published {
        kind: m.kind,
        topic: &m.topic,
        payload: &m.payload,
    });
    event_log::write(tx, published, now).await
}

/// Binds one row's values (topic, payload, created_at, frames, frame_version) to `q`, in the
/// column order of [`OUTBOX_INSERT_HEAD`].
pub(crate) fn bind_row(q: db::Query, messages: &[NewMessage], created: i64) -> db::Query {
    q.bind("")
        .bind(frame(messages))
        .bind(created)
        .bind(messages.len() as i64)
        .bind(FRAME_VERSION)
}

/// The columns [`bind_row`] binds, for a statement built elsewhere.
pub(crate) const OUTBOX_INSERT_HEAD: &str = outbox_insert_head!();
pub(crate) const OUTBOX_INSERT_COLS: usize = 5;

/// The messages of the row `row_id`, with their ids.
pub(crate) fn with_ids(
    row_id: i64,
    messages: Vec<NewMessage>,
    now: DateTime<Utc>,
) -> impl Iterator<Item = OutboxMessage> {
    messages
        .into_iter()
        .zip(0..)
        .map(move |(m, place)| OutboxMessage {
            id: row_id * MAX_FRAMES + place,
            kind: m.kind,
            task_id: m.task_id,
            topic: m.topic,
            payload: m.payload,
            created_at: now,
        })
}

/// The messages one after another, each as four parts: its kind's name, its task id (empty
/// for none), its topic, its payload; each part as its length (u32, little-endian) and bytes.
fn frame(messages: &[NewMessage]) -> Vec<u8> {
    let len = messages
        .iter()
        .map(|m| {
            16 + 12 + m.task_id.as_ref().map_or(0, String::len) + m.topic.len() + m.payload.len()
        })
        .sum();
    let mut out = Vec::with_capacity(len);
    for m in messages {
        let task_id = m.task_id.as_deref().unwrap_or("");
        for part in [
            m.kind.as_str().as_bytes(),
            task_id.as_bytes(),
            m.topic.as_bytes(),
            &m.payload,
        ] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// Inverts [`frame`] (`version` [`FRAME_VERSION`]), or reads the framing of rows from before
/// migration 0005 (`version` NULL: topic and payload only): each of the `frames` messages.
fn unframe(
    mut bytes: &[u8],
    frames: i64,
    version: Option<i64>,
) -> Result<Vec<NewMessage>, StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        what: "outbox row",
        detail: detail.to_string(),
    };
    let take = |bytes: &mut &[u8]| -> Result<Vec<u8>, StoreError> {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(corrupt("truncated message"));
        }
        let (part, rest) = rest.split_at(len);
        *bytes = rest;
        Ok(part.to_vec())
    };
    let text = |part: Vec<u8>, what: &str| {
        String::from_utf8(part).map_err(|_| corrupt(&format!("{what} not UTF-8")))
    };
    if !(0..=MAX_FRAMES).contains(&frames) {
        return Err(corrupt("frames out of range"));
    }
    let typed = match version {
        None => false,
        Some(FRAME_VERSION) => true,
        Some(_) => return Err(corrupt("unknown frame version")),
    };
    let mut out = Vec::with_capacity(frames as usize);
    for _ in 0..frames {
        let message = if typed {
            let kind = text(take(&mut bytes)?, "kind")?;
            let kind = MessageKind::parse(&kind).ok_or_else(|| corrupt("unknown message kind"))?;
            let task_id = text(take(&mut bytes)?, "task id")?;
            NewMessage {
                kind,
                task_id: Some(task_id).filter(|t| !t.is_empty()),
                topic: text(take(&mut bytes)?, "topic")?,
                payload: take(&mut bytes)?,
            }
        } else {
            let topic = text(take(&mut bytes)?, "topic")?;
            legacy_message(topic, take(&mut bytes)?)
        };
        out.push(message);
    }
    if !bytes.is_empty() {
        return Err(corrupt("bytes after the last message"));
    }
    Ok(out)
}

/// A message written before the outbox recorded kinds (before migration 0005): the only place
/// a kind is derived from a topic (`…/tasks`, `…/updates`, `…/escalations`, `deadletter/…`,
/// else an alert) and a task id from the payload's `task_id`.
fn legacy_message(topic: String, payload: Vec<u8>) -> NewMessage {
    #[derive(serde::Deserialize)]
    struct About {
        task_id: Option<String>,
    }
    let kind = if topic.ends_with("/tasks") {
        MessageKind::Task
    } else if topic.ends_with("/updates") {
        MessageKind::Update
    } else if topic.ends_with("/escalations") {
        MessageKind::Escalation
    } else if topic.contains("deadletter/") {
        MessageKind::DeadLetter
    } else {
        MessageKind::Alert
    };
    let task_id = serde_json::from_slice::<About>(&payload)
        .ok()
        .and_then(|a| a.task_id)
        .filter(|t| !t.is_empty());
    NewMessage {
        kind,
        task_id,
        topic,
        payload,
    }
}

/// Which places of a row the broker has acknowledged: bit `place % 8` of byte `place / 8`.
#[derive(Debug, Default, PartialEq)]
struct Acked(Vec<u8>);

impl Acked {
    fn has(&self, place: i64) -> bool {
        let place = place as usize;
        self.0
            .get(place / 8)
            .is_some_and(|b| b & (1 << (place % 8)) != 0)
    }

    /// Marks `place`; whether it was new.
    fn mark(&mut self, place: i64) -> bool {
        let place = place as usize;
        if self.0.len() <= place / 8 {
            self.0.resize(place / 8 + 1, 0);
        }
        let new = self.0[place / 8] & (1 << (place % 8)) == 0;
        self.0[place / 8] |= 1 << (place % 8);
        new
    }

    fn count(&self) -> i64 {
        self.0.iter().map(|b| i64::from(b.count_ones())).sum()
    }
}

impl Store {
    /// Unsent messages, oldest first, at most `limit`; with `created_before`, only those
    /// written before it: another publisher's orphans (a crashed replica's, or ours from
    /// before a restart). The filter is in the query because the publisher looks for orphans
    /// every second in its poll loop: reading every pending row (most of them just
    /// acknowledged, waiting for [`Store::remove_sent`]) and filtering afterwards held that
    /// loop up for milliseconds, delaying PUBACKs and new tasks.
    pub async fn pending_outbox(
        &self,
        created_before: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let mut out = Vec::new();
        let mut after = 0;
        while out.len() < limit {
            let mut pool = self.pool.clone();
            let q = pool
                .query(
                    "SELECT id, topic, payload, created_at, frames, frame_version, acked FROM outbox \
                     WHERE created_at < $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(created_before.map_or(i64::MAX, ms))
                .bind(after)
                .bind(PENDING_ROWS_PER_READ);
            let rows = pool.fetch_all(q).await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let row_id: i64 = row.get("id")?;
                after = row_id;
                let created_at = codec::time(row.get("created_at")?, "outbox created_at")?;
                let payload: Vec<u8> = row.get("payload")?;
                let messages = match row.get::<Option<i64>>("frames")? {
                    None => vec![legacy_message(row.get("topic")?, payload)],
                    Some(frames) => unframe(&payload, frames, row.get("frame_version")?)?,
                };
                let acked = Acked(row.get::<Option<Vec<u8>>>("acked")?.unwrap_or_default());
                let unacked = messages
                    .into_iter()
                    .zip(0..)
                    .filter(|(_, place)| !acked.has(*place));
                for (m, place) in unacked {
                    if out.len() == limit {
                        return Ok(out);
                    }
                    out.push(OutboxMessage {
                        id: row_id * MAX_FRAMES + place,
                        kind: m.kind,
                        task_id: m.task_id,
                        topic: m.topic,
                        payload: m.payload,
                        created_at,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Records that the broker has the messages `ids`, deleting each row whose messages it
    /// all has: the outbox keeps only what is still to publish (the tasks and their history
    /// keep the rest). Ids already gone, or acknowledged before, change nothing.
    ///
    /// The publisher gathers acknowledgements for a second, so a call usually completes a
    /// few rows (one read of their state, one range delete) and leaves the newest partly
    /// acknowledged (one update of its bitmap).
    pub async fn remove_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut by_row: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for &id in ids {
            by_row
                .entry(id.div_euclid(MAX_FRAMES))
                .or_default()
                .push(id.rem_euclid(MAX_FRAMES));
        }
        if by_row.is_empty() {
            return Ok(());
        }
        let row_ids: Vec<i64> = by_row.keys().copied().collect();
        let mut tx = self.begin_write().await?;
        let mut done = Vec::new();
        for chunk in db::chunks(row_ids.len()) {
            // PostgreSQL: replicas acknowledging messages of the same row take turns.
            let tail = tx.dialect().pick("", "FOR UPDATE");
            let sql = db::in_list_sql(tx.dialect(), OUTBOX_ACKED_HEAD, chunk.len(), tail);
            let mut q = tx.query_generated(sql);
            for id in &row_ids[chunk] {
                q = q.bind(*id);
            }
            for row in tx.fetch_all(q).await? {
                let row_id: i64 = row.get("id")?;
                let frames = row.get::<Option<i64>>("frames")?.unwrap_or(1);
                let mut acked = Acked(row.get::<Option<Vec<u8>>>("acked")?.unwrap_or_default());
                let mut changed = false;
                for &place in by_row.get(&row_id).into_iter().flatten() {
                    if place < frames {
                        changed |= acked.mark(place);
                    }
                }
                let count = acked.count();
                if count >= frames {
                    done.push(row_id);
                } else if changed {
                    let q = tx
                        .query("UPDATE outbox SET acked = $1, acked_count = $2 WHERE id = $3")
                        .bind(acked.0)
                        .bind(count)
                        .bind(row_id);
                    tx.execute(q).await?;
                }
            }
        }
        for (first, last) in consecutive_runs(&done) {
            let q = tx
                .query("DELETE FROM outbox WHERE id BETWEEN $1 AND $2")
                .bind(first)
                .bind(last);
            tx.execute(q).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets aside a message the MQTT client can never send: recorded in `outbox_rejected`
    /// with `reason`, then removed from the outbox as if the broker had it.
    pub async fn reject_outbox(
        &self,
        message: &OutboxMessage,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let q = tx
            .query(
                "INSERT INTO outbox_rejected \
                 (message_id, kind, task_id, topic, payload, created_at, rejected_at, reason) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(message.id)
            .bind(message.kind.as_str())
            .bind(message.task_id.clone())
            .bind(message.topic.clone())
            .bind(message.payload.clone())
            .bind(ms(message.created_at))
            .bind(ms(now))
            .bind(reason.to_string());
        tx.execute(q).await?;
        tx.commit().await?;
        self.remove_sent(&[message.id]).await
    }

    /// Messages written and not yet acknowledged.
    pub async fn outbox_pending_count(&self) -> Result<i64, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool.query(
            "SELECT CAST(COALESCE(SUM(COALESCE(frames, 1) - acked_count), 0) AS BIGINT) AS n \
             FROM outbox",
        );
        let row = pool.fetch_optional(q).await?;
        Ok(row.map(|r| r.get::<i64>("n")).transpose()?.unwrap_or(0))
    }

    /// Messages set aside by [`Store::reject_outbox`]: `(kind, task id, reason)`, in order.
    pub async fn rejected_outbox(
        &self,
    ) -> Result<Vec<(String, Option<String>, String)>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool.query("SELECT kind, task_id, reason FROM outbox_rejected ORDER BY id");
        let mut out = Vec::new();
        for row in pool.fetch_all(q).await? {
            out.push((row.get("kind")?, row.get("task_id")?, row.get("reason")?));
        }
        Ok(out)
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
            let n = self
                .bounded(async { pool.execute(q).await.map_err(StoreError::from) })
                .await?;
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
    use super::{Acked, FRAME_VERSION, MessageKind, NewMessage, consecutive_runs, frame, unframe};

    fn message(
        kind: MessageKind,
        task_id: Option<&str>,
        topic: &str,
        payload: &[u8],
    ) -> NewMessage {
        NewMessage {
            kind,
            task_id: task_id.map(str::to_string),
            topic: topic.into(),
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn framed_messages_come_back_as_written() {
        let messages = [
            message(
                MessageKind::Task,
                Some("a"),
                "dispatch/cixi/tasks",
                br#"{"task_id":"a"}"#,
            ),
            message(MessageKind::Alert, None, "alerts/yuyao", b""),
            message(MessageKind::Escalation, Some("b"), "", "任务".as_bytes()),
        ];
        let bytes = frame(&messages);
        let back = unframe(&bytes, 3, Some(FRAME_VERSION)).unwrap();
        assert_eq!(back, messages);
        assert_eq!(unframe(&[], 0, Some(FRAME_VERSION)).unwrap(), Vec::new());
    }

    /// Rows framed before kinds were recorded: topic and payload per message.
    #[test]
    fn frames_without_kinds_get_them_from_their_topics() {
        let mut bytes = Vec::new();
        for part in [
            &b"p/dispatch/cixi/updates"[..],
            br#"{"task_id":"t-1","update":"status"}"#,
            b"p/dispatch/boss/escalations",
            br#"{"task_id":"t-2"}"#,
            b"p/alerts/yuyao",
            br#"{"task_id":""}"#,
            b"p/dispatch/cixi/tasks",
            b"not json",
        ] {
            bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        let back = unframe(&bytes, 4, None).unwrap();
        let kinds: Vec<(MessageKind, Option<&str>)> = back
            .iter()
            .map(|m| (m.kind, m.task_id.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                (MessageKind::Update, Some("t-1")),
                (MessageKind::Escalation, Some("t-2")),
                (MessageKind::Alert, None),
                (MessageKind::Task, None),
            ]
        );
        assert!(unframe(&bytes, 4, Some(7)).is_err(), "unknown version");
    }

    #[test]
    fn a_damaged_row_is_an_error_not_a_guess() {
        let v = Some(FRAME_VERSION);
        let bytes = frame(&[message(MessageKind::Update, Some("t"), "a/b", b"xyz")]);
        for cut in 0..bytes.len() {
            assert!(unframe(&bytes[..cut], 1, v).is_err(), "cut at {cut}");
        }
        assert!(unframe(&bytes, 2, v).is_err(), "fewer messages than frames");
        assert!(unframe(&bytes, -1, v).is_err() && unframe(&bytes, i64::MAX, v).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(unframe(&longer, 1, v).is_err(), "bytes left over");
        let mut bad_kind = bytes.clone();
        bad_kind[4] = b'x';
        assert!(unframe(&bad_kind, 1, v).is_err(), "unknown kind");
        let mut bad_topic = bytes;
        let topic_at = 4 + "update".len() + 4 + 1 + 4;
        bad_topic[topic_at] = 0xFF;
        assert!(unframe(&bad_topic, 1, v).is_err(), "topic not UTF-8");
    }

    #[test]
    fn acknowledged_places_are_counted_once() {
        let mut acked = Acked::default();
        assert!(!acked.has(9));
        assert!(acked.mark(9));
        assert!(!acked.mark(9));
        assert!(acked.mark(0));
        assert!(acked.has(9) && acked.has(0) && !acked.has(8) && !acked.has(1_000));
        assert_eq!(acked.count(), 2);
        assert_eq!(acked.0, vec![0b0000_0001, 0b0000_0010]);
    }

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
