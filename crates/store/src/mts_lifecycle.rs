//! What an operator does to an MTS connector, each in ONE transaction with ONE audit entry:
//! queue a run (with its job), start (first run, schedule, state), stop (schedule gone, runs
//! stopped, state), retry the failures (attempts reset, run queued). A crash between two
//! writes can no longer leave a connector `running` without its schedule, or a run without the
//! job that sends it.
//!
//! The use cases that call these live in `g2p-app`; this module only knows tables and SQL.

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::types::Json;

use crate::audit::Actor;
use crate::error::{Result, StoreError};
use crate::jobs::ENQUEUE_SQL;
use crate::jobs::schedules::{ScheduleSpec, UPSERT_SQL};
use crate::mts::{
    ConnectorState, MTS_RUN_JOB, MTS_TICK_JOB, MtsConnectorRow, MtsRun, RunKind, mts_schedule_name,
};
use crate::{Backend, Store, audit_insert, with_db};

/// Attempts of a run's job: a run resumes from its cursor, so retries are cheap.
pub const MTS_RUN_JOB_ATTEMPTS: i32 = 8;

/// A run to queue.
#[derive(Debug, Clone)]
pub struct NewMtsRun<'a> {
    pub connector_id: i64,
    pub kind: RunKind,
    pub selection: Option<&'a Value>,
    /// A manual import's registrant ids (stored with the run, not in `selection`).
    pub targets: Option<&'a [i64]>,
    pub created_by: &'a str,
}

/// The answer to "queue a run": at most one run of a connector is queued or running.
#[derive(Debug, Clone)]
pub enum RunQueued {
    Created(Box<MtsRun>),
    /// The connector's unfinished run; nothing was written.
    AlreadyActive(i64),
}

/// How a connector is started: a recurring one gets its schedule.
#[derive(Debug, Clone, Copy)]
pub enum StartMode {
    OneTime,
    Recurring(ScheduleSpec),
}

const ACTIVE_RUN_SQL: &str = "SELECT id FROM mts_runs WHERE connector_id = $1 \
    AND status IN ('queued', 'running')";

const INSERT_RUN_SQL: &str = "INSERT INTO mts_runs (connector_id, kind, status, selection, \
    created_by, created_at) VALUES ($1, $2, 'queued', $3, $4, $5) RETURNING id, connector_id, \
    kind, status, selection, error, sent, cursor, window_start, window_end, created_by, \
    created_at, started_at, finished_at";

const CONNECTOR_STATE_SQL: &str = "UPDATE mts_connectors SET state = $2, updated_at = $3 \
    WHERE id = $1 RETURNING id, name, settings, callback_secret, odk_secret, state, watermark, \
    created_at, updated_at, version";

/// Queues `run` (and its job, when `$with_job`) inside the open transaction `$tx`; evaluates
/// to `Result<RunQueued>`. A macro because the body is compiled once per backend.
macro_rules! queue_run_in_tx {
    ($store:expr, $tx:expr, $run:expr) => {
        queue_run_in_tx!($store, $tx, $run, true)
    };
    ($store:expr, $tx:expr, $run:expr, $with_job:expr) => {
        async {
            let run: &NewMtsRun<'_> = $run;
            // PostgreSQL: two nodes queueing at once serialise on the connector row.
            let exists: Option<(i64,)> = if $store.backend() == Backend::Postgres {
                sqlx::query_as("SELECT id FROM mts_connectors WHERE id = $1 FOR UPDATE")
                    .bind(run.connector_id)
                    .fetch_optional(&mut *$tx)
                    .await?
            } else {
                sqlx::query_as("SELECT id FROM mts_connectors WHERE id = $1")
                    .bind(run.connector_id)
                    .fetch_optional(&mut *$tx)
                    .await?
            };
            if exists.is_none() {
                return Err(StoreError::not_found("connector"));
            }
            let active: Option<(i64,)> = sqlx::query_as(ACTIVE_RUN_SQL)
                .bind(run.connector_id)
                .fetch_optional(&mut *$tx)
                .await?;
            if let Some((id,)) = active {
                return Ok(RunQueued::AlreadyActive(id));
            }
            // The store's clock: a test that moves it sees the run's job due when it says.
            let now = $store.now();
            let created: MtsRun = sqlx::query_as(INSERT_RUN_SQL)
                .bind(run.connector_id)
                .bind(run.kind.as_str())
                .bind(run.selection.map(Json))
                .bind(run.created_by)
                .bind(now)
                .fetch_one(&mut *$tx)
                .await?;
            if let Some(ids) = run.targets {
                let mut ids = ids.to_vec();
                ids.sort_unstable();
                ids.dedup();
                for part in ids.chunks(500) {
                    let rows: Vec<String> =
                        (0..part.len()).map(|i| format!("($1, ${})", i + 2)).collect();
                    let sql = format!(
                        "INSERT INTO mts_run_targets (run_id, registrant_id) VALUES {}",
                        rows.join(", ")
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(created.id);
                    for id in part {
                        q = q.bind(*id);
                    }
                    q.execute(&mut *$tx).await?;
                }
            }
            if $with_job {
                sqlx::query(ENQUEUE_SQL)
                    .bind(MTS_RUN_JOB)
                    .bind(Json(json!({"run_id": created.id})))
                    .bind(MTS_RUN_JOB_ATTEMPTS)
                    .bind(now)
                    .bind(format!("{MTS_RUN_JOB}:{}", created.id))
                    .bind(now)
                    .execute(&mut *$tx)
                    .await?;
            }
            Ok(RunQueued::Created(Box::new(created)))
        }
    };
}

fn run_audit(run: &MtsRun) -> Value {
    json!({"run_id": run.id, "kind": run.kind.as_str(), "selection": run.selection})
}

impl Store {
    /// Inserts a run, with or without its job, and no audit entry: see
    /// [`Store::create_mts_run`].
    pub(crate) async fn insert_mts_run(
        &self,
        run: &NewMtsRun<'_>,
        with_job: bool,
    ) -> Result<RunQueued> {
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let queued = queue_run_in_tx!(self, tx, run, with_job).await?;
            tx.commit().await?;
            Ok(queued)
        })
    }

    /// Queues a run and the job that sends it; audit `run` on the connector.
    pub async fn queue_mts_run(&self, run: &NewMtsRun<'_>, actor: &Actor) -> Result<RunQueued> {
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let queued = queue_run_in_tx!(self, tx, run).await?;
            if let RunQueued::Created(r) = &queued {
                audit_insert!(&mut *tx, actor, "run", "mts_connector", Some(run.connector_id),
                    None::<i64>, None::<Value>, Some(run_audit(r)))?;
                tx.commit().await?;
            }
            Ok(queued)
        })
    }

    /// Starts a connector: its first (delta) run and job; for a recurring one, its schedule
    /// (enabled; a tick missed while it was disabled is not fired) and the state `running`.
    /// Audit `start`. Nothing is written when a run is already going.
    pub async fn start_mts_connector(
        &self,
        connector_id: i64,
        mode: StartMode,
        actor: &Actor,
    ) -> Result<RunQueued> {
        const ENABLE_SQL: &str = "UPDATE schedules SET enabled = TRUE, \
            next_run_at = CASE WHEN next_run_at > $2 THEN next_run_at ELSE $3 END, \
            updated_at = $2 WHERE name = $1 AND NOT enabled";
        let first = NewMtsRun {
            connector_id,
            kind: RunKind::Delta,
            selection: None,
            targets: None,
            created_by: &actor.name,
        };
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let queued = queue_run_in_tx!(self, tx, &first).await?;
            let RunQueued::Created(run) = &queued else {
                return Ok(queued);
            };
            let mut after = run_audit(run);
            if let StartMode::Recurring(spec) = mode {
                spec.validate()?;
                let now = Utc::now();
                let name = mts_schedule_name(connector_id);
                let (every_minutes, daily_at) = spec.columns();
                sqlx::query(UPSERT_SQL)
                    .bind(&name)
                    .bind(MTS_TICK_JOB)
                    .bind(Json(json!({"connector_id": connector_id})))
                    .bind(every_minutes)
                    .bind(&daily_at)
                    .bind(spec.next_after(now))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(ENABLE_SQL)
                    .bind(&name)
                    .bind(now)
                    .bind(spec.next_after(now))
                    .execute(&mut *tx)
                    .await?;
                let _: MtsConnectorRow = sqlx::query_as(CONNECTOR_STATE_SQL)
                    .bind(connector_id)
                    .bind(ConnectorState::Running.as_str())
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                after["schedule"] = json!(name);
            }
            audit_insert!(&mut *tx, actor, "start", "mts_connector", Some(connector_id),
                None::<i64>, None::<Value>, Some(after))?;
            tx.commit().await?;
            Ok(queued)
        })
    }

    /// Stops a connector: its schedule deleted, its queued and running runs stopped (a running
    /// one stops after its current chunk; callbacks of what was sent are still taken), state
    /// `stopped`. Audit `stop`.
    pub async fn stop_mts_connector(
        &self,
        connector_id: i64,
        actor: &Actor,
    ) -> Result<MtsConnectorRow> {
        const STOP_RUNS_SQL: &str = "UPDATE mts_runs SET status = 'stopped', finished_at = $2 \
            WHERE connector_id = $1 AND status IN ('queued', 'running')";
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let now = Utc::now();
            let row: MtsConnectorRow = sqlx::query_as(CONNECTOR_STATE_SQL)
                .bind(connector_id)
                .bind(ConnectorState::Stopped.as_str())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::not_found("connector"))?;
            let schedules = sqlx::query("DELETE FROM schedules WHERE name = $1")
                .bind(mts_schedule_name(connector_id))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let runs = sqlx::query(STOP_RUNS_SQL)
                .bind(connector_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let after = json!({"runs_stopped": runs, "schedule_deleted": schedules > 0});
            audit_insert!(&mut *tx, actor, "stop", "mts_connector", Some(connector_id),
                None::<i64>, None::<Value>, Some(after))?;
            tx.commit().await?;
            Ok(row)
        })
    }

    /// Makes every failed record of the connector due now with fresh attempts and queues a
    /// `retry` run. Audit `retry_failed`. Nothing is written when a run is already going.
    pub async fn retry_mts_failures(&self, connector_id: i64, actor: &Actor) -> Result<RunQueued> {
        const RESET_SQL: &str = "UPDATE mts_records SET attempts = 0, next_retry_at = $2 \
            WHERE connector_id = $1 AND state = 'failed'";
        let run = NewMtsRun {
            connector_id,
            kind: RunKind::Retry,
            selection: None,
            targets: None,
            created_by: &actor.name,
        };
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let queued = queue_run_in_tx!(self, tx, &run).await?;
            let RunQueued::Created(created) = &queued else {
                return Ok(queued);
            };
            let reset = sqlx::query(RESET_SQL)
                .bind(connector_id)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let mut after = run_audit(created);
            after["records_reset"] = json!(reset);
            audit_insert!(&mut *tx, actor, "retry_failed", "mts_connector", Some(connector_id),
                None::<i64>, None::<Value>, Some(after))?;
            tx.commit().await?;
            Ok(queued)
        })
    }
}
