//! Test support for the g2p workspace, dev-only (`publish = false`, only ever a
//! dev-dependency): throwaway stores on both backends that remove their databases, a clock the
//! tests move instead of sleeping, waits on conditions with deadlines, and log capture.
//!
//! It must never become a dependency of a product crate: it panics on set-up failures, because
//! a test that cannot get its database must fail loudly rather than pass.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod clock;
pub mod db;
pub mod logs;
pub mod schema;
pub mod wait;

pub use clock::{Clock, ManualClock, SystemClock, epoch, manual_clock};
pub use db::{
    DEFAULT_PG_URL, PgDatabase, TestStore, backends, pg_database_url, pg_store, sqlite_store,
};
pub use wait::{DEFAULT_DEADLINE, wait_until};
