//! A durable job queue and scheduler on the registry's own database (SQLite or PostgreSQL).
//!
//! It owns the `jobs` and `schedules` tables, the job state machine and the [`runner`] that
//! executes handlers. It must not know what a job does: handlers live in the application crate
//! and are registered by kind. Payloads may hold personal data, so nothing here logs them (and
//! [`Job`]'s `Debug` leaves them out).
//!
//! # State machine
//! ```text
//! queued --claim--> running --succeed--> succeeded
//!    ^                 |  \--fail (permanent, or attempts exhausted)--> dead
//!    |                 |--fail (retryable, attempts left): run_at = now + backoff --> queued
//!    |                 \--lease expired: claimable again by any worker (or dead if no attempts left)
//!    \--retry_job-- dead | cancelled <--cancel_job-- queued
//! ```
//! * **Claiming** takes the oldest due job (`run_at <= now`, ordered by `run_at, id`) among the
//!   kinds the worker handles, or a `running` job whose lease (`locked_until`) has expired: its
//!   worker died. Every claim is an attempt (`attempts + 1`), so a job that kills its worker
//!   still ends `dead` after `max_attempts`. PostgreSQL claims with `FOR UPDATE SKIP LOCKED`;
//!   SQLite relies on the store's single writer connection (one statement, serialised).
//! * **Ownership.** Heartbeat, progress, succeed and fail only apply while the job is `running`
//!   and `locked_by` is the caller, so a worker whose lease was taken over cannot overwrite the
//!   new owner's work: those calls then return `false` / `None`. Worker ids must therefore be
//!   unique per runner (e.g. `host:pid`).
//! * **Idempotent enqueue.** A `dedupe_key` is unique for the life of the row: enqueueing again
//!   with the same key returns the existing job (whatever its status), it does not create one.
//! * `locked_by` keeps the last worker after the job leaves `running` (for diagnosis);
//!   `last_error` keeps the last failure even after a later success.
//!
//! All timestamps are bound from Rust, never SQL `now()`: SQLite stores them as the text sqlx
//! writes, and only that one format orders correctly as text. "Now" is the store's
//! [`Clock`](g2p_domain::Clock) ([`Store::now`]), so tests move time instead of sleeping.

pub mod runner;
pub mod schedules;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use utoipa::ToSchema;

use crate::error::{Result, StoreError};
use crate::{Store, with_db};

pub use runner::{DrainReport, JobContext, JobError, JobRunner};
pub use schedules::{Schedule, ScheduleSpec};

/// Where a job is in its life. Stored as lowercase text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Dead,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Dead,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Dead => "dead",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// No worker will touch the job again (only `retry_job` brings it back).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Dead | JobStatus::Cancelled
        )
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct UnknownJobStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownJobStatus;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownJobStatus(s.to_owned()))
    }
}

// Decoded from the text column on either backend.
impl<DB: sqlx::Database> sqlx::Type<DB> for JobStatus
where
    str: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <str as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <str as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for JobStatus
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(
        value: <DB as sqlx::Database>::ValueRef<'r>,
    ) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        let s = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(s.parse()?)
    }
}

/// A job as stored. `Debug` omits `payload` and `result`, which may hold personal data.
#[derive(Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub status: JobStatus,
    /// Claims so far, including the running one.
    pub attempts: i32,
    pub max_attempts: i32,
    /// Not claimed before this time (backoff after a failure, or a delayed job).
    pub run_at: DateTime<Utc>,
    /// The worker that holds the job while running, or held it last.
    pub locked_by: Option<String>,
    /// End of the current lease while running.
    pub locked_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub progress_done: Option<i64>,
    pub progress_total: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub dedupe_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("payload", &"<redacted>")
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .field("max_attempts", &self.max_attempts)
            .field("run_at", &self.run_at)
            .field("locked_by", &self.locked_by)
            .field("locked_until", &self.locked_until)
            .field("last_error", &self.last_error)
            .field("progress_done", &self.progress_done)
            .field("progress_total", &self.progress_total)
            .field("dedupe_key", &self.dedupe_key)
            .field("finished_at", &self.finished_at)
            .finish_non_exhaustive()
    }
}

/// A job to enqueue. `NewJob::new(kind, payload)` gives 5 attempts, due now, no dedupe key.
#[derive(Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    pub max_attempts: i32,
    /// `None`: due now.
    pub run_at: Option<DateTime<Utc>>,
    /// Enqueueing again with the same key returns the existing job.
    pub dedupe_key: Option<String>,
}

impl NewJob {
    pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        Self {
            kind: kind.into(),
            payload,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            run_at: None,
            dedupe_key: None,
        }
    }

    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = n;
        self
    }

    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    fn validate(&self) -> Result<()> {
        if self.kind.trim().is_empty() {
            return Err(StoreError::field("kind", "must not be empty"));
        }
        if self.max_attempts < 1 {
            return Err(StoreError::field("max_attempts", "must be at least 1"));
        }
        if self.dedupe_key.as_deref().is_some_and(|k| k.is_empty()) {
            return Err(StoreError::field("dedupe_key", "must not be empty"));
        }
        Ok(())
    }
}

impl std::fmt::Debug for NewJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewJob")
            .field("kind", &self.kind)
            .field("payload", &"<redacted>")
            .field("max_attempts", &self.max_attempts)
            .field("run_at", &self.run_at)
            .field("dedupe_key", &self.dedupe_key)
            .finish()
    }
}

/// Exponential backoff between attempts: `base * 2^(attempt-1)`, capped at `max`, then reduced
/// by a random fraction of up to `jitter` (0.0 = exact, 0.2 = up to 20 % earlier) so that jobs
/// failing together do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            max: Duration::from_secs(3600),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based), before jitter.
    pub fn delay(&self, attempt: i32) -> Duration {
        let exp = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0);
        let factor = 2u32.checked_pow(exp).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay with jitter applied: in `(delay * (1 - jitter), delay]`.
    pub fn backoff(&self, attempt: i32) -> Duration {
        let d = self.delay(attempt);
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return d;
        }
        let r: f64 = rand::random();
        d.mul_f64(1.0 - jitter * r)
    }
}

/// Filter and keyset page for [`Store::list_jobs`]: newest first; pass the last id of a page as
/// `after_id` to get the next (older) page.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    pub status: Option<JobStatus>,
    pub kind: Option<String>,
    pub after_id: Option<i64>,
    /// Clamped to 1..=1000; 0 means 50.
    pub limit: u32,
}

/// Number of jobs in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub dead: i64,
    pub cancelled: i64,
}

/// Keeps stored errors bounded (a handler could return a whole HTTP body).
const MAX_ERROR_CHARS: usize = 4000;

fn truncate_error(e: &str) -> String {
    match e.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &e[..i]),
        None => e.to_owned(),
    }
}

/// `now + d`, saturating instead of overflowing.
pub(crate) fn add_duration(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

macro_rules! job_columns {
    () => {
        "id, kind, payload, status, attempts, max_attempts, run_at, locked_by, locked_until, \
         last_error, progress_done, progress_total, result, dedupe_key, created_at, updated_at, \
         finished_at"
    };
}

/// Shared by [`Store::enqueue`] and the schedule tick (which runs it inside its transaction).
pub(crate) const ENQUEUE_SQL: &str = concat!(
    "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, run_at, dedupe_key, \
     created_at, updated_at) VALUES ($1, $2, 'queued', 0, $3, $4, $5, $6, $6) \
     ON CONFLICT (dedupe_key) DO NOTHING RETURNING ",
    job_columns!()
);

const JOB_BY_ID_SQL: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");
const JOB_BY_DEDUPE_SQL: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE dedupe_key = $1"
);

// Jobs whose worker vanished during their last allowed attempt: nobody may claim them again.
const REAP_SQL: &str = "UPDATE jobs SET status = 'dead', locked_until = NULL, finished_at = $1, \
     updated_at = $1, last_error = 'lease expired during the last attempt: the worker stopped \
     without reporting (crash, kill or lost database connection)' \
     WHERE status = 'running' AND locked_until < $1 AND attempts >= max_attempts \
     RETURNING id, kind, attempts";

// $1 worker, $2 lease end, $3 now, $4 kinds. The inner SELECT is the same on both backends but
// for the kinds list (array vs JSON text) and the row lock.
const CLAIM_PG_SQL: &str = concat!(
    "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, \
     locked_until = $2, updated_at = $3, progress_done = NULL, progress_total = NULL \
     WHERE id = (SELECT id FROM jobs WHERE kind = ANY($4) AND \
     ((status = 'queued' AND run_at <= $3) OR \
      (status = 'running' AND locked_until < $3 AND attempts < max_attempts)) \
     ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ",
    job_columns!()
);
// SQLite: no row locks; the store's single writer connection runs this one statement at a time.
const CLAIM_SQLITE_SQL: &str = concat!(
    "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, \
     locked_until = $2, updated_at = $3, progress_done = NULL, progress_total = NULL \
     WHERE id = (SELECT id FROM jobs WHERE kind IN (SELECT value FROM json_each($4)) AND \
     ((status = 'queued' AND run_at <= $3) OR \
      (status = 'running' AND locked_until < $3 AND attempts < max_attempts)) \
     ORDER BY run_at, id LIMIT 1) RETURNING ",
    job_columns!()
);

impl Store {
    /// Adds a job. With a `dedupe_key` that already exists, returns the existing job unchanged.
    pub async fn enqueue(&self, job: NewJob) -> Result<Job> {
        job.validate()?;
        let now = self.now();
        let run_at = job.run_at.unwrap_or(now);
        let inserted: Option<Job> = with_db!(self, write, p => {
            sqlx::query_as(ENQUEUE_SQL)
                .bind(&job.kind)
                .bind(Json(&job.payload))
                .bind(job.max_attempts)
                .bind(run_at)
                .bind(&job.dedupe_key)
                .bind(now)
                .fetch_optional(p)
                .await?
        });
        if let Some(j) = inserted {
            tracing::debug!(job_id = j.id, kind = %j.kind, "job enqueued");
            return Ok(j);
        }
        // ON CONFLICT DO NOTHING: the key exists (PostgreSQL waited for its transaction).
        let key = job.dedupe_key.unwrap_or_default();
        let existing: Option<Job> = with_db!(self, write, p => {
            sqlx::query_as(JOB_BY_DEDUPE_SQL).bind(&key).fetch_optional(p).await?
        });
        existing.ok_or_else(|| StoreError::not_found("job"))
    }

    /// Claims the oldest due job of one of `kinds` (or one whose lease expired) for
    /// `worker_id` until now + `lease`. `None` when nothing is due.
    pub async fn claim(
        &self,
        worker_id: &str,
        kinds: &[&str],
        lease: Duration,
    ) -> Result<Option<Job>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let now = self.now();
        let until = add_duration(now, lease);
        let reaped: Vec<(i64, String, i32)> = with_db!(self, write, p => {
            sqlx::query_as(REAP_SQL).bind(now).fetch_all(p).await?
        });
        for (id, kind, attempts) in reaped {
            tracing::warn!(job_id = id, %kind, attempt = attempts, outcome = "dead",
                "job lease expired on its last attempt");
        }
        let job: Option<Job> = match self.pools_ref() {
            crate::db::PoolsRef::Postgres(p) => {
                let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
                sqlx::query_as(CLAIM_PG_SQL)
                    .bind(worker_id)
                    .bind(until)
                    .bind(now)
                    .bind(kinds)
                    .fetch_optional(p)
                    .await?
            }
            crate::db::PoolsRef::Sqlite { write, .. } => {
                let kinds = serde_json::to_string(kinds)
                    .map_err(|e| StoreError::field("kinds", e.to_string()))?;
                sqlx::query_as(CLAIM_SQLITE_SQL)
                    .bind(worker_id)
                    .bind(until)
                    .bind(now)
                    .bind(kinds)
                    .fetch_optional(write)
                    .await?
            }
        };
        Ok(job)
    }

    /// Extends the lease to now + `lease`. `false`: the worker no longer owns the job.
    pub async fn heartbeat(&self, id: i64, worker_id: &str, lease: Duration) -> Result<bool> {
        const SQL: &str = concat!(
            "UPDATE jobs SET locked_until = $3, updated_at = $4 WHERE ",
            "id = $1 AND locked_by = $2 AND status = 'running'"
        );
        let now = self.now();
        let n = with_db!(self, write, p => {
            sqlx::query(SQL)
                .bind(id)
                .bind(worker_id)
                .bind(add_duration(now, lease))
                .bind(now)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records progress of a running job. `false`: the worker no longer owns the job.
    pub async fn set_progress(
        &self,
        id: i64,
        worker_id: &str,
        done: u64,
        total: u64,
    ) -> Result<bool> {
        const SQL: &str = concat!(
            "UPDATE jobs SET progress_done = $3, progress_total = $4, updated_at = $5 WHERE ",
            "id = $1 AND locked_by = $2 AND status = 'running'"
        );
        let n = with_db!(self, write, p => {
            sqlx::query(SQL)
                .bind(id)
                .bind(worker_id)
                .bind(clamp_i64(done))
                .bind(clamp_i64(total))
                .bind(self.now())
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Marks an owned running job succeeded with `result`. `None`: the worker no longer owns
    /// the job (its lease was taken over), nothing was written.
    pub async fn succeed(&self, id: i64, worker_id: &str, result: &Value) -> Result<Option<Job>> {
        const SQL: &str = concat!(
            "UPDATE jobs SET status = 'succeeded', result = $3, locked_until = NULL, \
             finished_at = $4, updated_at = $4 \
             WHERE id = $1 AND locked_by = $2 AND status = 'running' RETURNING ",
            job_columns!()
        );
        let job: Option<Job> = with_db!(self, write, p => {
            sqlx::query_as(SQL)
                .bind(id)
                .bind(worker_id)
                .bind(Json(result))
                .bind(self.now())
                .fetch_optional(p)
                .await?
        });
        Ok(job)
    }

    /// Records a failed attempt of an owned running job: back to `queued` at now + backoff
    /// when `retryable` and attempts remain, else `dead`. `last_error` is kept either way.
    /// `None`: the worker no longer owns the job, nothing was written.
    pub async fn fail(
        &self,
        id: i64,
        worker_id: &str,
        error: &str,
        retryable: bool,
        backoff: &RetryPolicy,
    ) -> Result<Option<Job>> {
        const READ_SQL: &str = concat!(
            "SELECT attempts, max_attempts FROM jobs WHERE ",
            "id = $1 AND locked_by = $2 AND status = 'running'"
        );
        // `attempts = $3`: compare-and-set against the row read above, so a takeover between
        // the two statements (which increments attempts) makes this a no-op.
        const RETRY_SQL: &str = concat!(
            "UPDATE jobs SET status = 'queued', run_at = $4, last_error = $5, \
             locked_until = NULL, updated_at = $6 \
             WHERE id = $1 AND locked_by = $2 AND status = 'running' AND attempts = $3 RETURNING ",
            job_columns!()
        );
        const DEAD_SQL: &str = concat!(
            "UPDATE jobs SET status = 'dead', last_error = $4, locked_until = NULL, \
             finished_at = $5, updated_at = $5 \
             WHERE id = $1 AND locked_by = $2 AND status = 'running' AND attempts = $3 RETURNING ",
            job_columns!()
        );
        let now = self.now();
        let error = truncate_error(error);
        let job: Option<Job> = with_db!(self, write, p => {
            let row: Option<(i32, i32)> = sqlx::query_as(READ_SQL)
                .bind(id)
                .bind(worker_id)
                .fetch_optional(p)
                .await?;
            match row {
                None => None,
                Some((attempts, max_attempts)) if retryable && attempts < max_attempts => {
                    let run_at = add_duration(now, backoff.backoff(attempts));
                    sqlx::query_as(RETRY_SQL)
                        .bind(id)
                        .bind(worker_id)
                        .bind(attempts)
                        .bind(run_at)
                        .bind(&error)
                        .bind(now)
                        .fetch_optional(p)
                        .await?
                }
                Some((attempts, _)) => {
                    sqlx::query_as(DEAD_SQL)
                        .bind(id)
                        .bind(worker_id)
                        .bind(attempts)
                        .bind(&error)
                        .bind(now)
                        .fetch_optional(p)
                        .await?
                }
            }
        });
        Ok(job)
    }

    pub async fn get_job(&self, id: i64) -> Result<Job> {
        let job: Option<Job> = with_db!(self, read, p => {
            sqlx::query_as(JOB_BY_ID_SQL).bind(id).fetch_optional(p).await?
        });
        job.ok_or_else(|| StoreError::not_found("job"))
    }

    /// Jobs newest first, filtered by status and kind; see [`JobQuery`] for paging.
    pub async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<Job>> {
        const SQL: &str = concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR kind = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let limit = i64::from(if q.limit == 0 { 50 } else { q.limit.min(1000) });
        let status = q.status.map(JobStatus::as_str);
        let jobs: Vec<Job> = with_db!(self, read, p => {
            sqlx::query_as(SQL)
                .bind(status)
                .bind(q.kind.as_deref())
                .bind(q.after_id)
                .bind(limit)
                .fetch_all(p)
                .await?
        });
        Ok(jobs)
    }

    /// Puts a dead or cancelled job back in the queue, due now, with its attempts reset.
    /// `Conflict` for any other status.
    pub async fn retry_job(&self, id: i64) -> Result<Job> {
        const SQL: &str = concat!(
            "UPDATE jobs SET status = 'queued', attempts = 0, run_at = $2, locked_until = NULL, \
             result = NULL, finished_at = NULL, updated_at = $2 \
             WHERE id = $1 AND status IN ('dead', 'cancelled') RETURNING ",
            job_columns!()
        );
        let job: Option<Job> = with_db!(self, write, p => {
            sqlx::query_as(SQL).bind(id).bind(self.now()).fetch_optional(p).await?
        });
        match job {
            Some(j) => Ok(j),
            None => Err(self
                .status_conflict(id, "only dead or cancelled jobs can be retried")
                .await),
        }
    }

    /// Cancels a queued job. `Conflict` for any other status (a running job cannot be stopped
    /// from here: its handler owns it until it reports).
    pub async fn cancel_job(&self, id: i64) -> Result<Job> {
        const SQL: &str = concat!(
            "UPDATE jobs SET status = 'cancelled', finished_at = $2, updated_at = $2 \
             WHERE id = $1 AND status = 'queued' RETURNING ",
            job_columns!()
        );
        let job: Option<Job> = with_db!(self, write, p => {
            sqlx::query_as(SQL).bind(id).bind(self.now()).fetch_optional(p).await?
        });
        match job {
            Some(j) => Ok(j),
            None => Err(self
                .status_conflict(id, "only queued jobs can be cancelled")
                .await),
        }
    }

    async fn status_conflict(&self, id: i64, rule: &str) -> StoreError {
        match self.get_job(id).await {
            Ok(j) => StoreError::Conflict {
                field: "status".to_owned(),
                message: format!("job {id} is {}: {rule}", j.status),
            },
            Err(e) => e,
        }
    }

    pub async fn count_by_status(&self) -> Result<JobCounts> {
        const SQL: &str = "SELECT status, COUNT(*) FROM jobs GROUP BY status";
        let rows: Vec<(JobStatus, i64)> = with_db!(self, read, p => {
            sqlx::query_as(SQL).fetch_all(p).await?
        });
        let mut c = JobCounts::default();
        for (status, n) in rows {
            *match status {
                JobStatus::Queued => &mut c.queued,
                JobStatus::Running => &mut c.running,
                JobStatus::Succeeded => &mut c.succeeded,
                JobStatus::Dead => &mut c.dead,
                JobStatus::Cancelled => &mut c.cancelled,
            } = n;
        }
        Ok(c)
    }
}
