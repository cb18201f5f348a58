//! `leadrelay serve`: wires the steps together and runs them until shutdown.
//!
//! ```text
//! broker ─► ingest ─► [bounded channel] ─► pipeline ─► store (group commit) ─► publisher ─► broker
//!                                              │                  ▲
//!                                              └── ack ◄──────────┘ (after commit)
//! HTTP API ─► store / live targets / publisher        target sync: store ─► live targets
//! ```
//!
//! Shutdown (SIGTERM, ctrl-c, or the caller's future): stop taking messages, finish the batch
//! in hand (commit, ack), close the HTTP server, then let the publisher deliver everything
//! committed before exiting.

pub mod config;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::http::{self, AppState};
use crate::app::status::StatusContext;
use crate::contract::model::Target;
use crate::contract::task::Topics;
use crate::flow::pipeline::Pipeline;
use crate::geo::geodata::DataError;
use crate::geo::locate::JurisdictionIndex;
use crate::matching::targets::LiveTargets;
use crate::metrics;
use crate::mqtt::broker;
use crate::mqtt::{self, BrokerAddr};
use crate::service::config::{BrokerChoice, Config};
use crate::store::{Store, StoreError};

/// Why the service could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("geographic data: {0}")]
    Index(#[from] crate::geo::locate::IndexError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("HTTP: cannot listen on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// A started service: where it listens, and how to wait for it.
pub struct Running {
    pub http_addr: SocketAddr,
    pub broker: BrokerAddr,
    pub store: Store,
    pub targets: Arc<LiveTargets>,
    stopped: JoinHandle<()>,
    stop: CancellationToken,
}

impl Running {
    /// Waits until the service has shut down (after the shutdown future resolved).
    pub async fn wait(self) -> Result<(), ServiceError> {
        self.stopped
            .await
            .map_err(|e| ServiceError::Other(format!("service task failed: {e}")))
    }

    /// Asks the service to stop, as the shutdown future would.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// Starts everything and returns once it is listening; `shutdown` resolving stops it.
pub async fn start(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, ServiceError> {
    let metrics_handle = metrics::install().map_err(|e| ServiceError::Metrics(e.to_string()))?;
    let index = Arc::new(JurisdictionIndex::new(config.geo.clone())?);
    let broker = match &config.broker {
        BrokerChoice::External { host, port } => BrokerAddr {
            host: host.clone(),
            port: *port,
        },
        BrokerChoice::Embedded(addr) => {
            let running = broker::start(*addr)?;
            BrokerAddr {
                host: running.addr.ip().to_string(),
                port: running.addr.port(),
            }
        }
    };
    let store = Store::connect(&config.database_url).await?;
    let targets = Arc::new(LiveTargets::new(config.matching));
    // Before the read: the refresh then reads back every edit that may have committed after it.
    let loaded_at = Utc::now().timestamp_millis();
    let all = store.all_targets().await?;
    tracing::info!(targets = all.len(), "hotlist loaded");
    targets.apply(all);

    let topics = Topics::new(&config.topic_prefix);
    let stop = CancellationToken::new();
    let (publisher, publisher_task) = mqtt::spawn_publisher(
        &broker,
        &format!("{}-out", config.client_id),
        store.clone(),
        stop.clone(),
    );
    let share = |filter: String| match &config.share_group {
        Some(group) => format!("$share/{group}/{filter}"),
        None => filter,
    };
    let filters = vec![
        share(topics.sightings_filter()),
        share(topics.status_filter()),
    ];
    let (tx, rx) = tokio::sync::mpsc::channel(10_000);
    let (ingest, ingest_task) = mqtt::spawn_ingest(&broker, &config.client_id, filters, tx);

    let status = StatusContext {
        store: store.clone(),
        targets: targets.clone(),
        index: index.clone(),
        topics: topics.clone(),
        deadlines: config.deadlines.clone(),
        publisher: publisher.clone(),
    };
    let timers_task = tokio::spawn(crate::flow::timers::run(
        store.clone(),
        crate::flow::timers::supervisors(index.data()),
        topics.clone(),
        publisher.clone(),
        config.timer_interval,
        stop.clone(),
    ));
    let pipeline = Pipeline {
        ctx: status.clone(),
        policy: config.policy.clone(),
        limits: config.decode.clone(),
        max_batch: config.max_batch,
        batch_window: config.batch_window,
        ingest: ingest.clone(),
    };
    let pipeline_task = tokio::spawn(pipeline.run(rx, stop.clone()));

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| ServiceError::Http {
            addr: config.http_addr,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| ServiceError::Http {
        addr: config.http_addr,
        source,
    })?;
    let app = http::app(AppState {
        ctx: status.clone(),
        ingest: ingest.clone(),
        metrics: metrics_handle,
    });
    let http_stop = stop.clone();
    let http_task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    let housekeeping_task = tokio::spawn(housekeeping(
        status.clone(),
        loaded_at,
        config.dedup_retention,
        stop.clone(),
    ));
    tracing::info!(%http_addr, broker = ?config.broker, client_id = %config.client_id, "leadrelay serving");

    let stopper = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.cancel();
    });
    let waiting = stop.clone();
    let stopped = tokio::spawn(async move {
        waiting.cancelled().await;
        tracing::info!("shutting down: finishing the batch in hand");
        let _ = pipeline_task.await;
        ingest.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(3), ingest_task).await;
        let _ = http_task.await;
        let _ = housekeeping_task.await;
        let _ = timers_task.await;
        tracing::info!("flushing the outbox");
        let _ = publisher_task.await;
        tracing::info!("stopped");
    });
    Ok(Running {
        http_addr,
        broker,
        store,
        targets,
        stopped,
        stop,
    })
}

/// Runs until `shutdown` resolves and everything has been flushed.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    start(config, shutdown).await?.wait().await
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// How long after its `updated_at` an edit may still become visible (its transaction commits
/// after it stamped the row, or on a replica whose clock runs a little behind).
const REFRESH_OVERLAP_MS: i64 = 1_000;

/// Where the hotlist refresh reads from. Edits stamped after the newest one seen are new;
/// those stamped before it may still commit late (up to [`REFRESH_OVERLAP_MS`] after their
/// stamp), so the read goes back to the last instant by which everything stamped earlier had
/// surely committed before a read began, and no further: an edit stamped at or before
/// `settled` committed before a read that looked at it.
///
/// Each edit is read back as a possibly late one only until a read begins an overlap after
/// its stamp. Before, the read went back a whole overlap on every tick for three seconds
/// after the newest edit: after a bulk import of 60,000 targets the ticks read 40,000 +
/// 60,000 + 60,000 + 60,000 rows (60–110 ms each while the 100%-hit benchmark ran), now
/// 32,000 + 60,000 + 28,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RefreshWindow {
    /// The newest `updated_at` a read returned (epoch ms).
    newest_seen: i64,
    /// Every edit stamped at or before this has been read (epoch ms).
    settled: i64,
}

impl RefreshWindow {
    /// A window for a replica whose hotlist holds what a read begun at `loaded_at` found.
    fn new(loaded_at: i64) -> RefreshWindow {
        RefreshWindow {
            newest_seen: loaded_at - REFRESH_OVERLAP_MS,
            settled: loaded_at - REFRESH_OVERLAP_MS,
        }
    }

    /// The next read returns the edits stamped after this.
    fn start(&self) -> i64 {
        self.newest_seen.min(self.settled)
    }

    /// After a read from [`start`](Self::start) that began at `began_at` and returned edits up
    /// to `newest` (none: `None`).
    fn advance(&mut self, began_at: i64, newest: Option<i64>) {
        self.newest_seen = self.newest_seen.max(newest.unwrap_or(i64::MIN));
        self.settled = self.settled.max(began_at - REFRESH_OVERLAP_MS);
    }
}

/// The targets changed after `from` whose version `targets` has not applied, with the newest
/// `updated_at` seen (applied or not).
async fn refresh_targets(
    store: &Store,
    from: i64,
    targets: &LiveTargets,
) -> Result<(Option<i64>, Vec<(i64, Target)>), StoreError> {
    let versions = store.target_versions_since(from).await?;
    let newest = versions.iter().map(|(_, at)| *at).max();
    let wanted = targets.unapplied(&versions);
    if wanted.is_empty() {
        return Ok((newest, Vec::new()));
    }
    Ok((newest, store.targets_with_ids(&wanted).await?))
}

/// Picks up target edits made elsewhere (another replica, `targets import`) since the hotlist
/// was loaded (a read begun at `loaded_at`, epoch ms), refreshes gauges, and purges processed
/// event ids past their retention.
async fn housekeeping(
    ctx: StatusContext,
    loaded_at: i64,
    retention: Duration,
    stop: CancellationToken,
) {
    let (store, targets) = (ctx.store.clone(), ctx.targets.clone());
    let mut window = RefreshWindow::new(loaded_at);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    let mut reported_courts: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        ticks += 1;
        // Versions first: one already applied (same target, same updated_at) is not
        // fetched again, so the overlap costs a read of ids, not of whole targets.
        let began_at = Utc::now().timestamp_millis();
        match refresh_targets(&store, window.start(), &targets).await {
            Ok((newest, fresh)) => {
                window.advance(began_at, newest);
                // The next read returns nothing at or before its start.
                targets.forget_versions_before(window.start());
                if !fresh.is_empty() {
                    let links =
                        targets.apply_versioned(fresh.into_iter().map(|(at, t)| (Some(at), t)));
                    if let Err(e) = http::propose_consolidation(&ctx, &ctx.index, links).await {
                        tracing::warn!(error = %e, "could not propose a consolidation");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read target changes"),
        }
        if ticks % 5 == 1 {
            if let Ok(open) = store.open_tasks_by_court().await {
                // Courts whose last open task closed drop to zero rather than go stale.
                for court in reported_courts.drain() {
                    if !open.iter().any(|(c, _)| *c == court) {
                        metrics::set_open_tasks(&court, 0);
                    }
                }
                for (court, n) in open {
                    metrics::set_open_tasks(&court, n);
                    reported_courts.insert(court);
                }
            }
            // Here, not on acknowledgements: while the broker is away none arrive, and the
            // backlog this gauge is for would go unreported.
            if let Ok(n) = store.outbox_pending_count().await {
                metrics::set_outbox_pending(n);
            }
            for (kind, n) in targets.active_counts() {
                metrics::set_targets(kind, n);
            }
        }
        if ticks % 3600 == 1 {
            let cutoff = Utc::now()
                - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
            match store.purge_processed_before(cutoff).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "old processed event ids purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not purge processed event ids"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{REFRESH_OVERLAP_MS, RefreshWindow};

    const L: i64 = REFRESH_OVERLAP_MS;

    #[test]
    fn the_refresh_rereads_an_edit_until_it_has_surely_committed() {
        let loaded = 1_000_000;
        let mut w = RefreshWindow::new(loaded);
        assert_eq!(w.start(), loaded - L);
        // A read during a bulk import stamped from `loaded + 100` on: newest seen moves, and
        // what was stamped before the read began minus the overlap is settled.
        w.advance(loaded + 500, Some(loaded + 400));
        assert_eq!(w.start(), loaded + 500 - L);
        // The next read, a second later, still goes back: edits stamped up to the newest one
        // seen may commit until an overlap after their stamps.
        w.advance(loaded + 1_500, Some(loaded + 800));
        assert_eq!(w.start(), loaded + 500);
        // Once a read began an overlap after the newest edit, only newer edits are read.
        w.advance(loaded + 2_500, None);
        assert_eq!(w.start(), loaded + 800);
        w.advance(loaded + 3_500, None);
        assert_eq!(w.start(), loaded + 800);
    }

    #[test]
    fn an_edit_committed_late_is_read_by_the_next_read() {
        let mut w = RefreshWindow::new(0);
        // A read begun at 10_000 returns edits up to 9_900; an edit stamped 9_850 commits
        // after it began (within the overlap of its stamp).
        w.advance(10_000, Some(9_900));
        assert!(w.start() < 9_850, "the next read returns it");
        // That next read began at 11_000, more than an overlap after 9_850: the edit had
        // committed by then, so later reads need not go back that far.
        w.advance(11_000, None);
        assert_eq!(w.start(), 9_900);
    }

    #[test]
    fn a_quiet_replica_reads_only_new_edits() {
        let mut w = RefreshWindow::new(0);
        for tick in 1..5 {
            w.advance(tick * 1_000, None);
        }
        assert_eq!(w.start(), -L, "nothing seen: from the load on");
        w.advance(5_000, Some(4_990));
        w.advance(6_000, None);
        assert_eq!(w.start(), 4_990);
    }
}
