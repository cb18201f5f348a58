//! `leadrelay demo`: the whole service on an embedded broker and a temporary SQLite
//! database, with the shipped Ningbo data, a few flagged targets, and a simulated camera
//! feed that re-enacts the headline story (a car flagged by Yuyao court, seen in a Cixi
//! residential compound, seized by Cixi officers) among background traffic of unflagged
//! plates. Each task, update and alert is printed as a readable line.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, Utc};
use clap::Args;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::app::auth::{self, Scope, TokenError};
use crate::clock::Clock;
use crate::contract::model::Target;
use crate::service;
use crate::service::config::{BrokerChoice, ServeArgs};
use crate::store::Store;
use crate::tools::simulate::{Rng, random_plate};

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Stop after this long (`30s`, `5m`); default: run until ctrl-c.
    #[arg(long)]
    pub duration: Option<String>,
    /// Background sightings of unflagged plates per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// A fresh token for the demo: one left by an earlier run on the same database is revoked.
async fn demo_token(store: &Store, name: &str, scope: Scope) -> anyhow::Result<String> {
    match auth::revoke(store, name, Utc::now()).await {
        Ok(()) | Err(TokenError::NoSuchToken(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(auth::create(store, name, &scope, Utc::now()).await?)
}

/// Runs the demo until ctrl-c or `--duration`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let duration = args
        .duration
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
    let dir = tempfile::tempdir()?;
    let mut serve = args.serve.clone();
    if serve.store.database_url.is_none() {
        serve.store.database_url =
            Some(format!("sqlite://{}", dir.path().join("demo.db").display()));
    }
    let mut config = serve.resolve()?;
    // The demo must start on any machine: if the usual ports are taken, take free ones.
    if let BrokerChoice::Embedded(addr) = config.broker {
        if std::net::TcpListener::bind(addr).is_err() {
            config.broker = BrokerChoice::Embedded(SocketAddr::new(addr.ip(), 0));
        }
    }
    if std::net::TcpListener::bind(config.http_addr).is_err() {
        config.http_addr = SocketAddr::new(config.http_addr.ip(), 0);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let stop_signal = stop.clone();
    let running = service::start(config, async move { stop_signal.cancelled().await }).await?;
    let broker = running.broker.clone();
    let admin = demo_token(&running.store, "demo admin", Scope::Admin).await?;
    let cixi = demo_token(
        &running.store,
        "demo cixi console",
        Scope::Court("cixi".into()),
    )
    .await?;
    crate::outln!("leadrelay demo");
    crate::outln!("  MQTT broker   mqtt://{}:{}", broker.host, broker.port);
    crate::outln!("  HTTP API      http://{}/api/v1/tasks", running.http_addr);
    crate::outln!("  metrics       http://{}/metrics", running.http_addr);
    crate::outln!("  database      {}", dir.path().join("demo.db").display());
    crate::outln!("  admin token   {admin}");
    crate::outln!("  cixi token    {cixi}   (scope court:cixi)");
    crate::outln!(
        "  try           curl -H 'Authorization: Bearer {cixi}' http://{}/api/v1/tasks",
        running.http_addr
    );
    crate::outln!();

    let targets = demo_targets();
    running
        .store
        .upsert_targets(&targets, running.clock.now())
        .await?;
    running.targets.apply(targets);

    // The command centers' view: tasks, updates, alerts (and their status reports back).
    let (client, mut eventloop) = AsyncClient::new(
        MqttOptions::new("leadrelay-demo-centers", broker.host.clone(), broker.port),
        1000,
    );
    for filter in [
        "dispatch/+/tasks",
        "dispatch/+/updates",
        "dispatch/+/escalations",
        "alerts/+",
        "deadletter/#",
    ] {
        client.subscribe(filter, QoS::AtLeastOnce).await?;
    }
    // The cameras on a connection of their own, as in the field. Sharing one with the
    // command centers showed up to 40 ms more sighting→task latency: the broker's reply to
    // each camera publish waited for a delayed TCP ACK, and the next task queued behind it
    // (Nagle's algorithm in the broker; README.md on `set_tcp_nodelay`).
    let (feed_client, mut feed_eventloop) = AsyncClient::new(
        MqttOptions::new("leadrelay-demo-cameras", broker.host.clone(), broker.port),
        1000,
    );
    let feed_connection = tokio::spawn(async move {
        loop {
            if let Err(e) = feed_eventloop.poll().await {
                eprintln!("demo camera feed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let rate = args.rate.clamp(0.0, 10_000.0);
    let clock = running.clock.clone();
    let feed_clock = clock.clone();
    let feed = tokio::spawn(async move { camera_feed(feed_client, feed_clock, rate).await });
    let started = Instant::now();
    let mut printed = 0u64;
    loop {
        let remaining = duration.map(|d| d.saturating_sub(started.elapsed()));
        if remaining == Some(Duration::ZERO) {
            break;
        }
        tokio::select! {
            _ = service::shutdown_signal() => break,
            _ = tokio::time::sleep(remaining.unwrap_or(Duration::from_secs(3600))) => {}
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    printed += 1;
                    if let Some(reply) = print_message(&p.topic, &p.payload, &clock) {
                        // The simulated Cixi command center answers its tasks.
                        let client = client.clone();
                        let clock = clock.clone();
                        tokio::spawn(async move { command_center(client, clock, reply).await });
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("demo subscriber: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    feed.abort();
    feed_connection.abort();
    crate::outln!("\n{printed} messages shown; stopping (flushing the outbox)...");
    running.stop();
    running.wait().await?;
    Ok(())
}

/// A task for the demo command center to answer: (court, task id).
type Reply = (String, String);

fn print_message(topic: &str, payload: &[u8], clock: &Clock) -> Option<Reply> {
    let v: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let time = Local::now().format("%H:%M:%S%.3f");
    let text = |key: &str| v[key].as_str().unwrap_or("-").to_string();
    let latency = v["sighting"]["observed_at"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .map(|t| {
            format!(
                "{:.1} ms",
                (clock.now() - t).num_microseconds().unwrap_or(0) as f64 / 1000.0
            )
        })
        .unwrap_or_default();
    if topic.ends_with("/tasks") {
        let who = v["plate"]
            .as_str()
            .or(v["person_id"].as_str().map(|_| "person"))
            .unwrap_or("-");
        crate::outln!(
            "{time}  TASK    {who:<10} {} → {}  {}  {:.1} km  sighting→task {latency}",
            text("requesting_court_id"),
            text("assisting_court_id"),
            text("routing"),
            v["distance_km"].as_f64().unwrap_or(0.0),
        );
        if v["assisting_court_id"] == "cixi" {
            return Some(("cixi".into(), text("task_id")));
        }
    } else if topic.ends_with("/updates") {
        crate::outln!(
            "{time}  UPDATE  task {} {} {}",
            short(&text("task_id")),
            text("update"),
            text("status")
        );
    } else if topic.ends_with("/escalations") {
        crate::outln!("{time}  ESCALATION task {}", short(&text("task_id")));
    } else if topic.starts_with("alerts/") {
        crate::outln!("{time}  ALERT   to {}: {}", text("court_id"), text("text"));
    } else if topic.starts_with("deadletter/") {
        crate::outln!("{time}  DEAD    {}: {}", text("reason"), text("detail"));
    }
    None
}

fn short(id: &str) -> &str {
    &id[id.len().saturating_sub(8)..]
}

/// Cixi's command center: acknowledges, sets out, and seizes the car within seconds
/// (in the story it took under half an hour).
async fn command_center(client: AsyncClient, clock: Clock, (court, task_id): Reply) {
    for (delay, status, note) in [
        (800, "acknowledged", "case checked"),
        (1500, "en_route", "officers dispatched"),
        (2500, "seized", "taken to the impound lot"),
    ] {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let report = json!({"task_id": task_id, "status": status, "at": clock.now(), "by": "cixi-officer-07", "note": note});
        let _ = client
            .publish(
                format!("dispatch/{court}/status"),
                QoS::AtLeastOnce,
                false,
                report.to_string(),
            )
            .await;
    }
}

/// The scripted story among background traffic.
async fn camera_feed(client: AsyncClient, clock: Clock, rate: f64) {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let script: Vec<(u64, &str, Value)> = vec![
        (
            1500,
            "cixi-cam-0042",
            json!({"kind": "vehicle", "plate": "浙B·12345", "lat": 30.1703, "lon": 121.2661}),
        ),
        (
            3000,
            "cixi-cam-0077",
            json!({"kind": "vehicle", "plate": "浙b 12345", "lat": 30.1731, "lon": 121.2702}),
        ),
        (
            4500,
            "ningbo-cam-0110",
            json!({"kind": "vehicle", "plate": "浙BK8O2I", "lat": 29.87, "lon": 121.55}),
        ),
        (
            5000,
            "bad-feed-01",
            json!({"kind": "vehicle", "plate": "not a plate", "lat": 30.0, "lon": 121.0}),
        ),
        (
            6000,
            "yuyao-hotel-017",
            json!({"kind": "person", "person_id": "330282198504120013", "lat": 30.045, "lon": 121.155}),
        ),
    ];
    let start = Instant::now();
    let mut script = script.into_iter().peekable();
    let mut seq = 0u64;
    let period = if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::from_secs(3600)
    };
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        seq += 1;
        let now = clock.now();
        while let Some((at, _, _)) = script.peek() {
            if start.elapsed() < Duration::from_millis(*at) {
                break;
            }
            let (_, source, mut body) = script.next().expect("peeked");
            body["event_id"] = json!(format!("{source}-{seq}"));
            body["observed_at"] = json!(now.to_rfc3339());
            body["source"] = json!(source);
            let _ = client
                .publish(
                    format!("sightings/{source}"),
                    QoS::AtLeastOnce,
                    false,
                    body.to_string(),
                )
                .await;
        }
        if rate <= 0.0 {
            continue;
        }
        // Background: an unflagged Ningbo plate somewhere in the city.
        let plate = random_plate(&mut rng);
        let lat = 29.6 + 0.6 * rng.unit();
        let lon = 121.1 + 0.7 * rng.unit();
        let camera = format!("ningbo-cam-{:04}", rng.below(500));
        let body = json!({
            "event_id": format!("{camera}-{seq}"), "kind": "vehicle", "plate": plate.as_str(),
            "lat": lat, "lon": lon, "observed_at": now.to_rfc3339(), "source": camera, "confidence": 0.9
        });
        let _ = client
            .publish(
                format!("sightings/{camera}"),
                QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .await;
    }
}

/// The demo's flagged targets: the four stories of the seed article.
pub fn demo_targets() -> Vec<Target> {
    let targets = json!([
        {"target_id": "T-2024-0001", "kind": "vehicle", "plate": "浙B12345", "name": "王某",
         "cases": [{"case_no": "(2024)浙0281执1234号", "court_id": "yuyao", "filed_on": "2024-03-01", "amount_cny": 50000}],
         "known_locations": [{"label": "domicile", "lat": 30.04, "lon": 121.15}]},
        {"target_id": "T-2024-0002", "kind": "vehicle", "plate": "浙BK8021", "name": "余姚某建设有限公司",
         "cases": [
            {"case_no": "(2024)浙0281执2001号", "court_id": "yuyao", "filed_on": "2024-02-01", "amount_cny": 1800000},
            {"case_no": "(2024)浙0281执2002号", "court_id": "yuyao", "filed_on": "2024-02-15", "amount_cny": 1200000},
            {"case_no": "(2024)浙0281执2003号", "court_id": "yuyao", "filed_on": "2024-03-10", "amount_cny": 900000},
            {"case_no": "(2024)浙0282执3001号", "court_id": "cixi", "filed_on": "2024-01-20", "amount_cny": 1100000}]},
        {"target_id": "T-2024-0003", "kind": "person", "person_id": "330282198504120013", "name": "方某",
         "cases": [{"case_no": "(2024)浙0282执4001号", "court_id": "cixi", "filed_on": "2024-05-01", "amount_cny": 230000}],
         "known_locations": [{"label": "domicile", "lat": 30.05, "lon": 121.16}]}
    ]);
    serde_json::from_value(targets).expect("demo targets are valid")
}
