//! The HTTP surface of spec §1: routes, envelope handling, submission (validate, map, persist,
//! then answer) and the status and file endpoints. No queue logic beyond calling [`Db`].

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::MtsService;
use super::mapping::{map_record, raw_vid};
use super::output;
use super::store::{NewRecord, RecordRow, RequestRow, status};
use super::wire::{
    self, ApiError, InputKind, OutputType, SubmitRequest, ok, parse_envelope, parse_request,
    py_json,
};

/// The MTS router (spec §1), with the body limit of the configuration.
pub fn router(svc: MtsService) -> Router {
    let limit = svc.inner.cfg.max_request_bytes;
    let r = Router::new()
        .route("/ping", get(ping))
        .route("/authtoken/authfields", get(authfields));
    let r = if svc.inner.cfg.sync_mode {
        r.route("/authtoken/json", post(submit_sync))
    } else {
        r.route("/authtoken/json", post(submit_json))
            .route("/authtoken/csv", post(submit_csv))
            .route("/authtoken/odk", post(submit_odk))
    };
    r.route("/authtoken/status/{id}", get(status_of))
        .route("/authtoken/deliveries/{id}", get(deliveries_of))
        .route("/authtoken/file/{id}", get(file_of))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(svc)
}

async fn ping(State(svc): State<MtsService>) -> Json<String> {
    Json(format!("[{} - 0] pong", svc.inner.cfg.pod_ordinal))
}

async fn authfields() -> Response {
    ok(
        json!({"authfields": ["vid", "name", "gender", "dob", "phoneNumber", "emailId", "fullAddress"]}),
    )
}

/// Whether the request's `outputFormat` compiles, asked before the request is parsed (the
/// parser's check is synchronous, the pool is not). Only a string is checked; anything else is
/// the parser's to refuse.
async fn output_format_compiles(svc: &MtsService, r: &serde_json::Map<String, Value>) -> bool {
    match r.get("outputFormat").and_then(Value::as_str) {
        Some(p) if !p.trim().is_empty() => output::compiles(&svc.inner.jq, p).await,
        _ => true,
    }
}

async fn submit_json(State(svc): State<MtsService>, body: Bytes) -> Result<Response, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::req102("invalid input. missing request body"));
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|_| ApiError::structure("Invalid JSON"))?;
    let r = parse_envelope(&value)?;
    let cfg = &svc.inner.cfg;
    let compiles = output_format_compiles(&svc, r).await;
    let req = parse_request(r, InputKind::Json, &cfg.default_lang, &|_| compiles)?;
    svc.submit(req, InputKind::Json).await
}

/// Sync mode (spec §4.6): one record, validated as in §2 (an invalid record is a 400 with its
/// code), authenticated inside the call.
async fn submit_sync(State(svc): State<MtsService>, body: Bytes) -> Result<Response, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::req102("invalid input. missing request body"));
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|_| ApiError::structure("Invalid JSON"))?;
    let r = parse_envelope(&value)?;
    let cfg = &svc.inner.cfg;
    let (mapping, lang, record) = wire::parse_sync_request(r, &cfg.default_lang)?;
    let mapped = map_record(&record, &mapping, &lang, cfg)
        .map_err(|(code, msg)| ApiError::Business(code, msg.to_owned()))?;
    let req = super::AuthRequest {
        vid: mapped.vid,
        demographics: mapped.demographics,
    };
    let (errors, response) = match svc.inner.auth.authenticate(&req).await {
        super::AuthOutcome::Token(t) => (None, json!({"authStatus": true, "authToken": t})),
        // MTS joins IDA's message and action message: `errorMessage + ". " + actionMessage`.
        super::AuthOutcome::Failed { code, message } => (
            Some(vec![(code, format!("{}. ", message.unwrap_or_default()))]),
            json!({"authStatus": false}),
        ),
    };
    Ok(Json(wire::envelope_version("1.0", errors, Some(response))).into_response())
}

/// `POST /authtoken/odk` (spec §8): the records are pulled from ODK Central inside the call.
async fn submit_odk(State(svc): State<MtsService>, body: Bytes) -> Result<Response, ApiError> {
    // MTS answers a missing body with a 500 here (spec §1.3); this answers like the JSON route.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::req102("invalid input. missing request body"));
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|_| ApiError::structure("Invalid JSON"))?;
    let r = parse_envelope(&value)?;
    let cfg = &svc.inner.cfg;
    let compiles = output_format_compiles(&svc, r).await;
    let mut parsed = parse_request(r, InputKind::Odk, &cfg.default_lang, &|_| compiles)?;
    parsed.authdata = super::odk::pull(r, cfg).await?;
    svc.submit(parsed, InputKind::Odk).await
}

/// `POST /authtoken/csv` (spec §1.5): multipart with `request` (the envelope as a JSON string)
/// and `csv_file`.
async fn submit_csv(
    State(svc): State<MtsService>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    use axum::extract::FromRequest;
    let missing = || ApiError::req102("invalid input. missing request body");
    // A body over the limit is 413, like the other routes, not a "missing" body.
    let part = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            missing()
        }
    };
    let mut mp = axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|_| missing())?;
    let mut request: Option<String> = None;
    let mut file: Option<Bytes> = None;
    while let Some(field) = mp.next_field().await.map_err(part)? {
        match field.name() {
            Some("request") => request = Some(field.text().await.map_err(part)?),
            Some("csv_file") => file = Some(field.bytes().await.map_err(part)?),
            _ => {}
        }
    }
    let request = request.ok_or_else(missing)?;
    let file = file.ok_or_else(|| ApiError::req102("invalid input. requires CSV file"))?;
    let value: Value =
        serde_json::from_str(&request).map_err(|_| ApiError::structure("Invalid JSON"))?;
    let r = parse_envelope(&value)?;
    let cfg = &svc.inner.cfg;
    let compiles = output_format_compiles(&svc, r).await;
    let mut parsed = parse_request(r, InputKind::Csv, &cfg.default_lang, &|_| compiles)?;
    let mut st = wire::Structural::default();
    let delimiter = st.opt_str(r, "csvDelimiter").unwrap_or_else(|| ",".into());
    st.finish()?;
    parsed.authdata = csv_records(&file, &delimiter)?;
    svc.submit(parsed, InputKind::Csv).await
}

/// The rows of a CSV file as objects keyed by the header (spec §1.5): short rows get `null`,
/// surplus cells are dropped, every value is a string.
pub(crate) fn csv_records(file: &[u8], delimiter: &str) -> Result<Vec<Value>, ApiError> {
    let text = std::str::from_utf8(file)
        .map_err(|_| ApiError::Internal("'utf-8' codec can't decode the CSV file".into()))?;
    let &[d] = delimiter.as_bytes() else {
        return Err(ApiError::Internal(
            "\"delimiter\" must be a 1-character string".into(),
        ));
    };
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(d)
        .from_reader(text.as_bytes());
    let mut rows = rd.records();
    let header: Vec<String> = match rows.next() {
        None => return Ok(Vec::new()),
        Some(h) => h
            .map_err(|e| ApiError::Internal(format!("CSV: {e}")))?
            .iter()
            .map(str::to_owned)
            .collect(),
    };
    let mut out = Vec::new();
    for row in rows {
        let row = row.map_err(|e| ApiError::Internal(format!("CSV: {e}")))?;
        let mut m = serde_json::Map::new();
        for (i, h) in header.iter().enumerate() {
            m.insert(
                h.clone(),
                row.get(i)
                    .map_or(Value::Null, |c| Value::String(c.to_owned())),
            );
        }
        out.push(Value::Object(m));
    }
    Ok(out)
}

impl MtsService {
    /// Validates and maps every record, stores the request and its records, wakes the workers,
    /// and answers (spec §1.4): 200 with the identifier, plus ATS-REQ-101 when nothing is valid.
    pub(crate) async fn submit(
        &self,
        req: SubmitRequest,
        kind: InputKind,
    ) -> Result<Response, ApiError> {
        let cfg = &self.inner.cfg;
        if req.authdata.len() > cfg.max_records {
            return Err(ApiError::req102("invalid input. too many records"));
        }
        let mut records = Vec::with_capacity(req.authdata.len());
        let mut invalid_idx = Vec::new();
        let mut invalid_inputs = Vec::new();
        for (i, rec) in req.authdata.iter().enumerate() {
            match map_record(rec, &req.mapping, &req.lang, cfg) {
                Ok(m) => records.push(NewRecord {
                    received: rec.to_string(),
                    demographics: Some(m.demographics.to_string()),
                    vid: Some(m.vid),
                    status: status::SUBMITTED,
                    error_code: None,
                    error_message: None,
                    result: None,
                }),
                Err((code, msg)) => {
                    let vid = raw_vid(rec);
                    // `output.vid` of an invalid record is `input.vid` as it is (spec §3).
                    let out_vid = rec.get("vid").cloned().unwrap_or(Value::Null);
                    invalid_inputs.push(json!({"input": rec, "output": {
                        "vid": out_vid, "status": status::INVALID, "token": null,
                        "errorCode": code, "errorMessage": msg}}));
                    invalid_idx.push(i);
                    records.push(NewRecord {
                        received: rec.to_string(),
                        demographics: None,
                        vid,
                        status: status::INVALID,
                        error_code: Some(code.into()),
                        error_message: Some(msg.into()),
                        result: None,
                    });
                }
            }
        }
        if !invalid_inputs.is_empty() {
            let results =
                output::format_batch(&self.inner.jq, &req.output_format, invalid_inputs.clone())
                    .await;
            for ((i, res), input) in invalid_idx.iter().zip(results).zip(invalid_inputs) {
                records[*i].result = Some(result_text(res, &input["output"]));
            }
        }
        let all_invalid = invalid_idx.len() == records.len();
        let id = self.new_request_id();
        let row = RequestRow {
            id: id.clone(),
            status: if all_invalid {
                status::SUBMITTED_WITH_ERRORS
            } else {
                status::SUBMITTED
            }
            .into(),
            input_type: match kind {
                InputKind::Csv => "csv",
                // MTS records ODK input as json (spec §5.5).
                InputKind::Json | InputKind::Odk => "json",
            }
            .into(),
            output_type: req.output.as_str().into(),
            delivery_type: req.delivery.as_str().into(),
            output_format: req.output_format.clone(),
            callback_props: req.callback.as_ref().map(Value::to_string),
            number_total: records.len() as i64,
        };
        self.inner.db.insert_request(&row, &records).await?;
        if all_invalid {
            self.finish_ready().await;
        } else {
            self.inner.wake.notify_waiters();
        }
        let response = json!({"request_identifier": id});
        if all_invalid {
            let errors = vec![(
                "ATS-REQ-101".to_owned(),
                "none of the record form a valid request".to_owned(),
            )];
            return Ok(Json(wire::envelope(Some(errors), Some(response))).into_response());
        }
        Ok(ok(response))
    }
}

/// The stored result of a record: the jq result, or on a jq failure the default output
/// (the failure itself is recorded on the record by the worker; see the module doc).
pub(crate) fn result_text(res: Result<Option<Value>, String>, default: &Value) -> String {
    match res {
        Ok(Some(v)) => v.to_string(),
        Ok(None) => "null".into(),
        Err(_) => default.to_string(),
    }
}

async fn status_of(
    State(svc): State<MtsService>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let req = svc.inner.db.request(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(ok(json!({"status": req.status})))
}

/// An addition (MTS has no such route, spec §13 #12): the callback deliveries of a request,
/// one per record (`line`, 1-based) or one bulk delivery (`line` null).
async fn deliveries_of(
    State(svc): State<MtsService>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    svc.inner.db.request(&id).await?.ok_or(ApiError::NotFound)?;
    let rows = svc.inner.db.deliveries(&id).await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({"line": d.line_no, "status": d.status, "attempts": d.attempts,
                   "lastHttpStatus": d.last_status, "lastError": d.last_error})
        })
        .collect();
    Ok(ok(json!({"deliveries": list})))
}

async fn file_of(
    State(svc): State<MtsService>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let req = svc.inner.db.request(&id).await?.ok_or(ApiError::NotFound)?;
    if !req.status.starts_with("processed") {
        return Err(ApiError::NotProcessed);
    }
    let records = svc.inner.db.records(&id).await?;
    let results = results_of(&records);
    Ok(match OutputType::parse(&req.output_type) {
        Some(OutputType::Csv) => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&results, "\r\n"),
        )
            .into_response(),
        _ => (
            [(header::CONTENT_TYPE, "application/json")],
            json_array(&results),
        )
            .into_response(),
    })
}

/// The results of a request's records, in input order.
pub(crate) fn results_of(records: &[RecordRow]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            r.result
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(Value::Null)
        })
        .collect()
}

/// `[` + items joined by `,` + `]`, each item in Python `json.dump` spacing (spec §1.8).
pub(crate) fn json_array(results: &[Value]) -> String {
    let items: Vec<String> = results.iter().map(py_json).collect();
    format!("[{}]", items.join(","))
}

/// CSV as in spec §1.8: header from the first result's keys, strings as they are, null empty,
/// other values as JSON text.
pub(crate) fn to_csv(results: &[Value], eol: &str) -> String {
    let header: Vec<String> = match results.first() {
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let cell = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(results.len() + 1);
    if !header.is_empty() {
        rows.push(header.clone());
    }
    for r in results {
        rows.push(match r {
            Value::Object(m) => m.values().map(cell).collect(),
            other => vec![cell(other)],
        });
    }
    let mut out = String::new();
    for row in rows {
        let quoted: Vec<String> = row
            .iter()
            .map(|c| {
                if c.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", c.replace('"', "\"\""))
                } else {
                    c.clone()
                }
            })
            .collect();
        out.push_str(&quoted.join(","));
        out.push_str(eol);
    }
    out
}
