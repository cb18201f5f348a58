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
//! [`Confusables::canonical_key`]), and in that shard's `Table` at a place found by hashing
//! the canonical key. So every plate a read could fuzzily match lies on the read's own probe
//! sequence, nearly always in its first group of slots: a read costs one probe, which meets
//! only plates sharing the read's canonical form (usually none or one).
//!
//! # Why a table of our own
//!
//! At 10⁷ plates the index is ~0.5 GB, so a hit costs main-memory accesses (and TLB misses),
//! not arithmetic: ~100 ns each, paid one after another by a single lookup. A batch of reads
//! can pay them all at once, if the lookup can name each read's addresses before it needs
//! them. `hashbrown` does not expose where a key's slot lives; `Table` is a small
//! open-addressing table whose control bytes' address follows from the hash and whose slot
//! address follows from the control bytes, and which keeps the value in the slot. A hit
//! touches two places: the control bytes (one byte per slot, ~16 MB at 10⁷, so mostly in
//! cache) and one slot. [`Hotlist::match_plates`] hashes a group of reads and prefetches their
//! control bytes, then for the previous group reads the control bytes and prefetches the
//! slots, then finishes the group before that: while a read's lines are on their way, the CPU
//! works on other reads, and a batch costs memory throughput rather than one latency per read.
//!
//! Part of what a batched hit still pays at 10⁷ is the TLB: two random pages per hit. The
//! service's allocator (mimalloc) maps its arenas with `MADV_HUGEPAGE`, so the arrays sit on
//! 2 MiB pages and a 10⁷ index needs a few hundred TLB entries, not ~130,000. Measured with
//! `scale -- hotlist-curve` (2-vCPU VM), batched exact hit at 10⁷ ÷ 10³: 1.59 and 1.63 with
//! glibc's malloc (no huge pages: its per-shard arrays of ≤ 2 MB hold no aligned 2 MB
//! range), 1.48 and 1.52 with mimalloc, in alternating runs. The bench uses mimalloc too.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::contract::person_id::PersonId;
use crate::contract::plate::{Confusables, Plate, differing_positions};

mod table;

use table::Table;
pub(crate) use table::prefetch;

/// Number of copy-on-write shards; a power of two.
pub const SHARDS: usize = 256;
/// Reads per step of the batched lookups' pipeline (three steps are in flight at once).
const BATCH: usize = 16;

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
    /// Flagged vehicles: slot key [`Plate::key`], placed by [`slot_hash`] of the canonical key.
    vehicles: Table<V>,
    /// Flagged persons: slot key [`PersonId::key`], placed by [`slot_hash`] of that key.
    persons: Table<V>,
}

/// Where one read is looked up: computed before its memory is touched.
#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    /// The read's slot key.
    key: u64,
    /// What placed it: the canonical key for plates, the key itself for persons.
    canon: u64,
    hash: u64,
    shard: usize,
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
        let mut staged: Vec<Vec<(u64, V)>> =
            (0..SHARDS).map(|_| Vec::with_capacity(per_shard)).collect();
        for (plate, value) in vehicles {
            let plate = plate.key();
            let canon = config.confusables.canonical_key(plate);
            staged[shard_of(canon)].push((plate, value));
        }
        let rehash = |plate| slot_hash(config.confusables.canonical_key(plate));
        // Consumes each shard's staging as it goes, so peak memory is about one index.
        let mut shards: Vec<Shard<V>> = staged
            .into_iter()
            .map(|entries| {
                let mut vehicles = Table::with_capacity(entries.len());
                for (plate, value) in entries {
                    vehicles.insert(rehash(plate), plate, value, rehash);
                }
                Shard {
                    vehicles,
                    persons: Table::with_capacity(0),
                }
            })
            .collect();
        for (id, value) in persons {
            let key = id.key();
            shards[shard_of(key)]
                .persons
                .insert(slot_hash(key), key, value, slot_hash);
        }
        Hotlist {
            config,
            vehicles: shards.iter().map(|s| s.vehicles.items).sum(),
            persons: shards.iter().map(|s| s.persons.items).sum(),
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
        self.finish_plate(read, &self.plate_probe(read))
    }

    /// [`match_plate`](Self::match_plate) for every read, in order: `out` is cleared and then
    /// holds one answer per read, each the same as `match_plate` gives.
    ///
    /// Faster per read than `match_plate` on a large hotlist: the reads' memory accesses
    /// overlap (see the module doc). Batches of a few dozen reads and up get the full effect.
    /// On a hotlist that fits in cache it costs a few ns more per read than `match_plate`.
    pub fn match_plates<'a>(&'a self, reads: &[Plate], out: &mut Vec<Option<PlateMatch<'a, V>>>) {
        out.clear();
        out.reserve(reads.len());
        self.pipelined(
            reads,
            |read| self.plate_probe(read),
            |shard| &shard.vehicles,
            |read, probe| out.push(self.finish_plate(read, probe)),
        );
    }

    /// The value for a flagged person; exact only (identity numbers carry a check character).
    pub fn match_person(&self, id: &PersonId) -> Option<&V> {
        self.finish_person(&self.person_probe(id))
    }

    /// [`match_person`](Self::match_person) for every id, in order, batched like
    /// [`match_plates`](Self::match_plates): `out` is cleared, then holds one answer per id.
    pub fn match_persons<'a>(&'a self, ids: &[PersonId], out: &mut Vec<Option<&'a V>>) {
        out.clear();
        out.reserve(ids.len());
        self.pipelined(
            ids,
            |id| self.person_probe(id),
            |shard| &shard.persons,
            |_, probe| out.push(self.finish_person(probe)),
        );
    }

    /// The value flagged for exactly this plate (no fuzzy matching).
    pub fn get_vehicle(&self, plate: &Plate) -> Option<&V> {
        let p = self.plate_probe(plate);
        self.shards[p.shard].vehicles.get(p.hash, p.key)
    }

    /// Every flagged vehicle, in no particular order.
    pub fn vehicles(&self) -> impl Iterator<Item = (Plate, &V)> {
        self.shards.iter().flat_map(|s| {
            s.vehicles
                .iter()
                .filter_map(|(key, value)| Some((Plate::from_key(key)?, value)))
        })
    }

    fn plate_probe(&self, read: &Plate) -> Probe {
        let key = read.key();
        let canon = self.config.confusables.canonical_key(key);
        Probe {
            key,
            canon,
            hash: slot_hash(canon),
            shard: shard_of(canon),
        }
    }

    fn person_probe(&self, id: &PersonId) -> Probe {
        let key = id.key();
        Probe {
            key,
            canon: key,
            hash: slot_hash(key),
            shard: shard_of(key),
        }
    }

    /// The lookup proper, shared by the single and the batched path.
    fn finish_plate(&self, read: &Plate, p: &Probe) -> Option<PlateMatch<'_, V>> {
        let confusables = &self.config.confusables;
        let mut best: Option<(u8, u64, &V)> = None;
        let exact = self.shards[p.shard].vehicles.probe(p.hash, |key, value| {
            if key == p.key {
                return Some(value);
            }
            // Other canonical forms can share the probe sequence and the control byte.
            if confusables.canonical_key(key) == p.canon {
                let subs = differing_positions(p.key, key);
                // Plates of one canonical form share province, suffix and length, so key
                // order is string order.
                if best.is_none_or(|(s, k, _)| (subs, key) < (s, k)) {
                    best = Some((subs, key, value));
                }
            }
            None
        });
        if let Some(value) = exact {
            return Some(PlateMatch {
                value,
                flagged: *read,
                fuzzy: false,
                substitutions: 0,
            });
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

    fn finish_person(&self, p: &Probe) -> Option<&V> {
        self.shards[p.shard].persons.get(p.hash, p.key)
    }

    /// Runs `finish` on every item in order, as a three-step software pipeline over groups of
    /// [`BATCH`] items: step 1 computes group g's probes and prefetches their control bytes,
    /// step 2 reads group g−1's control bytes (arrived meanwhile) and prefetches the slot each
    /// points at, step 3 finishes group g−2 from cache.
    fn pipelined<T>(
        &self,
        items: &[T],
        start: impl Fn(&T) -> Probe,
        table: impl Fn(&Shard<V>) -> &Table<V>,
        mut finish: impl FnMut(&T, &Probe),
    ) {
        let groups = items.len().div_ceil(BATCH);
        let group = |g: usize| &items[g * BATCH..items.len().min((g + 1) * BATCH)];
        let mut ring = [[Probe::default(); BATCH]; 3];
        for step in 0..groups + 2 {
            if step < groups {
                let probes = &mut ring[step % 3];
                for (probe, item) in probes.iter_mut().zip(group(step)) {
                    *probe = start(item);
                }
                // Back to back after the arithmetic, so the misses overlap (faster, in a
                // synthetic test of this pattern, than one between each two reads' arithmetic).
                for probe in &probes[..group(step).len()] {
                    table(&self.shards[probe.shard]).prefetch_ctrl(probe.hash);
                }
            }
            if let Some(g) = step.checked_sub(1).filter(|&g| g < groups) {
                for probe in &ring[g % 3][..group(g).len()] {
                    table(&self.shards[probe.shard]).prefetch_slot(probe.hash);
                }
            }
            if let Some(g) = step.checked_sub(2) {
                for (probe, item) in ring[g % 3].iter().zip(group(g)) {
                    finish(item, probe);
                }
            }
        }
    }
}

impl<V: Clone> Hotlist<V> {
    /// Flags a plate, returning the value it replaced. Copies one shard if it is shared.
    pub fn insert_vehicle(&mut self, plate: Plate, value: V) -> Option<V> {
        let p = self.plate_probe(&plate);
        let confusables = self.config.confusables;
        let shard = Arc::make_mut(&mut self.shards[p.shard]);
        let old = shard.vehicles.insert(p.hash, p.key, value, |plate| {
            slot_hash(confusables.canonical_key(plate))
        });
        self.vehicles += usize::from(old.is_none());
        old
    }

    /// Unflags a plate (exact), returning its value.
    pub fn remove_vehicle(&mut self, plate: &Plate) -> Option<V> {
        let p = self.plate_probe(plate);
        // Look before `make_mut`, so removing an absent plate copies nothing.
        self.shards[p.shard].vehicles.find(p.hash, p.key)?;
        let old = Arc::make_mut(&mut self.shards[p.shard])
            .vehicles
            .remove(p.hash, p.key);
        self.vehicles -= usize::from(old.is_some());
        old
    }

    /// Flags a person, returning the value it replaced.
    pub fn insert_person(&mut self, id: PersonId, value: V) -> Option<V> {
        let p = self.person_probe(&id);
        let shard = Arc::make_mut(&mut self.shards[p.shard]);
        let old = shard.persons.insert(p.hash, p.key, value, slot_hash);
        self.persons += usize::from(old.is_none());
        old
    }

    /// Unflags a person, returning its value.
    pub fn remove_person(&mut self, id: &PersonId) -> Option<V> {
        let p = self.person_probe(id);
        self.shards[p.shard].persons.find(p.hash, p.key)?;
        let old = Arc::make_mut(&mut self.shards[p.shard])
            .persons
            .remove(p.hash, p.key);
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
            vehicles: Table::with_capacity(0),
            persons: Table::with_capacity(0),
        }
    }
}

/// Shard of a key. Uses another mixing than [`slot_hash`], so the keys in one shard still
/// spread over that shard's table.
fn shard_of(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARDS.trailing_zeros())) as usize
}

/// Where a key goes in its shard's [`Table`]: the folded 128-bit product with an odd constant,
/// so both the low bits (the group) and the top bits (the control byte) depend on every bit.
fn slot_hash(key: u64) -> u64 {
    let m = u128::from(key) * 0xA076_1D64_78BD_642F;
    (m as u64) ^ ((m >> 64) as u64)
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

    /// The answer `match_plate` must give, computed the slow, obvious way from a model.
    fn reference(
        model: &std::collections::BTreeMap<Plate, usize>,
        config: &MatchConfig,
        read: &Plate,
    ) -> Option<(Plate, usize, u8)> {
        if let Some(&v) = model.get(read) {
            return Some((*read, v, 0));
        }
        let canon = config.confusables.canonical_key(read.key());
        model
            .iter()
            .filter(|(p, _)| config.confusables.canonical_key(p.key()) == canon)
            .map(|(p, &v)| (differing_positions(read.key(), p.key()), *p, v))
            .min_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())))
            .filter(|&(subs, ..)| subs <= config.max_substitutions)
            .map(|(subs, p, v)| (p, v, subs))
    }

    fn answer(m: Option<PlateMatch<'_, usize>>) -> Option<(Plate, usize, u8)> {
        m.map(|m| {
            assert_eq!(m.fuzzy, m.substitutions > 0);
            (m.flagged, *m.value, m.substitutions)
        })
    }

    /// A 17-digit prefix completed with whichever check character makes it valid.
    fn person(digits: &str) -> PersonId {
        "0123456789X"
            .chars()
            .find_map(|c| PersonId::parse(&format!("{digits}{c}")).ok())
            .unwrap()
    }

    #[test]
    fn batched_lookups_agree_with_single_ones_at_size() {
        // Every plate `浙B` + 5 characters from a set rich in confusables, so chains and fuzzy
        // candidates are common; tables grow past their first sizes.
        let chars: Vec<char> = "0ODQ8B5S1I2Z6G3A".chars().collect();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut random_plate = || {
            let mut x = next();
            let tail: String = (0..5)
                .map(|_| {
                    let c = chars[(x % 16) as usize];
                    x /= 16;
                    c
                })
                .collect();
            p(&format!("浙B{tail}"))
        };
        let plates: Vec<Plate> = (0..40_000).map(|_| random_plate()).collect();
        let mut h = Hotlist::build(
            MatchConfig::default(),
            plates.iter().enumerate().map(|(i, p)| (*p, i)),
            (0..1_000)
                .step_by(2)
                .map(|i| (person(&format!("11010519491231{i:03}")), i)),
        );
        let snapshot = h.clone();
        for plate in &plates[..5_000] {
            h.remove_vehicle(plate);
        }
        for i in 0..5_000 {
            h.insert_vehicle(random_plate(), 100_000 + i);
        }
        let reads: Vec<Plate> = plates
            .iter()
            .copied()
            .chain((0..20_000).map(|_| random_plate()))
            .collect();
        let mut out = Vec::new();
        let (mut exact, mut fuzzy) = (0, 0);
        for list in [&h, &snapshot] {
            // Odd lengths, so the pipeline's partial last group is covered too.
            for len in [0, 1, 15, 17, 33, reads.len()] {
                list.match_plates(&reads[..len], &mut out);
                assert_eq!(out.len(), len);
                for (read, batched) in reads.iter().zip(&out) {
                    let single = list.match_plate(read);
                    assert_eq!(*batched, single, "{read}");
                    exact += usize::from(single.is_some_and(|m| !m.fuzzy));
                    fuzzy += usize::from(single.is_some_and(|m| m.fuzzy));
                }
            }
        }
        assert!(
            exact > 10_000 && fuzzy > 10_000,
            "{exact} exact, {fuzzy} fuzzy"
        );
        let ids: Vec<PersonId> = (0..4_000)
            .map(|i| person(&format!("11010519491231{:03}", i % 1_000)))
            .collect();
        let mut found = Vec::new();
        h.match_persons(&ids, &mut found);
        assert_eq!(found.len(), ids.len());
        for (id, batched) in ids.iter().zip(&found) {
            assert_eq!(*batched, h.match_person(id));
        }
        assert_eq!(found.iter().flatten().count(), 4 * 500);
    }

    proptest! {
        /// Lookups (single and batched) agree with the obvious computation over a model,
        /// through random inserts, removes and clones taken along the way, for every
        /// `max_substitutions`.
        #[test]
        fn lookups_agree_with_a_reference(
            max_substitutions in 0u8..4,
            ops in proptest::collection::vec((0u8..5, 0usize..864), 1..150)
        ) {
            let alphabet = ['0', 'O', 'D', '8', 'B', '5'];
            let space: Vec<Plate> = (0..864)
                .map(|n| {
                    let (prov, n) = (["浙", "沪"][n % 2], n / 2);
                    let (a, b, c, d) = (n % 6, n / 6 % 6, n / 36 % 6, n / 216);
                    p(&format!(
                        "{prov}B{}{}{}0{}",
                        alphabet[a], alphabet[b], alphabet[c], ['1', 'I'][d]
                    ))
                })
                .collect();
            let config = MatchConfig { max_substitutions, ..MatchConfig::default() };
            let mut h = Hotlist::new(config);
            let mut model = std::collections::BTreeMap::new();
            let mut snapshots = Vec::new();
            for (i, &(op, at)) in ops.iter().enumerate() {
                let plate = space[at];
                match op {
                    0 | 1 => prop_assert_eq!(h.insert_vehicle(plate, i), model.insert(plate, i)),
                    2 | 3 => prop_assert_eq!(h.remove_vehicle(&plate), model.remove(&plate)),
                    _ => snapshots.push((h.clone(), model.clone())),
                }
            }
            snapshots.push((h, model));
            let mut out = Vec::new();
            for (list, model) in &snapshots {
                prop_assert_eq!(list.len(), model.len());
                list.match_plates(&space, &mut out);
                for (read, batched) in space.iter().zip(&out) {
                    let expected = reference(model, &config, read);
                    prop_assert_eq!(answer(list.match_plate(read)), expected, "{}", read);
                    prop_assert_eq!(answer(*batched), expected, "{} batched", read);
                }
            }
        }

        /// The table alone, with hashes that collide on purpose (few home groups, few control
        /// bytes), so probes run long, tombstones pile up and tables grow and rehash.
        #[test]
        fn table_agrees_with_a_hash_map(
            ops in proptest::collection::vec((any::<bool>(), 0u64..96), 1..400)
        ) {
            let hash = |key: u64| (key % 5) | ((key % 3) << 57);
            let mut table = Table::with_capacity(0);
            let mut model = std::collections::HashMap::new();
            for (i, &(insert, key)) in ops.iter().enumerate() {
                if insert {
                    prop_assert_eq!(table.insert(hash(key), key, i, hash), model.insert(key, i));
                } else {
                    prop_assert_eq!(table.remove(hash(key), key), model.remove(&key));
                }
                prop_assert_eq!(table.items, model.len());
                prop_assert!(table.items + table.growth_left <= table.slots.len() / 8 * 7);
            }
            for key in 0..96 {
                prop_assert_eq!(table.get(hash(key), key), model.get(&key));
            }
            let mut listed: Vec<_> = table.iter().map(|(k, v)| (k, *v)).collect();
            listed.sort_unstable();
            let mut expected: Vec<_> = model.into_iter().collect();
            expected.sort_unstable();
            prop_assert_eq!(listed, expected);
        }
    }
}
