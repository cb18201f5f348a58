//! MQTT in and out (rumqttc).
//!
//! * **Ingest** — one persistent session (stable client id, clean session off, manual acks)
//!   subscribed to sightings and status reports at QoS 1. The poll loop only hands messages
//!   to a bounded channel; the pipeline acks each one after its effect is durable. Acks carry
//!   the connection *epoch* they were received in: after a reconnect, the broker redelivers
//!   what was not acked, and an ack from an older epoch is dropped rather than sent with a
//!   packet id that now means another message.
//! * **Publisher** — a second connection that publishes outbox messages at QoS 1 and deletes
//!   each from the outbox only on the broker's PUBACK. On any connection error it starts a fresh
//!   connection and re-reads the unsent outbox, so nothing is lost and consumers (who
//!   de-duplicate by `task_id`) see at-least-once delivery.

pub mod acl;
pub mod broker;
mod ingest;
mod publisher;
pub mod security;

pub use ingest::*;
pub use publisher::*;

use std::time::Duration;

use rumqttc::MqttOptions;

/// Where the broker is, and how to connect to it safely.
#[derive(Debug, Clone)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub security: security::ClientSecurity,
}

/// Largest packet accepted from the broker. Far above the 64 KiB sighting limit and the
/// outgoing limit on purpose: rumqttc answers a larger incoming packet by dropping the
/// connection, and the broker would then redeliver it forever. An oversized message must
/// reach the decoder to be dead-lettered (its dead letter is cut to the outgoing limit).
pub const MAX_INCOMING_PACKET: usize = 256 * 1024 * 1024;

/// Above this payload size a received message costs a reconnect once it is acked: the
/// connection's read buffer keeps the capacity of the largest packet it read (three 100 MB
/// sightings held about 110 MiB for good), and only a new connection starts it small again.
/// Far above any valid sighting or status report (64 KiB), so only broken or hostile
/// publishers pay it; the broker's own `max_packet_size` should refuse them before.
pub const RELEASE_READ_BUFFER_ABOVE: usize = 4 * 1024 * 1024;

/// Bytes an MQTT 3.1.1 PUBLISH adds around its topic and payload: the fixed header (at most
/// 5), the topic's length (2) and the packet id (2).
pub const PUBLISH_OVERHEAD: usize = 9;

/// The size of a QoS 1 PUBLISH of `payload_len` bytes on `topic`, as rumqttc checks it
/// against the outgoing limit.
pub fn publish_size(topic: &str, payload_len: usize) -> usize {
    PUBLISH_OVERHEAD + topic.len() + payload_len
}

/// `max_packet_size` bounds what is sent; rumqttc refuses to write anything larger.
pub(crate) fn options(
    broker: &BrokerAddr,
    client_id: &str,
    clean_session: bool,
    max_packet_size: usize,
) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    broker.security.apply(&mut o);
    o.set_keep_alive(Duration::from_secs(20));
    o.set_clean_session(clean_session);
    o.set_max_packet_size(MAX_INCOMING_PACKET.max(max_packet_size), max_packet_size);
    o.set_inflight(1000);
    o.set_request_channel_capacity(20_000);
    // Nagle's algorithm stays on (rumqttc's default): rumqttc writes every packet on its own,
    // and TCP_NODELAY turns each into a segment. At 100% hits that costs 15% more service
    // CPU (5.6–5.8 s against 4.8–5.0 s for 60,000 tasks, three pairs) and does not lower
    // latency at 200 or 2,000 msg/s (benches/DECISIONS.md).
    o
}

/// How long one flush of queued packets may wait for the socket (as rumqttc's own flushes).
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Says why a connection to the broker failed, at a level an operator sees, without a line
/// per retry: a refused login or a failed TLS handshake is an error (it will not heal by
/// itself), any other failure a warning; repeats within [`RECONNECT_REPORT_EVERY`] are debug.
pub(crate) struct ReconnectReport {
    role: &'static str,
    failures: u64,
    last_reported: Option<std::time::Instant>,
}

/// How often a connection that keeps failing is reported again.
pub(crate) const RECONNECT_REPORT_EVERY: Duration = Duration::from_secs(30);

impl ReconnectReport {
    pub(crate) fn new(role: &'static str) -> Self {
        ReconnectReport {
            role,
            failures: 0,
            last_reported: None,
        }
    }

    /// A connection was made: the next failure is reported at once.
    pub(crate) fn connected(&mut self) {
        self.failures = 0;
        self.last_reported = None;
    }

    /// A connection attempt (or the connection) failed with `error`.
    pub(crate) fn failed(&mut self, error: &rumqttc::ConnectionError, was_connected: bool) {
        self.failures += 1;
        let due = self
            .last_reported
            .is_none_or(|at| at.elapsed() >= RECONNECT_REPORT_EVERY);
        let role = self.role;
        let failures = self.failures;
        if was_connected {
            tracing::warn!(error = %error, "MQTT {role} connection lost; reconnecting");
        } else if !due {
            tracing::debug!(error = %error, failures, "MQTT {role} reconnect failed");
            return;
        } else if let Some(why) = refusal(error) {
            tracing::error!(error = %error, failures, "MQTT {role} cannot connect: {why}");
        } else {
            tracing::warn!(error = %error, failures, "MQTT {role} cannot reach the broker; retrying");
        }
        self.last_reported = Some(std::time::Instant::now());
    }
}

/// What an operator must fix when the broker refuses the service, if that is the failure.
fn refusal(error: &rumqttc::ConnectionError) -> Option<&'static str> {
    use rumqttc::{ConnectReturnCode as Code, ConnectionError as E};
    match error {
        E::ConnectionRefused(Code::BadUserNamePassword) => {
            Some("the broker refused the user name or password")
        }
        E::ConnectionRefused(Code::NotAuthorized) => {
            Some("the broker does not authorize this client (credentials or ACL)")
        }
        E::ConnectionRefused(Code::BadClientId) => Some("the broker refused the client id"),
        E::Tls(_) => Some("the TLS handshake failed (CA file, host name or certificate)"),
        _ => None,
    }
}
