//! MTS connectors: configuration (secrets sealed, never returned), runs, failures, possible
//! duplicates, and the callback receiver MTS delivers results to. The receiver authenticates
//! per connector (its static bearer secret, or a session from the Odoo-compatible login in
//! [`crate::odoo`]) rather than with API keys: MTS cannot hold one of ours.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use g2p_domain::mts_connector::{
    CALLBACK_KEYS, CallbackAuthType, InputType, JobType, MtsConnectorInput, MtsConnectorSettings,
};
use g2p_store::audit::Actor;
use g2p_store::jobs::NewJob;
use g2p_store::jobs::schedules::ScheduleSpec;
use g2p_store::mts::{
    MTS_RUN_JOB, MTS_TICK_JOB, MtsCallbackItem, MtsCallbackPolicy, MtsCallbackReport,
    MtsConnectorRow, MtsDuplicate, MtsFailure, MtsRun, MtsRunProgress, mts_schedule_name,
};
use g2p_store::odk_submissions::{OdkRunCounts, OdkSubmissionRow};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::api::ApiJson;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// AEAD contexts of the sealed secrets (shared with the worker in `g2p::mts_connector`).
pub const CALLBACK_SECRET_CONTEXT: &str = "mts_connector.callback_secret";
pub const ODK_SECRET_CONTEXT: &str = "mts_connector.odk_secret";

/// A connector as the API shows it: secrets only as "set or not".
#[derive(Serialize, utoipa::ToSchema)]
pub struct MtsConnectorView {
    pub id: i64,
    pub name: String,
    pub settings: MtsConnectorSettings,
    pub callback_password_set: bool,
    pub odk_password_set: bool,
    /// `stopped` or `running`.
    pub state: String,
    /// The URL MTS must call back (the receiver of this connector).
    pub receiver_path: String,
    /// ODK input: submissions received before this instant have been imported.
    pub watermark: Option<chrono::DateTime<chrono::Utc>>,
    pub version: i64,
}

fn view(row: MtsConnectorRow) -> Result<MtsConnectorView, ApiError> {
    let settings: MtsConnectorSettings =
        serde_json::from_value(row.settings.0).map_err(ApiError::internal)?;
    Ok(MtsConnectorView {
        receiver_path: format!("/api/v1/mts/callbacks/{}", row.id),
        id: row.id,
        name: row.name,
        settings,
        callback_password_set: row.callback_secret.is_some(),
        odk_password_set: row.odk_secret.is_some(),
        state: row.state,
        watermark: row.watermark,
        version: row.version,
    })
}

fn seal(s: &AppState, context: &str, secret: Option<String>) -> Result<Option<String>, ApiError> {
    secret
        .map(|p| s.secrets.seal(context, &p).map_err(ApiError::internal))
        .transpose()
}

/// A random callback secret when the operator gives none.
fn generated_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
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
    let (name, settings, secrets) = input.parse(None).map_err(ApiError::Validation)?;
    let password = secrets
        .callback_password
        .clone()
        .unwrap_or_else(generated_secret);
    let row = s
        .store
        .create_mts_connector(
            &name,
            &serde_json::to_value(&settings).map_err(ApiError::internal)?,
            seal(&s, CALLBACK_SECRET_CONTEXT, Some(password))?,
            seal(&s, ODK_SECRET_CONTEXT, secrets.odk_password.clone())?,
            &c.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(row)?)))
}

#[utoipa::path(get, path = "/api/v1/mts/connectors", tag = "mts", operation_id = "list_mts_connectors",
    responses((status = 200, body = Vec<MtsConnectorView>)))]
pub async fn list(
    State(s): State<AppState>,
    c: Caller,
) -> Result<Json<Vec<MtsConnectorView>>, ApiError> {
    c.require_read()?;
    let rows = s.store.list_mts_connectors().await?;
    Ok(Json(rows.into_iter().map(view).collect::<Result<_, _>>()?))
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
    Ok(Json(view(s.store.get_mts_connector(id).await?)?))
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
    let row = s.store.get_mts_connector(id).await?;
    let current: MtsConnectorSettings =
        serde_json::from_value(row.settings.0.clone()).map_err(ApiError::internal)?;
    let (name, settings, secrets) = input
        .parse(Some((&row.name, &current)))
        .map_err(ApiError::Validation)?;
    // Switching to ODK input needs the ODK password, unless one is stored already.
    if settings.input_type == InputType::Odk
        && row.odk_secret.is_none()
        && secrets.odk_password.is_none()
    {
        return Err(ApiError::field("odk_password", "is required for ODK input"));
    }
    let row = s
        .store
        .update_mts_connector(
            id,
            &name,
            &serde_json::to_value(&settings).map_err(ApiError::internal)?,
            seal(
                &s,
                CALLBACK_SECRET_CONTEXT,
                secrets.callback_password.clone(),
            )?,
            seal(&s, ODK_SECRET_CONTEXT, secrets.odk_password.clone())?,
            &c.actor(),
        )
        .await?;
    Ok(Json(view(row)?))
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

fn window_bound(field: &str, v: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|d| d.to_utc())
        .map_err(|_| ApiError::field(field, "must be an RFC 3339 date-time"))
}

async fn start_run(
    s: &AppState,
    c: &Caller,
    connector_id: i64,
    kind: &str,
    selection: Option<Value>,
    targets: Option<&[i64]>,
) -> Result<(StatusCode, Json<RunView>), ApiError> {
    s.store.get_mts_connector(connector_id).await?;
    let run = s
        .store
        .create_mts_run(
            connector_id,
            kind,
            selection.as_ref(),
            targets,
            &c.actor().name,
        )
        .await?;
    s.store
        .enqueue(
            NewJob::new(MTS_RUN_JOB, json!({"run_id": run.id}))
                .max_attempts(8)
                .dedupe_key(format!("{MTS_RUN_JOB}:{}", run.id)),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunView {
            run,
            progress: MtsRunProgress::default(),
            odk: None,
        }),
    ))
}

/// Largest id list of one manual import.
const MAX_TARGETS: usize = 1_000_000;

/// Registrant ids from an uploaded CSV: one per line, in the first column, with or without a
/// header line (`id` or `registrant_id`).
fn ids_from_csv(body: &[u8]) -> Result<Vec<i64>, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::field("csv", "must be UTF-8 text"))?;
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let cell = line
            .split([',', ';', '\t'])
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if cell.is_empty() {
            continue;
        }
        match cell.parse::<i64>() {
            Ok(id) if id > 0 => ids.push(id),
            _ if n == 0 && matches!(cell, "id" | "registrant_id") => {}
            _ => {
                return Err(ApiError::field(
                    &format!("csv.line_{}", n + 1),
                    format!("{cell:?} is not a registrant id"),
                ));
            }
        }
    }
    Ok(ids)
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
            registrant_ids: Some(ids_from_csv(&body)?),
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
    match (&req.window_start, &req.window_end) {
        (None, None) => {}
        (Some(start), Some(end)) => {
            let (start, end) = (
                window_bound("window_start", start)?,
                window_bound("window_end", end)?,
            );
            if start >= end {
                return Err(ApiError::field("window_end", "must be after window_start"));
            }
            let row = s.store.get_mts_connector(id).await?;
            let settings: MtsConnectorSettings =
                serde_json::from_value(row.settings.0).map_err(ApiError::internal)?;
            if settings.input_type != InputType::Odk {
                return Err(ApiError::field("window_start", "only for ODK input"));
            }
            let selection = json!({"window": {"start": start, "end": end}});
            return start_run(&s, &c, id, "manual", Some(selection), None).await;
        }
        (Some(_), None) => return Err(ApiError::field("window_end", "is required")),
        (None, Some(_)) => return Err(ApiError::field("window_start", "is required")),
    }
    match (req.registrant_ids, req.filter) {
        (Some(_), Some(_)) => Err(ApiError::field(
            "registrant_ids",
            "give registrant_ids or filter, not both",
        )),
        (Some(ids), None) if ids.is_empty() || ids.len() > MAX_TARGETS => Err(ApiError::field(
            "registrant_ids",
            format!("between 1 and {MAX_TARGETS} ids"),
        )),
        (Some(ids), None) => {
            let selection = json!({"registrants": ids.len()});
            start_run(&s, &c, id, "manual", Some(selection), Some(&ids)).await
        }
        (None, Some(f)) => {
            g2p_domain::filter::Domain::from_json(&f)
                .map_err(|e| ApiError::field("filter", e.to_string()))?;
            start_run(&s, &c, id, "manual", Some(json!({"filter": f})), None).await
        }
        (None, None) => start_run(&s, &c, id, "delta", None, None).await,
    }
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
    let row = s.store.get_mts_connector(id).await?;
    let settings: MtsConnectorSettings =
        serde_json::from_value(row.settings.0).map_err(ApiError::internal)?;
    let started = start_run(&s, &c, id, "delta", None, None).await?;
    if settings.job_type == JobType::Recurring {
        s.store
            .upsert_schedule(
                &mts_schedule_name(id),
                MTS_TICK_JOB,
                json!({"connector_id": id}),
                ScheduleSpec::EveryMinutes(settings.interval_minutes),
            )
            .await?;
        s.store
            .set_schedule_enabled(&mts_schedule_name(id), true)
            .await?;
        s.store
            .set_mts_connector_state(id, "running", &c.actor())
            .await?;
    }
    Ok(started)
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
    s.store.get_mts_connector(id).await?;
    s.store.delete_schedule(&mts_schedule_name(id)).await?;
    s.store.stop_mts_runs(id).await?;
    let row = s
        .store
        .set_mts_connector_state(id, "stopped", &c.actor())
        .await?;
    Ok(Json(view(row)?))
}

#[utoipa::path(get, path = "/api/v1/mts/connectors/{id}/runs", tag = "mts", operation_id = "list_mts_runs",
    params(("id" = i64, Path)), responses((status = 200, body = Vec<RunView>)))]
pub async fn list_runs(
    State(s): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    c.require_read()?;
    s.store.complete_mts_runs().await?;
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
    s.store.complete_mts_runs().await?;
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
    s.store.get_mts_connector(id).await?;
    s.store.reset_mts_failures(id).await?;
    start_run(&s, &c, id, "retry", None, None).await
}

#[utoipa::path(get, path = "/api/v1/mts/duplicates", tag = "mts", operation_id = "list_mts_duplicates",
    responses((status = 200, body = Vec<MtsDuplicate>)))]
pub async fn duplicates(
    State(s): State<AppState>,
    c: Caller,
) -> Result<Json<Vec<MtsDuplicate>>, ApiError> {
    c.require_read()?;
    let mut types: Vec<String> = Vec::new();
    for row in s.store.list_mts_connectors().await? {
        if let Ok(st) = serde_json::from_value::<MtsConnectorSettings>(row.settings.0)
            && !types.contains(&st.token_id_type)
        {
            types.push(st.token_id_type);
        }
    }
    let mut out = Vec::new();
    for t in types {
        out.extend(s.store.mts_possible_duplicates(&t, 500).await?);
    }
    Ok(Json(out))
}

// ---------------------------------------------------------------------------- the receiver

/// Whether the request carries this connector's credentials: `Authorization: Bearer <secret>`
/// for `staticBearer`, a live `session_id` cookie of this connector for `odoo`.
async fn callback_authenticated(
    s: &AppState,
    row: &MtsConnectorRow,
    settings: &MtsConnectorSettings,
    headers: &HeaderMap,
) -> Result<bool, ApiError> {
    match settings.callback_auth_type {
        CallbackAuthType::StaticBearer => {
            let Some(given) = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
            else {
                return Ok(false);
            };
            let Some(sealed) = &row.callback_secret else {
                return Ok(false);
            };
            let secret = s
                .secrets
                .open(CALLBACK_SECRET_CONTEXT, sealed)
                .map_err(ApiError::internal)?;
            Ok(bool::from(
                given.as_bytes().ct_eq(secret.expose_secret().as_bytes()),
            ))
        }
        CallbackAuthType::Odoo => match crate::odoo::session_cookie(headers) {
            Some(token) => Ok(s.store.mts_callback_session_allows(&token, row.id).await?),
            None => Ok(false),
        },
    }
}

/// Parses every item of a callback; any unreadable item refuses the call, naming each.
pub(crate) fn parse_items<T>(
    list: &[Value],
    parse: impl Fn(usize, &Value, &mut g2p_domain::FieldErrors) -> Option<T>,
) -> Result<Vec<T>, ApiError> {
    let mut errors = g2p_domain::FieldErrors::new();
    let items: Vec<T> = list
        .iter()
        .enumerate()
        .filter_map(|(i, v)| parse(i, v, &mut errors))
        .collect();
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(ApiError::Validation(errors))
    }
}

fn parse_item(
    i: usize,
    v: &Value,
    errors: &mut g2p_domain::FieldErrors,
) -> Option<MtsCallbackItem> {
    let Some(obj) = v.as_object() else {
        errors.add(format!("[{i}]"), "must be an object");
        return None;
    };
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    let reference = text("ref");
    let status = text("status");
    if reference.as_deref().is_none_or(str::is_empty) {
        errors.add(
            format!("[{i}].ref"),
            "required: the output format must return .input.ref",
        );
    }
    if status.as_deref().is_none_or(str::is_empty) {
        errors.add(
            format!("[{i}].status"),
            "required: the output format must return .output.status",
        );
    }
    let extra = obj
        .iter()
        .filter(|(k, _)| !CALLBACK_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(MtsCallbackItem {
        reference: reference.unwrap_or_default(),
        status: status.unwrap_or_default(),
        token: text("token"),
        error_code: text("errorCode"),
        error_message: text("errorMessage"),
        extra,
    })
}

/// Results from MTS: one record (object) or many (array, `callInBulk`). Applied in one
/// transaction; replays change nothing; an unknown reference refuses the whole call (422).
#[utoipa::path(post, path = "/api/v1/mts/callbacks/{id}", tag = "mts", operation_id = "mts_callback",
    params(("id" = i64, Path)), request_body = Object, security(()),
    responses((status = 200, body = MtsCallbackReport), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn callback(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    // Unknown connector and wrong credentials answer alike: no probing for connector ids.
    let row = match s.store.get_mts_connector(id).await {
        Ok(r) => r,
        Err(g2p_store::StoreError::NotFound { .. }) => return Err(ApiError::Unauthorized),
        Err(e) => return Err(e.into()),
    };
    let settings: MtsConnectorSettings =
        serde_json::from_value(row.settings.0.clone()).map_err(ApiError::internal)?;
    if !callback_authenticated(&s, &row, &settings, &headers).await? {
        return Err(ApiError::Unauthorized);
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
        code: "malformed_json",
        message: format!("the body is not JSON: {e}"),
    })?;
    let list = match value {
        Value::Array(a) => a,
        other => vec![other],
    };
    if settings.input_type == InputType::Odk {
        return Ok(crate::api::mts_odk::receive(&s, &row, &settings, &list)
            .await?
            .into_response());
    }
    let items: Vec<MtsCallbackItem> = parse_items(&list, parse_item)?;
    let policy = MtsCallbackPolicy {
        connector_id: row.id,
        vid_id_type: &settings.vid_id_type,
        token_id_type: &settings.token_id_type,
        remove_vid: settings.remove_vid,
        max_attempts: i64::from(settings.failed_retry.max_attempts),
        backoff_minutes: i64::from(settings.failed_retry.backoff_minutes),
    };
    let actor = Actor::system(&format!("mts-callback:{}", row.id));
    Ok(Json(s.store.apply_mts_callbacks(&policy, &items, &actor).await?).into_response())
}
