//! What authentication and the audit add to the status path: a token check (SHA-256 and one
//! lookup in a unique index) against a status report applied without and with its audit row
//! (one more insert in the report's transaction), timed in alternating turns in one process.
//!
//! ```text
//! cargo bench --bench auth                 # SQLite in a temporary directory
//! LEADRELAY_BENCH_PG=postgres://postgres@127.0.0.1:5432/test cargo bench --bench auth
//! ```
//!
//! Not criterion: each status report needs a task of its own in `dispatched`, and a durable
//! round is an fsync, so rounds are timed as they come and medians reported.

use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadrelay::app::auth::{self, Principal, Scope};
use leadrelay::contract::model::{
    Case, Routing, Sighting, Target, TargetKind, TargetStatus, TaskKind,
};
use leadrelay::contract::task::{StatusReport, TaskStatus, Topics};
use leadrelay::dispatch::policy::{Deadlines, MatchedSighting, Policy};
use leadrelay::dispatch::route::RouteDecision;
use leadrelay::geo::datum::Datum;
use leadrelay::store::{AuditResult, MatchOutcome, Store, isolated_postgres_url};

/// Status reports timed per variant.
const REPORTS: usize = 400;
/// Token checks timed.
const CHECKS: usize = 4000;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 12, 3, 2, 15, 0).unwrap()
}

fn target(i: usize) -> Target {
    Target {
        target_id: format!("T-{i:06}"),
        kind: TargetKind::Vehicle,
        plate: Some(format!("浙B{i:05}").parse().expect("valid plate")),
        person_id: None,
        name: None,
        status: TargetStatus::Active,
        lead_court_id: None,
        cases: vec![Case {
            case_no: format!("(2024)浙0281执{i}号"),
            court_id: "yuyao".into(),
            filed_on: "2024-03-01".parse().expect("valid date"),
            amount_cny: None,
        }],
        known_locations: vec![],
        valid_until: None,
    }
}

fn matched(target: &Target, seq: usize) -> MatchedSighting {
    MatchedSighting {
        sighting: Sighting {
            event_id: format!("cam-{seq:08}"),
            kind: TargetKind::Vehicle,
            plate: target.plate,
            person_id: None,
            lat: 30.1703,
            lon: 121.2661,
            datum: Datum::Wgs84,
            observed_at: now() - Duration::seconds(2),
            source: "cam".into(),
            confidence: None,
        },
        target_id: target.target_id.clone(),
        route: RouteDecision {
            kind: TaskKind::VehicleSeizure,
            requesting_court_id: "yuyao".into(),
            assisting_court_id: "cixi".into(),
            routing: Routing::InJurisdiction,
            distance_km: 3.25,
            containing_court_id: Some("cixi".into()),
        },
        read_plate: None,
        fuzzy: false,
        substitutions: 0,
        cases: vec![],
    }
}

/// `2 * REPORTS` dispatched tasks held by Cixi.
async fn tasks(store: &Store) -> Vec<String> {
    let targets: Vec<Target> = (0..2 * REPORTS).map(target).collect();
    store
        .upsert_targets(&targets, now())
        .await
        .expect("targets");
    let batch: Vec<MatchedSighting> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| matched(t, i))
        .collect();
    let (outcomes, _) = store
        .record_matches(
            &batch,
            &Deadlines::default(),
            &Policy::default(),
            &Topics::new(""),
            now(),
        )
        .await
        .expect("tasks");
    outcomes
        .iter()
        .map(|o| match o {
            MatchOutcome::Created(task) => task.task_id.clone(),
            other => panic!("not a new task: {other:?}"),
        })
        .collect()
}

fn median_us(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run(label: &str, url: &str) {
    let store = Store::connect(url).await.expect("store");
    let token = auth::create(&store, "bench", &Scope::Court("cixi".into()), now())
        .await
        .expect("token");
    for i in 0..50 {
        auth::create(&store, &format!("other {i}"), &Scope::Admin, now())
            .await
            .expect("token");
    }
    let mut checks = Vec::with_capacity(CHECKS);
    for _ in 0..CHECKS {
        let t = Instant::now();
        let caller = auth::verify(&store, &token).await.expect("verify");
        checks.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(caller.is_some());
    }
    let ids = tasks(&store).await;
    let topics = Topics::new("");
    let audit = Principal::mqtt_court("cixi").audit("task.status", AuditResult::Ok);
    let (mut plain, mut audited) = (Vec::new(), Vec::new());
    for (i, id) in ids.iter().enumerate() {
        let report = StatusReport {
            task_id: id.clone(),
            status: TaskStatus::Acknowledged,
            at: None,
            by: "officer".into(),
            note: String::new(),
        };
        let with_audit = i % 2 == 1;
        let t = Instant::now();
        let outcome = store
            .apply_status_audited(
                &report,
                Some("cixi"),
                &topics,
                now(),
                with_audit.then_some(&audit),
            )
            .await
            .expect("status");
        let us = t.elapsed().as_secs_f64() * 1e6;
        assert!(matches!(
            outcome,
            leadrelay::store::StatusOutcome::Applied { .. }
        ));
        if with_audit {
            audited.push(us)
        } else {
            plain.push(us)
        }
    }
    let (p, a) = (median_us(plain), median_us(audited));
    println!(
        "{label:8}  token check {:7.1} µs   status report {p:8.1} µs   with audit row {a:8.1} µs   ({:+.1}%)",
        median_us(checks),
        (a / p - 1.0) * 100.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    run(
        "sqlite",
        &format!("sqlite://{}", dir.path().join("auth.db").display()),
    )
    .await;
    if let Ok(base) = std::env::var("LEADRELAY_BENCH_PG")
        && !base.is_empty()
    {
        let url = isolated_postgres_url(&base)
            .await
            .expect("PostgreSQL schema");
        run("postgres", &url).await;
    }
}
