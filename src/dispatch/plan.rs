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
    /// Matchable targets without an open task whose latest closure is a `not_found` within
    /// the cooldown: target id -> that task's id.
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
