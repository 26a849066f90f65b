//! The JSON API under `/api/v1`, with its OpenAPI document at `/api/v1/openapi.json`.

pub mod id_types;
pub mod import;
pub mod jobs;
pub mod keys;
pub mod mts;
pub mod registrants;

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "g2p registry API", description = "Registrants, typed IDs, groups, bank accounts, audit, jobs."),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    security(("api_key" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router(state: AppState) -> axum::Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(registrants::list, registrants::create))
        .routes(routes!(registrants::search))
        .routes(routes!(
            registrants::get_one,
            registrants::replace,
            registrants::patch,
            registrants::delete
        ))
        .routes(routes!(registrants::list_ids, registrants::add_id))
        .routes(routes!(registrants::put_id, registrants::remove_id))
        .routes(routes!(
            registrants::list_accounts,
            registrants::add_account
        ))
        .routes(routes!(registrants::remove_account))
        .routes(routes!(registrants::list_members, registrants::add_member))
        .routes(routes!(registrants::remove_member))
        .routes(routes!(registrants::audit))
        .routes(routes!(id_types::list, id_types::create))
        .routes(routes!(
            id_types::get_one,
            id_types::update,
            id_types::delete
        ))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::get_one))
        .routes(routes!(jobs::retry))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::schedules))
        .routes(routes!(jobs::revalidate))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::revoke))
        .routes(routes!(keys::me))
        .routes(routes!(import::import))
        .routes(routes!(mts::list, mts::create))
        .routes(routes!(mts::get_one, mts::update))
        .routes(routes!(mts::list_runs, mts::run_now))
        .routes(routes!(mts::get_run))
        .routes(routes!(mts::start))
        .routes(routes!(mts::stop))
        .routes(routes!(mts::failures))
        .routes(routes!(mts::retry_failed))
        .routes(routes!(mts::duplicates))
        .routes(routes!(mts::submissions))
        .with_state(state)
        .split_for_parts();
    let doc = std::sync::Arc::new(openapi);
    router.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()).into_response() }
        }),
    )
}

/// JSON body extractor whose failures use the API's error shape: 415 without a JSON content
/// type, 413 over the limit, 400 for malformed JSON, 422 naming the field for wrong types or
/// unknown fields.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    AppState: axum::extract::FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json")
                    || m.eq_ignore_ascii_case("application/merge-patch+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType("application/json"));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                let limit = <AppState as axum::extract::FromRef<S>>::from_ref(state)
                    .settings
                    .max_body_bytes;
                return Err(ApiError::PayloadTooLarge(limit as u64));
            }
            Err(e) => {
                return Err(ApiError::BadRequest {
                    code: "bad_body",
                    message: e.body_text(),
                });
            }
        };
        // serde would accept an array for a struct, matching fields by position; every body of
        // this API is an object, so anything else is refused before it can be misread.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return match parse_json::<serde_json::Value>(&bytes) {
                Err(e) => Err(e),
                Ok(_) => Err(ApiError::field("body", "must be a JSON object")),
            };
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserialises JSON, reporting where it failed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Err(ApiError::BadRequest {
                    code: "malformed_json",
                    message: format!("malformed JSON: {inner}"),
                })
            } else {
                let field = if path == "." { "body".to_owned() } else { path };
                Err(ApiError::field(&field, inner.to_string()))
            }
        }
    }
}

/// Page size: default 50, at most 500.
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(l) if (1..=500).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::field("limit", "must be between 1 and 500")),
    }
}
