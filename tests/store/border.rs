//! The not_found cooldown and border jitter.

use chrono::Duration;
use leadrelay::contract::model::Routing;
use leadrelay::contract::task::{Alert, AlertKind, Task, TaskStatus, TaskUpdate, UpdateKind};
use leadrelay::dispatch::policy::Deadlines;
use leadrelay::store::{MatchOutcome, TaskEventKind};

use crate::harness::*;

on_each_backend!(
    not_found_holds_new_tasks_back_for_the_cooldown,
    jitter_at_a_border_does_not_move_a_task,
    a_far_sighting_moves_a_task_at_once
);

async fn not_found_holds_new_tasks_back_for_the_cooldown(db: TestDb) {
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

async fn jitter_at_a_border_does_not_move_a_task(db: TestDb) {
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

async fn a_far_sighting_moves_a_task_at_once(db: TestDb) {
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
