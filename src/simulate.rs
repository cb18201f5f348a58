//! `leadrelay simulate`: a load generator that publishes realistic sightings to a broker and
//! checks what comes back.
//!
//! ```text
//!  workload (seeded) ─► publisher (QoS 1) ─► broker ─► leadrelay ─► broker ─► subscriber
//!        │ ledger: what each sequence number was (miss, hit, duplicate, malformed)    │
//!        └──────────────────────────── check + latency ◄──────── receipts ◄───────────┘
//! ```
//!
//! Every sighting carries its sequence number in its `event_id`, so a task, update or dead
//! letter is traced back to the publish that caused it without any shared state with the
//! service. The subscription is made before the first publish, so nothing is missed.
//!
//! Throughput is measured to a **sentinel**: the last message is the first sighting of a
//! target reserved for it. leadrelay handles one connection's messages in order, so its task
//! arriving means everything before it was handled. With `--baseline` the same messages go
//! through the same broker to a subscriber that only counts (no leadrelay in the path): the
//! broker's own ceiling on this machine, to report leadrelay as a ratio of it.
//!
//! The workload assumes the service's default matching (`0ODQ,1I,2Z,5S,8B,6G`, at most two
//! substitutions): targets are drawn so that no two are fuzzily confusable, and unflagged
//! reads are redrawn when they would fuzzily match a target, so every expected outcome is
//! exact. Runs against the same database need a new `--seed` (the targets would already have
//! open tasks).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use chrono::{SecondsFormat, Utc};
use clap::Args;
use geo::BoundingRect;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;

use crate::config::{BrokerChoice, parse_mqtt_url};
use crate::geodata::GeoData;
use crate::hotlist::{Hotlist, MatchConfig};
use crate::locate::JurisdictionIndex;
use crate::plate::Plate;

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// The broker, `mqtt://host:port`.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt_url: String,
    /// Prefix before every topic (the service's `--topic-prefix`).
    #[arg(long, default_value = "")]
    pub topic_prefix: String,
    /// Sightings per second; 0 publishes as fast as the broker takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Publish for this long (`10s`, `1m`).
    #[arg(long)]
    pub duration: Option<String>,
    /// Publish this many messages (default 100000 when neither this nor --duration is given).
    #[arg(long)]
    pub count: Option<u64>,
    /// Share of messages that are sightings of a flagged target.
    #[arg(long, default_value_t = 0.01)]
    pub hit_ratio: f64,
    /// Size of the generated hotlist.
    #[arg(long, default_value_t = 10_000)]
    pub targets: u32,
    /// Share of hits read with one OCR confusion (0→O, 5→S, 8→B, ...).
    #[arg(long, default_value_t = 0.1)]
    pub fuzzy_ratio: f64,
    /// Share of messages that re-send an earlier sighting with the same (source, event_id).
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_ratio: f64,
    /// Share of messages that are malformed (each must come back as one dead letter).
    #[arg(long, default_value_t = 0.0)]
    pub malformed_ratio: f64,
    /// Share of sightings placed outside every jurisdiction (at sea: routed to the nearest court).
    #[arg(long, default_value_t = 0.0)]
    pub outside_ratio: f64,
    /// Seed of the workload: the same seed publishes the same plates, places and mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The service's HTTP base URL: targets are loaded through it, and its metrics read.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub http: String,
    /// Do not load the generated targets (the service already has them).
    #[arg(long)]
    pub no_load_targets: bool,
    /// Every hit a different target (every hit a new durable task); ends when targets run out.
    #[arg(long)]
    pub unique_hits: bool,
    /// Raw broker mode: the same messages to a subscriber that only counts; no leadrelay.
    #[arg(long)]
    pub baseline: bool,
    /// With `--baseline`: a stand-in for leadrelay in the path that does no work. Each
    /// sighting it receives becomes two publishes, as a new task does in leadrelay: one the
    /// size of a Task, which the subscriber counts, and one the size of an Alert, which nobody
    /// subscribes to. The broker then carries a run of new tasks' traffic, so this is the
    /// ceiling any MQTT service has for durable tasks/s on this broker and machine.
    #[arg(long, requires = "baseline")]
    pub relay: bool,
    /// Only publish (the publisher's own ceiling): no subscriber, no check.
    #[arg(long)]
    pub publish_only: bool,
    /// Number of simulated camera sources.
    #[arg(long, default_value_t = 64)]
    pub sources: u32,
    /// Closed loop: publish at most this many messages that expect a result (hits, malformed)
    /// ahead of the results received; 0 = open loop. A broker queues only so much for a slow
    /// subscriber (Mosquitto: `max_queued_messages`, 1000 by default) and drops the rest, so
    /// an open-loop run faster than the service measures the broker's drops, not the service.
    #[arg(long, default_value_t = 0)]
    pub window: u64,
    /// Most unacknowledged QoS 1 publishes.
    #[arg(long, default_value_t = 1000)]
    pub inflight: u16,
    /// After publishing, give up waiting for results once nothing arrived for this long.
    #[arg(long, default_value = "10s")]
    pub settle: String,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// SplitMix64: tiny, seedable, good enough to draw a workload; no `rand` dependency.
/// (Also the demo's camera feed.)
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// What one published message was, by sequence number.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sent {
    /// An unflagged plate: no effect expected.
    Miss,
    /// A flagged target; the first hit of a target expects a task, later ones an update.
    Hit {
        target: u32,
        outside: bool,
        fuzzy: bool,
    },
    /// A re-send of an earlier message: no effect expected.
    Duplicate,
    /// Expects exactly one dead letter.
    Malformed,
}

/// Issued plate characters: letters and digits without I and O.
const ALNUM: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// Draws targets, places and messages, deterministically from the seed.
struct Workload {
    rng: Rng,
    /// Generated targets' plates; the last one is the sentinel's.
    plates: Vec<Plate>,
    courts: Vec<String>,
    /// The same index the service builds, to keep misses and fuzzy reads unambiguous.
    hotlist: Hotlist<u32>,
    inside: Vec<(f64, f64)>,
    outside: Vec<(f64, f64)>,
    /// Recent valid messages (topic, payload), for duplicates.
    recent: Vec<(String, String)>,
    next_unique: u32,
    run: String,
    prefix: String,
    sources: u32,
    hit_ratio: f64,
    fuzzy_ratio: f64,
    duplicate_ratio: f64,
    malformed_ratio: f64,
    outside_ratio: f64,
    unique_hits: bool,
}

impl Workload {
    fn new(args: &SimulateArgs, run: String) -> anyhow::Result<Workload> {
        let mut rng = Rng(args.seed ^ 0x1EAD_4E1A_7000_0000);
        let index = JurisdictionIndex::new(Arc::new(GeoData::shipped()))
            .context("building the jurisdiction index")?;
        let (inside, outside, courts) = places(&index, &mut rng)?;
        let mut hotlist = Hotlist::new(MatchConfig::default());
        let mut plates = Vec::with_capacity(args.targets as usize + 1);
        while plates.len() <= args.targets as usize {
            let plate = random_plate(&mut rng);
            // Not confusable with any target drawn so far, so every read has one meaning.
            if hotlist.match_plate(&plate).is_none() {
                hotlist.insert_vehicle(plate, plates.len() as u32);
                plates.push(plate);
            }
        }
        Ok(Workload {
            rng,
            plates,
            courts,
            hotlist,
            inside,
            outside,
            recent: Vec::new(),
            next_unique: 0,
            run,
            prefix: args.topic_prefix.clone(),
            sources: args.sources.max(1),
            hit_ratio: args.hit_ratio,
            fuzzy_ratio: args.fuzzy_ratio,
            duplicate_ratio: args.duplicate_ratio,
            malformed_ratio: args.malformed_ratio,
            outside_ratio: args.outside_ratio,
            unique_hits: args.unique_hits,
        })
    }

    /// The sentinel: the target reserved for the last message.
    fn sentinel(&self) -> u32 {
        (self.plates.len() - 1) as u32
    }

    fn target_id(seed: u64, n: u32) -> String {
        format!("sim-{seed}-{n}")
    }

    /// The targets as the contract's Target JSON, each with one case at a Ningbo court.
    fn targets_json(&mut self, seed: u64) -> Vec<serde_json::Value> {
        let mut out = Vec::with_capacity(self.plates.len());
        for (n, plate) in self.plates.iter().enumerate() {
            let court = &self.courts[self.rng.below(self.courts.len() as u64) as usize];
            let id = Self::target_id(seed, n as u32);
            out.push(json!({
                "target_id": id, "kind": "vehicle", "plate": plate.as_str(), "name": "simulated",
                "cases": [{"case_no": format!("(2025)sim执{id}号"), "court_id": court, "filed_on": "2025-01-02"}]
            }));
        }
        out
    }

    /// The next message; `None` when `--unique-hits` ran out of targets.
    fn next(&mut self, seq: u64) -> Option<(String, String, Sent)> {
        if !self.recent.is_empty() && self.rng.chance(self.duplicate_ratio) {
            let (topic, payload) =
                self.recent[self.rng.below(self.recent.len() as u64) as usize].clone();
            return Some((topic, payload, Sent::Duplicate));
        }
        let source = format!("sim-cam-{:03}", self.rng.below(u64::from(self.sources)));
        let topic = format!("{}sightings/{source}", self.prefix);
        let event_id = format!("{}-{seq}", self.run);
        if self.rng.chance(self.malformed_ratio) {
            return Some((topic, self.malformed(&event_id, &source), Sent::Malformed));
        }
        let outside = self.rng.chance(self.outside_ratio);
        let (lon, lat) = if outside {
            self.outside[self.rng.below(self.outside.len() as u64) as usize]
        } else {
            self.inside[self.rng.below(self.inside.len() as u64) as usize]
        };
        let (read, sent) = if self.rng.chance(self.hit_ratio) {
            let target = if self.unique_hits {
                if self.next_unique >= self.sentinel() {
                    return None;
                }
                self.next_unique += 1;
                self.next_unique - 1
            } else {
                self.rng.below(u64::from(self.sentinel())) as u32
            };
            self.hit(target, outside)
        } else {
            (self.miss(), Sent::Miss)
        };
        let payload = sighting(&event_id, &read, lon, lat, &source);
        if self.duplicate_ratio > 0.0 {
            if self.recent.len() < 256 {
                self.recent.push((topic.clone(), payload.clone()));
            } else {
                let slot = self.rng.below(256) as usize;
                self.recent[slot] = (topic.clone(), payload.clone());
            }
        }
        Some((topic, payload, sent))
    }

    /// The sentinel's sighting: the first and only hit of its reserved target, on land.
    fn sentinel_message(&mut self, seq: u64) -> (String, String, Sent) {
        let source = "sim-cam-sentinel";
        let (lon, lat) = self.inside[0];
        let plate = self.plates[self.sentinel() as usize];
        let payload = sighting(
            &format!("{}-{seq}", self.run),
            plate.as_str(),
            lon,
            lat,
            source,
        );
        let sent = Sent::Hit {
            target: self.sentinel(),
            outside: false,
            fuzzy: false,
        };
        (format!("{}sightings/{source}", self.prefix), payload, sent)
    }

    fn hit(&mut self, target: u32, outside: bool) -> (String, Sent) {
        let plate = self.plates[target as usize];
        let fuzzy = self.rng.chance(self.fuzzy_ratio);
        let read = fuzzy
            .then(|| misread(&plate, &mut self.rng))
            .flatten()
            .filter(|read| {
                // Only a misread the service resolves to this very target counts as fuzzy.
                self.hotlist
                    .match_plate(read)
                    .is_some_and(|m| *m.value == target && m.fuzzy)
            });
        let fuzzy = read.is_some();
        let text = read.map_or_else(|| plate.as_str().to_owned(), |r| r.as_str().to_owned());
        (
            text,
            Sent::Hit {
                target,
                outside,
                fuzzy,
            },
        )
    }

    fn miss(&mut self) -> String {
        loop {
            let plate = random_plate(&mut self.rng);
            if self.hotlist.match_plate(&plate).is_none() {
                return plate.as_str().to_owned();
            }
        }
    }

    /// Four kinds of bad input; each still starts with `"event_id"` so its dead letter (which
    /// carries the original payload) can be traced back.
    fn malformed(&mut self, event_id: &str, source: &str) -> String {
        let now = now_rfc3339();
        match self.rng.below(4) {
            0 => format!(
                r#"{{"event_id":"{event_id}","kind":"vehicle","plate":"浙B12","lat":29.87,"lon":121.55,"observed_at":"{now}","source":"{source}"}}"#
            ),
            1 => format!(
                r#"{{"event_id":"{event_id}","kind":"vehicle","plate":"浙B12345","lat":123.0,"lon":121.55,"observed_at":"{now}","source":"{source}"}}"#
            ),
            2 => format!(r#"{{"event_id":"{event_id}","kind":"vehicle","plate":"#),
            _ => format!(
                r#"{{"event_id":"{event_id}","kind":"bicycle","lat":29.87,"lon":121.55,"observed_at":"{now}","source":"{source}"}}"#
            ),
        }
    }
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// A vehicle sighting as a camera would send it (field order fixed: `event_id` first).
fn sighting(event_id: &str, plate: &str, lon: f64, lat: f64, source: &str) -> String {
    format!(
        r#"{{"event_id":"{event_id}","kind":"vehicle","plate":"{plate}","lat":{lat:.6},"lon":{lon:.6},"datum":"wgs84","observed_at":"{}","source":"{source}","confidence":0.9}}"#,
        now_rfc3339()
    )
}

/// A Ningbo plate: 浙B + 5 issued characters, or (one in ten) new-energy 浙B + D/F + 5 digits.
pub(crate) fn random_plate(rng: &mut Rng) -> Plate {
    let mut text = String::from("浙B");
    if rng.below(10) == 0 {
        text.push(if rng.below(2) == 0 { 'D' } else { 'F' });
        for _ in 0..5 {
            text.push(char::from(b'0' + rng.below(10) as u8));
        }
    } else {
        for _ in 0..5 {
            text.push(char::from(ALNUM[rng.below(ALNUM.len() as u64) as usize]));
        }
    }
    Plate::parse(&text).unwrap_or_else(|e| unreachable!("generated plate {text}: {e}"))
}

/// One OCR confusion in the tail (`0`→`O`, `8`→`B`, `B`→`8`, ...), at a position drawn
/// from `rng`, if the plate has a confusable character there.
fn misread(plate: &Plate, rng: &mut Rng) -> Option<Plate> {
    misread_at(plate, |candidates| rng.below(candidates as u64) as usize)
}

/// The plate as OCR might misread it: one confusable character of the tail swapped
/// (`0`→`O`, `8`→`B`, `B`→`8`, ...). `pick` chooses which of the `candidates` positions (its
/// argument, at least 1) to swap; `None` if the tail has no confusable character. Shared
/// with the benchmarks, so they misread plates the way the load generator does.
pub fn misread_at(plate: &Plate, pick: impl FnOnce(usize) -> usize) -> Option<Plate> {
    let chars: Vec<char> = plate.as_str().chars().collect();
    let swaps: Vec<(usize, char)> = chars
        .iter()
        .enumerate()
        .skip(2)
        .filter_map(|(i, &c)| {
            let swap = match c {
                '0' | 'D' | 'Q' => 'O',
                '1' => 'I',
                '2' => 'Z',
                'Z' => '2',
                '5' => 'S',
                'S' => '5',
                '8' => 'B',
                'B' => '8',
                '6' => 'G',
                'G' => '6',
                _ => return None,
            };
            Some((i, swap))
        })
        .collect();
    if swaps.is_empty() {
        return None;
    }
    let (at, swap) = *swaps.get(pick(swaps.len()))?;
    let mut read = chars;
    read[at] = swap;
    Plate::parse(&read.into_iter().collect::<String>()).ok()
}

/// Pools of points (rounded as published, then classified): on land in participating
/// courts' areas, and at sea east of Ningbo (inside no area at all); plus the participating
/// courts that have an area, for the targets' cases.
#[allow(clippy::type_complexity)]
fn places(
    index: &JurisdictionIndex,
    rng: &mut Rng,
) -> anyhow::Result<(Vec<(f64, f64)>, Vec<(f64, f64)>, Vec<String>)> {
    let data = index.data();
    let mut courts: Vec<String> = data
        .jurisdictions
        .iter()
        .filter(|j| data.court(&j.court_id).is_some_and(|c| c.participating))
        .map(|j| j.court_id.clone())
        .collect();
    courts.sort();
    courts.dedup();
    let bounds = data
        .jurisdictions
        .iter()
        .filter(|j| courts.contains(&j.court_id))
        .filter_map(|j| j.area.bounding_rect())
        .reduce(|a, b| {
            geo::Rect::new(
                (a.min().x.min(b.min().x), a.min().y.min(b.min().y)),
                (a.max().x.max(b.max().x), a.max().y.max(b.max().y)),
            )
        })
        .ok_or_else(|| anyhow!("no participating court has an area"))?;
    let round = |v: f64| (v * 1e6).round() / 1e6;
    let mut draw = |min: (f64, f64), max: (f64, f64), keep: &dyn Fn(f64, f64) -> bool| {
        let mut pool = Vec::with_capacity(4096);
        for _ in 0..1_000_000 {
            let lon = round(min.0 + (max.0 - min.0) * rng.unit());
            let lat = round(min.1 + (max.1 - min.1) * rng.unit());
            if keep(lon, lat) {
                pool.push((lon, lat));
                if pool.len() == 4096 {
                    break;
                }
            }
        }
        pool
    };
    let on_land = |lon, lat| {
        index
            .containing_court(lon, lat)
            .is_some_and(|c| index.court(c).participating)
    };
    let at_sea = |lon, lat| index.containing_court(lon, lat).is_none();
    let (min, max) = (bounds.min(), bounds.max());
    let inside = draw((min.x, min.y), (max.x, max.y), &on_land);
    let outside = draw((max.x - 0.2, min.y), (max.x + 0.8, max.y), &at_sea);
    if inside.len() < 4096 || outside.len() < 4096 {
        bail!("could not draw points inside and outside the shipped jurisdictions");
    }
    Ok((inside, outside, courts))
}

/// What the subscriber saw.
#[derive(Debug, Clone)]
enum Got {
    /// A task: its target (ours, by number) and the sequence number of its sighting.
    Task {
        task_id: String,
        target: Option<u32>,
        seq: Option<u64>,
        nearest: bool,
    },
    Update {
        seq: Option<u64>,
    },
    Dead {
        seq: Option<u64>,
    },
    /// Baseline: a sighting delivered by the broker.
    Delivered {
        seq: Option<u64>,
    },
}

#[derive(Deserialize)]
struct TaskMsg {
    #[serde(default)]
    task_id: String,
    target_id: String,
    routing: Option<String>,
    sighting: Option<SightingRefMsg>,
}

#[derive(Deserialize)]
struct UpdateMsg {
    sighting: Option<SightingRefMsg>,
}

#[derive(Deserialize)]
struct SightingRefMsg {
    event_id: String,
}

#[derive(Deserialize)]
struct DeadMsg {
    payload: Option<String>,
}

/// Shared between the subscriber and the waiting loop.
#[derive(Default)]
struct Progress {
    received: AtomicU64,
    /// Nanoseconds after the start when the sentinel's task (or the last delivery) arrived.
    done_at: AtomicU64,
    /// Nanoseconds after the start of the last receipt of any kind.
    last_at: AtomicU64,
    failed: Mutex<Option<String>>,
}

/// Decodes receipts; knows this run's tags.
struct Tags {
    run: String,
    target_prefix: String,
    sentinel: u32,
}

impl Tags {
    fn seq(&self, event_id: &str) -> Option<u64> {
        event_id
            .strip_prefix(self.run.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    /// The event id at the start of a raw sighting payload (ours always put it first).
    fn seq_in_payload(&self, payload: &str) -> Option<u64> {
        let rest = payload.strip_prefix("{\"event_id\":\"")?;
        self.seq(&rest[..rest.find('"')?])
    }

    fn classify(&self, topic: &str, payload: &[u8]) -> Option<Got> {
        if topic.ends_with("/tasks") {
            let t: TaskMsg = serde_json::from_slice(payload).ok()?;
            Some(Got::Task {
                task_id: t.task_id.clone(),
                target: t
                    .target_id
                    .strip_prefix(self.target_prefix.as_str())
                    .and_then(|n| n.parse().ok()),
                seq: t.sighting.and_then(|s| self.seq(&s.event_id)),
                nearest: t.routing.as_deref() == Some("nearest_court"),
            })
        } else if topic.ends_with("/updates") {
            let u: UpdateMsg = serde_json::from_slice(payload).ok()?;
            Some(Got::Update {
                seq: u.sighting.and_then(|s| self.seq(&s.event_id)),
            })
        } else if topic.ends_with("deadletter/sightings") {
            let d: DeadMsg = serde_json::from_slice(payload).ok()?;
            Some(Got::Dead {
                seq: d.payload.and_then(|p| self.seq_in_payload(&p)),
            })
        } else {
            let text = std::str::from_utf8(payload).ok()?;
            Some(Got::Delivered {
                seq: self.seq_in_payload(text),
            })
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(mut ms: Vec<f64>) -> Latency {
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
        Latency {
            samples: ms.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Expected against received, per kind of outcome.
#[derive(Debug, Default, Serialize)]
pub struct Tally {
    pub expected: u64,
    pub received: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub unexpected: u64,
}

impl Tally {
    fn ok(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && self.unexpected == 0
    }

    /// `counts[seq]` = receipts per sequence number; `expected(seq)` says which should get one.
    fn of(counts: &[u32], extra: u64, expected: impl Fn(usize) -> bool) -> Tally {
        let mut t = Tally {
            unexpected: extra,
            ..Tally::default()
        };
        for (seq, &n) in counts.iter().enumerate() {
            t.received += u64::from(n);
            if expected(seq) {
                t.expected += 1;
                match n {
                    0 => t.missing += 1,
                    n => t.duplicated += u64::from(n - 1),
                }
            } else {
                t.unexpected += u64::from(n);
            }
        }
        t.received += extra;
        t
    }
}

/// The run's figures.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub sent: u64,
    pub misses: u64,
    pub hits: u64,
    pub fuzzy_hits: u64,
    pub outside_hits: u64,
    pub distinct_targets_hit: u64,
    pub duplicates: u64,
    pub malformed: u64,
    /// Until the broker acknowledged the last publish.
    pub publish_secs: f64,
    pub publish_rate: f64,
    /// Until the sentinel's task (leadrelay) or the last delivery (baseline) arrived.
    pub e2e_secs: f64,
    /// Messages handled per second end to end (by the service, or delivered by the broker).
    pub throughput: f64,
    /// Sightings the service counted (received + rejected) during the run, from /metrics.
    pub service_processed: Option<u64>,
    /// Sent but never handled: dropped on the way (e.g. a broker queue limit).
    pub lost_before_service: Option<u64>,
    pub tasks: Tally,
    pub updates: Tally,
    pub dead_letters: Tally,
    pub delivered: Tally,
    pub nearest_court_tasks: u64,
    pub expected_nearest_court_tasks: u64,
    /// Tasks received again under a known task id: moved to another court (reassignment).
    pub reassigned: u64,
    /// Messages under the prefix that were not from this run.
    pub foreign: u64,
    /// Publish → task receipt (leadrelay), publish → delivery (baseline).
    pub latency: Latency,
    pub sentinel_seen: bool,
    pub ok: bool,
}

/// Runs the generator; `Ok(false)` when the check found a discrepancy.
pub async fn run(args: SimulateArgs) -> anyhow::Result<bool> {
    validate(&args)?;
    let (host, port) = match parse_mqtt_url(&args.mqtt_url)? {
        BrokerChoice::External { host, port } => (host, port),
        BrokerChoice::Embedded(_) => bail!("--mqtt-url must name a broker"),
    };
    let duration = args
        .duration
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| anyhow!("--duration: {e}"))?;
    let settle = humantime::parse_duration(&args.settle).map_err(|e| anyhow!("--settle: {e}"))?;
    let count = match (args.count, duration) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(100_000),
    };
    // Event ids must be new to the service's de-duplication on every run, even with the same seed.
    let run_tag = format!("r{:x}", Utc::now().timestamp_millis());
    let mut workload = Workload::new(&args, run_tag.clone())?;
    let leadrelay = !args.baseline && !args.publish_only;
    let mut processed_before = None;
    if leadrelay {
        if !args.no_load_targets {
            let started = Instant::now();
            let targets = workload.targets_json(args.seed);
            let loaded = targets.len();
            let base = args.http.clone();
            tokio::task::spawn_blocking(move || load_targets(&base, targets))
                .await
                .context("loading targets")??;
            eprintln!(
                "loaded {loaded} targets through {} in {:.1?}",
                args.http,
                started.elapsed()
            );
        }
        processed_before = service_processed(&args.http).await;
    }
    let tags = Arc::new(Tags {
        run: run_tag.clone(),
        target_prefix: format!("sim-{}-", args.seed),
        sentinel: workload.sentinel(),
    });
    let progress = Arc::new(Progress::default());
    let t0 = Instant::now();
    let prefix = &args.topic_prefix;
    let subscriber = if args.publish_only {
        None
    } else {
        let filters: Vec<String> = if args.relay {
            vec![format!("{prefix}{RELAY_HEARD}")]
        } else if args.baseline {
            vec![format!("{prefix}sightings/#")]
        } else {
            [
                "dispatch/+/tasks",
                "dispatch/+/updates",
                "deadletter/sightings",
            ]
            .iter()
            .map(|f| format!("{prefix}{f}"))
            .collect()
        };
        Some(
            start_subscriber(
                &host,
                port,
                &run_tag,
                filters,
                tags.clone(),
                progress.clone(),
                t0,
            )
            .await?,
        )
    };

    let relay = if args.relay {
        Some(start_relay(&host, port, &run_tag, prefix).await?)
    } else {
        None
    };

    // Publish.
    let mut opts = MqttOptions::new(format!("leadrelay-sim-pub-{run_tag}"), host.clone(), port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(args.inflight);
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, eventloop) = AsyncClient::new(opts, 10_000);
    let acked = Arc::new(AtomicU64::new(0));
    let last_ack = Arc::new(AtomicU64::new(0));
    let pub_failed = Arc::new(Mutex::new(None::<String>));
    let (ready_tx, ready_rx) = oneshot::channel();
    let pub_loop = tokio::spawn(publisher_loop(
        eventloop,
        ready_tx,
        acked.clone(),
        last_ack.clone(),
        pub_failed.clone(),
        t0,
    ));
    wait_ready(ready_rx, &host, port, "publisher").await?;
    let mut ledger: Vec<Sent> = Vec::new();
    let mut sent_at: Vec<Duration> = Vec::new();
    let started = Instant::now();
    let mut outstanding = 0u64;
    loop {
        let seq = ledger.len() as u64;
        if count.is_some_and(|n| seq >= n) || duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(seq as f64 / args.rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if args.window > 0 && !args.publish_only {
            while outstanding - progress.received.load(Ordering::Acquire) > args.window {
                if let Some(e) = progress.failed.lock().map(|f| f.clone()).unwrap_or(None) {
                    bail!("subscriber: {e}");
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        let Some((topic, payload, sent)) = workload.next(seq) else {
            break;
        };
        let expects = match sent {
            Sent::Hit { .. } | Sent::Malformed => true,
            Sent::Miss | Sent::Duplicate => args.baseline,
        };
        outstanding += u64::from(expects);
        // Stamped before the publish: its receipt may be seen before this task runs again.
        let at = t0.elapsed();
        publish(&client, topic, payload, &pub_failed).await?;
        sent_at.push(at);
        ledger.push(sent);
    }
    let seq = ledger.len() as u64;
    let (topic, payload, sent) = workload.sentinel_message(seq);
    let at = t0.elapsed();
    publish(&client, topic, payload, &pub_failed).await?;
    sent_at.push(at);
    ledger.push(sent);
    let total = ledger.len() as u64;
    while acked.load(Ordering::Acquire) < total {
        if let Some(e) = pub_failed.lock().map(|f| f.clone()).unwrap_or(None) {
            bail!("publisher: {e}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let publish_secs = Duration::from_nanos(last_ack.load(Ordering::Acquire)).as_secs_f64()
        - sent_at[0].as_secs_f64();
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), pub_loop).await;

    // Wait for the results: all expected ones, or until nothing arrives for `settle`.
    let expected = expected_receipts(&ledger, args.baseline);
    let mut receipts = Vec::new();
    if let Some((sub_client, sub_task, stop)) = subscriber {
        let mut last = (progress.received.load(Ordering::Acquire), Instant::now());
        loop {
            let now = progress.received.load(Ordering::Acquire);
            if now != last.0 {
                last = (now, Instant::now());
            }
            let done = progress.done_at.load(Ordering::Acquire) > 0;
            if (done && now >= expected) || last.1.elapsed() >= settle {
                break;
            }
            if let Some(e) = progress.failed.lock().map(|f| f.clone()).unwrap_or(None) {
                bail!("subscriber: {e}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A little longer, to see anything extra (a duplicate task would come right after).
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Release);
        let _ = sub_client.disconnect().await;
        receipts = tokio::time::timeout(Duration::from_secs(5), sub_task)
            .await
            .map_err(|_| anyhow!("subscriber did not stop"))?
            .map_err(|e| anyhow!("subscriber task failed: {e}"))?;
    }
    if let Some((relay_client, relay_tasks)) = relay {
        let _ = relay_client.disconnect().await;
        for task in relay_tasks {
            task.abort();
        }
    }
    let processed = match processed_before {
        Some(before) => service_processed(&args.http)
            .await
            .map(|after| after - before),
        None => None,
    };

    let mut report = analyse(&ledger, &sent_at, &receipts, &progress, args.baseline);
    report.mode = if args.publish_only {
        "publish-only"
    } else if args.relay {
        "relay-baseline"
    } else if args.baseline {
        "baseline"
    } else {
        "leadrelay"
    };
    report.publish_secs = publish_secs;
    report.publish_rate = total as f64 / publish_secs.max(1e-9);
    if args.publish_only {
        report = Report {
            mode: report.mode,
            sent: report.sent,
            misses: report.misses,
            hits: report.hits,
            fuzzy_hits: report.fuzzy_hits,
            duplicates: report.duplicates,
            malformed: report.malformed,
            publish_secs,
            publish_rate: report.publish_rate,
            ok: true,
            ..Report::default()
        };
        report.e2e_secs = publish_secs;
        report.throughput = report.publish_rate;
    } else if leadrelay {
        report.service_processed = processed;
        report.lost_before_service = processed.map(|p| total.saturating_sub(p));
        // What the service handled, not what was offered: dropped messages do not count.
        let handled = processed.unwrap_or(total).min(total);
        report.throughput = handled as f64 / report.e2e_secs.max(1e-9);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report, &args);
    }
    Ok(report.ok)
}

fn validate(args: &SimulateArgs) -> anyhow::Result<()> {
    for (name, v) in [
        ("--hit-ratio", args.hit_ratio),
        ("--fuzzy-ratio", args.fuzzy_ratio),
        ("--duplicate-ratio", args.duplicate_ratio),
        ("--malformed-ratio", args.malformed_ratio),
        ("--outside-ratio", args.outside_ratio),
    ] {
        if !(0.0..=1.0).contains(&v) {
            bail!("{name} must be between 0 and 1, not {v}");
        }
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!("--rate must be 0 (as fast as possible) or a positive number");
    }
    if args.targets == 0 {
        bail!("--targets must be at least 1");
    }
    if args.baseline && args.publish_only {
        bail!("--baseline and --publish-only exclude each other");
    }
    Ok(())
}

/// How many receipts a complete run produces.
fn expected_receipts(ledger: &[Sent], baseline: bool) -> u64 {
    if baseline {
        return ledger.len() as u64;
    }
    ledger
        .iter()
        .filter(|s| matches!(s, Sent::Hit { .. } | Sent::Malformed))
        .count() as u64
}

async fn publish(
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
const RELAY_HEARD: &str = "relay/tasks-like";
const RELAY_UNHEARD: &str = "relay/alerts-like";
/// Sizes of a Task and an Alert message as leadrelay publishes them for the generated
/// workload (measured with `mosquitto_sub` on a run: 655–662 and ~333 bytes).
const TASK_BYTES: usize = 660;
const ALERT_BYTES: usize = 335;

/// Starts the `--relay` stand-in for leadrelay (see [`SimulateArgs::relay`]): its own MQTT
/// connection, subscribed to the sightings before this returns. Returns its client (to
/// disconnect) and its tasks (to stop).
async fn start_relay(
    host: &str,
    port: u16,
    run_tag: &str,
    prefix: &str,
) -> anyhow::Result<(AsyncClient, [tokio::task::JoinHandle<()>; 2])> {
    let mut opts = MqttOptions::new(format!("leadrelay-sim-relay-{run_tag}"), host, port);
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
    wait_ready(ready_rx, host, port, "relay").await?;
    Ok((client, [poller, forwarder]))
}

/// `payload` followed by spaces up to `size` bytes (still the same JSON).
fn padded(payload: &[u8], size: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(size.max(payload.len()));
    body.extend_from_slice(payload);
    body.resize(size.max(payload.len()), b' ');
    body
}

/// A connection task's one message to whoever waits for it to connect: connected, or why not.
struct Readiness(Option<oneshot::Sender<Result<(), String>>>);

impl Readiness {
    fn connected(&mut self) {
        if let Some(waiting) = self.0.take() {
            let _ = waiting.send(Ok(()));
        }
    }

    /// Tells the error to whoever waits; false when nobody does any more (the connection
    /// failed later, during the run).
    fn failed(&mut self, e: &impl std::fmt::Display) -> bool {
        match self.0.take() {
            Some(waiting) => {
                let _ = waiting.send(Err(e.to_string()));
                true
            }
            None => false,
        }
    }
}

async fn wait_ready(
    ready: oneshot::Receiver<Result<(), String>>,
    host: &str,
    port: u16,
    who: &str,
) -> anyhow::Result<()> {
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
async fn publisher_loop(
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

type Subscriber = (
    AsyncClient,
    tokio::task::JoinHandle<Vec<(Duration, Got)>>,
    Arc<AtomicBool>,
);

/// Connects, subscribes and waits for the SUBACK, so nothing published after is missed.
async fn start_subscriber(
    host: &str,
    port: u16,
    run_tag: &str,
    filters: Vec<String>,
    tags: Arc<Tags>,
    progress: Arc<Progress>,
    t0: Instant,
) -> anyhow::Result<Subscriber> {
    let mut opts = MqttOptions::new(format!("leadrelay-sim-sub-{run_tag}"), host, port);
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
    wait_ready(ready_rx, host, port, "subscriber").await?;
    Ok((client, task, stop))
}

/// Compares receipts with the ledger.
fn analyse(
    ledger: &[Sent],
    sent_at: &[Duration],
    receipts: &[(Duration, Got)],
    progress: &Progress,
    baseline: bool,
) -> Report {
    let mut r = Report {
        sent: ledger.len() as u64,
        ..Report::default()
    };
    // Which hits are the first of their target: those expect a task, the rest an update.
    let mut first_hit = vec![false; ledger.len()];
    let mut seen_targets = std::collections::HashSet::new();
    for (seq, s) in ledger.iter().enumerate() {
        match *s {
            Sent::Miss => r.misses += 1,
            Sent::Duplicate => r.duplicates += 1,
            Sent::Malformed => r.malformed += 1,
            Sent::Hit {
                target,
                outside,
                fuzzy,
            } => {
                r.hits += 1;
                r.fuzzy_hits += u64::from(fuzzy);
                r.outside_hits += u64::from(outside);
                if seen_targets.insert(target) {
                    first_hit[seq] = true;
                    r.expected_nearest_court_tasks += u64::from(outside);
                }
            }
        }
    }
    r.distinct_targets_hit = seen_targets.len() as u64;
    let (mut tasks, mut updates, mut dead, mut delivered) = (
        vec![0u32; ledger.len()],
        vec![0u32; ledger.len()],
        vec![0u32; ledger.len()],
        vec![0u32; ledger.len()],
    );
    let (mut extra_tasks, mut extra_updates, mut extra_dead) = (0, 0, 0);
    // task id → the sighting (sequence number) it first came with.
    let mut seen_tasks: std::collections::HashMap<String, Option<u64>> =
        std::collections::HashMap::new();
    let mut latency = Vec::new();
    let ours = |seq: Option<u64>| seq.map(|s| s as usize).filter(|&s| s < ledger.len());
    for (at, got) in receipts {
        let at = *at;
        // The same task again for a later sighting: it moved to the court where the target
        // stayed (issue 4's reassignment), not a second task. The same task for the same
        // sighting is a duplicate, counted as such below.
        if let Got::Task { task_id, seq, .. } = got {
            match seen_tasks.get(task_id) {
                Some(first) if first != seq => {
                    r.reassigned += 1;
                    continue;
                }
                Some(_) => {}
                None => {
                    seen_tasks.insert(task_id.clone(), *seq);
                }
            }
        }
        match got.clone() {
            Got::Task {
                target,
                seq,
                nearest,
                ..
            } => match (ours(seq), target) {
                (Some(seq), Some(target)) => {
                    let right = matches!(ledger[seq], Sent::Hit { target: t, .. } if t == target);
                    if right {
                        tasks[seq] += 1;
                        if tasks[seq] == 1 && first_hit[seq] {
                            latency.push(at.saturating_sub(sent_at[seq]).as_secs_f64() * 1e3);
                            r.nearest_court_tasks += u64::from(nearest);
                        }
                    } else {
                        extra_tasks += 1;
                    }
                }
                (None, Some(_)) | (Some(_), None) => extra_tasks += 1,
                (None, None) => r.foreign += 1,
            },
            Got::Update { seq } => match ours(seq) {
                Some(seq) => updates[seq] += 1,
                None if seq.is_some() => extra_updates += 1,
                None => r.foreign += 1,
            },
            Got::Dead { seq } => match ours(seq) {
                Some(seq) => dead[seq] += 1,
                None if seq.is_some() => extra_dead += 1,
                None => r.foreign += 1,
            },
            Got::Delivered { seq } => match ours(seq) {
                Some(seq) => {
                    delivered[seq] += 1;
                    if delivered[seq] == 1 {
                        latency.push(at.saturating_sub(sent_at[seq]).as_secs_f64() * 1e3);
                    }
                }
                None => r.foreign += 1,
            },
        }
    }
    let mut done_at = Duration::from_nanos(progress.done_at.load(Ordering::Acquire));
    r.sentinel_seen = done_at > Duration::ZERO;
    if !r.sentinel_seen {
        // The sentinel was lost: the last result is the best end we have.
        done_at = Duration::from_nanos(progress.last_at.load(Ordering::Acquire));
    }
    let start = sent_at.first().copied().unwrap_or_default();
    r.e2e_secs = done_at.saturating_sub(start).as_secs_f64();
    r.latency = Latency::of(latency);
    if baseline {
        // Re-sent messages are delivered again, under their original's sequence number.
        let delivered_total: u64 = delivered.iter().map(|&n| u64::from(n)).sum();
        r.delivered = Tally {
            expected: r.sent,
            received: delivered_total,
            missing: r.sent.saturating_sub(delivered_total),
            ..Tally::default()
        };
        r.throughput = delivered_total as f64 / r.e2e_secs.max(1e-9);
        r.ok = r.delivered.missing == 0 && delivered_total == r.sent;
        return r;
    }
    r.tasks = Tally::of(&tasks, extra_tasks, |seq| first_hit[seq]);
    r.updates = Tally::of(&updates, extra_updates, |seq| {
        matches!(ledger[seq], Sent::Hit { .. }) && !first_hit[seq]
    });
    r.dead_letters = Tally::of(&dead, extra_dead, |seq| ledger[seq] == Sent::Malformed);
    r.ok = r.tasks.ok()
        && r.updates.ok()
        && r.dead_letters.ok()
        && r.sentinel_seen
        && r.nearest_court_tasks == r.expected_nearest_court_tasks;
    r
}

fn print_table(r: &Report, args: &SimulateArgs) {
    let rate = if args.rate > 0.0 {
        format!("{} msg/s", args.rate)
    } else {
        "max".into()
    };
    println!(
        "leadrelay simulate: {} mode, rate {rate}, seed {}",
        r.mode, args.seed
    );
    println!(
        "  sent            {:>10}  (misses {}, hits {} [fuzzy {}, outside {}, {} targets], duplicates {}, malformed {})",
        r.sent,
        r.misses,
        r.hits,
        r.fuzzy_hits,
        r.outside_hits,
        r.distinct_targets_hit,
        r.duplicates,
        r.malformed
    );
    println!(
        "  publish         {:>10.0} msg/s  ({:.2} s to the last PUBACK)",
        r.publish_rate, r.publish_secs
    );
    println!(
        "  end to end      {:>10.0} msg/s  ({:.2} s to the {})",
        r.throughput,
        r.e2e_secs,
        if r.mode == "leadrelay" {
            "sentinel's task"
        } else {
            "last delivery"
        }
    );
    if let (Some(p), Some(lost)) = (r.service_processed, r.lost_before_service) {
        println!("  service handled {p:>10}  (lost before the service: {lost})");
    }
    let row = |name: &str, t: &Tally| {
        println!(
            "  {name:<15} {:>10}  expected {}, missing {}, duplicated {}, unexpected {}",
            t.received, t.expected, t.missing, t.duplicated, t.unexpected
        )
    };
    if r.mode == "baseline" {
        row("delivered", &r.delivered);
    } else if r.mode == "leadrelay" {
        row("tasks", &r.tasks);
        row("updates", &r.updates);
        row("dead letters", &r.dead_letters);
        println!(
            "  nearest_court   {:>10}  expected {}",
            r.nearest_court_tasks, r.expected_nearest_court_tasks
        );
        println!(
            "  reassigned      {:>10}  (a task moved to the court where its target stayed)",
            r.reassigned
        );
    }
    if r.foreign > 0 {
        println!(
            "  foreign         {:>10}  (not from this run; ignored)",
            r.foreign
        );
    }
    let l = &r.latency;
    println!(
        "  latency (ms)    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  over {} {}",
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.max_ms,
        l.samples,
        if r.mode == "leadrelay" {
            "tasks"
        } else {
            "deliveries"
        }
    );
    println!("  result          {}", if r.ok { "OK" } else { "FAILED" });
}

/// `http://host:port` → `host:port`.
fn http_authority(base: &str) -> anyhow::Result<&str> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--http {base:?}: expected http://host:port"))?;
    Ok(rest.trim_end_matches('/'))
}

/// A minimal HTTP/1.1 exchange over a fresh connection (no HTTP client dependency needed
/// for two calls); returns the status and body.
fn http(base: &str, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    let authority = http_authority(base)?;
    let mut stream = std::net::TcpStream::connect(authority)
        .with_context(|| format!("cannot reach the service's HTTP API at {base}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{base}{path}: not an HTTP response"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// Loads the targets through `POST /api/v1/targets:batch`, in chunks.
fn load_targets(base: &str, targets: Vec<serde_json::Value>) -> anyhow::Result<()> {
    for chunk in targets.chunks(2_000) {
        let body = serde_json::to_vec(chunk)?;
        let (status, text) = http(base, "POST", "/api/v1/targets:batch", &body)?;
        if status != 200 {
            bail!("POST {base}/api/v1/targets:batch: HTTP {status}: {text}");
        }
    }
    Ok(())
}

/// Sightings the service has handled so far (decoded + rejected), from its /metrics.
async fn service_processed(base: &str) -> Option<u64> {
    let base = base.to_string();
    let (status, text) = tokio::task::spawn_blocking(move || http(&base, "GET", "/metrics", b""))
        .await
        .ok()?
        .ok()?;
    if status != 200 {
        return None;
    }
    let total = text
        .lines()
        .filter(|l| {
            l.starts_with("leadrelay_sightings_received_total")
                || l.starts_with("leadrelay_sightings_rejected_total")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rng_is_deterministic() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        assert!((0..100).all(|_| a.next() == b.next()));
        assert!((0..1000).all(|_| (0.0..1.0).contains(&a.unit())));
    }

    #[test]
    fn plates_are_ningbo_plates() {
        let mut rng = Rng(1);
        for _ in 0..1000 {
            let p = random_plate(&mut rng);
            assert!(p.as_str().starts_with("浙B"));
            assert!(!p.as_str()[3..].contains(['I', 'O']));
        }
    }

    #[test]
    fn a_misread_is_one_confusion_away() {
        let mut rng = Rng(3);
        let plate = Plate::parse("浙B12345").unwrap();
        let read = misread(&plate, &mut rng).unwrap();
        assert_ne!(read, plate);
        let diff = read
            .as_str()
            .chars()
            .zip(plate.as_str().chars())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(diff, 1);
    }

    #[test]
    fn receipts_trace_back_to_their_sequence_number() {
        let tags = Tags {
            run: "r1".into(),
            target_prefix: "sim-1-".into(),
            sentinel: 9,
        };
        let payload = sighting("r1-42", "浙B12345", 121.5, 29.8, "cam");
        assert_eq!(tags.seq_in_payload(&payload), Some(42));
        let dead = json!({"reason": "invalid_plate", "payload": payload}).to_string();
        assert!(matches!(
            tags.classify("p/deadletter/sightings", dead.as_bytes()),
            Some(Got::Dead { seq: Some(42) })
        ));
        let task = json!({"target_id": "sim-1-3", "routing": "nearest_court", "sighting": {"event_id": "r1-7"}});
        assert!(matches!(
            tags.classify("dispatch/cixi/tasks", task.to_string().as_bytes()),
            Some(Got::Task {
                target: Some(3),
                seq: Some(7),
                nearest: true,
                ..
            })
        ));
    }

    #[test]
    fn the_check_finds_missing_duplicated_and_extra_tasks() {
        let ledger = [
            Sent::Hit {
                target: 0,
                outside: false,
                fuzzy: false,
            },
            Sent::Hit {
                target: 0,
                outside: false,
                fuzzy: false,
            },
            Sent::Hit {
                target: 1,
                outside: false,
                fuzzy: false,
            },
            Sent::Malformed,
        ];
        let at = vec![Duration::from_millis(1); 4];
        let task = |target, seq| Got::Task {
            task_id: format!("task-{target}"),
            target: Some(target),
            seq: Some(seq),
            nearest: false,
        };
        let receipts = [
            (Duration::from_millis(3), task(0, 0)),
            (Duration::from_millis(4), task(0, 0)),
            (Duration::from_millis(5), Got::Update { seq: Some(1) }),
            (Duration::from_millis(6), task(1, 1)),
        ];
        let progress = Progress::default();
        progress.done_at.store(1, Ordering::Release);
        let r = analyse(&ledger, &at, &receipts, &progress, false);
        assert_eq!(
            (
                r.tasks.expected,
                r.tasks.duplicated,
                r.tasks.missing,
                r.tasks.unexpected
            ),
            (2, 1, 1, 1)
        );
        assert!(r.updates.ok());
        assert_eq!(r.dead_letters.missing, 1);
        assert!(!r.ok);
        assert_eq!(r.latency.samples, 1);
    }

    #[test]
    fn a_receipt_stamped_before_its_send_counts_with_zero_latency() {
        // On a busy machine the subscriber can stamp a delivery before the publisher's
        // stamp of the same message; that once panicked on Duration subtraction.
        let ledger = [Sent::Miss];
        let sent_at = [Duration::from_millis(5)];
        let receipts = [(Duration::from_millis(4), Got::Delivered { seq: Some(0) })];
        let progress = Progress::default();
        progress.done_at.store(4_000_000, Ordering::Release);
        let r = analyse(&ledger, &sent_at, &receipts, &progress, true);
        assert!(r.ok);
        assert_eq!((r.latency.samples, r.latency.max_ms), (1, 0.0));
    }

    #[test]
    fn workload_is_reproducible_and_unambiguous() {
        let args = SimulateArgs {
            mqtt_url: String::new(),
            topic_prefix: "p/".into(),
            rate: 0.0,
            duration: None,
            count: None,
            hit_ratio: 0.5,
            targets: 200,
            fuzzy_ratio: 0.5,
            duplicate_ratio: 0.1,
            malformed_ratio: 0.1,
            outside_ratio: 0.2,
            seed: 5,
            http: String::new(),
            no_load_targets: true,
            unique_hits: false,
            baseline: false,
            relay: false,
            publish_only: false,
            sources: 4,
            inflight: 10,
            settle: "1s".into(),
            window: 0,
            json: false,
        };
        let mut a = Workload::new(&args, "r".into()).unwrap();
        let mut b = Workload::new(&args, "r".into()).unwrap();
        for seq in 0..500 {
            let (ta, pa, sa) = a.next(seq).unwrap();
            let (tb, pb, sb) = b.next(seq).unwrap();
            assert_eq!((ta, sa), (tb, sb));
            // Payloads differ only in observed_at.
            assert_eq!(
                pa.split("observed_at").next(),
                pb.split("observed_at").next()
            );
            if let Sent::Hit { target, .. } = sa {
                let plate: serde_json::Value = serde_json::from_str(&pa).unwrap();
                let read = Plate::parse(plate["plate"].as_str().unwrap()).unwrap();
                assert_eq!(*a.hotlist.match_plate(&read).unwrap().value, target);
            }
        }
    }
}
