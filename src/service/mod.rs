//! `leadrelay serve`: wires the steps together and runs them until shutdown.
//!
//! ```text
//! broker ─► ingest ─► [bounded channel] ─► pipeline ─► store (group commit) ─► publisher ─► broker
//!                                              │                  ▲
//!                                              └── ack ◄──────────┘ (after commit)
//! HTTP API ─► app actions ─► store / live targets / publisher    housekeeping: store ─► live targets
//! ```
//!
//! Shutdown (SIGTERM, ctrl-c, or the caller's future): stop taking messages, finish the batch
//! in hand (commit, ack), close the HTTP server, then let the publisher deliver everything
//! committed before exiting. [`run`] gives that [`SHUTDOWN_GRACE`]; past it, it returns an
//! error, so the process ends even when a database or broker stopped answering mid-drain.

pub mod config;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::http::{self, AppState};
use crate::app::App;
use crate::clock::Clock;
use crate::contract::task::{StatusLimits, Topics};
use crate::flow::pipeline::{Pending, Pipeline};
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
    #[error("geographic data")]
    Index(#[from] crate::geo::locate::IndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("HTTP: cannot listen on {addr}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
    #[error("shutdown did not finish within {0:?}; exiting anyway")]
    ShutdownOverran(Duration),
}

pub use crate::service::config::shutdown::SHUTDOWN_GRACE;

/// A started service: where it listens, and how to wait for it.
pub struct Running {
    pub http_addr: SocketAddr,
    pub broker: BrokerAddr,
    pub store: Store,
    pub targets: Arc<LiveTargets>,
    /// The clock the service reads "now" from (a manual one lets tests move time).
    pub clock: Clock,
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

/// Starts everything on the system clock and returns once it is listening; `shutdown`
/// resolving stops it.
pub async fn start(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, ServiceError> {
    start_with_clock(config, Clock::System, shutdown).await
}

/// As [`start`], reading every "now" from `clock`.
pub async fn start_with_clock(
    config: Config,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, ServiceError> {
    let metrics_handle = metrics::install().map_err(|e| ServiceError::Metrics(e.to_string()))?;
    let index = Arc::new(JurisdictionIndex::new(config.geo.clone())?);
    let courts = &index.data().courts;
    let taking_tasks: Vec<&str> = courts
        .iter()
        .filter(|c| c.participating)
        .map(|c| c.court_id.as_str())
        .collect();
    let mut supervisors: Vec<&str> = courts
        .iter()
        .filter_map(|c| c.supervisor_court_id.as_deref())
        .collect();
    supervisors.sort_unstable();
    supervisors.dedup();
    metrics::start_at_zero(&taking_tasks, &supervisors);
    let broker = match &config.broker {
        BrokerChoice::External { host, port } => BrokerAddr {
            host: host.clone(),
            port: *port,
            security: config.mqtt_security.clone(),
        },
        BrokerChoice::Embedded(addr) => {
            let running = broker::start(*addr)?;
            BrokerAddr {
                host: running.addr.ip().to_string(),
                port: running.addr.port(),
                security: Default::default(),
            }
        }
    };
    let store = Store::connect_with(&config.database_url, config.db_limits).await?;
    let targets = Arc::new(LiveTargets::new(config.matching));
    // Before the read: the refresh then reads back every edit that may have committed after it.
    let loaded_at = clock.now().timestamp_millis();
    let all = store.all_targets().await?;
    tracing::info!(targets = all.len(), "hotlist loaded");
    targets.apply(all);

    let topics = Topics::new(&config.topic_prefix);
    let stop = CancellationToken::new();
    let (publisher, publisher_task) = mqtt::spawn_publisher(
        &broker,
        &format!("{}-out", config.client_id),
        store.clone(),
        clock.clone(),
        stop.clone(),
        config.max_packet_size,
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
    let (ingest, ingest_task) = mqtt::spawn_ingest(
        &broker,
        &config.client_id,
        filters,
        tx,
        config.max_packet_size,
    );

    let app = App {
        store: store.clone(),
        targets: targets.clone(),
        index: index.clone(),
        topics: topics.clone(),
        deadlines: config.deadlines.clone(),
        policy: config.policy.clone(),
        publisher: publisher.clone(),
        clock: clock.clone(),
        status_limits: StatusLimits {
            max_future_skew: config.decode.max_future_skew,
        },
    };
    let timers_task = tokio::spawn(crate::flow::timers::run(
        app.clone(),
        crate::flow::timers::supervisors(index.data()),
        config.timer_interval,
        stop.clone(),
    ));
    let pending = Arc::new(Pending::default());
    let pipeline = Pipeline {
        ctx: app.clone(),
        limits: config.decode.clone(),
        max_batch: config.max_batch,
        batch_window: config.batch_window,
        ingest: ingest.clone(),
        pending: pending.clone(),
    };
    let pipeline_task = tokio::spawn(pipeline.run(rx, stop.clone()));

    let listener =
        crate::api::serve::bind(config.http_addr).map_err(|source| ServiceError::Http {
            addr: config.http_addr,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| ServiceError::Http {
        addr: config.http_addr,
        source,
    })?;
    let router = http::app(AppState {
        app: app.clone(),
        ingest: ingest.clone(),
        pending,
        max_unacked_age: config.max_unacked_age,
        metrics: metrics_handle,
        auth: config.auth,
        scrapers: Default::default(),
        stop: stop.clone(),
    });
    let http_task = tokio::spawn(crate::api::serve::serve(
        listener,
        router,
        config.http_limits,
        config.http_tls.clone(),
        stop.clone(),
    ));
    let housekeeping_task = tokio::spawn(crate::flow::housekeeping::run(
        app,
        loaded_at,
        config.dedup_retention,
        config.retention,
        stop.clone(),
    ));
    let database_task = tokio::spawn(crate::flow::housekeeping::watch_database(
        store.clone(),
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
        let _ = database_task.await;
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
        clock,
        stopped,
        stop,
    })
}

/// Runs until `shutdown` resolves and everything has been flushed, or the configured
/// shutdown grace after it resolved (then an error: the caller should exit without waiting
/// for the rest).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let grace = config.shutdown_grace;
    let running = start(config, shutdown).await?;
    let asked = running.stop.clone();
    let stopped = running.wait();
    tokio::pin!(stopped);
    tokio::select! {
        result = &mut stopped => return result,
        _ = asked.cancelled() => {}
    }
    match tokio::time::timeout(grace, stopped).await {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(
                ?grace,
                "graceful shutdown did not finish in time; exiting anyway"
            );
            Err(ServiceError::ShutdownOverran(grace))
        }
    }
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
