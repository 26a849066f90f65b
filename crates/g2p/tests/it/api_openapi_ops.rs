//! The OpenAPI document (complete, unique operation ids) and the operational endpoints
//! (`/healthz`, `/readyz`, `/metrics`, request ids).

use std::collections::BTreeSet;

use serde_json::json;

use crate::api::{ROUTES, send};
use crate::helpers::TestApp;

#[tokio::test]
async fn api_openapi_document_is_complete() {
    // The document does not depend on the backend; one app is enough.
    let app = TestApp::spawn(g2p_store::Backend::Sqlite)
        .await
        .expect("sqlite app");
    let r = send(app.client.get(app.url("/api/v1/openapi.json"))).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let doc = r.body;
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "g2p registry API");
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"],
        json!({"type": "http", "scheme": "bearer"})
    );
    assert_eq!(doc["security"], json!([{"api_key": []}]));
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());

    let mut ops = BTreeSet::new();
    let mut operation_ids = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            ops.insert(format!("{} {path}", method.to_uppercase()));
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            operation_ids.push(id);
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            // every path parameter is declared
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            assert_eq!(declared, in_path, "{method} {path}");
        }
    }
    // Other modules add routes of their own; the registry's must all be there.
    let missing: Vec<&&str> = ROUTES.iter().filter(|r| !ops.contains(**r)).collect();
    assert!(
        missing.is_empty(),
        "operations missing from the document: {missing:?}"
    );
    let unique: BTreeSet<&String> = operation_ids.iter().collect();
    assert_eq!(
        unique.len(),
        operation_ids.len(),
        "duplicate operationIds: {operation_ids:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn api_ops_endpoints_and_request_ids() {
    for app in TestApp::all().await {
        let b = app.backend.name();
        let r = send(app.client.get(app.url("/healthz"))).await;
        assert_eq!((r.status, r.body.clone()), (200, json!("ok")), "{b}");
        let r = send(app.client.get(app.url("/readyz"))).await;
        assert_eq!((r.status, r.body.clone()), (200, json!("ready")), "{b}");
        // metrics need a reading role; they count requests by route template
        let r = send(app.client.get(app.url("/metrics"))).await;
        assert_eq!(r.status, 401, "{b}");
        let r = send(
            app.client
                .get(app.url("/metrics"))
                .bearer_auth(&app.connector),
        )
        .await;
        assert_eq!(r.status, 403, "{b}");
        let r = send(app.client.get(app.url("/metrics")).bearer_auth(&app.viewer)).await;
        assert_eq!(r.status, 200, "{b}");
        let text = r.body.as_str().unwrap_or_default();
        assert!(text.contains("g2p_http_requests_total"), "{b}: {text}");
        assert!(text.contains("route=\"/healthz\""), "{b}: {text}");

        // x-request-id: echoed when sane, generated otherwise, on success and on error
        let r = send(
            app.client
                .get(app.url("/healthz"))
                .header("x-request-id", "probe-42_a"),
        )
        .await;
        assert_eq!(r.header("x-request-id"), Some("probe-42_a"), "{b}");
        let r = send(app.client.get(app.url("/healthz"))).await;
        let generated = r.header("x-request-id").unwrap_or_default().to_owned();
        assert_eq!(generated.len(), 32, "{b}: {generated}");
        assert!(generated.chars().all(|c| c.is_ascii_hexdigit()), "{b}");
        let r = send(app.client.get(app.url("/healthz"))).await;
        assert_ne!(
            r.header("x-request-id"),
            Some(generated.as_str()),
            "{b}: a new id each time"
        );
        for bad in ["has space", "semi;colon", &"x".repeat(65)] {
            let r = send(
                app.client
                    .get(app.url("/healthz"))
                    .header("x-request-id", bad),
            )
            .await;
            let got = r.header("x-request-id").unwrap_or_default();
            assert_ne!(got, bad, "{b}");
            assert_eq!(got.len(), 32, "{b}: replaced by a generated id");
        }
        let r = send(
            app.request(
                reqwest::Method::GET,
                "/api/v1/registrants/987654321",
                Some(&app.viewer),
            )
            .header("x-request-id", "trace-me"),
        )
        .await;
        r.assert_error(404, "not_found", &[]);
        assert_eq!(r.body["error"]["request_id"], "trace-me", "{b}");
        let r = send(app.client.get(app.url("/api/v1/registrants"))).await;
        r.assert_error(401, "unauthorized", &[]);
        assert_eq!(r.header("x-request-id").map(str::len), Some(32), "{b}");
        app.stop().await;
    }
}
