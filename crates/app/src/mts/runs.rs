//! The Registry MTS Connector's worker side: a run (job `mts.run`) pages through the selected
//! registrants in id order, claims each page as a chunk and sends it to MTS as one
//! `POST /authtoken/json` with callback delivery; the results come back to the callback
//! receiver (`g2p_web::api::mts`). MTS vocabulary (authdata, request_identifier,
//! callbackProperties) stays in this module.
//!
//! A chunk MTS did not take (down, 5xx, refused) is abandoned before the error is returned:
//! nothing stays `sent`, and the job is retried later from the run's cursor.

use std::time::Duration;

use chrono::Utc;
use g2p_domain::filter::Domain;
use g2p_domain::mts_connector::{CallbackAuthType, InputType, MtsConnectorSettings};
use g2p_store::Store;
use g2p_store::jobs::runner::{JobContext, JobError};
use g2p_store::mts::{MtsClaimedRecord, MtsRun, MtsSelection, run_status};
use g2p_store::secrets::SecretBox;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

use g2p_store::mts::MTS_RUN_JOB;
use g2p_web::api::mts::CALLBACK_SECRET_CONTEXT;

/// Timeout of a call to MTS (not the callback timeout, unlike OpenG2P: defect B13).
const MTS_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times the watchdog finds a processed request's callbacks still missing before it
/// takes them for lost (MTS may still be retrying them in between).
const PATIENT_POLLS: i64 = 3;

/// What the MTS jobs share: the key that opens connector secrets, one HTTP client, and how
/// long callbacks may take before the watchdog looks into them.
#[derive(Clone)]
pub struct MtsWorker {
    pub secrets: SecretBox,
    pub http: reqwest::Client,
    pub callback_deadline: chrono::Duration,
}

impl MtsWorker {
    /// The `mts.run` handler.
    pub async fn run_job(self, ctx: JobContext, payload: Value) -> Result<Value, JobError> {
        let run_id = payload["run_id"]
            .as_i64()
            .ok_or_else(|| JobError::permanent("payload has no run_id"))?;
        self.run(&ctx, run_id).await
    }

    /// The `mts.tick` handler: a recurring connector's schedule fired. Takes the delta, unless
    /// the connector was stopped or its previous run is still going.
    pub async fn tick_job(self, ctx: JobContext, payload: Value) -> Result<Value, JobError> {
        let connector_id = payload["connector_id"]
            .as_i64()
            .ok_or_else(|| JobError::permanent("payload has no connector_id"))?;
        let row = match ctx.store.get_mts_connector(connector_id).await {
            Ok(r) => r,
            Err(g2p_store::StoreError::NotFound { .. }) => {
                return Ok(json!({"skipped": "connector deleted"}));
            }
            Err(e) => return Err(e.into()),
        };
        if row.state != "running" {
            return Ok(json!({"skipped": "connector stopped"}));
        }
        let run = match ctx
            .store
            .create_mts_run(connector_id, "delta", None, None, "schedule")
            .await
        {
            Ok(r) => r,
            Err(g2p_store::StoreError::Conflict { message, .. }) => {
                return Ok(json!({"skipped": message}));
            }
            Err(e) => return Err(e.into()),
        };
        self.run(&ctx, run.id).await
    }

    async fn run(&self, ctx: &JobContext, run_id: i64) -> Result<Value, JobError> {
        let store = &ctx.store;
        let run = store.get_mts_run(run_id).await?;
        if !matches!(
            run.status.as_str(),
            run_status::QUEUED | run_status::RUNNING
        ) {
            return Ok(json!({"skipped": run.status}));
        }
        match send_run(&self.secrets, &self.http, self.callback_deadline, ctx, &run).await {
            Ok(sent) => {
                // A run stopped meanwhile stays stopped.
                if store.get_mts_run(run_id).await?.status != run_status::STOPPED {
                    store
                        .set_mts_run_status(run_id, run_status::SUBMITTED, None)
                        .await?;
                }
                store.complete_mts_runs().await?;
                Ok(json!({"run_id": run_id, "sent": sent}))
            }
            Err(e) => {
                // A retryable failure keeps the run running (the job comes back); the last
                // attempt or a permanent failure ends it with the reason shown to the operator.
                let last = !e.retryable || ctx.is_last_attempt();
                let status = if last {
                    run_status::FAILED
                } else {
                    run_status::RUNNING
                };
                store
                    .set_mts_run_status(run_id, status, Some(&e.message))
                    .await?;
                Err(e)
            }
        }
    }

    /// The `mts.watchdog` handler: for chunks whose callbacks are overdue, asks MTS
    /// (`GET /authtoken/status/{id}`). A request MTS no longer knows, or one it could not
    /// call back (`error_making_callback_request`), or one processed long ago with callbacks
    /// still missing: its unresolved records are released and re-sent by a retry run, while
    /// attempts last; then they stay failed with the reason.
    pub async fn watchdog_job(self, ctx: JobContext, _payload: Value) -> Result<Value, JobError> {
        let store = &ctx.store;
        let mut released = 0u64;
        let mut resend: Vec<(i64, Vec<i64>)> = Vec::new();
        for chunk in store.due_mts_chunks(200).await? {
            let later = Utc::now() + self.callback_deadline;
            if chunk.unresolved == 0 {
                store
                    .set_mts_chunk_checked(chunk.id, true, later, None)
                    .await?;
                continue;
            }
            let row = store.get_mts_connector(chunk.connector_id).await?;
            let settings: MtsConnectorSettings = serde_json::from_value(row.settings.0.clone())?;
            let status = match &chunk.request_id {
                Some(id) => self.mts_status(&settings.mts_url, id).await,
                None => MtsStatus::Unknown,
            };
            let lost = match &status {
                MtsStatus::Unknown => Some("MTS no longer knows the request".to_owned()),
                MtsStatus::Is(s) if s == "error_making_callback_request" => {
                    Some("MTS could not deliver the callbacks".to_owned())
                }
                MtsStatus::Is(s)
                    if s.starts_with("processed") && chunk.polls + 1 >= PATIENT_POLLS =>
                {
                    Some(format!("callbacks missing although MTS says {s}"))
                }
                _ => None,
            };
            match lost {
                Some(reason) => {
                    let ids = store.unresolved_mts_registrants(chunk.id).await?;
                    let n = store.release_mts_chunk(chunk.id, &reason).await?;
                    released += n;
                    tracing::warn!(chunk = chunk.id, records = n, reason = %reason,
                        "mts: callbacks lost; records released for a re-send");
                    match resend.iter_mut().find(|(c, _)| *c == chunk.connector_id) {
                        Some((_, all)) => all.extend(ids),
                        None => resend.push((chunk.connector_id, ids)),
                    }
                }
                None => {
                    let seen = match &status {
                        MtsStatus::Is(s) => Some(s.as_str()),
                        _ => None,
                    };
                    store
                        .set_mts_chunk_checked(chunk.id, false, later, seen)
                        .await?;
                }
            }
        }
        let mut runs = Vec::new();
        for (connector_id, ids) in resend {
            if ids.is_empty() {
                continue;
            }
            let selection = json!({"registrants": ids.len()});
            match store
                .create_mts_run(
                    connector_id,
                    "retry",
                    Some(&selection),
                    Some(&ids),
                    "watchdog",
                )
                .await
            {
                Ok(run) => {
                    enqueue_run(store, run.id).await?;
                    runs.push(run.id);
                }
                // A run is going: it or the next delta takes the released records.
                Err(g2p_store::StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        store.complete_mts_runs().await?;
        Ok(json!({"released": released, "retry_runs": runs}))
    }

    async fn mts_status(&self, mts_url: &str, request_id: &str) -> MtsStatus {
        let url = format!(
            "{}/authtoken/status/{request_id}",
            mts_url.trim_end_matches('/')
        );
        let resp = match self.http.get(&url).timeout(MTS_CALL_TIMEOUT).send().await {
            Ok(r) => r,
            Err(_) => return MtsStatus::Unreachable,
        };
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return MtsStatus::Unknown;
        }
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        match v["response"]["status"].as_str() {
            Some(s) => MtsStatus::Is(s.to_owned()),
            None if v["errors"][0]["errorCode"] == "ATS-REQ-016" => MtsStatus::Unknown,
            None => MtsStatus::Unreachable,
        }
    }
}

/// What `GET /authtoken/status/{id}` said.
enum MtsStatus {
    Is(String),
    /// 404 / ATS-REQ-016: restarted without its queue, or purged.
    Unknown,
    Unreachable,
}

async fn send_run(
    secrets: &SecretBox,
    http: &reqwest::Client,
    deadline: chrono::Duration,
    ctx: &JobContext,
    run: &MtsRun,
) -> Result<i64, JobError> {
    let store = &ctx.store;
    let row = store.get_mts_connector(run.connector_id).await?;
    let settings: MtsConnectorSettings = serde_json::from_value(row.settings.0.clone())?;
    let password = match &row.callback_secret {
        Some(sealed) => Some(
            secrets
                .open(CALLBACK_SECRET_CONTEXT, sealed)
                .map_err(|e| JobError::permanent(format!("callback secret: {e}")))?,
        ),
        None => None,
    };
    let password = password
        .as_ref()
        .map(|p| p.expose_secret().to_owned())
        .ok_or_else(|| JobError::permanent("the connector has no callback secret"))?;
    store
        .set_mts_run_status(run.id, run_status::RUNNING, None)
        .await?;
    if settings.input_type == InputType::Odk {
        return crate::odk_connector::send_odk_run(
            secrets, http, ctx, run, &row, &settings, &password,
        )
        .await;
    }

    let selection = run.selection.as_ref().map(|s| s.0.clone());
    let filter_json = selection
        .as_ref()
        .and_then(|s| s.get("filter").cloned())
        .unwrap_or_else(|| settings.filter.clone());
    let filter =
        Domain::from_json(&filter_json).map_err(|e| JobError::permanent(format!("filter: {e}")))?;
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
        ignore_retry_time: run.kind != "delta",
    };
    let mut cursor = run.cursor;
    let mut sent = run.sent;
    loop {
        if ctx.shutdown.is_cancelled() {
            return Err(JobError::retryable("worker shutting down"));
        }
        if store.get_mts_run(run.id).await?.status == run_status::STOPPED {
            return Ok(sent);
        }
        let claim = store
            .claim_mts_chunk(run.id, cursor, &sel, i64::from(settings.chunk_size))
            .await?;
        match claim.chunk_id {
            Some(chunk_id) => {
                let body = envelope(&settings, &password, &claim.records);
                match submit(http, &settings.mts_url, "json", &body).await {
                    Ok(request_id) => {
                        let n = claim.records.len() as i64;
                        store
                            .mark_mts_chunk_submitted(
                                chunk_id,
                                &request_id,
                                Utc::now() + deadline,
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

/// The MTS request envelope (spec `openg2p-mts-connector.md` §2.2, with the fixes of §7).
pub fn envelope(
    settings: &MtsConnectorSettings,
    password: &str,
    records: &[MtsClaimedRecord],
) -> Value {
    let authdata: Vec<Value> = records.iter().map(|r| authdata(settings, r)).collect();
    let mut callback = json!({
        "url": settings.callback_url,
        "httpMethod": settings.callback_http_method.as_str(),
        "timeoutSeconds": settings.callback_timeout_seconds,
        "callInBulk": settings.call_in_bulk,
        "authType": settings.callback_auth_type.as_str(),
    });
    match settings.callback_auth_type {
        CallbackAuthType::Odoo => {
            callback["authOdoo"] = json!({
                "authUrl": odoo_auth_url(&settings.callback_url),
                "database": settings.callback_auth_database,
                "username": settings.callback_auth_username,
                "password": password,
            });
        }
        CallbackAuthType::StaticBearer => {
            callback["authStaticBearer"] = json!({"token": password});
        }
    }
    json!({
        "id": "string", "version": "string", "metadata": "string",
        "requesttime": Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "request": {
            "output": settings.output_type,
            "deliverytype": settings.delivery_type,
            "mapping": settings.mapping,
            "lang": settings.lang,
            // Always a string (OpenG2P sends `false` when empty: defect B14).
            "outputFormat": settings.effective_output_format(),
            "callbackProperties": callback,
            "authdata": authdata,
        }
    })
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

/// Posts the envelope; the MTS `request_identifier` on acceptance. A request-level error
/// (HTTP error, or errors without an identifier) is a refusal; `ATS-REQ-101` (every record
/// invalid) still carries an identifier and its callbacks still come.
pub(crate) async fn submit(
    http: &reqwest::Client,
    mts_url: &str,
    input: &str,
    body: &Value,
) -> Result<String, JobError> {
    let url = format!("{}/authtoken/{input}", mts_url.trim_end_matches('/'));
    let resp = http
        .post(&url)
        .json(body)
        .timeout(MTS_CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| JobError::retryable(format!("MTS unreachable: {}", e.without_url())))?;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if let Some(id) = answer["response"]["request_identifier"].as_str()
        && status.is_success()
    {
        return Ok(id.to_owned());
    }
    let errors = answer["errors"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["errorCode"].as_str().unwrap_or("?"),
                        e["errorMessage"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    let msg = format!("MTS refused the request: HTTP {} {errors}", status.as_u16());
    // 5xx and 429 may pass; a 4xx is our request or configuration, and repeats.
    if status.is_server_error() || status.as_u16() == 429 {
        Err(JobError::retryable(msg))
    } else {
        Err(JobError::permanent(msg))
    }
}

/// Queues a run's job.
pub async fn enqueue_run(store: &Store, run_id: i64) -> Result<(), g2p_store::StoreError> {
    store
        .enqueue(
            g2p_store::jobs::NewJob::new(MTS_RUN_JOB, json!({"run_id": run_id}))
                .max_attempts(8)
                .dedupe_key(format!("mts.run:{run_id}")),
        )
        .await?;
    Ok(())
}
