//! Per-court deadlines and their escalation, exactly once.

use chrono::Duration;
use leadrelay::contract::model::Target;
use leadrelay::contract::task::{Alert, AlertKind, Task, TaskStatus};
use leadrelay::dispatch::policy::{Deadlines, MatchedSighting, Policy};
use leadrelay::store::{EscalationKind, MatchOutcome, TaskEventKind};

use crate::harness::*;

on_each_backend!(deadlines_are_the_assisting_courts, deadlines_escalate_exactly_once, a_moved_task_gets_new_deadlines_and_escalates_again; multi_thread: replicas_polling_together_escalate_each_task_once);

async fn deadlines_are_the_assisting_courts(db: TestDb) {
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

async fn deadlines_escalate_exactly_once(db: TestDb) {
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

async fn replicas_polling_together_escalate_each_task_once(db: TestDb) {
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

async fn a_moved_task_gets_new_deadlines_and_escalates_again(db: TestDb) {
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
