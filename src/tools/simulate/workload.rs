//! The workload: seeded targets, places and messages, and the ledger of what each was.

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use chrono::SecondsFormat;
use geo::BoundingRect;
use serde_json::json;

use crate::clock::Clock;
use crate::contract::plate::Plate;
use crate::geo::geodata::GeoData;
use crate::geo::locate::JurisdictionIndex;
use crate::matching::hotlist::{Hotlist, MatchConfig};

use super::SimulateArgs;

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

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// What one published message was, by sequence number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Sent {
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
pub(super) const ALNUM: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// Draws targets, places and messages, deterministically from the seed.
pub(super) struct Workload {
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
    pub(super) fn new(args: &SimulateArgs, run: String) -> anyhow::Result<Workload> {
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
    pub(super) fn sentinel(&self) -> u32 {
        (self.plates.len() - 1) as u32
    }

    pub(super) fn target_id(seed: u64, n: u32) -> String {
        format!("sim-{seed}-{n}")
    }

    /// The targets as the contract's Target JSON, each with one case at a Ningbo court.
    pub(super) fn targets_json(&mut self, seed: u64) -> Vec<serde_json::Value> {
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
    pub(super) fn next(&mut self, seq: u64) -> Option<(String, String, Sent)> {
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
    pub(super) fn sentinel_message(&mut self, seq: u64) -> (String, String, Sent) {
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

    pub(super) fn hit(&mut self, target: u32, outside: bool) -> (String, Sent) {
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

    pub(super) fn miss(&mut self) -> String {
        loop {
            let plate = random_plate(&mut self.rng);
            if self.hotlist.match_plate(&plate).is_none() {
                return plate.as_str().to_owned();
            }
        }
    }

    /// Four kinds of bad input; each still starts with `"event_id"` so its dead letter (which
    /// carries the original payload) can be traced back.
    pub(super) fn malformed(&mut self, event_id: &str, source: &str) -> String {
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

pub(super) fn now_rfc3339() -> String {
    Clock::System
        .now()
        .to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// A vehicle sighting as a camera would send it (field order fixed: `event_id` first).
pub(super) fn sighting(event_id: &str, plate: &str, lon: f64, lat: f64, source: &str) -> String {
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
pub(super) fn misread(plate: &Plate, rng: &mut Rng) -> Option<Plate> {
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
pub(super) fn places(
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
    fn workload_is_reproducible_and_unambiguous() {
        let args = SimulateArgs {
            mqtt_ca_file: None,
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
            token: None,
            replica_http: Vec::new(),
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
            threads: 0,
            sample_every: None,
            watch_pid: None,
            flat_within: None,
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
