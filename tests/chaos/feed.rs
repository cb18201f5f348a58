//! The workload (flagged targets, a stream of sightings) and the publisher that sends it the
//! way a camera gateway would: QoS 1 on a persistent session, so what the broker has not
//! acknowledged is sent again after a reconnect.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

use crate::common::{CIXI, unique, vehicle_sighting, vehicle_target};

/// SplitMix64: a seeded generator, so a failing run can be replayed from its printed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// How much one scenario sends.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub targets: usize,
    pub sightings: usize,
    /// Percent of the sightings that read a flagged plate.
    pub hit_percent: u64,
    /// Pause between two sightings: the stream lasts `sightings × spacing`.
    pub spacing: Duration,
}

impl Workload {
    pub fn duration(&self) -> Duration {
        self.spacing * self.sightings as u32
    }
}

/// What a scenario sends and what it must find afterwards.
pub struct Plan {
    pub targets: Vec<Value>,
    /// `(event_id, plate)` in sending order.
    pub sightings: Vec<(String, String)>,
    /// Hit sightings.
    pub hits: usize,
    /// The flagged targets at least one sighting read: each must end with one open task.
    pub hit_targets: BTreeSet<String>,
}

/// Flagged cars of Yuyao's court (plates 浙B4xxxx); every sighting is in Cixi. Unflagged
/// plates (沪KHJ…) differ from every flagged one in at least four characters, beyond the
/// fuzzy matcher's two substitutions.
pub fn plan(workload: &Workload, rng: &mut Rng) -> Plan {
    let target = |i: usize| (format!("C-{i}"), format!("浙B{:05}", 40_000 + i));
    let targets = (0..workload.targets)
        .map(|i| {
            let (id, plate) = target(i);
            vehicle_target(&id, &plate, "yuyao")
        })
        .collect();
    let run = unique("e");
    let mut sightings = Vec::with_capacity(workload.sightings);
    let mut hit_targets = BTreeSet::new();
    let mut hits = 0;
    for n in 0..workload.sightings {
        let event_id = format!("{run}-{n}");
        let plate = if rng.below(100) < workload.hit_percent {
            let (id, plate) = target(rng.below(workload.targets as u64) as usize);
            hit_targets.insert(id);
            hits += 1;
            plate
        } else {
            format!("沪KHJ{:03}", rng.below(1000))
        };
        sightings.push((event_id, plate));
    }
    Plan {
        targets,
        sightings,
        hits,
        hit_targets,
    }
}

/// The camera side: one persistent QoS 1 session publishing on `sightings/cam`.
pub struct Feed {
    client: AsyncClient,
    topic: String,
    sent: usize,
    acked: Arc<AtomicUsize>,
    events: tokio::task::JoinHandle<()>,
}

impl Feed {
    pub async fn connect(broker: SocketAddr, prefix: &str) -> Feed {
        let mut opts = MqttOptions::new(unique("chaos-feed-"), "127.0.0.1", broker.port());
        opts.set_clean_session(false);
        opts.set_inflight(100);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 100_000);
        let acked = Arc::new(AtomicUsize::new(0));
        let counted = acked.clone();
        let events = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    // Reconnect back-off (the broker is restarting); unacknowledged
                    // publishes are kept and sent again on the next connection.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Feed {
            client,
            topic: format!("{prefix}sightings/cam"),
            sent: 0,
            acked,
            events,
        }
    }

    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Sends the plan's sightings `spacing` apart, each stamped with the time it is sent.
    pub async fn stream(mut self, sightings: Vec<(String, String)>, spacing: Duration) -> Feed {
        let start = Instant::now();
        for (n, (event_id, plate)) in sightings.iter().enumerate() {
            let body = vehicle_sighting(event_id, "cam", plate, CIXI.0, CIXI.1);
            self.client
                .publish(&self.topic, QoS::AtLeastOnce, false, body.to_string())
                .await
                .expect("publish queued");
            self.sent += 1;
            let next = start + spacing * (n as u32 + 1);
            // The stream's pace: sightings spread over time so faults land mid-stream.
            tokio::time::sleep_until(next.into()).await;
        }
        self
    }

    /// Waits until the broker has acknowledged every sighting sent; false if it has not
    /// within `within`.
    pub async fn wait_acked(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.acked.load(Ordering::SeqCst) < self.sent {
            if Instant::now() > deadline {
                return false;
            }
            // Polling the count of PUBACKs the event loop has seen.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.events.abort();
    }
}
