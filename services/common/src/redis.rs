//! Redis: one multiplexed connection per role, explicit timeouts, and one way to run a
//! command under a deadline.
//!
//! Every task of the process shares its role's connection. A clone costs nothing and
//! a command is one round trip: there is no checkout, and so no checkout ping (a pool
//! spent a second round trip per command on one: STYLE.md rule 16). Commands of many
//! tasks are pipelined on one socket, so nothing may rely on the state of a connection
//! between two commands: no WATCH/MULTI, no SELECT. A change of several keys is one Lua
//! script, sent as a [`redis::Script`]: EVALSHA with the script's hash, loaded (SCRIPT
//! LOAD, on every node of a cluster) only when Redis answers NOSCRIPT.
//!
//! Each role's URL names either one node (`redis://host:6379/0`), served by a
//! [`ConnectionManager`], or a Redis Cluster: several comma-separated seed URLs
//! (`redis://a:7000,redis://b:7001`), or one URL with the `redis-cluster://` scheme,
//! served by the cluster client's connection (one multiplexed connection per node,
//! routing by slot, following MOVED and ASK). Callers see one [`Connection`] type either
//! way; every multi-key operation in this project is hash-tagged into one slot.
//!
//! Redis may be down when the process starts and may restart under it:
//! - nothing waits for Redis at start: the connection opens in a task of its own;
//! - a command that finds the connection broken starts a reconnection in a task of its
//!   own (single node: [`RECONNECT_ATTEMPTS`] attempts with exponential backoff from
//!   [`RECONNECT_MIN_DELAY`]; while Redis stays down, the next call starts another round;
//!   a cluster reconnects each node and refreshes its slots itself) and is sent once
//!   more on the reopened connection, so the first call after a Redis restart succeeds
//!   as it did with a pool's checkout ping; a refused connection fails the call;
//! - each attempt is bounded by `REDIS_CONNECT_TIMEOUT_MS`, each answer by
//!   `REDIS_RESPONSE_TIMEOUT_MS`, and a whole call, reconnection included, by their sum:
//!   a caller never waits for Redis longer than that (and callers with a tighter budget,
//!   like deck-service's cache, bound it further).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Duration,
};

use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClientBuilder, ClusterConfig},
    cluster_async::ClusterConnection,
};

use crate::config::RedisConfig;

/// Connection attempts of one reconnection round on a single node (the first and
/// its retries). A round is short so that, while Redis is down, calls fail soon
/// instead of waiting out their deadline; the next call starts the next round.
pub const RECONNECT_ATTEMPTS: usize = 3;
/// Pause before the second attempt of a round; it doubles for each later one, plus
/// jitter of up to as much again (so a round against a closed port ends within
/// 150–300 ms).
pub const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// How often the cluster client may retry one command: after MOVED/ASK, TRYAGAIN, a
/// node it had to reconnect, or a timeout. A retried command may run twice; every
/// script of this project gives the same outcome when run again (a fill compares its
/// token, a replayed rotation is a grace replay, a rate-limit check counts one more hit).
const CLUSTER_RETRIES: u32 = 3;
/// Shortest and longest pause before a cluster retry, in milliseconds (the crate's
/// defaults start at 1.28 s, past every deadline here).
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (10, 100);

/// A clone of the role's shared connection: one node or a cluster.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Whether `error` says the connection that was open broke under the command (Redis
/// closed it, restarted, or the socket was reset), as opposed to Redis refusing a new
/// connection, not answering in time, or answering with an error.
fn found_connection_broken(error: &redis::RedisError) -> bool {
    error.is_connection_dropped() && !error.is_connection_refusal()
}

impl ConnectionLike for Connection {
    /// On a single node, a command that finds the shared connection broken (the first
    /// after Redis restarted) is sent once more, on the connection the manager reopens at
    /// once: a pool's checkout ping replaced a dead connection before the command, and
    /// this keeps that without the ping's round trip per command. The cluster client
    /// retries such commands itself ([`CLUSTER_RETRIES`]); every command of this project
    /// may run twice for the same reason. A refused connection is not retried (Redis is
    /// down: the caller should fail fast), nor a timeout (the deadline is spent).
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => Box::pin(async move {
                match connection.req_packed_command(cmd).await {
                    Err(error) if found_connection_broken(&error) => {
                        connection.req_packed_command(cmd).await
                    }
                    outcome => outcome,
                }
            }),
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
            // Sent once more after a broken connection, like one command (above).
            Self::Single(connection) => Box::pin(async move {
                match connection
                    .req_packed_commands(pipeline, offset, count)
                    .await
                {
                    Err(error) if found_connection_broken(&error) => {
                        connection
                            .req_packed_commands(pipeline, offset, count)
                            .await
                    }
                    outcome => outcome,
                }
            }),
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
    #[error("Redis command failed: {0}")]
    Command(#[from] redis::RedisError),
}

/// The Redis URL could not be turned into a client.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL: {0}")]
pub struct RedisSetupError(String);

/// What `/metrics` shows of one role.
#[derive(Default)]
struct Usage {
    /// Calls started and not yet finished (waiting for a connection or an answer).
    in_flight: AtomicI64,
    /// Whether the last call that ended got an answer from Redis.
    reachable: AtomicBool,
}

impl Usage {
    fn record<T>(&self, outcome: &Result<T, RedisError>) {
        let reachable = match outcome {
            Ok(_) => true,
            Err(RedisError::Timeout(_)) => false,
            // A server error (NOSCRIPT, OOM, a script's error) is an answer.
            // I/O errors include refused and dropped connections and timeouts.
            Err(RedisError::Command(error)) => {
                !(error.is_io_error() || error.is_unrecoverable_error())
            }
        };
        self.reachable.store(reachable, Ordering::Relaxed);
    }
}

/// Counts one call in flight until dropped, also when its caller goes away mid-call.
struct InFlight(Arc<Usage>);

impl InFlight {
    fn enter(usage: &Arc<Usage>) -> Self {
        usage.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(usage.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One Redis role: its shared connection, key prefix and call deadline; cheap to clone.
///
/// (Named for the pool it replaced; it holds one multiplexed connection, or one per
/// cluster node.)
#[derive(Clone)]
pub struct RedisPool {
    connection: Connection,
    deadline: Duration,
    prefix: Arc<str>,
    usage: Arc<Usage>,
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
    /// Builds the role's client and starts opening its connection in the background,
    /// so Redis may be down at start. Must be called inside a Tokio runtime.
    pub fn new(url: &str, config: &RedisConfig) -> Result<Self, RedisSetupError> {
        let invalid = |e: &dyn std::fmt::Display| RedisSetupError(e.to_string());
        let deadline = config.redis_connect_timeout + config.redis_response_timeout;
        let connection = match cluster_seeds(url) {
            Some(seeds) => {
                let (min_wait, max_wait) = CLUSTER_RETRY_WAIT_MS;
                let client = ClusterClientBuilder::new(seeds)
                    .overall_response_timeout(Some(deadline))
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(min_wait)
                    .max_retry_wait(max_wait)
                    .build()
                    .map_err(|e| invalid(&e))?;
                // The per-node timeouts go here, not on the builder: a connection's
                // config replaces the builder's response timeout, also with "none".
                let timeouts = ClusterConfig::new()
                    .set_connection_timeout(config.redis_connect_timeout)
                    .set_response_timeout(config.redis_response_timeout);
                // "Pending": the connection's own task connects the nodes; a command
                // sent before that waits for it (within its deadline).
                Connection::Cluster(client.get_pending_async_connection_with_config(timeouts))
            }
            None => {
                let client = redis::Client::open(url).map_err(|e| invalid(&e))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.redis_connect_timeout))
                    .set_response_timeout(Some(config.redis_response_timeout))
                    .set_number_of_retries(RECONNECT_ATTEMPTS - 1)
                    .set_min_delay(RECONNECT_MIN_DELAY);
                Connection::Single(
                    ConnectionManager::new_lazy_with_config(client, manager_config)
                        .map_err(|e| invalid(&e))?,
                )
            }
        };
        let pool = Self {
            connection,
            deadline,
            prefix: config.redis_key_prefix.as_str().into(),
            usage: Arc::new(Usage::default()),
        };
        pool.connect_in_background();
        Ok(pool)
    }

    /// Drives the first connection in a task of its own: the manager's lazy connection
    /// is otherwise opened by whichever caller comes first, and a caller that gives up
    /// would leave it half-open for the next. Also gives `/metrics` a first reading.
    fn connect_in_background(&self) {
        let (mut connection, usage) = (self.connection.clone(), self.usage.clone());
        // Bounded without a deadline of ours: a single node's round of attempts is
        // finite, and the cluster client applies the overall deadline itself.
        tokio::spawn(async move {
            let outcome = redis::cmd("PING")
                .query_async::<()>(&mut connection)
                .await
                .map_err(RedisError::from);
            if let Err(error) = &outcome {
                tracing::warn!(%error, "Redis is not reachable yet; calls will reconnect");
            }
            usage.record(&outcome);
        });
    }

    /// The prefix every key of this deployment starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs `operation` on a clone of the shared connection; waiting for a connection
    /// and the answer together must finish within the connect plus response timeout.
    pub async fn run<T, F, Fut>(&self, operation: F) -> Result<T, RedisError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        let _in_flight = InFlight::enter(&self.usage);
        let outcome =
            match tokio::time::timeout(self.deadline, operation(self.connection.clone())).await {
                Ok(result) => result.map_err(RedisError::from),
                Err(_) => Err(RedisError::Timeout(self.deadline)),
            };
        self.usage.record(&outcome);
        outcome
    }

    /// Calls waiting for a connection or an answer now (the `_calls_in_flight` gauge).
    pub fn calls_in_flight(&self) -> i64 {
        self.usage.in_flight.load(Ordering::Relaxed)
    }

    /// The deadline of one [`RedisPool::run`]: connect plus response timeout.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Whether this role talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.connection, Connection::Cluster(_))
    }

    /// Exports the role's state as two gauges, e.g. `redis_cache_reachable` (1 when
    /// the last call got an answer from Redis, 0 when it found no connection or no answer
    /// in time) and `redis_cache_calls_in_flight` (calls waiting for a connection or an
    /// answer now).
    pub fn register_metrics(
        &self,
        metrics: &crate::metrics::Metrics,
        reachable_name: &'static str,
        in_flight_name: &'static str,
    ) {
        let usage = self.usage.clone();
        metrics.register_gauge_fn(
            reachable_name,
            "1 when the last Redis call got an answer, 0 when it found no connection or no answer in time",
            move || i64::from(usage.reachable.load(Ordering::Relaxed)),
        );
        let usage = self.usage.clone();
        metrics.register_gauge_fn(
            in_flight_name,
            "Redis calls waiting for a connection or an answer",
            move || usage.in_flight.load(Ordering::Relaxed),
        );
    }

    /// One PING (on a cluster, to every primary), for readiness.
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
