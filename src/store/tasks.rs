//! Tasks after dispatch: status reports, withdrawal of targets, and the reads of the API.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::audit::{AuditEntry, AuditResult, insert_audit};
use super::codec::{self, ms, task_columns};
use super::db::Tx;
use super::dispatch::{NewEvent, insert_events, open_status};
use super::outbox::{self, NewMessage};
use super::targets::set_target_status;
use super::{StatusOutcome, Store, StoreError, TaskEvent, TaskEventKind};
use crate::contract::model::TargetStatus;
use crate::contract::task::{OutboxMessage, StatusReport, Task, TaskStatus, Topics};
use crate::dispatch::notify;
use crate::dispatch::workflow::check_transition;

pub(crate) const TASK_BY_ID: &str =
    concat!("SELECT ", task_columns!(), " FROM tasks WHERE task_id = $1");
/// On PostgreSQL the row stays locked until commit; `NO KEY` leaves history inserts (which
/// only key-share the task) unblocked.
pub(crate) const TASK_BY_ID_FOR_UPDATE: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE task_id = $1 FOR NO KEY UPDATE"
);
pub(crate) const OPEN_TASKS_OF_TARGET: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE target_id = $1 AND ",
    open_status!()
);
pub(crate) const OPEN_TASKS_OF_TARGET_FOR_UPDATE: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE target_id = $1 AND ",
    open_status!(),
    " FOR NO KEY UPDATE"
);

impl Store {
    pub async fn get_task(&self, task_id: &str) -> Result<Option<Task>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool.query(TASK_BY_ID).bind(task_id);
        pool.fetch_optional(q)
            .await?
            .map(|row| codec::task_from_row(&row))
            .transpose()
    }

    /// What happened to a task, oldest first (empty for an unknown task).
    pub async fn task_history(&self, task_id: &str) -> Result<Vec<TaskEvent>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool
            .query(
                "SELECT occurred_at, kind, status, actor, note, sighting, court_id FROM task_events \
                 WHERE task_id = $1 ORDER BY id",
            )
            .bind(task_id);
        pool.fetch_all(q)
            .await?
            .iter()
            .map(codec::task_event_from_row)
            .collect()
    }

    /// Tasks, newest first: of a court (assisting or requesting) and/or in a status.
    pub async fn list_tasks(
        &self,
        court_id: Option<&str>,
        status: Option<TaskStatus>,
        limit: i64,
    ) -> Result<Vec<Task>, StoreError> {
        macro_rules! select {
            ($where:literal) => {
                concat!(
                    "SELECT ",
                    task_columns!(),
                    " FROM tasks WHERE ",
                    $where,
                    " ORDER BY dispatched_at DESC, task_id DESC LIMIT $3"
                )
            };
        }
        // One statement per filter combination, so each can use its index; every one binds
        // the same three parameters.
        let sql = match (court_id.is_some(), status.is_some()) {
            (true, true) => {
                select!("(assisting_court_id = $1 OR requesting_court_id = $1) AND status = $2")
            }
            (true, false) => {
                select!("(assisting_court_id = $1 OR requesting_court_id = $1) AND $2 IS NULL")
            }
            (false, true) => select!("$1 IS NULL AND status = $2"),
            (false, false) => select!("$1 IS NULL AND $2 IS NULL"),
        };
        let mut pool = self.pool.clone();
        let q = pool
            .query(sql)
            .bind(court_id)
            .bind(status.map(TaskStatus::as_str))
            .bind(limit);
        pool.fetch_all(q)
            .await?
            .iter()
            .map(codec::task_from_row)
            .collect()
    }

    /// Open tasks per assisting court (for the gauge), by court id.
    pub async fn open_tasks_by_court(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut pool = self.pool.clone();
        // Through the partial index of open tasks: the court index would be read whole, closed
        // tasks and all, and they pile up (60 ms per 10⁶ tasks on SQLite, against 3 ms for
        // 1,000 open ones). SQLite needs telling; PostgreSQL's planner finds it from its stats.
        macro_rules! open_per_court {
            ($index_hint:literal) => {
                concat!(
                    "SELECT assisting_court_id, COUNT(*) AS n FROM tasks ",
                    $index_hint,
                    "WHERE ",
                    open_status!(),
                    " GROUP BY assisting_court_id ORDER BY assisting_court_id"
                )
            };
        }
        let sql = pool.dialect().pick(
            open_per_court!("INDEXED BY tasks_one_open_per_target "),
            open_per_court!(""),
        );
        let q = pool.query(sql);
        pool.fetch_all(q)
            .await?
            .iter()
            .map(|row| Ok((row.get("assisting_court_id")?, row.get::<i64>("n")?)))
            .collect()
    }

    /// Applies a command center's status report, or refuses it (changing nothing) when the
    /// task is unknown, held by another court than `reporting_court`, or the transition makes
    /// no sense. Applied: the new status, its history row, a TaskUpdate to the assisting court
    /// and a `task_status` Alert to the requesting court; `seized` also marks the target seized.
    pub async fn apply_status(
        &self,
        report: &StatusReport,
        reporting_court: Option<&str>,
        topics: &Topics,
        now: DateTime<Utc>,
    ) -> Result<StatusOutcome, StoreError> {
        self.apply_status_audited(report, reporting_court, topics, now, None)
            .await
    }

    /// As [`Store::apply_status`], and writes `audit` (its result and target filled in from
    /// the outcome) in the same transaction: the status path pays one small insert, not a
    /// second commit. A refused report's audit row is committed too.
    pub async fn apply_status_audited(
        &self,
        report: &StatusReport,
        reporting_court: Option<&str>,
        topics: &Topics,
        now: DateTime<Utc>,
        audit: Option<&AuditEntry>,
    ) -> Result<StatusOutcome, StoreError> {
        let now = codec::to_ms_precision(now);
        let mut tx = self.begin_write().await?;
        let outcome = apply_status_in(&mut tx, report, reporting_court, topics, now).await?;
        let Some(audit) = audit else {
            if matches!(outcome, StatusOutcome::Applied { .. }) {
                tx.commit().await?;
            }
            return Ok(outcome);
        };
        let mut entry = audit.clone();
        entry.task_id = Some(report.task_id.clone());
        match &outcome {
            StatusOutcome::Applied { task, .. } => {
                entry.result = AuditResult::Ok;
                entry.target_id = Some(task.target_id.clone());
            }
            StatusOutcome::Refused { reason } => {
                entry.result = AuditResult::Refused;
                entry.detail = Some(reason.clone());
            }
        }
        insert_audit(&mut tx, &entry, ms(now)).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Withdraws a target: status `withdrawn`, every open task `cancelled` (history row,
    /// TaskUpdate to its assisting court, Alert to its requesting court). `None` when the
    /// target is unknown; otherwise the messages written.
    pub async fn withdraw_target(
        &self,
        target_id: &str,
        topics: &Topics,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<OutboxMessage>>, StoreError> {
        let now = codec::to_ms_precision(now);
        let mut tx = self.begin_write().await?;
        if !set_target_status(&mut tx, target_id, TargetStatus::Withdrawn, ms(now)).await? {
            return Ok(None);
        }
        let sql = tx
            .dialect()
            .pick(OPEN_TASKS_OF_TARGET, OPEN_TASKS_OF_TARGET_FOR_UPDATE);
        let q = tx.query(sql).bind(target_id);
        let mut tasks = tx
            .fetch_all(q)
            .await?
            .iter()
            .map(codec::task_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if tasks.is_empty() {
            tx.commit().await?;
            return Ok(Some(Vec::new()));
        }
        let q = tx
            .query(concat!(
                "UPDATE tasks SET status = 'cancelled', resolved_at = $1, updated_at = $1 \
                 WHERE target_id = $2 AND ",
                open_status!()
            ))
            .bind(ms(now))
            .bind(target_id);
        tx.execute(q).await?;
        let note = "target withdrawn";
        let mut messages = Vec::new();
        for task in &mut tasks {
            let previous = task.status;
            task.status = TaskStatus::Cancelled;
            let text = notify::withdrawal_text(task, previous);
            let planned = notify::status_changed(task, None, Some(note), text, now, topics);
            messages.extend(NewMessage::encode_all(planned)?);
        }
        let events: Vec<NewEvent> = tasks
            .iter()
            .map(|t| NewEvent {
                task_id: Cow::Borrowed(&t.task_id),
                at: ms(now),
                kind: TaskEventKind::Status,
                status: TaskStatus::Cancelled,
                actor: None,
                note: Some(note.to_string()),
                sighting: None,
                court_id: Some(Cow::Borrowed(&t.assisting_court_id)),
            })
            .collect();
        insert_events(&mut tx, &events).await?;
        let messages = outbox::write(&mut tx, messages, now).await?;
        tx.commit().await?;
        Ok(Some(messages))
    }
}

/// The checks and writes of a status report inside `tx`; a refusal writes nothing.
async fn apply_status_in(
    tx: &mut Tx,
    report: &StatusReport,
    reporting_court: Option<&str>,
    topics: &Topics,
    now: DateTime<Utc>,
) -> Result<StatusOutcome, StoreError> {
    let at = codec::to_ms_precision(report.at.unwrap_or(now));
    let refused = |reason: String| Ok(StatusOutcome::Refused { reason });
    let sql = tx.dialect().pick(TASK_BY_ID, TASK_BY_ID_FOR_UPDATE);
    let q = tx.query(sql).bind(report.task_id.as_str());
    let Some(row) = tx.fetch_optional(q).await? else {
        return refused(format!("unknown task {}", report.task_id));
    };
    let mut task = codec::task_from_row(&row)?;
    if let Some(court) = reporting_court.filter(|c| *c != task.assisting_court_id) {
        return refused(format!(
            "task {} is held by {}, not {court}",
            task.task_id, task.assisting_court_id
        ));
    }
    let previous = task.status;
    if let Err(e) = check_transition(task.kind, previous, report.status) {
        return refused(e.to_string());
    }
    task.status = report.status;

    let q = tx
        .query(
            "UPDATE tasks SET status = $1, acknowledged_at = COALESCE(acknowledged_at, $2), \
             resolved_at = COALESCE(resolved_at, $3), updated_at = $4 \
             WHERE task_id = $5 AND status = $6",
        )
        .bind(task.status.as_str())
        .bind((previous == TaskStatus::Dispatched).then_some(ms(now)))
        .bind((!task.status.is_open()).then_some(ms(now)))
        .bind(ms(now))
        .bind(task.task_id.as_str())
        .bind(previous.as_str());
    if tx.execute(q).await? == 0 {
        // Cannot happen under the row lock (PostgreSQL) or the write lock (SQLite).
        return Err(StoreError::Conflict(format!(
            "task {} changed while a status report was applied",
            task.task_id
        )));
    }
    let by = Some(report.by.as_str()).filter(|s| !s.is_empty());
    let note = Some(report.note.as_str()).filter(|s| !s.is_empty());
    insert_events(
        tx,
        &[NewEvent {
            task_id: Cow::Borrowed(&task.task_id),
            at: ms(at),
            kind: TaskEventKind::Status,
            status: task.status,
            actor: by,
            note: note.map(str::to_string),
            sighting: None,
            court_id: Some(Cow::Borrowed(&task.assisting_court_id)),
        }],
    )
    .await?;
    if task.status == TaskStatus::Seized {
        set_target_status(tx, &task.target_id, TargetStatus::Seized, ms(now)).await?;
    }
    let text = notify::status_report_text(&task, previous, by);
    let messages = notify::status_changed(&task, by, note, text, at, topics);
    let messages = NewMessage::encode_all(messages)?;
    let messages = outbox::write(tx, messages, now).await?;
    Ok(StatusOutcome::Applied {
        task,
        previous,
        messages,
    })
}
