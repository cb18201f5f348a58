//! The audit log and API tokens: rows are only appended (the database refuses UPDATE and
//! DELETE of them), a status report's row commits with it, filters and pages, tokens hashed.

use chrono::Duration;
use leadrelay::app::auth::{self, Principal, Scope};
use leadrelay::contract::task::{TaskStatus, Topics};
use leadrelay::store::{AuditFilter, AuditResult, StatusOutcome, Store};

use crate::harness::*;

on_each_backend!(
    audit_rows_cannot_be_updated_or_deleted,
    a_status_report_and_its_audit_row_commit_together,
    the_audit_log_filters_and_pages,
    tokens_are_stored_hashed_and_revoked,
    the_audit_retention_deletes_only_old_rows
);

/// Runs one statement on a connection of its own, as any client of the database could.
async fn raw(db: &TestDb, sql: &str) -> Result<u64, sqlx::Error> {
    use sqlx::Connection as _;
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await?;
        Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await?
            .rows_affected())
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await?;
        Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await?
            .rows_affected())
    }
}

fn entry(actor: &str, target: Option<&str>) -> leadrelay::store::AuditEntry {
    let mut e = Principal {
        name: actor.into(),
        scope: Scope::Admin,
    }
    .audit("target.get", AuditResult::Ok);
    e.target_id = target.map(str::to_string);
    e.purpose = Some("enforcement".into());
    e
}

async fn audit_rows_cannot_be_updated_or_deleted(db: TestDb) {
    let store = db.connect().await;
    // One row from long ago, one from now.
    store
        .append_audit(&entry("old", Some("T-1")), t0() - Duration::days(400))
        .await
        .unwrap();
    store
        .append_audit(&entry("new", Some("T-1")), chrono::Utc::now())
        .await
        .unwrap();

    let update = raw(&db, "UPDATE audit_log SET result = 'refused'").await;
    let e = update
        .expect_err("UPDATE of audit rows must fail")
        .to_string();
    assert!(e.contains("append-only"), "[{}] {e}", db.label);
    let delete = raw(&db, "DELETE FROM audit_log").await;
    let e = delete
        .expect_err("DELETE of audit rows must fail")
        .to_string();
    assert!(e.contains("append-only"), "[{}] {e}", db.label);
    if db.label == "postgres" {
        let e = raw(&db, "TRUNCATE audit_log")
            .await
            .expect_err("TRUNCATE must fail");
        assert!(e.to_string().contains("append-only"), "{e}");
    }
    let all = AuditFilter {
        limit: 10,
        ..AuditFilter::default()
    };
    assert_eq!(
        store.audit_log(&all).await.unwrap().len(),
        2,
        "[{}]",
        db.label
    );

    // The retention hook: with a retention set, only rows older than it may go.
    raw(&db, "UPDATE audit_settings SET retention_days = 365")
        .await
        .unwrap();
    assert!(
        raw(&db, "DELETE FROM audit_log").await.is_err(),
        "[{}] the new row stays",
        db.label
    );
    let purged = raw(&db, "DELETE FROM audit_log WHERE actor = 'old'")
        .await
        .unwrap();
    assert_eq!(purged, 1, "[{}]", db.label);
    let left = store.audit_log(&all).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].entry.actor, "new");
    assert!(
        raw(&db, "UPDATE audit_settings SET retention_days = 1")
            .await
            .is_err(),
        "[{}] a retention under 30 days is refused",
        db.label
    );
}

async fn a_status_report_and_its_audit_row_commit_together(db: TestDb) {
    let store = db.connect().await;
    let topics = Topics::new("");
    let car = vehicle("T-1", "浙B12345");
    store.upsert_target(&car, t0()).await.unwrap();
    let (outcomes, _) = record(&store, &[matched(&car, "cam-1", "e1", "cixi")], t0()).await;
    let task_id = created(&outcomes[0]).task_id.clone();
    let caller = Principal::mqtt_court("cixi").audit("task.status", AuditResult::Ok);
    let now = t0() + Duration::minutes(1);

    let applied = store
        .apply_status_audited(
            &report(&task_id, TaskStatus::Acknowledged, "officer"),
            Some("cixi"),
            &topics,
            now,
            Some(&caller),
        )
        .await
        .unwrap();
    assert!(matches!(applied, StatusOutcome::Applied { .. }));
    // Seized after acknowledged is fine; from yuyao (not the holder) it is refused.
    let refused = store
        .apply_status_audited(
            &report(&task_id, TaskStatus::Seized, "officer"),
            Some("yuyao"),
            &topics,
            now,
            Some(&caller),
        )
        .await
        .unwrap();
    assert!(matches!(refused, StatusOutcome::Refused { .. }));
    let rows = store
        .audit_log(&AuditFilter {
            task_id: Some(task_id.clone()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "[{}] {rows:?}", db.label);
    // Newest first.
    assert_eq!(rows[0].entry.result, AuditResult::Refused);
    assert!(
        rows[0]
            .entry
            .detail
            .as_deref()
            .unwrap()
            .contains("held by cixi")
    );
    assert_eq!(rows[1].entry.result, AuditResult::Ok);
    assert_eq!(rows[1].entry.actor, "mqtt:cixi");
    assert_eq!(rows[1].entry.scope, "court:cixi");
    assert_eq!(rows[1].entry.target_id.as_deref(), Some("T-1"));
    assert_eq!(rows[1].at, now);
    assert_eq!(
        store.get_task(&task_id).await.unwrap().unwrap().status,
        TaskStatus::Acknowledged
    );
}

async fn the_audit_log_filters_and_pages(db: TestDb) {
    let store = db.connect().await;
    for i in 0..5 {
        let target = format!("T-{}", i % 2);
        store
            .append_audit(
                &entry(&format!("actor-{}", i % 3), Some(&target)),
                t0() + Duration::minutes(i),
            )
            .await
            .unwrap();
    }
    let page = |filter: AuditFilter| {
        let store: Store = store.clone();
        async move { store.audit_log(&filter).await.unwrap() }
    };
    let by_target = page(AuditFilter {
        target_id: Some("T-0".into()),
        limit: 10,
        ..AuditFilter::default()
    })
    .await;
    assert_eq!(by_target.len(), 3);
    let by_actor = page(AuditFilter {
        actor: Some("actor-0".into()),
        limit: 10,
        ..AuditFilter::default()
    })
    .await;
    assert_eq!(by_actor.len(), 2);
    let in_range = page(AuditFilter {
        from: Some(t0() + Duration::minutes(1)),
        to: Some(t0() + Duration::minutes(3)),
        limit: 10,
        ..AuditFilter::default()
    })
    .await;
    assert_eq!(in_range.len(), 2);
    let first = page(AuditFilter {
        limit: 3,
        ..AuditFilter::default()
    })
    .await;
    let second = page(AuditFilter {
        before_id: Some(first[2].id),
        limit: 3,
        ..AuditFilter::default()
    })
    .await;
    assert_eq!((first.len(), second.len()), (3, 2));
    assert!(first[0].id > first[2].id && first[2].id > second[0].id);
}

async fn tokens_are_stored_hashed_and_revoked(db: TestDb) {
    let store = db.connect().await;
    let scope = Scope::Court("cixi".into());
    let token = auth::create(&store, "cixi console", &scope, t0())
        .await
        .unwrap();
    assert!(token.starts_with("lr_") && token.len() == 67, "{token}");
    let caller = auth::verify(&store, &token).await.unwrap().unwrap();
    assert_eq!(
        (caller.name.as_str(), &caller.scope),
        ("cixi console", &scope)
    );
    assert_eq!(auth::verify(&store, "lr_not-a-token").await.unwrap(), None);
    // A live name is unique.
    assert!(
        auth::create(&store, "cixi console", &Scope::Admin, t0())
            .await
            .is_err()
    );
    // The secret is nowhere in the database, only its hash.
    let listed = auth::list(&store).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at, None);
    auth::revoke(&store, "cixi console", t0()).await.unwrap();
    assert_eq!(auth::verify(&store, &token).await.unwrap(), None);
    assert!(auth::revoke(&store, "cixi console", t0()).await.is_err());
    // The name is free again once revoked.
    let again = auth::create(&store, "cixi console", &scope, t0())
        .await
        .unwrap();
    assert_ne!(again, token);
    assert_eq!(auth::list(&store).await.unwrap().len(), 2);
}

/// The service's audit retention: rows older than it go, in chunks; younger ones stay, and
/// the retention the database enforces is the one set.
async fn the_audit_retention_deletes_only_old_rows(db: TestDb) {
    let store = db.connect().await;
    let now = chrono::Utc::now();
    store
        .append_audit(&entry("old", Some("T-1")), now - chrono::Duration::days(40))
        .await
        .unwrap();
    store
        .append_audit(
            &entry("recent", Some("T-1")),
            now - chrono::Duration::days(20),
        )
        .await
        .unwrap();
    assert_eq!(
        store.apply_audit_retention(30).await.unwrap(),
        1,
        "[{}]",
        db.label
    );
    assert_eq!(
        store.apply_audit_retention(30).await.unwrap(),
        0,
        "[{}]",
        db.label
    );
    let all = AuditFilter {
        limit: 10,
        ..AuditFilter::default()
    };
    let left = store.audit_log(&all).await.unwrap();
    let actors: Vec<&str> = left.iter().map(|r| r.entry.actor.as_str()).collect();
    assert_eq!(actors, ["recent"], "[{}]", db.label);
    // Whatever the service sets, the database still refuses younger rows' deletion.
    assert!(
        raw(&db, "DELETE FROM audit_log").await.is_err(),
        "[{}]",
        db.label
    );
}
