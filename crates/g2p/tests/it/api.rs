//! Shared helpers of the JSON API tests (`api_*.rs`): raw requests that keep the response
//! headers, and the one assertion every error response must pass (status, `error.code`, the
//! exact `error.fields` keys, and `error.request_id` equal to the `x-request-id` header).

#![allow(dead_code)]

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Every operation of the registry API (`api/mod.rs`), as `METHOD path`.
pub const ROUTES: &[&str] = &[
    "GET /api/v1/registrants",
    "POST /api/v1/registrants",
    "POST /api/v1/registrants/search",
    "GET /api/v1/registrants/{id}",
    "PUT /api/v1/registrants/{id}",
    "PATCH /api/v1/registrants/{id}",
    "DELETE /api/v1/registrants/{id}",
    "GET /api/v1/registrants/{id}/ids",
    "POST /api/v1/registrants/{id}/ids",
    "PUT /api/v1/registrants/{id}/ids/{id_type}",
    "DELETE /api/v1/registrants/{id}/ids/{id_type}",
    "GET /api/v1/registrants/{id}/bank-accounts",
    "POST /api/v1/registrants/{id}/bank-accounts",
    "DELETE /api/v1/registrants/{id}/bank-accounts/{account_id}",
    "GET /api/v1/registrants/{id}/members",
    "POST /api/v1/registrants/{id}/members",
    "DELETE /api/v1/registrants/{id}/members/{individual_id}",
    "GET /api/v1/registrants/{id}/audit",
    "GET /api/v1/id-types",
    "POST /api/v1/id-types",
    "GET /api/v1/id-types/{id}",
    "PUT /api/v1/id-types/{id}",
    "DELETE /api/v1/id-types/{id}",
    "GET /api/v1/api-keys",
    "POST /api/v1/api-keys",
    "DELETE /api/v1/api-keys/{id}",
    "GET /api/v1/me",
];

/// A response with its headers and parsed body (`Null` when empty, a string when not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and the API's error shape; `fields` are the exact keys of
    /// `error.fields` (empty: no `fields` member at all).
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str, fields: &[&str]) -> &Resp {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.body
        );
        let e = &self.body["error"];
        assert!(e.is_object(), "no error object in {}", self.body);
        assert_eq!(e["code"], json!(code), "body: {}", self.body);
        let message = e["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "empty message in {}", self.body);
        let rid = e["request_id"].as_str().unwrap_or_default();
        assert!(!rid.is_empty(), "no request_id in {}", self.body);
        assert_eq!(
            Some(rid),
            self.header("x-request-id"),
            "request_id differs from header"
        );
        let mut got: Vec<&str> = match e.get("fields") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let msgs = v.as_array().map(Vec::len).unwrap_or(0);
                    assert!(msgs > 0, "field {k} has no message in {}", self.body);
                }
                m.keys().map(String::as_str).collect()
            }
            Some(other) => panic!("fields is not an object: {other}"),
        };
        got.sort_unstable();
        let mut want = fields.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "error.fields keys; body: {}", self.body);
        self
    }

    /// The first message reported for `field`.
    pub fn field_message(&self, field: &str) -> String {
        self.body["error"]["fields"][field][0]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub async fn send(rb: RequestBuilder) -> Resp {
    let resp = rb.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// Sends `body` (when given) as JSON with the given key.
pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut rb = app.request(method, path, key);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    send(rb).await
}

pub async fn get(app: &TestApp, path: &str, key: &str) -> Resp {
    call(app, Method::GET, path, Some(key), None).await
}

pub async fn post(app: &TestApp, path: &str, key: &str, body: Value) -> Resp {
    call(app, Method::POST, path, Some(key), Some(body)).await
}

pub async fn put(app: &TestApp, path: &str, key: &str, body: Value) -> Resp {
    call(app, Method::PUT, path, Some(key), Some(body)).await
}

pub async fn patch(app: &TestApp, path: &str, key: &str, body: Value) -> Resp {
    call(app, Method::PATCH, path, Some(key), Some(body)).await
}

pub async fn delete(app: &TestApp, path: &str, key: &str) -> Resp {
    call(app, Method::DELETE, path, Some(key), None).await
}

/// Sends raw bytes with an optional content type.
pub async fn post_raw(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let mut rb = app.request(method, path, Some(key)).body(body);
    if let Some(ct) = content_type {
        rb = rb.header("content-type", ct);
    }
    send(rb).await
}

/// Creates an ID type as the admin and returns its id.
pub async fn create_id_type(app: &TestApp, name: &str, regex: Option<&str>) -> i64 {
    let r = post(
        app,
        "/api/v1/id-types",
        &app.admin,
        json!({"name": name, "validation_regex": regex}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_i64().expect("id")
}

/// Registers a group as the registrar and returns its id.
pub async fn create_group(app: &TestApp, name: &str) -> i64 {
    let r = post(
        app,
        "/api/v1/registrants",
        &app.registrar,
        json!({"is_group": true, "name": name, "group_kind": "household"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_i64().expect("id")
}

/// Ids of every registrant, paging through the listing.
pub async fn all_ids(app: &TestApp, query: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let mut path = format!("/api/v1/registrants?limit=500{query}");
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let r = get(app, &path, &app.viewer).await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.extend(ids_of(&r.body));
        match r.body["next_after"].as_i64() {
            Some(a) => after = Some(a),
            None => return out,
        }
    }
}

/// The `id`s of a page's items.
pub fn ids_of(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

/// Percent-encodes a query or path component.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Today in UTC as the API writes dates.
pub fn today() -> String {
    chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}
