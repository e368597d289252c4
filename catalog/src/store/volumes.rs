//! Volumes: records, search, scans.

use std::collections::HashMap;

use futures::TryStreamExt;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::access::level_for;
use super::*;
use crate::model::*;
use crate::{CatalogError, Dialect, Result};

impl Catalog {
    pub async fn create_volume(&self, new: NewVolume) -> Result<Volume> {
        let _changing = self.changing();
        let now = Timestamp::now();
        let volume = volume_from_new(new, now)?;
        let mut tx = self.begin().await?;
        if let Some(owner) = &volume.owner {
            ensure_user(&mut tx, owner).await?;
        }
        let inserted = bind_volume(
            sqlx::query(
                "INSERT INTO volumes (id, title, description, mission, instrument, tags, license, \
                 dataproduct_type, calib_level, backend, prefix, kind, read_only, public_read, \
                 owner, extra, created_at, updated_at, quota_bytes, quota_objects) VALUES ($1, \
                 $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 $19, $20)",
            ),
            &volume,
        )?
        .execute(&mut *tx)
        .await;
        super::inserted(inserted, "volume", &volume.id, "insert volume")?;
        self.index_volume(&mut tx, &volume).await?;
        tx.commit().await.map_err(CatalogError::db("commit"))?;
        Ok(volume)
    }

    pub async fn get_volume(&self, id: &str) -> Result<Volume> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes v WHERE v.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read volume"))?;
        match row {
            Some(row) => {
                let mut v = volume_from_row(&row)?;
                if v.kind == VolumeKind::Workspace {
                    let (bytes, objects) = self.workspace_usage(id).await?;
                    v.usage_bytes = Some(bytes);
                    v.usage_objects = Some(objects);
                }
                Ok(v)
            }
            None => Err(CatalogError::NotFound {
                kind: "volume",
                id: id.to_string(),
            }),
        }
    }

    pub async fn update_volume(&self, id: &str, patch: VolumePatch) -> Result<Volume> {
        let _changing = self.changing();
        let mut tx = self.begin().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes v WHERE v.id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(CatalogError::db("read volume"))?
        .ok_or_else(|| CatalogError::NotFound {
            kind: "volume",
            id: id.to_string(),
        })?;
        let mut v = volume_from_row(&row)?;
        let before = v.clone();
        apply_patch(&mut v, patch)?;
        if let Some(owner) = &v.owner {
            ensure_user(&mut tx, owner).await?;
        }
        v.updated_at = Timestamp::now().max(Timestamp(v.updated_at.0 + 1));
        bind_volume(
            sqlx::query(
                "UPDATE volumes SET id = $1, title = $2, description = $3, mission = $4, \
                 instrument = $5, tags = $6, license = $7, dataproduct_type = $8, \
                 calib_level = $9, backend = $10, prefix = $11, kind = $12, read_only = $13, \
                 public_read = $14, owner = $15, extra = $16, created_at = $17, \
                 updated_at = $18, quota_bytes = $19, quota_objects = $20 WHERE id = $1",
            ),
            &v,
        )?
        .execute(&mut *tx)
        .await
        .map_err(CatalogError::db("update volume"))?;
        // What the workspace holds counts for whoever owns it now.
        let counted = |v: &Volume| {
            (v.kind == VolumeKind::Workspace)
                .then_some(v.owner.clone())
                .flatten()
        };
        if counted(&before) != counted(&v) {
            super::quotas::move_owner_usage(
                &mut tx,
                id,
                counted(&before).as_deref(),
                counted(&v).as_deref(),
            )
            .await?;
        }
        self.index_volume(&mut tx, &v).await?;
        tx.commit().await.map_err(CatalogError::db("commit"))?;
        Ok(v)
    }

    /// Creates the volume, or brings an existing one in line with `new` (keeping its creation
    /// time and last scan). Returns the volume and whether it was created. Used for volumes
    /// declared in the configuration file.
    pub async fn upsert_volume(&self, new: NewVolume) -> Result<(Volume, bool)> {
        let _changing = self.changing();
        match self.get_volume(&new.id).await {
            Err(CatalogError::NotFound { .. }) => match self.create_volume(new.clone()).await {
                Ok(v) => Ok((v, true)),
                // Another process declared it meanwhile (replicas on one PostgreSQL catalogue
                // starting at once): bring it in line like any existing volume.
                Err(CatalogError::AlreadyExists { .. }) => self.bring_in_line(new).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
            Ok(_) => self.bring_in_line(new).await,
        }
    }

    /// Sets every field of the existing volume `new.id` to `new`'s.
    async fn bring_in_line(&self, new: NewVolume) -> Result<(Volume, bool)> {
        let read_only = new.read_only.unwrap_or(new.kind == VolumeKind::Archive);
        let patch = VolumePatch {
            title: Some(new.title),
            description: Some(new.description),
            mission: Some(new.mission),
            instrument: Some(new.instrument),
            tags: Some(new.tags),
            license: Some(new.license),
            dataproduct_type: Some(new.dataproduct_type),
            calib_level: Some(new.calib_level),
            backend: Some(new.backend),
            prefix: Some(new.prefix),
            kind: Some(new.kind),
            read_only: Some(read_only),
            public_read: Some(new.public_read),
            owner: Some(new.owner),
            extra: Some(new.extra),
            // A quota the declaration does not give is the catalogue's to keep.
            quota_bytes: new.quota_bytes.map(Some),
            quota_objects: new.quota_objects.map(Some),
        };
        Ok((self.update_volume(&new.id, patch).await?, false))
    }

    pub async fn delete_volume(&self, id: &str) -> Result<()> {
        let _changing = self.changing();
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM grants WHERE volume_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("delete grants"))?;
        // (After a write: an SQLite transaction that reads first cannot take the write lock
        // later.) The owner's usage no longer counts what the workspace held.
        let owner: Option<Option<String>> =
            sqlx::query_scalar("SELECT owner FROM volumes WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(CatalogError::db("read volume"))?;
        super::quotas::move_owner_usage(&mut tx, id, owner.flatten().as_deref(), None).await?;
        sqlx::query("DELETE FROM workspace_usage WHERE volume_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("delete usage"))?;
        sqlx::query("DELETE FROM volume_cors WHERE volume_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("delete CORS rules"))?;
        sqlx::query("DELETE FROM science_objects WHERE volume_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("delete science index"))?;
        sqlx::query("DELETE FROM science_extents WHERE volume_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("delete science extent"))?;
        if self.inner.dialect == Dialect::Sqlite {
            sqlx::query("DELETE FROM volume_fts WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(CatalogError::db("unindex volume"))?;
        }
        let done = sqlx::query("DELETE FROM volumes WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("delete volume"))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                kind: "volume",
                id: id.to_string(),
            });
        }
        tx.commit().await.map_err(CatalogError::db("commit"))?;
        Ok(())
    }

    /// Records the last scan a peer gateway reports for a volume linked from it: its counts
    /// and its time, as the peer has them.
    pub async fn mirror_scan(&self, id: &str, scan: &ScanSummary) -> Result<()> {
        let _changing = self.changing();
        sqlx::query(
            "UPDATE volumes SET scan_objects = $1, scan_bytes = $2, scanned_at = $3 WHERE id = $4",
        )
        .bind(clamp_i64(scan.objects))
        .bind(clamp_i64(scan.bytes))
        .bind(scan.scanned_at.0)
        .bind(id)
        .execute(&self.inner.pool)
        .await
        .map_err(CatalogError::db("mirror scan"))?;
        Ok(())
    }

    pub async fn record_scan(&self, id: &str, objects: u64, bytes: u64) -> Result<ScanSummary> {
        let _changing = self.changing();
        let summary = ScanSummary {
            objects,
            bytes,
            scanned_at: Timestamp::now(),
        };
        let done = sqlx::query(
            "UPDATE volumes SET scan_objects = $1, scan_bytes = $2, scanned_at = $3 WHERE id = $4",
        )
        .bind(clamp_i64(objects))
        .bind(clamp_i64(bytes))
        .bind(summary.scanned_at.0)
        .bind(id)
        .execute(&self.inner.pool)
        .await
        .map_err(CatalogError::db("record scan"))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                kind: "volume",
                id: id.to_string(),
            });
        }
        // A workspace's scan is a recount of its usage.
        let kind: Option<String> = sqlx::query_scalar("SELECT kind FROM volumes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(CatalogError::db("read volume"))?;
        if kind.as_deref() == Some(VolumeKind::Workspace.as_str()) {
            self.recount_usage(id, objects, bytes).await?;
        }
        Ok(summary)
    }

    /// The volumes `principal` may see (all for an admin, public ones for anyone), matching
    /// `query`, each with the caller's access level; ranked by relevance when `q` is given,
    /// else by id.
    pub async fn list_volumes(
        &self,
        principal: Option<&Principal>,
        query: &VolumeQuery,
    ) -> Result<Vec<(Volume, Access)>> {
        let dialect = self.inner.dialect;
        let terms = search_terms(query.q.as_deref().unwrap_or(""));
        let mut binds: Vec<String> = Vec::new();
        let mut conditions: Vec<String> = Vec::new();
        let arg = |binds: &mut Vec<String>, value: String| {
            binds.push(value);
            format!("${}", binds.len())
        };
        let (from, order) = if terms.is_empty() {
            ("volumes v".to_string(), "v.id".to_string())
        } else {
            match dialect {
                Dialect::Sqlite => {
                    let expr = terms
                        .iter()
                        .map(|t| format!("\"{t}\"*"))
                        .collect::<Vec<_>>()
                        .join(" AND ");
                    let p = arg(&mut binds, expr);
                    conditions.push(format!("volume_fts MATCH {p}"));
                    (
                        "volume_fts JOIN volumes v ON v.id = volume_fts.id".to_string(),
                        // Column weights: id, title, description, tags, mission, instrument.
                        "bm25(volume_fts, 0.0, 10.0, 1.0, 5.0, 3.0, 3.0), v.id".to_string(),
                    )
                }
                Dialect::Postgres => {
                    let expr = terms
                        .iter()
                        .map(|t| format!("{t}:*"))
                        .collect::<Vec<_>>()
                        .join(" & ");
                    let p = arg(&mut binds, expr);
                    conditions.push(format!("v.search @@ to_tsquery('simple', {p})"));
                    (
                        "volumes v".to_string(),
                        format!("ts_rank(v.search, to_tsquery('simple', {p})) DESC, v.id"),
                    )
                }
            }
        };
        if let Some(m) = &query.mission {
            let p = arg(&mut binds, m.to_lowercase());
            conditions.push(format!("lower(v.mission) = {p}"));
        }
        if let Some(i) = &query.instrument {
            let p = arg(&mut binds, i.to_lowercase());
            conditions.push(format!("lower(v.instrument) = {p}"));
        }
        if let Some(k) = query.kind {
            let p = arg(&mut binds, k.as_str().to_string());
            conditions.push(format!("v.kind = {p}"));
        }
        if let Some(o) = &query.owner {
            let p = arg(&mut binds, o.clone());
            conditions.push(format!("v.owner = {p}"));
        }
        let mut granted: HashMap<String, Access> = HashMap::new();
        match principal {
            Some(p) if p.admin => {}
            Some(p) => {
                granted = self.granted_levels(&p.user).await?;
                let u = arg(&mut binds, p.user.clone());
                let granted_ids = GRANTED_TO_USER
                    .replace("$1", &u)
                    .replace("SELECT volume_id, level", "SELECT volume_id");
                conditions.push(format!(
                    "(v.public_read = 1 OR v.owner = {u} OR v.id IN ({granted_ids}))"
                ));
            }
            None => conditions.push("v.public_read = 1".to_string()),
        }
        // A credential limited to some volumes sees those, and public ones.
        if let Some(scoped) = principal.and_then(|p| p.scope.volumes.as_ref()) {
            let ids: Vec<String> = scoped
                .iter()
                .map(|id| arg(&mut binds, id.clone()))
                .collect();
            let within = if ids.is_empty() {
                String::new()
            } else {
                format!(" OR v.id IN ({})", ids.join(", "))
            };
            conditions.push(format!("(v.public_read = 1{within})"));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let offset = query.offset.unwrap_or(0) as usize;
        let limit = query.limit.unwrap_or(1000).min(10_000) as usize;
        // The page is cut in SQL when every filter is in SQL; a tag filter (tags are a JSON
        // list) is applied as the rows stream in, and reading stops once the page is full.
        let page = if query.tag.is_none() {
            format!(" LIMIT {limit} OFFSET {offset}")
        } else {
            String::new()
        };
        let sql =
            format!("SELECT {VOLUME_COLUMNS} FROM {from} {where_clause} ORDER BY {order}{page}");
        // Built from constants, numbers and numbered placeholders only; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let mut rows = q.fetch(&self.inner.pool);
        let mut skip = if query.tag.is_some() { offset } else { 0 };
        let mut out = Vec::new();
        while out.len() < limit
            && let Some(row) = rows
                .try_next()
                .await
                .map_err(CatalogError::db("list volumes"))?
        {
            let volume = volume_from_row(&row)?;
            if let Some(tag) = &query.tag
                && !volume.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
            {
                continue;
            }
            let level = level_for(principal, &volume, granted.get(&volume.id).copied());
            let level = match principal {
                Some(p) => p.scope.limit(&volume, level),
                None => level,
            };
            let Some(access) = level else {
                continue;
            };
            if skip > 0 {
                skip -= 1;
                continue;
            }
            out.push((volume, access));
        }
        Ok(out)
    }

    pub(super) async fn index_volume(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        v: &Volume,
    ) -> Result<()> {
        // PostgreSQL keeps its index in a generated column; SQLite's FTS5 table is ours to keep.
        if self.inner.dialect != Dialect::Sqlite {
            return Ok(());
        }
        sqlx::query("DELETE FROM volume_fts WHERE id = $1")
            .bind(&v.id)
            .execute(&mut **tx)
            .await
            .map_err(CatalogError::db("unindex volume"))?;
        sqlx::query(
            "INSERT INTO volume_fts (id, title, description, tags, mission, instrument) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&v.id)
        .bind(&v.title)
        .bind(&v.description)
        .bind(v.tags.join(" "))
        .bind(v.mission.clone().unwrap_or_default())
        .bind(v.instrument.clone().unwrap_or_default())
        .execute(&mut **tx)
        .await
        .map_err(CatalogError::db("index volume"))?;
        Ok(())
    }
}

pub(super) fn volume_from_new(new: NewVolume, now: Timestamp) -> Result<Volume> {
    validate_volume_id(&new.id)?;
    let read_only = new.read_only.unwrap_or(new.kind == VolumeKind::Archive);
    let v = Volume {
        id: new.id,
        title: new.title,
        description: new.description,
        mission: new.mission,
        instrument: new.instrument,
        tags: new.tags,
        license: new.license,
        dataproduct_type: new.dataproduct_type,
        calib_level: new.calib_level,
        backend: new.backend,
        prefix: normalize_prefix(&new.prefix)?,
        kind: new.kind,
        read_only,
        public_read: new.public_read,
        owner: new.owner,
        extra: new.extra,
        created_at: now,
        updated_at: now,
        last_scan: None,
        quota_bytes: new.quota_bytes,
        quota_objects: new.quota_objects,
        usage_bytes: (new.kind == VolumeKind::Workspace).then_some(0),
        usage_objects: (new.kind == VolumeKind::Workspace).then_some(0),
    };
    validate_volume(&v)?;
    Ok(v)
}

pub(super) fn validate_volume(v: &Volume) -> Result<()> {
    if v.backend.trim().is_empty() {
        return Err(CatalogError::invalid("backend", "a volume needs a backend"));
    }
    if v.kind != VolumeKind::Workspace {
        for (field, set) in [
            ("quota_bytes", v.quota_bytes.is_some()),
            ("quota_objects", v.quota_objects.is_some()),
        ] {
            if set {
                return Err(CatalogError::invalid(
                    field,
                    format!(
                        "quotas apply to workspaces; volume `{}` is an {}",
                        v.id,
                        v.kind.as_str()
                    ),
                ));
            }
        }
    }
    validate_descriptive(&v.title, &v.description, &v.tags, v.calib_level)
}

pub(super) fn apply_patch(v: &mut Volume, p: VolumePatch) -> Result<()> {
    if let Some(x) = p.title {
        v.title = x;
    }
    if let Some(x) = p.description {
        v.description = x;
    }
    if let Some(x) = p.mission {
        v.mission = x;
    }
    if let Some(x) = p.instrument {
        v.instrument = x;
    }
    if let Some(x) = p.tags {
        v.tags = x;
    }
    if let Some(x) = p.license {
        v.license = x;
    }
    if let Some(x) = p.dataproduct_type {
        v.dataproduct_type = x;
    }
    if let Some(x) = p.calib_level {
        v.calib_level = x;
    }
    if let Some(x) = p.backend {
        v.backend = x;
    }
    if let Some(x) = p.prefix {
        v.prefix = normalize_prefix(&x)?;
    }
    if let Some(x) = p.kind {
        v.kind = x;
    }
    if let Some(x) = p.read_only {
        v.read_only = x;
    }
    if let Some(x) = p.public_read {
        v.public_read = x;
    }
    if let Some(x) = p.owner {
        v.owner = x;
    }
    if let Some(x) = p.extra {
        v.extra = x;
    }
    if let Some(x) = p.quota_bytes {
        v.quota_bytes = x;
    }
    if let Some(x) = p.quota_objects {
        v.quota_objects = x;
    }
    validate_volume(v)
}

pub(super) fn bind_volume<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    v: &Volume,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>> {
    let tags =
        serde_json::to_string(&v.tags).map_err(|e| CatalogError::invalid("tags", e.to_string()))?;
    let extra = serde_json::to_string(&v.extra)
        .map_err(|e| CatalogError::invalid("extra", e.to_string()))?;
    Ok(q.bind(v.id.clone())
        .bind(v.title.clone())
        .bind(v.description.clone())
        .bind(v.mission.clone())
        .bind(v.instrument.clone())
        .bind(tags)
        .bind(v.license.clone())
        .bind(v.dataproduct_type.clone())
        .bind(v.calib_level)
        .bind(v.backend.clone())
        .bind(v.prefix.clone())
        .bind(v.kind.as_str())
        .bind(i64::from(v.read_only))
        .bind(i64::from(v.public_read))
        .bind(v.owner.clone())
        .bind(extra)
        .bind(v.created_at.0)
        .bind(v.updated_at.0)
        .bind(v.quota_bytes.map(clamp_i64))
        .bind(v.quota_objects.map(clamp_i64)))
}

pub(super) fn volume_from_row(row: &AnyRow) -> Result<Volume> {
    let id: String = get(row, "id")?;
    let corrupt = |what: &str, e: serde_json::Error| CatalogError::Corrupt {
        what: format!("volume `{id}` {what}"),
        message: e.to_string(),
    };
    let tags: String = get(row, "tags")?;
    let extra: String = get(row, "extra")?;
    let scan = match (
        get::<Option<i64>>(row, "scan_objects")?,
        get::<Option<i64>>(row, "scan_bytes")?,
        get::<Option<i64>>(row, "scanned_at")?,
    ) {
        (Some(objects), Some(bytes), Some(at)) => Some(ScanSummary {
            objects: objects.max(0) as u64,
            bytes: bytes.max(0) as u64,
            scanned_at: Timestamp(at),
        }),
        _ => None,
    };
    let kind = VolumeKind::parse(&get::<String>(row, "kind")?)?;
    let workspace = kind == VolumeKind::Workspace;
    Ok(Volume {
        title: get(row, "title")?,
        description: get(row, "description")?,
        mission: get(row, "mission")?,
        instrument: get(row, "instrument")?,
        tags: serde_json::from_str(&tags).map_err(|e| corrupt("tags", e))?,
        license: get(row, "license")?,
        dataproduct_type: get(row, "dataproduct_type")?,
        calib_level: get(row, "calib_level")?,
        backend: get(row, "backend")?,
        prefix: get(row, "prefix")?,
        read_only: get::<i64>(row, "read_only")? != 0,
        public_read: get::<i64>(row, "public_read")? != 0,
        owner: get(row, "owner")?,
        extra: serde_json::from_str(&extra).map_err(|e| corrupt("extra", e))?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
        last_scan: scan,
        quota_bytes: get::<Option<i64>>(row, "quota_bytes")?.map(|q| q.max(0) as u64),
        quota_objects: get::<Option<i64>>(row, "quota_objects")?.map(|q| q.max(0) as u64),
        // Filled by `get_volume` from the usage table, for workspaces.
        usage_bytes: workspace.then_some(0),
        usage_objects: workspace.then_some(0),
        kind,
        id,
    })
}
