//! Workspace quotas: the usage of workspaces and of the users who own them, moved and checked
//! against their limits in one transaction.
//!
//! Usage lives in tables of its own (`workspace_usage`, `user_usage`), which the change
//! counter of the in-memory view does not watch: it moves with every write. A charge that
//! grows usage is a conditional `UPDATE` (the limit read in the same statement), so concurrent
//! writers — on one gateway or on replicas sharing a PostgreSQL catalogue — are serialised by
//! the row's lock and never commit past a limit. Charges that shrink usage are never refused,
//! so a user over a lowered quota can still delete and shrink.

use std::collections::HashMap;

use sqlx::AssertSqlSafe;

use super::*;
use crate::model::VolumeKind;
use crate::{CatalogError, Result};

/// Which limit a refused charge would have passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaScope {
    /// The workspace's own quota.
    Workspace(String),
    /// The quota of the user who owns the workspace.
    User(String),
}

impl QuotaScope {
    /// `workspace` or `user`: a label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            QuotaScope::Workspace(_) => "workspace",
            QuotaScope::User(_) => "user",
        }
    }
}

impl std::fmt::Display for QuotaScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuotaScope::Workspace(id) => write!(f, "workspace `{id}`"),
            QuotaScope::User(name) => write!(f, "user `{name}`"),
        }
    }
}

/// A workspace's usage after a charge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub objects: u64,
}

/// The SQL that adds `$2` bytes and `$3` objects to the usage row keyed `$1` of `table`
/// (never below zero), only while a growth stays within the limits `limits` selects.
fn charge_sql(table: &str, key: &str, limits: &str) -> String {
    format!(
        "UPDATE {table} SET \
         bytes = CASE WHEN bytes + $2 < 0 THEN 0 ELSE bytes + $2 END, \
         objects = CASE WHEN objects + $3 < 0 THEN 0 ELSE objects + $3 END \
         WHERE {key} = $1 \
         AND ($2 <= 0 OR (SELECT quota_bytes FROM {limits}) IS NULL \
              OR bytes + $2 <= (SELECT quota_bytes FROM {limits})) \
         AND ($3 <= 0 OR (SELECT quota_objects FROM {limits}) IS NULL \
              OR objects + $3 <= (SELECT quota_objects FROM {limits})) \
         RETURNING bytes, objects"
    )
}

impl Catalog {
    /// Adds `bytes` and `objects` (either may be negative) to workspace `id`'s usage and to
    /// its owner's, or refuses with [`CatalogError::QuotaExceeded`] (changing nothing) when a
    /// growth would take either past its limit. Returns the workspace's usage after it. A
    /// volume that is not a workspace is not counted: the charge is a no-op.
    pub async fn charge_usage(&self, id: &str, bytes: i64, objects: i64) -> Result<Usage> {
        let mut tx = self.begin().await?;
        // A write first: SQLite then takes the write lock at once (a transaction that reads
        // first and writes later fails with "database is locked" when another got there
        // between), and the usage row exists for the update below.
        sqlx::query(
            "INSERT INTO workspace_usage (volume_id, bytes, objects) \
             SELECT id, 0, 0 FROM volumes WHERE id = $1 AND kind = 'workspace' \
             ON CONFLICT (volume_id) DO NOTHING",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(CatalogError::db("record usage"))?;
        let row = sqlx::query("SELECT kind, owner FROM volumes WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(CatalogError::db("read volume"))?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "volume",
                id: id.to_string(),
            })?;
        if get::<String>(&row, "kind")? != VolumeKind::Workspace.as_str() {
            return Ok(Usage::default());
        }
        let owner: Option<String> = get(&row, "owner")?;
        let charged = sqlx::query(AssertSqlSafe(charge_sql(
            "workspace_usage",
            "volume_id",
            "volumes WHERE id = $1",
        )))
        .bind(id)
        .bind(bytes)
        .bind(objects)
        .fetch_optional(&mut *tx)
        .await
        .map_err(CatalogError::db("charge usage"))?;
        let Some(charged) = charged else {
            let scope = QuotaScope::Workspace(id.to_string());
            return Err(self.refusal(&mut tx, scope, bytes).await);
        };
        let usage = Usage {
            bytes: get::<i64>(&charged, "bytes")?.max(0) as u64,
            objects: get::<i64>(&charged, "objects")?.max(0) as u64,
        };
        if let Some(owner) = owner {
            sqlx::query(
                "INSERT INTO user_usage (user_name, bytes, objects) VALUES ($1, 0, 0) \
                 ON CONFLICT (user_name) DO NOTHING",
            )
            .bind(&owner)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("record usage"))?;
            let charged = sqlx::query(AssertSqlSafe(charge_sql(
                "user_usage",
                "user_name",
                "users WHERE name = $1",
            )))
            .bind(&owner)
            .bind(bytes)
            .bind(objects)
            .fetch_optional(&mut *tx)
            .await
            .map_err(CatalogError::db("charge usage"))?;
            if charged.is_none() {
                return Err(self.refusal(&mut tx, QuotaScope::User(owner), bytes).await);
            }
        }
        tx.commit().await.map_err(CatalogError::db("commit"))?;
        Ok(usage)
    }

    /// The error for a charge `scope` refused: which limit, its value and the usage now.
    async fn refusal(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        scope: QuotaScope,
        bytes: i64,
    ) -> CatalogError {
        let (limits, usage, key) = match &scope {
            QuotaScope::Workspace(id) => (
                "SELECT quota_bytes, quota_objects FROM volumes WHERE id = $1",
                "SELECT bytes, objects FROM workspace_usage WHERE volume_id = $1",
                id,
            ),
            QuotaScope::User(name) => (
                "SELECT quota_bytes, quota_objects FROM users WHERE name = $1",
                "SELECT bytes, objects FROM user_usage WHERE user_name = $1",
                name,
            ),
        };
        let read = async {
            let l = sqlx::query(limits).bind(key).fetch_one(&mut **tx).await?;
            let u = sqlx::query(usage).bind(key).fetch_one(&mut **tx).await?;
            let n = |r: &AnyRow, c: &str| r.try_get::<Option<i64>, _>(c);
            Ok::<_, sqlx::Error>((
                n(&l, "quota_bytes")?,
                n(&l, "quota_objects")?,
                n(&u, "bytes")?.unwrap_or(0),
                n(&u, "objects")?.unwrap_or(0),
            ))
        };
        match read.await {
            Ok((quota_bytes, quota_objects, used_bytes, used_objects)) => {
                // The bytes limit when the charge grew bytes past it, else the objects one.
                let over_bytes = quota_bytes.is_some_and(|q| bytes > 0 && used_bytes + bytes > q);
                let (what, limit, usage) = match (over_bytes, quota_objects) {
                    (false, Some(q)) => ("objects", q, used_objects),
                    _ => ("bytes", quota_bytes.unwrap_or(0), used_bytes),
                };
                CatalogError::QuotaExceeded {
                    scope,
                    what,
                    limit: limit.max(0) as u64,
                    usage: usage.max(0) as u64,
                }
            }
            Err(e) => CatalogError::db("read quota")(e),
        }
    }

    /// The usage of every workspace together: (workspaces counted, bytes, objects).
    pub async fn total_workspace_usage(&self) -> Result<(u64, u64, u64)> {
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, \
             CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS bytes, \
             CAST(COALESCE(SUM(objects), 0) AS BIGINT) AS objects FROM workspace_usage",
        )
        .fetch_one(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read usage"))?;
        let n = |c: &'static str| get::<i64>(&row, c).map(|v| v.max(0) as u64);
        Ok((n("n")?, n("bytes")?, n("objects")?))
    }

    /// Workspace `id`'s usage (zero when nothing was ever counted).
    pub async fn workspace_usage(&self, id: &str) -> Result<(u64, u64)> {
        let row = sqlx::query("SELECT bytes, objects FROM workspace_usage WHERE volume_id = $1")
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(CatalogError::db("read usage"))?;
        pair(row.as_ref())
    }

    /// User `name`'s usage over the workspaces they own.
    pub(super) async fn user_usage(&self, name: &str) -> Result<(u64, u64)> {
        let row = sqlx::query("SELECT bytes, objects FROM user_usage WHERE user_name = $1")
            .bind(name)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(CatalogError::db("read usage"))?;
        pair(row.as_ref())
    }

    /// Every user's usage, by name.
    pub(super) async fn users_usage(&self) -> Result<HashMap<String, (u64, u64)>> {
        let rows = sqlx::query("SELECT user_name, bytes, objects FROM user_usage")
            .fetch_all(&self.inner.pool)
            .await
            .map_err(CatalogError::db("read usage"))?;
        rows.iter()
            .map(|r| Ok((get::<String>(r, "user_name")?, pair(Some(r))?)))
            .collect()
    }

    /// Sets workspace `id`'s usage to a count of what it holds (a scan's), moving its owner's
    /// usage by the difference. Writes that commit while the count runs may be missed or
    /// counted twice; the next scan puts them right.
    pub async fn recount_usage(&self, id: &str, objects: u64, bytes: u64) -> Result<()> {
        let (old_bytes, old_objects) = self.workspace_usage(id).await?;
        let d_bytes = clamp_i64(bytes) - clamp_i64(old_bytes);
        let d_objects = clamp_i64(objects) - clamp_i64(old_objects);
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO workspace_usage (volume_id, bytes, objects) VALUES ($1, $2, $3) \
             ON CONFLICT (volume_id) DO UPDATE SET bytes = $2, objects = $3",
        )
        .bind(id)
        .bind(clamp_i64(bytes))
        .bind(clamp_i64(objects))
        .execute(&mut *tx)
        .await
        .map_err(CatalogError::db("record usage"))?;
        let owner: Option<Option<String>> =
            sqlx::query_scalar("SELECT owner FROM volumes WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(CatalogError::db("read volume"))?;
        if let Some(owner) = owner.flatten() {
            add_user_usage(&mut tx, &owner, d_bytes, d_objects).await?;
        }
        tx.commit().await.map_err(CatalogError::db("commit"))
    }
}

fn pair(row: Option<&AnyRow>) -> Result<(u64, u64)> {
    match row {
        None => Ok((0, 0)),
        Some(r) => Ok((
            get::<i64>(r, "bytes")?.max(0) as u64,
            get::<i64>(r, "objects")?.max(0) as u64,
        )),
    }
}

/// Adds to user `name`'s usage, unconditionally (never below zero).
async fn add_user_usage(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    name: &str,
    bytes: i64,
    objects: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO user_usage (user_name, bytes, objects) VALUES ($1, 0, 0) \
         ON CONFLICT (user_name) DO NOTHING",
    )
    .bind(name)
    .execute(&mut **tx)
    .await
    .map_err(CatalogError::db("record usage"))?;
    sqlx::query(
        "UPDATE user_usage SET \
         bytes = CASE WHEN bytes + $2 < 0 THEN 0 ELSE bytes + $2 END, \
         objects = CASE WHEN objects + $3 < 0 THEN 0 ELSE objects + $3 END \
         WHERE user_name = $1",
    )
    .bind(name)
    .bind(bytes)
    .bind(objects)
    .execute(&mut **tx)
    .await
    .map_err(CatalogError::db("record usage"))?;
    Ok(())
}

/// Moves what workspace `id` holds from the usage of `from` to that of `to` (an owner
/// change, the workspace's removal, a change of kind).
pub(super) async fn move_owner_usage(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<()> {
    let row = sqlx::query("SELECT bytes, objects FROM workspace_usage WHERE volume_id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(CatalogError::db("read usage"))?;
    let (bytes, objects) = pair(row.as_ref())?;
    let (bytes, objects) = (clamp_i64(bytes), clamp_i64(objects));
    if bytes == 0 && objects == 0 {
        return Ok(());
    }
    if let Some(from) = from {
        add_user_usage(tx, from, -bytes, -objects).await?;
    }
    if let Some(to) = to {
        add_user_usage(tx, to, bytes, objects).await?;
    }
    Ok(())
}
