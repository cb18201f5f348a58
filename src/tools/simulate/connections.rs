//! The generator's MQTT connections: publisher, subscriber, and the `--relay` stand-in.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::oneshot;

use super::analysis::{Got, Progress, Tags};
use super::sampling::{Live, Receipt};
use crate::mqtt::BrokerAddr;

/// Options for one of the generator's connections, with the broker's TLS and credentials.
pub(super) fn client_options(broker: &BrokerAddr, client_id: String) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    broker.security.apply(&mut opts);
    opts
}

pub(super) async fn publish(
    client: &AsyncClient,
    topic: String,
    payload: String,
    failed: &Mutex<Option<String>>,
) -> anyhow::Result<()> {
    if client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .is_err()
    {
        let why = failed.lock().ok().and_then(|f| f.clone());
        bail!(
            "publisher: the broker connection is gone ({})",
            why.unwrap_or_else(|| "no reason given".into())
        );
    }
    Ok(())
}

/// Where the `--relay` stand-in publishes what the subscriber counts, and what nobody hears.
pub(super) const RELAY_HEARD: &str = "relay/tasks-like";
pub(super) const RELAY_UNHEARD: &str = "relay/alerts-like";
/// Sizes of a Task and an Alert message as leadrelay publishes them for the generated
/// workload (measured with `mosquitto_sub` on a run: 655–662 and ~333 bytes).
pub(super) const TASK_BYTES: usize = 660;
pub(super) const ALERT_BYTES: usize = 335;

/// Starts the `--relay` stand-in for leadrelay (see [`SimulateArgs::relay`]): its own MQTT
/// connection, subscribed to the sightings before this returns. Returns its client (to
/// disconnect) and its tasks (to stop).
pub(super) async fn start_relay(
    broker: &BrokerAddr,
    run_tag: &str,
    prefix: &str,
) -> anyhow::Result<(AsyncClient, [tokio::task::JoinHandle<()>; 2])> {
    let mut opts = client_options(broker, format!("leadrelay-sim-relay-{run_tag}"));
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(1000);
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    client
        .subscribe(format!("{prefix}sightings/#"), QoS::AtLeastOnce)
        .await
        .map_err(|e| anyhow!("relay: {e}"))?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let (received_tx, mut received) = tokio::sync::mpsc::unbounded_channel::<rumqttc::Publish>();
    // Polling and publishing apart: a publish waits while the client's queue is full, and
    // only polling empties it.
    let poller = tokio::spawn(async move {
        let mut ready = Readiness(Some(ready_tx));
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    ready.connected();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if received_tx.send(p).is_err() {
                        break;
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    ready.failed(&e);
                    break;
                }
            }
        }
    });
    let publisher = client.clone();
    let (heard, unheard) = (
        format!("{prefix}{RELAY_HEARD}"),
        format!("{prefix}{RELAY_UNHEARD}"),
    );
    let forwarder = tokio::spawn(async move {
        while let Some(sighting) = received.recv().await {
            for (topic, size) in [(&heard, TASK_BYTES), (&unheard, ALERT_BYTES)] {
                let body = padded(&sighting.payload, size);
                if publisher
                    .publish(topic.as_str(), QoS::AtLeastOnce, false, body)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    wait_ready(ready_rx, broker, "relay").await?;
    Ok((client, [poller, forwarder]))
}

/// `payload` followed by spaces up to `size` bytes (still the same JSON).
pub(super) fn padded(payload: &[u8], size: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(size.max(payload.len()));
    body.extend_from_slice(payload);
    body.resize(size.max(payload.len()), b' ');
    body
}

/// A connection task's one message to whoever waits for it to connect: connected, or why not.
pub(super) struct Readiness(Option<oneshot::Sender<Result<(), String>>>);

impl Readiness {
    pub(super) fn connected(&mut self) {
        if let Some(waiting) = self.0.take() {
            let _ = waiting.send(Ok(()));
        }
    }

    /// Tells the error to whoever waits; false when nobody does any more (the connection
    /// failed later, during the run).
    pub(super) fn failed(&mut self, e: &impl std::fmt::Display) -> bool {
        match self.0.take() {
            Some(waiting) => {
                let _ = waiting.send(Err(e.to_string()));
                true
            }
            None => false,
        }
    }
}

pub(super) async fn wait_ready(
    ready: oneshot::Receiver<Result<(), String>>,
    broker: &BrokerAddr,
    who: &str,
) -> anyhow::Result<()> {
    let (host, port) = (&broker.host, broker.port);
    match tokio::time::timeout(Duration::from_secs(10), ready).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => bail!(
            "{who}: cannot use the MQTT broker at {host}:{port}: {e} (is it running? `mosquitto -d`)"
        ),
        Ok(Err(_)) => bail!("{who}: the MQTT connection task ended before connecting"),
        Err(_) => bail!("{who}: no answer from the MQTT broker at {host}:{port} within 10 s"),
    }
}

/// Drives the publisher's connection and counts PUBACKs; the first error ends it (a run
/// with a broken connection measures nothing).
pub(super) async fn publisher_loop(
    mut eventloop: EventLoop,
    ready: oneshot::Sender<Result<(), String>>,
    acked: Arc<AtomicU64>,
    last_ack: Arc<AtomicU64>,
    failed: Arc<Mutex<Option<String>>>,
    t0: Instant,
) {
    let mut ready = Readiness(Some(ready));
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                ready.connected();
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked.fetch_add(1, Ordering::AcqRel);
                last_ack.store(t0.elapsed().as_nanos() as u64, Ordering::Release);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if !ready.failed(&e)
                    && let Ok(mut f) = failed.lock()
                {
                    *f = Some(e.to_string());
                }
                return;
            }
        }
    }
}

pub(super) type Subscriber = (
    AsyncClient,
    tokio::task::JoinHandle<Vec<(Duration, Got)>>,
    Arc<AtomicBool>,
);

/// Where the subscriber's receipts go: decoded with `tags`, counted in `progress`, and told
/// to the sampler (`live`) when the run samples by interval.
pub(super) struct Recorders {
    pub(super) tags: Arc<Tags>,
    pub(super) progress: Arc<Progress>,
    pub(super) live: Option<Arc<Live>>,
}

/// Connects, subscribes and waits for the SUBACK, so nothing published after is missed.
pub(super) async fn start_subscriber(
    broker: &BrokerAddr,
    run_tag: &str,
    filters: Vec<String>,
    recorders: Recorders,
    t0: Instant,
) -> anyhow::Result<Subscriber> {
    let Recorders {
        tags,
        progress,
        live,
    } = recorders;
    let mut opts = client_options(broker, format!("leadrelay-sim-sub-{run_tag}"));
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(16 * 1024 * 1024, 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let subs = filters
        .iter()
        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
    client
        .subscribe_many(subs)
        .await
        .map_err(|e| anyhow!("subscriber: {e}"))?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let task = tokio::spawn(async move {
        let mut ready = Readiness(Some(ready_tx));
        let mut receipts = Vec::new();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    ready.connected();
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let at = t0.elapsed();
                    let Some(got) = tags.classify(&p.topic, &p.payload) else {
                        continue;
                    };
                    let sentinel =
                        matches!(got, Got::Task { target: Some(t), .. } if t == tags.sentinel);
                    let delivered = matches!(got, Got::Delivered { .. });
                    if let Some(live) = &live {
                        match got {
                            Got::Task { seq, .. } => live.received(Receipt::Task, seq, at),
                            Got::Update { seq } => live.received(Receipt::Update, seq, at),
                            Got::Dead { .. } | Got::Delivered { .. } => {}
                        }
                    }
                    receipts.push((at, got));
                    progress.received.fetch_add(1, Ordering::AcqRel);
                    progress
                        .last_at
                        .store(at.as_nanos() as u64, Ordering::Release);
                    if sentinel || delivered {
                        progress
                            .done_at
                            .store(at.as_nanos() as u64, Ordering::Release);
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    if stopping.load(Ordering::Acquire) {
                        break;
                    }
                    if !ready.failed(&e)
                        && let Ok(mut f) = progress.failed.lock()
                    {
                        *f = Some(e.to_string());
                    }
                    break;
                }
            }
        }
        receipts
    });
    wait_ready(ready_rx, broker, "subscriber").await?;
    Ok((client, task, stop))
}
