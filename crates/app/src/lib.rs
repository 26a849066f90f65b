//! g2p's use cases, written once. The JSON API, the console, the demo and the job runner all
//! call these functions; none of them writes to the store on its own for a use case listed
//! here. Each use case that changes state is one store transaction with one audit entry.
//!
//! Layering: this crate maps between registry vocabulary (`g2p-domain`, `g2p-store`) and the
//! external systems' wire types (`g2p-connectors`), visibly and in one place. It knows nothing
//! of HTTP requests or HTML.
//!
//! - [`mts`]: the Registry and ODK MTS connectors — configuration, runs, the watchdog, the
//!   callbacks.
//! - [`odk`]: ODK windows and the import of submissions.
//! - [`jobs`]: the registry of job kinds the runner executes.
//! - [`secrets`]: the AEAD contexts of sealed connector secrets.

pub mod error;
pub mod jobs;
pub mod mts;
pub mod odk;
pub mod secrets;

pub use error::AppError;
