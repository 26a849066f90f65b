//! The ODK Central client: one connection pool for every connector.

use std::time::Duration;

use tracing::Instrument;

use super::error::OdkError;
use super::wire::{CountedFeed, Session, SessionRequest};

/// Timeout of one call to ODK Central.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct OdkClient {
    http: reqwest::Client,
}

/// A signed-in session; [`OdkClient::sign_out`] ends it (MTS never does, and Central keeps
/// sessions for a day).
pub struct OdkSession {
    base_url: String,
    token: String,
}

impl std::fmt::Debug for OdkSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdkSession")
            .field("base_url", &self.base_url)
            .field("token", &"***")
            .finish()
    }
}

fn unreachable(e: reqwest::Error) -> OdkError {
    OdkError::Unreachable(crate::transport_message(e))
}

impl OdkClient {
    pub fn new() -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(OdkClient { http })
    }

    pub async fn sign_in(
        &self,
        base_url: &str,
        email: &str,
        password: &str,
    ) -> Result<OdkSession, OdkError> {
        let base = base_url.trim_end_matches('/');
        async {
            let resp = self
                .http
                .post(format!("{base}/v1/sessions"))
                .json(&SessionRequest { email, password })
                .send()
                .await
                .map_err(unreachable)?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                return Err(OdkError::Credentials {
                    status: status.as_u16(),
                });
            }
            if !status.is_success() {
                return Err(OdkError::Http {
                    status: status.as_u16(),
                    operation: "sign-in",
                });
            }
            let session: Session = resp
                .json()
                .await
                .map_err(|_| OdkError::BadReply("no session token"))?;
            Ok(OdkSession {
                base_url: base.to_owned(),
                token: session.token,
            })
        }
        .instrument(tracing::info_span!("odk", operation = "sign_in"))
        .await
    }

    /// The number of submissions `odata_url` holds under the OData `filter`
    /// (`$top=0&$count=true`: no submission is transferred).
    pub async fn count(
        &self,
        session: &OdkSession,
        odata_url: &str,
        filter: &str,
    ) -> Result<i64, OdkError> {
        async {
            let sep = if odata_url.contains('?') { '&' } else { '?' };
            let resp = self
                .http
                .get(format!("{odata_url}{sep}$top=0&$count=true"))
                .query(&[("$filter", filter)])
                .bearer_auth(&session.token)
                .send()
                .await
                .map_err(unreachable)?;
            match resp.status().as_u16() {
                200 => {}
                403 => return Err(OdkError::Forbidden),
                404 => return Err(OdkError::NotFound),
                status => {
                    return Err(OdkError::Http {
                        status,
                        operation: "submissions count",
                    });
                }
            }
            let feed: CountedFeed = resp.json().await.map_err(unreachable)?;
            feed.count.ok_or(OdkError::BadReply("no @odata.count"))
        }
        .instrument(tracing::info_span!("odk", operation = "count"))
        .await
    }

    /// Ends the session; a failure only leaves it to expire, so it is not an error.
    pub async fn sign_out(&self, session: OdkSession) {
        let result = self
            .http
            .delete(format!(
                "{}/v1/sessions/{}",
                session.base_url, session.token
            ))
            .bearer_auth(&session.token)
            .send()
            .instrument(tracing::info_span!("odk", operation = "sign_out"))
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e.without_url(), "odk: sign-out failed; the session expires on its own");
        }
    }
}
