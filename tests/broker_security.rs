//! The shipped broker security, end to end: `deploy/mosquitto/secure.conf` run by a real
//! Mosquitto with a TLS listener (certificates made here with openssl), the password and ACL
//! files made by `leadrelay broker-acl`, and the real `leadrelay serve` connecting over
//! `mqtts://` with its credentials. Each court and camera is its own broker user.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    CIXI, ServeProcess, YUYAO, headline_target, unique, vehicle_sighting, vehicle_target,
};
use leadrelay::mqtt::security::{ClientSecurity, Credentials, Secret, TlsSettings, TrustAnchors};
use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

/// A Mosquitto child process, killed when dropped.
struct Broker {
    child: Child,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for `localhost` and 127.0.0.1, signed by it.
fn make_certificates(dir: &Path) {
    let at = |name: &str| dir.join(name).to_str().unwrap().to_string();
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=leadrelay test CA",
        "-keyout",
        &at("ca.key"),
        "-out",
        &at("ca.crt"),
    ]));
    run(Command::new("openssl").args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &at("server.key"),
        "-out",
        &at("server.csr"),
    ]));
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &at("server.csr"),
        "-CA",
        &at("ca.crt"),
        "-CAkey",
        &at("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &at("san.ext"),
        "-out",
        &at("server.crt"),
    ]));
}

/// The shipped configuration with its paths and port moved into `dir`.
fn shipped_config(dir: &Path, port: u16) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mosquitto/secure.conf"),
    )
    .unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    let mut rewritten = 0;
    let lines: Vec<String> = shipped
        .lines()
        .map(|line| {
            let key = line.split_whitespace().next().unwrap_or("");
            let replacement = match key {
                "listener" => format!("listener {port} 127.0.0.1"),
                "password_file" => format!("password_file {}", path("passwd")),
                "acl_file" => format!("acl_file {}", path("acl")),
                "persistence_location" => format!("persistence_location {}/", path("data")),
                "cafile" => format!("cafile {}", path("ca.crt")),
                "certfile" => format!("certfile {}", path("server.crt")),
                "keyfile" => format!("keyfile {}", path("server.key")),
                _ => return line.to_string(),
            };
            rewritten += 1;
            replacement
        })
        .collect();
    assert_eq!(rewritten, 7, "the shipped file changed shape:\n{shipped}");
    // Started by root (as in CI), Mosquitto would switch to its own user, which cannot read
    // the test's private temporary directory.
    lines.join("\n") + "\nuser root\n"
}

/// The passwords `broker-acl` wrote, by user, before they are hashed.
fn passwords(dir: &Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(dir.join("passwd"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sets up certificates, the generated ACL and passwords, and starts Mosquitto on them.
fn start_secure_broker(
    dir: &Path,
    prefix: &str,
) -> (Broker, std::collections::HashMap<String, String>) {
    make_certificates(dir);
    std::fs::write(dir.join("sources.txt"), "# two cameras\ncam-a\ncam-b\n").unwrap();
    run(Command::new(env!("CARGO_BIN_EXE_leadrelay")).args([
        "broker-acl",
        "--sources",
        dir.join("sources.txt").to_str().unwrap(),
        "--topic-prefix",
        prefix,
        "--out",
        dir.to_str().unwrap(),
    ]));
    let plain = passwords(dir);
    run(Command::new("mosquitto_passwd")
        .arg("-U")
        .arg(dir.join("passwd")));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let port = free_port();
    std::fs::write(dir.join("mosquitto.conf"), shipped_config(dir, port)).unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
        .spawn()
        .expect("mosquitto starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        // Waiting for a real broker's listener.
        std::thread::sleep(Duration::from_millis(50));
    }
    (Broker { child, port }, plain)
}

/// What one broker client saw: its connection's outcome and its messages.
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<(String, Value), String>>,
}

fn tls(dir: &Path) -> ClientSecurity {
    ClientSecurity {
        tls: Some(
            TlsSettings {
                trust: TrustAnchors::CaFile(dir.join("ca.crt")),
                client_auth: None,
            }
            .client_config()
            .unwrap(),
        ),
        credentials: None,
    }
}

/// Connects as `user` over TLS, subscribing to `filters` (each made with the prefix).
fn connect(dir: &Path, port: u16, user: &str, password: &str, filters: &[String]) -> Client {
    let mut opts = MqttOptions::new(unique("lr-sec-"), "localhost", port);
    let mut security = tls(dir);
    security.credentials = Some(Credentials {
        username: user.to_string(),
        password: Secret::new(password),
    });
    security.apply(&mut opts);
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let (tx, events) = mpsc::unbounded_channel();
    let filters = filters.to_vec();
    let subscriber = client.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for f in &filters {
                        let _ = subscriber.subscribe(f.clone(), QoS::AtLeastOnce).await;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if tx.send(Ok((p.topic.clone(), body))).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let refused = matches!(e, ConnectionError::ConnectionRefused(_));
                    let _ = tx.send(Err(format!("{e:?}")));
                    if refused {
                        return;
                    }
                    // Back-off of a test client's reconnect.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    Client { client, events }
}

impl Client {
    /// The next message on a topic ending in `suffix`, within `within`.
    async fn next_on(&mut self, suffix: &str, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok((topic, body)))) if topic.ends_with(suffix) => return Some(body),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn publish(&self, topic: String, body: &Value) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, body.to_string())
            .await
            .unwrap();
    }
}

const WAIT: Duration = Duration::from_secs(15);
/// Long enough for a message the broker let through to have become a task.
const SETTLE: Duration = Duration::from_secs(3);

async fn sightings_received(service: &ServeProcess) -> f64 {
    let text = service
        .client
        .get(format!("{}/metrics", service.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("leadrelay_sightings_received_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn put(service: &ServeProcess, target: Value) {
    let id = target["target_id"].as_str().unwrap().to_string();
    let status = service
        .client
        .put(format!("{}/api/v1/targets/{id}", service.http))
        .json(&target)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_broker_security_lets_each_party_do_only_its_part() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let prefix = format!("{}/", unique("sec"));
    let (broker, pw) = start_secure_broker(d, &prefix);
    let port = broker.port;
    let t = |rest: &str| format!("{prefix}{rest}");

    // The service over mqtts:// with its generated credentials: ready means connected.
    let url = format!("mqtts://leadrelay:{}@localhost:{port}", pw["leadrelay"]);
    let database = format!("sqlite://{}", d.join("leadrelay.db").display());
    let ca = d.join("ca.crt");
    let service = ServeProcess::start_with(
        &url,
        &database,
        &unique("lr-sec-svc-"),
        &prefix,
        d,
        &["--mqtt-ca-file", ca.to_str().unwrap()],
    )
    .await;
    let log = std::fs::read_to_string(d.join("serve.log")).unwrap();
    assert!(
        !log.contains(&pw["leadrelay"]),
        "the password was logged:\n{log}"
    );

    put(&service, headline_target()).await; // Yuyao's car
    put(&service, vehicle_target("T-SEC-2", "浙B77777", "cixi")).await;
    let mut cixi = connect(
        d,
        port,
        "court-cixi",
        &pw["court-cixi"],
        &[
            t("dispatch/cixi/tasks"),
            t("dispatch/yuyao/tasks"),
            t("alerts/yuyao"),
        ],
    );
    let mut yuyao = connect(
        d,
        port,
        "court-yuyao",
        &pw["court-yuyao"],
        &[t("dispatch/yuyao/tasks"), t("alerts/yuyao")],
    );
    let cam_a = connect(d, port, "camera-cam-a", &pw["camera-cam-a"], &[]);
    // Subscriptions are sent on CONNACK; give them a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A camera publishing as itself: Yuyao's car seen in Cixi is Cixi's task, Yuyao's alert.
    let seen = vehicle_sighting("sec-1", "cam-a", "浙B12345", CIXI.0, CIXI.1);
    cam_a.publish(t("sightings/cam-a"), &seen).await;
    let task = cixi
        .next_on("dispatch/cixi/tasks", WAIT)
        .await
        .expect("Cixi's task");
    assert_eq!(task["target_id"], "T-2024-0001");
    assert!(
        yuyao.next_on("alerts/yuyao", WAIT).await.is_some(),
        "Yuyao's alert"
    );
    // ... and a court cannot read another court's alerts.
    assert!(cixi.next_on("alerts/yuyao", SETTLE).await.is_none());

    // A camera cannot publish as another source: the broker drops it, nothing is received.
    let received = sightings_received(&service).await;
    let spoofed = vehicle_sighting("sec-2", "cam-b", "浙B77777", YUYAO.0, YUYAO.1);
    cam_a.publish(t("sightings/cam-b"), &spoofed).await;
    tokio::time::sleep(SETTLE).await; // what the broker let through would be received by now
    assert_eq!(sightings_received(&service).await, received);
    assert!(
        yuyao
            .next_on("dispatch/yuyao/tasks", Duration::ZERO)
            .await
            .is_none()
    );

    // Cixi's car seen in Yuyao by the right camera: Yuyao gets it, Cixi's console does not.
    let cam_b = connect(d, port, "camera-cam-b", &pw["camera-cam-b"], &[]);
    let real = vehicle_sighting("sec-3", "cam-b", "浙B77777", YUYAO.0, YUYAO.1);
    cam_b.publish(t("sightings/cam-b"), &real).await;
    let yuyao_task = yuyao
        .next_on("dispatch/yuyao/tasks", WAIT)
        .await
        .expect("Yuyao's task");
    assert!(cixi.next_on("dispatch/yuyao/tasks", SETTLE).await.is_none());

    // Cixi cannot close Yuyao's task: its report on Yuyao's status topic never arrives.
    let task_id = yuyao_task["task_id"].as_str().unwrap().to_string();
    let report = serde_json::json!({"task_id": task_id, "status": "seized", "by": "impostor"});
    cixi.publish(t("dispatch/yuyao/status"), &report).await;
    tokio::time::sleep(SETTLE).await; // a delivered report is applied well within this
    let task: Value = service
        .client
        .get(format!("{}/api/v1/tasks/{task_id}", service.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(task["status"], "dispatched", "{task}");

    // A wrong password is refused, by the broker and in the service's own words.
    let mut wrong = connect(d, port, "court-cixi", "not-the-password", &[]);
    let outcome = tokio::time::timeout(WAIT, wrong.events.recv())
        .await
        .unwrap()
        .unwrap();
    let err = outcome.unwrap_err();
    assert!(
        err.contains(&format!("{:?}", ConnectReturnCode::NotAuthorized))
            || err.contains(&format!("{:?}", ConnectReturnCode::BadUserNamePassword)),
        "{err}"
    );
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_says_clearly_when_the_broker_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (broker, _) = start_secure_broker(d, "");
    let log_path = d.join("refused.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadrelay"))
        .args(["serve", "--mqtt-url"])
        .arg(format!(
            "mqtts://leadrelay:wrong-secret@localhost:{}",
            broker.port
        ))
        .arg("--mqtt-ca-file")
        .arg(d.join("ca.crt"))
        .arg("--database-url")
        .arg(format!("sqlite://{}", d.join("x.db").display()))
        .args(["--http-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("refused the user name or password")
            || log.contains("does not authorize this client")
            || Instant::now() > deadline
        {
            break log;
        }
        // Polling the child's log as it writes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("ERROR"), "{log}");
    assert!(
        log.contains("refused the user name or password") || log.contains("does not authorize"),
        "{log}"
    );
    assert!(
        !log.contains("wrong-secret"),
        "the password was logged:\n{log}"
    );
}

/// A plain-TCP client gets nowhere on the TLS listener, and a client that does not trust the
/// broker's CA does not connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plain_text_and_no_unchecked_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (broker, pw) = start_secure_broker(d, "");
    let mut opts = MqttOptions::new(unique("lr-plain-"), "127.0.0.1", broker.port);
    opts.set_credentials("leadrelay", pw["leadrelay"].clone());
    let (_client, mut eventloop) = AsyncClient::new(opts, 10);
    let plain = tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap();
    assert!(plain.is_err(), "{plain:?}");

    let other = tempfile::tempdir().unwrap();
    make_certificates(other.path()); // another CA, which did not sign the broker's certificate
    let mut opts = MqttOptions::new(unique("lr-untrusted-"), "localhost", broker.port);
    ClientSecurity {
        credentials: Some(Credentials {
            username: "leadrelay".into(),
            password: Secret::new(pw["leadrelay"].clone()),
        }),
        ..tls(other.path())
    }
    .apply(&mut opts);
    let (_client, mut eventloop) = AsyncClient::new(opts, 10);
    let untrusted = tokio::time::timeout(WAIT, eventloop.poll()).await.unwrap();
    assert!(
        matches!(untrusted, Err(ConnectionError::Tls(_))),
        "{untrusted:?}"
    );
}

/// One HTTP/1.1 exchange over TLS, trusting `ca`; the answer as text (empty if none came).
async fn https_get(port: u16, ca: &Path, path: &str, token: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = TlsSettings {
        trust: TrustAnchors::CaFile(ca.to_path_buf()),
        client_auth: None,
    }
    .client_config()
    .unwrap();
    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    else {
        return String::new();
    };
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    if tls.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// HTTPS on the service itself: the API answers over TLS with a certificate from the
/// operator's CA, still asks for a token, and a plain-HTTP client gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_served_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certificates(d);
    let database = format!("sqlite://{}", d.join("https.db").display());
    let bin = env!("CARGO_BIN_EXE_leadrelay");
    let made = Command::new(bin)
        .args([
            "tokens",
            "create",
            "--name",
            "https test",
            "--scope",
            "admin",
        ])
        .args(["--database-url", &database])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = String::from_utf8_lossy(&made.stdout).trim().to_string();
    let port = free_port();
    let mut child = Command::new(bin)
        .args(["serve", "--embedded-broker-addr", "127.0.0.1:0"])
        .args(["--database-url", &database])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .arg("--http-tls-cert")
        .arg(d.join("server.crt"))
        .arg("--http-tls-key")
        .arg(d.join("server.key"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("https.log")).unwrap())
        .spawn()
        .unwrap();
    let ca = d.join("ca.crt");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !https_get(port, &ca, "/readyz", None)
        .await
        .starts_with("HTTP/1.1 200")
    {
        assert!(
            Instant::now() < deadline,
            "not ready over HTTPS: {}",
            std::fs::read_to_string(d.join("https.log")).unwrap_or_default()
        );
        // Polling a real server's readiness.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = https_get(port, &ca, "/api/v1/tasks", Some(&token)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = https_get(port, &ca, "/api/v1/tasks", None).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Plain HTTP on the TLS port: no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    let _ = child.kill();
    let _ = child.wait();
}
