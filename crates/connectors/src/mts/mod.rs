//! MOSIP Token Seeder (spec `shared/specs/mts-api.md`): submitting a request
//! (`POST /authtoken/{json,odk}`) and asking for its status (`GET /authtoken/status/{id}`).
//! Works against MTS itself and against `g2p mts`.

mod client;
mod error;
pub mod wire;

pub use client::{InputRoute, MtsClient, RequestStatus};
pub use error::MtsError;
