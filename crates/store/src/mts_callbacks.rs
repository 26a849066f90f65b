//! Applying MTS callbacks to the registry. A record's result is accepted only while its state row
//! is still `sent` under the reference the callback carries: that guarded update is what makes a
//! replay, a late result of an earlier send, or two deliveries racing each other change nothing.
//!
//! On PostgreSQL a whole callback (one record or thousands) is one statement: the guarded state
//! update feeds, through data-modifying CTEs, the token upsert, the VID removal, the attribute
//! merge and the audit entries, so a bulk callback costs a few round trips instead of several
//! per record, and concurrent callbacks only lock the rows they touch. SQLite, in-process and
//! with one writer, runs the same steps per record inside one transaction.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};
use sqlx::types::Json;

use crate::audit::Actor;
use crate::db::PoolsRef;
use crate::error::{Result, StoreError};
use crate::mts::{MtsCallbackItem, MtsCallbackPolicy, MtsCallbackReport, reference_key};
use crate::{Store, audit_insert};

/// A callback item checked against its state row: what the record becomes.
struct Outcome<'a> {
    reference: &'a str,
    /// `Some` exactly when the record is tokenised.
    token: Option<&'a str>,
    error_code: Option<String>,
    error_message: Option<String>,
    next_retry_at: Option<DateTime<Utc>>,
    extra: &'a Map<String, Value>,
}

impl Outcome<'_> {
    fn state(&self) -> &'static str {
        if self.token.is_some() {
            "processed"
        } else {
            "failed"
        }
    }

    /// The audit entry's `after`, less what only the database knows (`run_id`, `vid_removed`).
    fn attribute_keys(&self) -> Vec<&str> {
        self.extra.keys().map(String::as_str).collect()
    }
}

fn truncate(s: Option<String>, max: usize) -> Option<String> {
    s.map(|s| s.chars().take(max).collect())
}

/// What an item means for its record. `attempts` is the record's send count, which cannot
/// change while the record stays `sent` under this reference (a re-send gets a new reference).
fn classify<'a>(
    item: &'a MtsCallbackItem,
    attempts: i64,
    token_type: Option<i64>,
    policy: &MtsCallbackPolicy<'_>,
    now: DateTime<Utc>,
) -> Outcome<'a> {
    let token = item.token.as_deref().filter(|t| !t.is_empty());
    let (token, code, message) = match (item.status.as_str(), token, token_type) {
        ("processed", Some(token), Some(_)) => (Some(token), None, None),
        ("processed", _, None) => (
            None,
            Some("G2P-MTS-CONFIG".to_owned()),
            Some(format!("ID type {:?} does not exist", policy.token_id_type)),
        ),
        ("processed", None, Some(_)) => (
            None,
            Some("G2P-MTS-NO-TOKEN".to_owned()),
            Some("MTS answered processed without a token".to_owned()),
        ),
        (status, _, _) => (
            None,
            item.error_code.clone().or_else(|| Some(status.to_owned())),
            item.error_message.clone(),
        ),
    };
    let next_retry_at = (token.is_none() && attempts < policy.max_attempts).then(|| {
        let factor = 1i64 << (attempts.clamp(1, 16) - 1);
        now + Duration::minutes(policy.backoff_minutes.saturating_mul(factor))
    });
    Outcome {
        reference: &item.reference,
        token,
        error_code: truncate(code, 100),
        error_message: truncate(message, 500),
        next_retry_at,
        extra: &item.extra,
    }
}

/// Checks every item's reference and classifies it; an unknown reference refuses the whole
/// callback, naming each offending item. `known` maps reference keys to the record's attempts:
/// a stale reference (an earlier send of a known record) passes here and is then ignored by the
/// guarded update.
fn outcomes<'a>(
    items: &'a [MtsCallbackItem],
    known: &HashMap<String, i64>,
    token_type: Option<i64>,
    policy: &MtsCallbackPolicy<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<Outcome<'a>>> {
    let mut unknown = g2p_domain::FieldErrors::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match known.get(reference_key(&item.reference)) {
            Some(&attempts) => out.push(classify(item, attempts, token_type, policy, now)),
            None => unknown.add(format!("[{i}].ref"), "unknown reference"),
        }
    }
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(StoreError::Validation(unknown))
    }
}

const ID_TYPES: &str = "SELECT (SELECT id FROM id_types WHERE lower(name) = lower($1)), \
    (SELECT id FROM id_types WHERE lower(name) = lower($2))";

/// PostgreSQL: the whole callback in one statement (see the module documentation). `$1` is a
/// JSON array of outcomes; the count of records whose result was stored comes back.
const APPLY_PG: &str = "\
WITH x AS (
    SELECT * FROM jsonb_to_recordset($1) AS x(ref text, state text, token text,
        error_code text, error_message text, next_retry_at timestamptz, extra jsonb, keys jsonb)
), claimed AS (
    UPDATE mts_records m SET state = x.state, error_code = x.error_code,
        error_message = x.error_message, next_retry_at = x.next_retry_at, updated_at = $2
    FROM x WHERE m.connector_id = $3 AND m.ref = x.ref AND m.state = 'sent'
    RETURNING m.registrant_id, m.run_id, x.token, x.extra, x.keys
), done AS (
    SELECT * FROM claimed WHERE token IS NOT NULL
), tokens AS (
    INSERT INTO reg_ids (registrant_id, id_type_id, value, status, created_at, updated_at)
    SELECT registrant_id, $4, token, 'valid', $2, $2 FROM done
    ON CONFLICT (registrant_id, id_type_id) DO UPDATE SET value = excluded.value,
        status = 'valid', updated_at = excluded.updated_at
), vids AS (
    DELETE FROM reg_ids r USING done d
    WHERE r.registrant_id = d.registrant_id AND r.id_type_id = $5
    RETURNING r.registrant_id
), merged AS (
    UPDATE registrants r SET attributes = r.attributes || d.extra, updated_at = $2,
        version = r.version + 1
    FROM done d WHERE r.id = d.registrant_id
), audited AS (
    INSERT INTO audit_log (at, actor, action, entity, entity_id, registrant_id, request_id,
        before, after)
    SELECT $2, $6, 'mts.tokenised', 'registrant', d.registrant_id, d.registrant_id, $7, NULL,
        jsonb_build_object('connector_id', $3::bigint, 'run_id', d.run_id,
            'token_id_type', $8::text,
            'vid_removed', EXISTS (SELECT 1 FROM vids v WHERE v.registrant_id = d.registrant_id),
            'attributes', d.keys)
    FROM done d
)
SELECT count(*) FROM claimed";

impl Store {
    /// Applies a callback's records. Unknown references refuse the whole call and change
    /// nothing; replays and late results of an earlier send are counted as ignored.
    pub async fn apply_mts_callbacks(
        &self,
        policy: &MtsCallbackPolicy<'_>,
        items: &[MtsCallbackItem],
        actor: &Actor,
    ) -> Result<MtsCallbackReport> {
        if items.is_empty() {
            return Ok(MtsCallbackReport::default());
        }
        let now = Utc::now();
        let applied = match self.pools_ref() {
            PoolsRef::Postgres(p) => {
                let (token_type, vid_type): (Option<i64>, Option<i64>) = sqlx::query_as(ID_TYPES)
                    .bind(policy.token_id_type)
                    .bind(policy.vid_id_type)
                    .fetch_one(p)
                    .await?;
                let keys: Vec<&str> = items.iter().map(|i| reference_key(&i.reference)).collect();
                // Read outside a transaction: keys are never reused, and the guarded
                // update below decides which records are still waiting for this result.
                let known: HashMap<String, i64> = sqlx::query_as(
                    "SELECT ref_key, attempts FROM mts_records \
                     WHERE connector_id = $1 AND ref_key = ANY($2)",
                )
                .bind(policy.connector_id)
                .bind(&keys)
                .fetch_all(p)
                .await?
                .into_iter()
                .collect();
                let outcomes = outcomes(items, &known, token_type, policy, now)?;
                let rows: Vec<Value> = outcomes
                    .iter()
                    .map(|o| {
                        json!({"ref": o.reference, "state": o.state(), "token": o.token,
                            "error_code": o.error_code, "error_message": o.error_message,
                            "next_retry_at": o.next_retry_at, "extra": o.extra,
                            "keys": o.attribute_keys()})
                    })
                    .collect();
                let vid_type = vid_type.filter(|_| policy.remove_vid);
                let (applied,): (i64,) = sqlx::query_as(APPLY_PG)
                    .bind(Json(rows))
                    .bind(now)
                    .bind(policy.connector_id)
                    .bind(token_type)
                    .bind(vid_type)
                    .bind(actor.name.as_str())
                    .bind(actor.request_id.as_deref())
                    .bind(policy.token_id_type)
                    .fetch_one(p)
                    .await?;
                usize::try_from(applied).unwrap_or(0)
            }
            PoolsRef::Sqlite { write, .. } => {
                let mut tx = write.begin().await?;
                let (token_type, vid_type): (Option<i64>, Option<i64>) = sqlx::query_as(ID_TYPES)
                    .bind(policy.token_id_type)
                    .bind(policy.vid_id_type)
                    .fetch_one(&mut *tx)
                    .await?;
                let mut known = HashMap::with_capacity(items.len());
                for item in items {
                    let row: Option<(i64,)> = sqlx::query_as(
                        "SELECT attempts FROM mts_records \
                         WHERE ref_key = $1 AND connector_id = $2",
                    )
                    .bind(reference_key(&item.reference))
                    .bind(policy.connector_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some((attempts,)) = row {
                        known.insert(reference_key(&item.reference).to_owned(), attempts);
                    }
                }
                let mut applied = 0;
                for o in outcomes(items, &known, token_type, policy, now)? {
                    let claimed: Option<(i64, Option<i64>)> = sqlx::query_as(
                        "UPDATE mts_records SET state = $1, error_code = $2, error_message = $3, \
                         next_retry_at = $4, updated_at = $5 \
                         WHERE connector_id = $6 AND ref = $7 AND state = 'sent' \
                         RETURNING registrant_id, run_id",
                    )
                    .bind(o.state())
                    .bind(&o.error_code)
                    .bind(&o.error_message)
                    .bind(o.next_retry_at)
                    .bind(now)
                    .bind(policy.connector_id)
                    .bind(o.reference)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((registrant_id, run_id)) = claimed else {
                        continue;
                    };
                    applied += 1;
                    let (Some(token), Some(token_type)) = (o.token, token_type) else {
                        continue;
                    };
                    sqlx::query(
                        "INSERT INTO reg_ids (registrant_id, id_type_id, value, status, \
                         created_at, updated_at) VALUES ($1, $2, $3, 'valid', $4, $4) \
                         ON CONFLICT (registrant_id, id_type_id) DO UPDATE SET \
                         value = excluded.value, status = 'valid', \
                         updated_at = excluded.updated_at",
                    )
                    .bind(registrant_id)
                    .bind(token_type)
                    .bind(token)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let mut vid_removed = false;
                    if policy.remove_vid
                        && let Some(vid_type) = vid_type
                    {
                        vid_removed = sqlx::query(
                            "DELETE FROM reg_ids WHERE registrant_id = $1 AND id_type_id = $2",
                        )
                        .bind(registrant_id)
                        .bind(vid_type)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                            > 0;
                    }
                    sqlx::query(
                        "UPDATE registrants SET attributes = json_patch(attributes, $2), \
                         updated_at = $3, version = version + 1 WHERE id = $1",
                    )
                    .bind(registrant_id)
                    .bind(Json(o.extra))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let after = json!({"connector_id": policy.connector_id, "run_id": run_id,
                        "token_id_type": policy.token_id_type, "vid_removed": vid_removed,
                        "attributes": o.attribute_keys()});
                    audit_insert!(
                        &mut *tx,
                        actor,
                        "mts.tokenised",
                        "registrant",
                        Some(registrant_id),
                        Some(registrant_id),
                        None::<Value>,
                        Some(after)
                    )?;
                }
                tx.commit().await?;
                applied
            }
        };
        if applied > 0 {
            self.complete_mts_runs_of(policy.connector_id).await?;
        }
        Ok(MtsCallbackReport {
            applied,
            ignored: items.len() - applied,
        })
    }
}
