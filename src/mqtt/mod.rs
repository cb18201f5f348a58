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

/// Says why a connection to the broker failed, naming the broker, at a level an operator
/// sees, before the first connection as after a lost one: a refused login or a failed TLS
/// handshake is an error (it will not heal by itself), any other failure a warning. One line
/// per cause per [`RECONNECT_REPORT_EVERY`] at most, with the number of failures of that
/// cause not reported since: a broker that stays down must not fill the log.
pub(crate) struct ReconnectReport {
    role: &'static str,
    /// `host:port`, as the service dials it.
    broker: String,
    /// Per cause (the error's text): when it was last reported, and failures since.
    causes: std::collections::HashMap<String, (std::time::Instant, u64)>,
    /// Failures since the last connection was made.
    failures: u64,
}

/// How often one cause of failure is reported again while it lasts.
pub(crate) const RECONNECT_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Causes remembered at most: a broker that fails with ever new messages (packet contents in
/// them) must not grow the map without end.
const RECONNECT_CAUSES_KEPT: usize = 32;

impl ReconnectReport {
    pub(crate) fn new(role: &'static str, options: &MqttOptions) -> Self {
        let (host, port) = options.broker_address();
        ReconnectReport {
            role,
            broker: format!("{host}:{port}"),
            causes: std::collections::HashMap::new(),
            failures: 0,
        }
    }

    /// A connection was made; after failures, that is said too.
    pub(crate) fn connected(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                broker = %self.broker,
                failures = self.failures,
                "MQTT {} connected after {} failed attempt(s)",
                self.role,
                self.failures
            );
        }
        self.failures = 0;
    }

    /// A connection attempt (or the connection, `was_connected`) failed with `error`.
    pub(crate) fn failed(&mut self, error: &rumqttc::ConnectionError, was_connected: bool) {
        self.failed_at(error, was_connected, std::time::Instant::now());
    }

    /// As [`ReconnectReport::failed`], at `now`. Returns, when a line was logged, how many
    /// failures of the same cause it said were not reported.
    fn failed_at(
        &mut self,
        error: &rumqttc::ConnectionError,
        was_connected: bool,
        now: std::time::Instant,
    ) -> Option<u64> {
        self.failures += 1;
        if self.causes.len() >= RECONNECT_CAUSES_KEPT {
            self.causes
                .retain(|_, (at, _)| now.duration_since(*at) < RECONNECT_REPORT_EVERY);
        }
        let (role, broker) = (self.role, &self.broker);
        let suppressed = match self.causes.get_mut(&error.to_string()) {
            Some((at, since)) if now.duration_since(*at) < RECONNECT_REPORT_EVERY => {
                *since += 1;
                tracing::debug!(%broker, error = %error, "MQTT {role} reconnect failed");
                return None;
            }
            Some((at, since)) => {
                *at = now;
                std::mem::take(since)
            }
            None => {
                self.causes.insert(error.to_string(), (now, 0));
                0
            }
        };
        if let Some(why) = refusal(error) {
            tracing::error!(%broker, error = %error, suppressed, "MQTT {role} cannot connect: {why}");
        } else if was_connected {
            tracing::warn!(%broker, error = %error, suppressed, "MQTT {role} connection lost; reconnecting");
        } else {
            tracing::warn!(%broker, error = %error, suppressed, "MQTT {role} cannot connect; retrying");
        }
        Some(suppressed)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error(kind: std::io::ErrorKind) -> rumqttc::ConnectionError {
        rumqttc::ConnectionError::Io(kind.into())
    }

    #[test]
    fn each_cause_is_reported_at_most_once_per_period_with_what_was_held_back() {
        let options = MqttOptions::new("t", "broker.example", 1884);
        let mut report = ReconnectReport::new("ingest", &options);
        assert_eq!(report.broker, "broker.example:1884");
        let refused = io_error(std::io::ErrorKind::ConnectionRefused);
        let start = std::time::Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        // Before any connection was made, the first failure is reported at once.
        assert_eq!(report.failed_at(&refused, false, at(0)), Some(0));
        assert_eq!(report.failed_at(&refused, false, at(1)), None);
        assert_eq!(report.failed_at(&refused, false, at(5)), None);
        // Another cause is reported on its own.
        let reset = io_error(std::io::ErrorKind::ConnectionReset);
        assert_eq!(report.failed_at(&reset, true, at(6)), Some(0));
        assert_eq!(report.failed_at(&refused, false, at(9)), None);
        // A period later, the cause again, with the three failures not reported.
        assert_eq!(report.failed_at(&refused, false, at(10)), Some(3));
        assert_eq!(report.failed_at(&refused, false, at(11)), None);
        assert_eq!(report.failures, 7);
        report.connected();
        assert_eq!(report.failures, 0);
    }

    #[test]
    fn causes_kept_are_bounded() {
        let options = MqttOptions::new("t", "localhost", 1883);
        let mut report = ReconnectReport::new("publisher", &options);
        let start = std::time::Instant::now();
        for n in 0..1000u64 {
            let error = rumqttc::ConnectionError::Io(std::io::Error::other(format!("odd {n}")));
            let now = start + Duration::from_secs(n * RECONNECT_REPORT_EVERY.as_secs());
            assert_eq!(report.failed_at(&error, false, now), Some(0));
        }
        assert!(report.causes.len() <= RECONNECT_CAUSES_KEPT);
    }
}
