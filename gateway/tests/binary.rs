//! The `gateway` binary: configuration errors, `--help`, the health server and SIGTERM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::time::Duration;

mod support;

use support::gateway_config;
use test_support::{ServingStatus, health_status, run_to_exit};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway");

#[tokio::test]
async fn a_bad_configuration_value_exits_64_naming_the_variable() {
    for (variable, value) in [
        ("HTTP_ADDR", "not-an-address"),
        ("REQUEST_TIMEOUT_MS", "soon"),
        ("TRUSTED_PROXIES", "10.0.0.0/40"),
        ("TRUSTED_PROXIES", "proxy.example"),
        ("CORS_ALLOWED_ORIGINS", "*"),
        ("CORS_ALLOWED_ORIGINS", "app.example"),
        ("RATE_LIMIT_AUTH_PER_MINUTE", "0"),
        ("RATE_LIMIT_API_PER_MINUTE", "lots"),
        ("RATE_LIMIT_SYNC_INTERVAL_MS", "5"),
        ("RATE_LIMIT_SYNC_INTERVAL_MS", "2000"),
        ("RATE_LIMIT_API_MAX_BUCKETS", "0"),
        ("JWT_PUBLIC_KEYS_FILE", "/nonexistent/jwks.json"),
        ("REDIS_KEY_PREFIX", "a{b}"),
        ("HTTP_HEADER_READ_TIMEOUT_MS", "0"),
        ("HTTP_BODY_READ_TIMEOUT_MS", "soon"),
        ("HTTP_IDLE_TIMEOUT_MS", "0"),
        ("HTTP_MAX_CONNECTIONS", "0"),
    ] {
        let config = gateway_config().set(variable, value);

        let (code, _, stderr) = config.run(&[]).await;

        assert_eq!(code, Some(64), "{variable}={value}: {stderr}");
        assert!(
            stderr.contains(variable),
            "{variable} not named in: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[tokio::test]
async fn help_documents_every_setting() {
    let (code, stdout, _) = run_to_exit(BINARY, &["--help"], &[]).await;

    assert_eq!(code, Some(0));
    for variable in [
        "HTTP_ADDR",
        "GRPC_ADDR",
        "SESSION_SERVICE_URL",
        "DECK_SERVICE_URL",
        "RATE_LIMIT_REDIS_URL",
        "REQUEST_TIMEOUT_MS",
        "TRUSTED_PROXIES",
        "CORS_ALLOWED_ORIGINS",
        "RATE_LIMIT_AUTH_PER_MINUTE",
        "RATE_LIMIT_API_PER_MINUTE",
        "RATE_LIMIT_SYNC_INTERVAL_MS",
        "RATE_LIMIT_API_MAX_BUCKETS",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "JWT_PUBLIC_KEYS_FILE",
        "REDIS_KEY_PREFIX",
        "HTTP_HEADER_READ_TIMEOUT_MS",
        "HTTP_BODY_READ_TIMEOUT_MS",
        "HTTP_IDLE_TIMEOUT_MS",
        "HTTP_MAX_CONNECTIONS",
        "METRICS_ADDR",
        "SHUTDOWN_TIMEOUT_MS",
    ] {
        assert!(stdout.contains(variable), "{variable} missing from --help");
    }
}

#[tokio::test]
async fn without_its_services_the_gateway_is_live_but_not_ready_and_sigterm_exits_zero() {
    let mut gateway = gateway_config().spawn().await;
    let addr = gateway.grpc_addr.clone();
    assert!(
        gateway.listeners.contains_key("HTTP"),
        "{:?}",
        gateway.listeners
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let live = health_status(&addr, "liveness").await;
    let ready = health_status(&addr, "readiness").await;
    let (healthcheck, _, _) = run_to_exit(BINARY, &["healthcheck", "--addr", &addr], &[]).await;
    let (liveness_check, _, _) = run_to_exit(
        BINARY,
        &["healthcheck", "--addr", &addr, "--service", "liveness"],
        &[],
    )
    .await;
    gateway.terminate();
    let status = gateway.wait_exit(Duration::from_secs(20)).await;

    assert_eq!(live, Ok(ServingStatus::Serving));
    assert_eq!(ready, Ok(ServingStatus::NotServing));
    assert_eq!(healthcheck, Some(1));
    assert_eq!(liveness_check, Some(0));
    assert_eq!(status.code(), Some(0));
}
