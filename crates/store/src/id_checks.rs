//! Re-validation of stored IDs after an ID type's rule changes: a background job that walks all
//! IDs of one type in id order, in batches, and marks values that no longer match as `invalid`
//! (with a description saying why). It only ever moves `valid` → `invalid`; fixing a value is a
//! registrar's decision.
//!
//! Re-running it is harmless (already-invalid IDs are skipped), so a job retried after a crash
//! simply starts over.

use chrono::Utc;
use g2p_domain::anchored_regex;
use serde_json::{Value, json};

use crate::audit::Actor;
use crate::error::{Result, StoreError};
use crate::jobs::runner::{JobContext, JobError};
use crate::{Store, audit_insert, with_db};

/// Job kind; payload `{"id_type_id": <id>}`.
pub const REVALIDATE_IDS_JOB: &str = "registry.revalidate_ids";

const BATCH: i64 = 1000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub checked: u64,
    pub invalidated: u64,
    /// Last reg_ids.id seen; `None` when the batch was empty (done).
    pub last_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct IdRow {
    id: i64,
    registrant_id: i64,
    value: String,
    status: String,
}

impl Store {
    pub async fn count_ids_of_type(&self, id_type_id: i64) -> Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM reg_ids WHERE id_type_id = $1";
        Ok(with_db!(self, read, p => sqlx::query_scalar(SQL).bind(id_type_id).fetch_one(p).await?))
    }

    /// Checks the next `limit` IDs of the type after `after_id` against its current regex.
    pub async fn revalidate_ids_batch(
        &self,
        id_type_id: i64,
        after_id: i64,
        limit: i64,
        actor: &Actor,
    ) -> Result<BatchOutcome> {
        const SELECT: &str = "SELECT id, registrant_id, value, status FROM reg_ids \
            WHERE id_type_id = $1 AND id > $2 ORDER BY id LIMIT $3";
        const MARK: &str = "UPDATE reg_ids SET status = 'invalid', description = $2, \
            updated_at = $3 WHERE id = $1 AND status = 'valid'";
        let id_type = self.get_id_type(id_type_id).await?;
        let re = match id_type.validation_regex.as_deref() {
            None => None,
            Some(r) => Some(anchored_regex(r).map_err(|e| {
                StoreError::field("validation_regex", format!("does not compile: {e}"))
            })?),
        };
        let rows: Vec<IdRow> = with_db!(self, read, p => {
            sqlx::query_as(SELECT).bind(id_type_id).bind(after_id).bind(limit).fetch_all(p).await?
        });
        let mut out = BatchOutcome {
            checked: rows.len() as u64,
            last_id: rows.last().map(|r| r.id),
            ..Default::default()
        };
        let Some(re) = re else { return Ok(out) };
        let bad: Vec<&IdRow> = rows
            .iter()
            .filter(|r| r.status == "valid" && !re.is_match(&r.value))
            .collect();
        if bad.is_empty() {
            return Ok(out);
        }
        let description = format!("does not match the format of {}", id_type.name);
        let now = Utc::now();
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            for r in &bad {
                let n = sqlx::query(MARK).bind(r.id).bind(&description).bind(now)
                    .execute(&mut *tx).await?.rows_affected();
                if n > 0 {
                    out.invalidated += 1;
                    audit_insert!(&mut *tx, actor, "invalidate_id", "reg_id", Some(r.id),
                        Some(r.registrant_id), Some(json!({"status": "valid"})),
                        Some(json!({"status": "invalid", "description": description})))?;
                }
            }
            tx.commit().await?;
        });
        Ok(out)
    }
}

/// The job handler for [`REVALIDATE_IDS_JOB`].
pub async fn revalidate_ids_job(ctx: JobContext, payload: Value) -> Result<Value, JobError> {
    let id_type_id = payload
        .get("id_type_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| JobError::permanent("payload needs an integer id_type_id"))?;
    let store = ctx.store.clone();
    let actor = Actor::system(&format!("job:{}", ctx.job_id));
    let total = store.count_ids_of_type(id_type_id).await?;
    let total = u64::try_from(total).unwrap_or(0);
    let (mut after, mut checked, mut invalidated) = (0i64, 0u64, 0u64);
    ctx.progress(0, total).await?;
    loop {
        if ctx.shutdown.is_cancelled() {
            // Safe to stop between batches: a retry re-checks from the start.
            return Err(JobError::retryable("interrupted by shutdown"));
        }
        let b = match store
            .revalidate_ids_batch(id_type_id, after, BATCH, &actor)
            .await
        {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => {
                return Err(JobError::permanent("the ID type no longer exists"));
            }
            Err(e) => return Err(e.into()),
        };
        let Some(last) = b.last_id else { break };
        after = last;
        checked += b.checked;
        invalidated += b.invalidated;
        // Rows added while the job runs can push `checked` past the first count.
        ctx.progress(checked, total.max(checked)).await?;
    }
    tracing::info!(
        job = ctx.job_id,
        checked,
        invalidated,
        "ID re-validation finished"
    );
    Ok(json!({"checked": checked, "invalidated": invalidated}))
}
