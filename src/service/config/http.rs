//! The HTTP API, and what one client may take of it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::api::serve::HttpLimits;
use crate::mqtt::security::server_config;
use crate::service::config::duration::HumanDuration;
use crate::service::config::error::{ConfigError, invalid};
use crate::service::config::layer::{Layered, required};

/// HTTP settings.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default)]
#[command(next_help_heading = "HTTP")]
pub struct HttpArgs {
    /// Where the HTTP API listens, `HOST:PORT`; a host name is resolved at start (the first
    /// IPv4 address it has, else its first); port 0 picks one (default 127.0.0.1:8080).
    #[arg(long, env = "LEADRELAY_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Longest a client may take to send a request's headers before its connection is
    /// closed (default 10s).
    #[arg(long, env = "LEADRELAY_HTTP_HEADER_TIMEOUT")]
    pub http_header_timeout: Option<HumanDuration>,
    /// Longest a request may take, its body included, before it is answered 408 (default 30s).
    #[arg(long, env = "LEADRELAY_HTTP_REQUEST_TIMEOUT")]
    pub http_request_timeout: Option<HumanDuration>,
    /// HTTP connections served at once; more wait to be accepted (default 1024).
    #[arg(long, env = "LEADRELAY_HTTP_MAX_CONNECTIONS")]
    pub http_max_connections: Option<usize>,
    /// Whether the API needs a bearer token (`leadrelay tokens create`); `false` only for a
    /// closed test setup (default true). `/healthz` and `/readyz` never do.
    #[arg(long, env = "LEADRELAY_AUTH")]
    pub auth: Option<bool>,
    /// PEM certificate chain: the API is served over HTTPS (default: plain HTTP, e.g. behind
    /// a TLS-terminating proxy).
    #[arg(long, env = "LEADRELAY_HTTP_TLS_CERT", requires = "http_tls_key")]
    pub http_tls_cert: Option<PathBuf>,
    /// PEM private key of --http-tls-cert (default: none).
    #[arg(long, env = "LEADRELAY_HTTP_TLS_KEY", requires = "http_tls_cert")]
    pub http_tls_key: Option<PathBuf>,
}

impl Layered for HttpArgs {
    fn defaults() -> Self {
        let limits = HttpLimits::default();
        HttpArgs {
            http_addr: Some("127.0.0.1:8080".into()),
            http_header_timeout: Some(HumanDuration(limits.header_timeout)),
            http_request_timeout: Some(HumanDuration(limits.request_timeout)),
            http_max_connections: Some(limits.max_connections),
            auth: Some(true),
            http_tls_cert: None,
            http_tls_key: None,
        }
    }
}

/// Validated HTTP settings.
#[derive(Clone)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    pub limits: HttpLimits,
    /// Whether the API needs a bearer token.
    pub auth: bool,
    /// HTTPS: the server's certificate and key, read and checked.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl HttpArgs {
    /// Checks the layered settings: the listening address, positive limits, whether tokens
    /// are required.
    pub fn validate(self) -> Result<HttpSettings, ConfigError> {
        let positive = |value: Option<HumanDuration>, setting: &'static str| {
            let value = required(value, setting)?.0;
            if value.is_zero() {
                return Err(invalid(setting, "must be more than 0s"));
            }
            Ok(value)
        };
        let max_connections = required(self.http_max_connections, "http_max_connections")?;
        if max_connections == 0 {
            return Err(invalid("http_max_connections", "must be at least 1"));
        }
        let tls = match (&self.http_tls_cert, &self.http_tls_key) {
            (Some(cert), Some(key)) => Some(
                server_config(cert, key).map_err(|e| invalid("http_tls_cert", e.to_string()))?,
            ),
            (None, None) => None,
            _ => {
                return Err(invalid("http_tls_cert", "give the certificate and its key"));
            }
        };
        Ok(HttpSettings {
            tls,
            addr: listen_addr(&required(self.http_addr, "http_addr")?)?,
            auth: required(self.auth, "auth")?,
            limits: HttpLimits {
                header_timeout: positive(self.http_header_timeout, "http_header_timeout")?,
                request_timeout: positive(self.http_request_timeout, "http_request_timeout")?,
                max_connections,
            },
        })
    }
}

/// The address `HOST:PORT` names: an IP address as it is, a host name (`localhost`) as the
/// system resolves it, its first IPv4 address preferred (what `localhost` means to most
/// clients).
fn listen_addr(text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let malformed = || invalid("http_addr", format!("{text:?}: expected HOST:PORT"));
    let (host, port) = text.rsplit_once(':').ok_or_else(malformed)?;
    let port: u16 = port.parse().map_err(|_| malformed())?;
    if host.is_empty() {
        return Err(malformed());
    }
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            invalid(
                "http_addr",
                format!("{text:?}: cannot resolve {host:?}: {e}"),
            )
        })?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| invalid("http_addr", format!("{text:?}: {host:?} has no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_resolve_and_addresses_parse() {
        assert_eq!(
            listen_addr("localhost:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(listen_addr("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        for bad in ["localhost", "localhost:http", ":8080", "localhost:70000"] {
            let error = listen_addr(bad).unwrap_err().to_string();
            assert!(
                error.starts_with("http_addr") && error.contains(bad),
                "{error}"
            );
        }
        let error = listen_addr("no-such-host.invalid:8080")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cannot resolve \"no-such-host.invalid\""),
            "{error}"
        );
    }
}
