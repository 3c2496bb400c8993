//! PostgreSQL pool with explicit timeouts, and start-up migrations that wait for the server.

use std::{str::FromStr, time::Duration};

use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::PostgresConfig;

/// Why the pool could not be made or the schema migrated.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    InvalidUrl(sqlx::Error),
    #[error("PostgreSQL did not answer within {0:?}: {1}")]
    Unreachable(Duration, sqlx::Error),
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Builds a pool that connects lazily: start-up does not fail while PostgreSQL is
/// briefly away, and every acquire is bounded by `DATABASE_ACQUIRE_TIMEOUT_MS`.
pub fn pool(config: &PostgresConfig, url: &str) -> Result<PgPool, PostgresError> {
    let statement_timeout = config.database_statement_timeout.as_millis().to_string();
    let options = PgConnectOptions::from_str(url)
        .map_err(PostgresError::InvalidUrl)?
        .options([("statement_timeout", statement_timeout.as_str())]);
    Ok(PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        .acquire_timeout(config.database_acquire_timeout)
        // Checking each connection on checkout costs a round trip; a dead one fails its
        // query instead and the pool drops it.
        .test_before_acquire(false)
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options))
}

/// Runs `migrator`, retrying while PostgreSQL is unreachable for up to `startup_timeout`.
pub async fn migrate(
    pool: &PgPool,
    migrator: &Migrator,
    startup_timeout: Duration,
) -> Result<(), PostgresError> {
    let deadline = tokio::time::Instant::now() + startup_timeout;
    loop {
        match ping(pool).await {
            Ok(()) => break,
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(PostgresError::Unreachable(startup_timeout, error));
            }
            Err(error) => {
                tracing::warn!(%error, "waiting for PostgreSQL");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    migrator.run(pool).await?;
    Ok(())
}

/// One round trip, for readiness.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// Exports the pool's usage: `db_pool_connections` (open) and `db_pool_idle_connections`.
pub fn register_metrics(metrics: &crate::metrics::Metrics, pool: &PgPool) {
    let open = pool.clone();
    metrics.register_gauge_fn(
        "db_pool_connections",
        "Open PostgreSQL connections in the pool",
        move || i64::from(open.size()),
    );
    let idle = pool.clone();
    metrics.register_gauge_fn(
        "db_pool_idle_connections",
        "Idle PostgreSQL connections in the pool",
        move || idle.num_idle() as i64,
    );
}
