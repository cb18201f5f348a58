//! Ingest: one persistent session, manual acks carrying the connection epoch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, Disconnect, Event, EventLoop, Outgoing, Packet, PubAck, PubRec, Publish, QoS,
    Request,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::metrics::{self};

use super::{
    BrokerAddr, FLUSH_TIMEOUT, RELEASE_READ_BUFFER_ABOVE, ReconnectReport, options, publish_size,
};

/// One received message with what the pipeline needs to ack it correctly.
#[derive(Debug)]
pub struct Inbound {
    pub publish: Publish,
    pub received_at: Instant,
    /// The connection epoch the message arrived in.
    pub epoch: u64,
    /// A large message's share of [`LARGE_IN_FLIGHT_BYTES`], given back when it is dropped.
    _large_share: Option<OwnedSemaphorePermit>,
}

/// Bytes of messages over [`LARGE_MESSAGE`] that may wait in the channel and the pipeline at
/// once. The channel bounds messages by count (10,000), which a flood of 10 MB payloads turns
/// into gigabytes; valid messages are all below [`LARGE_MESSAGE`] and never wait for this.
pub const LARGE_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

/// Above the largest valid sighting or status report (64 KiB): such a message is going to be
/// dead-lettered.
pub const LARGE_MESSAGE: usize = 64 * 1024;

/// What the pipeline asks the ingest connection to send.
enum IngestRequest {
    /// Ack this message if it arrived on the current connection. Not the publish itself:
    /// an ack waiting for a connection must not keep a large payload alive.
    Ack { pkid: u16, qos: QoS, epoch: u64 },
    /// A dead letter (QoS 1, fire and forget: the original is acked right after it).
    DeadLetter { topic: String, payload: Vec<u8> },
    /// End the session after everything queued before it.
    Disconnect,
}

/// The ingest connection's sending half: acks and dead letters.
///
/// They go through a queue that the ingest task itself drains between polls, never straight
/// into the client's request channel: the pipeline must not block on an event loop that is
/// itself waiting for the pipeline to take a message (that would deadlock under load).
#[derive(Clone)]
pub struct IngestClient {
    outgoing: mpsc::UnboundedSender<IngestRequest>,
    connected: Arc<AtomicBool>,
    max_packet_size: usize,
}

impl IngestClient {
    /// Acks a message once its effect is durable (dropped if the connection it came on is
    /// gone: the broker redelivers it on the new one and de-duplication absorbs it).
    pub async fn ack(&self, inbound: &Inbound) {
        let _ = self.outgoing.send(IngestRequest::Ack {
            pkid: inbound.publish.pkid,
            qos: inbound.publish.qos,
            epoch: inbound.epoch,
        });
    }

    /// Publishes a dead letter before the original is acked.
    pub async fn publish(&self, topic: String, payload: Vec<u8>) {
        let _ = self
            .outgoing
            .send(IngestRequest::DeadLetter { topic, payload });
    }

    /// The largest packet this connection sends: dead letters must fit in it.
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Ends the session politely, after the acks queued so far (the broker keeps the
    /// session: clean session is off).
    pub async fn disconnect(&self) {
        let _ = self.outgoing.send(IngestRequest::Disconnect);
    }
}

/// Starts the ingest connection: subscribes `filters` at QoS 1 on every (re)connect.
/// Nothing larger than `max_packet_size` is sent.
pub fn spawn_ingest(
    broker: &BrokerAddr,
    client_id: &str,
    filters: Vec<String>,
    tx: mpsc::Sender<Inbound>,
    max_packet_size: usize,
) -> (IngestClient, JoinHandle<()>) {
    let mut opts = options(broker, client_id, false, max_packet_size);
    opts.set_manual_acks(true);
    let (client, eventloop) = AsyncClient::new(opts, 20_000);
    let (outgoing_tx, outgoing_rx) = mpsc::unbounded_channel();
    let ingest = IngestClient {
        outgoing: outgoing_tx,
        connected: Arc::new(AtomicBool::new(false)),
        max_packet_size,
    };
    let handle = tokio::spawn(ingest_loop(
        eventloop,
        client,
        ingest.connected.clone(),
        outgoing_rx,
        filters,
        tx,
        max_packet_size,
    ));
    (ingest, handle)
}

async fn ingest_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    connected: Arc<AtomicBool>,
    mut outgoing: mpsc::UnboundedReceiver<IngestRequest>,
    filters: Vec<String>,
    tx: mpsc::Sender<Inbound>,
    max_packet_size: usize,
) {
    let mut epoch: u64 = 0;
    let mut backoff = Duration::from_millis(100);
    let mut report = ReconnectReport::new("ingest", &eventloop.mqtt_options);
    // Acks, dead letters and the disconnect, in order, waiting for a connection to write to.
    let mut queued: VecDeque<IngestRequest> = VecDeque::new();
    // A packet above RELEASE_READ_BUFFER_ABOVE grew the connection's read buffer to its size;
    // once its ack is written, the connection is replaced so that the buffer goes with it.
    let mut oversized: Option<(u16, u64)> = None;
    let mut release_due = false;
    // Messages of this connection still waiting for their ack.
    let mut unacked: usize = 0;
    let large_budget = Arc::new(Semaphore::new(LARGE_IN_FLIGHT_BYTES));
    loop {
        if !queued.is_empty() {
            let acked = write_queued(&mut eventloop, &mut queued, epoch, max_packet_size).await;
            unacked = unacked.saturating_sub(acked.len());
            if oversized.is_some_and(|(pkid, e)| e == epoch && acked.contains(&pkid)) {
                oversized = None;
                release_due = true;
            }
        }
        // Only between messages: when every message of this connection is acked (else the
        // broker sends them again, a large one included), no event rumqttc read ahead is left
        // (it would be taken as the next connection's), and no dead letter waits for its
        // PUBACK (the next connection would send it again).
        let idle =
            unacked == 0 && eventloop.state.events.is_empty() && eventloop.state.inflight() == 0;
        if release_due && idle {
            release_due = false;
            release_read_buffer(&mut eventloop);
            epoch += 1;
        }
        let event = tokio::select! {
            biased;
            Some(out) = outgoing.recv() => {
                queued.push_back(out);
                while let Ok(out) = outgoing.try_recv() {
                    queued.push_back(out);
                }
                continue;
            }
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                epoch += 1;
                // A new connection starts with a small read buffer and owes no acks.
                (oversized, release_due, unacked) = (None, false, 0);
                connected.store(true, Ordering::Release);
                report.connected();
                metrics::set_mqtt_connected(true);
                backoff = Duration::from_millis(100);
                let subs = filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(subs) {
                    tracing::error!(error = %e, "could not subscribe");
                }
                tracing::info!(?filters, "MQTT ingest connected and subscribed");
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if publish.qos != QoS::AtMostOnce {
                    unacked += 1;
                    if publish.payload.len() > RELEASE_READ_BUFFER_ABOVE {
                        oversized = Some((publish.pkid, epoch));
                    }
                }
                let large = if publish.payload.len() > LARGE_MESSAGE {
                    // Waits while earlier large messages are still held; the pipeline never
                    // waits on this task, so they are released.
                    let share = publish.payload.len().min(LARGE_IN_FLIGHT_BYTES);
                    let share = u32::try_from(share).unwrap_or(u32::MAX);
                    large_budget.clone().acquire_many_owned(share).await.ok()
                } else {
                    None
                };
                let inbound = Inbound {
                    publish,
                    received_at: Instant::now(),
                    epoch,
                    _large_share: large,
                };
                // Bounded: a slow pipeline applies back-pressure here, it never drops. The
                // pipeline never waits on this task, so this cannot deadlock.
                if tx.send(inbound).await.is_err() {
                    break;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                // Acks for what came on the lost connection must never reach the next one:
                // there the same packet id can mean another message, and acking it would lose
                // that message. (rumqttc itself drops the acks still in its channel.) The
                // broker redelivers the unacked ones; de-duplication absorbs them.
                epoch += 1;
                report.failed(&e, connected.swap(false, Ordering::AcqRel));
                metrics::set_mqtt_connected(false);
                if tx.is_closed() {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    connected.store(false, Ordering::Release);
}

/// Drops the connection (rumqttc connects again on the next poll, and keeps the dead letters
/// in flight for it): tokio-util's read buffer keeps the capacity the largest packet gave it
/// for as long as the connection lives, and rumqttc offers no way to shrink it. The broker
/// redelivers what was not acked yet; de-duplication absorbs it.
fn release_read_buffer(eventloop: &mut EventLoop) {
    tracing::info!(
        threshold = RELEASE_READ_BUFFER_ABOVE,
        "reconnecting the ingest connection to release the read buffer a large message grew"
    );
    eventloop.clean();
    // SAFETY: mi_collect only walks mimalloc's own structures; it is safe from any thread and
    // harmless when mimalloc is not the global allocator (it then has nothing to collect).
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Writes the queued acks, dead letters and disconnect into the ingest connection, in order,
/// and flushes them once; acks of an earlier connection are dropped. Returns the packet ids
/// acked on this connection. Nothing is written while
/// there is no connection, and a dead letter (with all behind it) waits while no packet id is
/// free for it.
///
/// Why not `AsyncClient::try_ack`: rumqttc 0.25's event loop flushes after every request it
/// takes from the client (one `writev` per ack: rumqtt issue #810), which costs a quarter of
/// the tokio threads' CPU at 70,000 sightings/s. The packets are made by the event loop's own
/// state (`MqttState::handle_outgoing_packet`, which assigns the dead letters' packet ids and
/// keeps them for retransmission), so its bookkeeping is what `try_ack` would have made it.
/// A write that fails stops here: the event loop then reports the broken connection, and what
/// was not written belongs to a connection that is gone (the broker redelivers those messages
/// unacked; a dead letter stays in rumqttc's state and is sent again on the next connection).
///
/// A dead letter over `max_packet_size` (the pipeline cuts them to fit, so this is a bug) is
/// dropped with an error: rumqttc would keep it and fail every connection that retries it.
async fn write_queued(
    eventloop: &mut EventLoop,
    queued: &mut VecDeque<IngestRequest>,
    epoch: u64,
    max_packet_size: usize,
) -> Vec<u16> {
    let mut acked = Vec::new();
    let Some(network) = eventloop.network.as_mut() else {
        return acked; // not connected: the next ConnAck starts a new epoch
    };
    let state = &mut eventloop.state;
    let max_inflight = eventloop.mqtt_options.inflight();
    let mut written = false;
    while let Some(next) = queued.pop_front() {
        // A dead letter needs a free packet id and must not meet a publish already parked
        // on a packet id collision (rumqttc keeps one): else it waits, and what follows it.
        if matches!(next, IngestRequest::DeadLetter { .. })
            && (state.collision.is_some() || state.inflight() + 1 >= max_inflight)
        {
            queued.push_front(next);
            break;
        }
        let request = match next {
            IngestRequest::Ack { epoch: e, .. } if e != epoch => continue, // a previous connection's
            IngestRequest::Ack { pkid, qos, .. } => match qos {
                QoS::AtMostOnce => continue,
                QoS::AtLeastOnce => {
                    acked.push(pkid);
                    Request::PubAck(PubAck::new(pkid))
                }
                QoS::ExactlyOnce => {
                    acked.push(pkid);
                    Request::PubRec(PubRec::new(pkid))
                }
            },
            IngestRequest::DeadLetter { topic, payload } => {
                let size = publish_size(&topic, payload.len());
                if size > max_packet_size {
                    tracing::error!(
                        %topic,
                        size,
                        max_packet_size,
                        "dead letter larger than the packet limit; dropped"
                    );
                    continue;
                }
                Request::Publish(Publish::new(topic, QoS::AtLeastOnce, payload))
            }
            IngestRequest::Disconnect => Request::Disconnect(Disconnect),
        };
        match state.handle_outgoing_packet(request) {
            // None: a dead letter whose packet id is still in flight; rumqttc sends it once
            // the broker acks that id.
            Ok(None) => {}
            Ok(Some(packet)) => {
                if network.write(packet).await.is_err() {
                    return Vec::new();
                }
                written = true;
            }
            Err(e) => {
                // The packets already written still go out with the flush below.
                tracing::warn!(error = %e, "could not queue a packet on the ingest connection");
                break;
            }
        }
    }
    if written {
        let flushed = tokio::time::timeout(FLUSH_TIMEOUT, network.flush()).await;
        if !matches!(flushed, Ok(Ok(()))) {
            return Vec::new(); // not known to have reached the broker
        }
    }
    acked
}
