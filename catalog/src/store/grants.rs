//! Grants of access levels to users and groups.

use sqlx::AssertSqlSafe;

use super::*;
use crate::model::*;
use crate::{CatalogError, Result};

impl Catalog {
    /// Grants `level` on `volume` to `subject`, replacing any earlier level.
    pub async fn grant(&self, subject: &Subject, volume: &str, level: Access) -> Result<Grant> {
        let _changing = self.changing();
        match subject {
            Subject::User(u) => {
                self.get_user(u).await?;
            }
            Subject::Group(g) => {
                self.get_group(g).await?;
            }
        }
        self.get_volume(volume).await?;
        let now = Timestamp::now();
        sqlx::query(
            "INSERT INTO grants (subject_kind, subject, volume_id, level, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject_kind, subject, volume_id) \
             DO UPDATE SET level = excluded.level",
        )
        .bind(subject.kind())
        .bind(subject.name())
        .bind(volume)
        .bind(level.as_str())
        .bind(now.0)
        .execute(&self.inner.pool)
        .await
        .map_err(CatalogError::db("insert grant"))?;
        Ok(Grant {
            subject: subject.clone(),
            volume: volume.to_string(),
            level,
            created_at: now,
        })
    }

    pub async fn revoke(&self, subject: &Subject, volume: &str) -> Result<()> {
        let _changing = self.changing();
        let done = sqlx::query(
            "DELETE FROM grants WHERE subject_kind = $1 AND subject = $2 AND volume_id = $3",
        )
        .bind(subject.kind())
        .bind(subject.name())
        .bind(volume)
        .execute(&self.inner.pool)
        .await
        .map_err(CatalogError::db("delete grant"))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                kind: "grant",
                id: format!("{subject} on {volume}"),
            });
        }
        Ok(())
    }

    pub async fn list_grants(
        &self,
        volume: Option<&str>,
        subject: Option<&Subject>,
    ) -> Result<Vec<Grant>> {
        let mut sql =
            "SELECT subject_kind, subject, volume_id, level, created_at FROM grants".to_string();
        let mut binds: Vec<&str> = Vec::new();
        let mut conditions = Vec::new();
        if let Some(v) = volume {
            binds.push(v);
            conditions.push(format!("volume_id = ${}", binds.len()));
        }
        if let Some(s) = subject {
            binds.push(s.kind());
            conditions.push(format!("subject_kind = ${}", binds.len()));
            binds.push(s.name());
            conditions.push(format!("subject = ${}", binds.len()));
        }
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY volume_id, subject_kind, subject");
        // Built from constants and numbered placeholders only; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        let rows = q
            .fetch_all(&self.inner.pool)
            .await
            .map_err(CatalogError::db("list grants"))?;
        rows.iter()
            .map(|r| {
                let kind: String = get(r, "subject_kind")?;
                let name: String = get(r, "subject")?;
                let subject = match kind.as_str() {
                    "group" => Subject::Group(name),
                    _ => Subject::User(name),
                };
                Ok(Grant {
                    subject,
                    volume: get(r, "volume_id")?,
                    level: Access::parse(&get::<String>(r, "level")?)?,
                    created_at: Timestamp(get(r, "created_at")?),
                })
            })
            .collect()
    }

    pub(super) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        self.inner
            .pool
            .begin()
            .await
            .map_err(CatalogError::db("begin"))
    }
}
