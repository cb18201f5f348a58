//! The real binary (`leadrelay serve`, see [`ServeProcess`]) that a scenario kills and
//! restarts, and the few HTTP calls the suite makes to it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::common::ServeProcess;

/// One replica: the same client id, prefix, database and flags on every restart, as a
/// supervisor would start it again.
pub struct Service {
    mqtt_url: String,
    database_url: String,
    client_id: String,
    prefix: String,
    dir: PathBuf,
    extra: Vec<String>,
    process: Option<ServeProcess>,
    pub restarts: usize,
}

impl Service {
    pub async fn start(
        mqtt_url: &str,
        database_url: &str,
        client_id: &str,
        prefix: &str,
        dir: PathBuf,
        extra: &[&str],
    ) -> Service {
        std::fs::create_dir_all(&dir).unwrap();
        let mut service = Service {
            mqtt_url: mqtt_url.into(),
            database_url: database_url.into(),
            client_id: client_id.into(),
            prefix: prefix.into(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            process: None,
            restarts: 0,
        };
        service.spawn().await;
        service
    }

    async fn spawn(&mut self) {
        // The suite is about durability: its helpers call the API without a token.
        let mut extra: Vec<&str> = vec!["--auth", "false"];
        extra.extend(self.extra.iter().map(String::as_str));
        self.process = Some(
            ServeProcess::start_with(
                &self.mqtt_url,
                &self.database_url,
                &self.client_id,
                &self.prefix,
                &self.dir,
                &extra,
            )
            .await,
        );
    }

    pub fn http(&self) -> &str {
        &self.process.as_ref().expect("the service runs").http
    }

    /// `kill -9`: no shutdown, no flush, no DISCONNECT.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts it again (after a kill) and waits until it is ready.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
        self.restarts += 1;
    }

    /// False when the process has exited on its own (a crash).
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ServeProcess::is_running)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("serve.log")
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Loads the flagged targets through `POST /api/v1/targets:batch`.
pub async fn load_targets(http: &str, targets: &[Value]) {
    for chunk in targets.chunks(1_000) {
        let response = client()
            .post(format!("{http}/api/v1/targets:batch"))
            .json(chunk)
            .send()
            .await
            .expect("targets:batch answers");
        let status = response.status();
        assert_eq!(status, 200, "{}", response.text().await.unwrap_or_default());
    }
}

/// Every task in the database, through `GET /api/v1/tasks` (None while it cannot answer).
pub async fn tasks(http: &str) -> Option<Vec<Value>> {
    let response = client()
        .get(format!("{http}/api/v1/tasks?limit=10000"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    body["tasks"].as_array().cloned()
}

/// `/readyz`: its status code and body.
pub async fn readiness(http: &str) -> Option<(u16, Value)> {
    let response = client().get(format!("{http}/readyz")).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or_default()))
}

pub async fn metrics(http: &str) -> String {
    match client().get(format!("{http}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The sum of every series of the counter `name` a service reports (0 when it cannot answer).
pub async fn counter_total(http: &str, name: &str) -> f64 {
    metrics(http)
        .await
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
