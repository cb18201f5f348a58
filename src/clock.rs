//! Where every "now" comes from: the system clock in service, a manual clock in tests, so
//! that cooldowns, expiry, deadlines and dwell times can be crossed without waiting.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// The time source shared by every part of a running service.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The operating system's wall clock.
    #[default]
    System,
    /// A clock that moves only when told to (tests).
    Manual(ManualClock),
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// Waits until the clock reads `at` or later, but no longer than `at_most` of real time,
    /// so a caller that re-reads its deadlines still does so regularly. A manual clock wakes
    /// the waiter as soon as it is moved past `at`.
    pub async fn sleep_until(&self, at: DateTime<Utc>, at_most: Duration) {
        match self {
            Clock::System => {
                let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                tokio::time::sleep(wait.min(at_most)).await;
            }
            Clock::Manual(m) => {
                let mut moved = m.time.subscribe();
                let reached = async {
                    while *moved.borrow_and_update() < at {
                        if moved.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                };
                tokio::select! {
                    _ = reached => {}
                    _ = tokio::time::sleep(at_most) => {}
                }
            }
        }
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Clock {
        Clock::Manual(manual)
    }
}

/// A clock that stands still until advanced; clones share one time, across threads.
#[derive(Clone, Debug)]
pub struct ManualClock {
    time: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            time: Arc::new(watch::Sender::new(start)),
        }
    }

    /// A manual clock that starts at the system time, so timestamps written by other
    /// clients (cameras, tests) stay plausible next to it.
    pub fn starting_now() -> ManualClock {
        ManualClock::new(Utc::now())
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.time.borrow()
    }

    /// Moves the clock forward by `by`; whoever waits on it re-checks at once.
    pub fn advance(&self, by: chrono::Duration) {
        self.time.send_modify(|t| *t += by);
    }

    pub fn set(&self, at: DateTime<Utc>) {
        self.time.send_replace(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::starting_now();
        let shared: Clock = clock.clone().into();
        let start = shared.now();
        assert_eq!(shared.now(), start);
        clock.advance(chrono::Duration::seconds(90));
        assert_eq!(shared.now(), start + chrono::Duration::seconds(90));
        clock.set(start);
        assert_eq!(shared.now(), start);
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_manual_clock_passes_its_deadline() {
        let clock = ManualClock::starting_now();
        let shared: Clock = clock.clone().into();
        let at = clock.now() + chrono::Duration::hours(1);
        let waiter = tokio::spawn(async move {
            shared.sleep_until(at, Duration::from_secs(600)).await;
        });
        tokio::task::yield_now().await;
        clock.advance(chrono::Duration::minutes(30));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        clock.advance(chrono::Duration::minutes(31));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the advance")
            .unwrap();
    }

    #[tokio::test]
    async fn a_wait_is_bounded_in_real_time() {
        let clock: Clock = ManualClock::starting_now().into();
        let far = clock.now() + chrono::Duration::days(1);
        tokio::time::timeout(
            Duration::from_secs(5),
            clock.sleep_until(far, Duration::from_millis(10)),
        )
        .await
        .expect("returns after at_most");
    }
}
