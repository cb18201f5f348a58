//! Targets: migrations, round trips, withdrawal.

use chrono::Duration;
use leadrelay::contract::model::TargetStatus;
use leadrelay::contract::task::{Alert, AlertKind, TaskStatus, TaskUpdate, Topics};
use leadrelay::store::{Dialect, MatchOutcome, Store, StoreError, TaskEventKind};

use crate::harness::*;

on_each_backend!(
    migrations_apply_twice_and_urls_are_checked,
    targets_round_trip,
    withdrawing_a_target_cancels_its_open_task
);

async fn migrations_apply_twice_and_urls_are_checked(db: TestDb) {
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
    let err = Store::connect("mysql://root:secret@localhost/x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }));
    assert!(!err.to_string().contains("secret"), "{err}");
}

async fn targets_round_trip(db: TestDb) {
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

async fn withdrawing_a_target_cancels_its_open_task(db: TestDb) {
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
