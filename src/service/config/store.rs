//! The database.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::service::config::error::{ConfigError, invalid};
use crate::service::config::layer::{Layered, layered, required};

/// Database settings.
#[derive(Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default)]
#[command(next_help_heading = "Database")]
pub struct StoreArgs {
    /// `sqlite://PATH` or `postgres://...` (default sqlite://leadrelay.db).
    #[arg(long, env = "LEADRELAY_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// Kept out of `Debug` in full: the URL may hold a password.
impl std::fmt::Debug for StoreArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreArgs")
            .field("database_url", &self.database_url.as_deref().map(redact))
            .finish()
    }
}

impl Layered for StoreArgs {
    fn defaults() -> Self {
        StoreArgs {
            database_url: Some("sqlite://leadrelay.db".into()),
        }
    }
}

impl StoreArgs {
    /// Checks the layered settings: the database URL.
    pub fn validate(self) -> Result<String, ConfigError> {
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
        Ok(url)
    }

    /// The database URL of a command that reads no config file: the flag or the default.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        layered(self, &StoreArgs::default())?.validate()
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
