//! MTS connectors over HTTP: configuration (secrets sealed, never returned), runs, failures,
//! possible duplicates, and the callback receiver MTS delivers results to. Handlers translate
//! between HTTP and the use cases of `g2p_app::mts`; they hold no rule of their own.
//!
//! The receiver authenticates per connector (its static bearer secret, or a session from the
//! Odoo-compatible login in [`crate::odoo`]) in the [`CallbackConnector`] extractor, before
//! the body is read, and reads at most the connector's own body limit.

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use g2p_app::mts::callbacks::{Credentials, Received};
use g2p_app::mts::connectors::{self as app, Connector, RunParts};
use g2p_domain::mts_connector::{MtsConnectorInput, MtsConnectorSettings};
use g2p_store::mts::{
    ConnectorState, MtsCallbackReport, MtsDuplicate, MtsFailure, MtsRun, MtsRunProgress,
};
use g2p_store::odk_submissions::{OdkRunCounts, OdkSubmissionRow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::ApiJson;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A connector as the API shows it: secrets only as "set or not".
#[derive(Serialize, utoipa::ToSchema)]
pub struct MtsConnectorView {
    pub id: i64,
    pub name: String,
    pub settings: MtsConnectorSettings,
    pub callback_password_set: bool,
    pub odk_password_set: bool,
    pub state: ConnectorState,
    /// The URL MTS must call back (the receiver of this connector).
    pub receiver_path: String,
    /// ODK input: submissions received before this instant have been imported.
    pub watermark: Option<chrono::DateTime<chrono::Utc>>,
    pub version: i64,
}

/// The path of a connector's callback receiver.
pub fn receiver_path(id: i64) -> String {
    format!("/api/v1/mts/callbacks/{id}")
}

pub fn view(c: Connector) -> MtsConnectorView {
    MtsConnectorView {
        receiver_path: receiver_path(c.row.id),
        callback_password_set: c.row.callback_secret.is_some(),
        odk_password_set: c.row.odk_secret.is_some(),
        id: c.row.id,
        name: c.row.name,
        settings: c.settings,
        state: c.row.state,
        watermark: c.row.watermark,
        version: c.row.version,
    }
}

#[utoipa::path(post, path = "/api/v1/mts/connectors", tag = "mts", operation_id = "create_mts_connector",
    request_body = MtsConnectorInput,
    responses((status = 201, body = MtsConnectorView), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    c: Caller,
    ApiJson(input): ApiJson<MtsConnectorInput>,
) -> Result<(StatusCode, Json<MtsConnectorView>), ApiError> {
    c.require_admin()?;
    let created = app::create(&s.store, &s.secrets, &c.actor(), input, None).await?;
    Ok((StatusCode::CREATED, Json(view(created))))
}

#[utoipa::path(get, path = "/api/v1/mts/connectors", tag = "mts", operation_id = "list_mts_connectors",
    responses((status = 200, body = Vec<MtsConnectorView>)))]
pub async fn list(
    State(s): State<AppState>,
    c: Caller,
) -> Result<Json<Vec<MtsConnectorView>>, ApiError> {
    c.require_read()?;
    Ok(Json(
        app::list(&s.store).await?.into_iter().map(view).collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/mts/connectors/{id}", tag = "mts", operation_id = "get_mts_connector",
    params(("id" = i64, Path)),
    responses((status = 200, body = MtsConnectorView), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<Json<MtsConnectorView>, ApiError> {
    c.require_read()?;
    Ok(Json(view(app::get(&s.store, id).await?)))
}

#[utoipa::path(patch, path = "/api/v1/mts/connectors/{id}", tag = "mts", operation_id = "update_mts_connector",
    params(("id" = i64, Path)), request_body = MtsConnectorInput,
    responses((status = 200, body = MtsConnectorView), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
    ApiJson(input): ApiJson<MtsConnectorInput>,
) -> Result<Json<MtsConnectorView>, ApiError> {
    c.require_admin()?;
    let updated = app::update(&s.store, &s.secrets, &c.actor(), id, input).await?;
    Ok(Json(view(updated)))
}

/// A manual import: explicit registrant ids, or a filter replacing the connector's.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub registrant_ids: Option<Vec<i64>>,
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// ODK input: import exactly the submissions received in [window_start, window_end)
    /// (RFC 3339 date-times), whatever the watermark.
    pub window_start: Option<String>,
    pub window_end: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunView {
    #[serde(flatten)]
    pub run: MtsRun,
    pub progress: MtsRunProgress,
    /// ODK input: what the run's window brought, by outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub odk: Option<OdkRunCounts>,
}

async fn run_view(s: &AppState, run: MtsRun) -> Result<RunView, ApiError> {
    let progress = s.store.mts_run_progress(run.id).await?;
    let odk = match run.window_end {
        Some(_) => Some(s.store.odk_run_counts(run.id).await?),
        None => None,
    };
    Ok(RunView { run, progress, odk })
}

fn accepted(run: MtsRun) -> (StatusCode, Json<RunView>) {
    (
        StatusCode::ACCEPTED,
        Json(RunView {
            run,
            progress: MtsRunProgress::default(),
            odk: None,
        }),
    )
}

/// Runs now: the delta; or a manual import, when the body names registrant ids (JSON
/// `registrant_ids`, or a `text/csv` upload of ids) or a filter. 202 with the run; a worker
/// does the work.
#[utoipa::path(post, path = "/api/v1/mts/connectors/{id}/runs", tag = "mts", operation_id = "run_mts_connector",
    params(("id" = i64, Path)), request_body(content = Option<RunRequest>, description = "JSON, or text/csv of registrant ids"),
    responses((status = 202, body = RunView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn run_now(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    c.require_admin()?;
    let csv = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    // The body is optional: none (or empty) runs the delta.
    let req: RunRequest = if csv {
        RunRequest {
            registrant_ids: Some(app::ids_from_csv(&body)?),
            ..RunRequest::default()
        }
    } else if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
            code: "malformed_json",
            message: format!("invalid run request: {e}"),
        })?
    };
    let selection = RunParts {
        registrant_ids: req.registrant_ids,
        filter: req.filter,
        window_start: req.window_start,
        window_end: req.window_end,
    }
    .selection()?;
    Ok(accepted(
        app::run(&s.store, &c.actor(), id, selection).await?,
    ))
}

/// Starts the connector: a recurring one runs now and then every interval until stopped; a
/// one-time one runs once. 202 with the first run.
#[utoipa::path(post, path = "/api/v1/mts/connectors/{id}/start", tag = "mts", operation_id = "start_mts_connector",
    params(("id" = i64, Path)),
    responses((status = 202, body = RunView), (status = 409, body = ErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    c.require_admin()?;
    Ok(accepted(app::start(&s.store, &c.actor(), id).await?))
}

/// Stops the connector: no more recurring runs, and a run in progress stops after its
/// current chunk (callbacks of what was sent are still taken).
#[utoipa::path(post, path = "/api/v1/mts/connectors/{id}/stop", tag = "mts", operation_id = "stop_mts_connector",
    params(("id" = i64, Path)),
    responses((status = 200, body = MtsConnectorView), (status = 404, body = ErrorBody)))]
pub async fn stop(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<Json<MtsConnectorView>, ApiError> {
    c.require_admin()?;
    Ok(Json(view(app::stop(&s.store, &c.actor(), id).await?)))
}

#[utoipa::path(get, path = "/api/v1/mts/connectors/{id}/runs", tag = "mts", operation_id = "list_mts_runs",
    params(("id" = i64, Path)), responses((status = 200, body = Vec<RunView>)))]
pub async fn list_runs(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    c.require_read()?;
    let mut out = Vec::new();
    for run in s.store.list_mts_runs(id, 50).await? {
        out.push(run_view(&s, run).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/mts/runs/{id}", tag = "mts", operation_id = "get_mts_run",
    params(("id" = i64, Path)),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody)))]
pub async fn get_run(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<Json<RunView>, ApiError> {
    c.require_read()?;
    let run = s.store.get_mts_run(id).await?;
    Ok(Json(run_view(&s, run).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct SubmissionQuery {
    /// created, updated, duplicate, held or invalid.
    pub outcome: Option<String>,
    pub run_id: Option<i64>,
    /// Keyset cursor: the last instance id of the previous page.
    pub after: Option<String>,
    pub limit: Option<i64>,
}

/// ODK input: the submissions received, with what became of each (possible duplicates and
/// held ones for review).
#[utoipa::path(get, path = "/api/v1/mts/connectors/{id}/submissions", tag = "mts", operation_id = "list_odk_submissions",
    params(("id" = i64, Path), SubmissionQuery),
    responses((status = 200, body = Vec<OdkSubmissionRow>)))]
pub async fn submissions(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
    Query(q): Query<SubmissionQuery>,
) -> Result<Json<Vec<OdkSubmissionRow>>, ApiError> {
    c.require_read()?;
    let limit = crate::api::page_limit(q.limit)?;
    Ok(Json(
        s.store
            .list_odk_submissions(
                id,
                q.outcome.as_deref(),
                q.run_id,
                q.after.as_deref().unwrap_or(""),
                limit,
            )
            .await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct FailureQuery {
    pub run_id: Option<i64>,
    /// Keyset cursor: the last registrant id of the previous page.
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/mts/connectors/{id}/failures", tag = "mts", operation_id = "list_mts_failures",
    params(("id" = i64, Path), FailureQuery), responses((status = 200, body = Vec<MtsFailure>)))]
pub async fn failures(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
    Query(q): Query<FailureQuery>,
) -> Result<Json<Vec<MtsFailure>>, ApiError> {
    c.require_read()?;
    let limit = crate::api::page_limit(q.limit)?;
    Ok(Json(
        s.store
            .list_mts_failures(id, q.run_id, q.after.unwrap_or(0), limit)
            .await?,
    ))
}

/// Makes every failed record due now with fresh attempts, and runs.
#[utoipa::path(post, path = "/api/v1/mts/connectors/{id}/retry-failed", tag = "mts", operation_id = "retry_mts_failures",
    params(("id" = i64, Path)),
    responses((status = 202, body = RunView), (status = 409, body = ErrorBody)))]
pub async fn retry_failed(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    c.require_admin()?;
    Ok(accepted(app::retry_failed(&s.store, &c.actor(), id).await?))
}

#[utoipa::path(get, path = "/api/v1/mts/duplicates", tag = "mts", operation_id = "list_mts_duplicates",
    responses((status = 200, body = Vec<MtsDuplicate>)))]
pub async fn duplicates(
    State(s): State<AppState>,
    c: Caller,
) -> Result<Json<Vec<MtsDuplicate>>, ApiError> {
    c.require_read()?;
    Ok(Json(g2p_app::mts::duplicates(&s.store).await?))
}

// ---------------------------------------------------------------------------- the receiver

/// The connector a callback is for, authenticated from the request's head alone: an unknown
/// connector or wrong credentials are refused before a byte of the body is read.
pub struct CallbackConnector(pub Connector);

impl FromRequestParts<AppState> for CallbackConnector {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let Path(id) = Path::<i64>::from_request_parts(parts, s)
            .await
            .map_err(|_| ApiError::Unauthorized)?;
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let session = crate::odoo::session_cookie(&parts.headers);
        let credentials = match (bearer, session.as_deref()) {
            (Some(b), _) => Credentials::Bearer(b),
            (None, Some(token)) => Credentials::OdooSession(token),
            (None, None) => Credentials::None,
        };
        match g2p_app::mts::callbacks::authenticate(&s.store, &s.secrets, id, credentials).await? {
            Some(c) => Ok(CallbackConnector(c)),
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// Results from MTS: one record (object) or many (array, `callInBulk`). Applied in one
/// transaction; replays change nothing; an unknown reference refuses the whole call (422).
/// The body may be at most the connector's limit (413 above), read only once authenticated.
#[utoipa::path(post, path = "/api/v1/mts/callbacks/{id}", tag = "mts", operation_id = "mts_callback",
    params(("id" = i64, Path)), request_body = Object, security(()),
    responses((status = 200, body = MtsCallbackReport), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn callback(
    State(s): State<AppState>,
    CallbackConnector(c): CallbackConnector,
    body: axum::body::Body,
) -> Result<axum::response::Response, ApiError> {
    let limit = g2p_app::mts::callbacks::body_limit(&c);
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| crate::error::body_error(&e, limit))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
        code: "malformed_json",
        message: format!("the body is not JSON: {e}"),
    })?;
    Ok(
        match g2p_app::mts::callbacks::receive(&s.store, &c, value).await? {
            Received::Registry(report) => Json(report).into_response(),
            Received::Odk(report) => Json(report).into_response(),
        },
    )
}
