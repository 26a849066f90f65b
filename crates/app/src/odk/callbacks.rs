//! The ODK MTS connector's side of the callback receiver: each result is a submission's
//! registrant document (shaped by the connector's output format), applied by ODK instance id.
//! A document that is not a valid registrant is recorded as `invalid` for review rather than
//! refusing the whole call, so that one bad submission cannot block the others (MTS would
//! retry the call forever). Only results without an instance id or a status refuse the call.

use g2p_domain::{FieldErrors, NewRegistrant, RegistrantInput};
use g2p_store::Store;
use g2p_store::StoreError;
use g2p_store::audit::Actor;
use g2p_store::odk_submissions::{OdkPolicy, OdkSubmission, outcome};
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::mts::callbacks::parse_items;
use crate::mts::connectors::Connector;

/// How many results of the call ended each way.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct OdkCallbackReport {
    pub created: usize,
    pub updated: usize,
    /// Identical to what was received before: nothing changed.
    pub unchanged: usize,
    pub duplicates: usize,
    pub held: usize,
    pub invalid: usize,
}

fn text(obj: &serde_json::Map<String, Value>, k: &str) -> Option<String> {
    obj.get(k).and_then(Value::as_str).map(str::to_owned)
}

/// A registrant document, validated as the registrant API validates a body.
fn registrant(v: &Value, today: chrono::NaiveDate) -> Result<NewRegistrant, String> {
    let input: RegistrantInput =
        serde_json::from_value(v.clone()).map_err(|e| format!("not a registrant: {e}"))?;
    input.parse(today).map_err(|e| e.to_string())
}

fn parse_item(i: usize, v: &Value, errors: &mut FieldErrors) -> Option<OdkSubmission> {
    let Some(obj) = v.as_object() else {
        errors.add(format!("[{i}]"), "must be an object");
        return None;
    };
    let instance_id = text(obj, "instance_id").filter(|s| !s.is_empty());
    let status = text(obj, "status").filter(|s| !s.is_empty());
    if instance_id.is_none() {
        errors.add(
            format!("[{i}].instance_id"),
            "required: the output format must return .input.__id",
        );
    }
    if status.is_none() {
        errors.add(
            format!("[{i}].status"),
            "required: the output format must return .output.status",
        );
    }
    let today = chrono::Utc::now().date_naive();
    let members: Result<Vec<NewRegistrant>, String> = match obj.get("members") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ms)) => ms
            .iter()
            .enumerate()
            .map(|(n, m)| registrant(m, today).map_err(|e| format!("members[{n}]: {e}")))
            .collect(),
        Some(_) => Err("members: must be an array".to_owned()),
    };
    let head = match obj.get("registrant") {
        Some(r @ Value::Object(_)) => registrant(r, today),
        _ => Err("registrant: the output format must return a registrant object".to_owned()),
    };
    let group = match obj.get("group") {
        None | Some(Value::Null) => Ok(None),
        Some(g @ Value::Object(_)) => registrant(g, today)
            .map_err(|e| format!("group: {e}"))
            .and_then(|g| {
                if g.is_group {
                    Ok(Some(g))
                } else {
                    Err("group: must be a group (is_group: true)".to_owned())
                }
            }),
        Some(_) => Err("group: must be an object".to_owned()),
    };
    let (registrant, group, members) = match (head, group, members) {
        (Ok(r), _, _) if r.is_group => (
            Err("registrant: must be an individual (the household goes in group)".into()),
            None,
            Vec::new(),
        ),
        (Ok(_), Ok(None), Ok(ms)) if !ms.is_empty() => (
            Err("members: a household's members need its group".into()),
            None,
            Vec::new(),
        ),
        (Ok(r), Ok(g), Ok(ms)) => (Ok(r), g, ms),
        (Err(e), _, _) | (Ok(_), Err(e), _) | (Ok(_), Ok(_), Err(e)) => (Err(e), None, Vec::new()),
    };
    let submission_date = text(obj, "submission_date")
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(&d).ok())
        .map(|d| d.to_utc());
    Some(OdkSubmission {
        instance_id: instance_id?,
        submission_date,
        status: status?,
        token: text(obj, "token"),
        error_code: text(obj, "errorCode"),
        error_message: text(obj, "errorMessage"),
        vid: text(obj, "vid"),
        registrant,
        group,
        members,
        raw: v.clone(),
    })
}

/// Applies an ODK connector's callback: every result in its own transaction, in order.
pub async fn receive(store: &Store, c: &Connector, list: &[Value]) -> Result<OdkCallbackReport> {
    let items: Vec<OdkSubmission> = parse_items(list, parse_item)?;
    let settings = &c.settings;
    let policy = OdkPolicy {
        connector_id: c.id(),
        vid_id_type: &settings.vid_id_type,
        token_id_type: &settings.token_id_type,
        remove_vid: settings.remove_vid,
        hold_failed: settings.odk_hold_failed,
    };
    let actor = Actor::system(&format!("odk-callback:{}", c.id()));
    let mut report = OdkCallbackReport::default();
    for item in &items {
        let applied = match store.apply_odk_submission(&policy, item, &actor).await {
            // Two deliveries of a new submission raced to create it: the loser now finds it.
            Err(StoreError::Conflict { .. }) => {
                store.apply_odk_submission(&policy, item, &actor).await?
            }
            other => other?,
        };
        match applied.outcome.as_str() {
            outcome::CREATED => report.created += 1,
            outcome::UPDATED => report.updated += 1,
            outcome::UNCHANGED => report.unchanged += 1,
            outcome::DUPLICATE => report.duplicates += 1,
            outcome::HELD => report.held += 1,
            _ => report.invalid += 1,
        }
    }
    // After the submissions' own transactions: a run whose every result is in completes.
    store.complete_mts_runs_of(c.id()).await?;
    Ok(report)
}
