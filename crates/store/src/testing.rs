//! Throwaway stores for tests on both backends: a fresh SQLite file and a fresh PostgreSQL
//! database on the running server (`G2P_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! When PostgreSQL cannot be reached the PostgreSQL half is skipped with a message, unless
//! `G2P_REQUIRE_PG=1` (set by CI), in which case the test fails: the suite is never silently
//! skipped there.
//!
//! Test support only: it panics on set-up failures, because a test that cannot get its database
//! must fail loudly rather than pass.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use crate::db::{ConnectOptions, Store};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn unique_name() -> String {
    format!("g2p_test_{}", uuid::Uuid::new_v4().simple())
}

/// A migrated store on a new SQLite file in the temp directory.
pub async fn sqlite_store() -> Store {
    let path = std::env::temp_dir().join(format!("{}.sqlite", unique_name()));
    let url = format!("sqlite://{}", path.display());
    match Store::open(&url, &ConnectOptions::default()).await {
        Ok(s) => s,
        Err(e) => panic!("cannot open test SQLite store at {url}: {e}"),
    }
}

/// The URL of a new, empty, migrated PostgreSQL database, or `None` when PostgreSQL is not
/// reachable and not required.
pub async fn pg_database_url() -> Option<String> {
    let admin_url = std::env::var("G2P_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
    let required = std::env::var("G2P_REQUIRE_PG").is_ok_and(|v| v == "1");
    let admin = match Store::connect(
        &admin_url,
        &ConnectOptions {
            max_connections: 2,
            ..Default::default()
        },
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            if required {
                panic!("G2P_REQUIRE_PG=1 but PostgreSQL at {admin_url} is not reachable: {e}");
            }
            eprintln!("SKIPPING PostgreSQL half of the test: {admin_url} not reachable ({e})");
            return None;
        }
    };
    let name = unique_name();
    let pool = admin.pg_pool()?;
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(pool)
        .await
    {
        panic!("cannot create test database {name}: {e}");
    }
    admin.close().await;
    let url = match admin_url.rfind('/') {
        Some(i) if admin_url[..i].contains("://") && i > admin_url.find("://").unwrap_or(0) + 2 => {
            let (base, rest) = admin_url.split_at(i);
            let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
            format!("{base}/{name}{query}")
        }
        _ => format!("{admin_url}/{name}"),
    };
    Some(url)
}

/// A migrated store on a new PostgreSQL database (see [`pg_database_url`]).
pub async fn pg_store() -> Option<Store> {
    let url = pg_database_url().await?;
    match Store::open(&url, &ConnectOptions::default()).await {
        Ok(s) => Some(s),
        Err(e) => panic!("cannot open test PostgreSQL store: {e}"),
    }
}

/// Every backend a store test must run on: SQLite always, PostgreSQL when reachable (or
/// required).
pub async fn backends() -> Vec<Store> {
    let mut v = vec![sqlite_store().await];
    if let Some(pg) = pg_store().await {
        v.push(pg);
    }
    v
}
