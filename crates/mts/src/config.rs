//! Configuration of the service, as the library takes it. Owns defaults only; it never reads
//! files or the environment (`settings.rs` layers those for `g2p mts serve`).

use std::time::Duration;

use crate::jq::JqSettings;

/// The queue database when none is given: an embedded SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://mts-queue.sqlite";

/// A field that the server may require on every record (spec §2.3). `vid` is always required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthField {
    Name,
    Gender,
    Dob,
    PhoneNumber,
    EmailId,
    FullAddress,
}

impl AuthField {
    /// Parses one entry of a `name,gender,dob,fullAddress` list (the MTS config spelling).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "name" => Self::Name,
            "gender" => Self::Gender,
            "dob" => Self::Dob,
            "phoneNumber" => Self::PhoneNumber,
            "emailId" => Self::EmailId,
            "fullAddress" => Self::FullAddress,
            _ => return None,
        })
    }
}

/// Retry policy for callback deliveries (MTS has none, spec §13 #2).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MtsConfig {
    /// Partner id used by the mock token formula (spec §6.2).
    pub partner_id: String,
    /// Server-wide mandatory fields (spec §2.3), default `name,gender,dob,fullAddress`.
    pub mandatory_fields: Vec<AuthField>,
    /// `root.default_lang_code`.
    pub default_lang: String,
    /// Pod ordinal: the first two digits of every request identifier (spec §5.1) and `/ping`.
    pub pod_ordinal: u8,
    /// Authentications running at the same time (MTS: one per worker process).
    pub concurrency: usize,
    /// How long finished requests are kept once delivered (MTS deletes by creation time).
    pub retention: Duration,
    /// Requests whose callbacks are delivered at the same time; within one request, callbacks
    /// go out one after another in input order, as in MTS.
    pub callback_concurrency: usize,
    pub callback_retry: RetryPolicy,
    /// Largest accepted request body, in bytes.
    pub max_request_bytes: usize,
    /// Largest number of records in one request.
    pub max_records: usize,
    /// The jq worker pool: processes, time and memory limits of `outputFormat` evaluation.
    pub jq: JqSettings,
    /// How long [`crate::MtsService::shutdown`] lets workers finish their batch and servers
    /// their requests before unfinished records go back to the queue.
    pub shutdown_grace: Duration,
    /// MTS `root.sync_operation_mode` (spec §4.6): `POST /authtoken/json` authenticates one
    /// record inside the call; the csv and odk routes are not served.
    pub sync_mode: bool,
    /// `$top` of each OData page of an ODK pull (MTS: no paging at all).
    pub odk_page_size: usize,
    /// Timeout of each ODK Central call (MTS: none).
    pub odk_timeout: Duration,
    /// How often idle workers look for work they were not woken for (records re-queued by
    /// another process sharing the database).
    pub poll_interval: Duration,
}

impl Default for MtsConfig {
    fn default() -> Self {
        Self {
            partner_id: "mpartner-default-mosip".into(),
            mandatory_fields: vec![
                AuthField::Name,
                AuthField::Gender,
                AuthField::Dob,
                AuthField::FullAddress,
            ],
            default_lang: "eng".into(),
            pod_ordinal: 0,
            concurrency: 8,
            retention: Duration::from_secs(6 * 3600),
            callback_concurrency: 8,
            callback_retry: RetryPolicy::default(),
            max_request_bytes: 64 * 1024 * 1024,
            max_records: 100_000,
            jq: JqSettings::default(),
            shutdown_grace: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            sync_mode: false,
            odk_page_size: 1000,
            odk_timeout: Duration::from_secs(60),
        }
    }
}

impl MtsConfig {
    pub fn is_mandatory(&self, f: AuthField) -> bool {
        self.mandatory_fields.contains(&f)
    }
}
