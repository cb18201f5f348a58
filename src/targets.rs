//! The live set of flagged targets, and matching a sighting against it.
//!
//! Lookups read an immutable [`Hotlist`] snapshot through `ArcSwap` and take no lock. Edits
//! (HTTP, `targets import`, another replica's changes picked up from the database) are
//! serialised by a writer mutex, applied to a clone of the snapshot (the hotlist is sharded
//! copy-on-write, so a clone copies one shard per edit, not the whole list) and swapped in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::hotlist::{Hotlist, MatchConfig};
use crate::model::{Sighting, Target, TargetKind, TargetStatus};
use crate::person_id::PersonId;
use crate::plate::Plate;

/// A sighting that matched a flagged target.
#[derive(Debug, Clone)]
pub struct Match {
    pub target: Arc<Target>,
    /// The plate as read, when it differs from the flagged plate (fuzzy match).
    pub read_plate: Option<Plate>,
    pub fuzzy: bool,
    pub substitutions: u8,
}

/// Matches one sighting against a hotlist snapshot (pure).
///
/// Targets that are no longer active or have expired do not match; they stay out of the
/// hotlist anyway, expiry is checked here because it depends on `now`.
pub fn match_sighting(
    hotlist: &Hotlist<Arc<Target>>,
    sighting: &Sighting,
    now: DateTime<Utc>,
) -> Option<Match> {
    let found = match sighting.kind {
        TargetKind::Vehicle => {
            let read = sighting.plate.as_ref()?;
            let m = hotlist.match_plate(read)?;
            Match {
                target: m.value.clone(),
                read_plate: m.fuzzy.then_some(*read),
                fuzzy: m.fuzzy,
                substitutions: m.substitutions,
            }
        }
        TargetKind::Person => Match {
            target: hotlist.match_person(sighting.person_id.as_ref()?)?.clone(),
            read_plate: None,
            fuzzy: false,
            substitutions: 0,
        },
    };
    (found.target.kind == sighting.kind && found.target.is_matchable(now)).then_some(found)
}

/// What a target occupies in the hotlist, to remove it when it changes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    Plate(Plate),
    Person(PersonId),
}

fn key_of(target: &Target) -> Option<Key> {
    match target.kind {
        TargetKind::Vehicle => target.plate.map(Key::Plate),
        TargetKind::Person => target.person_id.map(Key::Person),
    }
}

/// The service's target set: a lock-free snapshot for readers, a mutex for writers.
pub struct LiveTargets {
    current: ArcSwap<Hotlist<Arc<Target>>>,
    writer: Mutex<HashMap<String, Key>>,
}

impl LiveTargets {
    pub fn new(config: MatchConfig) -> LiveTargets {
        LiveTargets {
            current: ArcSwap::from_pointee(Hotlist::new(config)),
            writer: Mutex::new(HashMap::new()),
        }
    }

    /// The current snapshot; cheap, lock-free.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Hotlist<Arc<Target>>>> {
        self.current.load()
    }

    /// Applies created, replaced or withdrawn targets in one swap.
    pub fn apply(&self, targets: impl IntoIterator<Item = Target>) {
        let mut keys = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = Hotlist::clone(&self.current.load());
        for target in targets {
            if let Some(old) = keys.remove(&target.target_id) {
                // Remove only if the slot still holds this target (another may share the key).
                let holds_this =
                    |v: Option<&Arc<Target>>| v.is_some_and(|t| t.target_id == target.target_id);
                match old {
                    Key::Plate(p) if holds_this(next.get_vehicle(&p)) => {
                        next.remove_vehicle(&p);
                    }
                    Key::Person(id) if holds_this(next.match_person(&id)) => {
                        next.remove_person(&id);
                    }
                    _ => {}
                }
            }
            if target.status != TargetStatus::Active {
                continue;
            }
            let Some(key) = key_of(&target) else { continue };
            keys.insert(target.target_id.clone(), key);
            let target = Arc::new(target);
            match key {
                Key::Plate(p) => next.insert_vehicle(p, target),
                Key::Person(id) => next.insert_person(id, target),
            };
        }
        self.current.store(Arc::new(next));
    }

    /// Number of active targets in the hotlist.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::Datum;

    fn vehicle(id: &str, plate: &str) -> Target {
        serde_json::from_value(serde_json::json!({
            "target_id": id, "kind": "vehicle", "plate": plate,
            "cases": [{"case_no": "c1", "court_id": "yuyao", "filed_on": "2024-03-01"}]
        }))
        .unwrap()
    }

    fn sighting(plate: &str) -> Sighting {
        Sighting {
            event_id: "e1".into(),
            kind: TargetKind::Vehicle,
            plate: Some(plate.parse().unwrap()),
            person_id: None,
            lat: 30.17,
            lon: 121.27,
            datum: Datum::Wgs84,
            observed_at: Utc::now(),
            source: "cam".into(),
            confidence: None,
        }
    }

    #[test]
    fn exact_fuzzy_and_no_match() {
        let live = LiveTargets::new(MatchConfig::default());
        live.apply([vehicle("T1", "浙B12345")]);
        let now = Utc::now();
        let exact = match_sighting(&live.snapshot(), &sighting("浙b·12345"), now).unwrap();
        assert!(!exact.fuzzy && exact.read_plate.is_none());
        let fuzzy = match_sighting(&live.snapshot(), &sighting("浙B1234S"), now).unwrap();
        assert!(fuzzy.fuzzy && fuzzy.substitutions == 1);
        assert_eq!(fuzzy.read_plate.unwrap().as_str(), "浙B1234S");
        assert!(match_sighting(&live.snapshot(), &sighting("浙B99999"), now).is_none());
    }

    #[test]
    fn edits_take_effect_and_old_snapshots_stay_intact() {
        let live = LiveTargets::new(MatchConfig::default());
        live.apply([vehicle("T1", "浙B12345")]);
        let before = live.snapshot().clone();
        // The plate of T1 is corrected; the old plate stops matching.
        live.apply([vehicle("T1", "浙B54321")]);
        let now = Utc::now();
        assert!(match_sighting(&live.snapshot(), &sighting("浙B12345"), now).is_none());
        assert!(match_sighting(&live.snapshot(), &sighting("浙B54321"), now).is_some());
        assert!(match_sighting(&before, &sighting("浙B12345"), now).is_some());
        // Withdrawn: gone.
        let mut withdrawn = vehicle("T1", "浙B54321");
        withdrawn.status = TargetStatus::Withdrawn;
        live.apply([withdrawn]);
        assert!(live.is_empty());
    }

    #[test]
    fn expired_targets_do_not_match() {
        let live = LiveTargets::new(MatchConfig::default());
        let mut t = vehicle("T1", "浙B12345");
        t.valid_until = Some(Utc::now() - chrono::Duration::minutes(1));
        live.apply([t]);
        assert!(match_sighting(&live.snapshot(), &sighting("浙B12345"), Utc::now()).is_none());
    }
}
