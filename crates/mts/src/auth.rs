//! The authenticator seam: what the worker asks for one record, and the mock of MTS's
//! `mts-mock` branch (spec §6.2, §10) with deterministic failure rules and latency. No IDA
//! cryptography here (spec §7 is for a later real authenticator).

use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;
use serde_json::Value;
use sha3::{Digest, Sha3_256};

/// One record to authenticate.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub vid: String,
    pub demographics: Value,
}

/// The outcome, already in record-output terms (spec §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Token(String),
    Failed {
        code: String,
        message: Option<String>,
    },
}

/// Authenticates one record. Boxed future so the service can hold a `dyn Authenticator`.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(&'a self, req: &'a AuthRequest) -> BoxFuture<'a, AuthOutcome>;
}

/// The `mts-mock` token: base64url (no padding) of SHA3-256 over `vid ‖ partner_id` (§6.2).
pub fn mock_token(vid: &str, partner_id: &str) -> String {
    let mut h = Sha3_256::new();
    h.update(vid.as_bytes());
    h.update(partner_id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// A deterministic failure: vids equal to `vid`, or starting with it when `prefix` is set,
/// answer `error` with an IDA-like code and message.
#[derive(Debug, Clone)]
pub struct FailureRule {
    pub vid: String,
    pub prefix: bool,
    pub code: String,
    pub message: String,
}

impl FailureRule {
    pub fn exact(vid: &str, code: &str, message: &str) -> Self {
        Self {
            vid: vid.into(),
            prefix: false,
            code: code.into(),
            message: message.into(),
        }
    }
    pub fn prefix(prefix: &str, code: &str, message: &str) -> Self {
        Self {
            vid: prefix.into(),
            prefix: true,
            code: code.into(),
            message: message.into(),
        }
    }
    fn matches(&self, vid: &str) -> bool {
        if self.prefix {
            vid.starts_with(&self.vid)
        } else {
            vid == self.vid
        }
    }
}

/// MOSIP's mock: every vid gets the §6.2 token unless a failure rule matches.
#[derive(Debug, Clone, Default)]
pub struct MockAuthenticator {
    pub partner_id: String,
    pub failures: Vec<FailureRule>,
    pub latency: Duration,
}

impl MockAuthenticator {
    pub fn new(partner_id: &str) -> Self {
        Self {
            partner_id: partner_id.into(),
            ..Self::default()
        }
    }
    /// Useful defaults for tests and demos: vids starting with `9999` are a demographic
    /// mismatch, `8888` are unknown to IDA.
    pub fn with_default_failures(mut self) -> Self {
        self.failures.push(FailureRule::prefix(
            "9999",
            "IDA-DEA-001",
            "Demographic data name in eng did not match",
        ));
        self.failures.push(FailureRule::prefix(
            "8888",
            "IDA-MLC-018",
            "UIN not available in database",
        ));
        self
    }
}

impl Authenticator for MockAuthenticator {
    fn authenticate<'a>(&'a self, req: &'a AuthRequest) -> BoxFuture<'a, AuthOutcome> {
        Box::pin(async move {
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            if let Some(rule) = self.failures.iter().find(|r| r.matches(&req.vid)) {
                return AuthOutcome::Failed {
                    code: rule.code.clone(),
                    message: Some(rule.message.clone()),
                };
            }
            AuthOutcome::Token(mock_token(&req.vid, &self.partner_id))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_test_vectors() {
        assert_eq!(
            mock_token("2014391641351279", "mpartner-default-mosip"),
            "vlsl013YlPK3ij11vYTtLEhqw4k9tBfDaf5IAX3B1s0"
        );
        assert_eq!(
            mock_token("2000000001", ""),
            "PzpB4aSiQpnhgiJ_qaqDpRqap5j8_DSGXwkbpoMLDNc"
        );
    }

    #[tokio::test]
    async fn failure_rules() {
        let a = MockAuthenticator::new("p").with_default_failures();
        let req = |v: &str| AuthRequest {
            vid: v.into(),
            demographics: Value::Null,
        };
        assert_eq!(
            a.authenticate(&req("99991")).await,
            AuthOutcome::Failed {
                code: "IDA-DEA-001".into(),
                message: Some("Demographic data name in eng did not match".into())
            }
        );
        assert_eq!(
            a.authenticate(&req("123")).await,
            AuthOutcome::Token(mock_token("123", "p"))
        );
    }
}
