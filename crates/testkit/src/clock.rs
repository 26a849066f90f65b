//! The movable clock tests hand to a store ([`TestStore::with_clock`](crate::TestStore)), so
//! that jobs become due, leases expire and schedules tick when the test says, not after a
//! sleep.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
pub use g2p_domain::{Clock, ManualClock, SystemClock};

/// Where every [`manual_clock`] starts: a fixed instant, so a failure replays identically. A
/// whole second, so values stored by PostgreSQL (microseconds) and SQLite (text) compare
/// equal to the clock's readings.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// A new manual clock standing at [`epoch`].
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(epoch()))
}
