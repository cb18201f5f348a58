//! The store against real databases: SQLite in a temporary file always, and PostgreSQL in a
//! schema of its own when `LEADRELAY_TEST_DATABASE_URL` is set.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadrelay::contract::model::{
    Case, KnownLocation, Routing, Sighting, Target, TargetKind, TargetStatus, TaskKind,
};
use leadrelay::contract::task::{
    Alert, AlertKind, MessageKind, OutboxMessage, StatusReport, Task, TaskStatus, TaskUpdate,
    Topics, UpdateKind,
};
use leadrelay::dispatch::policy::{Deadlines, MatchedSighting, Policy};
use leadrelay::dispatch::route::RouteDecision;
use leadrelay::geo::datum::Datum;
use leadrelay::store::{
    Dialect, Escalation, EscalationKind, MatchOutcome, SearchOutcome, StatusOutcome, Store,
    StoreError, TaskEventKind, isolated_postgres_url,
};

/// A database to test against; the temporary directory lives as long as it.
struct TestDb {
    label: &'static str,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    async fn connect(&self) -> Store {
        Store::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.label))
    }
}

/// SQLite always; PostgreSQL too when `LEADRELAY_TEST_DATABASE_URL` is set.
async fn databases() -> Vec<TestDb> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let mut dbs = vec![TestDb {
        label: "sqlite",
        url,
        _dir: Some(dir),
    }];
    if let Ok(base) = std::env::var("LEADRELAY_TEST_DATABASE_URL") {
        if !base.is_empty() {
            let url = isolated_postgres_url(&base).await.unwrap();
            dbs.push(TestDb {
                label: "postgres",
                url,
                _dir: None,
            });
        }
    }
    dbs
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 12, 3, 2, 15, 0).unwrap()
}

fn case(court: &str, filed: &str) -> Case {
    Case {
        case_no: format!("({filed})执 {court}"),
        court_id: court.into(),
        filed_on: filed.parse().unwrap(),
        amount_cny: Some(50000.0),
    }
}

fn vehicle(id: &str, plate: &str) -> Target {
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

fn person(id: &str) -> Target {
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
fn matched(target: &Target, source: &str, event_id: &str, assisting: &str) -> MatchedSighting {
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

async fn record(
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

fn created(outcome: &MatchOutcome) -> &Task {
    match outcome {
        MatchOutcome::Created(task) => task,
        other => panic!("expected a new task, got {other:?}"),
    }
}

fn report(task_id: &str, status: TaskStatus, by: &str) -> StatusReport {
    StatusReport {
        task_id: task_id.into(),
        status,
        at: None,
        by: by.into(),
        note: "on it".into(),
    }
}

fn refused(outcome: StatusOutcome) -> String {
    match outcome {
        StatusOutcome::Refused { reason } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Rows a refused or duplicate operation must not add to.
async fn footprint(store: &Store, task_id: &str) -> (i64, usize, usize, Option<TaskStatus>) {
    (
        store.outbox_pending_count().await.unwrap(),
        store.task_history(task_id).await.unwrap().len(),
        store.list_tasks(None, None, 10_000).await.unwrap().len(),
        store.get_task(task_id).await.unwrap().map(|t| t.status),
    )
}

#[tokio::test]
async fn migrations_apply_twice_and_urls_are_checked() {
    for db in databases().await {
        let first = db.connect().await;
        first.ping().await.unwrap();
        first
            .upsert_target(&vehicle("T-1", "浙B12345"), t0())
            .await
            .unwrap();
        // A second pool on the same database: the migrations are already there.
        let second = db.connect().await;
        assert!(
            second.get_target("T-1").await.unwrap().is_some(),
            "{}",
            db.label
        );
        let expected = if db.label == "sqlite" {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        };
        assert_eq!(second.dialect(), expected);
    }
    let err = Store::connect("mysql://root:secret@localhost/x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }));
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn targets_round_trip() {
    for db in databases().await {
        let store = db.connect().await;
        let car = vehicle("T-2024-0001", "浙B·12345");
        let who = person("T-2024-0002");
        store.upsert_target(&car, t0()).await.unwrap();
        store.upsert_target(&who, t0()).await.unwrap();
        assert_eq!(
            store.get_target("T-2024-0001").await.unwrap(),
            Some(car.clone())
        );
        assert_eq!(
            store.get_target("T-2024-0002").await.unwrap(),
            Some(who.clone())
        );
        assert_eq!(store.get_target("nope").await.unwrap(), None);
        assert_eq!(
            store.all_targets().await.unwrap(),
            vec![car.clone(), who.clone()]
        );

        // Replace in a batch; the later of two entries for one id wins.
        let later = t0() + Duration::seconds(10);
        let mut car2 = car.clone();
        car2.lead_court_id = Some("cixi".into());
        let mut car3 = car.clone();
        car3.name = None;
        car3.status = TargetStatus::Withdrawn;
        let third = vehicle("T-3", "浙A00001");
        let n = store
            .upsert_targets(&[car2, third.clone(), car3.clone()], later)
            .await
            .unwrap();
        assert_eq!(n, 2, "{}", db.label);
        assert_eq!(
            store.get_target("T-2024-0001").await.unwrap(),
            Some(car3.clone())
        );
        // The refresh's two steps: versions (in no particular order), then only the targets
        // it asks for.
        let mut versions = store
            .target_versions_since(t0().timestamp_millis())
            .await
            .unwrap();
        versions.sort();
        assert_eq!(
            versions,
            vec![
                ("T-2024-0001".to_string(), later.timestamp_millis()),
                ("T-3".to_string(), later.timestamp_millis())
            ],
            "{}",
            db.label
        );
        let mut fetched = store
            .targets_with_ids(&["T-3", "no-such-target", "T-2024-0001"])
            .await
            .unwrap();
        fetched.sort_by(|a, b| a.1.target_id.cmp(&b.1.target_id));
        assert_eq!(
            fetched,
            vec![
                (later.timestamp_millis(), car3.clone()),
                (later.timestamp_millis(), third.clone())
            ],
            "{}",
            db.label
        );

        let mut bad = vehicle("T-4", "浙A00002");
        bad.cases.clear();
        assert!(matches!(
            store.upsert_target(&bad, t0()).await,
            Err(StoreError::InvalidTarget(_))
        ));
        assert_eq!(store.get_target("T-4").await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_new_task_goes_to_the_assisting_court_with_an_alert_to_the_requesting_one() {
    for db in databases().await {
        let store = db.connect().await;
        let car = vehicle("T-2024-0001", "浙B12345");
        store.upsert_target(&car, t0()).await.unwrap();
        let topics = Topics::new("prod");
        let mut m = matched(&car, "cixi-cam-0042", "e1", "cixi");
        m.read_plate = Some("浙B1234S".parse().unwrap());
        m.fuzzy = true;
        m.substitutions = 1;
        let (outcomes, messages) = store
            .record_matches(
                &[m],
                &Deadlines::default(),
                &Policy::default(),
                &topics,
                t0(),
            )
            .await
            .unwrap();
        let task = created(&outcomes[0]);
        assert_eq!(task.status, TaskStatus::Dispatched);
        assert_eq!(task.assisting_court_id, "cixi");
        assert_eq!(task.requesting_court_id, "yuyao");
        assert_eq!(task.cases, car.cases);
        assert_eq!(task.plate, car.plate);
        assert_eq!(task.dispatched_at, t0());
        assert_eq!(task.ack_by, t0() + Duration::minutes(5));
        assert_eq!(task.resolve_by, t0() + Duration::minutes(30));
        assert_eq!(
            task.read_plate.map(|p| p.to_string()).as_deref(),
            Some("浙B1234S")
        );
        assert!(uuid::Uuid::parse_str(&task.task_id).is_ok());
        // Stored as returned.
        assert_eq!(
            store.get_task(&task.task_id).await.unwrap().as_ref(),
            Some(task)
        );

        let topics_written: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics_written,
            ["prod/dispatch/cixi/tasks", "prod/alerts/yuyao"]
        );
        let sent: Task = serde_json::from_slice(&messages[0].payload).unwrap();
        assert_eq!(&sent, task);
        let alert: Alert = serde_json::from_slice(&messages[1].payload).unwrap();
        assert_eq!(alert.kind, AlertKind::TargetSighted);
        assert_eq!(
            (alert.court_id.as_str(), alert.assisting_court_id.as_str()),
            ("yuyao", "cixi")
        );
        assert_eq!(alert.task_id, task.task_id);
        assert_eq!(
            alert.text,
            "Vehicle 浙B12345 (T-2024-0001) seen in cixi's area; task sent to cixi"
        );
        assert!(messages[0].id < messages[1].id);
        assert_eq!(
            store.pending_outbox(None, 10).await.unwrap(),
            messages,
            "{}",
            db.label
        );

        let history = store.task_history(&task.task_id).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].kind, TaskEventKind::Created);
        assert_eq!(history[0].sighting.as_ref().unwrap().confidence, Some(0.93));

        // Seen in its own court's area: a task, no alert.
        let home = vehicle("T-5", "浙B55555");
        store.upsert_target(&home, t0()).await.unwrap();
        let (outcomes, messages) = record(
            &store,
            &[matched(&home, "yuyao-cam-1", "e1", "yuyao")],
            t0(),
        )
        .await;
        assert_eq!(created(&outcomes[0]).routing, Routing::OwnJurisdiction);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].topic, "dispatch/yuyao/tasks");
        assert_eq!(
            store.open_tasks_by_court().await.unwrap(),
            vec![("cixi".into(), 1), ("yuyao".into(), 1)]
        );
    }
}

#[tokio::test]
async fn further_sightings_update_the_open_task() {
    for db in databases().await {
        let store = db.connect().await;
        let car = vehicle("T-1", "浙B12345");
        let other = vehicle("T-2", "浙B22222");
        store
            .upsert_targets(&[car.clone(), other.clone()], t0())
            .await
            .unwrap();
        let (outcomes, _) = record(&store, &[matched(&car, "cam-1", "e1", "cixi")], t0()).await;
        let task = created(&outcomes[0]).clone();

        // Seen again, now in Yuyao's area: still the same task, the update goes to its holder.
        let later = t0() + Duration::seconds(30);
        let (outcomes, messages) =
            record(&store, &[matched(&car, "cam-2", "e1", "yuyao")], later).await;
        assert_eq!(
            outcomes,
            vec![MatchOutcome::Updated {
                task_id: task.task_id.clone(),
                assisting_court_id: "cixi".into()
            }]
        );
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].topic, "dispatch/cixi/updates");
        assert_eq!(messages[0].kind, MessageKind::Update);
        assert_eq!(messages[0].task_id.as_deref(), Some(task.task_id.as_str()));
        let update: TaskUpdate = serde_json::from_slice(&messages[0].payload).unwrap();
        assert_eq!(update.update, UpdateKind::Sighting);
        assert_eq!(update.status, TaskStatus::Dispatched);
        assert_eq!(update.sighting.unwrap().source, "cam-2");
        assert_eq!(update.at, later);

        // Two sightings of a new target in one batch: the first creates, the second updates.
        let (outcomes, messages) = record(
            &store,
            &[
                matched(&other, "cam-1", "e2", "cixi"),
                matched(&other, "cam-3", "e2", "beilun"),
            ],
            later,
        )
        .await;
        let new = created(&outcomes[0]);
        assert_eq!(
            outcomes[1],
            MatchOutcome::Updated {
                task_id: new.task_id.clone(),
                assisting_court_id: "cixi".into()
            }
        );
        let topics: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "dispatch/cixi/tasks",
                "alerts/yuyao",
                "dispatch/cixi/updates"
            ]
        );
        let open = store
            .list_tasks(None, Some(TaskStatus::Dispatched), 100)
            .await
            .unwrap();
        assert_eq!(open.len(), 2, "{}", db.label);
        let kinds: Vec<TaskEventKind> = store
            .task_history(&new.task_id)
            .await
            .unwrap()
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [TaskEventKind::Created, TaskEventKind::Sighting]);
        // Court filters match the assisting or the requesting court.
        assert_eq!(
            store
                .list_tasks(Some("cixi"), None, 100)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store
                .list_tasks(Some("yuyao"), None, 100)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store
                .list_tasks(Some("beilun"), None, 100)
                .await
                .unwrap()
                .len(),
            0
        );
        assert_eq!(store.list_tasks(None, None, 1).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_redelivered_event_has_no_effect() {
    for db in databases().await {
        let store = db.connect().await;
        let car = vehicle("T-1", "浙B12345");
        store.upsert_target(&car, t0()).await.unwrap();
        let m = matched(&car, "cam-1", "e1", "cixi");
        let (outcomes, _) = record(&store, std::slice::from_ref(&m), t0()).await;
        let task_id = created(&outcomes[0]).task_id.clone();
        let before = footprint(&store, &task_id).await;

        let (outcomes, messages) = record(&store, &[m.clone(), m.clone()], t0()).await;
        assert_eq!(
            outcomes,
            vec![MatchOutcome::Duplicate, MatchOutcome::Duplicate]
        );
        assert!(messages.is_empty());
        assert_eq!(footprint(&store, &task_id).await, before, "{}", db.label);

        // The same event id from another source is another event; twice in a batch, once.
        let mut other = m.clone();
        other.sighting.source = "cam-2".into();
        let (outcomes, _) = record(&store, &[other.clone(), other], t0()).await;
        assert!(matches!(outcomes[0], MatchOutcome::Updated { .. }));
        assert_eq!(outcomes[1], MatchOutcome::Duplicate);
    }
}

/// A small batch and a large one (on SQLite the small one's rows go to the database as one
/// list of statements, the large one's statement by statement) record the same things.
#[tokio::test]
async fn small_and_large_batches_record_the_same() {
    for db in databases().await {
        let store = db.connect().await;
        for n in [2usize, 3, 12, 40] {
            let targets: Vec<Target> = (0..n)
                .map(|i| vehicle(&format!("T-{n}-{i}"), &format!("浙B{n:02}{i:03}")))
                .collect();
            store.upsert_targets(&targets, t0()).await.unwrap();
            // Every target once (the first in its own court, so without an alert), the first
            // again from another camera (an update), and the second redelivered.
            let mut batch: Vec<MatchedSighting> = targets
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let court = if i == 0 { "yuyao" } else { "cixi" };
                    matched(t, "cam-1", &format!("e{n}-{i}"), court)
                })
                .collect();
            batch.push(matched(&targets[0], "cam-2", &format!("e{n}-0"), "yuyao"));
            batch.push(batch[1].clone());
            let (outcomes, messages) = record(&store, &batch, t0()).await;
            let label = format!("{} batch of {}", db.label, batch.len());

            let tasks: Vec<&Task> = outcomes[..n].iter().map(created).collect();
            assert_eq!(
                outcomes[n],
                MatchOutcome::Updated {
                    task_id: tasks[0].task_id.clone(),
                    assisting_court_id: "yuyao".into()
                },
                "{label}"
            );
            assert_eq!(outcomes[n + 1], MatchOutcome::Duplicate, "{label}");
            // A Task each, an Alert for each but the first, the update.
            assert_eq!(messages.len(), n + (n - 1) + 1, "{label}");
            let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{label}: ids in order");
            for task in &tasks {
                let history = store.task_history(&task.task_id).await.unwrap();
                let expected: &[TaskEventKind] = if task.task_id == tasks[0].task_id {
                    &[TaskEventKind::Created, TaskEventKind::Sighting]
                } else {
                    &[TaskEventKind::Created]
                };
                let kinds: Vec<TaskEventKind> = history.iter().map(|e| e.kind).collect();
                assert_eq!(kinds, expected, "{label}");
                assert_eq!(
                    store.get_task(&task.task_id).await.unwrap().as_ref(),
                    Some(*task),
                    "{label}"
                );
            }
        }
    }
}

#[tokio::test]
async fn inactive_targets_get_no_tasks() {
    for db in databases().await {
        let store = db.connect().await;
        let mut withdrawn = vehicle("T-1", "浙B12345");
        withdrawn.status = TargetStatus::Withdrawn;
        let mut expired = vehicle("T-2", "浙B22222");
        expired.valid_until = Some(t0() - Duration::seconds(1));
        store
            .upsert_targets(&[withdrawn.clone(), expired.clone()], t0())
            .await
            .unwrap();
        let unknown = vehicle("T-9", "浙B99999");
        let batch = [
            matched(&withdrawn, "cam-1", "e1", "cixi"),
            matched(&expired, "cam-1", "e2", "cixi"),
            matched(&unknown, "cam-1", "e3", "cixi"),
        ];
        let (outcomes, messages) = record(&store, &batch, t0()).await;
        assert_eq!(
            outcomes,
            vec![MatchOutcome::TargetInactive; 3],
            "{}",
            db.label
        );
        assert!(messages.is_empty());
        assert!(store.list_tasks(None, None, 10).await.unwrap().is_empty());
        // The event ids were recorded.
        let (outcomes, _) = record(&store, &batch, t0()).await;
        assert_eq!(outcomes, vec![MatchOutcome::Duplicate; 3]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_for_a_target_create_one_task() {
    for db in databases().await {
        let a = db.connect().await;
        let b = db.connect().await;
        let targets: Vec<Target> = (0..20)
            .map(|i| vehicle(&format!("T-{i}"), &format!("浙B{i:05}")))
            .collect();
        a.upsert_targets(&targets, t0()).await.unwrap();
        let mut created_count = 0;
        for (i, car) in targets.iter().enumerate() {
            // Each replica also carries other targets, in a different order.
            let next = &targets[(i + 1) % targets.len()];
            let batch_a = vec![
                matched(car, "cam-a", &format!("a{i}"), "cixi"),
                matched(next, "cam-a", &format!("a{i}-n"), "cixi"),
            ];
            let batch_b = vec![
                matched(next, "cam-b", &format!("b{i}-n"), "beilun"),
                matched(car, "cam-b", &format!("b{i}"), "beilun"),
            ];
            let (ra, rb) = tokio::join!(
                {
                    let a = a.clone();
                    tokio::spawn(async move { record(&a, &batch_a, t0()).await })
                },
                {
                    let b = b.clone();
                    tokio::spawn(async move { record(&b, &batch_b, t0()).await })
                }
            );
            let (oa, ob) = (ra.unwrap().0, rb.unwrap().0);
            let all: Vec<&MatchOutcome> = oa.iter().chain(&ob).collect();
            assert!(
                all.iter()
                    .all(|o| matches!(o, MatchOutcome::Created(_) | MatchOutcome::Updated { .. })),
                "{all:?}"
            );
            created_count += all
                .iter()
                .filter(|o| matches!(o, MatchOutcome::Created(_)))
                .count();
        }
        assert_eq!(created_count, targets.len(), "{}", db.label);
        let open = a.list_tasks(None, None, 1000).await.unwrap();
        let mut per_target: Vec<&str> = open.iter().map(|t| t.target_id.as_str()).collect();
        per_target.sort_unstable();
        per_target.dedup();
        assert_eq!(
            open.len(),
            targets.len(),
            "{}: one task per target",
            db.label
        );
        assert_eq!(per_target.len(), targets.len());
    }
}

#[tokio::test]
async fn status_reports_are_applied_or_refused() {
    for db in databases().await {
        let store = db.connect().await;
        let topics = Topics::new("");
        let car = vehicle("T-1", "浙B12345");
        store.upsert_target(&car, t0()).await.unwrap();
        let (outcomes, _) = record(&store, &[matched(&car, "cam-1", "e1", "cixi")], t0()).await;
        let task_id = created(&outcomes[0]).task_id.clone();
        let now = t0() + Duration::minutes(1);

        let StatusOutcome::Applied {
            task,
            previous,
            messages,
        } = store
            .apply_status(
                &report(&task_id, TaskStatus::Acknowledged, "cixi-officer-07"),
                Some("cixi"),
                &topics,
                now,
            )
            .await
            .unwrap()
        else {
            panic!("refused");
        };
        assert_eq!(
            (previous, task.status),
            (TaskStatus::Dispatched, TaskStatus::Acknowledged)
        );
        assert_eq!(store.get_task(&task_id).await.unwrap(), Some(task));
        let topics_written: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(topics_written, ["dispatch/cixi/updates", "alerts/yuyao"]);
        let update: TaskUpdate = serde_json::from_slice(&messages[0].payload).unwrap();
        assert_eq!(update.update, UpdateKind::Status);
        assert_eq!(update.status, TaskStatus::Acknowledged);
        assert_eq!(update.by.as_deref(), Some("cixi-officer-07"));
        assert_eq!(update.note.as_deref(), Some("on it"));
        let alert: Alert = serde_json::from_slice(&messages[1].payload).unwrap();
        assert_eq!(alert.kind, AlertKind::TaskStatus);
        assert_eq!(alert.status, TaskStatus::Acknowledged);

        // Refusals change nothing.
        let before = footprint(&store, &task_id).await;
        let reason = refused(
            store
                .apply_status(
                    &report(&task_id, TaskStatus::EnRoute, "x"),
                    Some("yuyao"),
                    &topics,
                    now,
                )
                .await
                .unwrap(),
        );
        assert_eq!(reason, format!("task {task_id} is held by cixi, not yuyao"));
        let reason = refused(
            store
                .apply_status(
                    &report(&task_id, TaskStatus::Located, "x"),
                    Some("cixi"),
                    &topics,
                    now,
                )
                .await
                .unwrap(),
        );
        assert_eq!(reason, "located does not apply to a vehicle_seizure task");
        let reason = refused(
            store
                .apply_status(
                    &report(&task_id, TaskStatus::Acknowledged, "x"),
                    None,
                    &topics,
                    now,
                )
                .await
                .unwrap(),
        );
        assert_eq!(reason, "the task is already acknowledged");
        let reason = refused(
            store
                .apply_status(
                    &report("no-such-task", TaskStatus::Seized, "x"),
                    None,
                    &topics,
                    now,
                )
                .await
                .unwrap(),
        );
        assert!(reason.contains("unknown task"), "{reason}");
        assert_eq!(footprint(&store, &task_id).await, before, "{}", db.label);

        // Seized: the task closes, the target is seized, later sightings change nothing.
        let outcome = store
            .apply_status(
                &report(&task_id, TaskStatus::Seized, "cixi-officer-07"),
                Some("cixi"),
                &topics,
                now,
            )
            .await
            .unwrap();
        assert!(matches!(
            outcome,
            StatusOutcome::Applied {
                previous: TaskStatus::Acknowledged,
                ..
            }
        ));
        assert_eq!(
            store.get_target("T-1").await.unwrap().unwrap().status,
            TargetStatus::Seized
        );
        let reason = refused(
            store
                .apply_status(
                    &report(&task_id, TaskStatus::NotFound, "x"),
                    Some("cixi"),
                    &topics,
                    now,
                )
                .await
                .unwrap(),
        );
        assert_eq!(
            reason,
            "the task is closed (seized); it cannot become not_found"
        );
        let (outcomes, _) = record(&store, &[matched(&car, "cam-1", "e2", "cixi")], now).await;
        assert_eq!(outcomes, vec![MatchOutcome::TargetInactive]);
        let statuses: Vec<TaskStatus> = store
            .task_history(&task_id)
            .await
            .unwrap()
            .iter()
            .map(|e| e.status)
            .collect();
        assert_eq!(
            statuses,
            [
                TaskStatus::Dispatched,
                TaskStatus::Acknowledged,
                TaskStatus::Seized
            ]
        );
        assert!(store.open_tasks_by_court().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn withdrawing_a_target_cancels_its_open_task() {
    for db in databases().await {
        let store = db.connect().await;
        let topics = Topics::new("");
        let car = vehicle("T-1", "浙B12345");
        store.upsert_target(&car, t0()).await.unwrap();
        let (outcomes, _) = record(&store, &[matched(&car, "cam-1", "e1", "cixi")], t0()).await;
        let task_id = created(&outcomes[0]).task_id.clone();

        let messages = store
            .withdraw_target("T-1", &topics, t0())
            .await
            .unwrap()
            .unwrap();
        let topics_written: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics_written,
            ["dispatch/cixi/updates", "alerts/yuyao"],
            "{}",
            db.label
        );
        let update: TaskUpdate = serde_json::from_slice(&messages[0].payload).unwrap();
        assert_eq!(update.status, TaskStatus::Cancelled);
        let alert: Alert = serde_json::from_slice(&messages[1].payload).unwrap();
        assert_eq!(alert.kind, AlertKind::TaskStatus);
        assert_eq!(
            store.get_task(&task_id).await.unwrap().unwrap().status,
            TaskStatus::Cancelled
        );
        assert_eq!(
            store.get_target("T-1").await.unwrap().unwrap().status,
            TargetStatus::Withdrawn
        );
        let last = store.task_history(&task_id).await.unwrap().pop().unwrap();
        assert_eq!(
            (last.kind, last.status),
            (TaskEventKind::Status, TaskStatus::Cancelled)
        );

        // Again: nothing left to cancel. Unknown: None.
        assert_eq!(
            store.withdraw_target("T-1", &topics, t0()).await.unwrap(),
            Some(vec![])
        );
        assert_eq!(
            store.withdraw_target("T-x", &topics, t0()).await.unwrap(),
            None
        );
        let (outcomes, _) = record(&store, &[matched(&car, "cam-1", "e2", "cixi")], t0()).await;
        assert_eq!(outcomes, vec![MatchOutcome::TargetInactive]);
    }
}

#[tokio::test]
async fn outbox_holds_messages_until_the_broker_has_them() {
    for db in databases().await {
        let store = db.connect().await;
        let targets: Vec<Target> = (0..3)
            .map(|i| vehicle(&format!("T-{i}"), &format!("浙B{i:05}")))
            .collect();
        store.upsert_targets(&targets, t0()).await.unwrap();
        let batch: Vec<MatchedSighting> = targets
            .iter()
            .map(|t| matched(t, "cam-1", &t.target_id, "cixi"))
            .collect();
        let (_, messages) = record(&store, &batch, t0()).await;
        assert_eq!(messages.len(), 6);
        assert!(messages.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(store.outbox_pending_count().await.unwrap(), 6);
        assert_eq!(
            store.pending_outbox(None, 4).await.unwrap(),
            messages[..4].to_vec()
        );

        let sent: Vec<i64> = messages[..4].iter().map(|m| m.id).collect();
        store.remove_sent(&sent).await.unwrap();
        store.remove_sent(&[]).await.unwrap();
        assert_eq!(
            store.outbox_pending_count().await.unwrap(),
            2,
            "{}",
            db.label
        );
        assert_eq!(
            store.pending_outbox(None, 10).await.unwrap(),
            messages[4..].to_vec()
        );
        // Orphans: only what was written before the cutoff.
        assert!(
            store
                .pending_outbox(Some(t0()), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .pending_outbox(Some(t0() + Duration::seconds(1)), 1)
                .await
                .unwrap(),
            messages[4..5].to_vec()
        );

        // A repeated acknowledgement (e.g. after a reconnect) removes nothing else.
        store.remove_sent(&sent[..2]).await.unwrap();
        assert_eq!(store.outbox_pending_count().await.unwrap(), 2);

        // Ids are never reused after a removal: new messages come after the removed ones.
        let (_, more) = record(&store, &[matched(&targets[0], "cam-2", "f1", "cixi")], t0()).await;
        assert!(!more.is_empty());
        assert!(more.iter().all(|m| m.id > messages[5].id), "{}", db.label);
    }
}

/// Writes an outbox row as the schema before migration 0004 did: one message, `frames` NULL.
async fn insert_outbox_row_from_before_0004(db: &TestDb, topic: &str, payload: &[u8]) {
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

/// Each transaction's messages share one outbox row (migration 0004). Acknowledgements in any
/// order complete some rows and part of another: exactly the complete rows go, the rest is
/// still pending, repeats change nothing; a row written before 0004 is read and removed too.
#[tokio::test]
async fn outbox_rows_go_once_every_message_in_them_is_acknowledged() {
    for db in databases().await {
        let store = db.connect().await;
        insert_outbox_row_from_before_0004(&db, "legacy/alerts", br#"{"old":true}"#).await;
        let targets: Vec<Target> = (0..4)
            .map(|i| vehicle(&format!("T-{i}"), &format!("浙B{i:05}")))
            .collect();
        store.upsert_targets(&targets, t0()).await.unwrap();
        let seen = |t: &Target| matched(t, "cam-1", &t.target_id, "cixi");
        let (_, first) = record(&store, &[seen(&targets[0]), seen(&targets[1])], t0()).await;
        let (_, second) = record(&store, &[seen(&targets[2]), seen(&targets[3])], t0()).await;
        assert_eq!((first.len(), second.len()), (4, 4), "{}", db.label);

        let pending = store.pending_outbox(None, 100).await.unwrap();
        assert_eq!(pending.len(), 9, "{}", db.label);
        assert_eq!(
            (pending[0].topic.as_str(), pending[0].payload.as_slice()),
            ("legacy/alerts", br#"{"old":true}"#.as_slice())
        );
        // Re-read, messages keep their kinds and task ids; the old row's kind is its topic's.
        assert_eq!(
            (pending[0].kind, pending[0].task_id.as_deref()),
            (MessageKind::Alert, None)
        );
        let kinds: Vec<MessageKind> = pending[1..5].iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                MessageKind::Task,
                MessageKind::Alert,
                MessageKind::Task,
                MessageKind::Alert
            ]
        );
        assert!(pending[1..].iter().all(|m| m.task_id.is_some()));
        assert_eq!(pending[1..5], first[..]);
        assert_eq!(pending[5..], second[..]);
        assert_eq!(store.outbox_pending_count().await.unwrap(), 9);

        // The old row, all of the first transaction's and half of the second's, scrambled.
        let acked = [
            second[1].id,
            pending[0].id,
            first[3].id,
            first[0].id,
            second[0].id,
            first[2].id,
            first[1].id,
        ];
        store.remove_sent(&acked).await.unwrap();
        assert_eq!(
            store.outbox_pending_count().await.unwrap(),
            2,
            "{}",
            db.label
        );
        assert_eq!(store.pending_outbox(None, 100).await.unwrap(), second[2..]);

        // Repeats of acknowledged ids and unknown ids change nothing.
        store
            .remove_sent(&[first[0].id, second[1].id, second[3].id + 1_000_000])
            .await
            .unwrap();
        assert_eq!(
            store.outbox_pending_count().await.unwrap(),
            2,
            "{}",
            db.label
        );
        store.remove_sent(&[second[3].id]).await.unwrap();
        assert_eq!(store.pending_outbox(None, 100).await.unwrap(), second[2..3]);
        assert_eq!(store.outbox_pending_count().await.unwrap(), 1);
        store.remove_sent(&[second[2].id]).await.unwrap();
        assert_eq!(
            store.outbox_pending_count().await.unwrap(),
            0,
            "{}",
            db.label
        );
        assert!(store.pending_outbox(None, 100).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn purged_event_ids_count_as_new() {
    for db in databases().await {
        let store = db.connect().await;
        let car = vehicle("T-1", "浙B12345");
        store.upsert_target(&car, t0()).await.unwrap();
        let m = matched(&car, "cam-1", "e1", "cixi");
        record(&store, std::slice::from_ref(&m), t0()).await;
        let others: Vec<MatchedSighting> = ["e3", "e4", "e5", "e6"]
            .iter()
            .map(|e| matched(&car, "cam-2", e, "cixi"))
            .collect();
        record(&store, &others, t0()).await;
        let later = t0() + Duration::hours(1);
        record(&store, &[matched(&car, "cam-1", "e2", "cixi")], later).await;

        assert_eq!(store.purge_processed_before(t0()).await.unwrap(), 0);
        // Two rows per transaction: three transactions for the five old ids.
        assert_eq!(
            store.purge_processed_in_chunks(later, 2).await.unwrap(),
            5,
            "{}",
            db.label
        );
        assert_eq!(store.purge_processed_before(later).await.unwrap(), 0);
        let (outcomes, _) = record(&store, std::slice::from_ref(&m), later).await;
        assert!(matches!(outcomes[0], MatchOutcome::Updated { .. }));
        let (outcomes, _) = record(&store, &[matched(&car, "cam-1", "e2", "cixi")], later).await;
        assert_eq!(outcomes, vec![MatchOutcome::Duplicate]);
    }
}

// ---------------------------------------------------------------------------------------------
// The enforcement workflow: per-court deadlines, cooldown, border jitter, escalation, reroute,
// consolidation proposals, locate requests.

/// Command centers of the tests (lon, lat), roughly where the real ones are.
const CIXI: (f64, f64) = (121.27, 30.17);
const YUYAO: (f64, f64) = (121.15, 30.04);
/// Near the Cixi–Yuyao line: about 10 km from either command center.
const BORDER: (f64, f64) = (121.2, 30.1);
/// Deep in Yuyao's south-west: about 35 km from Cixi's command center.
const FAR_YUYAO: (f64, f64) = (121.0, 29.9);

fn policy() -> Policy {
    Policy {
        centers: Arc::new(HashMap::from([
            ("cixi".to_string(), CIXI),
            ("yuyao".to_string(), YUYAO),
        ])),
        ..Policy::default()
    }
}

fn supervisors() -> HashMap<String, String> {
    ["cixi", "yuyao", "beilun"]
        .into_iter()
        .map(|c| (c.to_string(), "ningbo_intermediate".to_string()))
        .collect()
}

/// `m` seen at `(lon, lat)`.
fn at(mut m: MatchedSighting, (lon, lat): (f64, f64)) -> MatchedSighting {
    m.sighting.lon = lon;
    m.sighting.lat = lat;
    m
}

async fn record_with(
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

fn topics_of(messages: &[OutboxMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.topic.as_str()).collect()
}

async fn set_status(
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

async fn escalate(store: &Store, now: DateTime<Utc>) -> (Vec<Escalation>, Vec<OutboxMessage>) {
    store
        .escalate_due(now, &supervisors(), &Topics::new(""))
        .await
        .unwrap()
}

#[tokio::test]
async fn deadlines_are_the_assisting_courts() {
    let mut deadlines = Deadlines::default();
    deadlines
        .per_court
        .insert("cixi".into(), (Duration::minutes(2), Duration::minutes(20)));
    assert_eq!(
        deadlines.for_court("cixi"),
        (Duration::minutes(2), Duration::minutes(20))
    );
    assert_eq!(
        deadlines.for_court("beilun"),
        (Duration::minutes(5), Duration::minutes(30))
    );
    for db in databases().await {
        let store = db.connect().await;
        let a = vehicle("T-1", "浙B11111");
        let b = vehicle("T-2", "浙B22222");
        store
            .upsert_targets(&[a.clone(), b.clone()], t0())
            .await
            .unwrap();
        let (outcomes, _) = record_with(
            &store,
            &[
                matched(&a, "cam-1", "e1", "cixi"),
                matched(&b, "cam-1", "e2", "beilun"),
            ],
            &deadlines,
            &Policy::default(),
            t0(),
        )
        .await;
        let (ta, tb) = (created(&outcomes[0]), created(&outcomes[1]));
        assert_eq!(
            (ta.ack_by, ta.resolve_by),
            (t0() + Duration::minutes(2), t0() + Duration::minutes(20)),
            "{}",
            db.label
        );
        assert_eq!(
            (tb.ack_by, tb.resolve_by),
            (t0() + Duration::minutes(5), t0() + Duration::minutes(30))
        );
        assert_eq!(
            store.get_task(&ta.task_id).await.unwrap().as_ref(),
            Some(ta)
        );
    }
}

#[tokio::test]
async fn a_task_carries_the_merged_cases_of_linked_targets() {
    for db in databases().await {
        let store = db.connect().await;
        let car = vehicle("T-1", "浙B12345");
        store.upsert_target(&car, t0()).await.unwrap();
        let merged = vec![case("yuyao", "2024-03-01"), case("cixi", "2023-05-01")];
        let mut m = matched(&car, "cam-1", "e1", "cixi");
        m.cases = merged.clone();
        let (outcomes, messages) = record(&store, &[m], t0()).await;
        let task = created(&outcomes[0]);
        assert_eq!(task.cases, merged, "{}", db.label);
        assert_eq!(
            store.get_task(&task.task_id).await.unwrap().unwrap().cases,
            merged
        );
        let sent: Task = serde_json::from_slice(&messages[0].payload).unwrap();
        assert_eq!(sent.cases, merged);
    }
}

#[tokio::test]
async fn not_found_holds_new_tasks_back_for_the_cooldown() {
    for db in databases().await {
        let store = db.connect().await;
        let car = vehicle("T-1", "浙B12345");
        let other = vehicle("T-2", "浙B22222");
        store
            .upsert_targets(&[car.clone(), other.clone()], t0())
            .await
            .unwrap();
        let (outcomes, _) = record(&store, &[matched(&car, "cam-1", "e1", "cixi")], t0()).await;
        let first = created(&outcomes[0]).task_id.clone();
        let closed = t0() + Duration::minutes(1);
        set_status(&store, &first, TaskStatus::NotFound, "cixi", closed).await;

        // Within the cooldown: no task, nothing published, the event id is recorded.
        let before = store.outbox_pending_count().await.unwrap();
        let m = matched(&car, "cam-1", "e2", "cixi");
        let (outcomes, messages) = record(
            &store,
            std::slice::from_ref(&m),
            closed + Duration::minutes(9),
        )
        .await;
        assert_eq!(
            outcomes,
            vec![MatchOutcome::Cooldown {
                task_id: first.clone()
            }],
            "{}",
            db.label
        );
        assert!(messages.is_empty());
        assert_eq!(store.outbox_pending_count().await.unwrap(), before);
        let (outcomes, _) = record(&store, &[m], closed + Duration::minutes(20)).await;
        assert_eq!(outcomes, vec![MatchOutcome::Duplicate]);

        // After it: a new task as usual.
        let (outcomes, _) = record(
            &store,
            &[matched(&car, "cam-1", "e3", "cixi")],
            closed + Duration::minutes(10),
        )
        .await;
        assert_ne!(created(&outcomes[0]).task_id, first);

        // Another closure (rejected) does not hold anything back.
        let (outcomes, _) = record(&store, &[matched(&other, "cam-1", "e4", "cixi")], t0()).await;
        let rejected = created(&outcomes[0]).task_id.clone();
        set_status(&store, &rejected, TaskStatus::Rejected, "cixi", closed).await;
        let (outcomes, _) = record(
            &store,
            &[matched(&other, "cam-1", "e5", "cixi")],
            closed + Duration::seconds(1),
        )
        .await;
        assert!(
            matches!(outcomes[0], MatchOutcome::Created(_)),
            "{outcomes:?}"
        );
    }
}

#[tokio::test]
async fn jitter_at_a_border_does_not_move_a_task() {
    for db in databases().await {
        let store = db.connect().await;
        let policy = policy();
        let deadlines = Deadlines::default();
        let car = vehicle("T-1", "浙B12345");
        store.upsert_target(&car, t0()).await.unwrap();
        let (outcomes, _) = record_with(
            &store,
            &[at(matched(&car, "cam-c", "c0", "cixi"), BORDER)],
            &deadlines,
            &policy,
            t0(),
        )
        .await;
        let task = created(&outcomes[0]).clone();

        // Sightings alternate across the line every 90 s for 15 minutes: never moved.
        let mut now = t0();
        for i in 1..=10 {
            now += Duration::seconds(90);
            let court = if i % 2 == 1 { "yuyao" } else { "cixi" };
            let m = at(matched(&car, "cam", &format!("j{i}"), court), BORDER);
            let (outcomes, messages) = record_with(&store, &[m], &deadlines, &policy, now).await;
            assert_eq!(
                outcomes,
                vec![MatchOutcome::Updated {
                    task_id: task.task_id.clone(),
                    assisting_court_id: "cixi".into()
                }],
                "{}: sighting {i} in {court}",
                db.label
            );
            assert_eq!(topics_of(&messages), ["dispatch/cixi/updates"]);
        }
        assert_eq!(
            store
                .get_task(&task.task_id)
                .await
                .unwrap()
                .unwrap()
                .assisting_court_id,
            "cixi"
        );

        // Seen in Yuyao only, for the dwell time: moved there, once.
        now += Duration::seconds(30);
        let stay = at(matched(&car, "cam-y", "y1", "yuyao"), BORDER);
        let (outcomes, _) = record_with(&store, &[stay], &deadlines, &policy, now).await;
        assert!(matches!(outcomes[0], MatchOutcome::Updated { .. }));
        let moved_at = now + Duration::minutes(3);
        let mut m = at(matched(&car, "cam-y", "y2", "yuyao"), BORDER);
        m.route.distance_km = 9.5;
        let (outcomes, messages) = record_with(&store, &[m], &deadlines, &policy, moved_at).await;
        let MatchOutcome::Reassigned { task: moved, from } = &outcomes[0] else {
            panic!("{}: expected a reassignment, got {outcomes:?}", db.label);
        };
        assert_eq!(from, "cixi");
        assert_eq!(moved.task_id, task.task_id);
        assert_eq!(moved.assisting_court_id, "yuyao");
        assert_eq!(moved.routing, Routing::OwnJurisdiction);
        assert_eq!(moved.distance_km, 9.5);
        assert_eq!(moved.status, TaskStatus::Dispatched);
        assert_eq!(moved.dispatched_at, moved_at);
        assert_eq!(moved.ack_by, moved_at + Duration::minutes(5));
        assert_eq!(moved.resolve_by, moved_at + Duration::minutes(30));
        assert_eq!(moved.sighting.as_ref().unwrap().event_id, "y2");
        assert_eq!(
            store.get_task(&task.task_id).await.unwrap().as_ref(),
            Some(moved)
        );
        assert_eq!(
            topics_of(&messages),
            [
                "dispatch/yuyao/tasks",
                "dispatch/cixi/updates",
                "alerts/yuyao"
            ]
        );
        let sent: Task = serde_json::from_slice(&messages[0].payload).unwrap();
        assert_eq!(&sent, moved);
        let stop: TaskUpdate = serde_json::from_slice(&messages[1].payload).unwrap();
        assert_eq!(
            (stop.update, stop.status, stop.note.as_deref()),
            (
                UpdateKind::Status,
                TaskStatus::Dispatched,
                Some("reassigned to yuyao")
            )
        );
        let alert: Alert = serde_json::from_slice(&messages[2].payload).unwrap();
        assert_eq!(alert.kind, AlertKind::TaskStatus);
        assert_eq!(alert.assisting_court_id, "yuyao");
        let last = store
            .task_history(&task.task_id)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(last.kind, TaskEventKind::Reassigned);
        assert_eq!(last.note.as_deref(), Some("from cixi to yuyao"));
        assert_eq!(last.court_id.as_deref(), Some("yuyao"));

        // Back across the line right after: the new holder keeps it.
        let back = at(matched(&car, "cam-c", "c9", "cixi"), BORDER);
        let (outcomes, _) = record_with(
            &store,
            &[back],
            &deadlines,
            &policy,
            moved_at + Duration::seconds(5),
        )
        .await;
        assert_eq!(
            outcomes,
            vec![MatchOutcome::Updated {
                task_id: task.task_id.clone(),
                assisting_court_id: "yuyao".into()
            }]
        );
        let reassigned = store
            .task_history(&task.task_id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == TaskEventKind::Reassigned)
            .count();
        assert_eq!(reassigned, 1);
    }
}

#[tokio::test]
async fn a_far_sighting_moves_a_task_at_once() {
    for db in databases().await {
        let store = db.connect().await;
        let policy = policy();
        let car = vehicle("T-1", "浙B12345");
        store.upsert_target(&car, t0()).await.unwrap();
        let (outcomes, _) = record_with(
            &store,
            &[at(matched(&car, "cam-c", "c0", "cixi"), CIXI)],
            &Deadlines::default(),
            &policy,
            t0(),
        )
        .await;
        let task = created(&outcomes[0]).clone();
        let (outcomes, messages) = record_with(
            &store,
            &[at(matched(&car, "cam-y", "y1", "yuyao"), FAR_YUYAO)],
            &Deadlines::default(),
            &policy,
            t0() + Duration::seconds(10),
        )
        .await;
        assert!(
            matches!(&outcomes[0], MatchOutcome::Reassigned { task: t, from } if t.task_id == task.task_id && from == "cixi" && t.assisting_court_id == "yuyao"),
            "{}: {outcomes:?}",
            db.label
        );
        assert_eq!(messages.len(), 3);

        // Without a known command center the distance does not count.
        let other = vehicle("T-2", "浙B22222");
        store.upsert_target(&other, t0()).await.unwrap();
        let (outcomes, _) = record_with(
            &store,
            &[at(matched(&other, "cam-b", "b0", "beilun"), CIXI)],
            &Deadlines::default(),
            &policy,
            t0(),
        )
        .await;
        created(&outcomes[0]);
        let (outcomes, _) = record_with(
            &store,
            &[at(matched(&other, "cam-y", "y2", "yuyao"), FAR_YUYAO)],
            &Deadlines::default(),
            &policy,
            t0() + Duration::seconds(10),
        )
        .await;
        assert!(
            matches!(outcomes[0], MatchOutcome::Updated { .. }),
            "{outcomes:?}"
        );
    }
}

#[tokio::test]
async fn deadlines_escalate_exactly_once() {
    for db in databases().await {
        let store = db.connect().await;
        let car = vehicle("T-1", "浙B12345");
        store.upsert_target(&car, t0()).await.unwrap();
        assert_eq!(store.next_deadline().await.unwrap(), None);
        let (outcomes, _) = record(&store, &[matched(&car, "cam-1", "e1", "cixi")], t0()).await;
        let task_id = created(&outcomes[0]).task_id.clone();
        assert_eq!(
            store.next_deadline().await.unwrap(),
            Some(t0() + Duration::minutes(5))
        );
        let (none, messages) = escalate(&store, t0() + Duration::minutes(4)).await;
        assert!(none.is_empty() && messages.is_empty());

        // Not acknowledged in time.
        let late = t0() + Duration::minutes(5);
        let (escalations, messages) = escalate(&store, late).await;
        assert_eq!(escalations.len(), 1, "{}", db.label);
        let e = &escalations[0];
        assert_eq!(
            (
                e.kind,
                e.supervisor_court_id.as_deref(),
                e.task.task_id.as_str()
            ),
            (
                EscalationKind::Ack,
                Some("ningbo_intermediate"),
                task_id.as_str()
            )
        );
        assert_eq!(
            topics_of(&messages),
            ["dispatch/ningbo_intermediate/escalations", "alerts/yuyao"]
        );
        let sent: Task = serde_json::from_slice(&messages[0].payload).unwrap();
        assert_eq!(sent, e.task);
        let alert: Alert = serde_json::from_slice(&messages[1].payload).unwrap();
        assert_eq!(alert.kind, AlertKind::Escalated);
        assert!(
            alert
                .text
                .contains("not acknowledged by 2024-12-03T02:20:00Z"),
            "{}",
            alert.text
        );
        assert!(
            escalate(&store, late + Duration::minutes(1))
                .await
                .0
                .is_empty()
        );
        assert_eq!(
            store.next_deadline().await.unwrap(),
            Some(t0() + Duration::minutes(30))
        );

        // Acknowledged late, but not resolved in time: escalates once more.
        set_status(
            &store,
            &task_id,
            TaskStatus::Acknowledged,
            "cixi",
            late + Duration::minutes(2),
        )
        .await;
        let (escalations, messages) = escalate(&store, t0() + Duration::minutes(31)).await;
        assert_eq!(escalations.len(), 1);
        assert_eq!(escalations[0].kind, EscalationKind::Resolve);
        assert_eq!(escalations[0].task.status, TaskStatus::Acknowledged);
        assert_eq!(messages.len(), 2);
        assert!(
            escalate(&store, t0() + Duration::hours(2))
                .await
                .0
                .is_empty()
        );
        assert_eq!(store.next_deadline().await.unwrap(), None);
        let notes: Vec<(TaskEventKind, Option<String>)> = store
            .task_history(&task_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == TaskEventKind::Escalated)
            .map(|e| (e.kind, e.note))
            .collect();
        assert_eq!(
            notes,
            [
                (
                    TaskEventKind::Escalated,
                    Some("not acknowledged by 2024-12-03T02:20:00Z".into())
                ),
                (
                    TaskEventKind::Escalated,
                    Some("not resolved by 2024-12-03T02:45:00Z".into())
                )
            ]
        );

        // A court without a supervisor: only the alert.
        let other = vehicle("T-2", "浙B22222");
        store.upsert_target(&other, t0()).await.unwrap();
        record(&store, &[matched(&other, "cam-1", "e2", "zhoushan")], t0()).await;
        let (escalations, messages) = escalate(&store, t0() + Duration::hours(3)).await;
        assert_eq!(escalations.len(), 2);
        assert!(escalations.iter().all(|e| e.supervisor_court_id.is_none()));
        assert_eq!(topics_of(&messages), ["alerts/yuyao", "alerts/yuyao"]);
        // Closed tasks never escalate.
        assert_eq!(store.next_deadline().await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_polling_together_escalate_each_task_once() {
    for db in databases().await {
        let a = db.connect().await;
        let b = db.connect().await;
        let targets: Vec<Target> = (0..30)
            .map(|i| vehicle(&format!("T-{i}"), &format!("浙B{i:05}")))
            .collect();
        a.upsert_targets(&targets, t0()).await.unwrap();
        let batch: Vec<MatchedSighting> = targets
            .iter()
            .map(|t| matched(t, "cam-1", &t.target_id, "cixi"))
            .collect();
        record(&a, &batch, t0()).await;
        let mut fired: Vec<(String, EscalationKind)> = Vec::new();
        // Each replica polls every 30 s of (simulated) time, both at once.
        for step in 0..70 {
            let now = t0() + Duration::seconds(30 * step);
            let (ra, rb) = tokio::join!(
                {
                    let a = a.clone();
                    tokio::spawn(async move { escalate(&a, now).await })
                },
                {
                    let b = b.clone();
                    tokio::spawn(async move { escalate(&b, now).await })
                }
            );
            for (escalations, messages) in [ra.unwrap(), rb.unwrap()] {
                assert_eq!(messages.len(), escalations.len() * 2);
                fired.extend(escalations.into_iter().map(|e| (e.task.task_id, e.kind)));
            }
        }
        assert_eq!(fired.len(), 60, "{}", db.label);
        fired.sort_by(|x, y| {
            (&x.0, x.1 == EscalationKind::Ack).cmp(&(&y.0, y.1 == EscalationKind::Ack))
        });
        fired.dedup();
        assert_eq!(fired.len(), 60, "{}: an escalation fired twice", db.label);
    }
}

#[tokio::test]
async fn a_moved_task_gets_new_deadlines_and_escalates_again() {
    for db in databases().await {
        let store = db.connect().await;
        let car = vehicle("T-1", "浙B12345");
        store.upsert_target(&car, t0()).await.unwrap();
        let (outcomes, _) = record_with(
            &store,
            &[at(matched(&car, "cam-c", "c0", "cixi"), CIXI)],
            &Deadlines::default(),
            &policy(),
            t0(),
        )
        .await;
        let task_id = created(&outcomes[0]).task_id.clone();
        assert_eq!(
            escalate(&store, t0() + Duration::minutes(5)).await.0.len(),
            1
        );
        let moved_at = t0() + Duration::minutes(6);
        let (outcomes, _) = record_with(
            &store,
            &[at(matched(&car, "cam-y", "y1", "yuyao"), FAR_YUYAO)],
            &Deadlines::default(),
            &policy(),
            moved_at,
        )
        .await;
        assert!(
            matches!(outcomes[0], MatchOutcome::Reassigned { .. }),
            "{}",
            db.label
        );
        assert_eq!(
            store.next_deadline().await.unwrap(),
            Some(moved_at + Duration::minutes(5))
        );
        let (escalations, messages) = escalate(&store, moved_at + Duration::minutes(5)).await;
        assert_eq!(escalations.len(), 1, "{}", db.label);
        assert_eq!(escalations[0].kind, EscalationKind::Ack);
        assert_eq!(escalations[0].task.task_id, task_id);
        assert_eq!(escalations[0].task.assisting_court_id, "yuyao");
        assert_eq!(messages.len(), 2);
    }
}

#[tokio::test]
async fn a_rejected_task_is_rerouted_or_escalated() {
    for db in databases().await {
        let store = db.connect().await;
        let topics = Topics::new("");
        let car = vehicle("T-1", "浙B12345");
        store.upsert_target(&car, t0()).await.unwrap();
        let (outcomes, _) = record(&store, &[matched(&car, "cam-1", "e1", "cixi")], t0()).await;
        let task_id = created(&outcomes[0]).task_id.clone();
        assert_eq!(
            escalate(&store, t0() + Duration::minutes(5)).await.0.len(),
            1
        );
        set_status(
            &store,
            &task_id,
            TaskStatus::Rejected,
            "cixi",
            t0() + Duration::minutes(6),
        )
        .await;
        assert_eq!(store.rejected_by(&task_id).await.unwrap(), ["cixi"]);

        let mut deadlines = Deadlines::default();
        deadlines.per_court.insert(
            "beilun".into(),
            (Duration::minutes(4), Duration::minutes(40)),
        );
        let route = RouteDecision {
            kind: TaskKind::VehicleSeizure,
            requesting_court_id: "yuyao".into(),
            assisting_court_id: "beilun".into(),
            routing: Routing::NearestCourt,
            distance_km: 41.5,
            containing_court_id: Some("cixi".into()),
        };
        let now = t0() + Duration::minutes(7);
        let (task, messages) = store
            .reroute(&task_id, &route, &deadlines, &topics, now)
            .await
            .unwrap()
            .expect("rerouted");
        assert_eq!(task.status, TaskStatus::Dispatched, "{}", db.label);
        assert_eq!(task.assisting_court_id, "beilun");
        assert_eq!(task.routing, Routing::NearestCourt);
        assert_eq!(task.distance_km, 41.5);
        assert_eq!(task.requesting_court_id, "yuyao");
        assert_eq!(
            (task.ack_by, task.resolve_by),
            (now + Duration::minutes(4), now + Duration::minutes(40))
        );
        assert_eq!(
            store.get_task(&task_id).await.unwrap().as_ref(),
            Some(&task)
        );
        assert_eq!(
            topics_of(&messages),
            ["dispatch/beilun/tasks", "alerts/yuyao"]
        );
        let alert: Alert = serde_json::from_slice(&messages[1].payload).unwrap();
        assert_eq!(
            (alert.kind, alert.assisting_court_id.as_str()),
            (AlertKind::TaskStatus, "beilun")
        );
        let last = store.task_history(&task_id).await.unwrap().pop().unwrap();
        assert_eq!(
            (last.kind, last.note.as_deref()),
            (TaskEventKind::Rerouted, Some("from cixi to beilun"))
        );
        // Only a rejected task is rerouted.
        assert_eq!(
            store
                .reroute(&task_id, &route, &deadlines, &topics, now)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .reroute("nope", &route, &deadlines, &topics, now)
                .await
                .unwrap(),
            None
        );
        // The new court may report on it; its deadline escalates again.
        let (escalations, _) = escalate(&store, now + Duration::minutes(4)).await;
        assert_eq!(escalations.len(), 1);
        assert_eq!(escalations[0].task.assisting_court_id, "beilun");

        // Beilun rejects too; meanwhile a new sighting opened another task: no reroute.
        set_status(
            &store,
            &task_id,
            TaskStatus::Rejected,
            "beilun",
            now + Duration::minutes(5),
        )
        .await;
        assert_eq!(
            store.rejected_by(&task_id).await.unwrap(),
            ["cixi", "beilun"]
        );
        let (outcomes, _) = record(
            &store,
            &[matched(&car, "cam-1", "e2", "cixi")],
            now + Duration::minutes(6),
        )
        .await;
        let newer = created(&outcomes[0]).task_id.clone();
        let before = footprint(&store, &task_id).await;
        let mut route2 = route.clone();
        route2.assisting_court_id = "zhenhai".into();
        assert_eq!(
            store
                .reroute(
                    &task_id,
                    &route2,
                    &deadlines,
                    &topics,
                    now + Duration::minutes(7)
                )
                .await
                .unwrap(),
            None,
            "{}",
            db.label
        );
        assert_eq!(footprint(&store, &task_id).await, before);
        assert_eq!(
            store.get_task(&newer).await.unwrap().unwrap().status,
            TaskStatus::Dispatched
        );

        // No court left: escalate by hand.
        let messages = store
            .escalate_task(
                &task_id,
                Some("ningbo_intermediate"),
                "rejected by every participating court",
                &topics,
                now + Duration::minutes(8),
            )
            .await
            .unwrap();
        assert_eq!(
            topics_of(&messages),
            ["dispatch/ningbo_intermediate/escalations", "alerts/yuyao"]
        );
        let alert: Alert = serde_json::from_slice(&messages[1].payload).unwrap();
        assert_eq!(alert.kind, AlertKind::Escalated);
        assert!(
            alert.text.contains("rejected by every participating court"),
            "{}",
            alert.text
        );
        let last = store.task_history(&task_id).await.unwrap().pop().unwrap();
        assert_eq!(
            (last.kind, last.status, last.note.as_deref()),
            (
                TaskEventKind::Escalated,
                TaskStatus::Rejected,
                Some("rejected by every participating court")
            )
        );
        let messages = store
            .escalate_task(&task_id, None, "again", &topics, now)
            .await
            .unwrap();
        assert_eq!(topics_of(&messages), ["alerts/yuyao"]);
        assert!(
            store
                .escalate_task("nope", None, "x", &topics, now)
                .await
                .unwrap()
                .is_empty()
        );

        // A withdrawn target's rejected task is not rerouted.
        store.withdraw_target("T-1", &topics, now).await.unwrap();
        let mut reopened = route.clone();
        reopened.assisting_court_id = "beilun".into();
        assert_eq!(
            store
                .reroute(&newer, &reopened, &deadlines, &topics, now)
                .await
                .unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn consolidation_is_proposed_once_per_link() {
    for db in databases().await {
        let store = db.connect().await;
        let topics = Topics::new("");
        let ids = vec!["T-1".to_string(), "T-2".to_string()];
        let courts = vec!["cixi".to_string(), "yuyao".to_string()];
        let messages = store
            .propose_consolidation(
                "plate:浙B12345",
                &ids,
                &courts,
                Some("yuyao"),
                Some("ningbo_intermediate"),
                &topics,
                t0(),
            )
            .await
            .unwrap();
        assert_eq!(
            topics_of(&messages),
            ["alerts/ningbo_intermediate"],
            "{}",
            db.label
        );
        let alert: Alert = serde_json::from_slice(&messages[0].payload).unwrap();
        assert_eq!(alert.kind, AlertKind::ConsolidationProposed);
        assert_eq!(
            (
                alert.court_id.as_str(),
                alert.target_id.as_str(),
                alert.task_id.as_str(),
                alert.assisting_court_id.as_str()
            ),
            ("ningbo_intermediate", "T-1", "", "yuyao")
        );
        assert_eq!(
            alert.text,
            "Related cases: targets T-1 and T-2 share a plate or identity number, with cases at \
             cixi and yuyao; consider consolidating their enforcement (proposed lead court: yuyao)"
        );
        // Again (any replica, any time): nothing.
        for _ in 0..2 {
            assert!(
                store
                    .propose_consolidation(
                        "plate:浙B12345",
                        &ids,
                        &courts,
                        Some("yuyao"),
                        Some("ningbo_intermediate"),
                        &topics,
                        t0()
                    )
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        // Without a supervisor the link is recorded but nobody is told.
        assert!(
            store
                .propose_consolidation("person:x", &ids, &courts, None, None, &topics, t0())
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .propose_consolidation(
                    "person:x",
                    &ids,
                    &courts,
                    None,
                    Some("ningbo_intermediate"),
                    &topics,
                    t0()
                )
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.outbox_pending_count().await.unwrap(), 1);
    }
}

#[tokio::test]
async fn a_locate_request_creates_one_search_task() {
    for db in databases().await {
        let store = db.connect().await;
        let topics = Topics::new("");
        let mut who = person("T-P");
        who.lead_court_id = None;
        who.name = Some("杨某".into());
        store.upsert_target(&who, t0()).await.unwrap();
        let route = RouteDecision {
            kind: TaskKind::PersonSearch,
            requesting_court_id: "cixi".into(),
            assisting_court_id: "yuyao".into(),
            routing: Routing::InJurisdiction,
            distance_km: 2.0,
            containing_court_id: Some("yuyao".into()),
        };
        let merged = vec![case("cixi", "2024-02-02")];
        let SearchOutcome::Created(task, messages) = store
            .create_search_task("T-P", &merged, &route, &Deadlines::default(), &topics, t0())
            .await
            .unwrap()
        else {
            panic!("{}: not created", db.label);
        };
        assert_eq!(task.kind, TaskKind::PersonSearch);
        assert_eq!(task.sighting, None);
        assert_eq!(task.cases, merged);
        assert_eq!(task.person_id, who.person_id);
        assert_eq!(
            (
                task.requesting_court_id.as_str(),
                task.assisting_court_id.as_str()
            ),
            ("cixi", "yuyao")
        );
        assert_eq!(task.ack_by, t0() + Duration::minutes(5));
        assert_eq!(
            store.get_task(&task.task_id).await.unwrap().as_ref(),
            Some(&task)
        );
        assert_eq!(
            topics_of(&messages),
            ["dispatch/yuyao/tasks", "alerts/cixi"]
        );
        let alert: Alert = serde_json::from_slice(&messages[1].payload).unwrap();
        assert_eq!(alert.kind, AlertKind::TargetSighted);
        assert_eq!(
            alert.text,
            "Person 杨某 (T-P): locate request sent to yuyao, whose area holds the place"
        );
        let history = store.task_history(&task.task_id).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].kind, TaskEventKind::Created);

        let again = store
            .create_search_task("T-P", &merged, &route, &Deadlines::default(), &topics, t0())
            .await
            .unwrap();
        assert_eq!(again, SearchOutcome::AlreadyOpen(task.clone()));
        assert_eq!(
            store
                .create_search_task("T-none", &[], &route, &Deadlines::default(), &topics, t0())
                .await
                .unwrap(),
            SearchOutcome::TargetInactive
        );
        // A sighting of the person updates the search task.
        let (outcomes, _) = record(&store, &[matched(&who, "hotel-1", "h1", "yuyao")], t0()).await;
        assert_eq!(
            outcomes,
            vec![MatchOutcome::Updated {
                task_id: task.task_id.clone(),
                assisting_court_id: "yuyao".into()
            }]
        );
        // Once it is located, a new request makes a new task; in the own court, no alert.
        set_status(
            &store,
            &task.task_id,
            TaskStatus::Located,
            "yuyao",
            t0() + Duration::minutes(20),
        )
        .await;
        let mut own = route.clone();
        own.assisting_court_id = "cixi".into();
        own.routing = Routing::OwnJurisdiction;
        let SearchOutcome::Created(second, messages) = store
            .create_search_task(
                "T-P",
                &[],
                &own,
                &Deadlines::default(),
                &topics,
                t0() + Duration::minutes(21),
            )
            .await
            .unwrap()
        else {
            panic!("not created");
        };
        assert_ne!(second.task_id, task.task_id);
        assert_eq!(second.cases, who.cases);
        assert_eq!(topics_of(&messages), ["dispatch/cixi/tasks"]);
    }
}
