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
}

impl Layered for HttpArgs {
    fn defaults() -> Self {
        HttpArgs {
            http_addr: "127.0.0.1:8080".parse().ok(),
        }
    }
}

impl HttpArgs {
    /// Checks the layered settings: the listening address.
    pub fn validate(self) -> Result<SocketAddr, ConfigError> {
        required(self.http_addr, "http_addr")
    }
}
