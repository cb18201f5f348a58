//! Hostile HTTP clients: deeply nested JSON, odd ids in every path parameter, and slow
//! clients (slowloris) that trickle their headers or their body. Each gets the contract's
//! JSON error or a closed connection, and the service keeps answering everyone else.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `body` raw and returns the status and the JSON body of the answer.
async fn raw_request(h: &Harness, method: &str, path: &str, body: &str) -> (u16, Value) {
    let response = client_with_token(&h.token)
        .request(method.parse().unwrap(), format!("{}{path}", h.http))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: {status} {text:?} is not JSON: {e}"));
    (status, json)
}

/// 100,000 nested arrays on every endpoint that takes a body: a 400 with the contract's
/// shape (serde_json stops at its recursion limit), no stack overflow, the service still up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_a_400_and_the_service_stays_up() {
    let h = Harness::start(&Backend::Embedded).await;
    let nested = "[".repeat(100_000) + &"]".repeat(100_000);
    let object = format!("{{\"target_id\": {nested}}}");
    for (method, path, body) in [
        ("PUT", "/api/v1/targets/T-1", &nested),
        ("PUT", "/api/v1/targets/T-1", &object),
        ("POST", "/api/v1/targets:batch", &nested),
        ("POST", "/api/v1/tasks/t-1/status", &nested),
        ("POST", "/api/v1/locate-requests", &object),
    ] {
        let (status, body) = raw_request(&h, method, path, body).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert_eq!(body["error"], "bad_request", "{body}");
    }
    let (status, _) = h.get("/healthz").await;
    assert_eq!(status, 200);
}

/// Traversal attempts, NUL, control characters, 10 KB ids and percent-escapes that are not
/// UTF-8, in every path parameter: 400 or 404 as JSON, never a 500 and never a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_ids_in_every_path_parameter_get_a_json_400_or_404() {
    for backend in backends() {
        let name = backend.name();
        let h = Harness::start(&backend).await;
        h.put_target(headline_target()).await;
        let long = "x".repeat(10_000);
        let ids = [
            "..%2F..%2Fetc%2Fpasswd",
            "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
            "%2E%2E",
            "..",
            "a%00b",
            "%00",
            "%0A%0D",
            "%FF%FE",
            "%C3%28",
            "%E6%B5",
            "%",
            "%zz",
            long.as_str(),
            "T-2024-0001%00",
        ];
        let paths = [
            ("PUT", "/api/v1/targets/{}"),
            ("GET", "/api/v1/targets/{}"),
            ("DELETE", "/api/v1/targets/{}"),
            ("GET", "/api/v1/tasks/{}"),
            ("POST", "/api/v1/tasks/{}/status"),
        ];
        for id in ids {
            for (method, template) in paths {
                let path = template.replace("{}", id);
                let body = r#"{"status": "acknowledged", "by": "x", "kind": "vehicle"}"#;
                let (status, json) = raw_request(&h, method, &path, body).await;
                let shown = &path[..path.len().min(80)];
                assert!(
                    status == 400 || status == 404,
                    "[{name}] {method} {shown}: {status} {json}"
                );
                let error = json["error"].as_str().unwrap_or_default();
                assert!(
                    ["bad_request", "not_found"].contains(&error),
                    "[{name}] {method} {shown}: {json}"
                );
                assert!(
                    !json.to_string().contains("root:"),
                    "[{name}] a file was read: {json}"
                );
            }
        }
        // An unknown route and a wrong method answer in the same shape.
        let (status, json) = raw_request(&h, "GET", "/api/v1/nothing-here", "").await;
        assert_eq!((status, json["error"].as_str()), (404, Some("not_found")));
        let (status, json) = raw_request(&h, "PATCH", "/api/v1/tasks", "").await;
        assert_eq!(status, 405, "{json}");
        assert_eq!(json["error"], "method_not_allowed", "{json}");
        // Nothing was changed: the one target is still there, active.
        let (status, target) = h.get("/api/v1/targets/T-2024-0001?purpose=test").await;
        assert_eq!(status, 200, "[{name}] {target}");
        assert_eq!(target["status"], "active", "[{name}] {target}");
    }
}

/// Writes `bytes` one at a time, `gap` apart, until the server closes (true) or they are all
/// sent (false).
async fn trickle(stream: &mut TcpStream, bytes: &[u8], gap: Duration) -> bool {
    for b in bytes {
        if stream.write_all(&[*b]).await.is_err() {
            return true;
        }
        // A slowloris client: the gap between bytes is the attack.
        tokio::time::sleep(gap).await;
    }
    false
}

/// Reads until the server closes the connection; what it sent before closing.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

/// 300 clients that send their headers a byte every 100 ms and 50 that send a body slowly:
/// meanwhile a normal client gets `/healthz` and `/api/v1/tasks` promptly; the header
/// tricklers are closed once the header timeout passes, the slow bodies get a JSON 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_others_are_still_served() {
    let header_timeout = Duration::from_secs(2);
    let request_timeout = Duration::from_secs(3);
    let h = Harness::start_with(&Backend::Embedded, |c| {
        c.http_limits.header_timeout = header_timeout;
        c.http_limits.request_timeout = request_timeout;
    })
    .await;
    let addr = h.http.trim_start_matches("http://").to_string();
    let started = Instant::now();

    let headers = "GET /api/v1/tasks HTTP/1.1\r\nHost: x\r\nX-Padding: ".to_string()
        + &"a".repeat(1_000)
        + "\r\n\r\n";
    let mut slow_headers = Vec::new();
    for _ in 0..300 {
        let addr = addr.clone();
        let headers = headers.clone();
        slow_headers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.expect("connects");
            let closed = trickle(&mut stream, headers.as_bytes(), Duration::from_millis(100)).await;
            (closed, started.elapsed())
        }));
    }
    let body = format!(
        r#"{{"status": "acknowledged", "note": "{}"}}"#,
        "x".repeat(500)
    );
    let mut slow_bodies = Vec::new();
    for _ in 0..50 {
        let addr = addr.clone();
        let body = body.clone();
        // A caller with a valid token: otherwise the answer is a 401 before the body is read.
        let token = h.token.clone();
        slow_bodies.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.expect("connects");
            let head = format!(
                "POST /api/v1/tasks/t-1/status HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            let writer = async {
                trickle(&mut stream, body.as_bytes(), Duration::from_millis(100)).await;
            };
            // The answer comes while the body is still being sent.
            let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
            read_to_close(&mut stream, Duration::from_secs(10)).await
        }));
    }

    // A normal client, meanwhile.
    let client = client_with_token(&h.token);
    let mut slowest = Duration::ZERO;
    for path in ["/healthz", "/api/v1/tasks", "/healthz", "/api/v1/tasks"] {
        let asked = Instant::now();
        let response = client
            .get(format!("{}{path}", h.http))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("a normal client is answered while slow clients hold connections");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        slowest = slowest.max(asked.elapsed());
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{path} took {:?}",
            asked.elapsed()
        );
        // A normal client's requests a second apart, across the slow clients' lifetime.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    let mut cut_off = Vec::new();
    for task in slow_headers {
        let (closed, at) = task.await.unwrap();
        cut_off.push(at);
        assert!(closed, "a client trickling its headers was never cut off");
        assert!(
            at < header_timeout + Duration::from_secs(5),
            "a header trickler was cut off only after {at:?}"
        );
    }
    cut_off.sort();
    eprintln!(
        "slowloris: normal requests answered within {slowest:?}; header tricklers cut off \
         after {:?} to {:?}",
        cut_off[0],
        cut_off[cut_off.len() - 1]
    );
    for task in slow_bodies {
        let answer = task
            .await
            .unwrap()
            .expect("a slow body's connection is closed");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""error":"timeout""#), "{answer}");
    }
    let (status, _) = h.get("/healthz").await;
    assert_eq!(status, 200);
}

/// The external broker and PostgreSQL, when configured (process-level tests need both).
fn external() -> Option<(String, String)> {
    backends().into_iter().find_map(|b| match b {
        Backend::External {
            mqtt_url,
            database_url,
        } => Some((mqtt_url, database_url)),
        Backend::Embedded => None,
    })
}

/// SIGTERM while the group commit hangs on a half-open database connection: the binary gives
/// the drain `--shutdown-grace`, then exits non-zero and says why, rather than waiting for
/// the database (`--db-operation-timeout` is far longer than the grace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_frozen_database_exits_non_zero_after_the_grace() {
    let Some((mqtt_url, database_url)) = external() else {
        eprintln!("no external broker and PostgreSQL configured: the shutdown test is skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let database = leadrelay::store::isolated_postgres_url(&database_url)
        .await
        .unwrap()
        .replace("127.0.0.1:5432", &proxy.addr.to_string())
        // In clear: the proxy freezes on the bytes it carries, which TLS would hide.
        + "&sslmode=disable";
    assert!(database.contains(&proxy.addr.to_string()), "{database}");
    let prefix = format!("{}/", unique("grace"));
    let grace = Duration::from_secs(2);
    let mut service = ServeProcess::start_with(
        &mqtt_url,
        &database,
        &unique("lr-grace-"),
        &prefix,
        dir.path(),
        &["--shutdown-grace", "2s", "--db-operation-timeout", "60s"],
    )
    .await;
    let targets: Vec<Value> = (0..10)
        .map(|i| vehicle_target(&format!("G-{i}"), &format!("浙B{:05}", 40_000 + i), "yuyao"))
        .collect();
    service.load_targets(&targets).await;

    let broker = mqtt_url.trim_start_matches("mqtt://");
    let (host, port) = broker.split_once(':').unwrap();
    let mut opts = rumqttc::MqttOptions::new(unique("lr-grace-pub-"), host, port.parse().unwrap());
    opts.set_keep_alive(Duration::from_secs(20));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 100);
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    // The group commit that binds this event id freezes every database connection of the moment.
    proxy.freeze_on(b"grace-3");
    for i in 0..10 {
        let body = vehicle_sighting(
            &format!("grace-{i}"),
            "cam",
            &format!("浙B{:05}", 40_000 + i),
            CIXI.0,
            CIXI.1,
        );
        client
            .publish(
                format!("{prefix}sightings/cam"),
                rumqttc::QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .await
            .unwrap();
    }
    // Generous: on a loaded machine the service may take a while to reach that commit.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !proxy.has_frozen() {
        assert!(
            Instant::now() < deadline,
            "no group commit bound the event id"
        );
        // Polling for the commit that freezes the database connections.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let asked = Instant::now();
    service.terminate();
    let status = service
        .wait_exit(grace + Duration::from_secs(8))
        .await
        .expect("the process exits within the grace and a margin");
    let took = asked.elapsed();
    pump.abort();
    assert!(!status.success(), "a drain cut short is an error: {status}");
    assert!(
        took >= grace,
        "exited after {took:?}: before the grace, so the drain did not hang"
    );
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains("graceful shutdown did not finish in time"),
        "the log says why: {log}"
    );
    assert!(log.contains("shutdown did not finish within 2s"), "{log}");
}
