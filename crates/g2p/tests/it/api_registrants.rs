//! Registrants through the JSON API: create, read, replace, merge-patch, optimistic concurrency,
//! delete, keyset paging and search — on every backend.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{
    all_ids, call, create_group, delete, enc, get, ids_of, patch, post, put, send, today,
};
use crate::helpers::TestApp;

fn ana() -> Value {
    json!({
        "external_key": "ext-ana",
        "given_name": " Ana ",
        "family_name": "Diaz",
        "gender": "female",
        "birthdate": "1990-04-01",
        "email": "ana@example.org",
        "address": "1 Main St",
        "phone_numbers": [{"phone_no": "+63 912 345 6789", "date_collected": "2024-01-02"}],
        "attributes": {"district": "North", "household_size": 4},
        "ids": [{"id_type": "national id", "value": " NID-001 "}],
        "bank_accounts": [{"account_number": "12345678", "iban": "gb82 west 1234 5698 7654 32",
                           "bic": "deutdeff", "account_holder_name": "Ana Diaz"}]
    })
}

#[tokio::test]
async fn api_registrants_crud_patch_and_concurrency() {
    for app in TestApp::all().await {
        let b = app.backend.name();
        // ---- create an individual
        let r = post(&app, "/api/v1/registrants", &app.registrar, ana()).await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        let c = r.body.clone();
        let id = c["id"].as_i64().expect("id");
        assert_eq!(c["name"], "DIAZ, ANA", "{b}");
        assert_eq!(c["given_name"], "Ana", "{b}: trimmed");
        assert_eq!(c["family_name"], "Diaz");
        assert_eq!(c["external_key"], "ext-ana");
        assert_eq!(c["is_group"], false);
        assert_eq!(c["birthdate"], "1990-04-01");
        assert_eq!(c["registration_date"], json!(today()));
        assert_eq!(c["email"], "ana@example.org");
        assert_eq!(c["phone"], "+63 912 345 6789");
        assert_eq!(c["phone_numbers"][0]["date_collected"], "2024-01-02");
        assert_eq!(
            c["attributes"],
            json!({"district": "North", "household_size": 4})
        );
        assert_eq!(c["version"], 1);
        let ids = c["ids"].as_array().expect("ids");
        assert_eq!(ids.len(), 1, "{b}");
        assert_eq!(ids[0]["id_type"], "NATIONAL ID", "{b}: canonical type name");
        assert_eq!(ids[0]["value"], "NID-001");
        assert_eq!(ids[0]["status"], "valid");
        assert_eq!(ids[0]["registrant_id"], id);
        let accts = c["bank_accounts"].as_array().expect("accounts");
        assert_eq!(accts.len(), 1);
        assert_eq!(
            accts[0]["iban"], "GB82WEST12345698765432",
            "{b}: normalised IBAN"
        );
        assert_eq!(accts[0]["bic"], "DEUTDEFF");
        assert_eq!(accts[0]["account_number"], "12345678");
        assert_eq!(c["memberships"], json!([]));

        // ---- create a group
        let r = post(
            &app,
            "/api/v1/registrants",
            &app.registrar,
            json!({"is_group": true, "name": "Diaz household", "group_kind": "household"}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        assert_eq!(r.body["is_group"], true);
        assert_eq!(
            r.body["name"], "Diaz household",
            "{b}: a given name is kept as is"
        );
        assert_eq!(r.body["group_kind"], "household");
        assert_eq!(r.body["ids"], json!([]));

        // ---- get: exactly what create returned; 404 otherwise
        let r = get(&app, &format!("/api/v1/registrants/{id}"), &app.viewer).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, c, "{b}: GET differs from the create response");
        get(&app, "/api/v1/registrants/987654321", &app.viewer)
            .await
            .assert_error(404, "not_found", &[]);

        // ---- PUT replaces every field: what is not sent is cleared
        let path = format!("/api/v1/registrants/{id}");
        let r = put(
            &app,
            &path,
            &app.registrar,
            json!({"given_name": "Ana", "family_name": "Lopez", "email": "ana.lopez@example.org",
                   "external_key": "ext-ana"}),
        )
        .await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        assert_eq!(r.body["name"], "LOPEZ, ANA", "{b}: recomposed");
        assert_eq!(r.body["email"], "ana.lopez@example.org");
        assert_eq!(r.body["birthdate"], Value::Null, "{b}: cleared by PUT");
        assert_eq!(r.body["gender"], Value::Null);
        assert_eq!(r.body["attributes"], json!({}));
        assert_eq!(r.body["version"], 2);
        assert_eq!(r.body["created_at"], c["created_at"]);
        // IDs and accounts are not touched by a PUT of the fields.
        let d = get(&app, &path, &app.viewer).await.body;
        assert_eq!(d["ids"], c["ids"], "{b}");
        assert_eq!(d["bank_accounts"], c["bank_accounts"]);
        // ... and cannot be sent with one.
        put(
            &app,
            &path,
            &app.registrar,
            json!({"given_name": "Ana", "ids": [{"id_type": "PHONE", "value": "123456"}]}),
        )
        .await
        .assert_error(422, "validation_failed", &["ids"]);
        put(
            &app,
            &path,
            &app.registrar,
            json!({"given_name": "Ana", "bank_accounts": [{"account_number": "1"}]}),
        )
        .await
        .assert_error(422, "validation_failed", &["bank_accounts"]);
        // An individual cannot become a group.
        put(
            &app,
            &path,
            &app.registrar,
            json!({"is_group": true, "name": "X"}),
        )
        .await
        .assert_error(422, "validation_failed", &["is_group"]);
        put(
            &app,
            "/api/v1/registrants/987654321",
            &app.registrar,
            json!({"given_name": "X"}),
        )
        .await
        .assert_error(404, "not_found", &[]);

        // ---- PATCH: one field changes, the others stay
        let r = patch(&app, &path, &app.registrar, json!({"gender": "female"})).await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        assert_eq!(r.body["gender"], "female");
        assert_eq!(r.body["email"], "ana.lopez@example.org", "{b}: kept");
        assert_eq!(r.body["family_name"], "Lopez");
        assert_eq!(r.body["external_key"], "ext-ana");
        assert_eq!(r.body["name"], "LOPEZ, ANA");
        assert_eq!(r.body["version"], 3);
        // null clears a field
        let r = patch(&app, &path, &app.registrar, json!({"email": null})).await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        assert_eq!(r.body["email"], Value::Null, "{b}: cleared");
        assert_eq!(r.body["gender"], "female");
        assert_eq!(r.body["version"], 4);
        // A composed name follows the name parts it was composed from.
        let r = patch(&app, &path, &app.registrar, json!({"given_name": "Maria"})).await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        assert_eq!(
            r.body["name"], "LOPEZ, MARIA",
            "{b}: name recomposed by PATCH"
        );
        // Nested objects merge (RFC 7396); application/merge-patch+json is accepted.
        let r = send(
            app.request(Method::PATCH, &path, Some(&app.registrar))
                .header("content-type", "application/merge-patch+json")
                .body(r#"{"attributes":{"district":"South","flag":true}}"#),
        )
        .await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        assert_eq!(
            r.body["attributes"],
            json!({"district": "South", "flag": true})
        );
        let r = patch(
            &app,
            &path,
            &app.registrar,
            json!({"attributes": {"flag": null}}),
        )
        .await;
        assert_eq!(r.body["attributes"], json!({"district": "South"}), "{b}");
        let version = r.body["version"].as_i64().expect("version");
        assert_eq!(version, 7);
        // Bad values through PATCH are validated like any other write.
        patch(
            &app,
            &path,
            &app.registrar,
            json!({"email": "nope", "nickname": "x"}),
        )
        .await
        .assert_error(422, "validation_failed", &["nickname"]);
        patch(&app, &path, &app.registrar, json!({"email": "nope"}))
            .await
            .assert_error(422, "validation_failed", &["email"]);
        patch(&app, &path, &app.registrar, json!(["not", "an", "object"]))
            .await
            .assert_error(422, "validation_failed", &["body"]);
        patch(
            &app,
            "/api/v1/registrants/987654321",
            &app.registrar,
            json!({"gender": "x"}),
        )
        .await
        .assert_error(404, "not_found", &[]);

        // ---- If-Match: a stale version is a conflict, the current one goes through
        for method in [Method::PUT, Method::PATCH] {
            let r = send(
                app.request(method.clone(), &path, Some(&app.registrar))
                    .header("if-match", "\"1\"")
                    .json(&json!({"given_name": "Maria", "family_name": "Lopez"})),
            )
            .await;
            r.assert_error(409, "conflict", &["version"]);
        }
        let r = send(
            app.request(Method::PATCH, &path, Some(&app.registrar))
                .header("if-match", format!("\"{version}\""))
                .json(&json!({"birth_place": "Cebu"})),
        )
        .await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        assert_eq!(r.body["version"], version + 1);
        assert_eq!(r.body["birth_place"], "Cebu");
        let r = send(
            app.request(Method::PUT, &path, Some(&app.registrar))
                .header("if-match", "W/\"8\"")
                .json(&json!({"given_name": "Maria", "family_name": "Lopez"})),
        )
        .await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        assert_eq!(r.body["version"], 9);
        assert_eq!(r.body["birth_place"], Value::Null);
        let r = send(
            app.request(Method::PUT, &path, Some(&app.registrar))
                .header("if-match", "yesterday")
                .json(&json!({"given_name": "Maria"})),
        )
        .await;
        r.assert_error(422, "validation_failed", &["If-Match"]);
        // the failed writes changed nothing
        let d = get(&app, &path, &app.viewer).await.body;
        assert_eq!(d["version"], 9, "{b}");
        assert_eq!(d["given_name"], "Maria");

        // ---- delete: registrars may not, admins may; then it is gone
        delete(&app, &path, &app.registrar)
            .await
            .assert_error(403, "forbidden", &[]);
        assert_eq!(get(&app, &path, &app.viewer).await.status, 200, "{b}");
        let r = delete(&app, &path, &app.admin).await;
        assert_eq!(r.status, 204, "{b}: {}", r.body);
        assert_eq!(r.body, Value::Null);
        get(&app, &path, &app.viewer)
            .await
            .assert_error(404, "not_found", &[]);
        get(&app, &format!("{path}/ids"), &app.viewer)
            .await
            .assert_error(404, "not_found", &[]);
        delete(&app, &path, &app.admin)
            .await
            .assert_error(404, "not_found", &[]);
        // the external key is free again
        let r = post(&app, "/api/v1/registrants", &app.registrar, ana()).await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        assert_ne!(r.body["id"].as_i64(), Some(id));
        app.stop().await;
    }
}

#[tokio::test]
async fn api_registrants_keyset_paging_and_search() {
    for app in TestApp::all().await {
        let b = app.backend.name();
        let mut created = Vec::new();
        for i in 0..7 {
            let mut body = json!({"given_name": format!("Person{i}"), "family_name": "Page"});
            // 0..3 have a VID, 2 and 3 also a UIN token, 4 only a token, 5 and 6 nothing.
            let mut ids = Vec::new();
            if i < 4 {
                ids.push(json!({"id_type": "MOSIP VID", "value": format!("VID{i}")}));
            }
            if (2..5).contains(&i) {
                ids.push(json!({"id_type": "MOSIP UIN TOKEN", "value": format!("TOK{i}")}));
            }
            body["ids"] = json!(ids);
            created.push(app.create_individual(body).await);
        }
        let group = create_group(&app, "Page household").await;
        let mut everyone = created.clone();
        everyone.push(group);

        // ---- keyset paging: 3 + 3 + 2, no duplicates, nothing missing, ascending
        let mut seen: Vec<i64> = Vec::new();
        let mut after: Option<i64> = None;
        let mut pages = 0;
        loop {
            let path = match after {
                Some(a) => format!("/api/v1/registrants?limit=3&after={a}"),
                None => "/api/v1/registrants?limit=3".to_owned(),
            };
            let r = get(&app, &path, &app.viewer).await;
            assert_eq!(r.status, 200, "{b}: {}", r.body);
            let page = ids_of(&r.body);
            pages += 1;
            assert!(page.len() <= 3);
            seen.extend(&page);
            match r.body["next_after"].as_i64() {
                Some(n) => {
                    assert_eq!(Some(&n), page.last(), "{b}: cursor is the last id");
                    after = Some(n);
                }
                None => {
                    assert_eq!(r.body.get("next_after"), Some(&Value::Null));
                    break;
                }
            }
            assert!(pages < 10, "{b}: paging does not end");
        }
        assert_eq!(pages, 3, "{b}");
        assert_eq!(seen, everyone, "{b}: every registrant once, in id order");
        // a last page that is exactly full has no cursor: 8 = 4 + 4, no empty third page
        let r = get(&app, "/api/v1/registrants?limit=4", &app.viewer).await;
        assert_eq!(r.body["next_after"], everyone[3], "{b}");
        let r = get(
            &app,
            &format!("/api/v1/registrants?limit=4&after={}", everyone[3]),
            &app.viewer,
        )
        .await;
        assert_eq!(ids_of(&r.body), everyone[4..].to_vec(), "{b}");
        assert_eq!(r.body["next_after"], Value::Null, "{b}");
        // items carry their IDs
        let r = get(&app, "/api/v1/registrants?limit=1", &app.viewer).await;
        assert_eq!(r.body["items"][0]["ids"][0]["value"], "VID0", "{b}");
        assert_eq!(r.body["items"][0]["name"], "PAGE, PERSON0");
        assert_eq!(r.body["next_after"], created[0]);

        // ---- search: has a VID and no UIN token → 0 and 1
        let filter = json!([
            ["reg_ids.id_type", "=like", "MOSIP VID"],
            "!",
            ["reg_ids.id_type", "=like", "MOSIP UIN TOKEN"]
        ]);
        let q = format!("&filter={}", enc(&filter.to_string()));
        assert_eq!(
            all_ids(&app, &q).await,
            vec![created[0], created[1]],
            "{b}: GET filter"
        );
        let r = post(
            &app,
            "/api/v1/registrants/search",
            &app.viewer,
            json!({"filter": filter, "limit": 10}),
        )
        .await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        assert_eq!(
            ids_of(&r.body),
            vec![created[0], created[1]],
            "{b}: POST search"
        );
        assert_eq!(r.body["next_after"], Value::Null);
        // paging applies to searches too
        let r = post(
            &app,
            "/api/v1/registrants/search",
            &app.viewer,
            json!({"filter": [["reg_ids.id_type", "=", "MOSIP UIN TOKEN"]], "limit": 2}),
        )
        .await;
        assert_eq!(ids_of(&r.body), vec![created[2], created[3]], "{b}");
        assert_eq!(r.body["next_after"], created[3]);
        let r = post(
            &app,
            "/api/v1/registrants/search",
            &app.viewer,
            json!({"filter": [["reg_ids.id_type", "=", "MOSIP UIN TOKEN"]], "limit": 2,
                   "after": created[3]}),
        )
        .await;
        assert_eq!(ids_of(&r.body), vec![created[4]], "{b}");
        assert_eq!(r.body["next_after"], Value::Null);
        // plain fields; no filter = everything
        let q = format!("&filter={}", enc(r#"[["is_group","=",true]]"#));
        assert_eq!(all_ids(&app, &q).await, vec![group], "{b}");
        let q = format!("&filter={}", enc(r#"[["name","ilike","person6"]]"#));
        assert_eq!(all_ids(&app, &q).await, vec![created[6]], "{b}");
        let r = post(&app, "/api/v1/registrants/search", &app.viewer, json!({})).await;
        assert_eq!(ids_of(&r.body), everyone, "{b}");
        assert_eq!(
            all_ids(&app, "&filter=").await,
            everyone,
            "{b}: empty filter"
        );
        // a bad filter names its position
        let q = format!(
            "/api/v1/registrants?filter={}",
            enc(r#"[["name","=","x"],["no_such_field","=",1]]"#)
        );
        let r = get(&app, &q, &app.viewer).await;
        r.assert_error(422, "validation_failed", &["filter"]);
        assert!(
            r.field_message("filter").contains("term 1"),
            "{b}: {}",
            r.body
        );
        let r = post(
            &app,
            "/api/v1/registrants/search",
            &app.viewer,
            json!({"filter": [["name", "=", "x"], ["name", "=", "y"], ["name", "bogus-op", "y"]]}),
        )
        .await;
        r.assert_error(422, "validation_failed", &["filter"]);
        assert!(
            r.field_message("filter").contains("term 2"),
            "{b}: {}",
            r.body
        );
        get(
            &app,
            "/api/v1/registrants?filter=%5B%5Bnot-json",
            &app.viewer,
        )
        .await
        .assert_error(422, "validation_failed", &["filter"]);
        post(
            &app,
            "/api/v1/registrants/search",
            &app.viewer,
            json!({"filter": {"a": 1}}),
        )
        .await
        .assert_error(422, "validation_failed", &["filter"]);
        let body = Some(json!({"query": []}));
        call(
            &app,
            Method::POST,
            "/api/v1/registrants/search",
            Some(app.viewer.as_str()),
            body,
        )
        .await
        .assert_error(422, "validation_failed", &["query"]);
        app.stop().await;
    }
}
