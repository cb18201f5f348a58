//! Every metric leadrelay exports, named and described once, with one typed function per event.
//!
//! The service calls the functions below instead of `metrics::counter!` with string names, so
//! names and label sets cannot drift apart. Labels are bounded, non-personal values only —
//! kinds, reasons, court ids, routings, statuses, stages — never a plate or an identity number
//! (docs/architecture.md). `/metrics` renders the [`PrometheusHandle`] that [`install`]
//! returns; the exporter's own HTTP listener is not used.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::contract::decode::RejectReason;
use crate::contract::model::{Routing, TargetKind};
use crate::contract::task::TaskStatus;

/// Sightings taken off the wire, by `kind`.
pub const SIGHTINGS_RECEIVED: &str = "leadrelay_sightings_received_total";
/// Sightings refused at decode, by `reason` (see [`RejectReason::as_str`]).
pub const SIGHTINGS_REJECTED: &str = "leadrelay_sightings_rejected_total";
/// Sightings that matched a target, by `kind` and `fuzzy` (`true` for a confusable match).
pub const SIGHTINGS_MATCHED: &str = "leadrelay_sightings_matched_total";
/// Redeliveries of an already processed `(source, event_id)`.
pub const SIGHTINGS_DUPLICATE: &str = "leadrelay_sightings_duplicate_total";
/// New tasks sent to a command center, by assisting `court` and `routing`.
pub const TASKS_DISPATCHED: &str = "leadrelay_tasks_dispatched_total";
/// TaskUpdates sent (newer sightings and status changes).
pub const TASK_UPDATES: &str = "leadrelay_task_updates_total";
/// StatusReports accepted, by reported `status`.
pub const STATUS_REPORTS: &str = "leadrelay_status_reports_total";
/// StatusReports refused (sent to `deadletter/status`).
pub const STATUS_REJECTED: &str = "leadrelay_status_rejected_total";
/// MQTT publishes that failed and were left in the outbox for a retry.
pub const PUBLISH_FAILURES: &str = "leadrelay_publish_failures_total";
/// Dead letters whose carried payload was cut to fit the largest packet sent.
pub const DEAD_LETTERS_TRUNCATED: &str = "leadrelay_dead_letters_truncated_total";
/// Outbox messages the MQTT client can never send (over the packet limit), set aside.
pub const OUTBOX_REJECTED: &str = "leadrelay_outbox_rejected_total";
/// Group commits and status reports the database refused or could not be reached for,
/// retried until they succeed (their messages stay unacked meanwhile), by `what`.
pub const STORE_RETRIES: &str = "leadrelay_store_retries_total";
/// Sighting received → PUBACK of its task.
pub const INGEST_TO_DISPATCH: &str = "leadrelay_ingest_to_dispatch_seconds";
/// Sighting's `observed_at` → PUBACK of its task; includes the feed's own delay.
pub const SIGHTING_TO_DISPATCH: &str = "leadrelay_sighting_to_dispatch_seconds";
/// Task dispatched → acknowledged by the command center, by `court`.
pub const DISPATCH_TO_ACK: &str = "leadrelay_dispatch_to_ack_seconds";
/// Task dispatched → closed (seized, located, not_found, rejected, cancelled), by `court`
/// and `outcome`.
pub const DISPATCH_TO_RESOLUTION: &str = "leadrelay_dispatch_to_resolution_seconds";
/// Deadlines missed, by assisting `court` and `kind` (`ack` or `resolve`).
pub const SLA_BREACHES: &str = "leadrelay_sla_breaches_total";
/// Tasks sent to a supervising court, by the supervising `court`.
pub const ESCALATIONS: &str = "leadrelay_escalations_total";
/// Latency of one step of the flow, by `stage`.
pub const STAGE: &str = "leadrelay_stage_seconds";
/// Time a group commit spent in each of its steps, by `step`.
pub const COMMIT_STEP: &str = "leadrelay_commit_step_seconds";
/// Rows per group commit.
pub const BATCH_SIZE: &str = "leadrelay_batch_size";
/// Open tasks held by a `court`.
pub const OPEN_TASKS: &str = "leadrelay_open_tasks";
/// Targets in the hotlist, by `kind`.
pub const TARGETS: &str = "leadrelay_targets";
/// Messages written to the outbox and not yet published.
pub const OUTBOX_PENDING: &str = "leadrelay_outbox_pending";
/// 1 while the MQTT connection is up.
pub const MQTT_CONNECTED: &str = "leadrelay_mqtt_connected";
/// Seconds the oldest message taken in by the pipeline has waited for its ack.
pub const OLDEST_UNACKED: &str = "leadrelay_oldest_unacked_seconds";
/// 1 while the database answers a ping (the check `/readyz` makes), else 0.
pub const DATABASE_UP: &str = "leadrelay_database_up";
/// Always 1; its labels say which build runs (`version`, `commit`).
pub const BUILD_INFO: &str = "leadrelay_build_info";
/// The commit the binary was built from: build.rs asks git, else `unknown`.
const COMMIT: &str = env!("LEADRELAY_COMMIT");

/// From 100 µs (one decode+match is a few µs, a commit well under a millisecond) to the
/// 30-minute resolve deadline, so both the hot path and the human loop resolve.
const SECONDS_BUCKETS: [f64; 20] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 300.0, 1800.0,
];
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
/// Histograms drain into their buckets here and at every render; this bounds memory when
/// nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Why the Prometheus recorder could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("another metrics recorder is already installed in this process")]
    OtherRecorderInstalled,
    #[error("invalid Prometheus exporter configuration: {0}")]
    Config(String),
}

/// A step of the flow, for [`stage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Decode,
    Match,
    Locate,
    Persist,
    Publish,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Decode,
        Stage::Match,
        Stage::Locate,
        Stage::Persist,
        Stage::Publish,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Match => "match",
            Stage::Locate => "locate",
            Stage::Persist => "persist",
            Stage::Publish => "publish",
        }
    }
}

/// The steps of a group commit (`Store::record_matches`), in the order it runs them. Each
/// commit records how long it spent in each, so where the durable path's time goes shows
/// in `/metrics` without a special build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStep {
    /// Waiting for the one writer connection and taking the write lock.
    Begin,
    /// Recording the event ids, which tells the new sightings from redeliveries.
    EventIds,
    /// Reading the targets' rows (status, validity, cases) with their open tasks and recent
    /// `not_found` closures.
    Targets,
    /// Deciding per sighting: new task, update, or nothing.
    Plan,
    /// Inserting the new tasks (their messages are built meanwhile).
    Tasks,
    /// Building and inserting the history rows. On SQLite a batch of a few sightings inserts
    /// its tasks, history and outbox row here, as one list of statements.
    History,
    /// Moving reassigned tasks and writing the outbox row.
    Outbox,
    /// `COMMIT`: the WAL write and its fsync on SQLite.
    Commit,
}

impl CommitStep {
    pub const ALL: [CommitStep; 8] = [
        CommitStep::Begin,
        CommitStep::EventIds,
        CommitStep::Targets,
        CommitStep::Plan,
        CommitStep::Tasks,
        CommitStep::History,
        CommitStep::Outbox,
        CommitStep::Commit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommitStep::Begin => "begin",
            CommitStep::EventIds => "event_ids",
            CommitStep::Targets => "targets",
            CommitStep::Plan => "plan",
            CommitStep::Tasks => "tasks",
            CommitStep::History => "history",
            CommitStep::Outbox => "outbox",
            CommitStep::Commit => "commit",
        }
    }
}

/// Handles of the series recorded for every sighting or task, taken once the recorder is
/// installed: `histogram!` and `counter!` look their series up in the recorder's registry on
/// every call (hashing the name and labels, and copying labels not written as literals), three
/// to six times per sighting.
struct Hot {
    /// Indexed by `Stage as usize`, in the order of [`Stage::ALL`].
    stages: [Histogram; 5],
    ingest_to_dispatch: Histogram,
    sighting_to_dispatch: Histogram,
    /// Indexed by [`kind_index`].
    received: [Counter; 2],
    /// Indexed by [`kind_index`], then by `fuzzy as usize`.
    matched: [[Counter; 2]; 2],
}

const KINDS: [TargetKind; 2] = [TargetKind::Vehicle, TargetKind::Person];

fn kind_index(kind: TargetKind) -> usize {
    match kind {
        TargetKind::Vehicle => 0,
        TargetKind::Person => 1,
    }
}

fn fuzzy_label(fuzzy: bool) -> &'static str {
    if fuzzy { "true" } else { "false" }
}

static HOT: OnceLock<Hot> = OnceLock::new();

/// The `process_*` families (CPU seconds, resident and virtual memory, open and maximum fds,
/// threads, start time), read from `/proc` at every scrape.
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// Installs the Prometheus recorder as the process's global recorder and describes every
/// metric; returns the handle `/metrics` renders.
///
/// Idempotent: a process may start the service more than once (tests do), and the global
/// recorder can be set only once, so later calls return the first call's handle (or error).
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    static INSTALLED: OnceLock<Result<PrometheusHandle, MetricsError>> = OnceLock::new();
    INSTALLED.get_or_init(install_once).clone()
}

fn install_once() -> Result<PrometheusHandle, MetricsError> {
    let mut builder = PrometheusBuilder::new();
    for name in [
        INGEST_TO_DISPATCH,
        SIGHTING_TO_DISPATCH,
        DISPATCH_TO_ACK,
        DISPATCH_TO_RESOLUTION,
        STAGE,
        COMMIT_STEP,
    ] {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), &SECONDS_BUCKETS)
            .map_err(|e| MetricsError::Config(e.to_string()))?;
    }
    builder = builder
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.to_owned()), &BATCH_BUCKETS)
        .map_err(|e| MetricsError::Config(e.to_string()))?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::OtherRecorderInstalled)?;
    describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "commit" => COMMIT).set(1.0);
    let process = PROCESS.get_or_init(metrics_process::Collector::default);
    process.describe();
    process.collect();
    let _ = HOT.set(Hot {
        stages: Stage::ALL.map(|stage| histogram!(STAGE, "stage" => stage.as_str())),
        ingest_to_dispatch: histogram!(INGEST_TO_DISPATCH),
        sighting_to_dispatch: histogram!(SIGHTING_TO_DISPATCH),
        received: KINDS.map(|kind| counter!(SIGHTINGS_RECEIVED, "kind" => kind_label(kind))),
        matched: KINDS.map(|kind| {
            [false, true].map(|fuzzy| {
                counter!(SIGHTINGS_MATCHED, "kind" => kind_label(kind), "fuzzy" => fuzzy_label(fuzzy))
            })
        }),
    });
    let upkeep = handle.clone();
    // If the thread cannot start, renders still drain the histograms; only idle memory grows.
    let _ = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        });
    Ok(handle)
}

/// The HELP and TYPE of every metric; the recorder keeps the first description of each name.
fn describe() {
    describe_counter!(
        SIGHTINGS_RECEIVED,
        Unit::Count,
        "Sightings received from the feeds, by kind."
    );
    describe_counter!(
        SIGHTINGS_REJECTED,
        Unit::Count,
        "Sightings refused at decode and dead-lettered, by reason."
    );
    describe_counter!(
        SIGHTINGS_MATCHED,
        Unit::Count,
        "Sightings that matched a flagged target, by kind and whether the plate match was fuzzy."
    );
    describe_counter!(
        SIGHTINGS_DUPLICATE,
        Unit::Count,
        "Redelivered sightings whose (source, event_id) was already processed."
    );
    describe_counter!(
        TASKS_DISPATCHED,
        Unit::Count,
        "New tasks sent to a command center, by assisting court and routing."
    );
    describe_counter!(
        TASK_UPDATES,
        Unit::Count,
        "Task updates sent (newer sightings and status changes)."
    );
    describe_counter!(
        STATUS_REPORTS,
        Unit::Count,
        "Status reports accepted from command centers, by status."
    );
    describe_counter!(
        STATUS_REJECTED,
        Unit::Count,
        "Status reports refused and dead-lettered."
    );
    describe_counter!(
        PUBLISH_FAILURES,
        Unit::Count,
        "MQTT publishes that failed and stay in the outbox for a retry."
    );
    describe_counter!(
        DEAD_LETTERS_TRUNCATED,
        Unit::Count,
        "Dead letters whose payload was cut to fit the largest packet sent."
    );
    describe_counter!(
        OUTBOX_REJECTED,
        Unit::Count,
        "Outbox messages too large to ever be sent, moved to outbox_rejected."
    );
    describe_counter!(
        STORE_RETRIES,
        Unit::Count,
        "Database writes that failed and are retried (group commits, status reports)."
    );
    describe_histogram!(
        INGEST_TO_DISPATCH,
        Unit::Seconds,
        "Time from receiving a sighting to the broker's PUBACK of its task."
    );
    describe_histogram!(
        SIGHTING_TO_DISPATCH,
        Unit::Seconds,
        "Time from a sighting's observed_at to the broker's PUBACK of its task."
    );
    describe_histogram!(
        DISPATCH_TO_ACK,
        Unit::Seconds,
        "Time from dispatching a task to its acknowledgement, by assisting court."
    );
    describe_histogram!(
        DISPATCH_TO_RESOLUTION,
        Unit::Seconds,
        "Time from dispatching a task to its closing status, by assisting court and outcome."
    );
    describe_counter!(
        SLA_BREACHES,
        Unit::Count,
        "Tasks not acknowledged (kind=ack) or not resolved (kind=resolve) by their deadline."
    );
    describe_counter!(
        ESCALATIONS,
        Unit::Count,
        "Tasks escalated to a supervising court, by that court."
    );
    describe_histogram!(
        STAGE,
        Unit::Seconds,
        "Latency of one step of the flow, by stage."
    );
    describe_histogram!(
        COMMIT_STEP,
        Unit::Seconds,
        "Time one group commit spent in one of its steps, by step."
    );
    describe_histogram!(BATCH_SIZE, Unit::Count, "Rows written per group commit.");
    describe_gauge!(
        OPEN_TASKS,
        Unit::Count,
        "Open tasks (dispatched, acknowledged, en route) held by a court."
    );
    describe_gauge!(
        TARGETS,
        Unit::Count,
        "Matchable targets in the hotlist, by kind."
    );
    describe_gauge!(
        OUTBOX_PENDING,
        Unit::Count,
        "Outbox messages not yet published."
    );
    describe_gauge!(
        MQTT_CONNECTED,
        "1 while connected to the MQTT broker, else 0."
    );
    describe_gauge!(
        OLDEST_UNACKED,
        Unit::Seconds,
        "How long the oldest message taken in has waited for its ack (0 when none waits)."
    );
    describe_gauge!(
        DATABASE_UP,
        "1 while the database answers a ping within 2 s, else 0."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1: the version and commit of the running build."
    );
}

/// Registers, at zero, every series whose labels are known before anything happens: every
/// kind, reason, stage, step, status and routing, and per court (`courts`: those that take
/// tasks; `supervisors`: those that receive escalations). A family then shows from the first
/// scrape, and the first event of a series counts in `increase()` instead of being its start.
pub fn start_at_zero(courts: &[&str], supervisors: &[&str]) {
    for reason in RejectReason::ALL {
        counter!(SIGHTINGS_REJECTED, "reason" => reason.as_str()).increment(0);
    }
    for name in [
        SIGHTINGS_DUPLICATE,
        TASK_UPDATES,
        STATUS_REJECTED,
        PUBLISH_FAILURES,
        DEAD_LETTERS_TRUNCATED,
        OUTBOX_REJECTED,
    ] {
        counter!(name).increment(0);
    }
    for what in ["group_commit", "status_report"] {
        counter!(STORE_RETRIES, "what" => what).increment(0);
    }
    for status in TaskStatus::REPORTABLE {
        counter!(STATUS_REPORTS, "status" => status.as_str()).increment(0);
    }
    for step in CommitStep::ALL {
        let _ = histogram!(COMMIT_STEP, "step" => step.as_str());
    }
    let _ = histogram!(BATCH_SIZE);
    for kind in KINDS {
        gauge!(TARGETS, "kind" => kind_label(kind)).increment(0.0);
    }
    for name in [OUTBOX_PENDING, MQTT_CONNECTED, OLDEST_UNACKED, DATABASE_UP] {
        gauge!(name).increment(0.0);
    }
    for &court in courts {
        let court = court.to_owned();
        for routing in [
            Routing::OwnJurisdiction,
            Routing::InJurisdiction,
            Routing::NearestCourt,
        ] {
            let routing = routing_label(routing);
            counter!(TASKS_DISPATCHED, "court" => court.clone(), "routing" => routing).increment(0);
        }
        for kind in ["ack", "resolve"] {
            counter!(SLA_BREACHES, "court" => court.clone(), "kind" => kind).increment(0);
        }
        gauge!(OPEN_TASKS, "court" => court.clone()).increment(0.0);
        let _ = histogram!(DISPATCH_TO_ACK, "court" => court.clone());
        for outcome in TaskStatus::REPORTABLE.into_iter().filter(|s| !s.is_open()) {
            let _ = histogram!(DISPATCH_TO_RESOLUTION, "court" => court.clone(), "outcome" => outcome.as_str());
        }
    }
    for &court in supervisors {
        counter!(ESCALATIONS, "court" => court.to_owned()).increment(0);
    }
}

/// Reads the process's figures from `/proc` now; `/metrics` calls it before rendering.
pub fn collect_process() {
    if let Some(process) = PROCESS.get() {
        process.collect();
    }
}

fn kind_label(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Vehicle => "vehicle",
        TargetKind::Person => "person",
    }
}

fn routing_index(routing: Routing) -> usize {
    match routing {
        Routing::OwnJurisdiction => 0,
        Routing::InJurisdiction => 1,
        Routing::NearestCourt => 2,
    }
}

fn routing_label(routing: Routing) -> &'static str {
    match routing {
        Routing::OwnJurisdiction => "own_jurisdiction",
        Routing::InJurisdiction => "in_jurisdiction",
        Routing::NearestCourt => "nearest_court",
    }
}

pub fn sighting_received(kind: TargetKind) {
    match HOT.get() {
        Some(hot) => hot.received[kind_index(kind)].increment(1),
        None => counter!(SIGHTINGS_RECEIVED, "kind" => kind_label(kind)).increment(1),
    }
}

pub fn sighting_rejected(reason: RejectReason) {
    counter!(SIGHTINGS_REJECTED, "reason" => reason.as_str()).increment(1);
}

pub fn sighting_matched(kind: TargetKind, fuzzy: bool) {
    match HOT.get() {
        Some(hot) => hot.matched[kind_index(kind)][usize::from(fuzzy)].increment(1),
        None => {
            counter!(SIGHTINGS_MATCHED, "kind" => kind_label(kind), "fuzzy" => fuzzy_label(fuzzy))
                .increment(1)
        }
    }
}

pub fn duplicate() {
    counter!(SIGHTINGS_DUPLICATE).increment(1);
}

/// `court` is a court id (lower-case ASCII from the jurisdiction data), never free text.
///
/// Once per new task, so the handles are kept per thread (court id → one per routing): a
/// `counter!` with the court's id would copy it and look the series up every time.
pub fn task_dispatched(court: &str, routing: Routing) {
    thread_local! {
        static DISPATCHED: RefCell<HashMap<String, [Option<Counter>; 3]>> =
            RefCell::new(HashMap::new());
    }
    let fresh = || {
        let routing = routing_label(routing);
        counter!(TASKS_DISPATCHED, "court" => court.to_owned(), "routing" => routing)
    };
    if HOT.get().is_none() {
        return fresh().increment(1);
    }
    DISPATCHED.with_borrow_mut(|courts| {
        let handles = match courts.get_mut(court) {
            Some(handles) => handles,
            None => courts.entry(court.to_owned()).or_default(),
        };
        handles[routing_index(routing)]
            .get_or_insert_with(fresh)
            .increment(1);
    });
}

pub fn task_update() {
    counter!(TASK_UPDATES).increment(1);
}

pub fn status_report(status: TaskStatus) {
    counter!(STATUS_REPORTS, "status" => status.as_str()).increment(1);
}

pub fn status_rejected() {
    counter!(STATUS_REJECTED).increment(1);
}

pub fn publish_failure() {
    counter!(PUBLISH_FAILURES).increment(1);
}

pub fn dead_letter_truncated() {
    counter!(DEAD_LETTERS_TRUNCATED).increment(1);
}

pub fn outbox_rejected() {
    counter!(OUTBOX_REJECTED).increment(1);
}

/// `what`: `group_commit` or `status_report`.
pub fn store_retry(what: &'static str) {
    counter!(STORE_RETRIES, "what" => what).increment(1);
}

pub fn ingest_to_dispatch(d: Duration) {
    match HOT.get() {
        Some(hot) => hot.ingest_to_dispatch.record(d.as_secs_f64()),
        None => histogram!(INGEST_TO_DISPATCH).record(d.as_secs_f64()),
    }
}

/// Camera clocks may run ahead of ours, so a negative span is recorded as zero.
pub fn sighting_to_dispatch(seconds: f64) {
    match HOT.get() {
        Some(hot) => hot.sighting_to_dispatch.record(seconds.max(0.0)),
        None => histogram!(SIGHTING_TO_DISPATCH).record(seconds.max(0.0)),
    }
}

/// Clamped at zero like [`sighting_to_dispatch`]: the report's `at` comes from another clock.
pub fn dispatch_to_ack(court: &str, seconds: f64) {
    histogram!(DISPATCH_TO_ACK, "court" => court.to_owned()).record(seconds.max(0.0));
}

/// A task closed after `seconds` with `outcome` (its closing status).
pub fn dispatch_to_resolution(court: &str, outcome: TaskStatus, seconds: f64) {
    histogram!(DISPATCH_TO_RESOLUTION, "court" => court.to_owned(), "outcome" => outcome.as_str())
        .record(seconds.max(0.0));
}

/// A deadline of `kind` (`ack` or `resolve`) was missed by `court`.
pub fn sla_breach(court: &str, kind: &'static str) {
    counter!(SLA_BREACHES, "court" => court.to_owned(), "kind" => kind).increment(1);
}

/// A task went to the supervising `court`.
pub fn escalation(court: &str) {
    counter!(ESCALATIONS, "court" => court.to_owned()).increment(1);
}

pub fn stage(stage: Stage, d: Duration) {
    match HOT.get() {
        Some(hot) => hot.stages[stage as usize].record(d.as_secs_f64()),
        None => histogram!(STAGE, "stage" => stage.as_str()).record(d.as_secs_f64()),
    }
}

/// Recorded once per group commit and step, not per sighting, so the registry lookup of
/// `histogram!` costs nothing that shows.
pub fn commit_step(step: CommitStep, d: Duration) {
    histogram!(COMMIT_STEP, "step" => step.as_str()).record(d.as_secs_f64());
}

pub fn batch_size(n: usize) {
    histogram!(BATCH_SIZE).record(n as f64);
}

pub fn set_open_tasks(court: &str, n: i64) {
    gauge!(OPEN_TASKS, "court" => court.to_owned()).set(n as f64);
}

pub fn set_targets(kind: TargetKind, n: usize) {
    gauge!(TARGETS, "kind" => kind_label(kind)).set(n as f64);
}

pub fn set_outbox_pending(n: i64) {
    gauge!(OUTBOX_PENDING).set(n as f64);
}

pub fn set_mqtt_connected(connected: bool) {
    gauge!(MQTT_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

pub fn set_oldest_unacked(age: Duration) {
    gauge!(OLDEST_UNACKED).set(age.as_secs_f64());
}

pub fn set_database_up(up: bool) {
    gauge!(DATABASE_UP).set(if up { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_handles_are_indexed_in_declaration_order() {
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(stage as usize, i, "{}", stage.as_str());
        }
    }

    #[test]
    fn renders_names_buckets_and_help() {
        let handle = install().unwrap();
        sighting_received(TargetKind::Vehicle);
        sighting_rejected(RejectReason::InvalidPlate);
        sighting_matched(TargetKind::Person, true);
        task_dispatched("cixi", Routing::InJurisdiction);
        status_report(TaskStatus::EnRoute);
        ingest_to_dispatch(Duration::from_micros(700));
        sighting_to_dispatch(-3.0);
        stage(Stage::Decode, Duration::from_micros(3));
        commit_step(CommitStep::Tasks, Duration::from_micros(250));
        batch_size(17);
        set_open_tasks("cixi", 2);
        set_mqtt_connected(true);

        // A second install (a second service start) shares the same recorder.
        install().unwrap().render();
        duplicate();
        let out = handle.render();
        for needle in [
            "leadrelay_sightings_received_total{kind=\"vehicle\"}",
            "leadrelay_sightings_rejected_total{reason=\"invalid_plate\"}",
            "leadrelay_sightings_matched_total{kind=\"person\",fuzzy=\"true\"}",
            "leadrelay_tasks_dispatched_total{court=\"cixi\",routing=\"in_jurisdiction\"}",
            "leadrelay_status_reports_total{status=\"en_route\"}",
            "leadrelay_sightings_duplicate_total",
            "leadrelay_ingest_to_dispatch_seconds_bucket{le=\"0.001\"} 1",
            "leadrelay_ingest_to_dispatch_seconds_bucket{le=\"0.0005\"} 0",
            "leadrelay_sighting_to_dispatch_seconds_bucket{le=\"0.0001\"} 1",
            "leadrelay_stage_seconds_bucket{stage=\"decode\",le=\"0.0001\"} 1",
            "leadrelay_commit_step_seconds_bucket{step=\"tasks\",le=\"0.0005\"} 1",
            "leadrelay_commit_step_seconds_bucket{step=\"tasks\",le=\"0.0001\"} 0",
            "leadrelay_batch_size_bucket{le=\"20\"} 1",
            "leadrelay_open_tasks{court=\"cixi\"} 2",
            "leadrelay_mqtt_connected 1",
            "# HELP leadrelay_sightings_received_total Sightings received",
            "# HELP leadrelay_stage_seconds Latency of one step",
            "# TYPE leadrelay_stage_seconds histogram",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in\n{out}");
        }
    }

    /// The per-thread handles of `task_dispatched` add to the one series per court and routing.
    #[test]
    fn dispatched_counts_add_up_across_threads() {
        let handle = install().unwrap();
        let court = "counting-test-court"; // no other test uses it: the recorder is shared
        for _ in 0..3 {
            task_dispatched(court, Routing::InJurisdiction);
        }
        task_dispatched(court, Routing::NearestCourt);
        std::thread::spawn(move || task_dispatched(court, Routing::InJurisdiction))
            .join()
            .unwrap();
        let out = handle.render();
        for needle in [
            "leadrelay_tasks_dispatched_total{court=\"counting-test-court\",routing=\"in_jurisdiction\"} 4",
            "leadrelay_tasks_dispatched_total{court=\"counting-test-court\",routing=\"nearest_court\"} 1",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in\n{out}");
        }
    }

    #[test]
    fn labels_are_distinct() {
        let stages: std::collections::HashSet<_> = Stage::ALL.map(Stage::as_str).into();
        assert_eq!(stages.len(), Stage::ALL.len());
        let steps: std::collections::HashSet<_> = CommitStep::ALL.map(CommitStep::as_str).into();
        assert_eq!(steps.len(), CommitStep::ALL.len());
    }
}
