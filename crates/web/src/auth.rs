//! Who is calling, and may they? API keys arrive as `Authorization: Bearer <key>` (or
//! `X-API-Key`); the console uses a signed session cookie established with a key. Handlers take
//! a [`Caller`] and call one of its `require_*` checks: no endpoint is reachable without both.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use g2p_domain::Role;
use g2p_store::api_keys::ApiKeyInfo;
use g2p_store::audit::Actor;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::{AppState, WebSettings};

pub const SESSION_COOKIE: &str = "g2p_session";

/// How long a verified key is trusted without re-checking the database: revocation takes
/// effect within this time on every node.
const KEY_CACHE_TTL: Duration = Duration::from_secs(60);
const KEY_CACHE_MAX: usize = 10_000;

/// Verified keys by SHA-256 of the key, so argon2 runs once per key per TTL rather than on
/// every request. The key itself is never kept.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<[u8; 32], (ApiKeyInfo, Instant)>>,
}

impl KeyCache {
    fn get(&self, digest: &[u8; 32]) -> Option<ApiKeyInfo> {
        let map = self.entries.lock().ok()?;
        map.get(digest)
            .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(k, _)| k.clone())
    }

    fn put(&self, digest: [u8; 32], info: ApiKeyInfo) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= KEY_CACHE_MAX {
                map.retain(|_, (_, at)| at.elapsed() < KEY_CACHE_TTL);
                if map.len() >= KEY_CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(digest, (info, Instant::now()));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut map) = self.entries.lock() {
            map.clear();
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub name: String,
    pub role: Role,
    pub request_id: Option<String>,
    /// Set when authenticated by the console session cookie (CSRF checks apply).
    pub via_session: bool,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor {
            name: format!("{}:{}", self.role, self.name),
            request_id: self.request_id.clone(),
        }
    }

    fn require(&self, ok: bool) -> Result<(), ApiError> {
        if ok { Ok(()) } else { Err(ApiError::Forbidden) }
    }

    pub fn require_read(&self) -> Result<(), ApiError> {
        self.require(self.role.can_read())
    }

    pub fn require_write(&self) -> Result<(), ApiError> {
        self.require(self.role.can_write())
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require(self.role.is_admin())
    }

    /// Callback endpoints: connectors, and admins for manual replays.
    pub fn require_connector(&self) -> Result<(), ApiError> {
        self.require(matches!(self.role, Role::Connector | Role::Admin))
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Verifies a full API key (cached).
pub async fn authenticate_key(state: &AppState, key: &str) -> Result<Option<ApiKeyInfo>, ApiError> {
    let d = digest(key);
    if let Some(info) = state.keys.get(&d) {
        return Ok(Some(info));
    }
    let info = state.store.verify_api_key(key).await?;
    if let Some(i) = &info {
        state.keys.put(d, i.clone());
    }
    Ok(info)
}

type HmacSha256 = Hmac<Sha256>;

fn sign(settings: &WebSettings, payload: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an empty tag (which
    // never verifies) rather than panic.
    match HmacSha256::new_from_slice(&settings.session_key) {
        Ok(mut mac) => {
            mac.update(payload.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Cookie value `<key_id>.<expiry unix seconds>.<hmac>`.
pub fn issue_session(settings: &WebSettings, key_id: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + settings.session_ttl.as_secs() as i64;
    let payload = format!("{key_id}.{exp}");
    let sig = sign(settings, &payload);
    format!("{payload}.{sig}")
}

/// The key id of a valid, unexpired session cookie value.
pub fn verify_session(settings: &WebSettings, value: &str) -> Option<String> {
    let (payload, sig) = value.rsplit_once('.')?;
    let expected = sign(settings, payload);
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), sig.as_bytes()) {
        return None;
    }
    let (key_id, exp) = payload.split_once('.')?;
    let exp: i64 = exp.parse().ok()?;
    (exp > chrono::Utc::now().timestamp()).then(|| key_id.to_owned())
}

/// CSRF token bound to the session: forms must send it back.
pub fn csrf_token(settings: &WebSettings, session_value: &str) -> String {
    sign(settings, &format!("csrf:{session_value}"))
}

/// Equality that takes the same time wherever the inputs differ (`subtle`), for secrets.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

pub fn cookie_value<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim());
    }
    parts.headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let request_id = crate::REQUEST_ID.try_with(Clone::clone).ok();
        if let Some(key) = bearer(parts) {
            let info = authenticate_key(&state, key)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            return Ok(Caller {
                key_id: info.key_id,
                name: info.name,
                role: info.role,
                request_id,
                via_session: false,
            });
        }
        if let Some(v) = cookie_value(parts, SESSION_COOKIE)
            && let Some(key_id) = verify_session(&state.settings, v)
            && let Some(info) = state.store.live_api_key(&key_id).await?
        {
            return Ok(Caller {
                key_id: info.key_id,
                name: info.name,
                role: info.role,
                request_id,
                via_session: true,
            });
        }
        Err(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_verify_and_reject_tampering() {
        let s = WebSettings::default();
        let v = issue_session(&s, "abc123");
        assert_eq!(verify_session(&s, &v).as_deref(), Some("abc123"));
        let tampered = v.replacen("abc123", "abc124", 1);
        assert_eq!(verify_session(&s, &tampered), None);
        let other = WebSettings::default();
        assert_eq!(verify_session(&other, &v), None);
    }
}
