//! The broker, the client and its topics.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::mqtt::security::{ClientSecurity, Credentials, Secret, TlsSettings, TrustAnchors};
use crate::service::config::error::{ConfigError, invalid};
use crate::service::config::layer::{Layered, required};
use crate::service::config::store::redact;

/// The default port of the embedded broker: not 1883, which a system Mosquitto often holds.
pub const DEFAULT_EMBEDDED_BROKER_ADDR: &str = "127.0.0.1:18830";

/// The default largest packet sent: 1 MiB, what brokers commonly accept.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1024 * 1024;

/// Smallest accepted `max_packet_size`: a dead letter's fields must fit beside its payload.
const MIN_MAX_PACKET_SIZE: usize = 16 * 1024;

/// MQTT settings.
#[derive(Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default)]
#[command(next_help_heading = "MQTT")]
pub struct MqttArgs {
    /// Broker URL, `mqtt://[user[:password]@]host[:1883]` or `mqtts://...[:8883]` for TLS
    /// (default: an embedded broker is started).
    #[arg(long, env = "LEADRELAY_MQTT_URL", hide_env_values = true)]
    pub mqtt_url: Option<String>,
    /// MQTT user name, over the URL's (default: the URL's, else none).
    #[arg(long, env = "LEADRELAY_MQTT_USERNAME")]
    pub mqtt_username: Option<String>,
    /// MQTT password, over the URL's (default: the URL's, else none). Prefer the env var or
    /// --mqtt-password-file: a flag is visible to every user of the machine in `ps`.
    #[arg(long, env = "LEADRELAY_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    /// File holding the MQTT password; a trailing newline is ignored (default: none).
    #[arg(long, env = "LEADRELAY_MQTT_PASSWORD_FILE")]
    pub mqtt_password_file: Option<PathBuf>,
    /// PEM file of the CA certificates the broker's certificate is checked against
    /// (default with mqtts://: the system's root certificates).
    #[arg(long, env = "LEADRELAY_MQTT_CA_FILE")]
    pub mqtt_ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for brokers that authenticate clients by certificate
    /// (default: none).
    #[arg(long, env = "LEADRELAY_MQTT_CLIENT_CERT", requires = "mqtt_client_key")]
    pub mqtt_client_cert: Option<PathBuf>,
    /// PEM private key of --mqtt-client-cert (default: none).
    #[arg(long, env = "LEADRELAY_MQTT_CLIENT_KEY", requires = "mqtt_client_cert")]
    pub mqtt_client_key: Option<PathBuf>,
    /// Address of the embedded broker when no --mqtt-url is given (default 127.0.0.1:18830).
    #[arg(long, env = "LEADRELAY_EMBEDDED_BROKER_ADDR")]
    pub embedded_broker_addr: Option<SocketAddr>,
    /// MQTT client id; stable across restarts so the broker keeps the session (default
    /// leadrelay).
    #[arg(long, env = "LEADRELAY_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Subscribe through `$share/GROUP/...` so several replicas split the stream (default:
    /// none).
    #[arg(long, env = "LEADRELAY_SHARE_GROUP")]
    pub share_group: Option<String>,
    /// Prefix before every topic, e.g. `prod/` (default: none).
    #[arg(long, env = "LEADRELAY_TOPIC_PREFIX")]
    pub topic_prefix: Option<String>,
    /// Largest MQTT packet the service sends, in bytes; dead letters are cut to fit and
    /// outbox messages above it are set aside (default 1048576).
    #[arg(long, env = "LEADRELAY_MAX_PACKET_SIZE")]
    pub max_packet_size: Option<usize>,
}

impl std::fmt::Debug for MqttArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttArgs")
            .field("mqtt_url", &self.mqtt_url.as_deref().map(redact))
            .field("mqtt_username", &self.mqtt_username)
            .field("mqtt_password", &self.mqtt_password.as_ref().map(|_| "***"))
            .field("mqtt_password_file", &self.mqtt_password_file)
            .field("mqtt_ca_file", &self.mqtt_ca_file)
            .field("mqtt_client_cert", &self.mqtt_client_cert)
            .field("mqtt_client_key", &self.mqtt_client_key)
            .field("embedded_broker_addr", &self.embedded_broker_addr)
            .field("client_id", &self.client_id)
            .field("share_group", &self.share_group)
            .field("topic_prefix", &self.topic_prefix)
            .field("max_packet_size", &self.max_packet_size)
            .finish()
    }
}

impl Layered for MqttArgs {
    fn defaults() -> Self {
        MqttArgs {
            mqtt_url: None,
            mqtt_username: None,
            mqtt_password: None,
            mqtt_password_file: None,
            mqtt_ca_file: None,
            mqtt_client_cert: None,
            mqtt_client_key: None,
            embedded_broker_addr: DEFAULT_EMBEDDED_BROKER_ADDR.parse().ok(),
            client_id: Some("leadrelay".into()),
            share_group: None,
            topic_prefix: Some(String::new()),
            max_packet_size: Some(DEFAULT_MAX_PACKET_SIZE),
        }
    }
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

/// Validated MQTT settings.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub broker: BrokerChoice,
    /// TLS and credentials for an external broker.
    pub security: ClientSecurity,
    pub client_id: String,
    pub share_group: Option<String>,
    pub topic_prefix: String,
    pub max_packet_size: usize,
}

impl MqttArgs {
    /// Checks the layered settings.
    pub fn validate(self) -> Result<MqttSettings, ConfigError> {
        let (broker, security) = match &self.mqtt_url {
            Some(url) => {
                let parsed = parse_broker_url(url)?;
                let security = self.security(&parsed)?;
                let broker = BrokerChoice::External {
                    host: parsed.host,
                    port: parsed.port,
                };
                (broker, security)
            }
            None => {
                if self.mqtt_ca_file.is_some() || self.mqtt_username.is_some() {
                    return Err(invalid(
                        "mqtt_url",
                        "TLS and credentials are for an external broker: give --mqtt-url",
                    ));
                }
                let addr = required(self.embedded_broker_addr, "embedded_broker_addr")?;
                (BrokerChoice::Embedded(addr), ClientSecurity::default())
            }
        };
        let client_id = required(self.client_id, "client_id")?;
        if client_id.is_empty() || client_id.len() > 64 || client_id.contains(['/', '+', '#']) {
            return Err(invalid(
                "client_id",
                format!("{client_id:?}: 1 to 64 characters, no / + #"),
            ));
        }
        let share_group = self.share_group.filter(|g| !g.is_empty());
        if let Some(group) = &share_group {
            if group.contains(['/', '+', '#']) {
                return Err(invalid("share_group", format!("{group:?}: no / + #")));
            }
        }
        let topic_prefix = self.topic_prefix.unwrap_or_default();
        if topic_prefix.contains(['+', '#']) {
            return Err(invalid(
                "topic_prefix",
                format!("{topic_prefix:?}: no wildcards"),
            ));
        }
        let max_packet_size = required(self.max_packet_size, "max_packet_size")?;
        if !(MIN_MAX_PACKET_SIZE..=crate::mqtt::MAX_INCOMING_PACKET).contains(&max_packet_size) {
            return Err(invalid(
                "max_packet_size",
                format!(
                    "{max_packet_size}: between {MIN_MAX_PACKET_SIZE} and {} bytes",
                    crate::mqtt::MAX_INCOMING_PACKET
                ),
            ));
        }
        Ok(MqttSettings {
            broker,
            security,
            client_id,
            share_group,
            topic_prefix,
            max_packet_size,
        })
    }
}

impl MqttArgs {
    /// The URL's TLS and credentials, overridden by the flags; files read and checked now.
    pub fn security(&self, url: &BrokerUrl) -> Result<ClientSecurity, ConfigError> {
        let password = match (&self.mqtt_password, &self.mqtt_password_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "mqtt_password",
                    "give the password or its file, not both",
                ));
            }
            (Some(p), None) => Some(Secret::new(p.clone())),
            (None, Some(path)) => Some(read_password_file(path)?),
            (None, None) => url.credentials.as_ref().map(|c| c.password.clone()),
        };
        let username = self
            .mqtt_username
            .clone()
            .or_else(|| url.credentials.as_ref().map(|c| c.username.clone()));
        let credentials = match (username, password) {
            (Some(username), password) => Some(Credentials {
                username,
                password: password.unwrap_or_else(|| Secret::new("")),
            }),
            (None, Some(_)) => {
                return Err(invalid("mqtt_password", "a password needs a user name"));
            }
            (None, None) => None,
        };
        let wants_tls_files = self.mqtt_ca_file.is_some() || self.mqtt_client_cert.is_some();
        if wants_tls_files && !url.tls {
            return Err(invalid(
                "mqtt_url",
                "a CA file or client certificate needs an mqtts:// URL",
            ));
        }
        let tls = if url.tls {
            let settings = TlsSettings {
                trust: self
                    .mqtt_ca_file
                    .clone()
                    .map_or(TrustAnchors::System, TrustAnchors::CaFile),
                client_auth: self
                    .mqtt_client_cert
                    .clone()
                    .zip(self.mqtt_client_key.clone()),
            };
            Some(
                settings
                    .client_config()
                    .map_err(|e| invalid("mqtt_ca_file", e.to_string()))?,
            )
        } else {
            None
        };
        Ok(ClientSecurity { tls, credentials })
    }
}

fn read_password_file(path: &std::path::Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid("mqtt_password_file", format!("{}: {e}", path.display())))?;
    Ok(Secret::new(text.trim_end_matches(['\n', '\r'])))
}

/// A broker URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    /// `mqtts://` (or `ssl://`).
    pub tls: bool,
    pub credentials: Option<Credentials>,
}

/// `mqtt://[user[:password]@]host[:port]`; `mqtts://` for TLS. The port defaults to 1883, or
/// 8883 with TLS; user and password may be percent-encoded.
pub fn parse_broker_url(text: &str) -> Result<BrokerUrl, ConfigError> {
    let bad = |why: &str| invalid("mqtt_url", format!("{:?}: {why}", redact(text)));
    let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    let tls = match url.scheme() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        _ => return Err(bad("expected mqtt://host:port or mqtts://host:port")),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(bad("a broker URL has no path or query"));
    }
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| bad("user name or password is not UTF-8 once decoded"))
    };
    let credentials = if url.username().is_empty() {
        None
    } else {
        Some(Credentials {
            username: decode(url.username())?,
            password: Secret::new(url.password().map(decode).transpose()?.unwrap_or_default()),
        })
    };
    Ok(BrokerUrl {
        host,
        port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
        tls,
        credentials,
    })
}

/// The host and port of a broker URL (see [`parse_broker_url`]).
pub fn parse_mqtt_url(url: &str) -> Result<BrokerChoice, ConfigError> {
    let parsed = parse_broker_url(url)?;
    Ok(BrokerChoice::External {
        host: parsed.host,
        port: parsed.port,
    })
}
