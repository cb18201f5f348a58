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

/// The sum of every series of the metrics named `names` in a service's /metrics.
async fn metric_total(base: &str, token: Option<&str>, names: &[&str]) -> Option<u64> {
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
            names.iter().any(|name| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Some(total as u64)
}

/// Sightings the services have handled so far (decoded + rejected), summed over their
/// /metrics; None if one of them does not answer.
pub(super) async fn processed_by_all(bases: &[String], token: Option<&str>) -> Option<u64> {
    let mut total = 0;
    for base in bases {
        total += metric_total(
            base,
            token,
            &[
                "leadrelay_sightings_received_total",
                "leadrelay_sightings_rejected_total",
            ],
        )
        .await?;
    }
    Some(total)
}

/// Waits until the replica at `base` holds at least `loaded` targets in its hotlist (its
/// `leadrelay_targets` gauge, refreshed every few seconds): targets are loaded through one
/// replica, and the others pick them up from the database.
pub(super) async fn wait_for_targets(
    base: &str,
    token: Option<&str>,
    loaded: usize,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        let held = metric_total(base, token, &["leadrelay_targets"]).await;
        if held.is_some_and(|n| n as usize >= loaded) {
            eprintln!(
                "{base} holds the {loaded} targets after {:.1?}",
                started.elapsed()
            );
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("{base} holds {held:?} of the {loaded} targets after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
