//! The volume catalogue: what each volume is, where it lives, and who may read or write it.
//!
//! The catalogue answers "where" (a backend name and a prefix) and "who may" (users, groups,
//! grants, public volumes); it never touches object bytes. It is stored in SQLite (a file in the
//! data directory, the default) or PostgreSQL (shared by several gateway replicas). Both run the
//! same code through sqlx's `Any` driver; only the schema migrations and the full-text query
//! differ per dialect, and the same test suite runs against both.
//!
//! Secrets: see [`secret`] for how S3 secrets and API tokens are kept.

pub mod cors;
mod migrate;
pub mod model;
pub mod secret;
mod store;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use cors::CorsRule;
pub use model::*;
pub use secret::SecretBox;
pub use store::{
    Catalog, CatalogView, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_REFRESH_INTERVAL, KeyAuth,
    PeerCredentials, Pooling, QuotaScope, RefreshLock, ScienceExtent, ScienceObject, ScienceQuery,
    SessionProblem, SkyRegion, Terms, Usage,
};

/// The `[catalog]` configuration section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogConfig {
    /// `sqlite:///path/catalog.db`, `sqlite://relative.db` or `postgres://user:pass@host/db`.
    /// Default: `sqlite://<data_dir>/catalog.db`.
    #[serde(default)]
    pub url: Option<String>,
    /// The most database connections this gateway holds. Default: 8 (SQLite: 4).
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// The 32-byte key that seals S3 secrets. Default: `<data_dir>/secret.key`, created on
    /// first start. Replicas sharing one PostgreSQL catalogue must share this file.
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// How often a gateway checks for catalogue changes made by other replicas or processes;
    /// its in-memory view is at most this old (on PostgreSQL, change notifications usually
    /// bring them at once). Default: 1s.
    #[serde(default, with = "humantime_serde")]
    pub refresh_interval: Option<std::time::Duration>,
    /// How long a request waits for a database connection (while the database is down or
    /// every connection is busy) before it is answered "unavailable" (S3 and HTTP 503).
    /// Default: 10s.
    #[serde(default, with = "humantime_serde")]
    pub acquire_timeout: Option<std::time::Duration>,
}

impl CatalogConfig {
    /// Problems with this section, as (key path within the section, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(url) = &self.url
            && let Err(e) = Dialect::of_url(url)
        {
            out.push(("url".to_string(), e.to_string()));
        }
        if let Some(d) = self.refresh_interval
            && !(std::time::Duration::from_millis(10)..=std::time::Duration::from_secs(3600))
                .contains(&d)
        {
            out.push((
                "refresh_interval".to_string(),
                format!("{} is outside 10ms..1h", humantime::format_duration(d)),
            ));
        }
        if let Some(d) = self.acquire_timeout
            && !(std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(300))
                .contains(&d)
        {
            out.push((
                "acquire_timeout".to_string(),
                format!("{} is outside 100ms..5m", humantime::format_duration(d)),
            ));
        }
        if self.max_connections == Some(0) {
            out.push((
                "max_connections".to_string(),
                "must be at least 1".to_string(),
            ));
        }
        out
    }

    /// The database URL, with the default resolved against `data_dir`.
    pub fn resolved_url(&self, data_dir: &Path) -> String {
        match &self.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", data_dir.join("catalog.db").display()),
        }
    }

    pub fn resolved_secret_key_file(&self, data_dir: &Path) -> PathBuf {
        self.secret_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("secret.key"))
    }
}

/// The SQL dialect behind a catalogue URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn of_url(url: &str) -> Result<Self, CatalogError> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(CatalogError::invalid(
                "url",
                format!(
                    "catalogue URL `{}` is neither sqlite:… nor postgres://…",
                    redact_url(url)
                ),
            ))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

/// A URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL: say nothing of it but its scheme.
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "…".to_string(),
        },
    }
}

/// Everything that can go wrong in the catalogue.
/// Not `#[non_exhaustive]`: the fronts of this workspace map it exhaustively, so a new
/// variant does not compile until each of them says what it means.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{kind} `{id}` does not exist")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} `{id}` already exists")]
    AlreadyExists { kind: &'static str, id: String },
    #[error("invalid `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{message}")]
    Conflict { message: String },
    #[error("catalogue database error during {op}: {source}")]
    Database {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("catalogue migration to version {version} failed: {source}")]
    Migration {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error("catalogue secret key {}: {message}", path.display())]
    SecretKey { path: PathBuf, message: String },
    #[error("a sealed secret could not be opened (wrong catalogue secret key?)")]
    Crypto,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt catalogue record {what}: {message}")]
    Corrupt { what: String, message: String },
    /// A write would take a workspace, or the user who owns it, past a quota.
    #[error("the quota of {scope} is {limit} {what}, {usage} in use: the write would exceed it")]
    QuotaExceeded {
        /// The workspace's own quota, or its owner's.
        scope: QuotaScope,
        /// "bytes" or "objects".
        what: &'static str,
        limit: u64,
        usage: u64,
    },
}

impl CatalogError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        CatalogError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| CatalogError::Database { op, source }
    }

    /// True for errors that retrying will not fix (bad input, missing records).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, CatalogError::Database { .. })
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://archway:hunter2@db:5432/cat"),
            "postgres://archway:***@db:5432/cat"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn dialects() {
        assert_eq!(Dialect::of_url("sqlite://a.db").unwrap(), Dialect::Sqlite);
        assert_eq!(
            Dialect::of_url("postgresql://h/db").unwrap(),
            Dialect::Postgres
        );
        assert!(Dialect::of_url("mysql://h/db").is_err());
    }
}
