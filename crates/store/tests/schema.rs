//! The SQLite and PostgreSQL migrations build the same schema, column for column: same
//! tables, same column names in the same order, compatible types, same nullability, same
//! primary keys and unique indexes. The store runs one set of queries on both, so a column
//! added to one dialect only, or NOT NULL on one side only, is a bug this test names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use g2p_store::db::PoolsRef;
use g2p_testkit::schema::{
    Allowed, TypePair, differences, pg_schema, sqlite_schema, unmapped_sqlite_types,
};

/// What each SQLite declaration in `migrations/sqlite` stands for in `migrations/postgres`.
const TYPES: &[TypePair] = &[
    TypePair {
        sqlite: "INTEGER",
        postgres: &["bigint", "integer"],
        why: "SQLite integers are 64-bit; PostgreSQL uses integer where Rust reads an i32",
    },
    TypePair {
        sqlite: "TEXT",
        postgres: &["text"],
        why: "text",
    },
    TypePair {
        sqlite: "TEXT",
        postgres: &["timestamp with time zone"],
        why: "SQLite keeps timestamps as the one RFC 3339 text format sqlx writes for chrono",
    },
    TypePair {
        sqlite: "TEXT",
        postgres: &["jsonb"],
        why: "SQLite keeps JSON as text (sqlx's Json<T> encodes to either)",
    },
    TypePair {
        sqlite: "BOOLEAN",
        postgres: &["boolean"],
        why: "SQLite stores 0/1; sqlx decodes bool from either",
    },
    TypePair {
        sqlite: "DATE",
        postgres: &["date"],
        why: "calendar dates, text YYYY-MM-DD on SQLite",
    },
];

/// Differences kept on purpose. Empty: none today.
const ALLOWED: &[Allowed] = &[];

#[tokio::test]
async fn sqlite_and_postgres_schemas_match_column_for_column() {
    let sqlite = g2p_testkit::sqlite_store().await;
    let Some(pg) = g2p_testkit::pg_store().await else {
        return;
    };
    let PoolsRef::Sqlite { read, .. } = sqlite.pools_ref() else {
        panic!("sqlite_store() is not on SQLite");
    };
    let lite = sqlite_schema(read).await.unwrap();
    let post = pg_schema(pg.pg_pool().unwrap()).await.unwrap();

    // The reading itself must see the schema (an empty read would "match").
    for s in [&lite, &post] {
        let names: Vec<&str> = s.tables.iter().map(|t| t.name.as_str()).collect();
        for t in ["registrants", "jobs", "schedules", "mts_runs", "audit_log"] {
            assert!(names.contains(&t), "{t} missing from {names:?}");
        }
        assert!(s.tables.iter().all(|t| !t.columns.is_empty()));
    }
    let unmapped = unmapped_sqlite_types(&lite, TYPES);
    assert!(
        unmapped.is_empty(),
        "SQLite types without a PostgreSQL pairing: {unmapped:?}"
    );

    let diff = differences(&lite, &post, TYPES, ALLOWED);
    assert!(
        diff.is_empty(),
        "the SQLite and PostgreSQL schemas differ:\n  {}",
        diff.join("\n  ")
    );

    // The comparison can fail: drift the PostgreSQL side the ways a migration could, and it
    // names each one.
    let p = pg.pg_pool().unwrap();
    for sql in [
        "ALTER TABLE jobs ALTER COLUMN last_error SET NOT NULL",
        "ALTER TABLE jobs ADD COLUMN extra TEXT",
        "ALTER TABLE jobs ALTER COLUMN kind TYPE varchar(100)",
        "CREATE UNIQUE INDEX jobs_kind_key ON jobs (kind) WHERE status = 'queued'",
        "ALTER TABLE api_keys DROP CONSTRAINT api_keys_key_id_key",
        "CREATE TABLE pg_only (id BIGINT PRIMARY KEY)",
    ] {
        sqlx::query(sql).execute(p).await.unwrap();
    }
    let drifted = pg_schema(p).await.unwrap();
    let mut diff = differences(&lite, &drifted, TYPES, ALLOWED);
    diff.sort();
    let mut expected = vec![
        "column jobs.last_error: nullable on SQLite, NOT NULL on PostgreSQL",
        "column jobs.kind: type TEXT on SQLite, character varying on PostgreSQL",
        "table api_keys: unique (key_id) only on SQLite",
        "table jobs: unique (kind) WHERE … only on PostgreSQL",
        "table pg_only: only on PostgreSQL",
    ];
    expected.sort_unstable();
    let (columns, rest): (Vec<String>, Vec<String>) = diff
        .into_iter()
        .partition(|d| d.starts_with("table jobs: columns differ"));
    assert_eq!(rest, expected);
    assert_eq!(columns.len(), 1, "the added column: {columns:?}");
    assert!(
        columns[0].ends_with("finished_at, extra)"),
        "{}",
        columns[0]
    );
}
