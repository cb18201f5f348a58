//! The messages leadrelay sends and receives about tasks (docs/contract.md, v1): Task, TaskUpdate,
//! Alert, StatusReport, and the MQTT topic names they travel on.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::model::{Case, Routing, Sighting, TaskKind};
use crate::contract::person_id::PersonId;
use crate::contract::plate::Plate;

/// Where a task stands. Open statuses are `dispatched`, `acknowledged`, `en_route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Dispatched,
    Acknowledged,
    EnRoute,
    Seized,
    Located,
    NotFound,
    Rejected,
    /// The target was withdrawn while the task was open.
    Cancelled,
}

impl TaskStatus {
    pub const OPEN: [TaskStatus; 3] = [
        TaskStatus::Dispatched,
        TaskStatus::Acknowledged,
        TaskStatus::EnRoute,
    ];

    /// The statuses a command center may report (`dispatched` and `cancelled` are the
    /// service's own).
    pub const REPORTABLE: [TaskStatus; 6] = [
        TaskStatus::Acknowledged,
        TaskStatus::EnRoute,
        TaskStatus::Seized,
        TaskStatus::Located,
        TaskStatus::NotFound,
        TaskStatus::Rejected,
    ];

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Dispatched => "dispatched",
            TaskStatus::Acknowledged => "acknowledged",
            TaskStatus::EnRoute => "en_route",
            TaskStatus::Seized => "seized",
            TaskStatus::Located => "located",
            TaskStatus::NotFound => "not_found",
            TaskStatus::Rejected => "rejected",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part of a sighting a task carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SightingRef {
    pub event_id: String,
    pub source: String,
    pub lat: f64,
    pub lon: f64,
    #[serde(serialize_with = "crate::contract::timestamp::serialize")]
    pub observed_at: DateTime<Utc>,
}

impl From<&Sighting> for SightingRef {
    fn from(s: &Sighting) -> Self {
        SightingRef {
            event_id: s.event_id.clone(),
            source: s.source.clone(),
            lat: s.lat,
            lon: s.lon,
            observed_at: s.observed_at,
        }
    }
}

/// An assistance task for a command center.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: String,
    pub kind: TaskKind,
    pub target_id: String,
    pub plate: Option<Plate>,
    pub person_id: Option<PersonId>,
    pub cases: Vec<Case>,
    pub requesting_court_id: String,
    pub assisting_court_id: String,
    pub routing: Routing,
    /// `None` for a `person_search` (a locate request without a sighting).
    pub sighting: Option<SightingRef>,
    pub distance_km: f64,
    #[serde(serialize_with = "crate::contract::timestamp::serialize")]
    pub dispatched_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::contract::timestamp::serialize")]
    pub ack_by: DateTime<Utc>,
    #[serde(serialize_with = "crate::contract::timestamp::serialize")]
    pub resolve_by: DateTime<Utc>,
    pub status: TaskStatus,
    /// Extension: the plate as the camera read it, when it differs from the flagged plate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_plate: Option<Plate>,
    /// Extension: whether the match was fuzzy (OCR confusions), and how many substitutions.
    #[serde(default)]
    pub fuzzy: bool,
    #[serde(default)]
    pub substitutions: u8,
}

/// `sighting` (a newer sighting of the task's target) or `status` (a status change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateKind {
    Sighting,
    Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUpdate {
    pub task_id: String,
    pub update: UpdateKind,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sighting: Option<SightingRef>,
    #[serde(serialize_with = "crate::contract::timestamp::serialize")]
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    TargetSighted,
    TaskStatus,
    Escalated,
    ConsolidationProposed,
}

/// A message to a requesting court about its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub kind: AlertKind,
    pub court_id: String,
    pub target_id: String,
    pub task_id: String,
    pub assisting_court_id: String,
    pub status: TaskStatus,
    #[serde(serialize_with = "crate::contract::timestamp::serialize")]
    pub at: DateTime<Utc>,
    pub text: String,
}

impl Alert {
    /// An alert of `kind` about `task` to its requesting court, stamped with a fresh id.
    pub fn about(task: &Task, kind: AlertKind, text: String, at: DateTime<Utc>) -> Alert {
        Alert {
            alert_id: uuid::Uuid::now_v7().to_string(),
            kind,
            court_id: task.requesting_court_id.clone(),
            target_id: task.target_id.clone(),
            task_id: task.task_id.clone(),
            assisting_court_id: task.assisting_court_id.clone(),
            status: task.status,
            at,
            text,
        }
    }
}

/// A command center's report on a task it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub task_id: String,
    /// One of `acknowledged`, `en_route`, `seized`, `located`, `not_found`, `rejected`.
    pub status: TaskStatus,
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub note: String,
}

/// Longest `note` of a StatusReport, in characters.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// Longest `by` of a StatusReport, in characters.
pub const MAX_BY_CHARS: usize = 200;
/// Longest `task_id` of a StatusReport, in characters (ids we issue are far shorter).
pub const MAX_TASK_ID_CHARS: usize = 200;

/// Bounds on a StatusReport: its text is copied into the TaskUpdate the service publishes,
/// which must stay well inside the largest MQTT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLimits {
    /// How far `at` may lie after our clock (the sightings' `max_future_skew`).
    pub max_future_skew: chrono::Duration,
}

impl Default for StatusLimits {
    fn default() -> Self {
        StatusLimits {
            max_future_skew: chrono::Duration::minutes(5),
        }
    }
}

impl StatusReport {
    /// Checks what serde cannot: lengths, and that `at` is neither ahead of `now` by more than
    /// the allowed skew nor before 2000 (no task can be that old). The error is one sentence
    /// for the dead letter or the HTTP 400.
    pub fn validate(&self, now: DateTime<Utc>, limits: &StatusLimits) -> Result<(), String> {
        let too_long = |s: &str, max: usize| s.len() > max && s.chars().count() > max;
        if self.task_id.is_empty() || too_long(&self.task_id, MAX_TASK_ID_CHARS) {
            return Err(format!(
                "field `task_id` must be 1 to {MAX_TASK_ID_CHARS} characters"
            ));
        }
        if too_long(&self.by, MAX_BY_CHARS) {
            return Err(format!(
                "field `by` is longer than {MAX_BY_CHARS} characters"
            ));
        }
        if too_long(&self.note, MAX_NOTE_CHARS) {
            return Err(format!(
                "field `note` is longer than {MAX_NOTE_CHARS} characters"
            ));
        }
        if let Some(at) = self.at {
            let earliest = DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or_default();
            if at < earliest {
                return Err(format!("field `at` {at} is before 2000-01-01"));
            }
            if let Some(latest) = now.checked_add_signed(limits.max_future_skew) {
                if at > latest {
                    return Err(format!(
                        "field `at` {at} is {}s ahead of our clock; at most {}s is allowed",
                        (at - now).num_seconds(),
                        limits.max_future_skew.num_seconds()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Topic names, with the optional configured prefix (e.g. `prod/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// `prefix` may be empty; a non-empty prefix gets a trailing `/` if it lacks one.
    pub fn new(prefix: &str) -> Topics {
        let prefix = match prefix {
            "" => String::new(),
            p if p.ends_with('/') => p.to_string(),
            p => format!("{p}/"),
        };
        Topics { prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Subscription filter for sightings from every source.
    pub fn sightings_filter(&self) -> String {
        format!("{}sightings/+", self.prefix)
    }

    pub fn sightings(&self, source: &str) -> String {
        format!("{}sightings/{source}", self.prefix)
    }

    /// Subscription filter for status reports from every court.
    pub fn status_filter(&self) -> String {
        format!("{}dispatch/+/status", self.prefix)
    }

    pub fn status(&self, court: &str) -> String {
        format!("{}dispatch/{court}/status", self.prefix)
    }

    pub fn tasks(&self, court: &str) -> String {
        format!("{}dispatch/{court}/tasks", self.prefix)
    }

    pub fn updates(&self, court: &str) -> String {
        format!("{}dispatch/{court}/updates", self.prefix)
    }

    pub fn escalations(&self, court: &str) -> String {
        format!("{}dispatch/{court}/escalations", self.prefix)
    }

    pub fn alerts(&self, court: &str) -> String {
        format!("{}alerts/{court}", self.prefix)
    }

    pub fn deadletter_sightings(&self) -> String {
        format!("{}deadletter/sightings", self.prefix)
    }

    pub fn deadletter_status(&self) -> String {
        format!("{}deadletter/status", self.prefix)
    }

    /// The court of a `dispatch/{court}/status` topic, if it is one.
    pub fn status_court<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("dispatch/")?;
        let court = rest.strip_suffix("/status")?;
        (!court.is_empty() && !court.contains('/')).then_some(court)
    }

    /// The source of a `sightings/{source}` topic, if it is one.
    pub fn sighting_source<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let source = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("sightings/")?;
        (!source.is_empty() && !source.contains('/')).then_some(source)
    }
}

/// What an outgoing message is, so nothing downstream has to parse its topic to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A Task to the court that is to act on it (new, moved or re-routed).
    Task,
    /// A TaskUpdate to the court that holds the task.
    Update,
    /// An Alert to a requesting court or a supervisor.
    Alert,
    /// A Task to a supervising court, because a deadline passed or no court is left.
    Escalation,
    /// An inbound message that could not be used, returned with the reason.
    DeadLetter,
}

impl MessageKind {
    pub const ALL: [MessageKind; 5] = [
        MessageKind::Task,
        MessageKind::Update,
        MessageKind::Alert,
        MessageKind::Escalation,
        MessageKind::DeadLetter,
    ];

    /// A stable name, as the outbox stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Task => "task",
            MessageKind::Update => "update",
            MessageKind::Alert => "alert",
            MessageKind::Escalation => "escalation",
            MessageKind::DeadLetter => "dead_letter",
        }
    }

    pub fn parse(s: &str) -> Option<MessageKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A message waiting in the outbox: written in the same transaction as the change it
/// announces, published until the broker acknowledges it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    pub kind: MessageKind,
    /// The task the message is about, when it is about one.
    pub task_id: Option<String>,
    pub topic: String,
    pub payload: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_with_and_without_prefix() {
        let t = Topics::new("");
        assert_eq!(t.tasks("cixi"), "dispatch/cixi/tasks");
        assert_eq!(t.status_court("dispatch/cixi/status"), Some("cixi"));
        assert_eq!(t.sighting_source("sightings/cam-1"), Some("cam-1"));
        let p = Topics::new("prod");
        assert_eq!(p.alerts("yuyao"), "prod/alerts/yuyao");
        assert_eq!(p.sightings_filter(), "prod/sightings/+");
        assert_eq!(p.status_court("dispatch/cixi/status"), None);
        assert_eq!(p.status_court("prod/dispatch/a/b/status"), None);
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            TaskStatus::Dispatched,
            TaskStatus::EnRoute,
            TaskStatus::NotFound,
            TaskStatus::Cancelled,
        ] {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
        }
        assert!(TaskStatus::EnRoute.is_open() && !TaskStatus::Seized.is_open());
    }

    #[test]
    fn status_reports_are_bounded() {
        let now: DateTime<Utc> = "2026-12-08T00:00:00Z".parse().unwrap();
        let limits = StatusLimits::default();
        let ok = StatusReport {
            task_id: "t-1".into(),
            status: TaskStatus::Acknowledged,
            at: Some(now),
            by: "浙".repeat(MAX_BY_CHARS),
            note: "浙".repeat(MAX_NOTE_CHARS),
        };
        assert_eq!(ok.validate(now, &limits), Ok(()));
        let refused = |change: &dyn Fn(&mut StatusReport), field: &str| {
            let mut r = ok.clone();
            change(&mut r);
            let err = r.validate(now, &limits).unwrap_err();
            assert!(err.contains(field), "{err}");
        };
        refused(&|r| r.note = "x".repeat(2_000_000), "`note`");
        refused(&|r| r.note.push('x'), "`note`");
        refused(&|r| r.by = "x".repeat(100_000), "`by`");
        refused(&|r| r.task_id = String::new(), "`task_id`");
        refused(&|r| r.task_id = "x".repeat(201), "`task_id`");
        refused(
            &|r| r.at = Some("2099-01-01T00:00:00Z".parse().unwrap()),
            "`at`",
        );
        refused(
            &|r| r.at = Some(now + chrono::Duration::seconds(301)),
            "`at`",
        );
        refused(
            &|r| r.at = Some("1999-12-31T23:59:59Z".parse().unwrap()),
            "`at`",
        );
        let mut r = ok.clone();
        r.at = Some(now + chrono::Duration::seconds(300));
        assert_eq!(r.validate(now, &limits), Ok(()));
        r.at = None;
        assert_eq!(r.validate(now, &limits), Ok(()));
    }

    #[test]
    fn message_kinds_round_trip() {
        for k in MessageKind::ALL {
            assert_eq!(MessageKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(MessageKind::parse("tasks"), None);
    }
}
