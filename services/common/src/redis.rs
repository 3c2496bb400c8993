//! Redis pools with explicit timeouts, and one way to run a command under a deadline.
//!
//! The crates' defaults can wait for seconds, or forever, on a Redis that is
//! paused or gone. Here every connection open, pool checkout and command is bounded
//! by the [`RedisConfig`] timeouts, so a sick Redis costs a caller milliseconds.

use std::{future::Future, sync::Arc, time::Duration};

use deadpool_redis::{PoolConfig, Runtime, Timeouts};

use crate::config::RedisConfig;

pub use deadpool_redis::Connection;

/// Why a Redis call failed. Every variant means "treat Redis as unavailable now".
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("no Redis connection: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("Redis command failed: {0}")]
    Command(#[from] redis::RedisError),
}

/// The Redis URL could not be turned into a pool.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL: {0}")]
pub struct RedisSetupError(String);

/// A pool for one Redis role, with its key prefix and command deadline.
#[derive(Clone)]
pub struct RedisPool {
    pool: deadpool_redis::Pool,
    deadline: Duration,
    prefix: Arc<str>,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password, so it is not shown.
        f.debug_struct("RedisPool").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisPool {
    /// Builds the pool; connections open lazily, so Redis may be down at start.
    pub fn new(url: &str, config: &RedisConfig) -> Result<Self, RedisSetupError> {
        // Validate the URL here so a typo stops the process at start.
        redis::Client::open(url).map_err(|e| RedisSetupError(e.to_string()))?;
        let mut pool_config = PoolConfig::new(config.redis_pool_size as usize);
        pool_config.timeouts = Timeouts {
            wait: Some(config.redis_pool_wait_timeout),
            create: Some(config.redis_connect_timeout),
            recycle: Some(config.redis_response_timeout),
        };
        let pool = deadpool_redis::Config {
            url: Some(url.to_owned()),
            connection: None,
            pool: Some(pool_config),
        }
        .create_pool(Some(Runtime::Tokio1))
        .map_err(|e| RedisSetupError(e.to_string()))?;
        Ok(Self {
            pool,
            deadline: config.redis_pool_wait_timeout + config.redis_response_timeout,
            prefix: config.redis_key_prefix.as_str().into(),
        })
    }

    /// The prefix every key of this deployment starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs `operation` on a pooled connection; checkout and command together must
    /// finish within the pool-wait plus response timeout.
    pub async fn run<T, F, Fut>(&self, operation: F) -> Result<T, RedisError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        let work = async {
            let connection = self.pool.get().await?;
            Ok(operation(connection).await?)
        };
        match tokio::time::timeout(self.deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::Timeout(self.deadline)),
        }
    }

    /// One PING, for readiness.
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.run(|mut connection| async move {
            redis::cmd("PING").query_async::<()>(&mut connection).await
        })
        .await
    }
}
