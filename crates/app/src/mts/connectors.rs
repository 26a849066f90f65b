//! MTS connectors as operators manage them: create, update, start, stop, run now (the delta or
//! a manual import), retry the failures. The JSON API, the console and the demo call these and
//! nothing else; each write is one store transaction with one audit entry
//! (`g2p_store::mts_lifecycle`).

use chrono::{DateTime, Utc};
use g2p_domain::filter::Domain;
use g2p_domain::mts_connector::{InputType, JobType, MtsConnectorInput, MtsConnectorSettings};
use g2p_store::Store;
use g2p_store::audit::Actor;
use g2p_store::jobs::schedules::ScheduleSpec;
use g2p_store::mts::{MtsConnectorRow, MtsRun, RunKind};
use g2p_store::mts_lifecycle::{NewMtsRun, RunQueued, StartMode};
use g2p_store::secrets::SecretBox;
use serde_json::{Value, json};

use crate::error::{AppError, Result};
use crate::secrets::{CALLBACK_SECRET_CONTEXT, ODK_SECRET_CONTEXT};

/// Largest id list of one manual import.
pub const MAX_TARGETS: usize = 1_000_000;

/// A stored connector with its settings parsed.
#[derive(Debug, Clone)]
pub struct Connector {
    pub row: MtsConnectorRow,
    pub settings: MtsConnectorSettings,
}

impl Connector {
    pub fn id(&self) -> i64 {
        self.row.id
    }
}

fn connector(row: MtsConnectorRow) -> Result<Connector> {
    Ok(Connector {
        settings: row.settings.0.clone(),
        row,
    })
}

pub async fn get(store: &Store, id: i64) -> Result<Connector> {
    connector(store.get_mts_connector(id).await?)
}

pub async fn list(store: &Store) -> Result<Vec<Connector>> {
    store
        .list_mts_connectors()
        .await?
        .into_iter()
        .map(connector)
        .collect()
}

/// A random callback secret when the operator gives none.
fn generated_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn seal(secrets: &SecretBox, context: &str, secret: Option<String>) -> Result<Option<String>> {
    secret
        .map(|p| {
            secrets
                .seal(context, &p)
                .map_err(|e| AppError::Internal(format!("cannot seal a secret: {e}")))
        })
        .transpose()
}

/// Creates a connector. Without a callback password one is generated (MTS needs one). When
/// the input names no callback URL and `receiver` is given, the callback URL becomes
/// `receiver(id)`: this registry's own receiver of the new connector, set in the same
/// transaction.
pub async fn create(
    store: &Store,
    secrets: &SecretBox,
    actor: &Actor,
    mut input: MtsConnectorInput,
    receiver: Option<&(dyn Fn(i64) -> String + Sync)>,
) -> Result<Connector> {
    let own_receiver = match receiver {
        Some(r)
            if input
                .callback_url
                .as_deref()
                .is_none_or(|u| u.trim().is_empty()) =>
        {
            // The id is not known yet: validated with a placeholder, replaced in the insert's
            // transaction.
            input.callback_url = Some(r(0));
            Some(r)
        }
        _ => None,
    };
    let (name, settings, given) = input.parse(None).map_err(AppError::Validation)?;
    let password = given.callback_password.unwrap_or_else(generated_secret);
    let settle = |id: i64| {
        own_receiver.map(|r| {
            let mut s = settings.clone();
            s.callback_url = r(id);
            s
        })
    };
    let row = store
        .create_mts_connector(
            &name,
            &settings,
            settle,
            seal(secrets, CALLBACK_SECRET_CONTEXT, Some(password))?,
            seal(secrets, ODK_SECRET_CONTEXT, given.odk_password)?,
            actor,
        )
        .await?;
    connector(row)
}

/// Changes a connector: fields absent from `input` keep their value; a secret is replaced only
/// when given.
pub async fn update(
    store: &Store,
    secrets: &SecretBox,
    actor: &Actor,
    id: i64,
    input: MtsConnectorInput,
) -> Result<Connector> {
    let current = get(store, id).await?;
    let (name, settings, given) = input
        .parse(Some((&current.row.name, &current.settings)))
        .map_err(AppError::Validation)?;
    // Switching to ODK input needs the ODK password, unless one is stored already.
    if settings.input_type == InputType::Odk
        && current.row.odk_secret.is_none()
        && given.odk_password.is_none()
    {
        return Err(AppError::field("odk_password", "is required for ODK input"));
    }
    let row = store
        .update_mts_connector(
            id,
            &name,
            &settings,
            seal(secrets, CALLBACK_SECRET_CONTEXT, given.callback_password)?,
            seal(secrets, ODK_SECRET_CONTEXT, given.odk_password)?,
            actor,
        )
        .await?;
    connector(row)
}

fn queued(q: RunQueued) -> Result<MtsRun> {
    match q {
        RunQueued::Created(run) => Ok(*run),
        RunQueued::AlreadyActive(id) => Err(AppError::conflict(
            "run",
            format!("run {id} of this connector has not finished"),
        )),
    }
}

/// Starts a connector: a recurring one runs now and then every interval until stopped; a
/// one-time one runs once. The first run.
pub async fn start(store: &Store, actor: &Actor, id: i64) -> Result<MtsRun> {
    let c = get(store, id).await?;
    let mode = match c.settings.job_type {
        JobType::Recurring => {
            StartMode::Recurring(ScheduleSpec::EveryMinutes(c.settings.interval_minutes))
        }
        JobType::OneTime => StartMode::OneTime,
    };
    queued(store.start_mts_connector(id, mode, actor).await?)
}

/// Stops a connector: no more recurring runs, and a run in progress stops after its current
/// chunk (callbacks of what was sent are still taken).
pub async fn stop(store: &Store, actor: &Actor, id: i64) -> Result<Connector> {
    connector(store.stop_mts_connector(id, actor).await?)
}

/// Makes every failed record due now with fresh attempts, and runs.
pub async fn retry_failed(store: &Store, actor: &Actor, id: i64) -> Result<MtsRun> {
    queued(store.retry_mts_failures(id, actor).await?)
}

/// What "run now" takes.
#[derive(Debug, Clone, PartialEq)]
pub enum RunSelection {
    /// The connector's delta: its filter, records due for a retry, ODK's next window.
    Delta,
    /// Exactly these registrants (registry input).
    Registrants(Vec<i64>),
    /// Registrants matching this filter instead of the connector's (registry input).
    Filter(Value),
    /// ODK input: exactly the submissions received in `[start, end)`, whatever the watermark.
    Window {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

/// The raw parts of a manual run request, as a form or a JSON body gives them.
#[derive(Debug, Clone, Default)]
pub struct RunParts {
    pub registrant_ids: Option<Vec<i64>>,
    pub filter: Option<Value>,
    pub window_start: Option<String>,
    pub window_end: Option<String>,
}

fn window_bound(field: &str, v: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v)
        .map(|d| d.to_utc())
        .map_err(|_| AppError::field(field, "must be an RFC 3339 date-time"))
}

impl RunParts {
    /// The selection these parts ask for; none of them means the delta.
    pub fn selection(self) -> Result<RunSelection> {
        match (&self.window_start, &self.window_end) {
            (None, None) => {}
            (Some(start), Some(end)) => {
                let (start, end) = (
                    window_bound("window_start", start)?,
                    window_bound("window_end", end)?,
                );
                if start >= end {
                    return Err(AppError::field("window_end", "must be after window_start"));
                }
                return Ok(RunSelection::Window { start, end });
            }
            (Some(_), None) => return Err(AppError::field("window_end", "is required")),
            (None, Some(_)) => return Err(AppError::field("window_start", "is required")),
        }
        match (self.registrant_ids, self.filter) {
            (Some(_), Some(_)) => Err(AppError::field(
                "registrant_ids",
                "give registrant_ids or filter, not both",
            )),
            (Some(ids), None) if ids.is_empty() || ids.len() > MAX_TARGETS => Err(AppError::field(
                "registrant_ids",
                format!("between 1 and {MAX_TARGETS} ids"),
            )),
            (Some(ids), None) => Ok(RunSelection::Registrants(ids)),
            (None, Some(f)) => {
                Domain::from_json(&f).map_err(|e| AppError::field("filter", e.to_string()))?;
                Ok(RunSelection::Filter(f))
            }
            (None, None) => Ok(RunSelection::Delta),
        }
    }
}

/// Registrant ids from an uploaded CSV: one per record, in the first column, with or without a
/// header (`id` or `registrant_id`). `,`, `;` and tab separate columns.
pub fn ids_from_csv(body: &[u8]) -> Result<Vec<i64>> {
    let delimiter = body
        .iter()
        .take_while(|b| **b != b'\n')
        .find(|b| matches!(b, b';' | b'\t'))
        .copied()
        .unwrap_or(b',');
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .delimiter(delimiter)
        .from_reader(body);
    let mut ids = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let line = n + 1;
        let record = record.map_err(|e| {
            AppError::field(&format!("csv.line_{line}"), format!("unreadable: {e}"))
        })?;
        let cell = record.get(0).unwrap_or("");
        if cell.is_empty() {
            continue;
        }
        match cell.parse::<i64>() {
            Ok(id) if id > 0 => ids.push(id),
            _ if n == 0 && matches!(cell, "id" | "registrant_id") => {}
            _ => {
                return Err(AppError::field(
                    &format!("csv.line_{line}"),
                    format!("{cell:?} is not a registrant id"),
                ));
            }
        }
    }
    Ok(ids)
}

/// Runs now: queues a run of `selection` and its job; a worker does the work.
pub async fn run(store: &Store, actor: &Actor, id: i64, selection: RunSelection) -> Result<MtsRun> {
    let c = get(store, id).await?;
    let (kind, selection, targets) = match selection {
        RunSelection::Delta => (RunKind::Delta, None, None),
        RunSelection::Window { start, end } => {
            if c.settings.input_type != InputType::Odk {
                return Err(AppError::field("window_start", "only for ODK input"));
            }
            (
                RunKind::Manual,
                Some(json!({"window": {"start": start, "end": end}})),
                None,
            )
        }
        RunSelection::Registrants(ids) => (
            RunKind::Manual,
            Some(json!({"registrants": ids.len()})),
            Some(ids),
        ),
        RunSelection::Filter(f) => (RunKind::Manual, Some(json!({"filter": f})), None),
    };
    let new = NewMtsRun {
        connector_id: id,
        kind,
        selection: selection.as_ref(),
        targets: targets.as_deref(),
        created_by: &actor.name,
    };
    queued(store.queue_mts_run(&new, actor).await?)
}

/// Follows the connector's active run if there is one, else queues its delta: what the demo
/// does at each start, since a run of an earlier start may still be going.
pub async fn run_or_follow(store: &Store, actor: &Actor, id: i64) -> Result<i64> {
    let new = NewMtsRun {
        connector_id: id,
        kind: RunKind::Delta,
        selection: None,
        targets: None,
        created_by: &actor.name,
    };
    Ok(match store.queue_mts_run(&new, actor).await? {
        RunQueued::Created(run) => run.id,
        RunQueued::AlreadyActive(run) => run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: AppError) -> String {
        match e {
            AppError::Validation(f) => f.to_string(),
            other => format!("not a validation error: {other}"),
        }
    }

    #[test]
    fn csv_ids_with_or_without_header_and_any_separator() {
        assert_eq!(ids_from_csv(b"id\n3\n4\n").unwrap(), vec![3, 4]);
        assert_eq!(ids_from_csv(b"7;x\n8;y\n").unwrap(), vec![7, 8]);
        assert_eq!(ids_from_csv(b"\"9\"\t1\n\n10\n").unwrap(), vec![9, 10]);
        let e = field_of(ids_from_csv(b"1\nabc\n").unwrap_err());
        assert!(e.contains("csv.line_2"), "{e}");
        let e = field_of(ids_from_csv(b"-4\n").unwrap_err());
        assert!(e.contains("csv.line_1"), "{e}");
    }

    #[test]
    fn run_parts_choose_one_selection() {
        assert_eq!(
            RunParts::default().selection().unwrap(),
            RunSelection::Delta
        );
        let both = RunParts {
            registrant_ids: Some(vec![1]),
            filter: Some(json!([])),
            ..RunParts::default()
        };
        assert!(field_of(both.selection().unwrap_err()).contains("registrant_ids"));
        let reversed = RunParts {
            window_start: Some("2026-01-02T00:00:00Z".into()),
            window_end: Some("2026-01-01T00:00:00Z".into()),
            ..RunParts::default()
        };
        assert!(field_of(reversed.selection().unwrap_err()).contains("window_end"));
    }
}
