//! ODK Central (spec `shared/specs/odk-central.md`): signing in, counting a form's
//! submissions in a window through OData, signing out. g2p's connector uses it before asking
//! MTS to pull a window, so that bad credentials or a missing form are clear run errors.

mod client;
mod error;
pub mod wire;

pub use client::{OdkClient, OdkSession};
pub use error::OdkError;
