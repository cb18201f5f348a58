//! Serving the router over HTTP/1.1 with limits a hostile client cannot outwait.
//!
//! `axum::serve` gives hyper no timer, so hyper's header-read timeout never fires and a
//! client that trickles its headers (slowloris) holds its connection forever. Here hyper gets
//! a Tokio timer and [`HttpLimits::header_timeout`]; every request (its body included, which
//! the handlers read whole) must be answered within [`HttpLimits::request_timeout`] or gets a
//! 408; and at most [`HttpLimits::max_connections`] connections are served at once, so that
//! no flood of connections exhausts the process's file descriptors, which the database and
//! the broker connections need too. With a certificate (`--http-tls-cert`) every connection
//! is TLS (rustls), its handshake bounded by the header timeout too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

/// What one client may take of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// Longest a request may take from its headers to the answer, its body included.
    pub request_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Connections the kernel completes and queues before the server accepts them. Tokio's
/// `TcpListener::bind` asks for 128 (the standard library's value): a burst of a few hundred
/// clients overflowed it, the kernel dropped their handshakes or fell back to SYN cookies, and
/// some of those connections were closed before they could send a request. The kernel caps
/// this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr` with a [`LISTEN_BACKLOG`]-deep accept queue.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted service can take its port back at once,
    // whatever connections of its predecessor are still in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Longest open connections may take to finish their requests once the server stops.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` (over TLS with `tls`) until `stop` is cancelled, then lets
/// the requests in progress finish (up to [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let router = router.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let router = crate::api::http::with_json_errors(router);
    let service = TowerToHyperService::new(router);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was taken: the
                    // listener itself is fine.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    // Back off so that a persistent error does not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(acceptor) = &acceptor else {
            let connection = http.serve_connection(TokioIo::new(stream), service.clone());
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                drop(slot);
            });
            continue;
        };
        // The handshake in the connection's own task, bounded like the headers it precedes:
        // a client that stalls it holds only its own slot.
        let (acceptor, http, service) = (acceptor.clone(), http.clone(), service.clone());
        let watcher = graceful.watcher();
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let connection = http.serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(error = %e, "HTTPS connection ended with an error");
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake not finished in time"),
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after {DRAIN:?}; closing them");
    }
}
