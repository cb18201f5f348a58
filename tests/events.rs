//! The console's live event stream (`GET /api/v1/events`) against the real service (real
//! broker, real database): scoped by the token, the MQTT payload byte for byte, resumable with
//! `Last-Event-ID` without a gap or a repeat, and quick.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: i64,
    kind: String,
    data: String,
}

/// An open stream, read chunk by chunk.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

/// How a stream's request carries its token.
enum Credential<'a> {
    Header(&'a str),
    Query(&'a str),
}

impl EventStream {
    /// Opens a stream; panics unless it is answered 200 with `text/event-stream`.
    async fn open(h: &Harness, credential: Credential<'_>, last_event_id: Option<i64>) -> Self {
        let response = send(h, credential, last_event_id).await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if status != 200 {
            panic!(
                "stream refused: {status} {}",
                response.text().await.unwrap_or_default()
            );
        }
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event within `within`; keep-alive comments are skipped.
    async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => panic!("the stream ended"),
                Ok(Err(e)) => panic!("the stream failed: {e}"),
            }
        }
    }

    /// Every event until none comes for `quiet`.
    async fn drain(&mut self, quiet: Duration) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next(quiet).await {
            out.push(e);
        }
        out
    }

    /// Events until one of `kind` whose data holds `needle` arrives (it included), within
    /// `within`.
    async fn until(&mut self, kind: &str, needle: &str, within: Duration) -> Vec<SseEvent> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(e) = self.next(left).await else {
                panic!("no {kind} event holding {needle:?} within {within:?}; got {out:#?}");
            };
            let found = e.kind == kind && e.data.contains(needle);
            out.push(e);
            if found {
                return out;
            }
        }
    }
}

async fn send(
    h: &Harness,
    credential: Credential<'_>,
    last_event_id: Option<i64>,
) -> reqwest::Response {
    let mut url = format!("{}/api/v1/events", h.http);
    let mut req = reqwest::Client::new().get(&url);
    match credential {
        Credential::Header(token) => req = req.bearer_auth(token),
        Credential::Query(token) => {
            url.push_str(&format!("?access_token={token}"));
            if let Some(id) = last_event_id {
                url.push_str(&format!("&last_event_id={id}"));
            }
            req = reqwest::Client::new().get(&url);
        }
    }
    if let (Some(id), Credential::Header(_)) = (last_event_id, &credential) {
        req = req.header("Last-Event-ID", id.to_string());
    }
    req.send().await.expect("HTTP request")
}

/// An event block's fields; `None` for a comment (keep-alive) only.
fn parse(block: &str) -> Option<SseEvent> {
    let (mut id, mut kind, mut data) = (None, None, None::<String>);
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.parse().expect("a numeric event id")),
            "event" => kind = Some(value.to_string()),
            "data" => {
                assert!(data.is_none(), "data on more than one line: {block:?}");
                data = Some(value.to_string());
            }
            other => panic!("unexpected field {other:?} in {block:?}"),
        }
    }
    if id.is_none() && kind.is_none() && data.is_none() {
        return None;
    }
    Some(SseEvent {
        id: id.expect("every event has an id"),
        kind: kind.expect("every event has a kind"),
        data: data.expect("every event has data"),
    })
}

/// Flags the headline car (Yuyao's case) and a Yuyao car.
async fn flag_two(h: &Harness) {
    assert_eq!(h.put_target(headline_target()).await.0, 201);
    assert_eq!(
        h.put_target(vehicle_target("T-Y", "浙B77777", "yuyao"))
            .await
            .0,
        201
    );
}

/// The headline car seen in Cixi: a task to Cixi (and an alert to Yuyao).
async fn headline_seen_in_cixi(h: &Harness, event_id: &str) {
    h.sighting(
        "cam",
        vehicle_sighting(event_id, "cam", "浙B12345", CIXI.0, CIXI.1),
    )
    .await;
}

/// The Yuyao car seen in Yuyao: a task to Yuyao alone.
async fn yuyao_car_seen_in_yuyao(h: &Harness, event_id: &str) {
    h.sighting(
        "cam",
        vehicle_sighting(event_id, "cam", "浙B77777", YUYAO.0, YUYAO.1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_court_sees_its_own_task_at_once_and_not_another_courts() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        flag_two(&h).await;
        let cixi = h.token("cixi console", "court:cixi").await;
        let mut cixi_stream = EventStream::open(&h, Credential::Header(&cixi), None).await;
        let mut admin_stream = EventStream::open(&h, Credential::Header(&h.token), None).await;

        let sent = Instant::now();
        headline_seen_in_cixi(&h, "e-1").await;
        let got = cixi_stream.until("task", "T-2024-0001", WAIT).await;
        let latency = sent.elapsed();
        eprintln!(
            "[{}] sighting published -> task on the stream: {latency:?}",
            backend.name()
        );
        assert!(latency < Duration::from_secs(1), "{latency:?}");
        assert_eq!(got.len(), 1, "{got:#?}");
        let task = &got[0];

        // The payload is the MQTT message's, byte for byte.
        let mqtt = h.wait_for("dispatch/cixi/tasks", 1, WAIT).await;
        assert_eq!(task.data.as_bytes(), &mqtt[0].raw[..]);

        yuyao_car_seen_in_yuyao(&h, "e-2").await;
        h.wait_for("dispatch/yuyao/tasks", 1, WAIT).await;
        // The admin sees both tasks and the alert to Yuyao; Cixi nothing more.
        let seen = admin_stream.until("task", "T-Y", WAIT).await;
        let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["task", "alert", "task"], "{seen:#?}");
        assert_eq!(seen[0], *task);
        let alert = h.wait_for("alerts/yuyao", 1, WAIT).await;
        assert_eq!(seen[1].data.as_bytes(), &alert[0].raw[..]);
        let yuyao_task = h.wait_for("dispatch/yuyao/tasks", 1, WAIT).await;
        assert_eq!(seen[2].data.as_bytes(), &yuyao_task[0].raw[..]);
        // Past the event the admin saw, a poll has long passed.
        let rest = cixi_stream.drain(Duration::from_secs(1)).await;
        assert!(
            rest.is_empty(),
            "cixi saw another court's events: {rest:#?}"
        );

        // One audit row per stream opened.
        let (status, audit) = h.get("/api/v1/audit?actor=cixi%20console").await;
        assert_eq!(status, 200, "{audit}");
        let streams: Vec<&Value> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "events.stream")
            .collect();
        assert_eq!(streams.len(), 1, "{audit}");
        assert_eq!(streams[0]["scope"], "court:cixi");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_last_event_id_gets_exactly_what_followed() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        flag_two(&h).await;
        for i in 0..3 {
            headline_seen_in_cixi(&h, &format!("c-{i}")).await;
            yuyao_car_seen_in_yuyao(&h, &format!("y-{i}")).await;
        }
        // A task and an alert for the first Cixi sighting, an update per later one; a task
        // for the first Yuyao sighting, an update per later one.
        h.wait_for("dispatch/cixi/updates", 2, WAIT).await;
        h.wait_for("dispatch/yuyao/updates", 2, WAIT).await;

        let mut everything = EventStream::open(&h, Credential::Header(&h.token), Some(0)).await;
        let all = everything.drain(Duration::from_secs(2)).await;
        // Every message published to a court, in the order written.
        let mut topics = h.all_topics();
        topics.sort();
        topics.dedup();
        let published: Vec<Seen> = topics
            .iter()
            .filter(|t| {
                t.starts_with("alerts/") || (t.starts_with("dispatch/") && !t.ends_with("/status"))
            })
            .flat_map(|t| h.on(t))
            .collect();
        assert_eq!(all.len(), published.len(), "{all:#?}");
        for message in &published {
            assert!(
                all.iter().any(|e| e.data.as_bytes() == &message.raw[..]),
                "{} not on the stream",
                message.topic
            );
        }
        assert!(all.windows(2).all(|w| w[0].id < w[1].id), "{all:#?}");

        // Resuming after any event gives exactly the ones after it.
        for k in [0, all.len() / 2, all.len() - 1] {
            let mut resumed =
                EventStream::open(&h, Credential::Header(&h.token), Some(all[k].id)).await;
            let rest = resumed.drain(Duration::from_secs(2)).await;
            assert_eq!(rest, all[k + 1..], "after event {}", all[k].id);
        }

        // A court's resumed stream through the query: its own events after the id.
        let cixi = h.token("cixi browser", "court:cixi").await;
        let mut resumed = EventStream::open(&h, Credential::Query(&cixi), Some(all[0].id)).await;
        let rest = resumed.drain(Duration::from_secs(2)).await;
        let to_cixi: Vec<Vec<u8>> = [
            "dispatch/cixi/tasks",
            "dispatch/cixi/updates",
            "alerts/cixi",
        ]
        .iter()
        .flat_map(|t| h.on(t))
        .map(|m| m.raw)
        .collect();
        let expected: Vec<SseEvent> = all[1..]
            .iter()
            .filter(|e| to_cixi.contains(&e.data.as_bytes().to_vec()))
            .cloned()
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(rest, expected);

        // Live events continue after the replay, none repeated.
        headline_seen_in_cixi(&h, "c-live").await;
        let live = resumed.until("update", "c-live", WAIT).await;
        assert_eq!(live.len(), 1, "{live:#?}");
        assert!(live[0].id > all.last().unwrap().id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_refuses_callers_without_a_token_ops_and_bad_ids() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        let ops = h.token("ops dashboard", "ops").await;
        let cases: [(Option<&str>, Option<&str>, u16, &str); 5] = [
            (None, None, 401, "unauthorized"),
            (Some("lr_not-a-token"), None, 401, "unauthorized"),
            (Some(&ops), None, 403, "forbidden"),
            (Some(&h.token), Some("x"), 400, "bad_request"),
            (Some(&h.token), Some("-3"), 400, "bad_request"),
        ];
        for (token, last, status, error) in cases {
            let mut req = reqwest::Client::new().get(format!("{}/api/v1/events", h.http));
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            if let Some(last) = last {
                req = req.header("Last-Event-ID", last);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), status, "{token:?} {last:?}");
            let body: Value = resp.json().await.expect("a JSON error");
            assert_eq!(body["error"], error, "{body}");
        }
        // The query's token is checked as the header's is.
        for (token, status) in [("lr_not-a-token", 401), (ops.as_str(), 403)] {
            let resp = send(&h, Credential::Query(token), None).await;
            assert_eq!(resp.status().as_u16(), status);
            let body: Value = resp.json().await.expect("a JSON error");
            assert!(body["error"].is_string(), "{body}");
        }
        // Elsewhere the query's token is not one.
        let (status, _) = h
            .request_as(
                None,
                Method::GET,
                &format!("/api/v1/courts?access_token={}", h.token),
                None,
            )
            .await;
        assert_eq!(status, 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publication_to_console_takes_well_under_a_second() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        const CARS: usize = 30;
        flag_cars(&h, CARS, 100).await;
        let mut stream = EventStream::open(&h, Credential::Header(&h.token), None).await;
        let mut latencies = Vec::with_capacity(CARS);
        for car in 100..100 + CARS {
            let plate = format!("浙B{car:05}");
            let sent = Instant::now();
            car_seen_in_cixi(&h, &format!("p-{car}"), car).await;
            stream.until("task", &plate, WAIT).await;
            latencies.push(sent.elapsed());
        }
        latencies.sort();
        let p50 = latencies[CARS / 2];
        let p99 = latencies[(CARS * 99).div_ceil(100) - 1];
        eprintln!(
            "[{}] sighting published -> task on the stream, {CARS} sightings: p50 {p50:?}, p99 {p99:?}, max {:?}",
            backend.name(),
            latencies[CARS - 1]
        );
        assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_miss_nothing_on_the_live_stream() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        const CARS: usize = 16;
        flag_cars(&h, CARS, 300).await;
        for car in 300..300 + CARS {
            car_seen_in_cixi(&h, &format!("w-{car}"), car).await;
        }
        let tasks: Vec<String> = h
            .wait_for("dispatch/cixi/tasks", CARS, WAIT)
            .await
            .iter()
            .map(|m| m.body["task_id"].as_str().unwrap().to_string())
            .collect();
        // Written in the transactions of the tasks, before the stream opens.
        h.wait_for("alerts/yuyao", CARS, WAIT).await;
        let mut live = EventStream::open(&h, Credential::Header(&h.token), None).await;

        // Status reports, each its own transaction, race each other and new sightings.
        let mut reports = tokio::task::JoinSet::new();
        for task in tasks {
            let (client, url) = (
                h.http_client(),
                format!("{}/api/v1/tasks/{task}/status", h.http),
            );
            reports.spawn(async move {
                let resp = client
                    .post(url)
                    .json(&serde_json::json!({"status": "acknowledged"}))
                    .send()
                    .await
                    .expect("HTTP request");
                resp.status().as_u16()
            });
        }
        for car in 300..300 + CARS {
            car_seen_in_cixi(&h, &format!("w2-{car}"), car).await;
        }
        while let Some(status) = reports.join_next().await {
            assert_eq!(status.unwrap(), 200);
        }
        let seen = live.drain(Duration::from_secs(3)).await;
        assert!(seen.len() >= CARS, "{}", seen.len());
        assert!(seen.windows(2).all(|w| w[0].id < w[1].id));
        // A replay of the same span holds exactly what the live stream sent.
        let mut replay =
            EventStream::open(&h, Credential::Header(&h.token), Some(seen[0].id - 1)).await;
        let replayed = replay.drain(Duration::from_secs(2)).await;
        assert_eq!(replayed, seen);
    }
}
