//! Redis pools with explicit timeouts, and one way to run a command under a deadline.
//!
//! The crates' defaults can wait for seconds, or forever, on a Redis that is
//! paused or gone. Here every connection open, pool checkout and command is bounded
//! by the [`RedisConfig`] timeouts, so a sick Redis costs a caller milliseconds.
//!
//! Each role's URL names either one node (`redis://host:6379/0`) or a Redis Cluster:
//! several comma-separated seed URLs (`redis://a:7000,redis://b:7001`), or one URL
//! with the `redis-cluster://` scheme. Callers see one [`Connection`] type either
//! way; every multi-key operation in this project is hash-tagged into one slot.

use std::{future::Future, sync::Arc, time::Duration};

use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use redis::{Cmd, Pipeline, RedisFuture, Value, aio::ConnectionLike};

use crate::config::RedisConfig;

/// A pooled connection to one node or to a cluster.
pub enum Connection {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

#[derive(Clone)]
enum Backend {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

/// The seed URLs of a cluster URL, or `None` for a single node.
pub(crate) fn cluster_seeds(url: &str) -> Option<Vec<String>> {
    if url.contains(',') || url.starts_with("redis-cluster://") {
        Some(
            url.split(',')
                .map(|seed| {
                    let seed = seed.trim();
                    match seed.strip_prefix("redis-cluster://") {
                        Some(rest) => format!("redis://{rest}"),
                        None if seed.contains("://") => seed.to_owned(),
                        None => format!("redis://{seed}"),
                    }
                })
                .collect(),
        )
    } else {
        None
    }
}

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
    pool: Backend,
    deadline: Duration,
    prefix: Arc<str>,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password, so it is not shown.
        f.debug_struct("RedisPool")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisPool {
    /// Builds the pool; connections open lazily, so Redis may be down at start.
    pub fn new(url: &str, config: &RedisConfig) -> Result<Self, RedisSetupError> {
        let mut pool_config = PoolConfig::new(config.redis_pool_size as usize);
        pool_config.timeouts = Timeouts {
            wait: Some(config.redis_pool_wait_timeout),
            create: Some(config.redis_connect_timeout),
            recycle: Some(config.redis_response_timeout),
        };
        let invalid = |e: &dyn std::fmt::Display| RedisSetupError(e.to_string());
        let pool = match cluster_seeds(url) {
            Some(urls) => {
                for seed in &urls {
                    // Validate each seed here so a typo stops the process at start.
                    redis::Client::open(seed.as_str()).map_err(|e| invalid(&e))?;
                }
                let config = deadpool_redis::cluster::Config {
                    urls: Some(urls),
                    connections: None,
                    pool: Some(pool_config),
                    read_from_replicas: false,
                };
                Backend::Cluster(
                    config
                        .create_pool(Some(Runtime::Tokio1))
                        .map_err(|e| invalid(&e))?,
                )
            }
            None => {
                redis::Client::open(url).map_err(|e| invalid(&e))?;
                let config = deadpool_redis::Config {
                    url: Some(url.to_owned()),
                    connection: None,
                    pool: Some(pool_config),
                };
                Backend::Single(
                    config
                        .create_pool(Some(Runtime::Tokio1))
                        .map_err(|e| invalid(&e))?,
                )
            }
        };
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
            let connection = match &self.pool {
                Backend::Single(pool) => Connection::Single(pool.get().await?),
                Backend::Cluster(pool) => Connection::Cluster(pool.get().await?),
            };
            Ok(operation(connection).await?)
        };
        match tokio::time::timeout(self.deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::Timeout(self.deadline)),
        }
    }

    /// Whether this pool talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.pool, Backend::Cluster(_))
    }

    /// Exports the pool's usage as `<name>_connections` (open) and
    /// `<name>_idle_connections`, e.g. `redis_cache_pool_connections`.
    pub fn register_metrics(
        &self,
        metrics: &crate::metrics::Metrics,
        open_name: &'static str,
        idle_name: &'static str,
    ) {
        let status = |backend: &Backend| match backend {
            Backend::Single(pool) => pool.status(),
            Backend::Cluster(pool) => pool.status(),
        };
        let pool = self.pool.clone();
        metrics.register_gauge_fn(open_name, "Open Redis connections in the pool", move || {
            status(&pool).size as i64
        });
        let pool = self.pool.clone();
        metrics.register_gauge_fn(idle_name, "Idle Redis connections in the pool", move || {
            status(&pool).available as i64
        });
    }

    /// One PING, for readiness.
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.run(|mut connection| async move {
            redis::cmd("PING").query_async::<()>(&mut connection).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::cluster_seeds;

    #[test]
    fn one_url_is_a_single_node_and_a_list_or_cluster_scheme_is_a_cluster() {
        assert_eq!(cluster_seeds("redis://127.0.0.1:6379/0"), None);
        assert_eq!(
            cluster_seeds("redis://a:7000, redis://b:7001"),
            Some(vec!["redis://a:7000".into(), "redis://b:7001".into()])
        );
        assert_eq!(
            cluster_seeds("redis-cluster://a:7000"),
            Some(vec!["redis://a:7000".into()])
        );
        assert_eq!(
            cluster_seeds("redis://a:7000,b:7001"),
            Some(vec!["redis://a:7000".into(), "redis://b:7001".into()])
        );
    }
}
