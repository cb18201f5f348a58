//! Input sizes and sanity limits end to end: an MQTT payload larger than the packet limit, an
//! outbox message that can never be published, oversized or absurd status reports, request
//! bodies over the HTTP limit, and target cases with impossible amounts or dates.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
/// The default `max_packet_size`.
const MAX_PACKET: usize = 1024 * 1024;

/// Waits for Cixi's command center to have a task for each of `cars`, then checks the
/// database holds exactly `total` tasks for Cixi (each sighting handled once).
async fn cixi_has_tasks_for(h: &Harness, cars: std::ops::Range<usize>, total: usize) {
    let wanted: Vec<String> = cars.map(|c| format!("T-{c}")).collect();
    let missing = || {
        let seen: Vec<String> = h
            .on("dispatch/cixi/tasks")
            .iter()
            .map(|t| t.body["target_id"].as_str().unwrap_or("").to_string())
            .collect();
        wanted.iter().filter(|w| !seen.contains(w)).count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while missing() > 0 && std::time::Instant::now() < deadline {
        // Polling the watcher's record of the broker's messages.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let backend = h.backend.name();
    assert_eq!(missing(), 0, "[{backend}] every sighting became a task");
    let (_, listed) = h.get("/api/v1/tasks?court_id=cixi&limit=1000").await;
    assert_eq!(listed["count"], total, "[{backend}] one task per target");
}

async fn assert_ready(h: &Harness) {
    let (status, body) = h.get("/readyz").await;
    assert_eq!(status, 200, "[{}] {body}", h.backend.name());
}

/// A sighting larger than the packet the service may send is dead-lettered with its payload
/// cut to fit (`truncated`, length, SHA-256), and the connection survives a reconnect.
/// Before, the dead letter was dropped silently and stayed in the client's state: every new
/// connection resent it, failed, and ingest never became ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_sighting_is_dead_lettered_cut_to_size_and_survives_a_reconnect() {
    for backend in backends() {
        let name = backend.name();
        let (h, proxy) = behind_proxy(&backend).await;
        const N: usize = 40;
        flag_cars(&h, N + 1, 0).await;
        // Not UTF-8, so a whole dead letter would carry it in base64, a third larger. The
        // embedded broker takes payloads up to 1 MiB; Mosquitto takes the operator's 2 MB.
        let size = match backend {
            Backend::Embedded => 1_000_000,
            Backend::External { .. } => 2_000_000,
        };
        let big: Vec<u8> = (0..size).map(|i| 0x80 | (i % 64) as u8).collect();
        h.publish("sightings/cam", big.clone()).await;
        // A sighting behind it: once its task is out, the big one was handled.
        car_seen_in_cixi(&h, "before", N).await;
        cixi_has_tasks_for(&h, N..N + 1, 1).await;

        // The broker goes away and comes back: a new connection for the service.
        proxy.outage(Duration::from_millis(500)).await;
        h.wait_ready().await;
        for i in 0..N {
            car_seen_in_cixi(&h, &format!("after-{i}"), i).await;
        }
        cixi_has_tasks_for(&h, 0..N + 1, N + 1).await;
        assert_ready(&h).await;

        let letter = &h.wait_for("deadletter/sightings", 1, WAIT).await[0];
        assert!(
            letter.raw.len() <= MAX_PACKET,
            "[{name}] {}",
            letter.raw.len()
        );
        let body = &letter.body;
        assert_eq!(body["reason"], "too_large", "[{name}]");
        assert_eq!(body["truncated"], true, "[{name}]");
        assert_eq!(body["payload"], Value::Null, "[{name}]");
        assert_eq!(body["payload_bytes"], size, "[{name}]");
        assert_eq!(body["topic"], h.topic("sightings/cam"), "[{name}]");
        let sha = body["payload_sha256"].as_str().unwrap();
        assert_eq!(sha.len(), 64, "[{name}]");
        let kept = base64::engine::general_purpose::STANDARD
            .decode(body["payload_base64"].as_str().unwrap())
            .unwrap();
        assert!(
            kept.len() > MAX_PACKET / 2 && big.starts_with(&kept),
            "[{name}] {} bytes kept",
            kept.len()
        );
        let metrics = h.metrics().await;
        assert!(
            metric(&metrics, "leadrelay_dead_letters_truncated_total ") >= 1.0,
            "[{name}] {metrics}"
        );
    }
}

/// A Task larger than the packet limit (a target with thousands of cases) can never be
/// published: it is moved to `outbox_rejected` and counted, the outbox empties, and the
/// publisher goes on with everything else, across a reconnect. Before, it stayed in the outbox
/// and was retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_message_over_the_packet_limit_is_set_aside_not_retried_forever() {
    for backend in backends() {
        let name = backend.name();
        let (h, proxy) = behind_proxy(&backend).await;
        let cases: Vec<Value> = (0..4_000)
            .map(|i| {
                json!({"case_no": format!("(2024)浙0281执{i}号 {}", "卷".repeat(100)),
                       "court_id": "yuyao", "filed_on": "2024-03-01", "amount_cny": 1000})
            })
            .collect();
        let (status, body) = h
            .put_target(json!({
                "target_id": "T-BIG", "kind": "vehicle", "plate": "浙B77777", "cases": cases
            }))
            .await;
        assert_eq!(status, 201, "[{name}] {body}");
        flag_cars(&h, 1, 0).await;
        h.sighting(
            "cam",
            vehicle_sighting("big-task", "cam", "浙B77777", CIXI.0, CIXI.1),
        )
        .await;
        // Its alert is small and goes out; the task cannot.
        let alert = &h.wait_for("alerts/yuyao", 1, WAIT).await[0].body;
        assert_eq!(alert["target_id"], "T-BIG", "[{name}]");
        // The outbox itself, not the gauge: housekeeping may not have refreshed it yet.
        let store = leadrelay::store::Store::connect(&h.config.database_url)
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        while store.outbox_pending_count().await.unwrap() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "[{name}] the outbox keeps the message that cannot be published"
            );
            // Polling the database the publisher empties in real time.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rejected = store.rejected_outbox().await.unwrap();
        assert_eq!(rejected.len(), 1, "[{name}] {rejected:?}");
        assert_eq!(rejected[0].0, "task", "[{name}]");
        assert!(rejected[0].2.contains("bytes"), "[{name}] {rejected:?}");
        wait_for_metric(&h, "leadrelay_outbox_rejected_total ", WAIT, |n| n >= 1.0).await;

        proxy.outage(Duration::from_millis(500)).await;
        h.wait_ready().await;
        car_seen_in_cixi(&h, "small-task", 0).await;
        let tasks = h.wait_for("dispatch/cixi/tasks", 1, WAIT).await;
        assert!(
            tasks.iter().all(|t| t.body["target_id"] == "T-0"),
            "[{name}] only the small task is published"
        );
        wait_for_metric(&h, "leadrelay_outbox_pending ", WAIT, |n| n == 0.0).await;
        // The big task is in the database, as dispatched.
        let (_, listed) = h.get("/api/v1/tasks?court_id=cixi").await;
        assert_eq!(listed["count"], 2, "[{name}] {listed}");
    }
}

/// Status reports with a huge note, a huge `by`, or an `at` far in the future or past are
/// refused (dead letter or 400) and change nothing. Before, they were stored, and an update
/// carrying a 2 MB note could never be published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_absurd_status_reports_are_refused_and_change_nothing() {
    for backend in backends() {
        let name = backend.name();
        let h = Harness::start(&backend).await;
        h.put_target(headline_target()).await;
        h.sighting(
            "cam",
            vehicle_sighting("sr-1", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        let task = h.wait_for("dispatch/cixi/tasks", 1, WAIT).await[0]
            .body
            .clone();
        let task_id = task["task_id"].as_str().unwrap().to_string();
        // The embedded broker takes payloads up to 1 MiB; Mosquitto takes the operator's 2 MB.
        let huge = match backend {
            Backend::Embedded => 1_000_000,
            Backend::External { .. } => 2_000_000,
        };
        let report = |field: &str, value: Value| {
            let mut r = json!({"task_id": task_id, "status": "acknowledged", "by": "cixi-07"});
            r[field] = value;
            r
        };
        let refused = [
            (report("note", json!("x".repeat(huge))), "bytes"),
            (report("note", json!("浙".repeat(2_001))), "`note`"),
            (report("by", json!("x".repeat(100_000))), "bytes"),
            (report("by", json!("x".repeat(201))), "`by`"),
            (report("at", json!("2099-01-01T00:00:00Z")), "`at`"),
            (report("at", json!("1970-01-01T00:00:00Z")), "`at`"),
        ];
        for (r, _) in &refused {
            h.publish("dispatch/cixi/status", r.to_string()).await;
        }
        let letters = h.wait_for("deadletter/status", refused.len(), WAIT).await;
        for (letter, (_, why)) in letters.iter().zip(&refused) {
            assert!(letter.raw.len() <= MAX_PACKET, "[{name}]");
            assert_eq!(letter.body["reason"], "invalid_report", "[{name}]");
            let detail = letter.body["detail"].as_str().unwrap();
            assert!(detail.contains(why), "[{name}] {detail} for {why}");
        }
        // Over HTTP: 400 with the reason.
        for (r, why) in refused.iter().skip(1) {
            let (status, body) = h
                .request(
                    reqwest::Method::POST,
                    &format!("/api/v1/tasks/{task_id}/status?court_id=cixi"),
                    Some(r.clone()),
                )
                .await;
            if *why == "bytes" {
                // Within the HTTP body limit and under the field limits' own check.
                assert_eq!(status, 400, "[{name}] {body}");
                assert!(body["detail"].as_str().unwrap().contains("`by`"), "{body}");
                continue;
            }
            assert_eq!(status, 400, "[{name}] {body}");
            assert_eq!(body["error"], "bad_request", "[{name}]");
            assert!(body["detail"].as_str().unwrap().contains(why), "{body}");
        }
        // Nothing changed.
        assert_eq!(
            h.settle_and_count("dispatch/cixi/updates", Duration::from_millis(500))
                .await,
            0,
            "[{name}]"
        );
        let (_, stored) = h.get(&format!("/api/v1/tasks/{task_id}")).await;
        assert_eq!(stored["status"], "dispatched", "[{name}] {stored}");
        // A sane report still works.
        let (status, body) = h
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/tasks/{task_id}/status?court_id=cixi"),
                Some(report("note", json!("浙".repeat(2_000)))),
            )
            .await;
        assert_eq!(status, 200, "[{name}] {body}");
        h.wait_for("dispatch/cixi/updates", 1, WAIT).await;
    }
}

/// A body over axum's limit (2 MB) is answered with the contract's JSON error, not plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_gets_a_json_413() {
    let h = Harness::start(&Backend::Embedded).await;
    let body = json!({"status": "acknowledged", "note": "x".repeat(2_200_000)}).to_string();
    let response = h
        .http_client()
        .post(format!("{}/api/v1/tasks/t-1/status", h.http))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 413);
    let json: Value = response.json().await.expect("a JSON body");
    assert_eq!(json["error"], "too_large", "{json}");
    assert!(json["detail"].is_string(), "{json}");
}

/// A case with a negative amount, or filed after today, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_cases_with_negative_amounts_or_future_filings_are_refused() {
    let h = Harness::start(&Backend::Embedded).await;
    let tomorrow_but_one = (chrono::Utc::now() + chrono::Duration::days(2)).date_naive();
    for (field, value, why) in [
        ("amount_cny", json!(-1), "amount_cny"),
        (
            "filed_on",
            json!(tomorrow_but_one.to_string()),
            "after today",
        ),
    ] {
        let mut target = headline_target();
        target["cases"][0][field] = value;
        let (status, body) = h.put_target(target).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(why), "{body}");
    }
    let (status, body) = h.put_target(headline_target()).await;
    assert_eq!(status, 201, "{body}");
}
