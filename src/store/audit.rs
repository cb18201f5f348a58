//! The append-only audit log: who read or changed which target or task, when, and with what
//! result. Rows are only inserted; the database itself refuses UPDATE and DELETE of them
//! (triggers of migration 0007), save the deletion of rows older than the retention set in
//! `audit_settings` (none by default).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{self, ms};
use super::db::{Row, Tx};
use super::{Store, StoreError};

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    Ok,
    /// Not allowed, or not possible (another court's task, a bad request, an unknown id).
    Refused,
    /// The service failed (the database, most often).
    Error,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Refused => "refused",
            AuditResult::Error => "error",
        }
    }

    fn parse(s: &str) -> Result<AuditResult, StoreError> {
        match s {
            "ok" => Ok(AuditResult::Ok),
            "refused" => Ok(AuditResult::Refused),
            "error" => Ok(AuditResult::Error),
            other => Err(codec::corrupt("audit result", other)),
        }
    }
}

/// One audited action, as the caller describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The token's name, or `mqtt:{court_id}`.
    pub actor: String,
    /// The token's scope (`admin`, `ops`, `court:{id}`), or `court:{id}` for MQTT.
    pub scope: String,
    /// What was done: `target.get`, `target.put`, `task.status`, ...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub result: AuditResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// Which rows [`Store::audit_log`] returns: every filter given must hold; newest first,
/// below `before_id` (the previous page's last id) when given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub target_id: Option<String>,
    pub task_id: Option<String>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

const INSERT: &str = "INSERT INTO audit_log (at, actor, scope, action, target_id, task_id, result, purpose, detail) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Writes `entry` in `tx`, so it commits (or not) with the change it records.
pub(crate) async fn insert_audit(
    tx: &mut Tx,
    entry: &AuditEntry,
    at_ms: i64,
) -> Result<(), StoreError> {
    let q = bind_entry(tx.query(INSERT), entry, at_ms);
    tx.execute(q).await?;
    Ok(())
}

fn bind_entry(q: super::db::Query, entry: &AuditEntry, at_ms: i64) -> super::db::Query {
    q.bind(at_ms)
        .bind(entry.actor.clone())
        .bind(entry.scope.clone())
        .bind(entry.action.clone())
        .bind(entry.target_id.clone())
        .bind(entry.task_id.clone())
        .bind(entry.result.as_str())
        .bind(entry.purpose.clone())
        .bind(entry.detail.clone())
}

fn record_from_row(row: &Row) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        id: row.get("id")?,
        at: codec::time(row.get("at")?, "audit time")?,
        entry: AuditEntry {
            actor: row.get("actor")?,
            scope: row.get("scope")?,
            action: row.get("action")?,
            target_id: row.get("target_id")?,
            task_id: row.get("task_id")?,
            result: AuditResult::parse(&row.get::<String>("result")?)?,
            purpose: row.get("purpose")?,
            detail: row.get("detail")?,
        },
    })
}

impl Store {
    /// Appends one audit row on its own (an action without a transaction of its own to join).
    pub async fn append_audit(
        &self,
        entry: &AuditEntry,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut pool = self.writer_pool();
        let q = bind_entry(pool.query(INSERT), entry, ms(now));
        pool.execute(q).await?;
        Ok(())
    }

    /// Audit rows matching `filter`, newest first.
    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool
            .query(
                "SELECT id, at, actor, scope, action, target_id, task_id, result, purpose, detail \
                 FROM audit_log \
                 WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR target_id = $2) \
                 AND ($3 IS NULL OR task_id = $3) AND ($4 IS NULL OR at >= $4) \
                 AND ($5 IS NULL OR at < $5) AND ($6 IS NULL OR id < $6) \
                 ORDER BY id DESC LIMIT $7",
            )
            .bind(filter.actor.clone())
            .bind(filter.target_id.clone())
            .bind(filter.task_id.clone())
            .bind(filter.from.map(ms))
            .bind(filter.to.map(ms))
            .bind(filter.before_id)
            .bind(filter.limit);
        pool.fetch_all(q)
            .await?
            .iter()
            .map(record_from_row)
            .collect()
    }
}

/// Audit rows deleted per write.
const AUDIT_PURGE_CHUNK: i64 = 5_000;

impl Store {
    /// Sets the audit retention the database enforces (whole days, at least 30) and deletes the
    /// rows older than it, in chunks. The database's own clock decides what is old (its
    /// trigger refuses anything younger), so the cutoff here is a day inside the retention.
    pub async fn apply_audit_retention(&self, days: u32) -> Result<u64, StoreError> {
        let mut pool = self.writer_pool();
        let q = pool
            .query("UPDATE audit_settings SET retention_days = $1 WHERE id = 1")
            .bind(i64::from(days));
        self.bounded(async { pool.execute(q).await.map_err(StoreError::from) })
            .await?;
        let cutoff = ms(Utc::now()) - (i64::from(days) + 1) * 86_400_000;
        let mut deleted = 0;
        loop {
            let q = pool
                .query(
                    "DELETE FROM audit_log WHERE id IN \
                     (SELECT id FROM audit_log WHERE at < $1 ORDER BY id LIMIT $2)",
                )
                .bind(cutoff)
                .bind(AUDIT_PURGE_CHUNK);
            let n = self
                .bounded(async { pool.execute(q).await.map_err(StoreError::from) })
                .await?;
            deleted += n;
            if n < AUDIT_PURGE_CHUNK as u64 {
                return Ok(deleted);
            }
        }
    }
}
