//! Authentication and roles, driven by the OpenAPI document so that no endpoint can be left
//! unguarded: every path × method is called without a key, with a wrong key and as each role.
//! Also the API key lifecycle: shown once, works, stops working the moment it is revoked.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{ROUTES, Resp, create_group, delete, enc, get, post, send};
use crate::helpers::TestApp;

/// Routes only admins may use (besides every read that viewers may do).
fn admin_only(method: &Method, path: &str) -> bool {
    path.starts_with("/api/v1/api-keys")
        || (path.starts_with("/api/v1/id-types") && *method != Method::GET)
        || (path == "/api/v1/registrants/{id}" && *method == Method::DELETE)
        || (path.starts_with("/api/v1/jobs") && *method != Method::GET)
        || (path.starts_with("/api/v1/mts/") && *method != Method::GET)
}

/// Reads: every GET, and the search that takes its filter as a body.
fn is_read(method: &Method, path: &str) -> bool {
    *method == Method::GET || path == "/api/v1/registrants/search"
}

fn methods(item: &Value) -> Vec<Method> {
    let mut out = Vec::new();
    for (m, method) in [
        ("get", Method::GET),
        ("post", Method::POST),
        ("put", Method::PUT),
        ("patch", Method::PATCH),
        ("delete", Method::DELETE),
    ] {
        if item.get(m).is_some() {
            out.push(method);
        }
    }
    out
}

async fn call_as(app: &TestApp, method: &Method, path: &str, key: Option<&str>) -> Resp {
    let mut rb = app.request(method.clone(), path, key);
    if *method != Method::GET && *method != Method::DELETE {
        // A well-formed JSON body, so that a 415 or 400 cannot hide a missing role check.
        rb = rb.json(&json!({}));
    }
    send(rb).await
}

#[tokio::test]
async fn api_every_route_requires_a_key_and_the_right_role() {
    for app in TestApp::all().await {
        let b = app.backend.name();
        // real records for every path parameter
        let ind = app
            .create_individual(
                json!({"given_name": "Auth", "ids": [{"id_type": "PHONE", "value": "5550100"}],
                "bank_accounts": [{"account_number": "A-1"}]}),
            )
            .await;
        let group = create_group(&app, "Auth group").await;
        let r = post(
            &app,
            &format!("/api/v1/registrants/{group}/members"),
            &app.registrar,
            json!({"individual_id": ind}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        let account = get(&app, &format!("/api/v1/registrants/{ind}"), &app.viewer)
            .await
            .body["bank_accounts"][0]["id"]
            .as_i64()
            .expect("account");
        let id_type = get(&app, "/api/v1/id-types", &app.viewer).await.body[0]["id"]
            .as_i64()
            .expect("id type");
        let spare = post(
            &app,
            "/api/v1/api-keys",
            &app.admin,
            json!({"name": "spare", "role": "viewer"}),
        )
        .await;
        let key_row = spare.body["id"].as_i64().expect("key");

        let doc = send(app.client.get(app.url("/api/v1/openapi.json"))).await;
        assert_eq!(doc.status, 200, "{b}");
        let paths = doc.body["paths"].as_object().expect("paths").clone();
        let mut seen = Vec::new();
        for (template, item) in &paths {
            let concrete = if template.starts_with("/api/v1/registrants/{id}/members") {
                template.replace("{id}", &group.to_string())
            } else if template.starts_with("/api/v1/id-types/") {
                template.replace("{id}", &id_type.to_string())
            } else if template.starts_with("/api/v1/api-keys/") {
                template.replace("{id}", &key_row.to_string())
            } else {
                template.replace("{id}", &ind.to_string())
            }
            .replace("{id_type}", &enc("PHONE"))
            .replace("{account_id}", &account.to_string())
            .replace("{individual_id}", &ind.to_string());
            assert!(
                !concrete.contains('{'),
                "{b}: unsubstituted parameter in {concrete}"
            );
            for method in methods(item) {
                let what = format!("{b}: {method} {concrete}");
                let known = ROUTES.contains(&format!("{method} {template}").as_str());
                seen.push(format!("{method} {template}"));
                // no key
                let r = call_as(&app, &method, &concrete, None).await;
                r.assert_error(401, "unauthorized", &[]);
                assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
                // a wrong key, by either header
                call_as(&app, &method, &concrete, Some("g2p_xxx_yyy"))
                    .await
                    .assert_error(401, "unauthorized", &[]);
                let r = send(
                    app.client
                        .request(method.clone(), app.url(&concrete))
                        .header("x-api-key", "g2p_xxx_yyy"),
                )
                .await;
                assert_eq!(r.status, 401, "{what}");
                let forged = format!("{}x", app.viewer);
                assert_eq!(
                    call_as(&app, &method, &concrete, Some(&forged))
                        .await
                        .status,
                    401,
                    "{what}"
                );
                // connector: only /me
                let r = call_as(&app, &method, &concrete, Some(&app.connector)).await;
                if template == "/api/v1/me" {
                    assert_eq!(r.status, 200, "{what}");
                } else {
                    r.assert_error(403, "forbidden", &[]);
                }
                // viewer: reads only (and not the admin ones)
                let r = call_as(&app, &method, &concrete, Some(&app.viewer)).await;
                let read = is_read(&method, template);
                if read && !admin_only(&method, template) {
                    // Another module's route may answer 404 for a borrowed id; ours are all 200.
                    let ok = r.status == 200 || (!known && r.status == 404);
                    assert!(ok, "{what} as viewer: {} {}", r.status, r.body);
                } else {
                    r.assert_error(403, "forbidden", &[]);
                }
                // registrar: everything but the admin routes
                if admin_only(&method, template) {
                    call_as(&app, &method, &concrete, Some(&app.registrar))
                        .await
                        .assert_error(403, "forbidden", &[]);
                    if read {
                        let r = call_as(&app, &method, &concrete, Some(&app.admin)).await;
                        assert_eq!(r.status, 200, "{what} as admin");
                    }
                } else if read {
                    let r = call_as(&app, &method, &concrete, Some(&app.registrar)).await;
                    assert!(
                        r.status == 200 || (!known && r.status == 404),
                        "{what} as registrar"
                    );
                } else {
                    // `{}` is incomplete for most writes: past the role check, it fails
                    // validation instead (or succeeds), but is never refused for the role.
                    let r = call_as(&app, &method, &concrete, Some(&app.registrar)).await;
                    assert!(
                        ![401, 403].contains(&r.status),
                        "{what} as registrar: {}",
                        r.body
                    );
                }
            }
        }
        let missing: Vec<&&str> = ROUTES
            .iter()
            .filter(|r| !seen.iter().any(|s| s == *r))
            .collect();
        assert!(missing.is_empty(), "{b}: not in the document: {missing:?}");

        // the key may also come as X-API-Key, and /me says who it is
        let r = send(
            app.client
                .get(app.url("/api/v1/me"))
                .header("x-api-key", &app.viewer),
        )
        .await;
        assert_eq!(r.status, 200, "{b}");
        assert_eq!(r.body["name"], "test-viewer");
        assert_eq!(r.body["role"], "viewer");
        let r = get(&app, "/api/v1/me", &app.connector).await;
        assert_eq!(r.body["role"], "connector", "{b}");
        // a bearer with another scheme is no key
        let r = send(
            app.client
                .get(app.url("/api/v1/me"))
                .header("authorization", format!("Basic {}", app.viewer)),
        )
        .await;
        r.assert_error(401, "unauthorized", &[]);
        app.stop().await;
    }
}

#[tokio::test]
async fn api_keys_are_shown_once_work_and_revoke_immediately() {
    for app in TestApp::all().await {
        let b = app.backend.name();
        let r = post(
            &app,
            "/api/v1/api-keys",
            &app.admin,
            json!({"name": "ci-bot", "role": "registrar"}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        let key = r.body["key"].as_str().expect("key").to_owned();
        let key_id = r.body["key_id"].as_str().expect("key_id").to_owned();
        let row = r.body["id"].as_i64().expect("id");
        assert!(key.starts_with(&format!("g2p_{key_id}_")), "{b}: {key}");
        assert!(key.len() > key_id.len() + 40, "{b}: the secret is long");
        assert_eq!(r.body["name"], "ci-bot");
        assert_eq!(r.body["role"], "registrar");
        assert_eq!(r.body["revoked_at"], Value::Null);

        // shown once: the listing never carries the key or its hash
        let list = get(&app, "/api/v1/api-keys", &app.admin).await;
        assert_eq!(list.status, 200);
        let text = list.body.to_string();
        assert!(
            !text.contains(&key[4 + key_id.len() + 1..]),
            "{b}: secret listed"
        );
        assert!(
            !text.contains("argon2") && !text.contains("secret_hash"),
            "{b}"
        );
        let names: Vec<&str> = list
            .body
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|k| k["name"].as_str())
            .collect();
        assert_eq!(
            names,
            vec![
                "test-admin",
                "test-registrar",
                "test-viewer",
                "test-connector",
                "ci-bot"
            ],
            "{b}"
        );

        // it works, as its role, and keeps working from the cache
        for _ in 0..2 {
            let r = get(&app, "/api/v1/me", &key).await;
            assert_eq!(r.status, 200, "{b}: {}", r.body);
            assert_eq!(
                r.body,
                json!({"key_id": key_id, "name": "ci-bot", "role": "registrar"})
            );
        }
        let r = post(
            &app,
            "/api/v1/registrants",
            &key,
            json!({"given_name": "By", "family_name": "Bot"}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        let audit = get(
            &app,
            &format!("/api/v1/registrants/{}/audit", r.body["id"]),
            &app.viewer,
        )
        .await;
        assert_eq!(audit.body[0]["actor"], "registrar:ci-bot", "{b}");
        // the right key id with a wrong secret is refused
        let wrong = format!("g2p_{key_id}_{}", "0".repeat(64));
        get(&app, "/api/v1/me", &wrong)
            .await
            .assert_error(401, "unauthorized", &[]);

        // revoked: refused at once, although it was cached a moment ago
        let r = delete(&app, &format!("/api/v1/api-keys/{row}"), &app.admin).await;
        assert_eq!(r.status, 204, "{b}: {}", r.body);
        get(&app, "/api/v1/me", &key)
            .await
            .assert_error(401, "unauthorized", &[]);
        post(
            &app,
            "/api/v1/registrants",
            &key,
            json!({"given_name": "Again"}),
        )
        .await
        .assert_error(401, "unauthorized", &[]);
        delete(&app, &format!("/api/v1/api-keys/{row}"), &app.admin)
            .await
            .assert_error(404, "not_found", &[]);
        delete(&app, "/api/v1/api-keys/987654321", &app.admin)
            .await
            .assert_error(404, "not_found", &[]);
        let list = get(&app, "/api/v1/api-keys", &app.admin).await.body;
        let revoked = list
            .as_array()
            .expect("list")
            .iter()
            .find(|k| k["id"] == row)
            .expect("listed");
        assert!(revoked["revoked_at"].is_string(), "{b}: {revoked}");
        // other keys are unaffected
        assert_eq!(
            get(&app, "/api/v1/me", &app.registrar).await.status,
            200,
            "{b}"
        );

        // bad requests
        post(
            &app,
            "/api/v1/api-keys",
            &app.admin,
            json!({"name": "x", "role": "root"}),
        )
        .await
        .assert_error(422, "validation_failed", &["role"]);
        post(
            &app,
            "/api/v1/api-keys",
            &app.admin,
            json!({"name": " ", "role": "viewer"}),
        )
        .await
        .assert_error(422, "validation_failed", &["name"]);
        post(
            &app,
            "/api/v1/api-keys",
            &app.registrar,
            json!({"name": "mine", "role": "admin"}),
        )
        .await
        .assert_error(403, "forbidden", &[]);
        let n = get(&app, "/api/v1/api-keys", &app.admin)
            .await
            .body
            .as_array()
            .map(Vec::len);
        assert_eq!(
            n,
            Some(5),
            "{b}: no key was created by the refused requests"
        );
        // a key for every role can be made, and /me reports it
        for role in ["admin", "registrar", "viewer", "connector"] {
            let r = post(
                &app,
                "/api/v1/api-keys",
                &app.admin,
                json!({"name": format!("k-{role}"), "role": role}),
            )
            .await;
            assert_eq!(r.status, 201, "{b}: {}", r.body);
            let k = r.body["key"].as_str().expect("key");
            assert_eq!(get(&app, "/api/v1/me", k).await.body["role"], role, "{b}");
        }
        app.stop().await;
    }
}
