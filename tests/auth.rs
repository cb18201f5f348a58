//! The HTTP API's authentication, scopes and audit, against the real service (real broker,
//! real database): 401 without a valid token, 403 or 200 per scope, and an audit row for
//! every read or change of a target or task.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// Every endpoint behind the token, with a body where it needs one.
fn endpoints() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/metrics", None),
        (Method::GET, "/api/v1/courts", None),
        (Method::GET, "/api/v1/audit", None),
        (Method::GET, "/api/v1/targets?court_id=cixi", None),
        (
            Method::POST,
            "/api/v1/targets:batch",
            Some(json!([headline_target()])),
        ),
        (
            Method::PUT,
            "/api/v1/targets/T-2024-0001",
            Some(headline_target()),
        ),
        (Method::GET, "/api/v1/targets/T-2024-0001?purpose=x", None),
        (Method::DELETE, "/api/v1/targets/T-2024-0001", None),
        (Method::GET, "/api/v1/tasks", None),
        (Method::GET, "/api/v1/tasks/t-1", None),
        (
            Method::POST,
            "/api/v1/tasks/t-1/status",
            Some(json!({"status": "acknowledged"})),
        ),
        (
            Method::POST,
            "/api/v1/locate-requests",
            Some(json!({"target_id": "T-P"})),
        ),
    ]
}

/// The headline car (Yuyao's case) seen in Cixi: a task Cixi holds and Yuyao requested;
/// and a Yuyao car seen in Yuyao: a task of Yuyao's alone. Returns their task ids.
async fn two_tasks(h: &Harness) -> (String, String) {
    assert_eq!(h.put_target(headline_target()).await.0, 201);
    assert_eq!(
        h.put_target(vehicle_target("T-Y", "浙B77777", "yuyao"))
            .await
            .0,
        201
    );
    h.sighting(
        "cam",
        vehicle_sighting("a-1", "cam", "浙B12345", CIXI.0, CIXI.1),
    )
    .await;
    let cixi = h.wait_for("dispatch/cixi/tasks", 1, WAIT).await[0].body["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    h.sighting(
        "cam",
        vehicle_sighting("a-2", "cam", "浙B77777", YUYAO.0, YUYAO.1),
    )
    .await;
    let yuyao = h.wait_for("dispatch/yuyao/tasks", 1, WAIT).await[0].body["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    (cixi, yuyao)
}

/// The audit rows of an actor, newest first.
async fn audit_of(h: &Harness, actor: &str) -> Vec<Value> {
    let (status, body) = h
        .get(&format!(
            "/api/v1/audit?actor={}&limit=1000",
            actor.replace(' ', "%20")
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

fn has(rows: &[Value], action: &str, result: &str) -> bool {
    rows.iter()
        .any(|r| r["action"] == action && r["result"] == result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_token_every_endpoint_but_the_probes_answers_401() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        for token in [None, Some("lr_0000"), Some("")] {
            for (method, path, body) in endpoints() {
                let (status, answer) = h.request_as(token, method.clone(), path, body).await;
                assert_eq!(
                    status,
                    401,
                    "[{}] {method} {path}: {answer}",
                    backend.name()
                );
                assert_eq!(answer["error"], "unauthorized", "{answer}");
            }
        }
        for probe in ["/healthz", "/readyz"] {
            assert_eq!(h.request_as(None, Method::GET, probe, None).await.0, 200);
        }
        // Nothing was changed: the target the PUT carried is not there.
        let (status, _) = h.get("/api/v1/targets/T-2024-0001?purpose=check").await;
        assert_eq!(status, 404, "[{}]", backend.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_reaches_everything_and_every_action_is_audited() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        let (cixi_task, _) = two_tasks(&h).await;
        let admin = h.token("ops desk admin", "admin").await;
        let call = |method: Method, path: String, body: Option<Value>| {
            let admin = admin.clone();
            let h = &h;
            async move { h.request_as(Some(&admin), method, &path, body).await }
        };
        let (s, b) = call(Method::GET, "/api/v1/targets/T-2024-0001".into(), None).await;
        assert_eq!((s, b["error"].as_str()), (400, Some("bad_request")), "{b}");
        let (s, b) = call(
            Method::GET,
            "/api/v1/targets/T-2024-0001?purpose=seizure%20planning".into(),
            None,
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            call(
                Method::PUT,
                "/api/v1/targets/T-2".into(),
                Some(vehicle_target("T-2", "浙B22222", "yuyao"))
            )
            .await
            .0,
            201
        );
        assert_eq!(
            call(
                Method::POST,
                "/api/v1/targets:batch".into(),
                Some(json!([vehicle_target("T-3", "浙B33333", "cixi")]))
            )
            .await
            .0,
            200
        );
        assert_eq!(
            call(Method::GET, "/api/v1/targets?court_id=yuyao".into(), None)
                .await
                .0,
            200
        );
        assert_eq!(call(Method::GET, "/api/v1/tasks".into(), None).await.0, 200);
        assert_eq!(
            call(Method::GET, format!("/api/v1/tasks/{cixi_task}"), None)
                .await
                .0,
            200
        );
        let (s, b) = call(
            Method::POST,
            format!("/api/v1/tasks/{cixi_task}/status"),
            Some(json!({"status": "acknowledged"})),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            call(Method::DELETE, "/api/v1/targets/T-2".into(), None)
                .await
                .0,
            200
        );
        assert_eq!(call(Method::GET, "/metrics".into(), None).await.0, 200);
        assert_eq!(
            call(Method::GET, "/api/v1/courts".into(), None).await.0,
            200
        );

        let rows = audit_of(&h, "ops desk admin").await;
        for (action, result) in [
            ("target.get", "refused"),
            ("target.get", "ok"),
            ("target.put", "ok"),
            ("target.put_batch", "ok"),
            ("target.sweep", "ok"),
            ("task.list", "ok"),
            ("task.get", "ok"),
            ("task.status", "ok"),
            ("target.withdraw", "ok"),
        ] {
            assert!(
                has(&rows, action, result),
                "[{}] no {action} {result} in {rows:#?}",
                backend.name()
            );
        }
        assert_eq!(
            rows.len(),
            9,
            "[{}] one row per audited request: {rows:#?}",
            backend.name()
        );
        let lookup = rows
            .iter()
            .find(|r| r["action"] == "target.get" && r["result"] == "ok")
            .unwrap();
        assert_eq!(lookup["purpose"], "seizure planning");
        assert_eq!(lookup["target_id"], "T-2024-0001");
        assert_eq!(lookup["scope"], "admin");
        let status = rows.iter().find(|r| r["action"] == "task.status").unwrap();
        assert_eq!(status["task_id"], cixi_task.as_str());
        assert_eq!(status["target_id"], "T-2024-0001");
        // The audit endpoint filters by task and by target.
        let (_, by_task) = h.get(&format!("/api/v1/audit?task_id={cixi_task}")).await;
        assert!(by_task["count"].as_u64().unwrap() >= 2, "{by_task}");
        let (_, by_target) = h.get("/api/v1/audit?target_id=T-2&limit=1").await;
        assert_eq!(by_target["count"], 1);
        assert!(
            by_target["next"].is_i64(),
            "a full page points to the next: {by_target}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_court_token_sees_and_reports_only_its_own_tasks() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        let (cixi_task, yuyao_task) = two_tasks(&h).await;
        let cixi = h.token("cixi console", "court:cixi").await;
        let yuyao = h.token("yuyao console", "court:yuyao").await;
        let as_cixi = |method: Method, path: String, body: Option<Value>| {
            let cixi = cixi.clone();
            let h = &h;
            async move { h.request_as(Some(&cixi), method, &path, body).await }
        };
        let name = backend.name();

        // Its tasks: the list is its own, whatever it asks for.
        let (s, listed) = as_cixi(Method::GET, "/api/v1/tasks".into(), None).await;
        assert_eq!(s, 200);
        let ids: Vec<&str> = listed["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["task_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [cixi_task.as_str()], "[{name}]");
        assert_eq!(
            as_cixi(Method::GET, "/api/v1/tasks?court_id=yuyao".into(), None)
                .await
                .0,
            403
        );
        assert_eq!(
            as_cixi(Method::GET, format!("/api/v1/tasks/{cixi_task}"), None)
                .await
                .0,
            200
        );
        let (s, b) = as_cixi(Method::GET, format!("/api/v1/tasks/{yuyao_task}"), None).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (403, Some("forbidden")),
            "[{name}] {b}"
        );
        // Yuyao requested the Cixi task: it may read it, not report on it.
        assert_eq!(
            h.request_as(
                Some(&yuyao),
                Method::GET,
                &format!("/api/v1/tasks/{cixi_task}"),
                None
            )
            .await
            .0,
            200
        );
        let report = json!({"status": "acknowledged", "by": "officer"});
        assert_eq!(
            h.request_as(
                Some(&yuyao),
                Method::POST,
                &format!("/api/v1/tasks/{cixi_task}/status"),
                Some(report.clone())
            )
            .await
            .0,
            403
        );
        assert_eq!(
            as_cixi(
                Method::POST,
                format!("/api/v1/tasks/{yuyao_task}/status"),
                Some(report.clone())
            )
            .await
            .0,
            403
        );
        assert_eq!(
            as_cixi(
                Method::POST,
                format!("/api/v1/tasks/{cixi_task}/status?court_id=yuyao"),
                Some(report.clone())
            )
            .await
            .0,
            403
        );
        let (s, b) = as_cixi(
            Method::POST,
            format!("/api/v1/tasks/{cixi_task}/status"),
            Some(report),
        )
        .await;
        assert_eq!(s, 200, "[{name}] {b}");
        assert_eq!(b["status"], "acknowledged");
        h.wait_for("dispatch/cixi/updates", 1, WAIT).await;

        // Sweeps of its own area only; no targets, no audit, no metrics, no other court's search.
        assert_eq!(
            as_cixi(Method::GET, "/api/v1/targets".into(), None).await.0,
            200
        );
        assert_eq!(
            as_cixi(Method::GET, "/api/v1/targets?court_id=yuyao".into(), None)
                .await
                .0,
            403
        );
        assert_eq!(
            as_cixi(
                Method::GET,
                "/api/v1/targets/T-2024-0001?purpose=x".into(),
                None
            )
            .await
            .0,
            403
        );
        assert_eq!(
            as_cixi(
                Method::PUT,
                "/api/v1/targets/T-9".into(),
                Some(vehicle_target("T-9", "浙B99999", "cixi"))
            )
            .await
            .0,
            403
        );
        assert_eq!(
            as_cixi(Method::DELETE, "/api/v1/targets/T-2024-0001".into(), None)
                .await
                .0,
            403
        );
        assert_eq!(
            as_cixi(Method::GET, "/api/v1/audit".into(), None).await.0,
            403
        );
        assert_eq!(as_cixi(Method::GET, "/metrics".into(), None).await.0, 403);
        assert_eq!(
            as_cixi(
                Method::POST,
                "/api/v1/locate-requests".into(),
                Some(json!({"target_id": "T-2024-0001"}))
            )
            .await
            .0,
            403
        );
        assert_eq!(
            as_cixi(Method::GET, "/api/v1/courts".into(), None).await.0,
            200
        );

        let rows = audit_of(&h, "cixi console").await;
        assert!(
            has(&rows, "task.list", "ok") && has(&rows, "task.list", "refused"),
            "[{name}] {rows:#?}"
        );
        assert!(
            has(&rows, "task.get", "ok") && has(&rows, "task.get", "refused"),
            "[{name}]"
        );
        assert!(
            has(&rows, "task.status", "ok") && has(&rows, "task.status", "refused"),
            "[{name}]"
        );
        assert!(
            has(&rows, "target.sweep", "ok") && has(&rows, "target.sweep", "refused"),
            "[{name}]"
        );
        assert!(
            has(&rows, "target.get", "refused") && has(&rows, "target.put", "refused"),
            "[{name}]"
        );
        assert!(
            has(&rows, "target.withdraw", "refused")
                && has(&rows, "task.locate_request", "refused"),
            "[{name}]"
        );
        assert!(rows.iter().all(|r| r["scope"] == "court:cixi"));
        let refused = rows
            .iter()
            .find(|r| r["action"] == "task.get" && r["result"] == "refused")
            .unwrap();
        assert_eq!(refused["task_id"], yuyao_task.as_str());
        // The nothing-changed check: the target the refused DELETE named is still active.
        let (_, target) = h.get("/api/v1/targets/T-2024-0001?purpose=check").await;
        assert_eq!(target["status"], "active", "[{name}]");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ops_token_reads_metrics_and_nothing_else() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        let ops = h.token("prometheus", "ops").await;
        let (s, _) = h
            .request_as(Some(&ops), Method::GET, "/metrics", None)
            .await;
        assert_eq!(s, 200, "[{}]", backend.name());
        for (method, path, body) in endpoints() {
            if path == "/metrics" || path == "/api/v1/courts" {
                continue;
            }
            let (s, b) = h.request_as(Some(&ops), method.clone(), path, body).await;
            assert_eq!(s, 403, "[{}] {method} {path}: {b}", backend.name());
            assert_eq!(b["error"], "forbidden");
        }
        let rows = audit_of(&h, "prometheus").await;
        assert!(rows.iter().all(|r| r["result"] == "refused"), "{rows:#?}");
        assert_eq!(
            rows.len(),
            9,
            "[{}] target and task routes audited: {rows:#?}",
            backend.name()
        );
    }
}

/// MQTT status reports are audited as `mqtt:{court}`, in the transaction of the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_status_report_leaves_an_audit_row() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        let (cixi_task, _) = two_tasks(&h).await;
        let report = json!({"task_id": cixi_task, "status": "acknowledged", "by": "officer"});
        h.publish("dispatch/cixi/status", report.to_string()).await;
        h.wait_for("dispatch/cixi/updates", 1, WAIT).await;
        let rows = audit_of(&h, "mqtt:cixi").await;
        assert_eq!(rows.len(), 1, "[{}] {rows:#?}", backend.name());
        assert_eq!(rows[0]["action"], "task.status");
        assert_eq!(rows[0]["result"], "ok");
        assert_eq!(rows[0]["task_id"], cixi_task.as_str());
    }
}

/// `leadrelay tokens ...` as an operator runs it.
fn tokens_cli(args: &[&str], database_url: &str) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadrelay"))
        .arg("tokens")
        .args(args)
        .args(["--database-url", database_url])
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_made_listed_and_revoked_with_the_binary_and_a_revoked_one_gets_401() {
    for backend in backends() {
        let h = Harness::start(&backend).await;
        let url = h.config.database_url.clone();
        let name = backend.name();
        let (ok, out, err) = tokens_cli(
            &["create", "--name", "cixi console", "--scope", "court:cixi"],
            &url,
        );
        assert!(ok, "[{name}] {err}");
        let token = out.trim().to_string();
        assert!(
            token.starts_with("lr_") && token.len() == 67,
            "[{name}] {out}"
        );
        assert!(err.contains("shown only now"), "{err}");
        let (s, _) = h
            .request_as(Some(&token), Method::GET, "/api/v1/tasks", None)
            .await;
        assert_eq!(s, 200, "[{name}] the new token works at once");

        // Refused clearly, nothing made: a taken name, a bad scope, an unknown court.
        let (ok, _, err) = tokens_cli(
            &["create", "--name", "cixi console", "--scope", "admin"],
            &url,
        );
        assert!(!ok && err.contains("exists"), "[{name}] {err}");
        let (ok, _, err) = tokens_cli(&["create", "--name", "x", "--scope", "root"], &url);
        assert!(
            !ok && err.contains("expected admin, ops or court:"),
            "[{name}] {err}"
        );
        let (ok, _, err) = tokens_cli(
            &["create", "--name", "x", "--scope", "court:atlantis"],
            &url,
        );
        assert!(!ok && err.contains("no court"), "[{name}] {err}");

        let (ok, listed, err) = tokens_cli(&["list"], &url);
        assert!(ok, "{err}");
        assert!(
            listed.contains("cixi console") && listed.contains("court:cixi"),
            "{listed}"
        );
        assert!(listed.contains("test admin"), "{listed}");
        assert!(
            !listed.contains(&token) && !listed.contains(&token[3..]),
            "never the secret: {listed}"
        );
        assert!(
            !listed.contains(&leadrelay::app::auth::token_hash(&token)),
            "never the hash"
        );
        assert!(
            !listed.contains("x "),
            "the refused ones were not made: {listed}"
        );

        let (ok, _, err) = tokens_cli(&["revoke", "cixi console"], &url);
        assert!(ok, "[{name}] {err}");
        let (s, b) = h
            .request_as(Some(&token), Method::GET, "/api/v1/tasks", None)
            .await;
        assert_eq!(
            (s, b["error"].as_str()),
            (401, Some("unauthorized")),
            "[{name}] a revoked token"
        );
        let (ok, listed, _) = tokens_cli(&["list"], &url);
        assert!(ok);
        let line = listed
            .lines()
            .find(|l| l.starts_with("cixi console"))
            .unwrap();
        assert!(
            !line.trim_end().ends_with('-'),
            "revoked time shown: {line}"
        );
        let (ok, _, err) = tokens_cli(&["revoke", "cixi console"], &url);
        assert!(!ok && err.contains("no live token"), "{err}");
    }
}
