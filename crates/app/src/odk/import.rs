//! An ODK MTS Connector's run: asks MTS to pull one `submissionDate` window of ODK Central
//! submissions (`POST /authtoken/odk`), tokenise them and call back; the receiver
//! ([`crate::mts::callbacks`]) creates or updates the registrants.
//!
//! Before asking MTS, the run signs in to ODK Central itself and counts the window's
//! submissions: wrong credentials or a missing form become a clear run error (MTS would only
//! answer `ATS-REQ-100 'token'`), an empty window costs no MTS request, and the count tells when
//! every result has come back. The watermark moves to the window's end only once MTS has
//! accepted the request, so a refused or failed request is retried with the same window.

use chrono::Utc;
use g2p_connectors::mts::InputRoute;
use g2p_connectors::mts::wire::{AuthTokenBody, AuthTokenRequest, OdkConfig};
use g2p_connectors::odk::OdkError;
use g2p_domain::mts_connector::MtsConnectorSettings;
use g2p_store::jobs::runner::{JobContext, JobError};
use g2p_store::mts::{MtsConnectorRow, MtsRun};
use secrecy::{ExposeSecret, SecretString};

use crate::mts::runs::{MtsJobs, envelope, job_error, mts_failed};
use crate::odk::window::{Window, iso, odata_filter, window};
use crate::secrets::ODK_SECRET_CONTEXT;

fn odk_failed(e: OdkError) -> JobError {
    let retryable = e.is_retryable();
    job_error(e, retryable)
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

/// Signs in to ODK Central, counts the window's submissions, signs out (sessions are not left
/// behind: MTS never logs out of Central).
async fn count_submissions(
    jobs: &MtsJobs,
    s: &MtsConnectorSettings,
    password: &str,
    w: &Window,
) -> Result<i64, OdkError> {
    let session = jobs
        .odk
        .sign_in(&s.odk_base_url, &s.odk_email, password)
        .await?;
    let counted = jobs
        .odk
        .count(&session, &odata_url(s), &odata_filter(w))
        .await;
    jobs.odk.sign_out(session).await;
    counted
}

/// Sends one ODK run: the number of submissions in its window (the results owed).
pub(crate) async fn send_odk_run(
    jobs: &MtsJobs,
    ctx: &JobContext,
    run: &MtsRun,
    row: &MtsConnectorRow,
    settings: &MtsConnectorSettings,
    callback_password: &SecretString,
) -> Result<i64, JobError> {
    let store = &ctx.store;
    let odk_password = match &row.odk_secret {
        Some(sealed) => jobs
            .secrets
            .open(ODK_SECRET_CONTEXT, sealed)
            .map_err(|e| JobError::permanent(format!("ODK password: {e}")))?,
        None => return Err(JobError::permanent("the connector has no ODK password")),
    };
    let w = window(run, row, settings, Utc::now());
    let expected = count_submissions(jobs, settings, odk_password.expose_secret(), &w)
        .await
        .map_err(odk_failed)?;
    store
        .set_mts_run_window(run.id, w.start, w.end, expected)
        .await?;
    if expected > 0 {
        let body = AuthTokenRequest::new(AuthTokenBody {
            odkconfig: Some(OdkConfig {
                baseurl: settings.odk_base_url.trim_end_matches('/').to_owned(),
                odataurl: settings.odk_odata_url.clone(),
                projectid: settings
                    .odk_project_id
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                formid: settings.odk_form_id.clone(),
                email: settings.odk_email.clone(),
                password: odk_password.expose_secret().to_owned(),
                startdate: iso(w.start),
                enddate: iso(w.end),
            }),
            ..envelope(settings, callback_password)
        });
        let request_id = jobs
            .mts
            .submit(&settings.mts_url, InputRoute::Odk, &body)
            .await
            .map_err(mts_failed)?;
        tracing::info!(run = run.id, submissions = expected, request = %request_id,
            "odk: window submitted");
    }
    if w.advances_watermark {
        store.advance_mts_watermark(row.id, w.end).await?;
    }
    Ok(expected)
}
