//! Status reports: applied or refused, rejections re-routed or escalated.

use chrono::Duration;
use leadrelay::contract::model::{Routing, TargetStatus, TaskKind};
use leadrelay::contract::task::{Alert, AlertKind, TaskStatus, TaskUpdate, Topics, UpdateKind};
use leadrelay::dispatch::policy::Deadlines;
use leadrelay::dispatch::route::RouteDecision;
use leadrelay::store::{MatchOutcome, StatusOutcome, TaskEventKind};

use crate::harness::*;

on_each_backend!(
    status_reports_are_applied_or_refused,
    a_rejected_task_is_rerouted_or_escalated
);

async fn status_reports_are_applied_or_refused(db: TestDb) {
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

async fn a_rejected_task_is_rerouted_or_escalated(db: TestDb) {
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
