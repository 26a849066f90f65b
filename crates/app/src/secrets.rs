//! AEAD contexts of the connector secrets sealed in the store (see `g2p_store::secrets`). A
//! secret sealed under one context does not open under another, so a callback secret can never
//! be read as an ODK password.

/// The password MTS presents when it calls back (Odoo login password or static bearer token).
pub const CALLBACK_SECRET_CONTEXT: &str = "mts_connector.callback_secret";
/// The ODK Central account's password.
pub const ODK_SECRET_CONTEXT: &str = "mts_connector.odk_secret";
