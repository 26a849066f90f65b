//! API keys: `g2p_<key id>_<secret>`. Only an argon2 hash of the secret is stored; the full key
//! is shown once, at creation. The key id (not secret) locates the row, so verification costs
//! one argon2 check, not a scan.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use g2p_domain::Role;
use serde::Serialize;

use crate::audit::Actor;
use crate::error::{Result, StoreError};
use crate::{Store, audit_insert, with_db};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    pub id: i64,
    pub key_id: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: i64,
    key_id: String,
    secret_hash: String,
    role: String,
    name: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    fn info(&self) -> ApiKeyInfo {
        ApiKeyInfo {
            id: self.id,
            key_id: self.key_id.clone(),
            name: self.name.clone(),
            // The CHECK constraint allows only the four role names.
            role: Role::parse(&self.role).unwrap_or(Role::Viewer),
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        }
    }
}

fn random_token(uuids: usize) -> String {
    (0..uuids)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect()
}

/// Splits `g2p_<key id>_<secret>`.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("g2p_")?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

impl Store {
    /// Creates a key and returns it in clear — the only time it is available.
    pub async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        actor: &Actor,
    ) -> Result<(ApiKeyInfo, String)> {
        const SQL: &str = "INSERT INTO api_keys (key_id, secret_hash, role, name, created_at) \
            VALUES ($1, $2, $3, $4, $5) RETURNING id";
        let key_id = random_token(1)[..12].to_owned();
        let secret = random_token(2);
        let hash = Argon2::default()
            .hash_password(secret.as_bytes())
            .map_err(|e| StoreError::field("secret", format!("cannot hash: {e}")))?
            .to_string();
        let now = Utc::now();
        let id = with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let id: i64 = sqlx::query_scalar(SQL).bind(&key_id).bind(&hash).bind(role.as_str())
                .bind(name).bind(now).fetch_one(&mut *tx).await?;
            let after = serde_json::json!({"key_id": key_id, "name": name, "role": role});
            audit_insert!(&mut *tx, actor, "create", "api_key", Some(id), None::<i64>, None::<serde_json::Value>, Some(after))?;
            tx.commit().await?;
            id
        });
        let info = ApiKeyInfo {
            id,
            key_id: key_id.clone(),
            name: name.to_owned(),
            role,
            created_at: now,
            revoked_at: None,
        };
        Ok((info, format!("g2p_{key_id}_{secret}")))
    }

    /// The key's identity if the key is well-formed, known, not revoked and its secret matches.
    pub async fn verify_api_key(&self, key: &str) -> Result<Option<ApiKeyInfo>> {
        const SQL: &str = "SELECT id, key_id, secret_hash, role, name, created_at, revoked_at \
            FROM api_keys WHERE key_id = $1";
        let Some((key_id, secret)) = split_key(key) else {
            return Ok(None);
        };
        let row: Option<ApiKeyRow> =
            with_db!(self, read, p => sqlx::query_as(SQL).bind(key_id).fetch_optional(p).await?);
        let Some(row) = row else { return Ok(None) };
        if row.revoked_at.is_some() {
            return Ok(None);
        }
        let secret = secret.to_owned();
        let hash = row.secret_hash.clone();
        // Argon2 is deliberately slow: keep it off the async executor threads.
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(secret.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        Ok(ok.then(|| row.info()))
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        const SQL: &str = "SELECT id, key_id, secret_hash, role, name, created_at, revoked_at \
            FROM api_keys ORDER BY id";
        let rows: Vec<ApiKeyRow> =
            with_db!(self, read, p => sqlx::query_as(SQL).fetch_all(p).await?);
        Ok(rows.iter().map(ApiKeyRow::info).collect())
    }

    pub async fn revoke_api_key(&self, id: i64, actor: &Actor) -> Result<()> {
        const SQL: &str =
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
        with_db!(self, write, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(SQL).bind(id).bind(Utc::now()).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(StoreError::not_found("API key"));
            }
            audit_insert!(&mut *tx, actor, "revoke", "api_key", Some(id), None::<i64>, None::<serde_json::Value>, None::<serde_json::Value>)?;
            tx.commit().await?;
        });
        Ok(())
    }
}

impl Store {
    /// A live (not revoked) key by its public id; used for console sessions, which were
    /// established with the full key and are signed by the server.
    pub async fn live_api_key(&self, key_id: &str) -> Result<Option<ApiKeyInfo>> {
        const SQL: &str = "SELECT id, key_id, secret_hash, role, name, created_at, revoked_at \
            FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL";
        let row: Option<ApiKeyRow> =
            with_db!(self, read, p => sqlx::query_as(SQL).bind(key_id).fetch_optional(p).await?);
        Ok(row.map(|r| r.info()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_keys() {
        assert_eq!(super::split_key("g2p_abc_def"), Some(("abc", "def")));
        assert_eq!(super::split_key("g2p__def"), None);
        assert_eq!(super::split_key("xyz_abc_def"), None);
    }
}
