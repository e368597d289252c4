//! HTTP API bearer tokens: stored as hashes, shown once.

use std::time::Duration;

use super::keys::Terms;
use super::*;
use crate::model::*;
use crate::{CatalogError, Result, secret};

/// The longest lifetime a token may be given: its expiry must stay a date every client can
/// read (a TTL of 10^20 days once made a token whose expiry could not be written out).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

const TOKEN_COLUMNS: &str = "id, user_name, name, created_at, expires_at, read_only, volumes";

fn token_from_row(r: &AnyRow) -> Result<ApiToken> {
    let id: String = get(r, "id")?;
    let scope =
        Scope::from_columns(get(r, "read_only")?, get(r, "volumes")?).map_err(|message| {
            CatalogError::Corrupt {
                what: format!("token {id}"),
                message,
            }
        })?;
    Ok(ApiToken {
        id,
        user: get(r, "user_name")?,
        name: get(r, "name")?,
        created_at: Timestamp(get(r, "created_at")?),
        expires_at: get::<Option<i64>>(r, "expires_at")?.map(Timestamp),
        scope,
    })
}

impl Catalog {
    /// A new token with the user's full rights, for `ttl` (None: until deleted).
    pub async fn create_token(
        &self,
        user: &str,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<NewApiToken> {
        let terms = Terms {
            scope: Scope::default(),
            ttl,
        };
        self.create_token_with(user, name, &terms).await
    }

    /// A new token limited by `terms`.
    pub async fn create_token_with(
        &self,
        user: &str,
        name: &str,
        terms: &Terms,
    ) -> Result<NewApiToken> {
        let now = Timestamp::now();
        let expires_at = terms.expiry(now, "token")?;
        let (read_only, volumes) = terms.scope.to_columns();
        self.get_user(user).await?;
        let _changing = self.changing();
        let (id, secret) = secret::new_token();
        sqlx::query(
            "INSERT INTO api_tokens (id, user_name, secret_hash, name, created_at, expires_at, \
             read_only, volumes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(user)
        .bind(secret::hash_token_secret(&secret))
        .bind(name)
        .bind(now.0)
        .bind(expires_at.map(|t| t.0))
        .bind(read_only)
        .bind(volumes)
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
                scope: terms.scope.clone(),
            },
        })
    }

    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>> {
        let rows = match user {
            Some(u) => sqlx::query(AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens \
                 WHERE user_name = $1 ORDER BY created_at, id"
            )))
            .bind(u),
            None => sqlx::query(AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY user_name, created_at, id"
            ))),
        }
        .fetch_all(&self.inner.pool)
        .await
        .map_err(CatalogError::db("list tokens"))?;
        rows.iter().map(token_from_row).collect()
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
