//! The live set of flagged targets, and matching a sighting against it.
//!
//! Lookups read an immutable [`Hotlist`] snapshot through `ArcSwap` and take no lock. Edits
//! (HTTP, `targets import`, another replica's changes picked up from the database) are
//! serialised by a writer mutex, applied to a clone of the snapshot (the hotlist is sharded
//! copy-on-write, so a clone copies one shard per edit, not the whole list) and swapped in.
//!
//! **Related cases.** Targets that share a plate or an identity number but were filed
//! separately (often by different courts) are *linked*: the hotlist holds one merged view per
//! plate or number, whose `target_id` is the lowest of the group (so every replica agrees on
//! which target carries the open task) and whose cases are all the group's cases. The
//! requesting court then follows from the merged cases (`route::requesting_court`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::contract::model::{Case, Sighting, Target, TargetKind, TargetStatus};
use crate::contract::person_id::PersonId;
use crate::contract::plate::Plate;
use crate::matching::hotlist::{Hotlist, MatchConfig, PlateMatch};
use crate::matching::sweep::SweepIndex;

/// A sighting that matched a flagged target.
#[derive(Debug, Clone)]
pub struct Match {
    /// The merged view of the target and any linked targets (see the module doc).
    pub target: Arc<Target>,
    /// The plate as read, when it differs from the flagged plate (fuzzy match).
    pub read_plate: Option<Plate>,
    pub fuzzy: bool,
    pub substitutions: u8,
}

impl Match {
    /// The match of a plate read (`read` is kept when the match is fuzzy).
    fn of_plate(m: PlateMatch<'_, Arc<Target>>, read: &Plate) -> Match {
        Match {
            target: m.value.clone(),
            read_plate: m.fuzzy.then_some(*read),
            fuzzy: m.fuzzy,
            substitutions: m.substitutions,
        }
    }

    /// The match of an identity number (always exact).
    fn of_person(target: &Arc<Target>) -> Match {
        Match {
            target: target.clone(),
            read_plate: None,
            fuzzy: false,
            substitutions: 0,
        }
    }
}

/// Matches one sighting against a hotlist snapshot (pure). For many sightings at once,
/// [`match_sightings`] gives the same answers faster.
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
            Match::of_plate(hotlist.match_plate(read)?, read)
        }
        TargetKind::Person => Match::of_person(hotlist.match_person(sighting.person_id.as_ref()?)?),
    };
    admit(found, sighting, now)
}

/// [`match_sighting`] for every sighting, in order: one answer each, the same as
/// `match_sighting` gives, but with the vehicle (and person) lookups batched
/// ([`Hotlist::match_plates`]) so their memory accesses overlap. Use it for a batch of
/// sightings from the feed.
pub fn match_sightings(
    hotlist: &Hotlist<Arc<Target>>,
    sightings: &[&Sighting],
    now: DateTime<Utc>,
) -> Vec<Option<Match>> {
    let (mut plates, mut plate_of) = (Vec::new(), Vec::new());
    let (mut persons, mut person_of) = (Vec::new(), Vec::new());
    for (i, sighting) in sightings.iter().enumerate() {
        match sighting.kind {
            TargetKind::Vehicle => {
                if let Some(plate) = sighting.plate {
                    plates.push(plate);
                    plate_of.push(i);
                }
            }
            TargetKind::Person => {
                if let Some(id) = sighting.person_id {
                    persons.push(id);
                    person_of.push(i);
                }
            }
        }
    }
    let mut vehicle_hits = Vec::new();
    hotlist.match_plates(&plates, &mut vehicle_hits);
    let mut person_hits = Vec::new();
    hotlist.match_persons(&persons, &mut person_hits);
    // The checks below read each matched target: start loading them all first.
    for target in vehicle_hits
        .iter()
        .flatten()
        .map(|m| m.value)
        .chain(person_hits.iter().flatten().copied())
    {
        crate::matching::hotlist::prefetch(Arc::as_ptr(target));
    }
    let mut out = vec![None; sightings.len()];
    for ((&i, read), m) in plate_of.iter().zip(&plates).zip(vehicle_hits) {
        out[i] = m.and_then(|m| admit(Match::of_plate(m, read), sightings[i], now));
    }
    for (&i, target) in person_of.iter().zip(person_hits) {
        out[i] = target.and_then(|target| admit(Match::of_person(target), sightings[i], now));
    }
    out
}

/// A lookup's result counts only for a target of the sighting's kind that can still match.
fn admit(found: Match, sighting: &Sighting, now: DateTime<Utc>) -> Option<Match> {
    (found.target.kind == sighting.kind && found.target.is_matchable(now)).then_some(found)
}

/// What a target occupies in the hotlist: its plate or its identity number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkKey {
    Plate(Plate),
    Person(PersonId),
}

impl LinkKey {
    pub fn of(target: &Target) -> Option<LinkKey> {
        match target.kind {
            TargetKind::Vehicle => target.plate.map(LinkKey::Plate),
            TargetKind::Person => target.person_id.map(LinkKey::Person),
        }
    }

    /// The key as text (`plate:浙B12345`, `person:...`), for the database.
    pub fn as_text(&self) -> String {
        match self {
            LinkKey::Plate(p) => format!("plate:{p}"),
            LinkKey::Person(id) => format!("person:{id}"),
        }
    }
}

/// Targets linked by a shared plate or identity number, filed by more than one court.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    #[serde(skip)]
    pub key: LinkKey,
    /// Ordered; the first carries the group's task.
    pub target_ids: Vec<String>,
    pub court_ids: Vec<String>,
    pub cases: Vec<Case>,
    /// The court that asks for the group (lead court, else most cases, then earliest filing).
    pub lead_court_id: Option<String>,
}

/// Merges a group of active targets (sorted by id) into the view the hotlist holds.
fn merge(group: &[Arc<Target>]) -> Target {
    let mut merged = (*group[0]).clone();
    merged.cases = group.iter().flat_map(|t| t.cases.iter().cloned()).collect();
    merged.known_locations = group
        .iter()
        .flat_map(|t| t.known_locations.iter().cloned())
        .collect();
    merged.lead_court_id = group.iter().find_map(|t| t.lead_court_id.clone());
    // The group stops matching when its earliest member expires only if all have: take the
    // latest expiry, with "never" winning.
    merged.valid_until = if group.iter().any(|t| t.valid_until.is_none()) {
        None
    } else {
        group.iter().filter_map(|t| t.valid_until).max()
    };
    merged
}

#[derive(Default)]
struct Writer {
    /// Every active target by id.
    by_id: HashMap<String, Arc<Target>>,
    /// Which active targets share each key.
    by_key: HashMap<LinkKey, BTreeSet<String>>,
    /// `by_id`'s vehicles and persons, kept as it changes: the `leadrelay_targets` gauge reads
    /// these instead of counting the targets table, a scan of every row every 5 s (0.29 s per
    /// 10⁶ targets on SQLite).
    active_vehicles: usize,
    active_persons: usize,
    /// `updated_at` (epoch ms) of the targets applied with a version, until
    /// [`LiveTargets::forget_versions_before`]: the refresh from the database skips a version
    /// already here instead of reading the whole target back.
    versions: HashMap<String, i64>,
}

impl Writer {
    fn count(&mut self, kind: TargetKind) -> &mut usize {
        match kind {
            TargetKind::Vehicle => &mut self.active_vehicles,
            TargetKind::Person => &mut self.active_persons,
        }
    }

    fn group(&self, key: &LinkKey) -> Vec<Arc<Target>> {
        self.by_key
            .get(key)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.by_id.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The service's target set: a lock-free snapshot for readers, a mutex for writers.
pub struct LiveTargets {
    current: ArcSwap<Hotlist<Arc<Target>>>,
    writer: Mutex<Writer>,
    /// Known locations of active targets, rebuilt lazily after edits (sweep planning).
    sweep: Mutex<Option<Arc<SweepIndex>>>,
}

impl LiveTargets {
    pub fn new(config: MatchConfig) -> LiveTargets {
        LiveTargets {
            current: ArcSwap::from_pointee(Hotlist::new(config)),
            writer: Mutex::new(Writer::default()),
            sweep: Mutex::new(None),
        }
    }

    /// The current snapshot; cheap, lock-free.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Hotlist<Arc<Target>>>> {
        self.current.load()
    }

    /// Applies created, replaced or withdrawn targets in one swap. Returns the links that
    /// now span more than one court and include a changed target (for a consolidation
    /// proposal; the store makes sure each is proposed once).
    ///
    /// A target equal to the one held changes nothing and is skipped: a refresh from the
    /// database can hand back targets this replica already holds (edits applied without a
    /// version, or read twice in the refresh's overlap), and rebuilding their hotlist entries
    /// (and copying the hotlist) cost seconds of CPU after a bulk import.
    pub fn apply(&self, targets: impl IntoIterator<Item = Target>) -> Vec<Link> {
        self.apply_versioned(targets.into_iter().map(|t| (None, t)))
    }

    /// [`apply`](Self::apply) for targets read or written with their `updated_at` (epoch ms):
    /// each version is recorded, and the refresh reads back only versions not recorded (see
    /// [`unapplied`](Self::unapplied)). Versions are compared for equality only: replicas'
    /// clocks differ, so a smaller `updated_at` is not an older edit.
    pub fn apply_versioned(
        &self,
        targets: impl IntoIterator<Item = (Option<i64>, Target)>,
    ) -> Vec<Link> {
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut touched: BTreeSet<LinkKey> = BTreeSet::new();
        for (version, target) in targets {
            if let Some(version) = version {
                writer.versions.insert(target.target_id.clone(), version);
            }
            if writer
                .by_id
                .get(&target.target_id)
                .is_some_and(|held| **held == target)
            {
                continue;
            }
            if let Some(old) = writer.by_id.remove(&target.target_id) {
                *writer.count(old.kind) -= 1;
                if let Some(key) = LinkKey::of(&old) {
                    if let Some(ids) = writer.by_key.get_mut(&key) {
                        ids.remove(&old.target_id);
                        if ids.is_empty() {
                            writer.by_key.remove(&key);
                        }
                    }
                    touched.insert(key);
                }
            }
            if target.status != TargetStatus::Active {
                continue;
            }
            let Some(key) = LinkKey::of(&target) else {
                continue;
            };
            writer
                .by_key
                .entry(key)
                .or_default()
                .insert(target.target_id.clone());
            *writer.count(target.kind) += 1;
            writer
                .by_id
                .insert(target.target_id.clone(), Arc::new(target));
            touched.insert(key);
        }
        if touched.is_empty() {
            return Vec::new();
        }
        let mut next = Hotlist::clone(&self.current.load());
        let mut links = Vec::new();
        for key in touched {
            let group = writer.group(&key);
            if group.is_empty() {
                match key {
                    LinkKey::Plate(p) => next.remove_vehicle(&p),
                    LinkKey::Person(id) => next.remove_person(&id),
                };
                continue;
            }
            let merged = Arc::new(merge(&group));
            if let Some(link) = link_of(key, &group, &merged) {
                links.push(link);
            }
            match key {
                LinkKey::Plate(p) => next.insert_vehicle(p, merged),
                LinkKey::Person(id) => next.insert_person(id, merged),
            };
        }
        self.current.store(Arc::new(next));
        *self.sweep.lock().unwrap_or_else(|p| p.into_inner()) = None;
        links
    }

    /// The ids among `versions` (`(target_id, updated_at)`) whose version has not been
    /// applied with [`apply_versioned`](Self::apply_versioned) (or was forgotten).
    pub fn unapplied<'a>(&self, versions: &'a [(String, i64)]) -> Vec<&'a str> {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        versions
            .iter()
            .filter(|(id, at)| writer.versions.get(id) != Some(at))
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// Drops the recorded versions older than `ms`: the refresh no longer reads that far
    /// back, so they only cost memory.
    pub fn forget_versions_before(&self, ms: i64) {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .versions
            .retain(|_, at| *at >= ms);
    }

    /// The link a target belongs to, if it shares its key with targets of other courts.
    pub fn link_of_target(&self, target_id: &str) -> Option<Link> {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = LinkKey::of(writer.by_id.get(target_id)?)?;
        let group = writer.group(&key);
        let merged = merge(&group);
        link_of(key, &group, &merged)
    }

    /// Active targets per kind (status `active`; expiry is not considered): as many as the
    /// database holds once the last refresh has applied its edits.
    pub fn active_counts(&self) -> [(TargetKind, usize); 2] {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        [
            (TargetKind::Person, writer.active_persons),
            (TargetKind::Vehicle, writer.active_vehicles),
        ]
    }

    /// Number of distinct plates and identity numbers in the hotlist.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sweep index over the active targets' known locations (built on first use after
    /// an edit).
    pub fn sweep_index(&self) -> Arc<SweepIndex> {
        let mut cached = self.sweep.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(index) = cached.as_ref() {
            return index.clone();
        }
        let targets: Vec<Arc<Target>> = {
            let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            writer.by_id.values().cloned().collect()
        };
        let index = Arc::new(SweepIndex::build(targets));
        *cached = Some(index.clone());
        index
    }
}

fn link_of(key: LinkKey, group: &[Arc<Target>], merged: &Target) -> Option<Link> {
    let courts: BTreeSet<&str> = group
        .iter()
        .flat_map(|t| t.cases.iter().map(|c| c.court_id.as_str()))
        .collect();
    if group.len() < 2 || courts.len() < 2 {
        return None;
    }
    Some(Link {
        key,
        target_ids: group.iter().map(|t| t.target_id.clone()).collect(),
        court_ids: courts.into_iter().map(str::to_string).collect(),
        cases: merged.cases.clone(),
        lead_court_id: crate::dispatch::route::requesting_court(
            merged.lead_court_id.as_deref(),
            &merged.cases,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::datum::Datum;

    fn vehicle(id: &str, plate: &str, court: &str) -> Target {
        serde_json::from_value(serde_json::json!({
            "target_id": id, "kind": "vehicle", "plate": plate,
            "cases": [{"case_no": format!("c-{id}"), "court_id": court, "filed_on": "2024-03-01"}],
            "known_locations": [{"label": "domicile", "lat": 30.05, "lon": 121.15}]
        }))
        .unwrap()
    }

    fn person(id: &str, person_id: &str, court: &str) -> Target {
        serde_json::from_value(serde_json::json!({
            "target_id": id, "kind": "person", "person_id": person_id,
            "cases": [{"case_no": format!("c-{id}"), "court_id": court, "filed_on": "2024-03-01"}]
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
        live.apply([vehicle("T1", "浙B12345", "yuyao")]);
        let now = Utc::now();
        let exact = match_sighting(&live.snapshot(), &sighting("浙b·12345"), now).unwrap();
        assert!(!exact.fuzzy && exact.read_plate.is_none());
        let fuzzy = match_sighting(&live.snapshot(), &sighting("浙B1234S"), now).unwrap();
        assert!(fuzzy.fuzzy && fuzzy.substitutions == 1);
        assert_eq!(fuzzy.read_plate.unwrap().as_str(), "浙B1234S");
        assert!(match_sighting(&live.snapshot(), &sighting("浙B99999"), now).is_none());
    }

    #[test]
    fn batched_matching_agrees_with_one_at_a_time() {
        let live = LiveTargets::new(MatchConfig::default());
        let mut expired = vehicle("T3", "浙B77777", "yuyao");
        expired.valid_until = Some(Utc::now() - chrono::Duration::minutes(1));
        live.apply([
            vehicle("T1", "浙B12345", "yuyao"),
            vehicle("T2", "浙BB0012", "cixi"),
            expired,
            person("P1", "11010519491231002X", "cixi"),
        ]);
        let mut sightings: Vec<Sighting> = [
            "浙B12345",
            "浙b·12345",
            "浙B1234S",
            "浙B99999",
            "浙B8O0I2",
            "浙BBO0I2",
            "浙B77777",
            "沪B12345",
        ]
        .iter()
        .map(|p| sighting(p))
        .collect();
        let mut person_sighting = sighting("浙B12345");
        person_sighting.kind = TargetKind::Person;
        person_sighting.plate = None;
        person_sighting.person_id = Some("11010519491231002x".parse().unwrap());
        sightings.push(person_sighting.clone());
        person_sighting.person_id = Some("440524188001010014".parse().unwrap());
        sightings.push(person_sighting.clone());
        // A person's sighting carrying a flagged plate matches nothing by plate.
        person_sighting.person_id = None;
        person_sighting.plate = Some("浙B12345".parse().unwrap());
        sightings.push(person_sighting);
        let mut no_plate = sighting("浙B12345");
        no_plate.plate = None;
        sightings.push(no_plate);
        // Enough copies for several pipeline groups, in a shuffled order.
        let refs: Vec<&Sighting> = (0..200)
            .map(|i| &sightings[i * 7 % sightings.len()])
            .collect();
        let now = Utc::now();
        let snapshot = live.snapshot();
        let batched = match_sightings(&snapshot, &refs, now);
        assert_eq!(batched.len(), refs.len());
        let summary = |m: &Option<Match>| {
            m.as_ref().map(|m| {
                (
                    m.target.target_id.clone(),
                    m.read_plate,
                    m.fuzzy,
                    m.substitutions,
                )
            })
        };
        let mut matched = 0;
        for (s, b) in refs.iter().zip(&batched) {
            let single = match_sighting(&snapshot, s, now);
            assert_eq!(summary(b), summary(&single), "{s:?}");
            matched += usize::from(single.is_some());
        }
        assert!(matched > 50 && matched < 150, "{matched}");
        assert!(match_sightings(&snapshot, &[], now).is_empty());
    }

    #[test]
    fn edits_take_effect_and_old_snapshots_stay_intact() {
        let live = LiveTargets::new(MatchConfig::default());
        live.apply([vehicle("T1", "浙B12345", "yuyao")]);
        let before = live.snapshot().clone();
        // The plate of T1 is corrected; the old plate stops matching.
        live.apply([vehicle("T1", "浙B54321", "yuyao")]);
        let now = Utc::now();
        assert!(match_sighting(&live.snapshot(), &sighting("浙B12345"), now).is_none());
        assert!(match_sighting(&live.snapshot(), &sighting("浙B54321"), now).is_some());
        assert!(match_sighting(&before, &sighting("浙B12345"), now).is_some());
        // Withdrawn: gone.
        let mut withdrawn = vehicle("T1", "浙B54321", "yuyao");
        withdrawn.status = TargetStatus::Withdrawn;
        live.apply([withdrawn]);
        assert!(live.is_empty());
    }

    #[test]
    fn reapplying_an_unchanged_target_changes_nothing() {
        let live = LiveTargets::new(MatchConfig::default());
        let mut cixi = vehicle("T-C", "浙B12345", "cixi");
        let links = live.apply([vehicle("T-Y", "浙B12345", "yuyao"), cixi.clone()]);
        assert_eq!(links.len(), 1, "two courts' cases on one plate are a link");
        let before = live.snapshot().clone();
        // The refresh hands back the same versions: no new snapshot, no link to propose.
        assert!(live.apply([cixi.clone()]).is_empty());
        assert!(Arc::ptr_eq(&before, &live.snapshot()));
        // A real edit still takes effect.
        cixi.name = Some("renamed".into());
        assert_eq!(live.apply([cixi]).len(), 1);
        assert!(!Arc::ptr_eq(&before, &live.snapshot()));
    }

    #[test]
    fn only_versions_not_applied_are_read_back() {
        let live = LiveTargets::new(MatchConfig::default());
        live.apply_versioned([
            (Some(1_000), vehicle("T1", "浙B12345", "yuyao")),
            (Some(1_000), vehicle("T2", "浙B23456", "yuyao")),
        ]);
        // Applied without a version (the initial load, a withdrawal): read back once.
        live.apply([vehicle("T3", "浙B34567", "cixi")]);
        let seen = |id: &str, at: i64| (id.to_string(), at);
        let versions = [
            seen("T1", 1_000),
            seen("T2", 1_001),
            seen("T3", 1_000),
            seen("T4", 999),
        ];
        // T2 changed again (another replica's edit, whatever its clock says); T4 is unknown.
        assert_eq!(live.unapplied(&versions), ["T2", "T3", "T4"]);
        live.apply_versioned([(Some(1_001), vehicle("T2", "浙B23456", "cixi"))]);
        assert_eq!(live.unapplied(&versions), ["T3", "T4"]);
        // A version from a slower clock is still a new edit.
        assert_eq!(live.unapplied(&[seen("T2", 900)]), ["T2"]);
        // Forgotten versions are read back again; the hotlist keeps the targets.
        live.forget_versions_before(1_001);
        assert_eq!(live.unapplied(&versions), ["T1", "T3", "T4"]);
        assert_eq!(live.len(), 3);
    }

    #[test]
    fn active_counts_follow_every_edit() {
        let live = LiveTargets::new(MatchConfig::default());
        // Two targets on one plate are two rows of the table, so two in the gauge.
        live.apply([
            vehicle("T1", "浙B12345", "yuyao"),
            vehicle("T2", "浙B12345", "cixi"),
            person("P1", "11010519491231002X", "cixi"),
        ]);
        let counts = |live: &LiveTargets| live.active_counts().map(|(_, n)| n);
        assert_eq!(counts(&live), [1, 2]);
        // A replacement counts once; a withdrawal drops out, and withdrawing again is no-op.
        live.apply([vehicle("T1", "浙B54321", "yuyao")]);
        assert_eq!(counts(&live), [1, 2]);
        let mut withdrawn = vehicle("T2", "浙B12345", "cixi");
        withdrawn.status = TargetStatus::Withdrawn;
        live.apply([withdrawn.clone()]);
        live.apply([withdrawn]);
        assert_eq!(counts(&live), [1, 1]);
        assert_eq!(live.active_counts()[0].0, TargetKind::Person);
    }

    #[test]
    fn expired_targets_do_not_match() {
        let live = LiveTargets::new(MatchConfig::default());
        let mut t = vehicle("T1", "浙B12345", "yuyao");
        t.valid_until = Some(Utc::now() - chrono::Duration::minutes(1));
        live.apply([t]);
        assert!(match_sighting(&live.snapshot(), &sighting("浙B12345"), Utc::now()).is_none());
    }

    #[test]
    fn targets_sharing_a_plate_are_linked_into_one_view() {
        // Story 2: three cases at Yuyao, one at Cixi, against the same company car.
        let live = LiveTargets::new(MatchConfig::default());
        let mut yuyao = vehicle("T-Y", "浙B12345", "yuyao");
        yuyao.cases.push(yuyao.cases[0].clone());
        yuyao.cases.push(yuyao.cases[0].clone());
        assert!(live.apply([yuyao.clone()]).is_empty());
        let links = live.apply([vehicle("T-C", "浙B12345", "cixi")]);
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].target_ids, vec!["T-C", "T-Y"]);
        assert_eq!(links[0].court_ids, vec!["cixi", "yuyao"]);
        assert_eq!(links[0].lead_court_id.as_deref(), Some("yuyao"));
        let m = match_sighting(&live.snapshot(), &sighting("浙B12345"), Utc::now()).unwrap();
        assert_eq!(
            m.target.target_id, "T-C",
            "the lowest id carries the group's task"
        );
        assert_eq!(m.target.cases.len(), 4);
        assert_eq!(live.link_of_target("T-Y").unwrap().target_ids.len(), 2);
        // Withdrawing one member leaves the other matching on its own.
        let mut gone = vehicle("T-C", "浙B12345", "cixi");
        gone.status = TargetStatus::Withdrawn;
        live.apply([gone]);
        let m = match_sighting(&live.snapshot(), &sighting("浙B12345"), Utc::now()).unwrap();
        assert_eq!(
            (m.target.target_id.as_str(), m.target.cases.len()),
            ("T-Y", 3)
        );
        assert!(live.link_of_target("T-Y").is_none());
    }

    #[test]
    fn sweep_index_finds_exactly_the_targets_in_range() {
        let live = LiveTargets::new(MatchConfig::default());
        let mut far = vehicle("T-far", "浙B00002", "cixi");
        far.known_locations[0].lat = 29.3;
        live.apply([vehicle("T-near", "浙B00001", "yuyao"), far]);
        let index = live.sweep_index();
        let now = Utc::now();
        let near = index.query(None, |_, _| true, Some((30.05, 121.15, 5.0)), now);
        assert_eq!(
            near.iter()
                .map(|t| t.target_id.as_str())
                .collect::<Vec<_>>(),
            vec!["T-near"]
        );
        let all = index.query(None, |_, _| true, None, now);
        assert_eq!(all.len(), 2);
        let south = index.query(Some(([121.0, 29.0], [122.0, 29.5])), |_, _| true, None, now);
        assert_eq!(
            south
                .iter()
                .map(|t| t.target_id.as_str())
                .collect::<Vec<_>>(),
            vec!["T-far"]
        );
    }
}
