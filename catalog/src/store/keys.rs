//! S3 access keys: secrets sealed at rest, shown once.

use super::*;
use crate::model::*;
use crate::{CatalogError, Result, secret};

impl Catalog {
    pub async fn create_access_key(&self, user: &str, description: &str) -> Result<NewAccessKey> {
        self.get_user(user).await?;
        let id = secret::new_access_key_id();
        let secret_key = secret::new_secret_access_key();
        self.insert_access_key(user, &id, &secret_key, description)
            .await
    }

    /// Stores a key pair chosen by the caller (migrating keys from another system).
    pub async fn import_access_key(
        &self,
        user: &str,
        access_key_id: &str,
        secret_access_key: &str,
        description: &str,
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
        self.insert_access_key(user, access_key_id, secret_access_key, description)
            .await
    }

    pub(super) async fn insert_access_key(
        &self,
        user: &str,
        id: &str,
        secret_key: &str,
        description: &str,
    ) -> Result<NewAccessKey> {
        let _changing = self.changing();
        let sealed = self.inner.secrets.seal(id, secret_key.as_bytes())?;
        let now = Timestamp::now();
        let res = sqlx::query(
            "INSERT INTO access_keys (id, user_name, sealed_secret, description, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(user)
        .bind(sealed)
        .bind(description)
        .bind(now.0)
        .execute(&self.inner.pool)
        .await;
        inserted(res, "access key", id, "insert access key")?;
        Ok(NewAccessKey {
            key: AccessKey {
                access_key_id: id.to_string(),
                user: user.to_string(),
                description: description.to_string(),
                created_at: now,
            },
            secret_access_key: secret_key.to_string(),
        })
    }

    pub async fn list_access_keys(&self, user: Option<&str>) -> Result<Vec<AccessKey>> {
        let rows = match user {
            Some(u) => sqlx::query(
                "SELECT id, user_name, description, created_at FROM access_keys \
                 WHERE user_name = $1 ORDER BY created_at, id",
            )
            .bind(u),
            None => sqlx::query(
                "SELECT id, user_name, description, created_at FROM access_keys \
                 ORDER BY user_name, created_at, id",
            ),
        }
        .fetch_all(&self.inner.pool)
        .await
        .map_err(CatalogError::db("list access keys"))?;
        rows.iter()
            .map(|r| {
                Ok(AccessKey {
                    access_key_id: get(r, "id")?,
                    user: get(r, "user_name")?,
                    description: get(r, "description")?,
                    created_at: Timestamp(get(r, "created_at")?),
                })
            })
            .collect()
    }

    pub async fn get_access_key(&self, id: &str) -> Result<AccessKey> {
        let row = sqlx::query(
            "SELECT id, user_name, description, created_at FROM access_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read access key"))?
        .ok_or_else(|| CatalogError::NotFound {
            kind: "access key",
            id: id.to_string(),
        })?;
        Ok(AccessKey {
            access_key_id: get(&row, "id")?,
            user: get(&row, "user_name")?,
            description: get(&row, "description")?,
            created_at: Timestamp(get(&row, "created_at")?),
        })
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

    /// The user and secret of access key `id` (None: no such key), from the in-memory view:
    /// SigV4 asks on every S3 request.
    pub async fn access_key_secret(&self, id: &str) -> Result<Option<(Principal, String)>> {
        self.view().await?.access_key(id)
    }
}
