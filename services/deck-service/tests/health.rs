//! Foundation behaviour of the deck-service binary: the shared conformance tests,
//! readiness that follows PostgreSQL both ways, and a cache Redis outage that leaves
//! it SERVING (reads fall back to PostgreSQL).

use std::time::Duration;

use test_support::{
    PostgresServer, RedisServer, ServingStatus, conformance, create_database, fresh_database,
    key_prefix, redis_url, spawn_service, wait_for_health,
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
async fn readiness_follows_postgres_both_ways_and_watch_streams_it() {
    test_support::init();
    let mut postgres = PostgresServer::start();
    let database_url = create_database(&postgres.admin_url()).await;
    let service = spawn_service(BINARY, &[], &env(database_url, redis_url())).await;
    let addr = service.grpc_addr.clone();
    wait_for_health(
        &addr,
        "readiness",
        ServingStatus::Serving,
        Duration::from_secs(15),
    )
    .await;
    let mut watch = conformance::watch_readiness(&addr).await;

    postgres.stop();
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

    postgres.restart();
    conformance::next_status_is(&mut watch, ServingStatus::Serving, Duration::from_secs(10)).await;
}

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
