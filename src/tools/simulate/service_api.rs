//! The few HTTP calls to the service under test (std only: no client library needed).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

/// `http://host:port` → `host:port`.
pub(super) fn http_authority(base: &str) -> anyhow::Result<&str> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--http {base:?}: expected http://host:port"))?;
    Ok(rest.trim_end_matches('/'))
}

/// A minimal HTTP/1.1 exchange over a fresh connection (no HTTP client dependency needed
/// for two calls), with `token` as its bearer token when given; returns the status and body.
pub(super) fn http(
    base: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let authority = http_authority(base)?;
    let mut stream = std::net::TcpStream::connect(authority)
        .with_context(|| format!("cannot reach the service's HTTP API at {base}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{base}{path}: not an HTTP response"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// Loads the targets through `POST /api/v1/targets:batch`, in chunks.
pub(super) fn load_targets(
    base: &str,
    token: Option<&str>,
    targets: Vec<serde_json::Value>,
) -> anyhow::Result<()> {
    for chunk in targets.chunks(2_000) {
        let body = serde_json::to_vec(chunk)?;
        let (status, text) = http(base, token, "POST", "/api/v1/targets:batch", &body)?;
        if status != 200 {
            bail!("POST {base}/api/v1/targets:batch: HTTP {status}: {text}");
        }
    }
    Ok(())
}

/// Sightings the service has handled so far (decoded + rejected), from its /metrics.
pub(super) async fn service_processed(base: &str, token: Option<&str>) -> Option<u64> {
    let base = base.to_string();
    let token = token.map(str::to_string);
    let (status, text) =
        tokio::task::spawn_blocking(move || http(&base, token.as_deref(), "GET", "/metrics", b""))
            .await
            .ok()?
            .ok()?;
    if status != 200 {
        return None;
    }
    let total = text
        .lines()
        .filter(|l| {
            l.starts_with("leadrelay_sightings_received_total")
                || l.starts_with("leadrelay_sightings_rejected_total")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Some(total as u64)
}
