//! Counting what a scenario left behind (tasks in the database, tasks the subscriber saw),
//! the table, and the check that fails the suite.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::counter::Counter;
use crate::feed::Plan;
use crate::service;

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub db: &'static str,
    pub sent: usize,
    pub hits: usize,
    pub expected: usize,
    pub in_db: usize,
    pub seen: usize,
    pub duplicates: usize,
    pub lost: usize,
    pub two_open: usize,
    /// What happened beyond the counts (kills, stranded messages, errors observed).
    pub note: String,
    /// Failed checks beyond the counts (a crash, a corrupt database, a missing error).
    pub problems: Vec<String>,
}

impl Row {
    /// The reasons this row fails the suite (none: it passes).
    pub fn failures(&self) -> Vec<String> {
        let mut failures = self.problems.clone();
        if self.lost > 0 {
            failures.push(format!("{} task(s) lost", self.lost));
        }
        if self.two_open > 0 {
            failures.push(format!("{} target(s) with two open tasks", self.two_open));
        }
        failures
    }
}

/// What is known after a scenario: the tasks in the database and the deliveries.
pub struct Outcome {
    pub tasks: Vec<Value>,
    pub complete: bool,
}

/// Polls until every hit target has a task in the database and the subscriber has seen
/// every task there (or `within` passes), then lets late duplicates arrive.
pub async fn settle(http: &str, counter: &Counter, plan: &Plan, within: Duration) -> Outcome {
    let deadline = Instant::now() + within;
    let mut tasks = Vec::new();
    loop {
        if let Some(now) = service::tasks(http).await {
            tasks = now;
        }
        let in_db: BTreeSet<&str> = tasks
            .iter()
            .filter_map(|t| t["target_id"].as_str())
            .collect();
        let seen: BTreeSet<String> = counter
            .deliveries()
            .into_iter()
            .map(|d| d.task_id)
            .collect();
        let complete = plan.hit_targets.iter().all(|t| in_db.contains(t.as_str()))
            && tasks
                .iter()
                .all(|t| seen.contains(t["task_id"].as_str().unwrap_or_default()));
        if complete || Instant::now() > deadline {
            if complete {
                // Redeliveries still in flight would be counted as duplicates: a real
                // subscriber sees them too.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            return Outcome { tasks, complete };
        }
        // Polling the database and the subscriber until the counts settle.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The row for a scenario from its plan, the feed's count, the outcome and the deliveries.
pub fn tally(
    scenario: &str,
    db: &'static str,
    sent: usize,
    plan: &Plan,
    outcome: &Outcome,
    counter: &Counter,
    note: String,
) -> Row {
    let deliveries = counter.deliveries();
    let seen: BTreeSet<&str> = deliveries.iter().map(|d| d.task_id.as_str()).collect();
    let in_db: BTreeSet<&str> = outcome
        .tasks
        .iter()
        .filter_map(|t| t["task_id"].as_str())
        .collect();
    let mut open_per_target: BTreeMap<&str, usize> = BTreeMap::new();
    for task in &outcome.tasks {
        let open = matches!(
            task["status"].as_str(),
            Some("dispatched" | "acknowledged" | "en_route")
        );
        if open {
            *open_per_target
                .entry(task["target_id"].as_str().unwrap_or_default())
                .or_default() += 1;
        }
    }
    let targets_with_task: BTreeSet<&str> = outcome
        .tasks
        .iter()
        .filter_map(|t| t["target_id"].as_str())
        .collect();
    let missing_in_db = plan
        .hit_targets
        .iter()
        .filter(|t| !targets_with_task.contains(t.as_str()))
        .count();
    let never_delivered = in_db.iter().filter(|id| !seen.contains(*id)).count();
    // Nothing in a scenario closes a task, so a target delivered under two task ids got two.
    let mut ids_per_target: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for d in &deliveries {
        ids_per_target
            .entry(d.target_id.as_str())
            .or_default()
            .insert(d.task_id.as_str());
    }
    let two_delivered = ids_per_target.values().filter(|ids| ids.len() > 1).count();
    let mut problems = Vec::new();
    if two_delivered > 0 {
        problems.push(format!(
            "{two_delivered} target(s) delivered under two task ids"
        ));
    }
    Row {
        scenario: scenario.into(),
        db,
        sent,
        hits: plan.hits,
        expected: plan.hit_targets.len(),
        in_db: in_db.len(),
        seen: seen.len(),
        duplicates: deliveries.len() - seen.len(),
        lost: missing_in_db + never_delivered,
        two_open: open_per_target.values().filter(|&&n| n > 1).count(),
        note,
        problems,
    }
}

/// The table, as Markdown so it can be pasted into benches/README.md.
pub fn print(rows: &[Row]) {
    println!();
    println!(
        "| scenario | db | sent | hits | tasks expected | tasks in db | seen by subscriber | duplicates | lost | two open | note |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.db,
            r.sent,
            r.hits,
            r.expected,
            r.in_db,
            r.seen,
            r.duplicates,
            r.lost,
            r.two_open,
            if r.problems.is_empty() {
                r.note.clone()
            } else {
                format!("{}; FAILED: {}", r.note, r.problems.join("; "))
            }
        );
    }
    println!();
}
