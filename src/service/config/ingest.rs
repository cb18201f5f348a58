//! How sightings are taken in: decoding limits, de-duplication and the group commit.

use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::contract::decode::DecodeLimits;
use crate::service::config::duration::HumanDuration;
use crate::service::config::error::{ConfigError, invalid};
use crate::service::config::layer::{Layered, required};

/// Ingest settings.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default)]
#[command(next_help_heading = "Ingest")]
pub struct IngestArgs {
    /// Largest group-commit batch of matched sightings, 1 to 10000 (default 500).
    #[arg(long, env = "LEADRELAY_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Longest wait to fill a batch once it holds a matched sighting (default 1ms).
    #[arg(long, env = "LEADRELAY_BATCH_WINDOW")]
    pub batch_window: Option<HumanDuration>,
    /// How far in the future `observed_at` may lie: cameras' clocks drift (default 5m).
    #[arg(long, env = "LEADRELAY_MAX_FUTURE_SKEW")]
    pub max_future_skew: Option<HumanDuration>,
    /// How old `observed_at` may be; older sightings are dead letters `stale_time`, never
    /// tasks (default 1day).
    #[arg(long, env = "LEADRELAY_MAX_SIGHTING_AGE")]
    pub max_sighting_age: Option<HumanDuration>,
    /// How long processed event ids are kept for de-duplication (default 7days).
    #[arg(long, env = "LEADRELAY_DEDUP_RETENTION")]
    pub dedup_retention: Option<HumanDuration>,
    /// Oldest a received message may wait for its ack before /readyz reports the pipeline
    /// stuck (default 30s).
    #[arg(long, env = "LEADRELAY_MAX_UNACKED_AGE")]
    pub max_unacked_age: Option<HumanDuration>,
}

impl Layered for IngestArgs {
    fn defaults() -> Self {
        IngestArgs {
            max_batch: Some(500),
            batch_window: Some(HumanDuration::from_millis(1)),
            max_future_skew: Some(HumanDuration::from_secs(5 * 60)),
            max_sighting_age: Some(HumanDuration::from_secs(24 * 3600)),
            dedup_retention: Some(HumanDuration::from_secs(7 * 24 * 3600)),
            max_unacked_age: Some(HumanDuration::from_secs(30)),
        }
    }
}

/// Validated ingest settings.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub max_batch: usize,
    pub batch_window: Duration,
    pub decode: DecodeLimits,
    pub dedup_retention: Duration,
    pub max_unacked_age: Duration,
}

impl IngestArgs {
    /// Checks the layered settings.
    pub fn validate(self) -> Result<IngestSettings, ConfigError> {
        let max_batch = required(self.max_batch, "max_batch")?;
        if !(1..=10_000).contains(&max_batch) {
            return Err(invalid(
                "max_batch",
                format!("{max_batch}: must be 1 to 10000"),
            ));
        }
        let max_future_skew = required(self.max_future_skew, "max_future_skew")?;
        let max_sighting_age = required(self.max_sighting_age, "max_sighting_age")?;
        if max_sighting_age.0.is_zero() {
            return Err(invalid("max_sighting_age", "must be positive"));
        }
        Ok(IngestSettings {
            max_batch,
            batch_window: required(self.batch_window, "batch_window")?.0,
            decode: DecodeLimits {
                max_future_skew: max_future_skew.to_chrono("max_future_skew")?,
                max_age: max_sighting_age.to_chrono("max_sighting_age")?,
                ..DecodeLimits::default()
            },
            dedup_retention: required(self.dedup_retention, "dedup_retention")?.0,
            max_unacked_age: required(self.max_unacked_age, "max_unacked_age")?.0,
        })
    }
}
