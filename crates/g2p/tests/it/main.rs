//! End-to-end tests: the real application on real sockets, on SQLite and on PostgreSQL.

// Test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod api_audit;
mod api_auth;
mod api_bad_input;
mod api_id_types;
mod api_ids;
mod api_openapi_ops;
mod api_registrants;
mod api_shape;
mod browser;
mod console;
mod console_mts;
mod console_odk;
mod demo;
mod helpers;
mod import;
mod jobs;
mod mts_callbacks;
mod mts_connector;
mod mts_process;
mod mts_receiver_limits;
mod odk_connector;
mod reads_dont_write;
