//! The HTTP API.

use std::net::SocketAddr;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::service::config::error::ConfigError;
use crate::service::config::layer::{Layered, required};

/// HTTP settings.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(default)]
#[command(next_help_heading = "HTTP")]
pub struct HttpArgs {
    /// Where the HTTP API listens; port 0 picks one (default 127.0.0.1:8080).
    #[arg(long, env = "LEADRELAY_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Whether the API needs a bearer token (`leadrelay tokens create`); `false` only for a
    /// closed test setup (default true). `/healthz` and `/readyz` never do.
    #[arg(long, env = "LEADRELAY_AUTH")]
    pub auth: Option<bool>,
}

impl Layered for HttpArgs {
    fn defaults() -> Self {
        HttpArgs {
            http_addr: "127.0.0.1:8080".parse().ok(),
            auth: Some(true),
        }
    }
}

impl HttpArgs {
    /// Checks the layered settings: the listening address, and whether tokens are required.
    pub fn validate(self) -> Result<(SocketAddr, bool), ConfigError> {
        Ok((
            required(self.http_addr, "http_addr")?,
            required(self.auth, "auth")?,
        ))
    }
}
