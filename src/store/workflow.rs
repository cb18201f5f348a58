//! The enforcement workflow beyond "a sighting makes a task": deadlines that escalate once
//! across replicas, rejected tasks re-routed or escalated, consolidation proposals for linked
//! targets, and locate requests (`person_search` tasks without a sighting).
//!
//! Every claim is a conditional statement, so several replicas may call these concurrently:
//! an escalation is claimed by `UPDATE ... WHERE ack_escalated_at IS NULL ...`, a reroute by
//! `UPDATE ... WHERE status = 'rejected'` (and the partial unique index "one open task per
//! target"), a proposal by the primary key of `consolidation_proposals`.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::codec::{self, ms, task_columns};
use super::dispatch::{NewEvent, insert_events, insert_tasks, open_status};
use super::outbox::{self, NewMessage};
use super::targets::load_targets;
use super::tasks::{
    OPEN_TASKS_OF_TARGET, OPEN_TASKS_OF_TARGET_FOR_UPDATE, TASK_BY_ID, TASK_BY_ID_FOR_UPDATE,
};
use super::{Escalation, EscalationKind, SearchOutcome, Store, StoreError, TaskEventKind};
use crate::contract::model::Case;
use crate::contract::task::{OutboxMessage, Task, TaskStatus, Topics};
use crate::dispatch::notify;
use crate::dispatch::policy::Deadlines;
use crate::dispatch::route::RouteDecision;

/// Claims the acknowledgement escalations due at `$1`; each row once, whichever replica runs
/// first (on PostgreSQL a concurrent claimer waits for the row and then finds it claimed).
const CLAIM_ACK: &str = concat!(
    "UPDATE tasks SET ack_escalated_at = $1, escalated_at = $1, updated_at = $1 \
     WHERE status = 'dispatched' AND ack_escalated_at IS NULL AND ack_by <= $1 RETURNING ",
    task_columns!()
);

/// Claims the resolution escalations due at `$1`.
const CLAIM_RESOLVE: &str = concat!(
    "UPDATE tasks SET resolve_escalated_at = $1, escalated_at = $1, updated_at = $1 WHERE ",
    open_status!(),
    " AND resolve_escalated_at IS NULL AND resolve_by <= $1 RETURNING ",
    task_columns!()
);

/// The earliest unclaimed deadline of an open task (predicates as the partial indexes').
const NEXT_DEADLINE: &str = concat!(
    "SELECT MIN(d) AS d FROM (\
     SELECT MIN(ack_by) AS d FROM tasks WHERE status = 'dispatched' AND ack_escalated_at IS NULL \
     UNION ALL SELECT MIN(resolve_by) AS d FROM tasks WHERE ",
    open_status!(),
    " AND resolve_escalated_at IS NULL) AS due"
);

const REROUTE: &str = "UPDATE tasks SET status = 'dispatched', assisting_court_id = $1, \
     routing = $2, distance_km = $3, dispatched_at = $4, ack_by = $5, resolve_by = $6, \
     acknowledged_at = NULL, resolved_at = NULL, ack_escalated_at = NULL, \
     resolve_escalated_at = NULL, candidate_court_id = NULL, candidate_since = NULL, \
     updated_at = $4 WHERE task_id = $7 AND status = 'rejected'";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// Claims and announces every escalation due at `now`: a `dispatched` task past `ack_by`,
    /// an open task past `resolve_by`, each kind once per dispatch of the task (a reassigned or
    /// rerouted task can escalate again), even with several replicas polling concurrently.
    /// Each gets an `escalated` history row, the Task on `dispatch/{supervisor}/escalations`
    /// when the assisting court has a supervisor in `supervisors`, and an `escalated` Alert to
    /// the requesting court. The task's status does not change. Oldest deadline first.
    pub async fn escalate_due(
        &self,
        now: DateTime<Utc>,
        supervisors: &HashMap<String, String>,
        topics: &Topics,
    ) -> Result<(Vec<Escalation>, Vec<OutboxMessage>), StoreError> {
        let now = codec::to_ms_precision(now);
        // Polled often: do not take the write lock when nothing is due.
        if self.next_deadline().await?.is_none_or(|d| d > now) {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut tx = self.begin_write().await?;
        let mut due: Vec<(DateTime<Utc>, EscalationKind, Task)> = Vec::new();
        for (sql, kind) in [
            (CLAIM_ACK, EscalationKind::Ack),
            (CLAIM_RESOLVE, EscalationKind::Resolve),
        ] {
            let q = tx.query(sql).bind(ms(now));
            for row in tx.fetch_all(q).await? {
                let task = codec::task_from_row(&row)?;
                let deadline = match kind {
                    EscalationKind::Ack => task.ack_by,
                    EscalationKind::Resolve => task.resolve_by,
                };
                due.push((deadline, kind, task));
            }
        }
        if due.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        due.sort_by(|a, b| {
            (a.0, &a.2.task_id, a.1 == EscalationKind::Resolve).cmp(&(
                b.0,
                &b.2.task_id,
                b.1 == EscalationKind::Resolve,
            ))
        });
        let mut escalations = Vec::with_capacity(due.len());
        let mut events = Vec::with_capacity(due.len());
        let mut messages = Vec::with_capacity(due.len() * 2);
        for (deadline, kind, task) in due {
            let note = notify::missed_deadline_note(kind == EscalationKind::Ack, deadline);
            let supervisor = supervisors.get(&task.assisting_court_id).cloned();
            events.push(NewEvent {
                task_id: Cow::Owned(task.task_id.clone()),
                at: ms(now),
                kind: TaskEventKind::Escalated,
                status: task.status,
                actor: None,
                note: Some(note.clone()),
                sighting: None,
                court_id: Some(Cow::Owned(task.assisting_court_id.clone())),
            });
            let planned = notify::escalated(&task, supervisor.as_deref(), &note, topics, now);
            messages.extend(NewMessage::encode_all(planned)?);
            escalations.push(Escalation {
                task,
                kind,
                supervisor_court_id: supervisor,
            });
        }
        insert_events(&mut tx, &events).await?;
        let messages = outbox::write(&mut tx, messages, now).await?;
        tx.commit().await?;
        Ok((escalations, messages))
    }

    /// The earliest deadline [`Store::escalate_due`] has yet to claim (`None`: no open task
    /// has one), so a timer can sleep until then (and wake on new tasks).
    pub async fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool.query(NEXT_DEADLINE);
        let Some(row) = pool.fetch_optional(q).await? else {
            return Ok(None);
        };
        codec::opt_time(row.get("d")?, "next deadline")
    }

    /// The courts that reported `rejected` for this task, first rejection first.
    pub async fn rejected_by(&self, task_id: &str) -> Result<Vec<String>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool
            .query(
                "SELECT court_id FROM task_events WHERE task_id = $1 AND kind = 'status' \
                 AND status = 'rejected' AND court_id IS NOT NULL \
                 GROUP BY court_id ORDER BY MIN(id)",
            )
            .bind(task_id);
        pool.fetch_all(q)
            .await?
            .iter()
            .map(|row| Ok(row.get("court_id")?))
            .collect()
    }

    /// Dispatches a `rejected` task again, to `route`'s assisting court (its routing and
    /// distance; the requesting court and kind stay): status `dispatched`, that court's
    /// deadlines from `now`, escalations re-armed, a `rerouted` history row, the Task on the
    /// new court's tasks topic and a `task_status` Alert to the requesting court.
    ///
    /// `None`, changing nothing, when the task is unknown or not `rejected` (another replica
    /// rerouted it first), when its target is no longer active, or when the target meanwhile
    /// has another open task (a newer sighting made one).
    pub async fn reroute(
        &self,
        task_id: &str,
        route: &RouteDecision,
        deadlines: &Deadlines,
        topics: &Topics,
        now: DateTime<Utc>,
    ) -> Result<Option<(Task, Vec<OutboxMessage>)>, StoreError> {
        let now = codec::to_ms_precision(now);
        let mut tx = self.begin_write().await?;
        let sql = tx.dialect().pick(TASK_BY_ID, TASK_BY_ID_FOR_UPDATE);
        let q = tx.query(sql).bind(task_id);
        let Some(row) = tx.fetch_optional(q).await? else {
            return Ok(None);
        };
        let mut task = codec::task_from_row(&row)?;
        if task.status != TaskStatus::Rejected {
            return Ok(None);
        }
        let targets = load_targets(&mut tx, &[task.target_id.as_str()], ms(now)).await?;
        if !targets.get(&task.target_id).is_some_and(|t| t.matchable) {
            return Ok(None);
        }
        let from = task.assisting_court_id.clone();
        let (ack, resolve) = deadlines.for_court(&route.assisting_court_id);
        task.assisting_court_id = route.assisting_court_id.clone();
        task.routing = route.routing;
        task.distance_km = route.distance_km;
        task.status = TaskStatus::Dispatched;
        task.dispatched_at = now;
        task.ack_by = now + ack;
        task.resolve_by = now + resolve;
        let q = tx
            .query(REROUTE)
            .bind(task.assisting_court_id.as_str())
            .bind(codec::name(&task.routing))
            .bind(task.distance_km)
            .bind(ms(now))
            .bind(ms(task.ack_by))
            .bind(ms(task.resolve_by))
            .bind(task.task_id.as_str());
        match tx.execute(q).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            // The target has another open task; the transaction rolls back on drop.
            Err(e) if is_unique_violation(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let to = task.assisting_court_id.clone();
        insert_events(
            &mut tx,
            &[NewEvent {
                task_id: Cow::Borrowed(&task.task_id),
                at: ms(now),
                kind: TaskEventKind::Rerouted,
                status: task.status,
                actor: None,
                note: Some(format!("from {from} to {to}")),
                sighting: None,
                court_id: Some(Cow::Borrowed(&to)),
            }],
        )
        .await?;
        let name = targets.get(&task.target_id).and_then(|t| t.name.as_deref());
        let planned = notify::rerouted(&task, &from, name, topics, now);
        let messages = NewMessage::encode_all(planned)?;
        let messages = outbox::write(&mut tx, messages, now).await?;
        tx.commit().await?;
        Ok(Some((task, messages)))
    }

    /// Escalates a task by hand (no court is left after rejections): an `escalated` history
    /// row with `reason`, the Task on `dispatch/{supervisor}/escalations` when a supervisor is
    /// given, and an `escalated` Alert to the requesting court. The status does not change.
    /// Empty for an unknown task.
    pub async fn escalate_task(
        &self,
        task_id: &str,
        supervisor: Option<&str>,
        reason: &str,
        topics: &Topics,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let now = codec::to_ms_precision(now);
        let mut tx = self.begin_write().await?;
        let sql = tx.dialect().pick(TASK_BY_ID, TASK_BY_ID_FOR_UPDATE);
        let q = tx.query(sql).bind(task_id);
        let Some(row) = tx.fetch_optional(q).await? else {
            return Ok(Vec::new());
        };
        let task = codec::task_from_row(&row)?;
        let q = tx
            .query("UPDATE tasks SET escalated_at = $1, updated_at = $1 WHERE task_id = $2")
            .bind(ms(now))
            .bind(task_id);
        tx.execute(q).await?;
        insert_events(
            &mut tx,
            &[NewEvent {
                task_id: Cow::Borrowed(&task.task_id),
                at: ms(now),
                kind: TaskEventKind::Escalated,
                status: task.status,
                actor: None,
                note: Some(reason.to_string()),
                sighting: None,
                court_id: Some(Cow::Borrowed(&task.assisting_court_id)),
            }],
        )
        .await?;
        let planned = notify::escalated(&task, supervisor, reason, topics, now);
        let messages = NewMessage::encode_all(planned)?;
        let messages = outbox::write(&mut tx, messages, now).await?;
        tx.commit().await?;
        Ok(messages)
    }

    /// Records that the targets under `link_key` (share a plate or identity number, cases at
    /// `court_ids`) were found linked, once per key across replicas. The first time, and when
    /// a `supervisor` is given, it gets a `consolidation_proposed` Alert naming the targets,
    /// the courts and the proposed lead court. Returns the messages written (empty when the
    /// link was proposed before, or there is no supervisor).
    #[allow(clippy::too_many_arguments)]
    pub async fn propose_consolidation(
        &self,
        link_key: &str,
        target_ids: &[String],
        court_ids: &[String],
        lead_court_id: Option<&str>,
        supervisor: Option<&str>,
        topics: &Topics,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let now = codec::to_ms_precision(now);
        let mut tx = self.begin_write().await?;
        let q = tx
            .query(
                "INSERT INTO consolidation_proposals (link_key, target_ids, court_ids, \
                 lead_court_id, supervisor_court_id, proposed_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (link_key) DO NOTHING",
            )
            .bind(link_key)
            .bind(codec::to_json(target_ids)?)
            .bind(codec::to_json(court_ids)?)
            .bind(lead_court_id)
            .bind(supervisor)
            .bind(ms(now));
        if tx.execute(q).await? == 0 {
            return Ok(Vec::new());
        }
        let Some(supervisor) = supervisor else {
            tx.commit().await?;
            return Ok(Vec::new());
        };
        let proposal = notify::consolidation_proposed(
            target_ids,
            court_ids,
            lead_court_id,
            supervisor,
            topics,
            now,
        );
        let messages = NewMessage::encode_all(vec![proposal])?;
        let messages = outbox::write(&mut tx, messages, now).await?;
        tx.commit().await?;
        Ok(messages)
    }

    /// A locate request: a task of `route.kind` (`person_search`) without a sighting for an
    /// active target, to `route`'s assisting court with its deadlines, carrying `cases` (the
    /// target's own when empty). One open task per target holds here too: when the target has
    /// one (of any kind), that task is returned instead. Created: a `created` history row, the
    /// Task on the court's tasks topic, and a `target_sighted` Alert to the requesting court
    /// when it is another court.
    pub async fn create_search_task(
        &self,
        target_id: &str,
        cases: &[Case],
        route: &RouteDecision,
        deadlines: &Deadlines,
        topics: &Topics,
        now: DateTime<Utc>,
    ) -> Result<SearchOutcome, StoreError> {
        let now = codec::to_ms_precision(now);
        let mut tx = self.begin_write().await?;
        let targets = load_targets(&mut tx, &[target_id], ms(now)).await?;
        let Some(target) = targets.get(target_id).filter(|t| t.matchable) else {
            return Ok(SearchOutcome::TargetInactive);
        };
        if let Some(open) = open_task_of(&mut tx, target_id).await? {
            return Ok(SearchOutcome::AlreadyOpen(open));
        }
        let (ack, resolve) = deadlines.for_court(&route.assisting_court_id);
        let task = Task {
            task_id: Uuid::now_v7().to_string(),
            kind: route.kind,
            target_id: target_id.to_string(),
            plate: target.plate,
            person_id: target.person_id,
            cases: if cases.is_empty() {
                target.cases.clone()
            } else {
                cases.to_vec()
            },
            requesting_court_id: route.requesting_court_id.clone(),
            assisting_court_id: route.assisting_court_id.clone(),
            routing: route.routing,
            sighting: None,
            distance_km: route.distance_km,
            dispatched_at: now,
            ack_by: now + ack,
            resolve_by: now + resolve,
            status: TaskStatus::Dispatched,
            read_plate: None,
            fuzzy: false,
            substitutions: 0,
        };
        let cases_json = codec::to_json(&task.cases)?;
        if insert_tasks(
            &mut tx,
            std::slice::from_ref(&task),
            &[Cow::Borrowed(cases_json.as_str())],
            ms(now),
        )
        .await?
            == 0
        {
            // Another replica's sighting or request won the target's one open task.
            return match open_task_of(&mut tx, target_id).await? {
                Some(open) => Ok(SearchOutcome::AlreadyOpen(open)),
                None => Err(StoreError::Conflict(format!(
                    "the open task of target {target_id} closed while a locate request was made"
                ))),
            };
        }
        insert_events(
            &mut tx,
            &[NewEvent {
                task_id: Cow::Borrowed(&task.task_id),
                at: ms(now),
                kind: TaskEventKind::Created,
                status: task.status,
                actor: None,
                note: Some("locate request".to_string()),
                sighting: None,
                court_id: Some(Cow::Borrowed(&task.assisting_court_id)),
            }],
        )
        .await?;
        let planned = notify::search_created(&task, target.name.as_deref(), topics, now);
        let messages = NewMessage::encode_all(planned)?;
        let messages = outbox::write(&mut tx, messages, now).await?;
        tx.commit().await?;
        Ok(SearchOutcome::Created(task, messages))
    }
}

/// The target's open task, row-locked on PostgreSQL.
async fn open_task_of(tx: &mut super::db::Tx, target_id: &str) -> Result<Option<Task>, StoreError> {
    let sql = tx
        .dialect()
        .pick(OPEN_TASKS_OF_TARGET, OPEN_TASKS_OF_TARGET_FOR_UPDATE);
    let q = tx.query(sql).bind(target_id);
    tx.fetch_optional(q)
        .await?
        .map(|row| codec::task_from_row(&row))
        .transpose()
}
