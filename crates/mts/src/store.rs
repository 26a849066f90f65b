//! The persistent queue of the MTS simulator (SQLite, spec §5.5 tables reshaped): requests and
//! records are written before the HTTP answer, workers claim records, results stay until the
//! retention period ends. SQL only; no HTTP and no authentication here.

use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, PgPool, SqlitePool};

use super::wire::format_time;

/// Request and record statuses (spec §5.2, §5.3).
pub mod status {
    pub const SUBMITTED: &str = "submitted";
    pub const SUBMITTED_WITH_ERRORS: &str = "submitted_with_errors";
    pub const PROCESSED: &str = "processed";
    pub const PROCESSED_WITH_ERRORS: &str = "processed_with_errors";
    pub const INVALID: &str = "invalid";
    pub const ERROR: &str = "error";
}

/// The queue database: SQLite (the default, an embedded file) or PostgreSQL.
#[derive(Clone, Debug)]
pub struct Db {
    pools: Pools,
}

#[derive(Clone, Debug)]
enum Pools {
    /// SQLite allows one writer: writes go through a pool of one connection so they queue
    /// in-process instead of failing with SQLITE_BUSY; reads use their own pool.
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
    },
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the write or read pool and `$D` to the backend's
/// `sqlx::Database` type; the body is compiled once per backend.
macro_rules! with_pool {
    ($db:expr, write, $p:ident, $D:ident => $body:expr) => {
        match &$db.pools {
            Pools::Sqlite { write: $p, .. } => {
                #[allow(dead_code)]
                type $D = sqlx::Sqlite;
                $body
            }
            Pools::Postgres($p) => {
                #[allow(dead_code)]
                type $D = sqlx::Postgres;
                $body
            }
        }
    };
    ($db:expr, read, $p:ident, $D:ident => $body:expr) => {
        match &$db.pools {
            Pools::Sqlite { read: $p, .. } => {
                #[allow(dead_code)]
                type $D = sqlx::Sqlite;
                $body
            }
            Pools::Postgres($p) => {
                #[allow(dead_code)]
                type $D = sqlx::Postgres;
                $body
            }
        }
    };
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, FromRow)]
pub struct RequestRow {
    pub id: String,
    pub status: String,
    pub input_type: String,
    pub output_type: String,
    pub delivery_type: String,
    pub output_format: String,
    pub callback_props: Option<String>,
    pub number_total: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct RecordRow {
    pub request_id: String,
    pub line_no: i64,
    pub received: String,
    pub demographics: Option<String>,
    pub vid: Option<String>,
    pub result: Option<String>,
}

/// A record as inserted at submission.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub received: String,
    pub demographics: Option<String>,
    pub vid: Option<String>,
    pub status: &'static str,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The `outputFormat` result, already known for invalid records.
    pub result: Option<String>,
}

fn now() -> String {
    format_time(Utc::now())
}

/// PostgreSQL: serialises the transactions that may finish one request (two workers storing
/// its last two records at once would otherwise each see the other's record unfinished).
macro_rules! lock_request {
    ($tx:ident, $id:expr) => {
        sqlx::query("SELECT id FROM mts_requests WHERE id = $1 FOR UPDATE")
            .bind($id)
            .execute(&mut *$tx)
            .await?
    };
}

/// Moves a request whose records are all done to its final status (`failed`: its invalid and
/// error records), and queues its callbacks in the same transaction. Only one caller wins.
/// Evaluates to whether this call finished it.
macro_rules! finalize {
    ($tx:ident, $request_id:expr, $failed:expr) => {{
        const SET: &str = "UPDATE mts_requests SET status = $2, updated_at = $3 WHERE id = $1 \
            AND status IN ('submitted', 'submitted_with_errors', 'processing')";
        const CURRENT: &str =
            "SELECT status, delivery_type, callback_props FROM mts_requests WHERE id = $1";
        // The deliveries are created in the same transaction: once a request is processed,
        // its callbacks are owed even if the process dies right now.
        const BULK: &str = "INSERT INTO mts_deliveries (request_id, line_no, status, \
            next_attempt_at, updated_at) VALUES ($1, NULL, 'pending', $2, $2)";
        const EACH: &str = "INSERT INTO mts_deliveries (request_id, line_no, status, \
            next_attempt_at, updated_at) SELECT request_id, line_no, 'pending', $2, $2 \
            FROM mts_records WHERE request_id = $1 ORDER BY line_no";
        let request_id: &str = $request_id;
        let failed: i64 = $failed;
        let current: Option<(String, String, Option<String>)> = sqlx::query_as(CURRENT)
            .bind(request_id)
            .fetch_optional(&mut *$tx)
            .await?;
        match current {
            None => false,
            Some((current, delivery, props)) => {
                // No valid record at all (even none, e.g. a header-only CSV) is an error (§5.2).
                let nothing_valid = current == status::SUBMITTED_WITH_ERRORS;
                let st = if failed > 0 || nothing_valid {
                    status::PROCESSED_WITH_ERRORS
                } else {
                    status::PROCESSED
                };
                let n = sqlx::query(SET)
                    .bind(request_id)
                    .bind(st)
                    .bind(now())
                    .execute(&mut *$tx)
                    .await?;
                let won = n.rows_affected() == 1;
                if won && delivery == "callback" {
                    let bulk = props
                        .as_deref()
                        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                        .and_then(|p| p["callInBulk"].as_bool())
                        .unwrap_or(false);
                    sqlx::query(if bulk { BULK } else { EACH })
                        .bind(request_id)
                        .bind(now())
                        .execute(&mut *$tx)
                        .await?;
                }
                won
            }
        }
    }};
}

/// The outcome of one claimed record, stored by [`Db::complete_batch`].
#[derive(Debug, Clone)]
pub struct Outcome {
    pub request_id: String,
    pub line_no: i64,
    pub status: &'static str,
    pub token: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub result: String,
}

impl Db {
    /// Opens `sqlite://FILE` (created if missing), `sqlite::memory:` or `postgres://…`, and
    /// migrates.
    pub async fn open(url: &str) -> Result<Self, sqlx::Error> {
        let migrate = |e| sqlx::Error::Migrate(Box::new(e));
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(PgConnectOptions::from_str(url)?)
                .await?;
            PG_MIGRATOR.run(&pool).await.map_err(migrate)?;
            return Ok(Self {
                pools: Pools::Postgres(pool),
            });
        }
        let base = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(base.clone())
            .await?;
        // An in-memory database exists once per connection: read through the writer then.
        let read = if memory {
            write.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(base.read_only(true))
                .await?
        };
        SQLITE_MIGRATOR.run(&write).await.map_err(migrate)?;
        Ok(Self {
            pools: Pools::Sqlite { write, read },
        })
    }

    fn is_pg(&self) -> bool {
        matches!(self.pools, Pools::Postgres(_))
    }

    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(p) => p.close().await,
        }
    }

    /// Inserts a request and all its records in one transaction.
    pub async fn insert_request(
        &self,
        req: &RequestRow,
        records: &[NewRecord],
    ) -> Result<(), sqlx::Error> {
        const INSERT_REQ: &str = "INSERT INTO mts_requests (id, status, input_type, output_type, \
            delivery_type, output_format, callback_props, number_total, number_pending, \
            number_failed, created_at, updated_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)";
        let t = now();
        let pending = records
            .iter()
            .filter(|r| r.status == status::SUBMITTED)
            .count() as i64;
        let failed = records
            .iter()
            .filter(|r| r.status == status::INVALID || r.status == status::ERROR)
            .count() as i64;
        with_pool!(self, write, pool, D => {
            let mut tx = pool.begin().await?;
            sqlx::query(INSERT_REQ)
                .bind(&req.id)
                .bind(&req.status)
                .bind(&req.input_type)
                .bind(&req.output_type)
                .bind(&req.delivery_type)
                .bind(&req.output_format)
                .bind(&req.callback_props)
                .bind(req.number_total)
                .bind(pending)
                .bind(failed)
                .bind(&t)
                .execute(&mut *tx)
                .await?;
            // Multi-row VALUES, 100 rows (1000 parameters) per statement: below SQLite's
            // limit and PostgreSQL's.
            for (chunk_no, chunk) in records.chunks(100).enumerate() {
                let mut qb = sqlx::QueryBuilder::<D>::new(
                    "INSERT INTO mts_records (request_id, line_no, received, demographics, vid, \
                     status, error_code, error_message, result, updated_at) ",
                );
                qb.push_values(chunk.iter().enumerate(), |mut b, (i, r)| {
                    b.push_bind(&req.id)
                        .push_bind((chunk_no * 100 + i + 1) as i64)
                        .push_bind(&r.received)
                        .push_bind(&r.demographics)
                        .push_bind(&r.vid)
                        .push_bind(r.status)
                        .push_bind(&r.error_code)
                        .push_bind(&r.error_message)
                        .push_bind(&r.result)
                        .push_bind(&t);
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }

    pub async fn request(&self, id: &str) -> Result<Option<RequestRow>, sqlx::Error> {
        const SQL: &str = "SELECT id, status, input_type, output_type, delivery_type, \
            output_format, callback_props, number_total FROM mts_requests WHERE id = $1";
        with_pool!(self, read, pool, D => sqlx::query_as(SQL).bind(id).fetch_optional(pool).await)
    }

    /// Records of a request in input order.
    pub async fn records(&self, id: &str) -> Result<Vec<RecordRow>, sqlx::Error> {
        const SQL: &str = "SELECT request_id, line_no, received, demographics, vid, result \
            FROM mts_records WHERE request_id = $1 ORDER BY line_no";
        with_pool!(self, read, pool, D => sqlx::query_as(SQL).bind(id).fetch_all(pool).await)
    }

    /// Claims the next `limit` lines of the oldest request with lines not yet handed out,
    /// marks the request `processing`, and returns the lines' waiting records (invalid ones
    /// are already done). One request row is written per claim, no record row: a record is
    /// written once, when its result is stored. `None` when there is nothing to claim.
    pub async fn claim_batch(&self, limit: usize) -> Result<Option<Vec<RecordRow>>, sqlx::Error> {
        const NEXT_SQLITE: &str = "SELECT id, claimed_upto FROM mts_requests \
            WHERE claimed_upto < number_total AND status IN ('submitted', \
            'submitted_with_errors', 'processing') ORDER BY created_at, id LIMIT 1";
        // Waits for a worker storing results of the same request (it holds the row) rather
        // than skipping: skipping would leave the other worker idle on a one-request queue.
        const NEXT_PG: &str = "SELECT id, claimed_upto FROM mts_requests \
            WHERE claimed_upto < number_total AND status IN ('submitted', \
            'submitted_with_errors', 'processing') ORDER BY created_at, id LIMIT 1 FOR UPDATE";
        const TAKE: &str = "UPDATE mts_requests SET claimed_upto = $2, updated_at = $3, \
            status = CASE WHEN status = 'submitted' THEN 'processing' ELSE status END \
            WHERE id = $1";
        const RECORDS: &str = "SELECT request_id, line_no, received, demographics, vid, result \
            FROM mts_records WHERE request_id = $1 AND line_no > $2 AND line_no <= $3 \
            AND status = 'submitted' ORDER BY line_no";
        let next = if self.is_pg() { NEXT_PG } else { NEXT_SQLITE };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        with_pool!(self, write, pool, D => {
            let mut tx = pool.begin().await?;
            let Some((id, from)): Option<(String, i64)> =
                sqlx::query_as(next).fetch_optional(&mut *tx).await?
            else {
                return Ok(None);
            };
            let upto = from.saturating_add(limit);
            sqlx::query(TAKE).bind(&id).bind(upto).bind(now()).execute(&mut *tx).await?;
            let rows: Vec<RecordRow> = sqlx::query_as(RECORDS)
                .bind(&id)
                .bind(from)
                .bind(upto)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(rows))
        })
    }

    /// Stores the outcomes of claimed records in one transaction, keeps the request counters,
    /// and finishes the requests that have nothing left; returns the ids of those.
    pub async fn complete_batch(&self, outcomes: &[Outcome]) -> Result<Vec<String>, sqlx::Error> {
        // A CTE gives the VALUES columns names on both backends.
        const HEAD: &str = "WITH v (rid, lno, st, tok, code, msg, res, t) AS (";
        const TAIL: &str = ") UPDATE mts_records SET status = v.st, token = v.tok, \
            error_code = v.code, error_message = v.msg, result = v.res, updated_at = v.t \
            FROM v WHERE mts_records.request_id = v.rid AND mts_records.line_no = v.lno \
            AND mts_records.status = 'submitted' RETURNING request_id, status";
        const COUNT: &str = "UPDATE mts_requests SET number_pending = number_pending - $2, \
            number_failed = number_failed + $3 WHERE id = $1 \
            RETURNING number_pending, number_failed";
        let t = now();
        with_pool!(self, write, pool, D => {
            let mut tx = pool.begin().await?;
            // (request, stored, failed), in first-seen order.
            let mut per_request: Vec<(String, i64, i64)> = Vec::new();
            for chunk in outcomes.chunks(500) {
                let mut qb = sqlx::QueryBuilder::<D>::new(HEAD);
                qb.push_values(chunk, |mut b, o| {
                    b.push_bind(&o.request_id)
                        .push_bind(o.line_no)
                        .push_bind(o.status)
                        .push_bind(&o.token)
                        .push_bind(&o.error_code)
                        .push_bind(&o.error_message)
                        .push_bind(&o.result)
                        .push_bind(&t);
                });
                qb.push(TAIL);
                let stored: Vec<(String, String)> = qb.build_query_as().fetch_all(&mut *tx).await?;
                for (rid, st) in stored {
                    let failed = i64::from(st == status::ERROR || st == status::INVALID);
                    match per_request.iter_mut().find(|(r, _, _)| *r == rid) {
                        Some(e) => {
                            e.1 += 1;
                            e.2 += failed;
                        }
                        None => per_request.push((rid, 1, failed)),
                    }
                }
            }
            let mut done = Vec::new();
            for (rid, stored, failed) in per_request {
                // The row lock taken here also serialises two PostgreSQL workers finishing the
                // last records of one request: exactly one sees the counter reach zero.
                let left: Option<(i64, i64)> = sqlx::query_as(COUNT)
                    .bind(&rid)
                    .bind(stored)
                    .bind(failed)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some((0, failed)) = left
                    && finalize!(tx, &rid, failed)
                {
                    done.push(rid);
                }
            }
            tx.commit().await?;
            Ok(done)
        })
    }

    /// Finishes requests with no record left to authenticate (all invalid, or a crash between
    /// the last record and the status update). Returns their ids.
    pub async fn finalize_ready(&self) -> Result<Vec<String>, sqlx::Error> {
        const READY: &str = "SELECT id FROM mts_requests r WHERE status IN \
            ('submitted', 'submitted_with_errors', 'processing') AND NOT EXISTS (SELECT 1 FROM \
            mts_records d WHERE d.request_id = r.id AND d.status = 'submitted')";
        const FAILED: &str = "SELECT COUNT(*) FROM mts_records \
            WHERE request_id = $1 AND status IN ('invalid', 'error')";
        const RESET: &str =
            "UPDATE mts_requests SET number_pending = 0, number_failed = $2 WHERE id = $1";
        let pg = self.is_pg();
        with_pool!(self, write, pool, D => {
            let mut tx = pool.begin().await?;
            let ids: Vec<(String,)> = sqlx::query_as(READY).fetch_all(&mut *tx).await?;
            let mut done = Vec::new();
            for (id,) in ids {
                if pg {
                    lock_request!(tx, &id);
                }
                // The counters are re-derived here, where the records are the truth.
                let (failed,): (i64,) = sqlx::query_as(FAILED).bind(&id).fetch_one(&mut *tx).await?;
                sqlx::query(RESET).bind(&id).bind(failed).execute(&mut *tx).await?;
                if finalize!(tx, &id, failed) {
                    done.push(id);
                }
            }
            tx.commit().await?;
            Ok(done)
        })
    }

    /// On start: lines a dead process had claimed but not finished go back to the queue (the
    /// claim mark moves back to the first record still waiting). Returns the requests moved.
    pub async fn requeue_abandoned(&self) -> Result<u64, sqlx::Error> {
        const SQL: &str = "UPDATE mts_requests SET claimed_upto = COALESCE((SELECT \
            MIN(d.line_no) - 1 FROM mts_records d WHERE d.request_id = mts_requests.id \
            AND d.status = 'submitted'), number_total) \
            WHERE claimed_upto > 0 AND status IN ('submitted', 'submitted_with_errors', \
            'processing')";
        with_pool!(self, write, pool, D => {
            Ok(sqlx::query(SQL).execute(pool).await?.rows_affected())
        })
    }

    /// On shutdown: the lines of request `id` claimed but without a result go back to the
    /// queue (the claim mark moves back to its first record still waiting), so the next start,
    /// or another process on the same PostgreSQL, takes them at once. Lines another process
    /// holds may be claimed again; their result is stored once (`complete_batch` only updates
    /// records still `submitted`).
    pub async fn hand_back(&self, id: &str) -> Result<(), sqlx::Error> {
        const SQL: &str = "UPDATE mts_requests SET claimed_upto = COALESCE((SELECT \
            MIN(d.line_no) - 1 FROM mts_records d WHERE d.request_id = mts_requests.id \
            AND d.status = 'submitted'), number_total) \
            WHERE id = $1 AND status IN ('submitted', 'submitted_with_errors', 'processing')";
        with_pool!(self, write, pool, D => {
            sqlx::query(SQL).bind(id).execute(pool).await?;
            Ok(())
        })
    }

    /// Deletes finished requests last updated before `cutoff` (by completion, not creation:
    /// MTS bug §13 #5), never while a callback is still owed.
    pub async fn purge_before(&self, cutoff: &str) -> Result<u64, sqlx::Error> {
        const SQL: &str = "DELETE FROM mts_requests WHERE status IN ('processed', \
            'processed_with_errors', 'error_making_callback_request') AND updated_at < $1 \
            AND NOT EXISTS (SELECT 1 FROM mts_deliveries d WHERE d.request_id = mts_requests.id \
            AND d.status = 'pending')";
        with_pool!(self, write, pool, D => {
            Ok(sqlx::query(SQL).bind(cutoff).execute(pool).await?.rows_affected())
        })
    }
}

/// One owed callback: a record's (`line_no`) or a whole request's (bulk, `line_no` NULL).
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: i64,
    pub request_id: String,
    pub line_no: Option<i64>,
    pub status: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// One attempt at a delivery, as [`Db::record_attempts`] stores it.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub id: i64,
    pub status: &'static str,
    pub next_attempt_at: String,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

impl Db {
    /// Up to `limit` requests with a callback due now, those waiting longest first.
    pub async fn due_requests(&self, limit: usize) -> Result<Vec<String>, sqlx::Error> {
        const SQL: &str = "SELECT request_id FROM mts_deliveries WHERE status = 'pending' \
            AND next_attempt_at <= $1 GROUP BY request_id ORDER BY MIN(id) LIMIT $2";
        with_pool!(self, read, pool, D => {
            let rows: Vec<(String,)> =
                sqlx::query_as(SQL).bind(now()).bind(limit as i64).fetch_all(pool).await?;
            Ok(rows.into_iter().map(|(r,)| r).collect())
        })
    }

    /// A request's pending deliveries in input order: they are attempted together, so they
    /// keep input order on retries too.
    pub async fn pending_deliveries(
        &self,
        request_id: &str,
    ) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        const SQL: &str = "SELECT id, request_id, line_no, status, attempts, last_status, \
            last_error FROM mts_deliveries WHERE request_id = $1 AND status = 'pending' \
            ORDER BY line_no";
        with_pool!(self, read, pool, D => {
            sqlx::query_as(SQL).bind(request_id).fetch_all(pool).await
        })
    }

    /// The `outputFormat` results of a request, in input order.
    pub async fn results(&self, request_id: &str) -> Result<Vec<Option<String>>, sqlx::Error> {
        const SQL: &str = "SELECT result FROM mts_records WHERE request_id = $1 ORDER BY line_no";
        with_pool!(self, read, pool, D => {
            let rows: Vec<(Option<String>,)> =
                sqlx::query_as(SQL).bind(request_id).fetch_all(pool).await?;
            Ok(rows.into_iter().map(|(r,)| r).collect())
        })
    }

    pub async fn deliveries(&self, request_id: &str) -> Result<Vec<DeliveryRow>, sqlx::Error> {
        const SQL: &str = "SELECT id, request_id, line_no, status, attempts, last_status, \
            last_error FROM mts_deliveries WHERE request_id = $1 ORDER BY line_no, id";
        with_pool!(self, read, pool, D => {
            sqlx::query_as(SQL).bind(request_id).fetch_all(pool).await
        })
    }

    /// Records attempts in one transaction: each `status` is `pending` (retry at
    /// `next_attempt_at`), `delivered` or `failed`.
    pub async fn record_attempts(&self, attempts: &[AttemptRow]) -> Result<(), sqlx::Error> {
        const SQL: &str = "UPDATE mts_deliveries SET status = $2, attempts = attempts + 1, \
            next_attempt_at = $3, last_status = $4, last_error = $5, updated_at = $6 WHERE id = $1";
        let t = now();
        with_pool!(self, write, pool, D => {
            let mut tx = pool.begin().await?;
            for a in attempts {
                sqlx::query(SQL)
                    .bind(a.id)
                    .bind(a.status)
                    .bind(&a.next_attempt_at)
                    .bind(a.last_status)
                    .bind(&a.last_error)
                    .bind(&t)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
    }

    /// Restarts a request's retention period (after a delivery pass: results are kept for the
    /// retention period after they were delivered, not after they were computed).
    pub async fn touch_request(&self, id: &str) -> Result<(), sqlx::Error> {
        const SQL: &str = "UPDATE mts_requests SET updated_at = $2 WHERE id = $1";
        with_pool!(self, write, pool, D => {
            sqlx::query(SQL).bind(id).bind(now()).execute(pool).await?;
            Ok(())
        })
    }

    /// Sets a request's status after delivery (`error_making_callback_request`).
    pub async fn set_request_status(&self, id: &str, status: &str) -> Result<(), sqlx::Error> {
        const SQL: &str = "UPDATE mts_requests SET status = $2, updated_at = $3 WHERE id = $1";
        with_pool!(self, write, pool, D => {
            sqlx::query(SQL).bind(id).bind(status).bind(now()).execute(pool).await?;
            Ok(())
        })
    }
}
