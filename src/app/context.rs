//! The application context: what every entry point (MQTT pipeline, HTTP, timers, CLI) acts
//! through, so the same action behaves the same whichever way it was asked for.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::contract::task::{StatusLimits, Topics};
use crate::dispatch::policy::{Deadlines, Policy};
use crate::geo::locate::JurisdictionIndex;
use crate::matching::targets::LiveTargets;
use crate::mqtt::Publisher;
use crate::store::Store;

/// The store, the live hotlist, the geography, the topics, the dispatch knobs, the publisher
/// and the clock of one running service. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub targets: Arc<LiveTargets>,
    pub index: Arc<JurisdictionIndex>,
    pub topics: Topics,
    pub deadlines: Deadlines,
    /// Cooldown after not_found, reassignment dwell and distance.
    pub policy: Policy,
    pub publisher: Publisher,
    pub clock: Clock,
    /// Bounds on status reports, whether they come by MQTT or HTTP.
    pub status_limits: StatusLimits,
}

impl App {
    /// The time every action stamps and compares with.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
