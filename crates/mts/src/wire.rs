//! The MTS wire format (spec §1): the response envelope, the error type that picks HTTP status
//! and `errors[]`, the request envelope and the `request` object, parsed once into
//! [`SubmitRequest`]. Spelled as MTS spells it; no queue or HTTP routing here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};

pub const ENVELOPE_ID: &str = "mosip.token.seeder";
pub const ENVELOPE_VERSION: &str = "1.1.0";

/// `YYYY-MM-DDTHH:MM:SS.fffZ`, the format of `responsetime` (spec §1.2).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The response envelope of spec §1.2 with a real `responsetime` (MTS freezes it, §13 #7).
pub fn envelope(errors: Option<Vec<(String, String)>>, response: Option<Value>) -> Value {
    envelope_version(ENVELOPE_VERSION, errors, response)
}

/// The envelope with another `version` (sync-mode answers carry the model default `1.0`).
pub fn envelope_version(
    version: &str,
    errors: Option<Vec<(String, String)>>,
    response: Option<Value>,
) -> Value {
    let errors = errors.map(|es| {
        es.into_iter()
            .map(|(c, m)| json!({"errorCode": c, "errorMessage": m}))
            .collect::<Vec<_>>()
    });
    json!({
        "id": ENVELOPE_ID,
        "version": version,
        "metadata": {},
        "responsetime": format_time(Utc::now()),
        "errors": errors,
        "response": response,
    })
}

pub fn ok(response: Value) -> Response {
    (StatusCode::OK, axum::Json(envelope(None, Some(response)))).into_response()
}

/// Every error MTS answers with (spec §1.3 and §1.9). The variant chooses the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400, one entry.
    #[error("{0}: {1}")]
    Business(&'static str, String),
    /// 422, one `ATS-REQ-102` entry per structural error, each `Invalid Input. <msg>`.
    #[error("invalid input: {0:?}")]
    Structure(Vec<String>),
    /// 404 `ATS-REQ-016`.
    #[error("no auth request found")]
    NotFound,
    /// 202 `ATS-REQ-017`.
    #[error("not processed yet")]
    NotProcessed,
    /// 500 `ATS-REQ-100` (or the code before `::`).
    #[error("internal: {0}")]
    Internal(String),
    /// 413 `ATS-REQ-102` (a size limit of ours; MTS has none).
    #[error("request too large")]
    TooLarge,
}

impl ApiError {
    pub fn req102(msg: &str) -> Self {
        Self::Business("ATS-REQ-102", msg.to_owned())
    }
    pub fn structure(msg: &str) -> Self {
        Self::Structure(vec![msg.to_owned()])
    }
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Business(..) => StatusCode::BAD_REQUEST,
            Self::Structure(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::NotProcessed => StatusCode::ACCEPTED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
    pub fn entries(&self) -> Vec<(String, String)> {
        match self {
            Self::Business(c, m) => vec![((*c).to_owned(), m.clone())],
            Self::Structure(ms) => ms
                .iter()
                .map(|m| ("ATS-REQ-102".to_owned(), format!("Invalid Input. {m}")))
                .collect(),
            Self::NotFound => vec![(
                "ATS-REQ-016".into(),
                "no auth request found for the given identifier".into(),
            )],
            Self::NotProcessed => {
                vec![(
                    "ATS-REQ-017".into(),
                    "Auth request not processed yet".into(),
                )]
            }
            Self::TooLarge => vec![(
                "ATS-REQ-102".into(),
                "invalid input. request too large".into(),
            )],
            Self::Internal(m) => match m.split_once("::") {
                Some((c, rest)) => vec![(c.to_owned(), rest.to_owned())],
                None => vec![("ATS-REQ-100".into(), m.clone())],
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(m) = &self {
            tracing::error!(error = %m, "mts: internal error");
        }
        (
            self.status(),
            axum::Json(envelope(Some(self.entries()), None)),
        )
            .into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(format!("database error: {e}"))
    }
}

/// `requesttime` must be a date, `T`, a time, `.`, 1 to 6 fractional digits and `Z` (spec §1.1).
pub fn valid_requesttime(s: &str) -> bool {
    let Some(body) = s.strip_suffix('Z') else {
        return false;
    };
    let Some((main, frac)) = body.split_once('.') else {
        return false;
    };
    if frac.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    main.len() == 19 && NaiveDateTime::parse_from_str(main, "%Y-%m-%dT%H:%M:%S").is_ok()
}

/// Python's `str()` of a JSON scalar, which is what pydantic v1 makes of a non-string given
/// for a `str` field (`5` → `"5"`, `1.5` → `"1.5"`, `false` → `"False"`).
pub fn py_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(if n.is_f64() {
            py_float(n.as_f64()?)
        } else {
            n.to_string()
        }),
        _ => None,
    }
}

/// Python's `str(float(x))`, used for numeric vids (spec §2.2: `4088800261` → `"4088800261.0"`).
pub fn py_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// JSON the way Python's `json.dumps` writes it by default: `", "` and `": "` separators and
/// non-ASCII as `\uXXXX` (spec §1.8).
pub fn py_json(v: &Value) -> String {
    let mut out = String::new();
    write_py(v, &mut out);
    out
}

fn write_py(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_str(k, out);
                out.push_str(": ");
                write_py(x, out);
            }
            out.push('}');
        }
        Value::String(s) => write_py_str(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_py_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    Json,
    Csv,
}

impl OutputType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryType {
    Download,
    Callback,
}

impl DeliveryType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Callback => "callback",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "download" => Some(Self::Download),
            "callback" => Some(Self::Callback),
            _ => None,
        }
    }
}

/// `mapping` (spec §1.4): jq paths without their leading dot; every key defaults to its name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mapping {
    pub vid: String,
    pub name: Vec<String>,
    pub gender: String,
    pub dob: String,
    #[serde(rename = "phoneNumber")]
    pub phone_number: String,
    #[serde(rename = "emailId")]
    pub email_id: String,
    #[serde(rename = "fullAddress")]
    pub full_address: Vec<String>,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            vid: "vid".into(),
            name: vec!["name".into()],
            gender: "gender".into(),
            dob: "dob".into(),
            phone_number: "phoneNumber".into(),
            email_id: "emailId".into(),
            full_address: vec!["fullAddress".into()],
        }
    }
}

/// The `request` object of the three POST routes, parsed and validated (spec §1.4, §4.2).
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub output: OutputType,
    pub delivery: DeliveryType,
    pub mapping: Mapping,
    pub lang: String,
    /// The jq program; empty means `.output`.
    pub output_format: String,
    /// Validated `callbackProperties`, kept as received (minus unknown keys is not needed:
    /// delivery reads only known keys). `None` unless `deliverytype` is `callback`.
    pub callback: Option<Value>,
    pub authdata: Vec<Value>,
}

/// Which input route: JSON carries `authdata`; CSV and ODK supply the records themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Json,
    Csv,
    Odk,
}

/// Collects pydantic-style structural errors (422) while walking a JSON object.
#[derive(Default)]
pub(crate) struct Structural {
    pub errors: Vec<String>,
}

impl Structural {
    /// A required `str` field: absent → `field required`, null → `none is not an allowed value`,
    /// object or array → `str type expected`; scalars are coerced as pydantic v1 does.
    pub fn req_str(&mut self, m: &Map<String, Value>, key: &str) -> Option<String> {
        match m.get(key) {
            None => {
                self.errors.push("field required".into());
                None
            }
            Some(Value::Null) => {
                self.errors.push("none is not an allowed value".into());
                None
            }
            Some(v) => self.coerce_str(v),
        }
    }
    /// An optional `str` field: absent or null → `None`.
    pub fn opt_str(&mut self, m: &Map<String, Value>, key: &str) -> Option<String> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.coerce_str(v),
        }
    }
    fn coerce_str(&mut self, v: &Value) -> Option<String> {
        let s = py_str(v);
        if s.is_none() {
            self.errors.push("str type expected".into());
        }
        s
    }
    pub fn opt_obj<'a>(
        &mut self,
        m: &'a Map<String, Value>,
        key: &str,
    ) -> Option<&'a Map<String, Value>> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => Some(o),
            Some(_) => {
                self.errors.push("value is not a valid dict".into());
                None
            }
        }
    }
    pub fn opt_str_list(&mut self, m: &Map<String, Value>, key: &str) -> Option<Vec<String>> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for it in items {
                    match it {
                        Value::Null => self.errors.push("none is not an allowed value".into()),
                        v => out.extend(self.coerce_str(v)),
                    }
                }
                Some(out)
            }
            Some(_) => {
                self.errors.push("value is not a valid list".into());
                None
            }
        }
    }
    pub fn opt_bool(&mut self, m: &Map<String, Value>, key: &str) -> Option<bool> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::Number(n)) if n.as_i64() == Some(0) => Some(false),
            Some(Value::Number(n)) if n.as_i64() == Some(1) => Some(true),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
                "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
                _ => {
                    self.errors
                        .push("value could not be parsed to a boolean".into());
                    None
                }
            },
            Some(_) => {
                self.errors
                    .push("value could not be parsed to a boolean".into());
                None
            }
        }
    }
    pub fn opt_int(&mut self, m: &Map<String, Value>, key: &str) -> Option<i64> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(Value::Number(n)) => n.as_f64().map(|f| f.trunc() as i64),
            Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            Some(_) => {
                self.errors.push("value is not a valid integer".into());
                None
            }
        }
    }
    /// A required URL: absent → `field required`; no scheme → `invalid or missing URL scheme`.
    pub fn req_url(&mut self, m: &Map<String, Value>, key: &str) -> Option<String> {
        let s = self.req_str(m, key)?;
        self.check_url(&s).then_some(s)
    }
    pub fn check_url(&mut self, s: &str) -> bool {
        if s.is_empty() {
            self.errors
                .push("ensure this value has at least 1 characters".into());
            return false;
        }
        match reqwest::Url::parse(s) {
            Ok(_) => true,
            Err(_) => {
                self.errors.push("invalid or missing URL scheme".into());
                false
            }
        }
    }
    pub fn finish(&mut self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Structure(std::mem::take(&mut self.errors)))
        }
    }
}

/// `mapping` (spec §1.4): every key optional, defaulting to its own name.
pub(crate) fn parse_mapping(r: &Map<String, Value>, st: &mut Structural) -> Mapping {
    let mut mapping = Mapping::default();
    if let Some(m) = st.opt_obj(r, "mapping") {
        if let Some(v) = st.opt_str(m, "vid") {
            mapping.vid = v;
        }
        if let Some(v) = st.opt_str_list(m, "name") {
            mapping.name = v;
        }
        if let Some(v) = st.opt_str(m, "gender") {
            mapping.gender = v;
        }
        if let Some(v) = st.opt_str(m, "dob") {
            mapping.dob = v;
        }
        if let Some(v) = st.opt_str(m, "phoneNumber") {
            mapping.phone_number = v;
        }
        if let Some(v) = st.opt_str(m, "emailId") {
            mapping.email_id = v;
        }
        if let Some(v) = st.opt_str_list(m, "fullAddress") {
            mapping.full_address = v;
        }
    }
    mapping
}

/// Parses the `request` object of sync mode (spec §4.6): `{mapping, lang, authdata: {..}}`.
pub fn parse_sync_request(
    r: &Map<String, Value>,
    default_lang: &str,
) -> Result<(Mapping, String, Value), ApiError> {
    let mut st = Structural::default();
    let mapping = parse_mapping(r, &mut st);
    let lang = st
        .opt_str(r, "lang")
        .unwrap_or_else(|| default_lang.to_owned());
    let record = match r.get("authdata") {
        None => {
            st.errors.push("field required".into());
            None
        }
        Some(Value::Object(o)) => Some(Value::Object(o.clone())),
        Some(_) => {
            st.errors.push("value is not a valid dict".into());
            None
        }
    };
    st.finish()?;
    let record = record.ok_or_else(|| ApiError::structure("field required"))?;
    Ok((mapping, lang, record))
}

/// Parses the envelope of spec §1.1. `body` is the raw JSON value. Checks run in the order of
/// the pydantic model's fields; a business (400) check fails at once, like MTS's validators
/// that raise, while structural (422) errors are collected.
pub fn parse_envelope(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    let Value::Object(env) = body else {
        return Err(ApiError::structure("value is not a valid dict"));
    };
    let mut st = Structural::default();
    st.req_str(env, "id");
    st.req_str(env, "version");
    st.req_str(env, "metadata");
    if let Some(rt) = st.req_str(env, "requesttime")
        && !valid_requesttime(&rt)
    {
        return Err(ApiError::req102(
            "invalid input. requesttime is not in valid format",
        ));
    }
    let request = match env.get("request") {
        None => {
            st.errors.push("field required".into());
            None
        }
        Some(Value::Object(r)) => Some(r),
        Some(Value::Null) => {
            st.errors.push("none is not an allowed value".into());
            None
        }
        Some(_) => {
            st.errors.push("value is not a valid dict".into());
            None
        }
    };
    st.finish()?;
    request.ok_or_else(|| ApiError::structure("field required"))
}

/// Parses the `request` object (spec §1.4, §4.2). For CSV and ODK input `authdata` is not read
/// (the caller supplies the records). `compile` checks an `outputFormat` program.
pub fn parse_request(
    r: &Map<String, Value>,
    kind: InputKind,
    default_lang: &str,
    compile: &dyn Fn(&str) -> bool,
) -> Result<SubmitRequest, ApiError> {
    let mut st = Structural::default();
    let output = st.req_str(r, "output");
    let output = match output {
        Some(s) if s.is_empty() => {
            return Err(ApiError::req102(
                "invalid input. output type is not mentioned",
            ));
        }
        Some(s) => Some(
            OutputType::parse(&s)
                .ok_or_else(|| ApiError::req102("invalid input. output type is not supported"))?,
        ),
        None => None,
    };
    let delivery = match st.req_str(r, "deliverytype") {
        Some(s) if s.is_empty() => {
            return Err(ApiError::req102(
                "invalid input. delivery type is not mentioned",
            ));
        }
        Some(s) => Some(
            DeliveryType::parse(&s)
                .ok_or_else(|| ApiError::req102("invalid input. delivery type is not supported"))?,
        ),
        None => None,
    };
    let mapping = parse_mapping(r, &mut st);
    let lang = st
        .opt_str(r, "lang")
        .unwrap_or_else(|| default_lang.to_owned());
    let output_format = st.opt_str(r, "outputFormat").unwrap_or_default();
    if !output_format.trim().is_empty() && !compile(&output_format) {
        return Err(ApiError::Business(
            "ATS-REQ-103",
            "outputFormat is not a valid jq expression".into(),
        ));
    }
    let callback = if delivery == Some(DeliveryType::Callback) {
        let props = st.opt_obj(r, "callbackProperties");
        match props {
            None if st.errors.is_empty() => {
                return Err(ApiError::Business(
                    "ATS-REQ-024",
                    "callbackProperties cannot be empty for deliverytype callback".into(),
                ));
            }
            None => None,
            Some(p) => Some(parse_callback(p, output, &mut st)?),
        }
    } else {
        None
    };
    let authdata = if kind == InputKind::Json {
        match r.get("authdata") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                for it in items {
                    if !it.is_object() {
                        st.errors.push("value is not a valid dict".into());
                    }
                }
                Some(items.clone())
            }
            Some(_) => {
                st.errors.push("value is not a valid list".into());
                None
            }
        }
    } else {
        Some(Vec::new())
    };
    st.finish()?;
    let (Some(output), Some(delivery)) = (output, delivery) else {
        return Err(ApiError::structure("field required"));
    };
    let authdata = match authdata {
        Some(a) if !a.is_empty() || kind != InputKind::Json => a,
        _ => return Err(ApiError::req102("invalid input. authdata missing")),
    };
    Ok(SubmitRequest {
        output,
        delivery,
        mapping,
        lang,
        output_format,
        callback,
        authdata,
    })
}

/// Validates `callbackProperties` (spec §4.2, codes ATS-REQ-025…034) and returns it with its
/// defaults filled in.
fn parse_callback(
    p: &Map<String, Value>,
    output: Option<OutputType>,
    st: &mut Structural,
) -> Result<Value, ApiError> {
    let url = st.req_url(p, "url");
    let method = st.opt_str(p, "httpMethod").unwrap_or_else(|| "POST".into());
    let mut extra = Map::new();
    if let Some(h) = st.opt_obj(p, "extraHeaders") {
        for (k, v) in h {
            if let Some(s) = st.opt_str(h, k) {
                extra.insert(k.clone(), Value::String(s));
            } else if v.is_null() {
                st.errors.push("none is not an allowed value".into());
            }
        }
    }
    let timeout = st.opt_int(p, "timeoutSeconds").unwrap_or(10);
    let bulk = st.opt_bool(p, "callInBulk").unwrap_or(false);
    let file_name = st.opt_str(p, "requestFileName").unwrap_or_default();
    if output == Some(OutputType::Csv) {
        if !bulk {
            return Err(ApiError::Business(
                "ATS-REQ-026",
                "callInBulk cannot be false for csv output".into(),
            ));
        }
        if file_name.is_empty() {
            return Err(ApiError::Business(
                "ATS-REQ-025",
                "requestFileName is not valid in callbackProperties".into(),
            ));
        }
    }
    let auth_type = match p.get("authType") {
        None => "none".to_owned(),
        Some(v) => py_str(v).unwrap_or_default(),
    };
    let unsupported = || {
        ApiError::Business(
            "ATS-REQ-027",
            "unsupported authType in CallbackProperties".into(),
        )
    };
    if p.get("authType")
        .is_some_and(|v| v.is_null() || v == &Value::Bool(false))
    {
        return Err(unsupported());
    }
    let mut out = json!({
        "url": url, "httpMethod": method, "extraHeaders": extra, "timeoutSeconds": timeout,
        "callInBulk": bulk, "requestFileName": file_name, "authType": auth_type,
    });
    match auth_type.as_str() {
        "none" => {}
        "odoo" => {
            let Some(o) = st.opt_obj(p, "authOdoo") else {
                return Err(ApiError::Business(
                    "ATS-REQ-028",
                    "authOdoo cannot be empty for authType odoo".into(),
                ));
            };
            let auth_url = st.req_str(o, "authUrl");
            if auth_url.as_deref() == Some("") {
                return Err(ApiError::Business(
                    "ATS-REQ-031",
                    "authUrl in authOdoo, cannot be empty for authType odoo".into(),
                ));
            }
            if let Some(u) = &auth_url {
                st.check_url(u);
            }
            let username = st.req_str(o, "username");
            if username.as_deref() == Some("") {
                return Err(ApiError::Business(
                    "ATS-REQ-032",
                    "username in authOdoo, cannot be empty for authType odoo".into(),
                ));
            }
            let database = st.req_str(o, "database");
            if database.as_deref() == Some("") {
                return Err(ApiError::Business(
                    "ATS-REQ-033",
                    "database in authOdoo, cannot be empty for authType odoo".into(),
                ));
            }
            let password = st.req_str(o, "password");
            let extra = st.opt_obj(o, "extraHeaders").cloned().unwrap_or_default();
            out["authOdoo"] = json!({"authUrl": auth_url, "username": username,
                "database": database, "password": password, "extraHeaders": extra});
        }
        "oauth" => {
            let Some(o) = st.opt_obj(p, "authOauth") else {
                return Err(ApiError::Business(
                    "ATS-REQ-029",
                    "authOauth cannot be empty for authType oauth".into(),
                ));
            };
            let auth_url = st.opt_str(o, "authUrl");
            if let Some(u) = &auth_url {
                st.check_url(u);
            }
            let mut a = json!({"authUrl": auth_url});
            for k in ["username", "password", "clientId", "clientSecret"] {
                a[k] = Value::String(st.opt_str(o, k).unwrap_or_default());
            }
            a["extraHeaders"] =
                Value::Object(st.opt_obj(o, "extraHeaders").cloned().unwrap_or_default());
            out["authOauth"] = a;
        }
        "staticBearer" => {
            let Some(o) = st.opt_obj(p, "authStaticBearer") else {
                return Err(ApiError::Business(
                    "ATS-REQ-030",
                    "authStaticBearer cannot be empty for authType staticBearer".into(),
                ));
            };
            let token = st.req_str(o, "token");
            if token.as_deref() == Some("") {
                return Err(ApiError::Business(
                    "ATS-REQ-034",
                    "token in authStaticBearer cannot be empty for authType staticBearer".into(),
                ));
            }
            out["authStaticBearer"] = json!({"token": token});
        }
        _ => return Err(unsupported()),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requesttime_formats() {
        assert!(valid_requesttime("2024-01-01T10:00:00.000Z"));
        assert!(valid_requesttime("2024-01-01T10:00:00.1Z"));
        assert!(valid_requesttime("2024-01-01T10:00:00.123456Z"));
        assert!(!valid_requesttime("2024-01-01T10:00:00Z"));
        assert!(!valid_requesttime("2024-01-01T10:00:00.1234567Z"));
        assert!(!valid_requesttime("2024-01-01T10:00:00.000"));
        assert!(!valid_requesttime("2024-13-01T10:00:00.000Z"));
        assert!(!valid_requesttime("2024-01-01 10:00:00.000Z"));
    }

    #[test]
    fn python_json_spacing_and_ascii() {
        let v = json!([{"a": 1, "b": "é"}, null]);
        assert_eq!(py_json(&v), r#"[{"a": 1, "b": "\u00e9"}, null]"#);
        assert_eq!(py_float(4088800261.0), "4088800261.0");
    }
}
