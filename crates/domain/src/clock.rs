//! The time source for every decision that depends on "now" (when a job is due, when a lease
//! expires, when a schedule ticks). Production reads the system clock; tests hold a
//! [`ManualClock`] and move it, so no test sleeps for time to pass.
//!
//! It owns only the reading of time. It must not wait or sleep: waiting for idleness (a poll
//! interval) stays with the caller's runtime.

use std::fmt::Debug;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// Where "now" comes from. Shared as `Arc<dyn Clock>` by the store and its job runner.
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock: `Utc::now()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until told to move: `set` jumps to an instant, `advance` moves
/// forward. Share it through an `Arc` between the test and the store it drives.
#[derive(Debug)]
pub struct ManualClock {
    // A Mutex rather than an atomic: DateTime has no lock-free representation, and contention
    // is nil (one test, a few readers).
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Jumps to `at` (backwards too: a test may replay a moment).
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// Moves forward by `by`, saturating at the largest representable instant.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = TimeDelta::from_std(by)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        // A poisoned lock only means a test panicked while setting the time; the value is
        // still a valid instant.
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;

    #[test]
    fn manual_clock_stands_still_until_moved() {
        let start = Utc
            .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let clock = Arc::new(ManualClock::new(start));
        let shared: Arc<dyn Clock> = clock.clone();
        assert_eq!(shared.now(), start);
        assert_eq!(shared.now(), start, "no drift between reads");
        clock.advance(Duration::from_millis(1500));
        assert_eq!(shared.now(), start + TimeDelta::milliseconds(1500));
        clock.set(start);
        assert_eq!(shared.now(), start);
        clock.set(DateTime::<Utc>::MAX_UTC);
        clock.advance(Duration::from_secs(1));
        assert_eq!(shared.now(), DateTime::<Utc>::MAX_UTC, "saturates");
    }

    #[test]
    fn system_clock_follows_utc_now() {
        let before = Utc::now();
        let read = SystemClock.now();
        assert!(before <= read && read <= Utc::now());
    }
}
