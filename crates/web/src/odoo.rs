//! An Odoo-compatible login for MTS callbacks, so that an unmodified MTS with
//! `authType: odoo` can deliver to g2p: `/web/session/authenticate` takes the JSON-RPC body
//! `{"jsonrpc": "2.0", "params": {"db", "login", "password"}}` (on GET, as MTS sends it, and
//! POST) and answers with a `session_id` cookie valid only for the callback routes of the
//! connector whose credentials matched; `/web/session/logout` ends it.

use axum::Json;
use axum::extract::State;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

const COOKIE_NAME: &str = "session_id";
/// A session outlives one MTS delivery pass comfortably; MTS logs out at the end anyway.
const SESSION_TTL: chrono::Duration = chrono::Duration::hours(1);

/// The `session_id` cookie of a request.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_owned())
}

/// Odoo's answer to a failed login: HTTP 200 with a JSON-RPC error.
fn access_denied() -> Response {
    Json(json!({"jsonrpc": "2.0", "id": null, "error": {
        "code": 200, "message": "Odoo Server Error",
        "data": {"name": "odoo.exceptions.AccessDenied", "message": "Access Denied"}}}))
    .into_response()
}

pub async fn authenticate(State(s): State<AppState>, body: axum::body::Bytes) -> Response {
    match login(&s, &body).await {
        Ok(Some(r)) => r,
        Ok(None) => access_denied(),
        Err(e) => e.into_response(),
    }
}

async fn login(s: &AppState, body: &[u8]) -> Result<Option<Response>, ApiError> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let p = &v["params"];
    let (Some(db), Some(user), Some(password)) = (
        p["db"].as_str(),
        p["login"].as_str(),
        p["password"].as_str(),
    ) else {
        return Ok(None);
    };
    let matched =
        g2p_app::mts::callbacks::odoo_login(&s.store, &s.secrets, db, user, password).await?;
    let Some(&uid) = matched.first() else {
        return Ok(None);
    };
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    s.store
        .create_mts_callback_session(&token, &matched, SESSION_TTL)
        .await?;
    tracing::info!(connectors = ?matched, "mts callback session opened");
    // Sent back only to the callback receivers.
    let cookie = format!(
        "{COOKIE_NAME}={token}; Path=/api/v1/mts/callbacks; HttpOnly; SameSite=Strict; \
         Max-Age={}",
        SESSION_TTL.num_seconds()
    );
    let mut resp = Json(json!({"jsonrpc": "2.0", "id": null, "result": {
        "uid": uid, "db": db, "username": user, "is_admin": false}}))
    .into_response();
    if let Ok(h) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(SET_COOKIE, h);
    }
    Ok(Some(resp))
}

pub async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_cookie(&headers)
        && let Err(e) = s.store.delete_mts_callback_session(&token).await
    {
        return ApiError::from(e).into_response();
    }
    Json(json!({"jsonrpc": "2.0", "id": null, "result": true})).into_response()
}
