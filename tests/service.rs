//! The streaming service end to end: real broker, real database, MQTT and HTTP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use leadrelay::service::config::{BrokerChoice, parse_mqtt_url};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headline_story_yuyao_car_seen_in_cixi() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        let (status, _) = h.put_target(headline_target()).await;
        assert_eq!(status, 201, "[{}]", backend.name());
        h.sighting(
            "cixi-cam-0042",
            vehicle_sighting("ev-1", "cixi-cam-0042", "浙B·12345", CIXI.0, CIXI.1),
        )
        .await;

        let task = &h.wait_for("dispatch/cixi/tasks", 1, WAIT).await[0].body;
        assert_eq!(task["kind"], "vehicle_seizure");
        assert_eq!(task["target_id"], "T-2024-0001");
        assert_eq!(task["plate"], "浙B12345");
        assert_eq!(task["requesting_court_id"], "yuyao");
        assert_eq!(task["assisting_court_id"], "cixi");
        assert_eq!(task["routing"], "in_jurisdiction");
        assert_eq!(task["status"], "dispatched");
        assert_eq!(task["cases"][0]["case_no"], "(2024)浙0281执1234号");
        assert_eq!(task["sighting"]["event_id"], "ev-1");
        assert!(task["distance_km"].as_f64().unwrap() < 5.0);
        let alert = &h.wait_for("alerts/yuyao", 1, WAIT).await[0].body;
        assert_eq!(alert["kind"], "target_sighted");
        assert_eq!(alert["task_id"], task["task_id"]);
        assert_eq!(alert["assisting_court_id"], "cixi");

        // The task is in the API, and the metrics saw it.
        let task_id = task["task_id"].as_str().unwrap();
        let (status, stored) = h.get(&format!("/api/v1/tasks/{task_id}")).await;
        assert_eq!(status, 200);
        assert_eq!(stored["assisting_court_id"], "cixi");
        let (_, listed) = h.get("/api/v1/tasks?court_id=cixi&status=dispatched").await;
        assert_eq!(listed["count"], 1);
        let metrics = h.metrics().await;
        // Metrics are process-wide and tests run in parallel: at least this test's task.
        assert!(
            metric(
                &metrics,
                "leadrelay_tasks_dispatched_total{court=\"cixi\",routing=\"in_jurisdiction\"}"
            ) >= 1.0,
            "{metrics}"
        );
        assert!(
            metrics.contains("leadrelay_ingest_to_dispatch_seconds_bucket"),
            "{metrics}"
        );
        // The broker's PUBACK of the task timed the publish stage (it may come just after
        // the subscriber has the message).
        wait_for_metric(
            &h,
            "leadrelay_stage_seconds_count{stage=\"publish\"}",
            WAIT,
            |n| n >= 1.0,
        )
        .await;
        // The task's group commit timed each of its steps.
        for step in leadrelay::metrics::CommitStep::ALL.map(|s| s.as_str()) {
            assert!(
                metric(
                    &metrics,
                    &format!("leadrelay_commit_step_seconds_count{{step=\"{step}\"}}")
                ) >= 1.0,
                "{step}: {metrics}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plate_spellings_and_ocr_confusions_match_one_target() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        h.put_target(headline_target()).await;
        let spellings = [
            "浙B12345",
            "浙B·12345",
            "浙b 12345",
            "浙B-12345",
            "浙Ｂ１２３４５",
        ];
        for (i, plate) in spellings.iter().enumerate() {
            h.sighting(
                "cam",
                vehicle_sighting(&format!("sp-{i}"), "cam", plate, CIXI.0, CIXI.1),
            )
            .await;
        }
        // OCR read 5 → S: a fuzzy match with one substitution.
        h.sighting(
            "cam",
            vehicle_sighting("sp-fuzzy", "cam", "浙B1234S", CIXI.0, CIXI.1),
        )
        .await;
        h.wait_for("dispatch/cixi/tasks", 1, WAIT).await;
        let updates = h
            .wait_for("dispatch/cixi/updates", spellings.len(), WAIT)
            .await;
        assert!(updates.iter().all(|u| u.body["update"] == "sighting"));
        assert_eq!(
            h.settle_and_count("dispatch/cixi/tasks", Duration::from_millis(300))
                .await,
            1,
            "[{}]",
            backend.name()
        );
        // A plate that differs by a non-confusable character matches nothing.
        h.sighting(
            "cam",
            vehicle_sighting("sp-other", "cam", "浙B12346", CIXI.0, CIXI.1),
        )
        .await;
        assert_eq!(
            h.settle_and_count("dispatch/cixi/updates", Duration::from_millis(500))
                .await,
            spellings.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuzzy_first_read_says_so_in_the_task() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        h.put_target(headline_target()).await;
        h.sighting(
            "cam",
            vehicle_sighting("f-1", "cam", "浙B1234S", CIXI.0, CIXI.1),
        )
        .await;
        let task = &h.wait_for("dispatch/cixi/tasks", 1, WAIT).await[0].body;
        assert_eq!(task["fuzzy"], true);
        assert_eq!(task["substitutions"], 1);
        assert_eq!(task["read_plate"], "浙B1234S");
        assert_eq!(task["plate"], "浙B12345");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_has_one_effect_and_later_sightings_update() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        h.put_target(headline_target()).await;
        let first = vehicle_sighting("dup-1", "cixi-cam-1", "浙B12345", CIXI.0, CIXI.1);
        h.sighting("cixi-cam-1", first.clone()).await;
        h.wait_for("dispatch/cixi/tasks", 1, WAIT).await;
        // The same (source, event_id) again: nothing at all.
        h.sighting("cixi-cam-1", first).await;
        assert_eq!(
            h.settle_and_count("dispatch/cixi/updates", Duration::from_millis(500))
                .await,
            0
        );
        // A new sighting of the same target by another camera: an update to the open
        // task's holder, not a second task.
        h.sighting(
            "cixi-cam-9",
            vehicle_sighting("dup-2", "cixi-cam-9", "浙B12345", 30.18, 121.28),
        )
        .await;
        let update = &h.wait_for("dispatch/cixi/updates", 1, WAIT).await[0].body;
        assert_eq!(update["update"], "sighting");
        assert_eq!(update["sighting"]["event_id"], "dup-2");
        assert_eq!(
            h.settle_and_count("dispatch/cixi/tasks", Duration::from_millis(300))
                .await,
            1
        );
        assert_eq!(h.on("dispatch/cixi/tasks").len(), 1);
        let metrics = h.metrics().await;
        assert!(
            metrics.contains("leadrelay_sightings_duplicate_total"),
            "[{}]",
            backend.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_class_is_dead_lettered_and_changes_nothing() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        h.put_target(headline_target()).await;
        let good = vehicle_sighting("bad-0", "cam", "浙B12345", CIXI.0, CIXI.1);
        let with = |key: &str, value: Value| {
            let mut v = good.clone();
            v[key] = value;
            v.to_string().into_bytes()
        };
        let without = |key: &str| {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove(key);
            v.to_string().into_bytes()
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("not_json", b"{not json".to_vec()),
            ("wrong_type", with("lat", json!("thirty"))),
            ("missing_field", without("observed_at")),
            ("unknown_kind", with("kind", json!("bicycle"))),
            ("invalid_plate", with("plate", json!("B12345"))),
            ("invalid_person_id", {
                let mut v = good.clone();
                v["kind"] = json!("person");
                v["person_id"] = json!("110105194912310021");
                v.to_string().into_bytes()
            }),
            ("invalid_coordinates", with("lat", json!(95.0))),
            (
                "invalid_time",
                with("observed_at", json!("2024-12-03T10:15:00")),
            ),
            (
                "future_time",
                with(
                    "observed_at",
                    json!((chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339()),
                ),
            ),
            ("too_large", {
                let mut v = good.clone();
                v["padding"] = json!("x".repeat(70 * 1024));
                v.to_string().into_bytes()
            }),
            // A camera's clock reset to 1970, and one a week behind: no lead for a live task.
            (
                "stale_time",
                with("observed_at", json!("1970-01-01T00:00:00Z")),
            ),
            (
                "stale_time",
                with(
                    "observed_at",
                    json!((chrono::Utc::now() - chrono::Duration::days(7)).to_rfc3339()),
                ),
            ),
            // Published on `sightings/cam` but claiming to be another camera.
            ("source_mismatch", with("source", json!("cam-next-door"))),
            // The flagged plate with a GPS fix of (0, 0): 12,965 km from the nearest center.
            ("out_of_area", {
                let mut v = good.clone();
                v["lat"] = json!(0.0);
                v["lon"] = json!(0.0);
                v.to_string().into_bytes()
            }),
        ];
        for (i, (_, payload)) in cases.iter().enumerate() {
            let mut payload = payload.clone();
            // Give each its own event id where it is still JSON, so none is a duplicate.
            if let Ok(mut v) = serde_json::from_slice::<Value>(&payload) {
                v["event_id"] = json!(format!("bad-{i}"));
                payload = v.to_string().into_bytes();
            }
            h.publish("sightings/cam", payload).await;
        }
        let letters = h.wait_for("deadletter/sightings", cases.len(), WAIT).await;
        for (reason, payload) in &cases {
            let letter = letters
                .iter()
                .find(|l| l.body["reason"] == *reason)
                .unwrap_or_else(|| {
                    panic!(
                        "[{}] no dead letter with reason {reason}: {letters:#?}",
                        backend.name()
                    )
                });
            assert!(!letter.body["detail"].as_str().unwrap_or("").is_empty());
            assert_eq!(letter.body["topic"], h.topic("sightings/cam"));
            if *reason == "not_json" {
                assert_eq!(
                    letter.body["payload"].as_str().unwrap().as_bytes(),
                    payload.as_slice()
                );
            }
        }
        // Non-UTF-8 bytes survive losslessly as base64.
        h.publish("sightings/cam", vec![0xff, 0xfe, 0x00, 0x41])
            .await;
        let letters = h
            .wait_for("deadletter/sightings", cases.len() + 1, WAIT)
            .await;
        assert!(
            letters
                .iter()
                .any(|l| l.body["payload_base64"] == "//4AQQ==")
        );
        // Nothing reached the command centers, and the service is still alive.
        assert!(h.on("dispatch/cixi/tasks").is_empty());
        let metrics = h.metrics().await;
        assert!(
            metric(
                &metrics,
                "leadrelay_sightings_rejected_total{reason=\"invalid_plate\"}"
            ) >= 1.0,
            "{metrics}"
        );
        h.sighting("cam", good).await;
        h.wait_for("dispatch/cixi/tasks", 1, WAIT).await;
    }
}

/// A burst of bad input: the ingest connection writes its dead letters between the acks of
/// the same batches, many per flush. Each is dead-lettered exactly once, and a good sighting
/// after them still becomes its task. (600 stays under Mosquitto's default queue of 1,000
/// messages per client, so the broker drops none.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_bad_input_gives_one_dead_letter_each() {
    const BAD: usize = 600;
    for backend in backends() {
        let h = Harness::start(&backend).await;
        h.put_target(headline_target()).await;
        for i in 0..BAD {
            let bad = vehicle_sighting(&format!("burst-{i}"), "cam", "B12345", CIXI.0, CIXI.1);
            h.publish("sightings/cam", bad.to_string()).await;
        }
        h.sighting(
            "cam",
            vehicle_sighting("burst-good", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        h.wait_for("dispatch/cixi/tasks", 1, WAIT).await;
        let letters = h.wait_for("deadletter/sightings", BAD, WAIT).await;
        let ids: std::collections::HashSet<String> = letters
            .iter()
            .map(|l| {
                let original: Value = serde_json::from_str(l.body["payload"].as_str().unwrap())
                    .expect("the original payload, as text");
                original["event_id"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            (letters.len(), ids.len()),
            (BAD, BAD),
            "[{}] one dead letter per bad sighting",
            backend.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_move_the_task_and_refusals_change_nothing() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        h.put_target(headline_target()).await;
        h.sighting(
            "cam",
            vehicle_sighting("st-1", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        let task = h.wait_for("dispatch/cixi/tasks", 1, WAIT).await[0]
            .body
            .clone();
        let task_id = task["task_id"].as_str().unwrap().to_string();
        let report = |status: &str| {
            json!({"task_id": task_id, "status": status, "by": "cixi-officer-07", "note": "n"})
                .to_string()
        };

        // Another court cannot report on Cixi's task.
        h.publish("dispatch/yuyao/status", report("acknowledged"))
            .await;
        let refused = &h.wait_for("deadletter/status", 1, WAIT).await[0].body;
        assert!(
            refused["detail"].as_str().unwrap().contains("cixi"),
            "{refused}"
        );
        // Cixi acknowledges, sets out, seizes.
        h.publish("dispatch/cixi/status", report("acknowledged"))
            .await;
        h.publish("dispatch/cixi/status", report("en_route")).await;
        let updates = h.wait_for("dispatch/cixi/updates", 2, WAIT).await;
        assert_eq!(updates[0].body["status"], "acknowledged");
        assert_eq!(updates[1].body["status"], "en_route");
        // Backwards is refused.
        h.publish("dispatch/cixi/status", report("acknowledged"))
            .await;
        h.wait_for("deadletter/status", 2, WAIT).await;
        // Seized over HTTP (clients without MQTT).
        let (status, seized) = h
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/tasks/{task_id}/status?court_id=cixi"),
                Some(json!({"status": "seized", "by": "cixi-officer-07", "note": "impound lot"})),
            )
            .await;
        assert_eq!(status, 200, "{seized}");
        assert_eq!(seized["status"], "seized");
        // Seized after seized: refused, 409.
        let (status, _) = h
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/tasks/{task_id}/status"),
                Some(json!({"status": "not_found", "by": "x"})),
            )
            .await;
        assert_eq!(status, 409);
        // Yuyao hears of every change.
        let alerts = h.wait_for("alerts/yuyao", 4, WAIT).await;
        assert!(
            alerts
                .iter()
                .any(|a| a.body["kind"] == "task_status" && a.body["status"] == "seized")
        );
        // The target is seized: no more tasks for it.
        let (_, target) = h.get("/api/v1/targets/T-2024-0001?purpose=test").await;
        assert_eq!(target["status"], "seized");
        // Real time: a housekeeping refresh (a 1 s poll of the database) must not bring the
        // seized target back.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        h.sighting(
            "cam",
            vehicle_sighting("st-2", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        assert_eq!(
            h.settle_and_count("dispatch/cixi/tasks", Duration::from_millis(700))
                .await,
            1
        );
        // History records who did what.
        let (_, stored) = h.get(&format!("/api/v1/tasks/{task_id}")).await;
        let history = stored["history"].as_array().unwrap();
        assert!(
            history
                .iter()
                .any(|e| e["status"] == "seized" && e["by"] == "cixi-officer-07"),
            "{stored}"
        );
        let metrics = h.metrics().await;
        assert!(
            metric(
                &metrics,
                "leadrelay_dispatch_to_ack_seconds_count{court=\"cixi\"}"
            ) >= 1.0,
            "{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_committed_but_not_published_is_published_once_after_restart() {
    use leadrelay::contract::task::Topics;
    use leadrelay::dispatch::policy::{Deadlines, MatchedSighting};
    use leadrelay::geo::geodata::GeoData;
    use leadrelay::geo::locate::JurisdictionIndex;
    use leadrelay::store::Store;
    for backend in backends() {
        let mut h = Harness::start(&backend).await;
        h.put_target(headline_target()).await;
        h.stop().await;
        // The state a crash leaves between the commit and the PUBACK: the task and its
        // outbox rows are in the database, nothing was published.
        let store = Store::connect(&h.config.database_url).await.unwrap();
        let index = JurisdictionIndex::new(Arc::new(GeoData::shipped())).unwrap();
        let target = store.get_target("T-2024-0001").await.unwrap().unwrap();
        let sighting: leadrelay::contract::model::Sighting = serde_json::from_value(json!({
            "event_id": "crash-1", "kind": "vehicle", "plate": "浙B12345", "lat": CIXI.0, "lon": CIXI.1,
            "datum": "wgs84", "observed_at": chrono::Utc::now(), "source": "cam"
        }))
        .unwrap();
        let location = index.locate(sighting.lon, sighting.lat);
        let route = leadrelay::dispatch::route::decide(
            &target,
            leadrelay::contract::model::TaskKind::VehicleSeizure,
            &index,
            &location,
            sighting.lon,
            sighting.lat,
        )
        .unwrap();
        let matched = MatchedSighting {
            sighting,
            target_id: target.target_id.clone(),
            cases: target.cases.clone(),
            route,
            read_plate: None,
            fuzzy: false,
            substitutions: 0,
        };
        let deadlines = Deadlines::default();
        store
            .record_matches(
                &[matched],
                &deadlines,
                &Default::default(),
                &Topics::new(&h.prefix),
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        assert_eq!(store.outbox_pending_count().await.unwrap(), 2);
        assert!(h.on("dispatch/cixi/tasks").is_empty());

        h.restart().await;
        h.wait_for("dispatch/cixi/tasks", 1, WAIT).await;
        h.wait_for("alerts/yuyao", 1, WAIT).await;
        // Exactly once: nothing more arrives, and the outbox is empty.
        assert_eq!(
            h.settle_and_count("dispatch/cixi/tasks", Duration::from_secs(2))
                .await,
            1,
            "[{}]",
            backend.name()
        );
        assert_eq!(h.on("alerts/yuyao").len(), 1);
        let deadline = std::time::Instant::now() + WAIT;
        while store.outbox_pending_count().await.unwrap() != 0 {
            assert!(std::time::Instant::now() < deadline, "outbox not drained");
            // Polling the real publisher's progress.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_mid_stream_loses_no_accepted_sighting() {
    for backend in backends() {
        // The service reaches the broker through a proxy that we cut: to the service that is
        // a broker restart. The camera keeps publishing to the broker directly.
        let (h, proxy) = behind_proxy(&backend).await;
        const N: usize = 60;
        flag_cars(&h, N, 10_000).await;
        for i in 0..N {
            car_seen_in_cixi(&h, &format!("o-{i}"), 10_000 + i).await;
            if i == N / 3 {
                proxy.outage(Duration::from_millis(1500)).await;
            }
            // Spreads the stream over real time, so the outage falls in its middle.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        every_car_has_one_task_in_cixi(&h, N, Duration::from_secs(30)).await;
    }
}

/// Nothing accepted is lost while the database is away, and nothing is done twice. Sightings
/// keep arriving meanwhile. PostgreSQL is reached through a proxy that the test cuts (to the
/// service, a database restart); SQLite's write lock is held by another connection for longer
/// than the service's busy timeout (5 s), so group commits fail and are retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_mid_stream_loses_no_accepted_sighting() {
    use sqlx::Connection as _;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = base_config(&backend, dir.path()).await;
        let database_url = config.database_url.clone();
        let proxy = match backend {
            Backend::Embedded => None,
            Backend::External { .. } => {
                let (url, proxy) = database_behind_proxy(&database_url).await;
                config.database_url = url;
                Some(proxy)
            }
        };
        let h = Harness::start_config(&backend, config, dir, None).await;
        const N: usize = 60;
        flag_cars(&h, N, 20_000).await;
        let mut outage = None;
        for i in 0..N {
            if i == N / 4 {
                outage = Some(match proxy.as_ref() {
                    Some(proxy) => {
                        // First a server that hangs: readiness must say so, not hang with it
                        // (the pool would wait for a connection for 30 s).
                        proxy.stall();
                        let asked = std::time::Instant::now();
                        let (status, body) = h.get("/readyz").await;
                        assert_eq!((status, &body["database"]), (503, &json!(false)), "{body}");
                        assert!(asked.elapsed() < Duration::from_secs(5));
                        // The API answers 503 (retry later) once its wait for a connection
                        // runs out, neither hanging for long nor calling it an internal error.
                        let asked = std::time::Instant::now();
                        let (status, body) = h.get("/api/v1/tasks?court_id=cixi").await;
                        assert_eq!(
                            (status, &body["error"]),
                            (503, &json!("unavailable")),
                            "{body}"
                        );
                        assert!(asked.elapsed() < Duration::from_secs(10));
                        // Then one that is gone.
                        proxy.cut_off();
                        // A real outage of the database, this long.
                        tokio::spawn(tokio::time::sleep(Duration::from_millis(2000)))
                    }
                    None => {
                        let mut locker = sqlx::SqliteConnection::connect(&database_url)
                            .await
                            .unwrap();
                        sqlx::raw_sql("BEGIN IMMEDIATE")
                            .execute(&mut locker)
                            .await
                            .unwrap();
                        tokio::spawn(async move {
                            // The database stays locked for this long of real time.
                            tokio::time::sleep(Duration::from_secs(7)).await;
                            sqlx::raw_sql("ROLLBACK")
                                .execute(&mut locker)
                                .await
                                .unwrap();
                        })
                    }
                });
            }
            car_seen_in_cixi(&h, &format!("d-{i}"), 20_000 + i).await;
            // Spreads the stream over real time, so sightings keep arriving during the outage.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        outage.expect("the outage started").await.unwrap();
        if let Some(proxy) = &proxy {
            proxy.restore();
        }
        every_car_has_one_task_in_cixi(&h, N, Duration::from_secs(40)).await;
        // The outage was seen, not slept through: commits failed and were retried.
        let retries = metric(
            &h.metrics().await,
            "leadrelay_store_retries_total{what=\"group_commit\"}",
        );
        assert!(
            retries >= 1.0,
            "[{}] no group commit failed during the outage",
            backend.name()
        );
        // Every acknowledged message leaves the outbox once the database is back, so a
        // restart publishes none of them again.
        wait_for_metric(
            &h,
            "leadrelay_outbox_pending ",
            Duration::from_secs(20),
            |n| n == 0.0,
        )
        .await;
    }
}

/// Waits up to `within` for Cixi's command center to have a task for each of the `n` cars,
/// then checks the database holds exactly one per car. Delivery is at least once: after an
/// outage the publisher may send a task again, so distinct targets are counted.
async fn every_car_has_one_task_in_cixi(h: &Harness, n: usize, within: Duration) {
    let distinct = || {
        let mut targets: Vec<String> = h
            .on("dispatch/cixi/tasks")
            .iter()
            .map(|t| t.body["target_id"].as_str().unwrap_or("").to_string())
            .collect();
        targets.sort();
        targets.dedup();
        targets.len()
    };
    let deadline = std::time::Instant::now() + within;
    while distinct() < n && std::time::Instant::now() < deadline {
        // Polling the watcher's record of the broker's messages.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let backend = h.backend.name();
    assert_eq!(distinct(), n, "[{backend}] every sighting became a task");
    let (_, listed) = h.get("/api/v1/tasks?court_id=cixi&limit=1000").await;
    assert_eq!(
        listed["count"], n,
        "[{backend}] one task per target in the database"
    );
}

/// `leadrelay_database_up` follows the database on its own, every second, whether or not
/// anything probes `/readyz`: 0 while PostgreSQL hangs or is gone, 1 once it is back. And
/// `/metrics` stays readable meanwhile for a scraper whose token the database accepted
/// before (tokens are checked there), promptly; a token it never checked is refused. (SQLite
/// has no server to lose; a locked file still answers the ping.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_gauge_falls_while_the_database_is_away() {
    for backend in backends() {
        let Backend::External { .. } = backend else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut config = base_config(&backend, dir.path()).await;
        let (url, proxy) = database_behind_proxy(&config.database_url).await;
        config.database_url = url;
        let h = Harness::start_config(&backend, config, dir, None).await;
        let scraper = h.token(&unique("scraper "), "ops").await;
        let stranger = h.token(&unique("never scraped "), "ops").await;
        let database_up = |h: &Harness, token: String| {
            let (http, series) = (h.http.clone(), "leadrelay_database_up");
            async move {
                let asked = std::time::Instant::now();
                let response = reqwest::Client::new()
                    .get(format!("{http}/metrics"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("an answer");
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                let value = (status == 200).then(|| metric(&text, series));
                (status, value, asked.elapsed())
            }
        };
        let until = |wanted: f64| {
            let (h, scraper) = (&h, scraper.clone());
            async move {
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                loop {
                    let (status, value, took) = database_up(h, scraper.clone()).await;
                    assert!(took < Duration::from_secs(4), "a scrape took {took:?}");
                    if value == Some(wanted) {
                        return;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{status}, database_up {value:?}, waiting for {wanted}"
                    );
                    // Polling a gauge the service refreshes every second.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        until(1.0).await;
        proxy.stall();
        until(0.0).await;
        assert_eq!(database_up(&h, stranger.clone()).await.0, 503);
        proxy.cut_off();
        until(0.0).await;
        proxy.restore();
        until(1.0).await;
        assert_eq!(database_up(&h, stranger).await.1, Some(1.0));
    }
}

/// `url` (PostgreSQL) rewritten to reach its server through a [`Proxy`].
async fn database_behind_proxy(url: &str) -> (String, Proxy) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (format!("{user}@"), host_port),
        None => (String::new(), authority),
    };
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    };
    let upstream = tokio::net::lookup_host(host_port.as_str())
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let url = format!("{scheme}://{user}127.0.0.1:{}{tail}", proxy.addr.port());
    // In clear: the proxy freezes a connection on the bytes it carries, which TLS (sqlx's
    // default `prefer`, and the server offers it) would hide.
    let sep = if url.contains('?') { '&' } else { '?' };
    (format!("{url}{sep}sslmode=disable"), proxy)
}

/// A database connection that goes half-open in the middle of a group commit (the network
/// drops everything, no reset reaches either end: the server sits idle in a transaction that
/// holds locks on `processed_events`, the service waits for an answer) stalls ingest only
/// for a while: the commit is abandoned at the operation timeout and retried on a fresh
/// connection once the server has ended the dead session, `/readyz` says the pipeline is
/// stuck meanwhile, and every flagged car gets exactly one task. PostgreSQL only: SQLite
/// has no socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_database_connection_stalls_ingest_only_for_a_while() {
    for backend in backends() {
        if let Backend::Embedded = backend {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut config = base_config(&backend, dir.path()).await;
        let (url, proxy) = database_behind_proxy(&config.database_url).await;
        config.database_url = url;
        // Bounds short enough for a test of seconds.
        config.db_limits.operation_timeout = Duration::from_secs(2);
        config.db_limits.idle_in_transaction_timeout = Duration::from_secs(5);
        config.max_unacked_age = Duration::from_secs(1);
        let h = Harness::start_config(&backend, config, dir, None).await;
        let started = std::time::Instant::now();
        const N: usize = 40;
        flag_cars(&h, N, 30_000).await;
        // The group commit that binds this event id freezes every connection of the moment.
        proxy.freeze_on(b"half-open-10");
        for i in 0..N {
            car_seen_in_cixi(&h, &format!("half-open-{i}"), 30_000 + i).await;
            // Spreads the stream over real time, so sightings keep arriving after the freeze.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // On a loaded machine the pipeline may still be behind the publisher.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !proxy.has_frozen() {
            assert!(
                std::time::Instant::now() < deadline,
                "no group commit bound the event id"
            );
            // Polling the proxy for the frozen connection.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Readiness sees the stuck pipeline, whatever a fresh connection to the database says.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = h.get("/readyz").await;
            if status == 503 && body["pipeline"] == json!(false) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "/readyz never reported the stuck pipeline: {status} {body}"
            );
            // Polling a real server's readiness.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        every_car_has_one_task_in_cixi(&h, N, Duration::from_secs(40)).await;
        let retries = metric(
            &h.metrics().await,
            "leadrelay_store_retries_total{what=\"group_commit\"}",
        );
        assert!(retries >= 1.0, "the stuck group commit was never abandoned");
        // Ready again once the frozen connections are weeded out of the pool.
        h.wait_ready().await;
        let exposition = h.metrics().await;
        assert!(
            exposition.contains("leadrelay_oldest_unacked_seconds "),
            "{exposition}"
        );
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}

/// A crash (SIGKILL) mid-stream loses nothing and does nothing twice: the broker keeps the
/// service's session and redelivers what was not acked, the outbox publishes what was
/// committed but not published, and the processed event ids absorb the rest. Needs the
/// external broker: an embedded one dies with the process, and what it queued with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_loses_nothing_after_restart() {
    let Some(Backend::External {
        mqtt_url,
        database_url,
    }) = backends()
        .into_iter()
        .find(|b| matches!(b, Backend::External { .. }))
    else {
        eprintln!("no external broker configured: the crash test is skipped");
        return;
    };
    let BrokerChoice::External { host, port } = parse_mqtt_url(&mqtt_url).unwrap() else {
        panic!("LEADRELAY_TEST_MQTT_URL names an external broker");
    };
    let broker = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let databases = [
        format!("sqlite://{}", dir.path().join("crash.db").display()),
        leadrelay::store::isolated_postgres_url(&database_url)
            .await
            .unwrap(),
    ];
    for database in databases {
        let prefix = format!("{}/", unique("crash"));
        let client_id = unique("lr-crash-");
        let (client, seen, _watcher) = watch(broker, &prefix).await;
        let start = || ServeProcess::start(&mqtt_url, &database, &client_id, &prefix, dir.path());
        let mut service = start().await;
        const N: usize = 300;
        let targets: Vec<Value> = (0..N)
            .map(|i| vehicle_target(&format!("K-{i}"), &format!("浙B{:05}", 30_000 + i), "yuyao"))
            .collect();
        service.load_targets(&targets).await;
        let publish = |i: usize| {
            let body = vehicle_sighting(
                &format!("k-{i}"),
                "cam",
                &format!("浙B{:05}", 30_000 + i),
                CIXI.0,
                CIXI.1,
            );
            let client = client.clone();
            let topic = format!("{prefix}sightings/cam");
            async move {
                client
                    .publish(topic, rumqttc::QoS::AtLeastOnce, false, body.to_string())
                    .await
                    .unwrap();
            }
        };
        let distinct = || {
            let mut ids: Vec<String> = seen
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.topic == "dispatch/cixi/tasks")
                .map(|s| s.body["target_id"].as_str().unwrap_or("").to_string())
                .collect();
            ids.sort();
            ids.dedup();
            ids.len()
        };
        // A third while it runs; once tasks flow, a second third and the kill right after,
        // while those are in flight; the last third while it is down.
        for i in 0..N / 3 {
            publish(i).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while distinct() == 0 && std::time::Instant::now() < deadline {
            // Polling for the first task of a real child process.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for i in N / 3..2 * N / 3 {
            publish(i).await;
        }
        service.kill();
        let before_restart = distinct();
        for i in 2 * N / 3..N {
            publish(i).await;
        }
        let service = start().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while distinct() < N && std::time::Instant::now() < deadline {
            // Polling the watcher's record of the broker's messages.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            (1..N).contains(&before_restart),
            "[{database}] the kill came mid-stream ({before_restart} of {N} tasks out)"
        );
        assert_eq!(distinct(), N, "[{database}] every sighting became a task");
        let listed: Value = service
            .client
            .get(format!(
                "{}/api/v1/tasks?court_id=cixi&limit=1000",
                service.http
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["count"], N, "[{database}] one task per target");
    }
}

/// While the broker is away the outbox gauge shows what waits to be published (housekeeping
/// reads it, since acknowledgements stop with the broker), and after it is back, zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_gauge_shows_the_backlog_during_a_broker_outage() {
    for backend in backends() {
        let (h, proxy) = behind_proxy(&backend).await;
        h.put_target(headline_target()).await;
        h.sighting(
            "cam",
            vehicle_sighting("g-1", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        h.wait_for("dispatch/cixi/tasks", 1, WAIT).await;
        wait_for_metric(&h, "leadrelay_outbox_pending ", WAIT, |n| n == 0.0).await;

        proxy.cut_off();
        // Withdrawing the target cancels its task: an update and an alert to publish.
        let (status, body) = h
            .request(reqwest::Method::DELETE, "/api/v1/targets/T-2024-0001", None)
            .await;
        assert_eq!(status, 200, "{body}");
        wait_for_metric(&h, "leadrelay_outbox_pending ", WAIT, |n| n >= 2.0).await;

        proxy.restore();
        let update = &h.wait_for("dispatch/cixi/updates", 1, WAIT).await[0].body;
        assert_eq!(update["status"], "cancelled", "[{}]", backend.name());
        wait_for_metric(&h, "leadrelay_outbox_pending ", WAIT, |n| n == 0.0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_plates_never_reach_the_database_file() {
    let backend = Backend::Embedded;
    let mut h = Harness::start(&backend).await;
    h.put_target(headline_target()).await;
    let unflagged: Vec<String> = (0..200).map(|i| format!("浙B{:05}", 50_000 + i)).collect();
    for (i, plate) in unflagged.iter().enumerate() {
        h.sighting(
            "cam",
            vehicle_sighting(&format!("u-{i}"), "cam", plate, CIXI.0, CIXI.1),
        )
        .await;
    }
    // One matched sighting after them proves the stream was processed.
    h.sighting(
        "cam",
        vehicle_sighting("u-hit", "cam", "浙B12345", CIXI.0, CIXI.1),
    )
    .await;
    h.wait_for("dispatch/cixi/tasks", 1, WAIT).await;
    h.stop().await;
    let mut bytes = Vec::new();
    // The database, and its WAL and shared-memory files while they exist (SQLite removes
    // them as the last connection closes, so one may vanish between listing and reading).
    for entry in std::fs::read_dir(h.dir.path()).unwrap() {
        if let Ok(content) = std::fs::read(entry.unwrap().path()) {
            bytes.extend(content);
        }
    }
    let haystack = String::from_utf8_lossy(&bytes);
    assert!(haystack.contains("浙B12345"), "the matched plate is stored");
    for plate in &unflagged {
        assert!(
            !haystack.contains(plate.as_str()),
            "unmatched plate {plate} found in the database files"
        );
        assert!(
            !haystack.contains(&plate[3..]),
            "unmatched plate tail {plate} found in the database files"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_validates_and_withdraws() {
    let backend = Backend::Embedded;
    let h = Harness::start(&backend).await;
    let (status, body) = h
        .put_target(json!({"target_id": "T-x", "kind": "vehicle", "plate": "B123", "cases": []}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_request");
    let (status, body) = h
        .put_target(vehicle_target("T-y", "浙B22222", "atlantis"))
        .await;
    assert_eq!(
        (
            status,
            body["detail"].as_str().unwrap().contains("atlantis")
        ),
        (400, true)
    );
    let (status, _) = h.get("/api/v1/targets/T-none?purpose=test").await;
    assert_eq!(status, 404);
    assert_eq!(h.get("/healthz").await.0, 200);
    let (status, courts) = h.get("/api/v1/courts").await;
    assert_eq!(status, 200);
    assert!(
        courts["courts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["court_id"] == "cixi")
    );

    // Withdrawing a target cancels its open task and stops matching.
    h.put_target(headline_target()).await;
    h.sighting(
        "cam",
        vehicle_sighting("w-1", "cam", "浙B12345", CIXI.0, CIXI.1),
    )
    .await;
    h.wait_for("dispatch/cixi/tasks", 1, WAIT).await;
    let (status, body) = h
        .request(reqwest::Method::DELETE, "/api/v1/targets/T-2024-0001", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cancelled_tasks"], 1);
    let update = &h.wait_for("dispatch/cixi/updates", 1, WAIT).await[0].body;
    assert_eq!(update["status"], "cancelled");
    h.sighting(
        "cam",
        vehicle_sighting("w-2", "cam", "浙B12345", CIXI.0, CIXI.1),
    )
    .await;
    assert_eq!(
        h.settle_and_count("dispatch/cixi/tasks", Duration::from_millis(500))
            .await,
        1
    );
    assert_eq!(h.on("dispatch/cixi/updates").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_flushes_the_outbox() {
    for backend in backends() {
        let mut h = Harness::start(&backend).await;
        let targets: Vec<Value> = (0..30)
            .map(|i| vehicle_target(&format!("G-{i}"), &format!("浙B{:05}", 20_000 + i), "cixi"))
            .collect();
        h.request(
            reqwest::Method::POST,
            "/api/v1/targets:batch",
            Some(Value::Array(targets)),
        )
        .await;
        for i in 0..30 {
            h.sighting(
                "cam",
                vehicle_sighting(
                    &format!("g-{i}"),
                    "cam",
                    &format!("浙B{:05}", 20_000 + i),
                    YUYAO.0,
                    YUYAO.1,
                ),
            )
            .await;
        }
        h.wait_for("dispatch/yuyao/tasks", 30, WAIT).await;
        h.stop().await;
        let store = leadrelay::store::Store::connect(&h.config.database_url)
            .await
            .unwrap();
        assert_eq!(
            store.outbox_pending_count().await.unwrap(),
            0,
            "[{}]",
            backend.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_stream_and_one_database() {
    for backend in backends() {
        let h1 = Harness::start_with(&backend, |c| c.share_group = Some("replicas".into())).await;
        // The second replica: same broker, database and topics; its own client id and port.
        let mut config = h1.config.clone();
        config.client_id = format!("{}-b", config.client_id);
        let h2 = Harness::start_config(&backend, config, tempfile::tempdir().unwrap(), None).await;
        const N: usize = 40;
        flag_cars(&h1, N, 30_000).await;
        // Replica 2 learns of the targets from the database.
        let learned = h2.running.as_ref().unwrap().targets.clone();
        let deadline = std::time::Instant::now() + WAIT;
        while learned.len() < N {
            assert!(
                std::time::Instant::now() < deadline,
                "replica 2 has {} targets",
                learned.len()
            );
            // Polling replica 2's hotlist, which its housekeeping refreshes once a second.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for i in 0..N {
            let plate = format!("浙B{:05}", 30_000 + i);
            h1.sighting(
                "cam",
                vehicle_sighting(&format!("r-{i}"), "cam", &plate, CIXI.0, CIXI.1),
            )
            .await;
            // Each target seen twice: the second sighting is an update, whichever replica gets it.
            h1.sighting(
                "cam2",
                vehicle_sighting(&format!("r2-{i}"), "cam2", &plate, CIXI.0, CIXI.1),
            )
            .await;
        }
        h1.wait_for("dispatch/cixi/updates", N, Duration::from_secs(20))
            .await;
        let tasks = h1
            .wait_for("dispatch/cixi/tasks", N, Duration::from_secs(20))
            .await;
        let mut ids: Vec<&str> = tasks
            .iter()
            .map(|t| t.body["target_id"].as_str().unwrap())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), N, "[{}]", backend.name());
        assert_eq!(
            h1.settle_and_count("dispatch/cixi/tasks", Duration::from_millis(800))
                .await,
            N,
            "one task per target across replicas"
        );
        let (_, listed) = h2.get("/api/v1/tasks?court_id=cixi&limit=1000").await;
        assert_eq!(listed["count"], N);
    }
}

/// `leadrelay simulate` as its command line takes it.
#[derive(clap::Parser)]
struct SimulateCommand {
    #[command(flatten)]
    args: leadrelay::tools::simulate::SimulateArgs,
}

/// The load generator against the real service and broker: on a small run with every kind of
/// input, each of its checks holds (every hit one task or update, duplicates nothing,
/// malformed one dead letter each, nothing extra). Then its two baselines through the same
/// broker: the plain one, and the relay standing in for leadrelay. Last, the binary itself as
/// `benches/e2e.sh` runs it for (d), on its one-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_checks_hold_against_the_service_and_its_baselines() {
    use clap::Parser;
    for backend in backends() {
        let h = Harness::start(&backend).await;
        let mqtt = format!("mqtt://{}", h.broker_addr);
        let run = |extra: &[&str]| {
            let common = [
                "simulate",
                "--mqtt-url",
                &mqtt,
                "--topic-prefix",
                &h.prefix,
                "--count",
                "2000",
                // Mosquitto's default keeps at most 1,000 messages queued for the service and
                // drops the rest (README.md on the broker's settings); stay well below.
                "--window",
                "50",
                "--json",
            ];
            let command = SimulateCommand::parse_from(common.iter().chain(extra));
            leadrelay::tools::simulate::run(command.args)
        };
        let service = [
            "--http",
            h.http.as_str(),
            "--token",
            h.token.as_str(),
            "--hit-ratio",
            "0.2",
            "--duplicate-ratio",
            "0.05",
            "--malformed-ratio",
            "0.05",
            "--outside-ratio",
            "0.05",
        ];
        for (what, extra) in [
            ("through leadrelay", &service[..]),
            ("raw baseline", &["--baseline"][..]),
            ("relay baseline", &["--baseline", "--relay"][..]),
        ] {
            assert!(
                run(extra).await.unwrap(),
                "[{}] {what}: a check failed (report above)",
                backend.name()
            );
        }
        // The binary as benches/e2e.sh runs (d): every sighting a new task, closed loop, the
        // generator on its one-thread runtime (`--threads 1`).
        let args = [
            "simulate",
            "--mqtt-url",
            &mqtt,
            "--topic-prefix",
            &h.prefix,
            "--http",
            &h.http,
            "--token",
            &h.token,
            "--unique-hits",
            "--hit-ratio",
            "1",
            "--fuzzy-ratio",
            "0",
            "--targets",
            "500",
            "--count",
            "500",
            "--seed",
            "7",
            "--window",
            "50",
            "--threads",
            "1",
            "--json",
        ]
        .map(String::from);
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_leadrelay"))
                .args(args)
                .output()
                .expect("the binary runs")
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "[{}] {stderr}", backend.name());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ok"], true, "[{}] {report}", backend.name());
        // The 500 sightings and the run's closing sentinel, each a new task.
        assert_eq!(
            report["tasks"]["received"],
            501,
            "[{}] {report}",
            backend.name()
        );
    }
}

/// PostgreSQL going away while the service runs: sqlx retries the refused connections until
/// its pool times out and then says only that; the store's error names the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_went_away_is_named_unreachable_and_refused() {
    let Ok(base) = std::env::var("LEADRELAY_TEST_DATABASE_URL") else {
        eprintln!("LEADRELAY_TEST_DATABASE_URL not set: skipped");
        return;
    };
    let isolated = leadrelay::store::isolated_postgres_url(&base)
        .await
        .unwrap();
    let mut url = url::Url::parse(&isolated).unwrap();
    let upstream = tokio::net::lookup_host((
        url.host_str().unwrap().to_string(),
        url.port().unwrap_or(5432),
    ))
    .await
    .unwrap()
    .next()
    .unwrap();
    // A forwarder that is the database's address here; aborting it closes its port and
    // every connection through it (the JoinSet aborts them when dropped).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let forwarder = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(port)).unwrap();
    let store = leadrelay::store::Store::connect(url.as_str())
        .await
        .unwrap();
    assert_eq!(
        store.bounded(store.outbox_pending_count()).await.unwrap(),
        0
    );

    forwarder.abort();
    let _ = forwarder.await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the port still answers"
    );
    let error = store
        .bounded(store.outbox_pending_count())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(error.is_retryable(), "{text}");
    assert!(text.starts_with("database unreachable"), "{text}");
    assert_eq!(
        text.to_lowercase().matches("connection refused").count(),
        1,
        "{text}"
    );
}
