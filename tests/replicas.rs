//! Scale-out on the real binary: three replicas of `leadrelay serve` sharing the stream
//! (`--share-group`) on the machine's Mosquitto and one PostgreSQL database, as a deployment
//! runs them. Each test starts its own three replicas on a database created for it, under a
//! topic prefix of its own, and checks one promise the replicas keep together:
//!
//! * a storm of sightings of the same few targets, split between the replicas, opens exactly
//!   one task per target (in the database, and by task id at a subscriber);
//! * a target edit made through one replica's API reaches the live hotlist of all three
//!   within about a second, and a withdrawal stops every replica matching it;
//! * a replica killed with `kill -9` mid-stream, restarted under its client id, loses
//!   nothing and duplicates no task;
//! * an acknowledgement deadline escalates once, although all three timers race for it.
//!
//! Runs when `LEADRELAY_TEST_MQTT_URL` and `LEADRELAY_TEST_DATABASE_URL` are set (CI sets
//! them). The workloads, the counting subscriber and the process handling are the chaos
//! suite's (`tests/chaos/`).

#[path = "common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "chaos/counter.rs"]
mod counter;
#[allow(dead_code)]
#[path = "chaos/db.rs"]
mod db;
#[allow(dead_code)]
#[path = "chaos/feed.rs"]
mod feed;
#[allow(dead_code)]
#[path = "chaos/report.rs"]
mod report;
#[allow(dead_code)]
#[path = "chaos/service.rs"]
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection as _;

use common::{CIXI, Seen, unique};
use counter::Counter;
use db::PgDatabase;
use feed::{Feed, Plan, Rng, Workload, plan};
use service::{Service, counter_total, load_targets};

/// Three debug replicas at a time are enough for two cores: the tests take turns.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How soon an edit made through one replica must be in every replica's hotlist: one
/// housekeeping tick (1 s) and its read, with room for a loaded machine's scheduling. The
/// times measured are printed.
const EDIT_BOUND: Duration = Duration::from_millis(2_000);

/// Generous: a loaded machine, debug builds, a replica restarting.
const SETTLE: Duration = Duration::from_secs(90);

/// Received and matched sightings, summed over their series.
const RECEIVED: &str = "leadrelay_sightings_received_total";
const MATCHED: &str = "leadrelay_sightings_matched_total";

/// The machine's broker and PostgreSQL, when configured.
fn external() -> Option<(String, String)> {
    let mqtt = std::env::var("LEADRELAY_TEST_MQTT_URL").unwrap_or_default();
    let database = db::postgres_base().unwrap_or_default();
    if mqtt.is_empty() || database.is_empty() {
        eprintln!(
            "LEADRELAY_TEST_MQTT_URL / LEADRELAY_TEST_DATABASE_URL not set: replica tests skipped"
        );
        return None;
    }
    Some((mqtt, database))
}

/// Three replicas, their database, and the test's view of the broker. Fields drop in order:
/// the processes before their database and directory.
struct Replicas {
    services: Vec<Service>,
    db: PgDatabase,
    broker: SocketAddr,
    prefix: String,
    _dir: tempfile::TempDir,
}

impl Replicas {
    /// Starts replica 0, loads `targets` through it, then the other two (whose hotlists
    /// then load them from the database), all with `extra` flags and one share group.
    async fn start(mqtt_url: &str, base: &str, targets: &[Value], extra: &[&str]) -> Replicas {
        let broker = broker_addr(mqtt_url).await;
        let db = PgDatabase::create(base).await;
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("{}/", unique("replicas"));
        let group = unique("g");
        let mut flags = vec!["--share-group", group.as_str()];
        flags.extend_from_slice(extra);
        let mut services = Vec::new();
        for n in 0..3 {
            let service = Service::start(
                mqtt_url,
                &db.url,
                &unique(&format!("lr-replica{n}-")),
                &prefix,
                dir.path().join(format!("replica{n}")),
                &flags,
            )
            .await;
            if n == 0 && !targets.is_empty() {
                load_targets(service.http(), targets).await;
            }
            services.push(service);
        }
        Replicas {
            services,
            db,
            broker,
            prefix,
            _dir: dir,
        }
    }

    fn http(&self, n: usize) -> &str {
        self.services[n].http()
    }

    async fn counter(&self) -> Counter {
        Counter::connect(self.broker, &self.prefix).await
    }

    async fn feed(&self) -> Feed {
        Feed::connect(self.broker, &self.prefix).await
    }

    /// `metric` at each replica.
    async fn each(&self, metric: &str) -> Vec<f64> {
        let mut out = Vec::new();
        for n in 0..self.services.len() {
            out.push(counter_total(self.http(n), metric).await);
        }
        out
    }

    /// The database, as the replicas share it.
    async fn sql(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.db.url).await.unwrap()
    }

    /// Checks the database and the subscriber after a stream of `plan`: every hit target
    /// has exactly one task and no other target has one; every hit sighting is one row of
    /// task history (the first one `created`, each later one `sighting`), so none was lost
    /// or applied twice; the subscriber saw exactly that one task id for each target.
    /// Returns the number of duplicate deliveries (allowed: delivery is at least once).
    async fn check_one_task_per_target(&self, plan: &Plan, counter: &Counter) -> usize {
        let outcome = report::settle(self.http(0), counter, plan, SETTLE).await;
        assert!(
            outcome.complete,
            "not every hit target got a task the subscriber saw within {SETTLE:?}"
        );
        let mut conn = self.sql().await;
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT target_id, task_id, status FROM tasks")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let mut in_db: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (target, task, status) in &rows {
            assert_eq!(status, "dispatched", "task {task} of {target}");
            in_db.entry(target.clone()).or_default().push(task.clone());
        }
        let doubled: Vec<_> = in_db.iter().filter(|(_, tasks)| tasks.len() > 1).collect();
        assert!(doubled.is_empty(), "targets with two tasks: {doubled:?}");
        let with_task: BTreeSet<&String> = in_db.keys().collect();
        assert_eq!(
            with_task,
            plan.hit_targets.iter().collect::<BTreeSet<_>>(),
            "the targets with a task are not the targets sighted"
        );
        let (history,): (i64,) = sqlx::query_as("SELECT count(*) FROM task_events")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            history as usize, plan.hits,
            "hit sightings and history rows differ: a sighting lost or applied twice"
        );
        let _ = conn.close().await;
        let deliveries = counter.deliveries();
        let mut seen: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for d in &deliveries {
            seen.entry(d.target_id.as_str())
                .or_default()
                .insert(d.task_id.as_str());
        }
        for (target, tasks) in &in_db {
            let ids: BTreeSet<&str> = tasks.iter().map(String::as_str).collect();
            assert_eq!(
                seen.get(target.as_str()),
                Some(&ids),
                "the subscriber's task ids for {target}"
            );
        }
        assert_eq!(
            seen.len(),
            in_db.len(),
            "the subscriber saw tasks of other targets"
        );
        deliveries.len() - rows.len()
    }
}

/// The broker's address for the test's own clients.
async fn broker_addr(mqtt_url: &str) -> SocketAddr {
    match leadrelay::service::config::parse_mqtt_url(mqtt_url).expect("a valid broker URL") {
        leadrelay::service::config::BrokerChoice::External { host, port } => {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .unwrap()
                .next()
                .unwrap()
        }
        other => panic!("not an external broker: {other:?}"),
    }
}

fn seed() -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_sightings_across_replicas_opens_one_task_per_target() {
    let Some((mqtt, base)) = external() else {
        return;
    };
    let _turn = TURN.lock().await;
    // 30 cars, 900 sightings all of them, sent as fast as the broker takes them: each car is
    // seen 30 times, its first sightings reaching the three replicas at once.
    let workload = Workload {
        targets: 30,
        sightings: 900,
        hit_percent: 100,
        spacing: Duration::ZERO,
    };
    let plan = plan(&workload, &mut Rng::new(seed()));
    let replicas = Replicas::start(&mqtt, &base, &plan.targets, &[]).await;
    let counter = replicas.counter().await;
    let before = replicas.each(RECEIVED).await;
    let feed = replicas
        .feed()
        .await
        .stream(plan.sightings.clone(), workload.spacing)
        .await;
    assert!(feed.wait_acked(Duration::from_secs(60)).await);
    let duplicates = replicas.check_one_task_per_target(&plan, &counter).await;
    let took: Vec<f64> = replicas
        .each(RECEIVED)
        .await
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .collect();
    println!(
        "storm: {} sightings of {} targets → {} tasks; received per replica {took:?}; \
         duplicate deliveries {duplicates}",
        plan.hits,
        plan.hit_targets.len(),
        plan.hit_targets.len()
    );
    assert_eq!(took.iter().sum::<f64>() as usize, plan.sightings.len());
    assert!(
        took.iter().all(|&n| n > 0.0),
        "a replica took no share of the stream: {took:?}"
    );
    assert_eq!(duplicates, 0, "no kill, yet tasks were delivered twice");
}

/// A flagged car whose known location is in Cixi, so that a sweep around it (which reads a
/// replica's live hotlist, not the database) shows whether that replica holds it.
fn located_car(id: &str, plate: &str) -> Value {
    json!({
        "target_id": id, "kind": "vehicle", "plate": plate,
        "cases": [{"case_no": format!("case-{id}"), "court_id": "yuyao", "filed_on": "2024-03-01"}],
        "known_locations": [{"label": "domicile", "lat": CIXI.0, "lon": CIXI.1, "datum": "wgs84"}]
    })
}

/// Whether the replica at `http` holds `target_id` in its live hotlist (None: no answer).
async fn in_hotlist(client: &reqwest::Client, http: &str, target_id: &str) -> Option<bool> {
    let url = format!(
        "{http}/api/v1/targets?near={},{}&radius_km=1",
        CIXI.0, CIXI.1
    );
    let body: Value = client.get(url).send().await.ok()?.json().await.ok()?;
    let targets = body["targets"].as_array()?;
    Some(targets.iter().any(|t| t["target_id"] == target_id))
}

/// Polls every replica's hotlist until each holds `target_id` (or, `held` false, no longer
/// does); how long each took from `since`.
async fn until_every_hotlist(
    replicas: &Replicas,
    target_id: &str,
    held: bool,
    since: Instant,
) -> Vec<Duration> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut took: Vec<Option<Duration>> = vec![None; replicas.services.len()];
    while took.iter().any(Option::is_none) {
        for (n, slot) in took.iter_mut().enumerate() {
            if slot.is_none()
                && in_hotlist(&client, replicas.http(n), target_id).await == Some(held)
            {
                *slot = Some(since.elapsed());
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "{target_id} held={held} did not reach every replica: {took:?}"
        );
        // Polling three live hotlists for the edit.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took.into_iter().map(Option::unwrap).collect()
}

/// Sends `n` sightings of `plate` and waits until the replicas have received all of them;
/// what each received and matched of them.
async fn probe(replicas: &Replicas, feed: Feed, plate: &str, n: usize) -> (Feed, Vec<(f64, f64)>) {
    let (received, matched) = (replicas.each(RECEIVED).await, replicas.each(MATCHED).await);
    let run = unique("probe");
    let sightings = (0..n)
        .map(|i| (format!("{run}-{i}"), plate.to_string()))
        .collect();
    let feed = feed.stream(sightings, Duration::ZERO).await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = replicas.each(RECEIVED).await;
        let got: f64 = now.iter().zip(&received).map(|(a, b)| a - b).sum();
        if got as usize >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas received {got} of {n}"
        );
        // Polling the replicas' counters.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A sighting is counted received and matched in one step; a scrape may fall between.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (received_now, matched_now) = (replicas.each(RECEIVED).await, replicas.each(MATCHED).await);
    let each = (0..replicas.services.len())
        .map(|i| (received_now[i] - received[i], matched_now[i] - matched[i]))
        .collect();
    (feed, each)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_edit_through_one_replica_reaches_all_three_within_a_second() {
    let Some((mqtt, base)) = external() else {
        return;
    };
    let _turn = TURN.lock().await;
    let replicas = Replicas::start(&mqtt, &base, &[], &[]).await;
    let feed = replicas.feed().await;
    let (id, plate) = (unique("EDIT-"), "浙B51234");
    let client = reqwest::Client::new();

    // Added through replica 0.
    let put = Instant::now();
    let response = client
        .put(format!("{}/api/v1/targets/{id}", replicas.http(0)))
        .json(&located_car(&id, plate))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let added = until_every_hotlist(&replicas, &id, true, put).await;
    println!("added through replica 0: in each replica's hotlist after {added:?}");
    assert!(
        added.iter().all(|t| *t <= EDIT_BOUND),
        "an added target took {added:?} to reach every replica"
    );
    // Every replica matches it: each sighting was matched where it arrived, and each
    // replica received some.
    let (feed, each) = probe(&replicas, feed, plate, 12).await;
    println!("12 sightings after the add, (received, matched) per replica: {each:?}");
    assert!(each.iter().all(|&(r, m)| r > 0.0 && r == m), "{each:?}");

    // Withdrawn through replica 1.
    let delete = Instant::now();
    let response = client
        .delete(format!("{}/api/v1/targets/{id}", replicas.http(1)))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let withdrawn = until_every_hotlist(&replicas, &id, false, delete).await;
    println!("withdrawn through replica 1: gone from each replica's hotlist after {withdrawn:?}");
    assert!(
        withdrawn.iter().all(|t| *t <= EDIT_BOUND),
        "a withdrawal took {withdrawn:?} to reach every replica"
    );
    let (_feed, each) = probe(&replicas, feed, plate, 12).await;
    println!("12 sightings after the withdrawal, (received, matched) per replica: {each:?}");
    assert!(each.iter().all(|&(r, m)| r > 0.0 && m == 0.0), "{each:?}");

    // The one task the sightings opened, cancelled by the withdrawal; none since.
    let mut conn = replicas.sql().await;
    let tasks: Vec<(String,)> = sqlx::query_as("SELECT status FROM tasks WHERE target_id = $1")
        .bind(&id)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(tasks, vec![("cancelled".to_string(),)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_stream_and_restarted_loses_nothing() {
    let Some((mqtt, base)) = external() else {
        return;
    };
    let _turn = TURN.lock().await;
    let workload = Workload {
        targets: 60,
        sightings: 600,
        hit_percent: 40,
        spacing: Duration::from_millis(10),
    };
    let plan = plan(&workload, &mut Rng::new(seed()));
    let mut replicas = Replicas::start(&mqtt, &base, &plan.targets, &[]).await;
    let counter = replicas.counter().await;
    let sightings = plan.sightings.clone();
    let streaming = tokio::spawn(replicas.feed().await.stream(sightings, workload.spacing));
    // Half-way through the stream, replica 1 dies; a supervisor restarts it a second later
    // under the same client id, which resumes its session and what it held.
    tokio::time::sleep(workload.duration() / 2).await;
    replicas.services[1].kill();
    // Down for a second while its share of the stream queues at the broker.
    tokio::time::sleep(Duration::from_secs(1)).await;
    replicas.services[1].restart().await;
    let feed = streaming.await.unwrap();
    assert!(feed.wait_acked(Duration::from_secs(60)).await);
    let duplicates = replicas.check_one_task_per_target(&plan, &counter).await;
    println!(
        "kill -9 of replica 1 of 3: {} sightings, {} hits, {} tasks, none lost, none doubled; \
         duplicate deliveries {duplicates} (at least once)",
        feed.sent(),
        plan.hits,
        plan.hit_targets.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_deadline_escalates_once_with_three_replicas() {
    let Some((mqtt, base)) = external() else {
        return;
    };
    let _turn = TURN.lock().await;
    let workload = Workload {
        targets: 10,
        sightings: 30,
        hit_percent: 100,
        spacing: Duration::ZERO,
    };
    let plan = plan(&workload, &mut Rng::new(seed()));
    // Every timer wakes at the same deadline: the three race for each escalation.
    let deadlines = [
        "--ack-timeout",
        "3s",
        "--resolve-timeout",
        "1h",
        "--timer-interval",
        "200ms",
    ];
    let replicas = Replicas::start(&mqtt, &base, &plan.targets, &deadlines).await;
    let counter = replicas.counter().await;
    let (_client, seen, watcher) = common::watch(replicas.broker, &replicas.prefix).await;
    let feed = replicas
        .feed()
        .await
        .stream(plan.sightings.clone(), workload.spacing)
        .await;
    assert!(feed.wait_acked(Duration::from_secs(60)).await);
    replicas.check_one_task_per_target(&plan, &counter).await;
    let expected = plan.hit_targets.len();
    let on = |topic: &str| -> Vec<Seen> {
        let seen = seen.lock().unwrap();
        seen.iter().filter(|s| s.topic == topic).cloned().collect()
    };
    let escalations = "dispatch/ningbo_intermediate/escalations";
    let deadline = Instant::now() + SETTLE;
    while on(escalations).len() < expected {
        assert!(
            Instant::now() < deadline,
            "{} of {expected} escalations",
            on(escalations).len()
        );
        // Polling the watcher's record of the broker's messages.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Ten timer intervals of three replicas: a second claim would have fired by now. Only
    // waiting shows that none does.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fired = on(escalations);
    let alerts = on("alerts/yuyao")
        .into_iter()
        .filter(|s| s.body["kind"] == "escalated")
        .count();
    watcher.abort();
    let ids: BTreeSet<&str> = fired
        .iter()
        .filter_map(|s| s.body["task_id"].as_str())
        .collect();
    let per_replica: Vec<u64> = replicas
        .each("leadrelay_escalations_total")
        .await
        .into_iter()
        .map(|n| n as u64)
        .collect();
    println!(
        "{expected} tasks: {} escalation messages, {} distinct, {alerts} escalation alerts; \
         escalated by replica {per_replica:?}",
        fired.len(),
        ids.len()
    );
    assert_eq!(fired.len(), expected, "escalation messages");
    assert_eq!(ids.len(), expected, "escalated tasks");
    assert_eq!(
        alerts, expected,
        "escalation alerts to the requesting court"
    );
    assert_eq!(per_replica.iter().sum::<u64>() as usize, expected);
    let mut conn = replicas.sql().await;
    let (unclaimed,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM tasks WHERE ack_escalated_at IS NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(unclaimed, 0);
}
