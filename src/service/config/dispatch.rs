//! Task deadlines, the escalation timer, and the rules for repeat sightings and borders.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::dispatch::policy::{Deadlines, Policy};
use crate::geo::geodata::GeoData;
use crate::service::config::duration::HumanDuration;
use crate::service::config::error::{ConfigError, invalid};
use crate::service::config::layer::{Layered, required};

/// Dispatch settings.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default)]
#[command(next_help_heading = "Dispatch")]
pub struct DispatchArgs {
    /// Time a command center has to acknowledge a task: `90s`, `5m`, `1h` (default 5m).
    #[arg(long, env = "LEADRELAY_ACK_TIMEOUT")]
    pub ack_timeout: Option<HumanDuration>,
    /// Time to resolve a task: seize, locate, ... (default 30m).
    #[arg(long, env = "LEADRELAY_RESOLVE_TIMEOUT")]
    pub resolve_timeout: Option<HumanDuration>,
    /// After `not_found`, how long before a new sighting may open a new task (default 10m).
    #[arg(long, env = "LEADRELAY_NOT_FOUND_COOLDOWN")]
    pub not_found_cooldown: Option<HumanDuration>,
    /// How long a target must keep being seen in another court's area before its open task
    /// moves there, so border jitter does not bounce tasks (default 3m).
    #[arg(long, env = "LEADRELAY_REASSIGN_DWELL")]
    pub reassign_dwell: Option<HumanDuration>,
    /// A sighting this far (km) from the holding court's command center moves the task at
    /// once (default 15).
    #[arg(long, env = "LEADRELAY_REASSIGN_DISTANCE_KM")]
    pub reassign_distance_km: Option<f64>,
    /// A matched sighting outside every participating court's area and farther than this (km)
    /// from the nearest command center is a dead letter `out_of_area`, not a task: a
    /// neighbouring city (Shanghai is ~100 km from Cixi) still reaches the nearest center, a
    /// position at (0, 0) does not (default 300).
    #[arg(long, env = "LEADRELAY_MAX_OUTSIDE_KM")]
    pub max_outside_km: Option<f64>,
    /// How often deadlines are checked for escalation (default 1s).
    #[arg(long, env = "LEADRELAY_TIMER_INTERVAL")]
    pub timer_interval: Option<HumanDuration>,
}

impl Layered for DispatchArgs {
    fn defaults() -> Self {
        DispatchArgs {
            ack_timeout: Some(HumanDuration::from_secs(5 * 60)),
            resolve_timeout: Some(HumanDuration::from_secs(30 * 60)),
            not_found_cooldown: Some(HumanDuration::from_secs(10 * 60)),
            reassign_dwell: Some(HumanDuration::from_secs(3 * 60)),
            reassign_distance_km: Some(15.0),
            max_outside_km: Some(300.0),
            timer_interval: Some(HumanDuration::from_secs(1)),
        }
    }
}

/// One court's deadlines, from the file's `[court_deadlines.<court>]`; unset ones are the
/// service's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourtDeadlines {
    pub ack_timeout: Option<HumanDuration>,
    pub resolve_timeout: Option<HumanDuration>,
}

/// Validated dispatch settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchSettings {
    pub deadlines: Deadlines,
    pub policy: Policy,
    pub timer_interval: Duration,
}

impl DispatchArgs {
    /// Checks the layered settings; `per_court` must name courts of `geo`, whose command
    /// centers the border rules measure from.
    pub fn validate(
        self,
        per_court: &BTreeMap<String, CourtDeadlines>,
        geo: &GeoData,
    ) -> Result<DispatchSettings, ConfigError> {
        let ack = required(self.ack_timeout, "ack_timeout")?;
        let resolve = required(self.resolve_timeout, "resolve_timeout")?;
        let (ack_chrono, resolve_chrono) =
            deadline_pair(ack, resolve).map_err(|e| invalid("resolve_timeout", e))?;
        let mut deadlines = Deadlines {
            ack: ack_chrono,
            resolve: resolve_chrono,
            per_court: HashMap::new(),
        };
        for (court, own) in per_court {
            if geo.court(court).is_none() {
                return Err(invalid(
                    "court_deadlines",
                    format!("{court:?} is not in the courts data"),
                ));
            }
            let pair = deadline_pair(
                own.ack_timeout.unwrap_or(ack),
                own.resolve_timeout.unwrap_or(resolve),
            )
            .map_err(|e| invalid("court_deadlines", format!("{court}: {e}")))?;
            deadlines.per_court.insert(court.clone(), pair);
        }
        let timer_interval = required(self.timer_interval, "timer_interval")?.0;
        if timer_interval.is_zero() {
            return Err(invalid("timer_interval", "must be positive"));
        }
        let reassign_distance_km = required(self.reassign_distance_km, "reassign_distance_km")?;
        if !(reassign_distance_km.is_finite() && reassign_distance_km > 0.0) {
            return Err(invalid(
                "reassign_distance_km",
                format!("{reassign_distance_km}: must be positive"),
            ));
        }
        let max_outside_km = required(self.max_outside_km, "max_outside_km")?;
        if !(max_outside_km.is_finite() && max_outside_km > 0.0) {
            return Err(invalid(
                "max_outside_km",
                format!("{max_outside_km}: must be positive"),
            ));
        }
        let centers = geo
            .courts
            .iter()
            .map(|c| (c.court_id.clone(), (c.command_center.x, c.command_center.y)))
            .collect();
        let policy = Policy {
            not_found_cooldown: required(self.not_found_cooldown, "not_found_cooldown")?
                .to_chrono("not_found_cooldown")?,
            reassign_dwell: required(self.reassign_dwell, "reassign_dwell")?
                .to_chrono("reassign_dwell")?,
            reassign_distance_km,
            max_outside_km,
            centers: Arc::new(centers),
        };
        Ok(DispatchSettings {
            deadlines,
            policy,
            timer_interval,
        })
    }
}

/// (ack, resolve) once the acknowledgement deadline is positive and resolving takes no less.
fn deadline_pair(
    ack: HumanDuration,
    resolve: HumanDuration,
) -> Result<(chrono::Duration, chrono::Duration), String> {
    if ack.0.is_zero() || resolve.0 < ack.0 {
        return Err("must be positive and not shorter than ack_timeout".into());
    }
    let chrono =
        |d: HumanDuration| chrono::Duration::from_std(d.0).map_err(|e| format!("{d}: {e}"));
    Ok((chrono(ack)?, chrono(resolve)?))
}
