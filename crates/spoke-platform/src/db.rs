//! Postgres: one pool per service, one schema per service, migrations embedded and run at start-up.
//!
//! Every connection of the pool has `search_path` set to the service's schema, so SQL in the
//! service crates names tables without a schema prefix and the same binary can be pointed at
//! another schema (tests use a fresh database per test instead).
//!
//! Two migrators share the schema: the platform's (outbox and inbox tables, versions < 100) and
//! the service's own (versions >= 100). Each ignores the other's versions.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::ConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::config::{DatabaseConfig, is_identifier};
use crate::{Error, Result};

/// The platform's own migrations (outbox, inbox).
pub static PLATFORM_MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connects, creates the schema if needed and runs the platform's and the service's migrations.
pub async fn connect_and_migrate(
    cfg: &DatabaseConfig,
    default_schema: &str,
    migrator: &Migrator,
) -> Result<PgPool> {
    let schema = cfg
        .schema
        .clone()
        .unwrap_or_else(|| default_schema.to_string());
    if !is_identifier(&schema) {
        return Err(Error::Config(format!(
            "database schema {schema:?} is not a valid identifier"
        )));
    }
    let base: PgConnectOptions = cfg
        .url
        .expose_secret()
        .parse()
        .map_err(|e| Error::Config(format!("database.url is not a valid Postgres URL: {e}")))?;
    let base = base.log_statements(tracing::log::LevelFilter::Trace);

    // Create the schema with a plain connection first: the pool's search_path points into it.
    {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .connect_with(base.clone())
            .await?;
        // Concurrent first starts of replicas race on CREATE SCHEMA; serialise them.
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('spoke.create_schema'))")
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        pool.close().await;
    }

    let options = base.options([("search_path", schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(Duration::from_secs(cfg.connect_timeout_secs))
        .connect_with(options)
        .await?;
    run_migrations(&pool, migrator).await?;
    Ok(pool)
}

/// Runs the platform's and the service's migrations (idempotent, safe across replicas).
pub async fn run_migrations(pool: &PgPool, migrator: &Migrator) -> Result<()> {
    let mut platform = Migrator {
        migrations: PLATFORM_MIGRATOR.migrations.clone(),
        ..Migrator::DEFAULT
    };
    platform.set_ignore_missing(true);
    platform.run(pool).await?;
    let mut service = Migrator {
        migrations: migrator.migrations.clone(),
        ..Migrator::DEFAULT
    };
    service.set_ignore_missing(true);
    service.run(pool).await?;
    Ok(())
}

/// `SELECT 1` for readiness.
pub async fn ping(pool: &PgPool) -> Result<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
