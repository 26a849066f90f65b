//! The append-only audit log: who changed what, when, with the before and after images. Writes
//! happen inside the transaction of the change they describe (see [`audit_insert!`]), so a change
//! and its audit entry land together or not at all.

use g2p_domain::AuditEntry;
use serde_json::Value;

use crate::error::Result;
use crate::{Store, with_db};

/// Who is acting: an API key's name, a console user, a job. Carried into audit entries.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn system(name: &str) -> Self {
        Actor {
            name: name.to_owned(),
            request_id: None,
        }
    }
}

pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_log \
    (at, actor, action, entity, entity_id, registrant_id, request_id, before, after) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Appends one audit entry using the given executor (normally `&mut *tx`).
#[macro_export]
macro_rules! audit_insert {
    ($exec:expr, $actor:expr, $action:expr, $entity:expr, $entity_id:expr, $registrant_id:expr, $before:expr, $after:expr) => {
        sqlx::query($crate::audit::INSERT_AUDIT)
            .bind(chrono::Utc::now())
            .bind($actor.name.as_str())
            .bind($action)
            .bind($entity)
            .bind($entity_id)
            .bind($registrant_id)
            .bind($actor.request_id.as_deref())
            .bind($before.map(sqlx::types::Json))
            .bind($after.map(sqlx::types::Json))
            .execute($exec)
            .await
    };
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: chrono::DateTime<chrono::Utc>,
    actor: String,
    action: String,
    entity: String,
    entity_id: Option<i64>,
    registrant_id: Option<i64>,
    request_id: Option<String>,
    before: Option<sqlx::types::Json<Value>>,
    after: Option<sqlx::types::Json<Value>>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            entity: r.entity,
            entity_id: r.entity_id,
            registrant_id: r.registrant_id,
            request_id: r.request_id,
            before: r.before.map(|j| j.0),
            after: r.after.map(|j| j.0),
        }
    }
}

impl Store {
    /// A registrant's audit trail, newest first, keyset-paged by entry id.
    pub async fn audit_for_registrant(
        &self,
        registrant_id: i64,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        const SQL: &str = "SELECT id, at, actor, action, entity, entity_id, registrant_id, \
            request_id, before, after FROM audit_log \
            WHERE registrant_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3";
        let rows: Vec<AuditRow> = with_db!(self, read, p => {
            sqlx::query_as(SQL)
                .bind(registrant_id)
                .bind(before_id.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(p)
                .await?
        });
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Records an event that is not a registry row change (key creation, job actions).
    pub async fn audit_event(
        &self,
        actor: &Actor,
        action: &str,
        entity: &str,
        entity_id: Option<i64>,
        after: Option<Value>,
    ) -> Result<()> {
        with_db!(self, write, p => {
            audit_insert!(p, actor, action, entity, entity_id, None::<i64>, None::<Value>, after)?;
        });
        Ok(())
    }
}
