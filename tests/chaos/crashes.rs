//! Scenarios 1 and 2: the service killed (`kill -9`) at random moments and restarted, and
//! the broker stopped and started again, while sightings stream in.

use std::time::{Duration, Instant};

use crate::common::unique;
use crate::feed::{Rng, Workload};
use crate::report::Row;
use crate::service::{Service, load_targets};
use crate::stage::{DbKind, Stage};

/// `kills` kills at random moments of the stream (drawn from `rng`), each followed at once by
/// a restart, as a supervisor would.
pub async fn service_kills(
    kind: DbKind,
    kills: usize,
    workload: Workload,
    rng: &mut Rng,
) -> Option<Row> {
    let stage = Stage::new(workload, rng).await;
    let database = stage.database(kind).await?;
    let mut service = Service::start(
        &stage.broker.url(),
        &database.url(),
        &unique("lr-chaos-"),
        &stage.prefix,
        stage.path("service"),
        &[],
    )
    .await;
    load_targets(service.http(), &stage.plan.targets).await;
    let duration = workload.duration();
    let mut moments: Vec<Duration> = (0..kills)
        .map(|_| duration.mul_f64(0.05 + 0.9 * (rng.below(10_000) as f64 / 10_000.0)))
        .collect();
    moments.sort();
    let start = Instant::now();
    let streaming = stage.stream().await;
    let mut late = 0;
    for moment in &moments {
        if Instant::now() > start + *moment {
            late += 1; // the previous restart took longer than the gap to this moment
        }
        // The next kill moment drawn from the seeded generator.
        tokio::time::sleep_until((start + *moment).into()).await;
        service.kill();
        service.restart().await;
    }
    let feed = streaming.await.unwrap();
    let mut note = format!("{} kill -9 + restart", service.restarts);
    if late > 0 {
        note.push_str(&format!(" ({late} right after the previous restart)"));
    }
    let row = stage
        .finish(
            feed,
            service.http(),
            "service kill -9",
            database.label(),
            note,
        )
        .await;
    Some(row)
}

/// The suite's Mosquitto stopped gracefully a third into the stream, down for two seconds
/// while the feed keeps publishing into its reconnecting client, then started again.
pub async fn broker_restart(kind: DbKind, workload: Workload, rng: &mut Rng) -> Option<Row> {
    let mut stage = Stage::new(workload, rng).await;
    let database = stage.database(kind).await?;
    let service = Service::start(
        &stage.broker.url(),
        &database.url(),
        &unique("lr-chaos-"),
        &stage.prefix,
        stage.path("service"),
        &[],
    )
    .await;
    load_targets(service.http(), &stage.plan.targets).await;
    let streaming = stage.stream().await;
    // A third into the stream.
    tokio::time::sleep(workload.duration() / 3).await;
    stage.broker.stop().await;
    // The broker stays down this long: service, feed and subscriber all lose it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stage.broker.start_again().await;
    let feed = streaming.await.unwrap();
    let note = "Mosquitto stopped (SIGTERM) and started again, down 2 s".to_string();
    let row = stage
        .finish(
            feed,
            service.http(),
            "broker restart",
            database.label(),
            note,
        )
        .await;
    Some(row)
}
