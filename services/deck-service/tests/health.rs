//! Foundation behaviour of the deck-service binary: the shared conformance tests
//! (readiness following PostgreSQL among them), and a cache Redis outage that leaves
//! it SERVING (reads fall back to PostgreSQL).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::time::Duration;

use test_support::{
    RedisServer, ServingStatus, fresh_database, key_prefix, spawn_service, wait_for_health,
};

const BINARY: &str = env!("CARGO_BIN_EXE_deck-service");
const SERVICE: &str = "learngreek.deck.v1.DeckService";

fn env(database_url: String, redis_url: String) -> Vec<(&'static str, String)> {
    vec![
        ("GRPC_ADDR", "127.0.0.1:0".into()),
        ("DATABASE_URL", database_url),
        ("CACHE_REDIS_URL", redis_url),
        ("REDIS_KEY_PREFIX", key_prefix()),
        ("READINESS_INTERVAL_MS", "200".into()),
    ]
}

test_support::service_conformance_tests!(binary: BINARY, service: SERVICE, env: env);

#[tokio::test]
async fn cache_redis_down_leaves_readiness_serving() {
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

    redis.stop();
    // Two readiness rounds at 200 ms each pass in this time.
    tokio::time::sleep(Duration::from_millis(800)).await;

    assert_eq!(
        test_support::health_status(&addr, "readiness").await,
        Ok(ServingStatus::Serving)
    );
}
