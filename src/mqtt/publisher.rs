//! The outbox publisher: QoS 1, a message leaves the outbox only on its PUBACK.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS, Request,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::contract::model::Routing;
use crate::contract::task::{MessageKind, OutboxMessage};
use crate::metrics::{self, Stage};
use crate::store::Store;

use super::{BrokerAddr, FLUSH_TIMEOUT, ReconnectReport, options, publish_size};

/// What the publisher should record when a message is acknowledged by the broker.
#[derive(Debug, Clone, Default)]
pub struct OutboundMeta {
    /// When the sighting that caused it was received (for ingest→dispatch latency).
    pub received_at: Option<Instant>,
    /// When the sighting was observed (for sighting→dispatch latency).
    pub observed_at: Option<DateTime<Utc>>,
    /// Set for a new task: the assisting court and routing, for the dispatch counter.
    pub new_task: Option<(String, Routing)>,
    /// When the committed message was handed to the publisher (set by [`Publisher::send`]),
    /// for the `publish` stage: hand-over to the broker's PUBACK.
    pub handed_at: Option<Instant>,
}

/// A committed outbox message on its way to the broker.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub message: OutboxMessage,
    pub meta: OutboundMeta,
}

/// Handle to give the publisher freshly committed messages.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Outbound>,
}

impl Publisher {
    /// Queues committed messages. If the publisher is gone they stay in the outbox and are
    /// published at the next start, so this cannot lose them.
    pub async fn send(
        &self,
        messages: Vec<OutboxMessage>,
        mut meta: impl FnMut(&OutboxMessage) -> OutboundMeta,
    ) {
        let handed_at = Some(Instant::now());
        for message in messages {
            let meta = OutboundMeta {
                handed_at,
                ..meta(&message)
            };
            if self.tx.send(Outbound { message, meta }).await.is_err() {
                return;
            }
        }
    }

    /// Queues the messages of a task just dispatched to `court` (created, or re-routed
    /// there): its Task message counts as a dispatch.
    pub async fn send_dispatch(&self, messages: Vec<OutboxMessage>, court: &str, routing: Routing) {
        self.send(messages, |m| OutboundMeta {
            new_task: (m.kind == MessageKind::Task).then(|| (court.to_string(), routing)),
            ..OutboundMeta::default()
        })
        .await;
    }
}

/// Starts the publisher. It runs until every [`Publisher`] handle is dropped and all queued
/// messages are acknowledged (or `drain_deadline` passes after `stop`).
pub fn spawn_publisher(
    broker: &BrokerAddr,
    client_id: &str,
    store: Store,
    clock: Clock,
    stop: CancellationToken,
    max_packet_size: usize,
) -> (Publisher, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(20_000);
    let opts = options(broker, client_id, true, max_packet_size);
    let handle = tokio::spawn(publisher_loop(
        opts,
        store,
        clock,
        rx,
        stop,
        max_packet_size,
    ));
    (Publisher { tx }, handle)
}

/// How long after `stop` the publisher keeps trying to deliver what is queued.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// Rows older than this without a PUBACK are re-read from the outbox (e.g. a crashed
/// replica's, or ours from before a restart).
const ORPHAN_AGE: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// How long acknowledged ids gather before one write removes them from the outbox. Each
/// removal is a write transaction with its own fsync on the one writer connection, so they
/// are kept few and large (every 30 s instead leaves the p99 sighting→task latency as it is
/// (benches/DECISIONS.md), so a second costs nothing visible). A crash republishes at
/// most this much (consumers dedupe by id).
const REMOVE_SENT_GATHER: Duration = Duration::from_secs(1);
/// Most messages taken from the channel and not yet written (the backlog); those written
/// and not yet acknowledged are bounded by rumqttc's in-flight limit.
const WINDOW: usize = 2_000;

struct Tracking {
    /// Ids queued locally, waiting for window space.
    backlog: VecDeque<Outbound>,
    /// Written (or parked by rumqttc on a packet id collision), in order, waiting for the
    /// event loop to report their packet ids.
    handed: VecDeque<Outbound>,
    /// Packet id → message written and awaiting PUBACK.
    inflight: HashMap<u16, Outbound>,
    /// Every id queued, in flight, or acknowledged in the last minute, so the periodic
    /// re-read of the outbox does not publish it again before it is removed.
    known: HashSet<i64>,
    /// Acknowledged ids and when, to forget them from `known` once surely removed.
    acked: VecDeque<(i64, Instant)>,
}

impl Tracking {
    fn new() -> Self {
        Tracking {
            backlog: VecDeque::new(),
            handed: VecDeque::new(),
            inflight: HashMap::new(),
            known: HashSet::new(),
            acked: VecDeque::new(),
        }
    }

    fn is_idle(&self) -> bool {
        self.backlog.is_empty() && self.handed.is_empty() && self.inflight.is_empty()
    }

    fn acknowledged(&mut self, id: i64) {
        let now = Instant::now();
        self.acked.push_back((id, now));
        while let Some(&(old, at)) = self.acked.front() {
            if now.duration_since(at) < Duration::from_secs(60) {
                break;
            }
            self.known.remove(&old);
            self.acked.pop_front();
        }
    }

    fn push(&mut self, outbound: Outbound) {
        if self.known.insert(outbound.message.id) {
            self.backlog.push_back(outbound);
        }
    }

    /// Everything not yet acknowledged goes back to the backlog for the next connection.
    fn requeue_all(&mut self) {
        let mut inflight: Vec<(u16, Outbound)> = self.inflight.drain().collect();
        inflight.sort_by_key(|(_, o)| o.message.id);
        let mut again: VecDeque<Outbound> = inflight.into_iter().map(|(_, o)| o).collect();
        again.extend(self.handed.drain(..));
        again.extend(self.backlog.drain(..));
        self.backlog = again;
    }
}

async fn publisher_loop(
    opts: MqttOptions,
    store: Store,
    clock: Clock,
    mut rx: mpsc::Receiver<Outbound>,
    stop: CancellationToken,
    max_packet_size: usize,
) {
    let mut tracking = Tracking::new();
    let mut backoff = Duration::from_millis(100);
    let mut report = ReconnectReport::new("publisher", &opts);
    let mut rx_open = true;
    let mut drain_until: Option<tokio::time::Instant> = None;
    // Acked ids are removed from the outbox by a helper task, off the poll loop.
    let (sent_tx, sent_rx) = mpsc::unbounded_channel::<i64>();
    let remover = tokio::spawn(remove_sent_loop(store.clone(), sent_rx));
    // One future for the whole loop: made anew in every select it would register and
    // deregister a waiter (two locks) on every turn.
    let cancelled = stop.cancelled();
    tokio::pin!(cancelled);
    'connection: loop {
        // Publishes go straight into the connection ([`write_backlog`]); the client only keeps
        // the event loop's request channel open (it ends the loop when every client is gone).
        let (_client, mut eventloop) = AsyncClient::new(opts.clone(), 16);
        tracking.requeue_all();
        let mut connected = false;
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        let mut turns = 0u32;
        loop {
            // `is_cancelled` takes a lock, and this loop turns a few times per message: the
            // select below notices the stop when it has nothing else to do, and this check
            // every 64th turn when it is never idle (`biased` would starve that branch).
            turns = turns.wrapping_add(1);
            if drain_until.is_none() && turns % 64 == 0 && stop.is_cancelled() {
                drain_until = Some(tokio::time::Instant::now() + DRAIN_DEADLINE);
            }
            if !rx_open && tracking.is_idle() {
                break 'connection;
            }
            if drain_until.is_some_and(|d| tokio::time::Instant::now() >= d) {
                tracing::warn!(
                    unsent =
                        tracking.backlog.len() + tracking.handed.len() + tracking.inflight.len(),
                    "publisher stopping with messages unacknowledged; they stay in the outbox"
                );
                break 'connection;
            }
            // Events already read (PUBACKs come many per read) are taken first, so the room they
            // free is filled with one write and one flush, not one per acknowledgement.
            if connected && !tracking.backlog.is_empty() && eventloop.state.events.is_empty() {
                let unsendable =
                    write_backlog(&mut eventloop, &mut tracking, max_packet_size).await;
                for (outbound, reason) in unsendable {
                    set_aside(&store, &mut tracking, outbound, &reason, clock.now()).await;
                }
            }
            let window_has_room = tracking.backlog.len() < WINDOW;
            tokio::select! {
                biased;
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        report.connected();
                        backoff = Duration::from_millis(100);
                        // Anything unsent in the database (from before a crash, or older than
                        // the orphan age) joins the backlog.
                        requeue_from_store(&store, &mut tracking, None).await;
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some(outbound) = tracking.handed.pop_front() {
                            tracking.inflight.insert(pkid, outbound);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(outbound) = tracking.inflight.remove(&ack.pkid) {
                            tracking.acknowledged(outbound.message.id);
                            record_delivery(&outbound.meta, clock.now());
                            let _ = sent_tx.send(outbound.message.id);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        report.failed(&e, connected);
                        metrics::publish_failure();
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue 'connection;
                    }
                },
                received = rx.recv(), if rx_open && window_has_room => match received {
                    Some(outbound) => {
                        // Everything already waiting, so the next turn writes it with one flush.
                        tracking.push(outbound);
                        while tracking.backlog.len() < WINDOW
                            && let Ok(outbound) = rx.try_recv()
                        {
                            tracking.push(outbound);
                        }
                    }
                    None => rx_open = false,
                },
                _ = sweep.tick(), if connected => {
                    tracing::debug!(
                        backlog = tracking.backlog.len(),
                        handed = tracking.handed.len(),
                        inflight = tracking.inflight.len(),
                        known = tracking.known.len(),
                        rx_len = rx.len(),
                        "publisher state"
                    );
                    let cutoff = clock.now() - ORPHAN_AGE;
                    requeue_from_store(&store, &mut tracking, Some(cutoff)).await;
                }
                _ = &mut cancelled, if drain_until.is_none() => {
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_DEADLINE);
                }
                _ = tokio::time::sleep(Duration::from_millis(100)), if drain_until.is_some() => {}
            }
        }
    }
    drop(sent_tx);
    let _ = remover.await;
}

/// Writes backlog messages into the publisher's connection as QoS 1 publishes, while
/// rumqttc's flow control has room (in-flight publishes below the limit, no packet id
/// collision pending), and flushes them once. Each goes to `handed`, in order: the event loop
/// reports its packet id (`Outgoing::Publish`) in the same order.
///
/// Why not `AsyncClient::try_publish`: rumqttc 0.25's event loop flushes after every request
/// it takes from the client (one `writev` per message, rumqtt issue #810), and takes one per
/// poll, with a timer and an allocation each: a third of the tokio threads' CPU in the
/// 100%-hit benchmark, where every task is two publishes. As for the ingest acks
/// ([`write_queued`]), the packets are made by the event loop's own state, so its bookkeeping
/// (packet ids, in-flight count, retransmission on collision) is what the client would have
/// made it. A failed write stops here; the event loop then reports the broken connection and
/// everything handed or in flight goes back to the backlog.
///
/// A message that can never be sent (see [`unsendable`]) is not given to rumqttc, which would
/// keep it and fail every connection that retries it: it is returned with the reason, to be
/// set aside.
async fn write_backlog(
    eventloop: &mut EventLoop,
    tracking: &mut Tracking,
    max_packet_size: usize,
) -> Vec<(Outbound, String)> {
    let mut refused = Vec::new();
    let Some(network) = eventloop.network.as_mut() else {
        return refused;
    };
    let state = &mut eventloop.state;
    let max_inflight = eventloop.mqtt_options.inflight();
    let mut written = false;
    while state.collision.is_none() && state.inflight() < max_inflight {
        let Some(next) = tracking.backlog.pop_front() else {
            break;
        };
        let m = &next.message;
        if let Some(reason) = unsendable(m, max_packet_size) {
            refused.push((next, reason));
            continue;
        }
        let publish = Publish::new(m.topic.clone(), QoS::AtLeastOnce, m.payload.clone());
        match state.handle_outgoing_packet(Request::Publish(publish)) {
            Ok(packet) => {
                // None: its packet id is still in flight (a collision); rumqttc sends it when
                // the broker acks that id, and reports its packet id then.
                tracking.handed.push_back(next);
                if let Some(packet) = packet {
                    if network.write(packet).await.is_err() {
                        return refused;
                    }
                    written = true;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not queue a publish");
                tracking.backlog.push_front(next);
                break;
            }
        }
    }
    if written {
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, network.flush()).await;
    }
    refused
}

/// Why the client or the broker would refuse `m` on every attempt, if they would: larger
/// than the packet limit, or a topic no broker accepts for a publish.
fn unsendable(m: &OutboxMessage, max_packet_size: usize) -> Option<String> {
    let size = publish_size(&m.topic, m.payload.len());
    if size > max_packet_size {
        Some(format!(
            "a packet of {size} bytes, more than the limit of {max_packet_size} bytes"
        ))
    } else if m.topic.is_empty() || m.topic.contains(['+', '#', '\0']) {
        Some(format!("topic {:?} cannot be published to", m.topic))
    } else {
        None
    }
}

/// Moves a message that can never be sent out of the outbox into `outbox_rejected`. It stays
/// known for a minute, so the outbox re-read does not queue it again meanwhile; if the database
/// refuses, it is tried again after that.
async fn set_aside(
    store: &Store,
    tracking: &mut Tracking,
    outbound: Outbound,
    reason: &str,
    now: DateTime<Utc>,
) {
    let m = &outbound.message;
    metrics::outbox_rejected();
    tracing::error!(
        id = m.id,
        kind = m.kind.as_str(),
        task_id = m.task_id.as_deref().unwrap_or(""),
        topic = %m.topic,
        reason,
        "outbox message can never be published; moved to outbox_rejected"
    );
    if let Err(e) = store.reject_outbox(m, reason, now).await {
        tracing::warn!(error = %e, id = m.id, "could not set an unsendable outbox message aside");
    }
    tracking.acknowledged(m.id);
}

/// Adds unsent outbox rows (optionally only those created before `older_than`).
async fn requeue_from_store(
    store: &Store,
    tracking: &mut Tracking,
    older_than: Option<DateTime<Utc>>,
) {
    let pending = store.pending_outbox(older_than, WINDOW as i64);
    match store.bounded(pending).await {
        Ok(rows) => {
            for message in rows {
                tracking.push(Outbound {
                    message,
                    meta: OutboundMeta::default(),
                });
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the outbox"),
    }
}

fn record_delivery(meta: &OutboundMeta, now: DateTime<Utc>) {
    if let Some(handed) = meta.handed_at {
        metrics::stage(Stage::Publish, handed.elapsed());
    }
    if let Some((court, routing)) = &meta.new_task {
        metrics::task_dispatched(court, *routing);
        if let Some(received) = meta.received_at {
            metrics::ingest_to_dispatch(received.elapsed());
        }
        if let Some(observed) = meta.observed_at {
            let seconds = (now - observed).num_microseconds().unwrap_or(0) as f64 / 1e6;
            metrics::sighting_to_dispatch(seconds.max(0.0));
        }
    }
}

/// Removes acknowledged messages from the outbox, in batches (a message not removed is at
/// worst published again).
async fn remove_sent_loop(store: Store, mut rx: mpsc::UnboundedReceiver<i64>) {
    let mut ids = Vec::new();
    while let Some(id) = rx.recv().await {
        ids.push(id);
        // Each removal is a write transaction competing with the group commit for SQLite's
        // one writer; gathering acknowledgements for a moment makes them few and large. A row
        // not yet removed is at worst published again after a crash.
        tokio::time::sleep(REMOVE_SENT_GATHER).await;
        while let Ok(id) = rx.try_recv() {
            ids.push(id);
            if ids.len() >= 50_000 {
                break;
            }
        }
        remove_until_done(&store, &ids, &rx).await;
        ids.clear();
    }
}

/// Longest pause between attempts to remove acknowledged messages.
const REMOVE_SENT_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Removes `ids`, retrying with a capped backoff for as long as the database is unreachable
/// and the service runs: messages left behind would all be published again at the next start.
/// Gives up on an error retrying cannot fix, and after a few attempts once the publisher has
/// stopped (`rx` closed), so shutdown is not held by a database that is gone.
async fn remove_until_done(store: &Store, ids: &[i64], rx: &mpsc::UnboundedReceiver<i64>) {
    let mut backoff = Duration::from_millis(100);
    for attempt in 0u32.. {
        let Err(e) = store.bounded(store.remove_sent(ids)).await else {
            return;
        };
        let stopping = rx.is_closed() && attempt >= 4;
        if !e.is_retryable() || stopping {
            tracing::error!(error = %e, messages = ids.len(), "acknowledged messages stay in the outbox and will be published again at the next start");
            return;
        }
        if attempt % 10 == 0 {
            tracing::warn!(error = %e, attempt, "could not remove sent messages from the outbox; retrying");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(REMOVE_SENT_MAX_BACKOFF);
    }
}
