//! What a batch of matched sightings does, decided without the database: given what the
//! store read for the batch, which tasks to create, which open tasks to update or move,
//! which history rows and messages to write, and each sighting's outcome.
//!
//! Planning takes two steps because a new task may lose its target's one open task to
//! another replica: [`Planner::draft`] decides which sightings create tasks (the store then
//! inserts them), and [`Planner::settle`], told which inserts lost to which task, plans the
//! rest. The store enforces what must hold across replicas; this only decides.

use chrono::{DateTime, Utc};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::notify::{self, Outgoing};
use super::policy::{Deadlines, MatchedSighting, Policy};
use crate::contract::model::Case;
use crate::contract::person_id::PersonId;
use crate::contract::plate::Plate;
use crate::contract::task::{SightingRef, Task, TaskStatus, Topics};
use crate::geo::datum::great_circle_km;

/// What a matched sighting did.
// `Created` is the common, large case; boxing it would only add an allocation per task.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum MatchOutcome {
    /// A new task; its messages are among the returned outbox messages.
    Created(Task),
    /// The target's open task got a TaskUpdate (to its assisting court).
    Updated {
        task_id: String,
        assisting_court_id: String,
    },
    /// `(source, event_id)` was seen before: no effect at all.
    Duplicate,
    /// The target is not active (seized, withdrawn, expired, or unknown) in the database:
    /// no effect except that the event id is recorded.
    TargetInactive,
    /// The target has no open task and its latest task closed as `not_found` less than
    /// [`Policy::not_found_cooldown`] ago: no new task, nothing published; the event id is
    /// recorded. `task_id` is that `not_found` task.
    Cooldown { task_id: String },
    /// The open task moved to the sighting's court (dwell or distance, see [`Policy`]): `task`
    /// as it is now (status `dispatched`, new deadlines), `from` the court that held it.
    Reassigned { task: Task, from: String },
}

/// What kind of entry a task's history holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEventKind {
    Created,
    Sighting,
    Status,
    /// A deadline passed (the note says which), or no court was left after rejections.
    Escalated,
    /// A newer sighting moved the open task to another court (note "from X to Y").
    Reassigned,
    /// A rejected task was dispatched again, to another court (note "from X to Y").
    Rerouted,
}

/// A target as dispatch needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub plate: Option<Plate>,
    pub person_id: Option<PersonId>,
    pub name: Option<String>,
    /// The cases as stored, copied into a new task's row without encoding them again.
    pub cases_json: String,
    pub cases: Vec<Case>,
    /// Active and not expired.
    pub matchable: bool,
}

/// An open task of a target, as read (or as just inserted).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTask {
    pub task: Task,
    /// The court newer sightings place the target in, and since when (epoch ms).
    pub candidate: Option<(String, i64)>,
}

/// What the store read for a batch, besides the open tasks.
#[derive(Debug, Default)]
pub struct Read {
    /// Per sighting: whether its `(source, event_id)` was new (the first of several equal ones
    /// in the batch is).
    pub fresh: Vec<bool>,
    /// The targets of the fresh sightings, by id (unknown ones missing).
    pub targets: FxHashMap<String, Target>,
    /// Matchable targets without an open task whose latest closure is a `not_found` after
    /// [`cooldown_cutoff`]: target id -> that task's id.
    pub cooling: FxHashMap<String, String>,
}

/// What a sighting does, before the new tasks are inserted.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Duplicate,
    Inactive,
    /// The latest task closed as `not_found` within the cooldown: this one.
    Cooldown(String),
    /// Creates new task `k` (if its insert wins the race for the target).
    Create(usize),
    /// Updates (or moves) the target's open task.
    Update,
}

/// The first step's result: a decision per sighting and the tasks to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub decisions: Vec<Decision>,
    pub new_tasks: Vec<Task>,
}

impl Draft {
    /// For each new task, the index of the sighting that creates it.
    pub fn creators(&self) -> Vec<usize> {
        let mut out = vec![0; self.new_tasks.len()];
        for (i, d) in self.decisions.iter().enumerate() {
            if let Decision::Create(k) = d {
                out[*k] = i;
            }
        }
        out
    }
}

/// A history row to write; `sighting` is the index of the sighting in the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub task_id: String,
    pub kind: TaskEventKind,
    pub status: TaskStatus,
    pub note: Option<String>,
    pub sighting: usize,
    /// The task's assisting court after the event.
    pub court_id: String,
}

/// A change to an open task that was read: written conditionally on the row as read, so a
/// concurrent change is noticed.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskChange {
    /// The task as it is now.
    pub task: Task,
    /// Its border candidate now.
    pub candidate: Option<(String, i64)>,
    /// Moved to another court (else only the candidate changed).
    pub reassigned: bool,
    /// The assisting court and status as read.
    pub read_court: String,
    pub read_status: TaskStatus,
}

/// What to write for a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Every drafted task (the bodies of [`notify::Body::NewTask`]); those that lost the race
    /// have no outcome, history or message.
    pub new_tasks: Vec<Task>,
    /// Per sighting, in order.
    pub outcomes: Vec<MatchOutcome>,
    pub history: Vec<HistoryRow>,
    /// In task id order, so concurrent batches lock rows in one order.
    pub changes: Vec<TaskChange>,
    /// In outcome order: `Created` 1 or 2 (the Task, the Alert when the requesting court is
    /// another), `Updated` 1, `Reassigned` 3 (Task, status update, Alert), others none.
    pub messages: Vec<Outgoing>,
}

/// An open task while a batch is planned: its state now, and the row as it was read.
struct OpenState {
    task: Task,
    candidate: Option<(String, i64)>,
    read_court: String,
    read_status: TaskStatus,
    candidate_changed: bool,
    reassigned: bool,
}

impl OpenState {
    fn new(open: OpenTask) -> OpenState {
        OpenState {
            read_court: open.task.assisting_court_id.clone(),
            read_status: open.task.status,
            task: open.task,
            candidate: open.candidate,
            candidate_changed: false,
            reassigned: false,
        }
    }
}

/// Plans one batch: the sightings, what was read for them, and the rules.
pub struct Planner<'a> {
    pub batch: &'a [MatchedSighting],
    pub read: &'a Read,
    pub policy: &'a Policy,
    pub deadlines: &'a Deadlines,
    pub topics: &'a Topics,
    /// Millisecond precision, as stored.
    pub now: DateTime<Utc>,
}

/// The time (epoch ms) after which a `not_found` closure still holds off new tasks at `now`:
/// what the store reads [`Read::cooling`] for.
pub fn cooldown_cutoff(policy: &Policy, now: DateTime<Utc>) -> i64 {
    now.timestamp_millis() - policy.not_found_cooldown.num_milliseconds()
}

impl Planner<'_> {
    /// Decides per sighting, in order: the first fresh sighting of an active target without an
    /// open task (`open`) and not cooling down creates a task, later ones update it.
    pub fn draft(&self, open: &[OpenTask]) -> Draft {
        let mut has_open: FxHashSet<&str> =
            open.iter().map(|o| o.task.target_id.as_str()).collect();
        let mut draft = Draft {
            decisions: Vec::with_capacity(self.batch.len()),
            new_tasks: Vec::new(),
        };
        for (i, m) in self.batch.iter().enumerate() {
            let decision = if !self.read.fresh.get(i).copied().unwrap_or(false) {
                Decision::Duplicate
            } else if let Some(target) = self.matchable(&m.target_id) {
                if has_open.contains(m.target_id.as_str()) {
                    Decision::Update
                } else if let Some(task_id) = self.read.cooling.get(&m.target_id) {
                    Decision::Cooldown(task_id.clone())
                } else {
                    has_open.insert(m.target_id.as_str());
                    draft
                        .new_tasks
                        .push(new_task(m, target, self.deadlines, self.now));
                    Decision::Create(draft.new_tasks.len() - 1)
                }
            } else {
                Decision::Inactive
            };
            draft.decisions.push(decision);
        }
        draft
    }

    /// Plans the rest, given the open tasks read (`open`) and, per new task that lost its
    /// target's open task to another, the task that won (`winners`, by new task index).
    pub fn settle(
        &self,
        open: Vec<OpenTask>,
        draft: Draft,
        winners: Vec<(usize, OpenTask)>,
    ) -> Plan {
        let Draft {
            decisions,
            new_tasks,
        } = draft;
        let mut states: Vec<OpenState> = open.into_iter().map(OpenState::new).collect();
        let mut inserted = vec![true; new_tasks.len()];
        let mut won_by: FxHashMap<usize, OpenTask> = winners.into_iter().collect();
        for (k, task) in new_tasks.iter().enumerate() {
            let state = match won_by.remove(&k) {
                Some(winner) => {
                    inserted[k] = false;
                    winner
                }
                None => OpenTask {
                    task: task.clone(),
                    candidate: None,
                },
            };
            states.push(OpenState::new(state));
        }
        let by_target: FxHashMap<String, usize> = states
            .iter()
            .enumerate()
            .map(|(k, s)| (s.task.target_id.clone(), k))
            .collect();

        let now_ms = self.now.timestamp_millis();
        let mut plan = Plan {
            new_tasks: Vec::new(),
            outcomes: Vec::with_capacity(self.batch.len()),
            history: Vec::with_capacity(self.batch.len()),
            changes: Vec::new(),
            messages: Vec::with_capacity(self.batch.len() * 2),
        };
        for (i, (m, decision)) in self.batch.iter().zip(decisions).enumerate() {
            let outcome = match decision {
                Decision::Duplicate => MatchOutcome::Duplicate,
                Decision::Inactive => MatchOutcome::TargetInactive,
                Decision::Cooldown(task_id) => MatchOutcome::Cooldown { task_id },
                Decision::Create(k) if inserted[k] => {
                    let task = &new_tasks[k];
                    plan.history.push(HistoryRow {
                        task_id: task.task_id.clone(),
                        kind: TaskEventKind::Created,
                        status: TaskStatus::Dispatched,
                        note: None,
                        sighting: i,
                        court_id: task.assisting_court_id.clone(),
                    });
                    let name = self.name_of(&m.target_id);
                    plan.messages
                        .extend(notify::created(k, task, name, self.topics, self.now));
                    MatchOutcome::Created(task.clone())
                }
                Decision::Create(_) | Decision::Update => {
                    let state = &mut states[by_target[&m.target_id]];
                    self.sighted(state, i, m, now_ms, &mut plan)
                }
            };
            plan.outcomes.push(outcome);
        }
        let mut touched: Vec<OpenState> = states
            .into_iter()
            .filter(|s| s.reassigned || s.candidate_changed)
            .collect();
        touched.sort_unstable_by(|a, b| a.task.task_id.cmp(&b.task.task_id));
        plan.changes = touched
            .into_iter()
            .map(|s| TaskChange {
                task: s.task,
                candidate: s.candidate,
                reassigned: s.reassigned,
                read_court: s.read_court,
                read_status: s.read_status,
            })
            .collect();
        plan.new_tasks = new_tasks;
        plan
    }

    /// A sighting (the `i`th) of a target with an open task: an update to its holder, or the
    /// task moved to the sighting's court.
    fn sighted(
        &self,
        state: &mut OpenState,
        i: usize,
        m: &MatchedSighting,
        now_ms: i64,
        plan: &mut Plan,
    ) -> MatchOutcome {
        if !border_move(state, m, self.policy, now_ms) {
            let task = &state.task;
            plan.history.push(HistoryRow {
                task_id: task.task_id.clone(),
                kind: TaskEventKind::Sighting,
                status: task.status,
                note: None,
                sighting: i,
                court_id: task.assisting_court_id.clone(),
            });
            plan.messages.push(notify::sighted_again(
                task,
                &m.sighting,
                self.topics,
                self.now,
            ));
            return MatchOutcome::Updated {
                task_id: task.task_id.clone(),
                assisting_court_id: task.assisting_court_id.clone(),
            };
        }
        let from = state.task.assisting_court_id.clone();
        reassign(&mut state.task, m, self.deadlines, self.now);
        state.candidate = None;
        state.candidate_changed = true;
        state.reassigned = true;
        let task = &state.task;
        plan.history.push(HistoryRow {
            task_id: task.task_id.clone(),
            kind: TaskEventKind::Reassigned,
            status: task.status,
            note: Some(format!("from {from} to {}", task.assisting_court_id)),
            sighting: i,
            court_id: task.assisting_court_id.clone(),
        });
        let name = self.name_of(&m.target_id);
        plan.messages
            .extend(notify::reassigned(task, &from, name, self.topics, self.now));
        MatchOutcome::Reassigned {
            task: task.clone(),
            from,
        }
    }

    fn matchable(&self, target_id: &str) -> Option<&Target> {
        self.read.targets.get(target_id).filter(|t| t.matchable)
    }

    fn name_of(&self, target_id: &str) -> Option<&str> {
        self.read
            .targets
            .get(target_id)
            .and_then(|t| t.name.as_deref())
    }
}

/// Whether the sighting `m` moves the open task of `state` to its court, updating the border
/// candidate in `state` otherwise. A sighting in the holder's own court never moves it, so
/// sightings alternating across a border keep the task where it is.
fn border_move(state: &mut OpenState, m: &MatchedSighting, policy: &Policy, now: i64) -> bool {
    let court = m.route.assisting_court_id.as_str();
    let holder = state.task.assisting_court_id.as_str();
    if court == holder {
        if state.candidate.take().is_some() {
            state.candidate_changed = true;
        }
        return false;
    }
    let far = policy.centers.get(holder).is_some_and(|&(lon, lat)| {
        great_circle_km(lon, lat, m.sighting.lon, m.sighting.lat) > policy.reassign_distance_km
    });
    let dwelt = state.candidate.as_ref().is_some_and(|(c, since)| {
        c == court && now - since >= policy.reassign_dwell.num_milliseconds()
    });
    if far || dwelt {
        return true;
    }
    if state.candidate.as_ref().is_none_or(|(c, _)| c != court) {
        state.candidate = Some((court.to_string(), now));
        state.candidate_changed = true;
    }
    false
}

/// `task` as dispatched to the court of the sighting `m`: its route, that court's deadlines
/// from `now`, the sighting.
fn reassign(task: &mut Task, m: &MatchedSighting, deadlines: &Deadlines, now: DateTime<Utc>) {
    let (ack, resolve) = deadlines.for_court(&m.route.assisting_court_id);
    task.assisting_court_id = m.route.assisting_court_id.clone();
    task.routing = m.route.routing;
    task.distance_km = m.route.distance_km;
    task.status = TaskStatus::Dispatched;
    task.dispatched_at = now;
    task.ack_by = now + ack;
    task.resolve_by = now + resolve;
    task.sighting = Some(SightingRef::from(&m.sighting));
    task.read_plate = m.read_plate;
    task.fuzzy = m.fuzzy;
    task.substitutions = m.substitutions;
}

/// The task a sighting of `target` creates: to the assisting court with its deadlines,
/// carrying the sighting's merged cases (the target's own when there are none).
fn new_task(
    m: &MatchedSighting,
    target: &Target,
    deadlines: &Deadlines,
    now: DateTime<Utc>,
) -> Task {
    let (ack, resolve) = deadlines.for_court(&m.route.assisting_court_id);
    Task {
        task_id: Uuid::now_v7().to_string(),
        kind: m.route.kind,
        target_id: m.target_id.clone(),
        plate: target.plate,
        person_id: target.person_id,
        cases: if m.cases.is_empty() {
            target.cases.clone()
        } else {
            m.cases.clone()
        },
        requesting_court_id: m.route.requesting_court_id.clone(),
        assisting_court_id: m.route.assisting_court_id.clone(),
        routing: m.route.routing,
        sighting: Some(SightingRef::from(&m.sighting)),
        distance_km: m.route.distance_km,
        dispatched_at: now,
        ack_by: now + ack,
        resolve_by: now + resolve,
        status: TaskStatus::Dispatched,
        read_plate: m.read_plate,
        fuzzy: m.fuzzy,
        substitutions: m.substitutions,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use chrono::{Duration, NaiveDate, TimeZone};

    use super::*;
    use crate::contract::model::{Routing, Sighting, TargetKind, TaskKind};
    use crate::contract::task::{AlertKind, MessageKind, UpdateKind};
    use crate::dispatch::notify::Body;
    use crate::dispatch::route::RouteDecision;
    use crate::geo::datum::Datum;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()
    }

    fn case(court: &str) -> Case {
        Case {
            case_no: format!("(2024){court}执1号"),
            court_id: court.into(),
            filed_on: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
            amount_cny: None,
        }
    }

    fn target(matchable: bool) -> Target {
        Target {
            plate: Some("浙B12345".parse().unwrap()),
            person_id: None,
            name: Some("王某".into()),
            cases_json: String::new(),
            cases: vec![case("yuyao")],
            matchable,
        }
    }

    /// A sighting of `target_id` in `court`'s area (at `lon`, `lat`), requested by yuyao.
    fn seen(target_id: &str, event_id: &str, court: &str) -> MatchedSighting {
        seen_at(target_id, event_id, court, 121.2661, 30.1703)
    }

    fn seen_at(
        target_id: &str,
        event_id: &str,
        court: &str,
        lon: f64,
        lat: f64,
    ) -> MatchedSighting {
        MatchedSighting {
            sighting: Sighting {
                event_id: event_id.into(),
                kind: TargetKind::Vehicle,
                plate: Some("浙B12345".parse().unwrap()),
                person_id: None,
                lat,
                lon,
                datum: Datum::Wgs84,
                observed_at: t0() - Duration::seconds(2),
                source: "cam-1".into(),
                confidence: None,
            },
            target_id: target_id.into(),
            route: RouteDecision {
                kind: TaskKind::VehicleSeizure,
                requesting_court_id: "yuyao".into(),
                assisting_court_id: court.into(),
                routing: if court == "yuyao" {
                    Routing::OwnJurisdiction
                } else {
                    Routing::InJurisdiction
                },
                distance_km: 3.25,
                containing_court_id: Some(court.into()),
            },
            read_plate: None,
            fuzzy: false,
            substitutions: 0,
            cases: Vec::new(),
        }
    }

    fn read_of(targets: &[(&str, Target)], fresh: Vec<bool>) -> Read {
        Read {
            fresh,
            targets: targets
                .iter()
                .map(|(id, t)| (id.to_string(), t.clone()))
                .collect(),
            cooling: FxHashMap::default(),
        }
    }

    fn open_task(target_id: &str, court: &str, candidate: Option<(&str, i64)>) -> OpenTask {
        let m = seen(target_id, "old", court);
        let mut task = new_task(&m, &target(true), &Deadlines::default(), t0());
        task.status = TaskStatus::Acknowledged;
        OpenTask {
            task,
            candidate: candidate.map(|(c, since)| (c.to_string(), since)),
        }
    }

    fn policy() -> Policy {
        let mut centers = HashMap::new();
        centers.insert("cixi".to_string(), (121.2661, 30.1703));
        Policy {
            centers: Arc::new(centers),
            ..Policy::default()
        }
    }

    /// Plans `batch` with the open tasks `open`, no insert losing its race.
    fn plan(batch: &[MatchedSighting], read: &Read, open: Vec<OpenTask>, policy: &Policy) -> Plan {
        plan_at(batch, read, open, policy, t0())
    }

    fn plan_at(
        batch: &[MatchedSighting],
        read: &Read,
        open: Vec<OpenTask>,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Plan {
        let topics = Topics::new("");
        let deadlines = Deadlines::default();
        let planner = Planner {
            batch,
            read,
            policy,
            deadlines: &deadlines,
            topics: &topics,
            now,
        };
        let draft = planner.draft(&open);
        planner.settle(open, draft, Vec::new())
    }

    fn topics_of(plan: &Plan) -> Vec<(&str, MessageKind)> {
        plan.messages
            .iter()
            .map(|m| (m.topic.as_str(), m.kind))
            .collect()
    }

    fn alert_text(message: &Outgoing) -> &str {
        match &message.body {
            Body::Alert(alert) => &alert.text,
            other => panic!("not an alert: {other:?}"),
        }
    }

    #[test]
    fn the_first_sighting_creates_a_task_and_the_next_updates_it() {
        let batch = [seen("T-1", "e1", "yuyao"), seen("T-1", "e2", "yuyao")];
        let read = read_of(&[("T-1", target(true))], vec![true, true]);
        let plan = plan(&batch, &read, Vec::new(), &policy());
        let MatchOutcome::Created(task) = &plan.outcomes[0] else {
            panic!("{:?}", plan.outcomes[0]);
        };
        assert_eq!(task.assisting_court_id, "yuyao");
        assert_eq!(task.ack_by, t0() + Duration::minutes(5));
        assert_eq!(
            plan.outcomes[1],
            MatchOutcome::Updated {
                task_id: task.task_id.clone(),
                assisting_court_id: "yuyao".into(),
            }
        );
        assert_eq!(plan.new_tasks, vec![task.clone()]);
        let kinds: Vec<_> = plan.history.iter().map(|h| (h.kind, h.sighting)).collect();
        assert_eq!(
            kinds,
            [(TaskEventKind::Created, 0), (TaskEventKind::Sighting, 1)]
        );
        // Requested and assisted by yuyao: no alert.
        assert_eq!(
            topics_of(&plan),
            [
                ("dispatch/yuyao/tasks", MessageKind::Task),
                ("dispatch/yuyao/updates", MessageKind::Update),
            ]
        );
        assert_eq!(plan.messages[0].body, Body::NewTask(0));
        assert_eq!(
            plan.messages[1].task_id(&plan.new_tasks),
            Some(task.task_id.as_str())
        );
        assert!(plan.changes.is_empty());
    }

    #[test]
    fn a_sighting_of_a_target_with_an_open_task_updates_that_task() {
        let batch = [seen("T-1", "e1", "cixi")];
        let read = read_of(&[("T-1", target(true))], vec![true]);
        let open = open_task("T-1", "cixi", None);
        let task_id = open.task.task_id.clone();
        let plan = plan(&batch, &read, vec![open], &policy());
        assert_eq!(
            plan.outcomes,
            [MatchOutcome::Updated {
                task_id: task_id.clone(),
                assisting_court_id: "cixi".into(),
            }]
        );
        assert!(plan.new_tasks.is_empty());
        let Body::Update(update) = &plan.messages[0].body else {
            panic!("{:?}", plan.messages[0]);
        };
        assert_eq!(update.update, UpdateKind::Sighting);
        assert_eq!(update.status, TaskStatus::Acknowledged);
        assert_eq!(plan.messages[0].topic, "dispatch/cixi/updates");
    }

    #[test]
    fn duplicates_and_inactive_targets_do_nothing() {
        let batch = [
            seen("T-1", "e1", "yuyao"),
            seen("T-2", "e2", "yuyao"),
            seen("T-3", "e3", "yuyao"),
        ];
        let read = read_of(&[("T-2", target(false))], vec![false, true, true]);
        let plan = plan(&batch, &read, Vec::new(), &policy());
        assert_eq!(
            plan.outcomes,
            [
                MatchOutcome::Duplicate,
                MatchOutcome::TargetInactive,
                MatchOutcome::TargetInactive,
            ]
        );
        assert!(plan.messages.is_empty() && plan.history.is_empty() && plan.new_tasks.is_empty());
    }

    #[test]
    fn a_recent_not_found_holds_off_new_tasks_for_the_cooldown() {
        let policy = policy();
        let cutoff = cooldown_cutoff(&policy, t0());
        let closed_ms = |ago: Duration| (t0() - ago).timestamp_millis();
        assert!(
            closed_ms(Duration::minutes(9)) > cutoff,
            "within the window"
        );
        assert!(
            closed_ms(Duration::minutes(11)) <= cutoff,
            "after the window"
        );

        let batch = [seen("T-1", "e1", "yuyao")];
        let mut read = read_of(&[("T-1", target(true))], vec![true]);
        read.cooling.insert("T-1".into(), "nf-1".into());
        let within = plan(&batch, &read, Vec::new(), &policy);
        assert_eq!(
            within.outcomes,
            [MatchOutcome::Cooldown {
                task_id: "nf-1".into()
            }]
        );
        assert!(within.messages.is_empty() && within.history.is_empty());
        // After the window the closure is not read as cooling: a task again.
        read.cooling.clear();
        let after = plan(&batch, &read, Vec::new(), &policy);
        assert!(matches!(after.outcomes[0], MatchOutcome::Created(_)));
    }

    #[test]
    fn a_sighting_in_another_court_records_a_candidate_and_one_back_home_clears_it() {
        let policy = policy();
        let read = read_of(&[("T-1", target(true))], vec![true]);
        let open = open_task("T-1", "cixi", None);
        // Near cixi's center, but in yuyao's area: a border jitter, no move.
        let away = [seen("T-1", "e1", "yuyao")];
        let plan1 = plan(&away, &read, vec![open.clone()], &policy);
        assert!(matches!(plan1.outcomes[0], MatchOutcome::Updated { .. }));
        assert_eq!(plan1.changes.len(), 1);
        let change = &plan1.changes[0];
        assert!(!change.reassigned);
        assert_eq!(
            change.candidate,
            Some(("yuyao".to_string(), t0().timestamp_millis()))
        );
        assert_eq!(change.read_court, "cixi");

        let with_candidate = open_task("T-1", "cixi", Some(("yuyao", 0)));
        let home = [seen("T-1", "e2", "cixi")];
        let plan2 = plan(&home, &read, vec![with_candidate], &policy);
        assert!(matches!(plan2.outcomes[0], MatchOutcome::Updated { .. }));
        assert_eq!(plan2.changes.len(), 1);
        assert_eq!(plan2.changes[0].candidate, None);
        assert!(!plan2.changes[0].reassigned);
    }

    #[test]
    fn a_sighting_in_the_holders_area_never_moves_the_task() {
        let read = read_of(&[("T-1", target(true))], vec![true]);
        // Far from cixi's center and with an old candidate, but in cixi's area.
        let open = open_task("T-1", "cixi", None);
        let far_home = [seen_at("T-1", "e1", "cixi", 122.5, 30.9)];
        let plan = plan(&far_home, &read, vec![open], &policy());
        assert!(matches!(plan.outcomes[0], MatchOutcome::Updated { .. }));
        assert!(plan.changes.is_empty());
    }

    #[test]
    fn the_dwell_elapsing_in_another_court_moves_the_task() {
        let policy = policy();
        let read = read_of(&[("T-1", target(true))], vec![true]);
        let since = (t0() - Duration::minutes(3)).timestamp_millis();
        let open = open_task("T-1", "cixi", Some(("yuyao", since)));
        let task_id = open.task.task_id.clone();
        let plan = plan(&[seen("T-1", "e1", "yuyao")], &read, vec![open], &policy);
        let MatchOutcome::Reassigned { task, from } = &plan.outcomes[0] else {
            panic!("{:?}", plan.outcomes[0]);
        };
        assert_eq!(
            (task.task_id.as_str(), from.as_str()),
            (task_id.as_str(), "cixi")
        );
        assert_eq!(task.assisting_court_id, "yuyao");
        assert_eq!(task.status, TaskStatus::Dispatched);
        assert_eq!(task.dispatched_at, t0());
        assert_eq!(plan.history[0].kind, TaskEventKind::Reassigned);
        assert_eq!(plan.history[0].note.as_deref(), Some("from cixi to yuyao"));
        let change = &plan.changes[0];
        assert!(change.reassigned && change.candidate.is_none());
        assert_eq!(
            (change.read_court.as_str(), change.read_status),
            ("cixi", TaskStatus::Acknowledged)
        );
        assert_eq!(
            topics_of(&plan),
            [
                ("dispatch/yuyao/tasks", MessageKind::Task),
                ("dispatch/cixi/updates", MessageKind::Update),
                ("alerts/yuyao", MessageKind::Alert),
            ]
        );
        assert_eq!(
            alert_text(&plan.messages[2]),
            format!(
                "Vehicle 浙B12345 (T-1) is now seen in yuyao's area; task {task_id} moved from \
                 cixi to yuyao"
            )
        );
        // One minute short of the dwell: only the candidate stays.
        let since = (t0() - Duration::minutes(2)).timestamp_millis();
        let open = open_task("T-1", "cixi", Some(("yuyao", since)));
        let short = plan_at(
            &[seen("T-1", "e2", "yuyao")],
            &read,
            vec![open],
            &policy,
            t0(),
        );
        assert!(matches!(short.outcomes[0], MatchOutcome::Updated { .. }));
        assert!(short.changes.is_empty(), "candidate unchanged");
    }

    #[test]
    fn a_sighting_farther_than_the_reassign_distance_moves_the_task_at_once() {
        let read = read_of(&[("T-1", target(true))], vec![true]);
        let open = open_task("T-1", "cixi", None);
        // About 100 km from cixi's command center.
        let far = [seen_at("T-1", "e1", "hangzhou", 120.2, 30.3)];
        let plan = plan(&far, &read, vec![open], &policy());
        assert!(matches!(
            &plan.outcomes[0],
            MatchOutcome::Reassigned { task, from } if task.assisting_court_id == "hangzhou" && from == "cixi"
        ));
    }

    #[test]
    fn a_sighting_with_merged_cases_carries_them_into_the_task() {
        let mut m = seen("T-1", "e1", "yuyao");
        m.cases = vec![case("yuyao"), case("cixi")];
        let read = read_of(&[("T-1", target(true))], vec![true]);
        let merged = plan(&[m], &read, Vec::new(), &policy());
        assert_eq!(merged.new_tasks[0].cases, vec![case("yuyao"), case("cixi")]);
        let own = plan(&[seen("T-1", "e2", "yuyao")], &read, Vec::new(), &policy());
        assert_eq!(own.new_tasks[0].cases, vec![case("yuyao")]);
    }

    #[test]
    fn a_task_for_another_court_alerts_the_requesting_court() {
        let read = read_of(&[("T-1", target(true))], vec![true]);
        let plan = plan(&[seen("T-1", "e1", "cixi")], &read, Vec::new(), &policy());
        assert_eq!(
            topics_of(&plan),
            [
                ("dispatch/cixi/tasks", MessageKind::Task),
                ("alerts/yuyao", MessageKind::Alert),
            ]
        );
        let Body::Alert(alert) = &plan.messages[1].body else {
            panic!("{:?}", plan.messages[1]);
        };
        assert_eq!(alert.kind, AlertKind::TargetSighted);
        assert_eq!(alert.court_id, "yuyao");
        assert_eq!(
            alert.text,
            "Vehicle 浙B12345 (T-1) seen in cixi's area; task sent to cixi"
        );
        assert_eq!(
            plan.messages[1].task_id(&plan.new_tasks),
            Some(plan.new_tasks[0].task_id.as_str())
        );
    }

    #[test]
    fn a_task_routed_to_the_nearest_court_says_so() {
        let mut m = seen("T-1", "e1", "cixi");
        m.route.routing = Routing::NearestCourt;
        m.route.distance_km = 12.34;
        let read = read_of(&[("T-1", target(true))], vec![true]);
        let plan = plan(&[m], &read, Vec::new(), &policy());
        assert_eq!(
            alert_text(&plan.messages[1]),
            "Vehicle 浙B12345 (T-1) seen outside every participating court's area; task sent \
             to the nearest court, cixi (12.3 km away)"
        );
    }

    #[test]
    fn a_new_task_that_lost_its_race_becomes_an_update_of_the_winner() {
        let batch = [seen("T-1", "e1", "yuyao")];
        let read = read_of(&[("T-1", target(true))], vec![true]);
        let topics = Topics::new("");
        let (policy, deadlines) = (policy(), Deadlines::default());
        let planner = Planner {
            batch: &batch,
            read: &read,
            policy: &policy,
            deadlines: &deadlines,
            topics: &topics,
            now: t0(),
        };
        let draft = planner.draft(&[]);
        assert_eq!(draft.decisions, [Decision::Create(0)]);
        let winner = open_task("T-1", "yuyao", None);
        let winner_id = winner.task.task_id.clone();
        let plan = planner.settle(Vec::new(), draft, vec![(0, winner)]);
        assert_eq!(
            plan.outcomes,
            [MatchOutcome::Updated {
                task_id: winner_id,
                assisting_court_id: "yuyao".into(),
            }]
        );
        assert_eq!(
            topics_of(&plan),
            [("dispatch/yuyao/updates", MessageKind::Update)]
        );
    }
}
