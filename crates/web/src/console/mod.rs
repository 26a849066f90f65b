//! The web console: server-rendered HTML (askama templates under `crates/web/templates`) for
//! people at a screen, with htmx (vendored under `crates/web/static`, served from the binary) for
//! partial updates. One module per area. It owns sessions-as-seen-by-a-browser (sign-in page,
//! cookie, CSRF), HTML error pages and security headers; it must not hold SQL or business rules:
//! it calls the store exactly as the JSON API does.
//!
//! * **Session.** `POST /login` verifies an API key and sets the signed `g2p_session` cookie
//!   (`HttpOnly; SameSite=Strict; Path=/`, `Secure` behind TLS). [`ConsoleUser`] re-checks on
//!   every request that the key is still live and that its role may read.
//! * **CSRF.** Every POST passes [`guard_posts`]: the request must be same-origin
//!   (`Sec-Fetch-Site`, else `Origin` against `Host`) and, except for `/login`, carry a `csrf`
//!   form field equal to [`auth::csrf_token`] of the session cookie (constant-time compare).
//! * **Escaping.** askama escapes HTML by default; user data is never marked `|safe`.

mod assets;
mod id_types;
mod jobs;
mod mts;
mod registrants;
mod session;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use g2p_domain::{DomainError, FieldErrors, Role};
use g2p_store::StoreError;
use g2p_store::audit::Actor;

use crate::auth::{self, SESSION_COOKIE, constant_time_eq, cookie_value, csrf_token};
use crate::error::ApiError;
use crate::state::AppState;

/// The console's routes; merged into [`crate::app`].
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(session::home))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/registrants", get(registrants::list))
        .route("/registrants/{id}", get(registrants::detail))
        .route("/id-types", get(id_types::list).post(id_types::create))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/mts", get(mts::list))
        .route("/mts/new", get(mts::new_form).post(mts::create))
        .route("/mts/{id}", get(mts::detail).post(mts::update))
        .route("/mts/{id}/start", post(mts::start))
        .route("/mts/{id}/stop", post(mts::stop))
        .route("/mts/{id}/run", post(mts::run))
        .route("/mts/{id}/retry", post(mts::retry))
        .route("/mts/{id}/runs", get(mts::activity_fragment))
        .route("/static/{file}", get(assets::serve))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard_posts))
        .layer(middleware::from_fn(htmx_errors))
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

// ------------------------------------------------------------------ signed-in user

/// A person signed in to the console with a live key whose role may read the registry.
/// Rejects with a redirect to `/login` (or `HX-Redirect` for htmx requests) when there is no
/// valid session, and with a 403 page for roles that may not use the console.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    pub key_id: String,
    pub name: String,
    pub role: Role,
    /// The CSRF token every form of this session must send back.
    pub csrf: String,
}

impl ConsoleUser {
    pub fn actor(&self) -> Actor {
        Actor {
            name: format!("{}:{}", self.role, self.name),
            request_id: crate::REQUEST_ID.try_with(Clone::clone).ok(),
        }
    }

    pub fn require_admin(&self) -> Result<(), ConsoleError> {
        if self.role.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden.into())
        }
    }

    /// Registrars and admins see full ID values and audit payloads; viewers see them masked.
    pub fn sees_full_values(&self) -> bool {
        self.role.can_write()
    }
}

/// Looks up the session of a request, if any, without deciding what to do about its absence.
async fn session_user(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<ConsoleUser>, ConsoleError> {
    let Some(cookie) = cookie_value(parts, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(key_id) = auth::verify_session(&state.settings, cookie) else {
        return Ok(None);
    };
    // Re-checked on every request so that revoking the key ends its console sessions too.
    let Some(info) = state.store.live_api_key(&key_id).await? else {
        return Ok(None);
    };
    Ok(Some(ConsoleUser {
        key_id: info.key_id,
        name: info.name,
        role: info.role,
        csrf: csrf_token(&state.settings, cookie),
    }))
}

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match session_user(parts, state).await? {
            None => Err(ConsoleError::SignIn {
                htmx: is_htmx(&parts.headers),
            }),
            Some(u) if !u.role.can_read() => Err(ApiError::Forbidden.into()),
            Some(u) => Ok(u),
        }
    }
}

fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

// ------------------------------------------------------------------ page chrome

/// What the shared layout (`base.html`) needs: who is signed in and which page is current.
pub struct Layout {
    pub user: Option<UserView>,
    pub current: &'static str,
    pub asset_version: &'static str,
}

pub struct UserView {
    pub name: String,
    pub role: &'static str,
    pub csrf: String,
}

impl Layout {
    pub fn new(user: &ConsoleUser, current: &'static str) -> Self {
        Layout {
            user: Some(UserView {
                name: user.name.clone(),
                role: user.role.as_str(),
                csrf: user.csrf.clone(),
            }),
            current,
            asset_version: assets::version(),
        }
    }

    pub fn anonymous() -> Self {
        Layout {
            user: None,
            current: "",
            asset_version: assets::version(),
        }
    }

    pub fn is_current(&self, page: &str) -> bool {
        self.current == page
    }
}

/// Renders a template; a template that fails to render becomes the internal-error page.
pub fn render(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ConsoleError::Api(ApiError::Internal(e.into_box())).into_response(),
    }
}

/// The first message for `field`, to show next to its input.
pub fn field_error(errors: &FieldErrors, field: &str) -> Option<String> {
    errors.0.get(field).map(|m| m.join("; "))
}

/// Hides all but the last 4 characters of a value shown on screen (`••••1234`); values of 4
/// characters or fewer are hidden entirely.
pub fn mask(value: &str) -> String {
    let n = value.chars().count();
    if n <= 4 {
        return "••••".to_owned();
    }
    let tail: String = value.chars().skip(n - 4).collect();
    format!("••••{tail}")
}

/// ID types whose values must not appear in full on a screen: virtual IDs, tokens, UINs.
pub fn is_sensitive_id_type(id_type: &str) -> bool {
    let t = id_type.to_ascii_uppercase();
    ["VID", "TOKEN", "UIN"].iter().any(|s| t.contains(s))
}

pub fn format_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

// ------------------------------------------------------------------ errors

/// Errors of console handlers, shown as HTML pages (or, for htmx requests, as an alert
/// fragment swapped into the target). Status codes come from [`ApiError`], the one place that
/// chooses them.
#[derive(Debug)]
pub enum ConsoleError {
    /// No valid session: go to the sign-in page.
    SignIn {
        htmx: bool,
    },
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::Api(e)
    }
}

impl From<g2p_app::AppError> for ConsoleError {
    fn from(e: g2p_app::AppError) -> Self {
        ConsoleError::Api(e.into())
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        ConsoleError::Api(e.into())
    }
}

impl From<DomainError> for ConsoleError {
    fn from(e: DomainError) -> Self {
        ConsoleError::Api(e.into())
    }
}

/// What an error page shows. Kept in the response's extensions so that [`htmx_errors`], which
/// knows whether the request came from htmx, can swap the full page for a fragment.
#[derive(Clone)]
struct ErrorView {
    title: &'static str,
    message: String,
    request_id: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    e: &'a ErrorView,
}

#[derive(Template)]
#[template(path = "error_fragment.html")]
struct ErrorFragment<'a> {
    e: &'a ErrorView,
}

fn error_view(e: ApiError) -> (StatusCode, ErrorView) {
    let status = e.status();
    let message = match &e {
        ApiError::Internal(inner) => {
            // Logged once, here; the page shows only the request id.
            tracing::error!(error = %inner, "internal error in console");
            "Something went wrong on our side. Please try again; if it persists, report the \
             request id below."
                .to_owned()
        }
        ApiError::Validation(f) => format!("Invalid input: {f}"),
        ApiError::Forbidden => "Your role may not do this.".to_owned(),
        other => sentence(&other.to_string()),
    };
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Conflict",
        s if s.is_server_error() => "Something went wrong",
        _ => "Request refused",
    };
    let view = ErrorView {
        title,
        message,
        request_id: crate::REQUEST_ID.try_with(Clone::clone).ok(),
    };
    (status, view)
}

/// Capitalised, with a full stop.
fn sentence(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => {
            let mut out: String = first.to_uppercase().chain(c).collect();
            if !out.ends_with('.') {
                out.push('.');
            }
            out
        }
        None => String::new(),
    }
}

fn html_or_plain(status: StatusCode, html: askama::Result<String>) -> Response {
    match html {
        Ok(h) => (status, Html(h)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "error page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::SignIn { htmx: true } => {
                // A redirect would be followed by the XHR and the sign-in page swapped into a
                // table; htmx instead navigates the whole page on `HX-Redirect`.
                let mut r = StatusCode::UNAUTHORIZED.into_response();
                r.headers_mut()
                    .insert("hx-redirect", HeaderValue::from_static("/login"));
                r
            }
            ConsoleError::SignIn { htmx: false } => Redirect::to("/login").into_response(),
            ConsoleError::Api(e) => {
                let (status, view) = error_view(e);
                let page = ErrorPage {
                    layout: Layout::anonymous(),
                    e: &view,
                };
                let mut r = html_or_plain(status, page.render());
                r.extensions_mut().insert(view);
                r
            }
        }
    }
}

/// For htmx requests, replaces an error page by its alert fragment, which the htmx config
/// (`responseHandling` in `base.html`) swaps into the request's target.
async fn htmx_errors(req: Request, next: Next) -> Response {
    let fragment_wanted =
        is_htmx(req.headers()) && !req.headers().contains_key("hx-history-restore-request");
    let mut resp = next.run(req).await;
    if fragment_wanted && let Some(view) = resp.extensions_mut().remove::<ErrorView>() {
        return html_or_plain(resp.status(), ErrorFragment { e: &view }.render());
    }
    resp
}

// ------------------------------------------------------------------ middleware

/// CSRF and same-origin checks for every mutating console request (see the module docs).
async fn guard_posts(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let refuse = || ConsoleError::Api(ApiError::Forbidden).into_response();
    if !same_origin(req.headers(), req.uri()) {
        tracing::warn!("cross-site console request refused");
        return refuse();
    }
    // Signing in has no session yet to bind a token to; the same-origin check covers it.
    if req.uri().path() == "/login" {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Some(cookie) = cookie_value(&parts, SESSION_COOKIE).map(str::to_owned) else {
        if parts.uri.path() == "/logout" {
            return Redirect::to("/login").into_response();
        }
        return refuse();
    };
    let bytes = match axum::body::to_bytes(body, state.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return ConsoleError::Api(ApiError::PayloadTooLarge(
                state.settings.max_body_bytes as u64,
            ))
            .into_response();
        }
    };
    let expected = csrf_token(&state.settings, &cookie);
    // The token is hex, so the raw (undecoded) field value is compared: a percent-encoded
    // token simply does not match.
    let sent = bytes
        .split(|b| *b == b'&')
        .find_map(|kv| kv.strip_prefix(b"csrf=".as_slice()));
    match sent {
        Some(t) if !expected.is_empty() && constant_time_eq(t, expected.as_bytes()) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        _ => {
            tracing::warn!("console request without a valid CSRF token refused");
            refuse()
        }
    }
}

/// True unless the browser tells us the request came from another site. Browsers send
/// `Sec-Fetch-Site` (authoritative when present) and `Origin` on form posts; clients that send
/// neither are not browsers, which CSRF cannot abuse.
fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(authority) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false; // includes "null" (sandboxed or privacy-sensitive contexts)
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
}

const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Security headers on every console response. HTML is personal data: never cached (static
/// assets set their own long cache lifetime first).
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The same URL answers a full page or an htmx fragment.
        h.append(header::VARY, HeaderValue::from_static("HX-Request"));
    }
    resp
}

/// `Set-Cookie` for a new session, or (with `None`) one that clears it.
fn session_cookie(state: &AppState, value: Option<&str>) -> Option<(HeaderName, HeaderValue)> {
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = match value {
        Some(v) => format!(
            "{SESSION_COOKIE}={v}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            state.settings.session_ttl.as_secs()
        ),
        None => format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&cookie)
        .ok()
        .map(|v| (header::SET_COOKIE, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_last_four() {
        assert_eq!(mask("1234567890"), "••••7890");
        assert_eq!(mask("123"), "••••");
        assert_eq!(mask("ab€defg"), "••••defg");
    }

    #[test]
    fn sensitive_types() {
        assert!(is_sensitive_id_type("MOSIP VID"));
        assert!(is_sensitive_id_type("mosip uin token"));
        assert!(!is_sensitive_id_type("PHONE"));
    }

    #[test]
    fn origin_checks() {
        let uri: axum::http::Uri = "/login".parse().unwrap_or_default();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("reg.example:8080"));
        assert!(same_origin(&h, &uri), "no browser headers");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://reg.example:8080"),
        );
        assert!(same_origin(&h, &uri));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h, &uri));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h, &uri));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h, &uri), "Sec-Fetch-Site wins");
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h, &uri));
    }
}
