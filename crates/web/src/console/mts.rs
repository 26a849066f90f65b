//! MTS connectors: the list with each connector's last run, a create form, and one page per
//! connector with its settings form (grouped like OpenG2P's), Start / Stop / Run now / Retry
//! failed, a manual import, and its runs, failures and possible duplicates, which htmx
//! refreshes every 2 s while a run is in progress. An ODK connector's page shows instead its
//! watermark, each run's window and outcome counts, a manual window form, and its submissions
//! (filtered by outcome, in keyset pages, possible duplicates linked to their registrant).
//!
//! Every change goes through the same use cases as the JSON API (`g2p_app::mts::connectors`,
//! with the console user as the actor), so that the console and the API validate, seal
//! secrets, audit and queue jobs identically. Pages only read; no refresh writes. Secrets are never rendered: the page says
//! only whether one is set, and an empty password field keeps the stored one.

use askama::Template;
use axum::Form;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_htmx::HxRequest;
use g2p_domain::FieldErrors;
use g2p_domain::mts_connector::{
    DEFAULT_OUTPUT_FORMAT, InputType, MtsConnectorInput, MtsConnectorSettings, REGISTRANT_FIELDS,
};
use g2p_store::mts::{ConnectorState, MtsRun, MtsRunProgress, RunStatus};
use g2p_store::odk_submissions::{OdkRunCounts, OdkSubmissionRow, outcome};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ConsoleError, ConsoleUser, Layout, format_time, mask, render};
use crate::api::mts::{self as api, MtsConnectorView};
use crate::error::ApiError;
use crate::state::AppState;
use g2p_app::mts::connectors::{self as app, RunParts};

/// Runs shown on a connector page, newest first.
const RUNS_SHOWN: i64 = 20;
/// Failures and duplicate groups shown on a connector page.
const FAILURES_SHOWN: i64 = 100;
const DUPLICATES_SHOWN: i64 = 100;
/// Submissions of an ODK connector shown per page.
const SUBMISSIONS_PAGE: i64 = 50;

fn connector_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, ConsoleError> {
    id.map(|Path(id)| id)
        .map_err(|_| ApiError::NotFound("connector".into()).into())
}

fn bad_form(e: FormRejection) -> ConsoleError {
    ApiError::BadRequest {
        code: "bad_form",
        message: e.body_text(),
    }
    .into()
}

/// `scheme://host[:port]` of the console as the browser sees it: the `Origin` of the form post
/// (same-origin, checked by `guard_posts`), else `Host`.
fn request_origin(headers: &HeaderMap, secure: bool) -> Option<String> {
    if let Some(o) = headers.get(ORIGIN).and_then(|v| v.to_str().ok())
        && (o.starts_with("http://") || o.starts_with("https://"))
    {
        return Some(o.trim_end_matches('/').to_owned());
    }
    let host = headers.get(HOST).and_then(|v| v.to_str().ok())?;
    let scheme = if secure { "https" } else { "http" };
    Some(format!("{scheme}://{host}"))
}

/// The callback receiver of connector `id` at `origin`.
fn receiver_url(origin: &str, id: i64) -> String {
    format!("{origin}/api/v1/mts/callbacks/{id}")
}

// ------------------------------------------------------------------ the settings form

/// The settings form as posted: every value as typed, so that it can be shown again with its
/// errors. Checkboxes are present only when ticked.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct ConnectorForm {
    name: String,
    mts_url: String,
    input_type: String,
    job_type: String,
    interval_minutes: String,
    lang: String,
    mapping: String,
    output_type: String,
    output_format: String,
    delivery_type: String,
    fields: String,
    filter: String,
    callback_url: String,
    callback_http_method: String,
    callback_timeout_seconds: String,
    callback_auth_type: String,
    callback_auth_database: String,
    callback_auth_username: String,
    callback_password: String,
    chunk_size: String,
    call_in_bulk: Option<String>,
    vid_id_type: String,
    token_id_type: String,
    remove_vid: Option<String>,
    failed_retry_max_attempts: String,
    failed_retry_backoff_minutes: String,
    odk_base_url: String,
    odk_odata_url: String,
    odk_project_id: String,
    odk_form_id: String,
    odk_email: String,
    odk_password: String,
    odk_start: String,
    odk_end: String,
    odk_overlap_minutes: String,
    odk_hold_failed: Option<String>,
}

fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn compact(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn checkbox(on: bool) -> Option<String> {
    on.then(|| "true".to_owned())
}

impl ConnectorForm {
    /// The form showing `settings` (passwords are never filled in).
    fn from_settings(name: &str, s: &MtsConnectorSettings) -> Self {
        ConnectorForm {
            name: name.to_owned(),
            mts_url: s.mts_url.clone(),
            input_type: s.input_type.as_str().to_owned(),
            job_type: s.job_type.as_str().to_owned(),
            interval_minutes: s.interval_minutes.to_string(),
            lang: s.lang.clone(),
            mapping: pretty(&s.mapping),
            output_type: s.output_type.clone(),
            output_format: s.output_format.clone(),
            delivery_type: s.delivery_type.clone(),
            fields: compact(&s.fields),
            filter: compact(&s.filter),
            callback_url: s.callback_url.clone(),
            callback_http_method: s.callback_http_method.as_str().to_owned(),
            callback_timeout_seconds: s.callback_timeout_seconds.to_string(),
            callback_auth_type: s.callback_auth_type.as_str().to_owned(),
            callback_auth_database: s.callback_auth_database.clone(),
            callback_auth_username: s.callback_auth_username.clone(),
            callback_password: String::new(),
            chunk_size: s.chunk_size.to_string(),
            call_in_bulk: checkbox(s.call_in_bulk),
            vid_id_type: s.vid_id_type.clone(),
            token_id_type: s.token_id_type.clone(),
            remove_vid: checkbox(s.remove_vid),
            failed_retry_max_attempts: s.failed_retry.max_attempts.to_string(),
            failed_retry_backoff_minutes: s.failed_retry.backoff_minutes.to_string(),
            odk_base_url: s.odk_base_url.clone(),
            odk_odata_url: s.odk_odata_url.clone(),
            odk_project_id: s.odk_project_id.map(|p| p.to_string()).unwrap_or_default(),
            odk_form_id: s.odk_form_id.clone(),
            odk_email: s.odk_email.clone(),
            odk_password: String::new(),
            odk_start: s.odk_start.map(|d| d.to_rfc3339()).unwrap_or_default(),
            odk_end: s.odk_end.map(|d| d.to_rfc3339()).unwrap_or_default(),
            odk_overlap_minutes: s.odk_overlap_minutes.to_string(),
            odk_hold_failed: checkbox(s.odk_hold_failed),
        }
    }

    /// The API input of this form, and the problems found before the input could be built
    /// (malformed JSON, non-numbers). `callback_default` replaces an empty callback URL.
    /// Empty passwords are absent (keep the stored one; on create, one is generated).
    fn to_input(&self, callback_default: Option<String>) -> (MtsConnectorInput, FieldErrors) {
        let mut errors = FieldErrors::new();
        let json = |errors: &mut FieldErrors, field: &str, text: &str, empty: Value| {
            if text.trim().is_empty() {
                return Some(empty);
            }
            match serde_json::from_str::<Value>(text) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.add(field, format!("is not valid JSON: {e}"));
                    None
                }
            }
        };
        let mapping = json(&mut errors, "mapping", &self.mapping, json!({}));
        let fields = json(&mut errors, "fields", &self.fields, json!([]));
        let filter = json(&mut errors, "filter", &self.filter, json!([]));
        let callback_url = match callback_default {
            Some(d) if self.callback_url.trim().is_empty() => d,
            _ => self.callback_url.clone(),
        };
        let secret = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let max_attempts = number(
            &mut errors,
            "failed_retry.max_attempts",
            &self.failed_retry_max_attempts,
        );
        let backoff_minutes = number(
            &mut errors,
            "failed_retry.backoff_minutes",
            &self.failed_retry_backoff_minutes,
        );
        let input = MtsConnectorInput {
            name: Some(self.name.clone()),
            mts_url: Some(self.mts_url.clone()),
            input_type: Some(self.input_type.clone()),
            mapping,
            output_type: Some(self.output_type.clone()),
            output_format: Some(self.output_format.clone()),
            delivery_type: Some(self.delivery_type.clone()),
            job_type: Some(self.job_type.clone()),
            lang: Some(self.lang.clone()),
            interval_minutes: number(&mut errors, "interval_minutes", &self.interval_minutes),
            filter,
            fields,
            callback_url: Some(callback_url),
            callback_http_method: Some(self.callback_http_method.clone()),
            callback_timeout_seconds: number(
                &mut errors,
                "callback_timeout_seconds",
                &self.callback_timeout_seconds,
            ),
            callback_auth_type: Some(self.callback_auth_type.clone()),
            callback_auth_database: Some(self.callback_auth_database.clone()),
            callback_auth_username: Some(self.callback_auth_username.clone()),
            chunk_size: number(&mut errors, "chunk_size", &self.chunk_size),
            call_in_bulk: Some(self.call_in_bulk.is_some()),
            vid_id_type: Some(self.vid_id_type.clone()),
            token_id_type: Some(self.token_id_type.clone()),
            remove_vid: Some(self.remove_vid.is_some()),
            failed_retry: Some(g2p_domain::mts_connector::FailedRetryInput {
                max_attempts,
                backoff_minutes,
            }),
            odk_base_url: Some(self.odk_base_url.clone()),
            odk_odata_url: Some(self.odk_odata_url.clone()),
            odk_project_id: number(&mut errors, "odk_project_id", &self.odk_project_id),
            odk_form_id: Some(self.odk_form_id.clone()),
            odk_email: Some(self.odk_email.clone()),
            odk_start: Some(self.odk_start.clone()),
            odk_end: Some(self.odk_end.clone()),
            odk_overlap_minutes: number(
                &mut errors,
                "odk_overlap_minutes",
                &self.odk_overlap_minutes,
            ),
            odk_hold_failed: Some(self.odk_hold_failed.is_some()),
            callback_password: secret(&self.callback_password),
            odk_password: secret(&self.odk_password),
        };
        (input, errors)
    }
}

/// A whole number typed into a text field; empty means "not given" (keep the current value).
fn number<T: std::str::FromStr>(errors: &mut FieldErrors, field: &str, text: &str) -> Option<T> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    match t.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            errors.add(field, "must be a whole number");
            None
        }
    }
}

/// Whether error key `key` is about form field `field` (itself, or a part of its JSON).
fn is_about(key: &str, field: &str) -> bool {
    key == field
        || key
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// The problems of the form: those found while reading it, then those of
/// [`MtsConnectorInput::parse`], minus what a field that could not be read caused.
fn merge_errors(mut pre: FieldErrors, parsed: FieldErrors) -> FieldErrors {
    let mut unread: Vec<String> = pre.0.keys().cloned().collect();
    // The mapping is checked against the fields: unreadable fields make its errors moot.
    if unread.iter().any(|k| k == "fields") {
        unread.push("mapping".to_owned());
    }
    for (k, msgs) in parsed.0 {
        if !unread.iter().any(|u| is_about(&k, u)) {
            for m in msgs {
                pre.add(k.clone(), m);
            }
        }
    }
    pre
}

/// A failed save shown on the form: validation problems (422) and name conflicts (409).
fn form_failure(e: ApiError) -> Result<(StatusCode, FieldErrors), ConsoleError> {
    match e {
        ApiError::Validation(errors) => Ok((StatusCode::UNPROCESSABLE_ENTITY, errors)),
        ApiError::Conflict { field, message } => {
            let mut errors = FieldErrors::new();
            let field = if field.is_empty() {
                "name".to_owned()
            } else {
                field
            };
            errors.add(field, message);
            Ok((StatusCode::CONFLICT, errors))
        }
        other => Err(other.into()),
    }
}

pub struct SelectOption {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// One control of the settings form.
pub struct FormField {
    /// The form field name; the control's id is `set-<name>`.
    pub name: &'static str,
    /// The error key of [`MtsConnectorInput::parse`] this control shows.
    key: &'static str,
    pub label: &'static str,
    /// `text`, `numeric`, `password`, `textarea`, `select` or `checkbox`.
    pub kind: &'static str,
    pub value: String,
    pub rows: u32,
    pub options: Vec<SelectOption>,
    pub checked: bool,
    pub help: String,
    pub error: Option<String>,
}

impl FormField {
    fn new(name: &'static str, label: &'static str, kind: &'static str, value: &str) -> Self {
        FormField {
            name,
            key: name,
            label,
            kind,
            value: value.to_owned(),
            rows: 0,
            options: Vec::new(),
            checked: false,
            help: String::new(),
            error: None,
        }
    }

    fn text(name: &'static str, label: &'static str, value: &str) -> Self {
        Self::new(name, label, "text", value)
    }

    fn numeric(name: &'static str, label: &'static str, value: &str) -> Self {
        Self::new(name, label, "numeric", value)
    }

    fn textarea(name: &'static str, label: &'static str, value: &str, rows: u32) -> Self {
        FormField {
            rows,
            ..Self::new(name, label, "textarea", value)
        }
    }

    fn password(name: &'static str, label: &'static str) -> Self {
        Self::new(name, label, "password", "")
    }

    fn checkbox(name: &'static str, label: &'static str, checked: &Option<String>) -> Self {
        FormField {
            checked: checked.is_some(),
            ..Self::new(name, label, "checkbox", "true")
        }
    }

    fn select(
        name: &'static str,
        label: &'static str,
        value: &str,
        options: &[(&'static str, &'static str)],
    ) -> Self {
        FormField {
            options: options
                .iter()
                .map(|&(v, l)| SelectOption {
                    value: v,
                    label: l,
                    selected: value.eq_ignore_ascii_case(v),
                })
                .collect(),
            ..Self::new(name, label, "select", value)
        }
    }

    fn key(mut self, key: &'static str) -> Self {
        self.key = key;
        self
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    /// The ids of the help and error texts, for `aria-describedby`.
    pub fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if !self.help.is_empty() {
            ids.push(format!("set-{}-help", self.name));
        }
        if self.error.is_some() {
            ids.push(format!("set-{}-error", self.name));
        }
        ids.join(" ")
    }
}

pub struct FormGroup {
    pub legend: &'static str,
    pub fields: Vec<FormField>,
}

/// The settings form as shown, on the list page (create) and on a connector page (update).
pub struct FormView {
    pub action: String,
    pub submit_label: &'static str,
    /// Admins only; others see the settings read-only.
    pub editable: bool,
    pub csrf: String,
    pub groups: Vec<FormGroup>,
    /// Problems with no control of their own.
    pub form_error: Option<String>,
    pub has_errors: bool,
}

/// Whether the stored secrets are set (`None` on create).
struct SecretsSet {
    callback: bool,
    odk: bool,
}

fn secret_help(set: Option<bool>, create_text: &str) -> String {
    match set {
        None => create_text.to_owned(),
        Some(true) => "Currently: set. Leave empty to keep it.".to_owned(),
        Some(false) => "Currently: not set.".to_owned(),
    }
}

fn form_view(
    action: String,
    user: &ConsoleUser,
    f: &ConnectorForm,
    errors: &FieldErrors,
    secrets: Option<SecretsSet>,
    receiver: &str,
) -> FormView {
    let creating = secrets.is_none();
    let general = vec![
        FormField::text("name", "Name", &f.name),
        FormField::text("mts_url", "MTS URL", &f.mts_url)
            .help("MOSIP Token Seeder's base URL; /authtoken/json or /authtoken/odk is added."),
        FormField::select(
            "input_type",
            "Input type",
            &f.input_type,
            &[("registry", "Registry"), ("odk", "ODK Central")],
        ),
        FormField::select(
            "job_type",
            "Job type",
            &f.job_type,
            &[("one_time", "One time"), ("recurring", "Recurring")],
        ),
        FormField::numeric(
            "interval_minutes",
            "Interval (minutes)",
            &f.interval_minutes,
        )
        .help("Minutes between the runs of a recurring job."),
        FormField::text("lang", "Language", &f.lang)
            .help("A 3-letter lowercase language code, e.g. eng."),
    ];
    let mapping = vec![
        FormField::textarea("mapping", "Mapping (JSON)", &f.mapping, 10).help(
            "MTS key → path in each record, without the leading dot. name and fullAddress \
             take an array of paths. vid is required.",
        ),
        FormField::select(
            "output_type",
            "Output type",
            &f.output_type,
            &[("json", "JSON")],
        ),
        FormField::textarea("output_format", "Output format (jq)", &f.output_format, 3).help(
            format!("Leave empty for the default: {DEFAULT_OUTPUT_FORMAT}"),
        ),
        FormField::select(
            "delivery_type",
            "Delivery type",
            &f.delivery_type,
            &[("callback", "Callback")],
        ),
        FormField::textarea("fields", "Fields (JSON)", &f.fields, 2).help(format!(
            "Registrant fields sent with the VID, as a JSON array: {} or attributes.<key>.",
            REGISTRANT_FIELDS.join(", ")
        )),
        FormField::textarea("filter", "Filter (JSON)", &f.filter, 2).help(
            "Which registrants to send, as an Odoo domain, e.g. [[\"id\",\"in\",[1,2]]]. \
             [] takes every registrant holding a VID.",
        ),
    ];
    let callback = vec![
        FormField::text("callback_url", "Callback URL", &f.callback_url).help(format!(
            "Where MTS sends the results. Leave empty for this registry's receiver of the \
             connector ({receiver})."
        )),
        FormField::select(
            "callback_http_method",
            "HTTP method",
            &f.callback_http_method,
            &[
                ("POST", "POST"),
                ("PUT", "PUT"),
                ("GET", "GET"),
                ("PATCH", "PATCH"),
            ],
        ),
        FormField::numeric(
            "callback_timeout_seconds",
            "Timeout (seconds)",
            &f.callback_timeout_seconds,
        ),
        FormField::select(
            "callback_auth_type",
            "Authentication",
            &f.callback_auth_type,
            &[
                ("staticBearer", "Static bearer token"),
                ("odoo", "Odoo session"),
            ],
        ),
        FormField::text(
            "callback_auth_database",
            "Auth database",
            &f.callback_auth_database,
        )
        .help("Odoo authentication: the database name MTS logs in to."),
        FormField::text(
            "callback_auth_username",
            "Username",
            &f.callback_auth_username,
        )
        .help("Odoo authentication: the user name."),
        FormField::password("callback_password", "Password or bearer token").help(secret_help(
            secrets.as_ref().map(|s| s.callback),
            "12 to 200 characters. Leave empty to generate one.",
        )),
    ];
    let options = vec![
        FormField::numeric("chunk_size", "Chunk size", &f.chunk_size)
            .help("Records per MTS request."),
        FormField::checkbox("call_in_bulk", "Call in bulk", &f.call_in_bulk),
        FormField::text("vid_id_type", "VID ID type", &f.vid_id_type),
        FormField::text("token_id_type", "Token ID type", &f.token_id_type),
        FormField::checkbox(
            "remove_vid",
            "Remove the VID once its token is stored",
            &f.remove_vid,
        ),
        FormField::numeric(
            "failed_retry_max_attempts",
            "Retry attempts",
            &f.failed_retry_max_attempts,
        )
        .key("failed_retry.max_attempts")
        .help("Attempts in all for a record MTS reports as failed, the first included."),
        FormField::numeric(
            "failed_retry_backoff_minutes",
            "Retry backoff (minutes)",
            &f.failed_retry_backoff_minutes,
        )
        .key("failed_retry.backoff_minutes"),
    ];
    let odk = vec![
        FormField::text("odk_base_url", "ODK base URL", &f.odk_base_url),
        FormField::text("odk_odata_url", "ODK OData URL", &f.odk_odata_url)
            .help("Leave empty to build it from the project and form."),
        FormField::numeric("odk_project_id", "ODK project id", &f.odk_project_id),
        FormField::text("odk_form_id", "ODK form id", &f.odk_form_id),
        FormField::text("odk_email", "ODK email", &f.odk_email),
        FormField::password("odk_password", "ODK password").help(secret_help(
            secrets.as_ref().map(|s| s.odk),
            "Required for ODK input.",
        )),
        FormField::text("odk_start", "Submissions from", &f.odk_start)
            .help("RFC 3339 date-time, e.g. 2024-01-31T00:00:00Z."),
        FormField::text("odk_end", "Submissions until", &f.odk_end)
            .help("RFC 3339 date-time; one-time jobs only."),
        FormField::numeric(
            "odk_overlap_minutes",
            "Window overlap (minutes)",
            &f.odk_overlap_minutes,
        ),
        FormField::checkbox(
            "odk_hold_failed",
            "Hold submissions whose authentication failed for review",
            &f.odk_hold_failed,
        )
        .help("Otherwise the registrant is created with its VID kept and the failure recorded."),
    ];
    let mut groups = vec![
        FormGroup {
            legend: "General",
            fields: general,
        },
        FormGroup {
            legend: "Mapping and output",
            fields: mapping,
        },
        FormGroup {
            legend: "Callback",
            fields: callback,
        },
        FormGroup {
            legend: "Options",
            fields: options,
        },
        FormGroup {
            legend: "ODK Central input",
            fields: odk,
        },
    ];
    let mut shown: Vec<&'static str> = Vec::new();
    for g in &mut groups {
        for field in &mut g.fields {
            shown.push(field.key);
            field.error = errors
                .0
                .iter()
                .filter(|(k, _)| is_about(k, field.key))
                .map(|(k, msgs)| {
                    let text = msgs.join("; ");
                    if k.as_str() == field.key {
                        text
                    } else {
                        format!("{k}: {text}")
                    }
                })
                .reduce(|a, b| format!("{a}; {b}"));
        }
    }
    let form_error = errors
        .0
        .iter()
        .filter(|(k, _)| !shown.iter().any(|f| is_about(k, f)))
        .map(|(k, v)| format!("{k}: {}", v.join("; ")))
        .reduce(|a, b| format!("{a}; {b}"));
    FormView {
        action,
        submit_label: if creating {
            "Create connector"
        } else {
            "Save settings"
        },
        editable: user.role.is_admin(),
        csrf: user.csrf.clone(),
        groups,
        form_error,
        has_errors: !errors.is_empty(),
    }
}

// ------------------------------------------------------------------ runs, failures, duplicates

pub struct RunRow {
    pub id: i64,
    pub kind: &'static str,
    pub status: RunStatus,
    pub created_by: String,
    pub created: String,
    pub finished: String,
    pub sent: i64,
    /// `max` of the progress bars (at least 1, which a bar needs).
    pub bar_max: i64,
    pub pending: i64,
    pub processed: i64,
    pub failed: i64,
    pub error: String,
    /// ODK input: the window read and what its submissions became.
    pub odk: Option<OdkRunRow>,
}

/// An ODK run as shown: its window (empty until the worker has read it) and its outcome.
pub struct OdkRunRow {
    pub window_start: String,
    pub window_end: String,
    pub counts: OdkRunCounts,
}

/// Instants of ODK windows and watermarks: to the second, as ODK Central compares them.
fn format_instant(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A run that may still change: the page keeps refreshing.
fn is_active(status: RunStatus) -> bool {
    !status.is_final()
}

fn run_row(run: MtsRun, p: MtsRunProgress, odk: Option<OdkRunCounts>) -> RunRow {
    let odk = odk.map(|counts| OdkRunRow {
        window_start: run
            .window_start
            .as_ref()
            .map(format_instant)
            .unwrap_or_default(),
        window_end: run
            .window_end
            .as_ref()
            .map(format_instant)
            .unwrap_or_default(),
        counts,
    });
    RunRow {
        id: run.id,
        kind: run.kind.as_str(),
        status: run.status,
        created_by: run.created_by,
        created: format_time(&run.created_at),
        finished: run
            .finished_at
            .as_ref()
            .map(format_time)
            .unwrap_or_default(),
        sent: run.sent,
        bar_max: run.sent.max(1),
        pending: p.pending,
        processed: p.processed,
        failed: p.failed,
        error: run.error.unwrap_or_default(),
        odk,
    }
}

/// A run with its progress, and for a run of an ODK connector (or one with a window), its
/// per-outcome counts, as the API's run view has them.
async fn load_run_row(state: &AppState, run: MtsRun, odk: bool) -> Result<RunRow, ConsoleError> {
    let progress = state.store.mts_run_progress(run.id).await?;
    let counts = if odk || run.window_end.is_some() {
        Some(state.store.odk_run_counts(run.id).await?)
    } else {
        None
    };
    Ok(run_row(run, progress, counts))
}

pub struct FailureRow {
    pub registrant_id: i64,
    pub run_id: String,
    pub code: String,
    pub message: String,
    pub attempts: i64,
    pub next_retry: String,
}

pub struct DuplicateRow {
    pub token: String,
    pub registrant_ids: Vec<i64>,
}

/// The polled part of a connector page.
pub struct Activity {
    pub connector_id: i64,
    /// Whether a run is queued, running or waiting for callbacks: then the part refreshes.
    pub polling: bool,
    pub runs: Vec<RunRow>,
    pub failures: Vec<FailureRow>,
    pub failures_truncated: bool,
    pub token_id_type: String,
    pub duplicates: Vec<DuplicateRow>,
    /// ODK input: the watermark and the submissions in place of the failures.
    pub odk: Option<OdkActivity>,
}

/// What an ODK connector's page shows besides its runs.
pub struct OdkActivity {
    /// Submissions received before this instant have been imported (empty: none yet).
    pub watermark: String,
    pub submissions: SubmissionsView,
}

/// Which submissions are shown: one outcome or all, and the page (keyset on instance id).
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct SubmissionFilter {
    /// One of [`OUTCOMES`]; empty for all.
    pub outcome: String,
    /// The last instance id of the previous page; empty for the first page.
    pub after: String,
}

/// The outcomes a submission can have, with their labels in the filter.
const OUTCOMES: [(&str, &str); 6] = [
    (outcome::CREATED, "Created"),
    (outcome::UPDATED, "Updated"),
    (outcome::UNCHANGED, "Unchanged"),
    (outcome::DUPLICATE, "Possible duplicates"),
    (outcome::HELD, "Held for review"),
    (outcome::INVALID, "Invalid"),
];

impl SubmissionFilter {
    fn parse(self) -> Result<Self, ConsoleError> {
        let outcome = self.outcome.trim().to_owned();
        if !outcome.is_empty() && !OUTCOMES.iter().any(|(o, _)| *o == outcome) {
            return Err(ApiError::BadRequest {
                code: "bad_query",
                message: format!("unknown outcome {outcome:?}"),
            }
            .into());
        }
        Ok(SubmissionFilter {
            outcome,
            after: self.after,
        })
    }
}

pub struct SubmissionRow {
    pub instance_id: String,
    pub run_id: String,
    pub submission_date: String,
    pub outcome: String,
    pub status: String,
    pub error_code: String,
    pub error_message: String,
    pub registrant_id: Option<i64>,
    pub duplicate_of: Option<i64>,
    pub updated: String,
}

fn submission_row(s: OdkSubmissionRow) -> SubmissionRow {
    SubmissionRow {
        instance_id: s.instance_id,
        run_id: s.run_id.map(|r| r.to_string()).unwrap_or_default(),
        submission_date: s
            .submission_date
            .as_ref()
            .map(format_instant)
            .unwrap_or_default(),
        outcome: s.outcome,
        status: s.status,
        error_code: s.error_code.unwrap_or_default(),
        error_message: s.error_message.unwrap_or_default(),
        registrant_id: s.registrant_id,
        duplicate_of: s.duplicate_of,
        updated: format_time(&s.updated_at),
    }
}

/// One page of an ODK connector's submissions, with the filter that chose it.
pub struct SubmissionsView {
    pub filter: SubmissionFilter,
    pub outcomes: Vec<SelectOption>,
    pub rows: Vec<SubmissionRow>,
    pub next_after: Option<String>,
}

impl SubmissionsView {
    pub fn is_first_page(&self) -> bool {
        self.filter.after.is_empty()
    }
}

async fn submissions_view(
    state: &AppState,
    id: i64,
    filter: SubmissionFilter,
) -> Result<SubmissionsView, ConsoleError> {
    // One more than a page, to know whether there is a next one.
    let mut rows = state
        .store
        .list_odk_submissions(
            id,
            (!filter.outcome.is_empty()).then_some(filter.outcome.as_str()),
            None,
            &filter.after,
            SUBMISSIONS_PAGE + 1,
        )
        .await?;
    let next_after = if rows.len() as i64 > SUBMISSIONS_PAGE {
        rows.truncate(usize::try_from(SUBMISSIONS_PAGE).unwrap_or(usize::MAX));
        rows.last().map(|r| r.instance_id.clone())
    } else {
        None
    };
    let outcomes = std::iter::once(("", "All"))
        .chain(OUTCOMES)
        .map(|(value, label)| SelectOption {
            value,
            label,
            selected: value == filter.outcome,
        })
        .collect();
    Ok(SubmissionsView {
        filter,
        outcomes,
        rows: rows.into_iter().map(submission_row).collect(),
        next_after,
    })
}

async fn activity(
    state: &AppState,
    user: &ConsoleUser,
    c: &MtsConnectorView,
    filter: SubmissionFilter,
) -> Result<Activity, ConsoleError> {
    let id = c.id;
    let is_odk = c.settings.input_type == InputType::Odk;
    let token_id_type = c.settings.token_id_type.as_str();
    let mut runs = Vec::new();
    for run in state.store.list_mts_runs(id, RUNS_SHOWN).await? {
        runs.push(load_run_row(state, run, is_odk).await?);
    }
    let failures = state
        .store
        .list_mts_failures(id, None, 0, FAILURES_SHOWN)
        .await?;
    let failures_truncated = failures.len() as i64 >= FAILURES_SHOWN;
    let failures = failures
        .into_iter()
        .map(|f| FailureRow {
            registrant_id: f.registrant_id,
            run_id: f.run_id.map(|r| r.to_string()).unwrap_or_default(),
            code: f.error_code.unwrap_or_default(),
            message: f.error_message.unwrap_or_default(),
            attempts: f.attempts,
            next_retry: match f.next_retry_at {
                Some(t) => format_time(&t),
                None => "no more retries".to_owned(),
            },
        })
        .collect();
    let full = user.sees_full_values();
    let duplicates = state
        .store
        .mts_possible_duplicates(token_id_type, DUPLICATES_SHOWN)
        .await?
        .into_iter()
        .map(|d| DuplicateRow {
            token: if full { d.token } else { mask(&d.token) },
            registrant_ids: d.registrant_ids,
        })
        .collect();
    let odk = if is_odk {
        Some(OdkActivity {
            watermark: c.watermark.as_ref().map(format_instant).unwrap_or_default(),
            submissions: submissions_view(state, id, filter).await?,
        })
    } else {
        None
    };
    Ok(Activity {
        connector_id: id,
        polling: runs.iter().any(|r| is_active(r.status)),
        runs,
        failures,
        failures_truncated,
        token_id_type: token_id_type.to_owned(),
        duplicates,
        odk,
    })
}

// ------------------------------------------------------------------ list and create

pub struct ConnectorRow {
    pub id: i64,
    pub name: String,
    pub input_type: &'static str,
    pub job_type: &'static str,
    pub state: ConnectorState,
    pub last_run: Option<RunRow>,
}

#[derive(Template)]
#[template(path = "mts_connectors.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<ConnectorRow>,
    can_create: bool,
    form: FormView,
}

async fn list_page(
    state: &AppState,
    user: &ConsoleUser,
    status: StatusCode,
    form: &ConnectorForm,
    errors: &FieldErrors,
) -> Result<Response, ConsoleError> {
    let views: Vec<MtsConnectorView> = app::list(&state.store)
        .await?
        .into_iter()
        .map(api::view)
        .collect();
    let mut rows = Vec::new();
    for v in views {
        let is_odk = v.settings.input_type == InputType::Odk;
        let last_run = match state.store.list_mts_runs(v.id, 1).await?.pop() {
            Some(run) => Some(load_run_row(state, run, is_odk).await?),
            None => None,
        };
        rows.push(ConnectorRow {
            id: v.id,
            input_type: v.settings.input_type.as_str(),
            job_type: v.settings.job_type.as_str(),
            name: v.name,
            state: v.state,
            last_run,
        });
    }
    let form = form_view(
        "/mts/new".to_owned(),
        user,
        form,
        errors,
        None,
        "/api/v1/mts/callbacks/<id>",
    );
    Ok(render(
        status,
        &ListPage {
            layout: Layout::new(user, "mts"),
            rows,
            can_create: user.role.is_admin(),
            form,
        },
    ))
}

pub async fn list(
    State(state): State<AppState>,
    user: ConsoleUser,
) -> Result<Response, ConsoleError> {
    let form = ConnectorForm::from_settings("", &MtsConnectorSettings::default());
    list_page(&state, &user, StatusCode::OK, &form, &FieldErrors::new()).await
}

/// `GET /mts/new` (a reload or a history entry of a refused create): the form is on the list.
pub async fn new_form() -> Redirect {
    Redirect::to("/mts")
}

/// Creates a connector (admins) through the API's handler, which generates a callback password
/// when none is given. An empty callback URL becomes this registry's receiver of the new
/// connector. Problems re-show the form with the values kept and each message by its field.
pub async fn create(
    State(state): State<AppState>,
    user: ConsoleUser,
    headers: HeaderMap,
    form: Result<Form<ConnectorForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    user.require_admin()?;
    let Form(form) = form.map_err(bad_form)?;
    let origin = request_origin(&headers, state.settings.secure_cookies);
    let default_callback = form.callback_url.trim().is_empty();
    // The id is not known yet: validated with a placeholder, set right after the insert.
    let (input, pre) = form.to_input(origin.as_deref().map(|o| receiver_url(o, 0)));
    if !pre.is_empty() {
        let parsed = input.parse(None).err().unwrap_or_default();
        let errors = merge_errors(pre, parsed);
        return list_page(
            &state,
            &user,
            StatusCode::UNPROCESSABLE_ENTITY,
            &form,
            &errors,
        )
        .await;
    }
    // An empty callback URL becomes this registry's receiver of the new connector, whose id
    // is known only inside the create's transaction: the use case puts it there.
    let mut input = input;
    if default_callback {
        input.callback_url = None;
    }
    let receiver = origin
        .filter(|_| default_callback)
        .map(|o| move |id: i64| receiver_url(&o, id));
    let receiver_fn = receiver
        .as_ref()
        .map(|r| r as &(dyn Fn(i64) -> String + Sync));
    let created = app::create(
        &state.store,
        &state.secrets,
        &user.actor(),
        input,
        receiver_fn,
    )
    .await;
    let c = match created {
        Ok(c) => c,
        Err(e) => {
            let (status, errors) = form_failure(e.into())?;
            return list_page(&state, &user, status, &form, &errors).await;
        }
    };
    Ok(Redirect::to(&format!("/mts/{}?done=created", c.id())).into_response())
}

// ------------------------------------------------------------------ one connector

#[derive(Template)]
#[template(path = "mts_connector.html")]
struct ConnectorPage {
    layout: Layout,
    c: MtsConnectorView,
    /// ODK input: windows and submissions instead of records and failures.
    is_odk: bool,
    is_admin: bool,
    csrf: String,
    notice: Option<&'static str>,
    action_error: Option<String>,
    form: FormView,
    import: ImportView,
    /// ODK input: the manual window form (in place of the manual import).
    window: Option<WindowView>,
    activity: Activity,
}

#[derive(Template)]
#[template(path = "mts_activity_fragment.html")]
struct ActivityFragment {
    activity: Activity,
}

/// The manual import form as shown.
pub struct ImportView {
    pub registrant_ids: String,
    pub filter: String,
    pub ids_error: Option<String>,
    pub filter_error: Option<String>,
}

/// The manual window form of an ODK connector as shown: the values as typed.
pub struct WindowView {
    pub start: String,
    pub end: String,
    pub start_error: Option<String>,
    pub end_error: Option<String>,
}

/// What a connector page shows besides the stored connector.
#[derive(Default)]
struct Shown {
    status: Option<StatusCode>,
    form: Option<(ConnectorForm, FieldErrors)>,
    import: Option<(RunForm, FieldErrors)>,
    window: Option<(RunForm, FieldErrors)>,
    notice: Option<&'static str>,
    action_error: Option<String>,
    submissions: SubmissionFilter,
}

fn notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "created" => "Connector created.",
        "saved" => "Settings saved.",
        "started" => "Connector started: a run is queued.",
        "stopped" => "Connector stopped.",
        "run" => "Run queued.",
        "window" => "Run of the window queued.",
        "retry" => "Failed records queued again.",
        _ => return None,
    })
}

async fn connector_page(
    state: &AppState,
    user: &ConsoleUser,
    id: i64,
    shown: Shown,
) -> Result<Response, ConsoleError> {
    let c = api::view(app::get(&state.store, id).await?);
    let (form, errors) = match shown.form {
        Some(f) => f,
        None => (
            ConnectorForm::from_settings(&c.name, &c.settings),
            FieldErrors::new(),
        ),
    };
    let secrets = SecretsSet {
        callback: c.callback_password_set,
        odk: c.odk_password_set,
    };
    let form = form_view(
        format!("/mts/{id}"),
        user,
        &form,
        &errors,
        Some(secrets),
        &c.receiver_path,
    );
    let import = match shown.import {
        Some((f, errors)) => ImportView {
            ids_error: super::field_error(&errors, "registrant_ids"),
            filter_error: super::field_error(&errors, "filter"),
            registrant_ids: f.registrant_ids,
            filter: f.filter,
        },
        None => ImportView {
            registrant_ids: String::new(),
            filter: String::new(),
            ids_error: None,
            filter_error: None,
        },
    };
    let mut action_error = shown.action_error;
    let window = match shown.window {
        _ if c.settings.input_type != InputType::Odk => {
            // A window posted to a connector that does not read ODK: it has no window form.
            if let Some((_, errors)) = shown.window {
                action_error = Some(action_message(&ApiError::Validation(errors)));
            }
            None
        }
        Some((f, errors)) => Some(WindowView {
            start_error: super::field_error(&errors, "window_start"),
            end_error: super::field_error(&errors, "window_end"),
            start: f.window_start,
            end: f.window_end,
        }),
        None => Some(WindowView {
            start: String::new(),
            end: String::new(),
            start_error: None,
            end_error: None,
        }),
    };
    let activity = activity(state, user, &c, shown.submissions).await?;
    Ok(render(
        shown.status.unwrap_or(StatusCode::OK),
        &ConnectorPage {
            layout: Layout::new(user, "mts"),
            is_odk: c.settings.input_type == InputType::Odk,
            c,
            is_admin: user.role.is_admin(),
            csrf: user.csrf.clone(),
            notice: shown.notice,
            action_error,
            form,
            import,
            window,
            activity,
        },
    ))
}

#[derive(Deserialize)]
pub struct DetailQuery {
    /// What was just done, to confirm it.
    done: Option<String>,
    /// ODK input: the submissions shown.
    #[serde(flatten)]
    submissions: SubmissionFilter,
}

pub async fn detail(
    State(state): State<AppState>,
    user: ConsoleUser,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<DetailQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let id = connector_id(id)?;
    let (done, submissions) = match q {
        Ok(Query(q)) => (q.done, q.submissions.parse()?),
        Err(_) => (None, SubmissionFilter::default()),
    };
    let shown = Shown {
        notice: done.as_deref().and_then(notice),
        submissions,
        ..Shown::default()
    };
    connector_page(&state, &user, id, shown).await
}

/// The runs, failures and duplicates of a connector (of an ODK connector: the runs, the
/// watermark and the page of submissions given by the query), for htmx polling; a plain
/// request goes to the whole page.
pub async fn activity_fragment(
    State(state): State<AppState>,
    user: ConsoleUser,
    HxRequest(htmx): HxRequest,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<SubmissionFilter>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let id = connector_id(id)?;
    if !htmx {
        return Ok(Redirect::to(&format!("/mts/{id}")).into_response());
    }
    let filter = match q {
        Ok(Query(f)) => f.parse()?,
        Err(_) => SubmissionFilter::default(),
    };
    let c = api::view(app::get(&state.store, id).await?);
    let activity = activity(&state, &user, &c, filter).await?;
    Ok(render(StatusCode::OK, &ActivityFragment { activity }))
}

/// Saves the settings (admins) through the API's handler: an empty password keeps the stored
/// one, an empty callback URL becomes this registry's receiver of the connector.
pub async fn update(
    State(state): State<AppState>,
    user: ConsoleUser,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
    form: Result<Form<ConnectorForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    user.require_admin()?;
    let id = connector_id(id)?;
    let Form(form) = form.map_err(bad_form)?;
    let current = api::view(app::get(&state.store, id).await?);
    let origin = request_origin(&headers, state.settings.secure_cookies);
    let (input, mut pre) = form.to_input(origin.as_deref().map(|o| receiver_url(o, id)));
    // The input's own check of the ODK password applies on create only; here the stored
    // state is known.
    if form.input_type.trim() == "odk" && !current.odk_password_set && form.odk_password.is_empty()
    {
        pre.add("odk_password", "is required for ODK input");
    }
    let result = if pre.is_empty() {
        app::update(&state.store, &state.secrets, &user.actor(), id, input)
            .await
            .map(|_| ())
            .map_err(ApiError::from)
    } else {
        let parsed = input
            .parse(Some((&current.name, &current.settings)))
            .err()
            .unwrap_or_default();
        Err(ApiError::Validation(merge_errors(pre, parsed)))
    };
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/mts/{id}?done=saved")).into_response()),
        Err(e) => {
            let (status, errors) = form_failure(e)?;
            let shown = Shown {
                status: Some(status),
                form: Some((form, errors)),
                ..Shown::default()
            };
            connector_page(&state, &user, id, shown).await
        }
    }
}

/// The outcome of a button: back to the page with a confirmation, or the page with the reason
/// it was refused (e.g. a run that has not finished).
async fn after_action<T>(
    state: &AppState,
    user: &ConsoleUser,
    id: i64,
    result: Result<T, ApiError>,
    done: &str,
) -> Result<Response, ConsoleError> {
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/mts/{id}?done={done}")).into_response()),
        Err(e @ (ApiError::Conflict { .. } | ApiError::Validation(_))) => {
            let shown = Shown {
                status: Some(e.status()),
                action_error: Some(action_message(&e)),
                ..Shown::default()
            };
            connector_page(state, user, id, shown).await
        }
        Err(e) => Err(e.into()),
    }
}

fn action_message(e: &ApiError) -> String {
    let text = match e {
        ApiError::Validation(f) => format!("Invalid input: {f}"),
        other => other.to_string(),
    };
    let mut c = text.chars();
    let mut out: String = match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => return text,
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// Starts the connector (admins): as `POST /api/v1/mts/connectors/{id}/start`.
pub async fn start(
    State(state): State<AppState>,
    user: ConsoleUser,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ConsoleError> {
    user.require_admin()?;
    let id = connector_id(id)?;
    let result = app::start(&state.store, &user.actor(), id)
        .await
        .map_err(ApiError::from);
    after_action(&state, &user, id, result, "started").await
}

/// Stops the connector (admins): as `POST /api/v1/mts/connectors/{id}/stop`.
pub async fn stop(
    State(state): State<AppState>,
    user: ConsoleUser,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ConsoleError> {
    user.require_admin()?;
    let id = connector_id(id)?;
    let result = app::stop(&state.store, &user.actor(), id)
        .await
        .map_err(ApiError::from);
    after_action(&state, &user, id, result, "stopped").await
}

/// Retries the failed records (admins): as `POST /api/v1/mts/connectors/{id}/retry-failed`.
pub async fn retry(
    State(state): State<AppState>,
    user: ConsoleUser,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ConsoleError> {
    user.require_admin()?;
    let id = connector_id(id)?;
    let result = app::retry_failed(&state.store, &user.actor(), id)
        .await
        .map_err(ApiError::from);
    after_action(&state, &user, id, result, "retry").await
}

/// "Run now" (no fields), the manual import form (`import` set, with registrant ids or a
/// filter), or the manual window form of an ODK connector (`window` set, with its bounds).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RunForm {
    import: String,
    registrant_ids: String,
    filter: String,
    window: String,
    window_start: String,
    window_end: String,
}

/// A bound of a manual window as RFC 3339: what a `datetime-local` control sends
/// (`2024-01-31T10:00`, seconds optional), read as UTC, or an RFC 3339 date-time. `None` when
/// empty.
fn window_bound(field: &str, text: &str, errors: &mut FieldErrors) -> Option<String> {
    let t = text.trim();
    if t.is_empty() {
        errors.add(field, "is required");
        return None;
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(d.to_utc().to_rfc3339());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, format) {
            return Some(d.and_utc().to_rfc3339());
        }
    }
    errors.add(
        field,
        "must be a date and time in UTC, e.g. 2024-01-31T10:00",
    );
    None
}

/// Whether every problem is about a bound of the window (so shown next to it); others, e.g.
/// a connector that does not read ODK, are shown as the action's error.
fn is_about_window(errors: &FieldErrors) -> bool {
    !errors.is_empty()
        && errors
            .0
            .keys()
            .all(|k| k == "window_start" || k == "window_end")
}

/// Registrant ids separated by commas, spaces or new lines.
fn parse_ids(text: &str, errors: &mut FieldErrors) -> Option<Vec<i64>> {
    let mut ids = Vec::new();
    for part in text.split(|c: char| c == ',' || c.is_whitespace()) {
        if part.is_empty() {
            continue;
        }
        match part.parse::<i64>() {
            Ok(n) if n > 0 => ids.push(n),
            _ => {
                errors.add(
                    "registrant_ids",
                    format!("{part:?} is not a registrant id (a positive whole number)"),
                );
                return None;
            }
        }
    }
    (!ids.is_empty()).then_some(ids)
}

/// Runs now (admins): as `POST /api/v1/mts/connectors/{id}/runs`, the delta, or a manual
/// import of the given registrant ids or filter.
pub async fn run(
    State(state): State<AppState>,
    user: ConsoleUser,
    id: Result<Path<i64>, PathRejection>,
    form: Result<Form<RunForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    user.require_admin()?;
    let id = connector_id(id)?;
    let Form(form) = form.map_err(bad_form)?;
    let importing = !form.import.is_empty();
    let windowing = !form.window.is_empty();
    let mut errors = FieldErrors::new();
    let mut parts = RunParts::default();
    if windowing {
        // Both bounds go to the use case as typed (once readable): it checks their order and
        // that the connector reads ODK, as for any client.
        parts.window_start = window_bound("window_start", &form.window_start, &mut errors);
        parts.window_end = window_bound("window_end", &form.window_end, &mut errors);
    } else if importing {
        parts.registrant_ids = parse_ids(&form.registrant_ids, &mut errors);
        if !form.filter.trim().is_empty() {
            match serde_json::from_str::<Value>(&form.filter) {
                Ok(f) => parts.filter = Some(f),
                Err(e) => errors.add("filter", format!("is not valid JSON: {e}")),
            }
        }
        if errors.is_empty() && parts.registrant_ids.is_none() && parts.filter.is_none() {
            errors.add(
                "registrant_ids",
                "give registrant ids or a filter (use Run now for the delta)",
            );
        }
    }
    let result = if errors.is_empty() {
        match parts.selection() {
            Ok(selection) => app::run(&state.store, &user.actor(), id, selection)
                .await
                .map_err(ApiError::from),
            Err(e) => Err(ApiError::from(e)),
        }
    } else {
        Err(ApiError::Validation(errors))
    };
    match result {
        Err(ApiError::Validation(errors)) if windowing && is_about_window(&errors) => {
            let shown = Shown {
                status: Some(StatusCode::UNPROCESSABLE_ENTITY),
                window: Some((form, errors)),
                ..Shown::default()
            };
            connector_page(&state, &user, id, shown).await
        }
        Err(ApiError::Validation(errors)) if importing => {
            let shown = Shown {
                status: Some(StatusCode::UNPROCESSABLE_ENTITY),
                import: Some((form, errors)),
                ..Shown::default()
            };
            connector_page(&state, &user, id, shown).await
        }
        other => {
            after_action(
                &state,
                &user,
                id,
                other,
                if windowing { "window" } else { "run" },
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_belong_to_their_field_and_its_parts() {
        assert!(is_about("mapping", "mapping"));
        assert!(is_about("mapping.vid", "mapping"));
        assert!(is_about("fields[2]", "fields"));
        assert!(!is_about("mapping_x", "mapping"));
        assert!(!is_about("odk_end", "odk"));
    }

    #[test]
    fn unreadable_fields_hide_what_they_caused() {
        let mut pre = FieldErrors::new();
        pre.add("fields", "is not valid JSON");
        let mut parsed = FieldErrors::new();
        parsed.add("fields", "must list at least one field");
        parsed.add("mapping.dob", "\"birthdate\" is not in fields");
        parsed.add("lang", "must be a 3-letter lowercase language code");
        let merged = merge_errors(pre, parsed);
        let keys: Vec<&str> = merged.0.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["fields", "lang"]);
        assert_eq!(merged.0.get("fields").map(Vec::len), Some(1));
    }

    #[test]
    fn form_round_trips_the_settings() {
        let s = MtsConnectorSettings {
            callback_url: "http://reg.example/api/v1/mts/callbacks/1".into(),
            ..MtsConnectorSettings::default()
        };
        let form = ConnectorForm::from_settings("c", &s);
        let (input, pre) = form.to_input(None);
        assert!(pre.is_empty());
        let parsed = input.parse(None);
        assert!(
            matches!(&parsed, Ok((n, parsed, secrets))
                if n == "c" && *parsed == s && secrets.callback_password.is_none()),
            "{parsed:?}"
        );
    }

    #[test]
    fn window_bounds_are_read_as_utc() {
        let mut e = FieldErrors::new();
        assert_eq!(
            window_bound("window_start", "2024-01-31T10:00", &mut e).as_deref(),
            Some("2024-01-31T10:00:00+00:00")
        );
        assert_eq!(
            window_bound("window_start", "2024-01-31T10:00:05", &mut e).as_deref(),
            Some("2024-01-31T10:00:05+00:00")
        );
        assert_eq!(
            window_bound("window_end", "2024-01-31T12:00:00+02:00", &mut e).as_deref(),
            Some("2024-01-31T10:00:00+00:00")
        );
        assert!(e.is_empty());
        assert_eq!(window_bound("window_start", " ", &mut e), None);
        assert_eq!(window_bound("window_end", "yesterday", &mut e), None);
        assert_eq!(
            super::super::field_error(&e, "window_start").as_deref(),
            Some("is required")
        );
        assert!(e.0.contains_key("window_end"));
        assert!(is_about_window(&e));
        e.add("filter", "x");
        assert!(!is_about_window(&e));
    }

    #[test]
    fn submission_filters_know_the_outcomes() {
        let f = |o: &str| SubmissionFilter {
            outcome: o.to_owned(),
            after: String::new(),
        };
        assert!(f("").parse().is_ok());
        assert!(
            f(" duplicate ")
                .parse()
                .is_ok_and(|f| f.outcome == "duplicate")
        );
        assert!(f("lost").parse().is_err());
    }

    #[test]
    fn ids_are_split_on_commas_and_lines() {
        let mut e = FieldErrors::new();
        assert_eq!(parse_ids("1, 2\n3\r\n", &mut e), Some(vec![1, 2, 3]));
        assert_eq!(parse_ids("  ", &mut e), None);
        assert!(e.is_empty());
        assert_eq!(parse_ids("1, x", &mut e), None);
        assert!(e.0.contains_key("registrant_ids"));
    }
}
