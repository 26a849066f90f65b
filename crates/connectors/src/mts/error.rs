//! What a call to MTS can end in.

/// A failed call to MTS. [`MtsError::is_retryable`] says whether the same call may succeed
/// later (MTS down, overloaded, or answering garbage) or repeats (MTS refused the request: our
/// request or configuration is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MtsError {
    /// No answer: connection refused, timed out, reset.
    #[error("MTS unreachable: {0}")]
    Unreachable(String),
    /// An HTTP error with MTS's own error entries (`errorCode message; …`).
    #[error("MTS refused the request: HTTP {status} {errors}")]
    Refused { status: u16, errors: String },
    /// A success status with a body that is not MTS's envelope.
    #[error("MTS gave an unreadable answer (HTTP {status})")]
    BadReply { status: u16 },
}

impl MtsError {
    pub fn is_retryable(&self) -> bool {
        match self {
            MtsError::Unreachable(_) | MtsError::BadReply { .. } => true,
            // 5xx and 429 may pass; any other 4xx is our request and repeats.
            MtsError::Refused { status, .. } => *status >= 500 || *status == 429,
        }
    }
}
