//! Reads don't write: every GET route of the API (from its own OpenAPI document) and every
//! console page and refresh leaves every table exactly as it was, on both backends. The
//! registry holds a run that owes no callback any more — a read used to complete such runs.

use g2p_store::mts::{RunKind, RunStatus};
use g2p_store::{Backend, Store};
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Every table's rows, as text, in a stable order.
async fn fingerprint(store: &Store) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match store.backend() {
        Backend::Postgres => {
            let pool = store.pg_pool().expect("pg");
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            )
            .fetch_all(pool)
            .await
            .expect("tables");
            for (t,) in tables {
                let sql = format!(
                    "SELECT coalesce(string_agg(x::text, '|' ORDER BY x::text), '') FROM \"{t}\" x"
                );
                let (rows,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await
                    .expect("rows");
                out.push((t, rows));
            }
        }
        Backend::Sqlite => {
            let g2p_store::db::PoolsRef::Sqlite { read, .. } = store.pools_ref() else {
                unreachable!()
            };
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY 1",
            )
            .fetch_all(read)
            .await
            .expect("tables");
            for (t,) in tables {
                let cols: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT name FROM pragma_table_info('{t}') ORDER BY cid"
                )))
                .fetch_all(read)
                .await
                .expect("columns");
                // quote(): every value as an SQL literal, blobs included.
                let cols: Vec<String> = cols
                    .into_iter()
                    .map(|(c,)| format!("quote(\"{c}\")"))
                    .collect();
                let sql = format!(
                    "SELECT coalesce(group_concat({}, '|'), '') FROM \
                     (SELECT * FROM \"{t}\" ORDER BY rowid)",
                    cols.join(" || ',' || ")
                );
                let (rows,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_one(read)
                    .await
                    .expect("rows");
                out.push((t, rows));
            }
        }
    }
    out
}

/// The GET paths of the OpenAPI document, with `{…}` parameters filled from `ids`.
async fn api_get_paths(t: &TestApp, ids: &[(&str, String)]) -> Vec<String> {
    let resp = t
        .client
        .get(t.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("openapi");
    let doc: Value = resp.json().await.expect("json");
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        if ops.get("get").is_none() {
            continue;
        }
        let mut p = path.clone();
        for (name, id) in ids {
            p = p.replace(&format!("{{{name}}}"), id);
        }
        assert!(!p.contains('{'), "no value for a parameter of {path}");
        out.push(p);
    }
    assert!(out.len() > 10, "too few GET routes found: {out:?}");
    out
}

#[tokio::test]
async fn no_get_and_no_console_refresh_writes() {
    for t in TestApp::all().await {
        // Some of everything: a registrant, an MTS connector and a run owing nothing.
        let (st, r) = t
            .post(
                "/api/v1/registrants",
                &t.registrar,
                json!({"name": "Read Only", "given_name": "Read", "family_name": "Only"}),
            )
            .await;
        assert_eq!(st, 201, "{r}");
        let rid = r["id"].as_i64().expect("id");
        let (st, c) = t
            .post(
                "/api/v1/mts/connectors",
                &t.admin,
                json!({"name": "reads", "mts_url": "http://127.0.0.1:9",
                       "callback_url": format!("{}/api/v1/mts/callbacks/0", t.base),
                       "callback_password": "correct horse battery"}),
            )
            .await;
        assert_eq!(st, 201, "{c}");
        let cid = c["id"].as_i64().expect("id");
        let run = t
            .app
            .store
            .create_mts_run(cid, RunKind::Delta, None, None, "test")
            .await
            .expect("run");
        t.app
            .store
            .set_mts_run_status(run.id, RunStatus::Submitted, None)
            .await
            .expect("submitted");
        let job = t
            .app
            .store
            .enqueue(g2p_store::jobs::NewJob::new("noop", json!({})))
            .await
            .expect("job");

        let before = fingerprint(&t.app.store).await;
        let ids = [
            ("id", cid.to_string()),
            ("account_id", "1".to_owned()),
            ("individual_id", rid.to_string()),
            ("id_type", "MOSIP%20VID".to_owned()),
        ];
        let mut paths = api_get_paths(&t, &ids).await;
        // Ids of other kinds on the `{id}` routes: registrants, runs, jobs.
        paths.extend([
            format!("/api/v1/registrants/{rid}"),
            format!("/api/v1/mts/runs/{}", run.id),
            format!("/api/v1/jobs/{}", job.id),
        ]);
        for p in &paths {
            let r = t
                .client
                .get(t.url(p))
                .bearer_auth(&t.admin)
                .send()
                .await
                .expect("get");
            assert!(r.status().as_u16() < 500, "GET {p}: {}", r.status());
        }

        // The console, signed in as an admin: every page and the 2-second refresh.
        let resp = t
            .client
            .post(t.url("/login"))
            .form(&[("key", t.admin.as_str())])
            .send()
            .await
            .expect("login");
        let cookie = resp
            .headers()
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_owned();
        for p in [
            "/".to_owned(),
            "/registrants".to_owned(),
            format!("/registrants/{rid}"),
            "/id-types".to_owned(),
            "/jobs".to_owned(),
            "/mts".to_owned(),
            format!("/mts/{cid}"),
            format!("/mts/{cid}/runs"),
        ] {
            let r = t
                .client
                .get(t.url(&p))
                .header(COOKIE, &cookie)
                .header("HX-Request", "true")
                .send()
                .await
                .expect("page");
            assert!(r.status().as_u16() < 400, "GET {p}: {}", r.status());
        }

        let after = fingerprint(&t.app.store).await;
        for ((table, a), (_, b)) in before.iter().zip(&after) {
            assert_eq!(a, b, "{:?}: a read changed table {table}", t.backend);
        }
        assert_eq!(before.len(), after.len());
        let run = t.app.store.get_mts_run(run.id).await.expect("run");
        assert_eq!(run.status, RunStatus::Submitted, "a read completed the run");
        t.stop().await;
    }
}
