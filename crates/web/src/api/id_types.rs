//! ID types: names unique case-insensitively, optional validation regex.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use g2p_domain::{IdType, IdTypeInput};

use crate::api::ApiJson;
use crate::auth::Caller;
use crate::error::{ApiError, ApiPath};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/id-types", tag = "id types", operation_id = "list_id_types",
    responses((status = 200, body = [IdType])))]
pub async fn list(State(s): State<AppState>, c: Caller) -> Result<Json<Vec<IdType>>, ApiError> {
    c.require_read()?;
    Ok(Json(s.store.list_id_types().await?))
}

#[utoipa::path(post, path = "/api/v1/id-types", tag = "id types", request_body = IdTypeInput,
    operation_id = "create_id_type",
    responses((status = 201, body = IdType), (status = 409, body = crate::error::ErrorBody),
    (status = 422, body = crate::error::ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    c: Caller,
    body: Result<ApiJson<IdTypeInput>, ApiError>,
) -> Result<(StatusCode, Json<IdType>), ApiError> {
    c.require_admin()?;
    let ApiJson(body) = body?;
    let t = body.parse()?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_id_type(&t, &c.actor()).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/id-types/{id}", tag = "id types", operation_id = "get_id_type",
    params(("id" = i64, Path)), responses((status = 200, body = IdType)))]
pub async fn get_one(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<IdType>, ApiError> {
    c.require_read()?;
    Ok(Json(s.store.get_id_type(id).await?))
}

#[utoipa::path(put, path = "/api/v1/id-types/{id}", tag = "id types", request_body = IdTypeInput,
    operation_id = "update_id_type",
    params(("id" = i64, Path)), responses((status = 200, body = IdType)))]
pub async fn update(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<ApiJson<IdTypeInput>, ApiError>,
) -> Result<Json<IdType>, ApiError> {
    c.require_admin()?;
    let ApiJson(body) = body?;
    let t = body.parse()?;
    Ok(Json(s.store.update_id_type(id, &t, &c.actor()).await?))
}

#[utoipa::path(delete, path = "/api/v1/id-types/{id}", tag = "id types",
    operation_id = "delete_id_type",
    params(("id" = i64, Path)), responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    c.require_admin()?;
    s.store.delete_id_type(id, &c.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
