//! What every scenario sets up the same way (its own broker, subscriber, prefix, database,
//! plan) and how it ends (wait for the broker's acks, settle, count).

use std::path::PathBuf;
use std::time::Duration;

use crate::broker::Mosquitto;
use crate::common::unique;
use crate::counter::Counter;
use crate::db::{PgDatabase, postgres_base};
use crate::feed::{Feed, Plan, Rng, Workload, plan};
use crate::report::{self, Row};

/// The database kind a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

/// A scenario's database; a PostgreSQL one is dropped with it.
pub enum Database {
    Sqlite(PathBuf),
    Postgres(PgDatabase),
}

impl Database {
    pub fn url(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("sqlite://{}", path.display()),
            Database::Postgres(db) => db.url.clone(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }
}

/// One scenario's world. Fields drop in order: processes before their directory.
pub struct Stage {
    pub broker: Mosquitto,
    pub counter: Counter,
    pub prefix: String,
    pub plan: Plan,
    pub workload: Workload,
    pub dir: tempfile::TempDir,
}

impl Stage {
    pub async fn new(workload: Workload, rng: &mut Rng) -> Stage {
        let dir = scenario_dir();
        let broker = Mosquitto::start(&dir.path().join("broker")).await;
        let prefix = format!("{}/", unique("chaos"));
        // Subscribed before any service runs: every task is queued for it from the start.
        let counter = Counter::connect(broker.addr(), &prefix).await;
        Stage {
            counter,
            prefix,
            plan: plan(&workload, rng),
            workload,
            broker,
            dir,
        }
    }

    /// The database for `kind`: SQLite in the stage's directory, PostgreSQL in a database
    /// of its own (None when no PostgreSQL is configured).
    pub async fn database(&self, kind: DbKind) -> Option<Database> {
        match kind {
            DbKind::Sqlite => Some(Database::Sqlite(self.dir.path().join("leadrelay.db"))),
            DbKind::Postgres => match postgres_base() {
                Some(base) => Some(Database::Postgres(PgDatabase::create(&base).await)),
                None => {
                    eprintln!(
                        "LEADRELAY_TEST_DATABASE_URL is not set: PostgreSQL scenario skipped"
                    );
                    None
                }
            },
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn feed(&self) -> Feed {
        Feed::connect(self.broker.addr(), &self.prefix).await
    }

    /// Streams the whole plan in the background; await the handle for the feed back.
    pub async fn stream(&self) -> tokio::task::JoinHandle<Feed> {
        let feed = self.feed().await;
        let sightings = self.plan.sightings.clone();
        tokio::spawn(feed.stream(sightings, self.workload.spacing))
    }

    /// Waits for the broker's acks of every sighting, then for the counts to settle
    /// (through the service at `http`), and counts.
    pub async fn finish(
        &self,
        feed: Feed,
        http: &str,
        scenario: &str,
        db: &'static str,
        mut note: String,
    ) -> Row {
        let mut problems = Vec::new();
        if !feed.wait_acked(Duration::from_secs(60)).await {
            problems.push("the broker did not acknowledge every sighting".to_string());
        }
        let outcome = report::settle(http, &self.counter, &self.plan, settle_limit()).await;
        if !outcome.complete {
            note.push_str(" (counts had not settled at the deadline)");
        }
        let mut row = report::tally(
            scenario,
            db,
            feed.sent(),
            &self.plan,
            &outcome,
            &self.counter,
            note,
        );
        row.problems.extend(problems);
        row
    }
}

/// The scenario's directory; kept (and its path printed) when `LEADRELAY_CHAOS_KEEP` is set.
fn scenario_dir() -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new().prefix("chaos-").tempdir().unwrap();
    if std::env::var_os("LEADRELAY_CHAOS_KEEP").is_some() {
        println!("scenario directory (kept): {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    dir
}

/// Generous: a loaded machine, a debug build, a service restarting many times.
pub fn settle_limit() -> Duration {
    Duration::from_secs(90)
}
