//! Housekeeping, once a second: target edits made elsewhere (another replica, `targets
//! import`) reach the live hotlist, the gauges are refreshed, and processed event ids past
//! their retention are purged.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::{App, consolidation};
use crate::contract::model::Target;
use crate::matching::targets::LiveTargets;
use crate::metrics;
use crate::store::{Retention, Store, StoreError};

/// How long after its `updated_at` an edit may still become visible (its transaction commits
/// after it stamped the row, or on a replica whose clock runs a little behind).
const REFRESH_OVERLAP_MS: i64 = 1_000;

/// Where the hotlist refresh reads from. Edits stamped after the newest one seen are new;
/// those stamped before it may still commit late (up to [`REFRESH_OVERLAP_MS`] after their
/// stamp), so the read goes back to the last instant by which everything stamped earlier had
/// surely committed before a read began, and no further: an edit stamped at or before
/// `settled` committed before a read that looked at it.
///
/// Each edit is read back as a possibly late one only until a read begins an overlap after
/// its stamp. Before, the read went back a whole overlap on every tick for three seconds
/// after the newest edit: after a bulk import of 60,000 targets the ticks read 40,000 +
/// 60,000 + 60,000 + 60,000 rows (60–110 ms each while the 100%-hit benchmark ran), now
/// 32,000 + 60,000 + 28,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RefreshWindow {
    /// The newest `updated_at` a read returned (epoch ms).
    newest_seen: i64,
    /// Every edit stamped at or before this has been read (epoch ms).
    settled: i64,
}

impl RefreshWindow {
    /// A window for a replica whose hotlist holds what a read begun at `loaded_at` found.
    fn new(loaded_at: i64) -> RefreshWindow {
        RefreshWindow {
            newest_seen: loaded_at - REFRESH_OVERLAP_MS,
            settled: loaded_at - REFRESH_OVERLAP_MS,
        }
    }

    /// The next read returns the edits stamped after this.
    fn start(&self) -> i64 {
        self.newest_seen.min(self.settled)
    }

    /// After a read from [`start`](Self::start) that began at `began_at` and returned edits up
    /// to `newest` (none: `None`).
    fn advance(&mut self, began_at: i64, newest: Option<i64>) {
        self.newest_seen = self.newest_seen.max(newest.unwrap_or(i64::MIN));
        self.settled = self.settled.max(began_at - REFRESH_OVERLAP_MS);
    }
}

/// The targets changed after `from` whose version `targets` has not applied, with the newest
/// `updated_at` seen (applied or not).
async fn refresh_targets(
    store: &Store,
    from: i64,
    targets: &LiveTargets,
) -> Result<(Option<i64>, Vec<(i64, Target)>), StoreError> {
    let versions = store.target_versions_since(from).await?;
    let newest = versions.iter().map(|(_, at)| *at).max();
    let wanted = targets.unapplied(&versions);
    if wanted.is_empty() {
        return Ok((newest, Vec::new()));
    }
    Ok((newest, store.targets_with_ids(&wanted).await?))
}

/// How often closed tasks are checked against their retention, by the service's clock.
const RETENTION_EVERY: chrono::Duration = chrono::Duration::hours(1);

/// Picks up target edits made elsewhere (another replica, `targets import`) since the hotlist
/// was loaded (a read begun at `loaded_at`, epoch ms), refreshes gauges, and purges processed
/// event ids past their retention and closed tasks past theirs.
pub async fn run(
    app: App,
    loaded_at: i64,
    retention: Duration,
    task_retention: Retention,
    stop: CancellationToken,
) {
    let (store, targets) = (app.store.clone(), app.targets.clone());
    // By the service's clock, so that a test's manual clock drives it like the deadlines.
    let mut retention_due = app.now();
    let mut window = RefreshWindow::new(loaded_at);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    let mut reported_courts: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        ticks += 1;
        // Versions first: one already applied (same target, same updated_at) is not
        // fetched again, so the overlap costs a read of ids, not of whole targets.
        let began_at = app.now().timestamp_millis();
        let refreshed = refresh_targets(&store, window.start(), &targets);
        match store.bounded(refreshed).await {
            Ok((newest, fresh)) => {
                window.advance(began_at, newest);
                // The next read returns nothing at or before its start.
                targets.forget_versions_before(window.start());
                if !fresh.is_empty() {
                    let links =
                        targets.apply_versioned(fresh.into_iter().map(|(at, t)| (Some(at), t)));
                    if let Err(e) = consolidation::propose(&app, links).await {
                        tracing::warn!(error = %e, "could not propose a consolidation");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read target changes"),
        }
        if ticks % 5 == 1 {
            if let Ok(open) = store.bounded(store.open_tasks_by_court()).await {
                // Courts whose last open task closed drop to zero rather than go stale.
                for court in reported_courts.drain() {
                    if !open.iter().any(|(c, _)| *c == court) {
                        metrics::set_open_tasks(&court, 0);
                    }
                }
                for (court, n) in open {
                    metrics::set_open_tasks(&court, n);
                    reported_courts.insert(court);
                }
            }
            // Here, not on acknowledgements: while the broker is away none arrive, and the
            // backlog this gauge is for would go unreported.
            if let Ok(n) = store.bounded(store.outbox_pending_count()).await {
                metrics::set_outbox_pending(n);
            }
            for (kind, n) in targets.active_counts() {
                metrics::set_targets(kind, n);
            }
        }
        if app.now() >= retention_due {
            retention_due = app.now() + RETENTION_EVERY;
            // Not bounded as a whole: each chunk is.
            match store.apply_retention(app.now(), &task_retention).await {
                Ok(p) if p.reduced + p.deleted > 0 => tracing::info!(
                    reduced = p.reduced,
                    deleted = p.deleted,
                    "closed tasks past their retention reduced or deleted"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not apply the task retention"),
            }
            match store.apply_audit_retention(task_retention.audit_days).await {
                Ok(n) if n > 0 => {
                    tracing::info!(deleted = n, "audit rows past their retention deleted")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not apply the audit retention"),
            }
            match store.purge_events(app.now() - task_retention.events).await {
                Ok(n) if n > 0 => {
                    tracing::info!(
                        deleted = n,
                        "console stream events past their retention deleted"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not apply the event retention"),
            }
        }
        if ticks % 3600 == 1 {
            let cutoff = app.now()
                - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
            // Not bounded as a whole: a long backlog takes many chunks (each one is).
            match store.purge_processed_before(cutoff).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "old processed event ids purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not purge processed event ids"),
            }
            if let Err(e) = store.truncate_journal().await {
                tracing::warn!(error = %e, "could not truncate the SQLite WAL");
            }
        }
    }
}

/// Longest a database probe waits for its answer, as `/readyz` does.
const DATABASE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Pings the database every second and sets `leadrelay_database_up`, until `stop`. A task of
/// its own: the housekeeping loop can wait up to the operation timeout on a database that
/// stopped answering, and the gauge must fall within seconds, not after it.
pub async fn watch_database(store: Store, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let up = tokio::time::timeout(DATABASE_PROBE_TIMEOUT, store.ping()).await;
        metrics::set_database_up(matches!(up, Ok(Ok(()))));
    }
}

#[cfg(test)]
mod tests {
    use super::{REFRESH_OVERLAP_MS, RefreshWindow};

    const L: i64 = REFRESH_OVERLAP_MS;

    #[test]
    fn the_refresh_rereads_an_edit_until_it_has_surely_committed() {
        let loaded = 1_000_000;
        let mut w = RefreshWindow::new(loaded);
        assert_eq!(w.start(), loaded - L);
        // A read during a bulk import stamped from `loaded + 100` on: newest seen moves, and
        // what was stamped before the read began minus the overlap is settled.
        w.advance(loaded + 500, Some(loaded + 400));
        assert_eq!(w.start(), loaded + 500 - L);
        // The next read, a second later, still goes back: edits stamped up to the newest one
        // seen may commit until an overlap after their stamps.
        w.advance(loaded + 1_500, Some(loaded + 800));
        assert_eq!(w.start(), loaded + 500);
        // Once a read began an overlap after the newest edit, only newer edits are read.
        w.advance(loaded + 2_500, None);
        assert_eq!(w.start(), loaded + 800);
        w.advance(loaded + 3_500, None);
        assert_eq!(w.start(), loaded + 800);
    }

    #[test]
    fn an_edit_committed_late_is_read_by_the_next_read() {
        let mut w = RefreshWindow::new(0);
        // A read begun at 10_000 returns edits up to 9_900; an edit stamped 9_850 commits
        // after it began (within the overlap of its stamp).
        w.advance(10_000, Some(9_900));
        assert!(w.start() < 9_850, "the next read returns it");
        // That next read began at 11_000, more than an overlap after 9_850: the edit had
        // committed by then, so later reads need not go back that far.
        w.advance(11_000, None);
        assert_eq!(w.start(), 9_900);
    }

    #[test]
    fn a_quiet_replica_reads_only_new_edits() {
        let mut w = RefreshWindow::new(0);
        for tick in 1..5 {
            w.advance(tick * 1_000, None);
        }
        assert_eq!(w.start(), -L, "nothing seen: from the load on");
        w.advance(5_000, Some(4_990));
        w.advance(6_000, None);
        assert_eq!(w.start(), 4_990);
    }
}
