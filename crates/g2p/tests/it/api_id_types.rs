//! ID types through the JSON API: the seeded set, CRUD by admins, case-insensitive names,
//! regexes, and deletion refused while in use.

use serde_json::{Value, json};

use crate::api::{delete, get, post, put};
use crate::helpers::TestApp;

#[tokio::test]
async fn api_id_types_seeded_and_managed() {
    for app in TestApp::all().await {
        let b = app.backend.name();
        let admin = app.admin.clone();
        // ---- the seeded types, sorted by name
        let r = get(&app, "/api/v1/id-types", &app.viewer).await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        let names: Vec<&str> = r
            .body
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(
            names,
            vec![
                "MOSIP AUTH TOKEN",
                "MOSIP UIN",
                "MOSIP UIN TOKEN",
                "MOSIP VID",
                "NATIONAL ID",
                "ODK INSTANCE ID",
                "PHONE"
            ],
            "{b}"
        );
        assert!(
            r.body
                .as_array()
                .expect("list")
                .iter()
                .all(|t| t["validation_regex"].is_null())
        );

        // ---- create, get, update, delete
        let r = post(
            &app,
            "/api/v1/id-types",
            &admin,
            json!({"name": "  Passport ", "validation_regex": "[A-Z][0-9]{7}"}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        assert_eq!(r.body["name"], "Passport", "{b}: trimmed");
        assert_eq!(r.body["validation_regex"], "[A-Z][0-9]{7}");
        let id = r.body["id"].as_i64().expect("id");
        let path = format!("/api/v1/id-types/{id}");
        let r = get(&app, &path, &app.viewer).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            json!({"id": id, "name": "Passport", "validation_regex": "[A-Z][0-9]{7}"})
        );
        get(&app, "/api/v1/id-types/987654321", &app.viewer)
            .await
            .assert_error(404, "not_found", &[]);
        // the regex applies to IDs
        let p = app.create_individual(json!({"given_name": "P"})).await;
        let ids = format!("/api/v1/registrants/{p}/ids");
        post(
            &app,
            &ids,
            &app.registrar,
            json!({"id_type": "passport", "value": "12345678"}),
        )
        .await
        .assert_error(422, "validation_failed", &["value"]);
        // update: rename (case only is fine for the type itself) and drop the regex
        let r = put(
            &app,
            &path,
            &admin,
            json!({"name": "PASSPORT", "validation_regex": ""}),
        )
        .await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        assert_eq!(
            r.body,
            json!({"id": id, "name": "PASSPORT", "validation_regex": null})
        );
        assert_eq!(get(&app, &path, &app.viewer).await.body, r.body, "{b}");
        put(&app, &path, &admin, json!({"name": "phone"}))
            .await
            .assert_error(409, "conflict", &["name"]);
        put(
            &app,
            "/api/v1/id-types/987654321",
            &admin,
            json!({"name": "X"}),
        )
        .await
        .assert_error(404, "not_found", &[]);
        // now any value goes
        let r = post(
            &app,
            &ids,
            &app.registrar,
            json!({"id_type": "passport", "value": "12345678"}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        assert_eq!(r.body["id_type"], "PASSPORT");
        // in use: cannot be deleted
        delete(&app, &path, &admin)
            .await
            .assert_error(409, "conflict", &["id"]);
        assert_eq!(get(&app, &path, &app.viewer).await.status, 200, "{b}");
        // once unused it can
        assert_eq!(
            delete(&app, &format!("{ids}/PASSPORT"), &app.registrar)
                .await
                .status,
            204
        );
        let r = delete(&app, &path, &admin).await;
        assert_eq!(r.status, 204, "{b}: {}", r.body);
        assert_eq!(r.body, Value::Null);
        get(&app, &path, &app.viewer)
            .await
            .assert_error(404, "not_found", &[]);
        delete(&app, &path, &admin)
            .await
            .assert_error(404, "not_found", &[]);

        // ---- invalid input
        post(
            &app,
            "/api/v1/id-types",
            &admin,
            json!({"name": "Bad", "validation_regex": "[0-9"}),
        )
        .await
        .assert_error(422, "validation_failed", &["validation_regex"]);
        post(&app, "/api/v1/id-types", &admin, json!({"name": " "}))
            .await
            .assert_error(422, "validation_failed", &["name"]);
        post(
            &app,
            "/api/v1/id-types",
            &admin,
            json!({"name": "X", "regex": "1"}),
        )
        .await
        .assert_error(422, "validation_failed", &["regex"]);
        post(
            &app,
            "/api/v1/id-types",
            &admin,
            json!({"name": "x".repeat(201)}),
        )
        .await
        .assert_error(422, "validation_failed", &["name"]);
        // only admins write ID types
        post(
            &app,
            "/api/v1/id-types",
            &app.registrar,
            json!({"name": "Reg"}),
        )
        .await
        .assert_error(403, "forbidden", &[]);
        let names: Vec<String> = get(&app, "/api/v1/id-types", &app.viewer)
            .await
            .body
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            names.len(),
            7,
            "{b}: only the seeded types remain: {names:?}"
        );
        app.stop().await;
    }
}
