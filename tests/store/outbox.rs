//! The outbox and the purge of processed event ids.

use chrono::Duration;
use leadrelay::contract::model::Target;
use leadrelay::contract::task::MessageKind;
use leadrelay::dispatch::policy::MatchedSighting;
use leadrelay::store::MatchOutcome;

use crate::harness::*;

on_each_backend!(
    outbox_holds_messages_until_the_broker_has_them,
    outbox_rows_go_once_every_message_in_them_is_acknowledged,
    purged_event_ids_count_as_new
);

async fn outbox_holds_messages_until_the_broker_has_them(db: TestDb) {
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

/// Each transaction's messages share one outbox row (migration 0004). Acknowledgements in any
/// order complete some rows and part of another: exactly the complete rows go, the rest is
/// still pending, repeats change nothing; a row written before 0004 is read and removed too.
async fn outbox_rows_go_once_every_message_in_them_is_acknowledged(db: TestDb) {
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

async fn purged_event_ids_count_as_new(db: TestDb) {
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
