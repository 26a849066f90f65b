//! Recurring jobs: a named schedule enqueues a job of its kind at every tick.
//!
//! Ticks are computed in UTC by [`ScheduleSpec::next_after`], a pure function: `EveryMinutes(n)`
//! ticks on multiples of n minutes since the Unix epoch (so every 60 minutes is on the hour, on
//! every node), `DailyAt` at HH:MM UTC.
//!
//! Firing is safe with many nodes: [`Store::fire_due_schedules`] advances `next_run_at` with a
//! compare-and-set on the old value and enqueues the job in the same transaction, with the
//! dedupe key `schedule:{name}:{tick}`. Only the node whose update matched fires a tick, and a
//! crash between the two statements rolls both back, so a tick is neither lost nor doubled.
//!
//! **No catch-up bursts:** a schedule overdue by several periods (all nodes were down) fires
//! once, and `next_run_at` moves to the first tick after `now`; the missed ticks are skipped.

use chrono::{DateTime, NaiveTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use utoipa::ToSchema;

use super::{ENQUEUE_SQL, NewJob};
use crate::error::{Result, StoreError};
use crate::{Store, with_db};

/// When a schedule ticks. JSON: `{"every_minutes": 15}` or
/// `{"daily_at": {"hour": 6, "minute": 30}}` (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleSpec {
    EveryMinutes(u32),
    DailyAt { hour: u8, minute: u8 },
}

impl ScheduleSpec {
    /// Longest period accepted for `EveryMinutes`: a leap year.
    pub const MAX_EVERY_MINUTES: u32 = 366 * 24 * 60;

    pub fn validate(&self) -> Result<()> {
        match *self {
            ScheduleSpec::EveryMinutes(n) if n == 0 || n > Self::MAX_EVERY_MINUTES => {
                Err(StoreError::field(
                    "every_minutes",
                    format!("must be 1..={}", Self::MAX_EVERY_MINUTES),
                ))
            }
            ScheduleSpec::DailyAt { hour, minute } if hour > 23 || minute > 59 => Err(
                StoreError::field("daily_at", "must be a time HH:MM between 00:00 and 23:59"),
            ),
            _ => Ok(()),
        }
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        match *self {
            ScheduleSpec::EveryMinutes(n) => {
                let period = i64::from(n.max(1)) * 60;
                let next = (after.timestamp().div_euclid(period) + 1) * period;
                DateTime::from_timestamp(next, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
            }
            ScheduleSpec::DailyAt { hour, minute } => {
                let time = NaiveTime::from_hms_opt(u32::from(hour), u32::from(minute), 0)
                    .unwrap_or(NaiveTime::MIN);
                let today = after.date_naive().and_time(time).and_utc();
                if today > after {
                    today
                } else {
                    today
                        .checked_add_signed(TimeDelta::days(1))
                        .unwrap_or(DateTime::<Utc>::MAX_UTC)
                }
            }
        }
    }

    /// `(every_minutes, daily_at)` columns.
    pub(crate) fn columns(&self) -> (Option<i32>, Option<String>) {
        match *self {
            ScheduleSpec::EveryMinutes(n) => (Some(i32::try_from(n).unwrap_or(i32::MAX)), None),
            ScheduleSpec::DailyAt { hour, minute } => {
                (None, Some(format!("{hour:02}:{minute:02}")))
            }
        }
    }

    fn from_columns(every_minutes: Option<i32>, daily_at: Option<&str>) -> Option<Self> {
        let spec = match (every_minutes, daily_at) {
            (Some(n), None) => ScheduleSpec::EveryMinutes(u32::try_from(n).ok()?),
            (None, Some(t)) => {
                let (h, m) = t.split_once(':')?;
                ScheduleSpec::DailyAt {
                    hour: h.parse().ok()?,
                    minute: m.parse().ok()?,
                }
            }
            _ => return None,
        };
        spec.validate().ok().map(|()| spec)
    }
}

impl std::fmt::Display for ScheduleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleSpec::EveryMinutes(n) => write!(f, "every {n} min"),
            ScheduleSpec::DailyAt { hour, minute } => {
                write!(f, "daily at {hour:02}:{minute:02} UTC")
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Schedule {
    pub id: i64,
    pub name: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub spec: ScheduleSpec,
    pub next_run_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    id: i64,
    name: String,
    kind: String,
    payload: Value,
    every_minutes: Option<i32>,
    daily_at: Option<String>,
    next_run_at: DateTime<Utc>,
    last_run_at: Option<DateTime<Utc>>,
    enabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ScheduleRow> for Schedule {
    type Error = StoreError;

    fn try_from(r: ScheduleRow) -> Result<Self> {
        let spec = ScheduleSpec::from_columns(r.every_minutes, r.daily_at.as_deref()).ok_or_else(
            || {
                StoreError::Database(sqlx::Error::Protocol(format!(
                    "schedule {:?} has an invalid spec in the database",
                    r.name
                )))
            },
        )?;
        Ok(Schedule {
            id: r.id,
            name: r.name,
            kind: r.kind,
            payload: r.payload,
            spec,
            next_run_at: r.next_run_at,
            last_run_at: r.last_run_at,
            enabled: r.enabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

macro_rules! schedule_columns {
    () => {
        "id, name, kind, payload, every_minutes, daily_at, next_run_at, last_run_at, enabled, \
         created_at, updated_at"
    };
}

const BY_NAME_SQL: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules WHERE name = $1"
);

/// The dedupe key of the job a schedule enqueues for the tick `tick`.
pub fn schedule_dedupe_key(name: &str, tick: DateTime<Utc>) -> String {
    format!(
        "schedule:{name}:{}",
        tick.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// Creates a schedule or updates its kind, payload and spec, keeping `enabled` and, unless the
/// spec changed, `next_run_at`. Binds: name, kind, payload, every_minutes, daily_at, the first
/// tick, now. Shared by [`Store::upsert_schedule`] and transactions that start connectors.
pub(crate) const UPSERT_SQL: &str = concat!(
    "INSERT INTO schedules (name, kind, payload, every_minutes, daily_at, next_run_at, \
         enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7) \
         ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, payload = excluded.payload, \
         next_run_at = CASE WHEN COALESCE(schedules.every_minutes, 0) = \
         COALESCE(excluded.every_minutes, 0) AND COALESCE(schedules.daily_at, '') = \
         COALESCE(excluded.daily_at, '') THEN schedules.next_run_at \
         ELSE excluded.next_run_at END, \
         every_minutes = excluded.every_minutes, daily_at = excluded.daily_at, \
         updated_at = excluded.updated_at RETURNING ",
    schedule_columns!()
);

impl Store {
    /// Creates or updates the schedule `name`. A new schedule is enabled and first ticks at
    /// `spec.next_after(now)`. On update, `enabled` is kept (an operator's "disable" survives
    /// a restart that re-declares the schedule) and so is `next_run_at` unless the spec changed.
    pub async fn upsert_schedule(
        &self,
        name: &str,
        kind: &str,
        payload: Value,
        spec: ScheduleSpec,
    ) -> Result<Schedule> {
        if name.trim().is_empty() {
            return Err(StoreError::field("name", "must not be empty"));
        }
        if kind.trim().is_empty() {
            return Err(StoreError::field("kind", "must not be empty"));
        }
        spec.validate()?;
        let now = self.now();
        let (every_minutes, daily_at) = spec.columns();
        let row: ScheduleRow = with_db!(self, write, p => {
            sqlx::query_as(UPSERT_SQL)
                .bind(name)
                .bind(kind)
                .bind(Json(&payload))
                .bind(every_minutes)
                .bind(&daily_at)
                .bind(spec.next_after(now))
                .bind(now)
                .fetch_one(p)
                .await?
        });
        row.try_into()
    }

    pub async fn get_schedule(&self, name: &str) -> Result<Schedule> {
        let row: Option<ScheduleRow> = with_db!(self, read, p => {
            sqlx::query_as(BY_NAME_SQL).bind(name).fetch_optional(p).await?
        });
        row.ok_or_else(|| StoreError::not_found("schedule"))?
            .try_into()
    }

    /// All schedules, by name.
    pub async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        const SQL: &str = concat!(
            "SELECT ",
            schedule_columns!(),
            " FROM schedules ORDER BY name"
        );
        let rows: Vec<ScheduleRow> = with_db!(self, read, p => {
            sqlx::query_as(SQL).fetch_all(p).await?
        });
        rows.into_iter().map(Schedule::try_from).collect()
    }

    /// Enables or disables a schedule. Re-enabling a schedule whose tick passed while it was
    /// disabled moves `next_run_at` to the next future tick: the missed ticks are not fired.
    pub async fn set_schedule_enabled(&self, name: &str, enabled: bool) -> Result<Schedule> {
        const DISABLE_SQL: &str = concat!(
            "UPDATE schedules SET enabled = FALSE, updated_at = $2 WHERE name = $1 RETURNING ",
            schedule_columns!()
        );
        // `AND NOT enabled`: only the call that actually flips the flag moves next_run_at, so it
        // cannot race with a node firing the (enabled) schedule.
        const ENABLE_SQL: &str = concat!(
            "UPDATE schedules SET enabled = TRUE, next_run_at = $2, updated_at = $3 \
             WHERE name = $1 AND NOT enabled RETURNING ",
            schedule_columns!()
        );
        let now = self.now();
        if !enabled {
            let row: Option<ScheduleRow> = with_db!(self, write, p => {
                sqlx::query_as(DISABLE_SQL).bind(name).bind(now).fetch_optional(p).await?
            });
            return row
                .ok_or_else(|| StoreError::not_found("schedule"))?
                .try_into();
        }
        let current = self.get_schedule(name).await?;
        if current.enabled {
            return Ok(current);
        }
        let next = if current.next_run_at > now {
            current.next_run_at
        } else {
            current.spec.next_after(now)
        };
        let row: Option<ScheduleRow> = with_db!(self, write, p => {
            sqlx::query_as(ENABLE_SQL).bind(name).bind(next).bind(now).fetch_optional(p).await?
        });
        match row {
            Some(r) => r.try_into(),
            // Enabled concurrently by someone else.
            None => self.get_schedule(name).await,
        }
    }

    /// Deletes a schedule (jobs it already enqueued stay). `false` if there was none.
    pub async fn delete_schedule(&self, name: &str) -> Result<bool> {
        const SQL: &str = "DELETE FROM schedules WHERE name = $1";
        let n = with_db!(self, write, p => {
            sqlx::query(SQL).bind(name).execute(p).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// Enqueues one job for every enabled schedule due at `now` (the clock reading; injectable
    /// for tests) and advances it to its first tick after `now`. Returns how many schedules
    /// this call fired; concurrent calls on other nodes fire each tick exactly once in total.
    /// The job is due at `now` and has the default number of attempts.
    pub async fn fire_due_schedules(&self, now: DateTime<Utc>) -> Result<usize> {
        const DUE_SQL: &str = concat!(
            "SELECT ",
            schedule_columns!(),
            " FROM schedules WHERE enabled AND next_run_at <= $1 ORDER BY next_run_at, id"
        );
        // Compare-and-set on the tick read above: of several nodes, only one matches.
        const ADVANCE_SQL: &str = "UPDATE schedules SET next_run_at = $3, last_run_at = $4, \
             updated_at = $5 WHERE id = $1 AND next_run_at = $2 AND enabled";
        let due: Vec<ScheduleRow> = with_db!(self, write, p => {
            sqlx::query_as(DUE_SQL).bind(now).fetch_all(p).await?
        });
        let mut fired = 0;
        for row in due {
            let s = match Schedule::try_from(row) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "skipping schedule");
                    continue;
                }
            };
            let tick = s.next_run_at;
            let next = s.spec.next_after(now);
            let key = schedule_dedupe_key(&s.name, tick);
            let wrote = self.now();
            let won = with_db!(self, write, p => {
                let mut tx = p.begin().await?;
                let n = sqlx::query(ADVANCE_SQL)
                    .bind(s.id)
                    .bind(tick)
                    .bind(next)
                    .bind(now)
                    .bind(wrote)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 1 {
                    sqlx::query(ENQUEUE_SQL)
                        .bind(&s.kind)
                        .bind(Json(&s.payload))
                        .bind(NewJob::DEFAULT_MAX_ATTEMPTS)
                        .bind(now)
                        .bind(&key)
                        .bind(wrote)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    true
                } else {
                    tx.rollback().await?;
                    false
                }
            });
            if won {
                fired += 1;
                tracing::info!(schedule = %s.name, kind = %s.kind, %tick, next_run_at = %next,
                    "schedule fired");
            }
        }
        Ok(fired)
    }
}
