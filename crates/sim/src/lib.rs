//! g2p-sim: in-process simulators of the external systems g2p talks to.
//!
//! Each simulator is an axum router plus a cheap-to-clone state handle, written from the
//! external system's specification (`shared/specs/`) and recorded exchanges, never from the
//! connector types of `g2p-connectors`, so that a wrong field name on either side is caught by
//! tests. Each carries failure and latency knobs for the tests of other components.
//!
//! Our MOSIP Token Seeder is not here: it is a product, the `g2p-mts` crate (`crates/mts`).

pub mod odk;
