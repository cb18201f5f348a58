//! What every store test shares: the databases, sample targets and sightings.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadrelay::contract::model::{
    Case, KnownLocation, Routing, Sighting, Target, TargetKind, TargetStatus, TaskKind,
};
use leadrelay::contract::task::{OutboxMessage, StatusReport, Task, TaskStatus, Topics};
use leadrelay::dispatch::policy::{Deadlines, MatchedSighting, Policy};
use leadrelay::dispatch::route::RouteDecision;
use leadrelay::geo::datum::Datum;
use leadrelay::store::{Escalation, MatchOutcome, StatusOutcome, Store, isolated_postgres_url};

/// A database to test against; the temporary directory lives as long as it.
pub(crate) struct TestDb {
    pub(crate) label: &'static str,
    pub(crate) url: String,
    pub(crate) _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub(crate) async fn connect(&self) -> Store {
        Store::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.label))
    }
}

impl TestDb {
    /// SQLite in a temporary file.
    pub(crate) fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        TestDb {
            label: "sqlite",
            url: format!("sqlite://{}", dir.path().join("store.db").display()),
            _dir: Some(dir),
        }
    }

    /// PostgreSQL in a fresh schema, when `LEADRELAY_TEST_DATABASE_URL` is set.
    pub(crate) async fn postgres() -> Option<TestDb> {
        let base = std::env::var("LEADRELAY_TEST_DATABASE_URL")
            .ok()
            .filter(|b| !b.is_empty());
        let Some(base) = base else {
            eprintln!("LEADRELAY_TEST_DATABASE_URL is not set: PostgreSQL not tested");
            return None;
        };
        Some(TestDb {
            label: "postgres",
            url: isolated_postgres_url(&base).await.unwrap(),
            _dir: None,
        })
    }
}

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 12, 3, 2, 15, 0).unwrap()
}

pub(crate) fn case(court: &str, filed: &str) -> Case {
    Case {
        case_no: format!("({filed})执 {court}"),
        court_id: court.into(),
        filed_on: filed.parse().unwrap(),
        amount_cny: Some(50000.0),
    }
}

pub(crate) fn vehicle(id: &str, plate: &str) -> Target {
    Target {
        target_id: id.into(),
        kind: TargetKind::Vehicle,
        plate: Some(plate.parse().unwrap()),
        person_id: None,
        name: Some("王某".into()),
        status: TargetStatus::Active,
        lead_court_id: None,
        cases: vec![case("yuyao", "2024-03-01")],
        known_locations: vec![KnownLocation {
            label: "domicile".into(),
            lat: 30.04,
            lon: 121.15,
            datum: Datum::Wgs84,
        }],
        valid_until: None,
    }
}

pub(crate) fn person(id: &str) -> Target {
    Target {
        target_id: id.into(),
        kind: TargetKind::Person,
        plate: None,
        person_id: Some("11010519491231002X".parse().unwrap()),
        name: None,
        status: TargetStatus::Active,
        lead_court_id: Some("ningbo_intermediate".into()),
        cases: vec![case("cixi", "2023-06-01"), case("yuyao", "2024-01-01")],
        known_locations: vec![],
        valid_until: Some(t0() + Duration::days(365)),
    }
}

/// A sighting of `target` from `source`, routed from yuyao (requesting) to `assisting`.
pub(crate) fn matched(
    target: &Target,
    source: &str,
    event_id: &str,
    assisting: &str,
) -> MatchedSighting {
    let (kind, task_kind) = match target.kind {
        TargetKind::Vehicle => (TargetKind::Vehicle, TaskKind::VehicleSeizure),
        TargetKind::Person => (TargetKind::Person, TaskKind::PersonLocate),
    };
    MatchedSighting {
        sighting: Sighting {
            event_id: event_id.into(),
            kind,
            plate: target.plate,
            person_id: target.person_id,
            lat: 30.1703,
            lon: 121.2661,
            datum: Datum::Gcj02,
            observed_at: t0() - Duration::seconds(2),
            source: source.into(),
            confidence: Some(0.93),
        },
        target_id: target.target_id.clone(),
        route: RouteDecision {
            kind: task_kind,
            requesting_court_id: "yuyao".into(),
            assisting_court_id: assisting.into(),
            routing: if assisting == "yuyao" {
                Routing::OwnJurisdiction
            } else {
                Routing::InJurisdiction
            },
            distance_km: 3.25,
            containing_court_id: Some(assisting.into()),
        },
        read_plate: None,
        fuzzy: false,
        substitutions: 0,
        cases: vec![],
    }
}

pub(crate) async fn record(
    store: &Store,
    batch: &[MatchedSighting],
    now: DateTime<Utc>,
) -> (Vec<MatchOutcome>, Vec<OutboxMessage>) {
    store
        .record_matches(
            batch,
            &Deadlines::default(),
            &Policy::default(),
            &Topics::new(""),
            now,
        )
        .await
        .unwrap()
}

pub(crate) fn created(outcome: &MatchOutcome) -> &Task {
    match outcome {
        MatchOutcome::Created(task) => task,
        other => panic!("expected a new task, got {other:?}"),
    }
}

pub(crate) fn report(task_id: &str, status: TaskStatus, by: &str) -> StatusReport {
    StatusReport {
        task_id: task_id.into(),
        status,
        at: None,
        by: by.into(),
        note: "on it".into(),
    }
}

pub(crate) fn refused(outcome: StatusOutcome) -> String {
    match outcome {
        StatusOutcome::Refused { reason } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Rows a refused or duplicate operation must not add to.
pub(crate) async fn footprint(
    store: &Store,
    task_id: &str,
) -> (i64, usize, usize, Option<TaskStatus>) {
    (
        store.outbox_pending_count().await.unwrap(),
        store.task_history(task_id).await.unwrap().len(),
        store.list_tasks(None, None, 10_000).await.unwrap().len(),
        store.get_task(task_id).await.unwrap().map(|t| t.status),
    )
}

/// Writes an outbox row as the schema before migration 0004 did: one message, `frames` NULL.
pub(crate) async fn insert_outbox_row_from_before_0004(db: &TestDb, topic: &str, payload: &[u8]) {
    use sqlx::Connection as _;
    let sql = "INSERT INTO outbox (topic, payload, created_at) VALUES ($1, $2, $3)";
    if db.label == "sqlite" {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        let q = sqlx::query(sql).bind(topic).bind(payload).bind(0i64);
        q.execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let q = sqlx::query(sql).bind(topic).bind(payload).bind(0i64);
        q.execute(&mut conn).await.unwrap();
    }
}

// Helpers of the enforcement workflow's tests: command centers, policy, supervisors.

/// Command centers of the tests (lon, lat), roughly where the real ones are.
pub(crate) const CIXI: (f64, f64) = (121.27, 30.17);

pub(crate) const YUYAO: (f64, f64) = (121.15, 30.04);

/// Near the Cixi–Yuyao line: about 10 km from either command center.
pub(crate) const BORDER: (f64, f64) = (121.2, 30.1);

/// Deep in Yuyao's south-west: about 35 km from Cixi's command center.
pub(crate) const FAR_YUYAO: (f64, f64) = (121.0, 29.9);

pub(crate) fn policy() -> Policy {
    Policy {
        centers: Arc::new(HashMap::from([
            ("cixi".to_string(), CIXI),
            ("yuyao".to_string(), YUYAO),
        ])),
        ..Policy::default()
    }
}

pub(crate) fn supervisors() -> HashMap<String, String> {
    ["cixi", "yuyao", "beilun"]
        .into_iter()
        .map(|c| (c.to_string(), "ningbo_intermediate".to_string()))
        .collect()
}

/// `m` seen at `(lon, lat)`.
pub(crate) fn at(mut m: MatchedSighting, (lon, lat): (f64, f64)) -> MatchedSighting {
    m.sighting.lon = lon;
    m.sighting.lat = lat;
    m
}

pub(crate) async fn record_with(
    store: &Store,
    batch: &[MatchedSighting],
    deadlines: &Deadlines,
    policy: &Policy,
    now: DateTime<Utc>,
) -> (Vec<MatchOutcome>, Vec<OutboxMessage>) {
    store
        .record_matches(batch, deadlines, policy, &Topics::new(""), now)
        .await
        .unwrap()
}

pub(crate) fn topics_of(messages: &[OutboxMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.topic.as_str()).collect()
}

pub(crate) async fn set_status(
    store: &Store,
    task_id: &str,
    status: TaskStatus,
    court: &str,
    now: DateTime<Utc>,
) {
    let outcome = store
        .apply_status(
            &report(task_id, status, &format!("{court}-officer")),
            Some(court),
            &Topics::new(""),
            now,
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, StatusOutcome::Applied { .. }),
        "{outcome:?}"
    );
}

pub(crate) async fn escalate(
    store: &Store,
    now: DateTime<Utc>,
) -> (Vec<Escalation>, Vec<OutboxMessage>) {
    store
        .escalate_due(now, &supervisors(), &Topics::new(""))
        .await
        .unwrap()
}
