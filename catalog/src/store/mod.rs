//! The catalogue's records in SQL, one code path for SQLite and PostgreSQL.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

mod access;
mod cors;
mod grants;
mod groups;
mod keys;
mod peers;
mod quotas;
mod science;
mod tokens;
mod users;
mod view;
mod volumes;

pub use keys::{KeyAuth, Terms};
pub use peers::{PeerCredentials, RefreshLock};
pub use quotas::{QuotaScope, Usage};
pub use science::{ScienceExtent, ScienceObject, ScienceQuery, SkyRegion};
pub use view::{CatalogView, DEFAULT_REFRESH_INTERVAL, SessionProblem};

use crate::secret::SecretBox;
use crate::{CatalogConfig, CatalogError, Dialect, Result, migrate, redact_url};

const VOLUME_COLUMNS: &str = "v.id, v.title, v.description, v.mission, v.instrument, v.tags, \
     v.license, v.dataproduct_type, v.calib_level, v.backend, v.prefix, v.kind, v.read_only, \
     v.public_read, v.owner, v.extra, v.created_at, v.updated_at, v.scan_objects, v.scan_bytes, \
     v.scanned_at, v.quota_bytes, v.quota_objects";

/// The ids of the volumes a user reaches through grants to them or to one of their groups.
const GRANTED_TO_USER: &str = "SELECT volume_id, level FROM grants WHERE \
     (subject_kind = 'user' AND subject = $1) OR (subject_kind = 'group' AND subject IN \
     (SELECT group_name FROM group_members WHERE user_name = $1))";

/// A count as the catalogue stores it (BIGINT): past i64::MAX is as good as unlimited.
pub(super) fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

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
    /// What every request consults, in memory (see [`view`]).
    live: view::Live,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

/// How long a request waits for a database connection by default (`catalog.acquire_timeout`).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection pool's bounds: connections held, and how long a request waits for one.
#[derive(Debug, Clone, Copy)]
pub struct Pooling {
    /// Default: 8 (SQLite: 4).
    pub max_connections: Option<u32>,
    pub acquire_timeout: Duration,
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
        let refresh = config.refresh_interval.unwrap_or(DEFAULT_REFRESH_INTERVAL);
        let pool = Pooling {
            max_connections: config.max_connections,
            acquire_timeout: config.acquire_timeout.unwrap_or(DEFAULT_ACQUIRE_TIMEOUT),
        };
        let catalog = Self::connect_refreshing(&url, pool, secrets, refresh).await?;
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

    /// Connects to `url`, creating an SQLite file if needed, and brings the schema up to date;
    /// changes made elsewhere are seen within [`DEFAULT_REFRESH_INTERVAL`].
    pub async fn connect(
        url: &str,
        max_connections: Option<u32>,
        secrets: SecretBox,
    ) -> Result<Self> {
        let pool = Pooling {
            max_connections,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        };
        Self::connect_refreshing(url, pool, secrets, DEFAULT_REFRESH_INTERVAL).await
    }

    /// [`Catalog::connect`], seeing changes made elsewhere within `refresh_interval` (at
    /// once on PostgreSQL while its notifications arrive).
    pub async fn connect_refreshing(
        url: &str,
        pooling: Pooling,
        secrets: SecretBox,
        refresh_interval: Duration,
    ) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let connect_url = match dialect {
            Dialect::Sqlite => sqlite_url(url).await?,
            Dialect::Postgres => url.to_string(),
        };
        let max = pooling.max_connections.unwrap_or(match dialect {
            Dialect::Sqlite => 4,
            Dialect::Postgres => 8,
        });
        let sqlite = dialect == Dialect::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(pooling.acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // In WAL mode a commit is an append to the log, synced at checkpoints:
                        // as durable as the objects' own files (which are not synced either)
                        // and consistent after any crash, without the journal file made,
                        // synced twice and unlinked per transaction of the default mode.
                        sqlx::Executor::execute(&mut *conn, "PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await
            .map_err(CatalogError::db("connect"))?;
        if sqlite {
            wal_mode(&pool).await;
        }
        let version = migrate::run(&pool, dialect).await?;
        tracing::debug!(url = %redact_url(url), version, "catalogue open");
        // The first view is loaded by the first reader: a handle on a catalogue whose secret
        // key is wrong must still open, to report that.
        let live = view::Live::new(refresh_interval);
        let catalog = Self {
            inner: Arc::new(Inner {
                pool,
                dialect,
                secrets,
                url: redact_url(url),
                live,
            }),
        };
        view::spawn_watcher(
            &catalog,
            (dialect == Dialect::Postgres).then(|| url.to_string()),
        );
        Ok(catalog)
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

    /// This catalogue's site id: random, made on first use and shared by every gateway on the
    /// catalogue (replicas are one site). Peers carry it in forwarded reductions to find loops.
    pub async fn site_id(&self) -> Result<String> {
        let read = || async {
            sqlx::query_scalar::<_, String>("SELECT value FROM archway_meta WHERE name = 'site_id'")
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(CatalogError::db("read the site id"))
        };
        if let Some(id) = read().await? {
            return Ok(id);
        }
        let mut raw = [0u8; 12];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| CatalogError::Crypto)?;
        sqlx::query(
            "INSERT INTO archway_meta (name, value) VALUES ('site_id', $1) ON CONFLICT (name) DO NOTHING",
        )
        .bind(hex::encode(raw))
        .execute(&self.inner.pool)
        .await
        .map_err(CatalogError::db("write the site id"))?;
        // Another replica may have written its own first: the stored one is the site's.
        read().await?.ok_or_else(|| CatalogError::Corrupt {
            what: "archway_meta site_id".into(),
            message: "written, then not found".into(),
        })
    }

    /// Seals `plain` with the catalogue key for a purpose of the caller's, named by `context`
    /// (what one context sealed does not open under another): the web pages' session cookies,
    /// which every replica sharing the key can open.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String> {
        self.inner.secrets.seal(context, plain)
    }

    /// Opens what [`Catalog::seal`] sealed with the same context; anything else (changed,
    /// truncated, sealed by another key or context) is refused.
    pub fn open_sealed(&self, context: &str, sealed: &str) -> Result<Vec<u8>> {
        self.inner.secrets.open(context, sealed)
    }

    /// Verifies that the secret key opens this catalogue's secrets (and records a check value
    /// on first use), so a wrong key is reported at start-up rather than as failed logins.
    pub(super) async fn check_secret_key(&self) -> Result<()> {
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

/// Puts an SQLite catalogue in WAL mode (kept in the file: once is enough). Where it cannot be
/// (an in-memory or read-only database, another process holding a lock at this moment), the
/// catalogue works on in the mode it has.
async fn wal_mode(pool: &AnyPool) {
    match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
        .fetch_one(pool)
        .await
    {
        Ok(mode) if mode.eq_ignore_ascii_case("wal") => {}
        Ok(mode) => tracing::debug!(mode, "the SQLite catalogue keeps its journal mode"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot put the SQLite catalogue in WAL mode; it keeps its journal mode")
        }
    }
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

/// An insert's outcome: a unique-key violation is `AlreadyExists` for `kind` `id`; any other
/// failure a database error during `op`.
fn inserted<T>(
    result: std::result::Result<T, sqlx::Error>,
    kind: &'static str,
    id: &str,
    op: &'static str,
) -> Result<T> {
    match result {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(CatalogError::AlreadyExists {
                kind,
                id: id.to_string(),
            })
        }
        other => other.map_err(CatalogError::db(op)),
    }
}

impl Catalog {
    /// Every group membership, keyed by one side and listing the other, sorted: users by group
    /// (`by_group`) or groups by user.
    pub(super) async fn memberships(&self, by_group: bool) -> Result<HashMap<String, Vec<String>>> {
        let (key, value) = if by_group {
            ("group_name", "user_name")
        } else {
            ("user_name", "group_name")
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {key}, {value} FROM group_members ORDER BY {value}"
        )))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(CatalogError::db("list memberships"))?;
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for m in rows {
            out.entry(get(&m, key)?).or_default().push(get(&m, value)?);
        }
        Ok(out)
    }
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

fn get<'r, T>(row: &'r AnyRow, column: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(|e| CatalogError::Corrupt {
        what: column.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn search_terms_strip_syntax() {
        assert_eq!(
            search_terms("Gaia DR3 \"OR\" * -x gaia"),
            vec!["gaia", "dr3", "or", "x"]
        );
        assert!(search_terms("  ** ").is_empty());
    }

    #[tokio::test]
    pub(super) async fn sqlite_urls_gain_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/c.db", dir.path().display());
        assert_eq!(sqlite_url(&url).await.unwrap(), format!("{url}?mode=rwc"));
        assert!(dir.path().join("sub").is_dir());
    }

    #[tokio::test]
    pub(super) async fn an_sqlite_catalogue_runs_in_wal_mode_with_normal_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/c.db", dir.path().display());
        let secrets = SecretBox::from_bytes(&[7u8; 32]).unwrap();
        let catalog = Catalog::connect(&url, Some(2), secrets).await.unwrap();
        // Every connection of the pool: hold two at once.
        let pool = &catalog.inner.pool;
        let (mut a, mut b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
        for conn in [&mut a, &mut b] {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(sync, 1, "synchronous is NORMAL (1)");
        }
    }
}
