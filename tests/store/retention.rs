//! Retention: closed tasks lose their sighting details, then themselves; open tasks stay.

use chrono::Duration;
use leadrelay::contract::task::{TaskStatus, Topics};
use leadrelay::store::{Purged, Retention, StatusOutcome};

use crate::harness::*;

on_each_backend!(closed_tasks_are_reduced_then_deleted_and_open_ones_kept);

async fn closed_tasks_are_reduced_then_deleted_and_open_ones_kept(db: TestDb) {
    let store = db.connect().await;
    let (closed_car, open_car) = (vehicle("T-1", "浙B12345"), vehicle("T-2", "浙B77777"));
    store.upsert_target(&closed_car, t0()).await.unwrap();
    store.upsert_target(&open_car, t0()).await.unwrap();
    let batch = [
        matched(&closed_car, "cam-1", "e1", "cixi"),
        matched(&open_car, "cam-1", "e2", "cixi"),
    ];
    let (outcomes, _) = record(&store, &batch, t0()).await;
    let closed = created(&outcomes[0]).task_id.clone();
    let open = created(&outcomes[1]).task_id.clone();
    let seized = store
        .apply_status(
            &report(&closed, TaskStatus::Seized, "cixi-officer-07"),
            Some("cixi"),
            &Topics::new(""),
            t0() + Duration::minutes(20),
        )
        .await
        .unwrap();
    assert!(matches!(seized, StatusOutcome::Applied { .. }));
    let retention = Retention {
        sighting_details: Duration::days(30),
        closed_tasks: Duration::days(365),
        ..Retention::default()
    };

    // Within both ages nothing changes.
    let now = t0() + Duration::days(29);
    assert_eq!(
        store.apply_retention(now, &retention).await.unwrap(),
        Purged::default()
    );
    assert!(
        store
            .get_task(&closed)
            .await
            .unwrap()
            .unwrap()
            .sighting
            .is_some()
    );

    // Past the first: the closed task keeps its timeline, not where the car was seen.
    let now = t0() + Duration::days(31);
    let purged = store.apply_retention(now, &retention).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            reduced: 1,
            deleted: 0
        }
    );
    let task = store.get_task(&closed).await.unwrap().unwrap();
    assert_eq!((task.sighting, task.read_plate), (None, None));
    let history = store.task_history(&closed).await.unwrap();
    assert!(history.len() >= 2, "{history:?}");
    assert!(history.iter().all(|e| e.sighting.is_none()), "{history:?}");
    // Idempotent.
    assert_eq!(
        store.apply_retention(now, &retention).await.unwrap(),
        Purged::default()
    );

    // Past the second: the closed task and its history are gone.
    let now = t0() + Duration::days(366);
    let purged = store.apply_retention(now, &retention).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            reduced: 0,
            deleted: 1
        }
    );
    assert_eq!(store.get_task(&closed).await.unwrap(), None);
    assert!(store.task_history(&closed).await.unwrap().is_empty());

    // The open task, older than both, is untouched.
    let task = store.get_task(&open).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Dispatched);
    assert!(task.sighting.is_some());
    assert!(
        store
            .task_history(&open)
            .await
            .unwrap()
            .iter()
            .any(|e| e.sighting.is_some())
    );
}

/// The SQLite WAL keeps the size of its busiest moment until it is truncated: housekeeping's
/// `truncate_journal` brings it back to zero bytes with the rows still there.
#[tokio::test]
async fn the_sqlite_wal_is_truncated_with_the_rows_kept() {
    let db = TestDb::sqlite();
    let store = db.connect().await;
    for i in 0..200 {
        let car = vehicle(&format!("T-{i}"), &format!("浙B{:05}", 10_000 + i));
        store.upsert_target(&car, t0()).await.unwrap();
    }
    let wal = db._dir.as_ref().unwrap().path().join("store.db-wal");
    let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(size() > 0, "the writes went to the WAL");

    store.truncate_journal().await.unwrap();
    assert_eq!(size(), 0, "the WAL was truncated");
    assert!(store.get_target("T-199").await.unwrap().is_some());
}
