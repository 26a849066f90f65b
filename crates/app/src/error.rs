//! The application layer's error: what the caller shows, not how. The web crate alone turns it
//! into a status code.

use g2p_domain::FieldErrors;
use g2p_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Not found, conflict, invalid input found by the store, or a database failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Invalid input, by field.
    #[error("invalid input: {0}")]
    Validation(FieldErrors),
    /// A state the operator cannot fix (a secret that does not open, a stored setting that no
    /// longer parses): logged, shown as a generic failure.
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut e = FieldErrors::new();
        e.add(field, message);
        AppError::Validation(e)
    }

    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        AppError::Store(StoreError::Conflict {
            field: field.to_owned(),
            message: message.into(),
        })
    }
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;
