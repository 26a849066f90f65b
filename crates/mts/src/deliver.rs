//! Callback delivery (spec §4.2–4.3) from the `mts_deliveries` table: authentication (`none`,
//! `odoo` GET login with a JSON body and session cookie, then logout; `staticBearer`; `oauth`
//! password or client-credentials grant, with the token used as it is), one call per record
//! or one bulk call (JSON array, or CSV as a multipart part named by `requestFileName`).
//! Better than MTS: connection errors, timeouts and 5xx are retried with exponential backoff
//! up to `RetryPolicy::max_attempts`; 4xx is recorded and not retried; one failure does not
//! stop the other callbacks. Never touches records or request processing.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::task::JoinSet;

use super::MtsService;
use super::http::to_csv;
use super::store::{AttemptRow, DeliveryRow};
use super::wire::{format_time, py_json};

/// Attempts stored per write transaction.
const ATTEMPT_BATCH: usize = 200;

/// How one attempt ended.
#[derive(Debug)]
enum Attempt {
    Delivered(u16),
    /// Not worth retrying (4xx, bad method): recorded as `failed`.
    Permanent(Option<u16>, String),
    /// Connection error, timeout, 5xx, or the callback authentication failed.
    Retry(Option<u16>, String),
}

impl MtsService {
    /// Delivers up to `callback_concurrency` requests at once; a request's callbacks go out
    /// one after another, in input order. On shutdown it starts nothing new and waits for the
    /// requests being delivered, which stop between two callbacks.
    pub(crate) async fn deliver_loop(&self) {
        let stop = self.inner.stop.clone();
        let limit = self.inner.cfg.callback_concurrency.max(1);
        let mut running: JoinSet<()> = JoinSet::new();
        let mut busy: HashSet<String> = HashSet::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        while !stop.is_cancelled() {
            let notified = self.inner.deliver_wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            while let Ok(id) = done_rx.try_recv() {
                busy.remove(&id);
            }
            while running.try_join_next().is_some() {}
            let mut started = false;
            if running.len() < limit {
                match self.inner.db.due_requests(limit + busy.len()).await {
                    Ok(ids) => {
                        for id in ids {
                            if running.len() >= limit {
                                break;
                            }
                            if busy.insert(id.clone()) {
                                let svc = self.clone();
                                let done = done_tx.clone();
                                started = true;
                                running.spawn(async move {
                                    svc.deliver_request(&id).await;
                                    let _ = done.send(id);
                                });
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "mts: reading deliveries failed"),
                }
            }
            if started {
                continue;
            }
            tokio::select! {
                _ = notified => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(self.inner.cfg.poll_interval) => {}
                _ = stop.cancelled() => {}
            }
        }
        while running.join_next().await.is_some() {}
    }

    async fn deliver_request(&self, request_id: &str) {
        let db = &self.inner.db;
        let loaded = async {
            let Some(req) = db.request(request_id).await? else {
                return Ok(None);
            };
            let rows = db.pending_deliveries(request_id).await?;
            let results = db.results(request_id).await?;
            Ok::<_, sqlx::Error>(Some((req, rows, results)))
        };
        let (req, rows, results) = match loaded.await {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "mts: loading a request for delivery failed");
                return;
            }
        };
        if rows.is_empty() {
            return;
        }
        let props: Value = req
            .callback_props
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(Value::Null);
        let results: Vec<Value> = results
            .iter()
            .map(|r| {
                r.as_deref()
                    .and_then(|t| serde_json::from_str(t).ok())
                    .unwrap_or(Value::Null)
            })
            .collect();
        let timeout = Duration::from_secs(props["timeoutSeconds"].as_u64().unwrap_or(10).max(1));
        let client = if props["authType"] == "odoo" {
            match reqwest::Client::builder().cookie_store(true).build() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "mts: building the callback client failed");
                    return;
                }
            }
        } else {
            self.inner.http.clone()
        };
        let auth = authenticate(&client, &props, timeout).await;
        let mut any_failed = false;
        let mut attempts = Vec::with_capacity(rows.len().min(ATTEMPT_BATCH));
        for row in &rows {
            // On shutdown, the callbacks not yet sent stay `pending` for the next start; the
            // ones sent are recorded below, so none is sent twice.
            if self.inner.stop.is_cancelled() {
                break;
            }
            let attempt = match &auth {
                Err(e) => Attempt::Retry(None, e.clone()),
                Ok(headers) => {
                    send(
                        &client,
                        &props,
                        headers,
                        timeout,
                        row,
                        &results,
                        &req.output_type,
                    )
                    .await
                }
            };
            let a = self.attempt_row(row, attempt);
            any_failed |= a.status == "failed";
            attempts.push(a);
            // Stored in batches: one write transaction per batch, and a crash repeats at most
            // one batch of callbacks (delivery is at-least-once).
            if attempts.len() >= ATTEMPT_BATCH {
                self.store_attempts(&mut attempts).await;
            }
        }
        self.store_attempts(&mut attempts).await;
        if auth.is_ok() && props["authType"] == "odoo" {
            logout(&client, &props, timeout).await;
        }
        if let Err(e) = db.touch_request(request_id).await {
            tracing::warn!(error = %e, "mts: touching the request failed");
        }
        if any_failed
            && let Err(e) = db
                .set_request_status(request_id, "error_making_callback_request")
                .await
        {
            tracing::warn!(error = %e, "mts: setting the request status failed");
        }
    }

    async fn store_attempts(&self, attempts: &mut Vec<AttemptRow>) {
        if attempts.is_empty() {
            return;
        }
        if let Err(e) = self.inner.db.record_attempts(attempts).await {
            tracing::warn!(error = %e, "mts: recording deliveries failed");
        }
        attempts.clear();
    }

    /// What to store for an attempt: `delivered`, `failed`, or `pending` with a backoff.
    fn attempt_row(&self, row: &DeliveryRow, attempt: Attempt) -> AttemptRow {
        let policy = &self.inner.cfg.callback_retry;
        let attempts = row.attempts as u32 + 1;
        let now = Utc::now();
        let (status, next, code, err) = match attempt {
            Attempt::Delivered(c) => ("delivered", now, Some(c), None),
            Attempt::Permanent(c, e) => ("failed", now, c, Some(e)),
            Attempt::Retry(c, e) if attempts >= policy.max_attempts => ("failed", now, c, Some(e)),
            Attempt::Retry(c, e) => {
                let exp = policy
                    .initial_backoff
                    .saturating_mul(1 << attempts.min(20).saturating_sub(1));
                let base = exp.min(policy.max_backoff);
                // Jitter of up to a quarter, so receivers coming back are not hit all at once.
                let quarter = (base.as_millis() / 4).max(1);
                let jitter =
                    Duration::from_millis((uuid::Uuid::new_v4().as_u128() % quarter) as u64);
                let at = now + chrono::Duration::from_std(base + jitter).unwrap_or_default();
                ("pending", at, c, Some(e))
            }
        };
        if let Some(e) = &err {
            tracing::info!(request = %row.request_id, line = ?row.line_no, attempts, status, error = %e,
                "mts: callback attempt failed");
        }
        AttemptRow {
            id: row.id,
            status,
            next_attempt_at: format_time(next),
            last_status: code.map(i64::from),
            last_error: err,
        }
    }
}

fn header_map(v: &Value) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(m) = v.as_object() {
        for (k, v) in m {
            if let (Ok(name), Some(Ok(val))) = (
                HeaderName::from_bytes(k.as_bytes()),
                v.as_str().map(HeaderValue::from_str),
            ) {
                h.insert(name, val);
            }
        }
    }
    h
}

/// The headers that authenticate every callback of a request (cookies stay in the client).
async fn authenticate(
    client: &reqwest::Client,
    props: &Value,
    timeout: Duration,
) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    match props["authType"].as_str().unwrap_or("none") {
        "staticBearer" => {
            let token = props["authStaticBearer"]["token"]
                .as_str()
                .unwrap_or_default();
            let v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
            h.insert(reqwest::header::AUTHORIZATION, v);
        }
        "odoo" => {
            let o = &props["authOdoo"];
            let url = o["authUrl"].as_str().unwrap_or_default();
            let body = serde_json::json!({"jsonrpc": "2.0", "params": {
                "db": o["database"], "login": o["username"], "password": o["password"]}});
            // A GET with a JSON body, as MTS sends it; unlike MTS the answer is checked.
            let r = client
                .get(url)
                .header("Content-Type", "application/json")
                .headers(header_map(&o["extraHeaders"]))
                .body(body.to_string())
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| format!("odoo login: {e}"))?;
            if !r.status().is_success() {
                return Err(format!("odoo login: HTTP {}", r.status().as_u16()));
            }
            let answer: Value = r.json().await.unwrap_or(Value::Null);
            if !answer["error"].is_null() {
                return Err(format!("odoo login: {}", answer["error"]));
            }
        }
        "oauth" => {
            let o = &props["authOauth"];
            let url = o["authUrl"].as_str().ok_or("oauth: no authUrl")?;
            let s = |k: &str| o[k].as_str().unwrap_or_default().to_owned();
            let mut form: Vec<(&str, String)> = Vec::new();
            if !s("username").is_empty() {
                form.push(("username", s("username")));
                form.push(("grant_type", "password".into()));
            }
            if !s("password").is_empty() {
                form.push(("password", s("password")));
            }
            if !s("clientId").is_empty() {
                form.push(("client_id", s("clientId")));
                if s("username").is_empty() {
                    form.push(("grant_type", "client_credentials".into()));
                }
            }
            if !s("clientSecret").is_empty() {
                form.push(("client_secret", s("clientSecret")));
            }
            let r = client
                .post(url)
                .headers(header_map(&o["extraHeaders"]))
                .form(&form)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| format!("oauth: {e}"))?;
            if !r.status().is_success() {
                return Err(format!("oauth: HTTP {}", r.status().as_u16()));
            }
            let answer: Value = r.json().await.map_err(|e| format!("oauth: {e}"))?;
            // The token is used as it is: MTS decodes it as a JWT and fails (spec §13 #1).
            let token = answer["access_token"]
                .as_str()
                .ok_or("oauth: no access_token")?;
            let v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
            h.insert(reqwest::header::AUTHORIZATION, v);
        }
        _ => {}
    }
    Ok(h)
}

async fn logout(client: &reqwest::Client, props: &Value, timeout: Duration) {
    let o = &props["authOdoo"];
    let url = o["authUrl"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/');
    // The last path segment becomes `logout` (MTS strips 2 characters on a trailing `/`).
    let Some((base, _)) = url.rsplit_once('/') else {
        return;
    };
    let r = client
        .get(format!("{base}/logout"))
        .headers(header_map(&o["extraHeaders"]))
        .timeout(timeout)
        .send()
        .await;
    if let Err(e) = r {
        tracing::info!(error = %e, "mts: odoo logout failed");
    }
}

async fn send(
    client: &reqwest::Client,
    props: &Value,
    auth: &HeaderMap,
    timeout: Duration,
    row: &DeliveryRow,
    results: &[Value],
    output_type: &str,
) -> Attempt {
    let method = props["httpMethod"]
        .as_str()
        .unwrap_or("POST")
        .to_ascii_uppercase();
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return Attempt::Permanent(None, format!("invalid httpMethod {method}"));
    };
    let url = props["url"].as_str().unwrap_or_default();
    let mut rb = client.request(method, url).headers(auth.clone());
    rb = match row.line_no {
        Some(line) => {
            let result = usize::try_from(line - 1).ok().and_then(|i| results.get(i));
            match result {
                Some(v) if !v.is_null() => rb
                    .header("Content-Type", "application/json")
                    .body(py_json(v)),
                // An empty jq result: the call goes out without a body, as in MTS.
                _ => rb,
            }
        }
        None if output_type == "csv" => {
            let name = props["requestFileName"].as_str().unwrap_or("output.csv");
            let boundary = format!("mts-{}", uuid::Uuid::new_v4().simple());
            let body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}\"\r\n\r\n{}\r\n--{boundary}--\r\n",
                to_csv(results, "\n")
            );
            rb.header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
        }
        None => rb
            .header("Content-Type", "application/json")
            .body(py_json(&Value::Array(results.to_vec()))),
    };
    // extraHeaders come after the auth header and can override it (spec §4.2).
    rb = rb.headers(header_map(&props["extraHeaders"]));
    match rb.timeout(timeout).send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            if r.status().is_server_error() || code == 408 || code == 429 {
                Attempt::Retry(Some(code), format!("HTTP {code}"))
            } else if r.status().is_client_error() {
                Attempt::Permanent(Some(code), format!("HTTP {code}"))
            } else {
                Attempt::Delivered(code)
            }
        }
        Err(e) if e.is_builder() => Attempt::Permanent(None, e.to_string()),
        Err(e) => Attempt::Retry(None, e.to_string()),
    }
}
