//! The database.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::service::config::duration::HumanDuration;
use crate::service::config::error::{ConfigError, invalid};
use crate::service::config::layer::{Layered, layered, required};
use crate::store::{DbLimits, Retention};

/// Database settings.
#[derive(Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default)]
#[command(next_help_heading = "Database")]
pub struct StoreArgs {
    /// `sqlite://PATH` or `postgres://...`; DATABASE_URL is read too, after
    /// LEADRELAY_DATABASE_URL (default sqlite://leadrelay.db).
    #[arg(long, env = "LEADRELAY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL: longest one statement may run; 0s = no limit (default 10s).
    #[arg(long, env = "LEADRELAY_DB_STATEMENT_TIMEOUT")]
    pub db_statement_timeout: Option<HumanDuration>,
    /// PostgreSQL: longest a statement waits for a lock; 0s = no limit (default 5s).
    #[arg(long, env = "LEADRELAY_DB_LOCK_TIMEOUT")]
    pub db_lock_timeout: Option<HumanDuration>,
    /// PostgreSQL: the server ends a session idle this long inside a transaction, releasing
    /// its locks; 0s = no limit (default 30s).
    #[arg(long, env = "LEADRELAY_DB_IDLE_IN_TRANSACTION_TIMEOUT")]
    pub db_idle_in_transaction_timeout: Option<HumanDuration>,
    /// Longest the service awaits a group commit or status update before abandoning it and
    /// retrying on a fresh connection (default 30s).
    #[arg(long, env = "LEADRELAY_DB_OPERATION_TIMEOUT")]
    pub db_operation_timeout: Option<HumanDuration>,
    /// How long a closed task keeps its sighting details (positions, the plate as read, the
    /// source) after it closed (default 30days).
    #[arg(long, env = "LEADRELAY_SIGHTING_RETENTION")]
    pub sighting_retention: Option<HumanDuration>,
    /// How long a closed task and its history are kept after it closed; open tasks are kept
    /// (default 1year).
    #[arg(long, env = "LEADRELAY_RETENTION")]
    pub retention: Option<HumanDuration>,
    /// How long audit rows are kept, counted in whole days (rounded down), at least 30 days
    /// (the database enforces it) (default 5years).
    #[arg(long, env = "LEADRELAY_AUDIT_RETENTION")]
    pub audit_retention: Option<HumanDuration>,
    /// How long the events of the console stream (GET /api/v1/events) are kept: a console
    /// reconnecting with Last-Event-ID resumes from an event at most this old (default 1day).
    #[arg(long, env = "LEADRELAY_EVENT_RETENTION")]
    pub event_retention: Option<HumanDuration>,
}

/// Kept out of `Debug` in full: the URL may hold a password.
impl std::fmt::Debug for StoreArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreArgs")
            .field("database_url", &self.database_url.as_deref().map(redact))
            .field("db_statement_timeout", &self.db_statement_timeout)
            .field("db_lock_timeout", &self.db_lock_timeout)
            .field(
                "db_idle_in_transaction_timeout",
                &self.db_idle_in_transaction_timeout,
            )
            .field("db_operation_timeout", &self.db_operation_timeout)
            .field("sighting_retention", &self.sighting_retention)
            .field("retention", &self.retention)
            .field("audit_retention", &self.audit_retention)
            .field("event_retention", &self.event_retention)
            .finish()
    }
}

impl Layered for StoreArgs {
    fn defaults() -> Self {
        let limits = DbLimits::default();
        StoreArgs {
            database_url: Some("sqlite://leadrelay.db".into()),
            db_statement_timeout: Some(HumanDuration(limits.statement_timeout)),
            db_lock_timeout: Some(HumanDuration(limits.lock_timeout)),
            db_idle_in_transaction_timeout: Some(HumanDuration(limits.idle_in_transaction_timeout)),
            db_operation_timeout: Some(HumanDuration(limits.operation_timeout)),
            sighting_retention: Some(HumanDuration::from_secs(30 * 24 * 3600)),
            // humantime's year (365.25 days), so that it reads back as `1year`.
            retention: Some(HumanDuration::from_secs(31_557_600)),
            audit_retention: Some(HumanDuration::from_secs(5 * 31_557_600)),
            event_retention: Some(HumanDuration::from_secs(24 * 3600)),
        }
    }
}

/// Validated database settings.
#[derive(Clone)]
pub struct StoreSettings {
    pub url: String,
    pub limits: DbLimits,
    pub retention: Retention,
}

impl StoreArgs {
    /// These flags with `database_url` taken from `DATABASE_URL` when neither the flag nor
    /// `LEADRELAY_DATABASE_URL` gave one: the name many tools and hosting platforms set.
    /// An environment variable, so it goes before the config file.
    pub fn with_common_env(&self) -> StoreArgs {
        let mut flags = self.clone();
        if flags.database_url.is_none() {
            flags.database_url = std::env::var("DATABASE_URL")
                .ok()
                .filter(|url| !url.is_empty());
        }
        flags
    }

    /// Checks the layered settings: the database URL and the bounds on database waits.
    pub fn validate(self) -> Result<StoreSettings, ConfigError> {
        let url = required(self.database_url, "database_url")?;
        let known = url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://");
        if !known {
            return Err(invalid(
                "database_url",
                format!(
                    "{:?}: expected sqlite://PATH or postgres://...",
                    redact(&url)
                ),
            ));
        }
        let operation_timeout = required(self.db_operation_timeout, "db_operation_timeout")?.0;
        if operation_timeout.is_zero() {
            return Err(invalid("db_operation_timeout", "must be more than 0s"));
        }
        let limits = DbLimits {
            statement_timeout: required(self.db_statement_timeout, "db_statement_timeout")?.0,
            lock_timeout: required(self.db_lock_timeout, "db_lock_timeout")?.0,
            idle_in_transaction_timeout: required(
                self.db_idle_in_transaction_timeout,
                "db_idle_in_transaction_timeout",
            )?
            .0,
            operation_timeout,
        };
        let sighting_details = required(self.sighting_retention, "sighting_retention")?
            .to_chrono("sighting_retention")?;
        let closed_tasks = required(self.retention, "retention")?.to_chrono("retention")?;
        if sighting_details <= chrono::Duration::zero() || closed_tasks < sighting_details {
            return Err(invalid(
                "retention",
                "both retentions must be positive, and --retention at least --sighting-retention",
            ));
        }
        let audit = required(self.audit_retention, "audit_retention")?.0;
        let audit_days = audit.as_secs() / 86_400;
        if !(30..=36_500).contains(&audit_days) {
            return Err(invalid("audit_retention", "from 30days to 100years"));
        }
        let events =
            required(self.event_retention, "event_retention")?.to_chrono("event_retention")?;
        if events <= chrono::Duration::zero() {
            return Err(invalid("event_retention", "must be more than 0s"));
        }
        Ok(StoreSettings {
            url,
            limits,
            retention: Retention {
                sighting_details,
                closed_tasks,
                audit_days: audit_days as u32,
                events,
            },
        })
    }

    /// The database URL of a command that reads no config file: the flag or the default.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        Ok(layered(&self.with_common_env(), &StoreArgs::default())?
            .validate()?
            .url)
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
