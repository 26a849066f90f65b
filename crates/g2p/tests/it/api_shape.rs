//! Responses produced outside handlers (routing, method, body shape) keep the API's error shape.

use reqwest::Method;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn routing_errors_use_the_json_error_shape() {
    for app in TestApp::all().await {
        let resp = app
            .request(Method::GET, "/api/v1/no-such-thing", Some(&app.admin))
            .send()
            .await
            .unwrap();
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let (s, v) = TestApp::parse(resp).await;
        assert_eq!(s, 404);
        assert_eq!(v["error"]["code"], "not_found", "{v}");
        assert_eq!(v["error"]["request_id"], rid.as_str());

        let (s, v) = app
            .call(
                Method::PATCH,
                "/api/v1/id-types",
                &app.admin,
                Some(json!({})),
            )
            .await;
        assert_eq!(s, 405);
        assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");

        // serde would read an array into a struct by position; the API refuses it.
        let (s, v) = app
            .post(
                "/api/v1/registrants",
                &app.registrar,
                json!([null, false, "Bob"]),
            )
            .await;
        assert_eq!(s, 422, "{v}");
        assert!(v["error"]["fields"]["body"].is_array(), "{v}");
        let (s, v) = app.get("/api/v1/registrants", &app.viewer).await;
        assert_eq!(s, 200);
        assert_eq!(v["items"], json!([]), "nothing was created");

        // An oversized body names the limit.
        let big = "x".repeat(1 << 21);
        let (s, v) = app
            .post(
                "/api/v1/registrants",
                &app.registrar,
                json!({"given_name": "A", "address": big}),
            )
            .await;
        assert_eq!(s, 413);
        assert!(
            v["error"]["message"].as_str().unwrap().contains("1048576"),
            "{v}"
        );
        app.stop().await;
    }
}
