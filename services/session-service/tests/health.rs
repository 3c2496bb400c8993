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
    RedisServer, ServiceConfig, ServingStatus, conformance, fresh_database, key_prefix,
    wait_for_health,
};

const BINARY: &str = env!("CARGO_BIN_EXE_session-service");
const SERVICE: &str = "learngreek.session.v1.SessionService";

fn config(database_url: &str, redis_url: &str) -> ServiceConfig {
    ServiceConfig::session_service(database_url, redis_url, &key_prefix())
        .set("READINESS_INTERVAL_MS", 200)
}

test_support::service_conformance_tests!(binary: BINARY, service: SERVICE, config: config);

#[tokio::test]
async fn readiness_follows_the_sessions_redis_both_ways_and_watch_streams_it() {
    test_support::init();
    let mut redis = RedisServer::start();
    let service = config(&fresh_database().await, &redis.url()).spawn().await;
    let addr = service.grpc_addr.clone();
    service.wait_ready().await;
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
