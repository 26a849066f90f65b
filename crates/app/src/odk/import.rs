//! The ODK MTS Connector's worker side: a run asks MTS to pull one `submissionDate` window of
//! ODK Central submissions (`POST /authtoken/odk`), tokenise them and call back; the receiver
//! (`g2p_web::api::mts_odk`) creates or updates the registrants. ODK Central and MTS vocabulary
//! (odkconfig, submissionDate, OData) stays in this module.
//!
//! Before asking MTS, the run signs in to ODK Central itself and counts the window's
//! submissions: wrong credentials or a missing form become a clear run error (MTS would only
//! answer `ATS-REQ-100 'token'`), an empty window costs no MTS request, and the count tells when
//! every result has come back. The watermark moves to the window's end only once MTS has
//! accepted the request, so a refused or failed request is retried with the same window.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use g2p_domain::mts_connector::{JobType, MtsConnectorSettings};
use g2p_store::jobs::runner::{JobContext, JobError};
use g2p_store::mts::{MtsConnectorRow, MtsRun};
use g2p_store::secrets::SecretBox;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use g2p_web::api::mts::ODK_SECRET_CONTEXT;

/// Timeout of a call to ODK Central.
const ODK_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The window a run imports, and whether it moves the watermark.
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    advances_watermark: bool,
}

/// A manual run's window; a one-time connector's configured window; or, for a recurring
/// connector, from the watermark (less the overlap; the configured start for the first run,
/// never before it) to now.
fn window(run: &MtsRun, row: &MtsConnectorRow, s: &MtsConnectorSettings) -> Window {
    let now = Utc::now();
    let requested = run
        .selection
        .as_ref()
        .and_then(|sel| sel.0.get("window").cloned())
        .and_then(|w| {
            serde_json::from_value::<(DateTime<Utc>, DateTime<Utc>)>(json!([w["start"], w["end"]]))
                .ok()
        });
    if let Some((start, end)) = requested {
        return Window {
            start,
            end,
            advances_watermark: false,
        };
    }
    let configured_start = s.odk_start.unwrap_or(DateTime::UNIX_EPOCH);
    match s.job_type {
        JobType::OneTime => Window {
            start: configured_start,
            end: s.odk_end.unwrap_or(now),
            advances_watermark: false,
        },
        JobType::Recurring => {
            let overlap = TimeDelta::minutes(i64::from(s.odk_overlap_minutes));
            let start = row
                .watermark
                .map_or(configured_start, |w| (w - overlap).max(configured_start));
            Window {
                start,
                end: now,
                advances_watermark: true,
            }
        }
    }
}

/// ODK Central's and MTS's date-time form.
fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The OData Submissions URL: the configured one, or built from project and form.
fn odata_url(s: &MtsConnectorSettings) -> String {
    if s.odk_odata_url.is_empty() {
        format!(
            "{}/v1/projects/{}/forms/{}.svc/Submissions",
            s.odk_base_url.trim_end_matches('/'),
            s.odk_project_id.unwrap_or_default(),
            s.odk_form_id
        )
    } else {
        s.odk_odata_url.clone()
    }
}

fn unreachable(e: reqwest::Error) -> JobError {
    JobError::retryable(format!("ODK Central unreachable: {}", e.without_url()))
}

/// Signs in to ODK Central and counts the window's submissions (`$top=0&$count=true`).
async fn count_submissions(
    http: &reqwest::Client,
    s: &MtsConnectorSettings,
    password: &str,
    w: &Window,
) -> Result<i64, JobError> {
    let base = s.odk_base_url.trim_end_matches('/');
    let resp = http
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"email": s.odk_email, "password": password}))
        .timeout(ODK_CALL_TIMEOUT)
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(JobError::permanent(format!(
            "ODK Central refused the credentials of {} (HTTP {})",
            s.odk_email,
            status.as_u16()
        )));
    }
    if !status.is_success() {
        return Err(JobError::retryable(format!(
            "ODK Central could not sign in: HTTP {}",
            status.as_u16()
        )));
    }
    let session: Value = resp.json().await.map_err(unreachable)?;
    let token = session["token"].as_str().unwrap_or_default().to_owned();
    let url = odata_url(s);
    let sep = if url.contains('?') { '&' } else { '?' };
    let filter = format!(
        "__system/submissionDate ge {} and __system/submissionDate lt {}",
        iso(w.start),
        iso(w.end)
    );
    let counted = http
        .get(format!("{url}{sep}$top=0&$count=true"))
        .query(&[("$filter", filter)])
        .bearer_auth(&token)
        .timeout(ODK_CALL_TIMEOUT)
        .send()
        .await;
    // Sessions are not left behind (MTS never logs out of Central).
    let _ = http
        .delete(format!("{base}/v1/sessions/{token}"))
        .bearer_auth(&token)
        .timeout(ODK_CALL_TIMEOUT)
        .send()
        .await;
    let resp = counted.map_err(unreachable)?;
    let status = resp.status();
    match status.as_u16() {
        200 => {}
        403 => {
            return Err(JobError::permanent(format!(
                "ODK Central: {} may not read the form's submissions",
                s.odk_email
            )));
        }
        404 => {
            return Err(JobError::permanent(
                "ODK Central: no such project or form (check the OData URL, project and form id)",
            ));
        }
        other => {
            return Err(JobError::retryable(format!(
                "ODK Central answered HTTP {other} to the submissions count"
            )));
        }
    }
    let body: Value = resp.json().await.map_err(unreachable)?;
    body["@odata.count"]
        .as_i64()
        .ok_or_else(|| JobError::retryable("ODK Central gave no @odata.count"))
}

/// Sends one ODK run: the number of submissions in its window (the results owed).
pub(crate) async fn send_odk_run(
    secrets: &SecretBox,
    http: &reqwest::Client,
    ctx: &JobContext,
    run: &MtsRun,
    row: &MtsConnectorRow,
    settings: &MtsConnectorSettings,
    callback_password: &str,
) -> Result<i64, JobError> {
    let store = &ctx.store;
    let odk_password = match &row.odk_secret {
        Some(sealed) => secrets
            .open(ODK_SECRET_CONTEXT, sealed)
            .map_err(|e| JobError::permanent(format!("ODK password: {e}")))?,
        None => return Err(JobError::permanent("the connector has no ODK password")),
    };
    let odk_password = odk_password.expose_secret();
    let w = window(run, row, settings);
    let expected = count_submissions(http, settings, odk_password, &w).await?;
    store
        .set_mts_run_window(run.id, w.start, w.end, expected)
        .await?;
    if expected > 0 {
        let mut body = crate::mts_connector::envelope(settings, callback_password, &[]);
        if let Some(request) = body["request"].as_object_mut() {
            request.remove("authdata");
            request.insert(
                "odkconfig".into(),
                json!({
                    "baseurl": settings.odk_base_url.trim_end_matches('/'),
                    "odataurl": settings.odk_odata_url,
                    "projectid": settings.odk_project_id.map(|p| p.to_string()).unwrap_or_default(),
                    "formid": settings.odk_form_id,
                    "email": settings.odk_email,
                    "password": odk_password,
                    "startdate": iso(w.start),
                    "enddate": iso(w.end),
                }),
            );
        }
        let request_id =
            crate::mts_connector::submit(http, &settings.mts_url, "odk", &body).await?;
        tracing::info!(run = run.id, submissions = expected, request = %request_id,
            "odk: window submitted");
    }
    if w.advances_watermark {
        store.advance_mts_watermark(row.id, w.end).await?;
    }
    Ok(expected)
}
