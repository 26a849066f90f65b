//! The registry's domain: registrants, typed IDs, groups, bank accounts, audit entries and the
//! filter language, as plain values. It owns validation ("parse once") and must not do I/O: no
//! tokio, sqlx, axum or reqwest here.

pub mod clock;
pub mod error;
pub mod filter;
pub mod mts_connector;
pub mod mts_run;
pub mod registrant;
pub mod role;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{DomainError, FieldErrors};
pub use mts_connector::{
    CallbackAuthType, CallbackHttpMethod, FailedRetry, InputType, JobType, MtsConnectorInput,
    MtsConnectorSecrets, MtsConnectorSettings,
};
pub use mts_run::{ConnectorState, RunKind, RunStatus};
pub use registrant::*;
pub use role::Role;
