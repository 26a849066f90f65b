//! Registrants and what hangs off them: IDs, bank accounts, group members, audit trail.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use g2p_domain::filter::Domain;
use g2p_domain::{
    AuditEntry, BankAccount, BankAccountInput, IdStatus, Membership, MembershipInput, RegId,
    RegIdInput, Registrant, RegistrantInput, merge_patch,
};
use g2p_store::registry::RegistrantDetail;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{ApiJson, page_limit, parse_json};
use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct RegistrantPage {
    pub items: Vec<RegistrantWithIds>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RegistrantWithIds {
    #[serde(flatten)]
    pub registrant: Registrant,
    pub ids: Vec<RegId>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// An Odoo-style domain in JSON, e.g. `[["reg_ids.id_type","=like","MOSIP VID"]]`.
    pub filter: Option<String>,
    /// Keyset cursor: the last id of the previous page.
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// An Odoo-style domain (JSON array).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub filter: Option<Value>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

async fn page(
    s: &AppState,
    domain: &Domain,
    after: Option<i64>,
    limit: Option<i64>,
) -> Result<RegistrantPage, ApiError> {
    let limit = page_limit(limit)?;
    let page = s.store.search_registrants(domain, after, limit).await?;
    let ids: Vec<i64> = page.items.iter().map(|r| r.id).collect();
    let mut reg_ids = s.store.reg_ids_for(&ids).await?;
    let items = page
        .items
        .into_iter()
        .map(|r| {
            let (mine, rest): (Vec<RegId>, Vec<RegId>) =
                reg_ids.drain(..).partition(|i| i.registrant_id == r.id);
            reg_ids = rest;
            RegistrantWithIds {
                registrant: r,
                ids: mine,
            }
        })
        .collect();
    Ok(RegistrantPage {
        items,
        next_after: page.next_after,
    })
}

#[utoipa::path(get, path = "/api/v1/registrants", tag = "registrants",
    operation_id = "list_registrants", params(ListQuery),
    responses((status = 200, body = RegistrantPage), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    c: Caller,
    q: Result<ApiQuery<ListQuery>, ApiError>,
) -> Result<Json<RegistrantPage>, ApiError> {
    c.require_read()?;
    let ApiQuery(q) = q?;
    let domain = match q.filter.as_deref().map(str::trim) {
        None | Some("") => Domain::match_all(),
        Some(f) => Domain::parse_str(f).map_err(|e| ApiError::field("filter", e.to_string()))?,
    };
    Ok(Json(page(&s, &domain, q.after, q.limit).await?))
}

#[utoipa::path(post, path = "/api/v1/registrants/search", tag = "registrants",
    operation_id = "search_registrants",
    request_body = SearchBody,
    responses((status = 200, body = RegistrantPage), (status = 422, body = ErrorBody)))]
pub async fn search(
    State(s): State<AppState>,
    c: Caller,
    body: Result<ApiJson<SearchBody>, ApiError>,
) -> Result<Json<RegistrantPage>, ApiError> {
    c.require_read()?;
    let ApiJson(body) = body?;
    let domain = match &body.filter {
        None => Domain::match_all(),
        Some(v) => Domain::from_json(v).map_err(|e| ApiError::field("filter", e.to_string()))?,
    };
    Ok(Json(page(&s, &domain, body.after, body.limit).await?))
}

#[utoipa::path(post, path = "/api/v1/registrants", tag = "registrants",
    operation_id = "create_registrant",
    request_body = RegistrantInput,
    responses((status = 201, body = RegistrantDetail), (status = 409, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    c: Caller,
    body: Result<ApiJson<RegistrantInput>, ApiError>,
) -> Result<(StatusCode, Json<RegistrantDetail>), ApiError> {
    c.require_write()?;
    // Bodies are taken as `Result` so that the role is checked before the body is looked at:
    // a caller without the role gets 403 whatever it sends.
    let ApiJson(body) = body?;
    let new = body.parse(Utc::now().date_naive())?;
    let detail = s.store.create_registrant(&new, &c.actor()).await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

#[utoipa::path(get, path = "/api/v1/registrants/{id}", tag = "registrants",
    operation_id = "get_registrant",
    params(("id" = i64, Path)),
    responses((status = 200, body = RegistrantDetail), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<RegistrantDetail>, ApiError> {
    c.require_read()?;
    Ok(Json(s.store.registrant_detail(id).await?))
}

/// `If-Match: "<version>"` (or a bare number) enables optimistic concurrency.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    match headers.get(axum::http::header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::field("If-Match", "must be the registrant's version number")),
    }
}

async fn save_fields(
    s: &AppState,
    c: &Caller,
    id: i64,
    input: RegistrantInput,
    expected: Option<i64>,
) -> Result<Registrant, ApiError> {
    let mut errors = g2p_domain::FieldErrors::new();
    if !input.ids.is_empty() {
        errors.add("ids", "IDs are changed through /ids");
    }
    if !input.bank_accounts.is_empty() {
        errors.add(
            "bank_accounts",
            "bank accounts are changed through /bank-accounts",
        );
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let new = input.parse(Utc::now().date_naive())?;
    Ok(s.store
        .update_registrant(id, &new, expected, &c.actor())
        .await?)
}

#[utoipa::path(put, path = "/api/v1/registrants/{id}", tag = "registrants",
    operation_id = "replace_registrant",
    params(("id" = i64, Path)), request_body = RegistrantInput,
    responses((status = 200, body = Registrant), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
    body: Result<ApiJson<RegistrantInput>, ApiError>,
) -> Result<Json<Registrant>, ApiError> {
    c.require_write()?;
    let ApiJson(body) = body?;
    Ok(Json(
        save_fields(&s, &c, id, body, if_match(&headers)?).await?,
    ))
}

#[utoipa::path(patch, path = "/api/v1/registrants/{id}", tag = "registrants",
    operation_id = "patch_registrant",
    params(("id" = i64, Path)), request_body(content = Object, description = "JSON merge patch (RFC 7396) of the registrant's fields"),
    responses((status = 200, body = Registrant), (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
pub async fn patch(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
    body: Result<ApiJson<Value>, ApiError>,
) -> Result<Json<Registrant>, ApiError> {
    c.require_write()?;
    let ApiJson(body) = body?;
    if !body.is_object() {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    let current = s.store.get_registrant(id).await?;
    let mut merged = serde_json::to_value(RegistrantInput::from_registrant(&current))
        .map_err(ApiError::internal)?;
    merge_patch(&mut merged, &body);
    let bytes = serde_json::to_vec(&merged).map_err(ApiError::internal)?;
    let input: RegistrantInput = parse_json(&bytes)?;
    let expected = if_match(&headers)?.or(Some(current.version));
    Ok(Json(save_fields(&s, &c, id, input, expected).await?))
}

#[utoipa::path(delete, path = "/api/v1/registrants/{id}", tag = "registrants",
    operation_id = "delete_registrant",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    // Like OpenG2P, registrars cannot delete registrants; only administrators can.
    c.require_admin()?;
    s.store.delete_registrant(id, &c.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ IDs

#[utoipa::path(get, path = "/api/v1/registrants/{id}/ids", tag = "ids",
    operation_id = "list_registrant_ids",
    params(("id" = i64, Path)), responses((status = 200, body = [RegId])))]
pub async fn list_ids(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<RegId>>, ApiError> {
    c.require_read()?;
    s.store.get_registrant(id).await?;
    Ok(Json(s.store.list_reg_ids(id).await?))
}

#[utoipa::path(post, path = "/api/v1/registrants/{id}/ids", tag = "ids",
    operation_id = "add_registrant_id",
    params(("id" = i64, Path)), request_body = RegIdInput,
    responses((status = 201, body = RegId), (status = 409, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
pub async fn add_id(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<ApiJson<RegIdInput>, ApiError>,
) -> Result<(StatusCode, Json<RegId>), ApiError> {
    c.require_write()?;
    let ApiJson(body) = body?;
    let new = body.parse()?;
    if s.store
        .list_reg_ids(id)
        .await?
        .iter()
        .any(|r| r.id_type.eq_ignore_ascii_case(&new.id_type))
    {
        return Err(ApiError::Conflict {
            field: "id_type".into(),
            message: "the registrant already has an ID of this type; PUT /ids/{type} replaces it"
                .into(),
        });
    }
    let (stored, _) = s.store.upsert_reg_id(id, &new, &c.actor()).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdValue {
    pub value: String,
    #[serde(default)]
    pub expiry_date: Option<String>,
    #[serde(default)]
    pub status: Option<IdStatus>,
    #[serde(default)]
    pub description: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/registrants/{id}/ids/{id_type}", tag = "ids",
    operation_id = "put_registrant_id",
    params(("id" = i64, Path), ("id_type" = String, Path)), request_body = IdValue,
    responses((status = 200, body = RegId), (status = 201, body = RegId),
    (status = 422, body = ErrorBody)))]
pub async fn put_id(
    State(s): State<AppState>,
    c: Caller,
    ApiPath((id, id_type)): ApiPath<(i64, String)>,
    body: Result<ApiJson<IdValue>, ApiError>,
) -> Result<(StatusCode, Json<RegId>), ApiError> {
    c.require_write()?;
    let ApiJson(body) = body?;
    let new = RegIdInput {
        id_type,
        value: body.value,
        expiry_date: body.expiry_date,
        status: body.status,
        description: body.description,
    }
    .parse()?;
    let (stored, created) = s.store.upsert_reg_id(id, &new, &c.actor()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored)))
}

#[utoipa::path(delete, path = "/api/v1/registrants/{id}/ids/{id_type}", tag = "ids",
    operation_id = "remove_registrant_id",
    params(("id" = i64, Path), ("id_type" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove_id(
    State(s): State<AppState>,
    c: Caller,
    ApiPath((id, id_type)): ApiPath<(i64, String)>,
) -> Result<StatusCode, ApiError> {
    c.require_write()?;
    s.store.remove_reg_id(id, &id_type, &c.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ bank accounts

#[utoipa::path(get, path = "/api/v1/registrants/{id}/bank-accounts", tag = "bank accounts",
    operation_id = "list_bank_accounts",
    params(("id" = i64, Path)), responses((status = 200, body = [BankAccount])))]
pub async fn list_accounts(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<BankAccount>>, ApiError> {
    c.require_read()?;
    s.store.get_registrant(id).await?;
    Ok(Json(s.store.list_bank_accounts(id).await?))
}

#[utoipa::path(post, path = "/api/v1/registrants/{id}/bank-accounts", tag = "bank accounts",
    operation_id = "add_bank_account",
    params(("id" = i64, Path)), request_body = BankAccountInput,
    responses((status = 201, body = BankAccount), (status = 409, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
pub async fn add_account(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<ApiJson<BankAccountInput>, ApiError>,
) -> Result<(StatusCode, Json<BankAccount>), ApiError> {
    c.require_write()?;
    let ApiJson(body) = body?;
    let new = body.parse()?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.add_bank_account(id, &new, &c.actor()).await?),
    ))
}

#[utoipa::path(delete, path = "/api/v1/registrants/{id}/bank-accounts/{account_id}",
    tag = "bank accounts",
    operation_id = "remove_bank_account", params(("id" = i64, Path), ("account_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove_account(
    State(s): State<AppState>,
    c: Caller,
    ApiPath((id, account_id)): ApiPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    c.require_write()?;
    s.store
        .remove_bank_account(id, account_id, &c.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ groups

#[utoipa::path(get, path = "/api/v1/registrants/{id}/members", tag = "groups",
    operation_id = "list_members",
    params(("id" = i64, Path)), responses((status = 200, body = [Membership])))]
pub async fn list_members(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<Membership>>, ApiError> {
    c.require_read()?;
    let g = s.store.get_registrant(id).await?;
    if !g.is_group {
        return Err(ApiError::NotFound("group".into()));
    }
    Ok(Json(s.store.members(id).await?))
}

#[utoipa::path(post, path = "/api/v1/registrants/{id}/members", tag = "groups",
    operation_id = "add_member",
    params(("id" = i64, Path)), request_body = MembershipInput,
    responses((status = 201, body = Membership), (status = 409, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
pub async fn add_member(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<ApiJson<MembershipInput>, ApiError>,
) -> Result<(StatusCode, Json<Membership>), ApiError> {
    c.require_write()?;
    let ApiJson(body) = body?;
    let m = body.parse()?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.add_member(id, &m, &c.actor()).await?),
    ))
}

#[utoipa::path(delete, path = "/api/v1/registrants/{id}/members/{individual_id}", tag = "groups",
    operation_id = "remove_member",
    params(("id" = i64, Path), ("individual_id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(s): State<AppState>,
    c: Caller,
    ApiPath((id, individual_id)): ApiPath<(i64, i64)>,
) -> Result<StatusCode, ApiError> {
    c.require_write()?;
    s.store.remove_member(id, individual_id, &c.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ audit

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Keyset cursor: entries older than this entry id.
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/registrants/{id}/audit", tag = "audit",
    operation_id = "registrant_audit",
    params(("id" = i64, Path), AuditQuery), responses((status = 200, body = [AuditEntry])))]
pub async fn audit(
    State(s): State<AppState>,
    c: Caller,
    ApiPath(id): ApiPath<i64>,
    q: Result<ApiQuery<AuditQuery>, ApiError>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    c.require_read()?;
    let ApiQuery(q) = q?;
    let limit = page_limit(q.limit)?;
    Ok(Json(
        s.store.audit_for_registrant(id, q.before, limit).await?,
    ))
}
