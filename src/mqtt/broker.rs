//! The embedded MQTT broker (rumqttd) for `demo` and for `serve` without `--mqtt-url`.
//!
//! The same client code paths as against Mosquitto or EMQX: the service connects to it over
//! TCP like any other client. Built only with the default `embedded-broker` feature.

use std::net::SocketAddr;
#[cfg(feature = "embedded-broker")]
use std::net::TcpListener;

/// The broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded broker: cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker: {0}")]
    Config(String),
    #[error("this build has no embedded broker (feature `embedded-broker`); pass --mqtt-url")]
    NotBuilt,
}

/// A running in-process broker; it lives until the process exits.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
}

/// Starts a broker on `addr`; port 0 picks a free port (tests). Payloads up to 1 MiB, so
/// that the service itself can see and refuse oversized sightings.
#[cfg(feature = "embedded-broker")]
pub fn start(addr: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
    // Check the port is free (and pick one for port 0) so that failures are ours to report:
    // rumqttd would only log them from its own thread.
    let probe = TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
    let addr = probe
        .local_addr()
        .map_err(|source| BrokerError::Bind { addr, source })?;
    drop(probe);
    let config = format!(
        r#"
id = 0
[router]
max_connections = 1000
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "{addr}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 1000
    dynamic_filters = true
"#
    );
    let config: rumqttd::Config =
        toml::from_str(&config).map_err(|e| BrokerError::Config(e.to_string()))?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|e| BrokerError::Config(e.to_string()))?;
    // Wait until it accepts connections.
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(EmbeddedBroker { addr });
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(BrokerError::Config(format!(
        "did not start listening on {addr}"
    )))
}

#[cfg(not(feature = "embedded-broker"))]
pub fn start(_addr: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
    Err(BrokerError::NotBuilt)
}
