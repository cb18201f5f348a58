//! Consolidation proposals and locate requests.

use chrono::Duration;
use leadrelay::contract::model::{Routing, TaskKind};
use leadrelay::contract::task::{Alert, AlertKind, TaskStatus, Topics};
use leadrelay::dispatch::policy::Deadlines;
use leadrelay::dispatch::route::RouteDecision;
use leadrelay::store::{MatchOutcome, SearchOutcome, TaskEventKind};

use crate::harness::*;

on_each_backend!(
    consolidation_is_proposed_once_per_link,
    a_locate_request_creates_one_search_task
);

async fn consolidation_is_proposed_once_per_link(db: TestDb) {
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

async fn a_locate_request_creates_one_search_task(db: TestDb) {
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
