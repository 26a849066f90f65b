//! The lost-callback watchdog (job `mts.watchdog`, every minute): for chunks whose callbacks
//! are overdue, it asks MTS (`GET /authtoken/status/{id}`). A request MTS no longer knows, one
//! it could not call back (`error_making_callback_request`), or one processed long ago with
//! callbacks still missing: its unresolved records are released and re-sent by a retry run,
//! while attempts last; then they stay failed with the reason. It also completes runs whose
//! callbacks have all come (reads never do).

use chrono::Utc;
use g2p_connectors::mts::RequestStatus;
use g2p_store::audit::Actor;
use g2p_store::jobs::runner::{JobContext, JobError};
use g2p_store::mts_lifecycle::{NewMtsRun, RunQueued};
use serde_json::{Value, json};

use crate::mts::runs::MtsJobs;

/// How many times the watchdog finds a processed request's callbacks still missing before it
/// takes them for lost (MTS may still be retrying them in between).
const PATIENT_POLLS: i64 = 3;

/// Overdue chunks looked at per watchdog pass.
const CHUNKS_PER_PASS: i64 = 200;

/// Why a chunk's callbacks count as lost, from what MTS said; `None` to keep waiting.
fn lost_reason(
    status: &Result<RequestStatus, g2p_connectors::mts::MtsError>,
    polls: i64,
) -> Option<String> {
    match status {
        Ok(RequestStatus::Unknown) => Some("MTS no longer knows the request".to_owned()),
        Ok(RequestStatus::Is(s)) if s == "error_making_callback_request" => {
            Some("MTS could not deliver the callbacks".to_owned())
        }
        Ok(RequestStatus::Is(s)) if s.starts_with("processed") && polls + 1 >= PATIENT_POLLS => {
            Some(format!("callbacks missing although MTS says {s}"))
        }
        _ => None,
    }
}

impl MtsJobs {
    /// The `mts.watchdog` handler.
    pub async fn watchdog_job(self, ctx: JobContext, _payload: Value) -> Result<Value, JobError> {
        let store = &ctx.store;
        let mut released = 0u64;
        let mut resend: Vec<(i64, Vec<i64>)> = Vec::new();
        for chunk in store.due_mts_chunks(CHUNKS_PER_PASS).await? {
            let later = Utc::now() + self.callback_deadline;
            if chunk.unresolved == 0 {
                store
                    .set_mts_chunk_checked(chunk.id, true, later, None)
                    .await?;
                continue;
            }
            let row = store.get_mts_connector(chunk.connector_id).await?;
            let settings = &row.settings.0;
            let status = match &chunk.request_id {
                Some(id) => self.mts.status(&settings.mts_url, id).await,
                None => Ok(RequestStatus::Unknown),
            };
            match lost_reason(&status, chunk.polls) {
                Some(reason) => {
                    let ids = store.unresolved_mts_registrants(chunk.id).await?;
                    let n = store.release_mts_chunk(chunk.id, &reason).await?;
                    released += n;
                    tracing::warn!(chunk = chunk.id, records = n, reason = %reason,
                        "mts: callbacks lost; records released for a re-send");
                    match resend.iter_mut().find(|(c, _)| *c == chunk.connector_id) {
                        Some((_, all)) => all.extend(ids),
                        None => resend.push((chunk.connector_id, ids)),
                    }
                }
                None => {
                    let seen = match &status {
                        Ok(RequestStatus::Is(s)) => Some(s.as_str()),
                        _ => None,
                    };
                    store
                        .set_mts_chunk_checked(chunk.id, false, later, seen)
                        .await?;
                }
            }
        }
        let actor = Actor::system("watchdog");
        let mut runs = Vec::new();
        for (connector_id, ids) in resend {
            if ids.is_empty() {
                continue;
            }
            let selection = json!({"registrants": ids.len()});
            let new = NewMtsRun {
                connector_id,
                kind: g2p_store::mts::RunKind::Retry,
                selection: Some(&selection),
                targets: Some(&ids),
                created_by: &actor.name,
            };
            match store.queue_mts_run(&new, &actor).await? {
                RunQueued::Created(run) => runs.push(run.id),
                // A run is going: it or the next delta takes the released records.
                RunQueued::AlreadyActive(run) => {
                    tracing::info!(
                        connector = connector_id,
                        run,
                        records = ids.len(),
                        "mts: released records wait for the connector's next run"
                    );
                }
            }
        }
        store.complete_mts_runs().await?;
        Ok(json!({"released": released, "retry_runs": runs}))
    }
}
