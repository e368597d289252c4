//! Per-volume CORS rules (what S3 PutBucketCors sets), kept as one JSON list per volume.

use super::*;
use crate::model::*;
use crate::{CatalogError, CorsRule, Result};

impl Catalog {
    /// The CORS rules of `volume`; None when it has none (or does not exist).
    pub async fn cors(&self, volume: &str) -> Result<Option<Vec<CorsRule>>> {
        Ok(self
            .view()
            .await?
            .cors(volume)?
            .map(|rules| rules.as_ref().clone()))
    }

    /// Replaces the CORS rules of `volume` (checked with [`CorsRule::check`]).
    pub async fn put_cors(&self, volume: &str, rules: &[CorsRule]) -> Result<()> {
        let _changing = self.changing();
        CorsRule::check(rules)?;
        self.get_volume(volume).await?;
        let text = serde_json::to_string(rules).map_err(|e| CatalogError::Corrupt {
            what: "CORS rules".into(),
            message: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO volume_cors (volume_id, rules, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (volume_id) DO UPDATE SET rules = excluded.rules, \
             updated_at = excluded.updated_at",
        )
        .bind(volume)
        .bind(text)
        .bind(Timestamp::now().0)
        .execute(&self.inner.pool)
        .await
        .map_err(CatalogError::db("write CORS rules"))?;
        Ok(())
    }

    /// Removes the CORS rules of `volume` (none is no error, as in S3).
    pub async fn delete_cors(&self, volume: &str) -> Result<()> {
        let _changing = self.changing();
        self.get_volume(volume).await?;
        sqlx::query("DELETE FROM volume_cors WHERE volume_id = $1")
            .bind(volume)
            .execute(&self.inner.pool)
            .await
            .map_err(CatalogError::db("delete CORS rules"))?;
        Ok(())
    }
}
