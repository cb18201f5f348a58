//! Deadlines: a task not acknowledged by `ack_by`, or not resolved by `resolve_by`, goes to
//! the supervising court's `escalations` topic and the requesting court gets an Alert.
//!
//! The deadlines live in the database, so they survive restarts; each escalation is claimed
//! with a conditional update, so it fires once however many replicas run this loop. The loop
//! sleeps until the earliest deadline, or the check interval, whichever comes first.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::contract::task::Topics;
use crate::geo::geodata::GeoData;
use crate::metrics;
use crate::mqtt::{OutboundMeta, Publisher};
use crate::store::{EscalationKind, Store};

/// Court → its supervising court, from the courts data.
pub fn supervisors(data: &GeoData) -> HashMap<String, String> {
    data.courts
        .iter()
        .filter_map(|c| Some((c.court_id.clone(), c.supervisor_court_id.clone()?)))
        .collect()
}

/// Runs until `stop`.
pub async fn run(
    store: Store,
    supervisors: HashMap<String, String>,
    topics: Topics,
    publisher: Publisher,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        let wait = match store.next_deadline().await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(interval),
            Ok(None) => interval,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next deadline");
                interval
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match store.escalate_due(Utc::now(), &supervisors, &topics).await {
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
                publisher.send(messages, |_| OutboundMeta::default()).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not escalate due tasks"),
        }
    }
}
