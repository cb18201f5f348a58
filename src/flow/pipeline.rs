//! The pipeline: every inbound message, in order, through decode → match → locate → route,
//! then a group commit of the matched ones, then acks.
//!
//! Unmatched sightings (almost all of them) cost a decode and one hash lookup and are acked
//! without touching the database. Matched sightings and status reports are written in one
//! transaction per batch (a few hundred, or a millisecond after the first durable item,
//! whichever comes first); only after the commit are the batch's messages acked, in the
//! order they arrived (MQTT requires in-order acks), and the committed outbox messages handed
//! to the publisher. A crash before the commit means the broker redelivers; after it, the
//! outbox publishes. Dead letters are published just before their message is acked.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::app::App;
use crate::app::auth::Principal;
use crate::app::status;
use crate::contract::decode::{self, DecodeLimits, RejectReason};
use crate::contract::model::Sighting;
use crate::contract::task::{MessageKind, StatusReport};
use crate::dispatch::policy::MatchedSighting;
use crate::dispatch::route;
use crate::geo::locate::{Location, Placement};
use crate::matching::targets::{Match, match_sightings};
use crate::metrics::{self, Stage};
use crate::mqtt::{Inbound, IngestClient, OutboundMeta, publish_size};
use crate::store::{MatchOutcome, StatusOutcome};

/// Everything the pipeline needs; built by the service.
pub struct Pipeline {
    /// The application context, shared with the HTTP API (status reports go through the
    /// same code either way).
    pub ctx: App,
    pub limits: DecodeLimits,
    pub max_batch: usize,
    pub batch_window: Duration,
    pub ingest: IngestClient,
    /// What is taken in and not yet acked, for `/readyz` and the metrics.
    pub pending: Arc<Pending>,
}

/// When the first message of each batch taken in but not yet acked was received, oldest
/// first. Batches are acked in order, so the front is the oldest unacked message: a pipeline
/// stuck on a database that does not answer shows as an age that keeps growing.
#[derive(Debug, Default)]
pub struct Pending {
    batches: Mutex<VecDeque<Instant>>,
}

impl Pending {
    /// How long the oldest message taken in has waited for its ack (zero when none waits).
    pub fn oldest_age(&self) -> Duration {
        let batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        batches.front().map_or(Duration::ZERO, Instant::elapsed)
    }

    fn started(&self, received_at: Instant) {
        let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        batches.push_back(received_at);
    }

    fn finished(&self) {
        let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        batches.pop_front();
    }
}

/// What to do with one inbound message once the batch is durable.
enum Disposition {
    /// Nothing to store: ack.
    Ack,
    /// Publish this dead letter, then ack.
    DeadLetter { topic: String, payload: Vec<u8> },
    /// A matched sighting, committed with the batch.
    Matched,
    /// A status report from `court`, applied at flush.
    Status { court: String, report: StatusReport },
}

#[derive(Default)]
struct Batch {
    items: Vec<(Inbound, Disposition)>,
    matched: Vec<MatchedSighting>,
    /// Per matched sighting: when it was received, for latency metrics.
    received: Vec<Instant>,
    durable_items: usize,
}

impl Pipeline {
    /// Runs until `stop` or until the inbound channel closes; the batch in hand is finished.
    pub async fn run(self, rx: mpsc::Receiver<Inbound>, stop: CancellationToken) {
        let pipeline = Arc::new(self);
        // One batch may wait while another commits: classification of the next batch
        // overlaps the commit of the previous one, and batches still commit (and ack) in order.
        let (batches_tx, mut batches_rx) = mpsc::channel::<Batch>(1);
        let committer = {
            let pipeline = pipeline.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                while let Some(batch) = batches_rx.recv().await {
                    let flushed = pipeline.flush(batch, &stop).await;
                    pipeline.pending.finished();
                    if !flushed {
                        break;
                    }
                }
            })
        };
        pipeline.classify(rx, batches_tx, stop).await;
        let _ = committer.await;
    }

    /// Builds batches: drains what is queued, waits up to the batch window once a batch holds
    /// something durable, and keeps growing the batch while the committer is busy.
    async fn classify(
        &self,
        mut rx: mpsc::Receiver<Inbound>,
        batches: mpsc::Sender<Batch>,
        stop: CancellationToken,
    ) {
        let mut open = true;
        while open {
            let first = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                next = rx.recv() => match next {
                    Some(inbound) => inbound,
                    None => break,
                },
            };
            let mut batch = Batch::default();
            self.pending.started(first.received_at);
            self.take(first, &mut batch);
            let mut window_ends: Option<tokio::time::Instant> = None;
            loop {
                let mut queued = Vec::new();
                while batch.items.len() + queued.len() < self.max_batch {
                    match rx.try_recv() {
                        Ok(inbound) => queued.push(inbound),
                        Err(_) => break,
                    }
                }
                if !queued.is_empty() {
                    self.take_all(queued, &mut batch);
                }
                let full = batch.items.len() >= self.max_batch;
                let window = (batch.durable_items > 0 && !full && open).then(|| {
                    *window_ends
                        .get_or_insert_with(|| tokio::time::Instant::now() + self.batch_window)
                });
                match window.filter(|ends| tokio::time::Instant::now() < *ends) {
                    Some(ends) => tokio::select! {
                        next = rx.recv() => match next {
                            Some(inbound) => self.take(inbound, &mut batch),
                            None => open = false,
                        },
                        _ = tokio::time::sleep_until(ends) => {}
                    },
                    None => tokio::select! {
                        biased;
                        permit = batches.reserve() => {
                            match permit {
                                Ok(permit) => permit.send(batch),
                                Err(_) => return, // the committer stopped (shutdown with the database down)
                            }
                            break;
                        }
                        next = rx.recv(), if !full && open && !stop.is_cancelled() => match next {
                            Some(inbound) => self.take(inbound, &mut batch),
                            None => open = false,
                        },
                    },
                }
            }
        }
    }

    /// Classifies one message (pure work only; nothing is stored or acked yet).
    fn take(&self, inbound: Inbound, batch: &mut Batch) {
        self.take_all(vec![inbound], batch);
    }

    /// Classifies messages in arrival order: decodes them all, matches every decoded
    /// sighting against one hotlist snapshot in one batched lookup (which overlaps the
    /// memory reads of a large hotlist, see [`crate::matching::hotlist`]), then routes the matches.
    fn take_all(&self, inbounds: Vec<Inbound>, batch: &mut Batch) {
        let now = self.ctx.now();
        let mut decoded: Vec<(Inbound, Result<Sighting, Disposition>)> =
            Vec::with_capacity(inbounds.len());
        for inbound in inbounds {
            let topic = &inbound.publish.topic;
            let outcome = match self.ctx.topics.sighting_source(topic) {
                Some(source) => self.decode_sighting(&inbound, source, now),
                None => Err(self.classify_other(&inbound, now)),
            };
            if let Err(Disposition::Status { .. }) = &outcome {
                batch.durable_items += 1;
            }
            decoded.push((inbound, outcome));
        }
        let sightings: Vec<&Sighting> = decoded
            .iter()
            .filter_map(|(_, d)| d.as_ref().ok())
            .collect();
        let mut found = Vec::new();
        if !sightings.is_empty() {
            let started = Instant::now();
            found = match_sightings(&self.ctx.targets.snapshot(), &sightings, now);
            let per_sighting = started.elapsed() / u32::try_from(sightings.len()).unwrap_or(1);
            for _ in 0..sightings.len() {
                metrics::stage(Stage::Match, per_sighting);
            }
        }
        let mut found = found.into_iter();
        for (inbound, outcome) in decoded {
            let disposition = match outcome {
                Ok(sighting) => match found.next().flatten() {
                    Some(m) => self.route_match(&inbound, sighting, m, batch),
                    None => Disposition::Ack, // privacy: an unmatched sighting leaves no trace
                },
                Err(disposition) => disposition,
            };
            batch.items.push((inbound, disposition));
        }
    }

    /// A status report, or a message on a topic the service does not read.
    fn classify_other(&self, inbound: &Inbound, now: chrono::DateTime<Utc>) -> Disposition {
        let topic = &inbound.publish.topic;
        let Some(court) = self.ctx.topics.status_court(topic) else {
            tracing::debug!(%topic, "message on an unexpected topic; acked and ignored");
            return Disposition::Ack;
        };
        let payload = &inbound.publish.payload;
        let decoded = if payload.len() > self.limits.max_payload_bytes {
            Err(format!(
                "payload is {} bytes, more than the limit of {} bytes",
                payload.len(),
                self.limits.max_payload_bytes
            ))
        } else {
            decode_status(payload)
                .and_then(|r| r.validate(now, &self.ctx.status_limits).map(|()| r))
        };
        match decoded {
            Ok(report) => Disposition::Status {
                court: court.to_string(),
                report,
            },
            Err(detail) => {
                metrics::status_rejected();
                let to = self.ctx.topics.deadletter_status();
                let payload = self.dead_letter(&to, inbound, "invalid_report", &detail);
                Disposition::DeadLetter { topic: to, payload }
            }
        }
    }

    /// The dead letter of `inbound`, to be published on `to`: cut to the ingest connection's
    /// packet limit (counted and logged when that drops part of the payload).
    fn dead_letter(&self, to: &str, inbound: &Inbound, reason: &str, detail: &str) -> Vec<u8> {
        let max_packet_size = self.ingest.max_packet_size();
        let room = max_packet_size.saturating_sub(publish_size(to, 0));
        let letter = decode::dead_letter_for(
            reason,
            detail,
            &inbound.publish.topic,
            &inbound.publish.payload,
            room,
        );
        if let Some(bytes) = letter.truncated_from {
            metrics::dead_letter_truncated();
            tracing::warn!(
                topic = %inbound.publish.topic,
                bytes,
                max_packet_size,
                reason,
                "dead letter's payload truncated to fit the packet limit"
            );
        }
        letter.bytes
    }

    /// Decodes a sighting; a rejected one becomes its dead letter.
    fn decode_sighting(
        &self,
        inbound: &Inbound,
        source: &str,
        now: chrono::DateTime<Utc>,
    ) -> Result<Sighting, Disposition> {
        let started = Instant::now();
        let decoded = decode::decode_sighting(source, &inbound.publish.payload, now, &self.limits);
        metrics::stage(Stage::Decode, started.elapsed());
        match decoded {
            Ok(sighting) => {
                metrics::sighting_received(sighting.kind);
                Ok(sighting)
            }
            Err(rejection) => {
                metrics::sighting_rejected(rejection.reason);
                tracing::debug!(
                    source,
                    reason = rejection.reason.as_str(),
                    "sighting rejected"
                );
                let to = self.ctx.topics.deadletter_sightings();
                let payload =
                    self.dead_letter(&to, inbound, rejection.reason.as_str(), &rejection.detail);
                Err(Disposition::DeadLetter { topic: to, payload })
            }
        }
    }

    /// Locates and routes a matched sighting and adds it to the batch's group commit.
    fn route_match(
        &self,
        inbound: &Inbound,
        sighting: Sighting,
        found: Match,
        batch: &mut Batch,
    ) -> Disposition {
        let span = tracing::debug_span!("sighting", source = %sighting.source, event_id = %sighting.event_id);
        let _entered = span.enter();
        metrics::sighting_matched(sighting.kind, found.fuzzy);
        let started = Instant::now();
        let location = self.ctx.index.locate(sighting.lon, sighting.lat);
        if let Some(letter) = self.out_of_area(inbound, &sighting, &location) {
            metrics::stage(Stage::Locate, started.elapsed());
            return letter;
        }
        let kind = route::sighting_task_kind(sighting.kind);
        let decision = route::decide(
            &found.target,
            kind,
            &self.ctx.index,
            &location,
            sighting.lon,
            sighting.lat,
        );
        metrics::stage(Stage::Locate, started.elapsed());
        let route = match decision {
            Ok(route) => route,
            Err(e) => {
                // Targets are validated on entry, so this means data changed under us.
                tracing::error!(error = %e, "matched target cannot be routed");
                return Disposition::Ack;
            }
        };
        tracing::debug!(target_id = %found.target.target_id, assisting = %route.assisting_court_id, "sighting matched");
        batch.durable_items += 1;
        batch.matched.push(MatchedSighting {
            sighting,
            target_id: found.target.target_id.clone(),
            cases: found.target.cases.clone(),
            route,
            read_plate: found.read_plate,
            fuzzy: found.fuzzy,
            substitutions: found.substitutions,
        });
        batch.received.push(inbound.received_at);
        Disposition::Matched
    }

    /// The dead letter of a matched sighting too far outside every participating area to be
    /// a lead for the nearest court, if it is one.
    fn out_of_area(
        &self,
        inbound: &Inbound,
        sighting: &Sighting,
        location: &Location,
    ) -> Option<Disposition> {
        if location.placement != Placement::NearestCenter {
            return None;
        }
        let km = self
            .ctx
            .index
            .distance_km(location.acting_court, sighting.lon, sighting.lat);
        let limit = self.ctx.policy.max_outside_km;
        if km <= limit {
            return None;
        }
        let reason = RejectReason::OutOfArea;
        metrics::sighting_rejected(reason);
        let nearest = &self.ctx.index.data().courts[location.acting_court].court_id;
        tracing::warn!(
            source = %sighting.source,
            event_id = %sighting.event_id,
            km = km.round(),
            "matched sighting outside every area and too far from any command center"
        );
        let detail = format!(
            "({}, {}) lies in no participating court's area and {km:.0} km from the nearest \
             command center ({nearest}); at most {limit} km is routed",
            sighting.lat, sighting.lon
        );
        let to = self.ctx.topics.deadletter_sightings();
        let payload = self.dead_letter(&to, inbound, reason.as_str(), &detail);
        Some(Disposition::DeadLetter { topic: to, payload })
    }

    /// Commits, publishes and acks a batch. Returns false if the pipeline must stop (the
    /// database stayed unreachable through a shutdown: nothing is acked, the broker will
    /// redeliver).
    async fn flush(&self, batch: Batch, stop: &CancellationToken) -> bool {
        metrics::batch_size(batch.items.len());
        if !batch.matched.is_empty() {
            let started = Instant::now();
            let Some((outcomes, messages)) = self.commit(&batch.matched, stop).await else {
                return false;
            };
            metrics::stage(Stage::Persist, started.elapsed());
            self.hand_over(&batch, &outcomes, messages).await;
        }
        let mut status_letters = Vec::new();
        for (inbound, disposition) in &batch.items {
            if let Disposition::Status { court, report } = disposition {
                if let Some(letter) = self.apply_status(inbound, court, report, stop).await {
                    status_letters.push((inbound.publish.pkid, letter));
                }
            }
        }
        for (inbound, disposition) in batch.items {
            match disposition {
                Disposition::DeadLetter { topic, payload } => {
                    self.ingest.publish(topic, payload).await
                }
                Disposition::Status { .. } => {
                    if let Some(pos) = status_letters
                        .iter()
                        .position(|(pkid, _)| *pkid == inbound.publish.pkid)
                    {
                        let (_, letter) = status_letters.swap_remove(pos);
                        self.ingest
                            .publish(self.ctx.topics.deadletter_status(), letter)
                            .await;
                    }
                }
                Disposition::Ack | Disposition::Matched => {}
            }
            self.ingest.ack(&inbound).await;
        }
        true
    }

    /// The group commit, retried while the database is unreachable.
    async fn commit(
        &self,
        matched: &[MatchedSighting],
        stop: &CancellationToken,
    ) -> Option<(Vec<MatchOutcome>, Vec<crate::contract::task::OutboxMessage>)> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let store = &self.ctx.store;
            let recorded = store.record_matches(
                matched,
                &self.ctx.deadlines,
                &self.ctx.policy,
                &self.ctx.topics,
                self.ctx.now(),
            );
            match store.bounded(recorded).await {
                Ok(result) => return Some(result),
                Err(e) => {
                    tracing::warn!(error = %e, batch = matched.len(), "group commit failed; retrying");
                    metrics::store_retry("group_commit");
                    if stop.is_cancelled() {
                        return None;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Metrics for the outcomes and the committed messages to the publisher.
    async fn hand_over(
        &self,
        batch: &Batch,
        outcomes: &[MatchOutcome],
        messages: Vec<crate::contract::task::OutboxMessage>,
    ) {
        // Each created (or reassigned) task wrote exactly one Task message, in batch order;
        // pair them up so the publisher can time ingest → PUBACK.
        let mut created = outcomes.iter().enumerate().filter_map(|(i, o)| match o {
            MatchOutcome::Created(task) | MatchOutcome::Reassigned { task, .. } => Some((i, task)),
            _ => None,
        });
        let mut next_created = created.next();
        let mut metas = Vec::with_capacity(messages.len());
        for message in &messages {
            let mut meta = OutboundMeta::default();
            if let Some((i, task)) = next_created {
                if message.kind == MessageKind::Task
                    && message.task_id.as_deref() == Some(task.task_id.as_str())
                {
                    let m = &batch.matched[i];
                    meta = OutboundMeta {
                        received_at: Some(batch.received[i]),
                        observed_at: Some(m.sighting.observed_at),
                        new_task: Some((task.assisting_court_id.clone(), task.routing)),
                        ..OutboundMeta::default()
                    };
                    log_task(task, &m.sighting);
                    next_created = created.next();
                }
            }
            metas.push(meta);
        }
        for outcome in outcomes {
            match outcome {
                MatchOutcome::Updated { .. } => metrics::task_update(),
                MatchOutcome::Duplicate => metrics::duplicate(),
                MatchOutcome::Reassigned { task, from } => {
                    tracing::info!(task_id = %task.task_id, %from, to = %task.assisting_court_id, "task moved after the dwell time");
                }
                _ => {}
            }
        }
        let mut metas = metas.into_iter();
        self.ctx
            .publisher
            .send(messages, |_| metas.next().unwrap_or_default())
            .await;
    }

    /// Applies one status report; returns a dead letter if it was refused.
    async fn apply_status(
        &self,
        inbound: &Inbound,
        court: &str,
        report: &StatusReport,
        stop: &CancellationToken,
    ) -> Option<Vec<u8>> {
        let span = tracing::info_span!("status_report", task_id = %report.task_id, court, status = %report.status);
        let mut backoff = Duration::from_millis(50);
        let caller = Principal::mqtt_court(court);
        let outcome = loop {
            let applied =
                status::apply(&self.ctx, report, Some(court), &caller).instrument(span.clone());
            match self.ctx.store.bounded(applied).await {
                Ok(outcome) => break outcome,
                Err(e) => {
                    tracing::warn!(error = %e, "could not apply a status report; retrying");
                    metrics::store_retry("status_report");
                    if stop.is_cancelled() {
                        return None;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        };
        match outcome {
            StatusOutcome::Applied { previous, .. } => {
                span.in_scope(|| tracing::info!(from = %previous, "task status changed"));
                None
            }
            StatusOutcome::Refused { reason } => {
                span.in_scope(|| tracing::info!(%reason, "status report refused"));
                let to = self.ctx.topics.deadletter_status();
                Some(self.dead_letter(&to, inbound, "refused", &reason))
            }
        }
    }
}

fn log_task(task: &crate::contract::task::Task, sighting: &Sighting) {
    tracing::info!(
        task_id = %task.task_id,
        target_id = %task.target_id,
        requesting = %task.requesting_court_id,
        assisting = %task.assisting_court_id,
        routing = ?task.routing,
        source = %sighting.source,
        event_id = %sighting.event_id,
        "task dispatched"
    );
}

/// Parses a StatusReport, with a readable reason when it is not one.
pub fn decode_status(payload: &[u8]) -> Result<StatusReport, String> {
    serde_json::from_slice::<StatusReport>(payload).map_err(|e| format!("not a StatusReport: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_unacked_batch_is_the_front_one() {
        let pending = Pending::default();
        assert_eq!(pending.oldest_age(), Duration::ZERO);
        let now = Instant::now();
        pending.started(now - Duration::from_secs(40));
        pending.started(now - Duration::from_secs(1));
        assert!(pending.oldest_age() >= Duration::from_secs(40));
        pending.finished();
        let age = pending.oldest_age();
        assert!(age >= Duration::from_secs(1) && age < Duration::from_secs(40));
        pending.finished();
        assert_eq!(pending.oldest_age(), Duration::ZERO);
    }
}
