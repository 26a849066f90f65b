//! Bulk import through the API and the CLI, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use g2p::import::{ImportArgs, run as cli_import};
use g2p_web::{AppState, WebSettings};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;

/// Sends a raw import body and returns status and JSON body.
async fn import(
    t: &TestApp,
    query: &str,
    content_type: &str,
    key: &str,
    body: impl Into<String>,
) -> (u16, Value) {
    let resp = t
        .request(Method::POST, &format!("/api/v1/import{query}"), Some(key))
        .header("content-type", content_type)
        .body(body.into())
        .send()
        .await
        .expect("request sent");
    TestApp::parse(resp).await
}

async fn create_test_card_type(t: &TestApp) {
    let (status, v) = t
        .post(
            "/api/v1/id-types",
            &t.admin,
            json!({"name": "TEST CARD", "validation_regex": "[A-Z]{2}[0-9]{4}"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}

/// All registrants, by external key (the test registries are small).
async fn registrants_by_key(t: &TestApp) -> BTreeMap<String, Value> {
    let (status, v) = t.get("/api/v1/registrants?limit=500", &t.viewer).await;
    assert_eq!(status, 200, "{v}");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| {
            (
                r["external_key"].as_str().unwrap_or("").to_owned(),
                r.clone(),
            )
        })
        .collect()
}

/// Line → sorted field names of the reported errors.
fn error_fields(report: &Value) -> BTreeMap<u64, Vec<String>> {
    report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            let fields = e["fields"]
                .as_object()
                .expect("fields")
                .keys()
                .cloned()
                .collect();
            (e["line"].as_u64().expect("line"), fields)
        })
        .collect()
}

fn ndjson_file() -> String {
    let lines = [
        // 1: good, two IDs
        json!({"external_key": "n-1", "given_name": "Ana", "family_name": "Diaz",
               "birthdate": "1990-04-01",
               "ids": [{"id_type": "TEST CARD", "value": "AB1234"},
                       {"id_type": "MOSIP VID", "value": "1234567890123456"}]})
        .to_string(),
        // 2: bad date (its valid ID must not land either)
        json!({"external_key": "n-2", "given_name": "Bo", "birthdate": "1990-13-45",
               "ids": [{"id_type": "MOSIP VID", "value": "2222"}]})
        .to_string(),
        // 3: blank
        String::new(),
        // 4: ID failing its type's regex
        json!({"external_key": "n-4", "given_name": "Cy",
               "ids": [{"id_type": "TEST CARD", "value": "bad"}]})
        .to_string(),
        // 5: unknown ID type (second ID)
        json!({"external_key": "n-5", "given_name": "Di",
               "ids": [{"id_type": "MOSIP VID", "value": "5555"},
                       {"id_type": "NO SUCH TYPE", "value": "1"}]})
        .to_string(),
        // 6: no external key
        json!({"given_name": "Ed"}).to_string(),
        // 7: duplicate of line 1
        json!({"external_key": "n-1", "given_name": "Again"}).to_string(),
        // 8: good, with a bank account
        json!({"external_key": "n-8", "name": "FAY", "phone_numbers": [{"phone_no": "+254 700 000 008"}],
               "bank_accounts": [{"account_number": "0008", "iban": "GB82WEST12345698765432"}]})
        .to_string(),
        // 9: not JSON
        "{\"external_key\": \"n-9\", ".to_owned(),
    ];
    lines.join("\n") + "\n"
}

#[tokio::test]
async fn ndjson_import_lands_good_rows_reports_bad_ones_and_reruns_idempotently() {
    for t in TestApp::all().await {
        create_test_card_type(&t).await;
        let body = ndjson_file();
        let (status, r) = import(
            &t,
            "?format=ndjson",
            "text/plain",
            &t.registrar,
            body.clone(),
        )
        .await;
        assert_eq!(status, 200, "{:?}: {r}", t.backend);
        assert_eq!(r["rows_total"], 8, "{r}");
        assert_eq!(
            (r["created"].as_u64(), r["failed"].as_u64()),
            (Some(2), Some(6)),
            "{r}"
        );
        assert_eq!(r["skipped_existing"], 0);
        let fields = error_fields(&r);
        let expected: BTreeMap<u64, Vec<String>> = [
            (2, vec!["birthdate"]),
            (4, vec!["ids[0].value"]),
            (5, vec!["ids[1].id_type"]),
            (6, vec!["external_key"]),
            (7, vec!["external_key"]),
            (9, vec!["json"]),
        ]
        .into_iter()
        .map(|(l, f)| (l, f.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(fields, expected, "{r}");
        let dup = &r["errors"][4];
        assert_eq!(dup["external_key"], "n-1");
        assert!(
            dup["fields"]["external_key"][0]
                .as_str()
                .unwrap()
                .contains("line 1")
        );

        // Good rows landed with their IDs and accounts; bad rows left nothing behind.
        let regs = registrants_by_key(&t).await;
        assert_eq!(
            regs.keys().collect::<Vec<_>>(),
            vec!["n-1", "n-8"],
            "{regs:?}"
        );
        let ana = &regs["n-1"];
        assert_eq!(ana["name"], "DIAZ, ANA");
        let mut types: Vec<&str> = ana["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id_type"].as_str().unwrap())
            .collect();
        types.sort();
        assert_eq!(types, vec!["MOSIP VID", "TEST CARD"]);
        let fay_id = regs["n-8"]["id"].as_i64().unwrap();
        let (_, fay) = t
            .get(&format!("/api/v1/registrants/{fay_id}"), &t.viewer)
            .await;
        assert_eq!(fay["bank_accounts"][0]["account_number"], "0008");
        assert_eq!(fay["phone"], "+254 700 000 008");
        let (_, audit) = t
            .get(&format!("/api/v1/registrants/{fay_id}/audit"), &t.viewer)
            .await;
        let entry = &audit[0];
        assert_eq!(entry["action"], "import", "{audit}");
        assert_eq!(entry["after"]["line"], 8, "{audit}");
        assert_eq!(entry["after"]["import"], r["import_id"]);

        // The same file again creates nothing and changes nothing.
        let (status, again) = import(&t, "", "application/x-ndjson", &t.admin, body).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["created"], 0, "{again}");
        assert_eq!(again["skipped_existing"], 2, "{again}");
        assert_eq!(again["failed"], 6);
        assert_eq!(registrants_by_key(&t).await.len(), 2);
        t.stop().await;
    }
}

#[tokio::test]
async fn csv_import_names_columns_and_counts_lines_of_quoted_fields() {
    for t in TestApp::all().await {
        create_test_card_type(&t).await;
        let csv = "external_key,given_name,family_name,birthdate,address,phone,id:MOSIP VID,\
id:TEST CARD,attr:household_size,attr:district,bank_account_number,bank_iban,disabled\r\n\
c-1,Ana,Diaz,1990-04-01,\"12 Main St\nRiverside\",+254700000001,1111222233334444,AB1234,5,North,001,,no\r\n\
c-2,Bo,Eze,1990-02-30,,,,,,,,,\r\n\
c-3,Cy,Fox,,,,,bad,,,,,\r\n\
c-4,Di,Gil,,,,,,,,,,maybe\r\n\
,Ed,Ho,,,,,,,,,,\r\n\
c-1,Ann,Dup,,,,,,,,,,\r\n\
c-7,Fay,Ito,,,,,,,,,GB00WRONG,\r\n\
c-8,Gus,Jin,,,,8888,,,,,,yes\r\n\
c-9,too,few\r\n";
        let (status, r) = import(&t, "", "text/csv", &t.registrar, csv).await;
        assert_eq!(status, 200, "{:?}: {r}", t.backend);
        assert_eq!(r["rows_total"], 9, "{r}");
        assert_eq!(
            (r["created"].as_u64(), r["failed"].as_u64()),
            (Some(2), Some(7)),
            "{r}"
        );
        let fields = error_fields(&r);
        // Line 2's record spans two lines, so the next record starts on line 4.
        let expected: BTreeMap<u64, Vec<String>> = [
            (4, vec!["birthdate"]),
            (5, vec!["id:TEST CARD"]),
            (6, vec!["disabled"]),
            (7, vec!["external_key"]),
            (8, vec!["external_key"]),
            (9, vec!["bank_account_number", "bank_iban"]),
            (11, vec!["row"]),
        ]
        .into_iter()
        .map(|(l, f)| (l, f.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(fields, expected, "{r}");

        let regs = registrants_by_key(&t).await;
        assert_eq!(regs.keys().collect::<Vec<_>>(), vec!["c-1", "c-8"]);
        let id = regs["c-1"]["id"].as_i64().unwrap();
        let (_, ana) = t.get(&format!("/api/v1/registrants/{id}"), &t.viewer).await;
        assert_eq!(ana["address"], "12 Main St\nRiverside");
        assert_eq!(
            ana["attributes"],
            json!({"household_size": 5, "district": "North"})
        );
        assert_eq!(ana["disabled"], false);
        assert_eq!(ana["ids"].as_array().unwrap().len(), 2);
        assert_eq!(ana["bank_accounts"][0]["account_number"], "001");
        assert_eq!(regs["c-8"]["disabled"], true);

        let (_, again) = import(&t, "?format=csv", "text/plain", &t.registrar, csv).await;
        assert_eq!(
            (
                again["created"].as_u64(),
                again["skipped_existing"].as_u64()
            ),
            (Some(0), Some(2)),
            "{again}"
        );
        t.stop().await;
    }
}

#[tokio::test]
async fn bad_headers_and_formats_are_rejected_before_anything_is_imported() {
    for t in TestApp::all().await {
        let csv = "external_key,given_name,nmae\nx-1,Ana,Diaz\n";
        let (status, v) = import(&t, "", "text/csv", &t.registrar, csv).await;
        assert_eq!(status, 422, "{v}");
        assert_eq!(v["error"]["code"], "validation_failed");
        let msg = v["error"]["fields"]["header"][0].as_str().unwrap();
        assert!(msg.contains("\"nmae\""), "{msg}");

        let (status, v) = import(&t, "", "text/csv", &t.registrar, "given_name\nAna\n").await;
        assert_eq!(status, 422, "{v}");
        assert!(
            v["error"]["fields"]["header"][0]
                .as_str()
                .unwrap()
                .contains("external_key")
        );

        let (status, v) = import(&t, "", "application/xml", &t.registrar, "<x/>").await;
        assert_eq!(status, 422, "{v}");
        assert!(v["error"]["fields"]["format"].is_array());
        let (status, _) = import(&t, "?format=xlsx", "text/csv", &t.registrar, csv).await;
        assert_eq!(status, 422);
        assert!(registrants_by_key(&t).await.is_empty());
        t.stop().await;
    }
}

#[tokio::test]
async fn import_needs_a_writing_role_and_is_documented() {
    for t in TestApp::all().await {
        let body = json!({"external_key": "v-1", "given_name": "Ana"}).to_string();
        let (status, _) = import(&t, "?format=ndjson", "text/plain", &t.viewer, body.clone()).await;
        assert_eq!(status, 403);
        let (status, _) = import(
            &t,
            "?format=ndjson",
            "text/plain",
            &t.connector,
            body.clone(),
        )
        .await;
        assert_eq!(status, 403);
        let resp = t
            .request(Method::POST, "/api/v1/import?format=ndjson", None)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert!(registrants_by_key(&t).await.is_empty());

        let (_, doc) = t.get("/api/v1/openapi.json", &t.viewer).await;
        assert!(
            doc["paths"]["/api/v1/import"]["post"].is_object(),
            "import missing from OpenAPI"
        );
        t.stop().await;
    }
}

/// The same application on the same store, with a small import limit, on its own port.
async fn serve_with_import_limit(t: &TestApp, limit: u64) -> String {
    let settings = WebSettings {
        max_import_bytes: limit,
        ..WebSettings::default()
    };
    let app = g2p_web::app(AppState::new(t.app.store.clone(), settings, None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr.to_string()
}

#[tokio::test]
async fn bodies_over_the_import_limit_get_413() {
    for t in TestApp::all().await {
        let addr = serve_with_import_limit(&t, 500).await;
        let line = json!({"external_key": "big", "given_name": "Ana"}).to_string() + "\n";
        let body: String = (0..40)
            .map(|i| line.replace("big", &format!("big-{i}")))
            .collect();
        assert!(body.len() > 1000);

        // Declared length: refused before reading.
        let resp = t
            .client
            .post(format!("http://{addr}/api/v1/import?format=ndjson"))
            .bearer_auth(&t.registrar)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, v) = TestApp::parse(resp).await;
        assert_eq!(status, 413, "{v}");
        assert_eq!(v["error"]["code"], "payload_too_large");

        // Chunked, no length: stopped while streaming.
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut req = format!(
            "POST /api/v1/import?format=ndjson HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            t.registrar
        );
        for piece in body.as_bytes().chunks(300) {
            req.push_str(&format!(
                "{:x}\r\n{}\r\n",
                piece.len(),
                String::from_utf8_lossy(piece)
            ));
        }
        req.push_str("0\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp).await;
        let resp = String::from_utf8_lossy(&resp);
        assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");

        assert!(registrants_by_key(&t).await.is_empty());
        // Under the limit, the same server imports.
        let resp = t
            .client
            .post(format!("http://{addr}/api/v1/import?format=ndjson"))
            .bearer_auth(&t.registrar)
            .body(line)
            .send()
            .await
            .unwrap();
        let (status, v) = TestApp::parse(resp).await;
        assert_eq!((status, v["created"].as_u64()), (200, Some(1)), "{v}");
        t.stop().await;
    }
}

#[tokio::test]
async fn cli_import_exits_2_when_rows_fail() {
    for t in TestApp::all().await {
        let dir = std::env::temp_dir();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let bad = dir.join(format!("g2p_it_{id}.ndjson"));
        std::fs::write(
            &bad,
            format!(
                "{}\n{}\n",
                json!({"external_key": "cli-1", "given_name": "Ana"}),
                json!({"external_key": "cli-2", "birthdate": "yesterday"})
            ),
        )
        .unwrap();
        let args = ImportArgs {
            file: bad.clone(),
            format: None,
            chunk_size: 1000,
        };
        let mut out = Vec::new();
        let status = cli_import(&t.app.store, &args, &mut out).await.unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(status, 2, "{out}");
        assert!(out.contains("line 2 [cli-2]"), "{out}");
        assert!(out.contains("birthdate"), "{out}");

        let good = dir.join(format!("g2p_it_{id}.csv"));
        std::fs::write(&good, "external_key,given_name\ncli-1,Ana\ncli-3,Bo\n").unwrap();
        let args = ImportArgs {
            file: good.clone(),
            format: None,
            chunk_size: 1,
        };
        let mut out = Vec::new();
        let status = cli_import(&t.app.store, &args, &mut out).await.unwrap();
        assert_eq!(status, 0, "{}", String::from_utf8_lossy(&out));
        assert_eq!(registrants_by_key(&t).await.len(), 2);

        // A name without a known extension needs --format; a missing file is fatal.
        let odd = dir.join(format!("g2p_it_{id}.txt"));
        std::fs::write(&odd, "external_key\n").unwrap();
        let args = ImportArgs {
            file: odd.clone(),
            format: None,
            chunk_size: 1000,
        };
        assert!(
            cli_import(&t.app.store, &args, &mut Vec::new())
                .await
                .is_err()
        );
        let args = ImportArgs {
            file: odd.clone(),
            format: Some("csv".into()),
            chunk_size: 1000,
        };
        assert_eq!(
            cli_import(&t.app.store, &args, &mut Vec::new())
                .await
                .unwrap(),
            0
        );
        let args = ImportArgs {
            file: dir.join("no-such-file.csv"),
            format: None,
            chunk_size: 1000,
        };
        assert!(
            cli_import(&t.app.store, &args, &mut Vec::new())
                .await
                .is_err()
        );
        for f in [bad, good, odd] {
            let _ = std::fs::remove_file(f);
        }
        t.stop().await;
    }
}

#[tokio::test]
async fn import_bodies_are_not_held_to_the_json_body_limit() {
    for t in TestApp::all().await {
        let body: String = (0..5000)
            .map(|i| {
                json!({"external_key": format!("big-{i}"), "given_name": "Ana",
                       "family_name": "Diaz", "address": "x".repeat(200),
                       "ids": [{"id_type": "MOSIP VID", "value": format!("{i:016}")}]})
                .to_string()
                    + "\n"
            })
            .collect();
        assert!(
            body.len() > 1 << 20,
            "the body must exceed the 1 MiB JSON limit"
        );
        let (status, _) = import(
            &t,
            "?format=ndjson&chunk_size=0",
            "text/plain",
            &t.registrar,
            "",
        )
        .await;
        assert_eq!(status, 422);
        let q = "?format=ndjson&chunk_size=1500";
        let (status, r) = import(&t, q, "text/plain", &t.registrar, body).await;
        assert_eq!(status, 200, "{:?}: {r}", t.backend);
        assert_eq!(
            (r["created"].as_u64(), r["failed"].as_u64()),
            (Some(5000), Some(0)),
            "{r}"
        );
        t.stop().await;
    }
}
