//! HTTP API bearer tokens: stored as hashes, shown once.

use std::time::Duration;

use super::*;
use crate::model::*;
use crate::{CatalogError, Result, secret};

/// The longest lifetime a token may be given: its expiry must stay a date every client can
/// read (a TTL of 10^20 days once made a token whose expiry could not be written out).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

impl Catalog {
    pub async fn create_token(
        &self,
        user: &str,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<NewApiToken> {
        let _changing = self.changing();
        if let Some(ttl) = ttl
            && (ttl.is_zero() || ttl > MAX_TOKEN_TTL)
        {
            return Err(CatalogError::invalid(
                "ttl",
                format!(
                    "a token's lifetime must be longer than zero and at most 100 years (`{}`)",
                    humantime::format_duration(ttl)
                ),
            ));
        }
        self.get_user(user).await?;
        let (id, secret) = secret::new_token();
        let now = Timestamp::now();
        let expires_at = ttl.map(|d| Timestamp(now.0 + d.as_millis() as i64));
        sqlx::query(
            "INSERT INTO api_tokens (id, user_name, secret_hash, name, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(user)
        .bind(secret::hash_token_secret(&secret))
        .bind(name)
        .bind(now.0)
        .bind(expires_at.map(|t| t.0))
        .execute(&self.inner.pool)
        .await
        .map_err(CatalogError::db("insert token"))?;
        Ok(NewApiToken {
            secret: secret::format_token(&id, &secret),
            token: ApiToken {
                id,
                user: user.to_string(),
                name: name.to_string(),
                created_at: now,
                expires_at,
            },
        })
    }

    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>> {
        let rows = match user {
            Some(u) => sqlx::query(
                "SELECT id, user_name, name, created_at, expires_at FROM api_tokens \
                 WHERE user_name = $1 ORDER BY created_at, id",
            )
            .bind(u),
            None => sqlx::query(
                "SELECT id, user_name, name, created_at, expires_at FROM api_tokens \
                 ORDER BY user_name, created_at, id",
            ),
        }
        .fetch_all(&self.inner.pool)
        .await
        .map_err(CatalogError::db("list tokens"))?;
        rows.iter()
            .map(|r| {
                Ok(ApiToken {
                    id: get(r, "id")?,
                    user: get(r, "user_name")?,
                    name: get(r, "name")?,
                    created_at: Timestamp(get(r, "created_at")?),
                    expires_at: get::<Option<i64>>(r, "expires_at")?.map(Timestamp),
                })
            })
            .collect()
    }

    pub async fn delete_token(&self, id: &str) -> Result<()> {
        let _changing = self.changing();
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.inner.pool)
            .await
            .map_err(CatalogError::db("delete token"))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                kind: "token",
                id: id.to_string(),
            });
        }
        Ok(())
    }

    /// The principal a bearer token stands for; None for an unknown, wrong or expired token.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<Principal>> {
        Ok(self.view().await?.token(token))
    }
}
