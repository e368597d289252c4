//! S3 access keys: secrets sealed at rest, shown once; scoped, expiring and temporary keys.

use std::time::Duration;

use super::tokens::MAX_TOKEN_TTL;
use super::*;
use crate::model::*;
use crate::{CatalogError, Result, secret};

/// What a new credential (access key or API token) is limited to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Terms {
    pub scope: Scope,
    /// How long it works (None: until deleted).
    pub ttl: Option<Duration>,
}

impl Terms {
    /// Checks the terms and gives the expiry they set, counted from `now`.
    pub(super) fn expiry(&self, now: Timestamp, what: &str) -> Result<Option<Timestamp>> {
        self.scope.validate()?;
        if let Some(ttl) = self.ttl
            && (ttl.is_zero() || ttl > MAX_TOKEN_TTL)
        {
            return Err(CatalogError::invalid(
                "ttl",
                format!(
                    "a {what}'s lifetime must be longer than zero and at most 100 years (`{}`)",
                    humantime::format_duration(ttl)
                ),
            ));
        }
        Ok(self.ttl.map(|d| Timestamp(now.0 + d.as_millis() as i64)))
    }
}

/// What SigV4 needs of an access key, from the in-memory view.
#[derive(Clone, Debug)]
pub struct KeyAuth {
    /// The key's user, with the key's scope.
    pub principal: Principal,
    pub secret: String,
    /// For a temporary key: the hash of the session token its requests must carry.
    pub session_token_hash: Option<String>,
}

impl KeyAuth {
    /// Whether `token` (the request's `X-Amz-Security-Token`, if any) is the one this key
    /// needs: a temporary key needs its own, a long-term key none.
    pub fn session_matches(&self, token: Option<&str>) -> bool {
        match (&self.session_token_hash, token) {
            (None, None) => true,
            (Some(hash), Some(t)) => {
                secret::constant_time_eq(hash, &secret::hash_token_secret(t.trim()))
            }
            _ => false,
        }
    }
}

const KEY_COLUMNS: &str =
    "id, user_name, description, created_at, read_only, volumes, expires_at, session_token_hash";

fn key_from_row(r: &AnyRow) -> Result<AccessKey> {
    let id: String = get(r, "id")?;
    let scope =
        Scope::from_columns(get(r, "read_only")?, get(r, "volumes")?).map_err(|message| {
            CatalogError::Corrupt {
                what: format!("access key {id}"),
                message,
            }
        })?;
    Ok(AccessKey {
        access_key_id: id,
        user: get(r, "user_name")?,
        description: get(r, "description")?,
        created_at: Timestamp(get(r, "created_at")?),
        scope,
        expires_at: get::<Option<i64>>(r, "expires_at")?.map(Timestamp),
        temporary: get::<Option<String>>(r, "session_token_hash")?.is_some(),
    })
}

impl Catalog {
    /// A new key with the user's full rights, until deleted.
    pub async fn create_access_key(&self, user: &str, description: &str) -> Result<NewAccessKey> {
        self.create_access_key_with(user, description, &Terms::default())
            .await
    }

    /// A new key limited by `terms`.
    pub async fn create_access_key_with(
        &self,
        user: &str,
        description: &str,
        terms: &Terms,
    ) -> Result<NewAccessKey> {
        self.get_user(user).await?;
        let id = secret::new_access_key_id();
        let secret_key = secret::new_secret_access_key();
        self.insert_access_key(user, &id, &secret_key, description, terms, None)
            .await
    }

    /// A temporary key for `user` (STS `AssumeRoleWithWebIdentity`): an `ASIA…` id, a secret
    /// and a session token that its requests must carry, all ending after `terms.ttl`.
    /// Returns the key and the session token.
    pub async fn create_session_key(
        &self,
        user: &str,
        description: &str,
        terms: &Terms,
    ) -> Result<(NewAccessKey, String)> {
        if terms.ttl.is_none() {
            return Err(CatalogError::invalid(
                "ttl",
                "a temporary key needs a lifetime",
            ));
        }
        self.get_user(user).await?;
        let id = format!("ASIA{}", &secret::new_access_key_id()[4..]);
        let secret_key = secret::new_secret_access_key();
        let session_token = secret::new_session_token();
        let key = self
            .insert_access_key(
                user,
                &id,
                &secret_key,
                description,
                terms,
                Some(&secret::hash_token_secret(&session_token)),
            )
            .await?;
        Ok((key, session_token))
    }

    /// Stores a key pair chosen by the caller (migrating keys from another system).
    pub async fn import_access_key(
        &self,
        user: &str,
        access_key_id: &str,
        secret_access_key: &str,
        description: &str,
        terms: &Terms,
    ) -> Result<NewAccessKey> {
        self.get_user(user).await?;
        let id_ok = (16..=128).contains(&access_key_id.len())
            && access_key_id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !id_ok {
            return Err(CatalogError::invalid(
                "access_key_id",
                "must be 16 to 128 letters or digits",
            ));
        }
        if secret_access_key.len() < 16 || secret_access_key.len() > 128 {
            return Err(CatalogError::invalid(
                "secret_access_key",
                "must be 16 to 128 characters",
            ));
        }
        self.insert_access_key(
            user,
            access_key_id,
            secret_access_key,
            description,
            terms,
            None,
        )
        .await
    }

    async fn insert_access_key(
        &self,
        user: &str,
        id: &str,
        secret_key: &str,
        description: &str,
        terms: &Terms,
        session_token_hash: Option<&str>,
    ) -> Result<NewAccessKey> {
        let now = Timestamp::now();
        let expires_at = terms.expiry(now, "key")?;
        let (read_only, volumes) = terms.scope.to_columns();
        let _changing = self.changing();
        let sealed = self.inner.secrets.seal(id, secret_key.as_bytes())?;
        let res = sqlx::query(
            "INSERT INTO access_keys (id, user_name, sealed_secret, description, created_at, \
             read_only, volumes, expires_at, session_token_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(user)
        .bind(sealed)
        .bind(description)
        .bind(now.0)
        .bind(read_only)
        .bind(volumes)
        .bind(expires_at.map(|t| t.0))
        .bind(session_token_hash)
        .execute(&self.inner.pool)
        .await;
        inserted(res, "access key", id, "insert access key")?;
        Ok(NewAccessKey {
            key: AccessKey {
                access_key_id: id.to_string(),
                user: user.to_string(),
                description: description.to_string(),
                created_at: now,
                scope: terms.scope.clone(),
                expires_at,
                temporary: session_token_hash.is_some(),
            },
            secret_access_key: secret_key.to_string(),
        })
    }

    pub async fn list_access_keys(&self, user: Option<&str>) -> Result<Vec<AccessKey>> {
        let rows = match user {
            Some(u) => sqlx::query(AssertSqlSafe(format!(
                "SELECT {KEY_COLUMNS} FROM access_keys \
                 WHERE user_name = $1 ORDER BY created_at, id"
            )))
            .bind(u),
            None => sqlx::query(AssertSqlSafe(format!(
                "SELECT {KEY_COLUMNS} FROM access_keys ORDER BY user_name, created_at, id"
            ))),
        }
        .fetch_all(&self.inner.pool)
        .await
        .map_err(CatalogError::db("list access keys"))?;
        rows.iter().map(key_from_row).collect()
    }

    pub async fn get_access_key(&self, id: &str) -> Result<AccessKey> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM access_keys WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read access key"))?
        .ok_or_else(|| CatalogError::NotFound {
            kind: "access key",
            id: id.to_string(),
        })?;
        key_from_row(&row)
    }

    pub async fn delete_access_key(&self, id: &str) -> Result<()> {
        let _changing = self.changing();
        let done = sqlx::query("DELETE FROM access_keys WHERE id = $1")
            .bind(id)
            .execute(&self.inner.pool)
            .await
            .map_err(CatalogError::db("delete access key"))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                kind: "access key",
                id: id.to_string(),
            });
        }
        Ok(())
    }

    /// Removes keys and tokens that expired more than `grace` ago; returns how many. Expired
    /// credentials already authenticate nothing: this only keeps the tables small (temporary
    /// keys accumulate with every sign-in).
    pub async fn sweep_expired_credentials(&self, grace: Duration) -> Result<u64> {
        let before = Timestamp::now().0 - grace.as_millis() as i64;
        let _changing = self.changing();
        let keys =
            sqlx::query("DELETE FROM access_keys WHERE expires_at IS NOT NULL AND expires_at < $1")
                .bind(before)
                .execute(&self.inner.pool)
                .await
                .map_err(CatalogError::db("remove expired access keys"))?;
        let tokens =
            sqlx::query("DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at < $1")
                .bind(before)
                .execute(&self.inner.pool)
                .await
                .map_err(CatalogError::db("remove expired tokens"))?;
        Ok(keys.rows_affected() + tokens.rows_affected())
    }

    /// The user (with the key's scope), secret and session of access key `id` (None: no such
    /// key, or expired), from the in-memory view: SigV4 asks on every S3 request.
    pub async fn access_key_auth(&self, id: &str) -> Result<Option<KeyAuth>> {
        self.view().await?.access_key(id)
    }

    /// The user and secret of access key `id` (None: no such key, or expired).
    pub async fn access_key_secret(&self, id: &str) -> Result<Option<(Principal, String)>> {
        Ok(self
            .access_key_auth(id)
            .await?
            .map(|k| (k.principal, k.secret)))
    }
}
