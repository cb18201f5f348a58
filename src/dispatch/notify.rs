//! What the courts are told about a change: each message's kind, topic and body, and the
//! wording of the alerts. Pure: the store serializes what these return and writes it to the
//! outbox in the transaction of the change.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::contract::model::{Routing, Sighting, TaskKind};
use crate::contract::plate::Plate;
use crate::contract::task::{
    Alert, AlertKind, MessageKind, SightingRef, Task, TaskStatus, TaskUpdate, Topics, UpdateKind,
};

/// What a message carries.
#[allow(clippy::large_enum_variant)] // one per message, serialized at once
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// The task planned as new task `k` of the batch (see [`Outgoing::task_id`]); the
    /// planner holds the task once instead of a copy per message.
    NewTask(usize),
    Task(Task),
    Update(TaskUpdate),
    Alert(Alert),
}

/// A message to send: its kind, its topic and what it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub kind: MessageKind,
    pub topic: String,
    pub body: Body,
}

impl Outgoing {
    /// The task the message is about (`new_tasks` resolves [`Body::NewTask`]); `None` for an
    /// alert about no task (a consolidation proposal).
    pub fn task_id<'a>(&'a self, new_tasks: &'a [Task]) -> Option<&'a str> {
        let id = match &self.body {
            Body::NewTask(k) => new_tasks.get(*k).map(|t| t.task_id.as_str()),
            Body::Task(task) => Some(task.task_id.as_str()),
            Body::Update(update) => Some(update.task_id.as_str()),
            Body::Alert(alert) => Some(alert.task_id.as_str()),
        };
        id.filter(|id| !id.is_empty())
    }

    fn alert(topics: &Topics, alert: Alert) -> Outgoing {
        Outgoing {
            kind: MessageKind::Alert,
            topic: topics.alerts(&alert.court_id),
            body: Body::Alert(alert),
        }
    }

    fn update(topics: &Topics, court: &str, update: TaskUpdate) -> Outgoing {
        Outgoing {
            kind: MessageKind::Update,
            topic: topics.updates(court),
            body: Body::Update(update),
        }
    }

    fn task(topics: &Topics, task: &Task) -> Outgoing {
        Outgoing {
            kind: MessageKind::Task,
            topic: topics.tasks(&task.assisting_court_id),
            body: Body::Task(task.clone()),
        }
    }
}

/// How alerts name a target: the plate for vehicles, the name (never the identity number)
/// for persons, and the target id.
pub fn subject(
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

fn subject_of(task: &Task, name: Option<&str>) -> String {
    subject(task.kind, task.plate.as_ref(), name, &task.target_id)
}

/// New task `k` (`task`): the Task to its assisting court and, when the requesting court is
/// another, the `target_sighted` Alert to that one.
pub fn created(
    k: usize,
    task: &Task,
    name: Option<&str>,
    topics: &Topics,
    now: DateTime<Utc>,
) -> Vec<Outgoing> {
    let mut out = Vec::with_capacity(2);
    out.push(Outgoing {
        kind: MessageKind::Task,
        topic: topics.tasks(&task.assisting_court_id),
        body: Body::NewTask(k),
    });
    if task.requesting_court_id != task.assisting_court_id {
        out.push(Outgoing::alert(topics, sighted_alert(task, name, now)));
    }
    out
}

/// The `target_sighted` Alert of a new task: where the target was seen and who got the task.
pub fn sighted_alert(task: &Task, name: Option<&str>, now: DateTime<Utc>) -> Alert {
    let who = subject_of(task, name);
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
    Alert::about(task, AlertKind::TargetSighted, text, now)
}

/// A newer sighting of an open task's target: a `sighting` TaskUpdate to its holder.
pub fn sighted_again(
    task: &Task,
    sighting: &Sighting,
    topics: &Topics,
    now: DateTime<Utc>,
) -> Outgoing {
    let update = TaskUpdate {
        task_id: task.task_id.clone(),
        update: UpdateKind::Sighting,
        status: task.status,
        sighting: Some(SightingRef::from(sighting)),
        at: now,
        by: None,
        note: None,
    };
    Outgoing::update(topics, &task.assisting_court_id, update)
}

/// A task moved by a sighting: the Task to its new court, a status TaskUpdate to the court
/// that held it (so it stops), a `task_status` Alert to the requesting court.
pub fn reassigned(
    task: &Task,
    from: &str,
    name: Option<&str>,
    topics: &Topics,
    now: DateTime<Utc>,
) -> Vec<Outgoing> {
    let to = &task.assisting_court_id;
    let update = TaskUpdate {
        task_id: task.task_id.clone(),
        update: UpdateKind::Status,
        status: task.status,
        sighting: task.sighting.clone(),
        at: now,
        by: None,
        note: Some(format!("reassigned to {to}")),
    };
    let text = format!(
        "{} is now seen in {to}'s area; task {} moved from {from} to {to}",
        subject_of(task, name),
        task.task_id
    );
    vec![
        Outgoing::task(topics, task),
        Outgoing::update(topics, from, update),
        Outgoing::alert(topics, Alert::about(task, AlertKind::TaskStatus, text, now)),
    ]
}

/// The TaskUpdate to the assisting court and the `task_status` Alert (saying `text`) to the
/// requesting court announcing `task`'s (new) status.
pub fn status_changed(
    task: &Task,
    by: Option<&str>,
    note: Option<&str>,
    text: String,
    at: DateTime<Utc>,
    topics: &Topics,
) -> Vec<Outgoing> {
    let update = TaskUpdate {
        task_id: task.task_id.clone(),
        update: UpdateKind::Status,
        status: task.status,
        sighting: None,
        at,
        by: by.map(str::to_string),
        note: note.map(str::to_string),
    };
    vec![
        Outgoing::update(topics, &task.assisting_court_id, update),
        Outgoing::alert(topics, Alert::about(task, AlertKind::TaskStatus, text, at)),
    ]
}

/// The alert text of a status a command center reported.
pub fn status_report_text(task: &Task, previous: TaskStatus, by: Option<&str>) -> String {
    let by_text = by.map(|b| format!(", reported by {b}")).unwrap_or_default();
    format!(
        "{}: task {} at {} is now {} (was {previous}){by_text}",
        subject_of(task, None),
        task.task_id,
        task.assisting_court_id,
        task.status,
    )
}

/// The alert text of a task cancelled because its target was withdrawn.
pub fn withdrawal_text(task: &Task, previous: TaskStatus) -> String {
    format!(
        "{}: task {} at {} was cancelled (was {previous}) because the target was withdrawn",
        subject_of(task, None),
        task.task_id,
        task.assisting_court_id,
    )
}

/// A rejected task dispatched again (from `from`): the Task to its new court and a
/// `task_status` Alert to the requesting court.
pub fn rerouted(
    task: &Task,
    from: &str,
    name: Option<&str>,
    topics: &Topics,
    now: DateTime<Utc>,
) -> Vec<Outgoing> {
    let who = subject_of(task, name);
    let to = &task.assisting_court_id;
    let text = match task.routing {
        Routing::NearestCourt => format!(
            "{who}: task {} was rejected by {from}; re-routed to the nearest remaining \
             court, {to} ({:.1} km away)",
            task.task_id, task.distance_km
        ),
        Routing::OwnJurisdiction | Routing::InJurisdiction => format!(
            "{who}: task {} was rejected by {from}; re-routed to {to}",
            task.task_id
        ),
    };
    vec![
        Outgoing::task(topics, task),
        Outgoing::alert(topics, Alert::about(task, AlertKind::TaskStatus, text, now)),
    ]
}

/// Why a deadline escalates: `not acknowledged by …` or `not resolved by …`.
pub fn missed_deadline_note(acknowledge: bool, deadline: DateTime<Utc>) -> String {
    let what = if acknowledge {
        "acknowledged"
    } else {
        "resolved"
    };
    format!(
        "not {what} by {}",
        deadline.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// An escalated task: the Task to the supervisor's escalations topic (when there is one)
/// and the `escalated` Alert to the requesting court.
pub fn escalated(
    task: &Task,
    supervisor: Option<&str>,
    why: &str,
    topics: &Topics,
    now: DateTime<Utc>,
) -> Vec<Outgoing> {
    let to = match supervisor {
        Some(s) => format!("escalated to {s}"),
        None => "escalated (no supervising court known)".to_string(),
    };
    let text = format!(
        "{}: task {} at {}: {why}; {to}",
        subject_of(task, None),
        task.task_id,
        task.assisting_court_id
    );
    let mut out = Vec::with_capacity(2);
    if let Some(s) = supervisor {
        out.push(Outgoing {
            kind: MessageKind::Escalation,
            topic: topics.escalations(s),
            body: Body::Task(task.clone()),
        });
    }
    out.push(Outgoing::alert(
        topics,
        Alert::about(task, AlertKind::Escalated, text, now),
    ));
    out
}

/// The `consolidation_proposed` Alert to `supervisor` about targets found linked.
pub fn consolidation_proposed(
    target_ids: &[String],
    court_ids: &[String],
    lead_court_id: Option<&str>,
    supervisor: &str,
    topics: &Topics,
    now: DateTime<Utc>,
) -> Outgoing {
    let lead = match lead_court_id {
        Some(lead) => format!("proposed lead court: {lead}"),
        None => "no lead court proposed".to_string(),
    };
    let text = format!(
        "Related cases: {} {} share a plate or identity number, with cases at {}; \
         consider consolidating their enforcement ({lead})",
        if target_ids.len() == 1 {
            "target"
        } else {
            "targets"
        },
        english_list(target_ids),
        english_list(court_ids),
    );
    let proposal = Alert {
        alert_id: Uuid::now_v7().to_string(),
        kind: AlertKind::ConsolidationProposed,
        court_id: supervisor.to_string(),
        target_id: target_ids.first().cloned().unwrap_or_default(),
        task_id: String::new(),
        assisting_court_id: lead_court_id.unwrap_or_default().to_string(),
        status: TaskStatus::Dispatched,
        at: now,
        text,
    };
    Outgoing::alert(topics, proposal)
}

/// A locate request's new task: the Task to its court and, when the requesting court is
/// another, a `target_sighted` Alert saying where the task went.
pub fn search_created(
    task: &Task,
    name: Option<&str>,
    topics: &Topics,
    now: DateTime<Utc>,
) -> Vec<Outgoing> {
    let mut out = vec![Outgoing::task(topics, task)];
    if task.requesting_court_id != task.assisting_court_id {
        let who = subject_of(task, name);
        let to = &task.assisting_court_id;
        let text = match task.routing {
            Routing::NearestCourt => format!(
                "{who}: locate request for a place outside every participating court's \
                 area; task sent to the nearest court, {to} ({:.1} km away)",
                task.distance_km
            ),
            Routing::OwnJurisdiction | Routing::InJurisdiction => {
                format!("{who}: locate request sent to {to}, whose area holds the place")
            }
        };
        out.push(Outgoing::alert(
            topics,
            Alert::about(task, AlertKind::TargetSighted, text, now),
        ));
    }
    out
}

/// `a`, `a and b`, `a, b and c`.
fn english_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_english() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(english_list(&s(&[])), "");
        assert_eq!(english_list(&s(&["a"])), "a");
        assert_eq!(english_list(&s(&["a", "b"])), "a and b");
        assert_eq!(english_list(&s(&["a", "b", "c"])), "a, b and c");
    }

    #[test]
    fn subjects_name_vehicles_by_plate_and_persons_by_name() {
        let plate: Plate = "浙B12345".parse().unwrap();
        assert_eq!(
            subject(TaskKind::VehicleSeizure, Some(&plate), Some("王某"), "T-1"),
            "Vehicle 浙B12345 (T-1)"
        );
        assert_eq!(
            subject(TaskKind::PersonLocate, None, Some("王某"), "P-1"),
            "Person 王某 (P-1)"
        );
        assert_eq!(
            subject(TaskKind::PersonLocate, None, Some(""), "P-1"),
            "Person P-1"
        );
    }

    fn task() -> Task {
        let at = DateTime::<Utc>::from_timestamp(1_772_352_000, 0).unwrap();
        Task {
            task_id: "t-1".into(),
            kind: TaskKind::PersonLocate,
            target_id: "P-1".into(),
            plate: None,
            person_id: None,
            cases: Vec::new(),
            requesting_court_id: "yuyao".into(),
            assisting_court_id: "cixi".into(),
            routing: Routing::NearestCourt,
            sighting: None,
            distance_km: 7.06,
            dispatched_at: at,
            ack_by: at,
            resolve_by: at,
            status: TaskStatus::Dispatched,
            read_plate: None,
            fuzzy: false,
            substitutions: 0,
        }
    }

    fn kinds(out: &[Outgoing]) -> Vec<(&str, MessageKind, Option<&str>)> {
        out.iter()
            .map(|o| (o.topic.as_str(), o.kind, o.task_id(&[])))
            .collect()
    }

    #[test]
    fn an_escalation_goes_to_the_supervisor_as_a_task_and_to_the_requester_as_an_alert() {
        let topics = Topics::new("p");
        let task = task();
        let note = missed_deadline_note(true, task.ack_by);
        assert_eq!(note, "not acknowledged by 2026-03-01T08:00:00Z");
        let out = escalated(&task, Some("boss"), &note, &topics, task.ack_by);
        assert_eq!(
            kinds(&out),
            [
                (
                    "p/dispatch/boss/escalations",
                    MessageKind::Escalation,
                    Some("t-1")
                ),
                ("p/alerts/yuyao", MessageKind::Alert, Some("t-1")),
            ]
        );
        let Body::Alert(alert) = &out[1].body else {
            panic!("{:?}", out[1]);
        };
        assert_eq!(
            alert.text,
            "Person P-1: task t-1 at cixi: not acknowledged by 2026-03-01T08:00:00Z; escalated to boss"
        );
        let alone = escalated(&task, None, "no court left", &topics, task.ack_by);
        assert_eq!(
            kinds(&alone),
            [("p/alerts/yuyao", MessageKind::Alert, Some("t-1"))]
        );
    }

    #[test]
    fn reroutes_withdrawals_and_proposals_are_worded_for_the_courts() {
        let topics = Topics::new("");
        let mut task = task();
        let out = rerouted(&task, "ningbo", Some("王某"), &topics, task.ack_by);
        assert_eq!(
            kinds(&out),
            [
                ("dispatch/cixi/tasks", MessageKind::Task, Some("t-1")),
                ("alerts/yuyao", MessageKind::Alert, Some("t-1")),
            ]
        );
        let Body::Alert(alert) = &out[1].body else {
            panic!("{:?}", out[1]);
        };
        assert_eq!(
            alert.text,
            "Person 王某 (P-1): task t-1 was rejected by ningbo; re-routed to the nearest \
             remaining court, cixi (7.1 km away)"
        );
        task.status = TaskStatus::Cancelled;
        let text = withdrawal_text(&task, TaskStatus::Acknowledged);
        let out = status_changed(
            &task,
            None,
            Some("target withdrawn"),
            text,
            task.ack_by,
            &topics,
        );
        assert_eq!(
            kinds(&out),
            [
                ("dispatch/cixi/updates", MessageKind::Update, Some("t-1")),
                ("alerts/yuyao", MessageKind::Alert, Some("t-1")),
            ]
        );
        let ids = ["A".to_string(), "B".to_string()];
        let courts = ["cixi".to_string(), "yuyao".to_string()];
        let proposal =
            consolidation_proposed(&ids, &courts, Some("cixi"), "boss", &topics, task.ack_by);
        assert_eq!(proposal.topic, "alerts/boss");
        assert_eq!(proposal.task_id(&[]), None, "about no task");
    }
}
