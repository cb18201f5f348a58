//! The broker, the client and its topics.

use std::net::SocketAddr;

use clap::Args;
use serde::{Deserialize, Serialize};

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
    /// Broker URL, `mqtt://host:port` (default: an embedded broker is started).
    #[arg(long, env = "LEADRELAY_MQTT_URL")]
    pub mqtt_url: Option<String>,
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
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    pub broker: BrokerChoice,
    pub client_id: String,
    pub share_group: Option<String>,
    pub topic_prefix: String,
    pub max_packet_size: usize,
}

impl MqttArgs {
    /// Checks the layered settings.
    pub fn validate(self) -> Result<MqttSettings, ConfigError> {
        let broker = match &self.mqtt_url {
            Some(url) => parse_mqtt_url(url)?,
            None => {
                BrokerChoice::Embedded(required(self.embedded_broker_addr, "embedded_broker_addr")?)
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
            client_id,
            share_group,
            topic_prefix,
            max_packet_size,
        })
    }
}

/// `mqtt://host:port` (port defaults to 1883). TLS (`mqtts://`) is not built in.
pub fn parse_mqtt_url(url: &str) -> Result<BrokerChoice, ConfigError> {
    let rest = if let Some(rest) = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
    {
        rest
    } else if url.starts_with("mqtts://") || url.starts_with("ssl://") {
        return Err(invalid(
            "mqtt_url",
            "mqtts:// needs TLS, which this build does not include; terminate TLS in front of the broker or use mqtt://",
        ));
    } else {
        return Err(invalid(
            "mqtt_url",
            format!("{:?}: expected mqtt://host:port", redact(url)),
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| invalid("mqtt_url", format!("{:?}: bad port", redact(url))))?,
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
