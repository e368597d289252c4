//! Groups and their members.

use super::*;
use crate::model::*;
use crate::{CatalogError, Result};

impl Catalog {
    pub async fn create_group(&self, name: &str, description: &str) -> Result<Group> {
        let _changing = self.changing();
        validate_name("name", name)?;
        let now = Timestamp::now();
        let res =
            sqlx::query("INSERT INTO groups (name, description, created_at) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(description)
                .bind(now.0)
                .execute(&self.inner.pool)
                .await;
        inserted(res, "group", name, "insert group")?;
        Ok(Group {
            name: name.to_string(),
            description: description.to_string(),
            members: Vec::new(),
            created_at: now,
        })
    }

    pub async fn get_group(&self, name: &str) -> Result<Group> {
        let row = sqlx::query("SELECT name, description, created_at FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(CatalogError::db("read group"))?
            .ok_or_else(|| CatalogError::NotFound {
                kind: "group",
                id: name.to_string(),
            })?;
        let members = sqlx::query_scalar(
            "SELECT user_name FROM group_members WHERE group_name = $1 ORDER BY user_name",
        )
        .bind(name)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read memberships"))?;
        Ok(Group {
            name: get(&row, "name")?,
            description: get(&row, "description")?,
            members,
            created_at: Timestamp(get(&row, "created_at")?),
        })
    }

    /// Checks that the database answers (for health checks).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.inner.pool)
            .await
            .map_err(CatalogError::db("ping"))?;
        Ok(())
    }

    pub async fn list_groups(&self) -> Result<Vec<Group>> {
        let rows = sqlx::query("SELECT name, description, created_at FROM groups ORDER BY name")
            .fetch_all(&self.inner.pool)
            .await
            .map_err(CatalogError::db("list groups"))?;
        let mut by_group = self.memberships(true).await?;
        rows.iter()
            .map(|r| {
                let name: String = get(r, "name")?;
                Ok(Group {
                    members: by_group.remove(&name).unwrap_or_default(),
                    name,
                    description: get(r, "description")?,
                    created_at: Timestamp(get(r, "created_at")?),
                })
            })
            .collect()
    }

    pub async fn delete_group(&self, name: &str) -> Result<()> {
        let _changing = self.changing();
        let mut tx = self.begin().await?;
        for sql in [
            "DELETE FROM grants WHERE subject_kind = 'group' AND subject = $1",
            "DELETE FROM group_members WHERE group_name = $1",
        ] {
            sqlx::query(sql)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(CatalogError::db("delete group records"))?;
        }
        let done = sqlx::query("DELETE FROM groups WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("delete group"))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                kind: "group",
                id: name.to_string(),
            });
        }
        tx.commit().await.map_err(CatalogError::db("commit"))?;
        Ok(())
    }

    pub async fn add_member(&self, group: &str, user: &str) -> Result<Group> {
        let _changing = self.changing();
        self.get_group(group).await?;
        self.get_user(user).await?;
        sqlx::query(
            "INSERT INTO group_members (group_name, user_name) VALUES ($1, $2) \
             ON CONFLICT (group_name, user_name) DO NOTHING",
        )
        .bind(group)
        .bind(user)
        .execute(&self.inner.pool)
        .await
        .map_err(CatalogError::db("add member"))?;
        self.get_group(group).await
    }

    pub async fn remove_member(&self, group: &str, user: &str) -> Result<Group> {
        let _changing = self.changing();
        let done =
            sqlx::query("DELETE FROM group_members WHERE group_name = $1 AND user_name = $2")
                .bind(group)
                .bind(user)
                .execute(&self.inner.pool)
                .await
                .map_err(CatalogError::db("remove member"))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                kind: "membership",
                id: format!("{user} in {group}"),
            });
        }
        self.get_group(group).await
    }
}
