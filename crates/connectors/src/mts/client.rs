//! The MTS client: one connection pool for every connector and every call.

use std::time::Duration;

use tracing::Instrument;

use super::error::MtsError;
use super::wire::{Accepted, AuthTokenRequest, Envelope, StatusResponse, describe};

/// Timeout of one call to MTS (not the callback timeout, unlike OpenG2P: its defect B13).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which POST route a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRoute {
    Json,
    Odk,
}

impl InputRoute {
    fn path(self) -> &'static str {
        match self {
            InputRoute::Json => "json",
            InputRoute::Odk => "odk",
        }
    }
}

/// What `GET /authtoken/status/{id}` said about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStatus {
    /// MTS's status string (`submitted`, `processing`, `processed`, …; spec §5.2).
    Is(String),
    /// 404 / ATS-REQ-016: MTS restarted without its queue, or purged the request.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct MtsClient {
    http: reqwest::Client,
}

impl MtsClient {
    pub fn new() -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(MtsClient { http })
    }

    fn url(base_url: &str, path: &str) -> String {
        format!("{}/authtoken/{path}", base_url.trim_end_matches('/'))
    }

    /// Posts a request; MTS's `request_identifier` on acceptance. A request-level error (an
    /// HTTP error, or errors without an identifier) is a refusal; `ATS-REQ-101` (every record
    /// invalid) still carries an identifier and its callbacks still come.
    pub async fn submit(
        &self,
        base_url: &str,
        route: InputRoute,
        request: &AuthTokenRequest,
    ) -> Result<String, MtsError> {
        let span = tracing::info_span!("mts", operation = "submit", route = route.path());
        async {
            let resp = self
                .http
                .post(Self::url(base_url, route.path()))
                .json(request)
                .send()
                .await
                .map_err(|e| MtsError::Unreachable(crate::transport_message(e)))?;
            let status = resp.status();
            // A body that is not MTS's envelope still tells its HTTP status.
            let answer: Envelope<Accepted> = resp.json().await.unwrap_or_default();
            match answer.response {
                Some(accepted) if status.is_success() => Ok(accepted.request_identifier),
                _ => Err(MtsError::Refused {
                    status: status.as_u16(),
                    errors: describe(answer.errors.as_deref().unwrap_or_default()),
                }),
            }
        }
        .instrument(span)
        .await
    }

    /// Where MTS stands with a request.
    pub async fn status(
        &self,
        base_url: &str,
        request_id: &str,
    ) -> Result<RequestStatus, MtsError> {
        let span = tracing::info_span!("mts", operation = "status", request = request_id);
        async {
            let resp = self
                .http
                .get(Self::url(base_url, &format!("status/{request_id}")))
                .send()
                .await
                .map_err(|e| MtsError::Unreachable(crate::transport_message(e)))?;
            let status = resp.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(RequestStatus::Unknown);
            }
            let answer: Envelope<StatusResponse> =
                resp.json().await.map_err(|_| MtsError::BadReply {
                    status: status.as_u16(),
                })?;
            if let Some(r) = answer.response {
                return Ok(RequestStatus::Is(r.status));
            }
            let unknown = answer
                .errors
                .as_deref()
                .and_then(<[_]>::first)
                .is_some_and(|e| e.error_code.as_deref() == Some("ATS-REQ-016"));
            if unknown {
                Ok(RequestStatus::Unknown)
            } else {
                Err(MtsError::BadReply {
                    status: status.as_u16(),
                })
            }
        }
        .instrument(span)
        .await
    }
}
