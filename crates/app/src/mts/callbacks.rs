//! MTS calling back: who may (a connector's own credentials, checked before any body is
//! read), how much it may send (sized from the connector's chunk size), and what its results
//! do to the registry. The receiver authenticates per connector — its static bearer secret, or
//! a session from the Odoo-compatible login — rather than with API keys: MTS cannot hold one of
//! ours.

use g2p_domain::FieldErrors;
use g2p_domain::mts_connector::{CALLBACK_KEYS, CallbackAuthType, InputType};
use g2p_store::audit::Actor;
use g2p_store::mts::{MtsCallbackItem, MtsCallbackPolicy, MtsCallbackReport};
use g2p_store::secrets::SecretBox;
use g2p_store::{Store, StoreError};
use secrecy::ExposeSecret;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::error::{AppError, Result};
use crate::mts::connectors::Connector;
use crate::odk::callbacks::OdkCallbackReport;
use crate::secrets::CALLBACK_SECRET_CONTEXT;

/// What a callback presents.
#[derive(Clone, Copy)]
pub enum Credentials<'a> {
    /// `Authorization: Bearer <secret>` (`staticBearer`).
    Bearer(&'a str),
    /// A `session_id` cookie from the Odoo-compatible login (`odoo`).
    OdooSession(&'a str),
    None,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::Bearer(_) => "Bearer(***)",
            Credentials::OdooSession(_) => "OdooSession(***)",
            Credentials::None => "None",
        })
    }
}

/// The connector a callback is for, when the credentials are that connector's own. An unknown
/// connector and wrong credentials answer alike (`None`): no probing for connector ids.
pub async fn authenticate(
    store: &Store,
    secrets: &SecretBox,
    connector_id: i64,
    credentials: Credentials<'_>,
) -> Result<Option<Connector>> {
    let row = match store.get_mts_connector(connector_id).await {
        Ok(r) => r,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let settings = row.settings.0.clone();
    let allowed = match (settings.callback_auth_type, credentials) {
        (CallbackAuthType::StaticBearer, Credentials::Bearer(given)) => {
            let Some(sealed) = &row.callback_secret else {
                return Ok(None);
            };
            let secret = secrets
                .open(CALLBACK_SECRET_CONTEXT, sealed)
                .map_err(|e| AppError::Internal(format!("callback secret: {e}")))?;
            bool::from(given.as_bytes().ct_eq(secret.expose_secret().as_bytes()))
        }
        (CallbackAuthType::Odoo, Credentials::OdooSession(token)) => {
            store.mts_callback_session_allows(token, row.id).await?
        }
        _ => false,
    };
    Ok(allowed.then_some(Connector { row, settings }))
}

/// Bytes one callback record may take (the default output format needs ~250; an operator's
/// format may add fields).
const BYTES_PER_RECORD: usize = 16 << 10;
/// Headroom of every callback body.
const BASE_BODY_BYTES: usize = 1 << 20;
/// ODK input: one MTS request holds a whole window, and each result a registrant document
/// with its household; the bound is a fixed one.
const ODK_BODY_BYTES: usize = 256 << 20;

/// The largest body this connector's callbacks may carry: a bulk callback holds at most one
/// chunk of records.
pub fn body_limit(c: &Connector) -> usize {
    match c.settings.input_type {
        InputType::Odk => ODK_BODY_BYTES,
        InputType::Registry if c.settings.call_in_bulk => {
            let chunk = usize::try_from(c.settings.chunk_size).unwrap_or(usize::MAX);
            BASE_BODY_BYTES.saturating_add(chunk.saturating_mul(BYTES_PER_RECORD))
        }
        InputType::Registry => BASE_BODY_BYTES,
    }
}

/// What a callback did.
#[derive(Debug)]
pub enum Received {
    Registry(MtsCallbackReport),
    Odk(OdkCallbackReport),
}

/// Parses every item of a callback; any unreadable item refuses the call, naming each.
pub(crate) fn parse_items<T>(
    list: &[Value],
    parse: impl Fn(usize, &Value, &mut FieldErrors) -> Option<T>,
) -> Result<Vec<T>> {
    let mut errors = FieldErrors::new();
    let items: Vec<T> = list
        .iter()
        .enumerate()
        .filter_map(|(i, v)| parse(i, v, &mut errors))
        .collect();
    if errors.is_empty() {
        Ok(items)
    } else {
        Err(AppError::Validation(errors))
    }
}

fn parse_item(i: usize, v: &Value, errors: &mut FieldErrors) -> Option<MtsCallbackItem> {
    let Some(obj) = v.as_object() else {
        errors.add(format!("[{i}]"), "must be an object");
        return None;
    };
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    let reference = text("ref");
    let status = text("status");
    if reference.as_deref().is_none_or(str::is_empty) {
        errors.add(
            format!("[{i}].ref"),
            "required: the output format must return .input.ref",
        );
    }
    if status.as_deref().is_none_or(str::is_empty) {
        errors.add(
            format!("[{i}].status"),
            "required: the output format must return .output.status",
        );
    }
    let extra = obj
        .iter()
        .filter(|(k, _)| !CALLBACK_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(MtsCallbackItem {
        reference: reference.unwrap_or_default(),
        status: status.unwrap_or_default(),
        token: text("token"),
        error_code: text("errorCode"),
        error_message: text("errorMessage"),
        extra,
    })
}

/// Results from MTS: one record (an object) or many (an array, `callInBulk`). Registry
/// results are applied in one transaction; replays change nothing; an unknown reference
/// refuses the whole call. ODK results are applied one by one (see
/// [`crate::odk::callbacks`]).
pub async fn receive(store: &Store, c: &Connector, body: Value) -> Result<Received> {
    let list = match body {
        Value::Array(a) => a,
        other => vec![other],
    };
    if c.settings.input_type == InputType::Odk {
        return Ok(Received::Odk(
            crate::odk::callbacks::receive(store, c, &list).await?,
        ));
    }
    let items: Vec<MtsCallbackItem> = parse_items(&list, parse_item)?;
    let settings = &c.settings;
    let policy = MtsCallbackPolicy {
        connector_id: c.id(),
        vid_id_type: &settings.vid_id_type,
        token_id_type: &settings.token_id_type,
        remove_vid: settings.remove_vid,
        max_attempts: i64::from(settings.failed_retry.max_attempts),
        backoff_minutes: i64::from(settings.failed_retry.backoff_minutes),
    };
    let actor = Actor::system(&format!("mts-callback:{}", c.id()));
    Ok(Received::Registry(
        store.apply_mts_callbacks(&policy, &items, &actor).await?,
    ))
}

/// The Odoo-compatible login (`/web/session/authenticate`): the connectors whose `odoo`
/// callback credentials are `(database, login, password)`. Only connectors with that database
/// and login have their secret opened; two connectors may share a login.
pub async fn odoo_login(
    store: &Store,
    secrets: &SecretBox,
    database: &str,
    login: &str,
    password: &str,
) -> Result<Vec<i64>> {
    let mut matched = Vec::new();
    for row in store.list_mts_connectors().await? {
        let st = &row.settings.0;
        if st.callback_auth_type != CallbackAuthType::Odoo
            || st.callback_auth_database != database
            || st.callback_auth_username != login
        {
            continue;
        }
        let Some(sealed) = &row.callback_secret else {
            continue;
        };
        let secret = secrets
            .open(CALLBACK_SECRET_CONTEXT, sealed)
            .map_err(|e| AppError::Internal(format!("callback secret: {e}")))?;
        if bool::from(password.as_bytes().ct_eq(secret.expose_secret().as_bytes())) {
            matched.push(row.id);
        }
    }
    Ok(matched)
}
