//! Scenario 3: PostgreSQL sessions killed under the service, and PostgreSQL unreachable
//! for ten seconds, while sightings stream in.

use std::time::{Duration, Instant};

use crate::common::{Proxy, unique};
use crate::feed::{Rng, Workload};
use crate::report::Row;
use crate::service::{Service, load_targets, readiness};
use crate::stage::{Database, DbKind, Stage};

/// Every session of the service's database ended by `pg_terminate_backend`, every 300 ms
/// for the length of the stream.
pub async fn killed_connections(workload: Workload, rng: &mut Rng) -> Option<Row> {
    let stage = Stage::new(workload, rng).await;
    let Database::Postgres(db) = stage.database(DbKind::Postgres).await? else {
        unreachable!()
    };
    let service = Service::start(
        &stage.broker.url(),
        &db.url,
        &unique("lr-chaos-"),
        &stage.prefix,
        stage.path("service"),
        &[],
    )
    .await;
    load_targets(service.http(), &stage.plan.targets).await;
    let streaming = stage.stream().await;
    let end = Instant::now() + workload.duration();
    let (mut rounds, mut ended) = (0, 0);
    while Instant::now() < end {
        ended += db.terminate_connections().await;
        rounds += 1;
        // The pace of the killing: several rounds per second, group commits in between.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let feed = streaming.await.unwrap();
    let note = format!("pg_terminate_backend: {ended} sessions ended in {rounds} rounds");
    let row = stage
        .finish(feed, service.http(), "pg sessions killed", "postgres", note)
        .await;
    Some(row)
}

/// The service reaches PostgreSQL through a proxy that drops every connection and refuses
/// new ones for ten seconds, a quarter into the stream.
pub async fn unreachable_database(workload: Workload, rng: &mut Rng) -> Option<Row> {
    let stage = Stage::new(workload, rng).await;
    let Database::Postgres(db) = stage.database(DbKind::Postgres).await? else {
        unreachable!()
    };
    let proxy = Proxy::start(db.server_addr().await).await;
    let service = Service::start(
        &stage.broker.url(),
        &db.url_via(proxy.addr),
        &unique("lr-chaos-"),
        &stage.prefix,
        stage.path("service"),
        &[],
    )
    .await;
    load_targets(service.http(), &stage.plan.targets).await;
    let streaming = stage.stream().await;
    // A quarter into the stream.
    tokio::time::sleep(workload.duration() / 4).await;
    proxy.cut_off();
    let cut_at = Instant::now();
    let during = not_ready_within(service.http(), Duration::from_secs(8)).await;
    // The rest of the ten seconds the database stays unreachable.
    tokio::time::sleep_until((cut_at + Duration::from_secs(10)).into()).await;
    proxy.restore();
    let feed = streaming.await.unwrap();
    let mut row = stage
        .finish(
            feed,
            service.http(),
            "pg unreachable 10 s",
            "postgres",
            format!("proxy cut 10 s; /readyz during the cut: {during}"),
        )
        .await;
    if !during.contains("\"database\":false") {
        row.problems
            .push("/readyz did not report the database down".into());
    }
    Some(row)
}

/// Polls `/readyz` until it answers other than 200; its answer, or why there was none.
pub async fn not_ready_within(http: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        match readiness(http).await {
            Some((200, _)) | None => {}
            Some((status, body)) => return format!("{status} {body}"),
        }
        if Instant::now() > deadline {
            return format!("still ready after {within:?}");
        }
        // Polling readiness, which follows the outage within a probe's timeout.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
