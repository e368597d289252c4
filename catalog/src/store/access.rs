//! The access rule: what a principal may do with a volume.

use std::collections::HashMap;

use sqlx::AssertSqlSafe;

use super::*;
use crate::model::*;
use crate::{CatalogError, Result};

impl Catalog {
    /// The principal for a user name (its admin flag read from the catalogue).
    pub async fn principal(&self, user: &str) -> Result<Principal> {
        let u = self.get_user(user).await?;
        Ok(Principal {
            user: u.name,
            admin: u.admin,
        })
    }

    /// What `principal` (None: anonymous) may do with `volume`; None when nothing.
    pub async fn access(
        &self,
        principal: Option<&Principal>,
        volume: &Volume,
    ) -> Result<Option<Access>> {
        let granted = match principal {
            Some(p) if !p.admin => {
                let rows = sqlx::query(AssertSqlSafe(format!(
                    "SELECT level FROM ({GRANTED_TO_USER}) g WHERE g.volume_id = $2"
                )))
                .bind(&p.user)
                .bind(&volume.id)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(CatalogError::db("read grants"))?;
                let mut best = None;
                for row in rows {
                    let level = Access::parse(&get::<String>(&row, "level")?)?;
                    best = best.max(Some(level));
                }
                best
            }
            _ => None,
        };
        Ok(level_for(principal, volume, granted))
    }

    pub(super) async fn granted_levels(&self, user: &str) -> Result<HashMap<String, Access>> {
        let rows = sqlx::query(GRANTED_TO_USER)
            .bind(user)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(CatalogError::db("read grants"))?;
        let mut out: HashMap<String, Access> = HashMap::new();
        for row in rows {
            let level = Access::parse(&get::<String>(&row, "level")?)?;
            let entry = out.entry(get(&row, "volume_id")?).or_insert(level);
            *entry = (*entry).max(level);
        }
        Ok(out)
    }
}

/// The access level from the parts that decide it: admin role, ownership, grants, publicity.
pub(super) fn level_for(
    principal: Option<&Principal>,
    volume: &Volume,
    granted: Option<Access>,
) -> Option<Access> {
    if let Some(p) = principal
        && (p.admin || volume.owner.as_deref() == Some(p.user.as_str()))
    {
        return Some(Access::Admin);
    }
    let public = volume.public_read.then_some(Access::Read);
    granted.max(public)
}
