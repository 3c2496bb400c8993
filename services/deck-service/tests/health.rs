//! Foundation behaviour of the deck-service binary: the shared conformance tests
//! (readiness following PostgreSQL among them), and a cache Redis outage that leaves
//! it SERVING (reads fall back to PostgreSQL).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::time::Duration;

use test_support::{RedisServer, ServiceConfig, ServingStatus, fresh_database, key_prefix};

const BINARY: &str = env!("CARGO_BIN_EXE_deck-service");
const SERVICE: &str = "learngreek.deck.v1.DeckService";

fn config(database_url: &str, cache_redis_url: &str) -> ServiceConfig {
    ServiceConfig::deck_service(database_url, cache_redis_url, &key_prefix())
        .set("READINESS_INTERVAL_MS", 200)
}

test_support::service_conformance_tests!(binary: BINARY, service: SERVICE, config: config);

#[tokio::test]
async fn cache_redis_down_leaves_readiness_serving() {
    test_support::init();
    let mut redis = RedisServer::start();
    let service = config(&fresh_database().await, &redis.url()).spawn().await;
    let addr = service.grpc_addr.clone();
    service.wait_ready().await;

    redis.stop();
    // Two readiness rounds at 200 ms each pass in this time.
    tokio::time::sleep(Duration::from_millis(800)).await;

    assert_eq!(
        test_support::health_status(&addr, "readiness").await,
        Ok(ServingStatus::Serving)
    );
}
