//! Fuzzy plate matching.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::contract::plate::Confusables;
use crate::matching::hotlist::MatchConfig;
use crate::service::config::error::{ConfigError, invalid};
use crate::service::config::layer::{Layered, required};

/// Matching settings.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default)]
#[command(next_help_heading = "Matching")]
pub struct MatchingArgs {
    /// Most OCR substitutions a fuzzy plate match may have (default 2).
    #[arg(long, env = "LEADRELAY_MAX_SUBSTITUTIONS")]
    pub max_substitutions: Option<u8>,
    /// Confusable character classes, comma-separated (default 0ODQ,1I,2Z,5S,8B,6G).
    #[arg(long, env = "LEADRELAY_CONFUSABLES", value_delimiter = ',')]
    pub confusables: Option<Vec<String>>,
}

impl Layered for MatchingArgs {
    fn defaults() -> Self {
        MatchingArgs {
            max_substitutions: Some(2),
            confusables: Some(
                ["0ODQ", "1I", "2Z", "5S", "8B", "6G"]
                    .map(String::from)
                    .into(),
            ),
        }
    }
}

impl MatchingArgs {
    /// Checks the layered settings.
    pub fn validate(self) -> Result<MatchConfig, ConfigError> {
        let classes = required(self.confusables, "confusables")?;
        Ok(MatchConfig {
            confusables: Confusables::from_classes(&classes)
                .map_err(|e| invalid("confusables", e.to_string()))?,
            max_substitutions: required(self.max_substitutions, "max_substitutions")?,
        })
    }
}
