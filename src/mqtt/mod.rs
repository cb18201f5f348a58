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

pub mod broker;
mod ingest;
mod publisher;

pub use ingest::*;
pub use publisher::*;

use std::time::Duration;

use rumqttc::MqttOptions;

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
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
