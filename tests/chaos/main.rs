//! The chaos suite: the real binary against a Mosquitto and databases of the suite's own,
//! broken on purpose while sightings stream in, then counted. Nothing accepted may be lost,
//! no target may hold two open tasks, every task must reach the subscriber; duplicates are
//! allowed (delivery is at least once) and counted.
//!
//! `cargo test --test chaos` runs the short version (a few hundred sightings per scenario);
//! `cargo test --release --test chaos -- --ignored --nocapture --test-threads=1` the long
//! one (20 kills per database). `LEADRELAY_CHAOS_KILLS` and `LEADRELAY_CHAOS_SEED` override
//! the number of kills and the seed of either; `LEADRELAY_CHAOS_ONLY` picks scenarios and
//! `LEADRELAY_CHAOS_KEEP=1` keeps each scenario's directory (logs, databases) for a look.

#[path = "../common/mod.rs"]
mod common;

mod broker;
mod counter;
mod crashes;
mod db;
mod disk;
mod feed;
mod postgres;
mod replicas;
mod report;
mod service;
mod stage;

use std::time::Duration;

use feed::{Rng, Workload};
use stage::DbKind;

/// The size of one run.
struct Settings {
    kills: usize,
    /// The stream of the kill scenarios (long enough for `kills` restarts).
    kill_workload: Workload,
    /// The stream of every other scenario.
    workload: Workload,
    /// Broker restarts on PostgreSQL too, not only SQLite.
    broker_restart_on_postgres: bool,
}

impl Settings {
    fn short() -> Settings {
        let kills = env_number("LEADRELAY_CHAOS_KILLS").unwrap_or(3);
        Settings {
            kills,
            kill_workload: Workload {
                targets: 60,
                sightings: 300,
                hit_percent: 40,
                spacing: Duration::from_millis(1500 * kills as u64 / 300)
                    .max(Duration::from_millis(5)),
            },
            workload: Workload {
                targets: 60,
                sightings: 300,
                hit_percent: 40,
                spacing: Duration::from_millis(15),
            },
            broker_restart_on_postgres: false,
        }
    }

    fn long() -> Settings {
        let kills = env_number("LEADRELAY_CHAOS_KILLS").unwrap_or(20);
        Settings {
            kills,
            kill_workload: Workload {
                targets: 500,
                sightings: 2_000,
                hit_percent: 40,
                spacing: Duration::from_millis(1500 * kills as u64 / 2_000)
                    .max(Duration::from_millis(5)),
            },
            workload: Workload {
                targets: 300,
                sightings: 1_500,
                hit_percent: 40,
                spacing: Duration::from_millis(10),
            },
            broker_restart_on_postgres: true,
        }
    }
}

/// Whether `LEADRELAY_CHAOS_ONLY` (comma-separated: kill, broker, pg, disk, replica) asks
/// for this scenario; all run when it is unset.
fn wanted(scenario: &str) -> bool {
    std::env::var("LEADRELAY_CHAOS_ONLY")
        .map_or(true, |only| only.split(',').any(|s| s.trim() == scenario))
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs every scenario one after the other (each owns its broker, ports and database, but
/// two cores are better spent on one fault at a time), prints the table, then checks it.
async fn run(settings: Settings) {
    let seed = env_number("LEADRELAY_CHAOS_SEED").map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |s| s as u64,
    );
    println!("chaos seed: {seed} (replay with LEADRELAY_CHAOS_SEED={seed})");
    let mut rng = Rng::new(seed);
    let (kills, kw, w) = (settings.kills, settings.kill_workload, settings.workload);
    let mut rows = Vec::new();
    if wanted("kill") {
        rows.extend(crashes::service_kills(DbKind::Sqlite, kills, kw, &mut rng).await);
        rows.extend(crashes::service_kills(DbKind::Postgres, kills, kw, &mut rng).await);
    }
    if wanted("broker") {
        rows.extend(crashes::broker_restart(DbKind::Sqlite, w, &mut rng).await);
        if settings.broker_restart_on_postgres {
            rows.extend(crashes::broker_restart(DbKind::Postgres, w, &mut rng).await);
        }
    }
    if wanted("pg") {
        rows.extend(postgres::killed_connections(w, &mut rng).await);
        rows.extend(postgres::unreachable_database(w, &mut rng).await);
    }
    if wanted("disk") {
        rows.extend(disk::disk_full(w, &mut rng).await);
    }
    if wanted("replica") {
        rows.extend(replicas::replica_kill(w, &mut rng).await);
    }
    report::print(&rows);
    let failures: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.failures()
                .into_iter()
                .map(move |f| format!("{} ({}): {f}", r.scenario, r.db))
        })
        .collect();
    assert!(failures.is_empty(), "seed {seed}: {failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_short() {
    run(Settings::short()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run in release with --ignored --nocapture --test-threads=1"]
async fn chaos_long() {
    run(Settings::long()).await;
}
