//! One module per external system g2p calls: [`mts`] (MOSIP Token Seeder) and [`odk`] (ODK
//! Central); later `phee`, `g2pconnect`, `esignet`. Each module owns:
//! - `wire`: the requests and replies, spelled exactly as the external API spells them;
//! - `client`: one `reqwest::Client` (one connection pool) with timeouts, one tracing span per
//!   call naming the system and the operation;
//! - `error`: what went wrong, with `is_retryable()` so that callers decide retries from the
//!   failure itself rather than from strings.
//!
//! This crate knows nothing of the registry or its store: the application layer maps between
//! registry vocabulary and these wire types, visibly, in one place.

pub mod mts;
pub mod odk;

/// A transport failure's text without its URL (URLs may carry ids or credentials).
pub(crate) fn transport_message(e: reqwest::Error) -> String {
    e.without_url().to_string()
}
