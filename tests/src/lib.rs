//! Test support shared by every crate's tests (STYLE.md, "three test tiers").
//!
//! Tests talk to real servers. `make test` starts one PostgreSQL and one Redis on free
//! ports and exports `TEST_DATABASE_URL` and `TEST_REDIS_URL`; each test isolates itself
//! with [`fresh_database`] and [`key_prefix`], so tests run in parallel. Tests that stop
//! or pause a dependency start a private one with [`RedisServer::start`] or
//! [`PostgresServer::start`].

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

pub mod app;
pub mod chaos;
pub mod conformance;
pub mod http;
mod process;
pub mod redis_monitor;
pub mod replicas;
mod servers;
pub mod stack;
pub mod tokens;
pub mod tools;

use std::time::Duration;

pub use app::{InProcess, ServiceConfig};
pub use process::{ServiceProcess, run_to_exit, spawn_service};
pub use redis_monitor::{RedisMonitor, command_names};
pub use servers::{PostgresServer, RedisServer, free_port};
pub use tokens::TestTokens;
pub use tonic_health::ServingStatus;

/// Installs logging for a test (quiet unless `TEST_LOG=1`).
pub fn init() {
    common::telemetry::init_for_tests();
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `make test`, which starts PostgreSQL and Redis"
        )
    })
}

/// URL of the shared test Redis.
pub fn redis_url() -> String {
    required_env("TEST_REDIS_URL")
}

/// Admin URL of the shared test PostgreSQL (its `postgres` database).
pub fn admin_database_url() -> String {
    required_env("TEST_DATABASE_URL")
}

/// A random key prefix (`t<hex>:`) that isolates one test's Redis keys.
pub fn key_prefix() -> String {
    format!("t{}:", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Creates an empty database on the shared test server and returns its URL.
pub async fn fresh_database() -> String {
    create_database(&admin_database_url()).await
}

/// Creates an empty database on the server of `admin_url` and returns its URL.
pub async fn create_database(admin_url: &str) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut connection = connect_admin(admin_url).await;
    // FILE_COPY copies the template's files instead of writing every block to the WAL
    // (PostgreSQL 15's default): hundreds of test databases stay cheap in disk and time.
    sqlx::query(&format!(r#"CREATE DATABASE "{name}" STRATEGY FILE_COPY"#))
        .execute(&mut connection)
        .await
        .expect("create test database");
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

/// Connects to the admin database, waiting out a server that is starting up or
/// recovering (it restarts itself after a crashed backend) for up to 30 s.
async fn connect_admin(admin_url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match sqlx::PgConnection::connect(admin_url).await {
            Ok(connection) => return connection,
            Err(error) => {
                let transient = matches!(&error, sqlx::Error::Database(e)
                    if e.code().is_some_and(|code| code == "57P03"));
                if !transient || tokio::time::Instant::now() >= deadline {
                    panic!("cannot reach test PostgreSQL at {admin_url}: {error}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A gRPC channel connected to `host:port`; panics when nothing answers there.
pub async fn grpc_channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("valid address")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// One grpc.health.v1 Check.
pub async fn health_status(addr: &str, service: &str) -> Result<ServingStatus, String> {
    common::grpc::check_health(addr, service).await
}

/// Polls the health of `service` until it equals `expected`; panics after `timeout`.
pub async fn wait_for_health(
    addr: &str,
    service: &str,
    expected: ServingStatus,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = health_status(addr, service).await;
        if status == Ok(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health of {service:?} at {addr} is {status:?}, expected {expected:?} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Redis Cluster hash slot of `key`, as `CLUSTER KEYSLOT` computes it (redis's own
/// function: CRC16 of the hash tag, or of the whole key when it has none).
pub fn key_slot(key: &str) -> redis::cluster_routing::Slot {
    redis::cluster_routing::Slot::for_key(key)
}

#[cfg(test)]
mod tests {
    use redis::cluster_routing::Slot;

    use super::key_slot;

    #[test]
    fn key_slot_matches_redis_reference_values() {
        let slot = |number| Slot::new(number).expect("a slot number");
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(key_slot("123456789"), slot(12739));
        assert_eq!(key_slot("foo"), slot(12182));
        assert_eq!(
            key_slot("{user1000}.following"),
            key_slot("{user1000}.followers")
        );
        // An empty first tag hashes the whole key; only the first tag counts.
        assert_eq!(key_slot("foo{}{bar}"), slot(8363));
        assert_eq!(key_slot("foo{bar}{zap}"), slot(5061));
        assert_eq!(key_slot("{user1000}x"), slot(3443));
        assert_eq!(key_slot("user1000"), slot(3443));
    }
}
