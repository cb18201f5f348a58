//! The group commit of new tasks (`Store::record_matches`), against the least any durable
//! store of the same messages costs, timed in turns in one process.
//!
//! ```text
//! cargo bench --bench store                 # SQLite in a temporary directory
//! LEADRELAY_BENCH_PG=postgres://postgres@127.0.0.1:5432/test cargo bench --bench store
//! ```
//!
//! Each round records a batch of new tasks (every sighting a different target, as in
//! `e2e.sh` (d)), then writes the same batch's outbox messages (each task's Task and Alert
//! JSON, as leadrelay published them) as rows of a bare table in another database of the
//! same kind and settings: one transaction, one multi-row insert, no index, no rule. That
//! baseline is the durable write with nothing of leadrelay's schema; the ratio between the
//! two is what the schema, its rules and the statements around them cost.
//!
//! Not criterion: a durable round is milliseconds (an fsync each), and each round needs new
//! targets, so the rounds are timed as they come and the median is reported.

use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use leadrelay::contract::model::{
    Case, Routing, Sighting, Target, TargetKind, TargetStatus, TaskKind,
};
use leadrelay::contract::task::{OutboxMessage, Topics};
use leadrelay::dispatch::policy::{Deadlines, MatchedSighting, Policy};
use leadrelay::dispatch::route::RouteDecision;
use leadrelay::geo::datum::Datum;
use leadrelay::store::{Store, isolated_postgres_url};
use sqlx::Connection as _;

/// New tasks per group commit: the service's default `--max-batch`.
const BATCH: usize = 500;
/// Timed rounds (each a new batch of targets), after one untimed round.
const ROUNDS: usize = 40;

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
        name: Some("王某".into()),
        status: TargetStatus::Active,
        lead_court_id: None,
        cases: vec![Case {
            case_no: format!("(2024)浙0281执{i}号"),
            court_id: "yuyao".into(),
            filed_on: "2024-03-01".parse().expect("valid date"),
            amount_cny: Some(50_000.0),
        }],
        known_locations: vec![],
        valid_until: None,
    }
}

/// A sighting of `target` in Cixi, routed there, as the pipeline hands it to the store.
fn matched(target: &Target, seq: usize) -> MatchedSighting {
    MatchedSighting {
        sighting: Sighting {
            event_id: format!("cixi-cam-0042-{seq:08}"),
            kind: TargetKind::Vehicle,
            plate: target.plate,
            person_id: None,
            lat: 30.1703,
            lon: 121.2661,
            datum: Datum::Wgs84,
            observed_at: now() - Duration::seconds(2),
            source: "cixi-cam-0042".into(),
            confidence: Some(0.93),
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

/// Two databases of one kind: one for leadrelay's store, one for the bare table.
struct Pair {
    label: &'static str,
    store_url: String,
    bare_url: String,
    _dir: Option<tempfile::TempDir>,
}

async fn pairs() -> Vec<Pair> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let in_dir = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let mut all = vec![Pair {
        label: "sqlite",
        store_url: in_dir("store.db"),
        bare_url: in_dir("bare.db"),
        _dir: Some(dir),
    }];
    if let Ok(base) = std::env::var("LEADRELAY_BENCH_PG")
        && !base.is_empty()
    {
        all.push(Pair {
            label: "postgres",
            store_url: isolated_postgres_url(&base)
                .await
                .expect("PostgreSQL schema"),
            bare_url: isolated_postgres_url(&base)
                .await
                .expect("PostgreSQL schema"),
            _dir: None,
        });
    }
    all
}

/// The bare table, on a connection with the store's durability settings (SQLite: WAL,
/// `synchronous=FULL`; PostgreSQL: its defaults, as the store uses them).
enum Bare {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Bare {
    async fn open(url: &str) -> Bare {
        if url.starts_with("sqlite:") {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
            let options: SqliteConnectOptions = url.parse().expect("SQLite URL");
            let mut conn = sqlx::SqliteConnection::connect_with(
                &options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full),
            )
            .await
            .expect("SQLite");
            sqlx::query("CREATE TABLE bare (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
                .execute(&mut conn)
                .await
                .expect("bare table");
            Bare::Sqlite(conn)
        } else {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("PostgreSQL");
            sqlx::query("CREATE TABLE bare (id BIGSERIAL PRIMARY KEY, payload BYTEA NOT NULL)")
                .execute(&mut conn)
                .await
                .expect("bare table");
            Bare::Postgres(conn)
        }
    }

    /// The insert of `rows` payloads in one statement, in this database's placeholders.
    fn insert_sql(&self, rows: usize) -> String {
        let placeholder = |i: usize| match self {
            Bare::Sqlite(_) => "(?)".to_string(),
            Bare::Postgres(_) => format!("(${})", i + 1),
        };
        let values: Vec<String> = (0..rows).map(placeholder).collect();
        format!("INSERT INTO bare (payload) VALUES {}", values.join(","))
    }

    /// One transaction, one insert of every payload (`sql` from [`Bare::insert_sql`]).
    async fn write(&mut self, sql: &str, payloads: &[Vec<u8>]) {
        match self {
            Bare::Sqlite(conn) => {
                insert_in_one_transaction::<sqlx::Sqlite>(conn, sql, payloads).await
            }
            Bare::Postgres(conn) => {
                insert_in_one_transaction::<sqlx::Postgres>(conn, sql, payloads).await
            }
        }
    }
}

/// The bare write for either database kind: begin, one insert, commit (an fsync).
async fn insert_in_one_transaction<DB>(conn: &mut DB::Connection, sql: &str, payloads: &[Vec<u8>])
where
    DB: sqlx::Database,
    for<'a> &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> &'a mut DB::Connection: sqlx::Executor<'a, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    let mut tx = conn.begin().await.expect("begin");
    // Placeholders only (`Bare::insert_sql`).
    let mut q = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
    for p in payloads {
        q = q.bind(p.as_slice());
    }
    q.execute(&mut *tx).await.expect("insert");
    tx.commit().await.expect("commit");
}

/// Median of `secs` as tasks per second for a batch.
fn median_rate(secs: &mut [f64]) -> f64 {
    secs.sort_by(f64::total_cmp);
    BATCH as f64 / secs[secs.len() / 2]
}

async fn bench(pair: &Pair) {
    let store = Store::connect(&pair.store_url).await.expect("store");
    let mut bare = Bare::open(&pair.bare_url).await;
    let targets: Vec<Target> = (0..BATCH * (ROUNDS + 1)).map(target).collect();
    store
        .upsert_targets(&targets, now())
        .await
        .expect("targets");
    let (deadlines, policy, topics) = (Deadlines::default(), Policy::default(), Topics::new(""));
    let (mut store_secs, mut bare_secs) = (Vec::new(), Vec::new());
    let mut messages_per_task = 0;
    let mut bytes_per_task = 0;
    for (round, chunk) in targets.chunks(BATCH).enumerate() {
        let batch: Vec<MatchedSighting> = chunk
            .iter()
            .enumerate()
            .map(|(i, t)| matched(t, round * BATCH + i))
            .collect();
        let started = Instant::now();
        let (_, messages) = store
            .record_matches(&batch, &deadlines, &policy, &topics, now())
            .await
            .expect("group commit");
        let store_took = started.elapsed().as_secs_f64();
        let payloads: Vec<Vec<u8>> = messages
            .into_iter()
            .map(|m: OutboxMessage| m.payload)
            .collect();
        messages_per_task = payloads.len() / BATCH;
        bytes_per_task = payloads.iter().map(Vec::len).sum::<usize>() / BATCH;
        let sql = bare.insert_sql(payloads.len());
        let started = Instant::now();
        bare.write(&sql, &payloads).await;
        let bare_took = started.elapsed().as_secs_f64();
        // The first round prepares statements and warms caches.
        if round > 0 {
            store_secs.push(store_took);
            bare_secs.push(bare_took);
        }
    }
    let (store_rate, bare_rate) = (median_rate(&mut store_secs), median_rate(&mut bare_secs));
    println!(
        "store {label}: {ROUNDS} group commits of {BATCH} new tasks, median: record_matches \
         {store_rate:.0} tasks/s; bare table, the same {messages_per_task} messages per task \
         ({bytes_per_task} bytes) in one insert: {bare_rate:.0} tasks/s; ratio {:.2}",
        store_rate / bare_rate,
        label = pair.label,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        for pair in pairs().await {
            bench(&pair).await;
        }
    });
}
