//! What a call to ODK Central can end in.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OdkError {
    #[error("ODK Central unreachable: {0}")]
    Unreachable(String),
    /// The sign-in was refused (401/403).
    #[error("ODK Central refused the credentials (HTTP {status})")]
    Credentials { status: u16 },
    /// Signed in, but the account may not read the form's submissions (403).
    #[error("ODK Central: the account may not read the form's submissions")]
    Forbidden,
    /// No such project or form (404).
    #[error("ODK Central: no such project or form (check the OData URL, project and form id)")]
    NotFound,
    /// Any other HTTP status, during `operation`.
    #[error("ODK Central answered HTTP {status} to the {operation}")]
    Http {
        status: u16,
        operation: &'static str,
    },
    /// A success with a body that does not say what it must.
    #[error("ODK Central gave {0}")]
    BadReply(&'static str),
}

impl OdkError {
    pub fn is_retryable(&self) -> bool {
        match self {
            OdkError::Unreachable(_) | OdkError::BadReply(_) => true,
            OdkError::Credentials { .. } | OdkError::Forbidden | OdkError::NotFound => false,
            // Central down or overloaded may pass; other 4xx are our request and repeat.
            // (Issue 11 point 12 asks for Central's own code and message on 4xx: kept as it
            // was here — a later change.)
            OdkError::Http { .. } => true,
        }
    }
}
