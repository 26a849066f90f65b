//! HTTP for g2p: the JSON API under `/api/v1`, the web console at `/`, health and metrics. It
//! owns authentication, request ids and the mapping of errors to status codes; it must not hold
//! SQL or business rules beyond parsing requests.

pub mod api;
pub mod auth;
pub mod console;
pub mod error;
pub mod odoo;
pub mod ops;
pub mod state;

pub use error::ApiError;
pub use state::{AppState, WebSettings};

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

tokio::task_local! {
    /// The current request's id, so errors built deep inside a handler can report it.
    pub static REQUEST_ID: String;
}

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// MTS delivers with the connector's configured method, and bulk results can be large; the
/// Odoo-compatible login is called on GET with a body, as MTS does.
fn mts_callback_router(state: AppState) -> Router {
    use axum::routing::{get, post};
    let cb = api::mts::callback;
    Router::new()
        .route(
            "/api/v1/mts/callbacks/{id}",
            post(cb)
                .put(cb)
                .patch(cb)
                .get(cb)
                .layer(DefaultBodyLimit::max(256 << 20)),
        )
        .route(
            "/web/session/authenticate",
            get(odoo::authenticate).post(odoo::authenticate),
        )
        .route("/web/session/logout", get(odoo::logout).post(odoo::logout))
        .with_state(state)
}

/// The whole HTTP application. `main`, the demo and the tests all build it here.
pub fn app(state: AppState) -> Router {
    let body_limit = state.settings.max_body_bytes;
    let request_timeout = state.settings.request_timeout;
    Router::new()
        .merge(api::router(state.clone()))
        .merge(ops::router(state.clone()))
        .merge(console::router(state.clone()))
        .merge(mts_callback_router(state.clone()))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(request_timeout, timeout_except_streams))
        .layer(middleware::from_fn_with_state(state.clone(), track_metrics))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let rid = req
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            // Only the path, never the query: filters may carry personal data.
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %rid)
        }))
        // Inside `request_id`, so a panic's 500 still carries the request id.
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(middleware::from_fn(api_error_shape))
        .layer(middleware::from_fn(request_id))
}

/// Responses under `/api/` that did not come from a handler's `ApiError` (unknown route 404,
/// 405, the 408 timeout, a rejected body) get the API's one error shape too.
async fn api_error_shape(req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/");
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_api || !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, _) = resp.into_parts();
    let body = error::status_body(status);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Routes that stream large bodies and legitimately run for minutes.
const STREAMING_ROUTES: &[&str] = &["/api/v1/import"];

/// Abandons a request after `limit` with 408, except on [`STREAMING_ROUTES`], whose length is
/// bounded by their size limit instead.
async fn timeout_except_streams(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    if STREAMING_ROUTES.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => axum::http::StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

/// Takes the caller's `x-request-id` if it is sane, otherwise makes one; echoes it back.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID_HEADER, v.clone());
        let mut resp = REQUEST_ID.scope(id, next.run(req)).await;
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
        resp
    } else {
        next.run(req).await
    }
}

async fn track_metrics(
    axum::extract::State(_state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let start = std::time::Instant::now();
    let method = req.method().to_string();
    // The matched route template, not the concrete path, keeps label cardinality bounded.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("g2p_http_requests_total", &labels).increment(1);
    metrics::histogram!("g2p_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    resp
}

/// Time allowed for a normal request before 408; imports stream and are exempt.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
