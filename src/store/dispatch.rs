//! Group commit of matched sightings: new tasks, updates of open tasks, processed event ids
//! and the outbox, for a whole batch in one transaction. What to write is decided by
//! [`Planner`] without the database; this module reads what it needs and writes its plan,
//! keeping to the database the rules that must hold across replicas (unique event ids, one
//! open task per target, conditional updates).
//!
//! The batch costs a fixed handful of multi-row statements whatever its length: insert the
//! event ids (the conflicts are the duplicates), read the targets with their open tasks and
//! (for targets without one) their latest closure, for the `not_found` cooldown, in one
//! statement; insert the new tasks, the history rows, the outbox row. Nothing just written
//! is read back. Only a task whose border candidate changes or that moves to another court
//! costs one more single-row update (see [`Policy`](super::Policy)).
//!
//! Each statement is a hand-off to the database (on SQLite, to the connection's thread), and
//! at a latency-bound load of one or two sightings per batch those hand-offs, not the rows,
//! are most of a commit beside its fsync. So on SQLite a small batch sends its three inserts
//! as one list of statements ([`write_at_once`]).

use std::borrow::Cow;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;

use super::codec::{self, ms, task_columns};
use super::db::{self, Dialect, Tx};
use super::outbox::{self, NewMessage};
use super::targets;
use super::{MatchOutcome, Store, StoreError, TaskEventKind};
use crate::contract::task::{OutboxMessage, Task, TaskStatus, Topics};
use crate::dispatch::notify::Outgoing;
use crate::dispatch::plan::{Draft, OpenTask, Plan, Planner, Read, TaskChange, cooldown_cutoff};
use crate::dispatch::policy::{Deadlines, MatchedSighting, Policy};
use crate::metrics::{self, CommitStep};

/// The SQL condition of an open task; identical to the partial unique index's predicate so
/// both dialects use that index.
macro_rules! open_status {
    () => {
        "status IN ('dispatched', 'acknowledged', 'en_route')"
    };
}
pub(crate) use open_status;

const PROCESSED_INSERT_HEAD: &str = "INSERT INTO processed_events (source, event_id, processed_at)";
const PROCESSED_INSERT_TAIL: &str =
    "ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id";

const OPEN_TASKS_HEAD: &str = concat!(
    "SELECT ",
    task_columns!(),
    ", candidate_court_id, candidate_since FROM tasks WHERE ",
    open_status!(),
    " AND target_id IN"
);

/// The targets by id, each with its open task (if any) and, as `cooldown_task_id`, its most
/// recently closed task after `$1` when that one closed as `not_found`: what planning a batch
/// reads, in one statement (one round trip to the database instead of three). The target's
/// columns are renamed so the open task's keep the names [`codec::task_from_row`] reads.
/// The latest closure is the first in `tasks_target_resolved`'s order, so SQLite reads one
/// index entry and sorts nothing (a tie-break on `task_id` cost a sorter per target); two
/// closures of one target in the same millisecond would need a task created and closed
/// within it.
const DISPATCH_READ_HEAD: &str = "SELECT t.target_id AS t_target_id, t.plate AS t_plate, \
     t.person_id AS t_person_id, t.name AS t_name, t.status AS t_status, t.cases AS t_cases, \
     t.valid_until AS t_valid_until, o.*, \
     (SELECT CASE WHEN c.status = 'not_found' THEN c.task_id END FROM tasks c \
     WHERE c.target_id = t.target_id AND c.resolved_at IS NOT NULL AND c.resolved_at > ";
const DISPATCH_READ_JOIN: &str = concat!(
    " ORDER BY c.resolved_at DESC LIMIT 1) AS cooldown_task_id \
     FROM targets t LEFT JOIN (SELECT ",
    task_columns!(),
    ", candidate_court_id, candidate_since FROM tasks WHERE ",
    open_status!(),
    ") o ON o.target_id = t.target_id WHERE t.target_id IN "
);

const TASK_INSERT_HEAD: &str = "INSERT INTO tasks (task_id, target_id, kind, status, \
     requesting_court_id, assisting_court_id, routing, distance_km, plate, person_id, cases, \
     sighting, read_plate, fuzzy, substitutions, dispatched_at, ack_by, resolve_by, updated_at)";
const TASK_INSERT_COLS: usize = 19;
const TASK_INSERT_TAIL: &str = concat!(
    "ON CONFLICT (target_id) WHERE ",
    open_status!(),
    " DO NOTHING"
);

const EVENT_INSERT_HEAD: &str = "INSERT INTO task_events (task_id, occurred_at, kind, status, \
     actor, note, sighting, court_id)";
const EVENT_INSERT_COLS: usize = 8;

/// Largest batch whose rows [`write_at_once`] writes: its statement lists (one per count of
/// tasks and of history rows) must fit the statement cache beside the others.
const AT_ONCE_MAX_BATCH: usize = 8;

/// Moves an open task to another court. Conditional on the holder and status read, so a
/// concurrent status report or reassignment makes it a [`StoreError::Conflict`] (the batch is
/// retried and sees the new state).
const TASK_REASSIGN: &str = "UPDATE tasks SET assisting_court_id = $1, routing = $2, \
     distance_km = $3, status = $4, sighting = $5, read_plate = $6, fuzzy = $7, \
     substitutions = $8, dispatched_at = $9, ack_by = $10, resolve_by = $11, \
     acknowledged_at = NULL, ack_escalated_at = NULL, resolve_escalated_at = NULL, \
     candidate_court_id = $12, candidate_since = $13, updated_at = $14 \
     WHERE task_id = $15 AND assisting_court_id = $16 AND status = $17";

/// Records the border candidate; a hint only, so a task that changed meanwhile is left alone.
const TASK_SET_CANDIDATE: &str = concat!(
    "UPDATE tasks SET candidate_court_id = $1, candidate_since = $2, updated_at = $3 \
     WHERE task_id = $4 AND assisting_court_id = $5 AND ",
    open_status!()
);

/// A history row to write.
pub(crate) struct NewEvent<'a> {
    pub task_id: Cow<'a, str>,
    pub at: i64,
    pub kind: TaskEventKind,
    pub status: TaskStatus,
    pub actor: Option<&'a str>,
    pub note: Option<String>,
    pub sighting: Option<String>,
    /// The task's assisting court after the event.
    pub court_id: Option<Cow<'a, str>>,
}

impl Store {
    /// Records a batch of matched sightings in one transaction: one outcome per input, in
    /// order, and every outbox message written, with ids, for immediate publication.
    ///
    /// Per sighting: a `(source, event_id)` seen before is a [`MatchOutcome::Duplicate`];
    /// a target not active in the database is [`MatchOutcome::TargetInactive`]; a target
    /// without an open task whose latest task closed as `not_found` within the policy's
    /// cooldown is a [`MatchOutcome::Cooldown`]; a target with an open task gets a `sighting`
    /// TaskUpdate to that task's assisting court, unless the sighting moves the task to its
    /// own court ([`MatchOutcome::Reassigned`], see [`Policy`]); otherwise a new task goes to
    /// the assisting court (deadlines of that court), with a `target_sighted` Alert to the
    /// requesting court when it is another one. When another replica creates the target's task
    /// first, the sighting becomes an update of that task. The rules are
    /// [`Planner`]'s; this reads what it needs and writes what it plans.
    ///
    /// The messages are in outcome order: `Created` wrote the Task on `tasks(assisting)` and,
    /// when the requesting court is another, the Alert (1 or 2); `Updated` the TaskUpdate on
    /// `updates(holder)` (1); `Reassigned` the Task on `tasks(new)`, the status TaskUpdate on
    /// `updates(from)` and the Alert to the requesting court (3); the others nothing.
    pub async fn record_matches(
        &self,
        batch: &[MatchedSighting],
        deadlines: &Deadlines,
        policy: &Policy,
        topics: &Topics,
        now: DateTime<Utc>,
    ) -> Result<(Vec<MatchOutcome>, Vec<OutboxMessage>), StoreError> {
        if batch.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let now = codec::to_ms_precision(now);
        let now_ms = ms(now);
        let mut clock = StepClock::start();
        let mut tx = self.begin_write().await?;
        clock.lap(CommitStep::Begin);

        // 1. Event ids: the rows not inserted are duplicates (also within the batch).
        let mut first_of: FxHashMap<(&str, &str), usize> =
            FxHashMap::with_capacity_and_hasher(batch.len(), Default::default());
        for (i, m) in batch.iter().enumerate() {
            first_of
                .entry((m.sighting.source.as_str(), m.sighting.event_id.as_str()))
                .or_insert(i);
        }
        let mut keys: Vec<(&str, &str)> = first_of.keys().copied().collect();
        keys.sort_unstable();
        // The history rows' sighting JSON does not depend on the database, so this thread
        // builds it while the database's thread inserts the event ids.
        let (processed, sighting_json) =
            tokio::join!(insert_processed(&mut tx, &keys, now_ms), async {
                batch
                    .iter()
                    .map(|m| codec::to_json(&m.sighting))
                    .collect::<Result<Vec<_>, _>>()
            },);
        let mut sighting_json = sighting_json?;
        let mut fresh = vec![false; batch.len()];
        for (source, event_id) in processed? {
            if let Some(&i) = first_of.get(&(source.as_str(), event_id.as_str())) {
                fresh[i] = true;
            }
        }
        clock.lap(CommitStep::EventIds);

        // 2. The targets of the new sightings, their open tasks and, for those without one,
        // a `not_found` closure within the cooldown.
        let mut target_ids: Vec<&str> = batch
            .iter()
            .zip(&fresh)
            .filter(|&(_, &f)| f)
            .map(|(m, _)| m.target_id.as_str())
            .collect();
        target_ids.sort_unstable();
        target_ids.dedup();
        let cutoff = cooldown_cutoff(policy, now);
        let (read, open_tasks) =
            read_for_dispatch(&mut tx, &target_ids, fresh, now_ms, cutoff).await?;
        clock.lap(CommitStep::Targets);

        // 3. Which sightings create tasks.
        let planner = Planner {
            batch,
            read: &read,
            policy,
            deadlines,
            topics,
            now,
        };
        let draft = planner.draft(&open_tasks);
        let cases_json = new_task_cases(batch, &draft, &read)?;
        clock.lap(CommitStep::Plan);

        // 4. Insert the new tasks; where another replica's open task won, the plan updates
        // that one. On SQLite a small batch (what a latency-bound load makes) writes its rows
        // at the end instead, in one hand-off to the database's thread (see [`write_at_once`]).
        let at_once = tx.dialect() == Dialect::Sqlite && batch.len() <= AT_ONCE_MAX_BATCH;
        let winners = if at_once {
            Vec::new()
        } else {
            insert_new_tasks(&mut tx, &draft.new_tasks, &cases_json, now_ms).await?
        };
        clock.lap(CommitStep::Tasks);

        // 5. The rest of the plan: outcomes, history, messages, changed open tasks. The
        // messages are serialized while the database inserts the history rows.
        let plan = planner.settle(open_tasks, draft, winners);
        let Plan {
            new_tasks,
            outcomes,
            history,
            changes,
            messages,
        } = plan;
        let events: Vec<NewEvent<'_>> = history
            .into_iter()
            .map(|row| NewEvent {
                task_id: Cow::Owned(row.task_id),
                at: now_ms,
                kind: row.kind,
                status: row.status,
                actor: None,
                note: row.note,
                sighting: Some(std::mem::take(&mut sighting_json[row.sighting])),
                court_id: Some(Cow::Owned(row.court_id)),
            })
            .collect();
        let (mut written, to_write) = if at_once {
            let messages = encode(messages, &new_tasks)?;
            let written =
                write_at_once(&mut tx, &new_tasks, &cases_json, &events, messages, now).await?;
            (written, Vec::new())
        } else {
            let (inserted, messages) = tokio::join!(insert_events(&mut tx, &events), async {
                encode(messages, &new_tasks)
            });
            inserted?;
            (Vec::new(), messages?)
        };
        drop(events);
        clock.lap(CommitStep::History);
        update_changed(&mut tx, &changes, now_ms).await?;
        written.extend(outbox::write(&mut tx, to_write, now).await?);
        clock.lap(CommitStep::Outbox);
        tx.commit().await?;
        clock.lap(CommitStep::Commit);
        Ok((outcomes, written))
    }
}

fn encode(messages: Vec<Outgoing>, new_tasks: &[Task]) -> Result<Vec<NewMessage>, StoreError> {
    messages
        .into_iter()
        .map(|m| NewMessage::encode(m, new_tasks))
        .collect()
}

/// Each new task's cases as JSON: the target row's as stored, or the sighting's merged cases.
fn new_task_cases<'r>(
    batch: &[MatchedSighting],
    draft: &Draft,
    read: &'r Read,
) -> Result<Vec<Cow<'r, str>>, StoreError> {
    draft
        .creators()
        .into_iter()
        .zip(&draft.new_tasks)
        .map(|(i, task)| {
            let m = &batch[i];
            Ok(match read.targets.get(&task.target_id) {
                Some(target) if m.cases.is_empty() => Cow::Borrowed(target.cases_json.as_str()),
                _ => Cow::Owned(codec::to_json(&task.cases)?),
            })
        })
        .collect()
}

/// Inserts the new tasks; returns, for each that lost its target's one open task to another
/// replica's, the task that won (by new task index).
async fn insert_new_tasks(
    tx: &mut Tx,
    new_tasks: &[Task],
    cases_json: &[Cow<'_, str>],
    now_ms: i64,
) -> Result<Vec<(usize, OpenTask)>, StoreError> {
    let mut winners = Vec::new();
    if insert_tasks(tx, new_tasks, cases_json, now_ms).await? == new_tasks.len() as u64 {
        return Ok(winners);
    }
    // Rare: ask which targets' open tasks are not ours.
    let ids: Vec<&str> = new_tasks.iter().map(|t| t.target_id.as_str()).collect();
    let mut accounted = 0;
    for winner in load_open_tasks(tx, &ids).await? {
        let Some(k) = new_tasks
            .iter()
            .position(|t| t.target_id == winner.task.target_id)
        else {
            continue;
        };
        accounted += 1;
        if new_tasks[k].task_id != winner.task.task_id {
            winners.push((k, winner));
        }
    }
    if accounted != new_tasks.len() {
        // The winner's task closed before this batch could update it.
        return Err(StoreError::Conflict(
            "a concurrent replica's task for the same target changed meanwhile".into(),
        ));
    }
    Ok(winners)
}

/// Writes the tasks that moved and the border candidates that changed, in the plan's (task
/// id) order, so concurrent batches lock rows in one order.
async fn update_changed(
    tx: &mut Tx,
    changes: &[TaskChange],
    now_ms: i64,
) -> Result<(), StoreError> {
    for change in changes {
        let (cand_court, cand_since) = match &change.candidate {
            Some((c, since)) => (Some(c.as_str()), Some(*since)),
            None => (None, None),
        };
        let t = &change.task;
        if change.reassigned {
            let q = tx
                .query(TASK_REASSIGN)
                .bind(t.assisting_court_id.as_str())
                .bind(codec::name(&t.routing))
                .bind(t.distance_km)
                .bind(t.status.as_str());
            let q = bind_dispatch(q, t)?
                .bind(cand_court)
                .bind(cand_since)
                .bind(now_ms)
                .bind(t.task_id.as_str())
                .bind(change.read_court.as_str())
                .bind(change.read_status.as_str());
            if tx.execute(q).await? == 0 {
                return Err(StoreError::Conflict(format!(
                    "task {} changed while a sighting moved it",
                    t.task_id
                )));
            }
        } else {
            let q = tx
                .query(TASK_SET_CANDIDATE)
                .bind(cand_court)
                .bind(cand_since)
                .bind(now_ms)
                .bind(t.task_id.as_str())
                .bind(change.read_court.as_str());
            tx.execute(q).await?;
        }
    }
    Ok(())
}

/// Times the steps of one group commit into `leadrelay_commit_step_seconds`.
struct StepClock(Instant);

impl StepClock {
    fn start() -> StepClock {
        StepClock(Instant::now())
    }

    /// Records the time since the previous lap (or the start) as `step`'s.
    fn lap(&mut self, step: CommitStep) {
        let now = Instant::now();
        metrics::commit_step(step, now - self.0);
        self.0 = now;
    }
}

/// Inserts the event ids; returns those that were new.
async fn insert_processed(
    tx: &mut Tx,
    keys: &[(&str, &str)],
    now: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut fresh = Vec::with_capacity(keys.len());
    for chunk in db::chunks(keys.len()) {
        let sql = db::values_sql(
            tx.dialect(),
            PROCESSED_INSERT_HEAD,
            3,
            chunk.len(),
            PROCESSED_INSERT_TAIL,
        );
        let mut q = tx.query_generated(sql);
        for (source, event_id) in &keys[chunk] {
            q = q.bind(*source).bind(*event_id).bind(now);
        }
        for row in tx.fetch_all(q).await? {
            fresh.push((row.get("source")?, row.get("event_id")?));
        }
    }
    Ok(fresh)
}

/// Reads the targets by id with their open tasks and recent `not_found` closures (those after
/// `closed_after`, epoch ms), in one statement per chunk: what [`Planner`] needs beside
/// `fresh`. On PostgreSQL the target rows are share-locked until commit, as in
/// [`targets::load_targets`].
async fn read_for_dispatch(
    tx: &mut Tx,
    ids: &[&str],
    fresh: Vec<bool>,
    now: i64,
    closed_after: i64,
) -> Result<(Read, Vec<OpenTask>), StoreError> {
    let mut read = Read {
        fresh,
        targets: FxHashMap::with_capacity_and_hasher(ids.len(), Default::default()),
        cooling: FxHashMap::default(),
    };
    let mut open_tasks = Vec::new();
    let tail = tx.dialect().pick("", " FOR SHARE OF t");
    for chunk in db::chunks(ids.len()) {
        let sql = db::Sql::new(tx.dialect(), DISPATCH_READ_HEAD)
            .param()
            .push(DISPATCH_READ_JOIN)
            .tuple(chunk.len())
            .push(tail)
            .finish();
        let mut q = tx.query_generated(sql).bind(closed_after);
        for id in &ids[chunk] {
            q = q.bind(*id);
        }
        for row in tx.fetch_all(q).await? {
            let target_id: String = row.get("t_target_id")?;
            let target = targets::dispatch_target(&row, &targets::PREFIXED_TARGET_COLUMNS, now)?;
            if target.matchable {
                if row.get::<Option<&str>>("task_id")?.is_some() {
                    open_tasks.push(open_task_from_row(&row)?);
                } else if let Some(task_id) = row.get::<Option<String>>("cooldown_task_id")? {
                    read.cooling.insert(target_id.clone(), task_id);
                }
            }
            read.targets.insert(target_id, target);
        }
    }
    Ok((read, open_tasks))
}

fn open_task_from_row(row: &db::Row) -> Result<OpenTask, StoreError> {
    let court: Option<String> = row.get("candidate_court_id")?;
    let since: Option<i64> = row.get("candidate_since")?;
    Ok(OpenTask {
        task: codec::task_from_row(row)?,
        candidate: court.zip(since),
    })
}

/// The open tasks of these targets (at most one each), with their border candidates.
pub(crate) async fn load_open_tasks(
    tx: &mut Tx,
    target_ids: &[&str],
) -> Result<Vec<OpenTask>, StoreError> {
    let mut out = Vec::new();
    for chunk in db::chunks(target_ids.len()) {
        let sql = db::in_list_sql(tx.dialect(), OPEN_TASKS_HEAD, chunk.len(), "");
        let mut q = tx.query_generated(sql);
        for id in &target_ids[chunk] {
            q = q.bind(*id);
        }
        for row in tx.fetch_all(q).await? {
            out.push(open_task_from_row(&row)?);
        }
    }
    Ok(out)
}

/// Inserts the tasks (in target id order, so replicas cannot deadlock on the unique index);
/// returns how many were inserted. The others lost the race for their target's one open task.
pub(crate) async fn insert_tasks(
    tx: &mut Tx,
    tasks: &[Task],
    cases_json: &[Cow<'_, str>],
    now: i64,
) -> Result<u64, StoreError> {
    let order = target_id_order(tasks);
    let mut inserted = 0;
    for chunk in db::chunks(order.len()) {
        let sql = db::values_sql(
            tx.dialect(),
            TASK_INSERT_HEAD,
            TASK_INSERT_COLS,
            chunk.len(),
            TASK_INSERT_TAIL,
        );
        let mut q = tx.query_generated(sql);
        for &i in &order[chunk] {
            q = bind_task(q, &tasks[i], &cases_json[i], now)?;
        }
        inserted += tx.execute(q).await?;
    }
    Ok(inserted)
}

/// Writes history rows.
pub(crate) async fn insert_events(tx: &mut Tx, events: &[NewEvent<'_>]) -> Result<(), StoreError> {
    for chunk in db::chunks(events.len()) {
        let sql = db::values_sql(
            tx.dialect(),
            EVENT_INSERT_HEAD,
            EVENT_INSERT_COLS,
            chunk.len(),
            "",
        );
        let mut q = tx.query_generated(sql);
        for e in &events[chunk] {
            q = bind_event(q, e);
        }
        tx.execute(q).await?;
    }
    Ok(())
}

/// The tasks' indexes in target id order: the order tasks are inserted in, so replicas
/// cannot deadlock on the unique index of open tasks.
fn target_id_order(tasks: &[Task]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    order.sort_unstable_by(|&a, &b| tasks[a].target_id.cmp(&tasks[b].target_id));
    order
}

/// Binds a task's values in the column order of [`TASK_INSERT_HEAD`].
fn bind_task(q: db::Query, t: &Task, cases_json: &str, now: i64) -> Result<db::Query, StoreError> {
    let q = q
        .bind(t.task_id.as_str())
        .bind(t.target_id.as_str())
        .bind(codec::name(&t.kind))
        .bind(t.status.as_str())
        .bind(t.requesting_court_id.as_str())
        .bind(t.assisting_court_id.as_str())
        .bind(codec::name(&t.routing))
        .bind(t.distance_km)
        .bind(t.plate.as_ref().map(|p| p.as_str().to_string()))
        .bind(t.person_id.as_ref().map(|p| p.as_str().to_string()))
        .bind(cases_json);
    Ok(bind_dispatch(q, t)?.bind(now))
}

/// Binds what a dispatch sets, in the column order both [`TASK_INSERT_HEAD`] and
/// [`TASK_REASSIGN`] use: the sighting, the plate as read, the fuzzy match, the dispatch time
/// and the deadlines.
fn bind_dispatch(q: db::Query, t: &Task) -> Result<db::Query, StoreError> {
    Ok(q.bind(t.sighting.as_ref().map(codec::to_json).transpose()?)
        .bind(t.read_plate.as_ref().map(|p| p.as_str().to_string()))
        .bind(t.fuzzy)
        .bind(i32::from(t.substitutions))
        .bind(ms(t.dispatched_at))
        .bind(ms(t.ack_by))
        .bind(ms(t.resolve_by)))
}

/// Binds a history row's values in the column order of [`EVENT_INSERT_HEAD`].
fn bind_event(q: db::Query, e: &NewEvent<'_>) -> db::Query {
    q.bind(e.task_id.as_ref())
        .bind(e.at)
        .bind(codec::name(&e.kind))
        .bind(e.status.as_str())
        .bind(e.actor)
        .bind(e.note.as_deref())
        .bind(e.sighting.as_deref())
        .bind(e.court_id.as_deref())
}

/// SQLite: writes a small batch's new tasks, history rows and outbox row as one list of
/// statements, one hand-off to the connection's thread instead of three; returns the
/// messages with their ids.
///
/// No task insert can lose the race for its target here: every SQLite write goes through
/// the one writer connection, and this transaction read the targets' open tasks under the
/// write lock it has held since `BEGIN IMMEDIATE`. The row count still checks it.
async fn write_at_once(
    tx: &mut Tx,
    created: &[Task],
    cases_json: &[Cow<'_, str>],
    events: &[NewEvent<'_>],
    messages: Vec<NewMessage>,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxMessage>, StoreError> {
    if created.is_empty() && events.is_empty() && messages.is_empty() {
        return Ok(Vec::new());
    }
    let now_ms = ms(now);
    let mut sql = db::Sql::new(tx.dialect(), "");
    let order = target_id_order(created);
    for chunk in db::chunks(created.len()) {
        sql.push(TASK_INSERT_HEAD)
            .values(TASK_INSERT_COLS, chunk.len())
            .push(" ")
            .push(TASK_INSERT_TAIL)
            .push("; ");
    }
    for chunk in db::chunks(events.len()) {
        sql.push(EVENT_INSERT_HEAD)
            .values(EVENT_INSERT_COLS, chunk.len())
            .push("; ");
    }
    // Last, so the list's last insert rowid is the outbox row's id.
    let with_outbox = !messages.is_empty();
    if with_outbox {
        sql.push(outbox::OUTBOX_INSERT_HEAD)
            .values(outbox::OUTBOX_INSERT_COLS, 1);
    }
    let mut q = tx.query_generated(sql.finish());
    for &i in &order {
        q = bind_task(q, &created[i], &cases_json[i], now_ms)?;
    }
    for e in events {
        q = bind_event(q, e);
    }
    if with_outbox {
        q = outbox::bind_row(q, &messages, now_ms);
    }
    let (rows, row_id) = tx.execute_sqlite_list(q).await?;
    let expected = created.len() + events.len() + usize::from(with_outbox);
    if rows != expected as u64 {
        return Err(StoreError::Conflict(format!(
            "a batch's rows were {rows} written of {expected}: a task lost its target's open-task race"
        )));
    }
    if !with_outbox {
        return Ok(Vec::new());
    }
    outbox::log_events(tx, &messages, now).await?;
    Ok(outbox::with_ids(row_id, messages, now).collect())
}
