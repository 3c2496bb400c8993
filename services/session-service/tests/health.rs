//! Foundation behaviour of the session-service binary: the shared conformance tests
//! (readiness following PostgreSQL among them), and readiness that follows the sessions
//! Redis both ways.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::time::Duration;

use test_support::{
    RedisServer, ServingStatus, conformance, fresh_database, key_prefix, spawn_service,
    wait_for_health,
};

const BINARY: &str = env!("CARGO_BIN_EXE_session-service");
const SERVICE: &str = "learngreek.session.v1.SessionService";
/// The test-support fixture key: the service signs with it, so `TestTokens` tokens verify.
const SIGNING_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/test-signing-key.pem"
);

fn env(database_url: String, redis_url: String) -> Vec<(&'static str, String)> {
    vec![
        ("GRPC_ADDR", "127.0.0.1:0".into()),
        ("DATABASE_URL", database_url),
        ("SESSION_REDIS_URL", redis_url),
        ("REDIS_KEY_PREFIX", key_prefix()),
        ("READINESS_INTERVAL_MS", "200".into()),
        ("JWT_PRIVATE_KEY_FILE", SIGNING_KEY_FILE.into()),
    ]
}

test_support::service_conformance_tests!(binary: BINARY, service: SERVICE, env: env);

#[tokio::test]
async fn readiness_follows_the_sessions_redis_both_ways_and_watch_streams_it() {
    test_support::init();
    let mut redis = RedisServer::start();
    let service = spawn_service(BINARY, &[], &env(fresh_database().await, redis.url())).await;
    let addr = service.grpc_addr.clone();
    wait_for_health(
        &addr,
        "readiness",
        ServingStatus::Serving,
        Duration::from_secs(15),
    )
    .await;
    let mut watch = conformance::watch_readiness(&addr).await;

    redis.stop();
    conformance::next_status_is(
        &mut watch,
        ServingStatus::NotServing,
        Duration::from_secs(5),
    )
    .await;
    wait_for_health(
        &addr,
        SERVICE,
        ServingStatus::NotServing,
        Duration::from_secs(1),
    )
    .await;
    wait_for_health(
        &addr,
        "liveness",
        ServingStatus::Serving,
        Duration::from_secs(1),
    )
    .await;

    redis.restart();
    conformance::next_status_is(&mut watch, ServingStatus::Serving, Duration::from_secs(5)).await;
}
