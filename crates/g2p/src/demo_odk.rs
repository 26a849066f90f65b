//! The ODK part of `g2p demo`: the ODK Central simulator in-process, holding the registration
//! form with realistic submissions (one whose authentication fails, one person submitted
//! twice), and an ODK MTS connector that imports them through the in-process `g2p mts`.

use std::time::Instant;

use anyhow::{Context, anyhow};
use chrono::{DateTime, TimeDelta, Utc};
use g2p_domain::mts_connector::MtsConnectorInput;
use g2p_sim::odk::{DEFAULT_EMAIL, DEFAULT_PASSWORD, OdkSim, REGISTRATION_FORM};
use g2p_store::Store;
use g2p_store::mts::RunStatus;
use serde::Serialize;
use serde_json::{Value, json};

use crate::App;
use crate::demo::{find_or_create_connector, generated_secret};
use g2p_app::mts::connectors::{self, RunSelection};
use g2p_store::audit::Actor;

/// Name of the ODK connector the demo creates (and finds again on the next start).
pub const DEMO_ODK_CONNECTOR: &str = "Demo: ODK registrations";

/// The registrant document of the simulator's registration form (fields `given_name`,
/// `family_name`, `gender`, `birth_date`, `phone`, `vid`, `household_size` and an `address`
/// group of `village` and `district`).
pub const REGISTRATION_OUTPUT_FORMAT: &str = r#"{instance_id: .input.__id, submission_date: .input.__system.submissionDate, status: .output.status, token: .output.token, errorCode: .output.errorCode, errorMessage: .output.errorMessage, vid: .input.vid, registrant: {given_name: .input.given_name, family_name: .input.family_name, gender: .input.gender, birthdate: .input.birth_date, address: "\(.input.address.village), \(.input.address.district)", phone_numbers: (if .input.phone then [{phone_no: .input.phone}] else [] end), attributes: {household_size: .input.household_size}}}"#;

/// MTS's keys mapped onto the registration form's fields.
pub fn registration_mapping() -> Value {
    json!({"vid": "vid", "name": ["given_name", "family_name"], "gender": "gender",
           "dob": "birth_date", "phoneNumber": "phone",
           "fullAddress": ["address.village", "address.district"]})
}

/// The simulator, serving on a free port.
pub struct OdkDemo {
    pub url: String,
    /// Before the first submission: the import window starts here.
    pub since: DateTime<Utc>,
    server: tokio::task::JoinHandle<()>,
}

impl OdkDemo {
    pub fn abort(&self) {
        self.server.abort();
    }
}

/// Starts the simulator with `n` generated submissions over the last two hours, plus one whose
/// VID the mock authenticator refuses and a second submission of the first person.
pub async fn start_odk(n: usize) -> anyhow::Result<OdkDemo> {
    let now = Utc::now();
    let since = now - TimeDelta::hours(2);
    let step = TimeDelta::seconds(5400 / i64::try_from(n.max(1)).unwrap_or(1));
    let sim = OdkSim::generate(11, n, since + TimeDelta::minutes(1), step);
    let first = sim
        .instance_ids(1, REGISTRATION_FORM)?
        .last()
        .cloned()
        .ok_or_else(|| anyhow!("the ODK simulator generated no submission"))?;
    let mut again = sim.submission_data(1, REGISTRATION_FORM, &first)?;
    again["given_name"] = json!("Grace (again)");
    again["meta"] = json!({});
    sim.add_submission(1, REGISTRATION_FORM, again, now - TimeDelta::minutes(3))?;
    let mut refused = sim.submission_data(1, REGISTRATION_FORM, &first)?;
    refused["vid"] = json!("9999000000000001");
    refused["given_name"] = json!("Refused");
    refused["meta"] = json!({});
    sim.add_submission(1, REGISTRATION_FORM, refused, now - TimeDelta::minutes(2))?;
    let (addr, server) = g2p_sim::odk::serve(sim, "127.0.0.1:0".parse()?)
        .await
        .context("cannot serve the ODK Central simulator")?;
    Ok(OdkDemo {
        url: format!("http://{addr}"),
        since,
        server,
    })
}

/// The demo's ODK connector, created through the same validation as the API (or found again
/// and pointed at this start's MTS, simulator and receiver).
pub async fn demo_odk_connector(app: &App, mts_url: &str, odk: &OdkDemo) -> anyhow::Result<i64> {
    let create = MtsConnectorInput {
        name: Some(DEMO_ODK_CONNECTOR.into()),
        mts_url: Some(mts_url.into()),
        input_type: Some("odk".into()),
        job_type: Some("recurring".into()),
        mapping: Some(registration_mapping()),
        output_format: Some(REGISTRATION_OUTPUT_FORMAT.into()),
        callback_password: Some(generated_secret()),
        call_in_bulk: Some(true),
        odk_base_url: Some(odk.url.clone()),
        odk_project_id: Some(1),
        odk_form_id: Some(REGISTRATION_FORM.into()),
        odk_email: Some(DEFAULT_EMAIL.into()),
        odk_password: Some(DEFAULT_PASSWORD.into()),
        ..Default::default()
    };
    let repoint = MtsConnectorInput {
        mts_url: Some(mts_url.into()),
        odk_base_url: Some(odk.url.clone()),
        ..Default::default()
    };
    find_or_create_connector(app, create, repoint).await
}

/// Queues a manual import of [since, now): the simulator is made afresh on every start, so the
/// window is this start's, whatever the watermark of an earlier one.
pub async fn start_odk_run(
    store: &Store,
    connector: i64,
    since: DateTime<Utc>,
) -> anyhow::Result<i64> {
    let selection = RunSelection::Window {
        start: since,
        end: Utc::now(),
    };
    connectors::run(store, &Actor::system("demo"), connector, selection)
        .await
        .map(|run| run.id)
        .map_err(|e| anyhow!("cannot start the demo ODK import: {e}"))
}

/// What the ODK import did, as `g2p demo --once --json` prints it under `odk`.
#[derive(Debug, Clone, Serialize)]
pub struct OdkDemoReport {
    /// Submissions ODK Central held in the window.
    pub submissions: i64,
    /// Results MTS called back.
    pub received: i64,
    pub created: i64,
    pub updated: i64,
    pub tokenised: i64,
    pub failed: i64,
    pub possible_duplicates: i64,
    pub run_status: RunStatus,
}

impl OdkDemoReport {
    pub fn problem(&self) -> Option<String> {
        if self.run_status != RunStatus::Completed {
            return Some(format!(
                "the ODK import did not complete (status {})",
                self.run_status
            ));
        }
        (self.received != self.submissions).then(|| {
            format!(
                "ODK Central held {} submissions but {} results came back",
                self.submissions, self.received
            )
        })
    }

    pub fn human(&self) -> String {
        format!(
            "ODK submissions read: {}; registrants created: {}, updated: {}; tokenised: {}; \
             failed: {}; possible duplicates: {}",
            self.submissions,
            self.created,
            self.updated,
            self.tokenised,
            self.failed,
            self.possible_duplicates
        )
    }
}

/// Waits (until `timeout`) for the import to end, then counts what it did.
pub async fn odk_report(
    store: &Store,
    run_id: i64,
    started: Instant,
    timeout: std::time::Duration,
) -> anyhow::Result<OdkDemoReport> {
    let run = crate::demo::wait_run_end(store, run_id, started, timeout).await?;
    let c = store.odk_run_counts(run_id).await?;
    Ok(OdkDemoReport {
        submissions: run.sent,
        received: c.received,
        created: c.created,
        updated: c.updated,
        tokenised: c.tokenised,
        failed: c.failed,
        possible_duplicates: c.duplicates,
        run_status: run.status,
    })
}
