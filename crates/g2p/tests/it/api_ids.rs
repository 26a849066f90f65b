//! Typed IDs, bank accounts and group members through the JSON API, on every backend.

use serde_json::{Value, json};

use crate::api::{create_group, delete, enc, get, post, put};
use crate::helpers::TestApp;

#[tokio::test]
async fn api_typed_ids_add_replace_remove() {
    for app in TestApp::all().await {
        let b = app.backend.name();
        let key = app.registrar.clone();
        let id = app.create_individual(json!({"given_name": "Ids"})).await;
        let ids = format!("/api/v1/registrants/{id}/ids");
        assert_eq!(get(&app, &ids, &app.viewer).await.body, json!([]), "{b}");

        // ---- add
        let r = post(
            &app,
            &ids,
            &key,
            json!({"id_type": "mosip vid", "value": " 1234567890 ", "expiry_date": "2030-01-31",
                   "description": "from card"}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        assert_eq!(r.body["id_type"], "MOSIP VID");
        assert_eq!(r.body["value"], "1234567890");
        assert_eq!(r.body["expiry_date"], "2030-01-31");
        assert_eq!(r.body["status"], "valid");
        assert_eq!(r.body["description"], "from card");
        assert_eq!(r.body["registrant_id"], id);
        let vid_row = r.body["id"].as_i64().expect("id");
        let r = get(&app, &format!("/api/v1/registrants/{id}"), &app.viewer).await;
        assert_eq!(
            r.body["version"], 2,
            "{b}: adding an ID is a change of the registrant"
        );
        post(
            &app,
            "/api/v1/registrants/987654321/ids",
            &key,
            json!({"id_type": "MOSIP VID", "value": "1"}),
        )
        .await
        .assert_error(404, "not_found", &[]);

        // ---- PUT the same type replaces it: same row, new value, still one
        let vid = format!("{ids}/{}", enc("MOSIP VID"));
        let r = put(
            &app,
            &vid,
            &key,
            json!({"value": "999", "status": "invalid"}),
        )
        .await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        assert_eq!(r.body["id"], vid_row, "{b}: replaced in place");
        assert_eq!(r.body["value"], "999");
        assert_eq!(r.body["status"], "invalid");
        assert_eq!(
            r.body["expiry_date"],
            Value::Null,
            "{b}: PUT replaces the whole ID"
        );
        let list = get(&app, &ids, &app.viewer).await.body;
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{b}: {list}");
        assert_eq!(list[0]["value"], "999");

        // ---- PUT a new type creates it (the path names the type, any case)
        let r = put(
            &app,
            &format!("{ids}/{}", enc("national id")),
            &key,
            json!({"value": "N-1"}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        assert_eq!(r.body["id_type"], "NATIONAL ID");
        put(
            &app,
            "/api/v1/registrants/987654321/ids/PHONE",
            &key,
            json!({"value": "1"}),
        )
        .await
        .assert_error(404, "not_found", &[]);
        delete(&app, "/api/v1/registrants/987654321/ids/PHONE", &key)
            .await
            .assert_error(404, "not_found", &[]);
        put(
            &app,
            &format!("{ids}/{}", enc("NO SUCH")),
            &key,
            json!({"value": "1"}),
        )
        .await
        .assert_error(422, "validation_failed", &["id_type"]);
        put(&app, &vid, &key, json!({"value": "1", "id_type": "PHONE"}))
            .await
            .assert_error(422, "validation_failed", &["id_type"]);
        put(&app, &vid, &key, json!({"value": "1", "status": "lost"}))
            .await
            .assert_error(422, "validation_failed", &["status"]);

        // ---- they show in the registrant, ordered by type name
        let r = get(&app, &format!("/api/v1/registrants/{id}"), &app.viewer).await;
        let shown: Vec<(&str, &str)> = r.body["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|i| {
                (
                    i["id_type"].as_str().unwrap_or(""),
                    i["value"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![("MOSIP VID", "999"), ("NATIONAL ID", "N-1")],
            "{b}"
        );

        // ---- delete, then it is gone
        let r = delete(&app, &vid, &key).await;
        assert_eq!(r.status, 204, "{b}: {}", r.body);
        delete(&app, &vid, &key)
            .await
            .assert_error(404, "not_found", &[]);
        let list = get(&app, &ids, &app.viewer).await.body;
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{b}");
        assert_eq!(list[0]["id_type"], "NATIONAL ID");
        // and can be added again
        let r = post(
            &app,
            &ids,
            &key,
            json!({"id_type": "MOSIP VID", "value": "42"}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        app.stop().await;
    }
}

#[tokio::test]
async fn api_bank_accounts_and_members() {
    for app in TestApp::all().await {
        let b = app.backend.name();
        let key = app.registrar.clone();
        let ind = app
            .create_individual(json!({"given_name": "Member", "family_name": "One"}))
            .await;
        let ind2 = app
            .create_individual(json!({"given_name": "Member", "family_name": "Two"}))
            .await;
        let group = create_group(&app, "Household").await;
        let other_group = create_group(&app, "Other").await;

        // ---- bank accounts
        let accts = format!("/api/v1/registrants/{ind}/bank-accounts");
        assert_eq!(get(&app, &accts, &app.viewer).await.body, json!([]), "{b}");
        let r = post(
            &app,
            &accts,
            &key,
            json!({"account_number": "ACC-1", "iban": "DE89 3704 0044 0532 0130 00",
                   "bic": "COBADEFFXXX", "bank_code": "37040044"}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        assert_eq!(r.body["iban"], "DE89370400440532013000");
        assert_eq!(r.body["bic"], "COBADEFFXXX");
        assert_eq!(r.body["registrant_id"], ind);
        let a1 = r.body["id"].as_i64().expect("id");
        let r = post(&app, &accts, &key, json!({"account_number": "ACC-2"})).await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        let a2 = r.body["id"].as_i64().expect("id");
        post(&app, &accts, &key, json!({"account_number": "ACC-1"}))
            .await
            .assert_error(409, "conflict", &["account_number"]);
        post(
            &app,
            &accts,
            &key,
            json!({"account_number": "ACC-3", "iban": "DE00", "bic": "1"}),
        )
        .await
        .assert_error(422, "validation_failed", &["bic", "iban"]);
        post(&app, &accts, &key, json!({"account_number": ""}))
            .await
            .assert_error(422, "validation_failed", &["account_number"]);
        post(
            &app,
            "/api/v1/registrants/987654321/bank-accounts",
            &key,
            json!({"account_number": "X"}),
        )
        .await
        .assert_error(404, "not_found", &[]);
        let list: Vec<i64> = get(&app, &accts, &app.viewer)
            .await
            .body
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|a| a["id"].as_i64())
            .collect();
        assert_eq!(list, vec![a1, a2], "{b}");
        // an account is removed only through its own registrant
        delete(
            &app,
            &format!("/api/v1/registrants/{ind2}/bank-accounts/{a1}"),
            &key,
        )
        .await
        .assert_error(404, "not_found", &[]);
        let r = delete(&app, &format!("{accts}/{a1}"), &key).await;
        assert_eq!(r.status, 204, "{b}: {}", r.body);
        delete(&app, &format!("{accts}/{a1}"), &key)
            .await
            .assert_error(404, "not_found", &[]);
        let r = get(&app, &format!("/api/v1/registrants/{ind}"), &app.viewer).await;
        assert_eq!(
            r.body["bank_accounts"].as_array().map(Vec::len),
            Some(1),
            "{b}"
        );
        assert_eq!(r.body["bank_accounts"][0]["account_number"], "ACC-2");

        // ---- members
        let members = format!("/api/v1/registrants/{group}/members");
        assert_eq!(
            get(&app, &members, &app.viewer).await.body,
            json!([]),
            "{b}"
        );
        let r = post(
            &app,
            &members,
            &key,
            json!({"individual_id": ind, "kinds": ["head", " "], "start_date": "2024-01-01"}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        assert_eq!(r.body["group_id"], group);
        assert_eq!(r.body["individual_id"], ind);
        assert_eq!(r.body["kinds"], json!(["head"]));
        assert_eq!(r.body["start_date"], "2024-01-01");
        let r = post(&app, &members, &key, json!({"individual_id": ind2})).await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        post(&app, &members, &key, json!({"individual_id": ind}))
            .await
            .assert_error(409, "conflict", &["individual_id"]);
        post(&app, &members, &key, json!({"individual_id": other_group}))
            .await
            .assert_error(422, "validation_failed", &["individual_id"]);
        post(&app, &members, &key, json!({"individual_id": 987654321}))
            .await
            .assert_error(422, "validation_failed", &["individual_id"]);
        post(
            &app,
            &members,
            &key,
            json!({"individual_id": ind2, "start_date": "2024-02-01", "end_date": "2024-01-01"}),
        )
        .await
        .assert_error(422, "validation_failed", &["end_date"]);
        // an individual has no members
        let not_group = format!("/api/v1/registrants/{ind}/members");
        get(&app, &not_group, &app.viewer)
            .await
            .assert_error(404, "not_found", &[]);
        post(&app, &not_group, &key, json!({"individual_id": ind2}))
            .await
            .assert_error(404, "not_found", &[]);
        get(&app, "/api/v1/registrants/987654321/members", &app.viewer)
            .await
            .assert_error(404, "not_found", &[]);
        let listed: Vec<i64> = get(&app, &members, &app.viewer)
            .await
            .body
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|m| m["individual_id"].as_i64())
            .collect();
        assert_eq!(listed, vec![ind, ind2], "{b}");
        // both sides see the membership
        let g = get(&app, &format!("/api/v1/registrants/{group}"), &app.viewer)
            .await
            .body;
        assert_eq!(g["memberships"].as_array().map(Vec::len), Some(2), "{b}");
        let i = get(&app, &format!("/api/v1/registrants/{ind}"), &app.viewer)
            .await
            .body;
        assert_eq!(i["memberships"][0]["group_id"], group, "{b}");
        // remove
        let r = delete(&app, &format!("{members}/{ind}"), &key).await;
        assert_eq!(r.status, 204, "{b}: {}", r.body);
        delete(&app, &format!("{members}/{ind}"), &key)
            .await
            .assert_error(404, "not_found", &[]);
        let listed = get(&app, &members, &app.viewer).await.body;
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{b}");
        assert_eq!(listed[0]["individual_id"], ind2);
        // deleting a member individual removes its membership, not the group
        assert_eq!(
            delete(&app, &format!("/api/v1/registrants/{ind2}"), &app.admin)
                .await
                .status,
            204
        );
        assert_eq!(
            get(&app, &members, &app.viewer).await.body,
            json!([]),
            "{b}"
        );
        app.stop().await;
    }
}
