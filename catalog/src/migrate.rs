//! Explicit, versioned schema migrations, one list per dialect.
//!
//! Each migration runs in its own transaction together with the row that records it, so a
//! failed migration leaves the previous version intact. On PostgreSQL an advisory lock makes
//! replicas that start at once migrate one after another.

use sqlx::{AnyPool, Executor};

use crate::{CatalogError, Dialect};

/// (version, SQL). Append only: a released migration never changes.
const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_workspace_creators.sql"),
    ),
    (3, include_str!("../migrations/sqlite/0003_cors.sql")),
    (4, include_str!("../migrations/sqlite/0004_generation.sql")),
    (5, include_str!("../migrations/sqlite/0005_scopes.sql")),
    (6, include_str!("../migrations/sqlite/0006_peers.sql")),
    (7, include_str!("../migrations/sqlite/0007_quotas.sql")),
    (8, include_str!("../migrations/sqlite/0008_science.sql")),
    (
        9,
        include_str!("../migrations/sqlite/0009_science_extents.sql"),
    ),
];
const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_workspace_creators.sql"),
    ),
    (3, include_str!("../migrations/postgres/0003_cors.sql")),
    (
        4,
        include_str!("../migrations/postgres/0004_generation.sql"),
    ),
    (5, include_str!("../migrations/postgres/0005_scopes.sql")),
    (6, include_str!("../migrations/postgres/0006_peers.sql")),
    (7, include_str!("../migrations/postgres/0007_quotas.sql")),
    (8, include_str!("../migrations/postgres/0008_science.sql")),
    (
        9,
        include_str!("../migrations/postgres/0009_science_extents.sql"),
    ),
];

/// An arbitrary constant naming Archway's migration lock among other advisory locks.
const PG_LOCK_KEY: i64 = 0x0041_5243_4857_4159; // "ARCHWAY" in ASCII

pub(crate) fn latest(dialect: Dialect) -> i64 {
    migrations(dialect).last().map(|m| m.0).unwrap_or(0)
}

fn migrations(dialect: Dialect) -> &'static [(i64, &'static str)] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    }
}

pub(crate) async fn run(pool: &AnyPool, dialect: Dialect) -> Result<i64, CatalogError> {
    let db = CatalogError::db;
    const SCHEMA_TABLE: &str = "CREATE TABLE IF NOT EXISTS archway_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
    if dialect == Dialect::Postgres {
        // Under the lock too: two replicas creating the table at once both pass IF NOT EXISTS
        // and one fails on PostgreSQL's catalogue ("duplicate key value violates unique
        // constraint pg_type_typname_nsp_index").
        let mut tx = pool.begin().await.map_err(db("create schema table"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .map_err(db("create schema table"))?;
        tx.execute(SCHEMA_TABLE)
            .await
            .map_err(db("create schema table"))?;
        tx.commit().await.map_err(db("create schema table"))?;
    } else {
        pool.execute(SCHEMA_TABLE)
            .await
            .map_err(db("create schema table"))?;
    }

    let mut current = current_version(pool).await?;
    let newest = latest(dialect);
    if current > newest {
        return Err(CatalogError::Conflict {
            message: format!(
                "the catalogue is at schema version {current}, newer than this Archway knows \
                 ({newest}); upgrade Archway"
            ),
        });
    }
    for (version, sql) in migrations(dialect) {
        if *version <= current {
            continue;
        }
        let fail = |source| CatalogError::Migration {
            version: *version,
            source,
        };
        let mut tx = pool.begin().await.map_err(fail)?;
        if dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_LOCK_KEY)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            // Another replica may have migrated while we waited for the lock.
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM archway_schema WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(fail)?;
            if done.is_some() {
                tx.commit().await.map_err(fail)?;
                continue;
            }
        }
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(fail)?;
        sqlx::query("INSERT INTO archway_schema (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(crate::Timestamp::now().0)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(
            version,
            dialect = dialect.as_str(),
            "migrated the catalogue"
        );
        current = *version;
    }
    Ok(current)
}

async fn current_version(pool: &AnyPool) -> Result<i64, CatalogError> {
    let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM archway_schema")
        .fetch_one(pool)
        .await
        .map_err(CatalogError::db("read schema version"))?;
    Ok(v.unwrap_or(0))
}
