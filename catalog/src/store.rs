//! The catalogue's records in SQL, one code path for SQLite and PostgreSQL.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::model::*;
use crate::secret::{self, SecretBox};
use crate::{CatalogConfig, CatalogError, Dialect, Result, migrate, redact_url};

const VOLUME_COLUMNS: &str = "v.id, v.title, v.description, v.mission, v.instrument, v.tags, \
     v.license, v.dataproduct_type, v.calib_level, v.backend, v.prefix, v.kind, v.read_only, \
     v.public_read, v.owner, v.extra, v.created_at, v.updated_at, v.scan_objects, v.scan_bytes, \
     v.scanned_at";

/// The ids of the volumes a user reaches through grants to them or to one of their groups.
const GRANTED_TO_USER: &str = "SELECT volume_id, level FROM grants WHERE \
     (subject_kind = 'user' AND subject = $1) OR (subject_kind = 'group' AND subject IN \
     (SELECT group_name FROM group_members WHERE user_name = $1))";

const SECRET_CHECK: &str = "archway-secret-check";

/// A handle on the catalogue; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    dialect: Dialect,
    secrets: SecretBox,
    url: String,
    /// Access key lookups (including misses), for SigV4 on every S3 request. Changes made
    /// through this catalogue drop their entries at once; changes by another replica are
    /// seen within [`ACCESS_KEY_TTL`].
    access_keys: moka::future::Cache<String, Option<(Principal, String)>>,
}

/// How long an access key lookup is trusted.
pub const ACCESS_KEY_TTL: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// Opens (and creates or migrates) the catalogue that `config` describes.
    pub async fn open(config: &CatalogConfig, data_dir: &Path) -> Result<Self> {
        let key_file = config.resolved_secret_key_file(data_dir);
        let secrets = tokio::task::spawn_blocking(move || SecretBox::load_or_create(&key_file))
            .await
            .map_err(|e| CatalogError::Io {
                path: config.resolved_secret_key_file(data_dir),
                source: std::io::Error::other(e),
            })??;
        let url = config.resolved_url(data_dir);
        let catalog = Self::connect(&url, config.max_connections, secrets).await?;
        if let Err(CatalogError::Crypto) = catalog.check_secret_key().await {
            return Err(CatalogError::SecretKey {
                path: config.resolved_secret_key_file(data_dir),
                message: format!(
                    "is not the key that sealed the secrets of the catalogue at {}",
                    redact_url(&url)
                ),
            });
        }
        Ok(catalog)
    }

    /// Connects to `url`, creating an SQLite file if needed, and brings the schema up to date.
    pub async fn connect(
        url: &str,
        max_connections: Option<u32>,
        secrets: SecretBox,
    ) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let connect_url = match dialect {
            Dialect::Sqlite => sqlite_url(url).await?,
            Dialect::Postgres => url.to_string(),
        };
        let max = max_connections.unwrap_or(match dialect {
            Dialect::Sqlite => 4,
            Dialect::Postgres => 8,
        });
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&connect_url)
            .await
            .map_err(CatalogError::db("connect"))?;
        let version = migrate::run(&pool, dialect).await?;
        tracing::debug!(url = %redact_url(url), version, "catalogue open");
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                dialect,
                secrets,
                url: redact_url(url),
                access_keys: moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(ACCESS_KEY_TTL)
                    .build(),
            }),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// The catalogue URL with any password redacted.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// Verifies that the secret key opens this catalogue's secrets (and records a check value
    /// on first use), so a wrong key is reported at start-up rather than as failed logins.
    async fn check_secret_key(&self) -> Result<()> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM archway_meta WHERE name = $1")
                .bind(SECRET_CHECK)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(CatalogError::db("read secret check"))?;
        match stored {
            Some(sealed) => self.inner.secrets.open(SECRET_CHECK, &sealed).map(|_| ()),
            None => {
                let sealed = self.inner.secrets.seal(SECRET_CHECK, b"ok")?;
                sqlx::query(
                    "INSERT INTO archway_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(SECRET_CHECK)
                .bind(sealed)
                .execute(&self.inner.pool)
                .await
                .map_err(CatalogError::db("write secret check"))?;
                Ok(())
            }
        }
    }

    // ----- volumes -----

    pub async fn create_volume(&self, new: NewVolume) -> Result<Volume> {
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
                 owner, extra, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            ),
            &volume,
        )?
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(CatalogError::AlreadyExists {
                    kind: "volume",
                    id: volume.id,
                });
            }
            other => {
                other.map_err(CatalogError::db("insert volume"))?;
            }
        }
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
            Some(row) => volume_from_row(&row),
            None => Err(CatalogError::NotFound {
                kind: "volume",
                id: id.to_string(),
            }),
        }
    }

    pub async fn update_volume(&self, id: &str, patch: VolumePatch) -> Result<Volume> {
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
                 updated_at = $18 WHERE id = $1",
            ),
            &v,
        )?
        .execute(&mut *tx)
        .await
        .map_err(CatalogError::db("update volume"))?;
        self.index_volume(&mut tx, &v).await?;
        tx.commit().await.map_err(CatalogError::db("commit"))?;
        Ok(v)
    }

    /// Creates the volume, or brings an existing one in line with `new` (keeping its creation
    /// time and last scan). Returns the volume and whether it was created. Used for volumes
    /// declared in the configuration file.
    pub async fn upsert_volume(&self, new: NewVolume) -> Result<(Volume, bool)> {
        match self.get_volume(&new.id).await {
            Err(CatalogError::NotFound { .. }) => Ok((self.create_volume(new).await?, true)),
            Err(e) => Err(e),
            Ok(_) => {
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
                };
                Ok((self.update_volume(&new.id, patch).await?, false))
            }
        }
    }

    pub async fn delete_volume(&self, id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM grants WHERE volume_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(CatalogError::db("delete grants"))?;
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

    pub async fn record_scan(&self, id: &str, objects: u64, bytes: u64) -> Result<ScanSummary> {
        let summary = ScanSummary {
            objects,
            bytes,
            scanned_at: Timestamp::now(),
        };
        let done = sqlx::query(
            "UPDATE volumes SET scan_objects = $1, scan_bytes = $2, scanned_at = $3 WHERE id = $4",
        )
        .bind(i64::try_from(objects).unwrap_or(i64::MAX))
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
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
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!("SELECT {VOLUME_COLUMNS} FROM {from} {where_clause} ORDER BY {order}");
        // Built from constants and numbered placeholders only; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let rows = q
            .fetch_all(&self.inner.pool)
            .await
            .map_err(CatalogError::db("list volumes"))?;
        let offset = query.offset.unwrap_or(0) as usize;
        let limit = query.limit.unwrap_or(1000).min(10_000) as usize;
        let mut out = Vec::new();
        for row in rows {
            let volume = volume_from_row(&row)?;
            if let Some(tag) = &query.tag
                && !volume.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
            {
                continue;
            }
            let access = level_for(principal, &volume, granted.get(&volume.id).copied());
            if let Some(access) = access {
                out.push((volume, access));
            }
        }
        Ok(out.into_iter().skip(offset).take(limit).collect())
    }

    async fn index_volume(
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

    // ----- access -----

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

    async fn granted_levels(&self, user: &str) -> Result<HashMap<String, Access>> {
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

    // ----- users -----

    pub async fn create_user(&self, name: &str, display_name: &str, admin: bool) -> Result<User> {
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
        match res {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(CatalogError::AlreadyExists {
                    kind: "user",
                    id: name.to_string(),
                })
            }
            Err(e) => Err(CatalogError::db("insert user")(e)),
            Ok(_) => Ok(User {
                name: name.to_string(),
                display_name: display_name.to_string(),
                admin,
                create_workspaces: false,
                groups: Vec::new(),
                created_at: now,
            }),
        }
    }

    pub async fn get_user(&self, name: &str) -> Result<User> {
        let row =
            sqlx::query("SELECT name, display_name, admin, create_workspaces, created_at FROM users WHERE name = $1")
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
        user_from_row(&row, groups)
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows =
            sqlx::query("SELECT name, display_name, admin, create_workspaces, created_at FROM users ORDER BY name")
                .fetch_all(&self.inner.pool)
                .await
                .map_err(CatalogError::db("list users"))?;
        let members =
            sqlx::query("SELECT group_name, user_name FROM group_members ORDER BY group_name")
                .fetch_all(&self.inner.pool)
                .await
                .map_err(CatalogError::db("list memberships"))?;
        let mut groups: HashMap<String, Vec<String>> = HashMap::new();
        for m in members {
            groups
                .entry(get(&m, "user_name")?)
                .or_default()
                .push(get(&m, "group_name")?);
        }
        rows.iter()
            .map(|row| {
                let name: String = get(row, "name")?;
                user_from_row(row, groups.remove(&name).unwrap_or_default())
            })
            .collect()
    }

    pub async fn update_user(
        &self,
        name: &str,
        display_name: Option<&str>,
        admin: Option<bool>,
        create_workspaces: Option<bool>,
    ) -> Result<User> {
        let current = self.get_user(name).await?;
        let display = display_name.unwrap_or(&current.display_name);
        let admin = admin.unwrap_or(current.admin);
        let creates = create_workspaces.unwrap_or(current.create_workspaces);
        sqlx::query(
            "UPDATE users SET display_name = $1, admin = $2, create_workspaces = $3 WHERE name = $4",
        )
            .bind(display)
            .bind(i64::from(admin))
            .bind(i64::from(creates))
            .bind(name)
            .execute(&self.inner.pool)
            .await
            .map_err(CatalogError::db("update user"))?;
        self.forget_access_keys();
        self.get_user(name).await
    }

    /// Removes a user with their keys, tokens, memberships and grants. Refused while the user
    /// owns volumes, so no workspace is left without an owner by accident.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
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
        self.forget_access_keys();
        Ok(())
    }

    // ----- access keys -----

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

    async fn insert_access_key(
        &self,
        user: &str,
        id: &str,
        secret_key: &str,
        description: &str,
    ) -> Result<NewAccessKey> {
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
        match res {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(CatalogError::AlreadyExists {
                    kind: "access key",
                    id: id.to_string(),
                })
            }
            Err(e) => Err(CatalogError::db("insert access key")(e)),
            Ok(_) => {
                self.forget_access_keys();
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
        }
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
        let done = sqlx::query("DELETE FROM access_keys WHERE id = $1")
            .bind(id)
            .execute(&self.inner.pool)
            .await
            .map_err(CatalogError::db("delete access key"))?;
        self.forget_access_keys();
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                kind: "access key",
                id: id.to_string(),
            });
        }
        Ok(())
    }

    /// The principal owning an access key and the key's secret, for SigV4 verification.
    pub async fn access_key_secret(&self, id: &str) -> Result<Option<(Principal, String)>> {
        let result = self
            .inner
            .access_keys
            .try_get_with(id.to_string(), self.load_access_key(id))
            .await;
        result.map_err(|e| match Arc::try_unwrap(e) {
            Ok(e) => e,
            Err(shared) => CatalogError::Corrupt {
                what: format!("access key {id}"),
                message: shared.to_string(),
            },
        })
    }

    async fn load_access_key(&self, id: &str) -> Result<Option<(Principal, String)>> {
        let row = sqlx::query(
            "SELECT k.sealed_secret, u.name, u.admin FROM access_keys k \
             JOIN users u ON u.name = k.user_name WHERE k.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read access key"))?;
        let Some(row) = row else { return Ok(None) };
        let sealed: String = get(&row, "sealed_secret")?;
        let plain = self.inner.secrets.open(id, &sealed)?;
        let secret = String::from_utf8(plain).map_err(|_| CatalogError::Crypto)?;
        Ok(Some((
            Principal {
                user: get(&row, "name")?,
                admin: get::<i64>(&row, "admin")? != 0,
            },
            secret,
        )))
    }

    /// Drops cached access key lookups after a change to keys or users.
    fn forget_access_keys(&self) {
        self.inner.access_keys.invalidate_all();
    }

    // ----- API tokens -----

    pub async fn create_token(
        &self,
        user: &str,
        name: &str,
        ttl: Option<Duration>,
    ) -> Result<NewApiToken> {
        self.get_user(user).await?;
        let (id, secret) = secret::new_token();
        let now = Timestamp::now();
        let expires_at = ttl.map(|d| Timestamp(now.0 + d.as_millis() as i64));
        sqlx::query(
            "INSERT INTO api_tokens (id, user_name, secret_hash, name, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(user)
        .bind(secret::hash_token_secret(&secret))
        .bind(name)
        .bind(now.0)
        .bind(expires_at.map(|t| t.0))
        .execute(&self.inner.pool)
        .await
        .map_err(CatalogError::db("insert token"))?;
        Ok(NewApiToken {
            secret: secret::format_token(&id, &secret),
            token: ApiToken {
                id,
                user: user.to_string(),
                name: name.to_string(),
                created_at: now,
                expires_at,
            },
        })
    }

    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>> {
        let rows = match user {
            Some(u) => sqlx::query(
                "SELECT id, user_name, name, created_at, expires_at FROM api_tokens \
                 WHERE user_name = $1 ORDER BY created_at, id",
            )
            .bind(u),
            None => sqlx::query(
                "SELECT id, user_name, name, created_at, expires_at FROM api_tokens \
                 ORDER BY user_name, created_at, id",
            ),
        }
        .fetch_all(&self.inner.pool)
        .await
        .map_err(CatalogError::db("list tokens"))?;
        rows.iter()
            .map(|r| {
                Ok(ApiToken {
                    id: get(r, "id")?,
                    user: get(r, "user_name")?,
                    name: get(r, "name")?,
                    created_at: Timestamp(get(r, "created_at")?),
                    expires_at: get::<Option<i64>>(r, "expires_at")?.map(Timestamp),
                })
            })
            .collect()
    }

    pub async fn delete_token(&self, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.inner.pool)
            .await
            .map_err(CatalogError::db("delete token"))?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound {
                kind: "token",
                id: id.to_string(),
            });
        }
        Ok(())
    }

    /// The principal a bearer token stands for; None for an unknown, wrong or expired token.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<Principal>> {
        let Some((id, secret)) = secret::split_token(token) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT t.secret_hash, t.expires_at, u.name, u.admin FROM api_tokens t \
             JOIN users u ON u.name = t.user_name WHERE t.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await
        .map_err(CatalogError::db("read token"))?;
        let Some(row) = row else { return Ok(None) };
        let hash: String = get(&row, "secret_hash")?;
        if !secret::constant_time_eq(&hash, &secret::hash_token_secret(secret)) {
            return Ok(None);
        }
        if let Some(expires) = get::<Option<i64>>(&row, "expires_at")?
            && expires <= Timestamp::now().0
        {
            return Ok(None);
        }
        Ok(Some(Principal {
            user: get(&row, "name")?,
            admin: get::<i64>(&row, "admin")? != 0,
        }))
    }

    // ----- groups -----

    pub async fn create_group(&self, name: &str, description: &str) -> Result<Group> {
        validate_name("name", name)?;
        let now = Timestamp::now();
        let res =
            sqlx::query("INSERT INTO groups (name, description, created_at) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(description)
                .bind(now.0)
                .execute(&self.inner.pool)
                .await;
        match res {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(CatalogError::AlreadyExists {
                    kind: "group",
                    id: name.to_string(),
                })
            }
            Err(e) => Err(CatalogError::db("insert group")(e)),
            Ok(_) => Ok(Group {
                name: name.to_string(),
                description: description.to_string(),
                members: Vec::new(),
                created_at: now,
            }),
        }
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
        let members =
            sqlx::query("SELECT group_name, user_name FROM group_members ORDER BY user_name")
                .fetch_all(&self.inner.pool)
                .await
                .map_err(CatalogError::db("list memberships"))?;
        let mut by_group: HashMap<String, Vec<String>> = HashMap::new();
        for m in members {
            by_group
                .entry(get(&m, "group_name")?)
                .or_default()
                .push(get(&m, "user_name")?);
        }
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

    // ----- grants -----

    /// Grants `level` on `volume` to `subject`, replacing any earlier level.
    pub async fn grant(&self, subject: &Subject, volume: &str, level: Access) -> Result<Grant> {
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

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        self.inner
            .pool
            .begin()
            .await
            .map_err(CatalogError::db("begin"))
    }
}

/// The access level from the parts that decide it: admin role, ownership, grants, publicity.
fn level_for(
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

/// Words of a search query: alphanumeric runs, lowercased, deduplicated. Only these reach the
/// full-text engines, so no query syntax can be injected.
fn search_terms(q: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in q.split(|c: char| !c.is_alphanumeric()) {
        let word = word.to_lowercase();
        if !word.is_empty() && !terms.contains(&word) {
            terms.push(word);
        }
    }
    terms.truncate(16);
    terms
}

async fn sqlite_url(url: &str) -> Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return Ok(url.to_string());
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|source| CatalogError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    Ok(if url.contains('?') {
        url.to_string()
    } else {
        format!("{url}?mode=rwc")
    })
}

async fn ensure_user(tx: &mut sqlx::Transaction<'_, sqlx::Any>, name: &str) -> Result<()> {
    let found: Option<String> = sqlx::query_scalar("SELECT name FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(CatalogError::db("read user"))?;
    match found {
        Some(_) => Ok(()),
        None => Err(CatalogError::invalid(
            "owner",
            format!("user `{name}` does not exist"),
        )),
    }
}

fn volume_from_new(new: NewVolume, now: Timestamp) -> Result<Volume> {
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
    };
    validate_volume(&v)?;
    Ok(v)
}

fn validate_volume(v: &Volume) -> Result<()> {
    if v.backend.trim().is_empty() {
        return Err(CatalogError::invalid("backend", "a volume needs a backend"));
    }
    validate_descriptive(&v.title, &v.description, &v.tags, v.calib_level)
}

fn apply_patch(v: &mut Volume, p: VolumePatch) -> Result<()> {
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
    validate_volume(v)
}

fn bind_volume<'q>(
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
        .bind(v.updated_at.0))
}

fn get<'r, T>(row: &'r AnyRow, column: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(|e| CatalogError::Corrupt {
        what: column.to_string(),
        message: e.to_string(),
    })
}

fn volume_from_row(row: &AnyRow) -> Result<Volume> {
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
        kind: VolumeKind::parse(&get::<String>(row, "kind")?)?,
        read_only: get::<i64>(row, "read_only")? != 0,
        public_read: get::<i64>(row, "public_read")? != 0,
        owner: get(row, "owner")?,
        extra: serde_json::from_str(&extra).map_err(|e| corrupt("extra", e))?,
        created_at: Timestamp(get(row, "created_at")?),
        updated_at: Timestamp(get(row, "updated_at")?),
        last_scan: scan,
        id,
    })
}

fn user_from_row(row: &AnyRow, groups: Vec<String>) -> Result<User> {
    Ok(User {
        name: get(row, "name")?,
        display_name: get(row, "display_name")?,
        admin: get::<i64>(row, "admin")? != 0,
        create_workspaces: get::<i64>(row, "create_workspaces")? != 0,
        groups,
        created_at: Timestamp(get(row, "created_at")?),
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_strip_syntax() {
        assert_eq!(
            search_terms("Gaia DR3 \"OR\" * -x gaia"),
            vec!["gaia", "dr3", "or", "x"]
        );
        assert!(search_terms("  ** ").is_empty());
    }

    #[tokio::test]
    async fn sqlite_urls_gain_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/c.db", dir.path().display());
        assert_eq!(sqlite_url(&url).await.unwrap(), format!("{url}?mode=rwc"));
        assert!(dir.path().join("sub").is_dir());
    }
}
