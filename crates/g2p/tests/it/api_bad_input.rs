//! Bad input through the JSON API: every rejection is checked for its status and for the one
//! error shape (`error.code`, the exact `error.fields`, `error.request_id` = `x-request-id`),
//! and for having changed nothing.

use reqwest::Method;
use serde_json::json;

use crate::api::{all_ids, create_id_type, get, post, post_raw, put};
use crate::helpers::TestApp;

const REGS: &str = "/api/v1/registrants";

#[tokio::test]
async fn api_bad_input_is_rejected_with_the_error_shape() {
    for app in TestApp::all().await {
        let b = app.backend.name();
        let key = app.registrar.clone();
        let ok = app
            .create_individual(json!({"given_name": "Ok", "external_key": "dup-key",
                "ids": [{"id_type": "PHONE", "value": "555-0100"}]}))
            .await;

        // ---- body syntax and types
        let r = post_raw(
            &app,
            Method::POST,
            REGS,
            &key,
            Some("application/json"),
            br#"{"given_name": "A""#.to_vec(),
        )
        .await;
        r.assert_error(400, "malformed_json", &[]);
        post_raw(
            &app,
            Method::POST,
            REGS,
            &key,
            Some("application/json"),
            Vec::new(),
        )
        .await
        .assert_error(400, "malformed_json", &[]);
        post(&app, REGS, &key, json!({"given_name": 5}))
            .await
            .assert_error(422, "validation_failed", &["given_name"]);
        post(
            &app,
            REGS,
            &key,
            json!({"given_name": "A", "is_group": "no"}),
        )
        .await
        .assert_error(422, "validation_failed", &["is_group"]);
        let r = post(
            &app,
            REGS,
            &key,
            json!({"given_name": "A", "ids": [{"id_type": "PHONE", "value": 7}]}),
        )
        .await;
        r.assert_error(422, "validation_failed", &["ids[0].value"]);
        let r = post(
            &app,
            REGS,
            &key,
            json!({"given_name": "A", "nickname": "Al"}),
        )
        .await;
        r.assert_error(422, "validation_failed", &["nickname"]);
        assert!(
            r.field_message("nickname").contains("unknown field"),
            "{b}: {}",
            r.body
        );
        post(&app, REGS, &key, json!("a string"))
            .await
            .assert_error(422, "validation_failed", &["body"]);
        // content type
        post_raw(
            &app,
            Method::POST,
            REGS,
            &key,
            None,
            br#"{"given_name":"A"}"#.to_vec(),
        )
        .await
        .assert_error(415, "unsupported_media_type", &[]);
        post_raw(
            &app,
            Method::POST,
            REGS,
            &key,
            Some("text/plain"),
            br#"{"given_name":"A"}"#.to_vec(),
        )
        .await
        .assert_error(415, "unsupported_media_type", &[]);
        let r = post_raw(
            &app,
            Method::POST,
            REGS,
            &key,
            Some("application/json; charset=utf-8"),
            br#"{"given_name":"Charset"}"#.to_vec(),
        )
        .await;
        assert_eq!(
            r.status, 201,
            "{b}: a charset parameter is fine: {}",
            r.body
        );
        let charset = r.body["id"].as_i64().expect("id");

        // ---- field validation: all problems at once
        let r = post(
            &app,
            REGS,
            &key,
            json!({"given_name": "A", "birthdate": "31/12/1990", "email": "not-an-email",
                   "bank_accounts": [{"account_number": "1", "iban": "GB82WEST12345698765433",
                                      "bic": "DE12"}]}),
        )
        .await;
        r.assert_error(
            422,
            "validation_failed",
            &[
                "bank_accounts[0].bic",
                "bank_accounts[0].iban",
                "birthdate",
                "email",
            ],
        );
        assert_eq!(r.field_message("birthdate"), "must be a date as YYYY-MM-DD");
        post(
            &app,
            REGS,
            &key,
            json!({"given_name": "A", "birthdate": "2999-01-01"}),
        )
        .await
        .assert_error(422, "validation_failed", &["birthdate"]);
        post(&app, REGS, &key, json!({"family_name": "  "}))
            .await
            .assert_error(422, "validation_failed", &["given_name"]);
        post(&app, REGS, &key, json!({"is_group": true}))
            .await
            .assert_error(422, "validation_failed", &["name"]);

        // ---- typed IDs against their types
        create_id_type(&app, "TEST NID", Some("[0-9]{6}")).await;
        let r = post(
            &app,
            REGS,
            &key,
            json!({"given_name": "A", "ids": [{"id_type": "TEST NID", "value": "12AB"}]}),
        )
        .await;
        r.assert_error(422, "validation_failed", &["ids[0].value"]);
        assert!(
            r.field_message("ids[0].value").contains("TEST NID"),
            "{b}: {}",
            r.body
        );
        // The regex matches the whole value.
        post(
            &app,
            REGS,
            &key,
            json!({"given_name": "A", "ids": [{"id_type": "TEST NID", "value": "1234567"}]}),
        )
        .await
        .assert_error(422, "validation_failed", &["ids[0].value"]);
        post(
            &app,
            REGS,
            &key,
            json!({"given_name": "A", "ids": [{"id_type": "NO SUCH TYPE", "value": "1"}]}),
        )
        .await
        .assert_error(422, "validation_failed", &["ids[0].id_type"]);
        post(
            &app,
            REGS,
            &key,
            json!({"given_name": "A", "ids": [{"id_type": "PHONE", "value": "1"},
                                              {"id_type": "phone", "value": "2"}]}),
        )
        .await
        .assert_error(422, "validation_failed", &["ids[1].id_type"]);
        let r = post(
            &app,
            REGS,
            &key,
            json!({"given_name": "Six", "ids": [{"id_type": "test nid", "value": "123456"}]}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        assert_eq!(r.body["ids"][0]["id_type"], "TEST NID");
        let six = r.body["id"].as_i64().expect("id");
        // a second ID of the same type is a conflict; a bad one through /ids is a 422
        let ids = format!("{REGS}/{ok}/ids");
        post(
            &app,
            &ids,
            &key,
            json!({"id_type": "phone", "value": "555-0199"}),
        )
        .await
        .assert_error(409, "conflict", &["id_type"]);
        post(
            &app,
            &ids,
            &key,
            json!({"id_type": "TEST NID", "value": "12AB"}),
        )
        .await
        .assert_error(422, "validation_failed", &["value"]);
        post(&app, &ids, &key, json!({"id_type": "NOPE", "value": "1"}))
            .await
            .assert_error(422, "validation_failed", &["id_type"]);
        post(
            &app,
            &ids,
            &key,
            json!({"id_type": "MOSIP VID", "value": " "}),
        )
        .await
        .assert_error(422, "validation_failed", &["value"]);
        post(&app, &ids, &key, json!({"id_type": "MOSIP VID"}))
            .await
            .assert_error(422, "validation_failed", &["body"]);

        // ---- uniqueness
        post(
            &app,
            REGS,
            &key,
            json!({"given_name": "B", "external_key": "dup-key"}),
        )
        .await
        .assert_error(409, "conflict", &["external_key"]);
        put(
            &app,
            &format!("{REGS}/{six}"),
            &key,
            json!({"given_name": "B", "external_key": "dup-key"}),
        )
        .await
        .assert_error(409, "conflict", &["external_key"]);
        post(
            &app,
            "/api/v1/id-types",
            &app.admin,
            json!({"name": "test nid"}),
        )
        .await
        .assert_error(409, "conflict", &["name"]);
        post(
            &app,
            "/api/v1/id-types",
            &app.admin,
            json!({"name": "Mosip Vid"}),
        )
        .await
        .assert_error(409, "conflict", &["name"]);

        // ---- size: over 1 MiB is refused before parsing
        let big = "x".repeat(2 << 20);
        let body = serde_json::to_vec(&json!({"given_name": "Big", "address": big})).expect("json");
        post_raw(
            &app,
            Method::POST,
            REGS,
            &key,
            Some("application/json"),
            body,
        )
        .await
        .assert_error(413, "payload_too_large", &[]);
        // long but under the limit: a field error, not 413
        post(
            &app,
            REGS,
            &key,
            json!({"given_name": "Long", "address": "y".repeat(5000)}),
        )
        .await
        .assert_error(422, "validation_failed", &["address"]);

        // ---- query parameters
        for q in ["limit=0", "limit=1000", "limit=-1"] {
            get(&app, &format!("{REGS}?{q}"), &app.viewer)
                .await
                .assert_error(422, "validation_failed", &["limit"]);
        }
        post(
            &app,
            &format!("{REGS}/search"),
            &app.viewer,
            json!({"limit": 0}),
        )
        .await
        .assert_error(422, "validation_failed", &["limit"]);
        get(&app, &format!("{REGS}/{ok}/audit?limit=501"), &app.viewer)
            .await
            .assert_error(422, "validation_failed", &["limit"]);
        get(&app, &format!("{REGS}?limit=abc"), &app.viewer)
            .await
            .assert_error(422, "validation_failed", &["limit"]);
        get(&app, &format!("{REGS}/abc"), &app.viewer)
            .await
            .assert_error(404, "not_found", &[]);
        get(&app, &format!("{REGS}?filter=%5B1%5D"), &app.viewer)
            .await
            .assert_error(422, "validation_failed", &["filter"]);

        // ---- none of it was stored
        assert_eq!(all_ids(&app, "").await, vec![ok, charset, six], "{b}");
        let r = get(&app, &format!("{REGS}/{ok}"), &app.viewer).await;
        assert_eq!(r.body["ids"].as_array().map(Vec::len), Some(1), "{b}");
        assert_eq!(r.body["ids"][0]["value"], "555-0100");
        let types = get(&app, "/api/v1/id-types", &app.viewer).await.body;
        assert_eq!(
            types.as_array().map(Vec::len),
            Some(8),
            "{b}: 7 seeded + TEST NID"
        );
        app.stop().await;
    }
}
