//! Group commit of matched sightings: new tasks, updates of open tasks, processed event ids
//! and the outbox, for a whole batch in one transaction.
//!
//! The batch costs a fixed handful of multi-row statements whatever its length: insert the
//! event ids (the conflicts are the duplicates), read the targets, read their open tasks,
//! insert the new tasks, insert the history rows, insert the outbox rows. Nothing just written
//! is read back.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::codec::{self, ms};
use super::db::{self, Tx};
use super::outbox::{self, NewMessage};
use super::{Deadlines, MatchOutcome, MatchedSighting, Store, StoreError, TaskEventKind};
use crate::model::{Case, Routing, TargetStatus, TaskKind};
use crate::person_id::PersonId;
use crate::plate::Plate;
use crate::task::{
    Alert, AlertKind, OutboxMessage, SightingRef, Task, TaskStatus, TaskUpdate, Topics, UpdateKind,
};

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

const TARGETS_LOAD_HEAD: &str = "SELECT target_id, plate, person_id, name, status, cases, \
     valid_until FROM targets WHERE target_id IN";

const OPEN_TASKS_HEAD: &str = concat!(
    "SELECT task_id, target_id, assisting_court_id, status FROM tasks WHERE ",
    open_status!(),
    " AND target_id IN"
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

const EVENT_INSERT_HEAD: &str =
    "INSERT INTO task_events (task_id, occurred_at, kind, status, actor, note, sighting)";
const EVENT_INSERT_COLS: usize = 7;

/// A target as the dispatcher needs it.
struct TargetRow {
    plate: Option<Plate>,
    person_id: Option<PersonId>,
    name: Option<String>,
    /// As stored; copied into the task row verbatim.
    cases_json: String,
    cases: Vec<Case>,
    matchable: bool,
}

/// An open task of a target.
#[derive(Clone)]
pub(crate) struct OpenTask {
    pub task_id: String,
    pub target_id: String,
    pub assisting_court_id: String,
    pub status: TaskStatus,
}

/// Where the target of an item stands once the batch is planned.
#[derive(Clone, Copy)]
enum Open {
    /// It had an open task before this batch: index into `existing`.
    Existing(usize),
    /// An item of this batch creates its task: index into `created`.
    New(usize),
}

enum Plan {
    Duplicate,
    Inactive,
    /// Creates task `created[k]` (if the insert wins the race).
    Create(usize),
    /// Updates the target's open task.
    Update,
}

/// A history row to write.
pub(crate) struct NewEvent<'a> {
    pub task_id: &'a str,
    pub at: i64,
    pub kind: TaskEventKind,
    pub status: TaskStatus,
    pub actor: Option<&'a str>,
    pub note: Option<&'a str>,
    pub sighting: Option<String>,
}

impl Store {
    /// Records a batch of matched sightings in one transaction: one outcome per input, in
    /// order, and every outbox message written, with ids, for immediate publication.
    ///
    /// Per sighting: a `(source, event_id)` seen before is a [`MatchOutcome::Duplicate`];
    /// a target not active in the database is [`MatchOutcome::TargetInactive`]; a target with
    /// an open task gets a `sighting` TaskUpdate to that task's assisting court; otherwise a
    /// new task goes to the assisting court, with a `target_sighted` Alert to the requesting
    /// court when it is another one. When another replica creates the target's task first,
    /// the sighting becomes an update of that task.
    pub async fn record_matches(
        &self,
        batch: &[MatchedSighting],
        deadlines: &Deadlines,
        topics: &Topics,
        now: DateTime<Utc>,
    ) -> Result<(Vec<MatchOutcome>, Vec<OutboxMessage>), StoreError> {
        if batch.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let now = codec::to_ms_precision(now);
        let now_ms = ms(now);
        let mut tx = self.pool.begin_write().await?;

        // 1. Event ids: the rows not inserted are duplicates (also within the batch).
        let mut first_of: HashMap<(&str, &str), usize> = HashMap::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            first_of
                .entry((m.sighting.source.as_str(), m.sighting.event_id.as_str()))
                .or_insert(i);
        }
        let mut keys: Vec<(&str, &str)> = first_of.keys().copied().collect();
        // A fixed order, so replicas inserting overlapping keys cannot deadlock.
        keys.sort_unstable();
        let mut fresh = vec![false; batch.len()];
        for (source, event_id) in insert_processed(&mut tx, &keys, now_ms).await? {
            if let Some(&i) = first_of.get(&(source.as_str(), event_id.as_str())) {
                fresh[i] = true;
            }
        }
        let is_new = |i: usize| fresh[i];

        // 2. The targets of the new sightings.
        let mut target_ids: Vec<&str> = batch
            .iter()
            .enumerate()
            .filter(|&(i, _)| is_new(i))
            .map(|(_, m)| m.target_id.as_str())
            .collect();
        target_ids.sort_unstable();
        target_ids.dedup();
        let targets = load_targets(&mut tx, &target_ids, now_ms).await?;

        // 3. Their open tasks.
        let active: Vec<&str> = target_ids
            .iter()
            .copied()
            .filter(|id| targets.get(*id).is_some_and(|t| t.matchable))
            .collect();
        let mut existing: Vec<OpenTask> = load_open_tasks(&mut tx, &active).await?;
        let mut open: HashMap<String, Open> = existing
            .iter()
            .enumerate()
            .map(|(k, t)| (t.target_id.clone(), Open::Existing(k)))
            .collect();

        // 4. Plan each item in order: the first sighting of a target without an open task
        // creates one, later ones update it.
        let mut created: Vec<Task> = Vec::new();
        let mut cases_json: Vec<&str> = Vec::new();
        let mut plans = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            if !is_new(i) {
                plans.push(Plan::Duplicate);
                continue;
            }
            let Some(target) = targets.get(m.target_id.as_str()).filter(|t| t.matchable) else {
                plans.push(Plan::Inactive);
                continue;
            };
            if open.contains_key(&m.target_id) {
                plans.push(Plan::Update);
                continue;
            }
            let task = new_task(m, target, deadlines, now);
            open.insert(m.target_id.clone(), Open::New(created.len()));
            plans.push(Plan::Create(created.len()));
            created.push(task);
            cases_json.push(&target.cases_json);
        }

        // 5. Insert the new tasks; where another replica's open task won, update that one.
        let mut inserted = vec![true; created.len()];
        if insert_tasks(&mut tx, &created, &cases_json, now_ms).await? < created.len() as u64 {
            // Rare: ask which targets' open tasks are not ours.
            let ids: Vec<&str> = created.iter().map(|t| t.target_id.as_str()).collect();
            let mut accounted = 0;
            for open_task in load_open_tasks(&mut tx, &ids).await? {
                let Some(Open::New(k)) = open.get(&open_task.target_id).copied() else {
                    continue;
                };
                accounted += 1;
                if created[k].task_id != open_task.task_id {
                    inserted[k] = false;
                    open.insert(open_task.target_id.clone(), Open::Existing(existing.len()));
                    existing.push(open_task);
                }
            }
            if accounted != created.len() {
                // The winner's task closed before this batch could update it.
                return Err(StoreError::Conflict(
                    "a concurrent replica's task for the same target changed meanwhile".into(),
                ));
            }
        }

        // 6. Outcomes, history and messages, in batch order.
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len() * 2);
        for (m, plan) in batch.iter().zip(&plans) {
            match *plan {
                Plan::Duplicate => outcomes.push(MatchOutcome::Duplicate),
                Plan::Inactive => outcomes.push(MatchOutcome::TargetInactive),
                Plan::Create(k) if inserted[k] => {
                    let task = &created[k];
                    let target = &targets[m.target_id.as_str()];
                    events.push(NewEvent {
                        task_id: &task.task_id,
                        at: now_ms,
                        kind: TaskEventKind::Created,
                        status: TaskStatus::Dispatched,
                        actor: None,
                        note: None,
                        sighting: Some(codec::to_json(&m.sighting)?),
                    });
                    messages.push(NewMessage::json(
                        topics.tasks(&task.assisting_court_id),
                        task,
                    )?);
                    if task.requesting_court_id != task.assisting_court_id {
                        let alert = sighted_alert(task, target.name.as_deref(), now);
                        messages.push(NewMessage::json(topics.alerts(&alert.court_id), &alert)?);
                    }
                    outcomes.push(MatchOutcome::Created(task.clone()));
                }
                Plan::Create(_) | Plan::Update => {
                    let (task_id, assisting, status) = match open[&m.target_id] {
                        Open::Existing(k) => {
                            let t = &existing[k];
                            (&t.task_id, &t.assisting_court_id, t.status)
                        }
                        Open::New(k) => {
                            let t = &created[k];
                            (&t.task_id, &t.assisting_court_id, t.status)
                        }
                    };
                    events.push(NewEvent {
                        task_id,
                        at: now_ms,
                        kind: TaskEventKind::Sighting,
                        status,
                        actor: None,
                        note: None,
                        sighting: Some(codec::to_json(&m.sighting)?),
                    });
                    let update = TaskUpdate {
                        task_id: task_id.clone(),
                        update: UpdateKind::Sighting,
                        status,
                        sighting: Some(SightingRef::from(&m.sighting)),
                        at: now,
                        by: None,
                        note: None,
                    };
                    messages.push(NewMessage::json(topics.updates(assisting), &update)?);
                    outcomes.push(MatchOutcome::Updated {
                        task_id: task_id.clone(),
                        assisting_court_id: assisting.clone(),
                    });
                }
            }
        }
        insert_events(&mut tx, &events).await?;
        let written = outbox::write(&mut tx, messages, now).await?;
        tx.commit().await?;
        Ok((outcomes, written))
    }
}

fn new_task(
    m: &MatchedSighting,
    target: &TargetRow,
    deadlines: &Deadlines,
    now: DateTime<Utc>,
) -> Task {
    Task {
        task_id: Uuid::now_v7().to_string(),
        kind: m.route.kind,
        target_id: m.target_id.clone(),
        plate: target.plate,
        person_id: target.person_id,
        cases: target.cases.clone(),
        requesting_court_id: m.route.requesting_court_id.clone(),
        assisting_court_id: m.route.assisting_court_id.clone(),
        routing: m.route.routing,
        sighting: Some(SightingRef::from(&m.sighting)),
        distance_km: m.route.distance_km,
        dispatched_at: now,
        ack_by: now + deadlines.ack,
        resolve_by: now + deadlines.resolve,
        status: TaskStatus::Dispatched,
        read_plate: m.read_plate,
        fuzzy: m.fuzzy,
        substitutions: m.substitutions,
    }
}

/// How alerts name a target: the plate for vehicles, the name (never the identity number)
/// for persons, and the target id.
pub(crate) fn subject(
    kind: TaskKind,
    plate: Option<&Plate>,
    name: Option<&str>,
    target_id: &str,
) -> String {
    match (kind, plate, name) {
        (TaskKind::VehicleSeizure, Some(p), _) => format!("Vehicle {p} ({target_id})"),
        (TaskKind::VehicleSeizure, None, _) => format!("Vehicle {target_id}"),
        (_, _, Some(n)) if !n.is_empty() => format!("Person {n} ({target_id})"),
        _ => format!("Person {target_id}"),
    }
}

fn sighted_alert(task: &Task, name: Option<&str>, now: DateTime<Utc>) -> Alert {
    let who = subject(task.kind, task.plate.as_ref(), name, &task.target_id);
    let to = &task.assisting_court_id;
    let text = match task.routing {
        Routing::NearestCourt => format!(
            "{who} seen outside every participating court's area; task sent to the nearest \
             court, {to} ({:.1} km away)",
            task.distance_km
        ),
        Routing::OwnJurisdiction | Routing::InJurisdiction => {
            format!("{who} seen in {to}'s area; task sent to {to}")
        }
    };
    Alert {
        alert_id: Uuid::now_v7().to_string(),
        kind: AlertKind::TargetSighted,
        court_id: task.requesting_court_id.clone(),
        target_id: task.target_id.clone(),
        task_id: task.task_id.clone(),
        assisting_court_id: to.clone(),
        status: task.status,
        at: now,
        text,
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

/// Reads the targets by id. On PostgreSQL the rows are share-locked until commit, so a
/// concurrent withdrawal either happens before (and is seen) or waits for this batch (and
/// then cancels the tasks it created).
async fn load_targets(
    tx: &mut Tx,
    ids: &[&str],
    now: i64,
) -> Result<HashMap<String, TargetRow>, StoreError> {
    let mut out = HashMap::with_capacity(ids.len());
    let tail = tx.dialect().pick("", "FOR SHARE");
    for chunk in db::chunks(ids.len()) {
        let sql = db::in_list_sql(tx.dialect(), TARGETS_LOAD_HEAD, chunk.len(), tail);
        let mut q = tx.query_generated(sql);
        for id in &ids[chunk] {
            q = q.bind(*id);
        }
        for row in tx.fetch_all(q).await? {
            let status: TargetStatus = codec::parse_name(row.get("status")?, "target status")?;
            let valid_until: Option<i64> = row.get("valid_until")?;
            let cases_json: String = row.get("cases")?;
            let target = TargetRow {
                plate: codec::plate(row.get("plate")?)?,
                person_id: codec::person_id(row.get("person_id")?)?,
                name: row.get("name")?,
                cases: codec::from_json(&cases_json, "target cases")?,
                cases_json,
                matchable: status == TargetStatus::Active && valid_until.is_none_or(|u| now < u),
            };
            out.insert(row.get("target_id")?, target);
        }
    }
    Ok(out)
}

/// The open tasks of these targets (at most one each).
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
            out.push(OpenTask {
                task_id: row.get("task_id")?,
                target_id: row.get("target_id")?,
                assisting_court_id: row.get("assisting_court_id")?,
                status: codec::status(row.get("status")?)?,
            });
        }
    }
    Ok(out)
}

/// Inserts the tasks (in target id order, so replicas cannot deadlock on the unique index);
/// returns how many were inserted. The others lost the race for their target's one open task.
async fn insert_tasks(
    tx: &mut Tx,
    tasks: &[Task],
    cases_json: &[&str],
    now: i64,
) -> Result<u64, StoreError> {
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    order.sort_unstable_by(|&a, &b| tasks[a].target_id.cmp(&tasks[b].target_id));
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
            let t = &tasks[i];
            q = q
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
                .bind(cases_json[i])
                .bind(t.sighting.as_ref().map(codec::to_json).transpose()?)
                .bind(t.read_plate.as_ref().map(|p| p.as_str().to_string()))
                .bind(t.fuzzy)
                .bind(i32::from(t.substitutions))
                .bind(ms(t.dispatched_at))
                .bind(ms(t.ack_by))
                .bind(ms(t.resolve_by))
                .bind(now);
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
            q = q
                .bind(e.task_id)
                .bind(e.at)
                .bind(codec::name(&e.kind))
                .bind(e.status.as_str())
                .bind(e.actor)
                .bind(e.note)
                .bind(e.sighting.as_deref());
        }
        tx.execute(q).await?;
    }
    Ok(())
}
