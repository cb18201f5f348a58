//! Bearer tokens of the HTTP API, stored as the SHA-256 of their text (the application layer
//! makes and hashes them: `app::auth`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::codec::{self, ms};
use super::{Store, StoreError};

/// A token as `tokens list` shows it: never its text nor its hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredToken {
    pub name: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Records a new token. `false` (nothing written) when a token not revoked already has
    /// this name.
    pub async fn insert_token(
        &self,
        name: &str,
        scope: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut pool = self.writer_pool();
        let q = pool
            .query(
                "INSERT INTO api_tokens (name, scope, token_hash, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(name)
            .bind(scope)
            .bind(token_hash)
            .bind(ms(now));
        match pool.execute(q).await {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every token, revoked ones included, oldest first.
    pub async fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool.query(
            "SELECT name, scope, created_at, revoked_at FROM api_tokens ORDER BY created_at, id",
        );
        pool.fetch_all(q)
            .await?
            .iter()
            .map(|row| {
                Ok(StoredToken {
                    name: row.get("name")?,
                    scope: row.get("scope")?,
                    created_at: codec::time(row.get("created_at")?, "token creation")?,
                    revoked_at: codec::opt_time(row.get("revoked_at")?, "token revocation")?,
                })
            })
            .collect()
    }

    /// Revokes the live token of this name; `false` when there is none.
    pub async fn revoke_token(&self, name: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut pool = self.writer_pool();
        let q = pool
            .query("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
            .bind(ms(now))
            .bind(name);
        Ok(pool.execute(q).await? > 0)
    }

    /// The name and scope of the live token with this hash: one lookup in a unique index.
    pub async fn live_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool
            .query(
                "SELECT name, scope FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            )
            .bind(token_hash);
        pool.fetch_optional(q)
            .await?
            .map(|row| Ok((row.get("name")?, row.get("scope")?)))
            .transpose()
    }
}
