//! The enforcement workflow end to end (real broker, real database): deadlines and
//! escalation, outcomes, related cases, locate requests, sweeps, expiry, border jitter.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn report(task_id: &str, status: &str) -> String {
    json!({"task_id": task_id, "status": status, "by": "officer-07", "note": format!("{status} note")}).to_string()
}

async fn first_task(h: &Harness, court: &str) -> Value {
    h.wait_for(&format!("dispatch/{court}/tasks"), 1, WAIT)
        .await[0]
        .body
        .clone()
}

/// Two points ~300 m either side of the Yuyao–Cixi line (WGS-84), found with the library.
fn border_points() -> ((f64, f64), (f64, f64)) {
    use leadrelay::geo::geodata::GeoData;
    use leadrelay::geo::locate::JurisdictionIndex;
    let ix = JurisdictionIndex::new(Arc::new(GeoData::shipped())).unwrap();
    let court = |lat: f64, lon: f64| {
        ix.containing_court(lon, lat)
            .map(|c| ix.court(c).court_id.clone())
    };
    let (a, b) = (YUYAO, CIXI);
    let at = |t: f64| (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
    let (mut lo, mut hi) = (0.0, 1.0);
    for _ in 0..50 {
        let mid = (lo + hi) / 2.0;
        let p = at(mid);
        if court(p.0, p.1).as_deref() == Some("yuyao") {
            lo = mid
        } else {
            hi = mid
        }
    }
    let (y, c) = (at(lo - 0.02), at(hi + 0.02));
    assert_eq!(court(y.0, y.1).as_deref(), Some("yuyao"));
    assert_eq!(court(c.0, c.1).as_deref(), Some("cixi"));
    (y, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yuyao_car_in_cixi_acknowledged_and_seized_inside_the_deadline() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        h.put_target(headline_target()).await;
        h.sighting(
            "cixi-cam-0042",
            vehicle_sighting("h-1", "cixi-cam-0042", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        let task = first_task(&h, "cixi").await;
        let id = task["task_id"].as_str().unwrap();
        let resolve_by: chrono::DateTime<chrono::Utc> =
            task["resolve_by"].as_str().unwrap().parse().unwrap();
        let dispatched: chrono::DateTime<chrono::Utc> =
            task["dispatched_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            (resolve_by - dispatched).num_minutes(),
            30,
            "the story's half-hour benchmark"
        );
        for status in ["acknowledged", "en_route", "seized"] {
            h.publish("dispatch/cixi/status", report(id, status)).await;
        }
        let updates = h.wait_for("dispatch/cixi/updates", 3, WAIT).await;
        assert_eq!(updates[2].body["status"], "seized");
        assert!(chrono::Utc::now() < resolve_by);
        let alerts = h.wait_for("alerts/yuyao", 4, WAIT).await;
        assert!(
            alerts
                .iter()
                .any(|a| a.body["kind"] == "task_status" && a.body["status"] == "seized")
        );
        let metrics = h.metrics().await;
        assert!(
            metrics.contains(
                "leadrelay_dispatch_to_resolution_seconds_count{court=\"cixi\",outcome=\"seized\"}"
            ),
            "[{}]",
            backend.name()
        );
        assert!(h.on("dispatch/ningbo_intermediate/escalations").is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_task_escalates_exactly_once() {
    for backend in backends() {
        let h = Harness::start_manual(&backend, |c| {
            c.deadlines.ack = chrono::Duration::seconds(300);
            c.deadlines.resolve = chrono::Duration::seconds(1800);
        })
        .await;
        h.put_target(headline_target()).await;
        h.sighting(
            "cam",
            vehicle_sighting("e-1", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        let task = first_task(&h, "cixi").await;
        assert!(h.on("dispatch/ningbo_intermediate/escalations").is_empty());
        h.advance(Duration::from_secs(301));
        let escalated = h
            .wait_for("dispatch/ningbo_intermediate/escalations", 1, WAIT)
            .await;
        assert_eq!(escalated[0].body["task_id"], task["task_id"]);
        let alert = h.wait_for("alerts/yuyao", 2, WAIT).await;
        assert!(
            alert.iter().any(|a| a.body["kind"] == "escalated"),
            "{alert:#?}"
        );
        assert_eq!(
            h.settle_and_count(
                "dispatch/ningbo_intermediate/escalations",
                Duration::from_secs(2)
            )
            .await,
            1,
            "[{}]",
            backend.name()
        );
        let metrics = h.metrics().await;
        assert!(
            metrics.contains("leadrelay_sla_breaches_total{court=\"cixi\",kind=\"ack\"}"),
            "{metrics}"
        );
        assert!(
            metrics.contains("leadrelay_escalations_total{court=\"ningbo_intermediate\"}"),
            "{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_due_while_the_service_was_down_fires_once_after_restart() {
    for backend in backends() {
        let mut h = Harness::start_manual(&backend, |c| {
            c.deadlines.ack = chrono::Duration::seconds(300);
            c.deadlines.resolve = chrono::Duration::seconds(1800);
        })
        .await;
        h.put_target(headline_target()).await;
        h.sighting(
            "cam",
            vehicle_sighting("r-1", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        first_task(&h, "cixi").await;
        h.stop().await;
        assert!(h.on("dispatch/ningbo_intermediate/escalations").is_empty());
        h.advance(Duration::from_secs(301));
        h.restart().await;
        h.wait_for("dispatch/ningbo_intermediate/escalations", 1, WAIT)
            .await;
        assert_eq!(
            h.settle_and_count(
                "dispatch/ningbo_intermediate/escalations",
                Duration::from_secs(2)
            )
            .await,
            1,
            "[{}]",
            backend.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn related_cases_from_two_courts_become_one_task_for_the_lead_court() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        // Story 2: three cases at Yuyao, one at Cixi (filed first), against one company car.
        let yuyao = json!({"target_id": "T-Y", "kind": "vehicle", "plate": "浙BK8021", "cases": [
            {"case_no": "Y1", "court_id": "yuyao", "filed_on": "2024-02-01", "amount_cny": 1800000},
            {"case_no": "Y2", "court_id": "yuyao", "filed_on": "2024-02-15", "amount_cny": 1200000},
            {"case_no": "Y3", "court_id": "yuyao", "filed_on": "2024-03-10", "amount_cny": 900000}]});
        let cixi = json!({"target_id": "T-C", "kind": "vehicle", "plate": "浙B·K8021", "cases": [
            {"case_no": "C1", "court_id": "cixi", "filed_on": "2024-01-20", "amount_cny": 1100000}]});
        h.put_target(yuyao).await;
        h.put_target(cixi.clone()).await;
        let proposal = h.wait_for("alerts/ningbo_intermediate", 1, WAIT).await;
        assert_eq!(proposal[0].body["kind"], "consolidation_proposed");
        // Re-sending a target does not propose again.
        h.put_target(cixi).await;
        assert_eq!(
            h.settle_and_count("alerts/ningbo_intermediate", Duration::from_millis(1500))
                .await,
            1
        );
        // Seen in Beilun: one task, all four cases, Yuyao asks (most cases).
        h.sighting(
            "cam",
            vehicle_sighting("rc-1", "cam", "浙BK8021", 29.91, 121.83),
        )
        .await;
        let task = first_task(&h, "beilun").await;
        assert_eq!(task["requesting_court_id"], "yuyao");
        assert_eq!(task["cases"].as_array().unwrap().len(), 4, "{task}");
        assert_eq!(
            h.settle_and_count("dispatch/beilun/tasks", Duration::from_millis(500))
                .await,
            1,
            "[{}]",
            backend.name()
        );
        let (_, t) = h.get("/api/v1/targets/T-Y?purpose=test").await;
        assert_eq!(t["linked"]["court_ids"], json!(["cixi", "yuyao"]), "{t}");
        assert_eq!(t["linked"]["lead_court_id"], "yuyao");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locate_request_is_routed_by_domicile() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        // Story 1: Cixi's debtor Yang, domicile in Yuyao.
        let yang = json!({"target_id": "T-YANG", "kind": "person", "person_id": "330281198001011230", "name": "杨某",
            "cases": [{"case_no": "(2024)浙0282执555号", "court_id": "cixi", "filed_on": "2024-04-01", "amount_cny": 30000}],
            "known_locations": [{"label": "work", "lat": CIXI.0, "lon": CIXI.1}, {"label": "domicile", "lat": YUYAO.0, "lon": YUYAO.1}]});
        assert_eq!(h.put_target(yang).await.0, 201);
        let (status, body) = h
            .request(
                reqwest::Method::POST,
                "/api/v1/locate-requests",
                Some(json!({"target_id": "T-YANG"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let task = first_task(&h, "yuyao").await;
        assert_eq!(task["kind"], "person_search");
        assert_eq!(task["requesting_court_id"], "cixi");
        assert_eq!(task["routing"], "in_jurisdiction");
        assert!(task["sighting"].is_null());
        h.wait_for("alerts/cixi", 1, WAIT).await;
        // A second request while the search is open: the same task.
        let (status, again) = h
            .request(
                reqwest::Method::POST,
                "/api/v1/locate-requests",
                Some(json!({"target_id": "T-YANG"})),
            )
            .await;
        assert_eq!(
            (status, &again["task_id"]),
            (200, &task["task_id"]),
            "[{}]",
            backend.name()
        );
        // Found the same day.
        h.publish(
            "dispatch/yuyao/status",
            report(task["task_id"].as_str().unwrap(), "located"),
        )
        .await;
        let update = &h.wait_for("dispatch/yuyao/updates", 1, WAIT).await[0].body;
        assert_eq!(update["status"], "located");
        let (status, _) = h
            .request(
                reqwest::Method::POST,
                "/api/v1/locate-requests",
                Some(json!({"target_id": "nobody"})),
            )
            .await;
        assert_eq!(status, 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_query_returns_exactly_the_targets_in_the_area() {
    let h = Harness::start(&Backend::Embedded).await;
    let person = |id: &str, pid: &str, court: &str, lat: f64, lon: f64| {
        json!({"target_id": id, "kind": "person", "person_id": pid,
        "cases": [{"case_no": format!("c-{id}"), "court_id": court, "filed_on": "2024-01-01", "amount_cny": 1000}],
        "known_locations": [{"label": "domicile", "lat": lat, "lon": lon}]})
    };
    h.put_target(person(
        "P-1",
        "330281198001011230",
        "cixi",
        YUYAO.0,
        YUYAO.1,
    ))
    .await;
    h.put_target(person("P-2", "330282198504120013", "yuyao", CIXI.0, CIXI.1))
        .await;
    h.put_target(person("P-3", "11010519491231002X", "cixi", 29.30, 121.43))
        .await; // Ninghai
    let ids = |v: &Value| -> Vec<String> {
        v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["target_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, yuyao) = h.get("/api/v1/targets?court_id=yuyao").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&yuyao), vec!["P-1"]);
    assert_eq!(yuyao["targets"][0]["cases"][0]["amount_cny"], 1000.0);
    let (_, near) = h
        .get(&format!(
            "/api/v1/targets?near={},{}&radius_km=5",
            CIXI.0, CIXI.1
        ))
        .await;
    assert_eq!(ids(&near), vec!["P-2"]);
    let (_, both) = h
        .get(&format!(
            "/api/v1/targets?court_id=cixi&near={},{}&radius_km=50",
            YUYAO.0, YUYAO.1
        ))
        .await;
    assert_eq!(ids(&both), vec!["P-2"]);
    assert_eq!(h.get("/api/v1/targets?court_id=atlantis").await.0, 400);
    assert_eq!(h.get("/api/v1/targets?near=abc&radius_km=2").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_task_is_rerouted_to_the_next_nearest_court() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        h.put_target(headline_target()).await;
        h.sighting(
            "cam",
            vehicle_sighting("rj-1", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        let task = first_task(&h, "cixi").await;
        let id = task["task_id"].as_str().unwrap().to_string();
        h.publish("dispatch/cixi/status", json!({"task_id": id, "status": "rejected", "by": "cixi-duty", "note": "no officers free"}).to_string()).await;
        // The next nearest command center to the sighting that has not rejected it.
        let deadline = std::time::Instant::now() + WAIT;
        let rerouted = loop {
            let found = h
                .all_topics()
                .into_iter()
                .find(|t| t.ends_with("/tasks") && t != "dispatch/cixi/tasks");
            if let Some(topic) = found {
                break h.on(&topic)[0].body.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not re-routed: {:?}",
                h.all_topics()
            );
            // Polling the watcher's record of the broker's messages.
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(rerouted["task_id"], json!(id));
        assert_ne!(rerouted["assisting_court_id"], "cixi");
        assert_eq!(rerouted["status"], "dispatched");
        assert_eq!(
            rerouted["requesting_court_id"],
            "yuyao",
            "[{}]",
            backend.name()
        );
        let (_, stored) = h.get(&format!("/api/v1/tasks/{id}")).await;
        assert!(
            stored["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["note"] == "no officers free"),
            "{stored}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn border_jitter_does_not_move_the_task_but_staying_does() {
    let (yuyao_side, cixi_side) = border_points();
    for backend in backends() {
        let h = Harness::start_manual(&backend, |c| {
            c.policy.reassign_dwell = chrono::Duration::seconds(180)
        })
        .await;
        h.put_target(headline_target()).await;
        h.sighting(
            "cam",
            vehicle_sighting("j-0", "cam", "浙B12345", cixi_side.0, cixi_side.1),
        )
        .await;
        let task = first_task(&h, "cixi").await;
        // Driving along the county line: seen on alternating sides, a minute apart, for longer
        // than the dwell time in all.
        for i in 1..=6 {
            let p = if i % 2 == 1 { yuyao_side } else { cixi_side };
            h.sighting(
                "cam",
                vehicle_sighting(&format!("j-{i}"), "cam", "浙B12345", p.0, p.1),
            )
            .await;
            h.wait_for("dispatch/cixi/updates", i, WAIT).await;
            h.advance(Duration::from_secs(60));
        }
        assert!(
            h.on("dispatch/yuyao/tasks").is_empty(),
            "[{}] jitter moved the task",
            backend.name()
        );
        // Then it stays on the Yuyao side past the dwell time: the task moves, once.
        for i in 7..=10 {
            h.sighting(
                "cam",
                vehicle_sighting(
                    &format!("j-{i}"),
                    "cam",
                    "浙B12345",
                    yuyao_side.0,
                    yuyao_side.1,
                ),
            )
            .await;
            if i == 7 {
                h.wait_for("dispatch/cixi/updates", 7, WAIT).await;
                assert!(
                    h.on("dispatch/yuyao/tasks").is_empty(),
                    "moved before the dwell"
                );
            }
            h.advance(Duration::from_secs(61));
        }
        let moved = first_task(&h, "yuyao").await;
        assert_eq!(moved["task_id"], task["task_id"]);
        assert_eq!(
            h.settle_and_count("dispatch/yuyao/tasks", Duration::from_millis(500))
                .await,
            1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_closes_and_a_later_sighting_reopens_after_the_cooldown() {
    for backend in backends() {
        let h = Harness::start_manual(&backend, |c| {
            c.policy.not_found_cooldown = chrono::Duration::seconds(600);
        })
        .await;
        h.put_target(headline_target()).await;
        h.sighting(
            "cam",
            vehicle_sighting("nf-1", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        let task = first_task(&h, "cixi").await;
        h.publish(
            "dispatch/cixi/status",
            report(task["task_id"].as_str().unwrap(), "not_found"),
        )
        .await;
        h.wait_for("dispatch/cixi/updates", 1, WAIT).await;
        h.sighting(
            "cam",
            vehicle_sighting("nf-2", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        assert_eq!(
            h.settle_and_count("dispatch/cixi/tasks", Duration::from_millis(700))
                .await,
            1,
            "inside the cooldown"
        );
        h.advance(Duration::from_secs(601));
        h.sighting(
            "cam",
            vehicle_sighting("nf-3", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        let tasks = h.wait_for("dispatch/cixi/tasks", 2, WAIT).await;
        assert_ne!(
            tasks[1].body["task_id"],
            task["task_id"],
            "[{}]",
            backend.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_target_stops_matching_and_says_so() {
    let h = Harness::start_manual(&Backend::Embedded, |_| {}).await;
    let mut target = headline_target();
    target["valid_until"] = json!((h.now() + chrono::Duration::days(1)).to_rfc3339());
    h.put_target(target).await;
    let (_, t) = h.get("/api/v1/targets/T-2024-0001?purpose=test").await;
    assert_eq!(t["expired"], false);
    h.advance(Duration::from_secs(86_401));
    h.sighting(
        "cam",
        vehicle_sighting("x-1", "cam", "浙B12345", CIXI.0, CIXI.1),
    )
    .await;
    assert_eq!(
        h.settle_and_count("dispatch/cixi/tasks", Duration::from_millis(800))
            .await,
        0
    );
    let (_, t) = h.get("/api/v1/targets/T-2024-0001?purpose=test").await;
    assert_eq!(t["expired"], true);
}

/// Retention by the service's clock: a month after a seizure the task no longer says where
/// the car was seen, a year after it the task is gone from the API; the open task is kept whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_tasks_forget_sightings_then_go_and_open_ones_stay() {
    for backend in backends() {
        let h = Harness::start_manual(&backend, |_| {}).await;
        h.put_target(headline_target()).await;
        h.put_target(vehicle_target("T-KEEP", "浙B77777", "cixi"))
            .await;
        h.sighting(
            "cam",
            vehicle_sighting("ret-1", "cam", "浙B12345", CIXI.0, CIXI.1),
        )
        .await;
        h.sighting(
            "cam",
            vehicle_sighting("ret-2", "cam", "浙B77777", CIXI.0, CIXI.1),
        )
        .await;
        let tasks = h.wait_for("dispatch/cixi/tasks", 2, WAIT).await;
        let id_of = |target: &str| {
            tasks
                .iter()
                .find(|t| t.body["target_id"] == target)
                .unwrap()
                .body["task_id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let (closed, open) = (id_of("T-2024-0001"), id_of("T-KEEP"));
        h.publish("dispatch/cixi/status", report(&closed, "seized"))
            .await;
        h.wait_for("dispatch/cixi/updates", 1, WAIT).await;
        let path = |id: &str| format!("/api/v1/tasks/{id}");
        assert!(h.get(&path(&closed)).await.1["sighting"].is_object());

        let eventually = |id: String, check: fn(u16, &Value) -> bool| {
            let h = &h;
            async move {
                let deadline = std::time::Instant::now() + WAIT;
                loop {
                    let (status, body) = h.get(&format!("/api/v1/tasks/{id}")).await;
                    if check(status, &body) {
                        return;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "[{}] {status} {body}",
                        h.backend.name()
                    );
                    // Housekeeping applies the retention on its next one-second turn.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        h.advance(Duration::from_secs(31 * 86_400));
        eventually(closed.clone(), |s, b| s == 200 && b["sighting"].is_null()).await;
        assert_eq!(h.get(&path(&closed)).await.1["status"], "seized");

        h.advance(Duration::from_secs(335 * 86_400));
        eventually(closed.clone(), |s, _| s == 404).await;
        let (status, task) = h.get(&path(&open)).await;
        assert_eq!(status, 200);
        assert!(task["sighting"].is_object(), "{task}");
    }
}
