//! Applying a command center's status report, and what follows from it.
//!
//! The store checks the transition and records it (`workflow` rules, conditional update).
//! Then: a `rejected` task is re-routed to the next nearest participating court that has not
//! rejected it, or escalated to the supervising court when none is left; a `seized` target
//! leaves the hotlist; the closing time is measured. Used by the MQTT pipeline and the HTTP
//! endpoint alike.

use crate::app::auth::Principal;
use crate::app::context::App;
use crate::contract::model::Routing;
use crate::contract::task::{StatusReport, Task, TaskStatus};
use crate::dispatch::route::{self, RouteDecision};
use crate::metrics;
use crate::mqtt::OutboundMeta;
use crate::store::{AuditResult, StatusOutcome, StoreError};

/// Applies `report` from `court` (when known), sent by `caller`, and everything that follows
/// from it. The audit row goes in the status change's transaction.
pub async fn apply(
    app: &App,
    report: &StatusReport,
    court: Option<&str>,
    caller: &Principal,
) -> Result<StatusOutcome, StoreError> {
    let now = app.now();
    let audit = caller.audit("task.status", AuditResult::Ok);
    let outcome = app
        .store
        .apply_status_audited(report, court, &app.topics, now, Some(&audit))
        .await?;
    let StatusOutcome::Applied {
        task,
        previous,
        messages,
    } = &outcome
    else {
        metrics::status_rejected();
        return Ok(outcome);
    };
    metrics::status_report(report.status);
    let since_dispatch = (now - task.dispatched_at).num_milliseconds().max(0) as f64 / 1000.0;
    if *previous == TaskStatus::Dispatched {
        metrics::dispatch_to_ack(&task.assisting_court_id, since_dispatch);
    }
    if !task.status.is_open() {
        metrics::dispatch_to_resolution(&task.assisting_court_id, task.status, since_dispatch);
    }
    app.publisher
        .send(messages.clone(), |_| OutboundMeta::default())
        .await;
    match task.status {
        TaskStatus::Seized => refresh_target(app, &task.target_id).await?,
        TaskStatus::Rejected => reroute(app, task).await?,
        _ => {}
    }
    Ok(outcome)
}

/// Reloads a target whose status the store changed, so the hotlist follows at once.
async fn refresh_target(app: &App, target_id: &str) -> Result<(), StoreError> {
    if let Some(target) = app.store.get_target(target_id).await? {
        app.targets.apply([target]);
    }
    Ok(())
}

/// Sends a rejected task to the next nearest court that has not rejected it, or escalates.
async fn reroute(app: &App, task: &Task) -> Result<(), StoreError> {
    let rejected_by = app.store.rejected_by(&task.task_id).await?;
    // The place to route from: the sighting, else (a locate request) the rejecting court.
    let (lon, lat) = match &task.sighting {
        Some(s) => (s.lon, s.lat),
        None => match app.index.data().court(&task.assisting_court_id) {
            Some(c) => (c.command_center.x, c.command_center.y),
            None => (0.0, 0.0),
        },
    };
    let now = app.now();
    match route::next_court_after_rejection(&app.index, lon, lat, &rejected_by) {
        Some((court, distance_km)) => {
            let decision = RouteDecision {
                kind: task.kind,
                requesting_court_id: task.requesting_court_id.clone(),
                assisting_court_id: court.clone(),
                routing: if court == task.requesting_court_id {
                    Routing::OwnJurisdiction
                } else {
                    Routing::NearestCourt
                },
                distance_km,
                containing_court_id: None,
            };
            if let Some((task, messages)) = app
                .store
                .reroute(&task.task_id, &decision, &app.deadlines, &app.topics, now)
                .await?
            {
                tracing::info!(task_id = %task.task_id, to = %court, "rejected task re-routed");
                app.publisher
                    .send_dispatch(messages, &court, task.routing)
                    .await;
            }
        }
        None => {
            let supervisor = app
                .index
                .data()
                .court(&task.requesting_court_id)
                .and_then(|c| c.supervisor_court_id.clone());
            let messages = app
                .store
                .escalate_task(
                    &task.task_id,
                    supervisor.as_deref(),
                    "rejected by every participating court",
                    &app.topics,
                    now,
                )
                .await?;
            if let Some(supervisor) = &supervisor {
                metrics::escalation(supervisor);
            }
            tracing::warn!(task_id = %task.task_id, "rejected by every participating court; escalated");
            app.publisher
                .send(messages, |_| OutboundMeta::default())
                .await;
        }
    }
    Ok(())
}
