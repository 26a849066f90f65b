//! The audit trail through the JSON API, and the append-only audit log in the database.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{get, patch, post, put, send};
use crate::helpers::TestApp;

async fn audit_count(app: &TestApp) -> i64 {
    g2p_store::with_db!(app.app.store, read, p => {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM audit_log")
            .fetch_one(p)
            .await
            .expect("count")
    })
}

#[tokio::test]
async fn api_audit_trail_is_complete_and_append_only() {
    for app in TestApp::all().await {
        let b = app.backend.name();
        let key = app.registrar.clone();
        let actor = "registrar:test-registrar";

        // create with a request id of our own: the entry carries it
        let r = send(
            app.request(Method::POST, "/api/v1/registrants", Some(&key))
                .header("x-request-id", "audit-create-1")
                .json(&json!({"given_name": "Audit", "family_name": "Me", "email": "a@b.org"})),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        let id = r.body["id"].as_i64().expect("id");
        let path = format!("/api/v1/registrants/{id}");
        let r = put(
            &app,
            &path,
            &key,
            json!({"given_name": "Audit", "family_name": "Me", "email": "new@b.org"}),
        )
        .await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        let r = patch(&app, &path, &key, json!({"gender": "x"})).await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        let r = post(
            &app,
            &format!("{path}/ids"),
            &key,
            json!({"id_type": "PHONE", "value": "5550100"}),
        )
        .await;
        assert_eq!(r.status, 201, "{b}: {}", r.body);
        let reg_id_row = r.body["id"].as_i64().expect("id");
        let r = app
            .request(Method::DELETE, &format!("{path}/ids/PHONE"), Some(&key))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 204, "{b}");
        // a failed write leaves no trace
        let r = patch(&app, &path, &key, json!({"email": "broken"})).await;
        assert_eq!(r.status, 422, "{b}");

        let r = get(&app, &format!("{path}/audit"), &app.viewer).await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        let entries = r.body.as_array().expect("entries").clone();
        let actions: Vec<&str> = entries
            .iter()
            .filter_map(|e| e["action"].as_str())
            .collect();
        assert_eq!(
            actions,
            vec!["remove_id", "add_id", "update", "update", "create"],
            "{b}"
        );
        assert!(
            entries
                .iter()
                .all(|e| e["actor"] == actor && e["registrant_id"] == id),
            "{b}"
        );
        let ids: Vec<i64> = entries.iter().filter_map(|e| e["id"].as_i64()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] > w[1]),
            "{b}: newest first: {ids:?}"
        );
        let [remove, add, patched, replaced, created] = &entries[..] else {
            panic!("{b}: five entries expected")
        };
        // create: no before, the whole registrant after (with its request id)
        assert_eq!(created["entity"], "registrant");
        assert_eq!(created["entity_id"], id);
        assert_eq!(created["request_id"], "audit-create-1", "{b}");
        assert_eq!(created["before"], Value::Null);
        assert_eq!(created["after"]["name"], "ME, AUDIT");
        assert_eq!(created["after"]["email"], "a@b.org");
        // PUT: before and after images
        assert_eq!(replaced["before"]["email"], "a@b.org", "{b}");
        assert_eq!(replaced["after"]["email"], "new@b.org");
        assert_eq!(replaced["after"]["version"], 2);
        // PATCH
        assert_eq!(patched["before"]["gender"], Value::Null, "{b}");
        assert_eq!(patched["after"]["gender"], "x");
        assert_eq!(patched["after"]["email"], "new@b.org");
        // IDs
        assert_eq!(add["entity"], "reg_id");
        assert_eq!(add["entity_id"], reg_id_row);
        assert_eq!(add["before"], Value::Null);
        assert_eq!(add["after"]["value"], "5550100", "{b}");
        assert_eq!(remove["before"]["value"], "5550100");
        assert_eq!(remove["after"], Value::Null);
        for e in &entries {
            let rid = e["request_id"].as_str().unwrap_or_default();
            assert!(
                !rid.is_empty(),
                "{b}: every entry carries its request id: {e}"
            );
        }

        // paging with `before`
        let r = get(&app, &format!("{path}/audit?limit=2"), &app.viewer).await;
        let page: Vec<i64> = r
            .body
            .as_array()
            .expect("page")
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .collect();
        assert_eq!(page, ids[..2].to_vec(), "{b}");
        let r = get(
            &app,
            &format!("{path}/audit?limit=2&before={}", ids[1]),
            &app.viewer,
        )
        .await;
        let page: Vec<i64> = r
            .body
            .as_array()
            .expect("page")
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .collect();
        assert_eq!(page, ids[2..4].to_vec(), "{b}");

        // ---- append-only, enforced by the database itself
        let before = audit_count(&app).await;
        assert!(before >= 5, "{b}");
        let del: Result<(), sqlx::Error> = g2p_store::with_db!(app.app.store, write, p => {
            sqlx::query("DELETE FROM audit_log").execute(p).await.map(|_| ())
        });
        let err = del.expect_err("DELETE FROM audit_log must fail");
        assert!(err.to_string().contains("append-only"), "{b}: {err}");
        let upd: Result<(), sqlx::Error> = g2p_store::with_db!(app.app.store, write, p => {
            sqlx::query("UPDATE audit_log SET actor = 'someone else'").execute(p).await.map(|_| ())
        });
        let err = upd.expect_err("UPDATE audit_log must fail");
        assert!(err.to_string().contains("append-only"), "{b}: {err}");
        assert_eq!(audit_count(&app).await, before, "{b}");
        let again = get(&app, &format!("{path}/audit"), &app.viewer).await.body;
        assert_eq!(again.as_array().map(Vec::len), Some(5), "{b}");
        assert_eq!(again[0]["actor"], actor);

        // ---- the trail outlives the registrant
        let r = app
            .request(Method::DELETE, &path, Some(&app.admin))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 204, "{b}");
        let r = get(&app, &format!("{path}/audit?limit=1"), &app.viewer).await;
        assert_eq!(r.status, 200, "{b}: {}", r.body);
        assert_eq!(r.body[0]["action"], "delete");
        assert_eq!(r.body[0]["actor"], "admin:test-admin");
        assert_eq!(r.body[0]["before"]["name"], "ME, AUDIT");
        assert_eq!(r.body[0]["after"], Value::Null);
        app.stop().await;
    }
}
