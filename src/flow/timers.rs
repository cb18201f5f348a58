//! Deadlines: a task not acknowledged by `ack_by`, or not resolved by `resolve_by`, goes to
//! the supervising court's `escalations` topic and the requesting court gets an Alert.
//!
//! The deadlines live in the database, so they survive restarts; each escalation is claimed
//! with a conditional update, so it fires once however many replicas run this loop. The loop
//! waits until the app's clock reaches the earliest deadline, or the check interval passes,
//! whichever comes first.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::geo::geodata::GeoData;
use crate::metrics;
use crate::mqtt::OutboundMeta;
use crate::store::EscalationKind;

/// Court → its supervising court, from the courts data.
pub fn supervisors(data: &GeoData) -> HashMap<String, String> {
    data.courts
        .iter()
        .filter_map(|c| Some((c.court_id.clone(), c.supervisor_court_id.clone()?)))
        .collect()
}

/// Runs until `stop`.
pub async fn run(
    app: App,
    supervisors: HashMap<String, String>,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        let next = match app.store.bounded(app.store.next_deadline()).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next deadline");
                None
            }
        };
        // No deadline known: wait the interval, measured on the app's clock (a manual clock
        // then also wakes this loop when moved).
        let until = next.unwrap_or_else(|| app.now() + interval_of(interval));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = app.clock.sleep_until(until, interval) => {}
        }
        escalate_due(&app, &supervisors).await;
    }
}

fn interval_of(interval: Duration) -> chrono::Duration {
    chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::seconds(1))
}

/// Escalates every task whose deadline has passed, once.
async fn escalate_due(app: &App, supervisors: &HashMap<String, String>) {
    let due = app.store.escalate_due(app.now(), supervisors, &app.topics);
    match app.store.bounded(due).await {
        Ok((escalations, messages)) => {
            for e in &escalations {
                let kind = match e.kind {
                    EscalationKind::Ack => "ack",
                    EscalationKind::Resolve => "resolve",
                };
                metrics::sla_breach(&e.task.assisting_court_id, kind);
                if let Some(supervisor) = &e.supervisor_court_id {
                    metrics::escalation(supervisor);
                }
                tracing::warn!(task_id = %e.task.task_id, court = %e.task.assisting_court_id, kind, "deadline missed; escalated");
            }
            app.publisher
                .send(messages, |_| OutboundMeta::default())
                .await;
        }
        Err(e) => tracing::warn!(error = %e, "could not escalate due tasks"),
    }
}
