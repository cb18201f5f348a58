//! What came back: receipts decoded, compared with the ledger, and reported.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SimulateArgs;
use super::workload::Sent;

/// What the subscriber saw.
#[derive(Debug, Clone)]
pub(super) enum Got {
    /// A task: its target (ours, by number) and the sequence number of its sighting.
    Task {
        task_id: String,
        target: Option<u32>,
        seq: Option<u64>,
        nearest: bool,
    },
    Update {
        seq: Option<u64>,
    },
    Dead {
        seq: Option<u64>,
    },
    /// Baseline: a sighting delivered by the broker.
    Delivered {
        seq: Option<u64>,
    },
}

#[derive(Deserialize)]
pub(super) struct TaskMsg {
    #[serde(default)]
    task_id: String,
    target_id: String,
    routing: Option<String>,
    sighting: Option<SightingRefMsg>,
}

#[derive(Deserialize)]
pub(super) struct UpdateMsg {
    sighting: Option<SightingRefMsg>,
}

#[derive(Deserialize)]
pub(super) struct SightingRefMsg {
    event_id: String,
}

#[derive(Deserialize)]
pub(super) struct DeadMsg {
    payload: Option<String>,
}

/// Shared between the subscriber and the waiting loop.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) received: AtomicU64,
    /// Nanoseconds after the start when the sentinel's task (or the last delivery) arrived.
    pub(super) done_at: AtomicU64,
    /// Nanoseconds after the start of the last receipt of any kind.
    pub(super) last_at: AtomicU64,
    pub(super) failed: Mutex<Option<String>>,
}

/// Decodes receipts; knows this run's tags.
pub(super) struct Tags {
    pub(super) run: String,
    pub(super) target_prefix: String,
    pub(super) sentinel: u32,
}

impl Tags {
    pub(super) fn seq(&self, event_id: &str) -> Option<u64> {
        event_id
            .strip_prefix(self.run.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    /// The event id at the start of a raw sighting payload (ours always put it first).
    pub(super) fn seq_in_payload(&self, payload: &str) -> Option<u64> {
        let rest = payload.strip_prefix("{\"event_id\":\"")?;
        self.seq(&rest[..rest.find('"')?])
    }

    pub(super) fn classify(&self, topic: &str, payload: &[u8]) -> Option<Got> {
        if topic.ends_with("/tasks") {
            let t: TaskMsg = serde_json::from_slice(payload).ok()?;
            Some(Got::Task {
                task_id: t.task_id.clone(),
                target: t
                    .target_id
                    .strip_prefix(self.target_prefix.as_str())
                    .and_then(|n| n.parse().ok()),
                seq: t.sighting.and_then(|s| self.seq(&s.event_id)),
                nearest: t.routing.as_deref() == Some("nearest_court"),
            })
        } else if topic.ends_with("/updates") {
            let u: UpdateMsg = serde_json::from_slice(payload).ok()?;
            Some(Got::Update {
                seq: u.sighting.and_then(|s| self.seq(&s.event_id)),
            })
        } else if topic.ends_with("deadletter/sightings") {
            let d: DeadMsg = serde_json::from_slice(payload).ok()?;
            Some(Got::Dead {
                seq: d.payload.and_then(|p| self.seq_in_payload(&p)),
            })
        } else {
            let text = std::str::from_utf8(payload).ok()?;
            Some(Got::Delivered {
                seq: self.seq_in_payload(text),
            })
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub(super) fn of(mut ms: Vec<f64>) -> Latency {
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
        Latency {
            samples: ms.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Expected against received, per kind of outcome.
#[derive(Debug, Default, Serialize)]
pub struct Tally {
    pub expected: u64,
    pub received: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub unexpected: u64,
}

impl Tally {
    pub(super) fn ok(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && self.unexpected == 0
    }

    /// `counts[seq]` = receipts per sequence number; `expected(seq)` says which should get one.
    pub(super) fn of(counts: &[u32], extra: u64, expected: impl Fn(usize) -> bool) -> Tally {
        let mut t = Tally {
            unexpected: extra,
            ..Tally::default()
        };
        for (seq, &n) in counts.iter().enumerate() {
            t.received += u64::from(n);
            if expected(seq) {
                t.expected += 1;
                match n {
                    0 => t.missing += 1,
                    n => t.duplicated += u64::from(n - 1),
                }
            } else {
                t.unexpected += u64::from(n);
            }
        }
        t.received += extra;
        t
    }
}

/// The run's figures.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub sent: u64,
    pub misses: u64,
    pub hits: u64,
    pub fuzzy_hits: u64,
    pub outside_hits: u64,
    pub distinct_targets_hit: u64,
    pub duplicates: u64,
    pub malformed: u64,
    /// Until the broker acknowledged the last publish.
    pub publish_secs: f64,
    pub publish_rate: f64,
    /// Until the sentinel's task (leadrelay) or the last delivery (baseline) arrived.
    pub e2e_secs: f64,
    /// Messages handled per second end to end (by the service, or delivered by the broker).
    pub throughput: f64,
    /// Sightings the service counted (received + rejected) during the run, from /metrics.
    pub service_processed: Option<u64>,
    /// Sent but never handled: dropped on the way (e.g. a broker queue limit).
    pub lost_before_service: Option<u64>,
    pub tasks: Tally,
    pub updates: Tally,
    pub dead_letters: Tally,
    pub delivered: Tally,
    pub nearest_court_tasks: u64,
    pub expected_nearest_court_tasks: u64,
    /// Tasks received again under a known task id: moved to another court (reassignment).
    pub reassigned: u64,
    /// Messages under the prefix that were not from this run.
    pub foreign: u64,
    /// Publish → task receipt (leadrelay), publish → delivery (baseline).
    pub latency: Latency,
    pub sentinel_seen: bool,
    pub ok: bool,
}

/// Compares receipts with the ledger.
pub(super) fn analyse(
    ledger: &[Sent],
    sent_at: &[Duration],
    receipts: &[(Duration, Got)],
    progress: &Progress,
    baseline: bool,
) -> Report {
    let mut r = Report {
        sent: ledger.len() as u64,
        ..Report::default()
    };
    // Which hits are the first of their target: those expect a task, the rest an update.
    let mut first_hit = vec![false; ledger.len()];
    let mut seen_targets = std::collections::HashSet::new();
    for (seq, s) in ledger.iter().enumerate() {
        match *s {
            Sent::Miss => r.misses += 1,
            Sent::Duplicate => r.duplicates += 1,
            Sent::Malformed => r.malformed += 1,
            Sent::Hit {
                target,
                outside,
                fuzzy,
            } => {
                r.hits += 1;
                r.fuzzy_hits += u64::from(fuzzy);
                r.outside_hits += u64::from(outside);
                if seen_targets.insert(target) {
                    first_hit[seq] = true;
                    r.expected_nearest_court_tasks += u64::from(outside);
                }
            }
        }
    }
    r.distinct_targets_hit = seen_targets.len() as u64;
    let (mut tasks, mut updates, mut dead, mut delivered) = (
        vec![0u32; ledger.len()],
        vec![0u32; ledger.len()],
        vec![0u32; ledger.len()],
        vec![0u32; ledger.len()],
    );
    let (mut extra_tasks, mut extra_updates, mut extra_dead) = (0, 0, 0);
    // task id → the sighting (sequence number) it first came with.
    let mut seen_tasks: std::collections::HashMap<String, Option<u64>> =
        std::collections::HashMap::new();
    let mut latency = Vec::new();
    let ours = |seq: Option<u64>| seq.map(|s| s as usize).filter(|&s| s < ledger.len());
    for (at, got) in receipts {
        let at = *at;
        // The same task again for a later sighting: it moved to the court where the target
        // stayed (a reassignment after the dwell), not a second task. The same task for the same
        // sighting is a duplicate, counted as such below.
        if let Got::Task { task_id, seq, .. } = got {
            match seen_tasks.get(task_id) {
                Some(first) if first != seq => {
                    r.reassigned += 1;
                    continue;
                }
                Some(_) => {}
                None => {
                    seen_tasks.insert(task_id.clone(), *seq);
                }
            }
        }
        match got.clone() {
            Got::Task {
                target,
                seq,
                nearest,
                ..
            } => match (ours(seq), target) {
                (Some(seq), Some(target)) => {
                    let right = matches!(ledger[seq], Sent::Hit { target: t, .. } if t == target);
                    if right {
                        tasks[seq] += 1;
                        if tasks[seq] == 1 && first_hit[seq] {
                            latency.push(at.saturating_sub(sent_at[seq]).as_secs_f64() * 1e3);
                            r.nearest_court_tasks += u64::from(nearest);
                        }
                    } else {
                        extra_tasks += 1;
                    }
                }
                (None, Some(_)) | (Some(_), None) => extra_tasks += 1,
                (None, None) => r.foreign += 1,
            },
            Got::Update { seq } => match ours(seq) {
                Some(seq) => updates[seq] += 1,
                None if seq.is_some() => extra_updates += 1,
                None => r.foreign += 1,
            },
            Got::Dead { seq } => match ours(seq) {
                Some(seq) => dead[seq] += 1,
                None if seq.is_some() => extra_dead += 1,
                None => r.foreign += 1,
            },
            Got::Delivered { seq } => match ours(seq) {
                Some(seq) => {
                    delivered[seq] += 1;
                    if delivered[seq] == 1 {
                        latency.push(at.saturating_sub(sent_at[seq]).as_secs_f64() * 1e3);
                    }
                }
                None => r.foreign += 1,
            },
        }
    }
    let mut done_at = Duration::from_nanos(progress.done_at.load(Ordering::Acquire));
    r.sentinel_seen = done_at > Duration::ZERO;
    if !r.sentinel_seen {
        // The sentinel was lost: the last result is the best end we have.
        done_at = Duration::from_nanos(progress.last_at.load(Ordering::Acquire));
    }
    let start = sent_at.first().copied().unwrap_or_default();
    r.e2e_secs = done_at.saturating_sub(start).as_secs_f64();
    r.latency = Latency::of(latency);
    if baseline {
        // Re-sent messages are delivered again, under their original's sequence number.
        let delivered_total: u64 = delivered.iter().map(|&n| u64::from(n)).sum();
        r.delivered = Tally {
            expected: r.sent,
            received: delivered_total,
            missing: r.sent.saturating_sub(delivered_total),
            ..Tally::default()
        };
        r.throughput = delivered_total as f64 / r.e2e_secs.max(1e-9);
        r.ok = r.delivered.missing == 0 && delivered_total == r.sent;
        return r;
    }
    r.tasks = Tally::of(&tasks, extra_tasks, |seq| first_hit[seq]);
    r.updates = Tally::of(&updates, extra_updates, |seq| {
        matches!(ledger[seq], Sent::Hit { .. }) && !first_hit[seq]
    });
    r.dead_letters = Tally::of(&dead, extra_dead, |seq| ledger[seq] == Sent::Malformed);
    r.ok = r.tasks.ok()
        && r.updates.ok()
        && r.dead_letters.ok()
        && r.sentinel_seen
        && r.nearest_court_tasks == r.expected_nearest_court_tasks;
    r
}

pub(super) fn print_table(r: &Report, args: &SimulateArgs) {
    let rate = if args.rate > 0.0 {
        format!("{} msg/s", args.rate)
    } else {
        "max".into()
    };
    crate::outln!(
        "leadrelay simulate: {} mode, rate {rate}, seed {}",
        r.mode,
        args.seed
    );
    crate::outln!(
        "  sent            {:>10}  (misses {}, hits {} [fuzzy {}, outside {}, {} targets], duplicates {}, malformed {})",
        r.sent,
        r.misses,
        r.hits,
        r.fuzzy_hits,
        r.outside_hits,
        r.distinct_targets_hit,
        r.duplicates,
        r.malformed
    );
    crate::outln!(
        "  publish         {:>10.0} msg/s  ({:.2} s to the last PUBACK)",
        r.publish_rate,
        r.publish_secs
    );
    crate::outln!(
        "  end to end      {:>10.0} msg/s  ({:.2} s to the {})",
        r.throughput,
        r.e2e_secs,
        if r.mode == "leadrelay" {
            "sentinel's task"
        } else {
            "last delivery"
        }
    );
    if let (Some(p), Some(lost)) = (r.service_processed, r.lost_before_service) {
        crate::outln!("  service handled {p:>10}  (lost before the service: {lost})");
    }
    let row = |name: &str, t: &Tally| {
        crate::outln!(
            "  {name:<15} {:>10}  expected {}, missing {}, duplicated {}, unexpected {}",
            t.received,
            t.expected,
            t.missing,
            t.duplicated,
            t.unexpected
        )
    };
    if r.mode == "baseline" {
        row("delivered", &r.delivered);
    } else if r.mode == "leadrelay" {
        row("tasks", &r.tasks);
        row("updates", &r.updates);
        row("dead letters", &r.dead_letters);
        crate::outln!(
            "  nearest_court   {:>10}  expected {}",
            r.nearest_court_tasks,
            r.expected_nearest_court_tasks
        );
        crate::outln!(
            "  reassigned      {:>10}  (a task moved to the court where its target stayed)",
            r.reassigned
        );
    }
    if r.foreign > 0 {
        crate::outln!(
            "  foreign         {:>10}  (not from this run; ignored)",
            r.foreign
        );
    }
    let l = &r.latency;
    crate::outln!(
        "  latency (ms)    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  over {} {}",
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.max_ms,
        l.samples,
        if r.mode == "leadrelay" {
            "tasks"
        } else {
            "deliveries"
        }
    );
    crate::outln!("  result          {}", if r.ok { "OK" } else { "FAILED" });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::simulate::workload::sighting;
    use serde_json::json;

    #[test]
    fn receipts_trace_back_to_their_sequence_number() {
        let tags = Tags {
            run: "r1".into(),
            target_prefix: "sim-1-".into(),
            sentinel: 9,
        };
        let payload = sighting("r1-42", "浙B12345", 121.5, 29.8, "cam");
        assert_eq!(tags.seq_in_payload(&payload), Some(42));
        let dead = json!({"reason": "invalid_plate", "payload": payload}).to_string();
        assert!(matches!(
            tags.classify("p/deadletter/sightings", dead.as_bytes()),
            Some(Got::Dead { seq: Some(42) })
        ));
        let task = json!({"target_id": "sim-1-3", "routing": "nearest_court", "sighting": {"event_id": "r1-7"}});
        assert!(matches!(
            tags.classify("dispatch/cixi/tasks", task.to_string().as_bytes()),
            Some(Got::Task {
                target: Some(3),
                seq: Some(7),
                nearest: true,
                ..
            })
        ));
    }

    #[test]
    fn the_check_finds_missing_duplicated_and_extra_tasks() {
        let ledger = [
            Sent::Hit {
                target: 0,
                outside: false,
                fuzzy: false,
            },
            Sent::Hit {
                target: 0,
                outside: false,
                fuzzy: false,
            },
            Sent::Hit {
                target: 1,
                outside: false,
                fuzzy: false,
            },
            Sent::Malformed,
        ];
        let at = vec![Duration::from_millis(1); 4];
        let task = |target, seq| Got::Task {
            task_id: format!("task-{target}"),
            target: Some(target),
            seq: Some(seq),
            nearest: false,
        };
        let receipts = [
            (Duration::from_millis(3), task(0, 0)),
            (Duration::from_millis(4), task(0, 0)),
            (Duration::from_millis(5), Got::Update { seq: Some(1) }),
            (Duration::from_millis(6), task(1, 1)),
        ];
        let progress = Progress::default();
        progress.done_at.store(1, Ordering::Release);
        let r = analyse(&ledger, &at, &receipts, &progress, false);
        assert_eq!(
            (
                r.tasks.expected,
                r.tasks.duplicated,
                r.tasks.missing,
                r.tasks.unexpected
            ),
            (2, 1, 1, 1)
        );
        assert!(r.updates.ok());
        assert_eq!(r.dead_letters.missing, 1);
        assert!(!r.ok);
        assert_eq!(r.latency.samples, 1);
    }

    #[test]
    fn a_receipt_stamped_before_its_send_counts_with_zero_latency() {
        // On a busy machine the subscriber can stamp a delivery before the publisher's
        // stamp of the same message; that once panicked on Duration subtraction.
        let ledger = [Sent::Miss];
        let sent_at = [Duration::from_millis(5)];
        let receipts = [(Duration::from_millis(4), Got::Delivered { seq: Some(0) })];
        let progress = Progress::default();
        progress.done_at.store(4_000_000, Ordering::Release);
        let r = analyse(&ledger, &sent_at, &receipts, &progress, true);
        assert!(r.ok);
        assert_eq!((r.latency.samples, r.latency.max_ms), (1, 0.0));
    }
}
