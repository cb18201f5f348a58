//! Flag over file over default, for any group of settings.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::service::config::error::{ConfigError, invalid};

/// A group of settings whose fields are all `Option`s: `Some` where a layer sets the setting.
pub trait Layered: Serialize + DeserializeOwned + Default {
    /// The group's defaults; a field left `None` is a setting that may stay unset.
    fn defaults() -> Self;
}

/// Each setting from the first of flags, file and defaults that sets it.
///
/// Field by field through serde, so a group's settings are listed once: in its struct.
pub fn layered<T: Layered>(flags: &T, file: &T) -> Result<T, ConfigError> {
    let mut merged = serde_json::Map::new();
    for layer in [&T::defaults(), file, flags] {
        let serde_json::Value::Object(fields) = to_json(layer)? else {
            return Err(invalid("config", "a settings group is not a struct"));
        };
        merged.extend(fields.into_iter().filter(|(_, value)| !value.is_null()));
    }
    serde_json::from_value(serde_json::Value::Object(merged))
        .map_err(|e| invalid("config", e.to_string()))
}

fn to_json<T: Serialize>(layer: &T) -> Result<serde_json::Value, ConfigError> {
    serde_json::to_value(layer).map_err(|e| invalid("config", e.to_string()))
}

/// The value of a setting that has a default, once layered.
pub fn required<T>(value: Option<T>, setting: &'static str) -> Result<T, ConfigError> {
    value.ok_or_else(|| invalid(setting, "no value and no default"))
}
