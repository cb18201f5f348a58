//! Durations as operators write them (`90s`, `5m`, `7days`), in flags and in the file alike.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::service::config::error::{ConfigError, invalid};

/// A duration parsed and printed with humantime, so defaults read in `--help` as they are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> HumanDuration {
        HumanDuration(Duration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> HumanDuration {
        HumanDuration(Duration::from_millis(millis))
    }

    /// The same span for the dispatch rules, which count in chrono's durations.
    pub fn to_chrono(self, setting: &'static str) -> Result<chrono::Duration, ConfigError> {
        chrono::Duration::from_std(self.0).map_err(|e| invalid(setting, format!("{self}: {e}")))
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(text)
            .map(HumanDuration)
            .map_err(|e| format!("{text:?}: {e} (use e.g. 90s, 5m, 1h)"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_prints_as_typed() {
        for text in ["1ms", "1s", "90s", "5m", "30m", "7days"] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.to_string(), text.replace("90s", "1m 30s"));
        }
        assert!("soon".parse::<HumanDuration>().is_err());
    }
}
