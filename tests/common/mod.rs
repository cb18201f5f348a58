//! Test harness: starts the real service on ephemeral ports against a real broker and a real
//! database, and talks MQTT and HTTP to it.
//!
//! Every test runs against the embedded broker with SQLite; when `LEADRELAY_TEST_MQTT_URL`
//! and `LEADRELAY_TEST_DATABASE_URL` are set (CI sets them to the machine's Mosquitto and
//! PostgreSQL), also against those. Tests sharing one broker are isolated by a topic prefix
//! and client ids of their own, and on PostgreSQL by a schema of their own.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadrelay::clock::{Clock, ManualClock};
use leadrelay::service::config::{BrokerChoice, Config, ServeArgs, parse_mqtt_url};
use leadrelay::service::{self, Running};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Which broker and database a test runs against.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded broker and SQLite in a temporary file.
    Embedded,
    /// The machine's broker and PostgreSQL.
    External {
        mqtt_url: String,
        database_url: String,
    },
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "embedded broker + SQLite",
            Backend::External { .. } => "external broker + PostgreSQL",
        }
    }
}

/// The backends available here: always the embedded one, the external one when configured.
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Embedded];
    match (
        std::env::var("LEADRELAY_TEST_MQTT_URL"),
        std::env::var("LEADRELAY_TEST_DATABASE_URL"),
    ) {
        (Ok(mqtt_url), Ok(database_url)) if !mqtt_url.is_empty() && !database_url.is_empty() => all
            .push(Backend::External {
                mqtt_url,
                database_url,
            }),
        _ => eprintln!(
            "LEADRELAY_TEST_MQTT_URL / LEADRELAY_TEST_DATABASE_URL not set: external backend skipped"
        ),
    }
    all
}

/// A message seen on the broker under the test's prefix.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Topic without the test prefix.
    pub topic: String,
    pub body: Value,
    pub raw: Vec<u8>,
}

/// One running service plus a client that watches everything under its prefix.
pub struct Harness {
    pub backend: Backend,
    pub config: Config,
    pub running: Option<Running>,
    pub http: String,
    pub prefix: String,
    pub client: AsyncClient,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub dir: tempfile::TempDir,
    /// The broker address the *test client* uses (not through any proxy).
    pub broker_addr: SocketAddr,
    /// The service's clock when the test moves time itself ([`Harness::start_manual`]);
    /// restarts keep it.
    pub clock: Option<ManualClock>,
    /// An admin token of the service's database, which every request of the harness carries.
    pub token: String,
    http_client: reqwest::Client,
    watcher: tokio::task::JoinHandle<()>,
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A base config for the backend, with its own prefix, client id and database.
pub async fn base_config(backend: &Backend, dir: &std::path::Path) -> Config {
    let mut config = ServeArgs::default().resolve().expect("defaults are valid");
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.client_id = unique("lr-test-");
    config.topic_prefix = format!("{}/", unique("t"));
    config.deadlines.ack = chrono::Duration::minutes(5);
    match backend {
        Backend::Embedded => {
            config.broker = BrokerChoice::Embedded("127.0.0.1:0".parse().unwrap());
            config.database_url = format!("sqlite://{}", dir.join("leadrelay.db").display());
        }
        Backend::External {
            mqtt_url,
            database_url,
        } => {
            config.broker = parse_mqtt_url(mqtt_url).expect("valid LEADRELAY_TEST_MQTT_URL");
            config.database_url = leadrelay::store::isolated_postgres_url(database_url)
                .await
                .expect("an isolated PostgreSQL schema");
        }
    }
    config
}

impl Harness {
    pub async fn start(backend: &Backend) -> Harness {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts with a config adjusted by `tweak`.
    pub async fn start_with(backend: &Backend, tweak: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = base_config(backend, dir.path()).await;
        tweak(&mut config);
        Self::start_config(backend, config, dir, None).await
    }

    /// As [`start_with`], on a manual clock that moves only by [`advance`](Self::advance).
    pub async fn start_manual(backend: &Backend, tweak: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = base_config(backend, dir.path()).await;
        tweak(&mut config);
        Self::start_clocked(
            backend,
            config,
            dir,
            None,
            Some(ManualClock::starting_now()),
        )
        .await
    }

    /// Starts with a full config; the test's own client connects to `client_broker` when
    /// given (e.g. around a proxy the service goes through), else where the service does.
    pub async fn start_config(
        backend: &Backend,
        config: Config,
        dir: tempfile::TempDir,
        client_broker: Option<SocketAddr>,
    ) -> Harness {
        Self::start_clocked(backend, config, dir, client_broker, None).await
    }

    /// As [`start_config`](Self::start_config), on `clock` when given.
    async fn start_clocked(
        backend: &Backend,
        config: Config,
        dir: tempfile::TempDir,
        client_broker: Option<SocketAddr>,
        clock: Option<ManualClock>,
    ) -> Harness {
        let running = start_service(&config, clock.as_ref(), "service starts").await;
        // Keep talking to the same broker when the service was given an embedded one.
        let mut config = config;
        let broker_addr: SocketAddr = match client_broker {
            Some(addr) => addr,
            None => tokio::net::lookup_host((running.broker.host.as_str(), running.broker.port))
                .await
                .unwrap()
                .next()
                .unwrap(),
        };
        if let BrokerChoice::Embedded(_) = config.broker {
            config.broker = BrokerChoice::External {
                host: running.broker.host.clone(),
                port: running.broker.port,
            };
        }
        let http = format!("http://{}", running.http_addr);
        let prefix = config.topic_prefix.clone();
        let (client, seen, watcher) = watch(broker_addr, &prefix).await;
        let token = create_token(&running.store, &unique("test admin "), "admin").await;
        let harness = Harness {
            backend: backend.clone(),
            config,
            running: Some(running),
            http,
            prefix,
            client,
            seen,
            dir,
            broker_addr,
            clock,
            http_client: client_with_token(&token),
            token,
            watcher,
        };
        harness.wait_ready().await;
        harness
    }

    /// An HTTP client that sends the harness's admin token.
    pub fn http_client(&self) -> reqwest::Client {
        self.http_client.clone()
    }

    /// A new token of `scope` (`admin`, `ops`, `court:cixi`) named `name`.
    pub async fn token(&self, name: &str, scope: &str) -> String {
        create_token(&self.running.as_ref().expect("running").store, name, scope).await
    }

    /// As [`request`](Self::request), with `token` instead of the harness's (none: `None`).
    pub async fn request_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new().request(method, format!("{}{path}", self.http));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Waits until /readyz says broker and database are reachable.
    pub async fn wait_ready(&self) {
        assert!(
            ready_within(&self.http_client, &self.http, Duration::from_secs(15)).await,
            "service did not become ready"
        );
    }

    /// Stops the service gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
            tokio::time::timeout(Duration::from_secs(30), running.wait())
                .await
                .expect("service stops within 30 s")
                .expect("service stops cleanly");
        }
    }

    /// Starts the service again with the same config (same database, broker, prefix).
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = start_service(&self.config, self.clock.as_ref(), "service restarts").await;
        self.http = format!("http://{}", running.http_addr);
        self.running = Some(running);
        self.wait_ready().await;
    }

    /// The service's time: its manual clock's, else the system's.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        match &self.clock {
            Some(clock) => clock.now(),
            None => chrono::Utc::now(),
        }
    }

    /// Moves the service's manual clock forward (see [`start_manual`](Self::start_manual)).
    pub fn advance(&self, by: Duration) {
        self.clock
            .as_ref()
            .expect("advance needs a harness started with start_manual")
            .advance(chrono::Duration::from_std(by).unwrap());
    }

    pub fn topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(self.topic(topic), QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("publish queued");
    }

    /// Publishes a sighting on `sightings/{source}`.
    pub async fn sighting(&self, source: &str, body: Value) {
        self.publish(&format!("sightings/{source}"), body.to_string())
            .await;
    }

    pub async fn put_target(&self, target: Value) -> (u16, Value) {
        let id = target["target_id"].as_str().unwrap().to_string();
        self.request(
            reqwest::Method::PUT,
            &format!("/api/v1/targets/{id}"),
            Some(target),
        )
        .await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http_client
            .request(method, format!("{}{path}", self.http));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None).await
    }

    /// Messages seen so far on `topic` (without prefix).
    pub fn on(&self, topic: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.topic == topic)
            .cloned()
            .collect()
    }

    /// Waits until `count` messages have been seen on `topic`, returns them.
    pub async fn wait_for(&self, topic: &str, count: usize, timeout: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.on(topic);
            if found.len() >= count {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "[{}] waited {timeout:?} for {count} message(s) on {topic}, saw {}: {:#?}",
                    self.backend.name(),
                    found.len(),
                    self.all_topics()
                );
            }
            // Polling the watcher's record of the broker's messages.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Lets in-flight messages arrive, then asserts none more than `count` came on `topic`.
    pub async fn settle_and_count(&self, topic: &str, settle: Duration) -> usize {
        // Real time: the absence of a message can only be observed by waiting for it.
        tokio::time::sleep(settle).await;
        self.on(topic).len()
    }

    pub fn all_topics(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.topic.clone())
            .collect()
    }

    pub async fn metrics(&self) -> String {
        self.http_client
            .get(format!("{}/metrics", self.http))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some(running) = self.running.take() {
            running.stop();
        }
    }
}

/// A client subscribed to everything under `prefix`, recording what it sees.
/// A client subscribed to everything under `prefix`, collecting what it sees (not the
/// sightings and status reports the tests themselves publish).
pub async fn watch(
    broker: SocketAddr,
    prefix: &str,
) -> (
    AsyncClient,
    Arc<Mutex<Vec<Seen>>>,
    tokio::task::JoinHandle<()>,
) {
    let mut opts = MqttOptions::new(unique("lr-watch-"), broker.ip().to_string(), broker.port());
    opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    opts.set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
    client
        .subscribe(format!("{prefix}#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let prefix = prefix.to_string();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    let watcher = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = p
                        .topic
                        .strip_prefix(prefix.as_str())
                        .unwrap_or(&p.topic)
                        .to_string();
                    if topic.starts_with("sightings/")
                        || (topic.starts_with("dispatch/") && topic.ends_with("/status"))
                    {
                        continue; // our own input
                    }
                    let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    sink.lock().unwrap().push(Seen {
                        topic,
                        body,
                        raw: p.payload.to_vec(),
                    });
                }
                Ok(_) => {}
                // Reconnect back-off of the watching client.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), subscribed_rx).await;
    (client, seen, watcher)
}

/// Starts the service on `clock` when given, else on the system clock.
async fn start_service(config: &Config, clock: Option<&ManualClock>, what: &str) -> Running {
    let clock = clock.map_or(Clock::System, |c| c.clone().into());
    service::start_with_clock(config.clone(), clock, std::future::pending())
        .await
        .expect(what)
}

/// Makes an API token in the service's database, as `leadrelay tokens create` does.
pub async fn create_token(store: &leadrelay::store::Store, name: &str, scope: &str) -> String {
    let scope = leadrelay::app::auth::Scope::parse(scope).expect("a valid scope");
    leadrelay::app::auth::create(store, name, &scope, chrono::Utc::now())
        .await
        .expect("a token")
}

/// A client whose every request carries `token`.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {token}").parse().expect("a header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

/// Polls `{http}/readyz` until it succeeds (true) or `within` passes (false).
async fn ready_within(client: &reqwest::Client, http: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = client.get(format!("{http}/readyz")).send().await
            && r.status().is_success()
        {
            // Subscriptions are sent right after CONNACK; give them a moment.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // Polling a real server's readiness.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `leadrelay serve` as a child process, so that a test can kill it as a crash would. Its
/// output goes to `serve.log` in the given directory.
pub struct ServeProcess {
    child: std::process::Child,
    pub http: String,
    /// Sends an admin token of the service's database.
    pub client: reqwest::Client,
}

impl ServeProcess {
    /// Starts the binary against an external broker and waits until it is ready.
    pub async fn start(
        mqtt_url: &str,
        database_url: &str,
        client_id: &str,
        prefix: &str,
        dir: &std::path::Path,
    ) -> ServeProcess {
        Self::start_with(mqtt_url, database_url, client_id, prefix, dir, &[]).await
    }

    /// As [`start`](Self::start), with `extra` flags.
    pub async fn start_with(
        mqtt_url: &str,
        database_url: &str,
        client_id: &str,
        prefix: &str,
        dir: &std::path::Path,
        extra: &[&str],
    ) -> ServeProcess {
        // A port that was free a moment ago: the binary is told it, rather than asked.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("serve.log"))
            .unwrap();
        let store = leadrelay::store::Store::connect(database_url)
            .await
            .expect("the service's database");
        let token = create_token(&store, &unique("crash admin "), "admin").await;
        store.close().await;
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_leadrelay"))
            .args([
                "serve",
                "--mqtt-url",
                mqtt_url,
                "--database-url",
                database_url,
            ])
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--client-id", client_id, "--topic-prefix", prefix])
            .args(extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        let service = ServeProcess {
            child,
            http: format!("http://127.0.0.1:{port}"),
            client: client_with_token(&token),
        };
        assert!(
            ready_within(
                &reqwest::Client::new(),
                &service.http,
                Duration::from_secs(20)
            )
            .await,
            "leadrelay serve did not become ready; see {}",
            dir.join("serve.log").display()
        );
        service
    }

    /// Loads flagged targets through `POST /api/v1/targets:batch`, as an admin.
    pub async fn load_targets(&self, targets: &[Value]) {
        let response = self
            .client
            .post(format!("{}/api/v1/targets:batch", self.http))
            .json(targets)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// The child's process id (for /proc/PID/status).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, as an orchestrator stops it.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `within` for the process to exit; its status, if it did.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited for") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Polling a real child process for its exit.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no shutdown, no flush, no DISCONNECT; as a crash or a power cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The headline target: Wang's car, flagged by Yuyao court (the example in docs/contract.md).
pub fn headline_target() -> Value {
    json!({
        "target_id": "T-2024-0001", "kind": "vehicle", "plate": "浙B12345", "name": "王某",
        "cases": [{"case_no": "(2024)浙0281执1234号", "court_id": "yuyao", "filed_on": "2024-03-01", "amount_cny": 50000}],
        "known_locations": [{"label": "domicile", "lat": 30.04, "lon": 121.15, "datum": "wgs84"}]
    })
}

pub fn vehicle_target(id: &str, plate: &str, court: &str) -> Value {
    json!({
        "target_id": id, "kind": "vehicle", "plate": plate,
        "cases": [{"case_no": format!("case-{id}"), "court_id": court, "filed_on": "2024-03-01"}]
    })
}

/// A vehicle sighting at (lat, lon), WGS-84, observed now.
pub fn vehicle_sighting(event_id: &str, source: &str, plate: &str, lat: f64, lon: f64) -> Value {
    json!({
        "event_id": event_id, "kind": "vehicle", "plate": plate, "lat": lat, "lon": lon,
        "datum": "wgs84", "observed_at": chrono::Utc::now().to_rfc3339(), "source": source, "confidence": 0.93
    })
}

/// In a Cixi residential compound (the contract's example position).
pub const CIXI: (f64, f64) = (30.1703, 121.2661);
/// Central Yuyao.
pub const YUYAO: (f64, f64) = (30.0411, 121.1500);

/// A TCP proxy in front of the broker or the database whose connections can be cut, to look
/// to the service exactly like a restart of what is behind it.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<Mutex<CancellationToken>>,
    accepting: Arc<std::sync::atomic::AtomicBool>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
    freezer: Arc<Freezer>,
}

/// What [`Proxy::freeze`] and [`Proxy::freeze_on`] act through.
#[derive(Default)]
struct Freezer {
    /// Cancelled to stop forwarding on the connections of the moment, keeping them open.
    token: Mutex<CancellationToken>,
    /// Bytes from a client whose forwarding freezes every connection.
    pattern: Mutex<Option<Vec<u8>>>,
    fired: std::sync::atomic::AtomicBool,
}

impl Freezer {
    fn freeze(&self) {
        let old = std::mem::replace(&mut *self.token.lock().unwrap(), CancellationToken::new());
        old.cancel();
        self.fired.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Called with each chunk a client sent, once it is forwarded.
    fn sent(&self, chunk: &[u8]) {
        let mut pattern = self.pattern.lock().unwrap();
        let hit = pattern
            .as_deref()
            .is_some_and(|p| chunk.windows(p.len()).any(|w| w == p));
        if hit {
            *pattern = None;
            drop(pattern);
            self.freeze();
        }
    }
}

/// Forwards `from` to `to` until either end closes; tells `freezer` what a client sent.
/// Borrows the halves: dropping an owned write half would send a FIN.
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    freezer: Option<Arc<Freezer>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if let Some(freezer) = &freezer {
            freezer.sent(&buf[..n]);
        }
    }
    let _ = to.shutdown().await;
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let accepting = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let freezer = Arc::new(Freezer::default());
        let (cut2, accepting2, stalled2) = (cut.clone(), accepting.clone(), stalled.clone());
        let freezer2 = freezer.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accepting2.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = inbound.shutdown().await;
                    continue;
                }
                let token = cut2.lock().unwrap().clone();
                if stalled2.load(std::sync::atomic::Ordering::SeqCst) {
                    // Accepted, never answered, held until the next cut.
                    tokio::spawn(async move {
                        token.cancelled().await;
                        drop(inbound);
                    });
                    continue;
                }
                let frozen = freezer2.token.lock().unwrap().clone();
                let freezer = freezer2.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut in_read, mut in_write) = inbound.into_split();
                    let (mut out_read, mut out_write) = outbound.into_split();
                    let both = async {
                        tokio::join!(
                            pump(&mut in_read, &mut out_write, Some(freezer)),
                            pump(&mut out_read, &mut in_write, None)
                        )
                    };
                    tokio::select! {
                        _ = both => {}
                        _ = token.cancelled() => {}
                        // The pumps are dropped, their sockets held open: a half-open
                        // connection, until the next cut.
                        _ = frozen.cancelled() => token.cancelled().await,
                    }
                });
            }
        });
        Proxy {
            addr,
            cut,
            accepting,
            stalled,
            freezer,
        }
    }

    /// Drops every connection and refuses new ones for `down`.
    pub async fn outage(&self, down: Duration) {
        self.cut_off();
        // A real outage: connections stay refused for this long.
        tokio::time::sleep(down).await;
        self.restore();
    }

    /// Drops every connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut_off(&self) {
        self.accepting
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.stalled
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.drop_connections();
    }

    /// Drops every connection, then accepts new ones but never answers them: a server that
    /// hangs, or a network that loses packets. Until the next cut or restore.
    pub fn stall(&self) {
        self.stalled
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.drop_connections();
    }

    /// Stops forwarding on every open connection but keeps both of its sockets open: neither
    /// end hears anything again (a network that silently drops all, no reset), until the next
    /// cut. New connections are forwarded as usual.
    pub fn freeze(&self) {
        self.freezer.freeze();
    }

    /// [`freeze`](Self::freeze)s right after forwarding the first chunk a client sends that
    /// contains `pattern`: the server has the request, the client never gets the answer.
    pub fn freeze_on(&self, pattern: &[u8]) {
        *self.freezer.pattern.lock().unwrap() = Some(pattern.to_vec());
    }

    /// Whether a freeze has happened.
    pub fn has_frozen(&self) -> bool {
        self.freezer.fired.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn restore(&self) {
        self.stalled
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.accepting
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn drop_connections(&self) {
        let old = std::mem::replace(&mut *self.cut.lock().unwrap(), CancellationToken::new());
        old.cancel();
    }
}

/// The value of one series in a Prometheus text exposition (0 when absent).
pub fn metric(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Polls `/metrics` until `series` satisfies `wanted`, or fails after `within`.
pub async fn wait_for_metric(
    h: &Harness,
    series: &str,
    within: Duration,
    wanted: impl Fn(f64) -> bool,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let value = metric(&h.metrics().await, series);
        if wanted(value) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "[{}] {series} stayed at {value}",
            h.backend.name()
        );
        // Polling a gauge that housekeeping refreshes in real time.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Flags `n` cars of Yuyao's court, plates 浙B`first`, 浙B`first + 1`, ….
pub async fn flag_cars(h: &Harness, n: usize, first: usize) {
    let targets: Vec<Value> = (0..n)
        .map(|i| {
            let id = format!("T-{}", first + i);
            vehicle_target(&id, &format!("浙B{:05}", first + i), "yuyao")
        })
        .collect();
    let (status, body) = h
        .request(
            reqwest::Method::POST,
            "/api/v1/targets:batch",
            Some(Value::Array(targets)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A Cixi camera reads the plate of car number `car` (see [`flag_cars`]).
pub async fn car_seen_in_cixi(h: &Harness, event_id: &str, car: usize) {
    let plate = format!("浙B{car:05}");
    h.sighting(
        "cam",
        vehicle_sighting(event_id, "cam", &plate, CIXI.0, CIXI.1),
    )
    .await;
}

/// A service that reaches the broker through a [`Proxy`] the test can cut; the test's own
/// clients (camera, command centers) talk to the broker directly.
pub async fn behind_proxy(backend: &Backend) -> (Harness, Proxy) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(backend, dir.path()).await;
    let upstream = match &config.broker {
        leadrelay::service::config::BrokerChoice::Embedded(_) => {
            let broker = leadrelay::mqtt::broker::start("127.0.0.1:0".parse().unwrap()).unwrap();
            broker.addr
        }
        leadrelay::service::config::BrokerChoice::External { host, port } => {
            tokio::net::lookup_host((host.as_str(), *port))
                .await
                .unwrap()
                .next()
                .unwrap()
        }
    };
    let proxy = Proxy::start(upstream).await;
    config.broker = leadrelay::service::config::BrokerChoice::External {
        host: "127.0.0.1".into(),
        port: proxy.addr.port(),
    };
    let h = Harness::start_config(backend, config, dir, Some(upstream)).await;
    (h, proxy)
}
