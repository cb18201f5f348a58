//! Service configuration: command-line flags (each with a `LEADRELAY_*` environment variable)
//! over an optional TOML file over defaults, validated once at start into [`Config`].
//!
//! Settings come in groups, one file each. A group is one struct of `Option`s that is both
//! the group's flags and its part of the TOML file (same snake_case names), with its
//! defaults beside it; [`layer::layered`] merges the three layers for any group.

pub mod data;
pub mod dispatch;
pub mod duration;
pub mod error;
pub mod http;
pub mod ingest;
pub mod layer;
pub mod matching;
pub mod mqtt;
pub mod shutdown;
pub mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::api::serve::HttpLimits;
use crate::contract::decode::DecodeLimits;
use crate::dispatch::policy::{Deadlines, Policy};
use crate::geo::geodata::GeoData;
use crate::matching::hotlist::MatchConfig;
use crate::mqtt::security::ClientSecurity;
use crate::store::{DbLimits, Retention};

pub use crate::service::config::data::DataArgs;
pub use crate::service::config::dispatch::{CourtDeadlines, DispatchArgs};
pub use crate::service::config::error::ConfigError;
pub use crate::service::config::http::{HttpArgs, HttpSettings};
pub use crate::service::config::ingest::IngestArgs;
pub use crate::service::config::matching::MatchingArgs;
pub use crate::service::config::mqtt::{
    BrokerChoice, BrokerUrl, DEFAULT_EMBEDDED_BROKER_ADDR, MqttArgs, parse_broker_url,
    parse_mqtt_url,
};
pub use crate::service::config::shutdown::ShutdownArgs;
pub use crate::service::config::store::{StoreArgs, StoreSettings, redact};

use crate::service::config::layer::layered;

/// Flags of `leadrelay serve` (and `demo`). Every one is optional here so that the config
/// file can fill what the command line leaves out.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys, as the flags), and
    /// `[court_deadlines.<court>]` tables of `ack_timeout` and `resolve_timeout` (default: none).
    #[arg(long, env = "LEADRELAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub mqtt: MqttArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub matching: MatchingArgs,
    #[command(flatten)]
    pub dispatch: DispatchArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// The TOML file: every group's settings at the top level, and per-court deadlines.
///
/// Each group reads its own keys straight from the text, so a bad value is reported at its
/// line; keys no group knows are refused.
struct SettingsFile {
    path: PathBuf,
    text: String,
}

/// `[court_deadlines.cixi] ack_timeout = "2m"`.
#[derive(Default, Deserialize)]
struct CourtDeadlinesTable {
    #[serde(default)]
    court_deadlines: BTreeMap<String, CourtDeadlines>,
}

impl SettingsFile {
    fn read(path: &Path) -> Result<SettingsFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file = SettingsFile {
            path: path.to_path_buf(),
            text,
        };
        file.refuse_unknown_keys()?;
        Ok(file)
    }

    /// The keys the file may hold: those of the flags, and the per-court tables.
    fn refuse_unknown_keys(&self) -> Result<(), ConfigError> {
        let flags = ServeArgs::augment_args(clap::Command::new("serve"));
        let known: Vec<&str> = flags
            .get_arguments()
            .map(|arg| arg.get_id().as_str())
            .filter(|id| *id != "config")
            .chain(["court_deadlines"])
            .collect();
        let table: toml::Table = self.parse()?;
        match table.keys().find(|key| !known.contains(&key.as_str())) {
            Some(key) => Err(self.error(format!("unknown field `{key}`"))),
            None => Ok(()),
        }
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, message: String) -> ConfigError {
        ConfigError::Parse {
            path: self.path.clone(),
            message,
        }
    }
}

/// One group's settings from the file, if there is one.
fn from_file<T: DeserializeOwned + Default>(file: &Option<SettingsFile>) -> Result<T, ConfigError> {
    file.as_ref()
        .map_or_else(|| Ok(T::default()), SettingsFile::parse)
}

/// Validated settings of a running service.
#[derive(Clone)]
pub struct Config {
    pub broker: BrokerChoice,
    /// TLS and credentials for an external broker (kept out of `Debug` but whether set).
    pub mqtt_security: ClientSecurity,
    pub client_id: String,
    pub share_group: Option<String>,
    pub topic_prefix: String,
    /// Largest MQTT packet sent, in bytes.
    pub max_packet_size: usize,
    /// Kept out of `Debug`: it may hold a password.
    pub database_url: String,
    pub db_limits: DbLimits,
    /// How long closed tasks keep sighting details, and themselves.
    pub retention: Retention,
    pub http_addr: SocketAddr,
    /// What one HTTP client may take: header and request timeouts, connections at once.
    pub http_limits: HttpLimits,
    /// HTTPS on the API: its certificate and key (`None`: plain HTTP).
    pub http_tls: Option<Arc<rustls::ServerConfig>>,
    /// Longest a graceful shutdown may take before the service gives up on it.
    pub shutdown_grace: Duration,
    /// Whether the HTTP API needs a bearer token.
    pub auth: bool,
    /// Jurisdictions and courts, loaded and checked.
    pub geo: Arc<GeoData>,
    pub max_batch: usize,
    pub batch_window: Duration,
    /// Oldest a received message may wait for its ack before `/readyz` says not ready.
    pub max_unacked_age: Duration,
    pub decode: DecodeLimits,
    pub dedup_retention: Duration,
    pub matching: MatchConfig,
    pub deadlines: Deadlines,
    pub policy: Policy,
    pub timer_interval: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("broker", &self.broker)
            .field("mqtt_security", &self.mqtt_security)
            .field("client_id", &self.client_id)
            .field("share_group", &self.share_group)
            .field("topic_prefix", &self.topic_prefix)
            .field("max_packet_size", &self.max_packet_size)
            .field("database_url", &redact(&self.database_url))
            .field("db_limits", &self.db_limits)
            .field("retention", &self.retention)
            .field("http_addr", &self.http_addr)
            .field("http_limits", &self.http_limits)
            .field("https", &self.http_tls.is_some())
            .field("shutdown_grace", &self.shutdown_grace)
            .field("auth", &self.auth)
            .field("courts", &self.geo.courts.len())
            .field("max_batch", &self.max_batch)
            .field("batch_window", &self.batch_window)
            .field("max_unacked_age", &self.max_unacked_age)
            .field("deadlines", &self.deadlines)
            .field("timer_interval", &self.timer_interval)
            .finish_non_exhaustive()
    }
}

impl ServeArgs {
    /// Merges flags over the file over defaults and validates everything once.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let file = self.config.as_deref().map(SettingsFile::read).transpose()?;
        let mqtt = layered(&self.mqtt, &from_file(&file)?)?.validate()?;
        let store = layered(&self.store.with_common_env(), &from_file(&file)?)?.validate()?;
        let http = layered(&self.http, &from_file(&file)?)?.validate()?;
        let shutdown_grace = layered(&self.shutdown, &from_file(&file)?)?.validate()?;
        let ingest = layered(&self.ingest, &from_file(&file)?)?.validate()?;
        let matching = layered(&self.matching, &from_file(&file)?)?.validate()?;
        let geo = layered(&self.data, &from_file(&file)?)?
            .load()
            .map_err(|e| ConfigError::Data(format!("{e:#}")))?;
        let per_court: CourtDeadlinesTable = from_file(&file)?;
        let dispatch = layered(&self.dispatch, &from_file(&file)?)?
            .validate(&per_court.court_deadlines, &geo)?;
        Ok(Config {
            broker: mqtt.broker,
            mqtt_security: mqtt.security,
            client_id: mqtt.client_id,
            share_group: mqtt.share_group,
            topic_prefix: mqtt.topic_prefix,
            max_packet_size: mqtt.max_packet_size,
            database_url: store.url,
            db_limits: store.limits,
            retention: store.retention,
            http_addr: http.addr,
            http_limits: http.limits,
            http_tls: http.tls,
            shutdown_grace,
            auth: http.auth,
            geo: Arc::new(geo),
            max_batch: ingest.max_batch,
            batch_window: ingest.batch_window,
            max_unacked_age: ingest.max_unacked_age,
            decode: ingest.decode,
            dedup_retention: ingest.dedup_retention,
            matching,
            deadlines: dispatch.deadlines,
            policy: dispatch.policy,
            timer_interval: dispatch.timer_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::config::layer::Layered;

    fn write_file(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("leadrelay.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn with_file(path: PathBuf) -> ServeArgs {
        ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.deadlines, Deadlines::default());
        assert_eq!(
            c.policy.not_found_cooldown,
            Policy::default().not_found_cooldown
        );
        assert_eq!(c.policy.reassign_dwell, Policy::default().reassign_dwell);
        assert_eq!(c.policy.reassign_distance_km, 15.0);
        assert!(c.policy.centers.contains_key("cixi"));
        assert!(matches!(c.broker, BrokerChoice::Embedded(a) if a.port() == 18830));
        assert_eq!(c.database_url, "sqlite://leadrelay.db");
        assert_eq!(c.db_limits, DbLimits::default());
        assert_eq!(c.max_unacked_age, Duration::from_secs(30));
        assert_eq!(c.http_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.http_limits, HttpLimits::default());
        assert_eq!(c.shutdown_grace, Duration::from_secs(20));
        assert_eq!(c.client_id, "leadrelay");
        assert_eq!(c.topic_prefix, "");
        assert_eq!(c.max_packet_size, 1024 * 1024);
        assert_eq!(c.max_batch, 500);
        assert_eq!(c.batch_window, Duration::from_millis(1));
        assert_eq!(c.decode, DecodeLimits::default());
        assert_eq!(c.dedup_retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.matching.max_substitutions, 2);
        assert_eq!(c.timer_interval, Duration::from_secs(1));
    }

    #[test]
    fn cli_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(
            &dir,
            "ack_timeout = \"2m\"\nresolve_timeout = \"20m\"\nmqtt_url = \"mqtt://broker:1884\"\n\
             max_batch = 800\nreassign_distance_km = 20\nconfusables = [\"0O\"]\n",
        );
        let mut args = with_file(path);
        args.dispatch.ack_timeout = Some("90s".parse().unwrap());
        args.ingest.max_batch = Some(900);
        let c = args.resolve().unwrap();
        assert_eq!(c.deadlines.ack, chrono::Duration::seconds(90));
        assert_eq!(c.deadlines.resolve, chrono::Duration::minutes(20));
        assert_eq!(c.max_batch, 900);
        assert_eq!(c.policy.reassign_distance_km, 20.0);
        assert_eq!(c.client_id, "leadrelay");
        assert_eq!(
            c.broker,
            BrokerChoice::External {
                host: "broker".into(),
                port: 1884
            }
        );
    }

    #[test]
    fn unknown_keys_and_courts_in_the_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = |text: &str| {
            with_file(write_file(&dir, text))
                .resolve()
                .unwrap_err()
                .to_string()
        };
        assert!(err("ack_timout = \"2m\"\n").contains("unknown field"));
        assert!(err("[court_deadlines.cixi]\nack_timout = \"2m\"\n").contains("unknown field"));
        assert!(err("[court_deadlines.atlantis]\nack_timeout = \"2m\"\n").contains("atlantis"));
        let bad_value = err("max_batch = 10\nack_timeout = \"soon\"\n");
        assert!(
            bad_value.contains("line 2") && bad_value.contains("soon"),
            "{bad_value}"
        );
        assert!(err("max_batch = \"many\"\n").contains("max_batch"));
    }

    #[test]
    fn court_deadlines_default_to_the_service_deadlines() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(
            &dir,
            "resolve_timeout = \"40m\"\n[court_deadlines.cixi]\nack_timeout = \"2m\"\n",
        );
        let c = with_file(path).resolve().unwrap();
        assert_eq!(
            c.deadlines.for_court("cixi"),
            (chrono::Duration::minutes(2), chrono::Duration::minutes(40))
        );
        assert_eq!(
            c.deadlines.for_court("yuyao"),
            (chrono::Duration::minutes(5), chrono::Duration::minutes(40))
        );
        let path = write_file(&dir, "[court_deadlines.cixi]\nack_timeout = \"1h\"\n");
        let err = with_file(path).resolve().unwrap_err().to_string();
        assert!(err.starts_with("court_deadlines: cixi"), "{err}");
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |tweak: fn(&mut ServeArgs)| {
            let mut args = ServeArgs::default();
            tweak(&mut args);
            args.resolve().unwrap_err().to_string()
        };
        assert!(bad(|a| a.mqtt.mqtt_url = Some("http://x".into())).starts_with("mqtt_url"));
        assert!(
            bad(|a| a.store.database_url = Some("mysql://x".into())).starts_with("database_url")
        );
        assert!(
            bad(|a| a.dispatch.ack_timeout = Some("1h".parse().unwrap()))
                .starts_with("resolve_timeout")
        );
        assert!(bad(|a| a.ingest.max_batch = Some(0)).starts_with("max_batch"));
        assert!(
            bad(|a| a.store.db_operation_timeout = Some("0s".parse().unwrap()))
                .starts_with("db_operation_timeout")
        );
        assert!(bad(|a| a.mqtt.client_id = Some("a/b".into())).starts_with("client_id"));
        assert!(bad(|a| a.mqtt.max_packet_size = Some(1000)).starts_with("max_packet_size"));
        assert!(
            bad(|a| a.http.http_header_timeout = Some("0s".parse().unwrap()))
                .starts_with("http_header_timeout")
        );
        assert!(bad(|a| a.http.http_max_connections = Some(0)).starts_with("http_max_connections"));
        assert!(
            bad(|a| a.shutdown.shutdown_grace = Some("0s".parse().unwrap()))
                .starts_with("shutdown_grace")
        );
    }

    #[test]
    fn every_flag_shows_its_default_in_help() {
        fn check<T: Layered + clap::Args>() {
            let command = T::augment_args(clap::Command::new("serve"));
            let defaults = serde_json::to_value(T::defaults()).unwrap();
            for arg in command.get_arguments() {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let id = arg.get_id().as_str();
                assert!(help.contains("default"), "--{id}: {help}");
                let shown = match &defaults[id] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other
                        .to_string()
                        .replace("null", "")
                        .trim_end_matches(".0")
                        .to_string(),
                };
                assert!(help.contains(&shown), "--{id}: {help} (default {shown})");
            }
        }
        check::<MqttArgs>();
        check::<StoreArgs>();
        check::<HttpArgs>();
        check::<DataArgs>();
        check::<IngestArgs>();
        check::<MatchingArgs>();
        check::<DispatchArgs>();
        check::<ShutdownArgs>();
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://lr:s3cret@db:5432/x"),
            "postgres://lr:***@db:5432/x"
        );
        assert_eq!(redact("sqlite://leadrelay.db"), "sqlite://leadrelay.db");
        let args = ServeArgs {
            store: StoreArgs {
                database_url: Some("postgres://lr:s3cret@db/x".into()),
                ..StoreArgs::default()
            },
            ..ServeArgs::default()
        };
        assert!(!format!("{args:?}").contains("s3cret"));
        let mut config = ServeArgs::default().resolve().unwrap();
        config.database_url = "postgres://lr:s3cret@db/x".into();
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
