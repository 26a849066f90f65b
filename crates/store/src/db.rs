//! Connection pools for both backends and the [`with_db!`] macro that runs one body of code on
//! whichever pool is configured.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use g2p_domain::{Clock, SystemClock};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::error::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Pools {
    /// SQLite allows one writer at a time. Every write goes through `write`, a pool of one
    /// connection, so writers queue in-process instead of failing with SQLITE_BUSY; reads use
    /// `read` and see WAL snapshots concurrently.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// The registry store. Cheap to clone; every clone shares the pools.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pools: Pools,
    /// "Now" for the job queue and schedules; the system clock unless a test moves it.
    pub(crate) clock: Arc<dyn Clock>,
}

/// Runs `$body` with `$p` bound to the pool used for writes (`write`) or reads (`read`). The body
/// is compiled once per backend, so it may use backend-specific types through inference.
#[macro_export]
macro_rules! with_db {
    ($store:expr, write, $p:ident => $body:expr) => {
        match $store.pools_ref() {
            $crate::db::PoolsRef::Sqlite { write: $p, .. } => $body,
            $crate::db::PoolsRef::Postgres($p) => $body,
        }
    };
    ($store:expr, read, $p:ident => $body:expr) => {
        match $store.pools_ref() {
            $crate::db::PoolsRef::Sqlite { read: $p, .. } => $body,
            $crate::db::PoolsRef::Postgres($p) => $body,
        }
    };
}

/// Borrowed view of the pools for [`with_db!`] (keeps `Pools` itself private).
pub enum PoolsRef<'a> {
    Sqlite {
        read: &'a SqlitePool,
        write: &'a SqlitePool,
    },
    Postgres(&'a PgPool),
}

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Connections in the pool (PostgreSQL) or readers (SQLite).
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

impl Store {
    pub fn pools_ref(&self) -> PoolsRef<'_> {
        match &self.pools {
            Pools::Sqlite { read, write } => PoolsRef::Sqlite { read, write },
            Pools::Postgres(p) => PoolsRef::Postgres(p),
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// The same store (sharing its pools) reading time from `clock`: tests pass a
    /// `ManualClock` to make jobs due, leases expire and schedules tick without sleeping.
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Store {
        Store { clock, ..self }
    }

    /// The store's reading of "now" (see [`Store::with_clock`]).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The PostgreSQL pool, for code that only exists there (COPY, advisory locks).
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.pools {
            Pools::Postgres(p) => Some(p),
            Pools::Sqlite { .. } => None,
        }
    }

    /// Connects to `sqlite://FILE` (created if missing) or `postgres://…`. Does not migrate.
    pub async fn connect(url: &str, opts: &ConnectOptions) -> Result<Self> {
        if url.starts_with("sqlite:") {
            let base = SqliteConnectOptions::from_str(url)
                .map_err(StoreError::Database)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30))
                // Odoo's `like` is case-sensitive (PostgreSQL LIKE); SQLite's is not by default.
                .pragma("case_sensitive_like", "ON");
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(opts.acquire_timeout.max(Duration::from_secs(60)))
                .connect_with(base.clone())
                .await?;
            let read = SqlitePoolOptions::new()
                .max_connections(opts.max_connections.max(1))
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(base.read_only(true))
                .await?;
            Ok(Store {
                pools: Pools::Sqlite { read, write },
                clock: Arc::new(SystemClock),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let o = PgConnectOptions::from_str(url).map_err(StoreError::Database)?;
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections.max(2))
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(o)
                .await?;
            Ok(Store {
                pools: Pools::Postgres(pool),
                clock: Arc::new(SystemClock),
            })
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }

    /// Applies pending migrations for this backend, then seeds reference data.
    pub async fn migrate(&self) -> Result<()> {
        match &self.pools {
            Pools::Sqlite { write, .. } => sqlx::migrate!("migrations/sqlite").run(write).await?,
            Pools::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await?,
        }
        self.seed_id_types().await
    }

    /// Connects and migrates: what `serve`, `worker` and the tests do at start-up.
    pub async fn open(url: &str, opts: &ConnectOptions) -> Result<Self> {
        let s = Self::connect(url, opts).await?;
        s.migrate().await?;
        Ok(s)
    }

    /// Cheap liveness query for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        with_db!(self, read, p => { sqlx::query("SELECT 1").execute(p).await?; });
        Ok(())
    }

    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(p) => p.close().await,
        }
    }
}

/// Hides a password inside a database URL, for messages and `Debug`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_password() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            super::redact_url("sqlite://g2p.sqlite"),
            "sqlite://g2p.sqlite"
        );
    }
}
