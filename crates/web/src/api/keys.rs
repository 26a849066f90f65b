//! API keys (admin) and the caller's own identity.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use g2p_domain::Role;
use g2p_store::api_keys::ApiKeyInfo;
use serde::{Deserialize, Serialize};

use crate::api::ApiJson;
use crate::auth::Caller;
use crate::error::{ApiError, ApiPath};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    pub role: Role,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: ApiKeyInfo,
    /// The full key. Shown once; only a hash is stored.
    pub key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    pub key_id: String,
    pub name: String,
    pub role: Role,
}

#[utoipa::path(get, path = "/api/v1/api-keys", tag = "admin", operation_id = "list_api_keys",
    responses((status = 200, body = [ApiKeyInfo])))]
pub async fn list(State(s): State<AppState>, c: Caller) -> Result<Json<Vec<ApiKeyInfo>>, ApiError> {
    c.require_admin()?;
    Ok(Json(s.store.list_api_keys().await?))
}

#[utoipa::path(post, path = "/api/v1/api-keys", tag = "admin", request_body = NewKey,
    operation_id = "create_api_key",
    responses((status = 201, body = CreatedKey)))]
pub async fn create(
    State(s): State<AppState>,
    c: Caller,
    body: Result<ApiJson<NewKey>, ApiError>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    c.require_admin()?;
    let ApiJson(body) = body?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::field("name", "must be 1 to 100 characters"));
    }
    let (info, key) = s.store.create_api_key(name, body.role, &c.actor()).await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { info, key })))
}

#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "admin",
    operation_id = "revoke_api_key",
    params(("id" = i64, Path)), responses((status = 204)))]
pub async fn revoke(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    c.require_admin()?;
    s.store.revoke_api_key(id, &c.actor()).await?;
    s.keys.clear();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "admin",
    operation_id = "me", responses((status = 200, body = Me)))]
pub async fn me(c: Caller) -> Json<Me> {
    Json(Me {
        key_id: c.key_id,
        name: c.name,
        role: c.role,
    })
}
