//! Scenario 5: three replicas sharing the stream (`--share-group`) on one PostgreSQL
//! database; one is killed mid-stream.

use std::time::Duration;

use crate::common::unique;
use crate::feed::{Rng, Workload};
use crate::report::{Row, settle};
use crate::service::{Service, counter_total, load_targets};
use crate::stage::{Database, DbKind, Stage, settle_limit};

/// How long the survivors get to finish on their own before the dead replica is restarted.
const WITHOUT_THE_DEAD: Duration = Duration::from_secs(15);

pub async fn replica_kill(workload: Workload, rng: &mut Rng) -> Option<Row> {
    let stage = Stage::new(workload, rng).await;
    let Database::Postgres(db) = stage.database(DbKind::Postgres).await? else {
        unreachable!()
    };
    let group = ["--share-group", "chaos"];
    let mut replicas = Vec::new();
    for n in 0..3 {
        let replica = Service::start(
            &stage.broker.url(),
            &db.url,
            &unique(&format!("lr-replica{n}-")),
            &stage.prefix,
            stage.path(&format!("replica{n}")),
            &group,
        )
        .await;
        if n == 0 {
            // Loaded before the others start, so every replica's hotlist holds them.
            load_targets(replica.http(), &stage.plan.targets).await;
        }
        replicas.push(replica);
    }
    let streaming = stage.stream().await;
    // Half-way through the stream.
    tokio::time::sleep(workload.duration() / 2).await;
    replicas[1].kill();
    let feed = streaming.await.unwrap();
    let survivor = replicas[0].http().to_string();
    // The survivors alone: what the dead replica's session holds stays with it.
    let alone = settle(&survivor, &stage.counter, &stage.plan, WITHOUT_THE_DEAD).await;
    let found = alone
        .tasks
        .iter()
        .filter(|t| {
            stage
                .plan
                .hit_targets
                .contains(t["target_id"].as_str().unwrap_or_default())
        })
        .count();
    let missing = stage.plan.hit_targets.len() - found;
    // As a supervisor would: the same client id again, which resumes its session; what
    // that session held arrives now, and the restarted replica counts it.
    replicas[1].restart().await;
    let back = settle(
        replicas[1].http(),
        &stage.counter,
        &stage.plan,
        settle_limit(),
    )
    .await;
    let stranded = counter_total(replicas[1].http(), "leadrelay_sightings_received_total").await;
    let note = format!(
        "replica 1 of 3 killed half-way; down until the survivors settled (at most {} s): they {} ({missing} expected \
         task(s) missing); restarted with its client id, it received {stranded} sighting(s) \
         its session had kept{}",
        WITHOUT_THE_DEAD.as_secs(),
        if alone.complete {
            "finished alone"
        } else {
            "did not finish alone"
        },
        if back.complete { "" } else { " (incomplete)" }
    );
    let row = stage
        .finish(
            feed,
            &survivor,
            "replica kill (3, shared)",
            "postgres",
            note,
        )
        .await;
    drop(replicas);
    drop(db);
    Some(row)
}
