//! The one place where errors become HTTP statuses. Every error body has the same shape:
//! `{"error":{"code","message","fields","request_id"}}`. Internal errors are logged once here with
//! the request id, and the client gets a generic message carrying that id.

use std::any::Any;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use g2p_domain::{DomainError, FieldErrors};
use g2p_store::StoreError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid input")]
    Validation(FieldErrors),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{message}")]
    Conflict { field: String, message: String },
    #[error("request body larger than the limit of {0} bytes")]
    PayloadTooLarge(u64),
    #[error("expected a body of type {0}")]
    UnsupportedMediaType(&'static str),
    #[error("authentication required: send an API key as `Authorization: Bearer <key>`")]
    Unauthorized,
    #[error("your role may not do this")]
    Forbidden,
    #[error("upstream service failed: {0}")]
    Upstream(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `validation_failed`, `not_found`, `conflict`.
    pub code: &'static str,
    pub message: String,
    /// Field name → problems, for `validation_failed` and `conflict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub fields: Option<FieldErrors>,
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut f = FieldErrors::new();
        f.add(field, message);
        ApiError::Validation(f)
    }

    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::BadRequest { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict { .. } => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::Upstream(_) => "upstream_failed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The body, with the request id of the current request when there is one.
    pub fn body(&self) -> ErrorBody {
        let request_id = crate::REQUEST_ID.try_with(Clone::clone).ok();
        let fields = match self {
            ApiError::Validation(f) => Some(f.clone()),
            ApiError::Conflict { field, message } if !field.is_empty() => {
                let mut f = FieldErrors::new();
                f.add(field.clone(), message.clone());
                Some(f)
            }
            _ => None,
        };
        let message = match self {
            ApiError::Validation(f) => format!("invalid input: {f}"),
            ApiError::Internal(_) => format!(
                "internal error; quote request id {} when reporting it",
                request_id.as_deref().unwrap_or("-")
            ),
            other => other.to_string(),
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
                fields,
                request_id,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            // The single place an internal error is logged; its text may name tables but never
            // carries row data (sqlx errors do not include bound values).
            tracing::error!(error = %e, "internal error");
        }
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// A body that could not be read whole: over `limit` (413), or cut off by the client (400).
pub fn body_error(e: &axum::Error, limit: usize) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return ApiError::PayloadTooLarge(u64::try_from(limit).unwrap_or(u64::MAX));
        }
        source = s.source();
    }
    ApiError::BadRequest {
        code: "unreadable_body",
        message: "the body could not be read".into(),
    }
}

impl From<g2p_app::AppError> for ApiError {
    fn from(e: g2p_app::AppError) -> Self {
        match e {
            g2p_app::AppError::Store(e) => e.into(),
            g2p_app::AppError::Validation(f) => ApiError::Validation(f),
            g2p_app::AppError::Internal(message) => {
                ApiError::internal(std::io::Error::other(message))
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { entity } => ApiError::NotFound(entity.to_owned()),
            StoreError::Conflict { field, message } => ApiError::Conflict { field, message },
            StoreError::Validation(f) => ApiError::Validation(f),
            StoreError::Filter(f) => ApiError::field("filter", f.to_string()),
            other @ (StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::UnsupportedUrl(_)) => {
                if let StoreError::Database(sqlx::Error::PoolTimedOut) = other {
                    return ApiError::Unavailable("database busy, retry shortly".into());
                }
                ApiError::internal(other)
            }
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Validation(f) => ApiError::Validation(f),
            DomainError::Filter(f) => ApiError::field("filter", f.to_string()),
        }
    }
}

/// A path parameter that does not parse (`/registrants/abc`) names nothing that exists: 404 in
/// the usual shape, rather than axum's plain-text 400.
impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        match e {
            PathRejection::FailedToDeserializePathParams(_) => {
                ApiError::NotFound("resource".into())
            }
            other => ApiError::internal(other),
        }
    }
}

/// A query parameter of the wrong type is a field error on that parameter (axum's text reads
/// `Failed to deserialize query string: <param>: <problem>`).
impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        let text = e.body_text();
        let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
        match detail.split_once(": ") {
            Some((param, problem))
                if !param.is_empty()
                    && param.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                ApiError::field(param, problem)
            }
            _ => ApiError::field("query", detail),
        }
    }
}

/// `Path` whose rejection uses the API's error shape.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(ApiPath(
            Path::<T>::from_request_parts(parts, state).await?.0,
        ))
    }
}

/// `Query` whose rejection uses the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(ApiQuery(
            Query::<T>::from_request_parts(parts, state).await?.0,
        ))
    }
}

/// The error body for a bare status produced outside a handler (routing, timeouts, limits).
pub fn status_body(status: StatusCode) -> ErrorBody {
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = match status {
        StatusCode::NOT_FOUND => "no such API route".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_owned(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long and was abandoned".to_owned(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    ErrorBody {
        error: ErrorDetail {
            code,
            message,
            fields: None,
            request_id: crate::REQUEST_ID.try_with(Clone::clone).ok(),
        },
    }
}

/// A panicking handler becomes a logged 500 with the usual body, not a dropped connection.
pub fn panic_response(_err: Box<dyn Any + Send + 'static>) -> Response {
    ApiError::Internal("handler panicked".into()).into_response()
}
