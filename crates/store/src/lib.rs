//! Storage for the registry on SQLite (embedded default) and PostgreSQL (deployments), chosen by
//! the database URL. It owns the schema, migrations and every SQL statement; it must not know
//! about HTTP or external systems.
//!
//! One schema serves both backends. Queries are written once with `$n` placeholders (SQLite
//! accepts them) and run on either pool through [`with_db!`]; statements that must differ live
//! next to each other with the dialect named.

pub mod api_keys;
pub mod audit;
pub mod db;
pub mod error;
pub mod filter_sql;
pub mod id_checks;
pub mod import;
pub mod jobs;
pub mod mts;
mod mts_callbacks;
pub mod mts_lifecycle;
#[macro_use]
pub mod registry;
// After `registry`: it builds registrant statements with its macros.
pub mod odk_submissions;
pub mod secrets;
pub mod value;

pub use db::{Backend, Store};
pub use error::StoreError;
pub use value::SqlValue;
