//! `leadrelay simulate`: a load generator that publishes realistic sightings to a broker and
//! checks what comes back.
//!
//! ```text
//!  workload (seeded) ─► publisher (QoS 1) ─► broker ─► leadrelay ─► broker ─► subscriber
//!        │ ledger: what each sequence number was (miss, hit, duplicate, malformed)    │
//!        └──────────────────────────── check + latency ◄──────── receipts ◄───────────┘
//! ```
//!
//! Every sighting carries its sequence number in its `event_id`, so a task, update or dead
//! letter is traced back to the publish that caused it without any shared state with the
//! service. The subscription is made before the first publish, so nothing is missed.
//!
//! Throughput is measured to a **sentinel**: the last message is the first sighting of a
//! target reserved for it. leadrelay handles one connection's messages in order, so its task
//! arriving means everything before it was handled. With `--baseline` the same messages go
//! through the same broker to a subscriber that only counts (no leadrelay in the path): the
//! broker's own ceiling on this machine, to report leadrelay as a ratio of it.
//!
//! The workload assumes the service's default matching (`0ODQ,1I,2Z,5S,8B,6G`, at most two
//! substitutions): targets are drawn so that no two are fuzzily confusable, and unflagged
//! reads are redrawn when they would fuzzily match a target, so every expected outcome is
//! exact. Runs against the same database need a new `--seed` (the targets would already have
//! open tasks).

mod analysis;
mod connections;
mod sampling;
mod service_api;
mod workload;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use rumqttc::AsyncClient;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::mqtt::BrokerAddr;
use crate::service::config::{MqttArgs, parse_broker_url};

use analysis::{Progress, Report, Tags, analyse, print_table};
use connections::{
    RELAY_HEARD, Recorders, client_options, publish, publisher_loop, start_relay, start_subscriber,
    wait_ready,
};
use sampling::{Flatness, Live, Sample, Sampler, Watched, flatness, print_summary};
use service_api::{load_targets, processed_by_all, wait_for_targets};
pub use workload::misread_at;
pub(crate) use workload::{Rng, random_plate};
use workload::{Sent, Workload};

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// The broker, `mqtt://[user:password@]host:port`, or `mqtts://...` for TLS.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt_url: String,
    /// With `mqtts://`: the CA certificates (PEM) to check the broker against (default: the
    /// system's).
    #[arg(long)]
    pub mqtt_ca_file: Option<std::path::PathBuf>,
    /// Prefix before every topic (the service's `--topic-prefix`).
    #[arg(long, default_value = "")]
    pub topic_prefix: String,
    /// Sightings per second; 0 publishes as fast as the broker takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Publish for this long (`10s`, `1m`) (default: until --count is published).
    #[arg(long)]
    pub duration: Option<String>,
    /// Publish this many messages (default 100000 when neither this nor --duration is given).
    #[arg(long)]
    pub count: Option<u64>,
    /// Share of messages that are sightings of a flagged target.
    #[arg(long, default_value_t = 0.01)]
    pub hit_ratio: f64,
    /// Size of the generated hotlist.
    #[arg(long, default_value_t = 10_000)]
    pub targets: u32,
    /// Share of hits read with one OCR confusion (0→O, 5→S, 8→B, ...).
    #[arg(long, default_value_t = 0.1)]
    pub fuzzy_ratio: f64,
    /// Share of messages that re-send an earlier sighting with the same (source, event_id).
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_ratio: f64,
    /// Share of messages that are malformed (each must come back as one dead letter).
    #[arg(long, default_value_t = 0.0)]
    pub malformed_ratio: f64,
    /// Share of sightings placed outside every jurisdiction (at sea: routed to the nearest court).
    #[arg(long, default_value_t = 0.0)]
    pub outside_ratio: f64,
    /// Seed of the workload: the same seed publishes the same plates, places and mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The service's HTTP base URL: targets are loaded through it, and its metrics read.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub http: String,
    /// Bearer token for the service's HTTP API (an admin token: it loads targets and reads
    /// metrics); needed unless the service runs with `--auth false` (default: none).
    #[arg(long, env = "LEADRELAY_TOKEN")]
    pub token: Option<String>,
    /// Another replica of the service sharing the stream (`--share-group`), by its HTTP base
    /// URL; repeatable. The loaded targets are awaited in its hotlist, its handled sightings
    /// count with the service's, and the run ends once every replica has handled every
    /// sighting and the last result has arrived: with replicas the sentinel's task no longer
    /// means that everything before it was handled (default: none, one service).
    #[arg(long = "replica-http")]
    pub replica_http: Vec<String>,
    /// Do not load the generated targets (the service already has them).
    #[arg(long)]
    pub no_load_targets: bool,
    /// Every hit a different target (every hit a new durable task); ends when targets run out.
    #[arg(long)]
    pub unique_hits: bool,
    /// Raw broker mode: the same messages to a subscriber that only counts; no leadrelay.
    #[arg(long)]
    pub baseline: bool,
    /// With `--baseline`: a stand-in for leadrelay in the path that does no work. Each
    /// sighting it receives becomes two publishes, as a new task does in leadrelay: one the
    /// size of a Task, which the subscriber counts, and one the size of an Alert, which nobody
    /// subscribes to. The broker then carries a run of new tasks' traffic, so this is the
    /// ceiling any MQTT service has for durable tasks/s on this broker and machine.
    #[arg(long, requires = "baseline")]
    pub relay: bool,
    /// Only publish (the publisher's own ceiling): no subscriber, no check.
    #[arg(long)]
    pub publish_only: bool,
    /// Number of simulated camera sources.
    #[arg(long, default_value_t = 64)]
    pub sources: u32,
    /// Closed loop: publish at most this many messages that expect a result (hits, malformed)
    /// ahead of the results received; 0 = open loop. A broker queues only so much for a slow
    /// subscriber (Mosquitto: `max_queued_messages`, 1000 by default) and drops the rest, so
    /// an open-loop run faster than the service measures the broker's drops, not the service.
    #[arg(long, default_value_t = 0)]
    pub window: u64,
    /// Most unacknowledged QoS 1 publishes.
    #[arg(long, default_value_t = 1000)]
    pub inflight: u16,
    /// After publishing, give up waiting for results once nothing arrived for this long.
    #[arg(long, default_value = "10s")]
    pub settle: String,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The generator's threads; 0 = one per core. An open-loop run at full speed needs them
    /// to outpace the service. A closed-loop run wants 1: there every µs of the generator's
    /// CPU is taken from the service and the broker on the same machine, and on one thread
    /// its connections stop waking each other across threads (`benches/DECISIONS.md`).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one row per interval as the run goes (`60s`): sent, hits, tasks and updates
    /// received, their p50/p99 latency, and the service's RSS, open fds (`--watch-pid`) and
    /// outbox backlog (its `/metrics`). The rows go into `--json` output too (default: no
    /// samples).
    #[arg(long)]
    pub sample_every: Option<String>,
    /// The service's process id, for its RSS (`/proc/PID/status`) and open fds
    /// (`/proc/PID/fd`) in each sample (default: none, the service's own figures are left
    /// out).
    #[arg(long, requires = "sample_every")]
    pub watch_pid: Option<u32>,
    /// Fail the run if RSS or open fds at the last interval exceed the first by more than this
    /// many percent (default: the verdict within 10% is printed, and does not fail the run).
    #[arg(long, requires = "watch_pid")]
    pub flat_within: Option<f64>,
}

/// The broker named by `--mqtt-url`, with its TLS and credentials.
fn broker_of(args: &SimulateArgs) -> anyhow::Result<BrokerAddr> {
    let url = parse_broker_url(&args.mqtt_url)?;
    let security = MqttArgs {
        mqtt_ca_file: args.mqtt_ca_file.clone(),
        ..MqttArgs::default()
    }
    .security(&url)?;
    Ok(BrokerAddr {
        host: url.host,
        port: url.port,
        security,
    })
}

/// The report with the sampling rows and verdict, for `--json`.
#[derive(serde::Serialize)]
struct SampledReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    samples: &'a [Sample],
    flatness: Option<&'a Flatness>,
}

/// Within this many percent, RSS and fds count as flat when `--flat-within` is not given
/// (the verdict is then printed but does not fail the run).
const DEFAULT_FLAT_PCT: f64 = 10.0;

/// Runs the generator; `Ok(false)` when the check found a discrepancy.
pub async fn run(args: SimulateArgs) -> anyhow::Result<bool> {
    validate(&args)?;
    let broker = broker_of(&args)?;
    let duration = args
        .duration
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| anyhow!("--duration: {e}"))?;
    let settle = humantime::parse_duration(&args.settle).map_err(|e| anyhow!("--settle: {e}"))?;
    let sample_every = args
        .sample_every
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| anyhow!("--sample-every: {e}"))?;
    if sample_every.is_some_and(|d| d.is_zero()) {
        bail!("--sample-every must be longer than zero");
    }
    let live = sample_every.map(|_| Arc::new(Live::default()));
    let count = match (args.count, duration) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(100_000),
    };
    // Event ids must be new to the service's de-duplication on every run, even with the same seed.
    let run_tag = format!("r{:x}", Clock::System.now().timestamp_millis());
    let mut workload = Workload::new(&args, run_tag.clone())?;
    let leadrelay = !args.baseline && !args.publish_only;
    let services: Vec<String> = std::iter::once(args.http.clone())
        .chain(args.replica_http.iter().cloned())
        .collect();
    let mut processed_before = None;
    if leadrelay {
        if !args.no_load_targets {
            let started = Instant::now();
            let targets = workload.targets_json(args.seed);
            let loaded = targets.len();
            let base = args.http.clone();
            let token = args.token.clone();
            tokio::task::spawn_blocking(move || load_targets(&base, token.as_deref(), targets))
                .await
                .context("loading targets")??;
            eprintln!(
                "loaded {loaded} targets through {} in {:.1?}",
                args.http,
                started.elapsed()
            );
            for replica in &args.replica_http {
                wait_for_targets(replica, args.token.as_deref(), loaded).await?;
            }
        }
        processed_before = processed_by_all(&services, args.token.as_deref()).await;
    }
    let tags = Arc::new(Tags {
        run: run_tag.clone(),
        target_prefix: format!("sim-{}-", args.seed),
        sentinel: workload.sentinel(),
    });
    let progress = Arc::new(Progress::default());
    let t0 = Instant::now();
    let prefix = &args.topic_prefix;
    let subscriber = if args.publish_only {
        None
    } else {
        let filters: Vec<String> = if args.relay {
            vec![format!("{prefix}{RELAY_HEARD}")]
        } else if args.baseline {
            vec![format!("{prefix}sightings/#")]
        } else {
            [
                "dispatch/+/tasks",
                "dispatch/+/updates",
                "deadletter/sightings",
            ]
            .iter()
            .map(|f| format!("{prefix}{f}"))
            .collect()
        };
        Some(
            start_subscriber(
                &broker,
                &run_tag,
                filters,
                Recorders {
                    tags: tags.clone(),
                    progress: progress.clone(),
                    live: live.clone(),
                },
                t0,
            )
            .await?,
        )
    };

    let relay = if args.relay {
        Some(start_relay(&broker, &run_tag, prefix).await?)
    } else {
        None
    };

    // Publish.
    let mut opts = client_options(&broker, format!("leadrelay-sim-pub-{run_tag}"));
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(args.inflight);
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (client, eventloop) = AsyncClient::new(opts, 10_000);
    let acked = Arc::new(AtomicU64::new(0));
    let last_ack = Arc::new(AtomicU64::new(0));
    let pub_failed = Arc::new(Mutex::new(None::<String>));
    let (ready_tx, ready_rx) = oneshot::channel();
    let pub_loop = tokio::spawn(publisher_loop(
        eventloop,
        ready_tx,
        acked.clone(),
        last_ack.clone(),
        pub_failed.clone(),
        t0,
    ));
    wait_ready(ready_rx, &broker, "publisher").await?;
    let mut ledger: Vec<Sent> = Vec::new();
    let mut sent_at: Vec<Duration> = Vec::new();
    let started = Instant::now();
    let sampler = match (sample_every, &live) {
        (Some(every), Some(live)) => Some(Sampler::start(
            every,
            started,
            live.clone(),
            Watched {
                pid: args.watch_pid,
                http: leadrelay.then(|| args.http.clone()),
                token: args.token.clone(),
                to_stderr: args.json,
            },
        )),
        _ => None,
    };
    let mut outstanding = 0u64;
    loop {
        let seq = ledger.len() as u64;
        if count.is_some_and(|n| seq >= n) || duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(seq as f64 / args.rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if args.window > 0 && !args.publish_only {
            while outstanding - progress.received.load(Ordering::Acquire) > args.window {
                if let Some(e) = progress.failed.lock().map(|f| f.clone()).unwrap_or(None) {
                    bail!("subscriber: {e}");
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        let Some((topic, payload, sent)) = workload.next(seq) else {
            break;
        };
        let expects = match sent {
            Sent::Hit { .. } | Sent::Malformed => true,
            Sent::Miss | Sent::Duplicate => args.baseline,
        };
        outstanding += u64::from(expects);
        // Stamped before the publish: its receipt may be seen before this task runs again.
        let at = t0.elapsed();
        let hit = matches!(sent, Sent::Hit { .. });
        publish(&client, topic, payload, &pub_failed).await?;
        if let Some(live) = &live {
            live.sent(seq, at, hit);
        }
        sent_at.push(at);
        ledger.push(sent);
    }
    let seq = ledger.len() as u64;
    let (topic, payload, sent) = workload.sentinel_message(seq);
    let at = t0.elapsed();
    publish(&client, topic, payload, &pub_failed).await?;
    sent_at.push(at);
    ledger.push(sent);
    let total = ledger.len() as u64;
    while acked.load(Ordering::Acquire) < total {
        if let Some(e) = pub_failed.lock().map(|f| f.clone()).unwrap_or(None) {
            bail!("publisher: {e}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let publish_secs = Duration::from_nanos(last_ack.load(Ordering::Acquire)).as_secs_f64()
        - sent_at[0].as_secs_f64();
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), pub_loop).await;

    // Wait for the results: all expected ones, or until nothing arrives for `settle`.
    let expected = expected_receipts(&ledger, args.baseline);
    let mut receipts = Vec::new();
    // With replicas: when the last of them had handled every sighting.
    let mut all_handled_at = None;
    if let Some((sub_client, sub_task, stop)) = subscriber {
        let mut last = (progress.received.load(Ordering::Acquire), Instant::now());
        let mut replicas_pending = leadrelay && !args.replica_http.is_empty();
        // (handled so far, when last asked): unmatched sightings bring no result, so with
        // replicas progress is also read from their counters, every 20 ms.
        let mut handled: (u64, Option<Instant>) = (0, None);
        loop {
            let now = progress.received.load(Ordering::Acquire);
            if now != last.0 {
                last = (now, Instant::now());
            }
            if replicas_pending
                && handled
                    .1
                    .is_none_or(|at| at.elapsed() >= Duration::from_millis(20))
            {
                let after = processed_by_all(&services, args.token.as_deref()).await;
                let so_far = after
                    .zip(processed_before)
                    .map_or(0, |(a, b)| a.saturating_sub(b));
                if so_far >= total {
                    all_handled_at = Some(t0.elapsed());
                    replicas_pending = false;
                } else if so_far > handled.0 {
                    last.1 = Instant::now();
                }
                handled = (handled.0.max(so_far), Some(Instant::now()));
            }
            let done = progress.done_at.load(Ordering::Acquire) > 0;
            if (done && now >= expected && !replicas_pending) || last.1.elapsed() >= settle {
                break;
            }
            if let Some(e) = progress.failed.lock().map(|f| f.clone()).unwrap_or(None) {
                bail!("subscriber: {e}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A little longer, to see anything extra (a duplicate task would come right after).
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Release);
        let _ = sub_client.disconnect().await;
        receipts = tokio::time::timeout(Duration::from_secs(5), sub_task)
            .await
            .map_err(|_| anyhow!("subscriber did not stop"))?
            .map_err(|e| anyhow!("subscriber task failed: {e}"))?;
    }
    let samples = match sampler {
        Some(sampler) => sampler.finish().await,
        None => Vec::new(),
    };
    if let Some((relay_client, relay_tasks)) = relay {
        let _ = relay_client.disconnect().await;
        for task in relay_tasks {
            task.abort();
        }
    }
    let processed = match processed_before {
        Some(before) => processed_by_all(&services, args.token.as_deref())
            .await
            .map(|after| after.saturating_sub(before)),
        None => None,
    };

    let mut report = analyse(&ledger, &sent_at, &receipts, &progress, args.baseline);
    report.mode = if args.publish_only {
        "publish-only"
    } else if args.relay {
        "relay-baseline"
    } else if args.baseline {
        "baseline"
    } else {
        "leadrelay"
    };
    if leadrelay && !args.replica_http.is_empty() {
        // The end of a run split between replicas: its last result, or the moment the last
        // replica had handled its share, whichever came later.
        let last_result = Duration::from_nanos(progress.last_at.load(Ordering::Acquire));
        let end = last_result.max(all_handled_at.unwrap_or_default());
        let start = sent_at.first().copied().unwrap_or_default();
        report.e2e_secs = report.e2e_secs.max(end.saturating_sub(start).as_secs_f64());
    }
    report.publish_secs = publish_secs;
    report.publish_rate = total as f64 / publish_secs.max(1e-9);
    if args.publish_only {
        report = Report {
            mode: report.mode,
            sent: report.sent,
            misses: report.misses,
            hits: report.hits,
            fuzzy_hits: report.fuzzy_hits,
            duplicates: report.duplicates,
            malformed: report.malformed,
            publish_secs,
            publish_rate: report.publish_rate,
            ok: true,
            ..Report::default()
        };
        report.e2e_secs = publish_secs;
        report.throughput = report.publish_rate;
    } else if leadrelay {
        report.service_processed = processed;
        report.lost_before_service = processed.map(|p| total.saturating_sub(p));
        // What the service handled, not what was offered: dropped messages do not count.
        let handled = processed.unwrap_or(total).min(total);
        report.throughput = handled as f64 / report.e2e_secs.max(1e-9);
    }
    let within = args.flat_within.unwrap_or(DEFAULT_FLAT_PCT);
    let flat = flatness(&samples, within);
    if args.flat_within.is_some() && !flat.as_ref().is_some_and(|f| f.flat) {
        report.ok = false;
    }
    if args.json && sample_every.is_some() {
        let sampled = SampledReport {
            report: &report,
            samples: &samples,
            flatness: flat.as_ref(),
        };
        crate::outln!("{}", serde_json::to_string_pretty(&sampled)?);
    } else if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if sample_every.is_some() {
            print_summary(&samples, flat.as_ref(), within);
        }
        print_table(&report, &args);
    }
    Ok(report.ok)
}

fn validate(args: &SimulateArgs) -> anyhow::Result<()> {
    for (name, v) in [
        ("--hit-ratio", args.hit_ratio),
        ("--fuzzy-ratio", args.fuzzy_ratio),
        ("--duplicate-ratio", args.duplicate_ratio),
        ("--malformed-ratio", args.malformed_ratio),
        ("--outside-ratio", args.outside_ratio),
    ] {
        if !(0.0..=1.0).contains(&v) {
            bail!("{name} must be between 0 and 1, not {v}");
        }
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!("--rate must be 0 (as fast as possible) or a positive number");
    }
    if args
        .flat_within
        .is_some_and(|p| !(p.is_finite() && p >= 0.0))
    {
        bail!("--flat-within must be a percentage, 0 or more");
    }
    if args.targets == 0 {
        bail!("--targets must be at least 1");
    }
    if args.baseline && args.publish_only {
        bail!("--baseline and --publish-only exclude each other");
    }
    Ok(())
}

/// How many receipts a complete run produces.
fn expected_receipts(ledger: &[Sent], baseline: bool) -> u64 {
    if baseline {
        return ledger.len() as u64;
    }
    ledger
        .iter()
        .filter(|s| matches!(s, Sent::Hit { .. } | Sent::Malformed))
        .count() as u64
}
