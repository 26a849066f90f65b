//! A Registry MTS Connector's run (job `mts.run`): pages through the selected registrants in
//! id order, claims each page as a chunk and sends it to MTS as one `POST /authtoken/json`
//! with callback delivery; the results come back to the callback receiver
//! ([`crate::mts::callbacks`]). A recurring connector's schedule fires `mts.tick`, which takes
//! the delta. An ODK connector's run asks MTS to pull a window instead
//! ([`crate::odk::import`]).
//!
//! A chunk MTS did not take (down, 5xx, refused) is abandoned before the error is returned:
//! nothing stays `sent`, and the job is retried later from the run's cursor.
//!
//! The mapping from registry vocabulary to MTS's (authdata, callbackProperties) is in
//! [`envelope`], in one place.

use chrono::Utc;
use g2p_connectors::mts::wire::{
    AuthOdoo, AuthStaticBearer, AuthTokenBody, AuthTokenRequest, CallbackProperties,
};
use g2p_connectors::mts::{InputRoute, MtsClient, MtsError};
use g2p_connectors::odk::OdkClient;
use g2p_domain::filter::Domain;
use g2p_domain::mts_connector::{CallbackAuthType, InputType, MtsConnectorSettings};
use g2p_store::StoreError;
use g2p_store::audit::Actor;
use g2p_store::jobs::runner::{JobContext, JobError};
use g2p_store::mts::{ConnectorState, MtsClaimedRecord, MtsRun, MtsSelection, RunKind, RunStatus};
use g2p_store::mts_lifecycle::{NewMtsRun, RunQueued};
use g2p_store::secrets::SecretBox;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::secrets::CALLBACK_SECRET_CONTEXT;

/// What the MTS jobs share: the key that opens connector secrets, one client per external
/// system, and how long callbacks may take before the watchdog looks into them.
#[derive(Clone)]
pub struct MtsJobs {
    pub secrets: SecretBox,
    pub mts: MtsClient,
    pub odk: OdkClient,
    pub callback_deadline: chrono::Duration,
}

/// A failed call to an external system as a job failure: the failure says itself whether a
/// retry can help.
pub(crate) fn job_error(e: impl std::fmt::Display, retryable: bool) -> JobError {
    JobError {
        message: e.to_string(),
        retryable,
    }
}

pub(crate) fn mts_failed(e: MtsError) -> JobError {
    let retryable = e.is_retryable();
    job_error(e, retryable)
}

#[derive(Deserialize)]
struct RunPayload {
    run_id: i64,
}

#[derive(Deserialize)]
struct TickPayload {
    connector_id: i64,
}

impl MtsJobs {
    /// The `mts.run` handler.
    pub async fn run_job(self, ctx: JobContext, payload: Value) -> Result<Value, JobError> {
        let p: RunPayload = serde_json::from_value(payload)?;
        self.run(&ctx, p.run_id).await
    }

    /// The `mts.tick` handler: a recurring connector's schedule fired. Takes the delta, unless
    /// the connector was stopped or its previous run is still going.
    pub async fn tick_job(self, ctx: JobContext, payload: Value) -> Result<Value, JobError> {
        let p: TickPayload = serde_json::from_value(payload)?;
        let row = match ctx.store.get_mts_connector(p.connector_id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => {
                return Ok(json!({"skipped": "connector deleted"}));
            }
            Err(e) => return Err(e.into()),
        };
        if row.state != ConnectorState::Running {
            return Ok(json!({"skipped": "connector stopped"}));
        }
        let actor = Actor::system("schedule");
        let new = NewMtsRun {
            connector_id: p.connector_id,
            kind: RunKind::Delta,
            selection: None,
            targets: None,
            created_by: &actor.name,
        };
        // The run's own job sends it, as for a run started by hand.
        match ctx.store.queue_mts_run(&new, &actor).await? {
            RunQueued::Created(run) => Ok(json!({"run_id": run.id})),
            RunQueued::AlreadyActive(id) => Ok(json!({
                "skipped": format!("run {id} of this connector has not finished")
            })),
        }
    }

    async fn run(&self, ctx: &JobContext, run_id: i64) -> Result<Value, JobError> {
        let store = &ctx.store;
        let run = store.get_mts_run(run_id).await?;
        if !run.status.is_sending() {
            return Ok(json!({"skipped": run.status}));
        }
        match self.send_run(ctx, &run).await {
            Ok(sent) => {
                // A run stopped meanwhile stays stopped.
                if store.get_mts_run(run_id).await?.status != RunStatus::Stopped {
                    store
                        .set_mts_run_status(run_id, RunStatus::Submitted, None)
                        .await?;
                }
                // Callbacks may all have come while the run was still sending.
                store.complete_mts_runs_of(run.connector_id).await?;
                Ok(json!({"run_id": run_id, "sent": sent}))
            }
            Err(e) => {
                // A retryable failure keeps the run running (the job comes back); the last
                // attempt or a permanent failure ends it with the reason shown to the operator.
                let last = !e.retryable || ctx.is_last_attempt();
                let status = if last {
                    RunStatus::Failed
                } else {
                    RunStatus::Running
                };
                store
                    .set_mts_run_status(run_id, status, Some(&e.message))
                    .await?;
                Err(e)
            }
        }
    }

    /// Sends a run; the number of records (or ODK submissions) handed to MTS.
    async fn send_run(&self, ctx: &JobContext, run: &MtsRun) -> Result<i64, JobError> {
        let store = &ctx.store;
        let row = store.get_mts_connector(run.connector_id).await?;
        let settings = &row.settings.0;
        let password = match &row.callback_secret {
            Some(sealed) => self
                .secrets
                .open(CALLBACK_SECRET_CONTEXT, sealed)
                .map_err(|e| JobError::permanent(format!("callback secret: {e}")))?,
            None => return Err(JobError::permanent("the connector has no callback secret")),
        };
        store
            .set_mts_run_status(run.id, RunStatus::Running, None)
            .await?;
        if settings.input_type == InputType::Odk {
            return crate::odk::import::send_odk_run(self, ctx, run, &row, settings, &password)
                .await;
        }

        let selection = run.selection.as_ref().map(|s| s.0.clone());
        let filter_json = selection
            .as_ref()
            .and_then(|s| s.get("filter").cloned())
            .unwrap_or_else(|| settings.filter.clone());
        let filter = Domain::from_json(&filter_json)
            .map_err(|e| JobError::permanent(format!("filter: {e}")))?;
        // Manual and retry runs with a list of registrants keep it in mts_run_targets.
        let targeted = selection
            .as_ref()
            .is_some_and(|s| s.get("registrants").is_some());
        let sel = MtsSelection {
            connector_id: row.id,
            vid_id_type: &settings.vid_id_type,
            token_id_type: &settings.token_id_type,
            filter: &filter,
            targets_of_run: targeted.then_some(run.id),
            max_attempts: i64::from(settings.failed_retry.max_attempts),
            ignore_retry_time: run.kind != RunKind::Delta,
        };
        let mut cursor = run.cursor;
        let mut sent = run.sent;
        loop {
            if ctx.shutdown.is_cancelled() {
                return Err(JobError::retryable("worker shutting down"));
            }
            if store.get_mts_run(run.id).await?.status == RunStatus::Stopped {
                return Ok(sent);
            }
            let claim = store
                .claim_mts_chunk(run.id, cursor, &sel, i64::from(settings.chunk_size))
                .await?;
            match claim.chunk_id {
                Some(chunk_id) => {
                    let body = AuthTokenRequest::new(AuthTokenBody {
                        authdata: Some(
                            claim
                                .records
                                .iter()
                                .map(|r| authdata(settings, r))
                                .collect(),
                        ),
                        ..envelope(settings, &password)
                    });
                    match self
                        .mts
                        .submit(&settings.mts_url, InputRoute::Json, &body)
                        .await
                    {
                        Ok(request_id) => {
                            let n = claim.records.len() as i64;
                            store
                                .mark_mts_chunk_submitted(
                                    chunk_id,
                                    &request_id,
                                    Utc::now() + self.callback_deadline,
                                    run.id,
                                    claim.cursor,
                                    n,
                                )
                                .await?;
                            sent += n;
                            tracing::info!(run = run.id, chunk = chunk_id, records = n,
                                request = %request_id, "mts: chunk submitted");
                        }
                        Err(e) => {
                            let e = mts_failed(e);
                            store.abandon_mts_chunk(chunk_id, &e.message).await?;
                            return Err(e);
                        }
                    }
                }
                None if claim.cursor != cursor => {
                    store.set_mts_run_cursor(run.id, claim.cursor).await?;
                }
                None => {}
            }
            cursor = claim.cursor;
            ctx.progress(u64::try_from(sent).unwrap_or(0), 0).await?;
            if !claim.more {
                return Ok(sent);
            }
        }
    }
}

/// The request MTS gets for a connector, without its records (spec
/// `openg2p-mts-connector.md` §2.2, with the fixes of its §7): registry runs add `authdata`,
/// ODK runs `odkconfig`.
pub fn envelope(settings: &MtsConnectorSettings, password: &SecretString) -> AuthTokenBody {
    let password = password.expose_secret().to_owned();
    let (auth_odoo, auth_static_bearer) = match settings.callback_auth_type {
        CallbackAuthType::Odoo => (
            Some(AuthOdoo {
                auth_url: odoo_auth_url(&settings.callback_url),
                database: settings.callback_auth_database.clone(),
                username: settings.callback_auth_username.clone(),
                password,
            }),
            None,
        ),
        CallbackAuthType::StaticBearer => (None, Some(AuthStaticBearer { token: password })),
    };
    AuthTokenBody {
        output: settings.output_type.clone(),
        deliverytype: settings.delivery_type.clone(),
        mapping: settings.mapping.clone(),
        lang: settings.lang.clone(),
        output_format: settings.effective_output_format().to_owned(),
        callback_properties: CallbackProperties {
            url: settings.callback_url.clone(),
            http_method: settings.callback_http_method.as_str().to_owned(),
            timeout_seconds: settings.callback_timeout_seconds,
            call_in_bulk: settings.call_in_bulk,
            auth_type: settings.callback_auth_type.as_str().to_owned(),
            auth_odoo,
            auth_static_bearer,
        },
        authdata: None,
        odkconfig: None,
    }
}

/// g2p's Odoo-compatible login, on the host of the callback URL.
fn odoo_auth_url(callback_url: &str) -> String {
    match reqwest::Url::parse(callback_url) {
        Ok(mut u) => {
            u.set_path("/web/session/authenticate");
            u.set_query(None);
            u.to_string()
        }
        Err(_) => String::new(),
    }
}

/// One `authdata` record: the opaque reference, the VID, and the listed fields with their
/// real types (booleans and zeros kept, dates as `YYYY/MM/DD` for `birthdate`).
fn authdata(settings: &MtsConnectorSettings, r: &MtsClaimedRecord) -> Value {
    let reg = &r.registrant;
    let mut out = Map::new();
    out.insert("ref".into(), json!(r.reference));
    out.insert("vid".into(), json!(r.vid));
    let date = |d: Option<chrono::NaiveDate>| d.map(|d| json!(d.format("%Y/%m/%d").to_string()));
    let text = |s: &Option<String>| s.as_ref().map(|s| json!(s));
    let mut attributes = Map::new();
    for f in &settings.fields {
        let v = match f.as_str() {
            "name" => Some(json!(reg.name)),
            "given_name" => text(&reg.given_name),
            "family_name" => text(&reg.family_name),
            "addl_name" => text(&reg.addl_name),
            "gender" => text(&reg.gender),
            "birthdate" => date(reg.birthdate),
            "birth_place" => text(&reg.birth_place),
            "address" => text(&reg.address),
            "phone" => text(&reg.phone),
            "email" => text(&reg.email),
            "registration_date" => date(reg.registration_date),
            "external_key" => text(&reg.external_key),
            "is_group" => Some(json!(reg.is_group)),
            other => {
                if let Some(key) = other.strip_prefix("attributes.")
                    && let Some(v) = reg.attributes.get(key)
                {
                    attributes.insert(key.to_owned(), v.clone());
                }
                None
            }
        };
        if let Some(v) = v {
            out.insert(f.clone(), v);
        }
    }
    if !attributes.is_empty() {
        out.insert("attributes".into(), Value::Object(attributes));
    }
    Value::Object(out)
}
