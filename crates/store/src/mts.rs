//! MTS connectors: their configuration, runs, the MTS requests (chunks) of a run, and the
//! tokenisation state of each registrant. The state row is the lock against double sends: a
//! registrant is claimed for a chunk by moving its row to `sent` with a fresh opaque reference,
//! in the transaction that creates the chunk, guarded so that two nodes racing for the same
//! registrant cannot both win. A callback is matched by that reference and applied in one
//! transaction (token stored, VID removed, attributes merged, state moved, audit entry): see
//! `mts_callbacks`.
//!
//! Secrets arrive here already sealed (the web layer owns the key); this module never sees
//! them in clear.

use chrono::{DateTime, Duration, Utc};
use g2p_domain::Registrant;
use g2p_domain::filter::Domain;
use g2p_domain::mts_connector::MtsConnectorSettings;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::types::Json;

use crate::audit::Actor;
use crate::error::{Result, StoreError};
use crate::registry::{REGISTRANT_COLUMNS, RegistrantRow};
use crate::{SqlValue, Store, audit_insert, bind_values, with_db};

/// Job kind of a run; payload `{"run_id": <id>}`.
pub const MTS_RUN_JOB: &str = "mts.run";
/// Job kind fired by a recurring connector's schedule; payload `{"connector_id": <id>}`.
pub const MTS_TICK_JOB: &str = "mts.tick";
/// Job kind of the lost-callback watchdog; payload `{}`.
pub const MTS_WATCHDOG_JOB: &str = "mts.watchdog";

/// The schedule of a running recurring connector.
pub fn mts_schedule_name(connector_id: i64) -> String {
    format!("mts-connector-{connector_id}")
}

/// Tokenisation states of a registrant for one connector.
pub mod state {
    pub const SENT: &str = "sent";
    pub const PROCESSED: &str = "processed";
    pub const FAILED: &str = "failed";
}

/// Run statuses: [`RunStatus`] (re-exported for callers of this module).
pub use g2p_domain::mts_run::{ConnectorState, RunKind, RunStatus};

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MtsConnectorRow {
    pub id: i64,
    pub name: String,
    pub settings: Json<MtsConnectorSettings>,
    #[serde(skip)]
    pub callback_secret: Option<String>,
    #[serde(skip)]
    pub odk_secret: Option<String>,
    #[sqlx(try_from = "String")]
    pub state: ConnectorState,
    pub watermark: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

const CONNECTOR_COLUMNS: &str = "id, name, settings, callback_secret, odk_secret, state, \
    watermark, created_at, updated_at, version";

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MtsRun {
    pub id: i64,
    pub connector_id: i64,
    #[sqlx(try_from = "String")]
    pub kind: RunKind,
    #[sqlx(try_from = "String")]
    pub status: RunStatus,
    #[schema(value_type = Option<Object>)]
    pub selection: Option<Json<Value>>,
    pub error: Option<String>,
    /// Records handed to MTS by this run.
    pub sent: i64,
    #[serde(skip)]
    pub cursor: i64,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const RUN_COLUMNS: &str = "id, connector_id, kind, status, selection, error, sent, cursor, \
    window_start, window_end, created_by, created_at, started_at, finished_at";

/// Where the records a run sent stand now (records re-sent by a later run count there).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MtsRunProgress {
    /// Sent and not yet called back.
    pub pending: i64,
    pub processed: i64,
    pub failed: i64,
}

/// Which registrants a run takes.
#[derive(Debug, Clone)]
pub struct MtsSelection<'a> {
    pub connector_id: i64,
    pub vid_id_type: &'a str,
    pub token_id_type: &'a str,
    pub filter: &'a Domain,
    /// Restricted to the targets of this run (a manual import by ids).
    pub targets_of_run: Option<i64>,
    /// Failed records are taken while their attempts are below this.
    pub max_attempts: i64,
    /// Manual runs take failed records now, whatever their retry time.
    pub ignore_retry_time: bool,
}

/// One registrant claimed for a chunk.
#[derive(Debug, Clone)]
pub struct MtsClaimedRecord {
    pub reference: String,
    pub vid: String,
    pub registrant: Registrant,
}

/// A chunk created by [`Store::claim_mts_chunk`].
#[derive(Debug, Clone)]
pub struct MtsClaim {
    /// `None` when nothing was claimed (the page had only registrants another node took).
    pub chunk_id: Option<i64>,
    pub records: Vec<MtsClaimedRecord>,
    /// The highest registrant id looked at: the run's cursor once the chunk is submitted.
    pub cursor: i64,
    /// Whether the selection may have more after `cursor`.
    pub more: bool,
}

/// One record of a callback, as the connector's output format shapes it.
#[derive(Debug, Clone)]
pub struct MtsCallbackItem {
    pub reference: String,
    pub status: String,
    pub token: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Fields the operator's output format added: merged into the registrant's attributes.
    pub extra: Map<String, Value>,
}

/// What a callback does to the registry.
#[derive(Debug, Clone)]
pub struct MtsCallbackPolicy<'a> {
    pub connector_id: i64,
    pub vid_id_type: &'a str,
    pub token_id_type: &'a str,
    pub remove_vid: bool,
    pub max_attempts: i64,
    pub backoff_minutes: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MtsCallbackReport {
    /// Records whose result was stored.
    pub applied: usize,
    /// Replays and late results of an earlier send: nothing changed.
    pub ignored: usize,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MtsFailure {
    pub registrant_id: i64,
    pub run_id: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i64,
    /// When the delta takes it again; `None` once the attempts are used up.
    pub next_retry_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Registrants holding the same token: one person registered twice.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MtsDuplicate {
    pub token_id_type: String,
    /// The shared token.
    pub token: String,
    pub registrant_ids: Vec<i64>,
}

/// A chunk the watchdog looks at.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MtsDueChunk {
    pub id: i64,
    pub run_id: i64,
    pub connector_id: i64,
    pub request_id: Option<String>,
    pub polls: i64,
    /// Records of the chunk still waiting for their callback.
    pub unresolved: i64,
}

/// Submitted runs owing no callback any more (see [`Store::complete_mts_runs`]); binds the
/// time as `$1`; a caller may add a condition on `$2`.
const COMPLETE_RUNS_SQL: &str = "UPDATE mts_runs SET status = 'completed', finished_at = $1 \
    WHERE status = 'submitted' AND NOT EXISTS (SELECT 1 FROM mts_records m \
    WHERE m.run_id = mts_runs.id AND m.state = 'sent') \
    AND (window_end IS NULL OR sent <= (SELECT count(*) FROM odk_run_submissions o \
    WHERE o.run_id = mts_runs.id))";

/// A new record's reference: its key (32 characters, kept for every later send) and a nonce.
fn new_reference() -> String {
    format!(
        "{}.{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The key of a reference: what identifies the record whatever the send.
pub(crate) fn reference_key(reference: &str) -> &str {
    reference.split_once('.').map_or(reference, |(key, _)| key)
}

impl Store {
    // ------------------------------------------------------------------ connectors

    /// Creates a connector (state `stopped`) with one audit entry. `settings_for_id` may
    /// rewrite the settings once the id is known (a callback URL naming the connector's own
    /// receiver), inside the same transaction.
    pub async fn create_mts_connector(
        &self,
        name: &str,
        settings: &MtsConnectorSettings,
        settings_for_id: impl FnOnce(i64) -> Option<MtsConnectorSettings>,
        callback_secret: Option<String>,
        odk_secret: Option<String>,
        actor: &Actor,
    ) -> Result<MtsConnectorRow> {
        let sql = format!(
            "INSERT INTO mts_connectors (name, settings, callback_secret, odk_secret, state, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 'stopped', $5, $5) \
             RETURNING {CONNECTOR_COLUMNS}"
        );
        let resettle = format!(
            "UPDATE mts_connectors SET settings = $2 WHERE id = $1 RETURNING {CONNECTOR_COLUMNS}"
        );
        let now = Utc::now();
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let mut row: MtsConnectorRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(name)
                .bind(Json(settings))
                .bind(callback_secret)
                .bind(odk_secret)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            if let Some(settled) = settings_for_id(row.id) {
                row = sqlx::query_as(sqlx::AssertSqlSafe(resettle))
                    .bind(row.id)
                    .bind(Json(settled))
                    .fetch_one(&mut *tx)
                    .await?;
            }
            let after = serde_json::json!({"name": name, "settings": &row.settings.0});
            audit_insert!(&mut *tx, actor, "create", "mts_connector", Some(row.id),
                None::<i64>, None::<Value>, Some(after))?;
            tx.commit().await?;
            Ok(row)
        })
    }

    /// Replaces the name and settings; a secret is replaced only when given.
    pub async fn update_mts_connector(
        &self,
        id: i64,
        name: &str,
        settings: &MtsConnectorSettings,
        callback_secret: Option<String>,
        odk_secret: Option<String>,
        actor: &Actor,
    ) -> Result<MtsConnectorRow> {
        let sql = format!(
            "UPDATE mts_connectors SET name = $2, settings = $3, \
             callback_secret = COALESCE($4, callback_secret), \
             odk_secret = COALESCE($5, odk_secret), updated_at = $6, version = version + 1 \
             WHERE id = $1 RETURNING {CONNECTOR_COLUMNS}"
        );
        let before = self.get_mts_connector(id).await?;
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let row: MtsConnectorRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(name)
                .bind(Json(settings))
                .bind(callback_secret.as_deref())
                .bind(odk_secret.as_deref())
                .bind(Utc::now())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::not_found("connector"))?;
            let b = serde_json::json!({"name": before.name, "settings": &before.settings.0});
            let a = serde_json::json!({"name": name, "settings": settings,
                "callback_secret_changed": callback_secret.is_some(),
                "odk_secret_changed": odk_secret.is_some()});
            audit_insert!(&mut *tx, actor, "update", "mts_connector", Some(id),
                None::<i64>, Some(b), Some(a))?;
            tx.commit().await?;
            Ok(row)
        })
    }

    pub async fn get_mts_connector(&self, id: i64) -> Result<MtsConnectorRow> {
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM mts_connectors WHERE id = $1");
        let row: Option<MtsConnectorRow> = with_db!(self, read, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await?
        });
        row.ok_or(StoreError::not_found("connector"))
    }

    pub async fn list_mts_connectors(&self) -> Result<Vec<MtsConnectorRow>> {
        let sql = format!("SELECT {CONNECTOR_COLUMNS} FROM mts_connectors ORDER BY name, id");
        Ok(with_db!(self, read, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await?
        }))
    }

    /// Sets the state alone (operators start and stop through `mts_lifecycle`).
    pub async fn set_mts_connector_state(
        &self,
        id: i64,
        new_state: ConnectorState,
        actor: &Actor,
    ) -> Result<MtsConnectorRow> {
        let sql = format!(
            "UPDATE mts_connectors SET state = $2, updated_at = $3 WHERE id = $1 \
             RETURNING {CONNECTOR_COLUMNS}"
        );
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let row: MtsConnectorRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .bind(new_state.as_str())
                .bind(Utc::now())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::not_found("connector"))?;
            audit_insert!(&mut *tx, actor, new_state.as_str(), "mts_connector", Some(id),
                None::<i64>, None::<Value>, None::<Value>)?;
            tx.commit().await?;
            Ok(row)
        })
    }

    // ------------------------------------------------------------------ runs

    /// Inserts a run WITHOUT the job that sends it, for tests and benchmarks that drive runs
    /// themselves; everything else queues runs with `queue_mts_run` (`mts_lifecycle`). At
    /// most one run of a connector is queued or running at a time (else `Conflict`).
    pub async fn create_mts_run(
        &self,
        connector_id: i64,
        kind: RunKind,
        selection: Option<&Value>,
        targets: Option<&[i64]>,
        created_by: &str,
    ) -> Result<MtsRun> {
        let new = crate::mts_lifecycle::NewMtsRun {
            connector_id,
            kind,
            selection,
            targets,
            created_by,
        };
        match self.insert_mts_run(&new, false).await? {
            crate::mts_lifecycle::RunQueued::Created(run) => Ok(*run),
            crate::mts_lifecycle::RunQueued::AlreadyActive(id) => Err(StoreError::Conflict {
                field: "run".into(),
                message: format!("run {id} of this connector has not finished"),
            }),
        }
    }

    pub async fn get_mts_run(&self, id: i64) -> Result<MtsRun> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM mts_runs WHERE id = $1");
        let row: Option<MtsRun> = with_db!(self, read, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(p).await?
        });
        row.ok_or(StoreError::not_found("run"))
    }

    /// Newest first.
    pub async fn list_mts_runs(&self, connector_id: i64, limit: i64) -> Result<Vec<MtsRun>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM mts_runs WHERE connector_id = $1 ORDER BY id DESC \
             LIMIT $2"
        );
        Ok(with_db!(self, read, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(connector_id).bind(limit)
                .fetch_all(p).await?
        }))
    }

    /// Moves a run to `status`; `running` stamps the start, final statuses the end.
    pub async fn set_mts_run_status(
        &self,
        id: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<()> {
        const SQL: &str = "UPDATE mts_runs SET status = $2, error = $3, \
            started_at = CASE WHEN $2 = 'running' THEN COALESCE(started_at, $4) \
                ELSE started_at END, \
            finished_at = CASE WHEN $2 IN ('completed', 'failed', 'stopped') THEN $4 \
                ELSE finished_at END \
            WHERE id = $1";
        with_db!(self, write, p => {
            sqlx::query(SQL).bind(id).bind(status.as_str()).bind(error).bind(Utc::now())
                .execute(p).await?;
        });
        Ok(())
    }

    pub async fn mts_run_progress(&self, run_id: i64) -> Result<MtsRunProgress> {
        const SQL: &str =
            "SELECT state, COUNT(*) FROM mts_records WHERE run_id = $1 GROUP BY state";
        let rows: Vec<(String, i64)> = with_db!(self, read, p => {
            sqlx::query_as(SQL).bind(run_id).fetch_all(p).await?
        });
        let mut out = MtsRunProgress::default();
        for (s, n) in rows {
            match s.as_str() {
                state::SENT => out.pending = n,
                state::PROCESSED => out.processed = n,
                state::FAILED => out.failed = n,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Runs that handed everything to MTS and have no callback owed any more become
    /// `completed`: for registry input, no record of the run is still `sent`; for ODK input (a
    /// run with a window), as many submissions came back as ODK Central held in the window.
    /// Returns how many.
    ///
    /// Called by writers only (the run job, the watchdog, the callback receiver): never on a
    /// read.
    pub async fn complete_mts_runs(&self) -> Result<u64> {
        Ok(with_db!(self, write, p => {
            sqlx::query(COMPLETE_RUNS_SQL).bind(Utc::now()).execute(p).await?.rows_affected()
        }))
    }

    /// [`Store::complete_mts_runs`] for one connector: what a callback does once its
    /// transaction committed. Run after the commit, so that of two callbacks committing at
    /// once, the later one's check sees both.
    pub async fn complete_mts_runs_of(&self, connector_id: i64) -> Result<u64> {
        let sql = format!("{COMPLETE_RUNS_SQL} AND connector_id = $2");
        Ok(with_db!(self, write, p => {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(Utc::now()).bind(connector_id)
                .execute(p).await?.rows_affected()
        }))
    }

    // ------------------------------------------------------------------ selection

    /// Takes the next `limit` registrants of `sel` after the run's cursor and claims them for
    /// a new chunk of `run_id` (state `sent`, fresh references), in one transaction. A
    /// registrant another node claimed meanwhile is skipped, never sent twice.
    pub async fn claim_mts_chunk(
        &self,
        run_id: i64,
        cursor: i64,
        sel: &MtsSelection<'_>,
        limit: i64,
    ) -> Result<MtsClaim> {
        let backend = self.backend();
        let (cond, mut params) = crate::filter_sql::compile(sel.filter, backend, 1);
        let mut n = params.len();
        let mut next = |params: &mut Vec<SqlValue>, v: SqlValue| {
            params.push(v);
            n += 1;
            format!("${n}")
        };
        let vid_type = next(&mut params, SqlValue::Text(sel.vid_id_type.to_owned()));
        let token_type = next(&mut params, SqlValue::Text(sel.token_id_type.to_owned()));
        let connector = next(&mut params, SqlValue::Int(sel.connector_id));
        let after = next(&mut params, SqlValue::Int(cursor));
        let max_attempts = next(&mut params, SqlValue::Int(sel.max_attempts));
        let retry_due = if sel.ignore_retry_time {
            String::new()
        } else {
            let now = next(&mut params, SqlValue::DateTime(Utc::now()));
            format!(" AND m.next_retry_at <= {now}")
        };
        let ids = match sel.targets_of_run {
            Some(run) => {
                let run = next(&mut params, SqlValue::Int(run));
                format!(
                    " AND r.id IN (SELECT t.registrant_id FROM mts_run_targets t \
                     WHERE t.run_id = {run})"
                )
            }
            None => String::new(),
        };
        let lim = next(&mut params, SqlValue::Int(limit));
        // Taken: no state yet, processed but without a token (it was removed since), or failed
        // with attempts left and its retry time come. Never `sent` (in flight). Every join
        // repeats the cursor bound: without it PostgreSQL merge-joins every VID, state row and
        // token of the registry on every page, which makes a run quadratic.
        let sql = format!(
            "SELECT r.id, v.value FROM registrants r \
             JOIN reg_ids v ON v.registrant_id = r.id AND v.registrant_id > {after} \
               AND v.id_type_id = (SELECT id FROM id_types WHERE lower(name) = lower({vid_type})) \
             LEFT JOIN mts_records m ON m.connector_id = {connector} AND m.registrant_id = r.id \
               AND m.registrant_id > {after} \
             WHERE ({cond}) AND r.id > {after}{ids} \
             AND NOT EXISTS (SELECT 1 FROM reg_ids t WHERE t.registrant_id = r.id \
               AND t.registrant_id > {after} \
               AND t.id_type_id = (SELECT id FROM id_types WHERE lower(name) = lower({token_type}))) \
             AND (m.registrant_id IS NULL OR m.state = 'processed' OR (m.state = 'failed' \
               AND m.attempts < {max_attempts}{retry_due})) \
             ORDER BY r.id LIMIT {lim}"
        );
        let now = Utc::now();
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let candidates: Vec<(i64, String)> =
                bind_values!(sqlx::query_as(sqlx::AssertSqlSafe(sql)), &params)
                    .fetch_all(&mut *tx)
                    .await?;
            let more = candidates.len() as i64 >= limit;
            let cursor = candidates.last().map_or(cursor, |c| c.0);
            if candidates.is_empty() {
                tx.commit().await?;
                return Ok(MtsClaim { chunk_id: None, records: Vec::new(), cursor, more });
            }
            let (chunk_id,): (i64,) = sqlx::query_as(
                "INSERT INTO mts_chunks (run_id, status, records, check_at, created_at, \
                 updated_at) VALUES ($1, 'submitting', $2, $3, $3, $3) RETURNING id",
            )
            .bind(run_id)
            .bind(candidates.len() as i64)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let refs: Vec<String> = candidates.iter().map(|_| new_reference()).collect();
            let mut claimed: Vec<(i64, String)> = Vec::with_capacity(candidates.len());
            for (part, part_refs) in candidates.chunks(100).zip(refs.chunks(100)) {
                // $1 is the connector; then five placeholders per row.
                let mut sql = String::from(
                    "INSERT INTO mts_records (connector_id, registrant_id, state, ref, ref_key, \
                     run_id, chunk_id, attempts, updated_at) VALUES ",
                );
                let mut binds: Vec<SqlValue> = vec![SqlValue::Int(sel.connector_id)];
                let mut rows = Vec::with_capacity(part.len());
                for ((rid, _), r) in part.iter().zip(part_refs) {
                    let k = binds.len();
                    rows.push(format!(
                        "($1, ${}, 'sent', ${}, ${}, ${}, ${}, 1, ${})",
                        k + 1, k + 2, k + 3, k + 4, k + 5, k + 6
                    ));
                    binds.push(SqlValue::Int(*rid));
                    binds.push(SqlValue::Text(r.clone()));
                    binds.push(SqlValue::Text(reference_key(r).to_owned()));
                    binds.push(SqlValue::Int(run_id));
                    binds.push(SqlValue::Int(chunk_id));
                    binds.push(SqlValue::DateTime(now));
                }
                sql.push_str(&rows.join(", "));
                sql.push_str(
                    // A record sent before keeps its key; only the nonce (after the key's 32
                    // characters) is new.
                    " ON CONFLICT (connector_id, registrant_id) DO UPDATE SET state = 'sent', \
                     ref = COALESCE(mts_records.ref_key, excluded.ref_key) \
                       || substr(excluded.ref, 33), \
                     ref_key = COALESCE(mts_records.ref_key, excluded.ref_key), run_id = excluded.run_id, chunk_id = excluded.chunk_id, \
                     attempts = mts_records.attempts + 1, error_code = NULL, \
                     error_message = NULL, next_retry_at = NULL, updated_at = excluded.updated_at \
                     WHERE mts_records.state <> 'sent' RETURNING registrant_id, ref",
                );
                let got: Vec<(i64, String)> =
                    bind_values!(sqlx::query_as(sqlx::AssertSqlSafe(sql)), &binds)
                        .fetch_all(&mut *tx)
                        .await?;
                claimed.extend(got);
            }
            if claimed.is_empty() {
                sqlx::query("DELETE FROM mts_chunks WHERE id = $1")
                    .bind(chunk_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(MtsClaim { chunk_id: None, records: Vec::new(), cursor, more });
            }
            claimed.sort_unstable();
            let ph: Vec<String> = (1..=claimed.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {REGISTRANT_COLUMNS} FROM registrants r WHERE r.id IN ({}) ORDER BY r.id",
                ph.join(", ")
            );
            let mut q = sqlx::query_as::<_, RegistrantRow>(sqlx::AssertSqlSafe(sql));
            for (id, _) in &claimed {
                q = q.bind(*id);
            }
            let registrants = q.fetch_all(&mut *tx).await?;
            sqlx::query("UPDATE mts_chunks SET records = $2 WHERE id = $1")
                .bind(chunk_id)
                .bind(claimed.len() as i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            let mut records = Vec::with_capacity(registrants.len());
            for row in registrants {
                let reg: Registrant = row.into();
                // Both are in registrant id order.
                let i = candidates.binary_search_by_key(&reg.id, |c| c.0).ok();
                let j = claimed.binary_search_by_key(&reg.id, |c| c.0).ok();
                if let (Some(i), Some(j)) = (i, j) {
                    records.push(MtsClaimedRecord {
                        reference: claimed[j].1.clone(),
                        vid: candidates[i].1.clone(),
                        registrant: reg,
                    });
                }
            }
            Ok(MtsClaim { chunk_id: Some(chunk_id), records, cursor, more })
        })
    }

    /// MTS accepted the chunk: its identifier is stored, and the run moves past it.
    pub async fn mark_mts_chunk_submitted(
        &self,
        chunk_id: i64,
        request_id: &str,
        check_at: DateTime<Utc>,
        run_id: i64,
        cursor: i64,
        sent: i64,
    ) -> Result<()> {
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            sqlx::query("UPDATE mts_chunks SET status = 'submitted', request_id = $2, \
                 check_at = $3, updated_at = $4 WHERE id = $1")
                .bind(chunk_id)
                .bind(request_id)
                .bind(check_at)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE mts_runs SET cursor = $2, sent = sent + $3 WHERE id = $1")
                .bind(run_id)
                .bind(cursor)
                .bind(sent)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Moves a run's cursor past a page that had nothing to claim.
    pub async fn set_mts_run_cursor(&self, run_id: i64, cursor: i64) -> Result<()> {
        with_db!(self, write, p => {
            sqlx::query("UPDATE mts_runs SET cursor = $2 WHERE id = $1")
                .bind(run_id)
                .bind(cursor)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// MTS did not take the chunk: its records go back to where they were before the claim
    /// (a first send leaves no state; an earlier failure is due again now), nothing stays
    /// `sent`.
    pub async fn abandon_mts_chunk(&self, chunk_id: i64, reason: &str) -> Result<()> {
        let now = Utc::now();
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM mts_records WHERE chunk_id = $1 AND state = 'sent' \
                 AND attempts <= 1")
                .bind(chunk_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE mts_records SET state = 'failed', attempts = attempts - 1, \
                 error_code = 'G2P-MTS-SUBMIT', error_message = $2, next_retry_at = $3, \
                 chunk_id = NULL, updated_at = $3 WHERE chunk_id = $1 AND state = 'sent'")
                .bind(chunk_id)
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE mts_chunks SET status = 'abandoned', updated_at = $2 \
                 WHERE id = $1")
                .bind(chunk_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    // ------------------------------------------------------------------ callbacks

    // ------------------------------------------------------------------ lists

    /// Failed records of a connector (of one run if given), oldest id first after `after`.
    pub async fn list_mts_failures(
        &self,
        connector_id: i64,
        run_id: Option<i64>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MtsFailure>> {
        const SQL: &str = "SELECT registrant_id, run_id, error_code, error_message, attempts, \
            next_retry_at, updated_at FROM mts_records WHERE connector_id = $1 \
            AND state = 'failed' AND ($2 IS NULL OR run_id = $2) AND registrant_id > $3 \
            ORDER BY registrant_id LIMIT $4";
        Ok(with_db!(self, read, p => {
            sqlx::query_as(SQL).bind(connector_id).bind(run_id).bind(after).bind(limit)
                .fetch_all(p).await?
        }))
    }

    /// Makes every failed record of a connector due now with its attempts reset; returns how
    /// many.
    pub async fn reset_mts_failures(&self, connector_id: i64) -> Result<u64> {
        const SQL: &str = "UPDATE mts_records SET attempts = 0, next_retry_at = $2 \
            WHERE connector_id = $1 AND state = 'failed'";
        Ok(with_db!(self, write, p => {
            sqlx::query(SQL).bind(connector_id).bind(Utc::now()).execute(p).await?
                .rows_affected()
        }))
    }

    /// Registrants sharing a token of `token_id_type`, up to `limit` groups.
    pub async fn mts_possible_duplicates(
        &self,
        token_id_type: &str,
        limit: i64,
    ) -> Result<Vec<MtsDuplicate>> {
        const SQL: &str = "SELECT ri.value, ri.registrant_id FROM reg_ids ri \
            WHERE ri.id_type_id = (SELECT id FROM id_types WHERE lower(name) = lower($1)) \
            AND ri.value IN (SELECT d.value FROM reg_ids d WHERE d.id_type_id = ri.id_type_id \
            GROUP BY d.value HAVING COUNT(*) > 1 ORDER BY d.value LIMIT $2) \
            ORDER BY ri.value, ri.registrant_id";
        let rows: Vec<(String, i64)> = with_db!(self, read, p => {
            sqlx::query_as(SQL).bind(token_id_type).bind(limit).fetch_all(p).await?
        });
        let mut out: Vec<MtsDuplicate> = Vec::new();
        for (token, id) in rows {
            match out.last_mut() {
                Some(d) if d.token == token => d.registrant_ids.push(id),
                _ => out.push(MtsDuplicate {
                    token_id_type: token_id_type.to_owned(),
                    token,
                    registrant_ids: vec![id],
                }),
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ watchdog

    /// Submitted chunks whose check time has come, with their unresolved counts.
    pub async fn due_mts_chunks(&self, limit: i64) -> Result<Vec<MtsDueChunk>> {
        const SQL: &str = "SELECT c.id, c.run_id, r.connector_id, c.request_id, c.polls, \
            (SELECT COUNT(*) FROM mts_records m WHERE m.chunk_id = c.id AND m.state = 'sent') \
            AS unresolved FROM mts_chunks c JOIN mts_runs r ON r.id = c.run_id \
            WHERE c.status = 'submitted' AND c.check_at <= $1 ORDER BY c.check_at LIMIT $2";
        Ok(with_db!(self, read, p => {
            sqlx::query_as(SQL).bind(Utc::now()).bind(limit).fetch_all(p).await?
        }))
    }

    /// Records the watchdog's look at a chunk: `done` when nothing is owed any more,
    /// otherwise the next check time.
    pub async fn set_mts_chunk_checked(
        &self,
        chunk_id: i64,
        done: bool,
        check_at: DateTime<Utc>,
        mts_status: Option<&str>,
    ) -> Result<()> {
        const SQL: &str = "UPDATE mts_chunks SET status = CASE WHEN $2 THEN 'done' \
            ELSE status END, check_at = $3, polls = polls + 1, \
            last_mts_status = COALESCE($4, last_mts_status), updated_at = $5 WHERE id = $1";
        with_db!(self, write, p => {
            sqlx::query(SQL).bind(chunk_id).bind(done).bind(check_at).bind(mts_status)
                .bind(Utc::now()).execute(p).await?;
        });
        Ok(())
    }

    /// Registrants of a chunk still waiting for their callback.
    pub async fn unresolved_mts_registrants(&self, chunk_id: i64) -> Result<Vec<i64>> {
        const SQL: &str = "SELECT registrant_id FROM mts_records WHERE chunk_id = $1 \
            AND state = 'sent' ORDER BY registrant_id";
        let rows: Vec<(i64,)> = with_db!(self, read, p => {
            sqlx::query_as(SQL).bind(chunk_id).fetch_all(p).await?
        });
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The callbacks of a chunk's unresolved records are lost: they become failed with
    /// `reason`, due now (the next run re-sends them while attempts are left). Returns how
    /// many.
    pub async fn release_mts_chunk(&self, chunk_id: i64, reason: &str) -> Result<u64> {
        let now = Utc::now();
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query("UPDATE mts_records SET state = 'failed', \
                 error_code = 'G2P-MTS-LOST', error_message = $2, next_retry_at = $3, \
                 updated_at = $3 WHERE chunk_id = $1 AND state = 'sent'")
                .bind(chunk_id)
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE mts_chunks SET status = 'done', last_mts_status = $2, \
                 updated_at = $3 WHERE id = $1")
                .bind(chunk_id)
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(n)
        })
    }

    // ------------------------------------------------------------------ callback sessions

    /// Stores a callback session (the SHA-256 of its cookie) for `ttl`, valid for the given
    /// connectors (every connector whose credentials the login matched).
    pub async fn create_mts_callback_session(
        &self,
        token: &str,
        connector_ids: &[i64],
        ttl: Duration,
    ) -> Result<()> {
        let now = Utc::now();
        let hash = session_hash(token);
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM mts_callback_sessions WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            for id in connector_ids {
                sqlx::query("INSERT INTO mts_callback_sessions (token_hash, connector_id, \
                     expires_at, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&hash)
                    .bind(*id)
                    .bind(now + ttl)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether a live callback session is valid for `connector_id`.
    pub async fn mts_callback_session_allows(
        &self,
        token: &str,
        connector_id: i64,
    ) -> Result<bool> {
        const SQL: &str = "SELECT 1 FROM mts_callback_sessions \
            WHERE token_hash = $1 AND connector_id = $2 AND expires_at > $3";
        let row: Option<(i32,)> = with_db!(self, read, p => {
            sqlx::query_as(SQL).bind(session_hash(token)).bind(connector_id).bind(Utc::now())
                .fetch_optional(p).await?
        });
        Ok(row.is_some())
    }

    pub async fn delete_mts_callback_session(&self, token: &str) -> Result<()> {
        with_db!(self, write, p => {
            sqlx::query("DELETE FROM mts_callback_sessions WHERE token_hash = $1")
                .bind(session_hash(token))
                .execute(p)
                .await?;
        });
        Ok(())
    }
}

fn session_hash(token: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(token.as_bytes());
    hex::encode(d)
}
