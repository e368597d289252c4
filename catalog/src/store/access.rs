//! The access rule: what a principal may do with a volume.

use std::collections::HashMap;

use super::*;
use crate::model::*;
use crate::{CatalogError, Result};

impl Catalog {
    /// The principal for a user name (its admin flag from the in-memory view).
    pub async fn principal(&self, user: &str) -> Result<Principal> {
        self.view().await?.principal(user)
    }

    /// What `principal` (None: anonymous) may do with `volume`; None when nothing. Decided
    /// from the in-memory view: the dataplane asks on every operation.
    pub async fn access(
        &self,
        principal: Option<&Principal>,
        volume: &Volume,
    ) -> Result<Option<Access>> {
        Ok(self.view().await?.access(principal, volume))
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
