//! The group commit of matched sightings: new tasks, updates, duplicates, races.

use chrono::Duration;
use leadrelay::contract::model::{Routing, Target, TargetStatus};
use leadrelay::contract::task::{
    Alert, AlertKind, MessageKind, Task, TaskStatus, TaskUpdate, Topics, UpdateKind,
};
use leadrelay::dispatch::policy::{Deadlines, MatchedSighting, Policy};
use leadrelay::store::{MatchOutcome, TaskEventKind};

use crate::harness::*;

on_each_backend!(a_new_task_goes_to_the_assisting_court_with_an_alert_to_the_requesting_one, further_sightings_update_the_open_task, a_redelivered_event_has_no_effect, small_and_large_batches_record_the_same, inactive_targets_get_no_tasks, a_task_carries_the_merged_cases_of_linked_targets; multi_thread: two_replicas_racing_for_a_target_create_one_task);

async fn a_new_task_goes_to_the_assisting_court_with_an_alert_to_the_requesting_one(db: TestDb) {
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

async fn further_sightings_update_the_open_task(db: TestDb) {
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

async fn a_redelivered_event_has_no_effect(db: TestDb) {
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

/// A small batch and a large one (on SQLite the small one's rows go to the database as one
/// list of statements, the large one's statement by statement) record the same things.
async fn small_and_large_batches_record_the_same(db: TestDb) {
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

async fn inactive_targets_get_no_tasks(db: TestDb) {
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

async fn two_replicas_racing_for_a_target_create_one_task(db: TestDb) {
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

async fn a_task_carries_the_merged_cases_of_linked_targets(db: TestDb) {
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
