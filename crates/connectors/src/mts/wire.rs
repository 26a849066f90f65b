//! MTS's request and reply bodies, spelled as MTS spells them (spec `mts-api.md` §1.1–§1.7;
//! `openg2p-mts-connector.md` §2.2 for what OpenG2P sends). Field order is the order MTS
//! documents; serialisation keeps it. Passwords never appear in `Debug`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The envelope of `POST /authtoken/json` and `/authtoken/odk`.
#[derive(Debug, Clone, Serialize)]
pub struct AuthTokenRequest {
    pub id: &'static str,
    pub version: &'static str,
    pub metadata: &'static str,
    /// `YYYY-MM-DDTHH:MM:SS.sssZ` (see [`requesttime`]).
    pub requesttime: String,
    pub request: AuthTokenBody,
}

impl AuthTokenRequest {
    /// An envelope with the placeholder id/version/metadata MTS ignores (OpenG2P sends
    /// `"string"`), stamped now.
    pub fn new(request: AuthTokenBody) -> Self {
        AuthTokenRequest {
            id: "string",
            version: "string",
            metadata: "string",
            requesttime: requesttime(chrono::Utc::now()),
            request,
        }
    }
}

/// MTS's `requesttime` form.
pub fn requesttime(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthTokenBody {
    pub output: String,
    pub deliverytype: String,
    pub mapping: Map<String, Value>,
    pub lang: String,
    /// Always a string (OpenG2P sends `false` when empty: its defect B14).
    #[serde(rename = "outputFormat")]
    pub output_format: String,
    #[serde(rename = "callbackProperties")]
    pub callback_properties: CallbackProperties,
    /// JSON input: one object per record (`vid` plus the mapped fields, opaque to MTS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authdata: Option<Vec<Value>>,
    /// ODK input: where MTS pulls the submissions from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub odkconfig: Option<OdkConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallbackProperties {
    pub url: String,
    #[serde(rename = "httpMethod")]
    pub http_method: String,
    #[serde(rename = "timeoutSeconds")]
    pub timeout_seconds: u32,
    #[serde(rename = "callInBulk")]
    pub call_in_bulk: bool,
    #[serde(rename = "authType")]
    pub auth_type: String,
    #[serde(rename = "authOdoo", skip_serializing_if = "Option::is_none")]
    pub auth_odoo: Option<AuthOdoo>,
    #[serde(rename = "authStaticBearer", skip_serializing_if = "Option::is_none")]
    pub auth_static_bearer: Option<AuthStaticBearer>,
}

#[derive(Clone, Serialize)]
pub struct AuthOdoo {
    #[serde(rename = "authUrl")]
    pub auth_url: String,
    pub database: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for AuthOdoo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthOdoo")
            .field("auth_url", &self.auth_url)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

#[derive(Clone, Serialize)]
pub struct AuthStaticBearer {
    pub token: String,
}

impl std::fmt::Debug for AuthStaticBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthStaticBearer { token: *** }")
    }
}

/// `odkconfig` (spec §9): every value a string.
#[derive(Clone, Serialize)]
pub struct OdkConfig {
    pub baseurl: String,
    pub odataurl: String,
    pub projectid: String,
    pub formid: String,
    pub email: String,
    pub password: String,
    pub startdate: String,
    pub enddate: String,
}

impl std::fmt::Debug for OdkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdkConfig")
            .field("baseurl", &self.baseurl)
            .field("odataurl", &self.odataurl)
            .field("projectid", &self.projectid)
            .field("formid", &self.formid)
            .field("password", &"***")
            .field("startdate", &self.startdate)
            .field("enddate", &self.enddate)
            .finish()
    }
}

/// Every MTS answer: `response` on success, `errors` otherwise (both may be null).
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope<T> {
    #[serde(default = "none")]
    pub response: Option<T>,
    #[serde(default)]
    pub errors: Option<Vec<WireError>>,
}

impl<T> Default for Envelope<T> {
    fn default() -> Self {
        Envelope {
            response: None,
            errors: None,
        }
    }
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireError {
    #[serde(rename = "errorCode", default)]
    pub error_code: Option<String>,
    #[serde(rename = "errorMessage", default)]
    pub error_message: Option<String>,
}

/// `response` of the three POST routes.
#[derive(Debug, Clone, Deserialize)]
pub struct Accepted {
    pub request_identifier: String,
}

/// `response` of `GET /authtoken/status/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusResponse {
    pub status: String,
}

/// `errorCode message; …`, as shown to operators.
pub fn describe(errors: &[WireError]) -> String {
    errors
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.error_code.as_deref().unwrap_or("?"),
                e.error_message.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
