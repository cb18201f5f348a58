//! MQTT floods against the real binary: huge payloads and floods of tiny junk must not starve
//! legitimate sightings, and the memory a huge payload took must be given back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use leadrelay::service::config::{BrokerChoice, parse_mqtt_url};

/// A field of /proc/PID/status, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn rss_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmRSS:") as f64 / 1024.0
}

/// The external broker (a test client publishes through it to the binary), when configured.
async fn external_broker() -> Option<(String, std::net::SocketAddr)> {
    let mqtt_url = std::env::var("LEADRELAY_TEST_MQTT_URL").ok()?;
    let BrokerChoice::External { host, port } = parse_mqtt_url(&mqtt_url).ok()? else {
        return None;
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()?
        .next()?;
    Some((mqtt_url, addr))
}

/// A client that may publish packets up to 256 MiB, its event loop driven in the background.
fn big_publisher(
    broker: std::net::SocketAddr,
) -> (rumqttc::AsyncClient, tokio::task::JoinHandle<()>) {
    let mut opts =
        rumqttc::MqttOptions::new(unique("lr-flood-"), broker.ip().to_string(), broker.port());
    opts.set_max_packet_size(256 * 1024 * 1024, 256 * 1024 * 1024);
    opts.set_inflight(1000);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 10_000);
    let pump = tokio::spawn(async move {
        loop {
            if let Err(e) = eventloop.poll().await {
                eprintln!("flood publisher: {e}");
                // Reconnect back-off of the flooding client.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    (client, pump)
}

/// Counts the distinct payloads on `{prefix}{topic}` (the harness's watcher subscribes to everything
/// under the prefix, and a 100 MB sighting would end its connection).
async fn count_on(
    broker: std::net::SocketAddr,
    topic: String,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let mut opts =
        rumqttc::MqttOptions::new(unique("lr-count-"), broker.ip().to_string(), broker.port());
    // Dead letters are cut to the service's 1 MiB packet limit.
    opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 100);
    client
        .subscribe(topic, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    let mut distinct = std::collections::HashSet::new();
    let (subscribed, is_subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed = Some(subscribed);
    tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    distinct.insert(p.payload);
                    counter.store(distinct.len(), std::sync::atomic::Ordering::SeqCst);
                }
                Ok(_) => {}
                // Reconnect back-off of the counting client.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), is_subscribed).await;
    count
}

async fn ready_status(http: &str) -> u16 {
    reqwest::get(format!("{http}/readyz"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// How far above its baseline the service's RSS may stay once huge payloads are handled.
const BOUND_MIB: f64 = 64.0;

/// Three 100 MB sightings: each is dead-lettered, and the service's RSS comes back near
/// where it was before them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_taken_by_huge_payloads_is_given_back() {
    let Some((mqtt_url, broker)) = external_broker().await else {
        eprintln!("no external broker configured: the memory test is skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("flood.db").display());
    let prefix = format!("{}/", unique("mem"));
    let letters_seen = count_on(broker, format!("{prefix}deadletter/sightings")).await;
    let (client, _pump) = big_publisher(broker);
    let service = ServeProcess::start(
        &mqtt_url,
        &database,
        &unique("lr-mem-"),
        &prefix,
        dir.path(),
    )
    .await;
    let pid = service.pid();
    // Settling after start: the hotlist, pools and broker session are in place.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_mib(pid);
    let letters = || letters_seen.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..3u8 {
        let payload = vec![b'a' + i; 100 * 1024 * 1024];
        client
            .publish(
                format!("{prefix}sightings/cam"),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while letters() < 3 {
        assert!(
            Instant::now() < deadline,
            "{} of 3 dead letters; {}",
            letters(),
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap()
        );
        // Polling the watcher's record of the broker's messages.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = proc_status_kib(pid, "VmHWM:") as f64 / 1024.0;
    // The connection is replaced once the last large message is acked, and the memory is
    // given back right after.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rss_mib(pid) >= baseline + BOUND_MIB && Instant::now() < deadline {
        // Polling the child's RSS while it gives memory back.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = rss_mib(pid);
    eprintln!("RSS baseline {baseline:.1} MiB, peak {peak:.1} MiB, after {after:.1} MiB");
    assert_eq!(ready_status(&service.http).await, 200);
    assert!(
        after < baseline + BOUND_MIB,
        "RSS {baseline:.1} → {after:.1} MiB"
    );
}

/// A publisher floods the sightings topic with 20 payloads of 10 MB and 100,000 tiny junk
/// messages; a camera's hit published in the middle of it still becomes a task, the service
/// stays ready, and its RSS stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_huge_and_junk_messages_does_not_starve_a_legitimate_hit() {
    let Some((mqtt_url, broker)) = external_broker().await else {
        eprintln!("no external broker configured: the flood test is skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("flood.db").display());
    let prefix = format!("{}/", unique("flood"));
    let tasks = count_on(broker, format!("{prefix}dispatch/cixi/tasks")).await;
    let (flooder, _pump) = big_publisher(broker);
    let (camera, _camera_pump) = big_publisher(broker);
    let service = ServeProcess::start(
        &mqtt_url,
        &database,
        &unique("lr-flood-"),
        &prefix,
        dir.path(),
    )
    .await;
    let pid = service.pid();
    let target = vehicle_target("F-1", "浙B54321", "yuyao");
    let response = service
        .client
        .put(format!("{}/api/v1/targets/F-1", service.http))
        .json(&target)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let baseline = rss_mib(pid);

    let topic = format!("{prefix}sightings/junk");
    for i in 0..20u8 {
        let payload = vec![b'a' + i; 10 * 1024 * 1024];
        flooder
            .publish(&topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    for i in 0..100_000u32 {
        flooder
            .publish(
                &topic,
                rumqttc::QoS::AtLeastOnce,
                false,
                i.to_le_bytes().to_vec(),
            )
            .await
            .unwrap();
    }
    // The camera's hit, behind the flood. Mosquitto drops QoS 1 messages for a subscriber
    // whose queue is full (max_queued_messages, 1000 by default), so the camera sends it
    // again (same event id) every 5 s until it is handled, as a camera without a PUBACK would.
    let hit = vehicle_sighting("legit-1", "cam", "浙B54321", CIXI.0, CIXI.1).to_string();
    let published = Instant::now();
    let mut sent_at = published - Duration::from_secs(5);
    let mut sends = 0;
    let mut peak_rss = 0.0f64;
    let deadline = published + Duration::from_secs(120);
    while tasks.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        if sent_at.elapsed() >= Duration::from_secs(5) {
            let topic = format!("{prefix}sightings/cam");
            camera
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, hit.clone())
                .await
                .unwrap();
            sent_at = Instant::now();
            sends += 1;
        }
        peak_rss = peak_rss.max(rss_mib(pid));
        assert!(Instant::now() < deadline, "the hit never became a task");
        // Polling the task topic and the child's RSS during the flood.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latency = published.elapsed();
    assert_eq!(ready_status(&service.http).await, 200);
    let peak = proc_status_kib(pid, "VmHWM:") as f64 / 1024.0;
    eprintln!(
        "flood: hit → task {latency:?} after the first of {sends} sends; RSS baseline \
         {baseline:.1} MiB, sampled max {peak_rss:.1} MiB, peak {peak:.1} MiB"
    );
    // One task, however often the camera sent it.
    assert_eq!(tasks.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The large messages waiting share a 64 MiB budget; with the channel's count bound only,
    // the peak was 248 MiB above the baseline.
    assert!(
        peak < baseline + 200.0,
        "RSS {baseline:.1} MiB, peak {peak:.1} MiB"
    );
}
