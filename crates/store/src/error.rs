//! Store errors. Unique-constraint violations are turned into `Conflict` naming the field, so the
//! HTTP layer can answer 409 without parsing database messages itself.

use g2p_domain::{DomainError, FieldErrors};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{entity} not found")]
    NotFound { entity: &'static str },
    #[error("{message}")]
    Conflict { field: String, message: String },
    #[error("invalid input: {0}")]
    Validation(FieldErrors),
    #[error("invalid filter: {0}")]
    Filter(#[from] g2p_domain::filter::FilterError),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://…")]
    UnsupportedUrl(String),
}

impl StoreError {
    pub fn not_found(entity: &'static str) -> Self {
        StoreError::NotFound { entity }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut e = FieldErrors::new();
        e.add(field, message);
        StoreError::Validation(e)
    }

    /// Whether the same call may succeed later: a lost connection or a pool timeout may pass;
    /// a missing row, a conflict or invalid input will be the same next time.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(e) => !matches!(
                e,
                sqlx::Error::RowNotFound
                    | sqlx::Error::ColumnNotFound(_)
                    | sqlx::Error::ColumnDecode { .. }
                    | sqlx::Error::Decode(_)
                    | sqlx::Error::TypeNotFound { .. }
            ),
            StoreError::NotFound { .. }
            | StoreError::Conflict { .. }
            | StoreError::Validation(_)
            | StoreError::Filter(_)
            | StoreError::Migrate(_)
            | StoreError::UnsupportedUrl(_) => false,
        }
    }
}

impl From<DomainError> for StoreError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Validation(f) => StoreError::Validation(f),
            DomainError::Filter(f) => StoreError::Filter(f),
        }
    }
}

/// Named constraints and the field a violation is reported on. PostgreSQL names the constraint;
/// SQLite only names the columns or the index, so both spellings are listed.
const UNIQUE_CONSTRAINTS: &[(&[&str], &str, &str)] = &[
    (
        &["registrants_external_key_key", "registrants.external_key"],
        "external_key",
        "a registrant with this external key already exists",
    ),
    (
        &["id_types_name_key"],
        "name",
        "an ID type with this name already exists",
    ),
    (
        &[
            "reg_ids_registrant_type_key",
            "reg_ids.registrant_id, reg_ids.id_type_id",
        ],
        "id_type",
        "the registrant already has an ID of this type",
    ),
    (
        &[
            "memberships_group_individual_key",
            "memberships.group_id, memberships.individual_id",
        ],
        "individual_id",
        "the individual is already a member of this group",
    ),
    (
        &[
            "bank_accounts_registrant_account_key",
            "bank_accounts.registrant_id, bank_accounts.account_number",
        ],
        "account_number",
        "the registrant already has this account",
    ),
    (
        &["mts_connectors_name_key", "mts_connectors"],
        "name",
        "a connector with this name exists",
    ),
    (
        &["api_keys_key_id_key", "api_keys.key_id"],
        "key_id",
        "key id collision",
    ),
];

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                let name = db.constraint().unwrap_or_default();
                let msg = db.message();
                for (names, field, message) in UNIQUE_CONSTRAINTS {
                    if names.iter().any(|n| *n == name || msg.contains(n)) {
                        return StoreError::Conflict {
                            field: (*field).to_owned(),
                            message: (*message).to_owned(),
                        };
                    }
                }
                return StoreError::Conflict {
                    field: String::new(),
                    message: "conflicts with an existing record".to_owned(),
                };
            }
            if db.is_foreign_key_violation() {
                return StoreError::field("id", "refers to a record that does not exist");
            }
        }
        if matches!(e, sqlx::Error::RowNotFound) {
            return StoreError::NotFound { entity: "record" };
        }
        StoreError::Database(e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
