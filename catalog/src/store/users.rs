//! Users.

use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::*;
use crate::model::*;
use crate::{CatalogError, Result};

impl Catalog {
    pub async fn create_user(&self, name: &str, display_name: &str, admin: bool) -> Result<User> {
        let _changing = self.changing();
        validate_name("name", name)?;
        let now = Timestamp::now();
        let res = sqlx::query(
            "INSERT INTO users (name, display_name, admin, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(display_name)
        .bind(i64::from(admin))
        .bind(now.0)
        .execute(&self.inner.pool)
        .await;
        inserted(res, "user", name, "insert user")?;
        Ok(User {
            name: name.to_string(),
            display_name: display_name.to_string(),
            admin,
            create_workspaces: false,
            groups: Vec::new(),
            created_at: now,
            quota_bytes: None,
            quota_objects: None,
            usage_bytes: 0,
            usage_objects: 0,
        })
    }

    pub async fn get_user(&self, name: &str) -> Result<User> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read user"))?
        .ok_or_else(|| CatalogError::NotFound {
            kind: "user",
            id: name.to_string(),
        })?;
        let groups = sqlx::query_scalar(
            "SELECT group_name FROM group_members WHERE user_name = $1 ORDER BY group_name",
        )
        .bind(name)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read memberships"))?;
        let mut user = user_from_row(&row, groups)?;
        (user.usage_bytes, user.usage_objects) = self.user_usage(name).await?;
        Ok(user)
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY name"
        )))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(CatalogError::db("list users"))?;
        let mut groups = self.memberships(false).await?;
        let mut usage = self.users_usage().await?;
        rows.iter()
            .map(|row| {
                let name: String = get(row, "name")?;
                let mut user = user_from_row(row, groups.remove(&name).unwrap_or_default())?;
                (user.usage_bytes, user.usage_objects) = usage.remove(&name).unwrap_or_default();
                Ok(user)
            })
            .collect()
    }

    /// Applies `patch` to user `name`. Quotas take effect on the next write.
    pub async fn update_user(&self, name: &str, patch: &UserPatch) -> Result<User> {
        let _changing = self.changing();
        let current = self.get_user(name).await?;
        let display = patch
            .display_name
            .as_deref()
            .unwrap_or(&current.display_name);
        let admin = patch.admin.unwrap_or(current.admin);
        let creates = patch.create_workspaces.unwrap_or(current.create_workspaces);
        let quota_bytes = patch.quota_bytes.unwrap_or(current.quota_bytes);
        let quota_objects = patch.quota_objects.unwrap_or(current.quota_objects);
        sqlx::query(
            "UPDATE users SET display_name = $1, admin = $2, create_workspaces = $3, \
             quota_bytes = $4, quota_objects = $5 WHERE name = $6",
        )
        .bind(display)
        .bind(i64::from(admin))
        .bind(i64::from(creates))
        .bind(quota_bytes.map(clamp_i64))
        .bind(quota_objects.map(clamp_i64))
        .bind(name)
        .execute(&self.inner.pool)
        .await
        .map_err(CatalogError::db("update user"))?;
        self.get_user(name).await
    }

    /// Removes a user with their keys, tokens, memberships and grants. Refused while the user
    /// owns volumes, so no workspace is left without an owner by accident.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let _changing = self.changing();
        let mut tx = self.begin().await?;
        let owned: Vec<String> =
            sqlx::query_scalar("SELECT id FROM volumes WHERE owner = $1 ORDER BY id")
                .bind(name)
                .fetch_all(&mut *tx)
                .await
                .map_err(CatalogError::db("read owned volumes"))?;
        if !owned.is_empty() {
            return Err(CatalogError::Conflict {
                message: format!(
                    "user `{name}` owns volume(s) {}: remove them or give them another owner first",
                    owned.join(", ")
                ),
            });
        }
        sqlx::query("DELETE FROM grants WHERE subject_kind = 'user' AND subject = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("delete grants"))?;
        // Children go explicitly rather than by ON DELETE CASCADE, which SQLite honours only
        // with foreign keys switched on for the connection.
        for table in ["access_keys", "api_tokens", "group_members"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE user_name = $1"
            )))
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("delete user records"))?;
        }
        let done = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("delete user"))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                kind: "user",
                id: name.to_string(),
            });
        }
        tx.commit().await.map_err(CatalogError::db("commit"))?;
        Ok(())
    }
}

pub(super) fn user_from_row(row: &AnyRow, groups: Vec<String>) -> Result<User> {
    Ok(User {
        name: get(row, "name")?,
        display_name: get(row, "display_name")?,
        admin: get::<i64>(row, "admin")? != 0,
        create_workspaces: get::<i64>(row, "create_workspaces")? != 0,
        groups,
        created_at: Timestamp(get(row, "created_at")?),
        quota_bytes: get::<Option<i64>>(row, "quota_bytes")?.map(|q| q.max(0) as u64),
        quota_objects: get::<Option<i64>>(row, "quota_objects")?.map(|q| q.max(0) as u64),
        usage_bytes: 0,
        usage_objects: 0,
    })
}

/// The columns `user_from_row` reads.
const USER_COLUMNS: &str = "name, display_name, admin, create_workspaces, created_at, \
     quota_bytes, quota_objects";
