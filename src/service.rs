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

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker;
use crate::config::{BrokerChoice, Config};
use crate::geodata::DataError;
use crate::http::{self, AppState};
use crate::locate::JurisdictionIndex;
use crate::metrics;
use crate::model::Target;
use crate::mqtt::{self, BrokerAddr};
use crate::pipeline::Pipeline;
use crate::status::StatusContext;
use crate::store::{Deadlines, Policy, Store, StoreError};
use crate::targets::LiveTargets;
use crate::task::Topics;

/// Why the service could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("geographic data: {0}")]
    Index(#[from] crate::locate::IndexError),
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
    let data = Arc::new(
        config
            .data
            .load()
            .map_err(|e| ServiceError::Other(format!("{e:#}")))?,
    );
    let index = Arc::new(JurisdictionIndex::new(data)?);
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

    let chrono_duration =
        |d: Duration| chrono::Duration::from_std(d).map_err(|e| ServiceError::Other(e.to_string()));
    let mut per_court = std::collections::HashMap::new();
    for (court, (ack, resolve)) in &config.court_deadlines {
        per_court.insert(
            court.clone(),
            (chrono_duration(*ack)?, chrono_duration(*resolve)?),
        );
    }
    let deadlines = Deadlines {
        ack: chrono_duration(config.ack_timeout)?,
        resolve: chrono_duration(config.resolve_timeout)?,
        per_court,
    };
    let centers = index
        .data()
        .courts
        .iter()
        .map(|c| (c.court_id.clone(), (c.command_center.x, c.command_center.y)))
        .collect();
    let policy = Policy {
        not_found_cooldown: chrono_duration(config.not_found_cooldown)?,
        reassign_dwell: chrono_duration(config.reassign_dwell)?,
        reassign_distance_km: config.reassign_distance_km,
        centers: Arc::new(centers),
    };
    let status = StatusContext {
        store: store.clone(),
        targets: targets.clone(),
        index: index.clone(),
        topics: topics.clone(),
        deadlines: deadlines.clone(),
        publisher: publisher.clone(),
    };
    let timers_task = tokio::spawn(crate::timers::run(
        store.clone(),
        crate::timers::supervisors(index.data()),
        topics.clone(),
        publisher.clone(),
        config.timer_interval,
        stop.clone(),
    ));
    let pipeline = Pipeline {
        ctx: status.clone(),
        policy,
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

/// Where the hotlist refresh reads from, given the newest `updated_at` it has seen. While that
/// edit is recent, the read overlaps it by [`REFRESH_OVERLAP_MS`] so edits committed out of
/// clock order are not missed. Once it is well past (the overlap has been read several times
/// since those edits could last commit), the read starts at the edit itself: before, every
/// tick re-read and re-decoded the last second of a bulk import for good, which took a tenth
/// of the service's CPU during the 100%-hit benchmark.
fn refresh_from(newest_seen_ms: i64, now_ms: i64) -> i64 {
    if now_ms - newest_seen_ms > 3 * REFRESH_OVERLAP_MS {
        newest_seen_ms
    } else {
        newest_seen_ms - REFRESH_OVERLAP_MS
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

/// Picks up target edits made elsewhere (another replica, `targets import`), refreshes
/// gauges, and purges processed event ids past their retention.
async fn housekeeping(ctx: StatusContext, retention: Duration, stop: CancellationToken) {
    let (store, targets) = (ctx.store.clone(), ctx.targets.clone());
    let mut since_ms = Utc::now().timestamp_millis() - 1_000;
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
        let from = refresh_from(since_ms, Utc::now().timestamp_millis());
        match refresh_targets(&store, from, &targets).await {
            Ok((newest, fresh)) => {
                since_ms = newest.unwrap_or(since_ms).max(since_ms);
                targets.forget_versions_before(since_ms - 2 * REFRESH_OVERLAP_MS);
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
    use super::{REFRESH_OVERLAP_MS, refresh_from};

    #[test]
    fn the_refresh_overlaps_recent_edits_only() {
        let newest = 1_000_000;
        // Just after the edit, and up to three overlaps later: read the overlap again.
        assert_eq!(
            refresh_from(newest, newest + 10),
            newest - REFRESH_OVERLAP_MS
        );
        assert_eq!(
            refresh_from(newest, newest + 3 * REFRESH_OVERLAP_MS),
            newest - REFRESH_OVERLAP_MS
        );
        // Well past it: only what is newer than the newest edit seen.
        assert_eq!(
            refresh_from(newest, newest + 3 * REFRESH_OVERLAP_MS + 1),
            newest
        );
        assert_eq!(refresh_from(newest, newest + 3_600_000), newest);
    }
}
