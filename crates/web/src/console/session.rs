//! Signing in and out of the console. A person signs in with an API key; the key itself is
//! never stored in the browser: the cookie holds only the key id, an expiry and a signature.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{ConsoleError, Layout, render, session_cookie, session_user};
use crate::auth::{authenticate_key, issue_session};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    error: Option<String>,
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    render(
        status,
        &LoginPage {
            layout: Layout::anonymous(),
            error: error.map(str::to_owned),
        },
    )
}

/// `/`: the registrant list when signed in, else the sign-in page.
pub async fn home(State(state): State<AppState>, parts: Parts) -> Result<Redirect, ConsoleError> {
    Ok(match session_user(&parts, &state).await? {
        Some(u) if u.role.can_read() => Redirect::to("/registrants"),
        _ => Redirect::to("/login"),
    })
}

pub async fn login_form(
    State(state): State<AppState>,
    parts: Parts,
) -> Result<Response, ConsoleError> {
    if let Some(u) = session_user(&parts, &state).await?
        && u.role.can_read()
    {
        return Ok(Redirect::to("/registrants").into_response());
    }
    Ok(login_page(StatusCode::OK, None))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    key: String,
}

/// Verifies the key and starts a session. The same-origin check happened in `guard_posts`.
pub async fn login(
    State(state): State<AppState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Ok(login_page(
            StatusCode::BAD_REQUEST,
            Some("Enter your API key."),
        ));
    };
    let key = form.key.trim();
    if key.is_empty() {
        return Ok(login_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("Enter your API key."),
        ));
    }
    let Some(info) = authenticate_key(&state, key).await? else {
        tracing::info!("console sign-in refused: unknown or revoked key");
        return Ok(login_page(
            StatusCode::UNAUTHORIZED,
            Some("That API key is not valid, or it has been revoked."),
        ));
    };
    if !info.role.can_read() {
        tracing::info!(key_id = %info.key_id, role = %info.role, "console sign-in refused: role");
        return Ok(login_page(
            StatusCode::FORBIDDEN,
            Some("Keys with this role cannot use the console."),
        ));
    }
    tracing::info!(key_id = %info.key_id, role = %info.role, "console sign-in");
    let cookie = issue_session(&state.settings, &info.key_id);
    let mut resp = Redirect::to("/registrants").into_response();
    if let Some((name, value)) = session_cookie(&state, Some(&cookie)) {
        resp.headers_mut().insert(name, value);
    }
    Ok(resp)
}

/// Clears the cookie. The session value itself stays valid until it expires (it is not stored
/// server-side); revoking the key ends it everywhere at once.
pub async fn logout(State(state): State<AppState>) -> Response {
    let mut resp = Redirect::to("/login").into_response();
    if let Some((name, value)) = session_cookie(&state, None) {
        resp.headers_mut().insert(name, value);
    }
    resp
}
