//! Registrants from ODK submissions, as an ODK MTS connector's callbacks deliver them. Each
//! submission is identified by its ODK instance id (`__id`): the registrant made from it carries
//! the external key `odk:<connector>:<instance id>` and the `ODK INSTANCE ID`, and the
//! `odk_submissions` row records what became of it. Re-reading a window or replaying a callback
//! therefore updates that registrant (or, when nothing differs, changes nothing) and never
//! creates a second one. A token that already belongs to another registrant is not silently
//! made into a second person: the submission is kept as a possible duplicate for review.

use chrono::{DateTime, Utc};
use g2p_domain::{NewRegistrant, Registrant};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::types::Json;

use crate::audit::Actor;
use crate::error::{Result, StoreError};
use crate::registry::{INSERT_REGISTRANT, REGISTRANT_COLUMNS, RegistrantRow};
use crate::{Store, audit_insert, with_db};

/// The ID type every registrant made from a submission carries.
pub const ODK_INSTANCE_ID_TYPE: &str = "ODK INSTANCE ID";

/// What became of a submission.
pub mod outcome {
    pub const CREATED: &str = "created";
    pub const UPDATED: &str = "updated";
    /// An identical result was received before: nothing changed.
    pub const UNCHANGED: &str = "unchanged";
    pub const DUPLICATE: &str = "duplicate";
    pub const HELD: &str = "held";
    pub const INVALID: &str = "invalid";
}

/// One submission's result, as the connector's output format shaped it and the receiver
/// validated it.
#[derive(Debug, Clone)]
pub struct OdkSubmission {
    pub instance_id: String,
    pub submission_date: Option<DateTime<Utc>>,
    /// MTS's status: `processed` or the failure.
    pub status: String,
    pub token: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub vid: Option<String>,
    /// The person MTS authenticated, or why the document is not a valid registrant.
    pub registrant: std::result::Result<NewRegistrant, String>,
    /// A household form: the group, of which the registrant (its head) and `members` are
    /// members.
    pub group: Option<NewRegistrant>,
    pub members: Vec<NewRegistrant>,
    /// The result as received, kept for review and hashed for replays.
    pub raw: Value,
}

/// How a connector turns results into registrants.
#[derive(Debug, Clone)]
pub struct OdkPolicy<'a> {
    pub connector_id: i64,
    pub vid_id_type: &'a str,
    pub token_id_type: &'a str,
    pub remove_vid: bool,
    /// A failed authentication: hold the submission for review instead of creating the
    /// registrant with its VID kept.
    pub hold_failed: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct OdkApplied {
    pub instance_id: String,
    /// One of [`outcome`].
    pub outcome: String,
    pub registrant_id: Option<i64>,
    pub duplicate_of: Option<i64>,
}

/// A submission as listed for the operator.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct OdkSubmissionRow {
    pub instance_id: String,
    pub run_id: Option<i64>,
    pub submission_date: Option<DateTime<Utc>>,
    pub outcome: String,
    pub status: String,
    pub registrant_id: Option<i64>,
    pub duplicate_of: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Per-outcome counts of a run's submissions.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct OdkRunCounts {
    pub received: i64,
    pub created: i64,
    pub updated: i64,
    /// Received before, identically: nothing changed.
    pub unchanged: i64,
    pub tokenised: i64,
    pub failed: i64,
    pub duplicates: i64,
    pub held: i64,
    pub invalid: i64,
}

fn digest(raw: &Value) -> String {
    hex::encode(Sha256::digest(raw.to_string().as_bytes()))
}

/// The external key of the registrant made from a submission (its household gets `#household`,
/// the other members `#<n>`).
pub fn odk_external_key(connector_id: i64, instance_id: &str) -> String {
    format!("odk:{connector_id}:{instance_id}")
}

const SELECT_BY_KEY: &str = "SELECT id FROM registrants WHERE external_key = $1";
const UPSERT_ID: &str = "INSERT INTO reg_ids (registrant_id, id_type_id, value, status, \
    created_at, updated_at) VALUES ($1, $2, $3, 'valid', $4, $4) \
    ON CONFLICT (registrant_id, id_type_id) DO UPDATE SET value = excluded.value, \
    status = 'valid', updated_at = excluded.updated_at";
const RUN_HISTORY: &str = "INSERT INTO odk_run_submissions (run_id, instance_id, outcome, status) \
    VALUES ($1, $2, $3, $4)";
const UPDATE_FIELDS: &str = "UPDATE registrants SET is_group = $2, name = $3, given_name = $4, \
    family_name = $5, addl_name = $6, gender = $7, birthdate = $8, birthdate_not_exact = $9, \
    birth_place = $10, address = $11, phone = $12, phone_numbers = $13, email = $14, \
    attributes = $15, updated_at = $16, version = version + 1 WHERE id = $1";
const UPSERT_SUBMISSION: &str = "INSERT INTO odk_submissions (connector_id, instance_id, run_id, \
    submission_date, outcome, status, registrant_id, duplicate_of, error_code, error_message, \
    document, digest, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
    ON CONFLICT (connector_id, instance_id) DO UPDATE SET \
    run_id = COALESCE(excluded.run_id, odk_submissions.run_id), \
    submission_date = excluded.submission_date, outcome = excluded.outcome, \
    status = excluded.status, registrant_id = excluded.registrant_id, \
    duplicate_of = excluded.duplicate_of, error_code = excluded.error_code, \
    error_message = excluded.error_message, document = excluded.document, \
    digest = excluded.digest, updated_at = excluded.updated_at";

/// Creates or updates one registrant by external key inside the caller's transaction; its IDs
/// are upserted by type. The registrant's id and whether it was created.
macro_rules! upsert_registrant {
    ($tx:expr, $r:expr, $key:expr, $ids:expr, $now:expr, $actor:expr) => {{
        let existing: Option<i64> = sqlx::query_scalar(SELECT_BY_KEY)
            .bind($key)
            .fetch_optional(&mut *$tx)
            .await?;
        let (id, created) = match existing {
            Some(id) => {
                sqlx::query(UPDATE_FIELDS)
                    .bind(id)
                    .bind($r.is_group)
                    .bind($r.name.as_str())
                    .bind($r.given_name.as_deref())
                    .bind($r.family_name.as_deref())
                    .bind($r.addl_name.as_deref())
                    .bind($r.gender.as_deref())
                    .bind($r.birthdate)
                    .bind($r.birthdate_not_exact)
                    .bind($r.birth_place.as_deref())
                    .bind($r.address.as_deref())
                    .bind($r.phone.as_deref())
                    .bind(Json(&$r.phone_numbers))
                    .bind($r.email.as_deref())
                    .bind(Json(&$r.attributes))
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
                (id, false)
            }
            None => {
                // The document's own external key, if any, gives way to the submission's.
                let keyed = NewRegistrant {
                    external_key: Some($key.to_owned()),
                    ..$r.clone()
                };
                let id: i64 = bind_registrant_fields!(sqlx::query_scalar(INSERT_REGISTRANT), keyed)
                    .bind($now)
                    .fetch_one(&mut *$tx)
                    .await?;
                (id, true)
            }
        };
        for (type_id, value) in $ids {
            sqlx::query(UPSERT_ID)
                .bind(id)
                .bind(type_id)
                .bind(value)
                .bind($now)
                .execute(&mut *$tx)
                .await?;
        }
        let row: RegistrantRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {REGISTRANT_COLUMNS} FROM registrants r WHERE r.id = $1"
        )))
        .bind(id)
        .fetch_one(&mut *$tx)
        .await?;
        let after: Registrant = row.into();
        audit_insert!(
            &mut *$tx,
            $actor,
            if created { "create" } else { "update" },
            "registrant",
            Some(id),
            Some(id),
            None::<Value>,
            serde_json::to_value(&after).ok()
        )?;
        (id, created)
    }};
}

impl Store {
    /// Applies one submission's result in one transaction (see the module documentation).
    pub async fn apply_odk_submission(
        &self,
        policy: &OdkPolicy<'_>,
        sub: &OdkSubmission,
        actor: &Actor,
    ) -> Result<OdkApplied> {
        let now = Utc::now();
        let digest = digest(&sub.raw);
        let key = odk_external_key(policy.connector_id, &sub.instance_id);
        let token = sub
            .token
            .as_deref()
            .filter(|t| !t.is_empty() && sub.status == "processed");
        let types = self.load_id_types().await?;
        let type_of = |name: &str| types.get(name).map(|t| t.id);
        let (Some(instance_type), Some(token_type), vid_type) = (
            type_of(ODK_INSTANCE_ID_TYPE),
            type_of(policy.token_id_type),
            type_of(policy.vid_id_type),
        ) else {
            return Err(StoreError::field(
                "token_id_type",
                "the ODK INSTANCE ID and token ID types must exist",
            ));
        };
        // Validated before the transaction: IDs the document itself carries.
        let head = sub.registrant.as_ref().ok();
        let mut doc_errors = None;
        if let Some(r) = head {
            if let Err(e) = types.check(&r.ids) {
                doc_errors = Some(e.to_string());
            }
            for (i, m) in sub.members.iter().enumerate() {
                if let Err(e) = types.check(&m.ids) {
                    doc_errors = Some(format!("members[{i}]: {e}"));
                }
            }
            if let Some(g) = &sub.group
                && let Err(e) = types.check(&g.ids)
            {
                doc_errors = Some(format!("group: {e}"));
            }
        }
        let invalid = match (&sub.registrant, doc_errors) {
            (Err(e), _) => Some(e.clone()),
            (Ok(_), Some(e)) => Some(e),
            (Ok(_), None) => None,
        };

        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            // The run this result answers: the oldest unfinished run whose window holds the
            // submission and that has not had it yet (two runs may both read an overlap). A
            // replay after its run finished belongs to none and leaves every run's counts alone.
            let run_id: Option<i64> = sqlx::query_scalar(
                "SELECT r.id FROM mts_runs r WHERE r.connector_id = $1 \
                 AND r.status IN ('running', 'submitted') AND r.window_end IS NOT NULL \
                 AND ($2 IS NULL OR (r.window_start <= $2 AND r.window_end > $2)) \
                 AND NOT EXISTS (SELECT 1 FROM odk_run_submissions s \
                   WHERE s.run_id = r.id AND s.instance_id = $3) \
                 ORDER BY r.id LIMIT 1",
            )
            .bind(policy.connector_id)
            .bind(sub.submission_date)
            .bind(&sub.instance_id)
            .fetch_optional(&mut *tx)
            .await?;
            let seen: Option<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
                "SELECT digest, outcome, registrant_id, duplicate_of FROM odk_submissions \
                 WHERE connector_id = $1 AND instance_id = $2",
            )
            .bind(policy.connector_id)
            .bind(&sub.instance_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((d, _, registrant_id, duplicate_of)) = &seen
                && *d == digest
            {
                // The same result again (a replayed callback, or a re-read window whose
                // submission did not change): the registry and the submission's outcome are
                // left alone; only the run that read it again counts it, as unchanged.
                if let Some(run) = run_id {
                    sqlx::query("UPDATE odk_submissions SET run_id = $3 \
                         WHERE connector_id = $1 AND instance_id = $2")
                        .bind(policy.connector_id).bind(&sub.instance_id).bind(run)
                        .execute(&mut *tx).await?;
                    sqlx::query(RUN_HISTORY)
                        .bind(run).bind(&sub.instance_id).bind(outcome::UNCHANGED)
                        .bind(&sub.status)
                        .execute(&mut *tx).await?;
                }
                tx.commit().await?;
                return Ok(OdkApplied {
                    instance_id: sub.instance_id.clone(),
                    outcome: outcome::UNCHANGED.to_owned(),
                    registrant_id: *registrant_id,
                    duplicate_of: *duplicate_of,
                });
            }
            let existing: Option<i64> = sqlx::query_scalar(SELECT_BY_KEY)
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
            let duplicate_of: Option<i64> = match token {
                Some(t) => sqlx::query_scalar(
                    "SELECT registrant_id FROM reg_ids WHERE id_type_id = $1 AND value = $2 \
                     AND registrant_id <> $3 ORDER BY registrant_id LIMIT 1",
                )
                .bind(token_type)
                .bind(t)
                .bind(existing.unwrap_or(-1))
                .fetch_optional(&mut *tx)
                .await?,
                None => None,
            };
            let kept = |outcome: &str| (outcome.to_owned(), existing, None::<i64>);
            let (result, registrant_id, dup): (String, Option<i64>, Option<i64>) =
                match (head, &invalid, duplicate_of) {
                    (_, Some(_), _) => kept(outcome::INVALID),
                    (_, None, Some(other)) => (outcome::DUPLICATE.to_owned(), existing, Some(other)),
                    (Some(_), None, None) if token.is_none() && policy.hold_failed => {
                        kept(outcome::HELD)
                    }
                    (Some(r), None, None) => {
                        let mut ids: Vec<(i64, String)> =
                            vec![(instance_type, sub.instance_id.clone())];
                        if let Some(t) = token {
                            ids.push((token_type, t.to_owned()));
                        }
                        let keep_vid = token.is_none() || !policy.remove_vid;
                        if let (Some(vt), Some(v), true) = (vid_type, sub.vid.as_deref(), keep_vid)
                            && !v.is_empty()
                        {
                            ids.push((vt, v.to_owned()));
                        }
                        let type_ids = types.check(&r.ids).unwrap_or_default();
                        ids.extend(type_ids.into_iter().zip(r.ids.iter().map(|i| i.value.clone())));
                        let (id, created) = upsert_registrant!(tx, r, key.as_str(), ids, now, actor);
                        if token.is_some() && policy.remove_vid && let Some(vt) = vid_type {
                            sqlx::query("DELETE FROM reg_ids WHERE registrant_id = $1 AND id_type_id = $2")
                                .bind(id).bind(vt).execute(&mut *tx).await?;
                        }
                        if let Some(g) = &sub.group {
                            let own_ids = |r: &NewRegistrant| -> Vec<(i64, String)> {
                                types
                                    .check(&r.ids)
                                    .unwrap_or_default()
                                    .into_iter()
                                    .zip(r.ids.iter().map(|i| i.value.clone()))
                                    .collect()
                            };
                            let gkey = format!("{key}#household");
                            let (gid, _) =
                                upsert_registrant!(tx, g, gkey.as_str(), own_ids(g), now, actor);
                            let mut people = vec![(id, vec!["head"])];
                            for (n, m) in sub.members.iter().enumerate() {
                                let mkey = format!("{key}#{}", n + 1);
                                let (mid, _) =
                                    upsert_registrant!(tx, m, mkey.as_str(), own_ids(m), now, actor);
                                people.push((mid, Vec::new()));
                            }
                            for (person, kinds) in people {
                                sqlx::query(
                                    "INSERT INTO memberships (group_id, individual_id, kinds, \
                                     created_at) VALUES ($1, $2, $3, $4) \
                                     ON CONFLICT (group_id, individual_id) DO NOTHING",
                                )
                                .bind(gid).bind(person).bind(Json(kinds)).bind(now)
                                .execute(&mut *tx).await?;
                            }
                        }
                        let o = if created { outcome::CREATED } else { outcome::UPDATED };
                        (o.to_owned(), Some(id), None)
                    }
                    (None, None, _) => kept(outcome::INVALID),
                };
            let keep_document = registrant_id.is_none()
                || (result != outcome::CREATED && result != outcome::UPDATED);
            sqlx::query(UPSERT_SUBMISSION)
                .bind(policy.connector_id)
                .bind(&sub.instance_id)
                .bind(run_id)
                .bind(sub.submission_date)
                .bind(&result)
                .bind(&sub.status)
                .bind(registrant_id)
                .bind(dup)
                .bind(sub.error_code.as_deref().or(invalid.as_deref().map(|_| "G2P-ODK-INVALID")))
                .bind(invalid.as_deref().or(sub.error_message.as_deref()))
                .bind(keep_document.then_some(Json(&sub.raw)))
                .bind(&digest)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if let Some(run) = run_id {
                sqlx::query(RUN_HISTORY)
                    .bind(run).bind(&sub.instance_id).bind(&result).bind(&sub.status)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(OdkApplied {
                instance_id: sub.instance_id.clone(),
                outcome: result,
                registrant_id,
                duplicate_of: dup,
            })
        })
    }

    /// A connector's submissions, optionally of one outcome or one run, in instance id order
    /// after `after`.
    pub async fn list_odk_submissions(
        &self,
        connector_id: i64,
        outcome: Option<&str>,
        run_id: Option<i64>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<OdkSubmissionRow>> {
        const SQL: &str = "SELECT instance_id, run_id, submission_date, outcome, status, \
            registrant_id, duplicate_of, error_code, error_message, updated_at \
            FROM odk_submissions WHERE connector_id = $1 AND ($2 IS NULL OR outcome = $2) \
            AND ($3 IS NULL OR run_id = $3) AND instance_id > $4 ORDER BY instance_id LIMIT $5";
        Ok(with_db!(self, read, p => {
            sqlx::query_as(SQL).bind(connector_id).bind(outcome).bind(run_id).bind(after)
                .bind(limit).fetch_all(p).await?
        }))
    }

    /// What a run's window brought, by outcome.
    pub async fn odk_run_counts(&self, run_id: i64) -> Result<OdkRunCounts> {
        const SQL: &str = "SELECT outcome, status, count(*) FROM odk_run_submissions \
            WHERE run_id = $1 GROUP BY outcome, status";
        let rows: Vec<(String, String, i64)> = with_db!(self, read, p => {
            sqlx::query_as(SQL).bind(run_id).fetch_all(p).await?
        });
        let mut c = OdkRunCounts::default();
        for (o, status, n) in rows {
            c.received += n;
            if status == "processed" {
                c.tokenised += n;
            } else {
                c.failed += n;
            }
            match o.as_str() {
                outcome::CREATED => c.created += n,
                outcome::UPDATED => c.updated += n,
                outcome::UNCHANGED => c.unchanged += n,
                outcome::DUPLICATE => c.duplicates += n,
                outcome::HELD => c.held += n,
                outcome::INVALID => c.invalid += n,
                _ => {}
            }
        }
        Ok(c)
    }

    /// Moves a connector's watermark forward (never back): submissions before it are imported.
    pub async fn advance_mts_watermark(&self, connector_id: i64, to: DateTime<Utc>) -> Result<()> {
        const SQL: &str = "UPDATE mts_connectors SET watermark = $2 \
            WHERE id = $1 AND (watermark IS NULL OR watermark < $2)";
        with_db!(self, write, p => {
            sqlx::query(SQL).bind(connector_id).bind(to).execute(p).await?;
        });
        Ok(())
    }

    /// Records the submissionDate window a run asked MTS for, and how many submissions ODK
    /// Central holds in it (the run is complete once that many results came back).
    pub async fn set_mts_run_window(
        &self,
        run_id: i64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        expected: i64,
    ) -> Result<()> {
        const SQL: &str = "UPDATE mts_runs SET window_start = $2, window_end = $3, sent = $4 \
            WHERE id = $1";
        with_db!(self, write, p => {
            sqlx::query(SQL).bind(run_id).bind(start).bind(end).bind(expected).execute(p).await?;
        });
        Ok(())
    }
}
