//! Service configuration: command-line flags (each with a `LEADRELAY_*` environment variable)
//! over an optional TOML file over defaults, validated once at start into [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::contract::decode::DecodeLimits;
use crate::contract::plate::Confusables;
use crate::geo::geodata::{
    GeoData, SHIPPED_COURTS, SHIPPED_NEIGHBOUR_JURISDICTIONS, SHIPPED_NINGBO_JURISDICTIONS, Source,
};
use crate::matching::hotlist::MatchConfig;

/// Flags of `leadrelay serve` (and `demo`). Every one is optional here so that the config
/// file can fill what the command line leaves out.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "LEADRELAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Broker URL, `mqtt://host:port`; absent: an embedded broker is started.
    #[arg(long, env = "LEADRELAY_MQTT_URL")]
    pub mqtt_url: Option<String>,
    /// `sqlite://PATH` or `postgres://...`; absent: SQLite in `./leadrelay.db`.
    #[arg(long, env = "LEADRELAY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the HTTP API listens (default 127.0.0.1:8080; port 0 picks one).
    #[arg(long, env = "LEADRELAY_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Time a command center has to acknowledge a task (`90s`, `5m`, `1h`).
    #[arg(long, env = "LEADRELAY_ACK_TIMEOUT")]
    pub ack_timeout: Option<String>,
    /// Time to resolve a task (seize, locate, ...).
    #[arg(long, env = "LEADRELAY_RESOLVE_TIMEOUT")]
    pub resolve_timeout: Option<String>,
    /// MQTT client id; stable across restarts so the broker keeps the session.
    #[arg(long, env = "LEADRELAY_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Subscribe through `$share/GROUP/...` so several replicas split the stream.
    #[arg(long, env = "LEADRELAY_SHARE_GROUP")]
    pub share_group: Option<String>,
    /// Prefix before every topic (e.g. `prod/`).
    #[arg(long, env = "LEADRELAY_TOPIC_PREFIX")]
    pub topic_prefix: Option<String>,
    /// Address of the embedded broker when no --mqtt-url is given.
    #[arg(long, env = "LEADRELAY_EMBEDDED_BROKER_ADDR")]
    pub embedded_broker_addr: Option<SocketAddr>,
    /// Largest group-commit batch of matched sightings.
    #[arg(long, env = "LEADRELAY_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Longest wait to fill a batch once it holds a matched sighting (`1ms`).
    #[arg(long, env = "LEADRELAY_BATCH_WINDOW")]
    pub batch_window: Option<String>,
    /// How far in the future `observed_at` may lie (clock skew of cameras).
    #[arg(long, env = "LEADRELAY_MAX_FUTURE_SKEW")]
    pub max_future_skew: Option<String>,
    /// How long processed event ids are kept for de-duplication.
    #[arg(long, env = "LEADRELAY_DEDUP_RETENTION")]
    pub dedup_retention: Option<String>,
    /// Most OCR substitutions a fuzzy plate match may have.
    #[arg(long, env = "LEADRELAY_MAX_SUBSTITUTIONS")]
    pub max_substitutions: Option<u8>,
    /// Confusable character classes, comma-separated (default `0ODQ,1I,2Z,5S,8B,6G`).
    #[arg(long, env = "LEADRELAY_CONFUSABLES", value_delimiter = ',')]
    pub confusables: Option<Vec<String>>,
    /// After `not_found`, how long before a new sighting may open a new task.
    #[arg(long, env = "LEADRELAY_NOT_FOUND_COOLDOWN")]
    pub not_found_cooldown: Option<String>,
    /// How long a target must keep being seen in another court's area before its open task
    /// moves there (border jitter does not bounce tasks).
    #[arg(long, env = "LEADRELAY_REASSIGN_DWELL")]
    pub reassign_dwell: Option<String>,
    /// A sighting this far (km) from the holding court's command center moves the task at once.
    #[arg(long, env = "LEADRELAY_REASSIGN_DISTANCE_KM")]
    pub reassign_distance_km: Option<f64>,
    /// How often deadlines are checked for escalation.
    #[arg(long, env = "LEADRELAY_TIMER_INTERVAL")]
    pub timer_interval: Option<String>,
}

/// The TOML file: the same settings, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    mqtt_url: Option<String>,
    database_url: Option<String>,
    http_addr: Option<SocketAddr>,
    jurisdictions: Option<Vec<PathBuf>>,
    courts: Option<PathBuf>,
    ack_timeout: Option<String>,
    resolve_timeout: Option<String>,
    client_id: Option<String>,
    share_group: Option<String>,
    topic_prefix: Option<String>,
    embedded_broker_addr: Option<SocketAddr>,
    max_batch: Option<usize>,
    batch_window: Option<String>,
    max_future_skew: Option<String>,
    dedup_retention: Option<String>,
    max_substitutions: Option<u8>,
    confusables: Option<Vec<String>>,
    not_found_cooldown: Option<String>,
    reassign_dwell: Option<String>,
    reassign_distance_km: Option<f64>,
    timer_interval: Option<String>,
    /// Per-court deadlines: `[court_deadlines.cixi] ack_timeout = "2m"`.
    #[serde(default)]
    court_deadlines: std::collections::HashMap<String, CourtDeadlines>,
}

/// Deadlines of one court's command center, overriding the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CourtDeadlines {
    ack_timeout: Option<String>,
    resolve_timeout: Option<String>,
}

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{setting}: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

/// Where the service connects to its broker.
#[derive(Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// An external broker.
    External { host: String, port: u16 },
    /// Start the in-process broker on this address.
    Embedded(SocketAddr),
}

impl std::fmt::Debug for BrokerChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerChoice::External { host, port } => write!(f, "mqtt://{host}:{port}"),
            BrokerChoice::Embedded(addr) => write!(f, "embedded broker on {addr}"),
        }
    }
}

/// Validated settings of a running service.
#[derive(Clone)]
pub struct Config {
    pub broker: BrokerChoice,
    /// Kept out of `Debug`: it may hold a password.
    pub database_url: String,
    pub http_addr: SocketAddr,
    pub data: DataArgs,
    pub ack_timeout: Duration,
    pub resolve_timeout: Duration,
    pub client_id: String,
    pub share_group: Option<String>,
    pub topic_prefix: String,
    pub max_batch: usize,
    pub batch_window: Duration,
    pub decode: DecodeLimits,
    pub dedup_retention: Duration,
    pub matching: MatchConfig,
    /// Per-court `(ack, resolve)` deadlines that differ from the defaults.
    pub court_deadlines: std::collections::HashMap<String, (Duration, Duration)>,
    pub not_found_cooldown: Duration,
    pub reassign_dwell: Duration,
    pub reassign_distance_km: f64,
    pub timer_interval: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("broker", &self.broker)
            .field("database_url", &redact(&self.database_url))
            .field("http_addr", &self.http_addr)
            .field("ack_timeout", &self.ack_timeout)
            .field("resolve_timeout", &self.resolve_timeout)
            .field("client_id", &self.client_id)
            .field("share_group", &self.share_group)
            .field("topic_prefix", &self.topic_prefix)
            .field("max_batch", &self.max_batch)
            .field("batch_window", &self.batch_window)
            .finish_non_exhaustive()
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

/// The default port of the embedded broker: not 1883, which a system Mosquitto often holds.
pub const DEFAULT_EMBEDDED_BROKER_ADDR: &str = "127.0.0.1:18830";

impl ServeArgs {
    /// Merges flags over the file over defaults and validates everything once.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mqtt_url = self.mqtt_url.clone().or(file.mqtt_url);
        let embedded_addr = self
            .embedded_broker_addr
            .or(file.embedded_broker_addr)
            .unwrap_or_else(|| {
                DEFAULT_EMBEDDED_BROKER_ADDR
                    .parse()
                    .expect("valid default address")
            });
        let broker = match mqtt_url {
            Some(url) => parse_mqtt_url(&url)?,
            None => BrokerChoice::Embedded(embedded_addr),
        };
        let database_url = self
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| "sqlite://leadrelay.db".to_string());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                format!(
                    "{:?}: expected sqlite://PATH or postgres://...",
                    redact(&database_url)
                ),
            ));
        }
        let mut data = self.data.clone();
        if data.jurisdictions.is_empty() {
            data.jurisdictions = file.jurisdictions.unwrap_or_default();
        }
        if data.courts.is_none() {
            data.courts = file.courts;
        }
        let duration =
            |setting: &'static str, cli: &Option<String>, file: Option<String>, default: &str| {
                let text = cli.clone().or(file).unwrap_or_else(|| default.to_string());
                humantime::parse_duration(&text)
                    .map_err(|e| invalid(setting, format!("{text:?}: {e} (use e.g. 90s, 5m, 1h)")))
            };
        let ack_timeout = duration("ack_timeout", &self.ack_timeout, file.ack_timeout, "5m")?;
        let resolve_timeout = duration(
            "resolve_timeout",
            &self.resolve_timeout,
            file.resolve_timeout,
            "30m",
        )?;
        if ack_timeout.is_zero() || resolve_timeout < ack_timeout {
            return Err(invalid(
                "resolve_timeout",
                "must be positive and not shorter than ack_timeout".into(),
            ));
        }
        let batch_window = duration("batch_window", &self.batch_window, file.batch_window, "1ms")?;
        let max_future_skew = duration(
            "max_future_skew",
            &self.max_future_skew,
            file.max_future_skew,
            "5m",
        )?;
        let dedup_retention = duration(
            "dedup_retention",
            &self.dedup_retention,
            file.dedup_retention,
            "7days",
        )?;
        let max_batch = self.max_batch.or(file.max_batch).unwrap_or(500);
        if !(1..=10_000).contains(&max_batch) {
            return Err(invalid(
                "max_batch",
                format!("{max_batch}: must be 1 to 10000"),
            ));
        }
        let client_id = self
            .client_id
            .clone()
            .or(file.client_id)
            .unwrap_or_else(|| "leadrelay".to_string());
        if client_id.is_empty() || client_id.len() > 64 || client_id.contains(['/', '+', '#']) {
            return Err(invalid(
                "client_id",
                format!("{client_id:?}: 1 to 64 characters, no / + #"),
            ));
        }
        let share_group = self
            .share_group
            .clone()
            .or(file.share_group)
            .filter(|g| !g.is_empty());
        if let Some(group) = &share_group {
            if group.contains(['/', '+', '#']) {
                return Err(invalid("share_group", format!("{group:?}: no / + #")));
            }
        }
        let topic_prefix = self
            .topic_prefix
            .clone()
            .or(file.topic_prefix)
            .unwrap_or_default();
        if topic_prefix.contains(['+', '#']) {
            return Err(invalid(
                "topic_prefix",
                format!("{topic_prefix:?}: no wildcards"),
            ));
        }
        let not_found_cooldown = duration(
            "not_found_cooldown",
            &self.not_found_cooldown,
            file.not_found_cooldown,
            "10m",
        )?;
        let reassign_dwell = duration(
            "reassign_dwell",
            &self.reassign_dwell,
            file.reassign_dwell,
            "3m",
        )?;
        let timer_interval = duration(
            "timer_interval",
            &self.timer_interval,
            file.timer_interval,
            "1s",
        )?;
        if timer_interval.is_zero() {
            return Err(invalid("timer_interval", "must be positive".into()));
        }
        let reassign_distance_km = self
            .reassign_distance_km
            .or(file.reassign_distance_km)
            .unwrap_or(15.0);
        if !(reassign_distance_km.is_finite() && reassign_distance_km > 0.0) {
            return Err(invalid(
                "reassign_distance_km",
                format!("{reassign_distance_km}: must be positive"),
            ));
        }
        let mut court_deadlines = std::collections::HashMap::new();
        for (court, d) in file.court_deadlines {
            if !crate::geo::geodata::is_valid_court_id(&court) {
                return Err(invalid(
                    "courts",
                    format!("{court:?} is not a valid court id"),
                ));
            }
            let ack = duration(
                "courts.ack_timeout",
                &None,
                d.ack_timeout,
                &format!("{}s", ack_timeout.as_secs_f64()),
            )?;
            let resolve = duration(
                "courts.resolve_timeout",
                &None,
                d.resolve_timeout,
                &format!("{}s", resolve_timeout.as_secs_f64()),
            )?;
            if ack.is_zero() || resolve < ack {
                return Err(invalid(
                    "courts",
                    format!(
                        "{court}: resolve_timeout must be positive and not shorter than ack_timeout"
                    ),
                ));
            }
            court_deadlines.insert(court, (ack, resolve));
        }
        let mut matching = MatchConfig::default();
        if let Some(n) = self.max_substitutions.or(file.max_substitutions) {
            matching.max_substitutions = n;
        }
        if let Some(classes) = self.confusables.clone().or(file.confusables) {
            matching.confusables = Confusables::from_classes(&classes)
                .map_err(|e| invalid("confusables", e.to_string()))?;
        }
        Ok(Config {
            broker,
            database_url,
            http_addr: self
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid default address")),
            data,
            ack_timeout,
            resolve_timeout,
            client_id,
            share_group,
            topic_prefix,
            max_batch,
            batch_window,
            decode: DecodeLimits {
                max_future_skew: chrono::Duration::from_std(max_future_skew)
                    .map_err(|e| invalid("max_future_skew", e.to_string()))?,
                ..DecodeLimits::default()
            },
            dedup_retention,
            matching,
            court_deadlines,
            not_found_cooldown,
            reassign_dwell,
            reassign_distance_km,
            timer_interval,
        })
    }
}

fn invalid(setting: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { setting, message }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `mqtt://host:port` (port defaults to 1883). TLS (`mqtts://`) is not built in.
pub fn parse_mqtt_url(url: &str) -> Result<BrokerChoice, ConfigError> {
    let rest = if let Some(rest) = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
    {
        rest
    } else if url.starts_with("mqtts://") || url.starts_with("ssl://") {
        return Err(invalid("mqtt_url", "mqtts:// needs TLS, which this build does not include; terminate TLS in front of the broker or use mqtt://".into()));
    } else {
        return Err(invalid(
            "mqtt_url",
            format!("{url:?}: expected mqtt://host:port"),
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| invalid("mqtt_url", format!("{url:?}: bad port")))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() {
        return Err(invalid("mqtt_url", format!("{url:?}: no host")));
    }
    Ok(BrokerChoice::External {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    })
}

/// Where the geographic data comes from; absent means the shipped Ningbo data.
#[derive(Debug, Clone, Default, Args)]
pub struct DataArgs {
    /// Jurisdiction GeoJSON files (FeatureCollections, `.gz` allowed), comma-separated or repeated.
    #[arg(long, env = "LEADRELAY_JURISDICTIONS", value_delimiter = ',')]
    pub jurisdictions: Vec<PathBuf>,
    /// Courts CSV (court_id, court_name, adcode, lat, lon, datum, supervisor_court_id, participating).
    #[arg(long, env = "LEADRELAY_COURTS")]
    pub courts: Option<PathBuf>,
}

impl DataArgs {
    /// The sources to load: the given files, or the shipped ones for what is not given.
    pub fn sources(&self) -> anyhow::Result<(Vec<Source>, Source)> {
        let jurisdictions = if self.jurisdictions.is_empty() {
            vec![
                Source::inline(
                    "shipped ningbo_jurisdictions.geojson",
                    SHIPPED_NINGBO_JURISDICTIONS,
                ),
                Source::inline(
                    "shipped neighbours.geojson",
                    SHIPPED_NEIGHBOUR_JURISDICTIONS,
                ),
            ]
        } else {
            self.jurisdictions
                .iter()
                .map(|p| Source::read(p))
                .collect::<Result<_, _>>()?
        };
        let courts = match &self.courts {
            Some(path) => Source::read(path)?,
            None => Source::inline("shipped courts.csv", SHIPPED_COURTS),
        };
        Ok((jurisdictions, courts))
    }

    /// Loads and validates, failing with every problem listed.
    pub fn load(&self) -> anyhow::Result<GeoData> {
        let (jurisdictions, courts) = self.sources()?;
        Ok(GeoData::load(&jurisdictions, &courts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.ack_timeout, Duration::from_secs(300));
        assert_eq!(c.resolve_timeout, Duration::from_secs(1800));
        assert!(matches!(c.broker, BrokerChoice::Embedded(a) if a.port() == 18830));
        assert_eq!(c.database_url, "sqlite://leadrelay.db");
    }

    #[test]
    fn cli_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leadrelay.toml");
        std::fs::write(
            &path,
            "ack_timeout = \"2m\"\nresolve_timeout = \"20m\"\nmqtt_url = \"mqtt://broker:1884\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ack_timeout: Some("90s".into()),
            ..ServeArgs::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.ack_timeout, Duration::from_secs(90));
        assert_eq!(c.resolve_timeout, Duration::from_secs(1200));
        assert_eq!(
            c.broker,
            BrokerChoice::External {
                host: "broker".into(),
                port: 1884
            }
        );
        std::fs::write(&path, "ack_timout = \"2m\"\n").unwrap();
        let err = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |args: ServeArgs| args.resolve().unwrap_err().to_string();
        assert!(
            bad(ServeArgs {
                ack_timeout: Some("soon".into()),
                ..Default::default()
            })
            .starts_with("ack_timeout")
        );
        assert!(
            bad(ServeArgs {
                mqtt_url: Some("http://x".into()),
                ..Default::default()
            })
            .starts_with("mqtt_url")
        );
        assert!(
            bad(ServeArgs {
                database_url: Some("mysql://x".into()),
                ..Default::default()
            })
            .starts_with("database_url")
        );
        assert!(
            bad(ServeArgs {
                ack_timeout: Some("1h".into()),
                ..Default::default()
            })
            .starts_with("resolve_timeout")
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://lr:s3cret@db:5432/x"),
            "postgres://lr:***@db:5432/x"
        );
        assert_eq!(redact("sqlite://leadrelay.db"), "sqlite://leadrelay.db");
    }
}
