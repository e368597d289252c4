//! Links to peer gateways (a federated catalogue).

use super::*;
use crate::model::*;
use crate::{CatalogError, Result};

const PEER_COLUMNS: &str = "name, url, access_key_id, sealed_token, created_at, updated_at, \
                            refreshed_at, last_error";

/// What this gateway needs to reach a peer: its URL and the link's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerCredentials {
    pub url: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: Option<String>,
    /// When the link was last changed (a cached client is rebuilt after it).
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for PeerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCredentials")
            .field("url", &self.url)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A peer URL: http(s), a host, nothing after the path.
fn validate_peer_url(url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        let host = r.split('/').next().unwrap_or("");
        !host.is_empty() && !r.contains(['?', '#']) && !r.chars().any(char::is_whitespace)
    });
    if ok {
        Ok(())
    } else {
        Err(CatalogError::invalid(
            "url",
            format!("`{url}` is not a peer gateway URL: http(s)://HOST[:PORT][/PATH]"),
        ))
    }
}

fn peer_from_row(row: &AnyRow) -> Result<Peer> {
    Ok(Peer {
        name: get(row, "name")?,
        url: get(row, "url")?,
        access_key_id: get(row, "access_key_id")?,
        token: get::<Option<String>>(row, "sealed_token")?.is_some(),
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
        refreshed_at: get::<Option<i64>>(row, "refreshed_at")?.map(Timestamp),
        last_error: get(row, "last_error")?,
    })
}

/// Held while one gateway does a periodic refresh (the peer links, the workspaces' science
/// index); dropping it lets another.
/// On PostgreSQL a transaction-scoped advisory lock, released with the transaction however
/// the holder ends; on SQLite (one gateway per file) nothing.
pub struct RefreshLock {
    tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
}

impl std::fmt::Debug for RefreshLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshLock")
            .field("advisory", &self.tx.is_some())
            .finish()
    }
}

impl RefreshLock {
    /// Lets the next refresh take the lock (ends the transaction that holds it).
    pub async fn release(self) -> Result<()> {
        if let Some(tx) = self.tx {
            tx.rollback()
                .await
                .map_err(CatalogError::db("release a refresh lock"))?;
        }
        Ok(())
    }
}

/// The advisory lock key of the periodic peer refresh ("ARCHPEER" in ASCII).
const PEER_REFRESH_LOCK: i64 = 0x4152_4348_5045_4552;
/// The advisory lock key of the periodic science refresh ("ARCHSCIX" in ASCII).
const SCIENCE_REFRESH_LOCK: i64 = 0x4152_4348_5343_4958;

impl Catalog {
    /// The periodic peer refresh's lock, if no other replica on this catalogue holds it now.
    pub async fn try_peer_refresh_lock(&self) -> Result<Option<RefreshLock>> {
        self.try_refresh_lock(PEER_REFRESH_LOCK).await
    }

    /// The periodic science refresh's lock (workspaces re-indexed), if no other replica on
    /// this catalogue holds it now.
    pub async fn try_science_refresh_lock(&self) -> Result<Option<RefreshLock>> {
        self.try_refresh_lock(SCIENCE_REFRESH_LOCK).await
    }

    async fn try_refresh_lock(&self, key: i64) -> Result<Option<RefreshLock>> {
        if self.inner.dialect != Dialect::Postgres {
            return Ok(Some(RefreshLock { tx: None }));
        }
        let mut tx = self.begin().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(CatalogError::db("take a refresh lock"))?;
        Ok(got.then_some(RefreshLock { tx: Some(tx) }))
    }

    /// Links the peer gateway `new.url` as `new.name`; its secrets are stored sealed.
    pub async fn create_peer(&self, new: &NewPeer) -> Result<Peer> {
        let _changing = self.changing();
        validate_peer_name(&new.name)?;
        validate_peer_url(&new.url)?;
        if new.access_key_id.trim().is_empty() {
            return Err(CatalogError::invalid("access_key_id", "may not be empty"));
        }
        if new.secret_access_key.is_empty() {
            return Err(CatalogError::invalid(
                "secret_access_key",
                "may not be empty",
            ));
        }
        if new.token.as_deref().is_some_and(str::is_empty) {
            return Err(CatalogError::invalid(
                "token",
                "may not be empty (leave it out for none)",
            ));
        }
        let context = |what: &str| format!("peer:{}:{what}", new.name);
        let secret = self
            .inner
            .secrets
            .seal(&context("secret"), new.secret_access_key.as_bytes())?;
        let token = match &new.token {
            Some(t) => Some(self.inner.secrets.seal(&context("token"), t.as_bytes())?),
            None => None,
        };
        let now = Timestamp::now();
        let url = new.url.trim_end_matches('/').to_string();
        let res = sqlx::query(
            "INSERT INTO peers (name, url, access_key_id, sealed_secret, sealed_token, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&new.name)
        .bind(&url)
        .bind(&new.access_key_id)
        .bind(secret)
        .bind(token)
        .bind(now.0)
        .execute(&self.inner.pool)
        .await;
        inserted(res, "peer", &new.name, "insert peer")?;
        self.get_peer(&new.name).await
    }

    pub async fn get_peer(&self, name: &str) -> Result<Peer> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PEER_COLUMNS} FROM peers WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read peer"))?
        .ok_or_else(|| CatalogError::NotFound {
            kind: "peer",
            id: name.to_string(),
        })?;
        peer_from_row(&row)
    }

    pub async fn list_peers(&self) -> Result<Vec<Peer>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PEER_COLUMNS} FROM peers ORDER BY name"
        )))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(CatalogError::db("list peers"))?;
        rows.iter().map(peer_from_row).collect()
    }

    /// The link's URL and opened secrets.
    pub async fn peer_credentials(&self, name: &str) -> Result<PeerCredentials> {
        let row = sqlx::query(
            "SELECT url, access_key_id, sealed_secret, sealed_token, updated_at FROM peers \
             WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read peer"))?
        .ok_or_else(|| CatalogError::NotFound {
            kind: "peer",
            id: name.to_string(),
        })?;
        let open = |what: &str, sealed: &str| -> Result<String> {
            let plain = self
                .inner
                .secrets
                .open(&format!("peer:{name}:{what}"), sealed)?;
            String::from_utf8(plain).map_err(|_| CatalogError::Corrupt {
                what: format!("peer `{name}` {what}"),
                message: "not UTF-8".into(),
            })
        };
        let token = match get::<Option<String>>(&row, "sealed_token")? {
            Some(t) => Some(open("token", &t)?),
            None => None,
        };
        Ok(PeerCredentials {
            url: get(&row, "url")?,
            access_key_id: get(&row, "access_key_id")?,
            secret_access_key: open("secret", &get::<String>(&row, "sealed_secret")?)?,
            token,
            updated_at: Timestamp(get(&row, "updated_at")?),
        })
    }

    /// Records how the last refresh of `name` went.
    pub async fn record_peer_refresh(&self, name: &str, error: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE peers SET refreshed_at = $1, last_error = $2 WHERE name = $3")
            .bind(Timestamp::now().0)
            .bind(error.map(|e| e.chars().take(1000).collect::<String>()))
            .bind(name)
            .execute(&self.inner.pool)
            .await
            .map_err(CatalogError::db("record peer refresh"))?;
        Ok(())
    }

    /// The ids of the volumes linked from peer `name`.
    pub async fn linked_volume_ids(&self, name: &str) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT id FROM volumes WHERE backend = $1 ORDER BY id")
            .bind(peer_backend(name))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(CatalogError::db("list linked volumes"))
    }

    /// Removes the link and every volume linked through it (with their grants).
    pub async fn delete_peer(&self, name: &str) -> Result<()> {
        let _changing = self.changing();
        self.get_peer(name).await?;
        for id in self.linked_volume_ids(name).await? {
            match self.delete_volume(&id).await {
                Ok(()) | Err(CatalogError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let done = sqlx::query("DELETE FROM peers WHERE name = $1")
            .bind(name)
            .execute(&self.inner.pool)
            .await
            .map_err(CatalogError::db("delete peer"))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                kind: "peer",
                id: name.to_string(),
            });
        }
        Ok(())
    }
}
