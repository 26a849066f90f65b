//! Bulk import at the store level, on SQLite and (when reachable) PostgreSQL: chunk boundaries,
//! duplicates across chunks, re-runs, and the row-by-row retry of a failing chunk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use g2p_store::audit::Actor;
use g2p_store::import::{ImportFormat, ImportOptions, ImportReport};
use g2p_store::{Backend, Store, with_db};
use serde_json::json;

fn ndjson(rows: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        out.extend_from_slice(r.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fn person(i: usize) -> serde_json::Value {
    json!({
        "external_key": format!("k-{i}"),
        "given_name": format!("Given{i}"),
        "family_name": "Import",
        "birthdate": "1990-01-01",
        "ids": [
            {"id_type": "NATIONAL ID", "value": format!("N{i:08}")},
            {"id_type": "MOSIP VID", "value": format!("{:016}", i)},
        ],
    })
}

async fn import(store: &Store, data: Vec<u8>, chunk_size: usize) -> ImportReport {
    let opts = ImportOptions {
        chunk_size,
        ..ImportOptions::default()
    };
    store
        .import_registrants(
            &data[..],
            ImportFormat::Ndjson,
            &opts,
            &Actor::system("test"),
        )
        .await
        .unwrap()
}

async fn scalar(store: &Store, sql: &'static str) -> i64 {
    with_db!(store, read, p => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await.unwrap())
}

#[tokio::test]
async fn chunks_of_3000_rows_with_duplicates_across_chunk_boundaries() {
    for store in g2p_testkit::backends().await {
        let mut rows: Vec<serde_json::Value> = (0..3000).map(person).collect();
        // Line 1,501 repeats line 11's key in a later chunk; line 2,001 is invalid.
        rows[1500]["external_key"] = json!("k-10");
        rows[2000]["birthdate"] = json!("31/12/1990");
        let report = import(&store, ndjson(&rows), 1000).await;
        assert_eq!(report.rows_total, 3000, "{:?}", store.backend());
        assert_eq!(report.created, 2998);
        assert_eq!(report.failed, 2);
        assert_eq!(report.skipped_existing, 0);
        let lines: Vec<u64> = report.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![1501, 2001]);
        assert!(report.errors[0].fields.0["external_key"][0].contains("duplicate of line 11"));
        assert!(report.errors[1].fields.0.contains_key("birthdate"));

        assert_eq!(
            scalar(&store, "SELECT COUNT(*) FROM registrants").await,
            2998
        );
        assert_eq!(
            scalar(&store, "SELECT COUNT(*) FROM reg_ids").await,
            2 * 2998
        );
        assert_eq!(
            scalar(
                &store,
                "SELECT COUNT(*) FROM audit_log WHERE action = 'import' AND entity = 'registrant'"
            )
            .await,
            2998
        );
        assert_eq!(
            scalar(
                &store,
                "SELECT COUNT(*) FROM audit_log WHERE entity = 'import'"
            )
            .await,
            1
        );
        // Rows are stored in file order.
        let r = store
            .registrant_by_external_key("k-2999")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            r.id,
            scalar(&store, "SELECT MAX(id) FROM registrants").await
        );

        // A re-run creates nothing; the duplicate is now simply an existing key.
        let again = import(&store, ndjson(&rows), 700).await;
        assert_eq!(
            (again.created, again.skipped_existing, again.failed),
            (0, 2999, 1),
            "{:?}",
            store.backend()
        );
        assert_eq!(
            scalar(&store, "SELECT COUNT(*) FROM reg_ids").await,
            2 * 2998
        );
        store.close().await;
    }
}

#[tokio::test]
async fn a_failing_chunk_is_retried_row_by_row() {
    for store in g2p_testkit::backends().await {
        // A rule only the database knows about, so the chunk fails after validation passed.
        with_db!(store, write, p => {
            match store.backend() {
                Backend::Postgres => {
                    sqlx::query("CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
                        BEGIN IF NEW.name = 'BOOM' THEN RAISE EXCEPTION 'boom refused'; END IF; \
                        RETURN NEW; END $$").execute(p).await.unwrap();
                    sqlx::query("CREATE TRIGGER boom BEFORE INSERT ON registrants \
                        FOR EACH ROW EXECUTE FUNCTION boom()").execute(p).await.unwrap();
                }
                Backend::Sqlite => {
                    sqlx::query("CREATE TRIGGER boom BEFORE INSERT ON registrants \
                        WHEN NEW.name = 'BOOM' BEGIN SELECT RAISE(ABORT, 'boom refused'); END")
                        .execute(p).await.unwrap();
                }
            }
        });
        let mut rows: Vec<serde_json::Value> = (0..50).map(person).collect();
        rows[20]["name"] = json!("BOOM");
        let report = import(&store, ndjson(&rows), 1000).await;
        assert_eq!(
            (report.created, report.failed),
            (49, 1),
            "{:?}",
            store.backend()
        );
        assert_eq!(report.errors[0].line, 21);
        assert_eq!(report.errors[0].external_key.as_deref(), Some("k-20"));
        assert!(
            report.errors[0].fields.0["row"][0].contains("boom refused"),
            "{:?}",
            report.errors
        );
        // Nothing half-written for the refused row.
        assert!(
            store
                .registrant_by_external_key("k-20")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(scalar(&store, "SELECT COUNT(*) FROM reg_ids").await, 98);
        store.close().await;
    }
}
