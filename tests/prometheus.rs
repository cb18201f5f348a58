//! A real Prometheus (Debian's `prometheus`) scrapes a real service every second, with
//! deploy/prometheus/rules.yml loaded as it ships: every query of the Grafana dashboard
//! deploy/grafana/leadrelay.json returns series once sightings have gone through, and
//! cutting the service off its broker makes `LeadrelayBrokerDisconnected` pending, then
//! firing after its `for: 1m`.
//!
//! Without a `prometheus` binary the test is skipped with a message, unless
//! `LEADRELAY_TEST_REQUIRE_PROMETHEUS=1` (CI), where that is a failure.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, backends, behind_proxy, car_seen_in_cixi, flag_cars, unique};
use serde_json::{Value, json};

/// What the dashboard's Grafana variables stand for here.
const VARIABLES: [(&str, &str); 5] = [
    ("$__rate_interval", "1m"),
    ("$__interval", "5s"),
    ("$__range", "5m"),
    ("${job}", "leadrelay"),
    ("$job", "leadrelay"),
];

/// A Prometheus server of its own: a free port, a temporary storage directory, a generated
/// config that scrapes one leadrelay target every second, and the shipped rules evaluated
/// every second.
struct Prometheus {
    child: Child,
    url: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn installed() -> bool {
        Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts scraping `target` (`host:port`) with `token`, and waits until it is ready.
    async fn start(target: &str, token: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: leadrelay\n    authorization:\n      credentials: {token:?}\n    \
             static_configs:\n      - targets: [{target:?}]\n"
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            dir,
        };
        let p = &prometheus;
        let ready = p
            .poll(Duration::from_secs(60), || async move {
                let r = p.http.get(format!("{}/-/ready", p.url)).send().await;
                r.is_ok_and(|r| r.status().is_success()).then_some(())
            })
            .await;
        assert!(
            ready.is_some(),
            "prometheus not ready; {}",
            prometheus.log()
        );
        prometheus
    }

    fn log(&self) -> String {
        let path = self.dir.path().join("prometheus.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        format!(
            "last lines of {}:\n{}",
            path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// `GET /api/v1/{path}` with `params`; the `data` of a successful answer.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let url = url::Url::parse_with_params(&format!("{}/api/v1/{path}", self.url), params)
            .map_err(|e| e.to_string())?;
        let body: Value = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match body["status"].as_str() {
            Some("success") => Ok(body["data"].clone()),
            _ => Err(body.to_string()),
        }
    }

    /// The series an instant query returns.
    async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", promql)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The value of the first series `promql` returns, if any.
    async fn value(&self, promql: &str) -> Option<f64> {
        let series = self.query(promql).await.ok()?;
        series.first()?["value"][1].as_str()?.parse().ok()
    }

    /// The state (`pending`, `firing`) of alert `name` as Prometheus reports it, if active.
    async fn alert_state(&self, name: &str) -> Option<String> {
        let data = self.api("alerts", &[]).await.ok()?;
        data["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .and_then(|a| a["state"].as_str().map(str::to_owned))
    }

    /// Calls `probe` until it returns something, or `within` passes.
    async fn poll<T, F: std::future::Future<Output = Option<T>>>(
        &self,
        within: Duration,
        mut probe: impl FnMut() -> F,
    ) -> Option<T> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = probe().await {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Polling a real server that scrapes and evaluates once a second.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every PromQL expression in the dashboard: the panels' targets (rows' panels included) and,
/// separately, the annotations'.
fn dashboard_queries() -> (Vec<(String, String)>, Vec<String>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/leadrelay.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("dashboard JSON");
    let substitute = |expr: &str| {
        VARIABLES
            .iter()
            .fold(expr.to_owned(), |e, (var, value)| e.replace(var, value))
    };
    let mut panels: Vec<Value> = dashboard["panels"].as_array().cloned().unwrap_or_default();
    let nested: Vec<Value> = panels
        .iter()
        .flat_map(|p| p["panels"].as_array().cloned().unwrap_or_default())
        .collect();
    panels.extend(nested);
    let targets = panels
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |t| Some((title.clone(), substitute(t["expr"].as_str()?))))
        })
        .collect();
    let annotations = dashboard["annotations"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a["expr"].as_str().map(substitute))
        .collect();
    (targets, annotations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_answer_and_a_cut_broker_fires_its_alert() {
    if !Prometheus::installed() {
        let required = std::env::var("LEADRELAY_TEST_REQUIRE_PROMETHEUS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "LEADRELAY_TEST_REQUIRE_PROMETHEUS=1 but no `prometheus` binary on PATH \
             (Debian: apt-get install prometheus)"
        );
        eprintln!("no `prometheus` binary on PATH (Debian: apt-get install prometheus): skipped");
        return;
    }
    let (panel_queries, annotation_queries) = dashboard_queries();
    assert!(
        panel_queries.len() >= 20,
        "the dashboard parsed to {panel_queries:?}"
    );
    for (_, expr) in &panel_queries {
        assert!(!expr.contains('$'), "a Grafana variable left in {expr}");
    }

    // One backend is enough here (the alert takes over a minute): the machine's broker and
    // PostgreSQL when configured, else the embedded ones.
    let backend: Backend = backends().pop().expect("a backend");
    let (h, proxy) = behind_proxy(&backend).await;
    let token = h.token(&unique("prometheus "), "ops").await;
    let target = h.http.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&target, &token).await;
    let p = &prometheus;
    let scraped = prometheus
        .poll(Duration::from_secs(60), || async move {
            (p.value("up{job=\"leadrelay\"}").await == Some(1.0)).then_some(())
        })
        .await;
    assert!(scraped.is_some(), "never scraped; {}", prometheus.log());

    // A flagged car seen in Cixi among unflagged traffic, and one unreadable plate.
    flag_cars(&h, 1, 1).await;
    car_seen_in_cixi(&h, &unique("hit-"), 1).await;
    for i in 0..20 {
        let plate = format!("浙B{:05}", 90_000 + i);
        let sighting = common::vehicle_sighting(&unique("miss-"), "cam", &plate, 30.0, 121.2);
        h.sighting("cam", sighting).await;
    }
    h.sighting(
        "cam",
        common::vehicle_sighting(&unique("bad-"), "cam", "not a plate", 30.0, 121.2),
    )
    .await;
    h.wait_for("dispatch/cixi/tasks", 1, Duration::from_secs(30))
        .await;
    let counted = prometheus
        .poll(Duration::from_secs(60), || async move {
            let dispatched = "sum(leadrelay_tasks_dispatched_total{court=\"cixi\"})";
            let rejected = "sum(leadrelay_sightings_rejected_total{reason=\"invalid_plate\"})";
            let seen =
                p.value(dispatched).await >= Some(1.0) && p.value(rejected).await >= Some(1.0);
            seen.then_some(())
        })
        .await;
    assert!(counted.is_some(), "the task never showed in Prometheus");

    let mut empty = Vec::new();
    for (panel, expr) in &panel_queries {
        match prometheus.query(expr).await {
            Ok(series) if !series.is_empty() => {}
            Ok(_) => empty.push(format!("{panel}: {expr} returned no series")),
            Err(e) => empty.push(format!("{panel}: {expr} failed: {e}")),
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without an answer:\n{}",
        empty.join("\n")
    );
    // The throughput and latency panels show what happened, not just zeros.
    let received = "sum(rate(leadrelay_sightings_received_total{job=~\"leadrelay\"}[1m]))";
    assert!(prometheus.value(received).await > Some(0.0));
    let dispatched = "sum(rate(leadrelay_tasks_dispatched_total{job=~\"leadrelay\"}[1m]))";
    assert!(prometheus.value(dispatched).await > Some(0.0));
    let p99 = "histogram_quantile(0.99, sum by (le) (rate(leadrelay_ingest_to_dispatch_seconds_bucket{job=~\"leadrelay\"}[1m])))";
    let p99 = prometheus.value(p99).await;
    assert!(
        p99.is_some_and(|s| s > 0.0 && s < 30.0),
        "ingest → dispatch p99 {p99:?}"
    );
    assert_eq!(
        prometheus.alert_state("LeadrelayBrokerDisconnected").await,
        None,
        "alerting while connected"
    );

    // Cut the service off its broker: pending at once, firing a minute later.
    let cut_at = Instant::now();
    proxy.cut_off();
    let pending = prometheus
        .poll(Duration::from_secs(30), || async move {
            let state = p.alert_state("LeadrelayBrokerDisconnected").await;
            (state.as_deref() == Some("pending")).then_some(())
        })
        .await;
    assert!(
        pending.is_some(),
        "the alert never went pending; {}",
        prometheus.log()
    );
    let firing = prometheus
        .poll(Duration::from_secs(120), || async move {
            let state = p.alert_state("LeadrelayBrokerDisconnected").await;
            (state.as_deref() == Some("firing")).then_some(())
        })
        .await;
    assert!(
        firing.is_some(),
        "the alert never fired; {}",
        prometheus.log()
    );
    assert!(
        cut_at.elapsed() >= Duration::from_secs(59),
        "fired {:?} after the cut, before its `for: 1m`",
        cut_at.elapsed()
    );
    let alerts = prometheus.api("alerts", &[]).await.unwrap();
    let alert = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "LeadrelayBrokerDisconnected")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(alert["labels"]["instance"], json!(target), "{alert}");
    assert_eq!(alert["labels"]["severity"], json!("critical"), "{alert}");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains(&target)),
        "{alert}"
    );
    // The dashboard's alert annotations now have something to show.
    for expr in &annotation_queries {
        let series = prometheus.query(expr).await.unwrap_or_default();
        assert!(
            !series.is_empty(),
            "annotation query {expr} returned nothing"
        );
    }
    proxy.restore();
}
