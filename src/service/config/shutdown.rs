//! How long a graceful shutdown may take.

use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::service::config::duration::HumanDuration;
use crate::service::config::error::{ConfigError, invalid};
use crate::service::config::layer::{Layered, required};

/// How long [`run`] waits by default for a graceful shutdown once asked: the publisher's 10 s drain plus
/// a margin, and below the 30 s an orchestrator typically waits before it kills. Whatever was
/// not acked is redelivered by the broker; whatever was committed, the outbox publishes.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Shutdown settings.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default)]
#[command(next_help_heading = "Shutdown")]
pub struct ShutdownArgs {
    /// Longest the service drains (batch in hand, HTTP, outbox) after SIGTERM or ctrl-c; past
    /// it the process exits with an error. Keep it below the orchestrator's own kill timeout
    /// (default 20s).
    #[arg(long, env = "LEADRELAY_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<HumanDuration>,
}

impl Layered for ShutdownArgs {
    fn defaults() -> Self {
        ShutdownArgs {
            shutdown_grace: Some(HumanDuration(SHUTDOWN_GRACE)),
        }
    }
}

impl ShutdownArgs {
    /// Checks the layered settings: a grace above zero.
    pub fn validate(self) -> Result<Duration, ConfigError> {
        let grace = required(self.shutdown_grace, "shutdown_grace")?.0;
        if grace.is_zero() {
            return Err(invalid("shutdown_grace", "must be more than 0s"));
        }
        Ok(grace)
    }
}
