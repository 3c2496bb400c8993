//! The rate limiter's circuit breaker (`common::breaker`) against a Redis of the test's
//! own that hangs (SIGSTOP) or is gone: the two flaws of the limiter's former
//! `skip_until` stay fixed (docs/resilience.md, "Circuit breakers").

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::time::Duration;

use common::{
    breaker::{BreakerSettings, BreakerState},
    config::RedisConfig,
    redis::RedisPool,
};
use gateway::rate_limit::RateLimiter;
use prometheus_client::metrics::counter::Counter;
use test_support::RedisServer;

/// A limiter on `redis` whose breaker opens at the first failure for `cooldown`.
fn limiter(redis: &RedisServer, cooldown: Duration) -> RateLimiter {
    let config = RedisConfig {
        redis_connect_timeout: Duration::from_secs(1),
        redis_response_timeout: Duration::from_secs(1),
        redis_key_prefix: test_support::key_prefix(),
    };
    let pool = RedisPool::new(&redis.url(), &config).expect("pool");
    RateLimiter::new(pool, 10, Counter::default()).with_breaker(BreakerSettings {
        threshold: 1,
        cooldown,
    })
}

fn key(limiter: &RateLimiter) -> String {
    limiter.auth_key("203.0.113.9".parse().unwrap())
}

async fn wait_for_state(limiter: &RateLimiter, expected: BreakerState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while limiter.breaker_state() != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the breaker is {:?}, not {expected:?}",
            limiter.breaker_state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_hung_redis_opens_the_breaker_even_when_every_caller_is_cut_before_the_deadline() {
    // Arrange: a limiter that works, then a Redis that stops answering.
    test_support::init();
    let redis = RedisServer::start();
    let limiter = limiter(&redis, Duration::from_secs(600));
    assert!(limiter.check(key(&limiter)).await.is_some());
    redis.pause();

    // Act: callers that give up long before the Redis deadline (a client hanging up,
    // a shorter request timeout).
    for _ in 0..5 {
        let cut =
            tokio::time::timeout(Duration::from_millis(20), limiter.check(key(&limiter))).await;
        assert!(cut.is_err(), "the caller was cut first");
    }

    // Assert: the abandoned checks still ran into the deadline and opened the breaker;
    // the next call fails open.
    wait_for_state(&limiter, BreakerState::Open).await;
    let next = limiter.check(key(&limiter)).await;
    redis.resume();
    assert_eq!(next, None);
    assert_eq!(
        limiter.fail_open_total(),
        1,
        "only the uncut call was answered"
    );
}

#[tokio::test]
async fn after_the_cooldown_one_probe_goes_to_redis_while_the_other_calls_fail_open() {
    // Arrange: the breaker opened by a Redis that was gone; it is back, but hung.
    test_support::init();
    let mut redis = RedisServer::start();
    let cooldown = Duration::from_secs(1);
    let limiter = limiter(&redis, cooldown);
    redis.kill();
    assert_eq!(limiter.check(key(&limiter)).await, None);
    assert_eq!(limiter.breaker_state(), BreakerState::Open);
    redis.restart();
    redis.pause();
    tokio::time::sleep(cooldown + Duration::from_millis(500)).await;

    // Act: ten concurrent calls once the cooldown is over (polled together, as
    // requests arriving at once), watching how many wait on Redis meanwhile.
    let calls = (0..10).map(|_| limiter.check(key(&limiter)));
    let calls = futures::future::join_all(calls);
    let mut most_waiting = 0;
    let watch = async {
        loop {
            most_waiting = most_waiting.max(limiter.pool().calls_in_flight());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let answers = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::select! {
            answers = calls => answers,
            _ = watch => unreachable!("the watch never ends"),
        }
    })
    .await
    .expect("every call answers");
    redis.resume();

    // Assert: every call failed open, and only one of them, the probe, went to the
    // hung Redis.
    assert!(answers.iter().all(Option::is_none), "{answers:?}");
    assert_eq!(limiter.fail_open_total(), 11);
    assert_eq!(
        most_waiting, 1,
        "calls that waited on the hung Redis at once"
    );
    assert_eq!(
        limiter.breaker_state(),
        BreakerState::Open,
        "the probe failed"
    );
}

#[tokio::test]
async fn a_successful_probe_closes_the_breaker_and_checks_count_again() {
    // Arrange: the breaker opened by a Redis that was gone, and is back.
    test_support::init();
    let mut redis = RedisServer::start();
    let cooldown = Duration::from_millis(500);
    let limiter = limiter(&redis, cooldown);
    redis.kill();
    assert_eq!(limiter.check(key(&limiter)).await, None);
    redis.restart();
    tokio::time::sleep(cooldown + Duration::from_millis(200)).await;

    // Act
    let probe = limiter.check(key(&limiter)).await;
    let next = limiter.check(key(&limiter)).await;

    // Assert
    assert_eq!(probe.map(|decision| decision.remaining), Some(9));
    assert_eq!(next.map(|decision| decision.remaining), Some(8));
    assert_eq!(limiter.breaker_state(), BreakerState::Closed);
    assert_eq!(limiter.fail_open_total(), 1);
}
