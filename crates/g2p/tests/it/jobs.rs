//! Jobs through the API: starting the ID re-validation job, its progress and result, retry and
//! cancel, roles.

use reqwest::Method;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn revalidation_job_marks_ids_that_break_a_new_rule() {
    for app in TestApp::all().await {
        let (s, t) = app
            .post(
                "/api/v1/id-types",
                &app.admin,
                json!({"name": "VOTER CARD"}),
            )
            .await;
        assert_eq!(s, 201, "{t}");
        let type_id = t["id"].as_i64().unwrap();
        let mut ids = Vec::new();
        for (i, value) in ["123456", "12345X", "654321", "1"].iter().enumerate() {
            let id = app
                .create_individual(json!({
                    "given_name": format!("P{i}"), "family_name": "Test",
                    "ids": [{"id_type": "voter card", "value": value}]
                }))
                .await;
            ids.push(id);
        }
        let (s, _) = app
            .call(
                Method::PUT,
                &format!("/api/v1/id-types/{type_id}"),
                &app.admin,
                Some(json!({"name": "VOTER CARD", "validation_regex": "[0-9]{6}"})),
            )
            .await;
        assert_eq!(s, 200);

        // Registrars may not start it; admins may.
        let path = format!("/api/v1/id-types/{type_id}/revalidate");
        let (s, _) = app.post(&path, &app.registrar, json!({})).await;
        assert_eq!(s, 403);
        let (s, job) = app.post(&path, &app.admin, json!({})).await;
        assert_eq!(s, 202, "{job}");
        assert_eq!(job["status"], "queued");
        let job_id = job["id"].as_i64().unwrap();

        let report = app.drain_jobs().await;
        assert_eq!(report.succeeded, 1, "{report:?}");

        let (s, job) = app
            .get(&format!("/api/v1/jobs/{job_id}"), &app.viewer)
            .await;
        assert_eq!(s, 200);
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["progress_done"], 4);
        assert_eq!(job["progress_total"], 4);
        assert_eq!(job["result"], json!({"checked": 4, "invalidated": 2}));

        let statuses: Vec<String> = {
            let mut v = Vec::new();
            for id in &ids {
                let (_, r) = app
                    .get(&format!("/api/v1/registrants/{id}"), &app.viewer)
                    .await;
                v.push(r["ids"][0]["status"].as_str().unwrap().to_owned());
            }
            v
        };
        assert_eq!(statuses, ["valid", "invalid", "valid", "invalid"]);
        let (_, audit) = app
            .get(
                &format!("/api/v1/registrants/{}/audit", ids[1]),
                &app.viewer,
            )
            .await;
        assert_eq!(audit[0]["action"], "invalidate_id", "{audit}");

        // A second run finds nothing more to invalidate.
        let (_, job2) = app.post(&path, &app.admin, json!({})).await;
        app.drain_jobs().await;
        let (_, job2) = app
            .get(&format!("/api/v1/jobs/{}", job2["id"]), &app.viewer)
            .await;
        assert_eq!(job2["result"], json!({"checked": 4, "invalidated": 0}));

        // Listing with counts and a status filter.
        let (s, page) = app.get("/api/v1/jobs?status=succeeded", &app.viewer).await;
        assert_eq!(s, 200);
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        assert_eq!(page["counts"]["succeeded"], 2);
        let (s, e) = app.get("/api/v1/jobs?status=bogus", &app.viewer).await;
        assert_eq!(s, 422);
        assert!(e["error"]["fields"]["status"].is_array());
        app.stop().await;
    }
}

#[tokio::test]
async fn cancel_and_retry_through_the_api() {
    for app in TestApp::all().await {
        let (_, t) = app
            .post("/api/v1/id-types", &app.admin, json!({"name": "CARD B"}))
            .await;
        let path = format!("/api/v1/id-types/{}/revalidate", t["id"]);
        let (_, job) = app.post(&path, &app.admin, json!({})).await;
        let id = job["id"].as_i64().unwrap();
        let (s, _) = app
            .post(
                &format!("/api/v1/jobs/{id}/cancel"),
                &app.registrar,
                json!({}),
            )
            .await;
        assert_eq!(s, 403);
        let (s, j) = app
            .post(&format!("/api/v1/jobs/{id}/cancel"), &app.admin, json!({}))
            .await;
        assert_eq!(s, 200, "{j}");
        assert_eq!(j["status"], "cancelled");
        // A cancelled job is not run.
        let report = app.drain_jobs().await;
        assert_eq!(report.attempts(), 0, "{report:?}");
        let (s, j) = app
            .post(&format!("/api/v1/jobs/{id}/retry"), &app.admin, json!({}))
            .await;
        assert_eq!(s, 200, "{j}");
        assert_eq!(j["status"], "queued");
        app.drain_jobs().await;
        let (_, j) = app.get(&format!("/api/v1/jobs/{id}"), &app.admin).await;
        assert_eq!(j["status"], "succeeded");
        let (s, _) = app.get("/api/v1/jobs/999999", &app.admin).await;
        assert_eq!(s, 404);
        app.stop().await;
    }
}
