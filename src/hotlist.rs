//! The in-memory index of flagged targets: vehicles by plate (exact or OCR-fuzzy) and persons
//! by identity number.
//!
//! # Layout
//!
//! The index is split into [`SHARDS`] shards, each behind an `Arc`. The service keeps one
//! `Hotlist` behind an `ArcSwap` and edits it by cloning and swapping: `clone` only copies the
//! shard `Arc`s, and an edit copies the one shard it touches (`Arc::make_mut`), so an edit of a
//! 10⁷-entry hotlist copies ~1/256 of it and readers of the old value are unaffected.
//!
//! A vehicle lives in the shard chosen by its *canonical* key (see
//! [`Confusables::canonical_key`]), so every plate a read could fuzzily match is in the same
//! shard, in one chain hanging off one hash-map slot. A read costs one hash lookup plus a walk
//! of that chain, which holds only plates sharing the read's canonical form (usually one).

use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::person_id::PersonId;
use crate::plate::{Confusables, Plate, differing_positions};

/// Number of copy-on-write shards; a power of two.
pub const SHARDS: usize = 256;
/// End of a chain in [`Shard::vehicles`].
const NONE: u32 = u32::MAX;

/// How reads are matched against flagged plates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MatchConfig {
    /// Characters OCR mixes up; fixed for the life of a hotlist since it decides the index.
    pub confusables: Confusables,
    /// Most positions a fuzzy match may differ in; 0 means exact matches only.
    pub max_substitutions: u8,
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig {
            confusables: Confusables::default(),
            max_substitutions: 2,
        }
    }
}

/// A flagged plate a read matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlateMatch<'a, V> {
    pub value: &'a V,
    /// The flagged plate, which differs from the read when `fuzzy`.
    pub flagged: Plate,
    /// `substitutions > 0`.
    pub fuzzy: bool,
    /// Positions where read and flagged plate differ, all within confusable classes.
    pub substitutions: u8,
}

/// The index of flagged targets, generic over the payload `V` kept per target.
pub struct Hotlist<V> {
    config: MatchConfig,
    /// Exactly [`SHARDS`] shards; shared with clones until edited.
    shards: Box<[Arc<Shard<V>>]>,
    vehicles: usize,
    persons: usize,
}

#[derive(Clone)]
struct Shard<V> {
    /// Canonical plate key → index in `vehicles` of the head of the chain of plates with that
    /// canonical form. Every chain is non-empty.
    by_canon: FxHashMap<u64, u32>,
    /// Flagged vehicles, in no order; linked into chains through `next`.
    vehicles: Vec<Vehicle<V>>,
    /// Person key ([`PersonId::key`]) → value.
    persons: FxHashMap<u64, V>,
}

#[derive(Clone)]
struct Vehicle<V> {
    /// [`Plate::key`] of the flagged plate; unique within the hotlist.
    plate: u64,
    /// Next entry with the same canonical key, or [`NONE`].
    next: u32,
    value: V,
}

impl<V> Hotlist<V> {
    /// An empty hotlist.
    pub fn new(config: MatchConfig) -> Self {
        Hotlist {
            config,
            shards: (0..SHARDS).map(|_| Arc::new(Shard::default())).collect(),
            vehicles: 0,
            persons: 0,
        }
    }

    /// Builds a hotlist in one pass, sized up front; later duplicates replace earlier ones.
    pub fn build(
        config: MatchConfig,
        vehicles: impl IntoIterator<Item = (Plate, V)>,
        persons: impl IntoIterator<Item = (PersonId, V)>,
    ) -> Self {
        let vehicles = vehicles.into_iter();
        let per_shard = vehicles.size_hint().0 / SHARDS * 9 / 8;
        let mut staged: Vec<Vec<Vehicle<V>>> =
            (0..SHARDS).map(|_| Vec::with_capacity(per_shard)).collect();
        for (plate, value) in vehicles {
            let plate = plate.key();
            let canon = config.confusables.canonical_key(plate);
            staged[shard_of(canon)].push(Vehicle {
                plate,
                next: NONE,
                value,
            });
        }
        let mut shards: Vec<Shard<V>> = staged
            .into_iter()
            .map(|entries| Shard::from_entries(entries, &config.confusables))
            .collect();
        for (id, value) in persons {
            let key = id.key();
            shards[shard_of(key)].persons.insert(key, value);
        }
        Hotlist {
            config,
            vehicles: shards.iter().map(|s| s.vehicles.len()).sum(),
            persons: shards.iter().map(|s| s.persons.len()).sum(),
            shards: shards.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn config(&self) -> &MatchConfig {
        &self.config
    }

    /// Flagged vehicles plus flagged persons.
    pub fn len(&self) -> usize {
        self.vehicles + self.persons
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn vehicle_count(&self) -> usize {
        self.vehicles
    }

    pub fn person_count(&self) -> usize {
        self.persons
    }

    /// The flagged plate for a read: the exact plate if flagged, else among flagged plates with
    /// the same canonical form the one differing in the fewest positions, at most
    /// `max_substitutions`. Ties go to the smallest plate in string order, so the answer does
    /// not depend on insertion order.
    pub fn match_plate(&self, read: &Plate) -> Option<PlateMatch<'_, V>> {
        let key = read.key();
        let canon = self.config.confusables.canonical_key(key);
        let shard = &self.shards[shard_of(canon)];
        let mut at = *shard.by_canon.get(&canon)?;
        let mut best: Option<(u8, u64, &V)> = None;
        while let Some(entry) = shard.vehicles.get(at as usize) {
            let subs = differing_positions(key, entry.plate);
            if subs == 0 {
                return Some(PlateMatch {
                    value: &entry.value,
                    flagged: *read,
                    fuzzy: false,
                    substitutions: 0,
                });
            }
            // Same province, suffix and length in one chain, so key order is string order.
            if best.is_none_or(|(s, p, _)| (subs, entry.plate) < (s, p)) {
                best = Some((subs, entry.plate, &entry.value));
            }
            at = entry.next;
        }
        let (substitutions, plate, value) = best?;
        if substitutions > self.config.max_substitutions {
            return None;
        }
        Some(PlateMatch {
            value,
            flagged: Plate::from_key(plate)?,
            fuzzy: true,
            substitutions,
        })
    }

    /// The value for a flagged person; exact only (identity numbers carry a check character).
    pub fn match_person(&self, id: &PersonId) -> Option<&V> {
        let key = id.key();
        self.shards[shard_of(key)].persons.get(&key)
    }

    /// The value flagged for exactly this plate (no fuzzy matching).
    pub fn get_vehicle(&self, plate: &Plate) -> Option<&V> {
        let key = plate.key();
        let canon = self.config.confusables.canonical_key(key);
        let shard = &self.shards[shard_of(canon)];
        shard
            .find(canon, key)
            .map(|(at, _)| &shard.vehicles[at as usize].value)
    }

    /// Every flagged vehicle, in no particular order.
    pub fn vehicles(&self) -> impl Iterator<Item = (Plate, &V)> {
        self.shards.iter().flat_map(|s| {
            s.vehicles
                .iter()
                .filter_map(|e| Some((Plate::from_key(e.plate)?, &e.value)))
        })
    }
}

impl<V: Clone> Hotlist<V> {
    /// Flags a plate, returning the value it replaced. Copies one shard if it is shared.
    pub fn insert_vehicle(&mut self, plate: Plate, value: V) -> Option<V> {
        let key = plate.key();
        let canon = self.config.confusables.canonical_key(key);
        let shard = Arc::make_mut(&mut self.shards[shard_of(canon)]);
        let old = shard.insert(canon, key, value);
        self.vehicles += usize::from(old.is_none());
        old
    }

    /// Unflags a plate (exact), returning its value.
    pub fn remove_vehicle(&mut self, plate: &Plate) -> Option<V> {
        let key = plate.key();
        let canon = self.config.confusables.canonical_key(key);
        let index = shard_of(canon);
        // Look before `make_mut`, so removing an absent plate copies nothing.
        self.shards[index].find(canon, key)?;
        let shard = Arc::make_mut(&mut self.shards[index]);
        let old = shard.remove(canon, key, &self.config.confusables);
        self.vehicles -= usize::from(old.is_some());
        old
    }

    /// Flags a person, returning the value it replaced.
    pub fn insert_person(&mut self, id: PersonId, value: V) -> Option<V> {
        let key = id.key();
        let shard = Arc::make_mut(&mut self.shards[shard_of(key)]);
        let old = shard.persons.insert(key, value);
        self.persons += usize::from(old.is_none());
        old
    }

    /// Unflags a person, returning its value.
    pub fn remove_person(&mut self, id: &PersonId) -> Option<V> {
        let key = id.key();
        let index = shard_of(key);
        self.shards[index].persons.get(&key)?;
        let old = Arc::make_mut(&mut self.shards[index]).persons.remove(&key);
        self.persons -= usize::from(old.is_some());
        old
    }
}

impl<V> Clone for Hotlist<V> {
    /// Cheap: shares every shard with the original until one side edits it.
    fn clone(&self) -> Self {
        Hotlist {
            config: self.config,
            shards: self.shards.clone(),
            vehicles: self.vehicles,
            persons: self.persons,
        }
    }
}

impl<V> Default for Hotlist<V> {
    fn default() -> Self {
        Hotlist::new(MatchConfig::default())
    }
}

impl<V> fmt::Debug for Hotlist<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hotlist")
            .field("config", &self.config)
            .field("vehicles", &self.vehicles)
            .field("persons", &self.persons)
            .finish_non_exhaustive()
    }
}

impl<V> Default for Shard<V> {
    fn default() -> Self {
        Shard {
            by_canon: FxHashMap::default(),
            vehicles: Vec::new(),
            persons: FxHashMap::default(),
        }
    }
}

impl<V> Shard<V> {
    /// Indexes staged entries; falls back to one-by-one inserts if a plate repeats.
    fn from_entries(mut entries: Vec<Vehicle<V>>, confusables: &Confusables) -> Self {
        let mut by_canon = FxHashMap::with_capacity_and_hasher(entries.len(), Default::default());
        let mut duplicates = false;
        for at in 0..entries.len() {
            let plate = entries[at].plate;
            let head = by_canon
                .entry(confusables.canonical_key(plate))
                .or_insert(NONE);
            let mut walk = *head;
            while let Some(e) = entries.get(walk as usize) {
                duplicates |= e.plate == plate;
                walk = e.next;
            }
            entries[at].next = *head;
            *head = index_u32(at);
        }
        if duplicates {
            let mut shard = Shard::default();
            for e in entries {
                shard.insert(confusables.canonical_key(e.plate), e.plate, e.value);
            }
            return shard;
        }
        entries.shrink_to_fit();
        Shard {
            by_canon,
            vehicles: entries,
            persons: FxHashMap::default(),
        }
    }

    /// Index of the entry for `plate` and of its predecessor in the chain (`NONE` if head).
    fn find(&self, canon: u64, plate: u64) -> Option<(u32, u32)> {
        let (mut prev, mut at) = (NONE, *self.by_canon.get(&canon)?);
        while let Some(entry) = self.vehicles.get(at as usize) {
            if entry.plate == plate {
                return Some((at, prev));
            }
            (prev, at) = (at, entry.next);
        }
        None
    }

    fn insert(&mut self, canon: u64, plate: u64, value: V) -> Option<V> {
        if let Some((at, _)) = self.find(canon, plate) {
            return Some(std::mem::replace(
                &mut self.vehicles[at as usize].value,
                value,
            ));
        }
        let at = index_u32(self.vehicles.len());
        let head = self.by_canon.entry(canon).or_insert(NONE);
        self.vehicles.push(Vehicle {
            plate,
            next: *head,
            value,
        });
        *head = at;
        None
    }

    fn remove(&mut self, canon: u64, plate: u64, confusables: &Confusables) -> Option<V> {
        let (at, prev) = self.find(canon, plate)?;
        let next = self.vehicles[at as usize].next;
        self.relink(canon, prev, at, next);
        // Fill the hole with the last entry, then point whoever referred to it at its new place.
        let last = index_u32(self.vehicles.len() - 1);
        let removed = self.vehicles.swap_remove(at as usize);
        if at != last {
            let moved = self.vehicles[at as usize].plate;
            let moved_canon = confusables.canonical_key(moved);
            let mut prev = NONE;
            let mut walk = self.by_canon.get(&moved_canon).copied().unwrap_or(NONE);
            while walk != last {
                match self.vehicles.get(walk as usize) {
                    Some(e) => (prev, walk) = (walk, e.next),
                    None => break,
                }
            }
            if walk == last {
                self.relink(moved_canon, prev, last, at);
            }
        }
        Some(removed.value)
    }

    /// Makes the link that pointed at `from` (the chain head if `prev` is `NONE`) point at
    /// `to`, dropping the chain when it becomes empty.
    fn relink(&mut self, canon: u64, prev: u32, from: u32, to: u32) {
        if let Some(p) = self.vehicles.get_mut(prev as usize) {
            debug_assert_eq!(p.next, from);
            p.next = to;
        } else if to == NONE {
            self.by_canon.remove(&canon);
        } else {
            self.by_canon.insert(canon, to);
        }
    }
}

/// Shard of a key. Uses a different multiplier than `FxHasher`, so the keys in one shard still
/// spread over that shard's hash table.
fn shard_of(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARDS.trailing_zeros())) as usize
}

/// A shard holds far fewer than 2³² − 1 entries (that would be ~10¹² vehicles in all).
fn index_u32(at: usize) -> u32 {
    u32::try_from(at)
        .ok()
        .filter(|&i| i != NONE)
        .expect("hotlist shard exceeds 2^32 - 1 entries")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Plate {
        Plate::parse(s).unwrap()
    }

    fn id(s: &str) -> PersonId {
        PersonId::parse(s).unwrap()
    }

    fn list(plates: &[&str]) -> Hotlist<usize> {
        Hotlist::build(
            MatchConfig::default(),
            plates.iter().enumerate().map(|(i, s)| (p(s), i)),
            [],
        )
    }

    /// (flagged plate, substitutions, fuzzy) of a read's match.
    fn matched(h: &Hotlist<usize>, read: &str) -> Option<(String, u8, bool)> {
        h.match_plate(&p(read))
            .map(|m| (m.flagged.to_string(), m.substitutions, m.fuzzy))
    }

    #[test]
    fn exact_matches_any_spelling() {
        let h = list(&["浙B12345"]);
        for read in ["浙B12345", "浙B·12345", "浙b 12345", "浙Ｂ１２３４５"] {
            let m = h.match_plate(&p(read)).unwrap();
            assert_eq!(
                (m.value, m.fuzzy, m.substitutions),
                (&0, false, 0),
                "{read}"
            );
            assert_eq!(m.flagged, p("浙B12345"));
        }
        assert_eq!(h.get_vehicle(&p("浙B12345")), Some(&0));
        assert_eq!(h.get_vehicle(&p("浙B1234S")), None);
    }

    #[test]
    fn fuzzy_matches_within_confusable_classes() {
        let h = list(&["浙B12345", "浙BB0012"]);
        assert_eq!(matched(&h, "浙B1234S"), Some(("浙B12345".into(), 1, true)));
        assert_eq!(matched(&h, "浙BB0O12"), Some(("浙BB0012".into(), 1, true)));
        assert_eq!(matched(&h, "浙BBOOI2"), None, "3 substitutions > default 2");
        assert_eq!(matched(&h, "浙B8O0I2"), None, "3 substitutions > default 2");
        assert_eq!(matched(&h, "浙BBO0I2"), Some(("浙BB0012".into(), 2, true)));
        assert_eq!(matched(&h, "浙B12346"), None, "6/5 are not confusable");
        assert_eq!(matched(&h, "浙B123456"), None, "other length");
        assert_eq!(matched(&h, "沪B12345"), None, "other province");
    }

    #[test]
    fn max_substitutions_and_custom_classes() {
        let plates = [(p("浙B8O0I2"), 1)];
        let wide = MatchConfig {
            max_substitutions: 3,
            ..MatchConfig::default()
        };
        let h = Hotlist::build(wide, plates, []);
        assert_eq!(h.match_plate(&p("浙BB0012")).unwrap().substitutions, 3);

        let exact_only = MatchConfig {
            max_substitutions: 0,
            ..MatchConfig::default()
        };
        let h = Hotlist::build(exact_only, plates, []);
        assert!(h.match_plate(&p("浙B8O0I2")).is_some());
        assert!(h.match_plate(&p("浙B8O0I1")).is_none());

        let custom = MatchConfig {
            confusables: Confusables::from_classes(&["7T", "4A"]).unwrap(),
            max_substitutions: 2,
        };
        let h = Hotlist::build(custom, [(p("浙A12347"), 1)], []);
        assert_eq!(h.match_plate(&p("浙A1234T")).unwrap().substitutions, 1);
        assert!(
            h.match_plate(&p("浙A1234S")).is_none(),
            "5/S not a class here"
        );
    }

    #[test]
    fn fewest_substitutions_then_smallest_plate_wins() {
        // All share the canonical form 浙800000, so all are candidates for these reads.
        let flagged = ["浙B0D0Q0", "浙B0O000", "浙B000O0", "浙BOOOQO"];
        for order in [flagged, [flagged[3], flagged[2], flagged[1], flagged[0]]] {
            let h = list(&order);
            assert_eq!(matched(&h, "浙B0000D"), Some(("浙B000O0".into(), 2, true)));
            assert_eq!(matched(&h, "浙B0O0O0"), Some(("浙B000O0".into(), 1, true)));
            assert_eq!(matched(&h, "浙B0O000").map(|m| m.1), Some(0));
        }
    }

    #[test]
    fn persons_match_exactly() {
        let mut h: Hotlist<&str> = Hotlist::build(
            MatchConfig::default(),
            [],
            [(id("11010519491231002X"), "a")],
        );
        assert_eq!(h.match_person(&id("11010519491231002x")), Some(&"a"));
        assert_eq!(h.match_person(&id("440524188001010014")), None);
        assert_eq!(h.insert_person(id("440524188001010014"), "b"), None);
        assert_eq!(h.insert_person(id("440524188001010014"), "c"), Some("b"));
        assert_eq!((h.len(), h.person_count()), (2, 2));
        assert_eq!(h.remove_person(&id("11010519491231002X")), Some("a"));
        assert_eq!(h.remove_person(&id("11010519491231002X")), None);
        assert_eq!(h.match_person(&id("11010519491231002X")), None);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn insert_replace_and_remove_vehicles() {
        let mut h = list(&["浙B0O000", "浙B000O0", "浙B12345", "浙B12345"]);
        assert_eq!(h.vehicle_count(), 3, "build keeps the last duplicate");
        assert_eq!(h.get_vehicle(&p("浙B12345")), Some(&3));
        assert_eq!(h.insert_vehicle(p("浙B12345"), 7), Some(3));
        assert_eq!(h.insert_vehicle(p("浙B00000"), 8), None);
        assert_eq!(h.len(), 4);
        assert_eq!(h.remove_vehicle(&p("浙B000O0")), Some(1));
        assert_eq!(h.remove_vehicle(&p("浙B000O0")), None);
        assert_eq!(matched(&h, "浙B000O0"), Some(("浙B00000".into(), 1, true)));
        assert_eq!(h.remove_vehicle(&p("浙B00000")), Some(8));
        assert_eq!(matched(&h, "浙B000O0"), Some(("浙B0O000".into(), 2, true)));
        assert_eq!(h.remove_vehicle(&p("浙B0O000")), Some(0));
        assert_eq!(matched(&h, "浙B000O0"), None);
        assert_eq!(h.get_vehicle(&p("浙B12345")), Some(&7));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn clones_are_isolated_from_edits() {
        let original = list(&["浙B12345", "京A00001"]);
        let mut edited = original.clone();
        edited.remove_vehicle(&p("浙B12345"));
        edited.insert_vehicle(p("沪C99999"), 9);
        edited.insert_vehicle(p("京A00001"), 10);
        assert_eq!(original.get_vehicle(&p("浙B12345")), Some(&0));
        assert_eq!(original.get_vehicle(&p("沪C99999")), None);
        assert_eq!(original.get_vehicle(&p("京A00001")), Some(&1));
        assert_eq!(original.len(), 2);
        assert_eq!(edited.get_vehicle(&p("京A00001")), Some(&10));
        assert_eq!(edited.len(), 2);
        let shared = original
            .shards
            .iter()
            .zip(edited.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert!(shared >= SHARDS - 3, "only edited shards are copied");
    }

    proptest! {
        /// Random inserts and removes agree with a BTreeMap model, including swap-remove relinks.
        #[test]
        fn edits_agree_with_a_model(
            ops in proptest::collection::vec((any::<bool>(), 0u8..6, 0u8..6, 0u8..4), 1..200)
        ) {
            // A tiny alphabet so plates share canonical forms and chains get long.
            let alphabet = ['0', 'O', 'D', '8', 'B', '5'];
            let plate = |a: u8, b: u8, c: u8| {
                let (a, b) = (alphabet[usize::from(a)], alphabet[usize::from(b)]);
                p(&format!("浙B{a}{b}00{c}"))
            };
            let mut h = Hotlist::new(MatchConfig::default());
            let mut model = std::collections::BTreeMap::new();
            for (i, &(insert, a, b, c)) in ops.iter().enumerate() {
                let pl = plate(a, b, c);
                if insert {
                    prop_assert_eq!(h.insert_vehicle(pl, i), model.insert(pl, i));
                } else {
                    prop_assert_eq!(h.remove_vehicle(&pl), model.remove(&pl));
                }
                prop_assert_eq!(h.len(), model.len());
            }
            for (pl, v) in &model {
                prop_assert_eq!(h.get_vehicle(pl), Some(v));
            }
            let mut listed: Vec<_> = h.vehicles().map(|(pl, v)| (pl, *v)).collect();
            listed.sort();
            prop_assert_eq!(listed, model.into_iter().collect::<Vec<_>>());
        }
    }
}
