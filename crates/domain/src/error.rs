//! Domain errors. Validation failures carry one message per field so that the HTTP layer can
//! answer 422 with `fields` and the CLI can print them.

use std::collections::BTreeMap;

/// Field name → human-readable problems with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FieldErrors(pub BTreeMap<String, Vec<String>>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Prefixes every field name, for errors found inside a nested object or array element.
    pub fn nest(self, prefix: &str) -> Self {
        FieldErrors(
            self.0
                .into_iter()
                .map(|(k, v)| (format!("{prefix}.{k}"), v))
                .collect(),
        )
    }

    pub fn merge(&mut self, other: FieldErrors) {
        for (k, v) in other.0 {
            self.0.entry(k).or_default().extend(v);
        }
    }

    /// `Ok(())` when nothing was recorded, so validators can end with `errors.into_result()?`.
    pub fn into_result(self) -> Result<(), DomainError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(self))
        }
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (field, messages) in &self.0 {
            for m in messages {
                if !first {
                    write!(f, "; ")?;
                }
                first = false;
                write!(f, "{field}: {m}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("invalid input: {0}")]
    Validation(FieldErrors),
    #[error(transparent)]
    Filter(#[from] crate::filter::FilterError),
}

impl DomainError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut e = FieldErrors::new();
        e.add(field, message);
        DomainError::Validation(e)
    }
}
