//! `--sample-every`: one row per interval while the run goes — what was sent and what came
//! back in that interval, its latency, and the service's RSS, open fds and outbox backlog —
//! so a long run shows whether anything grows, not only how it ended.
//!
//! The publisher and the subscriber report to a shared [`Live`]; a sampler task closes an
//! interval at each tick and reads the service's `/proc/PID` and `/metrics` right then.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;

use crate::metrics::OUTBOX_PENDING;

use super::analysis::Latency;
use super::service_api::http;

/// What the publisher and the subscriber tell the sampler as the run goes.
#[derive(Default)]
pub(super) struct Live {
    sent: AtomicU64,
    hits: AtomicU64,
    book: Mutex<Book>,
}

/// The receipts side of the current interval, and the hits still waiting for theirs.
#[derive(Default)]
struct Book {
    /// Send time of each hit whose task or update has not come back yet.
    awaiting: HashMap<u64, Duration>,
    tasks: u64,
    updates: u64,
    latencies_ms: Vec<f64>,
}

/// A receipt as the sampler needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Receipt {
    Task,
    Update,
}

/// One closed interval's counts, before the service's figures are added.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Counts {
    pub(super) sent: u64,
    pub(super) hits: u64,
    pub(super) tasks: u64,
    pub(super) updates: u64,
    pub(super) latency: Option<(f64, f64)>,
}

impl Live {
    /// A message went out at `at` (since the run's start); a hit's result will be timed.
    pub(super) fn sent(&self, seq: u64, at: Duration, hit: bool) {
        self.sent.fetch_add(1, Ordering::AcqRel);
        if hit {
            self.hits.fetch_add(1, Ordering::AcqRel);
            if let Ok(mut book) = self.book.lock() {
                book.awaiting.insert(seq, at);
            }
        }
    }

    /// A task or update for sighting `seq` came back at `at`. Only the first receipt of a hit
    /// is timed: a duplicate is counted, not timed again. Receipts of other runs (no sequence
    /// number of this one) are not counted.
    pub(super) fn received(&self, kind: Receipt, seq: Option<u64>, at: Duration) {
        let (Some(seq), Ok(mut book)) = (seq, self.book.lock()) else {
            return;
        };
        match kind {
            Receipt::Task => book.tasks += 1,
            Receipt::Update => book.updates += 1,
        }
        if let Some(sent_at) = book.awaiting.remove(&seq) {
            book.latencies_ms
                .push(at.saturating_sub(sent_at).as_secs_f64() * 1e3);
        }
    }

    /// Closes the current interval: its counts since `before` (the cumulative sent and hits
    /// at the previous close), and the cumulative figures for the next close.
    pub(super) fn close(&self, before: (u64, u64)) -> (Counts, (u64, u64)) {
        let now = (
            self.sent.load(Ordering::Acquire),
            self.hits.load(Ordering::Acquire),
        );
        let (tasks, updates, latencies) = match self.book.lock() {
            Ok(mut book) => (
                std::mem::take(&mut book.tasks),
                std::mem::take(&mut book.updates),
                std::mem::take(&mut book.latencies_ms),
            ),
            Err(_) => (0, 0, Vec::new()),
        };
        let latency = (!latencies.is_empty()).then(|| {
            let l = Latency::of(latencies);
            (l.p50_ms, l.p99_ms)
        });
        let counts = Counts {
            sent: now.0 - before.0,
            hits: now.1 - before.1,
            tasks,
            updates,
            latency,
        };
        (counts, now)
    }
}

/// One row of the sampling table.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since publishing began, at the interval's end.
    pub elapsed_secs: f64,
    pub sent: u64,
    pub hits: u64,
    pub tasks: u64,
    pub updates: u64,
    /// Publish → task or update, over the interval's first receipts of hits.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub rss_kib: Option<u64>,
    /// The anonymous part of `rss_kib` (`RssAnon`): the process's own heap, without the
    /// file pages it maps (SQLite reads its database through a memory map, whose resident
    /// pages grow with the database, not with a leak).
    pub rss_anon_kib: Option<u64>,
    pub fds: Option<u64>,
    /// The service's `leadrelay_outbox_pending`: written, not yet published.
    pub outbox_pending: Option<f64>,
}

/// RSS and open fds at the first and the last interval.
#[derive(Debug, Clone, Serialize)]
pub struct Flatness {
    pub rss_first_kib: u64,
    pub rss_last_kib: u64,
    pub rss_change_pct: f64,
    pub fds_first: u64,
    pub fds_last: u64,
    pub fds_change_pct: f64,
    pub within_pct: f64,
    /// Neither grew by more than `within_pct`. A fall is no leak: the first interval still
    /// holds the start's peak (the targets' load and the hotlist's build).
    pub flat: bool,
}

/// Compares the first and the last row; `None` when there are fewer than two rows or a row
/// lacks the figures (no `--watch-pid`, or the process went away).
pub fn flatness(rows: &[Sample], within_pct: f64) -> Option<Flatness> {
    let (first, last) = match rows {
        [first, .., last] => (first, last),
        _ => return None,
    };
    let change = |a: u64, b: u64| (b as f64 - a as f64) / (a.max(1) as f64) * 100.0;
    let (rss_first_kib, rss_last_kib) = (first.rss_kib?, last.rss_kib?);
    let (fds_first, fds_last) = (first.fds?, last.fds?);
    let rss_change_pct = change(rss_first_kib, rss_last_kib);
    let fds_change_pct = change(fds_first, fds_last);
    Some(Flatness {
        rss_first_kib,
        rss_last_kib,
        rss_change_pct,
        fds_first,
        fds_last,
        fds_change_pct,
        within_pct,
        flat: rss_change_pct <= within_pct && fds_change_pct <= within_pct,
    })
}

/// A `kB` field (`VmRSS`, `RssAnon`) in KiB from the text of `/proc/PID/status`.
pub(super) fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// The process's resident set and its anonymous part, from `/proc/PID/status`.
pub(super) fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((
        status_kib(&status, "VmRSS")?,
        status_kib(&status, "RssAnon")?,
    ))
}

/// The process's open file descriptors: the entries of `/proc/PID/fd`.
pub(super) fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// An unlabelled gauge's value from a Prometheus text exposition.
pub(super) fn gauge(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let value = l.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// What the sampler reads besides the generator's own counts.
#[derive(Clone)]
pub(super) struct Watched {
    pub(super) pid: Option<u32>,
    /// The service's HTTP base URL, for its `/metrics`; `None` when no service is in the path.
    pub(super) http: Option<String>,
    /// The bearer token `/metrics` needs (`ops` or `admin`).
    pub(super) token: Option<String>,
    /// Rows to stderr (the report is JSON on stdout) rather than stdout.
    pub(super) to_stderr: bool,
}

/// A running sampler: stop it to get its rows.
pub(super) struct Sampler {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Samples every `every` from `start` (when publishing began) until stopped.
    pub(super) fn start(
        every: Duration,
        start: Instant,
        live: Arc<Live>,
        watched: Watched,
    ) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at((start + every).into(), every);
            let mut rows = Vec::new();
            let mut before = (0, 0);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = &mut stopped => break,
                }
                let elapsed_secs = start.elapsed().as_secs_f64();
                let (counts, now) = live.close(before);
                before = now;
                let row = sample(elapsed_secs, counts, &watched).await;
                print_row(&row, rows.is_empty(), watched.to_stderr);
                rows.push(row);
            }
            rows
        });
        Sampler { stop, task }
    }

    pub(super) async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

async fn sample(elapsed_secs: f64, counts: Counts, watched: &Watched) -> Sample {
    // The process first: the metrics request itself opens a connection to the service.
    let rss = watched.pid.and_then(rss_kib);
    let fds = watched.pid.and_then(open_fds);
    let outbox_pending = match watched.http.clone() {
        Some(base) => {
            let token = watched.token.clone();
            tokio::task::spawn_blocking(move || {
                http(&base, token.as_deref(), "GET", "/metrics", b"")
            })
            .await
            .ok()
            .and_then(Result::ok)
            .filter(|(status, _)| *status == 200)
            .and_then(|(_, text)| gauge(&text, OUTBOX_PENDING))
        }
        None => None,
    };
    Sample {
        elapsed_secs,
        sent: counts.sent,
        hits: counts.hits,
        tasks: counts.tasks,
        updates: counts.updates,
        p50_ms: counts.latency.map(|l| l.0),
        p99_ms: counts.latency.map(|l| l.1),
        rss_kib: rss.map(|r| r.0),
        rss_anon_kib: rss.map(|r| r.1),
        fds,
        outbox_pending,
    }
}

fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn row_text(r: &Sample) -> String {
    format!(
        "| {:>7.0} | {:>8} | {:>6} | {:>6} | {:>7} | {:>7} | {:>7} | {:>8} | {:>8} | {:>5} | {:>6} |",
        r.elapsed_secs,
        r.sent,
        r.hits,
        r.tasks,
        r.updates,
        or_dash(r.p50_ms.map(|v| format!("{v:.2}"))),
        or_dash(r.p99_ms.map(|v| format!("{v:.2}"))),
        or_dash(r.rss_kib.map(|k| format!("{:.1}", k as f64 / 1024.0))),
        or_dash(r.rss_anon_kib.map(|k| format!("{:.1}", k as f64 / 1024.0))),
        or_dash(r.fds),
        or_dash(r.outbox_pending),
    )
}

const HEADER: &str = "| elapsed s |     sent |   hits |  tasks | updates | p50 ms | p99 ms | RSS MiB | anon MiB |   fds | outbox |\n|---|---|---|---|---|---|---|---|---|---|---|";

fn print_row(r: &Sample, first: bool, to_stderr: bool) {
    let text = if first {
        format!("{HEADER}\n{}", row_text(r))
    } else {
        row_text(r)
    };
    if to_stderr {
        eprintln!("{text}");
    } else {
        crate::outln!("{text}");
    }
}

/// The whole table again (after the report) and the verdict on RSS and fds.
pub(super) fn print_summary(rows: &[Sample], flat: Option<&Flatness>, within_pct: f64) {
    crate::outln!("  samples ({} intervals):", rows.len());
    crate::outln!("{HEADER}");
    for r in rows {
        crate::outln!("{}", row_text(r));
    }
    match flat {
        Some(f) => crate::outln!(
            "  first → last interval: RSS {:.1} → {:.1} MiB ({:+.1}%), fds {} → {} ({:+.1}%): {}",
            f.rss_first_kib as f64 / 1024.0,
            f.rss_last_kib as f64 / 1024.0,
            f.rss_change_pct,
            f.fds_first,
            f.fds_last,
            f.fds_change_pct,
            if f.flat {
                format!("flat (neither grew more than {within_pct}%)")
            } else {
                format!("GREW (more than {within_pct}%)")
            }
        ),
        None => crate::outln!(
            "  first → last interval: no verdict (fewer than two intervals, or no --watch-pid figures)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_interval_counts_only_what_happened_since_the_last_close() {
        let live = Live::default();
        live.sent(0, ms(0), false);
        live.sent(1, ms(10), true);
        live.sent(2, ms(20), true);
        live.received(Receipt::Task, Some(1), ms(15));
        let (first, before) = live.close((0, 0));
        assert_eq!(
            first,
            Counts {
                sent: 3,
                hits: 2,
                tasks: 1,
                updates: 0,
                latency: Some((5.0, 5.0)),
            }
        );
        // The second hit's update comes back in the next interval, timed from its send;
        // a duplicate of the first task is counted but not timed again.
        live.sent(3, ms(30), false);
        live.received(Receipt::Update, Some(2), ms(60));
        live.received(Receipt::Task, Some(1), ms(61));
        let (second, before) = live.close(before);
        assert_eq!(
            second,
            Counts {
                sent: 1,
                hits: 0,
                tasks: 1,
                updates: 1,
                latency: Some((40.0, 40.0)),
            }
        );
        live.received(Receipt::Task, None, ms(70));
        let (empty, _) = live.close(before);
        assert_eq!(empty, Counts::default());
    }

    #[test]
    fn percentiles_of_an_interval_are_of_its_own_receipts() {
        let live = Live::default();
        for seq in 0..100 {
            live.sent(seq, ms(0), true);
            live.received(Receipt::Task, Some(seq), ms(seq + 1));
        }
        let (counts, _) = live.close((0, 0));
        assert_eq!(counts.latency, Some((50.0, 99.0)));
        assert_eq!((counts.sent, counts.hits, counts.tasks), (100, 100, 100));
    }

    #[test]
    fn vm_rss_is_read_from_proc_status() {
        let text = "Name:\tleadrelay\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(status_kib(text, "VmRSS"), Some(12345));
        assert_eq!(status_kib(text, "VmPeak"), Some(900));
        assert_eq!(status_kib(text, "VmRS"), None);
        assert_eq!(status_kib("Name:\tx\n", "VmRSS"), None);
        assert_eq!(status_kib("VmRSS:\tmany kB\n", "VmRSS"), None);
    }

    #[test]
    fn this_process_rss_grows_with_memory_it_touches() {
        let pid = std::process::id();
        let (before, anon_before) = rss_kib(pid).expect("own VmRSS and RssAnon");
        assert!(before >= anon_before && anon_before > 0);
        // 64 MiB written, so every page is resident.
        let block = vec![1u8; 64 << 20];
        let (after, anon_after) = rss_kib(pid).expect("own VmRSS and RssAnon");
        // Not the difference: the other tests of this process allocate and free meanwhile,
        // so only what the block alone guarantees is checked.
        assert!(
            after >= 64 << 10 && anon_after >= 64 << 10 && after >= anon_after,
            "RSS {before} → {after} KiB, anon {anon_before} → {anon_after} KiB with 64 MiB touched"
        );
        assert_eq!(block.iter().map(|&b| u64::from(b)).sum::<u64>(), 64 << 20);
    }

    #[test]
    fn this_process_fds_count_the_files_it_holds_open() {
        let pid = std::process::id();
        let before = open_fds(pid).expect("own /proc/PID/fd");
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<_> = (0..100)
            .map(|i| std::fs::File::create(dir.path().join(i.to_string())).unwrap())
            .collect();
        let after = open_fds(pid).unwrap();
        // Other tests of this binary open and close files at the same time: a little slack.
        assert!(
            after >= before + 90,
            "fds {before} → {after} with 100 files open"
        );
        drop(files);
        assert_eq!(open_fds(u32::MAX), None);
        assert_eq!(rss_kib(u32::MAX), None);
    }

    #[test]
    fn the_outbox_gauge_is_found_by_its_exact_name() {
        let text = "# TYPE leadrelay_outbox_pending gauge\nleadrelay_outbox_pending_x 9\nleadrelay_outbox_pending 42\n";
        assert_eq!(gauge(text, OUTBOX_PENDING), Some(42.0));
        assert_eq!(
            gauge("leadrelay_outbox_pending_x 9\n", OUTBOX_PENDING),
            None
        );
    }

    fn row(rss: u64, fds: u64) -> Sample {
        Sample {
            elapsed_secs: 60.0,
            sent: 0,
            hits: 0,
            tasks: 0,
            updates: 0,
            p50_ms: None,
            p99_ms: None,
            rss_kib: Some(rss),
            rss_anon_kib: Some(rss),
            fds: Some(fds),
            outbox_pending: None,
        }
    }

    #[test]
    fn flatness_compares_the_first_and_the_last_interval() {
        let flat = flatness(
            &[row(100_000, 20), row(500_000, 90), row(109_000, 22)],
            10.0,
        )
        .unwrap();
        assert!(flat.flat, "{flat:?}");
        assert!((flat.rss_change_pct - 9.0).abs() < 1e-9);
        let grown = flatness(&[row(100_000, 20), row(111_000, 20)], 10.0).unwrap();
        assert!(!grown.flat);
        let more_fds = flatness(&[row(100_000, 20), row(100_000, 23)], 10.0).unwrap();
        assert!(!more_fds.flat);
        let fallen = flatness(&[row(100_000, 20), row(50_000, 10)], 10.0).unwrap();
        assert!(fallen.flat, "{fallen:?}");
        assert!(flatness(&[row(1, 1)], 10.0).is_none());
        let mut gone = row(1, 1);
        gone.rss_kib = None;
        assert!(flatness(&[row(1, 1), gone], 10.0).is_none());
    }
}
