//! The knobs of dispatch, and what a matched sighting carries into it: deadlines per court,
//! the `not_found` cooldown and the border rules.

use std::collections::HashMap;
use std::sync::Arc;

use crate::contract::model::{Case, Sighting};
use crate::contract::plate::Plate;
use crate::dispatch::route::RouteDecision;

/// How long a command center has to acknowledge, and to resolve, a task it receives: the
/// defaults, and per court (the assisting court's entry wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlines {
    pub ack: chrono::Duration,
    pub resolve: chrono::Duration,
    /// Court id -> (ack, resolve) for that court's command center.
    pub per_court: HashMap<String, (chrono::Duration, chrono::Duration)>,
}

impl Default for Deadlines {
    /// The contract's defaults: 5 minutes to acknowledge, 30 to resolve; no court overrides.
    fn default() -> Self {
        Deadlines {
            ack: chrono::Duration::minutes(5),
            resolve: chrono::Duration::minutes(30),
            per_court: HashMap::new(),
        }
    }
}

impl Deadlines {
    /// (ack, resolve) for a task held by `court`.
    pub fn for_court(&self, court: &str) -> (chrono::Duration, chrono::Duration) {
        self.per_court
            .get(court)
            .copied()
            .unwrap_or((self.ack, self.resolve))
    }
}

/// How the group commit treats sightings of a target with a recent or open task.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// After a task closed as `not_found`, sightings open no new task for this long.
    pub not_found_cooldown: chrono::Duration,
    /// An open task moves to the court a newer sighting places the target in only after the
    /// target has been seen there (and not back in the holder's area) for this long...
    pub reassign_dwell: chrono::Duration,
    /// ... or at once when the sighting is farther than this from the holder's command center.
    pub reassign_distance_km: f64,
    /// Outside every participating area, a sighting farther than this from the nearest
    /// command center is no lead for any court (an OCR'd GPS fix at (0, 0), a foreign feed).
    pub max_outside_km: f64,
    /// Court id -> command center (lon, lat), WGS-84. A holder missing here is never moved by
    /// distance, only by dwell.
    pub centers: Arc<HashMap<String, (f64, f64)>>,
}

impl Default for Policy {
    /// 10 minutes' cooldown, 3 minutes' dwell, 15 km, 300 km outside, no command centers.
    fn default() -> Self {
        Policy {
            not_found_cooldown: chrono::Duration::minutes(10),
            reassign_dwell: chrono::Duration::minutes(3),
            reassign_distance_km: 15.0,
            max_outside_km: 300.0,
            centers: Arc::new(HashMap::new()),
        }
    }
}

/// A sighting that matched a flagged target, routed, ready to become a task or an update.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedSighting {
    /// Validated, WGS-84.
    pub sighting: Sighting,
    pub target_id: String,
    /// Kind, requesting and assisting court, routing, distance.
    pub route: RouteDecision,
    /// What the camera read, when it differs from the flagged plate.
    pub read_plate: Option<Plate>,
    pub fuzzy: bool,
    pub substitutions: u8,
    /// The merged cases of every target linked to this one (same plate or identity number),
    /// carried by a new task; empty = the target row's own cases. `target_id` is the linked
    /// group's representative (its lowest id); its row decides whether the target is active.
    pub cases: Vec<Case>,
}
