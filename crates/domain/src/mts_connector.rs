//! MTS connectors: the configuration of a job that sends registrants (or ODK submissions) to
//! MOSIP Token Seeder (MTS) and receives the tokens back by callback.
//!
//! The settings mirror OpenG2P's `mts.connector` (see `openg2p-mts-connector.md` §1.2), with the
//! improvements of its §7: the default mapping matches the default field list, callbacks must
//! be authenticated, the whole configuration (jq output format, filter, mapping, URLs) is
//! validated when it is saved, and secrets are kept apart from the settings document.
//!
//! # Mapping
//! MTS reads each mapping value as a jq path written without its leading dot (`mts-api.md`
//! §2.1). `name` and `fullAddress` are arrays of paths (MTS answers 422 to a string there); the
//! other keys are single paths. Paths are accepted only as dot-separated jq identifiers
//! (`[A-Za-z_][A-Za-z0-9_]*`): MTS silently treats a segment containing `-` or starting with a
//! digit as absent, which would fail every record.
//!
//! For registry input, each record sent to MTS holds the connector's `fields` plus `vid`, with
//! the `attributes.<key>` fields nested as `{"attributes": {"<key>": …}}`, so a mapping path
//! must be `vid`, a listed column, or a path inside a listed `attributes.<key>`.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::FieldErrors;
use crate::filter::Domain;

/// The in-cluster MTS service, as OpenG2P defaults it.
pub const DEFAULT_MTS_URL: &str = "http://mosip-token-seeder.mosip-token-seeder";

/// Registrant fields sent to MTS by default; [`default_mapping`] refers only to these.
pub const DEFAULT_FIELDS: &[&str] = &[
    "given_name",
    "family_name",
    "birthdate",
    "gender",
    "address",
    "email",
    "phone",
];

/// The jq program applied by MTS to each `{input, output}` record when `output_format` is empty.
pub const DEFAULT_OUTPUT_FORMAT: &str = "{ref: .input.ref, status: .output.status, token: .output.token, errorCode: .output.errorCode, errorMessage: .output.errorMessage}";

/// ODK input: a submission's result as the registrant document the receiver creates or updates
/// (see `docs/odk-connector.md`). It suits a form whose fields are named like the registrant's
/// (`given_name`, `family_name`, `gender`, `birthdate`, `address`, `phone`, `email`, `vid`).
pub const DEFAULT_ODK_OUTPUT_FORMAT: &str = "{instance_id: .input.__id, submission_date: .input.__system.submissionDate, status: .output.status, token: .output.token, errorCode: .output.errorCode, errorMessage: .output.errorMessage, vid: .input.vid, registrant: {given_name: .input.given_name, family_name: .input.family_name, gender: .input.gender, birthdate: .input.birthdate, address: .input.address, email: .input.email, phone_numbers: (if .input.phone then [{phone_no: .input.phone}] else [] end)}}";

/// Keys of a callback document that are the connector's own; every other key is an extra field
/// the operator's output format added (stored in the registrant's attributes).
pub const CALLBACK_KEYS: &[&str] = &["ref", "status", "token", "errorCode", "errorMessage"];

/// Fields a registry connector may list: registrant columns, plus "attributes.<key>" paths.
pub const REGISTRANT_FIELDS: &[&str] = &[
    "name",
    "given_name",
    "family_name",
    "addl_name",
    "gender",
    "birthdate",
    "birth_place",
    "address",
    "phone",
    "email",
    "registration_date",
    "external_key",
    "is_group",
];

/// The keys MTS reads from `mapping` (`GET /authtoken/authfields`).
pub const MAPPING_KEYS: &[&str] = &[
    "vid",
    "name",
    "gender",
    "dob",
    "phoneNumber",
    "emailId",
    "fullAddress",
];

/// Mapping keys whose value is an array of paths (joined by MTS); the others are one path.
const MAPPING_LIST_KEYS: &[&str] = &["name", "fullAddress"];

pub const MAX_CONNECTOR_NAME_LEN: usize = 100;
pub const MAX_URL_LEN: usize = 2000;
/// Longest `output_format` (the same bound as the MTS simulator's).
pub const MAX_OUTPUT_FORMAT_LEN: usize = 16 * 1024;
/// Longest mapping path, ID type name, Odoo database or user name, ODK form id or email.
pub const MAX_SHORT_TEXT_LEN: usize = 200;
/// A year, in minutes: the longest recurring interval and ODK window overlap.
pub const MAX_INTERVAL_MINUTES: u32 = 527_040;
pub const MAX_CALLBACK_TIMEOUT_SECONDS: u32 = 300;
pub const MAX_CHUNK_SIZE: u32 = 10_000;
pub const MAX_RETRY_ATTEMPTS: u32 = 100;
/// A week, in minutes.
pub const MAX_RETRY_BACKOFF_MINUTES: u32 = 10_080;
pub const MIN_CALLBACK_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 200;

/// `{"vid":"vid","name":["given_name","family_name"],"gender":"gender","dob":"birthdate",
/// "phoneNumber":"phone","emailId":"email","fullAddress":["address"]}`: MTS's keys mapped onto
/// [`DEFAULT_FIELDS`].
pub fn default_mapping() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("vid".into(), Value::from("vid"));
    m.insert(
        "name".into(),
        Value::from(vec!["given_name", "family_name"]),
    );
    m.insert("gender".into(), Value::from("gender"));
    m.insert("dob".into(), Value::from("birthdate"));
    m.insert("phoneNumber".into(), Value::from("phone"));
    m.insert("emailId".into(), Value::from("email"));
    m.insert("fullAddress".into(), Value::from(vec!["address"]));
    m
}

// ---------------------------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------------------------

/// Where the records come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// This registry's registrants (OpenG2P's "custom" input), posted to `/authtoken/json`.
    #[default]
    Registry,
    /// ODK Central submissions, pulled by MTS through `/authtoken/odk`.
    Odk,
}

impl InputType {
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::Registry => "registry",
            InputType::Odk => "odk",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "registry" => Some(InputType::Registry),
            "odk" => Some(InputType::Odk),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// Runs every `interval_minutes`.
    Recurring,
    /// Runs once when started.
    #[default]
    OneTime,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Recurring => "recurring",
            JobType::OneTime => "one_time",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "recurring" => Some(JobType::Recurring),
            "one_time" => Some(JobType::OneTime),
            _ => None,
        }
    }
}

/// How MTS authenticates its callbacks (MTS's `authType` names). MTS's `none` is refused and
/// `oauth` is not offered (MTS's OAuth callbacks are broken, `mts-api.md` §13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum CallbackAuthType {
    /// `authOdoo`: MTS logs in with database, user name and password first.
    Odoo,
    /// `authStaticBearer`: MTS sends `Authorization: Bearer <callback password>`.
    #[default]
    StaticBearer,
}

impl CallbackAuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackAuthType::Odoo => "odoo",
            CallbackAuthType::StaticBearer => "staticBearer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "odoo" => Some(CallbackAuthType::Odoo),
            "staticBearer" => Some(CallbackAuthType::StaticBearer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum CallbackHttpMethod {
    #[default]
    Post,
    Put,
    Get,
    Patch,
}

impl CallbackHttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackHttpMethod::Post => "POST",
            CallbackHttpMethod::Put => "PUT",
            CallbackHttpMethod::Get => "GET",
            CallbackHttpMethod::Patch => "PATCH",
        }
    }

    /// Case-insensitive, like MTS.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "POST" => Some(CallbackHttpMethod::Post),
            "PUT" => Some(CallbackHttpMethod::Put),
            "GET" => Some(CallbackHttpMethod::Get),
            "PATCH" => Some(CallbackHttpMethod::Patch),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/// When records that MTS reported as failed are sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct FailedRetry {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the next attempt.
    pub backoff_minutes: u32,
}

impl Default for FailedRetry {
    fn default() -> Self {
        FailedRetry {
            max_attempts: 3,
            backoff_minutes: 60,
        }
    }
}

/// Everything but the name and the secrets; stored as one JSON document. Missing keys take
/// their defaults when the document is read, so settings added later load from old documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct MtsConnectorSettings {
    /// MTS base URL; the client appends `/authtoken/{json|odk}`.
    pub mts_url: String,
    pub input_type: InputType,
    /// MTS `mapping`: key → jq path (`name`, `fullAddress`: arrays of paths).
    #[schema(value_type = Object)]
    pub mapping: Map<String, Value>,
    /// MTS `output`: only "json".
    pub output_type: String,
    /// MTS `outputFormat` (jq); "" means [`DEFAULT_OUTPUT_FORMAT`].
    pub output_format: String,
    /// MTS `deliverytype`: only "callback".
    pub delivery_type: String,
    pub job_type: JobType,
    /// MTS `lang`: a 3-letter language code.
    pub lang: String,
    /// Minutes between runs of a recurring job.
    pub interval_minutes: u32,
    /// Registry input: which registrants to send, as an Odoo domain (JSON array).
    pub filter: Value,
    /// Registry input: the registrant fields sent to MTS (besides `vid`).
    pub fields: Vec<String>,
    /// Where MTS sends the results.
    pub callback_url: String,
    pub callback_http_method: CallbackHttpMethod,
    pub callback_timeout_seconds: u32,
    pub callback_auth_type: CallbackAuthType,
    /// Odoo auth: the database name sent to the login URL.
    pub callback_auth_database: String,
    /// Odoo auth: the user name.
    pub callback_auth_username: String,
    /// Registry input: records per MTS request.
    pub chunk_size: u32,
    /// MTS `callInBulk`: one callback per request rather than one per record.
    pub call_in_bulk: bool,
    /// The ID type holding the VID sent to MTS.
    pub vid_id_type: String,
    /// The ID type the token is stored as.
    pub token_id_type: String,
    /// Delete the VID once its token is stored.
    pub remove_vid: bool,
    pub failed_retry: FailedRetry,
    /// ODK Central base URL, scheme included.
    pub odk_base_url: String,
    /// OData Submissions URL; when empty MTS builds it from project and form.
    pub odk_odata_url: String,
    pub odk_project_id: Option<u64>,
    pub odk_form_id: String,
    pub odk_email: String,
    /// Start of the (first) submission window.
    pub odk_start: Option<DateTime<Utc>>,
    /// End of a one-time job's submission window.
    pub odk_end: Option<DateTime<Utc>>,
    /// Minutes each recurring window reaches back before the previous one's end.
    pub odk_overlap_minutes: u32,
    /// ODK input: a submission whose authentication failed is held for review instead of
    /// becoming a registrant with its VID kept.
    pub odk_hold_failed: bool,
}

impl Default for MtsConnectorSettings {
    fn default() -> Self {
        MtsConnectorSettings {
            mts_url: DEFAULT_MTS_URL.to_owned(),
            input_type: InputType::Registry,
            mapping: default_mapping(),
            output_type: "json".to_owned(),
            output_format: String::new(),
            delivery_type: "callback".to_owned(),
            job_type: JobType::OneTime,
            lang: "eng".to_owned(),
            interval_minutes: 1440,
            filter: Value::Array(Vec::new()),
            fields: DEFAULT_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
            callback_url: String::new(),
            callback_http_method: CallbackHttpMethod::Post,
            callback_timeout_seconds: 10,
            callback_auth_type: CallbackAuthType::StaticBearer,
            callback_auth_database: "g2p".to_owned(),
            callback_auth_username: "mts".to_owned(),
            chunk_size: 1000,
            call_in_bulk: true,
            vid_id_type: "MOSIP VID".to_owned(),
            token_id_type: "MOSIP AUTH TOKEN".to_owned(),
            remove_vid: true,
            failed_retry: FailedRetry::default(),
            odk_base_url: String::new(),
            odk_odata_url: String::new(),
            odk_project_id: None,
            odk_form_id: String::new(),
            odk_email: String::new(),
            odk_start: None,
            odk_end: None,
            odk_overlap_minutes: 10,
            odk_hold_failed: false,
        }
    }
}

impl MtsConnectorSettings {
    /// The jq program MTS is given: `output_format`, or the input type's default
    /// ([`DEFAULT_OUTPUT_FORMAT`], [`DEFAULT_ODK_OUTPUT_FORMAT`]) when empty.
    pub fn effective_output_format(&self) -> &str {
        match (self.output_format.trim().is_empty(), self.input_type) {
            (false, _) => &self.output_format,
            (true, InputType::Registry) => DEFAULT_OUTPUT_FORMAT,
            (true, InputType::Odk) => DEFAULT_ODK_OUTPUT_FORMAT,
        }
    }

    /// Checks every setting (as [`MtsConnectorInput::parse`] does after merging), e.g. for a
    /// document read back from storage. Secrets are not part of the settings and not checked.
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        validate_settings(self, &Unparsed::default(), &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

/// `failed_retry` in a create or update body; an absent value keeps the current one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailedRetryInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_minutes: Option<u32>,
}

/// Create or update body (all optional; update = PATCH semantics over the existing settings).
/// Enumerations, dates and the JSON-valued settings are taken loosely (strings, any JSON) so
/// that a wrong value is a field error rather than a rejected body. Its `Debug` redacts the
/// passwords; serialising it (to send it as a body) includes them.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MtsConnectorInput {
    /// Required on create; 1 to 100 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mts_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<InputType>)]
    pub input_type: Option<String>,
    /// JSON object: MTS mapping key → jq path, or array of paths for `name` and `fullAddress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub mapping: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<JobType>)]
    pub job_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_minutes: Option<u32>,
    /// Odoo domain (JSON array).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub filter: Option<Value>,
    /// JSON array of field names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub fields: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<CallbackHttpMethod>)]
    pub callback_http_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<CallbackAuthType>)]
    pub callback_auth_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_auth_database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_auth_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_in_bulk: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vid_id_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_vid: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_retry: Option<FailedRetryInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odk_base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odk_odata_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odk_project_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odk_form_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odk_email: Option<String>,
    /// RFC 3339 date-time; "" clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odk_start: Option<String>,
    /// RFC 3339 date-time; "" clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odk_end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odk_overlap_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odk_hold_failed: Option<bool>,
    /// Odoo password, or the static bearer token; 12 to 200 characters. Absent keeps the
    /// stored one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_password: Option<String>,
    /// ODK Central password; 1 to 200 characters. Absent keeps the stored one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odk_password: Option<String>,
}

fn redact(s: &Option<String>) -> Option<&'static str> {
    s.as_ref().map(|_| "[redacted]")
}

impl std::fmt::Debug for MtsConnectorInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtsConnectorInput")
            .field("name", &self.name)
            .field("mts_url", &self.mts_url)
            .field("input_type", &self.input_type)
            .field("mapping", &self.mapping)
            .field("output_type", &self.output_type)
            .field("output_format", &self.output_format)
            .field("delivery_type", &self.delivery_type)
            .field("job_type", &self.job_type)
            .field("lang", &self.lang)
            .field("interval_minutes", &self.interval_minutes)
            .field("filter", &self.filter)
            .field("fields", &self.fields)
            .field("callback_url", &self.callback_url)
            .field("callback_http_method", &self.callback_http_method)
            .field("callback_timeout_seconds", &self.callback_timeout_seconds)
            .field("callback_auth_type", &self.callback_auth_type)
            .field("callback_auth_database", &self.callback_auth_database)
            .field("callback_auth_username", &self.callback_auth_username)
            .field("chunk_size", &self.chunk_size)
            .field("call_in_bulk", &self.call_in_bulk)
            .field("vid_id_type", &self.vid_id_type)
            .field("token_id_type", &self.token_id_type)
            .field("remove_vid", &self.remove_vid)
            .field("failed_retry", &self.failed_retry)
            .field("odk_base_url", &self.odk_base_url)
            .field("odk_odata_url", &self.odk_odata_url)
            .field("odk_project_id", &self.odk_project_id)
            .field("odk_form_id", &self.odk_form_id)
            .field("odk_email", &self.odk_email)
            .field("odk_start", &self.odk_start)
            .field("odk_end", &self.odk_end)
            .field("odk_overlap_minutes", &self.odk_overlap_minutes)
            .field("odk_hold_failed", &self.odk_hold_failed)
            .field("callback_password", &redact(&self.callback_password))
            .field("odk_password", &redact(&self.odk_password))
            .finish()
    }
}

/// The secrets of a create or update body; `None` means "not given" (keep the stored one, or
/// none on create). Its `Debug` shows only whether each one is present.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MtsConnectorSecrets {
    /// Odoo password, or the static bearer token MTS sends with its callbacks.
    pub callback_password: Option<String>,
    /// ODK Central password.
    pub odk_password: Option<String>,
}

impl std::fmt::Debug for MtsConnectorSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtsConnectorSecrets")
            .field("callback_password", &redact(&self.callback_password))
            .field("odk_password", &redact(&self.odk_password))
            .finish()
    }
}

/// Input values that could not be read (already reported); the checks that depend on them are
/// skipped so that one mistake does not cascade into unrelated errors.
#[derive(Debug, Default)]
struct Unparsed {
    input_type: bool,
    job_type: bool,
    auth_type: bool,
    mapping: bool,
    fields: bool,
    odk_window: bool,
}

fn trimmed(s: String) -> String {
    let t = s.trim();
    if t.len() == s.len() { s } else { t.to_owned() }
}

fn parse_datetime(
    errors: &mut FieldErrors,
    field: &str,
    v: &str,
) -> Result<Option<DateTime<Utc>>, ()> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    match DateTime::parse_from_rfc3339(v) {
        Ok(d) => Ok(Some(d.with_timezone(&Utc))),
        Err(_) => {
            errors.add(
                field,
                "must be an RFC 3339 date-time, e.g. 2024-01-31T00:00:00Z",
            );
            Err(())
        }
    }
}

impl MtsConnectorInput {
    /// Merges the body over `existing` (`None` on create: over the defaults), validates the
    /// result and reports every problem at once, keyed by JSON field name (`mapping.dob`,
    /// `fields[2]`, `failed_retry.max_attempts`, …). Returns the name, the full settings, and
    /// the secrets that were given (`None` = keep the stored one, or none).
    ///
    /// On create with ODK input, `odk_password` is required. On update the caller knows
    /// whether a password is stored; this function does not.
    pub fn parse(
        self,
        existing: Option<(&str, &MtsConnectorSettings)>,
    ) -> Result<(String, MtsConnectorSettings, MtsConnectorSecrets), FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut bad = Unparsed::default();
        let creating = existing.is_none();
        let (old_name, mut s) = match existing {
            Some((n, s)) => (Some(n), s.clone()),
            None => (None, MtsConnectorSettings::default()),
        };

        let name = match (self.name, old_name) {
            (Some(n), _) => {
                let n = trimmed(n);
                let len = n.chars().count();
                if len == 0 {
                    errors.add("name", "is required");
                } else if len > MAX_CONNECTOR_NAME_LEN {
                    errors.add(
                        "name",
                        format!("must be at most {MAX_CONNECTOR_NAME_LEN} characters"),
                    );
                }
                n
            }
            (None, Some(old)) => old.to_owned(),
            (None, None) => {
                errors.add("name", "is required");
                String::new()
            }
        };

        let set = |target: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *target = trimmed(v);
            }
        };
        set(&mut s.mts_url, self.mts_url);
        set(&mut s.output_type, self.output_type);
        set(&mut s.output_format, self.output_format);
        set(&mut s.delivery_type, self.delivery_type);
        set(&mut s.lang, self.lang);
        set(&mut s.callback_url, self.callback_url);
        set(&mut s.callback_auth_database, self.callback_auth_database);
        set(&mut s.callback_auth_username, self.callback_auth_username);
        set(&mut s.vid_id_type, self.vid_id_type);
        set(&mut s.token_id_type, self.token_id_type);
        set(&mut s.odk_base_url, self.odk_base_url);
        set(&mut s.odk_odata_url, self.odk_odata_url);
        set(&mut s.odk_form_id, self.odk_form_id);
        set(&mut s.odk_email, self.odk_email);

        if let Some(v) = self.input_type {
            match InputType::parse(v.trim()) {
                Some(t) => s.input_type = t,
                None => {
                    errors.add("input_type", "must be registry or odk");
                    bad.input_type = true;
                }
            }
        }
        if let Some(v) = self.job_type {
            match JobType::parse(v.trim()) {
                Some(t) => s.job_type = t,
                None => {
                    errors.add("job_type", "must be recurring or one_time");
                    bad.job_type = true;
                }
            }
        }
        if let Some(v) = self.callback_http_method {
            match CallbackHttpMethod::parse(v.trim()) {
                Some(m) => s.callback_http_method = m,
                None => errors.add("callback_http_method", "must be POST, PUT, GET or PATCH"),
            }
        }
        if let Some(v) = self.callback_auth_type {
            match CallbackAuthType::parse(v.trim()) {
                Some(a) => s.callback_auth_type = a,
                None => {
                    errors.add(
                        "callback_auth_type",
                        "callbacks must be authenticated: use odoo or staticBearer",
                    );
                    bad.auth_type = true;
                }
            }
        }

        if let Some(v) = self.mapping {
            match v {
                Value::Object(m) => s.mapping = m,
                _ => {
                    errors.add("mapping", "must be a JSON object");
                    bad.mapping = true;
                }
            }
        }
        if let Some(v) = self.filter {
            s.filter = v;
        }
        if let Some(v) = self.fields {
            match fields_from_json(v, &mut errors) {
                Some(f) => s.fields = f,
                None => bad.fields = true,
            }
        }

        if let Some(v) = self.interval_minutes {
            s.interval_minutes = v;
        }
        if let Some(v) = self.callback_timeout_seconds {
            s.callback_timeout_seconds = v;
        }
        if let Some(v) = self.chunk_size {
            s.chunk_size = v;
        }
        if let Some(v) = self.call_in_bulk {
            s.call_in_bulk = v;
        }
        if let Some(v) = self.remove_vid {
            s.remove_vid = v;
        }
        if let Some(r) = self.failed_retry {
            if let Some(v) = r.max_attempts {
                s.failed_retry.max_attempts = v;
            }
            if let Some(v) = r.backoff_minutes {
                s.failed_retry.backoff_minutes = v;
            }
        }
        if let Some(v) = self.odk_project_id {
            s.odk_project_id = Some(v);
        }
        if let Some(v) = self.odk_hold_failed {
            s.odk_hold_failed = v;
        }
        if let Some(v) = self.odk_overlap_minutes {
            s.odk_overlap_minutes = v;
        }
        for (field, given, target) in [
            ("odk_start", self.odk_start, &mut s.odk_start),
            ("odk_end", self.odk_end, &mut s.odk_end),
        ] {
            if let Some(v) = given {
                match parse_datetime(&mut errors, field, &v) {
                    Ok(d) => *target = d,
                    Err(()) => bad.odk_window = true,
                }
            }
        }

        if let Some(p) = &self.callback_password {
            let len = p.chars().count();
            if !(MIN_CALLBACK_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
                errors.add(
                    "callback_password",
                    format!("must be {MIN_CALLBACK_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"),
                );
            }
        }
        match &self.odk_password {
            Some(p) => {
                let len = p.chars().count();
                if !(1..=MAX_PASSWORD_LEN).contains(&len) {
                    errors.add(
                        "odk_password",
                        format!("must be 1 to {MAX_PASSWORD_LEN} characters"),
                    );
                }
            }
            None if creating && !bad.input_type && s.input_type == InputType::Odk => {
                errors.add("odk_password", "is required for ODK input");
            }
            None => {}
        }

        validate_settings(&s, &bad, &mut errors);

        if errors.is_empty() {
            Ok((
                name,
                s,
                MtsConnectorSecrets {
                    callback_password: self.callback_password,
                    odk_password: self.odk_password,
                },
            ))
        } else {
            Err(errors)
        }
    }
}

/// `fields` must be a JSON array of strings; element checks happen in [`check_fields`].
fn fields_from_json(v: Value, errors: &mut FieldErrors) -> Option<Vec<String>> {
    let Value::Array(items) = v else {
        errors.add("fields", "must be a JSON array of field names");
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::String(f) => out.push(f),
            _ => {
                errors.add(format!("fields[{i}]"), "must be a string");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn validate_settings(s: &MtsConnectorSettings, bad: &Unparsed, errors: &mut FieldErrors) {
    check_url(errors, "mts_url", &s.mts_url, true);
    check_url(errors, "callback_url", &s.callback_url, true);

    if s.output_type != "json" {
        errors.add("output_type", "only json is supported");
    }
    if s.delivery_type != "callback" {
        errors.add("delivery_type", "only callback is supported");
    }
    if !s.output_format.trim().is_empty() {
        if s.output_format.len() > MAX_OUTPUT_FORMAT_LEN {
            errors.add(
                "output_format",
                format!("must be at most {MAX_OUTPUT_FORMAT_LEN} bytes"),
            );
        } else if let Err(e) = jq_compiles(&s.output_format) {
            errors.add("output_format", format!("is not a valid jq program: {e}"));
        }
    }
    if !(s.lang.len() == 3 && s.lang.bytes().all(|b| b.is_ascii_lowercase())) {
        errors.add(
            "lang",
            "must be a 3-letter lowercase language code, e.g. eng",
        );
    }
    if !bad.job_type && s.job_type == JobType::Recurring {
        check_range(
            errors,
            "interval_minutes",
            s.interval_minutes,
            1,
            MAX_INTERVAL_MINUTES,
        );
    }
    if let Err(e) = Domain::from_json(&s.filter) {
        errors.add("filter", format!("is not a valid filter: {e}"));
    }
    if !bad.fields {
        check_fields(errors, &s.fields);
    }
    if !bad.mapping {
        let registry_fields =
            (!bad.input_type && !bad.fields && s.input_type == InputType::Registry)
                .then_some(s.fields.as_slice());
        check_mapping(errors, &s.mapping, registry_fields);
    }

    check_range(
        errors,
        "callback_timeout_seconds",
        s.callback_timeout_seconds,
        1,
        MAX_CALLBACK_TIMEOUT_SECONDS,
    );
    if !bad.auth_type
        && s.callback_auth_type == CallbackAuthType::Odoo
        && s.callback_auth_username.is_empty()
    {
        errors.add(
            "callback_auth_username",
            "is required for odoo authentication",
        );
    }
    check_max_len(errors, "callback_auth_database", &s.callback_auth_database);
    check_max_len(errors, "callback_auth_username", &s.callback_auth_username);
    check_range(errors, "chunk_size", s.chunk_size, 1, MAX_CHUNK_SIZE);
    check_range(
        errors,
        "failed_retry.max_attempts",
        s.failed_retry.max_attempts,
        1,
        MAX_RETRY_ATTEMPTS,
    );
    check_range(
        errors,
        "failed_retry.backoff_minutes",
        s.failed_retry.backoff_minutes,
        1,
        MAX_RETRY_BACKOFF_MINUTES,
    );

    for (field, v) in [
        ("vid_id_type", &s.vid_id_type),
        ("token_id_type", &s.token_id_type),
    ] {
        if v.is_empty() {
            errors.add(field, "is required");
        }
        check_max_len(errors, field, v);
    }
    // ID type names are matched case-insensitively.
    if !s.vid_id_type.is_empty() && s.vid_id_type.to_lowercase() == s.token_id_type.to_lowercase() {
        errors.add("token_id_type", "must differ from vid_id_type");
    }

    validate_odk(s, bad, errors);
}

fn validate_odk(s: &MtsConnectorSettings, bad: &Unparsed, errors: &mut FieldErrors) {
    check_url(errors, "odk_base_url", &s.odk_base_url, false);
    check_url(errors, "odk_odata_url", &s.odk_odata_url, false);
    if s.odk_project_id == Some(0) {
        errors.add("odk_project_id", "must be at least 1");
    }
    check_max_len(errors, "odk_form_id", &s.odk_form_id);
    if s.odk_form_id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '%'))
    {
        errors.add("odk_form_id", "must not contain spaces or any of / ? # %");
    }
    check_max_len(errors, "odk_email", &s.odk_email);
    if !s.odk_email.is_empty() && !plausible_email(&s.odk_email) {
        errors.add("odk_email", "must be an email address");
    }
    if s.odk_overlap_minutes > MAX_INTERVAL_MINUTES {
        errors.add(
            "odk_overlap_minutes",
            format!("must be at most {MAX_INTERVAL_MINUTES}"),
        );
    }
    if let (Some(start), Some(end)) = (s.odk_start, s.odk_end)
        && start > end
    {
        errors.add("odk_end", "must not be before odk_start");
    }

    if bad.input_type || s.input_type != InputType::Odk {
        return;
    }
    if s.odk_base_url.is_empty() {
        errors.add("odk_base_url", "is required for ODK input");
    }
    if s.odk_odata_url.is_empty() {
        match (s.odk_project_id, s.odk_form_id.is_empty()) {
            (None, true) => errors.add(
                "odk_odata_url",
                "is required for ODK input unless odk_project_id and odk_form_id are given",
            ),
            (None, false) => errors.add(
                "odk_project_id",
                "is required for ODK input when odk_odata_url is empty",
            ),
            (Some(_), true) => errors.add(
                "odk_form_id",
                "is required for ODK input when odk_odata_url is empty",
            ),
            (Some(_), false) => {}
        }
    }
    if s.odk_email.is_empty() {
        errors.add("odk_email", "is required for ODK input");
    }
    if !bad.job_type && !bad.odk_window && s.job_type == JobType::OneTime {
        for (field, v) in [("odk_start", s.odk_start), ("odk_end", s.odk_end)] {
            if v.is_none() {
                errors.add(field, "is required for a one-time ODK job");
            }
        }
    }
}

fn check_range(errors: &mut FieldErrors, field: &str, v: u32, min: u32, max: u32) {
    if !(min..=max).contains(&v) {
        errors.add(field, format!("must be between {min} and {max}"));
    }
}

fn check_max_len(errors: &mut FieldErrors, field: &str, v: &str) {
    if v.chars().count() > MAX_SHORT_TEXT_LEN {
        errors.add(
            field,
            format!("must be at most {MAX_SHORT_TEXT_LEN} characters"),
        );
    }
}

fn plausible_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// An absolute `http` or `https` URL with a host (no user info, no spaces). `required`: the
/// empty string is an error; otherwise it means "not set".
fn check_url(errors: &mut FieldErrors, field: &str, url: &str, required: bool) {
    if url.is_empty() {
        if required {
            errors.add(field, "is required");
        }
        return;
    }
    if let Err(e) = http_url(url) {
        errors.add(field, e);
    }
}

fn http_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces".into());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("must be an http or https URL, e.g. https://host/path".into());
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err("must be an http or https URL".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not contain a user name or password".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("has an invalid host".into());
        };
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("has an invalid host".into());
        }
        match after {
            "" => (addr, None),
            p => match p.strip_prefix(':') {
                Some(p) => (addr, Some(p)),
                None => return Err("has an invalid host".into()),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("must have a host".into());
    }
    if !authority.starts_with('[')
        && !host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
    {
        return Err("has an invalid host".into());
    }
    if let Some(p) = port
        && !(p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)))
    {
        return Err("has an invalid port".into());
    }
    Ok(())
}

fn is_attribute_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn check_fields(errors: &mut FieldErrors, fields: &[String]) {
    if fields.is_empty() {
        errors.add("fields", "must list at least one field");
        return;
    }
    let mut seen = HashSet::new();
    for (i, f) in fields.iter().enumerate() {
        let key = format!("fields[{i}]");
        let known = REGISTRANT_FIELDS.contains(&f.as_str())
            || f.strip_prefix("attributes.").is_some_and(is_attribute_key);
        if !known {
            errors.add(
                key.clone(),
                format!(
                    "unknown field {f:?}: use one of {} or attributes.<key>",
                    REGISTRANT_FIELDS.join(", ")
                ),
            );
        }
        if !seen.insert(f.as_str()) {
            errors.add(key, format!("{f:?} is listed twice"));
        }
    }
}

/// A mapping path: dot-separated jq identifiers.
fn is_path(p: &str) -> bool {
    p.len() <= MAX_SHORT_TEXT_LEN
        && p.split('.').all(|seg| {
            let mut b = seg.bytes();
            b.next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
                && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        })
}

/// For registry input: `Err(message)` when `path` does not resolve inside a record holding
/// `vid` and `fields`.
fn path_in_fields(path: &str, fields: &[String]) -> Result<(), String> {
    let mut segs = path.split('.');
    let first = segs.next().unwrap_or_default();
    let second = segs.next();
    if first == "vid" || REGISTRANT_FIELDS.contains(&first) {
        if second.is_some() {
            return Err(format!(
                "{first:?} is a single value: the path must be just {first:?}"
            ));
        }
        if first == "vid" || fields.iter().any(|f| f == first) {
            return Ok(());
        }
        return Err(format!(
            "{first:?} is not in fields: add it to fields or change the path"
        ));
    }
    if first == "attributes" {
        let Some(key) = second else {
            return Err("must name an attribute: attributes.<key>".into());
        };
        let field = format!("attributes.{key}");
        if fields.contains(&field) {
            return Ok(());
        }
        return Err(format!(
            "{field:?} is not in fields: add it to fields or change the path"
        ));
    }
    Err(format!(
        "{first:?} is not a registrant field: use vid, a field of fields, or attributes.<key>"
    ))
}

fn check_path_value(
    errors: &mut FieldErrors,
    key: String,
    v: &Value,
    registry_fields: Option<&[String]>,
) {
    let Value::String(p) = v else {
        errors.add(key, "must be a path string");
        return;
    };
    if !is_path(p) {
        errors.add(
            key,
            "must be a path of dot-separated identifiers ([A-Za-z_][A-Za-z0-9_]*), e.g. given_name or personal.first_name",
        );
        return;
    }
    if let Some(fields) = registry_fields
        && let Err(e) = path_in_fields(p, fields)
    {
        errors.add(key, e);
    }
}

fn check_mapping(
    errors: &mut FieldErrors,
    mapping: &Map<String, Value>,
    registry_fields: Option<&[String]>,
) {
    if !mapping.contains_key("vid") {
        errors.add("mapping.vid", "is required");
    }
    for (k, v) in mapping {
        let key = format!("mapping.{k}");
        if MAPPING_LIST_KEYS.contains(&k.as_str()) {
            match v {
                Value::Array(items) if !items.is_empty() => {
                    for (i, item) in items.iter().enumerate() {
                        check_path_value(errors, format!("{key}[{i}]"), item, registry_fields);
                    }
                }
                Value::Array(_) => errors.add(key, "must be a non-empty array of paths"),
                _ => errors.add(
                    key,
                    "must be an array of paths, e.g. [\"given_name\", \"family_name\"]",
                ),
            }
        } else if MAPPING_KEYS.contains(&k.as_str()) {
            check_path_value(errors, key, v, registry_fields);
        } else {
            errors.add(
                key,
                format!("is not an MTS mapping key: use {}", MAPPING_KEYS.join(", ")),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// jq
// ---------------------------------------------------------------------------------------------

/// Whether `program` loads and compiles with jaq and its standard library (the same set the
/// MTS simulator uses); `Err` holds jaq's errors, with line and column.
fn jq_compiles(program: &str) -> Result<(), String> {
    use jaq_core::load::{Arena, File, Loader};

    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: program,
                path: (),
            },
        )
        .map_err(|errs| {
            let mut out = Vec::new();
            for (_file, e) in errs {
                describe_load_error(program, e, &mut out);
            }
            join_errors(out)
        })?;
    let compiled: Result<
        jaq_core::compile::Filter<jaq_core::Native<jaq_core::data::JustLut<jaq_json::Val>>>,
        _,
    > = jaq_core::Compiler::default()
        .with_funs(funs)
        .compile(modules);
    compiled.map(|_| ()).map_err(|errs| {
        let mut out = Vec::new();
        for (_file, undefined) in errs {
            for (name, what) in undefined {
                let at = position(program, name);
                let what = match what {
                    jaq_core::compile::Undefined::Filter(arity) => format!("filter {name}/{arity}"),
                    other => format!("{} {name}", other.as_str()),
                };
                out.push(format!("undefined {what}{at}"));
            }
        }
        join_errors(out)
    })
}

fn describe_load_error(program: &str, e: jaq_core::load::Error<&str>, out: &mut Vec<String>) {
    use jaq_core::load::{Error, lex, parse};
    match e {
        Error::Io(v) => {
            for (path, msg) in v {
                out.push(format!("cannot load module {path:?}: {msg}"));
            }
        }
        Error::Lex(v) => {
            for (expect, rest) in v {
                let what = match expect {
                    lex::Expect::Delim(d) => match d {
                        "(" => "closing parenthesis",
                        "[" => "closing bracket",
                        "{" => "closing brace",
                        "\"" => "closing quote",
                        _ => "closing delimiter",
                    },
                    other => other.as_str(),
                };
                out.push(format!("expected {what}{}", position(program, rest)));
            }
        }
        Error::Parse(v) => {
            for (expect, found) in v {
                let what: &str = match &expect {
                    parse::Expect::Just(s) => s,
                    other => other.as_str(),
                };
                let at = position(program, found);
                let found = if found.is_empty() {
                    "end of input".to_owned()
                } else {
                    format!("{found:?}")
                };
                out.push(format!("expected {what}, found {found}{at}"));
            }
        }
    }
}

/// `" at line L, column C"` for a slice of `program` (jaq reports positions as slices of the
/// source), or `""` when it is not one.
fn position(program: &str, slice: &str) -> String {
    let start = program.as_ptr() as usize;
    let at = slice.as_ptr() as usize;
    let Some(offset) = at.checked_sub(start).filter(|o| *o <= program.len()) else {
        return String::new();
    };
    let Some(before) = program.get(..offset) else {
        return String::new();
    };
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    format!(" at line {line}, column {column}")
}

/// At most a few errors, so that one typo does not produce a wall of text.
fn join_errors(mut errors: Vec<String>) -> String {
    const MAX: usize = 5;
    if errors.is_empty() {
        return "it does not compile".to_owned();
    }
    let more = errors.len().saturating_sub(MAX);
    errors.truncate(MAX);
    let mut s = errors.join("; ");
    if more > 0 {
        s.push_str(&format!(" (and {more} more)"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> MtsConnectorInput {
        serde_json::from_value(v).unwrap()
    }

    fn minimal() -> Value {
        json!({"name": "Daily tokens", "callback_url": "https://registry.example.org/api/v1/mts/callback"})
    }

    fn with(extra: Value) -> MtsConnectorInput {
        let mut v = minimal();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        input(v)
    }

    fn errors_of(i: MtsConnectorInput) -> FieldErrors {
        i.parse(None).unwrap_err()
    }

    fn created() -> (String, MtsConnectorSettings) {
        let (n, s, _) = input(minimal()).parse(None).unwrap();
        (n, s)
    }

    /// Asserts that `extra` over the minimal body fails with (at least) `field`.
    #[track_caller]
    fn fails(extra: Value, field: &str) -> String {
        let e = errors_of(with(extra.clone()));
        let Some(msgs) = e.0.get(field) else {
            panic!("no error on {field} for {extra}: {e}");
        };
        msgs.join("; ")
    }

    #[test]
    fn defaults_are_consistent() {
        let d = MtsConnectorSettings::default();
        // The default mapping refers only to vid and default fields.
        let mut e = FieldErrors::new();
        check_fields(&mut e, &d.fields);
        check_mapping(&mut e, &d.mapping, Some(&d.fields));
        assert!(e.is_empty(), "{e}");
        assert_eq!(
            Value::Object(default_mapping()),
            json!({"vid":"vid","name":["given_name","family_name"],"gender":"gender","dob":"birthdate","phoneNumber":"phone","emailId":"email","fullAddress":["address"]})
        );
        assert_eq!(d.effective_output_format(), DEFAULT_OUTPUT_FORMAT);
        assert!(jq_compiles(DEFAULT_OUTPUT_FORMAT).is_ok());
        assert!(jq_compiles(DEFAULT_ODK_OUTPUT_FORMAT).is_ok());
        for k in CALLBACK_KEYS {
            assert!(DEFAULT_OUTPUT_FORMAT.contains(&format!("{k}:")), "{k}");
        }
        // Only the callback URL is missing from the defaults.
        let e = d.validate().unwrap_err();
        assert_eq!(e.0.keys().collect::<Vec<_>>(), ["callback_url"]);
    }

    #[test]
    fn minimal_create_gives_defaults() {
        let (name, s, secrets) = input(minimal()).parse(None).unwrap();
        assert_eq!(name, "Daily tokens");
        assert_eq!(
            s,
            MtsConnectorSettings {
                callback_url: "https://registry.example.org/api/v1/mts/callback".into(),
                ..MtsConnectorSettings::default()
            }
        );
        assert_eq!(secrets, MtsConnectorSecrets::default());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn settings_serde_round_trip_and_names() {
        let s = created().1;
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["input_type"], "registry");
        assert_eq!(v["job_type"], "one_time");
        assert_eq!(v["callback_auth_type"], "staticBearer");
        assert_eq!(v["callback_http_method"], "POST");
        assert_eq!(
            v["failed_retry"],
            json!({"max_attempts": 3, "backoff_minutes": 60})
        );
        let back: MtsConnectorSettings = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        // Old documents missing keys load with defaults.
        let partial: MtsConnectorSettings = serde_json::from_value(
            json!({"callback_url": "http://x.test/cb", "job_type": "recurring"}),
        )
        .unwrap();
        assert_eq!(partial.job_type, JobType::Recurring);
        assert_eq!(partial.chunk_size, 1000);
        assert_eq!(
            serde_json::to_value(CallbackAuthType::Odoo).unwrap(),
            json!("odoo")
        );
        assert_eq!(CallbackHttpMethod::Patch.as_str(), "PATCH");
    }

    #[test]
    fn full_create() {
        let (name, s, secrets) = with(json!({
            "name": "  ODK pull  ",
            "mts_url": "https://mts.example.org:8443/",
            "input_type": "odk",
            "mapping": {"vid": "grp.vid", "name": ["grp.first", "grp.last"], "dob": "dob"},
            "output_format": ".output",
            "job_type": "one_time",
            "lang": "fra",
            "callback_http_method": "patch",
            "callback_auth_type": "odoo",
            "callback_password": "correct horse battery",
            "odk_base_url": "https://odk.example.org",
            "odk_project_id": 3,
            "odk_form_id": "household_v2",
            "odk_email": "mts@example.org",
            "odk_password": "p",
            "odk_start": "2024-01-01T00:00:00Z",
            "odk_end": "2024-01-02T01:00:00+01:00",
            "failed_retry": {"max_attempts": 5},
        }))
        .parse(None)
        .unwrap();
        assert_eq!(name, "ODK pull");
        assert_eq!(s.input_type, InputType::Odk);
        assert_eq!(s.callback_http_method, CallbackHttpMethod::Patch);
        assert_eq!(s.callback_auth_type, CallbackAuthType::Odoo);
        assert_eq!(s.odk_end.unwrap().to_rfc3339(), "2024-01-02T00:00:00+00:00");
        assert_eq!(
            s.failed_retry,
            FailedRetry {
                max_attempts: 5,
                backoff_minutes: 60
            }
        );
        assert_eq!(s.effective_output_format(), ".output");
        assert_eq!(
            secrets.callback_password.as_deref(),
            Some("correct horse battery")
        );
        assert_eq!(secrets.odk_password.as_deref(), Some("p"));
    }

    #[test]
    fn patch_keeps_unspecified_values() {
        let (name, mut old) = created();
        old.chunk_size = 50;
        old.lang = "fra".into();
        old.failed_retry.backoff_minutes = 5;
        let (n2, s, secrets) =
            input(json!({"chunk_size": 200, "failed_retry": {"max_attempts": 9}}))
                .parse(Some((&name, &old)))
                .unwrap();
        assert_eq!(n2, name);
        assert_eq!(s.chunk_size, 200);
        assert_eq!(s.lang, "fra");
        assert_eq!(
            s.failed_retry,
            FailedRetry {
                max_attempts: 9,
                backoff_minutes: 5
            }
        );
        assert_eq!(s.callback_url, old.callback_url);
        assert_eq!(secrets, MtsConnectorSecrets::default());
        // Renaming; an empty body changes nothing.
        let (n3, s3, _) = input(json!({"name": "Renamed"}))
            .parse(Some((&name, &old)))
            .unwrap();
        assert_eq!((n3.as_str(), &s3), ("Renamed", &old));
        let (_, s4, _) = input(json!({})).parse(Some((&name, &old))).unwrap();
        assert_eq!(s4, old);
        // Cross-field checks use the merged values.
        let e = input(json!({"fields": ["given_name"]}))
            .parse(Some((&name, &old)))
            .unwrap_err();
        assert!(e.0.contains_key("mapping.dob"), "{e}");
        assert!(
            e.0["mapping.dob"][0].contains("\"birthdate\" is not in fields"),
            "{e}"
        );
    }

    #[test]
    fn secrets_debug_is_redacted() {
        let s = MtsConnectorSecrets {
            callback_password: Some("hunter2hunter2".into()),
            odk_password: None,
        };
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("redacted"), "{d}");
        let i = with(json!({"callback_password": "hunter2hunter2", "odk_password": "odkpass"}));
        let d = format!("{i:?}");
        assert!(!d.contains("hunter2") && !d.contains("odkpass"), "{d}");
        let (_, _, secrets) = i.parse(None).unwrap();
        assert!(!format!("{secrets:?}").contains("odkpass"));
    }

    #[test]
    fn unknown_body_keys_are_rejected() {
        assert!(serde_json::from_value::<MtsConnectorInput>(json!({"nmae": "x"})).is_err());
        assert!(
            serde_json::from_value::<MtsConnectorInput>(json!({"failed_retry": {"tries": 1}}))
                .is_err()
        );
    }

    #[test]
    fn name_errors() {
        assert!(
            errors_of(input(json!({"callback_url": "https://x.test/cb"})))
                .0
                .contains_key("name")
        );
        fails(json!({"name": "   "}), "name");
        fails(json!({"name": "x".repeat(101)}), "name");
        assert!(with(json!({"name": "é".repeat(100)})).parse(None).is_ok());
    }

    #[test]
    fn url_errors() {
        for bad in [
            "ftp://x.test/cb",
            "x.test/cb",
            "https://",
            "https:///path",
            "https://user:pw@x.test/cb",
            "https://x.test:0/cb",
            "https://x.test:99999/cb",
            "https://x test/cb",
            "https://x_y.test/",
            "https://[zz]/",
        ] {
            fails(json!({"callback_url": bad}), "callback_url");
        }
        for good in [
            "http://localhost:8080/cb",
            "HTTPS://x.test",
            "https://10.0.0.1/cb?x=1#f",
            "http://[::1]:9000/cb",
            "http://mosip-token-seeder.mosip-token-seeder",
        ] {
            assert!(
                with(json!({"callback_url": good, "mts_url": good}))
                    .parse(None)
                    .is_ok(),
                "{good}"
            );
        }
        assert_eq!(
            fails(json!({"callback_url": ""}), "callback_url"),
            "is required"
        );
        fails(json!({"mts_url": ""}), "mts_url");
        fails(json!({"mts_url": "mts:8080"}), "mts_url");
        fails(json!({"odk_base_url": "odk.example.org"}), "odk_base_url");
        fails(
            json!({"odk_odata_url": "ftp://odk.example.org/x.svc"}),
            "odk_odata_url",
        );
    }

    #[test]
    fn mapping_errors() {
        assert_eq!(
            fails(json!({"mapping": ["vid"]}), "mapping"),
            "must be a JSON object"
        );
        assert_eq!(
            fails(json!({"mapping": {"name": ["given_name"]}}), "mapping.vid"),
            "is required"
        );
        assert!(
            fails(
                json!({"mapping": {"vid": "vid", "uin": "vid"}}),
                "mapping.uin"
            )
            .contains("phoneNumber")
        );
        // name and fullAddress are arrays (MTS answers 422 to a string).
        fails(
            json!({"mapping": {"vid": "vid", "name": "given_name"}}),
            "mapping.name",
        );
        fails(
            json!({"mapping": {"vid": "vid", "fullAddress": []}}),
            "mapping.fullAddress",
        );
        fails(
            json!({"mapping": {"vid": "vid", "name": ["given_name", 3]}}),
            "mapping.name[1]",
        );
        fails(
            json!({"mapping": {"vid": "vid", "name": [""]}}),
            "mapping.name[0]",
        );
        // The others are single paths.
        fails(
            json!({"mapping": {"vid": "vid", "dob": ["birthdate"]}}),
            "mapping.dob",
        );
        fails(
            json!({"mapping": {"vid": "", "dob": "birthdate"}}),
            "mapping.vid",
        );
        for bad in ["birth-date", "1st", "a..b", ".birthdate", "a b", "a[0]"] {
            fails(
                json!({"input_type": "odk", "mapping": {"vid": "vid", "dob": bad}}),
                "mapping.dob",
            );
        }
        // Registry input: paths must resolve in the listed fields.
        let m = fails(
            json!({"mapping": {"vid": "vid", "dob": "birth_place"}}),
            "mapping.dob",
        );
        assert!(m.contains("\"birth_place\" is not in fields"), "{m}");
        fails(
            json!({"mapping": {"vid": "vid", "gender": "sex"}}),
            "mapping.gender",
        );
        fails(
            json!({"mapping": {"vid": "vid", "gender": "gender.code"}}),
            "mapping.gender",
        );
        fails(
            json!({"mapping": {"vid": "vid", "gender": "attributes"}}),
            "mapping.gender",
        );
        let m = fails(
            json!({"mapping": {"vid": "vid", "gender": "attributes.sex"}}),
            "mapping.gender",
        );
        assert!(m.contains("attributes.sex"), "{m}");
        assert!(
            with(json!({
                "fields": ["given_name", "attributes.sex"],
                "mapping": {"vid": "vid", "name": ["given_name"], "gender": "attributes.sex.label"}
            }))
            .parse(None)
            .is_ok()
        );
        // ODK input: any path.
        assert!(
            with(json!({
                "input_type": "odk", "odk_base_url": "https://odk.test", "odk_odata_url": "https://odk.test/v1/projects/1/forms/f.svc/Submissions",
                "odk_email": "a@b.test", "odk_password": "x", "job_type": "recurring",
                "mapping": {"vid": "grp_id.vid", "name": ["personal.fn"]}
            }))
            .parse(None)
            .is_ok()
        );
    }

    #[test]
    fn type_and_format_errors() {
        assert!(fails(json!({"output_type": "csv"}), "output_type").contains("json"));
        assert!(fails(json!({"delivery_type": "download"}), "delivery_type").contains("callback"));
        let m = fails(
            json!({"output_format": "{ref: .input.ref"}),
            "output_format",
        );
        assert!(m.starts_with("is not a valid jq program: expected"), "{m}");
        assert!(m.contains("line 1"), "{m}");
        let m = fails(json!({"output_format": "nosuchfn(1)"}), "output_format");
        assert!(m.contains("undefined filter nosuchfn/1"), "{m}");
        let m = fails(json!({"output_format": "\"abc"}), "output_format");
        assert!(m.contains("closing quote"), "{m}");
        fails(
            json!({"output_format": format!(".a{}", " | .a".repeat(MAX_OUTPUT_FORMAT_LEN / 5 + 1))}),
            "output_format",
        );
        let (_, s, _) = with(json!({"output_format": "  "})).parse(None).unwrap();
        assert_eq!(s.output_format, "");
        assert!(with(json!({"output_format": "{ref: .input.ref, x: (.input.given_name | ascii_downcase)}"})).parse(None).is_ok());
    }

    #[test]
    fn enum_errors() {
        fails(json!({"input_type": "custom"}), "input_type");
        fails(json!({"job_type": "onetime"}), "job_type");
        fails(
            json!({"callback_http_method": "DELETE"}),
            "callback_http_method",
        );
        for bad in ["none", "oauth", ""] {
            assert_eq!(
                fails(json!({"callback_auth_type": bad}), "callback_auth_type"),
                "callbacks must be authenticated: use odoo or staticBearer"
            );
        }
        // A bad input type does not cascade into ODK errors.
        let e = errors_of(with(json!({"input_type": "ODK"})));
        assert_eq!(e.0.keys().collect::<Vec<_>>(), ["input_type"]);
    }

    #[test]
    fn scalar_errors() {
        for bad in ["en", "ENG", "eng1", "éng"] {
            fails(json!({"lang": bad}), "lang");
        }
        fails(
            json!({"job_type": "recurring", "interval_minutes": 0}),
            "interval_minutes",
        );
        fails(
            json!({"job_type": "recurring", "interval_minutes": 527041}),
            "interval_minutes",
        );
        assert!(
            with(json!({"interval_minutes": 0})).parse(None).is_ok(),
            "one-time jobs ignore it"
        );
        fails(
            json!({"callback_timeout_seconds": 0}),
            "callback_timeout_seconds",
        );
        fails(
            json!({"callback_timeout_seconds": 301}),
            "callback_timeout_seconds",
        );
        fails(json!({"chunk_size": 0}), "chunk_size");
        fails(json!({"chunk_size": 10001}), "chunk_size");
        fails(
            json!({"failed_retry": {"max_attempts": 0}}),
            "failed_retry.max_attempts",
        );
        fails(
            json!({"failed_retry": {"max_attempts": 101}}),
            "failed_retry.max_attempts",
        );
        fails(
            json!({"failed_retry": {"backoff_minutes": 0}}),
            "failed_retry.backoff_minutes",
        );
        fails(
            json!({"failed_retry": {"backoff_minutes": 10081}}),
            "failed_retry.backoff_minutes",
        );
        fails(
            json!({"callback_auth_type": "odoo", "callback_auth_username": " "}),
            "callback_auth_username",
        );
        assert!(
            with(json!({"callback_auth_username": ""}))
                .parse(None)
                .is_ok(),
            "only odoo needs it"
        );
        fails(json!({"callback_password": "short"}), "callback_password");
        fails(
            json!({"callback_password": "x".repeat(201)}),
            "callback_password",
        );
        fails(json!({"odk_password": ""}), "odk_password");
        fails(json!({"odk_password": "x".repeat(201)}), "odk_password");
        fails(json!({"vid_id_type": ""}), "vid_id_type");
        fails(json!({"token_id_type": " "}), "token_id_type");
        fails(json!({"token_id_type": "mosip vid"}), "token_id_type");
        fails(
            json!({"odk_overlap_minutes": 527041}),
            "odk_overlap_minutes",
        );
        fails(json!({"odk_start": "yesterday"}), "odk_start");
    }

    #[test]
    fn filter_and_fields_errors() {
        let m = fails(json!({"filter": [["no_such_field", "=", 1]]}), "filter");
        assert!(m.starts_with("is not a valid filter: "), "{m}");
        assert!(m.len() > "is not a valid filter: ".len(), "{m}");
        fails(json!({"filter": {"a": 1}}), "filter");
        assert!(
            with(json!({"filter": [["is_registrant","=",true],["reg_ids.id_type","=like","MOSIP VID"],"!",["reg_ids.id_type","=like","MOSIP AUTH TOKEN"]]}))
                .parse(None)
                .is_ok()
        );
        fails(json!({"fields": "given_name"}), "fields");
        fails(json!({"fields": []}), "fields");
        let e = errors_of(with(json!({"fields": ["given_name", 1]})));
        assert!(e.0.contains_key("fields[1]"), "{e}");
        // A malformed list does not cascade into mapping errors.
        assert!(!e.0.keys().any(|k| k.starts_with("mapping")), "{e}");
        let fields = json!([
            "given_name",
            "family_name",
            "birthdate",
            "gender",
            "address",
            "id",
            "attributes.",
            "attributes.a-b",
            "given_name"
        ]);
        let e = errors_of(with(json!({"fields": fields})));
        for k in ["fields[5]", "fields[6]", "fields[7]", "fields[8]"] {
            assert!(e.0.contains_key(k), "{k}: {e}");
        }
        assert!(e.0["fields[8]"][0].contains("twice"));
    }

    #[test]
    fn odk_requirements() {
        let e = errors_of(with(json!({"input_type": "odk"})));
        for k in [
            "odk_base_url",
            "odk_odata_url",
            "odk_email",
            "odk_password",
            "odk_start",
            "odk_end",
        ] {
            assert!(e.0.contains_key(k), "{k}: {e}");
        }
        let base = json!({
            "input_type": "odk", "odk_base_url": "https://odk.test", "odk_email": "a@b.test",
            "odk_password": "x", "job_type": "recurring", "mapping": {"vid": "vid"}
        });
        let go = |extra: Value| {
            let mut v = base.clone();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            with(v).parse(None)
        };
        assert!(
            go(json!({"odk_project_id": 1}))
                .unwrap_err()
                .0
                .contains_key("odk_form_id")
        );
        assert!(
            go(json!({"odk_form_id": "f"}))
                .unwrap_err()
                .0
                .contains_key("odk_project_id")
        );
        assert!(go(json!({"odk_form_id": "f", "odk_project_id": 1})).is_ok());
        assert!(
            go(json!({"odk_form_id": "a/b", "odk_project_id": 1}))
                .unwrap_err()
                .0
                .contains_key("odk_form_id")
        );
        assert!(
            go(json!({"odk_odata_url": "https://odk.test/v1/projects/1/forms/f.svc/Submissions"}))
                .is_ok()
        );
        let ok = json!({"odk_form_id": "f", "odk_project_id": 1});
        let mut bad_email = ok.clone();
        bad_email["odk_email"] = json!("not-an-email");
        assert!(go(bad_email).unwrap_err().0.contains_key("odk_email"));
        let mut window = ok.clone();
        window["odk_start"] = json!("2024-02-01T00:00:00Z");
        window["odk_end"] = json!("2024-01-01T00:00:00Z");
        assert!(go(window).unwrap_err().0.contains_key("odk_end"));
        let mut one_time = ok.clone();
        one_time["job_type"] = json!("one_time");
        one_time["odk_start"] = json!("2024-01-01T00:00:00Z");
        let e = go(one_time.clone()).unwrap_err();
        assert_eq!(e.0.keys().collect::<Vec<_>>(), ["odk_end"]);
        one_time["odk_end"] = json!("2024-01-01T00:00:00Z");
        assert!(go(one_time).is_ok());
        // On update the password may already be stored.
        let (name, mut old) = created();
        old.input_type = InputType::Odk;
        old.odk_base_url = "https://odk.test".into();
        old.odk_odata_url = "https://odk.test/x.svc/Submissions".into();
        old.odk_email = "a@b.test".into();
        old.job_type = JobType::Recurring;
        let (_, s, _) = input(json!({"odk_start": "2024-01-01T00:00:00Z"}))
            .parse(Some((&name, &old)))
            .unwrap();
        assert!(s.odk_start.is_some());
        let (_, s, _) = input(json!({"odk_start": ""}))
            .parse(Some((&name, &s)))
            .unwrap();
        assert_eq!(s.odk_start, None, "an empty string clears a date");
    }

    #[test]
    fn collects_all_errors() {
        let e = errors_of(input(json!({
            "lang": "x", "chunk_size": 0, "output_type": "csv", "callback_auth_type": "none",
            "mapping": {"vid": "vid", "bogus": 1}, "filter": 3, "fields": [],
        })));
        for k in [
            "name",
            "callback_url",
            "lang",
            "chunk_size",
            "output_type",
            "callback_auth_type",
            "mapping.bogus",
            "filter",
            "fields",
        ] {
            assert!(e.0.contains_key(k), "{k}: {e}");
        }
    }

    #[test]
    fn jq_error_positions() {
        let e = jq_compiles(".a |\n  {x: }").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(jq_compiles("{ref: .input.ref} | .ref // \"x\"").is_ok());
    }
}
