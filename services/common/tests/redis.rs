//! `common::redis` against real Redis servers: every task shares one connection per
//! node, a Redis that is down at start or restarts is reconnected to without a new
//! client (the first call after a restart goes through), calls fail within their
//! deadline meanwhile, and a frozen Redis costs a call its deadline, not more.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::time::{Duration, Instant};

use common::{
    config::RedisConfig,
    redis::{RedisError, RedisPool},
};
use test_support::{
    RedisServer,
    redis_monitor::{connections_to, redis_nodes},
};

/// The production defaults: 500 ms to connect, 250 ms for an answer (750 ms a call).
fn config() -> RedisConfig {
    RedisConfig {
        redis_connect_timeout: Duration::from_millis(500),
        redis_response_timeout: Duration::from_millis(250),
        redis_key_prefix: test_support::key_prefix(),
    }
}

/// Generous bound on a call that must fail within its 750 ms deadline (a loaded
/// machine may add scheduling delay, never seconds).
const FAILS_WITHIN: Duration = Duration::from_secs(2);

async fn incr(pool: &RedisPool, key: &str) -> Result<i64, RedisError> {
    let key = key.to_owned();
    pool.run(|mut connection| async move {
        redis::cmd("INCR")
            .arg(&key)
            .query_async::<i64>(&mut connection)
            .await
    })
    .await
}

/// Pings until Redis answers, for at most `within`.
async fn wait_for_answer(pool: &RedisPool, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match pool.ping().await {
            Ok(()) => return,
            Err(error) => assert!(
                Instant::now() < deadline,
                "Redis did not answer again within {within:?}: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node_of(server: &RedisServer) -> Vec<String> {
    vec![format!("127.0.0.1:{}", server.port())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_share_one_connection_per_node() {
    // Arrange: a client on the shared test Redis (one node, or every node of a cluster).
    let url = test_support::redis_url();
    let config = config();
    let key = format!("{}counter:{{one}}", config.redis_key_prefix);
    let pool = RedisPool::new(&url, &config).unwrap();
    pool.ping().await.unwrap();

    // Act
    let calls = (0..1000).map(|_| {
        let (pool, key) = (pool.clone(), key.clone());
        tokio::spawn(async move { incr(&pool, &key).await })
    });
    let mut results = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        results.push(call.await.unwrap());
    }

    // Assert: every call counted, over one connection per node (no pool to grow).
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(incr(&pool, &key).await.unwrap(), 1001);
    let nodes = redis_nodes(&url).await;
    assert_eq!(connections_to(&nodes), nodes.len(), "{nodes:?}");
}

#[tokio::test]
async fn a_client_built_while_redis_is_down_connects_once_redis_is_up() {
    // Arrange: a Redis that is not running yet (its port is known and free).
    let mut redis = RedisServer::start();
    redis.kill();
    let pool = RedisPool::new(&redis.url(), &config()).expect("a client without Redis");

    // Act / Assert: calls fail within their deadline while nothing listens...
    for _ in 0..3 {
        let started = Instant::now();
        assert!(pool.ping().await.is_err(), "no Redis yet");
        assert!(started.elapsed() < FAILS_WITHIN, "{:?}", started.elapsed());
    }
    // ...and succeed once Redis is up, with the same client.
    redis.restart();
    wait_for_answer(&pool, Duration::from_secs(10)).await;
    assert_eq!(connections_to(&node_of(&redis)), 1);
}

#[tokio::test]
async fn after_a_redis_restart_calls_fail_fast_then_succeed_on_the_same_client() {
    // Arrange
    let mut redis = RedisServer::start();
    let pool = RedisPool::new(&redis.url(), &config()).unwrap();
    let key = format!("{}restart:{{r}}", pool.prefix());
    assert_eq!(incr(&pool, &key).await.unwrap(), 1);

    // Act: kill Redis; call a few times; start it again (empty) on the same port.
    redis.kill();
    let mut outage = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        outage.push((incr(&pool, &key).await, started.elapsed()));
    }
    redis.restart();

    // Assert: each call failed within its deadline; afterwards the same client works
    // again, over one connection (the reconnection attempts left none behind).
    for (result, elapsed) in &outage {
        assert!(result.is_err(), "Redis is down: {result:?}");
        assert!(*elapsed < FAILS_WITHIN, "{elapsed:?}");
    }
    wait_for_answer(&pool, Duration::from_secs(10)).await;
    assert_eq!(incr(&pool, &key).await.unwrap(), 1, "a fresh, empty Redis");
    assert_eq!(connections_to(&node_of(&redis)), 1);
}

#[tokio::test]
async fn the_first_call_after_a_redis_restart_succeeds_on_the_reopened_connection() {
    // Arrange: a client whose connection has answered.
    let mut redis = RedisServer::start();
    let pool = RedisPool::new(&redis.url(), &config()).unwrap();
    let key = format!("{}restart:{{first}}", pool.prefix());
    assert_eq!(incr(&pool, &key).await.unwrap(), 1);

    // Act: Redis restarts (empty) while nobody calls; the shared connection is dead.
    redis.stop();
    redis.restart();
    let first = incr(&pool, &key).await;

    // Assert: the call found the dead connection and went through on a new one, as a
    // pool's checkout ping made it; one connection is left.
    assert_eq!(
        first.unwrap(),
        1,
        "the first call after the restart, on a fresh Redis"
    );
    assert_eq!(connections_to(&node_of(&redis)), 1);
}

#[tokio::test]
async fn a_frozen_redis_costs_a_call_its_deadline_and_the_connection_survives_the_thaw() {
    // Arrange
    let redis = RedisServer::start();
    let pool = RedisPool::new(&redis.url(), &config()).unwrap();
    pool.ping().await.unwrap();

    // Act: freeze Redis (SIGSTOP: the connection stays open, nothing answers).
    redis.pause();
    let started = Instant::now();
    let frozen = pool.ping().await;
    let waited = started.elapsed();
    redis.resume();

    // Assert: a timeout within the deadline; after the thaw the same connection answers.
    assert!(
        matches!(&frozen, Err(RedisError::Command(e)) if e.is_timeout())
            || matches!(frozen, Err(RedisError::Timeout(_))),
        "{frozen:?}"
    );
    assert!(waited < FAILS_WITHIN, "{waited:?}");
    wait_for_answer(&pool, Duration::from_secs(5)).await;
    assert_eq!(connections_to(&node_of(&redis)), 1);
}
